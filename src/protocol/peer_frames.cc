// The peer link's wire format (peer_frames.h).
#include "protocol/peer_frames.h"

#include <cassert>
#include <charconv>

namespace netsem::protocol {

std::string encode_peer_hello(std::uint64_t id, std::string_view secret) {
  std::string line(kPeerWord);
  line += ' ';
  line += std::to_string(id);
  line += ' ';
  line += secret;
  line += '\n';
  return line;
}

Result<PeerHello> parse_peer_hello(std::string_view line) {
  const auto bad = [] {
    return Status(StatusCode::kInvalidArgument, "a peer link starts with `PEER <server-id> <cluster secret>`");
  };
  if (!line.starts_with(kPeerWord) || line.size() <= kPeerWord.size() || line[kPeerWord.size()] != ' ') return bad();
  line.remove_prefix(kPeerWord.size() + 1);
  const auto space = line.find(' ');
  if (space == std::string_view::npos) return bad();
  PeerHello hello;
  const std::string_view id = line.substr(0, space);
  const auto [end, error] = std::from_chars(id.data(), id.data() + id.size(), hello.id);
  if (error != std::errc() || end != id.data() + id.size() || hello.id == 0 || hello.id > (std::uint64_t{1} << 53) ||
      id.front() == '0') {
    return bad();
  }
  const std::string_view secret = line.substr(space + 1);
  if (secret.empty()) return bad();
  for (const char c : secret) {
    if (c <= 0x20 || c >= 0x7f) return bad();
  }
  hello.secret = std::string(secret);
  return hello;
}

void append_peer_frame(std::string& out, std::string_view payload) {
  assert(!payload.empty() && payload.size() <= kMaxPeerFrameBytes);
  const auto size = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out += static_cast<char>((size >> (8 * i)) & 0xff);
  out += payload;
}

PeerFrameReader::Status PeerFrameReader::next(std::string_view& frame) {
  if (consumed_ > 0 && consumed_ >= buffer_.size() / 2) {
    buffer_.erase(0, consumed_);  // keep the buffer from growing with what was returned
    consumed_ = 0;
  }
  if (buffer_.size() - consumed_ < 4) return Status::kNeedMore;
  std::uint32_t size = 0;
  for (int i = 3; i >= 0; --i) size = (size << 8) | static_cast<unsigned char>(buffer_[consumed_ + i]);
  if (size == 0 || size > kMaxPeerFrameBytes) return Status::kBadFrame;
  if (buffer_.size() - consumed_ - 4 < size) return Status::kNeedMore;
  frame = std::string_view(buffer_).substr(consumed_ + 4, size);
  consumed_ += 4 + size;
  return Status::kFrame;
}

}  // namespace netsem::protocol
