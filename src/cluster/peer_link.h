// The peer link: how a follower hands its hosted sessions' commands to the
// leader over TCP (docs/replication.md "Forwarding to the leader" and "The
// cluster node"). The follower connects to the leader's client address from
// its own client host, sends one line `PEER <id> <secret>` (its server id
// and the cluster secret), then entries (replication::encode_entry bytes,
// NSRE), each framed by its length as a little-endian u32. Nothing comes
// back: the follower learns what was applied from its own replica, and
// sends again what was lost (ClusterNode's resends).
//
// API:
//   peer_hello / check_peer_hello   the first line, made and checked (the
//                                   leader's listener reads it as a client
//                                   line, then hands the socket over)
//   peer_removal_notice /           the leader's word to a server it
//   check_removal_notice,           removed (a line alone on a connection
//   send_peer_line                  of its own), made, checked and sent
//   peer_secret_challenge /         the leader's question to a server it
//   check_secret_challenge,         would add: does it hold the cluster
//   secret_check_proof,             secret? (a challenge alone on a
//   peer_secret_proof,              connection, answered by an HMAC proof;
//   verify_secret_proof,            nothing secret on the wire)
//   ask_peer_line
//   frame_entry / PeerFrameDecoder  the framing, with no I/O
//   PeerLinkClient                  a Forwarder over Asio: one link at a
//                                   time, to the leader named, reconnected on
//                                   demand; what cannot be sent is dropped
//   PeerLinkReceiver                the leader's side of one accepted link:
//                                   reads frames and hands each entry on
//
// Thread safety: PeerLinkClient and PeerLinkReceiver are used on the thread
// that runs their io_context (netsemd's event loop), which is also where
// their callbacks run; the free functions are reentrant.
#pragma once

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cluster/cluster_node.h"
#include "netsem/status.h"
#include "replication/entry.h"

namespace netsem::cluster {

using replication::ServerId;

// The largest frame accepted (RaftNode's largest command).
inline constexpr std::size_t kMaxPeerFrameBytes = std::size_t{16} << 20;
// The longest hello line accepted, without its newline.
inline constexpr std::size_t kMaxPeerHelloBytes = 512;

// "PEER <id> <secret>\n".
std::string peer_hello(ServerId id, std::string_view secret);

// Checks a hello line (without its "\n"; a trailing "\r" is ignored) from a
// connection whose remote address is `remote_host` (as
// asio::ip::address::to_string gives it): the word PEER, an id that is in
// `client_addresses` (id -> "host:port") and not `self`, the remote address
// equal to that server's configured host, and `secret` (compared in
// constant time). The peer's id, or kDenied saying which check failed
// (kProtocol for a line that is not a PEER line).
Result<ServerId> check_peer_hello(std::string_view line, std::string_view remote_host, ServerId self,
                                  const std::map<ServerId, std::string>& client_addresses, std::string_view secret);

// The leader's word to a server whose removal from the configuration just
// committed: "PEER <id> <secret> REMOVED <removed-id> <index>\n" (<index>:
// the leader's committed configuration's), alone on a connection of its own
// to the removed server's client address. libraft 0.15 stops replicating to
// a server the moment its leader proposes its removal, so the removed one
// never applies that entry; this line is how it learns it and stops
// (docs/replication.md, "Adding and removing servers").
std::string peer_removal_notice(ServerId id, std::string_view secret, ServerId removed, std::uint64_t index);

struct RemovalNotice {
  ServerId from = 0;        // the server that sent it (the leader then)
  ServerId removed = 0;     // the server removed
  std::uint64_t index = 0;  // its configuration index
};

// nullopt when `line` is no removal notice (a hello, for check_peer_hello);
// else the notice, or why it is refused: its "PEER <id> <secret>" checked
// as check_peer_hello checks a hello, kProtocol for a malformed rest.
std::optional<Result<RemovalNotice>> check_removal_notice(std::string_view line, std::string_view remote_host,
                                                          ServerId self,
                                                          const std::map<ServerId, std::string>& client_addresses,
                                                          std::string_view secret);

// The leader's question before a CLUSTER ADD commits anything: does the
// server at the client address given hold the cluster secret? A
// challenge-response that puts nothing secret on the wire, since that
// address is no member yet (a mistyped or hostile address must learn
// nothing): the leader sends, alone on a connection of its own,
//   "PEER <leader-id> CHALLENGE <added-id> <nonce>\n"
// (<nonce>: 32 fresh random bytes, 64 lowercase hex digits), and the server
// answers
//   "PEER <its id> PROOF <proof>\n"
// where <proof> is secret_check_proof(): HMAC-SHA256 keyed by the cluster
// secret over a domain-separated message binding the nonce, the leader's
// id, the id asked for, the answering server's id and the direction. The
// leader recomputes it and compares in constant time (verify_secret_proof).
// A server with another secret, that would be added as a voter whose peer
// links and removal notice every other server refuses, is so never added
// (docs/replication.md, "Adding and removing servers"). The server checks
// only who asks (check_secret_challenge: a server it knows, from that
// server's host); it cannot tell the leader's secret, and acts on nothing
// (docs/security.md says why that is enough). The 1.2 proposal's first
// form, "PEER <id> <secret> CHECK <added-id>", sent the secret in clear: a
// server of this build refuses to answer it.

// Size of a challenge's nonce and of a proof, in bytes (64 hex digits each).
inline constexpr std::size_t kSecretCheckNonceBytes = 32;
inline constexpr std::size_t kSecretCheckProofBytes = 32;

// A fresh nonce from OpenSSL's CSPRNG (RAND_bytes), in lowercase hex;
// kInternal when the generator fails.
Result<std::string> new_secret_check_nonce();

// "PEER <leader> CHALLENGE <added> <nonce>\n".
std::string peer_secret_challenge(ServerId leader, ServerId added, std::string_view nonce);

// The message a proof is the HMAC of (exposed for the known-answer test):
// "netsem peer secret check v1\nproof: added server to leader\nleader <leader>\n
//  asked <asked>\nserver <answering>\nnonce <nonce>\n".
std::string secret_check_message(ServerId leader, ServerId asked, ServerId answering, std::string_view nonce);

// HMAC-SHA256(secret, secret_check_message(...)) in lowercase hex.
std::string secret_check_proof(std::string_view secret, ServerId leader, ServerId asked, ServerId answering,
                               std::string_view nonce);

// "PEER <id> PROOF <proof>\n": server `id`'s answer to a challenge.
std::string peer_secret_proof(ServerId id, std::string_view proof);

struct SecretChallenge {
  ServerId from = 0;   // the server that asks (the leader)
  ServerId added = 0;  // the id it would add the answering server as
  std::string nonce;   // its nonce (64 lowercase hex digits)
};

// nullopt when `line` is no secret check; else the challenge, or why it
// is refused: its sender checked as check_peer_hello checks a hello's,
// without the secret (an id in `client_addresses`, not `self`, from that
// server's host: kDenied), kProtocol for a malformed rest, kDenied for
// the old form "PEER <id> <secret> CHECK <id>" (never answered: it
// carries the secret in clear; its secret is not even looked at).
std::optional<Result<SecretChallenge>> check_secret_challenge(std::string_view line, std::string_view remote_host,
                                                              ServerId self,
                                                              const std::map<ServerId, std::string>& client_addresses);

// The answer `line` (without its newline) to the challenge `leader` sent
// with `nonce` for server `asked`: the answering server's id when its
// proof holds for that id (compared in constant time: CRYPTO_memcmp);
// kDenied when the proof does not match (another secret); kProtocol when
// the line is no "PEER <id> PROOF <64 hex digits>".
Result<ServerId> verify_secret_proof(std::string_view line, std::string_view secret, ServerId leader, ServerId asked,
                                     std::string_view nonce);

// Sends `line` as send_peer_line does and reads one line back. `done` runs
// once on `io`'s thread: the line (without its newline) when one came
// within 2 s of the connect; kUnavailable when the connect failed (nothing
// listens there, or no answer to it within 1 s); kIoError when the
// connection was made but no line came back (closed without a word, reset,
// or 2 s went by), saying which.
void ask_peer_line(asio::io_context& io, const std::string& local_host, const std::string& address, std::string line,
                   std::function<void(Result<std::string>)> done);

// Sends `line` alone on a connection of its own from `local_host` (this
// server's client host, as the receiver checks it; "" for any) to `address`
// (a numeric "host:port"), then closes it. `done` runs once on `io`'s
// thread: OK once the line is written, or kIoError saying why not (within
// 1 s for the connect).
void send_peer_line(asio::io_context& io, const std::string& local_host, const std::string& address, std::string line,
                    std::function<void(Status)> done);

// The frame of one entry: its length (u32, little-endian), then its bytes.
// REQUIRES: 1 <= entry.size() <= kMaxPeerFrameBytes.
std::string frame_entry(std::string_view entry);

// Cuts a byte stream into entries. feed() what arrives; next() gives the
// next whole entry, nullopt when more bytes are needed, or kProtocol for a
// frame length of 0 or over kMaxPeerFrameBytes (the link must be closed).
class PeerFrameDecoder {
 public:
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  Result<std::optional<std::string>> next();
  std::size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  std::size_t consumed_ = 0;
};

// host and port of "host:port" (the last ':'); nullopt when malformed.
std::optional<std::pair<std::string, std::string>> split_host_port(std::string_view address);

struct PeerLinkStats {
  std::uint64_t connects = 0;  // connections made (hello sent)
  std::uint64_t failures = 0;  // connections that failed or broke
  std::uint64_t frames = 0;    // entries written
  std::uint64_t dropped = 0;   // entries dropped (no link, unknown leader, queue full)
};

// The follower's side: a Forwarder that writes to the leader's client
// address. One link at a time: a forward to another leader closes the old
// link. A link is made when an entry is forwarded and none is open (not
// sooner than `retry` after a failure to the same server: in between,
// entries are dropped and ClusterNode sends them again). Entries wait in a
// queue while connecting and writing; above `max_queue_bytes` they are
// dropped.
class PeerLinkClient final : public Forwarder {
 public:
  // `client_addresses`: id -> "host:port" of every server (this one's host
  // is the local address links are made from, as the leader checks it).
  PeerLinkClient(asio::io_context& io, ServerId self, std::string secret,
                 std::map<ServerId, std::string> client_addresses,
                 std::chrono::milliseconds retry = std::chrono::milliseconds(200),
                 std::size_t max_queue_bytes = std::size_t{64} << 20);
  ~PeerLinkClient() override;
  PeerLinkClient(const PeerLinkClient&) = delete;
  PeerLinkClient& operator=(const PeerLinkClient&) = delete;

  void forward(ServerId leader_id, std::string entry) override;
  // A member's client address changed (SetMember) or was removed ("").
  void set_address(ServerId id, std::string client_address);
  // Closes the link (queued entries are dropped).
  void close();

  const PeerLinkStats& stats() const { return *stats_; }
  // The server the open (or opening) link goes to; 0 when none.
  ServerId linked_to() const;

  struct Link;

 private:
  asio::io_context& io_;
  ServerId self_;
  std::string secret_;
  std::map<ServerId, std::string> addresses_;
  std::chrono::milliseconds retry_;
  std::size_t max_queue_bytes_;
  std::shared_ptr<PeerLinkStats> stats_;
  std::shared_ptr<Link> link_;
  // When a link to each server last failed (shared with the links' handlers).
  std::shared_ptr<std::map<ServerId, std::chrono::steady_clock::time_point>> failed_at_;
  // When a failing link to each server was last logged (once in 30 s).
  std::shared_ptr<std::map<ServerId, std::chrono::steady_clock::time_point>> warned_at_;
};

// The leader's side of one accepted link, after its hello line was checked:
// reads frames from `socket` (beginning with `already_read`, the bytes the
// listener read past the hello line) and calls `on_entry(peer, entry)` for
// each (the server passes it to ClusterNode::accept_forwarded), then
// `on_close(peer, why)` once when the link ends (the peer closed: kOk; a bad
// frame: kProtocol; a socket error: kIoError) or close() is called. The
// server's listener gives a plain descriptor with socket.assign().
class PeerLinkReceiver : public std::enable_shared_from_this<PeerLinkReceiver> {
 public:
  using EntryHandler = std::function<void(ServerId peer, std::string entry)>;
  using CloseHandler = std::function<void(ServerId peer, Status why)>;

  static std::shared_ptr<PeerLinkReceiver> start(asio::ip::tcp::socket socket, ServerId peer, std::string already_read,
                                                 EntryHandler on_entry, CloseHandler on_close);
  // Ends the link; on_close runs with kCancelled if it had not run. Idempotent.
  void close();
  ServerId peer() const { return peer_; }
  std::uint64_t entries() const { return entries_; }

  PeerLinkReceiver(asio::ip::tcp::socket socket, ServerId peer, EntryHandler on_entry, CloseHandler on_close);

 private:
  void read();
  bool drain();  // hands on the whole entries buffered; false after a bad frame
  void finish(Status why);

  asio::ip::tcp::socket socket_;
  ServerId peer_;
  EntryHandler on_entry_;
  CloseHandler on_close_;
  PeerFrameDecoder decoder_;
  std::array<char, 65536> buffer_{};
  std::uint64_t entries_ = 0;
  bool closed_ = false;
};

}  // namespace netsem::cluster
