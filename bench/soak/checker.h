// The soak's checker: pure functions over what the workers and the driver
// saw, with no sockets, no clock and none of the server's code, so that the
// tests can feed it hand-made histories and prove that it catches what it
// must and reports nothing else.
//
// Three checks:
//
// 1. check_holds: no name ever had more permits held than its limit. Every
//    grant a worker reports becomes a *client interval* [received, end),
//    where `received` is taken after the OK arrived and `end` is the earliest
//    of: the RELEASE about to be sent, the worker's own drop of that
//    connection, the worker's SIGKILL, and the stop (SIGTERM or SIGKILL) of
//    the server instance that made the grant, each time taken *before* the
//    act. The server-side hold began before the OK was sent and ends only
//    after one of those acts, so each client interval lies inside its
//    server-side hold: overlapping client intervals are permits the server
//    really had out at once. The check can therefore miss an over-grant (the
//    intervals are shorter than the truth) but never invents one.
//
//    Attribution. A grant can sit in a socket buffer and be read after its
//    server died, even after the next one started; counting it against the
//    new instance until its RELEASE would be a false violation. So a grant is
//    charged to the *earliest* instance it can have come from, which only
//    makes its interval shorter (an earlier instance stopped earlier).
//    Evidence that it came from instance k or later, all from documented
//    promises: (a) its fence is above `last_fence` of instance k's first
//    STATS (docs/protocol.md, docs/durability.md: a restarted server starts
//    its fences above every fence handed out before, and STATS reports that
//    floor or more); (b) for a raw worker, its connection was opened after
//    instance k-1 had exited (nothing else listened then). A grant charged to
//    an instance that ended without being stopped by the driver (a crash or
//    a failed start) has no known end and is skipped.
//
//    A connection the server ended while no stop or drop explains it would
//    mean an unknown end; such holds are skipped and counted. With a session
//    timeout T, the server may also end a session T after it read its last
//    request; a worker that does not ping (a raw one, listed in
//    `without_lease`) may not know, so its interval also ends T after it sent
//    the request of the grant (the server read it later).
//
// 1b. check_host_holds: the lease workers' name, held through libnetsem on
//    this one host, from the server or from fallback, with the work under a
//    lost permit going on until the worker gives it up (the lease's stop-by
//    time after a frozen network, a grace after a server kill). An interval
//    runs from the grant to the worker's release or drop (stamped when its
//    work has stopped) or its SIGKILL, whatever the server did meanwhile:
//    items 3 and 5 of issue 10 promise that these never overlap beyond the
//    limit on one host. (One exception, a documented gap: a holder behind a
//    frozen network cannot learn that the server was killed, and the
//    restarted server forgets it; such a hold ends at the server's stop.)
//
//    Fences are checked too: a grant received before another was requested
//    has a smaller fence for the same name (fences only grow per name, across
//    restarts), and no grant received before instance k started may carry a
//    fence above instance k's first `last_fence`.
//
// 2. check_permits_back: at a quiescent point (every worker idle, or every
//    worker killed), a worker name shows all its permits free.
//
// 3. CreatedExpectation: the values a created semaphore may have, given the
//    driver's POST and WAIT and what the server answered (an operation whose
//    answer was lost with a killed server may or may not have happened), and
//    whether an observed value is one of them.
//
// Thread safety: plain functions and values.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::soak {

using Nanos = std::int64_t;  // CLOCK_MONOTONIC nanoseconds
inline constexpr Nanos kNever = std::numeric_limits<Nanos>::max();

enum class EventType : std::uint8_t {
  // Reported by a worker.
  kConnect,  // about to connect; `connection` is its number within the worker
  kGrant,    // OK received: name, count, fence, connection, request_time
  kRelease,  // about to send RELEASE of `name` (ends the worker's holds of it)
  kDrop,     // about to close `connection` itself
  kLost,     // noticed the server ended `connection`
  // Recorded by the driver.
  kWorkerKill,   // about to SIGKILL `worker`
  kServerStart,  // about to fork netsemd instance `instance` (0, 1, ... in order)
  kServerReady,  // instance answered its first STATS; `fence` is its last_fence
  kServerStop,   // about to send SIGTERM or SIGKILL to `instance`
  kServerExit,   // instance reaped
};

struct Event {
  EventType type = EventType::kGrant;
  Nanos time = 0;
  std::uint32_t worker = 0;  // a worker's incarnation: never reused
  std::uint32_t connection = 0;
  std::uint32_t instance = 0;
  std::uint16_t name = 0;  // index into HoldCheckInput::names
  std::int32_t count = 1;
  std::uint64_t fence = 0;
  Nanos request_time = 0;  // kGrant: taken before the request was sent
};

struct Violation {
  enum class Kind : std::uint8_t {
    kOverLimit,        // more permits held at once than the limit
    kFenceOrder,       // a later grant of a name had a smaller fence
    kFenceAboveFloor,  // a fence above what a later instance reported as its floor
    kPermitNotBack,    // a permit did not come back at a quiescent point
    kCreatedValue,     // a created semaphore's value no sequence of our operations explains
    kServer,           // netsemd crashed, or did not stop cleanly on SIGTERM
  };
  Kind kind = Kind::kOverLimit;
  Nanos time = 0;
  std::string name;  // the semaphore, or empty
  std::string what;  // for people: the numbers and intervals involved
};
std::string_view kind_name(Violation::Kind kind);

// --- 1. holds ---

struct HoldCheckInput {
  std::vector<std::string> names;
  std::vector<std::int64_t> limits;  // per name: most permits that may be held at once
  // Worker events of the stretch being checked, and every driver event so
  // far (instances and kills are needed to end the holds). Any order.
  std::vector<Event> events;
  // netsemd's session_timeout_ms in nanoseconds (0: none), and the workers
  // (incarnations) that keep no lease: their holds end by T after the request.
  Nanos session_timeout = 0;
  std::set<std::uint32_t> without_lease;
};

// What check_holds carries from one stretch of events to the next: per name,
// the largest fence received so far and when it was received.
struct FenceCarry {
  std::vector<std::uint64_t> fence;
  std::vector<Nanos> received;
};

struct HoldCheckResult {
  std::uint64_t grants = 0;              // kGrant events seen
  std::uint64_t checked = 0;             // of them, with a non-empty client interval
  std::uint64_t cut_by_server_stop = 0;  // intervals ended by their instance's stop
  std::uint64_t skipped_unexplained_loss = 0;
  std::uint64_t skipped_unterminated = 0;        // no end at all (a worker that died on its own)
  std::uint64_t skipped_unstopped_instance = 0;  // charged to an instance that crashed or failed to start
  std::vector<std::int64_t> peak;                // per name: most permits held at once by checked intervals
  std::vector<Violation> violations;
};

// REQUIRES: limits.size() == names.size(); every event's name < names.size();
// server events numbered from 0 without gaps. `carry`, when given, is read
// and updated (sized to the names on first use).
HoldCheckResult check_holds(const HoldCheckInput& input, FenceCarry* carry = nullptr);

// Check 1b: no more than input.limits[name] permits of a name held at once
// by the intervals of `input.events` (lease workers' events and the driver's
// kills), ended only by the worker's release, drop or SIGKILL (lease workers
// report no kLost: a loss ends nothing, their work goes on until they say).
// A hold ended by a drop (a frozen network: its worker cannot learn of a
// server kill) also ends at the stop of the instance it was granted under,
// since a restarted server forgets its holders. Fences play no part. Fills grants, checked, skipped_unterminated, peak
// and violations.
HoldCheckResult check_host_holds(const HoldCheckInput& input);

// --- 2. permits back ---

// One GET answer.
struct SemaphoreReading {
  std::int64_t value = 0;
  std::int64_t max = 0;
  std::int64_t holders = 0;
  std::int64_t waiters = 0;
  std::string kind;
};

// nullopt when `reading` shows every permit of a worker name free: nobody
// holds or waits, and value == max == limit (an idle undefined name is gone:
// GET shows `1 1 0 0 absent`); else the violation, dated `time`.
std::optional<Violation> check_permits_back(std::string_view name, std::int64_t limit, bool defined,
                                            const SemaphoreReading& reading, Nanos time);

// --- 3. created semaphores ---

// The values one created semaphore may have. Only the driver changes it, one
// request at a time, and it holds no ACQUIRE permit of it.
class CreatedExpectation {
 public:
  enum class Outcome : std::uint8_t { kDone, kRefused, kUnknown };

  CreatedExpectation(std::int64_t value, std::int64_t max);

  // POST count: kDone (OK), kRefused (OVERFLOW), kUnknown (no answer).
  // Returns a description when the answer contradicts every possible value.
  std::optional<std::string> post(std::int64_t count, Outcome outcome);
  // WAIT count with timeout 0: kDone (OK), kRefused (TIMEOUT), kUnknown.
  std::optional<std::string> try_wait(std::int64_t count, Outcome outcome);
  // A value the server reported (GET, or POST's answer): a description when
  // it is not a possible value. Either way the expectation becomes exactly
  // `value`, so one mismatch is reported once.
  std::optional<std::string> observe(std::int64_t value);

  std::int64_t max() const { return max_; }
  const std::set<std::int64_t>& possible() const { return possible_; }
  std::string describe() const;  // "{3, 5}"

 private:
  std::optional<std::string> settle(std::set<std::int64_t> next, std::string_view what);

  std::int64_t max_;
  std::set<std::int64_t> possible_;
};

}  // namespace netsem::soak
