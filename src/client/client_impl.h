// Client::Impl: the state behind a netsem::Client (include/netsem/client.h),
// that is its options, the shared Connection (connection.h), the host-wide
// LocalSemaphores (local_semaphores.h), the grant counters and the flags this
// process set, with the steps the public calls share: asking the server, and
// falling back to the local semaphore. client.cc implements the permit
// calls and these steps; client_flags.cc the flag calls; client_listings.cc
// the calls that only ask the server. The few checks the files share are
// declared here too.
//
// Thread safety: every Client call runs on its caller's thread. `options` is
// read-only after Client::create(); Connection and LocalSemaphores are safe
// from any thread; the counters are atomic; the flags are guarded by
// flags_mutex.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "client/connection.h"
#include "client/local_semaphores.h"
#include "netsem/client.h"
#include "netsem/status.h"
#include "protocol/requests.h"

namespace netsem {

namespace client {

// A `$` name: host-local, never sent to a server.
bool is_local_name(std::string_view name);
// kInvalidArgument unless `name` is a valid semaphore name; a `$` name
// follows the rules of the rest of it.
Status check_api_name(std::string_view name);
// True for a status that means no server could be asked (kUnavailable,
// kShutdown): the caller may fall back to the local semaphore.
bool is_connection_failure(const Status& status);
// The StatusCode of a protocol ERR code (kInternal for the codes that mean
// this library erred, and for codes it does not know).
StatusCode code_of(protocol::ErrorCode error);
// The status of a final answer: OK for OK, PONG and END; the session's end
// (reply.failure); else `what` (the request, as "GET \"x\"") and the answer.
Status status_of(const Reply& reply, std::string_view what);

// When a call with `timeout` (nullopt: none) must give up.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  using milliseconds = std::chrono::milliseconds;

  // A timeout over LocalSemaphores::kForeverAfter counts as none: adding it
  // to the clock could overflow.
  explicit Deadline(std::optional<milliseconds> timeout)
      : forever_(!timeout || *timeout > LocalSemaphores::kForeverAfter),
        at_(Clock::now() + (forever_ ? milliseconds(0) : *timeout)) {}
  // What is left of the timeout: nullopt for none, never negative.
  std::optional<milliseconds> remaining() const {
    if (forever_) return std::nullopt;
    return std::max(milliseconds(0), std::chrono::ceil<milliseconds>(at_ - Clock::now()));
  }

 private:
  bool forever_;
  Clock::time_point at_;
};

}  // namespace client

struct Client::Impl {
  ClientOptions options;
  std::shared_ptr<client::LocalSemaphores> local;
  std::shared_ptr<client::Connection> connection;
  std::atomic<std::uint64_t> local_grants{0};
  std::atomic<std::uint64_t> remote_grants{0};

  std::mutex flags_mutex;
  std::condition_variable flags_cv;                    // with flags_mutex: a set_flag finished
  std::map<std::string, Permit, std::less<>> flags;    // guarded by flags_mutex: flags this process set
  std::set<std::string, std::less<>> flags_being_set;  // guarded by flags_mutex

  // The local limit of a non-`$` name while no server is reachable, or an
  // error under the policy `fail`. Only once the round of connection
  // attempts that decided reached no server: a refusal of a server that
  // answered is not an outage, and the caller answers it instead (the one
  // read with that round's outcome: Connection::Unsent, await_session).
  Result<std::int64_t> fallback_limit(std::string_view name) const;

  // fallback_limit for wait and post, which count items rather than cap
  // holders: only a name listed in [semaphores] falls back. Any other name
  // that WAIT and POST accept is a created semaphore, whose value only the
  // server knows; a local stand-in would hand out items that were never
  // posted, or take in posts the server never sees.
  Result<std::int64_t> counter_fallback_limit(std::string_view name) const;

  // The local limit of `name`: a `$` name's own, else its fallback's.
  Result<std::int64_t> local_limit(std::string_view name) const;

  // A local call made in fallback for `name` (local limit `limit`), as the
  // caller sees it: a refusal says the server was not reachable, since the
  // server might have allowed what its host-local stand-in refused; asking
  // more permits than the stand-in's limit is kUnavailable, not kTooMany.
  Status fallback_outcome(Status status, std::string_view name, std::int64_t limit, std::int64_t count) const;

  // One request that never falls back (every call but acquire, wait and
  // post), built by `encode(line, tag)` (Connection::send), and its final
  // answer. Made between two sessions (the last one ended, the round of
  // connection attempts after its end under way), it waits for that round,
  // which bounds the wait, and is sent on the session the round finds; when
  // the round finds none, that round's refusal, or kUnavailable "no server
  // reachable" (at once while no server is reachable). While the rounds
  // reach only silent servers (they accept and do not answer) it waits
  // across rounds, at most request_timeout from the call (then kUnavailable:
  // not an outage). `what` names the request ("GET \"db\"") in those
  // failures; `may_wait`: see Call::may_wait.
  template <typename Encode>
  Result<client::Reply> round_trip(std::string_view what, Encode&& encode, bool may_wait = false) const {
    std::optional<client::Deadline::Clock::time_point> silent_until;
    for (;;) {
      client::Connection::Unsent unsent;
      const std::shared_ptr<client::Call> call = connection->send(encode, 0, may_wait, &unsent);
      if (call || !unsent.wait) return finish_round_trip(call, unsent);
      if (!silent_until) silent_until = client::Deadline::Clock::now() + options.request_timeout;
      std::optional<Status> waited = await_round(unsent.after, std::nullopt, silent_until, nullptr, what);
      if (!waited) continue;  // a session serves: send on it
      if (!waited->is_ok()) return *waited;
      return finish_round_trip(nullptr, client::Connection::Unsent());
    }
  }
  // `unsent`: what send() said when it returned a null `call`.
  Result<client::Reply> finish_round_trip(const std::shared_ptr<client::Call>& call,
                                          const client::Connection::Unsent& unsent) const;

  // After send() found no session and a later round to wait for
  // (Unsent::wait, its `after`): waits for the I/O thread's round in
  // progress, or for the rounds after a silent one, until `until` (none:
  // the rounds bound it), `silent_until` (a call without a timeout of its
  // own: the time from which a silent last round ends the wait) or
  // `cancel`. nullopt: a session serves now, send again; OK: the round
  // reached no server, the caller falls back as for a call made while no
  // server is up; otherwise why the wait ended: the refusal of that round
  // when it reached only servers that refused the session (kDenied, kLimit,
  // kProtocol), kTimeout (naming the silent servers, if any), kUnavailable
  // at `silent_until` (silent servers: not an outage) or once the client
  // closes, kCancelled.
  std::optional<Status> await_round(std::uint64_t after, std::optional<std::chrono::milliseconds> until,
                                    std::optional<client::Deadline::Clock::time_point> silent_until,
                                    const CancelToken* cancel, std::string_view what) const;
  // The failure of `what` when the wait for a session ended as `outcome`
  // (kSilent or kTimedOut) with `why` from Connection::await_session.
  static Status silent_failure(client::Connection::NextSession outcome, const Status& why, std::string_view what);

  // ACQUIRE or WAIT on the server: its grant, its final refusal (the server's
  // answer, or the refusal of the round of connection attempts that found no
  // session), or nullopt when there was no session to send it on and no
  // server answered (the caller may fall back; with
  // `ended`, ended->unsent says the round after the last session's end is
  // still under way; without it, a WAIT waits for that round itself), or
  // (only with `ended`, then filled in) the session ended before the answer
  // (acquire sends it again on the next session: rule 9 of docs/client.md,
  // "Resuming the session"). Without `ended`, a session that ended after the
  // send answers kUnavailable: the server may have granted the request (for
  // WAIT, consumed the permits).
  struct Grant {
    std::uint64_t fence = 0;
    std::uint64_t session = 0;
  };
  struct SessionEnd {
    std::uint64_t session = 0;  // the session that ended; 0: nothing was sent
    Status why;
    bool kicked = false;  // by an administrator's KICK
    bool broken = false;  // by the client: the server broke the protocol
    // Nothing was sent: there was no session, the last one (`session`) had
    // ended and the round of attempts after its end was under way.
    bool unsent = false;
  };
  std::optional<Result<Grant>> take_remote(protocol::Verb verb, std::string_view name, const AcquireOptions& how,
                                           std::optional<std::chrono::milliseconds> timeout, SessionEnd* ended);

  // take_remote for ACQUIRE, sent again on the next session as long as a
  // session ends under it (not by KICK) and a server answers, until
  // `deadline` (the caller's timeout) or how.cancel. Made while the
  // connection is between sessions (the last one ended, the round of
  // attempts after its end under way), it waits for that round the same way.
  // nullopt when there was no session and no such round (in fallback), or
  // when the round of attempts after its session's end reached no server:
  // the caller falls back. A round that reached only servers that refused
  // the session answers with its refusal instead. After a silent round it
  // waits the same way, for as many rounds as it takes: until `deadline`
  // (kTimeout naming the silent servers), for a try request_timeout
  // (kUnavailable), without a timeout until a round decides.
  std::optional<Result<Grant>> take_acquire(std::string_view name, const AcquireOptions& how,
                                            std::optional<std::chrono::milliseconds> timeout,
                                            const client::Deadline& deadline);

  // Takes `count` permits of the local semaphore `name` as a Permit that
  // gives them back. For a `fallback` (a server name served locally), only
  // while no process of the host holds `name` from the server
  // (LocalSemaphores::acquire with a mark).
  Result<Permit> local_acquire(std::string_view name, std::int64_t limit, std::int64_t count,
                               std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel,
                               bool fallback);

  // Marks `state`, a permit the server granted, as held from the server on
  // this host, waiting up to `timeout` while fallback permits or lost server
  // permits of its name are held on the host. OK also when the host-wide table cannot be used
  // (logged): fallback, which needs it too, cannot grant then either.
  Status mark_server_holder(client::PermitState& state, std::optional<std::chrono::milliseconds> timeout,
                            const CancelToken* cancel);

  // Consumes `count` permits of the local semaphore `name`.
  Status local_wait(std::string_view name, std::int64_t limit, std::int64_t count,
                    std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel);
};

}  // namespace netsem
