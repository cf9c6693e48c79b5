// Framing of batch entries and snapshots (entry_format.h): little-endian
// integers and zlib's CRC-32, the checksum the journal uses too.
#include "raft/entry_format.h"

#include <zlib.h>

#include <cassert>
#include <cstring>

namespace netsem::raft {

namespace {

constexpr std::string_view kBatchMagic = "nsrb";
constexpr std::string_view kSnapshotMagic = "nsrs";

std::uint32_t crc_of(std::string_view bytes) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large inputs in pieces.
  while (!bytes.empty()) {
    const std::size_t n = std::min<std::size_t>(bytes.size(), 1u << 30);
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(n));
    bytes.remove_prefix(n);
  }
  return static_cast<std::uint32_t>(crc);
}

void put_le(char* at, std::uint64_t v, int width) {
  for (int i = 0; i < width; ++i) at[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint64_t get_le(std::string_view bytes, std::size_t at, int width) {
  std::uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(i)]);
  }
  return v;
}

Status corrupt(std::string what) {
  return Status(StatusCode::kCorruption, std::move(what));
}

}  // namespace

std::size_t batch_size(const std::vector<std::string>& commands) {
  std::size_t size = 12;
  for (const std::string& command : commands) size += 4 + command.size();
  return (size + 7) / 8 * 8;
}

void encode_batch(const std::vector<std::string>& commands, std::string& out) {
  assert(!commands.empty() && commands.size() <= kMaxBatchCommands);
  out.assign(batch_size(commands), '\0');  // the padding stays zero
  char* p = out.data();
  std::memcpy(p, kBatchMagic.data(), 4);
  put_le(p + 8, commands.size(), 4);
  std::size_t at = 12;
  for (const std::string& command : commands) {
    assert(command.size() <= kMaxCommandBytes);
    put_le(p + at, command.size(), 4);
    std::memcpy(p + at + 4, command.data(), command.size());
    at += 4 + command.size();
  }
  put_le(p + 4, crc_of(std::string_view(out).substr(8)), 4);
}

Result<std::vector<std::string_view>> decode_batch(std::string_view entry) {
  if (entry.size() < 12 || entry.substr(0, 4) != kBatchMagic) return corrupt("log entry: not a netsem batch");
  if (get_le(entry, 4, 4) != crc_of(entry.substr(8))) return corrupt("log entry: checksum mismatch");
  const std::uint64_t n = get_le(entry, 8, 4);
  if (n == 0 || n > kMaxBatchCommands) return corrupt("log entry: bad command count");
  std::vector<std::string_view> commands;
  commands.reserve(n);
  std::size_t at = 12;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (entry.size() - at < 4) return corrupt("log entry: truncated");
    const std::uint64_t length = get_le(entry, at, 4);
    at += 4;
    if (length > kMaxCommandBytes || entry.size() - at < length) return corrupt("log entry: truncated command");
    commands.push_back(entry.substr(at, length));
    at += length;
  }
  if (entry.size() % 8 != 0 || entry.size() - at >= 8 ||
      entry.substr(at).find_first_not_of('\0') != std::string_view::npos) {
    return corrupt("log entry: bad padding");
  }
  return commands;
}

std::string encode_snapshot(std::string_view payload) {
  std::string out(16 + payload.size(), '\0');
  std::memcpy(out.data(), kSnapshotMagic.data(), 4);
  put_le(out.data() + 4, crc_of(payload), 4);
  put_le(out.data() + 8, payload.size(), 8);
  if (!payload.empty()) std::memcpy(out.data() + 16, payload.data(), payload.size());
  return out;
}

Result<std::string_view> decode_snapshot(std::string_view framed) {
  if (framed.size() < 16 || framed.substr(0, 4) != kSnapshotMagic) return corrupt("snapshot: not a netsem snapshot");
  if (get_le(framed, 8, 8) != framed.size() - 16) return corrupt("snapshot: length mismatch");
  const std::string_view payload = framed.substr(16);
  if (get_le(framed, 4, 4) != crc_of(payload)) return corrupt("snapshot: checksum mismatch");
  return payload;
}

}  // namespace netsem::raft
