// The peer link's wire format (docs/replication.md, "Forwarding to the
// leader"): how a follower hands its sessions' commands to the leader. The
// follower connects to the leader's client port and sends one line,
// `PEER <follower-id> <secret>` (the cluster secret), then frames: a u32
// length (little-endian, 1 .. kMaxPeerFrameBytes) and that many bytes (an
// encoded replication entry, `NSRE`). Nothing comes back: the follower
// learns what happened by applying the log. No I/O here: the server's
// session and the follower's link frame bytes with these.
//
// Thread safety: plain functions; a PeerFrameReader per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "netsem/status.h"

namespace netsem::protocol {

// The first word of the peer link's line: a v1 session never starts so
// (a v1 line starts with a tag, and PEER is no verb).
inline constexpr std::string_view kPeerWord = "PEER";
// The largest frame (raft::kMaxCommandBytes: what one command may be).
inline constexpr std::size_t kMaxPeerFrameBytes = 16u << 20;

// "PEER <id> <secret>\n".
std::string encode_peer_hello(std::uint64_t id, std::string_view secret);

struct PeerHello {
  std::uint64_t id = 0;
  std::string secret;
};
// The hello line (without its "\n"): kInvalidArgument unless it is exactly
// `PEER <id> <secret>` with an id 1..2^53 and a secret of visible ASCII.
Result<PeerHello> parse_peer_hello(std::string_view line);

// Appends the frame of `payload` to `out`. REQUIRES: 1 <= payload.size() <=
// kMaxPeerFrameBytes (a reader refuses any other length and closes the
// link; PeerLink checks before framing).
void append_peer_frame(std::string& out, std::string_view payload);

// Splits the bytes after the hello line into frames.
class PeerFrameReader {
 public:
  enum class Status : std::uint8_t {
    kFrame,     // `frame` holds one payload
    kNeedMore,  // no complete frame buffered
    kBadFrame,  // a length of 0 or over kMaxPeerFrameBytes: close the link
  };
  // Appends what was read. Invalidates the frame next() returned last.
  void add(std::string_view bytes) { buffer_.append(bytes); }
  // The next frame. REQUIRES: the previous frame is no longer used.
  Status next(std::string_view& frame);
  // Bytes buffered and not yet returned.
  std::size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  std::size_t consumed_ = 0;
};

}  // namespace netsem::protocol
