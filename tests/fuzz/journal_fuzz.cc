// libFuzzer target for the journal and snapshot readers (replay_journal,
// replay_snapshot, parse_header in src/journal/file_journal.h): arbitrary
// bytes never crash them or make them read outside the buffer, and what they
// report is self-consistent: the good prefix replays to the same state and
// ends clean, replay is idempotent, and the state survives a snapshot round
// trip.
//
// The first input byte picks a mode. Random bytes almost never carry a valid
// header and crc32, so two modes put a valid header in front and fix every
// record's checksum, letting the fuzzer reach the record parser itself.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <zlib.h>

#include "journal/file_journal.h"

namespace {

using netsem::server::CreatedState;
using netsem::server::ReplayResult;
using netsem::server::ReplayStop;
namespace jf = netsem::server::journal_format;
using State = std::map<std::string, CreatedState>;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::uint32_t get32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)]);
  return v;
}

// Rewrites the crc32 of every complete record after the header.
void fix_checksums(std::string& bytes) {
  std::size_t pos = jf::kHeaderSize;
  while (bytes.size() - pos >= jf::kRecordPrefixSize) {
    const std::uint32_t length = get32(bytes, pos);
    if (length == 0 || length > jf::kMaxRecordBody || length > bytes.size() - pos - jf::kRecordPrefixSize) return;
    const auto crc = static_cast<std::uint32_t>(crc32(
        crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data() + pos + jf::kRecordPrefixSize), length));
    for (std::size_t i = 0; i < 4; ++i) bytes[pos + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
    pos += jf::kRecordPrefixSize + length;
  }
}

void check_replay(bool snapshot, std::string_view bytes) {
  auto replay = [snapshot](std::string_view b, State& s) {
    return snapshot ? netsem::server::replay_snapshot(b, s) : netsem::server::replay_journal(b, s);
  };
  State state;
  const ReplayResult r = replay(bytes, state);
  check(r.good_bytes <= bytes.size());
  if (r.stop == ReplayStop::kBadHeader) {
    check(r.good_bytes == 0 && r.records == 0 && state.empty());
    check(!jf::parse_header(bytes, snapshot ? jf::FileKind::kSnapshot : jf::FileKind::kJournal));
    return;
  }
  check(r.good_bytes >= jf::kHeaderSizeV1);
  // A journal ends clean exactly when every byte is good; a snapshot whose
  // every record is good but has no END is cut short, not clean.
  if (snapshot) {
    check(r.stop != ReplayStop::kCleanEnd || r.good_bytes == bytes.size());
  } else {
    check((r.stop == ReplayStop::kCleanEnd) == (r.good_bytes == bytes.size()));
  }

  // The good prefix replays alone to the same state.
  State again;
  const ReplayResult prefix = replay(bytes.substr(0, r.good_bytes), again);
  check(again == state);
  check(prefix.records == r.records && prefix.generation == r.generation);
  check(prefix.good_bytes == r.good_bytes);
  if (!snapshot || r.stop == ReplayStop::kCleanEnd) check(prefix.stop == ReplayStop::kCleanEnd);

  // Idempotent: records are absolute states.
  if (!snapshot) {
    replay(bytes, again);
    check(again == state);
  }

  // Whatever was recovered is written and read back unchanged.
  const std::string rewritten = jf::encode_snapshot(r.generation, state);
  State round_trip;
  const ReplayResult rt = netsem::server::replay_snapshot(rewritten, round_trip);
  check(rt.stop == ReplayStop::kCleanEnd && round_trip == state && rt.records == state.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned mode = data[0] % 4;
  const bool snapshot = mode % 2 == 1;
  std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode >= 2) {
    input = jf::encode_header(snapshot ? jf::FileKind::kSnapshot : jf::FileKind::kJournal, size) + input;
    fix_checksums(input);
  }
  // An exactly sized heap copy, so that AddressSanitizer sees any read past the end.
  auto exact = std::make_unique<char[]>(input.size());
  if (!input.empty()) std::memcpy(exact.get(), input.data(), input.size());
  const std::string_view bytes(exact.get(), input.size());
  check_replay(snapshot, bytes);
  (void)jf::parse_header(bytes, jf::FileKind::kFences);
  (void)jf::parse_fences(bytes);
  if (!snapshot) (void)netsem::server::find_record_after(bytes, 0);
  return 0;
}
