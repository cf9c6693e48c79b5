// EntryGenerator: random valid log entries for the replication tests, seeded
// and bounded: sessions that open, request, go silent and close; requests
// of every replicated verb over a few names (defined, created, ad hoc) with
// clashing tags; time that mostly advances and sometimes goes back; touches,
// time advances and reconfigurations. It learns the ids the state machine
// assigns from the results it is shown (observe), so most requests name an
// open session and some name one that ended.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "replication/entry.h"
#include "replication/results.h"

namespace netsem::replication::generated {

// Commands and answers from their leading fields (the rest at their
// defaults), without brace initializers that leave fields out.
inline SessionRequest make_request(SessionId session, RequestVerb verb, std::string tag, std::string name = {},
                                   std::int64_t count = 1, std::int64_t timeout_ms = -1) {
  SessionRequest r;
  r.session = session;
  r.verb = verb;
  r.tag = std::move(tag);
  r.name = std::move(name);
  r.count = count;
  r.timeout_ms = timeout_ms;
  return r;
}
inline OpenSession make_open(std::string label = {}, std::string peer = {}, std::string dialect = {}) {
  return OpenSession{std::move(label), std::move(peer), std::move(dialect)};
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
      entry.commands.push_back(OpenSession{"first", "127.0.0.1:1", "v1"});
      return entry;
    }
    time_ = std::max<std::int64_t>(0, time_ + pick(-50, 300));
    entry.time_ms = time_;
    const int commands = pick(1, 6);
    for (int i = 0; i < commands; ++i) entry.commands.push_back(command());
    return entry;
  }

  // The results of the last entry: the ids opened and the sessions ended.
  void observe(const EntryResults& results) {
    for (const CommandResult& c : results.commands) {
      if (c.answer.type == Answer::Type::kOpened) sessions_.push_back(c.answer.number);
      for (const Ended& e : c.ended) std::erase(sessions_, e.session);
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

  Command command() {
    const int roll = pick(0, 99);
    if (roll < 8 || sessions_.empty()) {
      return OpenSession{pick(0, 1) ? "" : "job" + std::to_string(pick(0, 9)), "127.0.0." + std::to_string(pick(1, 3)),
                         pick(0, 3) ? "v1" : "ace"};
    }
    if (roll < 70) return request();
    if (roll < 74) return CloseSession{some_session(), static_cast<CloseCause>(pick(1, 6))};
    if (roll < 80) return TouchSession{some_session()};
    if (roll < 82) return TouchAll{};
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
    } else if (roll < 98) {
      r.verb = RequestVerb::kKick;
      r.target = some_session();
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
};

}  // namespace netsem::replication::generated
