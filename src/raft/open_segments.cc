// check_open_segments (open_segments.h): reads each open segment whole and
// walks its batches as libraft's uvLoadEntriesBatch does, up to the first one
// that does not decode; what follows it decides.
#include "raft/open_segments.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>

#include "common/unique_fd.h"

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

// The header size of a batch at `start` whose count is sane and whose header
// checksum holds; nullopt otherwise (or when it runs past the file).
std::optional<std::size_t> sound_header(std::string_view bytes, std::size_t start) {
  if (bytes.size() - start < 16) return std::nullopt;
  const std::uint64_t n = get_le(bytes, start + 8, 8);
  if (n == 0 || n > kMaxEntries) return std::nullopt;
  const std::size_t header_size = 8 + 16 * n;
  if (start + 8 + header_size > bytes.size()) return std::nullopt;
  if (libraft_crc32(bytes.substr(start + 8, header_size)) != static_cast<std::uint32_t>(get_le(bytes, start, 4))) {
    return std::nullopt;
  }
  return header_size;
}

struct Failing {
  std::size_t start = 0;
  bool followed = false;  // written data after it: damage, not a torn tail
  const char* why = "";
  bool cut = false;  // the file ends inside it: cut short, never a crash
};

// The file ends inside the batch at `start`: libraft sizes an open segment
// (kMaxSegmentSize) before it writes a batch there, and truncates one only
// to the end of a batch (before renaming it closed), so no crash leaves
// this. libraft 0.15 would read past the end of its buffer (heap
// corruption, then an abort). In a file of full size a batch that would
// run past the end has a damaged header: judged as damage, below.
Failing cut_short(std::size_t start) {
  return Failing{start, false, "the file ends inside it", true};
}

// The first batch that does not decode, or nullopt when every batch does up
// to the zeros that end what was written (or the end of the file).
std::optional<Failing> first_failing_batch(std::string_view bytes) {
  std::size_t offset = sizeof(std::uint64_t);
  while (offset + 16 <= bytes.size()) {
    const std::size_t start = offset;
    if (bytes.size() < kMaxSegmentSize && get_le(bytes, start + 8, 8) != 0 &&
        get_le(bytes, start + 8, 8) <= kMaxEntries && start + 16 + 16 * get_le(bytes, start + 8, 8) > bytes.size()) {
      return cut_short(start);
    }
    // Zeros where a batch would start: the end of what was written, when
    // nothing but zeros follows (checked only then: a walk stays linear).
    if (get_le(bytes, start, 8) == 0 && get_le(bytes, start + 8, 8) == 0 && zeros_from(bytes, start)) {
      return std::nullopt;
    }
    const auto header_size = sound_header(bytes, start);
    if (!header_size) {
      // Its own header cannot be trusted for its length: damage if any
      // later batch decodes (batches start at multiples of 8).
      Failing failing{start, false, "its header does not decode"};
      for (std::size_t at = start + 8; at + 16 <= bytes.size() && !failing.followed; at += 8) {
        failing.followed = sound_header(bytes, at).has_value();
      }
      return failing;
    }
    const std::uint64_t n = get_le(bytes, start + 8, 8);
    const std::size_t header_at = start + 8;
    std::size_t data_size = 0;
    for (std::uint64_t i = 0; i < n; ++i) data_size += get_le(bytes, header_at + 8 + 16 * i + 12, 4);
    const std::size_t data_at = header_at + *header_size;
    if (data_at + data_size > bytes.size()) return cut_short(start);
    if (libraft_crc32(bytes.substr(data_at, data_size)) != static_cast<std::uint32_t>(get_le(bytes, start + 4, 4))) {
      return Failing{start, !zeros_from(bytes, data_at + data_size), "its data fails its checksum"};
    }
    offset = data_at + data_size;
  }
  if (bytes.size() < kMaxSegmentSize && !zeros_from(bytes, offset)) return cut_short(offset);  // a batch's start
  return std::nullopt;
}

Result<std::string> read_all(const std::filesystem::path& path) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status(StatusCode::kIoError, "cannot read " + path.string() + ": " + std::strerror(errno));
  std::string bytes;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(StatusCode::kIoError, "cannot read " + path.string() + ": " + std::strerror(errno));
    if (n == 0) return bytes;
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
}

}  // namespace

Status check_open_segments(const std::string& data_dir, bool accept_torn_tail) {
  std::error_code ec;
  std::filesystem::directory_iterator it(data_dir, ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with("open-") || !it->is_regular_file(ec)) continue;
    auto bytes = read_all(it->path());
    if (!bytes) return bytes.status();
    if (bytes->size() < sizeof(std::uint64_t) || get_le(*bytes, 0, 8) != kFormat) continue;
    const auto failing = first_failing_batch(*bytes);
    if (!failing) continue;
    const std::string where = "raft data directory " + data_dir + ": open segment " + name + ": the batch at byte " +
                              std::to_string(failing->start) + " does not decode (" + failing->why + ")";
    if (failing->cut) {
      return Status(StatusCode::kCorruption,
                    where +
                        ": the file was cut short (libraft sizes an open segment before it writes to it and "
                        "truncates one only at the end of a batch, so no crash leaves this). Refused and left as "
                        "it is (--repair cannot drop it either): wipe this server's data directory and add it "
                        "back to the cluster");
    }
    if (failing->followed) {
      return Status(StatusCode::kCorruption,
                    where +
                        " and written data follows it: damage, not a write torn by a crash; libraft would drop "
                        "the entries after it, so the directory is refused and left as it is");
    }
    if (!accept_torn_tail) {
      return Status(StatusCode::kCorruption,
                    where +
                        ", and it is the last one written: a write torn by a power loss, or damage to an entry "
                        "this node may have acknowledged. Refused and left as it is. If this server lost power "
                        "while writing, start it with --repair to drop that batch (safe while the other "
                        "servers hold the log); otherwise wipe its data directory and add it back to the cluster");
    }
  }
  if (ec) return Status(StatusCode::kIoError, "cannot list raft data directory " + data_dir + ": " + ec.message());
  return Status::ok();
}

}  // namespace netsem::raft
