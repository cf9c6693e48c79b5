// The peer link: how a follower hands its hosted sessions' commands to the
// leader over TCP (docs/replication.md "Forwarding to the leader" and "The
// cluster node"). The follower (the linking server) connects to the
// leader's (the receiving server's) client address from its own client
// host and the two prove to each other that they hold the cluster secret,
// without sending it (HMAC-SHA256 over both sides' fresh nonces):
//   linking -> receiving   "PEER <F> LINK <L> <nonce F> SEALED"
//   receiving -> linking   "PEER <L> LINK-ANSWER <nonce L> <proof of L>"
//   linking -> receiving   "PEER <F> LINK-PROOF <proof of F>"
// then entries (replication::encode_entry bytes, NSRE), each sealed with
// AES-256-GCM under a key of the link's own (PeerFrameCipher: a frame
// altered, replayed, reordered or dropped on the way does not open, and
// the leader closes the link) and framed by its length as a little-endian
// u32. Nothing else comes back: the follower
// learns what was applied from its own replica, and sends again what was
// lost (ClusterNode's resends). The follower sends nothing of its clients'
// before the leader proved the secret, and the leader hands on nothing
// before the follower did.
//
// API:
//   peer_link_hello /               the link's set-up, made and checked
//   check_peer_hello,               (the leader's listener reads the hello
//   peer_link_proof,                as a client line, then hands the socket
//   peer_link_answer /              over to a PeerLinkReceiver, which
//   verify_link_answer,             answers and checks the proof)
//   peer_link_proof_line /
//   verify_link_proof
//   peer_removal_notice /           the leader's word to a server it
//   check_removal_notice,           removed (a line alone on a connection
//   send_peer_line                  of its own, with an HMAC of what it
//                                   says), made, checked and sent
//   peer_secret_challenge /         the leader's question to a server it
//   check_secret_challenge,         would add: does it hold the cluster
//   secret_check_proof,             secret? (a challenge alone on a
//   peer_secret_proof,              connection, answered by an HMAC proof;
//   verify_secret_proof,            nothing secret on the wire)
//   ask_peer_line
//   frame_entry / PeerFrameDecoder  the framing, with no I/O
//   peer_link_key / PeerFrameCipher the sealing of the frames after the
//                                   set-up, with no I/O
//   PeerLinkClient                  a Forwarder over Asio: one link at a
//                                   time, to the leader named, reconnected on
//                                   demand; what cannot be sent is dropped
//   PeerLinkReceiver                the leader's side of one accepted link:
//                                   its set-up, then reads frames and hands
//                                   each entry on
//
// Defined in: peer_link.cc (the lines and the framing), peer_frame_cipher.cc
// (the sealing), peer_link_client.cc (PeerLinkClient), peer_line_exchange.cc
// (send_peer_line, ask_peer_line) and peer_link_receiver.cc
// (PeerLinkReceiver); peer_connect.h holds what the connecting ones share.
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

// How long a link's set-up may take on either side, from the connect (the
// linking server) or from the hello (the receiving server) to the last
// line of the set-up; a link not set up by then is closed.
inline constexpr std::chrono::milliseconds kPeerLinkSetUpTimeout{2000};

// Size of a nonce and of a proof (HMAC-SHA256), in bytes (64 hex digits
// each), for the link's set-up, the removal notice and the secret check.
inline constexpr std::size_t kPeerNonceBytes = 32;
inline constexpr std::size_t kPeerProofBytes = 32;

// A fresh nonce from OpenSSL's CSPRNG (RAND_bytes), in lowercase hex;
// kInternal when the generator fails.
Result<std::string> new_peer_nonce();

// "PEER <from> LINK <to> <nonce> SEALED\n": server `from`'s hello to server
// `to`, with its fresh nonce; SEALED: the frames after the set-up are
// sealed (PeerFrameCipher).
std::string peer_link_hello(ServerId from, ServerId to, std::string_view nonce);

struct LinkHello {
  ServerId from = 0;  // the linking server
  ServerId to = 0;    // the server it means to reach (this one)
  std::string nonce;  // its nonce (64 lowercase hex digits)
};

// Checks a hello line (without its "\n"; a trailing "\r" is ignored) from
// a connection whose remote address is `remote_host` (as
// asio::ip::address::to_string gives it): the word PEER, an id that is in
// `client_addresses` (id -> "host:port") and not `self`, the remote address
// equal to that server's configured host (kDenied otherwise, saying which
// check failed), LINK, `self` as the server meant (kDenied), a nonce of
// 64 lowercase hex digits and SEALED (kProtocol). The hello of a netsemd
// older than the sealed frames, the same without SEALED, is refused
// (kDenied: its frames would be in clear, and this server's would be taken
// for entries there). The hello of a netsemd older than the link's
// challenge, "PEER <id> <secret>", is refused (kDenied) without its secret
// being looked at: it carries the secret in clear. kProtocol for a line
// that is not a PEER line.
Result<LinkHello> check_peer_hello(std::string_view line, std::string_view remote_host, ServerId self,
                                   const std::map<ServerId, std::string>& client_addresses);

// Which side of a link a proof is made by.
enum class LinkSide { kLinking, kReceiving };

// The message a link's proof is the HMAC of (exposed for the known-answer
// test), domain-separated from the secret check's and the removal notice's
// and by direction: "netsem peer link v1\nproof: <linking server to
// receiving server | receiving server to linking server>\nlinking server
// <F>\nreceiving server <L>\nlinking nonce <nonce F>\nreceiving nonce
// <nonce L>\n".
std::string peer_link_message(LinkSide by, ServerId linking, ServerId receiving, std::string_view linking_nonce,
                              std::string_view receiving_nonce);

// HMAC-SHA256(secret, peer_link_message(...)) in lowercase hex.
std::string peer_link_proof(std::string_view secret, LinkSide by, ServerId linking, ServerId receiving,
                            std::string_view linking_nonce, std::string_view receiving_nonce);

// "PEER <receiving> LINK-ANSWER <receiving nonce> <proof>\n": the receiving
// server's answer to a hello, with its own fresh nonce and its proof.
std::string peer_link_answer(ServerId receiving, std::string_view receiving_nonce, std::string_view proof);

// The answer `line` (without its newline) to the hello `linking` sent to
// `receiving` with `linking_nonce`: the receiving server's nonce when the
// line is from `receiving` and its proof holds (compared in constant time:
// CRYPTO_memcmp); kDenied when it is another server's or its proof does
// not match (another secret, or an impostor at that address); kProtocol
// when the line is no "PEER <id> LINK-ANSWER <64 hex> <64 hex>".
Result<std::string> verify_link_answer(std::string_view line, std::string_view secret, ServerId linking,
                                       ServerId receiving, std::string_view linking_nonce);

// "PEER <linking> LINK-PROOF <proof>\n": the linking server's proof, sent
// once the receiving server's answer proved the secret.
std::string peer_link_proof_line(ServerId linking, std::string_view proof);

// The linking server's proof `line` (without its newline): OK when it is
// from `linking` and its proof holds for both nonces (CRYPTO_memcmp);
// kDenied when it does not match; kProtocol for another form.
Status verify_link_proof(std::string_view line, std::string_view secret, ServerId linking, ServerId receiving,
                         std::string_view linking_nonce, std::string_view receiving_nonce);

// The leader's word to a server whose removal from the configuration just
// committed: "PEER <from> REMOVED <removed-id> <index> <mac>\n" (<index>:
// the leader's committed configuration's; <mac>: removal_notice_mac(), an
// HMAC-SHA256 keyed by the cluster secret over what the line says), alone
// on a connection of its own to the removed server's client address.
// libraft 0.15 stops replicating to a server the moment its leader proposes
// its removal, so the removed one never applies that entry; this line is
// how it learns it and stops (docs/replication.md, "Adding and removing
// servers"). A replay of it can only tell a server what was true at that
// index: the server ignores it when a newer configuration holds it, and
// stops on it only once no leader has spoken to it for an election timeout
// (ClusterRuntime), as for a committed configuration without it.
std::string peer_removal_notice(ServerId from, std::string_view secret, ServerId removed, std::uint64_t index);

// "netsem peer removal notice v1\nfrom <from>\nremoved <removed>\nindex <index>\n".
std::string removal_notice_message(ServerId from, ServerId removed, std::uint64_t index);
// HMAC-SHA256(secret, removal_notice_message(...)) in lowercase hex.
std::string removal_notice_mac(std::string_view secret, ServerId from, ServerId removed, std::uint64_t index);

struct RemovalNotice {
  ServerId from = 0;        // the server that sent it (the leader then)
  ServerId removed = 0;     // the server removed
  std::uint64_t index = 0;  // its configuration index
};

// nullopt when `line` is no removal notice; else the notice, or why it is
// refused: its sender checked as check_peer_hello checks a hello's
// (kDenied), its MAC (kDenied when it does not match, compared in constant
// time), kProtocol for a malformed rest, kDenied for the form of a netsemd
// older than the MAC, "PEER <id> <secret> REMOVED <id> <index>" (its secret
// is not looked at).
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
// id, the id asked for, the answering server's id, the client address (the
// one the leader asked at; the answering server puts its own, from its
// server.N line, so a proof relayed from another address does not hold:
// audit27) and the direction. The leader recomputes it and compares in
// constant time (verify_secret_proof).
// A server with another secret, that would be added as a voter whose peer
// links and removal notice every other server refuses, is so never added
// (docs/replication.md, "Adding and removing servers"). The server checks
// only who asks (check_secret_challenge: a server it knows, from that
// server's host); it cannot tell the leader's secret, and acts on nothing
// (docs/security.md says why that is enough). The 1.2 proposal's first
// form, "PEER <id> <secret> CHECK <added-id>", sent the secret in clear: a
// server of this build refuses to answer it.

// "PEER <leader> CHALLENGE <added> <nonce>\n".
std::string peer_secret_challenge(ServerId leader, ServerId added, std::string_view nonce);

// The message a proof is the HMAC of (exposed for the known-answer test):
// "netsem peer secret check v2\nproof: added server to leader\nleader <leader>\n
//  asked <asked>\nserver <answering>\nnonce <nonce>\naddress <address>\n".
std::string secret_check_message(ServerId leader, ServerId asked, ServerId answering, std::string_view nonce,
                                 std::string_view address);

// HMAC-SHA256(secret, secret_check_message(...)) in lowercase hex.
std::string secret_check_proof(std::string_view secret, ServerId leader, ServerId asked, ServerId answering,
                               std::string_view nonce, std::string_view address);

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
// with `nonce` for server `asked` at client `address`: the answering
// server's id when its proof holds for that id (compared in constant time:
// CRYPTO_memcmp); kDenied when the proof does not match (another secret, or
// another client address in its own server.N line); kProtocol when the
// line is no "PEER <id> PROOF <64 hex digits>".
Result<ServerId> verify_secret_proof(std::string_view line, std::string_view secret, ServerId leader, ServerId asked,
                                     std::string_view nonce, std::string_view address);

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
// frame length of 0 or over `max_frame_bytes` (the link must be closed):
// kMaxPeerFrameBytes for entries, kMaxSealedPeerFrameBytes for a link's
// sealed frames.
class PeerFrameDecoder {
 public:
  explicit PeerFrameDecoder(std::size_t max_frame_bytes = kMaxPeerFrameBytes) : max_(max_frame_bytes) {}
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  Result<std::optional<std::string>> next();
  std::size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::size_t max_;
  std::string buffer_;
  std::size_t consumed_ = 0;
};

// --- the sealing of the frames after the set-up ---
//
// Once a link is set up, every frame on it is sealed: the bytes of a
// forwarded entry carry session names, labels and the digests of the
// resume secrets of OPENs and RESUMEs (a guess can be checked against one),
// and the link is plain TCP, so without it an on-path attacker could read
// them, and alter, inject, replay or drop frames (the set-up proves who is
// at each end, not what comes after it).
//
// Keys: one per direction and per link, peer_link_key(): HMAC-SHA256 keyed
// by the cluster secret over peer_link_key_message(), which names the
// direction, both servers and both set-up nonces, and is domain-separated
// from the proofs (which go on the wire) by its first line. Both nonces are
// fresh for every set-up (RAND_bytes, 32 bytes each; the receiving server's
// is its own, so a follower that repeated its nonce still gets new keys),
// so no two links share a key.
//
// Frame: "<n: u32 little-endian><ciphertext: n - 16 bytes><tag: 16 bytes>",
// AES-256-GCM of the entry with the 4 length bytes as additional
// authenticated data and a 96-bit nonce of 4 zero bytes then the frame's
// sequence number (a u64, big-endian: 0 for the first frame of the link in
// that direction, then 1, 2, ...), which both ends count and neither sends.
// A nonce never repeats under a key: the counter only goes up within a link
// (a link that would wrap it is closed; 2^64 frames are never reached), and
// every link has keys of its own. So a replayed or reordered frame is
// opened with another sequence number than it was sealed with, a dropped
// frame moves every later one, an altered byte (length, ciphertext or tag)
// breaks the tag: none opens, and the link is closed.
//
// Why AES-256-GCM: an AEAD (confidentiality and integrity in one pass, one
// key), with hardware support (AES-NI, PCLMULQDQ) on the servers netsemd
// runs on, in the OpenSSL that netsemd links for TLS already (EVP); its
// one hazard, a repeated nonce, is ruled out by the counter above.

inline constexpr std::size_t kPeerKeyBytes = 32;  // AES-256
inline constexpr std::size_t kPeerTagBytes = 16;  // GCM's full tag
// The largest sealed frame accepted (its length field): the largest entry
// and its tag.
inline constexpr std::size_t kMaxSealedPeerFrameBytes = kMaxPeerFrameBytes + kPeerTagBytes;

using PeerLinkKey = std::array<unsigned char, kPeerKeyBytes>;

// The message a link's key for the frames `sender` sends is the HMAC of
// (exposed for the known-answer test): "netsem peer link key v1\nframes:
// <linking server to receiving server | receiving server to linking
// server>\nlinking server <F>\nreceiving server <L>\nlinking nonce <nonce
// F>\nreceiving nonce <nonce L>\n".
std::string peer_link_key_message(LinkSide sender, ServerId linking, ServerId receiving, std::string_view linking_nonce,
                                  std::string_view receiving_nonce);

// HMAC-SHA256(secret, peer_link_key_message(...)); all zero only when
// OpenSSL fails (PeerFrameCipher then refuses to work).
PeerLinkKey peer_link_key(std::string_view secret, LinkSide sender, ServerId linking, ServerId receiving,
                          std::string_view linking_nonce, std::string_view receiving_nonce);

// One direction of one link: seals the frames it sends, or opens those it
// receives, counting their sequence numbers. Once open() failed it opens
// nothing more (the link is to be closed).
class PeerFrameCipher {
 public:
  enum class Mode { kSeal, kOpen };
  PeerFrameCipher(Mode mode, const PeerLinkKey& key);
  ~PeerFrameCipher();
  PeerFrameCipher(const PeerFrameCipher&) = delete;
  PeerFrameCipher& operator=(const PeerFrameCipher&) = delete;

  // The sealed frame of `entry`, length field and all, with the next
  // sequence number. REQUIRES: Mode kSeal, 1 <= entry.size() <=
  // kMaxPeerFrameBytes. kInternal when OpenSSL fails or the counter would
  // wrap (the link is to be closed).
  Result<std::string> seal(std::string_view entry);
  // The entry of a sealed frame's `body` (what a PeerFrameDecoder with the
  // bound kMaxSealedPeerFrameBytes gives: the frame without its length
  // field) for the next sequence number; kDenied when it does not open
  // (altered, replayed, reordered, after a dropped frame, or sealed under
  // another key), kProtocol when it is shorter than a tag and a byte.
  // REQUIRES: Mode kOpen.
  Result<std::string> open(std::string_view body);
  // The sequence number of the next frame.
  std::uint64_t sequence() const { return next_; }

 private:
  void set_nonce(std::uint64_t sequence);
  Mode mode_;
  void* context_ = nullptr;  // EVP_CIPHER_CTX, keyed once
  std::uint64_t next_ = 0;
  bool broken_ = false;
};

// host and port of "host:port" (the last ':'); nullopt when malformed.
std::optional<std::pair<std::string, std::string>> split_host_port(std::string_view address);

struct PeerLinkStats {
  std::uint64_t connects = 0;  // connections made (hello sent)
  std::uint64_t linked = 0;    // links set up (the leader's proof held)
  std::uint64_t failures = 0;  // connections that failed or broke
  std::uint64_t frames = 0;    // entries written
  std::uint64_t dropped = 0;   // entries dropped (no link, unknown leader, queue full)
};

// When a link to a server last failed in the log, and whether its leader's
// answer failed to prove the secret then (PeerLinkClient).
struct PeerLinkWarning {
  std::chrono::steady_clock::time_point at;
  bool unproven = false;
};

// The follower's side: a Forwarder that writes to the leader's client
// address, once the leader's answer to its hello proved the secret (an
// impostor at that address gets the hello and nothing else). One link at a
// time: a forward to another leader closes the old
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
  // When a failing link to each server was last logged (once in 30 s, or
  // at once when it fails otherwise than it did then).
  std::shared_ptr<std::map<ServerId, PeerLinkWarning>> warned_at_;
};

// The leader's side of one accepted link, after its hello line was checked
// (check_peer_hello): answers it (peer_link_answer, with a fresh nonce and
// this server's proof), reads the linking server's proof line
// (verify_link_proof), beginning with `already_read` (the bytes the
// listener read past the hello line), all within kPeerLinkSetUpTimeout;
// then calls `on_linked(peer)` once, reads sealed frames, opens each
// (PeerFrameCipher, the linking server's key) and calls
// `on_entry(peer, entry)` for each (the server passes it to
// ClusterNode::accept_forwarded). `on_close(peer, why)` runs once when the
// link ends: before it was set up (kDenied: the proof did not match;
// kProtocol: not a proof line; kTimeout: none in time; kIoError: closed or
// a socket error; kInternal: no nonce), or after (the peer closed: kOk; a
// frame length of 0 or over kMaxSealedPeerFrameBytes, or a frame shorter
// than its tag: kProtocol; a frame that does not open: kDenied; a socket
// error: kIoError), or close() was called.
// The server's listener gives a plain descriptor with socket.assign().
class PeerLinkReceiver : public std::enable_shared_from_this<PeerLinkReceiver> {
 public:
  using EntryHandler = std::function<void(ServerId peer, std::string entry)>;
  using CloseHandler = std::function<void(ServerId peer, Status why)>;
  using LinkedHandler = std::function<void(ServerId peer)>;

  static std::shared_ptr<PeerLinkReceiver> start(asio::ip::tcp::socket socket, const LinkHello& hello, ServerId self,
                                                 std::string_view secret, std::string already_read,
                                                 EntryHandler on_entry, CloseHandler on_close,
                                                 LinkedHandler on_linked = {});
  // Ends the link; on_close runs with kCancelled if it had not run. Idempotent.
  void close();
  ServerId peer() const { return peer_; }
  // Whether the set-up is done (the peer proved the secret).
  bool linked() const { return linked_; }
  std::uint64_t entries() const { return entries_; }

  PeerLinkReceiver(asio::ip::tcp::socket socket, ServerId peer, EntryHandler on_entry, CloseHandler on_close,
                   LinkedHandler on_linked);

 private:
  void answer();
  void read_proof();
  bool take_proof();  // the proof line if it is whole in proof_line_; false once finished
  void read();
  bool drain();  // hands on the whole entries buffered; false after a bad frame
  void finish(Status why);

  asio::ip::tcp::socket socket_;
  asio::steady_timer set_up_timer_;
  ServerId peer_;
  EntryHandler on_entry_;
  CloseHandler on_close_;
  LinkedHandler on_linked_;
  // The set-up: this server's answer line, and the proof line expected.
  std::string answer_;
  std::string proof_line_;  // bytes read of the peer's proof line
  std::function<Status(std::string_view)> check_proof_;
  // Opens the linking server's frames (its direction's key, made with both
  // nonces at the answer; used once its proof held).
  std::unique_ptr<PeerFrameCipher> opener_;
  PeerFrameDecoder decoder_{kMaxSealedPeerFrameBytes};
  std::array<char, 65536> buffer_{};
  std::uint64_t entries_ = 0;
  bool linked_ = false;
  bool closed_ = false;
};

}  // namespace netsem::cluster
