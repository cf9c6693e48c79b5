// Client: the calls on a semaphore's permits (acquire, post, wait, value and
// their variants), each a request on the shared Connection (connection.h)
// or, for `$` names and while no server can be reached, a call on the
// host-wide LocalSemaphores (local_semaphores.h) as the name's fallback
// policy says. A caller waits on its own Call, so a blocked acquire never
// holds up another thread's call; a CancelToken (cancel_token.cc) wakes that
// wait and turns it into a CANCEL on the wire. Client::Impl, the state behind
// a Client, is declared in client_impl.h; the flag calls, built on acquire,
// are in client_flags.cc, and the calls that never fall back (get, list,
// create, remove, ping, the 1.1 listings, CLUSTER) in client_listings.cc.
//
// Fallback rules in one place: a server that answered but refused the session
// (Connection::refusal) is not an outage, so nothing falls back while that
// holds: every call that would fails with the refusal. Otherwise acquire
// falls back when there is no session and the last round of connection
// attempts reached no server; when the session ends while it waits (and is
// not resumed), or it is made while the round after a session's end is under
// way, it is sent on the next session, and falls back only when that round
// reaches no server (rule 9 of docs/client.md, "Resuming the session"); wait and
// post, whose effect is unknown when the session ends mid-call (the server
// may have consumed or added permits), fall back only when they could not be
// sent, and answer kUnavailable otherwise, and only for names listed in
// [semaphores] (counter_fallback_limit); value and test_flag read the local
// semaphore; get, list, create, remove and ping need the server, as do the
// 1.1 listings and KICK (all in client_listings.cc): made between two sessions,
// they too wait for the round under way (Impl::round_trip) and fail "no
// server reachable" only when it reaches no server. A round that reached
// only servers that accepted the connection and did not answer (silent,
// Connection::Unsent::silent) decides nothing either: the calls made after
// it wait for a round that does, within their timeout (acquire, wait) or
// request_timeout (every other call), and fail then, never falling back.
#include "netsem/client.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>

#include "client/cancel_state.h"
#include "client/client_impl.h"
#include "client/client_log.h"
#include "protocol/codec.h"
#include "protocol/names.h"

namespace netsem {

using protocol::AnswerType;
using std::chrono::milliseconds;

namespace client {

bool is_local_name(std::string_view name) {
  return !name.empty() && name.front() == '$';
}

// A `$` name follows the rules of the rest of it; no name is ever truncated.
Status check_api_name(std::string_view name) {
  if (protocol::check_name(is_local_name(name) ? name.substr(1) : name) == protocol::ErrorCode::kNone) return {};
  return Status(StatusCode::kInvalidArgument,
                fmt::format("bad semaphore name \"{}\": 1-255 bytes of UTF-8 without control characters", name));
}

// No server to ask: the caller may fall back to the local semaphore.
bool is_connection_failure(const Status& status) {
  return status.code() == StatusCode::kUnavailable || status.code() == StatusCode::kShutdown;
}

StatusCode code_of(protocol::ErrorCode error) {
  using protocol::ErrorCode;
  // clang-format off
  static constexpr std::pair<ErrorCode, StatusCode> kCodes[] = {
      {ErrorCode::kBadName, StatusCode::kInvalidArgument}, {ErrorCode::kBadArg, StatusCode::kInvalidArgument},
      {ErrorCode::kNotFound, StatusCode::kNotFound},       {ErrorCode::kNotHeld, StatusCode::kNotHeld},
      {ErrorCode::kOverflow, StatusCode::kOverflow},       {ErrorCode::kTooMany, StatusCode::kTooMany},
      {ErrorCode::kExists, StatusCode::kAlreadyExists},    {ErrorCode::kBusy, StatusCode::kBusy},
      {ErrorCode::kLimit, StatusCode::kLimit},             {ErrorCode::kDenied, StatusCode::kDenied},
      {ErrorCode::kAuth, StatusCode::kDenied},             {ErrorCode::kShutdown, StatusCode::kShutdown}};
  // clang-format on
  for (const auto& [wire, code] : kCodes) {
    if (wire == error) return code;
  }
  // Malformed requests, duplicate tags and unknown codes are this library's
  // bugs or a newer server's news: nothing the caller can fix.
  return StatusCode::kInternal;
}

Status status_of(const Reply& reply, std::string_view what) {
  if (!reply.failure.is_ok()) return reply.failure;
  switch (reply.type) {
    case AnswerType::kTimeout:
      return Status(StatusCode::kTimeout, fmt::format("{}: timed out", what));
    case AnswerType::kCancelled:
      return Status(StatusCode::kCancelled, fmt::format("{}: cancelled", what));
    case AnswerType::kError:
      return Status(code_of(reply.error), fmt::format("{}: {}", what, reply.rest));
    default:
      return {};
  }
}

}  // namespace client

using client::check_api_name;
using client::Deadline;
using client::is_connection_failure;
using client::is_local_name;
using client::status_of;

namespace {

Status check_count(std::int64_t count) {
  if (count >= 1 && count <= protocol::kMaxCount) return {};
  return Status(StatusCode::kInvalidArgument, fmt::format("count {} is not in 1..{}", count, protocol::kMaxCount));
}

Status cancelled(std::string_view name) {
  return Status(StatusCode::kCancelled, fmt::format("waiting for \"{}\" was cancelled", name));
}

// What acquire and wait check before anything else.
Status check_take(std::string_view name, const AcquireOptions& options) {
  if (Status status = check_api_name(name); !status.is_ok()) return status;
  if (Status status = check_count(options.count); !status.is_ok()) return status;
  if (options.cancel != nullptr && options.cancel->cancelled()) return cancelled(name);
  return {};
}

// A negative timeout only tries; one too long to add to a clock reading (over
// about 100 years, milliseconds::max() included) waits for ever.
std::optional<milliseconds> normalize(std::optional<milliseconds> timeout) {
  if (timeout && timeout->count() < 0) return milliseconds(0);
  if (timeout && *timeout > client::LocalSemaphores::kForeverAfter) return std::nullopt;
  return timeout;
}

// Registers `wake` to run when `token` fires, for the life of this object.
class WakeOnCancel {
 public:
  WakeOnCancel(const CancelToken* token, std::function<void()> wake) {
    if (token == nullptr) return;
    state_ = client::CancelTokenAccess::state(*token);
    std::lock_guard lock(state_->mutex);
    id_ = ++state_->last_id;
    state_->wakers.emplace(id_, std::move(wake));
  }
  // Wakes the wait for `call`.
  WakeOnCancel(const CancelToken* token, client::Call& call)
      : WakeOnCancel(token, [&call] {
          std::lock_guard call_lock(call.mutex);
          call.cv.notify_all();
        }) {}
  ~WakeOnCancel() {
    if (!state_) return;
    std::lock_guard lock(state_->mutex);
    state_->wakers.erase(id_);
  }
  WakeOnCancel(const WakeOnCancel&) = delete;
  WakeOnCancel& operator=(const WakeOnCancel&) = delete;

 private:
  std::shared_ptr<client::CancelTokenAccess::State> state_;
  std::uint64_t id_ = 0;
};

// Waits for the final answer of `call`, sending CANCEL once `token` fires.
client::Reply await(client::Connection& connection, client::Call& call, const CancelToken* token) {
  const WakeOnCancel waker(token, call);
  bool cancel_sent = false;
  std::unique_lock lock(call.mutex);
  for (;;) {
    call.cv.wait(lock, [&] { return call.done || (token != nullptr && !cancel_sent && token->cancelled()); });
    if (call.done) return call.reply;
    cancel_sent = true;
    lock.unlock();
    // Its answer does not matter: the call itself answers CANCELLED, or its
    // grant raced ahead and the caller gives it back.
    (void)connection.send(
        [&call](std::string& line, std::string_view tag) { protocol::encode_cancel(line, tag, call.tag); },
        call.session);
    lock.lock();
  }
}

}  // namespace

Result<std::int64_t> Client::Impl::fallback_limit(std::string_view name) const {
  const FallbackPolicy& policy = options.fallback_policy(name);
  if (policy.mode == FallbackPolicy::Mode::kFail) {
    return Status(StatusCode::kUnavailable,
                  fmt::format("no server reachable, and the fallback policy of \"{}\" is fail", name));
  }
  return policy.local_limit(options.limit(name));
}

Result<std::int64_t> Client::Impl::counter_fallback_limit(std::string_view name) const {
  if (!options.limits.contains(std::string(name))) {
    return Status(StatusCode::kUnavailable,
                  fmt::format("no server reachable, and \"{}\" is not listed in [semaphores]: a created "
                              "semaphore's value is known only to the server, so it cannot be served locally",
                              name));
  }
  return fallback_limit(name);
}

Status Client::Impl::fallback_outcome(Status status, std::string_view name, std::int64_t limit,
                                      std::int64_t count) const {
  switch (status.code()) {
    case StatusCode::kOk:
    case StatusCode::kTimeout:
    case StatusCode::kCancelled:
      return status;
    case StatusCode::kTooMany:
      return Status(
          StatusCode::kUnavailable,
          fmt::format("no server reachable, and {} permits of \"{}\" are more than its "
                      "host-local stand-in's limit of {} ({} [semaphores]; fallback {})",
                      count, name, limit, options.limits.contains(std::string(name)) ? "from" : "not listed in",
                      options.fallback_policy(name).to_string()));
    default:
      return Status(status.code(), fmt::format("no server reachable, so \"{}\" was served by a host-local "
                                               "semaphore: {}",
                                               name, status.message()));
  }
}

Result<std::int64_t> Client::Impl::local_limit(std::string_view name) const {
  if (is_local_name(name)) return options.limit(name);
  return fallback_limit(name);
}

Result<client::Reply> Client::Impl::finish_round_trip(const std::shared_ptr<client::Call>& call,
                                                      const client::Connection::Unsent& unsent) const {
  if (!call) {
    if (!unsent.refusal.is_ok()) return unsent.refusal;
    return Status(StatusCode::kUnavailable, "no server reachable");
  }
  client::Reply reply = client::Connection::wait(*call);
  if (!reply.failure.is_ok()) return reply.failure;
  return reply;
}

Status Client::Impl::silent_failure(client::Connection::NextSession outcome, const Status& why, std::string_view what) {
  if (outcome == client::Connection::NextSession::kSilent) {
    return Status(StatusCode::kUnavailable, fmt::format("{}: {}", what, why.message()));
  }
  if (why.is_ok()) return Status(StatusCode::kTimeout, fmt::format("{}: timed out", what));
  return Status(StatusCode::kTimeout, fmt::format("{}: timed out ({})", what, why.message()));
}

std::optional<Status> Client::Impl::await_round(std::uint64_t after, std::optional<milliseconds> until,
                                                std::optional<client::Deadline::Clock::time_point> silent_until,
                                                const CancelToken* cancel, std::string_view what) const {
  if (until && until->count() == 0) return Status(StatusCode::kTimeout, fmt::format("{}: timed out", what));
  const auto is_cancelled = [cancel] { return cancel != nullptr && cancel->cancelled(); };
  const WakeOnCancel waker(cancel, [this] { connection->wake_waiters(); });
  const std::optional<client::Deadline::Clock::time_point> at =
      until ? std::optional(client::Deadline::Clock::now() + *until) : std::nullopt;
  std::uint64_t session = 0;
  Status why;
  switch (const auto outcome = connection->await_session(after, at, silent_until, is_cancelled, session, why)) {
    case client::Connection::NextSession::kServed:
      return std::nullopt;
    case client::Connection::NextSession::kNoServer:
      // A server that answered no is not an outage: its refusal is the answer.
      return why;
    case client::Connection::NextSession::kSilent:
    case client::Connection::NextSession::kTimedOut:
      return silent_failure(outcome, why, what);
    case client::Connection::NextSession::kCancelled:
      return Status(StatusCode::kCancelled, fmt::format("{}: cancelled", what));
    case client::Connection::NextSession::kStopped:
      break;
  }
  return Status(StatusCode::kUnavailable, fmt::format("{}: the client is closed", what));
}

std::optional<Result<Client::Impl::Grant>> Client::Impl::take_remote(protocol::Verb verb_code, std::string_view name,
                                                                     const AcquireOptions& how,
                                                                     std::optional<milliseconds> timeout,
                                                                     SessionEnd* ended) {
  const std::string_view verb = protocol::verb_name(verb_code);
  const Deadline deadline(timeout);
  const bool is_try = timeout && timeout->count() == 0;
  std::shared_ptr<client::Call> call;
  std::optional<client::Deadline::Clock::time_point> silent_until;  // a try's, once it waits
  for (;;) {
    // Not sent yet, so a timeout is what is left of it (a try stays a try).
    const std::optional<milliseconds> left = is_try ? std::optional(milliseconds(0)) : deadline.remaining();
    const std::int64_t timeout_ms = left ? left->count() : -1;
    client::Connection::Unsent unsent;
    call = connection->send(
        [&](std::string& line, std::string_view tag) {
          if (verb_code == protocol::Verb::kAcquire) {
            protocol::encode_acquire(line, tag, name, how.count, timeout_ms);
          } else {
            protocol::encode_wait(line, tag, name, how.count, timeout_ms);
          }
        },
        0, /*may_wait=*/timeout_ms != 0, &unsent);
    if (call) break;
    if (!unsent.wait) {
      // A server that answered no is not an outage: its refusal is the answer.
      if (!unsent.refusal.is_ok()) return Result<Grant>(unsent.refusal);
      return std::nullopt;
    }
    if (ended != nullptr) {
      // take_acquire waits for the round, as for rule 9's re-send.
      *ended =
          SessionEnd{.session = unsent.after,
                     .why = unsent.silent.is_ok() ? Status(StatusCode::kUnavailable, "no session: the last one ended")
                                                  : unsent.silent,
                     .unsent = true};
      return std::nullopt;
    }
    // A WAIT made between sessions, or after a silent round, was not sent:
    // a later round decides (a try's wait ends at request_timeout).
    if (is_try && !silent_until) silent_until = client::Deadline::Clock::now() + options.request_timeout;
    std::optional<Status> waited = await_round(unsent.after, is_try ? std::nullopt : deadline.remaining(), silent_until,
                                               how.cancel, fmt::format("{} \"{}\"", verb, name));
    if (!waited) continue;
    if (waited->is_ok()) return std::nullopt;
    return Result<Grant>(*waited);
  }
  const client::Reply reply = await(*connection, *call, how.cancel);
  if (!reply.failure.is_ok()) {
    if (ended != nullptr) {
      *ended =
          SessionEnd{.session = call->session, .why = reply.failure, .kicked = reply.kicked, .broken = reply.broken};
      return std::nullopt;
    }
    return Result<Grant>(Status(
        StatusCode::kUnavailable,
        fmt::format("{} \"{}\": no answer came, so its outcome is unknown: {}", verb, name, reply.failure.message())));
  }
  if (reply.type != AnswerType::kOk) return Result<Grant>(status_of(reply, fmt::format("{} \"{}\"", verb, name)));
  ++remote_grants;
  Grant grant{.session = call->session};
  // A grant without a readable fence is still a grant (the server holds it
  // for this session): it is kept, with fence 0, and said.
  if (!protocol::parse_fence(reply.rest, grant.fence)) {
    client::log_warning("{} \"{}\": the server's grant carries no fence: \"{}\"", verb, name, reply.rest);
  }
  return Result<Grant>(grant);
}

std::optional<Result<Client::Impl::Grant>> Client::Impl::take_acquire(std::string_view name, const AcquireOptions& how,
                                                                      std::optional<milliseconds> timeout,
                                                                      const Deadline& deadline) {
  SessionEnd ended;
  auto taken = take_remote(protocol::Verb::kAcquire, name, how, timeout, &ended);
  // Rule 9: a session that ended under a waiting ACQUIRE, and was not
  // resumed, is gone at every server (or, after a lapse, holds what it may
  // be granted unused until its timeout): the ACQUIRE goes again on the next
  // session, for what is left of its timeout. Fallback only when the next
  // round of connection attempts reaches no server. An ACQUIRE made while
  // the connection is between sessions (the last one ended, the round after
  // its end under way) waits for that round the same way: until it ends, a
  // server of the list may well answer, and a server that answers is not an
  // outage.
  const auto is_cancelled = [&how] { return how.cancel != nullptr && how.cancel->cancelled(); };
  const WakeOnCancel waker(how.cancel, [this] { connection->wake_waiters(); });
  // A try whose session ended before its answer is tried again on the next
  // session (a round of attempts bounds the wait for it), still a try.
  const bool is_try = timeout && timeout->count() == 0;
  // A try waits for a silent round's successors at most request_timeout
  // (then kUnavailable: not an outage); an ACQUIRE with a timeout, for
  // that; one without, until a round decides.
  std::optional<client::Deadline::Clock::time_point> silent_until;
  if (is_try && ended.unsent) silent_until = client::Deadline::Clock::now() + options.request_timeout;
  std::uint64_t after = ended.session;
  bool again = after != 0 || ended.unsent;
  while (!taken && again) {
    if (ended.kicked) {
      // An operator ended the session: the ACQUIRE ends with it.
      return Result<Grant>(
          Status(StatusCode::kUnavailable, fmt::format("ACQUIRE \"{}\": {}", name, ended.why.message())));
    }
    if (ended.broken) {
      // The server broke the protocol: it would do it again.
      return Result<Grant>(
          Status(StatusCode::kUnavailable,
                 fmt::format("ACQUIRE \"{}\": {}; the request is not sent again", name, ended.why.message())));
    }
    if (is_cancelled()) return Result<Grant>(cancelled(name));
    const std::optional<milliseconds> left = is_try ? std::nullopt : deadline.remaining();
    if (left && left->count() == 0) {
      return Result<Grant>(Status(StatusCode::kTimeout, fmt::format("ACQUIRE \"{}\": timed out", name)));
    }
    const std::optional<client::Deadline::Clock::time_point> until =
        left ? std::optional(client::Deadline::Clock::now() + *left) : std::nullopt;
    if (is_try && !silent_until) silent_until = client::Deadline::Clock::now() + options.request_timeout;
    std::uint64_t session = 0;
    Status why;
    switch (const auto outcome = connection->await_session(after, until, silent_until, is_cancelled, session, why)) {
      case client::Connection::NextSession::kServed:
        break;
      case client::Connection::NextSession::kNoServer:
        // As for an ACQUIRE made while no server is up; a server that
        // answered no is not an outage: its refusal is the answer.
        if (!why.is_ok()) return Result<Grant>(why);
        return std::nullopt;
      case client::Connection::NextSession::kSilent:
      case client::Connection::NextSession::kTimedOut:
        return Result<Grant>(silent_failure(outcome, why, fmt::format("ACQUIRE \"{}\"", name)));
      case client::Connection::NextSession::kCancelled:
        return Result<Grant>(cancelled(name));
      case client::Connection::NextSession::kStopped:
        return Result<Grant>(
            Status(StatusCode::kUnavailable, fmt::format("ACQUIRE \"{}\": {}", name, ended.why.message())));
    }
    const std::optional<milliseconds> rest = is_try ? std::optional(milliseconds(0)) : deadline.remaining();
    const std::string server = connection->counters().server;
    const std::string left_text = is_try ? std::string("as a try")
                                  : rest ? fmt::format("{} ms left", rest->count())
                                         : std::string("no timeout");
    if (ended.unsent) {
      client::log_info(
          "ACQUIRE \"{}\": made with no session (between two, or while the servers were silent); sent "
          "on the new session to {}, {}",
          name, server.empty() ? "the server" : server, left_text);
    } else {
      client::log_info("ACQUIRE \"{}\": the session ended while it waited ({}); sent again on a new session to {}, {}",
                       name, ended.why.message(), server.empty() ? "the server" : server, left_text);
    }
    ended = SessionEnd{};
    taken = take_remote(protocol::Verb::kAcquire, name, how, rest, &ended);
    // Not sent: that session ended already; wait for the one after it.
    if (!taken && (ended.session == 0 || ended.unsent)) {
      after = std::max(session, ended.session);
      ended = SessionEnd{.why = Status(StatusCode::kUnavailable, "the new session ended at once")};
      again = true;
    } else {
      after = ended.session;
      again = after != 0;
    }
  }
  return taken;
}

Result<Permit> Client::Impl::local_acquire(std::string_view name, std::int64_t limit, std::int64_t count,
                                           std::optional<milliseconds> timeout, const CancelToken* cancel,
                                           bool fallback) {
  client::LocalSemaphores::Grant grant;
  client::LocalSemaphores::Mark mark;
  if (Status status = local->acquire(name, limit, count, timeout, cancel, &grant, fallback ? &mark : nullptr);
      !status.is_ok()) {
    return status;
  }
  ++local_grants;
  auto state = std::make_shared<client::PermitState>();
  state->name = std::string(name);
  state->count = count;
  state->local = local;
  state->key = std::string(name);
  state->local_id = grant.id;
  state->local_ctime = grant.ctime;
  state->marks = local;
  state->mark = mark;
  return client::PermitAccess::make(std::move(state));
}

Status Client::Impl::mark_server_holder(client::PermitState& state, std::optional<milliseconds> timeout,
                                        const CancelToken* cancel) {
  client::LocalSemaphores::Mark mark;
  Status status = local->mark_server_holder(state.name, timeout, cancel, &mark);
  if (status.is_ok()) {
    state.marks = local;
    state.mark = mark;
    return status;
  }
  if (status.code() == StatusCode::kTimeout || status.code() == StatusCode::kCancelled) return status;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    client::log_warning(
        "server permits are not marked host-wide ({}); fallback cannot serve names either until the local registry "
        "works",
        status.to_string());
  }
  return Status::ok();
}

Status Client::Impl::local_wait(std::string_view name, std::int64_t limit, std::int64_t count,
                                std::optional<milliseconds> timeout, const CancelToken* cancel) {
  Status status = local->wait(name, limit, count, timeout, cancel);
  if (status.is_ok()) ++local_grants;
  return status;
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Client>> Client::create(ClientOptions options) {
  if (options.servers.empty()) options.servers.emplace_back(ClientOptions::kDefaultServer);
  std::vector<client::Endpoint> endpoints;
  for (const std::string& server : options.servers) {
    Result<client::Endpoint> endpoint = client::Endpoint::parse(server);
    if (!endpoint) return endpoint.status();
    endpoints.push_back(std::move(*endpoint));
  }
  if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0 ||
      options.reconnect_min.count() <= 0 || options.reconnect_max < options.reconnect_min) {
    return Status(StatusCode::kInvalidArgument, "timeouts must be positive and reconnect_max at least reconnect_min");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->local = std::make_shared<client::LocalSemaphores>(impl->options.local_dir);
  std::shared_ptr<client::RenewingTlsClient> tls;
  if (impl->options.tls) {
    // The files are read here first: a bad one is the caller's error now,
    // not a refusal at every connection attempt. Renewed on disk later,
    // they are read again at the next connect (kept when they are broken).
    auto made = client::RenewingTlsClient::make(impl->options);
    if (!made) return made.status();
    tls = std::move(*made);
  }
  impl->connection =
      client::Connection::start(impl->options, std::move(endpoints), client::system_lookup(), std::move(tls));
  // The first round tries every server (a connect and a handshake, each
  // bounded by connect_timeout) and ends at the first that answers; waiting
  // for it means no call falls back while a later server could still answer.
  const auto servers = static_cast<std::int64_t>(impl->options.servers.size());
  impl->connection->wait_first_round(2 * servers * impl->options.connect_timeout);
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::~Client() {
  // Ending the session marks its remote permits lost, so dropping the flags
  // afterwards only gives back local ones.
  impl_->connection->stop();
  std::map<std::string, Permit, std::less<>> flags;
  {
    std::lock_guard lock(impl_->flags_mutex);
    flags.swap(impl_->flags);
  }
}

Result<Permit> Client::acquire(std::string_view name, const AcquireOptions& options) {
  if (Status status = check_take(name, options); !status.is_ok()) return status;
  const auto timeout = normalize(options.timeout);
  if (is_local_name(name)) {
    return impl_->local_acquire(name, impl_->options.limit(name), options.count, timeout, options.cancel,
                                /*fallback=*/false);
  }
  const Deadline deadline(timeout);
  if (auto taken = impl_->take_acquire(name, options, timeout, deadline)) {
    if (!*taken) return taken->status();
    auto state = std::make_shared<client::PermitState>();
    state->name = std::string(name);
    state->count = options.count;
    state->fence = (*taken)->fence;
    state->connection = impl_->connection;
    state->session = (*taken)->session;
    // Within the acquire's timeout, as any wait for the permit; marked
    // before it is registered, so that a loss meanwhile marks it lost.
    const Status marked = impl_->mark_server_holder(*state, deadline.remaining(), options.cancel);
    if (marked.is_ok()) impl_->connection->register_permit(state);
    Permit permit = client::PermitAccess::make(std::move(state));
    if (!marked.is_ok()) {
      (void)permit.release();
      if (marked.code() == StatusCode::kCancelled) return cancelled(name);
      return Status(marked.code(), fmt::format("\"{}\" was granted by the server, but {}; it went back to the server "
                                               "so that this host does not run more than its local limit",
                                               name, marked.message()));
    }
    if (options.cancel != nullptr && options.cancel->cancelled()) {
      (void)permit.release();  // the grant raced ahead of the cancel
      return cancelled(name);
    }
    return permit;
  }
  if (options.cancel != nullptr && options.cancel->cancelled()) return cancelled(name);
  Result<std::int64_t> limit = impl_->fallback_limit(name);
  if (!limit) return limit.status();
  Result<Permit> permit =
      impl_->local_acquire(name, *limit, options.count, deadline.remaining(), options.cancel, /*fallback=*/true);
  if (!permit) return impl_->fallback_outcome(permit.status(), name, *limit, options.count);
  return permit;
}

Result<Permit> Client::try_acquire(std::string_view name, std::int64_t count) {
  return acquire(name, {.count = count, .timeout = milliseconds(0)});
}

Status Client::post(std::string_view name, std::int64_t count) {
  if (Status status = check_api_name(name); !status.is_ok()) return status;
  if (Status status = check_count(count); !status.is_ok()) return status;
  if (is_local_name(name)) return impl_->local->post(name, impl_->options.limit(name), count);
  std::optional<client::Deadline::Clock::time_point> silent_until;
  for (;;) {
    client::Connection::Unsent unsent;
    const auto call = impl_->connection->send(
        [&](std::string& line, std::string_view tag) { protocol::encode_post(line, tag, name, count); }, 0, false,
        &unsent);
    if (call) return status_of(client::Connection::wait(*call), fmt::format("POST \"{}\"", name));
    if (!unsent.wait) {
      // A server that answered no is not an outage: its refusal is the answer.
      if (!unsent.refusal.is_ok()) return unsent.refusal;
      break;
    }
    // Made between sessions or after a silent round: a later round decides,
    // as for acquire (after a silent one, within request_timeout).
    if (!silent_until) silent_until = client::Deadline::Clock::now() + impl_->options.request_timeout;
    std::optional<Status> waited =
        impl_->await_round(unsent.after, std::nullopt, silent_until, nullptr, fmt::format("POST \"{}\"", name));
    if (!waited) continue;
    if (!waited->is_ok()) return *waited;
    break;
  }
  Result<std::int64_t> limit = impl_->counter_fallback_limit(name);
  if (!limit) return limit.status();
  return impl_->fallback_outcome(impl_->local->post(name, *limit, count), name, *limit, count);
}

Status Client::wait(std::string_view name, const AcquireOptions& options) {
  if (Status status = check_take(name, options); !status.is_ok()) return status;
  const auto timeout = normalize(options.timeout);
  if (is_local_name(name)) {
    return impl_->local_wait(name, impl_->options.limit(name), options.count, timeout, options.cancel);
  }
  const Deadline deadline(timeout);
  if (auto taken = impl_->take_remote(protocol::Verb::kWait, name, options, timeout, /*ended=*/nullptr)) {
    if (!*taken) return taken->status();
    if (options.cancel != nullptr && options.cancel->cancelled()) {
      // The grant raced ahead of the cancel: the consumed permits go back.
      const std::string what = fmt::format("POST \"{}\"", name);
      Result<client::Reply> reply = impl_->round_trip(what, [&](std::string& line, std::string_view tag) {
        protocol::encode_post(line, tag, name, options.count);
      });
      Status posted = reply ? status_of(*reply, what) : reply.status();
      if (!posted.is_ok()) {
        client::log_warning("a cancelled WAIT \"{}\" was granted {} permits and giving them back failed: {}", name,
                            options.count, posted.to_string());
        return Status(StatusCode::kCancelled,
                      fmt::format("waiting for \"{}\" was cancelled, but its {} permits were consumed and giving "
                                  "them back failed: {}",
                                  name, options.count, posted.to_string()));
      }
      return cancelled(name);
    }
    return {};
  }
  if (options.cancel != nullptr && options.cancel->cancelled()) return cancelled(name);
  Result<std::int64_t> limit = impl_->counter_fallback_limit(name);
  if (!limit) return limit.status();
  return impl_->fallback_outcome(impl_->local_wait(name, *limit, options.count, deadline.remaining(), options.cancel),
                                 name, *limit, options.count);
}

Status Client::try_wait(std::string_view name, std::int64_t count) {
  return wait(name, {.count = count, .timeout = milliseconds(0)});
}

Status Client::timed_wait(std::string_view name, milliseconds timeout, std::int64_t count) {
  return wait(name, {.count = count, .timeout = timeout});
}

Result<std::int64_t> Client::value(std::string_view name) {
  if (!is_local_name(name)) {
    Result<SemaphoreInfo> info = get(name);
    if (info) return info->value;
    // Silent servers are no outage: no local reading either.
    if (!is_connection_failure(info.status()) || impl_->connection->silent()) return info.status();
  }
  if (Status status = check_api_name(name); !status.is_ok()) return status;
  Result<std::int64_t> limit = impl_->local_limit(name);
  if (!limit) return limit.status();
  return impl_->local->value(name, *limit);
}

bool Client::connected() const {
  return impl_->connection->connected();
}

ClientStats Client::stats() const {
  const client::Connection::Counters counters = impl_->connection->counters();
  ClientStats stats;
  stats.connected = counters.connected;
  stats.server = counters.server;
  stats.connects = counters.connects;
  stats.connection_losses = counters.losses;
  stats.fallback_entries = counters.fallback_entries;
  stats.fallback_exits = counters.fallback_exits;
  stats.resumes = counters.resumes;
  stats.unreachable = counters.unreachable;
  stats.silent = counters.silent;
  if (counters.connected) {
    stats.protocol = std::to_string(counters.protocol_major) + "." + std::to_string(counters.protocol_minor);
    stats.session_id = counters.session_id;
  }
  stats.local_grants = impl_->local_grants.load();
  stats.remote_grants = impl_->remote_grants.load();
  return stats;
}

}  // namespace netsem
