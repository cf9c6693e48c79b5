// Little-endian writing and bounds-checked reading of the replication
// formats (entries, results, snapshots): fixed-width integers, strings with
// a u16 length, and the frame every format shares: magic (4 bytes), version
// (u8), body length (u64), body, crc32 of everything before it (u32).
// Internal to src/replication.
//
// Thread safety: plain values; one object per user.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "netsem/status.h"

namespace netsem::replication::wire {

inline constexpr std::size_t kFrameHeaderSize = 4 + 1 + 8;
inline constexpr std::size_t kFrameTrailerSize = 4;

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(std::uint16_t v) { fixed(v, 2); }
  void u32(std::uint32_t v) { fixed(v, 4); }
  void u64(std::uint64_t v) { fixed(v, 8); }
  void i64(std::int64_t v) { fixed(static_cast<std::uint64_t>(v), 8); }
  // REQUIRES: s.size() <= 65535 (every string of the formats is shorter).
  void str(std::string_view s);
  std::string& bytes() { return out_; }

 private:
  void fixed(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::string out_;
};

// Reads from a view; every read past the end fails (ok() turns false and
// stays false; values read then are zero), so a decoder reads everything
// and checks ok() where it matters.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  std::uint8_t u8() { return static_cast<std::uint8_t>(fixed(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(fixed(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(fixed(4)); }
  std::uint64_t u64() { return fixed(8); }
  std::int64_t i64() { return static_cast<std::int64_t>(fixed(8)); }
  // At most `max` bytes (a longer one fails).
  std::string_view str(std::size_t max);
  // Skips `n` bytes (fails past the end).
  void skip(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return;
    }
    pos_ += n;
  }
  // The next `n` bytes without reading them ("" past the end).
  std::string_view peek(std::size_t n) const { return ok_ && in_.size() - pos_ >= n ? in_.substr(pos_, n) : ""; }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }
  std::size_t remaining() const { return ok_ ? in_.size() - pos_ : 0; }
  void fail() { ok_ = false; }

 private:
  std::uint64_t fixed(int n);
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// Starts a frame: writes magic, version and room for the length.
Writer begin_frame(std::string_view magic, std::uint8_t version);
// Fills in the length and appends the crc32; returns the frame.
std::string end_frame(Writer& writer);
// The body of a frame, once its magic, version, length and crc32 are
// checked; kCorruption naming what is wrong (`what`: "entry", "snapshot").
Result<std::string_view> open_frame(std::string_view bytes, std::string_view magic, std::uint8_t version,
                                    std::string_view what);

}  // namespace netsem::replication::wire
