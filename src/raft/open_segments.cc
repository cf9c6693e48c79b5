// check_open_segments (open_segments.h): reads each open segment whole and
// walks its batches as libraft's uvLoadEntriesBatch does, up to the first one
// that does not decode; what follows it decides torn write or damage.
#include "raft/open_segments.h"

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string_view>

namespace netsem::raft {
namespace {

constexpr std::uint64_t kFormat = 1;
constexpr std::size_t kMaxSegmentSize = 8 * 1024 * 1024;  // UV__MAX_SEGMENT_SIZE
constexpr std::uint64_t kMaxEntries = kMaxSegmentSize / (sizeof(std::uint64_t) * 4);

// libraft's byteCrc32: CRC-32 with polynomial 0x04C11DB7, MSB first, no
// reflection, no final xor, starting from `crc`.
std::uint32_t libraft_crc32(std::string_view bytes, std::uint32_t crc = 0) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i << 24;
      for (int bit = 0; bit < 8; ++bit) c = (c & 0x80000000u) != 0 ? (c << 1) ^ 0x04C11DB7u : c << 1;
      t[i] = c;
    }
    return t;
  }();
  for (const char ch : bytes) crc = (crc << 8) ^ table[((crc >> 24) ^ static_cast<unsigned char>(ch)) & 0xff];
  return crc;
}

std::uint64_t get_le(std::string_view bytes, std::size_t at, int size) {
  std::uint64_t value = 0;
  for (int i = size - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
  return value;
}

bool zeros_from(std::string_view bytes, std::size_t at) {
  for (std::size_t i = at; i < bytes.size(); ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

// The offset just past the first batch that does not decode (the part of
// the file a torn write could have touched), with its start; or nullopt
// when every batch decodes to the end of the file.
struct Failing {
  std::size_t start = 0;
  std::size_t end = 0;
  const char* why = "";
};

std::optional<Failing> first_failing_batch(std::string_view bytes) {
  std::size_t offset = sizeof(std::uint64_t);
  while (offset < bytes.size()) {
    const std::size_t start = offset;
    if (bytes.size() - start < 16) return std::nullopt;  // libraft's own read error, not ours to judge
    const auto header_crc = static_cast<std::uint32_t>(get_le(bytes, start, 4));
    const auto data_crc = static_cast<std::uint32_t>(get_le(bytes, start + 4, 4));
    const std::uint64_t n = get_le(bytes, start + 8, 8);
    if (n == 0 || n > kMaxEntries) return Failing{start, start + 16, "no entry count"};
    const std::size_t header_size = 8 + 16 * n;
    const std::size_t header_at = start + 8;
    if (header_at + header_size > bytes.size()) return std::nullopt;  // libraft's read error
    if (libraft_crc32(bytes.substr(header_at, header_size)) != header_crc) {
      return Failing{start, header_at + header_size, "its header fails its checksum"};
    }
    std::size_t data_size = 0;
    for (std::uint64_t i = 0; i < n; ++i) data_size += get_le(bytes, header_at + 8 + 16 * i + 12, 4);
    const std::size_t data_at = header_at + header_size;
    if (data_at + data_size > bytes.size()) return std::nullopt;  // libraft's read error
    if (libraft_crc32(bytes.substr(data_at, data_size)) != data_crc) {
      return Failing{start, data_at + data_size, "its data fails its checksum"};
    }
    offset = data_at + data_size;
  }
  return std::nullopt;
}

}  // namespace

Status check_open_segments(const std::string& data_dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("open-") || !entry.is_regular_file(ec)) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.eof() && in.fail()) return Status(StatusCode::kIoError, "cannot read " + entry.path().string());
    if (bytes.size() < sizeof(std::uint64_t) || get_le(bytes, 0, 8) != kFormat) continue;
    const auto failing = first_failing_batch(bytes);
    if (!failing || zeros_from(bytes, failing->end)) continue;  // the end of what was written, or a torn write
    return Status(StatusCode::kCorruption,
                  "raft data directory " + data_dir + ": open segment " + name + ": the batch at byte " +
                      std::to_string(failing->start) + " does not decode (" + failing->why +
                      ") and written data follows it: damage, not a write torn by a crash; libraft would drop "
                      "the entries after it, so the directory is refused and left as it is");
  }
  if (ec) return Status(StatusCode::kIoError, "cannot list raft data directory " + data_dir + ": " + ec.message());
  return Status::ok();
}

}  // namespace netsem::raft
