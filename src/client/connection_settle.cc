// What a resumed session holds, and the settling of its broken connection's
// calls (rule 6 of docs/client.md, "Resuming the session"): count_held keeps
// held_, the counts the answers read tell (dispatch calls it for each OK), and
// settle holds them against MINE's answer on the new connection: each call
// kept, completed, re-sent or failed, each remote permit MINE no longer shows
// lost. resume() (connection_resume.cc) calls settle once RESUME and MINE
// are answered.
#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "client/client_log.h"
#include "client/connection.h"
#include "protocol/fields.h"
#include "protocol/names.h"
#include "protocol/requests.h"

namespace netsem::client {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A call's request as parse_request reads it (the line without its "\n").
bool parse_call(const Call& call, protocol::Request& request) {
  protocol::ParseError error;
  std::string_view line = call.line;
  if (line.ends_with('\n')) line.remove_suffix(1);
  return protocol::parse_request(line, request, error) == protocol::ParseStatus::kRequest;
}

}  // namespace

void Connection::settle(const std::vector<std::string>& mine, const std::vector<std::string>& early, bool moved) {
  // What the session holds and waits for at the server.
  struct Held {
    std::int64_t count = 0;
    std::uint64_t fence = 0;
  };
  std::unordered_map<std::string, Held> held;
  std::unordered_map<std::string, bool> queued;  // by tag
  for (const std::string& item : mine) {
    std::vector<std::string_view> fields;
    std::string_view rest = item;
    while (!rest.empty()) {
      const auto space = rest.find(' ');
      fields.push_back(rest.substr(0, space));
      rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
    }
    std::string name;
    std::int64_t count = 0;
    std::uint64_t fence = 0;
    if (fields.size() == 4 && fields[0] == "held" &&
        protocol::decode_name(fields[1], name) == protocol::ErrorCode::kNone &&
        protocol::parse_int(fields[2], 1, std::numeric_limits<std::int64_t>::max(), count) &&
        protocol::parse_uint(fields[3], fence)) {
      held[name] = {count, fence};
    } else if (fields.size() == 4 && fields[0] == "queued") {
      queued[std::string(fields[1])] = true;
    } else {
      log_debug("MINE: a row this client does not read: {}", printable(item));
    }
  }
  // The tags the new connection has already answered for good (not QUEUED).
  std::unordered_map<std::string, bool> answered;
  for (const std::string& line : early) {
    protocol::Answer answer;
    if (protocol::parse_answer(line, answer) && answer.type != protocol::AnswerType::kQueued) {
      answered[std::string(answer.tag)] = true;
    }
  }
  // What the session held as far as the client knew: the held counts of the
  // answers read (held_), not the registered permits. A grant is registered
  // only on its caller's thread, after the host-wide mark (which may wait),
  // and a permit being released is unregistered before its RELEASE is even
  // queued: counting permits_ here would take a grant already read for a
  // rise and hand it to another unanswered ACQUIRE of the name (two permits
  // in the client for one in the session).
  std::unordered_map<std::string, std::int64_t> extra;  // MINE's count less the known one, by name
  for (const auto& [name, row] : held) extra[name] += row.count;
  for (const auto& [name, count] : held_) extra[name] -= count;

  std::vector<std::shared_ptr<Call>> calls;
  for (auto& [tag, call] : pending_) calls.push_back(std::move(call));
  pending_.clear();
  std::sort(calls.begin(), calls.end(), [](const auto& a, const auto& b) { return a->seq < b->seq; });
  std::vector<std::shared_ptr<Call>> resend;
  std::vector<std::pair<std::shared_ptr<Call>, Reply>> done;
  const auto now = Clock::now();
  // How the connection ended, for the calls of an outcome left unknown.
  const std::string broke = moved ? "the client moved the session to another server (the server did not answer for "
                                    "a sixth of its session timeout) before the answer"
                                  : "the connection broke before the answer";
  const std::string outcome_unknown = "outcome unknown: " + broke;
  const auto unknown = [&](const std::shared_ptr<Call>& call, std::string_view why = {}) {
    Reply reply;
    reply.failure = Status(StatusCode::kUnavailable, std::string(why.empty() ? outcome_unknown : why));
    done.emplace_back(call, std::move(reply));
  };
  // ACQUIREs first, then RELEASEs: a count that rose is a grant before it is
  // a RELEASE that did not happen (either way the counts agree).
  std::vector<std::pair<std::shared_ptr<Call>, protocol::Request>> releases;
  for (const auto& call : calls) {
    protocol::Request request;
    if (!parse_call(*call, request)) {
      unknown(call);
      continue;
    }
    switch (request.verb) {
      case protocol::Verb::kAcquire: {
        if (queued.contains(call->tag)) {
          // Still waiting: its answer comes here, under its tag.
          call->answered = true;
          call->seq = 0;
          pending_.emplace(call->tag, call);
          break;
        }
        std::int64_t& surplus = extra[request.name];
        if (surplus >= request.count) {
          surplus -= request.count;
          Reply reply;
          reply.type = protocol::AnswerType::kOk;
          reply.rest = std::to_string(held[request.name].fence);
          done.emplace_back(call, std::move(reply));
          break;
        }
        // Ended without a grant (or never read): again, with what is left
        // of its timeout.
        if (request.timeout_ms > 0) {
          const auto left =
              milliseconds(request.timeout_ms) - std::chrono::duration_cast<milliseconds>(now - call->sent_at);
          if (left.count() <= 0) {
            Reply reply;
            reply.type = protocol::AnswerType::kTimeout;
            done.emplace_back(call, std::move(reply));
            break;
          }
          call->line.clear();
          protocol::encode_acquire(call->line, call->tag, request.name, request.count, left.count());
        }
        resend.push_back(call);
        break;
      }
      case protocol::Verb::kWait:
        if (queued.contains(call->tag) || answered.contains(call->tag)) {
          // Not granted before the break (a grant ends the wait): still
          // waiting, its answer comes here under its tag, or has come
          // between RESUME and MINE (dispatched after this). Only a WAIT
          // that is neither may have been granted unheard: unknown.
          call->answered = true;
          call->seq = 0;
          pending_.emplace(call->tag, call);
        } else {
          unknown(call, broke + ", and the resumed session no longer waits for it (it may have been granted)");
        }
        break;
      case protocol::Verb::kRelease:
        releases.emplace_back(call, std::move(request));
        break;
      case protocol::Verb::kGet:
      case protocol::Verb::kList:
      case protocol::Verb::kHolders:
      case protocol::Verb::kWaiters:
      case protocol::Verb::kSessions:
      case protocol::Verb::kStats:
      case protocol::Verb::kPing:
      case protocol::Verb::kLease:
      case protocol::Verb::kMine:
      case protocol::Verb::kLeader:
        resend.push_back(call);
        break;
      default:
        // POST, CREATE, DELETE, KICK, CANCEL...: changed something, or not.
        unknown(call);
        break;
    }
  }
  for (auto& [call, request] : releases) {
    // An unanswered RELEASE is still in held_: it took effect if the count
    // went down by its count, else it is sent again.
    std::int64_t& surplus = extra[request.name];
    if (surplus <= -request.count) {
      surplus += request.count;
      Reply reply;
      reply.type = protocol::AnswerType::kOk;
      done.emplace_back(call, std::move(reply));
    } else {
      resend.push_back(call);
    }
  }
  // From here the session holds what MINE says (the calls sent again have
  // not taken effect); their answers count from there.
  held_.clear();
  for (const auto& [name, row] : held) held_[name] = row.count;
  // Permits the server no longer holds (the count went down with no RELEASE
  // to tell why): lost, as many of the name's registered permits as it takes.
  std::vector<std::shared_ptr<client::PermitState>> lost;
  {
    std::lock_guard lock(mutex_);
    for (auto it = permits_.begin(); it != permits_.end();) {
      const auto permit = it->second.lock();
      if (!permit) {
        ++it;
        continue;
      }
      const auto surplus = extra.find(permit->name);
      if (surplus == extra.end() || surplus->second >= 0) {
        ++it;
        continue;
      }
      surplus->second += permit->count;
      it = permits_.erase(it);
      lost.push_back(permit);
    }
    for (const auto& call : resend) {
      call->answered = false;
      call->items.clear();
    }
    outbox_.insert(outbox_.begin(), resend.begin(), resend.end());
  }
  for (auto& [call, reply] : done) complete(*call, std::move(reply));
  const Status reason(StatusCode::kUnavailable, "the resumed session no longer holds the permit");
  for (const auto& permit : lost) {
    log_warning("session {}: the server no longer holds {} of \"{}\": lost", resume_id_, permit->count,
                printable(permit->name));
    permit->mark_lost(reason, std::nullopt);
  }
}

void Connection::count_held(const Call& call) {
  // Every call's OK passes here: parse only an ACQUIRE's or a RELEASE's.
  if (call.line.find(" ACQUIRE ") == std::string::npos && call.line.find(" RELEASE ") == std::string::npos) return;
  protocol::Request request;
  if (!parse_call(call, request)) return;
  if (request.verb == protocol::Verb::kAcquire) {
    held_[request.name] += request.count;
  } else if (request.verb == protocol::Verb::kRelease) {
    const auto found = held_.find(request.name);
    if (found == held_.end()) return;
    found->second -= request.count;
    if (found->second <= 0) held_.erase(found);
  }
}

}  // namespace netsem::client
