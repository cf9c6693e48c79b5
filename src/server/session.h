// Session: one client connection of netsemd, in either dialect (protocol v1
// or ACE), from accept to close.
//
// The socket is non-blocking and driven by readiness waits: when it is
// readable the server reads into one shared buffer, and only a trailing
// partial line is copied into the session, so an idle session costs a few
// hundred bytes. Answers are appended to `out_` while a read is processed and
// written once per turn (Server::end_turn), after the journal flush, so a
// pipelined batch costs one write. session.cc holds the I/O and lifetime,
// v1_session.cc the protocol v1 verbs, ace_session.cc the ACE dialect.
//
// LIST streams: its ITEM lines are produced a chunk at a time while the
// unwritten output is below a low-water mark, and resumed as the socket
// drains (from flush()), so a table of any size is listed to a peer that
// reads, with a bounded buffer. While a LIST streams, the session reads no
// further requests (what it had read waits in `held_input_`), so the answers
// to later requests follow its END; completions of queued requests are
// written at once, between ITEM lines (they carry their own tag).
//
// Lifetime: owned by shared_ptr; pending waits and the timer hold a reference,
// the Server's registry holds one until the session ends. Ending a session
// (end()) gives its permits back at once; the socket may linger a moment to
// drain (see close_after_flush).
//
// Thread safety: event-loop thread only.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/ace_codec.h"
#include "protocol/codec.h"
#include "table/semaphore_table.h"

namespace netsem::server {

class Server;

class Session : public std::enable_shared_from_this<Session> {
 public:
  using Clock = std::chrono::steady_clock;
  // Answers a peer has not read past this are dropped with the session: a
  // client that never reads must not grow the server without bound.
  static constexpr std::size_t kMaxOutputBytes = 4 << 20;
  // A LIST produces ITEM lines while less than this is waiting to be
  // written, a chunk of about this much at a time.
  static constexpr std::size_t kStreamLowWater = 32 << 10;
  // A LIST whose peer takes none of its lines for this long (or for the
  // session timeout, when shorter) has stopped reading: it is closed and
  // its permits released.
  static constexpr std::chrono::seconds kStreamStallTime{30};
  // The detail of the LIMIT answer to a grant that found no fence reserved
  // (the contract has no code for a server-side I/O failure).
  static constexpr std::string_view kNoFenceDetail =
      "the server cannot reserve fences (its data directory fails to write); retry later";

  Session(Server& server, asio::ip::tcp::socket socket, SessionId id, std::string peer);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts reading. REQUIRES: called once, right after construction.
  void start();

  SessionId id() const { return id_; }
  const std::string& peer() const { return peer_; }
  protocol::Dialect dialect() const { return dialect_; }
  bool ended() const { return state_ != State::kOpen; }

  // A queued request of this session finished (granted, timed out, ...).
  void deliver(const Completion& completion);
  // The server is stopping: tell a v1 peer why, then close.
  void shut_down();
  // Writes what `out_` holds (called by the server at the end of a turn), up
  // to the first answer that depends on a journal record not yet written
  // (hold_from): the rest waits, so the session's answers stay in order,
  // and the server flushes it again once the journal has written more.
  void flush();
  // The answer that starts at `offset` in the output (and all after it)
  // may be sent only once the journal has written record `sequence`.
  void hold_from(std::size_t offset, std::uint64_t sequence) { holds_.push_back({offset, sequence}); }
  // Applies a new session timeout (reload keeps sessions; start-up sets it).
  void arm_idle_timer();

 private:
  enum class State : std::uint8_t {
    kOpen,      // reading requests
    kDraining,  // ended: flushing the last answers, then discarding input briefly
    kClosed,
  };
  enum class AceState : std::uint8_t { kAwaitAcquire, kQueued, kHolding };
  // A LIST in progress: where to resume. Its memory is bounded by the
  // longest name, whatever the size of the table.
  struct ListStream {
    std::string tag;
    std::string prefix;
    std::string last;  // the last name produced ("" before the first)
    std::uint64_t count = 0;
  };

  friend class Server;

  // --- I/O (session.cc) ---
  void wait_readable();
  void on_readable();
  void wait_writable();
  void on_timer();
  void mark_dirty();
  // Ends the session: gives back its permits and drops its queued requests,
  // then writes what is left and closes (after draining input a moment).
  void end(std::string_view reason);
  // Like end(), after writing `star_line` ("* ERR ...") to a v1 peer.
  void end_with_error(protocol::ErrorCode code, std::string_view message);
  void close_now();
  void arm_close_deadline(Clock::duration after);
  // Closes the session (permits released, no message) when more than
  // kMaxOutputBytes of answers wait unread; true when it did.
  // Also applies the server-wide cap (Server::shed_output_if_over_cap),
  // which may close this session or another one.
  bool close_if_output_overflows();
  // Tells the server how many answer bytes this session now holds unwritten.
  void account_output();
  void consume(std::string_view data);
  // The end of what flush() may write now: out_.size(), or the start of the
  // first answer whose journal records are not yet answerable.
  std::size_t sendable_end();
  // Produces the next chunk of the LIST in progress, and its END when it is
  // done; false when there was nothing to produce.
  bool produce_list();
  // After a LIST's END: handles the requests read behind it, then reads on.
  // Posted, not called from flush(): requests may make journal records,
  // which the server writes before any answer of the turn (end_turn).
  void resume_input();
  // Posts, once, the next step of a streaming LIST to a later turn: more of
  // it, or resume_input() after its END.
  void post_continue();
  void idle_deadline_check();
  Clock::duration idle_timeout() const;

  // --- protocol v1 (v1_session.cc) ---
  void handle_v1(std::string_view data);
  // One line: false for an empty line, which is not a request (nor activity).
  bool handle_v1_line(std::string_view line);
  // The request parsed into request_.
  void handle_v1_request();
  void handle_take(TakeMode mode);
  void start_list(std::string_view tag);
  void answer_error(std::string_view tag, protocol::ErrorCode code, std::string_view detail = {});
  void append_stats(std::string_view tag);

  // --- ACE (ace_session.cc) ---
  void handle_ace(std::string_view data);
  void deliver_ace(const Completion& completion);
  void ace_heartbeat();
  void write_token(std::string_view token);

  Server& server_;
  asio::ip::tcp::socket socket_;
  const SessionId id_;
  const std::string peer_;
  std::string label_;  // HELLO label, for logs

  State state_ = State::kOpen;
  protocol::Dialect dialect_ = protocol::Dialect::kUndecided;
  AceState ace_state_ = AceState::kAwaitAcquire;
  bool table_open_ = false;     // the table knows this session
  bool quit_ = false;           // QUIT seen: ignore the rest of the batch
  bool dirty_ = false;          // in the server's list of sessions to flush
  bool held_ = false;           // in the server's list of sessions waiting for the journal
  bool write_waiting_ = false;  // a writable wait is pending
  bool read_waiting_ = false;   // a readable wait is pending
  bool resume_posted_ = false;  // a flush or resume_input() is posted for a streaming LIST
  bool input_ended_ = false;    // end of input seen while a LIST streamed

  std::string first_bytes_;      // what arrived before the dialect was known
  protocol::LineFramer framer_;  // v1: a line that spans reads
  std::string out_;              // answers not yet written
  // Where answers that depend on unwritten journal records start in out_.
  struct AnswerHold {
    std::size_t offset = 0;
    std::uint64_t sequence = 0;
  };
  std::vector<AnswerHold> holds_;
  std::size_t out_sent_ = 0;
  std::size_t accounted_output_ = 0;  // this session's share of Server's output total
  protocol::Request request_;         // reused for every line: no allocation per request
  protocol::AceParser ace_;
  std::string ace_name_;  // the one name an ACE session asks for
  std::optional<ListStream> list_;
  std::string held_input_;  // bytes read behind a streaming LIST, not yet handled

  Clock::time_point last_activity_;
  std::optional<asio::steady_timer> timer_;  // idle timeout, ACE heartbeat or drain deadline
};

}  // namespace netsem::server
