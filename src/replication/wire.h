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
  void u16(std::uint16_t v) { fixed<2>(v); }
  void u32(std::uint32_t v) { fixed<4>(v); }
  void u64(std::uint64_t v) { fixed<8>(v); }
  void i64(std::int64_t v) { fixed<8>(static_cast<std::uint64_t>(v)); }
  // REQUIRES: s.size() <= 65535 (every string of the formats is shorter).
  void str(std::string_view s);
  // The bytes as they are, without a length (a field of fixed size).
  void raw(std::string_view s) { out_.append(s); }
  std::string& bytes() { return out_; }

 private:
  // One append of the N bytes (a push_back per byte cost a capacity check
  // each: the entries are encoded several times per command).
  template <int N>
  void fixed(std::uint64_t v) {
    char bytes[N];
    for (int i = 0; i < N; ++i) bytes[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    out_.append(bytes, N);
  }
  std::string out_;
};

// Reads from a view; every read past the end fails (ok() turns false and
// stays false; values read then are zero), so a decoder reads everything
// and checks ok() where it matters.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  std::uint8_t u8() { return static_cast<std::uint8_t>(fixed<1>()); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(fixed<2>()); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(fixed<4>()); }
  std::uint64_t u64() { return fixed<8>(); }
  std::int64_t i64() { return static_cast<std::int64_t>(fixed<8>()); }
  // At most `max` bytes (a longer one fails).
  std::string_view str(std::size_t max);
  // The next `n` bytes (a field of fixed size; fails past the end).
  std::string_view raw(std::size_t n) {
    const std::string_view s = peek(n);
    skip(n);
    return ok_ ? s : std::string_view();
  }
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
  // Inline, with N known: the compiler makes one load of the loop.
  template <int N>
  std::uint64_t fixed() {
    if (!ok_ || in_.size() - pos_ < static_cast<std::size_t>(N)) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < N; ++i) v |= std::uint64_t{static_cast<std::uint8_t>(in_[pos_ + i])} << (8 * i);
    pos_ += static_cast<std::size_t>(N);
    return v;
  }
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
// The same for a format that still reads older versions: any version in
// oldest .. newest is accepted, and `version` is set to the one read.
Result<std::string_view> open_frame(std::string_view bytes, std::string_view magic, std::uint8_t oldest,
                                    std::uint8_t newest, std::uint8_t& version, std::string_view what);

}  // namespace netsem::replication::wire
