// SemaphoreTable: every semaphore of the server, its FIFO queue, the permits
// each session holds, and fences. Pure logic: no sockets, no files (changes
// to created semaphores go to a Journal), and no clock: time is passed in
// (TakeRequest::now, expire(now), the queries' `now`), and the instant of a
// call that has no `now` of its own (a RELEASE that grants a queued request
// or ends a hold, a session's end) is the last one given to set_time(),
// take() or expire(): the caller sets it once per turn of its event loop.
// This is the server's core and the thing the fuzzer drives.
//
// API: the network layer opens a session per connection and passes each
// request to take/release/post/cancel/create/remove/get/list. A call answers
// its own request through its return value, and appends to `out` a
// Completion for every *queued* request it finished (granted, timed out,
// cancelled, refused after a reload), in the order they happened; the caller
// writes its own answer first, then the completions. expire() finishes the
// queued requests whose deadline passed; next_deadline() tells when to call
// it next. close_session() gives back everything a session held and drops its
// queued requests (no completions for them). holders(), waiters() and
// session_load() show who holds and who waits (HOLDERS, WAITERS, SESSIONS).
//
// Rules (the contract's "Semaphore model"): strict FIFO per semaphore with
// counts; a try (timeout 0) never overtakes a queued waiter; whenever a
// queue's head leaves, every waiter that now fits is granted at once. Kinds:
// defined (from the configuration, never removed), undefined (made by the
// first ACQUIRE of an unknown name with max 1, removed as soon as it is idle:
// no holders, no waiters; WAIT and POST of it are NOT_FOUND, so it never has
// consumed permits), created (CREATE/DELETE, durable through the Journal). After a reload lowers
// a defined limit below what is in use, value is negative inside the table
// until enough permits come back; get() and list() report it as 0.
//
// Thread safety: none. The server uses it from its event-loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "journal/journal.h"
#include "netsem/status.h"
#include "protocol/error_code.h"
#include "stats/stats.h"

namespace netsem::server {

using SessionId = std::uint64_t;
using TimePoint = std::chrono::steady_clock::time_point;
using protocol::ErrorCode;

enum class SemaphoreKind : std::uint8_t { kDefined, kUndefined, kCreated, kAbsent };
// "defined", "undefined", "created", "absent".
std::string_view kind_name(SemaphoreKind kind);

// ACQUIRE holds permits for the session; WAIT consumes them (POSIX sem_wait).
enum class TakeMode : std::uint8_t { kAcquire, kWait };

struct TableLimits {
  std::size_t max_semaphores = 1'000'000;
  std::size_t max_pending_per_session = 1024;
};

// How a queued request ended, for the session that queued it.
struct Completion {
  // kTooMany and kNotFound end a queued request after a reload: its count
  // exceeds the new max, or it is a WAIT of a name that became undefined.
  // kNoFence: it could be granted, but no fence could be reserved (the
  // journal cannot write its fences file); answered as LIMIT.
  enum class Type : std::uint8_t { kGranted, kTimedOut, kCancelled, kTooMany, kNotFound, kNoFence };
  SessionId session = 0;
  std::string tag;
  Type type = Type::kGranted;
  std::uint64_t fence = 0;  // kGranted
};
using Completions = std::vector<Completion>;

struct TakeRequest {
  SessionId session = 0;
  std::string_view tag;
  std::string_view name;  // decoded and valid
  TakeMode mode = TakeMode::kAcquire;
  std::int64_t count = 1;        // 1 .. 2^31-1
  std::int64_t timeout_ms = -1;  // -1 forever, 0 try, > 0 at most that long
  TimePoint now{};
};

struct TakeResult {
  enum class Type : std::uint8_t { kGranted, kQueued, kTimedOut, kError };
  Type type = Type::kError;
  std::uint64_t fence = 0;             // kGranted
  std::uint64_t position = 0;          // kQueued: 1 = head of the queue
  ErrorCode error = ErrorCode::kNone;  // kError: TOO_MANY, NOT_FOUND, LIMIT, DUPLICATE_TAG
  bool no_fence = false;               // kError LIMIT because no fence could be reserved
};

// What GET, LIST and the status file show of one semaphore.
struct SemaphoreInfo {
  std::string_view name;
  std::int64_t value = 1;  // clamped at 0
  std::int64_t max = 1;
  std::uint64_t holders = 0;  // sessions holding permits of it
  std::uint64_t waiters = 0;  // queued requests
  SemaphoreKind kind = SemaphoreKind::kAbsent;
  std::int64_t held = 0;  // permits held through ACQUIRE, all sessions
  // Grants of this name (ACQUIRE and WAIT, at once or after queueing) since
  // it came into the table: since start for a defined name (a reload keeps
  // it), since its CREATE (or the start that recovered it) for a created one,
  // since its first ACQUIRE for an undefined one, which is removed when idle.
  std::uint64_t grants = 0;
};

// One session holding permits of a semaphore through ACQUIRE (HOLDERS).
struct HolderInfo {
  SessionId session = 0;
  std::int64_t count = 0;   // permits it holds now
  std::uint64_t fence = 0;  // of its latest grant of this name
  // Since the grant that made it a holder (a session that gives back all its
  // permits and takes some again is a new holder), in whole milliseconds.
  std::int64_t held_ms = 0;
  // Rises in the order sessions became holders (of any name): the cursor of
  // holders_after().
  std::uint64_t order = 0;
};

// One queued ACQUIRE or WAIT (WAITERS).
struct WaiterInfo {
  SessionId session = 0;
  std::int64_t count = 1;
  TakeMode mode = TakeMode::kAcquire;
  std::int64_t waited_ms = 0;  // since it was queued, in whole milliseconds
  // Its timeout_ms less waited_ms, at least 0; -1 for one that waits for ever.
  std::int64_t timeout_ms_left = -1;
  std::uint64_t order = 0;  // rises in the order requests queued: the cursor of waiters_after()
};

// A queued request granted after waiting at least the slow-wait threshold
// (SemaphoreTable::set_slow_wait), for the log.
struct SlowGrant {
  SessionId session = 0;
  std::string name;
  std::int64_t count = 1;
  std::uint64_t fence = 0;
  std::int64_t waited_ms = 0;
};

// What SESSIONS shows of a session from the table.
struct SessionLoad {
  std::int64_t permits_held = 0;  // through ACQUIRE, all names
  std::uint64_t pending = 0;      // queued requests, all names
};

// What MINE (proposed 1.2) shows of one session: a name it holds permits
// of, with the fence of its latest grant of it, or one of its queued
// requests. Views into the table, valid until it changes.
struct SessionHolding {
  std::string_view name;
  std::int64_t count = 0;
  std::uint64_t fence = 0;
};
struct SessionWaiting {
  std::string_view tag;
  std::string_view name;
  std::int64_t count = 1;
  TakeMode mode = TakeMode::kAcquire;
};

struct TableStats {
  std::uint64_t sessions = 0;
  std::uint64_t semaphores = 0;
  std::uint64_t held = 0;     // permits held through ACQUIRE, all sessions
  std::uint64_t waiters = 0;  // queued requests, all semaphores
  std::uint64_t grants = 0;   // grants since start (immediate and queued)
  std::uint64_t last_fence = 0;
  // The semaphores by kind (defined + undefined + created == semaphores).
  std::uint64_t defined = 0;
  std::uint64_t undefined = 0;
  std::uint64_t created = 0;
};

// The whole state of a table, for a replicated server's snapshots
// (SemaphoreTable::export_image and import_image): every open session, every
// semaphore with its holders and its FIFO queue, the last fence and order,
// the table's time. What is not here is not state: STATS counters, the
// journal, spare nodes. Plain values, in a canonical order (sessions by id,
// semaphores by name bytes, holders and waiters in their table order), so two
// tables in the same state export equal images.
struct TableImage {
  struct Holder {
    SessionId session = 0;
    std::int64_t count = 0;   // 1 .. 2^31-1
    std::uint64_t fence = 0;  // of its latest grant of this name
    TimePoint since{};        // the grant that made it a holder
    std::uint64_t order = 0;  // HolderInfo::order
    friend bool operator==(const Holder&, const Holder&) = default;
  };
  struct Waiter {
    SessionId session = 0;
    std::string tag;
    TakeMode mode = TakeMode::kAcquire;
    std::int64_t count = 1;
    std::int64_t timeout_ms = -1;  // as asked: -1 or > 0 (a try never queues)
    TimePoint queued_at{};         // its deadline is queued_at + timeout_ms
    std::uint64_t order = 0;       // WaiterInfo::order
    friend bool operator==(const Waiter&, const Waiter&) = default;
  };
  struct Semaphore {
    std::string name;
    SemaphoreKind kind = SemaphoreKind::kUndefined;
    std::int64_t value = 1;  // unclamped: negative after a reload lowered max below use
    std::int64_t max = 1;
    std::uint64_t grants = 0;     // SemaphoreInfo::grants
    std::vector<Holder> holders;  // in the order they became holders
    std::vector<Waiter> queue;    // FIFO order
    friend bool operator==(const Semaphore&, const Semaphore&) = default;
  };
  std::vector<SessionId> sessions;    // open sessions, rising
  std::vector<Semaphore> semaphores;  // in byte order of names
  std::uint64_t last_fence = 0;
  std::uint64_t last_order = 0;  // of holds and waiters
  TimePoint time{};              // set_time()'s
  bool grants_held = false;
  friend bool operator==(const TableImage&, const TableImage&) = default;
};

class SemaphoreTable {
 public:
  // Fences are reserved from the journal in steps of this many, the next
  // step once half of the current one is used; after a failed reservation,
  // again every kFenceRetryEvery fences, and at every grant once the
  // reserved ones are used up (a grant that then finds none fails: LIMIT).
  static constexpr std::uint64_t kFenceReserveStep = 1 << 16;
  static constexpr std::uint64_t kFenceRetryEvery = 1 << 10;

  explicit SemaphoreTable(Journal& journal, TableLimits limits);
  ~SemaphoreTable();
  SemaphoreTable(const SemaphoreTable&) = delete;
  SemaphoreTable& operator=(const SemaphoreTable&) = delete;

  // --- start and reload ---

  // The time of the calls that follow (until the next set_time(), take() or
  // expire(), which set it too): grants of queued requests are stamped with
  // it (HolderInfo's held_ms, STATS wait_us) and holds that end are counted
  // to it (STATS hold_us). The caller's clock, read once per turn.
  void set_time(TimePoint now);

  // Fences handed out from now on are all above `floor` (what the journal
  // recovered). REQUIRES: called before the first grant.
  void set_fence_floor(std::uint64_t floor);
  // The last fence grows by `by` (fences handed out from now on are above
  // it plus `by`) and is returned; at any time. For the replicated state
  // machine (RaiseFences), whose log keeps it: the journal's reservation is
  // not touched. REQUIRES: the last fence plus `by` does not overflow.
  std::uint64_t raise_fences(std::uint64_t by);
  // Brings back a created semaphore recovered from the journal (replacing a
  // created one of that name: records are absolute states). Writes no
  // journal record and ignores max_semaphores. Returns false, changing
  // nothing, for a name that is defined or in use, or a state outside
  // 0 <= value <= max, 1 <= max <= 2^31-1.
  bool restore_created(std::string_view name, const CreatedState& state);
  // Makes `limits` (name -> limit >= 1) the defined semaphores, at start and
  // on reload: a new name becomes defined (an undefined one in use keeps its
  // holders); a raised limit grants waiters at once; a lowered one revokes
  // nothing; a defined name no longer listed becomes undefined (max 1) and
  // is removed when idle, forgetting permits WAIT consumed; a queued request
  // whose count now exceeds its max completes kTooMany, a queued WAIT of a
  // name now undefined kNotFound. A created name keeps its kind: listed names that are
  // created are returned so the caller can warn.
  std::vector<std::string> configure_defined(const std::vector<std::pair<std::string, std::int64_t>>& limits,
                                             Completions& out);

  // --- whole state (replication) ---

  // The table's whole state (TableImage). O(semaphores + holders + waiters).
  TableImage export_image() const;
  // Makes an empty table (no session, no semaphore) the state `image`
  // describes; the table then behaves exactly as the one exported would
  // (same grants, fences, completions in the same order), STATS counters
  // aside. kInvalidArgument, changing nothing, when the table is not empty;
  // kCorruption, changing nothing, when the image breaks an invariant of the
  // table (a name out of order or invalid, a count or limit out of range, a
  // holder or waiter of a session not listed, a duplicate tag or order, a
  // fence above last_fence, an undefined name that is idle or has consumed
  // permits or a queued WAIT, a queue head that fits while grants are not
  // held): the message says which. Writes no journal record, ignores
  // max_semaphores; fences handed out after it are above last_fence.
  Status import_image(const TableImage& image);

  // --- sessions ---

  // REQUIRES: `session` not open.
  void open_session(SessionId session);
  // Gives back every permit the session holds, drops its queued requests,
  // and grants whoever that lets in. REQUIRES: `session` open.
  void close_session(SessionId session, Completions& out);
  // Closes every session at once, as a stopping server does: every queued
  // request is dropped first, then every permit given back, so nothing is
  // granted (no completions, no journal record).
  void close_all_sessions();

  // --- the lease wait after a restart ---

  // Grants nothing until resume_grants(): an ACQUIRE or WAIT that could be
  // granted queues instead (a try times out), as if the semaphore were
  // full, keeping FIFO order; timeouts, CANCEL, releases and everything
  // else go on. netsemd holds grants after a restart for as long as the
  // previous run's holders may still work under their leases
  // (docs/durability.md, "Restarts").
  void hold_grants();
  // Grants again: every queue is settled at once, each in its FIFO order;
  // `out` gets the grants. Nothing happens when grants are not held.
  void resume_grants(Completions& out);
  bool grants_held() const;

  // True while `tag` names a queued request of the session.
  bool is_pending(SessionId session, std::string_view tag) const;
  // The number of queued requests of the session.
  std::size_t pending_count(SessionId session) const;

  // --- requests --- REQUIRES: the session is open, names are valid.

  // ACQUIRE and WAIT. kError codes: TOO_MANY (count > max, or count > 1 for
  // an unknown name), NOT_FOUND (WAIT of an unknown or undefined name), LIMIT (would make
  // a semaphore past max_semaphores, or queue past max_pending_per_session),
  // DUPLICATE_TAG (tag already queued by this session; checked first), and
  // LIMIT with no_fence when it could be granted but the journal cannot
  // reserve a fence (a queued request in that case completes kNoFence). A
  // try that cannot be granted is kTimedOut, never LIMIT.
  TakeResult take(const TakeRequest& request, Completions& out);
  // Gives back `count` permits the session holds through ACQUIRE. On success
  // `value` is the value after the grants the release caused (clamped at 0,
  // as get()). NOT_HELD when the session holds fewer, an unknown name
  // included (it holds none of it).
  ErrorCode release(SessionId session, std::string_view name, std::int64_t count, std::int64_t& value,
                    Completions& out);
  // Adds `count` permits (POSIX sem_post); `value` as for release(). OVERFLOW
  // when value + held + count would exceed max; NOT_FOUND for an unknown or
  // undefined name.
  ErrorCode post(std::string_view name, std::int64_t count, std::int64_t& value, Completions& out);
  // Cancels the session's queued request `tag`: it completes kCancelled (in
  // `out`). NOT_FOUND when no such request is queued.
  ErrorCode cancel(SessionId session, std::string_view tag, Completions& out);
  // CREATE. EXISTS for a defined or undefined name, or a created one with
  // `exclusive`; OK and no change for a created one without it. LIMIT past
  // max_semaphores. REQUIRES: 0 <= value <= max, 1 <= max <= 2^31-1.
  ErrorCode create(std::string_view name, std::int64_t value, std::int64_t max, bool exclusive);
  // DELETE. NOT_FOUND for a name that is not a semaphore; BUSY for a defined
  // one, or a created one that is held or waited on. An undefined one is BUSY
  // too (it exists only while in use).
  ErrorCode remove(std::string_view name);

  // --- observation ---

  // kind kAbsent (value = max = 1) for an unknown name.
  SemaphoreInfo get(std::string_view name) const;
  // Every semaphore whose name starts with `prefix`, in byte order of names.
  void list(std::string_view prefix, const std::function<void(const SemaphoreInfo&)>& visit) const;
  // The semaphores whose names start with `prefix` and sort after `after`
  // (from the first when `after` is empty), in byte order of names, until
  // `visit` returns false. O(log n) to find the first, O(1) per name after
  // it: a LIST streamed in chunks resumes here with the last name it
  // produced, so it is linear in the names listed and never sorts.
  void list_after(std::string_view prefix, std::string_view after,
                  const std::function<bool(const SemaphoreInfo&)>& visit) const;
  // Every created semaphore with its journal state (for compaction), in
  // byte order of names.
  void for_each_created(const std::function<void(std::string_view, const CreatedState&)>& visit) const;
  // The sessions holding permits of `name` through ACQUIRE, in the order
  // they became holders (by HolderInfo::order), each once, with held_ms
  // counted to `now`. False, visiting nobody, when `name` is not a
  // semaphore (absent); a semaphore nobody holds visits nobody and is true.
  bool holders(std::string_view name, TimePoint now, const std::function<void(const HolderInfo&)>& visit) const;
  // As holders(), from the first holder whose order is above `after`, until
  // `visit` returns false: a HOLDERS answer streamed in chunks resumes here
  // with the last order it produced, so a holder that left meanwhile is
  // skipped and none is shown twice. O(holders before the cursor) to
  // resume.
  bool holders_after(std::string_view name, TimePoint now, std::uint64_t after,
                     const std::function<bool(const HolderInfo&)>& visit) const;
  // The queued requests of `name` in queue order (the order a FIFO grants
  // them), waited_ms counted to `now`; false for an absent name, as
  // holders().
  bool waiters(std::string_view name, TimePoint now, const std::function<void(const WaiterInfo&)>& visit) const;
  // As waiters(), resuming after `after` as holders_after() does.
  bool waiters_after(std::string_view name, TimePoint now, std::uint64_t after,
                     const std::function<bool(const WaiterInfo&)>& visit) const;
  // The permits `session` holds and the requests it has queued; zeros for a
  // session that is not open.
  SessionLoad session_load(SessionId session) const;
  // What `session` holds, one per name in byte order of names, then its
  // queued requests in byte order of tags; nothing for a session that is
  // not open. O(h log h + q log q) for h names held and q requests queued.
  void session_items(SessionId session, const std::function<void(const SessionHolding&)>& held,
                     const std::function<void(const SessionWaiting&)>& queued) const;
  TableStats stats() const;
  // The events STATS counts (stats/stats.h): grants, TIMEOUT answers,
  // cancellations, wait and hold times.
  const stats::TableCounters& counters() const;
  // Changes whenever anything a status file shows may have changed.
  std::uint64_t change_count() const { return change_count_; }

  // --- the log ---

  // Grants of queued requests that waited at least `threshold` are kept
  // for take_slow_grants() (the server logs them); zero keeps none. Costs
  // one comparison per queued grant.
  void set_slow_wait(std::chrono::microseconds threshold);
  // Whether take_slow_grants() has any: inline, so that the caller's check
  // after every delivery of completions costs no call.
  bool has_slow_grants() const { return !slow_grants_.empty(); }
  // The slow grants since the last call, in grant order.
  std::vector<SlowGrant> take_slow_grants() { return std::exchange(slow_grants_, {}); }

  // --- time ---

  // Times out every queued request whose deadline is <= now. All of them
  // leave before anyone is granted, so a request past its deadline is never
  // granted because another one timed out.
  void expire(TimePoint now, Completions& out);
  // The earliest deadline of a queued request, if any.
  std::optional<TimePoint> next_deadline() const;

 private:
  // Everything else lives in semaphore_table.cc, so the network layer does
  // not rebuild when the table's containers change.
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint64_t change_count_ = 0;      // bumped by Impl through a reference
  std::vector<SlowGrant> slow_grants_;  // appended by Impl through a reference
};

}  // namespace netsem::server
