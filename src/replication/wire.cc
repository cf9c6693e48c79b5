// The replication formats' byte helpers (wire.h).
#include "replication/wire.h"

#include <zlib.h>

#include <cassert>

namespace netsem::replication::wire {
namespace {

std::uint32_t crc_of(std::string_view bytes) {
  return static_cast<std::uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<z_size_t>(bytes.size())));
}

}  // namespace

void Writer::str(std::string_view s) {
  assert(s.size() <= 0xffff);
  u16(static_cast<std::uint16_t>(s.size()));
  out_.append(s);
}

std::string_view Reader::str(std::size_t max) {
  const std::size_t size = u16();
  if (!ok_ || size > max || in_.size() - pos_ < size) {
    ok_ = false;
    return {};
  }
  const std::string_view s = in_.substr(pos_, size);
  pos_ += size;
  return s;
}

Writer begin_frame(std::string_view magic, std::uint8_t version) {
  assert(magic.size() == 4);
  Writer w;
  // Room for a small entry or results whole: one allocation, not several.
  w.bytes().reserve(256);
  w.bytes().append(magic);
  w.u8(version);
  w.u64(0);  // the body's length, filled in by end_frame
  return w;
}

std::string end_frame(Writer& writer) {
  std::string& out = writer.bytes();
  const std::uint64_t body = out.size() - kFrameHeaderSize;
  for (int i = 0; i < 8; ++i) out[5 + i] = static_cast<char>((body >> (8 * i)) & 0xff);
  writer.u32(crc_of(out));
  return std::move(out);
}

Result<std::string_view> open_frame(std::string_view bytes, std::string_view magic, std::uint8_t version,
                                    std::string_view what) {
  std::uint8_t read = 0;
  return open_frame(bytes, magic, version, version, read, what);
}

Result<std::string_view> open_frame(std::string_view bytes, std::string_view magic, std::uint8_t oldest,
                                    std::uint8_t newest, std::uint8_t& version, std::string_view what) {
  const auto corrupt = [&](std::string_view why) {
    return Status(StatusCode::kCorruption, std::string(what) + ": " + std::string(why));
  };
  if (bytes.size() < kFrameHeaderSize + kFrameTrailerSize) return corrupt("shorter than its frame");
  if (bytes.substr(0, 4) != magic) return corrupt("wrong magic");
  Reader header(bytes.substr(4, 9));
  const std::uint8_t got = header.u8();
  const std::uint64_t length = header.u64();
  if (got < oldest || got > newest) return corrupt("unknown version " + std::to_string(got));
  if (length != bytes.size() - kFrameHeaderSize - kFrameTrailerSize) return corrupt("length does not match");
  Reader trailer(bytes.substr(bytes.size() - kFrameTrailerSize));
  if (trailer.u32() != crc_of(bytes.substr(0, bytes.size() - kFrameTrailerSize))) return corrupt("checksum mismatch");
  version = got;
  return bytes.substr(kFrameHeaderSize, length);
}

}  // namespace netsem::replication::wire
