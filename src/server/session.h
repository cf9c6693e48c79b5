// Session: one client connection of netsemd, in either dialect (protocol v1
// or ACE), from accept to close: the network half of a session. It reads
// bytes, tells the dialect from the first ones, frames lines (v1) or tokens
// (ACE), hands each to the Dispatcher (dispatcher.h), which holds every verb
// and answers into the session's SessionState, and writes what comes back.
// It knows the server only through SessionHost.
//
// The socket is non-blocking and stays in the server's ReadySet (a
// level-triggered epoll set, net/ready_set.h) from accept to close, so a
// request costs no re-arming system call: the server calls on_ready() when
// it is readable (or writable while the peer lags). The session reads into
// one shared buffer, and only a trailing partial line is copied into the
// session, so an idle session costs a few hundred bytes. Answers are appended while a read is processed and written
// once per turn (SessionHost::end_turn), after the journal flush, so a
// pipelined batch costs one write; an answer that waits for the journal
// (Dispatcher::sendable_end) holds back the ones after it.
//
// LIST streams: its ITEM lines are produced a chunk at a time
// (Dispatcher::produce_list) while the unwritten output is below a low-water
// mark, and resumed as the socket drains (from flush()), so a table of any
// size is listed to a peer that reads, with a bounded buffer. While a LIST
// streams, the session reads no further requests (what it had read waits in
// `held_input_`), so the answers to later requests follow its END;
// completions of queued requests are written at once, between ITEM lines
// (they carry their own tag).
//
// TLS (use_tls): the bytes go through the connection's OpenSSL object,
// SSL_read and SSL_write on the same non-blocking descriptor, still watched
// by the ReadySet. A read takes whole TLS records only (at most 16 KiB each,
// never more than the room left in the buffer), so OpenSSL keeps no
// decrypted bytes back that the set could not report; the session is
// protocol v1 from its first byte (ACE is never offered over TLS).
//
// Lifetime: owned by shared_ptr; pending waits and the timer hold a reference,
// the Server's registry holds one until the session ends. Ending a session
// (end()) gives its permits back at once; the socket may linger a moment to
// drain (see end() and flush()).
//
// Thread safety: event-loop thread only.
#pragma once

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/unique_fd.h"
#include "core/dispatcher.h"
#include "core/peer_logs.h"
#include "core/session_state.h"
#include "net/ready_set.h"
#include "protocol/ace_codec.h"
#include "protocol/codec.h"
#include "server/session_host.h"
#include "server/tls_listener.h"

namespace netsem::server {

class Session final : public std::enable_shared_from_this<Session>, private SessionEvents {
 public:
  // Answers a peer has not read past this are dropped with the session: a
  // client that never reads must not grow the server without bound.
  static constexpr std::size_t kMaxOutputBytes = 4 << 20;

  // `fd`: the accepted socket (not Asio's); `ready`: the set it joins;
  // `key`: the connection's key in the set and the host's registry; `id`:
  // the session's id (the key on a single server, 0 on the replicated log
  // until the log opens the session); `address`: the peer's, IPv6 or
  // IPv4-mapped (SessionState::address).
  Session(SessionHost& host, Dispatcher& dispatcher, PeerLogs& logs, asio::io_context& io, ReadySet& ready, UniqueFd fd,
          SessionId key, SessionId id, std::string peer, const std::array<std::uint8_t, 16>& address);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Makes this a TLS session over `ssl` (its handshake done on `fd`), with
  // the client certificate's verified subject (or ""). REQUIRES: before
  // start().
  void use_tls(SslPtr ssl, std::string subject);
  // Makes this the session of an admin probe (admin_probe.h), a connection
  // over max_connections from admin_networks: only the lines
  // classify_probe_line lets through reach the dispatcher, and the first
  // that asks (CLUSTER STATUS, STATS) ends the session once answered. Any
  // other line, or `deadline` passing first, ends it with the limit line
  // (SessionHost::admin_probe_refused). `read`: what the server read of it
  // (its first line and what came with it), handled at start(). REQUIRES:
  // before start().
  void make_admin_probe(std::string read, Clock::time_point deadline);
  // Starts reading. REQUIRES: called once, right after construction.
  void start();
  // The socket is ready (ReadySet events: EPOLLIN, EPOLLOUT, EPOLLHUP,
  // EPOLLERR, EPOLLRDHUP). The caller ends the turn. True when the socket
  // may still be readable (ReadySet::ReadyHandler): see on_readable().
  bool on_ready(std::uint32_t events);

  SessionId id() const { return state_.id; }
  SessionId key() const { return key_; }
  const std::string& peer() const { return state_.peer; }
  bool closed() const { return stage_ == Stage::kClosed; }
  // The peer is not taking what is written (a writable wait is pending).
  bool write_waiting() const { return write_waiting_; }
  // This session's unwritten answers, as last accounted to the host.
  std::size_t accounted_output() const { return accounted_output_; }
  // Whether the host lists the session as waiting for the journal.
  bool held() const { return held_; }
  void set_held(bool held) { held_ = held; }

  // The server is stopping: tell a v1 peer why, then close.
  void shut_down();
  // Writes what the output holds (called by the server at the end of a
  // turn), up to the first answer that waits for the journal: the rest
  // waits, and the server flushes the session again once the journal has
  // written more.
  void flush();
  // Applies the session timeout anew (reload keeps sessions; start-up sets it).
  void arm_idle_timer();
  // Closes at once: permits released, nothing more written. A session still
  // open ends for `cause` (STATS session_ends_*).
  void close_now(stats::EndCause cause);
  // Schedules the session's output to be written at the end of the turn.
  void mark_dirty();

 private:
  enum class Stage : std::uint8_t {
    kOpen,      // reading requests
    kDraining,  // ended: flushing the last answers, then discarding input briefly
    kClosed,
  };

  // --- SessionEvents (from the dispatcher) ---
  void completion_added() override;
  void end(stats::EndCause cause, std::string_view reason) override;
  void timer_changed() override;
  void input_resumable() override;

  // Brings the socket's interest in the ReadySet in line with what the
  // session waits for: input while open (not behind a streaming LIST) or
  // draining, until the end of input; output while the peer lags.
  void update_interest();
  // One read; true when more may be waiting: it filled the buffer, or it
  // took data while `events` tell of an end of input still to be read.
  bool on_readable(std::uint32_t events);
  // on_readable() of a TLS session.
  bool on_readable_tls(std::uint32_t events);
  // The end of the peer's input (or a read error), with why, for the log.
  void on_input_end(const std::string& reason);
  // send()'s contract over the session's transport: bytes written, or -1
  // with errno (EAGAIN: no room now).
  ssize_t write_some(const char* data, std::size_t size);
  void on_timer();
  void arm_close_deadline(Clock::duration after);
  void arm_heartbeat();
  // Closes the session (permits released, no message) when more than
  // kMaxOutputBytes of answers wait unread; true when it did.
  // Also applies the server-wide cap, which may close this session or
  // another one.
  bool close_if_output_overflows();
  // Tells the host how many answer bytes this session now holds unwritten.
  void account_output();
  void consume(std::string_view data);
  // A server of a cluster: whether the first bytes are (so far) a `PEER `
  // line; when the line is whole, hands the connection over to the host
  // (closing this session). True while the bytes must wait for more.
  bool peer_line(std::string_view data);
  void handle_v1(std::string_view data);
  void handle_ace(std::string_view data);
  // After a LIST's END: handles the requests read behind it, then reads on.
  // Posted, not called from flush(): requests may make journal records,
  // which the server writes before any answer of the turn (end_turn).
  void resume_input();
  // Posts, once, the next step of a streaming LIST to a later turn: more of
  // it, or resume_input() after its END.
  void post_continue();
  void idle_deadline_check();
  // An admin probe's line: whether it goes to the dispatcher (else the
  // probe was refused).
  bool admit_probe_line(std::string_view line);
  // Ends an admin probe with the limit line.
  void refuse_probe();

  SessionHost& host_;
  Dispatcher& dispatcher_;
  PeerLogs& logs_;
  asio::io_context& io_;
  ReadySet& ready_;
  UniqueFd fd_;
  const SessionId key_;
  // Still possibly a follower's peer link (its first bytes match `PEER `).
  bool peer_candidate_ = false;
  SslPtr ssl_;  // TLS sessions only; reads and writes fd_
  // A TLS read must write first (a TLS 1.3 key update while the socket was
  // full): the session watches for room, then reads.
  bool tls_read_wants_write_ = false;
  SessionState state_;
  std::uint32_t interest_ = 0;  // what the ReadySet watches for now
  bool registered_ = false;     // in the ReadySet
  bool broken_ = false;         // hung up or in error while not reading: no longer watched

  Stage stage_ = Stage::kOpen;
  bool dirty_ = false;          // in the server's list of sessions to flush
  bool held_ = false;           // in the server's list of sessions waiting for the journal
  bool write_waiting_ = false;  // the peer lags: waiting for the socket to be writable
  bool input_done_ = false;     // end of input or a read error seen: nothing more to read
  bool resume_posted_ = false;  // a flush or resume_input() is posted for a streaming LIST
  bool input_ended_ = false;    // end of input seen while a LIST streamed
  // Bytes came while input was held: the socket is no longer watched for
  // reading until resume_input() (update_interest()).
  bool reads_paused_ = false;

  std::string first_bytes_;           // what arrived before the dialect was known
  protocol::LineFramer framer_;       // v1: a line that spans reads
  protocol::AceParser ace_;           // ACE: tokens that span reads
  std::size_t accounted_output_ = 0;  // this session's share of the host's output total
  std::string held_input_;            // bytes read behind a streaming LIST, not yet handled
  // The idle timer fired while a command waited for the log: the wait does
  // not count against the client (idle_deadline_check).
  bool waited_for_log_ = false;

  // An admin probe's (make_admin_probe): its deadline, whether a line that
  // asks was handed on (no line after it is), what was read before start().
  bool admin_probe_ = false;
  bool probe_asked_ = false;
  Clock::time_point probe_deadline_{};
  std::string probe_read_;

  std::optional<asio::steady_timer> timer_;  // idle timeout, ACE heartbeat, drain or probe deadline
};

}  // namespace netsem::server
