// EntryGenerator: random valid log entries for the replication tests, seeded
// and bounded: sessions that open on one of three servers, request, go
// silent, move to another server (ResumeSession, now and then with a wrong
// secret) and close; requests of every replicated verb over a few names
// (defined, created, ad hoc) with clashing tags; time that mostly advances
// and sometimes goes back; touches, time advances, reconfigurations and
// member changes. Most requests come from the session's host with its next
// seq; some are resent (a seq already applied: kDuplicate) or come from
// another server (kNotHost). It learns the ids, hosts and seqs from the
// entries and results it is shown (observe), so most requests name an open
// session and some name one that ended.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "replication/entry.h"
#include "replication/results.h"

namespace netsem::replication::generated {

// The server the tests' sessions are hosted by unless they say otherwise,
// and a valid resume secret.
inline constexpr ServerId kHost = 1;
inline const std::string kSecret = "0123456789abcdef0123456789abcdef";

// Commands and answers from their leading fields (the rest at their
// defaults), without brace initializers that leave fields out. A request's
// origin is kHost and its seq 0 (to be filled in: check_command refuses 0).
inline SessionRequest make_request(SessionId session, RequestVerb verb, std::string tag, std::string name = {},
                                   std::int64_t count = 1, std::int64_t timeout_ms = -1) {
  SessionRequest r;
  r.session = session;
  r.origin = kHost;
  r.verb = verb;
  r.tag = std::move(tag);
  r.name = std::move(name);
  r.count = count;
  r.timeout_ms = timeout_ms;
  return r;
}
inline OpenSession make_open(std::string label = {}, std::string peer = {}, std::string dialect = {},
                             ServerId origin = kHost, std::uint64_t nonce = 0, std::string secret = kSecret) {
  // The log carries the secret's digest only.
  return OpenSession{std::move(label), std::move(peer), std::move(dialect), origin, nonce, secret_digest(secret)};
}
inline CloseSession make_close(SessionId session, CloseCause cause, ServerId origin = kHost) {
  CloseSession c;
  c.session = session;
  c.origin = origin;
  c.cause = cause;
  return c;
}
inline TouchSession make_touch(SessionId session, ServerId origin = kHost) {
  TouchSession t;
  t.session = session;
  t.origin = origin;
  return t;
}
inline ResumeSession make_resume(SessionId session, ServerId origin, std::string secret = kSecret,
                                 ServerId from_host = kHost) {
  ResumeSession r;
  r.session = session;
  r.origin = origin;
  r.secret_digest = secret_digest(secret);
  r.from_host = from_host;
  return r;
}
inline Answer make_answer(Answer::Type type, std::uint64_t number = 0,
                          protocol::ErrorCode error = protocol::ErrorCode::kNone, bool no_fence = false) {
  return Answer{type, number, error, no_fence};
}

class EntryGenerator {
 public:
  // `lower_limits`: whether a reconfiguration may lower a defined limit
  // (then permits in use may exceed it until enough come back).
  EntryGenerator(std::uint64_t seed, bool lower_limits) : rng_(seed), lower_limits_(lower_limits) {}

  Entry next() {
    Entry entry;
    if (first_) {
      first_ = false;
      limits_ = {{"d1", 2}, {"d2", 1}};
      entry.commands.push_back(Reconfigure{limits_, 1500});
      entry.commands.push_back(make_open("first", "127.0.0.1:1", "v1", 1, ++nonce_, secret_of(1)));
      for (ServerId id = 1; id <= 3; ++id) entry.commands.push_back(SetMember{id, member_address(id)});
      return entry;
    }
    time_ = std::max<std::int64_t>(0, time_ + pick(-50, 300));
    entry.time_ms = time_;
    const int commands = pick(1, 6);
    for (int i = 0; i < commands; ++i) entry.commands.push_back(command());
    return entry;
  }

  // The last entry and its results: the ids opened (with their hosts), the
  // hosts moved, the seqs applied and the sessions ended.
  void observe(const Entry& entry, const EntryResults& results) {
    for (std::size_t i = 0; i < results.commands.size() && i < entry.commands.size(); ++i) {
      const CommandResult& c = results.commands[i];
      const Command& command = entry.commands[i];
      if (c.answer.type == Answer::Type::kOpened) {
        sessions_.push_back(c.answer.number);
        hosts_[c.answer.number] = std::get<OpenSession>(command).origin;
        openers_[c.answer.number] = std::get<OpenSession>(command).origin;
      } else if (const auto* resume = std::get_if<ResumeSession>(&command)) {
        if (c.answer.type == Answer::Type::kOk) hosts_[resume->session] = resume->origin;
      } else if (const auto* request = std::get_if<SessionRequest>(&command)) {
        if (c.answer.type != Answer::Type::kNoSession && c.answer.type != Answer::Type::kNotHost &&
            c.answer.type != Answer::Type::kDuplicate) {
          seqs_[request->session] = request->seq;
        }
      }
      for (const Ended& e : c.ended) {
        std::erase(sessions_, e.session);
        hosts_.erase(e.session);
        openers_.erase(e.session);
        seqs_.erase(e.session);
      }
    }
  }

 private:
  int pick(int low, int high) { return std::uniform_int_distribution<int>(low, high)(rng_); }
  template <class T>
  const T& one_of(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(pick(0, static_cast<int>(v.size()) - 1))];
  }

  SessionId some_session() {
    if (sessions_.empty() || pick(0, 30) == 0) return static_cast<SessionId>(pick(1, 40));
    return one_of(sessions_);
  }
  // The session's host, mostly; another server now and then (kNotHost).
  ServerId origin_for(SessionId session) {
    const auto found = hosts_.find(session);
    if (found == hosts_.end() || pick(0, 19) == 0) return static_cast<ServerId>(pick(1, 3));
    return found->second;
  }
  // The session's next seq, mostly; one already applied now and then
  // (kDuplicate). Within one entry the generator does not know which of its
  // earlier requests apply, so it counts on from the highest it proposed.
  std::uint64_t seq_for(SessionId session) {
    std::uint64_t& proposed = proposed_[session];
    proposed = std::max(proposed, seqs_[session]);
    if (proposed > 0 && pick(0, 14) == 0) return static_cast<std::uint64_t>(pick(1, static_cast<int>(proposed)));
    return ++proposed;
  }
  // Each server's sessions share a secret, so that a resume knows it.
  static std::string secret_of(ServerId server) { return std::string(32, static_cast<char>('a' + server)); }
  static std::string member_address(ServerId id) { return "127.0.0." + std::to_string(id) + ":53555"; }

  Command command() {
    const int roll = pick(0, 99);
    if (roll < 8 || sessions_.empty()) {
      const auto origin = static_cast<ServerId>(pick(1, 3));
      return make_open(pick(0, 1) ? "" : "job" + std::to_string(pick(0, 9)), "127.0.0." + std::to_string(pick(1, 3)),
                       pick(0, 3) ? "v1" : "ace", origin, ++nonce_, secret_of(origin));
    }
    if (roll < 68) return request();
    if (roll < 72) {
      const SessionId s = some_session();
      return make_close(s, static_cast<CloseCause>(pick(1, 6)), origin_for(s));
    }
    if (roll < 78) {
      const SessionId s = some_session();
      return make_touch(s, origin_for(s));
    }
    if (roll < 80) {
      // Another server takes the session over; now and then with the wrong
      // secret (kDenied).
      const SessionId s = some_session();
      const auto opener = openers_.find(s);
      const ServerId by = opener == openers_.end() ? 1 : opener->second;
      // Mostly from the host it has now; now and then a stale one (kNotHost).
      const auto host = hosts_.find(s);
      const ServerId from = host == hosts_.end() || pick(0, 5) == 0 ? static_cast<ServerId>(pick(1, 3)) : host->second;
      return make_resume(s, static_cast<ServerId>(pick(1, 3)), secret_of(pick(0, 3) ? by : by % 3 + 1), from);
    }
    if (roll < 81) {
      const auto id = static_cast<ServerId>(pick(1, 5));
      if (pick(0, 1)) return RemoveMember{id};
      return SetMember{id, "10.0.0." + std::to_string(pick(1, 9)) + ":" + std::to_string(pick(1, 65535))};
    }
    if (roll < 82) {
      // Now and then the fences jump (netsem cluster raise-fences).
      if (pick(0, 3) == 0) return RaiseFences{static_cast<std::uint64_t>(pick(1, 1000)), 1, 1};
      return TouchAll{};
    }
    if (roll < 97) return AdvanceTime{};
    for (auto& [name, limit] : limits_) {
      const std::int64_t next = pick(1, 4);
      limit = lower_limits_ ? next : std::max(limit, next);
    }
    Reconfigure r{limits_, one_of(std::vector<std::int64_t>{0, 800, 1500, 4000})};
    if (lower_limits_ && pick(0, 3) == 0) r.limits.pop_back();  // d2 becomes undefined
    return r;
  }

  SessionRequest request() {
    static const std::vector<std::string> names = {"a", "b", "d1", "d2", "m1", "m2"};
    static const std::vector<std::int64_t> timeouts = {-1, 0, 0, 50, 200, 1000};
    SessionRequest r;
    r.session = some_session();
    r.origin = origin_for(r.session);
    r.seq = seq_for(r.session);
    r.tag = "t" + std::to_string(pick(0, 5));
    r.name = one_of(names);
    r.count = pick(1, 6) == 1 ? 2 : 1;
    const int roll = pick(0, 99);
    if (roll < 35) {
      r.verb = RequestVerb::kAcquire;
      r.timeout_ms = one_of(timeouts);
    } else if (roll < 45) {
      r.verb = RequestVerb::kWait;
      r.timeout_ms = one_of(timeouts);
    } else if (roll < 68) {
      r.verb = RequestVerb::kRelease;
    } else if (roll < 76) {
      r.verb = RequestVerb::kPost;
    } else if (roll < 84) {
      r.verb = RequestVerb::kCancel;
      r.pending_tag = "t" + std::to_string(pick(0, 5));
    } else if (roll < 91) {
      r.verb = RequestVerb::kCreate;
      r.name = pick(0, 1) ? "m1" : "m2";
      r.max = pick(1, 3);
      r.value = pick(0, static_cast<int>(r.max));
      r.exclusive = pick(0, 1) == 1;
    } else if (roll < 96) {
      r.verb = RequestVerb::kDelete;
    } else if (roll < 97) {
      r.verb = RequestVerb::kKick;
      r.target = some_session();
    } else if (roll < 98) {
      r.verb = RequestVerb::kSync;
    } else {
      r.verb = RequestVerb::kHello;
      r.name = pick(0, 1) ? "label" : "";
    }
    if (r.verb != RequestVerb::kAcquire && r.verb != RequestVerb::kWait && r.verb != RequestVerb::kRelease &&
        r.verb != RequestVerb::kPost) {
      r.count = 1;
    }
    return r;
  }

  std::mt19937_64 rng_;
  bool lower_limits_;
  bool first_ = true;
  std::int64_t time_ = 0;
  std::vector<std::pair<std::string, std::int64_t>> limits_;
  std::vector<SessionId> sessions_;
  std::map<SessionId, ServerId> hosts_;          // as the state machine has them
  std::map<SessionId, ServerId> openers_;        // whose secret the session has
  std::map<SessionId, std::uint64_t> seqs_;      // the last seq applied
  std::map<SessionId, std::uint64_t> proposed_;  // the highest seq proposed
  std::uint64_t nonce_ = 0;
};

}  // namespace netsem::replication::generated
