// Connection: the one protocol v1 connection a Client shares between all its
// threads, driven by an I/O thread of its own.
//
// API: Connection::start() launches the I/O thread, which connects to the
// first reachable server of the list (each attempt, name lookup included,
// bounded by connect_timeout: see resolver.h), says HELLO, learns the
// session timeout (LEASE, proposed 1.2, else STATS) and then serves the
// session: it writes what callers queued with send(), pings when the line
// has been quiet for a sixth of the session timeout, and hands each answer
// to the Call whose tag it carries. Sessionless (ClientOptions::sessionless,
// for netsem cluster): a LEASE in HELLO's place, no STATS, RESUMABLE or
// LEADER, so that a cluster's server that knows no leader answers too.
//
// The lease: with a session timeout T, the server cannot end the session
// before T after it read the last request, so before T after the client sent
// the last request that was answered (`lease_from_`). When nothing sent since
// has been answered T/2 after it, the session ends ("lease lapsed") and its
// permits are lost with a stop-by time of lease_from_ + 0.9 T - margin
// (lease_stop_by): the work under them must have stopped by then, before the
// server can grant them again even if its clock runs 10 % slower than ours.
// The lapsed session's socket stays open, unread and silent, until that
// stop-by time (`lingering_`), while the client reconnects on a new one: a
// server that was only frozen and wakes before T reads no close, so it ends
// the session no earlier than T after the last request it read, or than
// stop_by when the socket closes. A caller waits on its own
// Call (wait()), so no call ever blocks another. When the session ends (EOF,
// a socket error, a `* ERR` line, a request unanswered for request_timeout,
// or stop()) every pending Call fails with kUnavailable or kShutdown, every
// remote permit registered on that session is marked lost, and the thread
// reconnects with exponential backoff. While it has no session send() returns
// nullptr with why (Unsent), as the last round of connection attempts
// decided. A round is under way (the first, or the one after a session's
// end): the caller waits for it (Unsent::wait). No server could be reached
// at all: the client is "in fallback" and the Client serves names locally.
// A server answered but refused the session (DENIED, AUTH, LIMIT, or a
// protocol it does not speak) and none served it, or this process lacked
// the descriptors to try: the refusal comes with the nullptr, and the Client
// fails its calls with that instead of falling back, since a server that
// answers is not an outage (a mistake in an allow-list must not quietly turn
// a fleet-wide limit into a per-host one). The servers it reached accepted
// the connection and did not answer in time (silent: busy, electing a
// leader, syncing a slow disk): not an outage either, since they may hold
// permits, so the calls wait for a round that decides (Unsent::wait). A
// silent attempt's connection is kept open with its handshake (parked_), and
// the next round's attempt to that server waits on it instead of connecting
// anew: one connection per client in a frozen server's accept queue or a
// stalled cluster's session slots, not one per round.
//
// Resuming (proposed 1.2; docs/client.md, "Resuming the session"): the
// handshake also sends RESUMABLE and LEADER. When the connection of a
// resumable session ends without a word (EOF, a reset, `* ERR SHUTDOWN`,
// or `* ERR KICKED resumed on another connection`: a late RESUME of the
// client's own moved the session, rule 11), the session is not ended: its
// calls wait while the thread sends RESUME on new connections (the last
// known leader, then the servers in order) until the lease's end; once
// resumed, the calls of the old connection are settled from MINE (kept,
// completed, re-sent or failed) and the session goes on, same number, same
// permits. A silent RESUME attempt's connection
// is kept for the next attempt to its server within that resume, as a
// round's (rule 10). A refusal ends it as above.
//
// TLS (ClientOptions::tls): after the TCP connect, a TLS handshake bounded
// by connect_timeout, then HELLO and everything else inside TLS. A
// handshake that fails on a certificate or an alert (ours: the server's
// certificate does not verify or does not name the server; the server's: it
// wants a client certificate we lack, or does not take ours, which TLS 1.3
// says only at the first read, so during HELLO) is a refusal, kDenied, and
// never leads to fallback; a connection closed or timed out during the
// handshake is an outage like a closed port; one that times out on an open
// connection is silent, as for HELLO.
//
// A session is numbered (session()): a Call and a remote permit belong to the
// session that sent or granted them, and a request tied to an old session is
// refused rather than sent to a new one that never heard of it.
//
// The files, by concern: connection.cc, the callers' side (start, stop,
// send, wait, permits) and the session's request/answer path (serve,
// dispatch, the socket's reads and writes); connection_rounds.cc, the I/O
// thread's loop (run): the rounds of attempts, a session's beginning and
// end, fallback, backoff and the lingering sockets, and the callers' wait
// for the next round (await_session); connection_attempt.cc, one attempt on
// one server (connect, TLS handshake, session handshake);
// connection_silent.cc, servers that accept and do not answer (rules 8 to
// 10: sticky silence, the attempts kept open); connection_resume.cc, the
// resume (RESUME and its handshake, LEADER); connection_settle.cc, what the
// session holds and the settling of its calls from MINE. A Call and its Reply
// (call.h) are what a caller waits on and the I/O thread completes; an
// Endpoint (endpoint.h, endpoint.cc), a server's address. socket_errors.h
// says what a socket's error means, for those that read one. A new member goes to the file of its concern; one that
// serve() or dispatch() calls for every request stays in connection.cc with them (one translation unit, so it can be
// inlined).
//
// Thread safety: every public method from any thread; the I/O thread's own
// state is marked "loop only".
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "client/call.h"
#include "client/endpoint.h"
#include "client/local_semaphores.h"
#include "client/permit_state.h"
#include "client/resolver.h"
#include "client/tls_client.h"
#include "netsem/client_options.h"
#include "netsem/status.h"
#include "protocol/codec.h"

namespace netsem::client {

// When the work under the permits of a lapsed lease must have stopped: 0.9 of
// the session timeout `timeout` after `lease_from` (a server clock up to 10 %
// slower than ours still measures less than the whole timeout by then), less
// a margin for the stopping itself (a twentieth of it, at most 250 ms).
std::chrono::steady_clock::time_point lease_stop_by(std::chrono::steady_clock::time_point lease_from,
                                                    std::chrono::milliseconds timeout);

// Shared by the Connection's files. The milliseconds from now until
// `deadline`, as poll() takes them: 0 once it has passed, at most a day.
int millis_until(std::chrono::steady_clock::time_point deadline);
// The message of `* ERR KICKED` to a connection whose session another took
// with RESUME (docs/protocol.md).
inline constexpr std::string_view kResumedElsewhere = "resumed on another connection";
// Why a read ended when the server closed the connection (an EOF).
inline constexpr std::string_view kClosedByServer = "the server closed the connection";
// At most `max` bytes of a peer's line, control bytes shown as '?', for
// messages and logs.
std::string printable(std::string_view text, std::size_t max = 100);

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  struct Counters {
    bool connected = false;
    std::string server;
    std::uint64_t connects = 0;
    std::uint64_t losses = 0;
    std::uint64_t fallback_entries = 0;
    std::uint64_t fallback_exits = 0;
    // Why the last round of connection attempts failed, server by server
    // ("127.0.0.1:53559: Connection refused"); empty once a session began.
    std::string unreachable;
    // Not connected, and the last round was silent (silent()).
    bool silent = false;
    // While connected: what the server's HELLO answer said, the protocol
    // version it speaks (1.0 or 1.1) and this session's id; zeros otherwise.
    int protocol_major = 0;
    int protocol_minor = 0;
    std::uint64_t session_id = 0;
    // Sessions resumed on a new connection after theirs broke (RESUME).
    std::uint64_t resumes = 0;
  };

  // Starts the I/O thread. `lookup` resolves host names (tests stand in a
  // slow DNS). REQUIRES: !servers.empty().
  // `tls`: the TLS contexts when options.tls is on (RenewingTlsClient::make),
  // else nullptr; each connection attempt takes its current() one.
  static std::shared_ptr<Connection> start(const ClientOptions& options, std::vector<Endpoint> servers,
                                           LookupFunction lookup = system_lookup(),
                                           std::shared_ptr<RenewingTlsClient> tls = nullptr);
  // Stops the I/O thread if stop() was not called.
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Ends the session (its permits are marked lost, its calls fail) and joins
  // the I/O thread; afterwards send() always returns nullptr. Idempotent.
  void stop();
  // Waits until the first round of connection attempts has succeeded or
  // failed, at most `timeout`.
  void wait_first_round(std::chrono::milliseconds timeout);

  bool connected() const;
  // Whether the last round of connection attempts reached only servers
  // that accepted the connection and did not answer (no session since).
  bool silent() const;
  Counters counters() const;
  bool on_io_thread() const { return std::this_thread::get_id() == thread_id_.load(); }

  // Why send() found no session, read under the lock that decided it, so
  // that the caller acts on one round's outcome, never on a later round's.
  struct Unsent {
    // A later round of connection attempts decides: await_session(after)
    // waits for it. Either the connection is between sessions (the last
    // session, numbered `after`, ended and no round of connection attempts
    // has ended since, so the I/O thread's round in progress may still reach
    // a server), or no round has ended yet (the first is under way), or the
    // last round reached only servers that accepted the
    // connection and did not answer (`silent`): not an outage, so the call
    // waits for a round that decides, bounded by its own timeout or by
    // request_timeout (docs/client.md, "A server that accepts and does not
    // answer"). False otherwise: the last round reached no server, or only
    // servers that refused (below); never connected; or stopping.
    bool wait = false;
    std::uint64_t after = 0;
    // With `wait`: the last round's silence (kUnavailable, naming the
    // servers), OK while between sessions.
    Status silent;
    // Without `wait`: non-OK (kDenied, kLimit or kProtocol) when the last
    // round reached a server that refused the session and none served it,
    // or kIoError when this process lacked the descriptors to try one: the
    // answer instead of fallback; OK when it reached no server at all.
    Status refusal;
  };

  // Queues a request on the current session, or on `session` only while
  // that is still the current one: `encode(line, tag)` appends the whole
  // request line for `tag` with one of the codec's encoders (protocol/
  // requests.h), so no line is formatted by hand. nullptr when there is no
  // such session. The line is built in one buffer sized for a usual request:
  // a call allocates it once. `may_wait`: see Call::may_wait.
  // `unsent` (with session 0): why nullptr was returned (see Unsent).
  template <typename Encode>
  std::shared_ptr<Call> send(Encode&& encode, std::uint64_t session = 0, bool may_wait = false,
                             Unsent* unsent = nullptr) {
    std::string tag = next_tag();
    std::string line;
    line.reserve(kLineReserve);
    encode(line, std::string_view(tag));
    return queue(std::move(tag), std::move(line), session, may_wait, unsent);
  }
  // Blocks until the call has its final answer (the I/O thread guarantees
  // one: a session that ends fails its calls).
  static Reply wait(Call& call);

  // After the session numbered `after` ended (a Call's `session`), or while
  // the last round was silent (Unsent::wait): waits for what the I/O
  // thread's next connection attempts find. kServed: a later session
  // serves, its number in `session` (it may end again before a send);
  // kNoServer: the last round of attempts, after `after` ended and after
  // every later session, reached no server, or only servers that refused
  // the session (that round's refusal in `why`, OK when no server answered
  // at all), as for a request made while no server is up; a round that
  // reached only silent servers (they accepted the connection and did not
  // answer) decides nothing, and the wait goes on; kSilent once
  // `silent_until` has passed and the last round was silent (`why` says so,
  // kUnavailable); kTimedOut at `until` (`why`: the last round's silence
  // in a few words, OK if it was not silent); kCancelled once `cancelled()` says so (checked
  // when woken: wake_waiters()); kStopped after stop().
  enum class NextSession { kServed, kNoServer, kSilent, kTimedOut, kCancelled, kStopped };
  NextSession await_session(std::uint64_t after, std::optional<std::chrono::steady_clock::time_point> until,
                            std::optional<std::chrono::steady_clock::time_point> silent_until,
                            const std::function<bool()>& cancelled, std::uint64_t& session, Status& why);
  // Wakes the await_session() calls (a cancel token fired).
  void wake_waiters();

  // Remote permits held on a session, marked lost when it ends. A permit
  // whose session has already ended is marked lost at once.
  void register_permit(const std::shared_ptr<PermitState>& permit);
  void unregister_permit(const PermitState* permit);

 private:
  struct Parked;  // a silent attempt's connection, kept open (rules 9 and 10)
  Connection(const ClientOptions& options, std::vector<Endpoint> servers, LookupFunction lookup,
             std::shared_ptr<RenewingTlsClient> tls);
  // Room for a request line with a name of a few dozen bytes.
  static constexpr std::size_t kLineReserve = 96;
  // send()'s second half: queues the line built for `tag`.
  std::shared_ptr<Call> queue(std::string tag, std::string line, std::uint64_t session, bool may_wait, Unsent* unsent);
  void run();
  // A connected non-blocking socket, or -1 (also when stopping), with the
  // reason in attempt_failure_. Bounded by connect_timeout, and by `until`
  // when that comes first (a resume ends with the lease).
  int connect_to(const Endpoint& endpoint, std::optional<std::chrono::steady_clock::time_point> until = std::nullopt);
  // After a failed attempt to `endpoint` of a round: rule 8. A silent
  // attempt starts the server's streak; a connect that got no reply
  // (no_reply: timed out, or EHOSTUNREACH/ENETUNREACH: its host did not
  // answer ARP, or a router could not reach it), a kept attempt's socket
  // that ended so (kept_timed_out), or a name lookup cut at connect_timeout
  // (a slow resolver) counts as silent too (attempt_silent_, and
  // attempt_failure_ says for how long still) within T, the session timeout
  // last learned, after the end of the streak's first silent attempt, or for
  // the whole streak when no T is known; any other outcome but this
  // process's own shortage ends the streak.
  void sticky_silence(const Endpoint& endpoint);
  // HELLO, AUTH, LEASE and STATS; false when the server refuses or does not answer in
  // time (attempt_silent_), with the reason in attempt_failure_, and in attempt_refusal_ when
  // the server answered with a refusal (a HELLO answer that parse_hello
  // cannot read, or of a major version other than 1, is one: kProtocol).
  // On success `hello` holds the server's version and the session id.
  // Bounded by connect_timeout from now; on a kept attempt (rule 9:
  // handshake_.kept) it goes on where the last round left it.
  bool handshake(int fd, const Endpoint& endpoint, protocol::HelloAnswer& hello);
  // The TLS handshake on a connected socket (ssl_ made here, or kept with a
  // parked attempt); false with the reason in attempt_failure_, and a kDenied
  // refusal in attempt_refusal_ when it failed on a certificate or an alert.
  // Bounded like connect_to.
  bool tls_handshake(int fd, const Endpoint& endpoint,
                     std::optional<std::chrono::steady_clock::time_point> until = std::nullopt);
  // Why a silent attempt failed: `what` ("HELLO", "LEASE", "RESUME", "the
  // TLS handshake": the first request still unanswered) not answered within
  // `bound`, or, on a kept attempt (rules 9 and 10), not answered since the
  // connection was accepted, N ms ago; `answered` ("HELLO", "RESUME"), when
  // not empty, is the request before it that was.
  std::string silence(std::string_view what, std::chrono::milliseconds bound, std::string_view answered = {}) const;
  // Rule 9 (docs/client.md, "A server that accepts and does not answer"):
  // the attempt on `fd` to `endpoint` was silent; its connection is kept
  // open with the handshake's whole state (parked_) for the next round.
  void park(int fd, const Endpoint& endpoint);
  // The socket of the attempt parked for `endpoint`, its state back in the
  // live members (handshake_, ssl_, framer_, out_, ...), or -1 when none is
  // parked or rule 8's bound for it has passed (then it is closed, and the
  // server's streak forgotten: the round connects anew).
  int unpark(const Endpoint& endpoint);
  // Closes every parked attempt (quit_parked): a session began, or the I/O
  // thread ends.
  void close_parked();
  // The machinery rules 9 and 10 share. stash: the live connection's state
  // (ssl_, handshake_, framer_, out_, resume_shake_) moved into a Parked with
  // `fd`, the live members left as for no connection. take_kept: the
  // attempt kept in `kept` for `endpoint` back in the live members (as a
  // kept one: handshake_.kept), its socket; -1 when none. close_kept: closes
  // them all (plain close).
  Parked stash(int fd);
  int take_kept(std::unordered_map<std::string, Parked>& kept, const Endpoint& endpoint);
  static void close_kept(std::unordered_map<std::string, Parked>& kept);
  // Keepalive probes on a parked attempt's socket (rule 9, audit22 finding
  // A): a frozen server's kernel answers them, and it stays silent; a host
  // that forgot the connection resets it (the next round connects anew);
  // one that is gone lets it time out, or fail with EHOSTUNREACH once its
  // ARP entry failed (kept_timed_out).
  void keep_alive(int fd, const Endpoint& endpoint) const;
  // Undoes keep_alive when a session begins or is resumed on a kept
  // attempt's socket: it has then what a fresh connection has (no
  // keepalive, no TCP_USER_TIMEOUT), as any other session.
  void keep_alive_off(int fd, const Endpoint& endpoint) const;
  // A kept attempt's socket that ended with no reply from its host (`error`
  // no_reply: keepalive or TCP_USER_TIMEOUT ran out, or the host's ARP
  // entry failed under unacknowledged bytes) is taken as a connect timeout:
  // rule 8 decides whether it is still silent.
  void kept_timed_out(int error);
  // An attempt failed on this process's resources, not the server's: `what`
  // into attempt_failure_, and into attempt_local_ if the round has none yet.
  void local_failure(const Endpoint& endpoint, std::string what);
  // The refusal a failed TLS handshake or first read means (kDenied).
  Status tls_refusal(const Endpoint& endpoint, const std::string& why) const;
  // Reads what the socket (through ssl_ when TLS) has into framer_: >0
  // bytes read, 0 nothing yet, -1 end of stream or error (`why` says which;
  // tls_failed_ is set when it was a TLS error, such as an alert, and
  // read_errno_ to the socket's error, 0 for an end of stream).
  ssize_t read_available(int fd, std::string& why);
  // Serves the session until it ends; returns why it ended (and sets end_).
  Status serve(int fd);
  // How a connection ended, for the resume (docs/client.md, "Resuming").
  enum class End {
    kDropped,   // EOF, a reset, a socket error, a move (rule 11): the session may live on
    kShutdown,  // `* ERR SHUTDOWN`: likewise, on another server
    kSilent,    // request_timeout or the lease: no answer
    kFinal,     // KICK, a broken server, stop(): the session is over
    kQuiet,     // a request unanswered for T/6: move on (socket still open)
  };
  // kMoved (resume_handshake only): `* ERR KICKED resumed on another
  // connection` after RESUME's OK: another RESUME of ours took the session
  // (a kept attempt of this resume, or one given up earlier: rule 11).
  enum class Resumed { kResumed, kGone, kKicked, kServerGone, kBusy, kLapsed, kNoAnswer, kMoved };
  // After the connection of a resumable session ended without a word:
  // RESUME on the candidates (the last known leader, then servers_) until
  // the lease's end. kResumed with the new socket in `fd` and its server in
  // `at`, the session settled (settle()); kGone when the server said the
  // session ended; kKicked when `* ERR KICKED` came after RESUME's OK (an
  // administrator ended the session as it was taken back; attempt_failure_
  // says so); kServerGone when the only server refused the connection
  // (its process is gone, and the session with it; its next start waits out
  // the lease); kLapsed at the lease's end.
  // `skip`: a server that fell silent, not tried.
  Resumed resume(Endpoint& at, int& fd, const Status& why, const Endpoint* skip = nullptr);
  // The leader LEADER named, as this client reaches it (under TLS: the
  // configured server on its host), unless it is `from` or unknown.
  std::optional<Endpoint> leader_to_reach(std::optional<Endpoint> from) const;
  // The leader as a RESUME candidate, if any.
  std::optional<Endpoint> resume_leader() const;
  // Whether a server other than the current one could take the session.
  bool has_other_candidate() const;
  // QUIT (best effort), then closes the socket (and its TLS).
  void quit_and_close(int fd);
  // RESUME, HELLO, AUTH, LEASE, LEADER and MINE on a new connection, or
  // on one kept from an earlier attempt of this resume (rule 10: it goes on
  // where resume_shake_ left it). Bounded by connect_timeout from now and by
  // `deadline`; kNoAnswer with attempt_silent_ when the connection stayed
  // open and unanswered. resume_shake_.mine: MINE's ITEM rests; .early:
  // answers to the session's calls that came before MINE's END, to be
  // dispatched after settle().
  Resumed resume_handshake(int fd, const Endpoint& endpoint, std::chrono::steady_clock::time_point deadline);
  // RESUMABLE's and LEADER's answers (true), in the handshake or after it.
  bool session_answer(const protocol::Answer& answer, std::string_view line);
  // Settles the calls sent on the broken connection from MINE (rule 6 of
  // docs/client.md, "Resuming"): kept, completed, re-sent or failed; the
  // remote permits MINE no longer shows are lost. `early`: the answers that
  // came on the new connection before MINE's END (a queued WAIT granted
  // between RESUME and MINE is answered there, and MINE no longer lists it).
  // `moved`: the client moved the session off a server that did not answer
  // (End::kQuiet), rather than its connection breaking (the words of an
  // outcome left unknown).
  void settle(const std::vector<std::string>& mine, const std::vector<std::string>& early, bool moved);
  // Handles one answer line; a non-OK status ends the session, and end_
  // says how (a `* ERR KICKED resumed on another connection`, rule 11: as a
  // dropped connection, resumed; any other KICK: over).
  Status dispatch(std::string_view line);
  // Writes out_ as far as the socket takes it; false on a socket error.
  bool flush(int fd);
  void session_began(const Endpoint& endpoint, const protocol::HelloAnswer& hello);
  // Fails the calls and loses the permits of the session; `stop_by` is the
  // lease's end when the lease lapsed (Permit::stop_by).
  void session_ended(const Status& reason, std::optional<std::chrono::steady_clock::time_point> stop_by);
  // After a round of connection attempts that reached no server (`failures`:
  // why, server by server): in fallback, said and counted once until a
  // session begins.
  void enter_fallback(const std::string& failures);
  // An ACQUIRE's or a RELEASE's OK, read: held_ counts it.
  void count_held(const Call& call);
  void complete(Call& call, Reply reply);
  std::string next_tag() { return std::to_string(++tag_counter_); }
  // Appends HELLO and, when the client has a token, AUTH right behind it to
  // out_ (the server answers what follows once the token is checked): how
  // every session starts, new or resumed. The AUTH's tag, "" without one.
  std::string encode_hello_and_auth(const std::string& hello_tag);
  // Waits up to `timeout` for the wake-up fd; false once stopping. Ends
  // early (true) when a parked attempt, or one of `kept` (a resume's, rule
  // 10), becomes readable.
  bool sleep(std::chrono::milliseconds timeout, const std::unordered_map<std::string, Parked>* kept = nullptr);
  // Closes the lingering sockets whose stop-by time has come by `now`.
  void close_lingering(std::chrono::steady_clock::time_point now);
  // The earlier of `wake_at` and the next lingering socket's stop-by time.
  std::chrono::steady_clock::time_point next_lingering(std::chrono::steady_clock::time_point wake_at) const;
  // When the I/O thread ends: the sockets still lingering are closed at
  // their stop-by times by a thread of their own, not early.
  void leave_lingering();
  void wake();
  bool stopping() const { return stopping_.load(); }

  const ClientOptions options_;
  const std::vector<Endpoint> servers_;
  const LookupFunction lookup_;
  const std::shared_ptr<RenewingTlsClient> tls_;  // null without TLS; re-read at each connect when renewed
  const std::string label_;
  int wake_fd_ = -1;  // eventfd: a caller queued something, or stop()
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> stopping_{false};
  std::mutex stop_mutex_;  // serializes stop()

  mutable std::mutex mutex_;
  std::condition_variable first_round_cv_;  // with mutex_; also a round or a session began
  bool first_round_done_ = false;           // guarded by mutex_
  bool connected_ = false;                  // guarded by mutex_
  // session_ when the last round of connection attempts served no session
  // (no server, or refusals); 0: none yet. While it equals session_, the
  // last round ended so, and refused_ is that round's refusal. Guarded by
  // mutex_.
  std::uint64_t failed_round_after_ = 0;
  std::uint64_t session_ = 0;                                          // guarded by mutex_: the current or last session
  Status last_loss_{StatusCode::kUnavailable, "not connected"};        // guarded by mutex_
  std::optional<std::chrono::steady_clock::time_point> last_stop_by_;  // guarded by mutex_: of last_loss_
  std::vector<std::shared_ptr<Call>> outbox_;                          // guarded by mutex_
  std::unordered_map<const PermitState*, std::weak_ptr<PermitState>> permits_;  // guarded by mutex_
  bool in_fallback_ = false;                                                    // guarded by mutex_
  // The last failed round's silence: non-OK (kUnavailable) when it reached
  // servers that accepted the connection and did not answer in time, and
  // none that refused or that this process lacked the resources to try; OK
  // once a session began or a round decided. Guarded by mutex_, as is
  // silent_servers_ ("server A" or "servers A, B").
  Status silent_;
  std::string silent_servers_;
  // The last failed round's refusal; OK once a session began. Guarded by mutex_.
  Status refused_;
  Counters counters_;  // guarded by mutex_
  std::atomic<std::uint64_t> tag_counter_{0};

  // Loop only.
  std::string attempt_failure_;  // why the last connect_to or handshake failed
  Status attempt_refusal_;       // the last handshake's refusal, if the server answered with one
  // The last attempt connected, and the TLS or the session handshake did not
  // finish within its bound while the connection stayed open: silent.
  bool attempt_silent_ = false;
  // The last attempt failed for want of this process's resources (local_failure).
  bool attempt_was_local_ = false;
  // Rule 8, silence is sticky for a bounded time: per server as configured,
  // when the first silent attempt of this streak ended. A frozen server's
  // kernel keeps each abandoned attempt in its accept queue, so the queue
  // fills and later connects time out: such a timeout counts as silent too
  // until the bound (sticky_silence). Forgotten at a session with any
  // server, or for a server whose attempt ends otherwise.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> silent_since_;
  // The session handshake under way (handshake(), tls_handshake()): what it
  // asked, which answers came and what they said. Reset by connect_to.
  struct Handshake {
    bool tls_done = false;                               // the TLS handshake finished (or no TLS)
    bool begun = false;                                  // HELLO and the requests behind it are in out_ (or sent)
    bool kept = false;                                   // a parked attempt taken up again (rule 9)
    std::chrono::steady_clock::time_point connected_at;  // when connect() succeeded
    std::string hello_tag;
    std::string lease_tag;
    std::string stats_tag;
    std::string auth_tag;    // "" without a token
    std::string option_tag;  // "" when queue positions are wanted
    bool hello_done = false;
    bool auth_done = false;  // AUTH answered OK or UNKNOWN_VERB
    bool lease_done = false;
    bool stats_done = false;
    std::optional<std::int64_t> lease_ms;  // LEASE's answer, when the server knows the verb
    std::int64_t stats_ms = 0;             // STATS' session_timeout_ms; 0: absent, or STATS denied
    protocol::HelloAnswer hello;           // once hello_done
  };
  Handshake handshake_;
  // The RESUME handshake under way (resume_handshake()): what it asked and
  // which answers came. Reset for each new connection of a resume.
  struct ResumeShake {
    bool begun = false;                          // RESUME and the requests behind it are in out_ (or sent)
    std::chrono::steady_clock::time_point sent;  // when RESUME was first queued
    std::string resume_tag;
    std::string hello_tag;
    std::string auth_tag;  // "" without a token
    std::string lease_tag;
    std::string leader_tag;
    std::string mine_tag;
    bool resumed = false;  // RESUME answered OK
    bool hello_done = false;
    bool auth_done = false;
    bool lease_done = false;
    bool leader_done = false;
    bool mine_done = false;
    std::vector<std::string> mine;
    std::vector<std::string> early;
  };
  ResumeShake resume_shake_;
  // Rule 9: a silent attempt's connection, kept open across rounds with
  // everything its handshake had (the live members it was in when parked),
  // at most one per configured server (by Endpoint::to_string()). The next
  // round's attempt to that server waits on it instead of connecting, so a
  // frozen server's accept queue, or a stalled cluster's session slots,
  // hold one connection per client, not one per round.
  struct Parked {
    int fd = -1;
    SslPtr ssl;
    Handshake handshake;
    protocol::LineFramer framer;
    std::string out;           // bytes still to send
    ResumeShake resume_shake;  // a resume's attempt (rule 10)
    std::string resumable_tag;
    std::string leader_tag;
    std::uint64_t resume_id = 0;
    std::string resume_secret;
    std::chrono::steady_clock::time_point lease_from;  // when HELLO was first queued
  };
  std::unordered_map<std::string, Parked> parked_;
  // QUIT (best effort) and close on a parked attempt: the server ends its
  // session at once when it reads it.
  void quit_parked(Parked& parked);
  SslPtr ssl_;               // the TLS connection of the current socket, if TLS
  bool tls_failed_ = false;  // the last read ended on a TLS error (an alert), not on the socket
  int read_errno_ = 0;       // the last read's socket error (0: none, or an end of stream)
  // The round's first attempt that failed for want of this process's own
  // resources (descriptors, memory): no word on the servers, so no fallback.
  Status attempt_local_;
  protocol::LineFramer framer_;
  std::string out_;
  std::unordered_map<std::string, std::shared_ptr<Call>> pending_;
  std::vector<std::shared_ptr<Call>> unanswered_;  // in send order, for request_timeout
  std::size_t unanswered_head_ = 0;
  std::chrono::milliseconds ping_interval_{0};
  std::chrono::steady_clock::time_point last_sent_;
  // A session just resumed (pyK24's finding): when its RESUME was first sent
  // (the lease counts from it), and the earliest time the lease may lapse
  // while nothing sent since is answered (half way from the resume to the
  // lease's stop_by). serve() counts the RESUME as its last ping, so a
  // RESUME answered T/6 or more after its send is followed by a PING at
  // once. Cleared by session_began (a fresh session).
  std::optional<std::chrono::steady_clock::time_point> resumed_sent_;
  std::chrono::steady_clock::time_point renew_until_;
  std::chrono::milliseconds session_timeout_{0};      // T, from LEASE or STATS; 0: none, no lease
  std::chrono::steady_clock::time_point lease_from_;  // when the last answered request was sent
  std::uint64_t sent_seq_ = 0;                        // requests sent on this session
  // What the session holds, by name, as the answers read tell (an ACQUIRE's
  // OK adds its count, a RELEASE's OK takes it away; MINE sets it on a
  // resume): what settle() compares MINE with. Not the registered permits,
  // which lag behind (a grant is registered on its caller's thread later).
  std::unordered_map<std::string, std::int64_t> held_;
  // The server has read every request of this session up to this one (it
  // reads a connection's lines in order, so an answer shows it read them all).
  std::uint64_t read_upto_ = 0;
  bool fell_silent_ = false;  // the session ended because the server stopped answering
  bool kicked_ = false;       // the session ended by `* ERR KICKED`
  bool broken_ = false;       // the session ended on a line that is no netsem answer
  End end_ = End::kFinal;     // how the last serve() ended
  // The resumable session (RESUMABLE's answer; 0: not resumable) and the
  // cluster's leader as LEADER last named it.
  std::uint64_t resume_id_ = 0;
  std::string resume_secret_;
  bool resume_allowed_ = false;  // the server told T through LEASE, T > 0
  // The handshake's RESUMABLE and LEADER, until answered (empty after).
  std::string resumable_tag_;
  std::string leader_tag_;
  std::optional<Endpoint> leader_;
  int connect_errno_ = 0;  // the last connect_to's connect() error (ETIMEDOUT too for a lookup cut at the deadline)
  // Sockets of sessions whose lease lapsed, each open until its stop-by time.
  std::vector<std::pair<std::chrono::steady_clock::time_point, int>> lingering_;
};

}  // namespace netsem::client
