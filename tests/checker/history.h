// The independent checker of a replicated netsem's safety (issue 16). It
// knows nothing of netsemd, Raft or the client library: it reads the history
// that the clients of a failure test wrote (what each asked, when, and what
// it was told) and proves, or refutes, the promise:
//
// - no name ever had more permits in use than its limit, counting each
//   holder from the moment its grant reached it until it sent its release or
//   declared the permit lost (a permit never released counts to the end);
// - the fences of a name's grants are distinct and follow real time: a grant
//   whose answer arrived before another was even asked has the smaller fence
//   (so fences strictly increase across every failover);
// - no acknowledged CREATE, DELETE, POST or WAIT was lost: the state read at
//   the end is one that the acknowledged changes, plus any subset of the
//   changes whose outcome the client never learnt, can explain. A change of
//   unknown outcome may take effect at any time after it was sent (even
//   after the client gave up: a server may still apply a forwarded command),
//   and acknowledged changes that overlap in time may have been applied in
//   either order; so they widen what is allowed (the value to an interval:
//   with one unknown POST 2 on a value of 3, 3 and 5 are explained, and so
//   is 4), and the value is not judged at all when another CREATE or DELETE
//   may have come after the last acknowledged one. The check never reports
//   a loss that did not happen; it can miss one that hides in that room.
//
// A history is JSON lines, one event each (docs/replication.md, "The
// checker", has the schema): {"op":"limit","name":..,"max":N} declares a
// name's limit; acquire/wait/release/post/create/delete carry the client, the
// name, invoke_ns and complete_ns (one clock for every client: the test's
// host's CLOCK_MONOTONIC), the outcome ("ok", "fail" when the server refused
// or timed it out, "unknown" when no answer came) and their fields; "lost"
// carries at_ns; "final" the state read at the end.
//
// API: parse_history() reads the lines (several files may be concatenated:
// events need not be in time order); check_history() returns a Report.
//
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"

namespace netsem::checker {

enum class Op : std::uint8_t { kLimit, kAcquire, kWait, kRelease, kLost, kPost, kCreate, kDelete, kFinal };
enum class Outcome : std::uint8_t { kOk, kFail, kUnknown };

struct Event {
  Op op = Op::kAcquire;
  std::string client;
  std::string name;
  std::int64_t count = 1;
  std::int64_t invoke_ns = 0;    // when the client sent the request (kLost: when it declared the loss)
  std::int64_t complete_ns = 0;  // when its answer arrived (kUnknown: when the client gave up)
  Outcome outcome = Outcome::kOk;
  std::optional<std::uint64_t> fence;  // a granted acquire or wait; the permit a release or loss ends
  std::int64_t value = 0;              // create: initial value; final: value read
  std::int64_t max = 0;                // limit, create, final
  bool exists = true;                  // final
  std::size_t line = 0;                // where it was read (1-based), for reports
  std::string source;                  // the file it was read from ("" when not given)
};

// The events of a history, or kInvalidArgument naming the line and field
// that is wrong (a line that is not JSON, an unknown op or outcome, a
// missing field, a complete_ns before invoke_ns, an ok acquire without a
// fence; a wait's fence is optional).
// `source` names the file in messages and in each Event.
Result<std::vector<Event>> parse_history(std::string_view text, std::string_view source = {});

struct NameFigures {
  std::int64_t limit = 0;        // 0: none declared (not checked)
  std::int64_t most_in_use = 0;  // the most permits in use at once
  std::uint64_t grants = 0;      // ok acquires and waits
  std::uint64_t unknown = 0;     // requests whose outcome the client never learnt
};

struct Report {
  std::vector<std::string> violations;  // empty: the history keeps the promise
  std::map<std::string, NameFigures> names;
  bool ok() const { return violations.empty(); }
};

Report check_history(const std::vector<Event>& events);

}  // namespace netsem::checker
