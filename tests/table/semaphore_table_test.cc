// Tests of SemaphoreTable: most behaviour as scripts (one table row per
// step: a request in a compact, wire-like notation and the expected answer
// followed by the completions it caused), then the parts a script cannot
// show: fence reservation, journal records, restore, observation (resumed
// queries among them), and the
// allocation-free hot path (counted through a replaced global operator new).
#include "table/semaphore_table.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "protocol/codec.h"
#include "support/thread_cpu_time.h"

namespace {

std::size_t g_allocations = 0;

}  // namespace

// The replaced pair below is malloc/free on both sides; g++ 12 cannot see
// that through inlining and warns.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t size) {
  ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace netsem::server {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> split(std::string_view line) {
  std::vector<std::string> out;
  std::istringstream in{std::string(line)};
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

std::string_view completion_text(Completion::Type type) {
  switch (type) {
    case Completion::Type::kGranted:
      return "OK";
    case Completion::Type::kTimedOut:
      return "TIMEOUT";
    case Completion::Type::kCancelled:
      return "CANCELLED";
    case Completion::Type::kTooMany:
      return "ERR TOO_MANY";
    case Completion::Type::kNotFound:
      return "ERR NOT_FOUND";
    case Completion::Type::kNoFence:
      return "ERR LIMIT (no fence)";
  }
  return "?";
}

std::string error_text(ErrorCode code) {
  return code == ErrorCode::kNone ? "OK" : "ERR " + std::string(protocol::error_code_name(code));
}

// A table, its journal and a clock, driven by one-line commands:
//   <s> <tag> ACQUIRE|WAIT <name> [count] [timeout_ms]   -> OK <fence> | QUEUED <pos> | TIMEOUT | ERR <code>
//   <s> RELEASE <name> [count]   POST <name> [count]      -> OK <value> | ERR <code>
//   <s> CANCEL <tag>   CREATE <name> <value> [max] [EXCL]   DELETE <name>
//   GET <name> -> "<value> <max> <holders> <waiters> <kind>"   LIST <prefix> -> names
//   HOLDERS <name> -> "<s>:<count> f<fence> <held_ms>ms, ..." | NOT_FOUND
//   WAITERS <name> -> "<s>:<count>[ wait] <waited_ms>ms left:<timeout_ms_left>, ..." | NOT_FOUND
//   LOAD <s> -> "<permits_held> <pending>"
//   open <s>   close <s>   TICK <ms> (advance the clock, then expire)
//   RELOAD [name=limit ...] -> OK [created:<names>]   JOURNAL -> name=value/max ... #records
// Every answer is followed by " | <s>:<tag> <outcome>" per completion.
// Sessions 1 to 4 are open from the start. The table's time is `now`.
class Harness {
 public:
  explicit Harness(TableLimits limits = {}) : table(journal, limits) {
    for (SessionId s = 1; s <= 4; ++s) table.open_session(s);
  }

  std::string run(std::string_view line) {
    table.set_time(now);  // each command is a turn of its own
    Completions out;
    std::string answer = dispatch(split(line), out);
    for (const Completion& c : out) {
      answer += " | " + std::to_string(c.session) + ":" + c.tag + " " + std::string(completion_text(c.type));
      if (c.type == Completion::Type::kGranted) answer += " " + std::to_string(c.fence);
    }
    return answer;
  }

  MemoryJournal journal;
  SemaphoreTable table;
  TimePoint now{};

 private:
  static std::int64_t arg(const std::vector<std::string>& w, std::size_t i, std::int64_t fallback) {
    return i < w.size() ? std::stoll(w[i]) : fallback;
  }

  std::string dispatch(const std::vector<std::string>& w, Completions& out) {
    const std::string& verb = w.at(0);
    if (verb == "open") {
      table.open_session(std::stoull(w.at(1)));
      return "OK";
    }
    if (verb == "close") {
      table.close_session(std::stoull(w.at(1)), out);
      return "OK";
    }
    if (verb == "TICK") {
      now += std::chrono::milliseconds(std::stoll(w.at(1)));
      table.expire(now, out);
      return "OK";
    }
    if (verb == "POST") {
      std::int64_t value = -1;
      const ErrorCode e = table.post(w.at(1), arg(w, 2, 1), value, out);
      return e == ErrorCode::kNone ? "OK " + std::to_string(value) : error_text(e);
    }
    if (verb == "CREATE") {
      const std::int64_t value = std::stoll(w.at(2));
      const bool excl = w.back() == "EXCL";
      const std::int64_t max = w.size() > 3 && w[3] != "EXCL" ? std::stoll(w[3]) : value;
      return error_text(table.create(w.at(1), value, max, excl));
    }
    if (verb == "DELETE") return error_text(table.remove(w.at(1)));
    if (verb == "GET") {
      const SemaphoreInfo i = table.get(w.at(1));
      std::ostringstream s;
      s << i.value << ' ' << i.max << ' ' << i.holders << ' ' << i.waiters << ' ' << kind_name(i.kind);
      return s.str();
    }
    if (verb == "LIST") {
      std::string names;
      table.list(w.size() > 1 ? w[1] : "",
                 [&](const SemaphoreInfo& i) { names += (names.empty() ? "" : " ") + std::string(i.name); });
      return names;
    }
    if (verb == "HOLDERS") {
      std::string rows;
      const bool found = table.holders(w.at(1), now, [&](const HolderInfo& i) {
        rows += (rows.empty() ? "" : ", ") + std::to_string(i.session) + ":" + std::to_string(i.count) + " f" +
                std::to_string(i.fence) + " " + std::to_string(i.held_ms) + "ms";
      });
      return found ? rows : "NOT_FOUND";
    }
    if (verb == "WAITERS") {
      std::string rows;
      const bool found = table.waiters(w.at(1), now, [&](const WaiterInfo& i) {
        rows += (rows.empty() ? "" : ", ") + std::to_string(i.session) + ":" + std::to_string(i.count) +
                (i.mode == TakeMode::kWait ? " wait " : " ") + std::to_string(i.waited_ms) +
                "ms left:" + std::to_string(i.timeout_ms_left);
      });
      return found ? rows : "NOT_FOUND";
    }
    if (verb == "LOAD") {
      const SessionLoad load = table.session_load(std::stoull(w.at(1)));
      return std::to_string(load.permits_held) + " " + std::to_string(load.pending);
    }
    if (verb == "RELOAD") {
      std::vector<std::pair<std::string, std::int64_t>> limits;
      for (std::size_t i = 1; i < w.size(); ++i) {
        const auto eq = w[i].find('=');
        limits.emplace_back(w[i].substr(0, eq), std::stoll(w[i].substr(eq + 1)));
      }
      std::string answer = "OK";
      const std::vector<std::string> created = table.configure_defined(limits, out);
      for (std::size_t i = 0; i < created.size(); ++i) answer += (i == 0 ? " created:" : ",") + created[i];
      return answer;
    }
    if (verb == "JOURNAL") {
      std::string state;
      for (const auto& [name, c] : journal.created()) {
        state += name + "=" + std::to_string(c.value) + "/" + std::to_string(c.max) + " ";
      }
      return state + "#" + std::to_string(journal.records());
    }
    const SessionId session = std::stoull(verb);
    if (w.at(1) == "RELEASE") {
      std::int64_t value = -1;
      const ErrorCode e = table.release(session, w.at(2), arg(w, 3, 1), value, out);
      return e == ErrorCode::kNone ? "OK " + std::to_string(value) : error_text(e);
    }
    if (w.at(1) == "CANCEL") return error_text(table.cancel(session, w.at(2), out));
    TakeRequest r;
    r.session = session;
    r.tag = w.at(1);
    r.mode = w.at(2) == "WAIT" ? TakeMode::kWait : TakeMode::kAcquire;
    EXPECT_TRUE(w.at(2) == "WAIT" || w.at(2) == "ACQUIRE") << w.at(2);
    r.name = w.at(3);
    r.count = arg(w, 4, 1);
    r.timeout_ms = arg(w, 5, -1);
    r.now = now;
    const TakeResult t = table.take(r, out);
    switch (t.type) {
      case TakeResult::Type::kGranted:
        return "OK " + std::to_string(t.fence);
      case TakeResult::Type::kQueued:
        return "QUEUED " + std::to_string(t.position);
      case TakeResult::Type::kTimedOut:
        return "TIMEOUT";
      case TakeResult::Type::kError:
        return error_text(t.error);
    }
    return "?";
  }
};

struct Step {
  const char* command;
  const char* expected;
};

struct ScriptCase {
  const char* name;
  std::vector<Step> steps;
  TableLimits limits{};
};

class Script : public testing::TestWithParam<ScriptCase> {};

TEST_P(Script, Answers) {
  Harness h(GetParam().limits);
  for (const Step& step : GetParam().steps) {
    EXPECT_EQ(h.run(step.command), step.expected) << "after: " << step.command;
  }
}

const ScriptCase kFifo[] = {
    {"LaterSmallWaiterNeverOvertakesEarlierBig",
     {{"RELOAD s=3", "OK"},
      {"1 a ACQUIRE s 2", "OK 1"},
      {"2 b ACQUIRE s 2", "QUEUED 1"},
      {"3 c ACQUIRE s 1", "QUEUED 2"},
      {"GET s", "1 3 1 2 defined"},
      {"1 RELEASE s 2", "OK 0 | 2:b OK 2 | 3:c OK 3"}}},
    {"TryNeverBargesPastQueue",
     {{"RELOAD s=2", "OK"},
      {"1 a ACQUIRE s 2", "OK 1"},
      {"2 b ACQUIRE s 2", "QUEUED 1"},
      {"1 RELEASE s 1", "OK 1"},
      {"3 c ACQUIRE s 1 0", "TIMEOUT"},
      {"3 c WAIT s 1 0", "TIMEOUT"},
      {"GET s", "1 2 1 1 defined"}}},
    {"TryGrantsWhenQueueEmpty",
     {{"RELOAD s=2", "OK"},
      {"1 a ACQUIRE s 1 0", "OK 1"},
      {"2 b ACQUIRE s 2 0", "TIMEOUT"},
      {"2 b ACQUIRE s 1 0", "OK 2"}}},
    {"GrantedHeadGrantsEveryoneThatFits",
     {{"RELOAD s=3", "OK"},
      {"1 a ACQUIRE s 3", "OK 1"},
      {"2 b ACQUIRE s 1", "QUEUED 1"},
      {"3 c ACQUIRE s 1", "QUEUED 2"},
      {"4 d ACQUIRE s 2", "QUEUED 3"},
      {"1 RELEASE s 2", "OK 0 | 2:b OK 2 | 3:c OK 3"},
      {"GET s", "0 3 3 1 defined"}}},
    {"CancelledHeadGrantsNext",
     {{"RELOAD s=3", "OK"},
      {"1 a ACQUIRE s 2", "OK 1"},
      {"2 b ACQUIRE s 3", "QUEUED 1"},
      {"3 c ACQUIRE s 1", "QUEUED 2"},
      {"4 d ACQUIRE s 1", "QUEUED 3"},
      {"2 CANCEL b", "OK | 2:b CANCELLED | 3:c OK 2"},
      {"GET s", "0 3 2 1 defined"}}},
    {"TimedOutHeadGrantsNext",
     {{"RELOAD s=3", "OK"},
      {"1 a ACQUIRE s 2", "OK 1"},
      {"2 b ACQUIRE s 3 100", "QUEUED 1"},
      {"3 c ACQUIRE s 1", "QUEUED 2"},
      {"TICK 99", "OK"},
      {"TICK 1", "OK | 2:b TIMEOUT | 3:c OK 2"}}},
    {"ClosedSessionHeadGrantsNext",
     {{"RELOAD s=3", "OK"},
      {"1 a ACQUIRE s 2", "OK 1"},
      {"2 b ACQUIRE s 3", "QUEUED 1"},
      {"3 c ACQUIRE s 1", "QUEUED 2"},
      {"close 2", "OK | 3:c OK 2"},
      {"GET s", "0 3 2 0 defined"},
      {"3 c ACQUIRE s 1 0", "TIMEOUT"}}},
    {"LeavingMiddleWaiterKeepsOrder",
     {{"RELOAD s=1", "OK"},
      {"1 a ACQUIRE s", "OK 1"},
      {"2 b ACQUIRE s", "QUEUED 1"},
      {"3 c ACQUIRE s", "QUEUED 2"},
      {"4 d ACQUIRE s", "QUEUED 3"},
      {"3 CANCEL c", "OK | 3:c CANCELLED"},
      {"1 RELEASE s", "OK 0 | 2:b OK 2"},
      {"2 RELEASE s", "OK 0 | 4:d OK 3"}}},
    {"WaitConsumesAcquireHolds",
     {{"RELOAD s=2", "OK"},
      {"1 a WAIT s 2", "OK 1"},
      {"GET s", "0 2 0 0 defined"},
      {"1 RELEASE s", "ERR NOT_HELD"},
      {"2 b ACQUIRE s", "QUEUED 1"},
      {"POST s", "OK 0 | 2:b OK 2"},
      {"GET s", "0 2 1 0 defined"}}},
};
INSTANTIATE_TEST_SUITE_P(Fifo, Script, testing::ValuesIn(kFifo), [](const auto& p) { return p.param.name; });

const ScriptCase kTimeouts[] = {
    {"ExpiresAtItsDeadlineNotBefore",
     {{"RELOAD s=1", "OK"},
      {"1 a ACQUIRE s", "OK 1"},
      {"TICK 10", "OK"},
      {"2 b ACQUIRE s 1 50", "QUEUED 1"},
      {"3 c WAIT s 1 20", "QUEUED 2"},
      {"TICK 19", "OK"},
      {"TICK 1", "OK | 3:c TIMEOUT"},
      {"TICK 29", "OK"},
      {"TICK 1", "OK | 2:b TIMEOUT"},
      {"GET s", "0 1 1 0 defined"}}},
    {"ForeverAndHugeTimeoutsNeverExpire",
     {{"RELOAD s=1", "OK"},
      {"1 a ACQUIRE s", "OK 1"},
      {"2 b ACQUIRE s 1 -1", "QUEUED 1"},
      {"3 c ACQUIRE s 1 9223372036854775807", "QUEUED 2"},
      {"TICK 3000000000000", "OK"},
      {"GET s", "0 1 1 2 defined"}}},
    {"AllExpiredLeaveBeforeAnyGrant",
     {{"RELOAD s=2", "OK"},
      {"1 a ACQUIRE s 2", "OK 1"},
      {"2 b ACQUIRE s 2 100", "QUEUED 1"},
      {"3 c ACQUIRE s 1 100", "QUEUED 2"},
      {"4 d ACQUIRE s 1", "QUEUED 3"},
      {"1 RELEASE s 1", "OK 1"},
      {"TICK 100", "OK | 2:b TIMEOUT | 3:c TIMEOUT | 4:d OK 2"}}},
    {"TimeoutAfterGrantIsForgotten",
     {{"RELOAD s=1", "OK"},
      {"1 a ACQUIRE s", "OK 1"},
      {"2 b ACQUIRE s 1 100", "QUEUED 1"},
      {"1 RELEASE s", "OK 0 | 2:b OK 2"},
      {"TICK 1000", "OK"}}},
};
INSTANTIATE_TEST_SUITE_P(Timeouts, Script, testing::ValuesIn(kTimeouts), [](const auto& p) { return p.param.name; });

const ScriptCase kKinds[] = {
    {"UndefinedMadeByAcquireRemovedWhenIdle",
     {{"GET u", "1 1 0 0 absent"},
      {"1 a ACQUIRE u", "OK 1"},
      {"GET u", "0 1 1 0 undefined"},
      {"1 RELEASE u", "OK 1"},
      {"GET u", "1 1 0 0 absent"}}},
    {"UndefinedStaysWhileWaitedOn",
     {{"1 a ACQUIRE u", "OK 1"},
      {"2 b ACQUIRE u", "QUEUED 1"},
      {"1 RELEASE u", "OK 0 | 2:b OK 2"},
      {"GET u", "0 1 1 0 undefined"},
      {"close 2", "OK"},
      {"GET u", "1 1 0 0 absent"}}},
    // Issue 10 item 6: a WAIT granted an undefined name's permit, which only
    // POST could give back, and the name stayed `0 1 0 0 undefined` for good.
    {"WaitAndPostOfUndefinedInUseAreNotFound",
     {{"1 a ACQUIRE u", "OK 1"},
      {"2 b WAIT u", "ERR NOT_FOUND"},
      {"2 b WAIT u 1 0", "ERR NOT_FOUND"},
      {"POST u", "ERR NOT_FOUND"},
      {"GET u", "0 1 1 0 undefined"},
      {"1 RELEASE u", "OK 1"},
      {"close 1", "OK"},
      {"close 2", "OK"},
      {"GET u", "1 1 0 0 absent"},
      {"3 c ACQUIRE u 1 0", "OK 2"},
      {"3 RELEASE u", "OK 1"},
      {"CREATE u 1", "OK"},
      {"DELETE u", "OK"}}},
    {"UndefinedPassesToWaiterWhenHolderCloses",
     {{"1 a ACQUIRE u", "OK 1"},
      {"2 b ACQUIRE u", "QUEUED 1"},
      {"close 1", "OK | 2:b OK 2"},
      {"2 RELEASE u", "OK 1"},
      {"GET u", "1 1 0 0 absent"}}},
    {"UnknownNameErrors",
     {{"1 a ACQUIRE u 2", "ERR TOO_MANY"},
      {"GET u", "1 1 0 0 absent"},
      {"1 a WAIT u", "ERR NOT_FOUND"},
      {"POST u", "ERR NOT_FOUND"},
      {"1 RELEASE u", "ERR NOT_HELD"},
      {"DELETE u", "ERR NOT_FOUND"},
      {"1 CANCEL a", "ERR NOT_FOUND"}}},
    {"CountAboveMaxIsTooMany",
     {{"RELOAD d=2", "OK"},
      {"CREATE c 0 3", "OK"},
      {"1 a ACQUIRE d 3", "ERR TOO_MANY"},
      {"1 a WAIT c 4 0", "ERR TOO_MANY"},
      {"1 a ACQUIRE u", "OK 1"},
      {"2 a ACQUIRE u 2", "ERR TOO_MANY"}}},
    {"DefinedNeverRemoved",
     {{"RELOAD d=2", "OK"},
      {"GET d", "2 2 0 0 defined"},
      {"1 a ACQUIRE d 2", "OK 1"},
      {"1 RELEASE d 2", "OK 2"},
      {"GET d", "2 2 0 0 defined"},
      {"DELETE d", "ERR BUSY"}}},
    {"CreatedStaysUntilDelete",
     {{"CREATE c 0 2", "OK"},
      {"GET c", "0 2 0 0 created"},
      {"POST c 2", "OK 2"},
      {"1 a WAIT c 2", "OK 1"},
      {"GET c", "0 2 0 0 created"},
      {"DELETE c", "OK"},
      {"GET c", "1 1 0 0 absent"},
      {"1 a ACQUIRE c", "OK 2"},
      {"GET c", "0 1 1 0 undefined"}}},
};
INSTANTIATE_TEST_SUITE_P(Kinds, Script, testing::ValuesIn(kKinds), [](const auto& p) { return p.param.name; });

const ScriptCase kErrors[] = {
    {"PostOverflowCountsHeldPermits",
     {{"CREATE c 1 3", "OK"},
      {"1 a ACQUIRE c", "OK 1"},
      {"POST c 2", "OK 2"},
      {"POST c 1", "ERR OVERFLOW"},
      {"GET c", "2 3 1 0 created"},
      {"1 RELEASE c", "OK 3"},
      {"POST c 1", "ERR OVERFLOW"},
      {"1 a ACQUIRE u", "OK 2"},
      {"POST u", "ERR NOT_FOUND"}}},
    {"ReleaseNotHeld",
     {{"RELOAD d=3", "OK"},
      {"1 RELEASE d", "ERR NOT_HELD"},
      {"1 a ACQUIRE d", "OK 1"},
      {"1 RELEASE d 2", "ERR NOT_HELD"},
      {"2 RELEASE d", "ERR NOT_HELD"},
      {"1 a ACQUIRE d", "OK 2"},
      {"1 RELEASE d 2", "OK 3"},
      {"1 RELEASE d", "ERR NOT_HELD"}}},
    {"DeleteBusyAndNotFound",
     {{"RELOAD d=1", "OK"},
      {"CREATE c 1 1", "OK"},
      {"DELETE d", "ERR BUSY"},
      {"1 a ACQUIRE u", "OK 1"},
      {"DELETE u", "ERR BUSY"},
      {"DELETE nope", "ERR NOT_FOUND"},
      {"1 a ACQUIRE c", "OK 2"},
      {"DELETE c", "ERR BUSY"},
      {"2 b WAIT c", "QUEUED 1"},
      {"1 RELEASE c", "OK 0 | 2:b OK 3"},
      {"3 c ACQUIRE c", "QUEUED 1"},
      {"DELETE c", "ERR BUSY"},
      {"3 CANCEL c", "OK | 3:c CANCELLED"},
      {"DELETE c", "OK"},
      {"DELETE c", "ERR NOT_FOUND"}}},
    {"CreateExistsRules",
     {{"RELOAD d=1", "OK"},
      {"CREATE d 1", "ERR EXISTS"},
      {"1 a ACQUIRE u", "OK 1"},
      {"CREATE u 1", "ERR EXISTS"},
      {"CREATE c 1 2", "OK"},
      {"CREATE c 0 5", "OK"},
      {"GET c", "1 2 0 0 created"},
      {"CREATE c 1 2 EXCL", "ERR EXISTS"},
      {"CREATE e 2 EXCL", "OK"},
      {"GET e", "2 2 0 0 created"}}},
    {"MaxSemaphoresLimit",
     {{"RELOAD d=1", "OK"},
      {"CREATE c 1", "OK"},
      {"CREATE e 1", "ERR LIMIT"},
      {"1 a ACQUIRE u", "ERR LIMIT"},
      {"GET u", "1 1 0 0 absent"},
      {"CREATE c 1", "OK"},
      {"CREATE d 1", "ERR EXISTS"},
      {"1 a ACQUIRE d", "OK 1"},
      {"RELOAD d=1 x=2", "OK"},
      {"GET x", "2 2 0 0 defined"},
      {"DELETE c", "OK"},
      {"CREATE e 1", "ERR LIMIT"}},
     {2, 1024}},
    {"MaxPendingPerSessionLimit",
     {{"RELOAD d=1 e=1", "OK"},
      {"1 a ACQUIRE d", "OK 1"},
      {"1 a ACQUIRE e", "OK 2"},
      {"2 b ACQUIRE d", "QUEUED 1"},
      {"2 c ACQUIRE e", "ERR LIMIT"},
      {"2 c WAIT e 1 0", "TIMEOUT"},
      {"3 c ACQUIRE d", "QUEUED 2"},
      {"2 CANCEL b", "OK | 2:b CANCELLED"},
      {"2 c ACQUIRE e", "QUEUED 1"}},
     {1'000'000, 1}},
    {"DuplicateTag",
     {{"RELOAD d=1", "OK"},
      {"1 a ACQUIRE d", "OK 1"},
      {"2 b ACQUIRE d", "QUEUED 1"},
      {"2 b ACQUIRE e", "ERR DUPLICATE_TAG"},
      {"2 b WAIT d 1 0", "ERR DUPLICATE_TAG"},
      {"3 b ACQUIRE d", "QUEUED 2"},
      {"1 RELEASE d", "OK 0 | 2:b OK 2"},
      {"2 b ACQUIRE e", "OK 3"}}},
    {"CancelOnlyOwnQueuedTags",
     {{"RELOAD d=1", "OK"},
      {"1 a ACQUIRE d", "OK 1"},
      {"1 CANCEL a", "ERR NOT_FOUND"},
      {"2 b ACQUIRE d", "QUEUED 1"},
      {"3 CANCEL b", "ERR NOT_FOUND"},
      {"2 CANCEL b", "OK | 2:b CANCELLED"},
      {"2 CANCEL b", "ERR NOT_FOUND"}}},
    {"CloseSessionGivesBackHoldsAndDropsWaiters",
     {{"RELOAD d=2 e=1", "OK"},
      {"1 a ACQUIRE d 2", "OK 1"},
      {"1 b ACQUIRE e", "OK 2"},
      {"1 b ACQUIRE e 2", "ERR TOO_MANY"},
      {"2 c ACQUIRE e", "QUEUED 1"},
      {"2 d ACQUIRE d", "QUEUED 1"},
      {"3 e ACQUIRE d 2", "QUEUED 2"},
      {"close 2", "OK"},
      {"GET d", "0 2 1 1 defined"},
      {"close 1", "OK | 3:e OK 3"},
      {"GET d", "0 2 1 0 defined"},
      {"GET e", "1 1 0 0 defined"},
      {"open 1", "OK"},
      {"1 RELEASE e", "ERR NOT_HELD"}}},
};
INSTANTIATE_TEST_SUITE_P(Errors, Script, testing::ValuesIn(kErrors), [](const auto& p) { return p.param.name; });

const ScriptCase kReload[] = {
    {"RaiseWakesWaiters",
     {{"RELOAD d=2", "OK"},
      {"1 a ACQUIRE d 2", "OK 1"},
      {"2 b ACQUIRE d", "QUEUED 1"},
      {"3 c ACQUIRE d 2", "QUEUED 2"},
      {"RELOAD d=3", "OK | 2:b OK 2"},
      {"RELOAD d=5", "OK | 3:c OK 3"}}},
    {"LowerRevokesNothingAndNewGrantsWaitUntilUseFits",
     {{"RELOAD d=3", "OK"},
      {"1 a ACQUIRE d 3", "OK 1"},
      {"RELOAD d=1", "OK"},
      {"GET d", "0 1 1 0 defined"},
      {"2 b ACQUIRE d", "QUEUED 1"},
      {"3 c ACQUIRE d 1 0", "TIMEOUT"},
      {"POST d", "ERR OVERFLOW"},
      {"1 RELEASE d", "OK 0"},
      {"1 RELEASE d", "OK 0"},
      {"1 RELEASE d", "OK 0 | 2:b OK 2"}}},
    {"RemovedNameBecomesUndefined",
     {{"RELOAD d=2", "OK"},
      {"1 a ACQUIRE d", "OK 1"},
      {"RELOAD", "OK"},
      {"GET d", "0 1 1 0 undefined"},
      {"1 RELEASE d", "OK 1"},
      {"GET d", "1 1 0 0 absent"}}},
    // Issue 10 item 6, by reload: a permit consumed by WAIT kept a dropped
    // name alive, undefined, for good.
    {"RemovedNameWithConsumedPermitsDisappears",
     {{"RELOAD d=1", "OK"},
      {"1 a WAIT d", "OK 1"},
      {"GET d", "0 1 0 0 defined"},
      {"RELOAD", "OK"},
      {"GET d", "1 1 0 0 absent"},
      {"2 b ACQUIRE d 1 0", "OK 2"},
      {"2 RELEASE d", "OK 1"},
      {"CREATE d 1", "OK"}}},
    {"RemovedNameForgetsConsumedPermitsKeepsHeldOnes",
     {{"RELOAD d=3", "OK"},
      {"1 a WAIT d 2", "OK 1"},
      {"2 b ACQUIRE d", "OK 2"},
      {"RELOAD", "OK"},
      {"GET d", "0 1 1 0 undefined"},
      {"3 c ACQUIRE d", "QUEUED 1"},
      {"POST d", "ERR NOT_FOUND"},
      {"2 RELEASE d", "OK 0 | 3:c OK 3"},
      {"RELOAD d=3", "OK"},
      {"GET d", "2 3 1 0 defined"},
      {"RELOAD", "OK"},
      {"3 RELEASE d", "OK 1"},
      {"GET d", "1 1 0 0 absent"}}},
    {"QueuedWaitOfRemovedNameIsNotFound",
     {{"RELOAD d=1", "OK"},
      {"1 a ACQUIRE d", "OK 1"},
      {"2 b WAIT d", "QUEUED 1"},
      {"3 c ACQUIRE d", "QUEUED 2"},
      {"RELOAD", "OK | 2:b ERR NOT_FOUND"},
      {"GET d", "0 1 1 1 undefined"},
      {"1 RELEASE d", "OK 0 | 3:c OK 2"},
      {"close 3", "OK"},
      {"GET d", "1 1 0 0 absent"}}},
    {"RemovedIdleNameDisappears", {{"RELOAD d=2 e=1", "OK"}, {"RELOAD e=1", "OK"}, {"LIST", "e"}}},
    {"QueuedCountAboveNewMaxIsTooMany",
     {{"RELOAD d=3", "OK"},
      {"1 a ACQUIRE d 3", "OK 1"},
      {"2 b ACQUIRE d 3", "QUEUED 1"},
      {"3 c ACQUIRE d", "QUEUED 2"},
      {"4 d WAIT d 2", "QUEUED 3"},
      {"RELOAD d=2", "OK | 2:b ERR TOO_MANY"},
      {"GET d", "0 2 1 2 defined"},
      {"1 RELEASE d 3", "OK 1 | 3:c OK 2"},
      {"RELOAD", "OK | 4:d ERR TOO_MANY"},
      {"GET d", "0 1 1 0 undefined"}}},
    {"UndefinedInUseBecomesDefinedKeepingHolders",
     {{"1 a ACQUIRE u", "OK 1"},
      {"2 b ACQUIRE u", "QUEUED 1"},
      {"RELOAD u=3", "OK | 2:b OK 2"},
      {"GET u", "1 3 2 0 defined"},
      {"1 RELEASE u", "OK 2"},
      {"2 RELEASE u", "OK 3"},
      {"GET u", "3 3 0 0 defined"}}},
    {"CreatedNameKeepsItsKind",
     {{"CREATE c 1", "OK"},
      {"CREATE b 1", "OK"},
      {"RELOAD c=5 b=2 d=1", "OK created:c,b"},
      {"GET c", "1 1 0 0 created"},
      {"RELOAD", "OK"},
      {"GET c", "1 1 0 0 created"}}},
    {"LastLimitOfRepeatedNameWins",
     {{"RELOAD d=3", "OK"},
      {"1 a ACQUIRE d 3", "OK 1"},
      {"2 b ACQUIRE d 3", "QUEUED 1"},
      {"RELOAD d=2 d=4", "OK"},
      {"GET d", "1 4 1 1 defined"},
      {"1 RELEASE d", "OK 2"},
      {"1 RELEASE d", "OK 0 | 2:b OK 2"}}},
};
INSTANTIATE_TEST_SUITE_P(Reload, Script, testing::ValuesIn(kReload), [](const auto& p) { return p.param.name; });

const ScriptCase kJournal[] = {
    {"RecordsCreatedChangesButNotHolds",
     {{"CREATE c 2 3", "OK"},
      {"JOURNAL", "c=2/3 #1"},
      {"1 a ACQUIRE c", "OK 1"},
      {"1 RELEASE c", "OK 2"},
      {"1 a ACQUIRE c 2", "OK 2"},
      {"JOURNAL", "c=2/3 #1"},
      {"POST c", "OK 1"},
      {"JOURNAL", "c=3/3 #2"},
      {"2 b WAIT c", "OK 3"},
      {"JOURNAL", "c=2/3 #3"},
      {"2 b WAIT c 1 0", "TIMEOUT"},
      {"2 b WAIT c", "QUEUED 1"},
      {"JOURNAL", "c=2/3 #3"},
      {"1 RELEASE c", "OK 0 | 2:b OK 4"},
      {"JOURNAL", "c=1/3 #4"},
      {"CREATE c 0 1", "OK"},
      {"JOURNAL", "c=1/3 #4"},
      {"close 1", "OK"},
      {"JOURNAL", "c=1/3 #4"},
      {"DELETE c", "OK"},
      {"JOURNAL", "#5"}}},
    {"WaitGrantsAsCompletionsAreRecorded",
     {{"CREATE c 0 2", "OK"},
      {"1 a WAIT c", "QUEUED 1"},
      {"2 b WAIT c", "QUEUED 2"},
      {"POST c 2", "OK 0 | 1:a OK 1 | 2:b OK 2"},
      {"JOURNAL", "c=0/2 #2"},
      {"3 c WAIT c 1 10", "QUEUED 1"},
      {"3 d WAIT c 1", "QUEUED 2"},
      {"TICK 10", "OK | 3:c TIMEOUT"},
      {"JOURNAL", "c=0/2 #2"},
      {"POST c 1", "OK 0 | 3:d OK 3"},
      {"JOURNAL", "c=0/2 #3"}}},
    {"DefinedAndUndefinedAreNeverRecorded",
     {{"RELOAD d=2", "OK"}, {"1 a WAIT d", "OK 1"}, {"POST d", "OK 2"}, {"1 a ACQUIRE u", "OK 2"}, {"JOURNAL", "#0"}}},
};
INSTANTIATE_TEST_SUITE_P(Journal, Script, testing::ValuesIn(kJournal), [](const auto& p) { return p.param.name; });

// HOLDERS, WAITERS and SESSIONS (protocol 1.1) as the table answers them.
const ScriptCase kObserve[] = {
    {"HoldersInTheOrderTheyBecameHolders",
     {{"RELOAD s=4", "OK"},
      {"1 a ACQUIRE s", "OK 1"},
      {"TICK 10", "OK"},
      {"2 b ACQUIRE s 2", "OK 2"},
      {"TICK 5", "OK"},
      {"1 c ACQUIRE s", "OK 3"},  // more for a holder: its latest fence, its first grant's time
      {"HOLDERS s", "1:2 f3 15ms, 2:2 f2 5ms"},
      {"1 RELEASE s", "OK 1"},
      {"HOLDERS s", "1:1 f3 15ms, 2:2 f2 5ms"},
      {"1 RELEASE s", "OK 2"},
      {"1 d ACQUIRE s", "OK 4"},  // a holder again: last, and held from now
      {"TICK 1", "OK"},
      {"HOLDERS s", "2:2 f2 6ms, 1:1 f4 1ms"},
      {"3 e ACQUIRE s", "OK 5"},
      {"close 2", "OK"},
      {"HOLDERS s", "1:1 f4 1ms, 3:1 f5 0ms"}}},
    {"HoldersOfAbsentIdleAndConsumedNames",
     {{"HOLDERS none", "NOT_FOUND"},
      {"CREATE c 2", "OK"},
      {"HOLDERS c", ""},
      {"1 a WAIT c", "OK 1"},  // consumed, not held
      {"HOLDERS c", ""},
      {"1 b ACQUIRE u", "OK 2"},
      {"HOLDERS u", "1:1 f2 0ms"},
      {"1 RELEASE u", "OK 1"},
      {"HOLDERS u", "NOT_FOUND"}}},  // undefined and idle: gone
    {"QueuedGrantIsStampedWithTheClockOfItsGrant",
     {{"RELOAD s=1", "OK"},
      {"1 a ACQUIRE s", "OK 1"},
      {"TICK 7", "OK"},
      {"2 b ACQUIRE s", "QUEUED 1"},
      {"TICK 20", "OK"},
      {"1 RELEASE s", "OK 0 | 2:b OK 2"},
      {"TICK 3", "OK"},
      {"HOLDERS s", "2:1 f2 3ms"},
      {"3 c ACQUIRE s", "QUEUED 1"},
      {"TICK 4", "OK"},
      {"close 2", "OK | 3:c OK 3"},  // a session's end grants too
      {"TICK 1", "OK"},
      {"HOLDERS s", "3:1 f3 1ms"}}},
    {"WaitersInQueueOrderWithTimeLeft",
     {{"RELOAD s=1", "OK"},
      {"1 a ACQUIRE s", "OK 1"},
      {"TICK 2", "OK"},
      {"2 b ACQUIRE s 1 100", "QUEUED 1"},
      {"TICK 10", "OK"},
      {"3 c WAIT s", "QUEUED 2"},
      {"4 d ACQUIRE s 1 50", "QUEUED 3"},
      {"TICK 30", "OK"},
      {"WAITERS s", "2:1 40ms left:60, 3:1 wait 30ms left:-1, 4:1 30ms left:20"},
      {"3 CANCEL c", "OK | 3:c CANCELLED"},
      {"WAITERS s", "2:1 40ms left:60, 4:1 30ms left:20"},
      {"TICK 20", "OK | 4:d TIMEOUT"},
      {"WAITERS s", "2:1 60ms left:40"},
      {"1 RELEASE s", "OK 0 | 2:b OK 2"},
      {"WAITERS s", ""},
      {"WAITERS none", "NOT_FOUND"}}},
    {"SessionLoadCountsHeldPermitsAndQueuedRequests",
     {{"RELOAD s=3 t=1", "OK"},
      {"LOAD 1", "0 0"},
      {"1 a ACQUIRE s 2", "OK 1"},
      {"1 b ACQUIRE t", "OK 2"},
      {"1 c WAIT s", "OK 3"},  // consumed: not held
      {"2 d ACQUIRE t", "QUEUED 1"},
      {"2 e ACQUIRE s", "QUEUED 1"},
      {"LOAD 1", "3 0"},
      {"LOAD 2", "0 2"},
      {"1 RELEASE t", "OK 0 | 2:d OK 4"},
      {"LOAD 1", "2 0"},
      {"LOAD 2", "1 1"},
      {"LOAD 9", "0 0"}}},
};
INSTANTIATE_TEST_SUITE_P(Observe, Script, testing::ValuesIn(kObserve), [](const auto& p) { return p.param.name; });

TakeRequest acquire(SessionId session, std::string_view name, std::int64_t count = 1, std::int64_t timeout_ms = -1,
                    std::string_view tag = "t", TimePoint now = {}) {
  TakeRequest r;
  r.session = session;
  r.tag = tag;
  r.name = name;
  r.count = count;
  r.timeout_ms = timeout_ms;
  r.now = now;
  return r;
}

// Issue 10 item 14: start and reload must be linear in the number of
// defined names. A start with 200,000, then a reload that keeps half of them
// (a quarter with a new limit), drops the rest and adds as many: a fraction
// of a second of CPU when linear, far more than the bound when quadratic.
TEST(SemaphoreTable, ConfiguresAndReloadsManyNamesInLinearTime) {
  constexpr std::size_t kNames = 200'000;
  std::vector<std::pair<std::string, std::int64_t>> first, second;
  for (std::size_t i = 0; i < kNames; ++i) first.emplace_back("n" + std::to_string(i), 2);
  for (std::size_t i = kNames / 2; i < kNames + kNames / 2; ++i) {
    second.emplace_back("n" + std::to_string(i), i % 2 == 0 ? 3 : 2);
  }
  MemoryJournal journal;
  SemaphoreTable table(journal, {});
  Completions out;
  const auto start = test_support::thread_cpu_time();
  EXPECT_TRUE(table.configure_defined(first, out).empty());
  EXPECT_EQ(table.stats().semaphores, kNames);
  EXPECT_TRUE(table.configure_defined(second, out).empty());
  const auto used = test_support::thread_cpu_time() - start;
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(table.stats().semaphores, kNames);
  EXPECT_EQ(table.get("n0").kind, SemaphoreKind::kAbsent);
  EXPECT_EQ(table.get("n100000").max, 3);
  EXPECT_EQ(table.get("n100001").max, 2);
  EXPECT_EQ(table.get("n299999").kind, SemaphoreKind::kDefined);
  EXPECT_LT(used, 10s) << "configure_defined is not linear";
}

TEST(SemaphoreTable, FencesAreReservedFromTheJournalInSteps) {
  MemoryJournal journal;
  SemaphoreTable table(journal, {});
  table.set_fence_floor(1000);
  table.open_session(1);
  Completions out;
  ASSERT_TRUE(table.configure_defined({{"d", 1}}, out).empty());
  EXPECT_EQ(journal.reserved_fences(), 0u);
  std::uint64_t last = 1000;
  std::int64_t value = 0;
  for (std::uint64_t i = 0; i < SemaphoreTable::kFenceReserveStep + 1; ++i) {
    const TakeResult r = table.take(acquire(1, "d"), out);
    ASSERT_EQ(r.type, TakeResult::Type::kGranted);
    ASSERT_GT(r.fence, last);
    last = r.fence;
    ASSERT_LE(last, journal.reserved_fences());
    ASSERT_EQ(table.release(1, "d", 1, value, out), ErrorCode::kNone);
    if (i == 0) {
      EXPECT_EQ(journal.reserved_fences(), 1000 + SemaphoreTable::kFenceReserveStep);
    }
  }
  EXPECT_EQ(last, 1001 + SemaphoreTable::kFenceReserveStep);
  EXPECT_EQ(journal.reserved_fences(), 1000 + 2 * SemaphoreTable::kFenceReserveStep);
  EXPECT_EQ(table.stats().last_fence, last);
  EXPECT_TRUE(out.empty());
}

TEST(SemaphoreTable, FailedFenceReservationsLeaveMarginThenFailGrantsUntilOneWorks) {
  constexpr std::uint64_t kStep = SemaphoreTable::kFenceReserveStep;
  MemoryJournal journal;
  SemaphoreTable table(journal, {});
  table.open_session(1);
  table.open_session(2);
  Completions out;
  ASSERT_TRUE(table.configure_defined({{"d", 1}}, out).empty());
  std::int64_t value = 0;
  auto cycle = [&] {
    const TakeResult r = table.take(acquire(1, "d"), out);
    if (r.type == TakeResult::Type::kGranted) {
      EXPECT_EQ(table.release(1, "d", 1, value, out), ErrorCode::kNone);
    }
    return r;
  };
  ASSERT_EQ(cycle().type, TakeResult::Type::kGranted);  // reserves [1, kStep]
  journal.fail_fence_reservations(true);
  // The next step is asked for from half way; failing, the rest of this one is still granted.
  for (std::uint64_t fence = 2; fence <= kStep; ++fence) {
    const TakeResult r = cycle();
    ASSERT_EQ(r.type, TakeResult::Type::kGranted) << fence;
    ASSERT_EQ(r.fence, fence);
  }
  TakeResult refused = cycle();
  ASSERT_EQ(refused.type, TakeResult::Type::kError);
  EXPECT_EQ(refused.error, ErrorCode::kLimit);
  EXPECT_TRUE(refused.no_fence);
  EXPECT_EQ(table.get("d").value, 1);  // nothing taken
  // An undefined name made by the refused ACQUIRE does not linger.
  EXPECT_EQ(table.take(acquire(1, "u"), out).error, ErrorCode::kLimit);
  EXPECT_EQ(table.get("u").kind, SemaphoreKind::kAbsent);
  // A queued request that comes to fit completes with the error instead of a fence.
  journal.fail_fence_reservations(false);
  ASSERT_EQ(cycle().type, TakeResult::Type::kGranted);
  ASSERT_EQ(table.take(acquire(1, "d"), out).type, TakeResult::Type::kGranted);
  ASSERT_EQ(table.take(acquire(2, "d", 1, -1, "q"), out).type, TakeResult::Type::kQueued);
  const std::uint64_t reserved = journal.reserved_fences();
  journal.fail_fence_reservations(true);
  for (std::uint64_t i = table.stats().last_fence; i < reserved; ++i) {
    ASSERT_EQ(table.take(acquire(1, "d", 1, 0, "try"), out).type, TakeResult::Type::kTimedOut);  // queue not empty
    ASSERT_EQ(table.take(acquire(1, "e"), out).type, TakeResult::Type::kGranted);                // uses up fences
    ASSERT_EQ(table.release(1, "e", 1, value, out), ErrorCode::kNone);
  }
  ASSERT_EQ(table.release(1, "d", 1, value, out), ErrorCode::kNone);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].session, 2u);
  EXPECT_EQ(out[0].type, Completion::Type::kNoFence);
  EXPECT_EQ(table.get("d").value, 1);
  EXPECT_EQ(table.get("d").waiters, 0u);
}

TEST(SemaphoreTable, FencesIncreaseAcrossNamesAndQueuedGrants) {
  Harness h;
  EXPECT_EQ(h.run("1 a ACQUIRE x"), "OK 1");
  EXPECT_EQ(h.run("1 a ACQUIRE y"), "OK 2");
  EXPECT_EQ(h.run("2 b ACQUIRE x"), "QUEUED 1");
  EXPECT_EQ(h.run("3 c ACQUIRE z"), "OK 3");
  EXPECT_EQ(h.run("1 RELEASE x"), "OK 0 | 2:b OK 4");
}

// close_all_sessions (the server's shutdown) gives every permit back and
// grants nobody, neither ACQUIRE nor WAIT, and journals nothing.
TEST(SemaphoreTable, CloseAllSessionsGivesBackButGrantsNobody) {
  Harness h;
  EXPECT_EQ(h.run("CREATE c 0 1"), "OK");
  EXPECT_EQ(h.run("1 a ACQUIRE x"), "OK 1");
  EXPECT_EQ(h.run("2 b ACQUIRE x"), "QUEUED 1");
  EXPECT_EQ(h.run("3 w WAIT c"), "QUEUED 1");
  EXPECT_EQ(h.run("1 a ACQUIRE c2"), "OK 2");
  const std::size_t records = h.journal.records();
  h.table.close_all_sessions();
  EXPECT_EQ(h.run("GET x"), "1 1 0 0 absent");
  EXPECT_EQ(h.run("GET c"), "0 1 0 0 created");
  EXPECT_EQ(h.journal.records(), records);
  EXPECT_EQ(h.run("open 1"), "OK");
  EXPECT_EQ(h.run("1 a ACQUIRE x"), "OK 3");
}

// hold_grants (the lease wait after a restart): what could be granted
// queues instead, in arrival order, a try times out, a timeout still
// times out and a cancel still cancels; resume_grants grants each queue in
// its FIFO order, and an undefined name made while held leaves when its only
// waiter does.
TEST(SemaphoreTable, HeldGrantsQueueThenResumeInFifoOrder) {
  Harness h;
  EXPECT_EQ(h.run("RELOAD pool=2"), "OK");
  EXPECT_EQ(h.run("CREATE c 1 1"), "OK");
  h.table.hold_grants();
  EXPECT_TRUE(h.table.grants_held());
  EXPECT_EQ(h.run("1 a ACQUIRE pool"), "QUEUED 1");
  EXPECT_EQ(h.run("2 b ACQUIRE pool 1 0"), "TIMEOUT");
  EXPECT_EQ(h.run("2 b ACQUIRE pool"), "QUEUED 2");
  EXPECT_EQ(h.run("3 c ACQUIRE pool"), "QUEUED 3");
  EXPECT_EQ(h.run("4 d ACQUIRE adhoc 1 100"), "QUEUED 1");
  EXPECT_EQ(h.run("4 e WAIT c"), "QUEUED 1");
  EXPECT_EQ(h.run("3 f ACQUIRE gone"), "QUEUED 1");
  EXPECT_EQ(h.run("3 CANCEL f"), "OK | 3:f CANCELLED");
  EXPECT_EQ(h.run("GET gone"), "1 1 0 0 absent");
  EXPECT_EQ(h.run("TICK 100"), "OK | 4:d TIMEOUT");
  EXPECT_EQ(h.run("GET adhoc"), "1 1 0 0 absent");
  EXPECT_EQ(h.run("GET pool"), "2 2 0 3 defined");
  const std::size_t records = h.journal.records();
  Completions out;
  h.table.resume_grants(out);
  EXPECT_FALSE(h.table.grants_held());
  std::string granted;
  for (const Completion& c : out) granted += std::to_string(c.session) + ":" + c.tag + " ";
  // Per name in FIFO order; the names' order among themselves is the table's.
  EXPECT_NE(granted.find("1:a 2:b "), std::string::npos) << granted;
  EXPECT_NE(granted.find("4:e "), std::string::npos) << granted;
  EXPECT_EQ(out.size(), 3u) << granted;
  EXPECT_EQ(h.run("GET pool"), "0 2 2 1 defined");
  EXPECT_EQ(h.run("GET c"), "0 1 0 0 created");
  EXPECT_GT(h.journal.records(), records);  // the WAIT consumed a created permit
  EXPECT_EQ(h.run("1 RELEASE pool"), "OK 0 | 3:c OK 4");
  h.table.resume_grants(out);  // not held: nothing more happens
  EXPECT_EQ(out.size(), 3u);
}

TEST(SemaphoreTable, RestoreCreated) {
  MemoryJournal journal;
  SemaphoreTable table(journal, {1, 1});
  Completions out;
  table.configure_defined({{"d", 3}}, out);
  EXPECT_TRUE(table.restore_created("c", {2, 3}));  // past max_semaphores: the state is durable
  EXPECT_TRUE(table.restore_created("b", {0, 1}));
  EXPECT_FALSE(table.restore_created("d", {1, 1}));
  EXPECT_FALSE(table.restore_created("x", {2, 1}));
  EXPECT_FALSE(table.restore_created("x", {-1, 1}));
  EXPECT_FALSE(table.restore_created("x", {0, 0}));
  EXPECT_FALSE(table.restore_created("x", {0, protocol::kMaxCount + 1}));
  EXPECT_TRUE(table.restore_created("b", {1, 2}));  // a later record replaces an earlier one
  EXPECT_EQ(journal.records(), 0u);
  EXPECT_EQ(table.get("d").kind, SemaphoreKind::kDefined);
  EXPECT_EQ(table.get("d").max, 3);
  EXPECT_EQ(table.get("x").kind, SemaphoreKind::kAbsent);

  std::vector<std::string> seen;
  table.for_each_created([&](std::string_view name, const CreatedState& state) {
    seen.push_back(std::string(name) + "=" + std::to_string(state.value) + "/" + std::to_string(state.max));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"b=1/2", "c=2/3"}));

  table.open_session(1);
  EXPECT_EQ(table.take(acquire(1, "c"), out).type, TakeResult::Type::kGranted);
  EXPECT_FALSE(table.restore_created("c", {0, 3}));  // in use: not start-up any more
  seen.clear();
  table.for_each_created([&](std::string_view name, const CreatedState& state) {
    seen.push_back(std::string(name) + "=" + std::to_string(state.value) + "/" + std::to_string(state.max));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"b=1/2", "c=2/3"}));  // holds count as free
}

TEST(SemaphoreTable, ListIsSortedByNameBytesAndFilteredByPrefix) {
  Harness h;
  h.run("RELOAD b=1 ab=2");
  h.run("CREATE a 1");
  h.run("CREATE \xc3\xa9t\xc3\xa9 1");
  h.run("1 a ACQUIRE Z");
  h.run("1 b ACQUIRE a%20b");
  EXPECT_EQ(h.run("LIST"), "Z a a%20b ab b \xc3\xa9t\xc3\xa9");
  EXPECT_EQ(h.run("LIST a"), "a a%20b ab");
  EXPECT_EQ(h.run("LIST ab"), "ab");
  EXPECT_EQ(h.run("LIST q"), "");
}

TEST(SemaphoreTable, ListAfterResumesPastTheLastNameWhileTheTableChanges) {
  Harness h;
  h.run("RELOAD b=1 ab=2 ac=1 ad=1");
  h.run("CREATE a 1");
  auto page = [&](std::string_view prefix, std::string_view after, std::size_t most) {
    std::string names;
    std::size_t seen = 0;
    h.table.list_after(prefix, after, [&](const SemaphoreInfo& i) {
      names += (names.empty() ? "" : " ") + std::string(i.name);
      return ++seen < most;
    });
    return names;
  };
  EXPECT_EQ(page("", "", 2), "a ab");
  EXPECT_EQ(page("", "ab", 2), "ac ad");
  EXPECT_EQ(page("a", "", 99), "a ab ac ad");
  EXPECT_EQ(page("a", "ab", 99), "ac ad");
  EXPECT_EQ(page("ac", "a", 99), "ac");         // `after` before the prefix: from the prefix's first name
  EXPECT_EQ(page("a", "zz", 99), "");           // `after` past every name
  EXPECT_EQ(page("a", "aaa", 99), "ab ac ad");  // `after` need not be a name
  // Between pages the table changes: the cursor is a name, not a position,
  // so a removed name is skipped, one made behind the cursor is not
  // repeated, and one made ahead of it is listed.
  h.run("1 x ACQUIRE aa");
  h.run("1 y ACQUIRE acc");
  h.run("DELETE a");
  EXPECT_EQ(page("", "ab", 99), "ac acc ad b");
  EXPECT_EQ(page("", "", 99), "aa ab ac acc ad b");
  h.run("1 RELEASE aa");  // undefined and idle: removed, and out of the index
  EXPECT_EQ(page("", "", 99), "ab ac acc ad b");
}

TEST(SemaphoreTable, HoldersAndWaitersResumeAfterTheirCursor) {
  Harness h;
  h.run("RELOAD s=3");
  h.run("1 a ACQUIRE s");
  h.run("2 b ACQUIRE s");
  h.run("3 c ACQUIRE s");
  h.run("4 q ACQUIRE s 2");
  h.run("1 q ACQUIRE s 3");
  h.run("2 q ACQUIRE s 1");
  auto holders = [&](std::uint64_t after, std::size_t most, std::uint64_t& last) {
    std::string rows;
    std::size_t seen = 0;
    EXPECT_TRUE(h.table.holders_after("s", h.now, after, [&](const HolderInfo& i) {
      rows += (rows.empty() ? "" : " ") + std::to_string(i.session);
      last = i.order;
      return ++seen < most;
    }));
    return rows;
  };
  auto waiters = [&](std::uint64_t after, std::size_t most, std::uint64_t& last) {
    std::string rows;
    std::size_t seen = 0;
    EXPECT_TRUE(h.table.waiters_after("s", h.now, after, [&](const WaiterInfo& i) {
      rows += (rows.empty() ? "" : " ") + std::to_string(i.session) + ":" + std::to_string(i.count);
      last = i.order;
      return ++seen < most;
    }));
    return rows;
  };
  std::uint64_t cursor = 0;
  EXPECT_EQ(holders(0, 2, cursor), "1 2");
  // Between pages: a holder before the cursor leaves, one after it leaves,
  // and a new one comes (it was queued): none is shown twice, none that
  // left is shown, the new one comes last.
  h.run("1 RELEASE s");
  h.run("3 RELEASE s");  // grants 4's two permits
  EXPECT_EQ(holders(cursor, 99, cursor), "4");
  EXPECT_EQ(holders(0, 99, cursor), "2 4");
  std::uint64_t w = 0;
  EXPECT_EQ(waiters(0, 1, w), "1:3");
  h.run("1 CANCEL q");
  h.run("3 r ACQUIRE s 1");
  EXPECT_EQ(waiters(w, 99, w), "2:1 3:1");
  EXPECT_EQ(waiters(w, 99, w), "");
  EXPECT_FALSE(h.table.holders_after("none", h.now, 0, [](const HolderInfo&) { return true; }));
  EXPECT_FALSE(h.table.waiters_after("none", h.now, 0, [](const WaiterInfo&) { return true; }));
}

// A hold may be stamped by a clock that is behind the `now` of a query or
// ahead of it (two readings of a real clock): never a negative time.
TEST(SemaphoreTable, TimesNeverGoNegative) {
  Harness h;
  h.now = TimePoint{} + 50ms;
  h.run("RELOAD s=1");
  h.run("1 a ACQUIRE s");
  h.run("2 b ACQUIRE s 1 10");
  h.now = TimePoint{};
  EXPECT_EQ(h.run("HOLDERS s"), "1:1 f1 0ms");
  EXPECT_EQ(h.run("WAITERS s"), "2:1 0ms left:10");
}

TEST(SemaphoreTable, GetClampsValueAndNamesAbsent) {
  Harness h;
  const SemaphoreInfo absent = h.table.get("none");
  EXPECT_EQ(absent.name, "none");
  EXPECT_EQ(absent.kind, SemaphoreKind::kAbsent);
  h.run("RELOAD d=4");
  h.run("1 a ACQUIRE d 4");
  h.run("RELOAD d=1");
  EXPECT_EQ(h.table.get("d").value, 0);
  h.table.list("", [](const SemaphoreInfo& i) { EXPECT_EQ(i.value, 0); });
}

TEST(SemaphoreTable, KindNames) {
  EXPECT_EQ(kind_name(SemaphoreKind::kDefined), "defined");
  EXPECT_EQ(kind_name(SemaphoreKind::kUndefined), "undefined");
  EXPECT_EQ(kind_name(SemaphoreKind::kCreated), "created");
  EXPECT_EQ(kind_name(SemaphoreKind::kAbsent), "absent");
}

TEST(SemaphoreTable, StatsCountSessionsSemaphoresHeldWaitersGrants) {
  Harness h;
  h.run("RELOAD d=3");
  h.run("1 a ACQUIRE d 2");
  h.run("2 b WAIT d 1");
  h.run("3 c ACQUIRE d 1");
  h.run("1 d ACQUIRE u");
  TableStats s = h.table.stats();
  EXPECT_EQ(s.sessions, 4u);
  EXPECT_EQ(s.semaphores, 2u);
  EXPECT_EQ(s.held, 3u);
  EXPECT_EQ(s.waiters, 1u);
  EXPECT_EQ(s.grants, 3u);
  EXPECT_EQ(s.last_fence, 3u);
  h.run("close 1");
  s = h.table.stats();
  EXPECT_EQ(s.sessions, 3u);
  EXPECT_EQ(s.semaphores, 1u);
  EXPECT_EQ(s.held, 1u);
  EXPECT_EQ(s.waiters, 0u);
  EXPECT_EQ(s.grants, 4u);
}

// /metrics shows each name's permits held and grants, and the semaphores by
// kind, from these (src/stats/name_metrics.h).
TEST(SemaphoreTable, InfoCountsHeldPermitsAndGrantsOfEachName) {
  Harness h;
  h.run("RELOAD d=3");
  ASSERT_EQ(h.run("1 a ACQUIRE d 2"), "OK 1");
  ASSERT_EQ(h.run("2 b WAIT d 1"), "OK 2");  // consumed: counted in grants, not in held
  ASSERT_EQ(h.run("3 c ACQUIRE d 1"), "QUEUED 1");
  ASSERT_EQ(h.run("CREATE c 2"), "OK");
  ASSERT_EQ(h.run("4 e ACQUIRE c 2"), "OK 3");
  SemaphoreInfo d = h.table.get("d");
  EXPECT_EQ(d.held, 2);
  EXPECT_EQ(d.grants, 2u);
  ASSERT_EQ(h.run("1 RELEASE d 2"), "OK 1 | 3:c OK 4");  // the queued request is granted
  d = h.table.get("d");
  EXPECT_EQ(d.held, 1);
  EXPECT_EQ(d.grants, 3u);
  EXPECT_EQ(h.table.get("c").grants, 1u);
  EXPECT_EQ(h.table.get("absent").grants, 0u);
  // A reload keeps a defined name's count; a name made again starts at 0
  // (a spare node of the table must not bring back the old one's count).
  h.run("RELOAD d=4");
  EXPECT_EQ(h.table.get("d").grants, 3u);
  ASSERT_EQ(h.run("4 RELEASE c 2"), "OK 2");
  ASSERT_EQ(h.run("DELETE c"), "OK");
  ASSERT_EQ(h.run("CREATE c 1"), "OK");
  EXPECT_EQ(h.table.get("c").grants, 0u);
  EXPECT_EQ(h.table.get("c").held, 0);
  std::uint64_t listed = 0;
  h.table.list("", [&](const SemaphoreInfo& i) { listed += i.grants; });
  EXPECT_EQ(listed, 3u);
}

TEST(SemaphoreTable, StatsCountSemaphoresByKind) {
  Harness h;
  const auto kinds = [&] {
    const TableStats s = h.table.stats();
    EXPECT_EQ(s.defined + s.undefined + s.created, s.semaphores);
    return std::to_string(s.defined) + " " + std::to_string(s.undefined) + " " + std::to_string(s.created);
  };
  EXPECT_EQ(kinds(), "0 0 0");
  h.run("RELOAD d=1 e=2");
  ASSERT_EQ(h.run("CREATE c 1"), "OK");
  ASSERT_EQ(h.run("1 a ACQUIRE u"), "OK 1");
  ASSERT_EQ(h.run("1 b ACQUIRE d"), "OK 2");
  EXPECT_EQ(kinds(), "2 1 1");
  h.run("RELOAD e=2 u=5");  // d held: becomes undefined; u becomes defined
  EXPECT_EQ(kinds(), "2 1 1");
  EXPECT_EQ(h.table.get("d").kind, SemaphoreKind::kUndefined);
  ASSERT_EQ(h.run("1 RELEASE d"), "OK 1");  // the undefined d is idle: removed
  EXPECT_EQ(kinds(), "2 0 1");
  h.run("RELOAD");
  EXPECT_EQ(kinds(), "0 1 1");  // u is held, e was idle
  ASSERT_EQ(h.run("DELETE c"), "OK");
  h.run("close 1");
  EXPECT_EQ(kinds(), "0 0 0");
}

TEST(SemaphoreTable, CountersCountGrantsTimeoutsAndCancellations) {
  Harness h;
  h.run("RELOAD d=1");
  ASSERT_EQ(h.run("1 a ACQUIRE d"), "OK 1");
  ASSERT_EQ(h.run("2 t ACQUIRE d 1 0"), "TIMEOUT");  // a try
  ASSERT_EQ(h.run("2 q ACQUIRE d 1 100"), "QUEUED 1");
  ASSERT_EQ(h.run("TICK 100"), "OK | 2:q TIMEOUT");  // a queued request's time ran out
  ASSERT_EQ(h.run("3 c ACQUIRE d"), "QUEUED 1");
  ASSERT_EQ(h.run("3 CANCEL c"), "OK | 3:c CANCELLED");
  ASSERT_EQ(h.run("3 CANCEL c"), "ERR NOT_FOUND");  // nothing cancelled: not counted
  ASSERT_EQ(h.run("4 w ACQUIRE d"), "QUEUED 1");
  ASSERT_EQ(h.run("1 RELEASE d"), "OK 0 | 4:w OK 2");
  ASSERT_EQ(h.run("2 e ACQUIRE d 2"), "ERR TOO_MANY");  // refused: neither granted nor timed out
  const stats::TableCounters& counters = h.table.counters();
  EXPECT_EQ(counters.grants, 2u);
  EXPECT_EQ(counters.timeouts, 2u);
  EXPECT_EQ(counters.cancellations, 1u);
  EXPECT_EQ(h.table.stats().grants, counters.grants);
}

TEST(SemaphoreTable, WaitAndHoldTimesAreObservedFromTheClock) {
  Harness h;
  h.run("RELOAD d=2");
  ASSERT_EQ(h.run("1 a ACQUIRE d 2"), "OK 1");  // granted at once: no wait observed
  ASSERT_EQ(h.run("2 b ACQUIRE d"), "QUEUED 1");
  ASSERT_EQ(h.run("3 c ACQUIRE d 2"), "QUEUED 2");
  h.run("TICK 3");
  // 1 gives back one of two permits: still a holder, no hold ends; b waited 3 ms.
  ASSERT_EQ(h.run("1 RELEASE d 1"), "OK 0 | 2:b OK 2");
  h.run("TICK 5");
  ASSERT_EQ(h.run("close 1"), "OK");  // 1's hold (8 ms) ends with its session
  h.run("TICK 1");
  ASSERT_EQ(h.run("2 RELEASE d"), "OK 0 | 3:c OK 3");  // b held 6 ms; c waited 9 ms
  const stats::TableCounters& counters = h.table.counters();
  EXPECT_EQ(counters.wait_us.count(), 2u);
  EXPECT_EQ(counters.wait_us.sum(), 3'000u + 9'000u);
  EXPECT_EQ(counters.wait_us.bucket(stats::Histogram::bucket_of(3'000)), 1u);
  EXPECT_EQ(counters.hold_us.count(), 2u);
  EXPECT_EQ(counters.hold_us.sum(), 8'000u + 6'000u);
}

TEST(SemaphoreTable, PendingTagsAndNextDeadline) {
  Harness h;
  h.run("RELOAD d=1");
  EXPECT_FALSE(h.table.next_deadline());
  h.run("1 a ACQUIRE d");
  h.run("TICK 5");
  h.run("2 b ACQUIRE d 1 100");
  h.run("2 c ACQUIRE d 1 30");
  h.run("2 e ACQUIRE d 1 -1");
  EXPECT_TRUE(h.table.is_pending(2, "b"));
  EXPECT_FALSE(h.table.is_pending(1, "b"));
  EXPECT_FALSE(h.table.is_pending(9, "b"));
  EXPECT_EQ(h.table.pending_count(2), 3u);
  EXPECT_EQ(h.table.pending_count(1), 0u);
  EXPECT_EQ(h.table.next_deadline(), TimePoint{} + 35ms);
  h.run("2 CANCEL c");
  EXPECT_EQ(h.table.next_deadline(), TimePoint{} + 105ms);
  h.run("TICK 100");
  EXPECT_FALSE(h.table.next_deadline());
  EXPECT_EQ(h.table.pending_count(2), 1u);
}

TEST(SemaphoreTable, ChangeCountMovesOnChangesOnly) {
  Harness h;
  h.run("RELOAD d=1");
  std::uint64_t seen = h.table.change_count();
  const auto changed = [&](const char* command) {
    h.run(command);
    const bool moved = h.table.change_count() != seen;
    seen = h.table.change_count();
    return moved;
  };
  EXPECT_TRUE(changed("1 a ACQUIRE d"));
  EXPECT_FALSE(changed("GET d"));
  EXPECT_FALSE(changed("LIST"));
  EXPECT_TRUE(changed("2 b ACQUIRE d"));
  EXPECT_TRUE(changed("2 CANCEL b"));
  EXPECT_TRUE(changed("2 b ACQUIRE d 1 10"));
  EXPECT_TRUE(changed("TICK 10"));
  EXPECT_TRUE(changed("1 RELEASE d"));
  EXPECT_TRUE(changed("1 a ACQUIRE u"));
  EXPECT_TRUE(changed("1 RELEASE u"));
  EXPECT_TRUE(changed("CREATE c 0 1"));
  EXPECT_TRUE(changed("POST c"));
  EXPECT_TRUE(changed("DELETE c"));
  EXPECT_TRUE(changed("close 3"));
  EXPECT_TRUE(changed("RELOAD d=2"));
}

// The server's hot path: a take granted at once and a release nobody waits
// for. After a warm-up neither may touch the heap, for defined names and for
// undefined ones that come and go on every cycle (long names included).
TEST(SemaphoreTable, HotPathDoesNotAllocate) {
  MemoryJournal journal;
  SemaphoreTable table(journal, {});
  Completions out;
  out.reserve(4);
  table.configure_defined({{"splunk", 2}}, out);
  table.open_session(1);
  table.open_session(2);
  const std::string long_name(200, 'n');
  std::int64_t value = 0;
  const auto cycle = [&] {
    for (const std::string_view name :
         {std::string_view("splunk"), std::string_view("tmp"), std::string_view(long_name)}) {
      ASSERT_EQ(table.take(acquire(1, name), out).type, TakeResult::Type::kGranted);
      ASSERT_EQ(table.take(acquire(2, name, 1, 0), out).type,
                name == "splunk" ? TakeResult::Type::kGranted : TakeResult::Type::kTimedOut);
      ASSERT_EQ(table.release(1, name, 1, value, out), ErrorCode::kNone);
      if (name == "splunk") {
        ASSERT_EQ(table.release(2, name, 1, value, out), ErrorCode::kNone);
      }
    }
  };
  cycle();
  const std::size_t before = g_allocations;
  for (int i = 0; i < 1000; ++i) cycle();
  EXPECT_EQ(g_allocations, before);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(table.get("tmp").kind, SemaphoreKind::kAbsent);
}

}  // namespace
}  // namespace netsem::server
