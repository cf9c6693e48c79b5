// The on-disk format of the journal, the snapshot and the fences file (see
// journal_format.h and docs/durability.md): the encoders FileJournal appends
// with, and the pure readers recovery, the tests and the fuzzer replay with.
// No I/O here: file_journal.cc reads and writes the bytes.
#include "journal/journal_format.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <optional>

namespace netsem::server {

namespace jf = journal_format;

std::string_view replay_stop_name(ReplayStop stop) {
  switch (stop) {
    case ReplayStop::kCleanEnd:
      return "clean end";
    case ReplayStop::kTornTail:
      return "torn tail";
    case ReplayStop::kChecksumMismatch:
      return "checksum mismatch";
    case ReplayStop::kBadRecord:
      return "bad record";
    case ReplayStop::kBadHeader:
      return "bad header";
  }
  return "unknown";
}

namespace {

std::uint32_t crc_of(std::string_view bytes) {
  // Bodies are at most kMaxRecordBody bytes, far below uInt's range.
  return static_cast<std::uint32_t>(
      ::crc32(::crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

void put_u16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>(v >> 8));
}
void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint64_t get_le(std::string_view bytes, std::size_t at, int width) {
  std::uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(i)]);
  }
  return v;
}

std::string_view magic_of(jf::FileKind kind) {
  switch (kind) {
    case jf::FileKind::kJournal:
      return "nsemjrnl";
    case jf::FileKind::kSnapshot:
      return "nsemsnap";
    case jf::FileKind::kFences:
      return "nsemfenc";
  }
  return "";
}

bool valid_state(const CreatedState& state) {
  return state.value >= 0 && state.value <= state.max;
}

// Records are built in place in `out` (the batch, or a whole snapshot):
// begin_record reserves the prefix, finish_record fills it in once the body
// is there. No temporary per record: a snapshot of a million entries is
// built in one buffer.
std::size_t begin_record(std::string& out, jf::RecordType type) {
  const std::size_t start = out.size();
  out.append(jf::kRecordPrefixSize, '\0');
  out.push_back(static_cast<char>(type));
  return start;
}

void finish_record(std::string& out, std::size_t start) {
  const std::string_view body = std::string_view(out).substr(start + jf::kRecordPrefixSize);
  const auto length = static_cast<std::uint32_t>(body.size());
  const std::uint32_t crc = crc_of(body);
  for (std::size_t i = 0; i < 4; ++i) {
    out[start + i] = static_cast<char>((length >> (8 * i)) & 0xff);
    out[start + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  }
}

void put_name(std::string& out, std::string_view name) {
  assert(!name.empty() && name.size() <= jf::kMaxNameSize);
  put_u16(out, static_cast<std::uint16_t>(name.size()));
  out.append(name);
}

// Applies one checksummed body; false when it does not parse or is not
// allowed in a file of `kind`. `end_count` receives an END record's count.
bool apply_body(jf::FileKind kind, std::string_view body, std::map<std::string, CreatedState>& state,
                std::optional<std::uint64_t>& end_count) {
  const auto type = static_cast<jf::RecordType>(static_cast<unsigned char>(body[0]));
  if (type == jf::RecordType::kEnd) {
    if (kind != jf::FileKind::kSnapshot || body.size() != 9) return false;
    end_count = get_le(body, 1, 8);
    return true;
  }
  if (type != jf::RecordType::kSet && type != jf::RecordType::kDelete) return false;
  if (body.size() < 3) return false;
  const std::size_t name_size = get_le(body, 1, 2);
  if (name_size == 0) return false;
  const std::string_view name = body.substr(3, name_size);
  if (type == jf::RecordType::kDelete) {
    // In a snapshot too: one written while the server ran ends with the
    // records made meanwhile (FileJournal::finish_compaction).
    if (body.size() != 3 + name_size) return false;
    state.erase(std::string(name));
    return true;
  }
  if (body.size() != 3 + name_size + 16) return false;
  CreatedState value;
  value.value = static_cast<std::int64_t>(get_le(body, 3 + name_size, 8));
  value.max = static_cast<std::int64_t>(get_le(body, 3 + name_size + 8, 8));
  if (!valid_state(value)) return false;
  // A snapshot lists names in order: the end hint makes its inserts O(1).
  state.insert_or_assign(state.end(), std::string(name), value);
  return true;
}

bool all_zero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

ReplayResult replay(jf::FileKind kind, std::string_view bytes, std::map<std::string, CreatedState>& state) {
  ReplayResult result;
  auto header = jf::parse_header_full(bytes, kind);
  if (!header) return result;  // kBadHeader
  result.generation = header->word;
  result.sequence = header->sequence;
  std::size_t pos = header->size;
  result.good_bytes = pos;
  std::optional<std::uint64_t> end_count;
  // Everything from `pos` on is cut; a tail of zeros is what a crash leaves
  // when the file size reached the disk before the data did, so it counts as
  // torn rather than corrupt.
  auto stop = [&](ReplayStop why) {
    result.stop = (why != ReplayStop::kTornTail && all_zero(bytes.substr(pos))) ? ReplayStop::kTornTail : why;
    return result;
  };
  while (pos < bytes.size()) {
    if (end_count) return stop(ReplayStop::kBadRecord);  // bytes after a snapshot's END
    const std::size_t left = bytes.size() - pos;
    if (left < jf::kRecordPrefixSize) return stop(ReplayStop::kTornTail);
    const std::size_t length = get_le(bytes, pos, 4);
    if (length == 0 || length > jf::kMaxRecordBody) return stop(ReplayStop::kBadRecord);
    if (length > left - jf::kRecordPrefixSize) return stop(ReplayStop::kTornTail);
    const std::string_view body = bytes.substr(pos + jf::kRecordPrefixSize, length);
    if (crc_of(body) != get_le(bytes, pos + 4, 4)) return stop(ReplayStop::kChecksumMismatch);
    if (!apply_body(kind, body, state, end_count)) return stop(ReplayStop::kBadRecord);
    if (end_count) {
      if (*end_count != result.records) return stop(ReplayStop::kBadRecord);
    } else {
      ++result.records;
    }
    pos += jf::kRecordPrefixSize + length;
    result.good_bytes = pos;
  }
  // A snapshot is written whole before it is renamed into place: one without
  // its END was cut short.
  if (kind == jf::FileKind::kSnapshot && !end_count) return stop(ReplayStop::kTornTail);
  result.stop = ReplayStop::kCleanEnd;
  return result;
}

}  // namespace

namespace journal_format {

std::string encode_header(FileKind kind, std::uint64_t word, std::uint64_t sequence) {
  assert(kind != FileKind::kFences);
  std::string out(magic_of(kind));
  put_u32(out, kVersion);
  put_u64(out, word);
  put_u64(out, sequence);
  put_u32(out, crc_of(out));
  return out;
}

std::string encode_header_v1(FileKind kind, std::uint64_t word) {
  std::string out(magic_of(kind));
  put_u32(out, 1);
  put_u64(out, word);
  put_u32(out, crc_of(out));
  return out;
}

Result<Header> parse_header_full(std::string_view bytes, FileKind kind) {
  if (bytes.size() < kHeaderSizeV1) {
    return Status(StatusCode::kCorruption, fmt::format("{} bytes, shorter than a header", bytes.size()));
  }
  if (bytes.substr(0, 8) != magic_of(kind)) {
    return Status(StatusCode::kCorruption, fmt::format("bad magic (expected '{}')", magic_of(kind)));
  }
  // The version before the checksum: another version lays its header out differently.
  Header header;
  header.version = static_cast<std::uint32_t>(get_le(bytes, 8, 4));
  if (header.version == 1) {
    header.size = kHeaderSizeV1;
  } else if (header.version == kVersion && kind != FileKind::kFences) {
    if (bytes.size() < kHeaderSize) {
      return Status(StatusCode::kCorruption, fmt::format("{} bytes, shorter than a header", bytes.size()));
    }
    header.sequence = get_le(bytes, 20, 8);
  } else {
    return Status(StatusCode::kCorruption,
                  fmt::format("unsupported format version {} (this build reads 1 and {})", header.version, kVersion));
  }
  const std::size_t crc_at = header.size - 4;
  if (crc_of(bytes.substr(0, crc_at)) != get_le(bytes, crc_at, 4)) {
    return Status(StatusCode::kCorruption, "header checksum mismatch");
  }
  header.word = get_le(bytes, 12, 8);
  return header;
}

Result<std::uint64_t> parse_header(std::string_view bytes, FileKind kind) {
  auto header = parse_header_full(bytes, kind);
  if (!header) return header.status();
  return header->word;
}

std::string encode_fence_slot(const FenceSlot& slot) {
  std::string out(magic_of(FileKind::kFences));
  put_u32(out, kVersion);
  put_u64(out, slot.counter);
  put_u64(out, slot.bound);
  put_u64(out, slot.proof);
  put_u32(out, crc_of(out));
  assert(out.size() == kFenceSlotSize);
  return out;
}

namespace {

Result<FenceSlot> parse_fence_slot(std::string_view bytes) {
  if (bytes.size() < kFenceSlotSize) return Status(StatusCode::kCorruption, "slot cut short");
  if (bytes.substr(0, 8) != magic_of(FileKind::kFences)) return Status(StatusCode::kCorruption, "bad magic");
  if (get_le(bytes, 8, 4) != kVersion) return Status(StatusCode::kCorruption, "bad version");
  if (crc_of(bytes.substr(0, kFenceSlotSize - 4)) != get_le(bytes, kFenceSlotSize - 4, 4)) {
    return Status(StatusCode::kCorruption, "checksum mismatch");
  }
  return FenceSlot{get_le(bytes, 12, 8), get_le(bytes, 20, 8), get_le(bytes, 28, 8)};
}

}  // namespace

Result<FencesFile> parse_fences(std::string_view bytes) {
  if (bytes.size() >= 12 && bytes.substr(0, 8) == magic_of(FileKind::kFences) && get_le(bytes, 8, 4) == 1) {
    auto bound = parse_header(bytes, FileKind::kFences);
    if (!bound) return bound.status();
    if (bytes.size() != kHeaderSizeV1) return Status(StatusCode::kCorruption, "trailing bytes");
    FencesFile file;
    file.version = 1;
    file.slot.bound = *bound;
    return file;
  }
  if (bytes.size() != kFencesFileSize) {
    return Status(StatusCode::kCorruption,
                  fmt::format("{} bytes, not the {} of two slots", bytes.size(), kFencesFileSize));
  }
  auto first = parse_fence_slot(bytes.substr(0, kFenceSlotSize));
  auto second = parse_fence_slot(bytes.substr(kFenceSlotStride));
  if (!first && !second) {
    return Status(StatusCode::kCorruption,
                  fmt::format("both slots are damaged ({}; {})", first.status().message(), second.status().message()));
  }
  FencesFile file;
  file.other_valid = first && second;
  if (!second || (first && first->counter >= second->counter)) {
    file.slot = *first;
  } else {
    file.slot = *second;
  }
  return file;
}

void append_set(std::string& out, std::string_view name, const CreatedState& state) {
  assert(valid_state(state));
  const std::size_t start = begin_record(out, RecordType::kSet);
  put_name(out, name);
  put_u64(out, static_cast<std::uint64_t>(state.value));
  put_u64(out, static_cast<std::uint64_t>(state.max));
  finish_record(out, start);
}

void append_delete(std::string& out, std::string_view name) {
  const std::size_t start = begin_record(out, RecordType::kDelete);
  put_name(out, name);
  finish_record(out, start);
}

void append_end(std::string& out, std::uint64_t records) {
  const std::size_t start = begin_record(out, RecordType::kEnd);
  put_u64(out, records);
  finish_record(out, start);
}

std::string encode_snapshot(std::uint64_t generation, const std::map<std::string, CreatedState>& state,
                            std::uint64_t sequence) {
  std::string out = encode_header(FileKind::kSnapshot, generation, sequence);
  std::size_t size = kRecordPrefixSize + 9;
  for (const auto& entry : state) size += kRecordPrefixSize + 19 + entry.first.size();
  out.reserve(out.size() + size);
  for (const auto& [name, value] : state) append_set(out, name, value);
  append_end(out, state.size());
  return out;
}

// ---------------------------------------------------------------- run file

namespace {
constexpr std::string_view kRunMagic = "netsemd-run 1 ";
constexpr std::string_view kTimeoutKey = "session_timeout_ms=";
constexpr std::string_view kHeldKey = "held=";

// The decimal number after `key` at the front of `text`, moving past it.
template <class Int>
std::optional<Int> take_number(std::string_view& text, std::string_view key) {
  if (!text.starts_with(key)) return std::nullopt;
  text.remove_prefix(key.size());
  Int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() || value < 0) return std::nullopt;
  text.remove_prefix(static_cast<std::size_t>(end - text.data()));
  return value;
}
}  // namespace

std::string encode_run_record(const RunRecord& record) {
  assert(record.state != RunRecord::State::kNone && record.session_timeout_ms >= 0);
  std::string text(kRunMagic);
  text += record.state == RunRecord::State::kRunning ? "running " : "stopped ";
  text += kTimeoutKey;
  text += std::to_string(record.session_timeout_ms);
  if (record.state == RunRecord::State::kStopped) {
    text += ' ';
    text += kHeldKey;
    text += std::to_string(record.held);
  }
  text += '\n';
  return text;
}

Result<RunRecord> parse_run_record(std::string_view bytes) {
  const auto bad = [&](std::string_view why) {
    return Status(StatusCode::kCorruption,
                  fmt::format("{} (expected `{}running|stopped {}<ms> ...`)", why, kRunMagic, kTimeoutKey));
  };
  if (!bytes.starts_with(kRunMagic)) return bad("not a run record of this version");
  std::string_view text = bytes.substr(kRunMagic.size());
  RunRecord record;
  if (text.starts_with("running ")) {
    record.state = RunRecord::State::kRunning;
  } else if (text.starts_with("stopped ")) {
    record.state = RunRecord::State::kStopped;
  } else {
    return bad("neither running nor stopped");
  }
  text.remove_prefix(8);
  const auto timeout = take_number<std::int64_t>(text, kTimeoutKey);
  if (!timeout) return bad("no session_timeout_ms");
  record.session_timeout_ms = *timeout;
  if (record.state == RunRecord::State::kStopped) {
    if (!text.starts_with(' ')) return bad("no held count");
    text.remove_prefix(1);
    const auto held = take_number<std::uint64_t>(text, kHeldKey);
    if (!held) return bad("no held count");
    record.held = *held;
  }
  if (text != "\n") return bad("unexpected bytes after the record");
  return record;
}

}  // namespace journal_format

std::optional<std::size_t> find_record_after(std::string_view bytes, std::size_t from, std::size_t* records) {
  std::map<std::string, CreatedState> scratch;
  std::optional<std::uint64_t> end_count;
  // One valid record at `at`: its size, or 0.
  auto record_at = [&](std::size_t at) -> std::size_t {
    if (bytes.size() - at < jf::kRecordPrefixSize) return 0;
    const std::size_t length = get_le(bytes, at, 4);
    if (length == 0 || length > jf::kMaxRecordBody || length > bytes.size() - at - jf::kRecordPrefixSize) return 0;
    const std::string_view body = bytes.substr(at + jf::kRecordPrefixSize, length);
    if (crc_of(body) != get_le(bytes, at + 4, 4)) return 0;
    scratch.clear();
    if (!apply_body(jf::FileKind::kJournal, body, scratch, end_count)) return 0;
    return jf::kRecordPrefixSize + length;
  };
  for (std::size_t at = from; at < bytes.size(); ++at) {
    std::size_t size = record_at(at);
    if (size == 0) continue;
    if (records != nullptr) {
      *records = 0;
      for (std::size_t next = at; size != 0; size = next < bytes.size() ? record_at(next) : 0) {
        ++*records;
        next += size;
      }
    }
    return at;
  }
  return std::nullopt;
}

ReplayResult replay_journal(std::string_view bytes, std::map<std::string, CreatedState>& state) {
  return replay(jf::FileKind::kJournal, bytes, state);
}

ReplayResult replay_snapshot(std::string_view bytes, std::map<std::string, CreatedState>& state) {
  return replay(jf::FileKind::kSnapshot, bytes, state);
}

}  // namespace netsem::server
