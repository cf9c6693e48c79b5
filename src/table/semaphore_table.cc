// SemaphoreTable's implementation (the contract is in semaphore_table.h).
//
// Layout: semaphores live in a hash map keyed by name with heterogeneous
// lookup, so a request's string_view finds its semaphore without allocating.
// Each semaphore owns its FIFO queue as a std::list of Waiters; a Waiter is
// also reachable from its session (by tag) and, when it has a deadline, from
// one ordered deadline index, and it stores the iterators that let cancel,
// expire and close_session unlink it in O(1) (O(log n) for the index).
// A session's permits of one name are a Hold, a node of its semaphore's list
// of holders in the order they became holders (what HOLDERS shows); the
// session keeps iterators to its holds in a small vector: a session holds
// one or two names, so a linear scan beats any map. Hold nodes are recycled
// through a spare list (spliced, never copied), so a grant does not
// allocate. Undefined semaphores come and go on
// every ACQUIRE/RELEASE of an unlisted name, so their map nodes are recycled
// through a small pool of extracted nodes instead of being freed.
// Beside the hash map, an ordered index of pointers by name serves LIST and
// the status file: a listing resumes from the last name it produced in
// O(log n) and walks on in O(1) per name, so a LIST streamed in chunks is
// linear and never sorts the table. Its nodes are recycled like the map's,
// so an undefined name's create-and-remove cycle does not allocate for it.
//
// Invariants between calls: no queue head fits (head.count > value), which is
// why "settle" (grant from the head while it fits) is all a change needs
// (while grants are held, heads may fit: resume_grants settles them all); and
// an undefined semaphore has no consumed permits (value == max - held) and
// no queued WAIT, so it is idle, and removed, as soon as it has no holders
// and no waiters: no verb can leave one behind.
#include "table/semaphore_table.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <utility>

#include "protocol/codec.h"
#include "protocol/names.h"

namespace netsem::server {
namespace {

// Deliberately not noexcept: libstdc++ then keeps each node's hash code, so
// erasing an undefined semaphore (every cycle of an ad-hoc name) and
// rehashing do not hash the name again.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Map nodes kept for reuse; enough for the undefined names in flux at once.
constexpr std::size_t kSpareNodes = 64;
// Holds reserved per session so that its first grants do not allocate.
constexpr std::size_t kHoldsPerSession = 2;
// Hold nodes kept for reuse: enough for the holds that come and go at once.
constexpr std::size_t kSpareHolds = 1024;

// The deadline of a request queued at `now`; none when it lies beyond the
// clock's range, which is as good as forever.
std::optional<TimePoint> deadline_after(TimePoint now, std::int64_t timeout_ms) {
  using Duration = TimePoint::duration;
  const auto per_ms = std::chrono::duration_cast<Duration>(std::chrono::milliseconds(1)).count();
  const auto now_count = now.time_since_epoch().count();
  const auto room = now_count >= 0 ? Duration::max().count() - now_count : Duration::max().count();
  if (timeout_ms > room / per_ms) return std::nullopt;
  return now + Duration(timeout_ms * per_ms);
}

// Whole microseconds from `from` to `to`, 0 when `to` is earlier (STATS'
// wait and hold times).
std::uint64_t micros_between(TimePoint from, TimePoint to) {
  if (to <= from) return 0;
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(to - from).count());
}

// Whole milliseconds from `from` to `to`, 0 when `to` is earlier.
std::int64_t elapsed_ms(TimePoint from, TimePoint to) {
  if (to <= from) return 0;
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

}  // namespace

std::string_view kind_name(SemaphoreKind kind) {
  switch (kind) {
    case SemaphoreKind::kDefined:
      return "defined";
    case SemaphoreKind::kUndefined:
      return "undefined";
    case SemaphoreKind::kCreated:
      return "created";
    case SemaphoreKind::kAbsent:
      break;
  }
  return "absent";
}

struct SemaphoreTable::Impl {
  struct Session;
  struct Semaphore;

  // Orders semaphores by name (byte order), and finds them by name.
  struct ByName {
    using is_transparent = void;
    bool operator()(const Semaphore* a, const Semaphore* b) const;
    bool operator()(const Semaphore* a, std::string_view b) const;
    bool operator()(std::string_view a, const Semaphore* b) const;
  };
  using OrderedIndex = std::set<Semaphore*, ByName>;

  struct Waiter {
    Session* session = nullptr;
    Semaphore* sem = nullptr;
    std::string tag;
    TakeMode mode = TakeMode::kAcquire;
    std::int64_t count = 1;
    std::int64_t timeout_ms = -1;  // as asked
    TimePoint queued_at{};
    std::uint64_t order = 0;
    bool has_deadline = false;
    std::multimap<TimePoint, Waiter*>::iterator deadline;
    std::list<Waiter>::iterator self;
  };

  struct Hold {
    Session* session = nullptr;
    Semaphore* sem = nullptr;
    std::int64_t count = 0;
    std::uint64_t fence = 0;  // of the latest grant
    TimePoint since{};        // the grant that made the session a holder
    std::uint64_t order = 0;
  };
  using HoldList = std::list<Hold>;

  struct Session {
    SessionId id = 0;
    std::vector<HoldList::iterator> holds;  // into their semaphores' lists
    StringMap<Waiter*> pending;             // by tag
  };

  struct Semaphore {
    std::string_view name;  // the key of this node in `semaphores`
    SemaphoreKind kind = SemaphoreKind::kUndefined;
    std::int64_t value = 1;  // negative after a reload lowered max below use
    std::int64_t max = 1;
    std::int64_t held = 0;     // permits held through ACQUIRE, all sessions
    std::uint64_t grants = 0;  // since it came into the table (SemaphoreInfo::grants)
    HoldList holds;            // one per holding session, in the order they became holders
    std::list<Waiter> queue;
    // This semaphore's node in Impl::ordered: erase takes it out without a
    // name comparison (an ad-hoc name comes and goes every cycle).
    OrderedIndex::iterator in_order;
    bool touched = false;  // listed in Impl::touched
    // configure_defined's marks: the call that last listed this name, and
    // the last limit that call gave it.
    std::uint64_t listed = 0;
    std::int64_t listed_limit = 0;
  };

  using SemaphoreMap = StringMap<Semaphore>;

  Impl(Journal& j, TableLimits l, std::uint64_t& change_count, std::vector<SlowGrant>& slow)
      : journal(j), limits(l), changes(change_count), slow_grants(slow) {
    spare.reserve(kSpareNodes);
    spare_ordered.reserve(kSpareNodes);
  }

  Journal& journal;
  const TableLimits limits;
  TimePoint current_time{};  // set_time(): the instant of calls that have no `now` of their own
  std::uint64_t& changes;
  SemaphoreMap semaphores;
  std::vector<SemaphoreMap::node_type> spare;
  OrderedIndex ordered;  // every semaphore of `semaphores`, by name
  std::vector<OrderedIndex::node_type> spare_ordered;
  HoldList spare_holds;  // nodes for new holds
  std::unordered_map<SessionId, Session> sessions;
  std::multimap<TimePoint, Waiter*> deadlines;
  std::vector<Semaphore*> touched;    // to settle at the end of a bulk change
  std::uint64_t configure_calls = 0;  // for Semaphore::listed
  std::uint64_t last_fence = 0;
  std::uint64_t reserved_fence = 0;
  std::uint64_t next_reserve_attempt = 0;          // after a failed early reservation
  stats::TableCounters counters;                   // grants, timeouts, cancellations, wait and hold times
  std::uint64_t slow_wait_us = ~std::uint64_t{0};  // set_slow_wait; never reached when off
  std::vector<SlowGrant>& slow_grants;             // SemaphoreTable::slow_grants_
  std::uint64_t held_total = 0;
  std::uint64_t waiter_total = 0;
  std::array<std::uint64_t, 3> kind_counts{};  // semaphores by kind (kDefined, kUndefined, kCreated)
  std::uint64_t last_order = 0;                // of holds and waiters, for the queries' cursors
  bool grants_held = false;                    // hold_grants(): nothing is granted, everything queues

  Session& session(SessionId id) {
    auto it = sessions.find(id);
    assert(it != sessions.end() && "session not open");
    return it->second;
  }

  Semaphore* find(std::string_view name) {
    auto it = semaphores.find(name);
    return it == semaphores.end() ? nullptr : &it->second;
  }
  const Semaphore* find(std::string_view name) const {
    auto it = semaphores.find(name);
    return it == semaphores.end() ? nullptr : &it->second;
  }

  Semaphore& insert(std::string_view name, SemaphoreKind kind, std::int64_t value, std::int64_t max) {
    SemaphoreMap::iterator it;
    if (!spare.empty()) {
      SemaphoreMap::node_type node = std::move(spare.back());
      spare.pop_back();
      node.key().assign(name.data(), name.size());
      it = semaphores.insert(std::move(node)).position;
    } else {
      it = semaphores.try_emplace(std::string(name)).first;
    }
    Semaphore& s = it->second;
    s.name = it->first;
    s.kind = kind;
    ++kind_count(kind);
    s.value = value;
    s.max = max;
    s.grants = 0;  // a spare node keeps the counts of the name it had
    assert(s.held == 0 && s.holds.empty() && s.queue.empty() && !s.touched);
    if (!spare_ordered.empty()) {
      OrderedIndex::node_type node = std::move(spare_ordered.back());
      spare_ordered.pop_back();
      node.value() = &s;
      s.in_order = ordered.insert(std::move(node)).position;
    } else {
      s.in_order = ordered.insert(&s).first;
    }
    ++changes;
    return s;
  }

  std::uint64_t& kind_count(SemaphoreKind kind) {
    assert(kind != SemaphoreKind::kAbsent);
    return kind_counts[static_cast<std::size_t>(kind)];
  }

  void set_kind(Semaphore& s, SemaphoreKind kind) {
    --kind_count(s.kind);
    ++kind_count(kind);
    s.kind = kind;
  }

  // REQUIRES: nothing refers to `s` (no holds, no waiters).
  void erase(Semaphore& s) {
    --kind_count(s.kind);
    if (spare_ordered.size() < kSpareNodes) {
      spare_ordered.push_back(ordered.extract(s.in_order));
    } else {
      ordered.erase(s.in_order);
    }
    auto it = semaphores.find(s.name);
    if (spare.size() < kSpareNodes) {
      spare.push_back(semaphores.extract(it));
    } else {
      semaphores.erase(it);
    }
    ++changes;
  }

  // True when a fence can be handed out. The next step is reserved once half
  // of the current one is used, so a reservation that fails (a failing disk)
  // leaves half a step of grants while it is retried, every
  // kFenceRetryEvery fences, then at every grant once none are left; until
  // one works, grants fail (LIMIT) instead of handing out a fence a restart
  // could hand out again.
  bool fence_available() {
    if (last_fence + kFenceReserveStep / 2 >= reserved_fence &&
        (last_fence >= reserved_fence || last_fence >= next_reserve_attempt)) {
      const std::uint64_t bound = journal.reserve_fences(last_fence + kFenceReserveStep);
      if (bound > reserved_fence) {
        reserved_fence = bound;
      } else {
        next_reserve_attempt = last_fence + kFenceRetryEvery;
      }
    }
    return last_fence < reserved_fence;
  }

  static std::vector<HoldList::iterator>::iterator find_hold(Session& ses, const Semaphore& s) {
    return std::find_if(ses.holds.begin(), ses.holds.end(), [&](HoldList::iterator h) { return h->sem == &s; });
  }

  // Gives the node of an ended hold back to the spare list, its duration
  // to STATS (hold_us).
  void drop_hold(HoldList::iterator hold) {
    counters.hold_us.observe(micros_between(hold->since, current_time));
    HoldList& list = hold->sem->holds;
    if (spare_holds.size() < kSpareHolds) {
      spare_holds.splice(spare_holds.end(), list, hold);
    } else {
      list.erase(hold);
    }
  }

  // REQUIRES: fence_available(). `now` stamps a new hold.
  std::uint64_t grant(Session& ses, Semaphore& s, TakeMode mode, std::int64_t count, TimePoint now) {
    assert(last_fence < reserved_fence);
    const std::uint64_t fence = ++last_fence;
    s.value -= count;
    if (mode == TakeMode::kAcquire) {
      s.held += count;
      held_total += static_cast<std::uint64_t>(count);
      if (auto hold = find_hold(ses, s); hold != ses.holds.end()) {
        (*hold)->count += count;
        (*hold)->fence = fence;
      } else {
        if (spare_holds.empty()) {
          s.holds.emplace_back();
        } else {
          s.holds.splice(s.holds.end(), spare_holds, spare_holds.begin());
        }
        Hold& h = s.holds.back();
        h = {&ses, &s, count, fence, now, ++last_order};
        ses.holds.push_back(std::prev(s.holds.end()));
      }
    }
    ++counters.grants;
    ++s.grants;
    ++changes;
    return fence;
  }

  void journal_state(const Semaphore& s) { journal.record_set(s.name, {s.value + s.held, s.max}); }

  // Removes `w` from its queue, its session and the deadline index; returns
  // its tag for the completion.
  std::string unlink(Waiter& w) {
    w.session->pending.erase(w.tag);
    if (w.has_deadline) deadlines.erase(w.deadline);
    std::string tag = std::move(w.tag);
    w.sem->queue.erase(w.self);
    --waiter_total;
    ++changes;
    return tag;
  }

  // Grants from the head of the queue while it fits, then journals a created
  // semaphore if anything consumed permits (or `journal_anyway`), then
  // removes an undefined one that is idle (no holders, no waiters: it has no
  // consumed permits to wait for). Returns the value before removal, clamped
  // at 0, for RELEASE to answer.
  std::int64_t settle(Semaphore& s, Completions& out, bool journal_anyway) {
    bool consumed = false;
    while (!grants_held && !s.queue.empty() && s.queue.front().count <= s.value) {
      Waiter& w = s.queue.front();
      Session& ses = *w.session;
      if (!fence_available()) {
        out.push_back({ses.id, unlink(w), Completion::Type::kNoFence, 0});
        continue;
      }
      consumed |= w.mode == TakeMode::kWait;
      const std::uint64_t fence = grant(ses, s, w.mode, w.count, current_time);
      const std::uint64_t waited_us = micros_between(w.queued_at, current_time);
      counters.wait_us.observe(waited_us);
      if (waited_us >= slow_wait_us) [[unlikely]] {
        slow_grants.push_back(
            {ses.id, std::string(s.name), w.count, fence, static_cast<std::int64_t>(waited_us / 1000)});
      }
      out.push_back({ses.id, unlink(w), Completion::Type::kGranted, fence});
    }
    if (s.kind == SemaphoreKind::kCreated && (journal_anyway || consumed)) journal_state(s);
    const std::int64_t value = std::max<std::int64_t>(s.value, 0);
    if (s.kind == SemaphoreKind::kUndefined && s.holds.empty() && s.queue.empty()) {
      assert(s.held == 0 && s.value == s.max);
      erase(s);
    }
    return value;
  }

  void touch(Semaphore& s) {
    if (!s.touched) {
      s.touched = true;
      touched.push_back(&s);
    }
  }

  void settle_touched(Completions& out) {
    // settle() may erase its semaphore but never another one, so the
    // remaining pointers stay valid.
    for (Semaphore* s : touched) {
      s->touched = false;
      settle(*s, out, false);
    }
    touched.clear();
  }

  // A reload's new max: value moves by the same amount (permits in use stay
  // in use), and requests that can never fit now are refused. A name that
  // turns undefined keeps only its held permits: the consumed ones could come
  // back only through POST, which an undefined name refuses (NOT_FOUND), so
  // they are forgotten, as they would be if it had been idle and removed;
  // and its queued WAITs get the answer a WAIT of it gets now, NOT_FOUND.
  void resize(Semaphore& s, std::int64_t max, Completions& out) {
    s.value = s.kind == SemaphoreKind::kUndefined ? max - s.held : s.value + max - s.max;
    s.max = max;
    ++changes;
    for (auto it = s.queue.begin(); it != s.queue.end();) {
      Waiter& w = *it++;
      if (w.count > max) {
        out.push_back({w.session->id, unlink(w), Completion::Type::kTooMany, 0});
      } else if (w.mode == TakeMode::kWait && s.kind == SemaphoreKind::kUndefined) {
        out.push_back({w.session->id, unlink(w), Completion::Type::kNotFound, 0});
      }
    }
    touch(s);
  }

  static SemaphoreInfo info(const Semaphore& s) {
    return {s.name,  std::max<std::int64_t>(s.value, 0), s.max, s.holds.size(), s.queue.size(), s.kind, s.held,
            s.grants};
  }
};

bool SemaphoreTable::Impl::ByName::operator()(const Semaphore* a, const Semaphore* b) const {
  return a->name < b->name;
}
bool SemaphoreTable::Impl::ByName::operator()(const Semaphore* a, std::string_view b) const {
  return a->name < b;
}
bool SemaphoreTable::Impl::ByName::operator()(std::string_view a, const Semaphore* b) const {
  return a < b->name;
}

SemaphoreTable::SemaphoreTable(Journal& journal, TableLimits limits)
    : impl_(std::make_unique<Impl>(journal, limits, change_count_, slow_grants_)) {}

void SemaphoreTable::set_time(TimePoint now) {
  impl_->current_time = now;
}

SemaphoreTable::~SemaphoreTable() = default;

void SemaphoreTable::set_fence_floor(std::uint64_t floor) {
  Impl& t = *impl_;
  t.last_fence = std::max(t.last_fence, floor);
  t.reserved_fence = std::max(t.reserved_fence, floor);
}

std::uint64_t SemaphoreTable::raise_fences(std::uint64_t by) {
  Impl& t = *impl_;
  t.last_fence += by;
  ++change_count_;
  return t.last_fence;
}

bool SemaphoreTable::restore_created(std::string_view name, const CreatedState& state) {
  Impl& t = *impl_;
  if (state.max < 1 || state.max > protocol::kMaxCount || state.value < 0 || state.value > state.max) return false;
  Impl::Semaphore* s = t.find(name);
  if (s == nullptr) {
    t.insert(name, SemaphoreKind::kCreated, state.value, state.max);
    return true;
  }
  if (s->kind != SemaphoreKind::kCreated || s->held != 0 || !s->queue.empty()) return false;
  s->value = state.value;
  s->max = state.max;
  ++change_count_;
  return true;
}

std::vector<std::string> SemaphoreTable::configure_defined(
    const std::vector<std::pair<std::string, std::int64_t>>& limits, Completions& out) {
  Impl& t = *impl_;
  // Linear, so that a start or a reload with a million names takes seconds:
  // one table lookup per listed name, one pass over the table, and no other
  // map. The first pass marks each listed semaphore (`listing`, with the
  // name's last limit: a name listed twice takes its last one), making the
  // new ones; the second applies each mark once, at the name's first place;
  // the dropped ones follow in byte order, so the completions are
  // reproducible.
  const std::uint64_t listing = t.configure_calls += 2;
  const std::uint64_t applied = listing + 1;
  t.semaphores.reserve(limits.size());  // a no-op unless the table is smaller
  std::vector<Impl::Semaphore*> listed;
  listed.reserve(limits.size());
  for (const auto& [name, limit] : limits) {
    assert(limit >= 1 && limit <= protocol::kMaxCount);
    Impl::Semaphore* s = t.find(name);
    if (s == nullptr) s = &t.insert(name, SemaphoreKind::kDefined, limit, limit);
    s->listed = listing;
    s->listed_limit = limit;
    listed.push_back(s);
  }
  std::vector<std::string> created;
  for (Impl::Semaphore* s : listed) {
    if (s->listed != listing) continue;
    s->listed = applied;
    if (s->kind == SemaphoreKind::kCreated) {
      created.emplace_back(s->name);
    } else if (s->kind != SemaphoreKind::kDefined || s->max != s->listed_limit) {
      t.set_kind(*s, SemaphoreKind::kDefined);
      t.resize(*s, s->listed_limit, out);
    }
  }
  std::vector<Impl::Semaphore*> dropped;
  for (auto& [name, s] : t.semaphores) {
    if (s.kind == SemaphoreKind::kDefined && s.listed != applied) dropped.push_back(&s);
  }
  std::sort(dropped.begin(), dropped.end(),
            [](const Impl::Semaphore* a, const Impl::Semaphore* b) { return a->name < b->name; });
  for (Impl::Semaphore* s : dropped) {
    t.set_kind(*s, SemaphoreKind::kUndefined);
    t.resize(*s, 1, out);
  }
  t.settle_touched(out);
  return created;
}

void SemaphoreTable::open_session(SessionId session) {
  auto [it, inserted] = impl_->sessions.try_emplace(session);
  assert(inserted && "session already open");
  it->second.id = session;
  it->second.holds.reserve(kHoldsPerSession);
  ++change_count_;
}

void SemaphoreTable::close_session(SessionId session, Completions& out) {
  Impl& t = *impl_;
  auto it = t.sessions.find(session);
  assert(it != t.sessions.end() && "session not open");
  Impl::Session& ses = it->second;
  // Unlinked by hand: the whole pending map goes with the session.
  for (auto& [tag, w] : ses.pending) {
    if (w->has_deadline) t.deadlines.erase(w->deadline);
    t.touch(*w->sem);
    w->sem->queue.erase(w->self);
    --t.waiter_total;
  }
  for (const Impl::HoldList::iterator h : ses.holds) {
    Impl::Semaphore& s = *h->sem;
    s.value += h->count;
    s.held -= h->count;
    t.held_total -= static_cast<std::uint64_t>(h->count);
    t.drop_hold(h);
    t.touch(s);
  }
  t.sessions.erase(it);
  ++change_count_;
  // The pending map and the holds are unordered: settle by name, so the
  // completions come in an order that depends on the state only, never on
  // the containers' history (a replica restored from a snapshot grants in
  // the same order as one that lived through it).
  std::sort(t.touched.begin(), t.touched.end(),
            [](const Impl::Semaphore* a, const Impl::Semaphore* b) { return a->name < b->name; });
  t.settle_touched(out);
}

void SemaphoreTable::close_all_sessions() {
  Impl& t = *impl_;
  for (auto& [id, ses] : t.sessions) {
    for (auto& [tag, w] : ses.pending) {
      if (w->has_deadline) t.deadlines.erase(w->deadline);
      t.touch(*w->sem);
      w->sem->queue.erase(w->self);
      --t.waiter_total;
    }
    ses.pending.clear();
  }
  for (auto& [id, ses] : t.sessions) {
    for (const Impl::HoldList::iterator h : ses.holds) {
      Impl::Semaphore& s = *h->sem;
      s.value += h->count;
      s.held -= h->count;
      t.held_total -= static_cast<std::uint64_t>(h->count);
      t.drop_hold(h);
      t.touch(s);
    }
  }
  t.sessions.clear();
  ++change_count_;
  Completions none;  // every queue is empty: nothing can be granted
  t.settle_touched(none);
  assert(none.empty());
}

void SemaphoreTable::hold_grants() {
  impl_->grants_held = true;
}

void SemaphoreTable::resume_grants(Completions& out) {
  Impl& t = *impl_;
  if (!t.grants_held) return;
  t.grants_held = false;
  ++change_count_;
  // settle() may erase the semaphore it settles (never while it has a
  // waiter): touch every queued one first, then settle them.
  for (auto& [name, s] : t.semaphores) {
    if (!s.queue.empty()) t.touch(s);
  }
  t.settle_touched(out);
}

bool SemaphoreTable::grants_held() const {
  return impl_->grants_held;
}

bool SemaphoreTable::is_pending(SessionId session, std::string_view tag) const {
  auto it = impl_->sessions.find(session);
  return it != impl_->sessions.end() && it->second.pending.contains(tag);
}

std::size_t SemaphoreTable::pending_count(SessionId session) const {
  auto it = impl_->sessions.find(session);
  return it == impl_->sessions.end() ? 0 : it->second.pending.size();
}

TakeResult SemaphoreTable::take(const TakeRequest& request, Completions& out) {
  (void)out;  // a take finishes no other request: it only ever takes permits
  Impl& t = *impl_;
  t.current_time = request.now;
  assert(request.count >= 1 && request.count <= protocol::kMaxCount);
  assert(request.timeout_ms >= -1);
  const auto error = [](ErrorCode code) { return TakeResult{TakeResult::Type::kError, 0, 0, code}; };
  Impl::Session& ses = t.session(request.session);
  if (!ses.pending.empty() && ses.pending.contains(request.tag)) return error(ErrorCode::kDuplicateTag);

  Impl::Semaphore* s = t.find(request.name);
  // WAIT consumes permits that only POST gives back, and POST of an
  // undefined name is NOT_FOUND; so WAIT of one is NOT_FOUND too, whether or
  // not another session happens to hold it now.
  if (request.mode == TakeMode::kWait && (s == nullptr || s->kind == SemaphoreKind::kUndefined)) {
    return error(ErrorCode::kNotFound);
  }
  if (s == nullptr) {
    if (request.count > 1) return error(ErrorCode::kTooMany);
    if (t.semaphores.size() >= t.limits.max_semaphores) return error(ErrorCode::kLimit);
    s = &t.insert(request.name, SemaphoreKind::kUndefined, 1, 1);
  }
  if (request.count > s->max) return error(ErrorCode::kTooMany);

  if (s->queue.empty() && s->value >= request.count && !t.grants_held) {
    if (!t.fence_available()) {
      TakeResult result = error(ErrorCode::kLimit);
      result.no_fence = true;
      if (s->kind == SemaphoreKind::kUndefined && s->holds.empty()) t.erase(*s);  // made just now, unused
      return result;
    }
    const std::uint64_t fence = t.grant(ses, *s, request.mode, request.count, request.now);
    if (request.mode == TakeMode::kWait && s->kind == SemaphoreKind::kCreated) t.journal_state(*s);
    return {TakeResult::Type::kGranted, fence, 0, ErrorCode::kNone};
  }
  if (request.timeout_ms == 0) {
    ++t.counters.timeouts;
    return {TakeResult::Type::kTimedOut, 0, 0, ErrorCode::kNone};
  }
  if (ses.pending.size() >= t.limits.max_pending_per_session) return error(ErrorCode::kLimit);

  Impl::Waiter& w = s->queue.emplace_back();
  w.self = std::prev(s->queue.end());
  w.session = &ses;
  w.sem = s;
  w.tag = request.tag;
  w.mode = request.mode;
  w.count = request.count;
  w.timeout_ms = request.timeout_ms;
  w.queued_at = request.now;
  w.order = ++t.last_order;
  if (request.timeout_ms > 0) {
    if (const auto deadline = deadline_after(request.now, request.timeout_ms)) {
      w.has_deadline = true;
      w.deadline = t.deadlines.emplace(*deadline, &w);
    }
  }
  ses.pending.emplace(w.tag, &w);
  ++t.waiter_total;
  ++change_count_;
  return {TakeResult::Type::kQueued, 0, s->queue.size(), ErrorCode::kNone};
}

ErrorCode SemaphoreTable::release(SessionId session, std::string_view name, std::int64_t count, std::int64_t& value,
                                  Completions& out) {
  Impl& t = *impl_;
  assert(count >= 1);
  Impl::Session& ses = t.session(session);
  Impl::Semaphore* s = t.find(name);
  if (s == nullptr) return ErrorCode::kNotHeld;  // the contract names only NOT_HELD for RELEASE
  auto hold = Impl::find_hold(ses, *s);
  if (hold == ses.holds.end() || (*hold)->count < count) return ErrorCode::kNotHeld;
  if (((*hold)->count -= count) == 0) {
    t.drop_hold(*hold);
    *hold = ses.holds.back();
    ses.holds.pop_back();
  }
  s->held -= count;
  s->value += count;
  t.held_total -= static_cast<std::uint64_t>(count);
  ++change_count_;
  value = t.settle(*s, out, false);
  return ErrorCode::kNone;
}

ErrorCode SemaphoreTable::post(std::string_view name, std::int64_t count, std::int64_t& value, Completions& out) {
  Impl& t = *impl_;
  assert(count >= 1 && count <= protocol::kMaxCount);
  Impl::Semaphore* s = t.find(name);
  // An undefined name exists only while held; it has nothing consumed to give back.
  if (s == nullptr || s->kind == SemaphoreKind::kUndefined) return ErrorCode::kNotFound;
  // Permits held through ACQUIRE are spoken for by their RELEASE.
  if (s->value + s->held + count > s->max) return ErrorCode::kOverflow;
  s->value += count;
  ++change_count_;
  value = t.settle(*s, out, true);
  return ErrorCode::kNone;
}

ErrorCode SemaphoreTable::cancel(SessionId session, std::string_view tag, Completions& out) {
  Impl& t = *impl_;
  Impl::Session& ses = t.session(session);
  auto it = ses.pending.find(tag);
  if (it == ses.pending.end()) return ErrorCode::kNotFound;
  Impl::Waiter& w = *it->second;
  Impl::Semaphore& s = *w.sem;
  out.push_back({session, t.unlink(w), Completion::Type::kCancelled, 0});
  ++t.counters.cancellations;
  t.settle(s, out, false);
  return ErrorCode::kNone;
}

ErrorCode SemaphoreTable::create(std::string_view name, std::int64_t value, std::int64_t max, bool exclusive) {
  Impl& t = *impl_;
  assert(max >= 1 && max <= protocol::kMaxCount && value >= 0 && value <= max);
  if (const Impl::Semaphore* s = t.find(name)) {
    return s->kind == SemaphoreKind::kCreated && !exclusive ? ErrorCode::kNone : ErrorCode::kExists;
  }
  if (t.semaphores.size() >= t.limits.max_semaphores) return ErrorCode::kLimit;
  t.journal_state(t.insert(name, SemaphoreKind::kCreated, value, max));
  return ErrorCode::kNone;
}

ErrorCode SemaphoreTable::remove(std::string_view name) {
  Impl& t = *impl_;
  Impl::Semaphore* s = t.find(name);
  if (s == nullptr) return ErrorCode::kNotFound;
  if (s->kind != SemaphoreKind::kCreated || s->held != 0 || !s->queue.empty()) return ErrorCode::kBusy;
  t.journal.record_delete(s->name);
  t.erase(*s);
  return ErrorCode::kNone;
}

SemaphoreInfo SemaphoreTable::get(std::string_view name) const {
  if (const Impl::Semaphore* s = impl_->find(name)) return Impl::info(*s);
  return {name, 1, 1, 0, 0, SemaphoreKind::kAbsent};
}

void SemaphoreTable::list(std::string_view prefix, const std::function<void(const SemaphoreInfo&)>& visit) const {
  list_after(prefix, {}, [&](const SemaphoreInfo& info) {
    visit(info);
    return true;
  });
}

void SemaphoreTable::list_after(std::string_view prefix, std::string_view after,
                                const std::function<bool(const SemaphoreInfo&)>& visit) const {
  const Impl::OrderedIndex& ordered = impl_->ordered;
  // Names are never empty, so an empty `after` sorts before every name.
  auto it = after < prefix ? ordered.lower_bound(prefix) : ordered.upper_bound(after);
  for (; it != ordered.end() && (*it)->name.starts_with(prefix); ++it) {
    if (!visit(Impl::info(**it))) return;
  }
}

void SemaphoreTable::for_each_created(const std::function<void(std::string_view, const CreatedState&)>& visit) const {
  for (const Impl::Semaphore* s : impl_->ordered) {
    if (s->kind == SemaphoreKind::kCreated) visit(s->name, {s->value + s->held, s->max});
  }
}

bool SemaphoreTable::holders(std::string_view name, TimePoint now,
                             const std::function<void(const HolderInfo&)>& visit) const {
  return holders_after(name, now, 0, [&](const HolderInfo& info) {
    visit(info);
    return true;
  });
}

bool SemaphoreTable::holders_after(std::string_view name, TimePoint now, std::uint64_t after,
                                   const std::function<bool(const HolderInfo&)>& visit) const {
  const Impl::Semaphore* s = impl_->find(name);
  if (s == nullptr) return false;
  // The list is in rising order (a hold is appended with the next order).
  for (const Impl::Hold& h : s->holds) {
    if (h.order <= after) continue;
    if (!visit({h.session->id, h.count, h.fence, elapsed_ms(h.since, now), h.order})) break;
  }
  return true;
}

bool SemaphoreTable::waiters(std::string_view name, TimePoint now,
                             const std::function<void(const WaiterInfo&)>& visit) const {
  return waiters_after(name, now, 0, [&](const WaiterInfo& info) {
    visit(info);
    return true;
  });
}

bool SemaphoreTable::waiters_after(std::string_view name, TimePoint now, std::uint64_t after,
                                   const std::function<bool(const WaiterInfo&)>& visit) const {
  const Impl::Semaphore* s = impl_->find(name);
  if (s == nullptr) return false;
  // Queue order is rising order: a request is appended with the next order.
  for (const Impl::Waiter& w : s->queue) {
    if (w.order <= after) continue;
    const std::int64_t waited = elapsed_ms(w.queued_at, now);
    const std::int64_t left = w.timeout_ms < 0 ? -1 : std::max<std::int64_t>(w.timeout_ms - waited, 0);
    if (!visit({w.session->id, w.count, w.mode, waited, left, w.order})) break;
  }
  return true;
}

SessionLoad SemaphoreTable::session_load(SessionId session) const {
  auto it = impl_->sessions.find(session);
  if (it == impl_->sessions.end()) return {};
  SessionLoad load;
  for (const Impl::HoldList::iterator h : it->second.holds) load.permits_held += h->count;
  load.pending = it->second.pending.size();
  return load;
}

void SemaphoreTable::session_items(SessionId session, const std::function<void(const SessionHolding&)>& held,
                                   const std::function<void(const SessionWaiting&)>& queued) const {
  auto it = impl_->sessions.find(session);
  if (it == impl_->sessions.end()) return;
  std::vector<SessionHolding> holdings;
  holdings.reserve(it->second.holds.size());
  for (const Impl::HoldList::iterator h : it->second.holds) holdings.push_back({h->sem->name, h->count, h->fence});
  std::sort(holdings.begin(), holdings.end(),
            [](const SessionHolding& a, const SessionHolding& b) { return a.name < b.name; });
  for (const SessionHolding& h : holdings) held(h);
  std::vector<SessionWaiting> waiting;
  waiting.reserve(it->second.pending.size());
  for (const auto& [tag, w] : it->second.pending) waiting.push_back({w->tag, w->sem->name, w->count, w->mode});
  std::sort(waiting.begin(), waiting.end(),
            [](const SessionWaiting& a, const SessionWaiting& b) { return a.tag < b.tag; });
  for (const SessionWaiting& w : waiting) queued(w);
}

const stats::TableCounters& SemaphoreTable::counters() const {
  return impl_->counters;
}

void SemaphoreTable::set_slow_wait(std::chrono::microseconds threshold) {
  impl_->slow_wait_us = threshold.count() <= 0 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(threshold.count());
}

TableStats SemaphoreTable::stats() const {
  const Impl& t = *impl_;
  return {t.sessions.size(),
          t.semaphores.size(),
          t.held_total,
          t.waiter_total,
          t.counters.grants,
          t.last_fence,
          t.kind_counts[static_cast<std::size_t>(SemaphoreKind::kDefined)],
          t.kind_counts[static_cast<std::size_t>(SemaphoreKind::kUndefined)],
          t.kind_counts[static_cast<std::size_t>(SemaphoreKind::kCreated)]};
}

void SemaphoreTable::expire(TimePoint now, Completions& out) {
  Impl& t = *impl_;
  t.current_time = now;
  // Every expired request leaves before anyone is granted: a request whose
  // deadline has passed must not be granted by another one timing out.
  while (!t.deadlines.empty() && t.deadlines.begin()->first <= now) {
    Impl::Waiter& w = *t.deadlines.begin()->second;
    t.touch(*w.sem);
    const SessionId session = w.session->id;
    out.push_back({session, t.unlink(w), Completion::Type::kTimedOut, 0});
    ++t.counters.timeouts;
  }
  t.settle_touched(out);
}

std::optional<TimePoint> SemaphoreTable::next_deadline() const {
  if (impl_->deadlines.empty()) return std::nullopt;
  return impl_->deadlines.begin()->first;
}

// --- whole state ---

TableImage SemaphoreTable::export_image() const {
  const Impl& t = *impl_;
  TableImage image;
  image.sessions.reserve(t.sessions.size());
  for (const auto& [id, ses] : t.sessions) image.sessions.push_back(id);
  std::sort(image.sessions.begin(), image.sessions.end());
  image.semaphores.reserve(t.ordered.size());
  for (const Impl::Semaphore* s : t.ordered) {
    TableImage::Semaphore& out = image.semaphores.emplace_back();
    out.name.assign(s->name);
    out.kind = s->kind;
    out.value = s->value;
    out.max = s->max;
    out.grants = s->grants;
    out.holders.reserve(s->holds.size());
    for (const Impl::Hold& h : s->holds) out.holders.push_back({h.session->id, h.count, h.fence, h.since, h.order});
    out.queue.reserve(s->queue.size());
    for (const Impl::Waiter& w : s->queue) {
      out.queue.push_back({w.session->id, w.tag, w.mode, w.count, w.timeout_ms, w.queued_at, w.order});
    }
  }
  image.last_fence = t.last_fence;
  image.last_order = t.last_order;
  image.time = t.current_time;
  image.grants_held = t.grants_held;
  return image;
}

namespace {

// Why `image` cannot be a table's state, or "" when it can.
std::string image_fault(const TableImage& image) {
  using std::to_string;
  for (std::size_t i = 1; i < image.sessions.size(); ++i) {
    if (image.sessions[i - 1] >= image.sessions[i]) return "sessions not in rising order";
  }
  const auto open = [&](SessionId id) { return std::binary_search(image.sessions.begin(), image.sessions.end(), id); };
  std::vector<std::uint64_t> orders;
  // Tags queued per session, to find duplicates.
  std::vector<std::pair<SessionId, std::string_view>> tags;
  const std::string* previous = nullptr;
  for (const TableImage::Semaphore& s : image.semaphores) {
    const std::string where = "semaphore " + protocol::encode_name_for_request(s.name) + ": ";
    if (protocol::check_name(s.name) != protocol::ErrorCode::kNone) return where + "invalid name";
    if (previous != nullptr && !(*previous < s.name)) return where + "names not in byte order";
    previous = &s.name;
    if (s.kind != SemaphoreKind::kDefined && s.kind != SemaphoreKind::kUndefined && s.kind != SemaphoreKind::kCreated) {
      return where + "unknown kind";
    }
    if (s.max < 1 || s.max > protocol::kMaxCount) return where + "max out of range";
    std::int64_t held = 0;
    std::vector<SessionId> holders;
    std::uint64_t last = 0;
    for (const TableImage::Holder& h : s.holders) {
      if (!open(h.session)) return where + "holder of a session not open";
      if (h.count < 1 || h.count > protocol::kMaxCount) return where + "holder count out of range";
      if (h.fence == 0 || h.fence > image.last_fence) return where + "holder fence above last_fence";
      if (h.order <= last || h.order > image.last_order) return where + "holder order out of range";
      last = h.order;
      held += h.count;
      if (held > protocol::kMaxCount) return where + "more permits held than any max";
      holders.push_back(h.session);
      orders.push_back(h.order);
    }
    std::sort(holders.begin(), holders.end());
    if (std::adjacent_find(holders.begin(), holders.end()) != holders.end()) return where + "a session holds twice";
    // value + held is max less the permits WAIT consumed: at most max; a
    // reload may have lowered max below what was consumed, by at most a max.
    if (s.value > s.max - held || s.value < -2 * protocol::kMaxCount) return where + "value out of range";
    if (s.kind == SemaphoreKind::kCreated && s.value + held < 0) return where + "created value out of range";
    if (s.kind == SemaphoreKind::kUndefined) {
      if (s.max != 1 || s.value != s.max - held) return where + "undefined with consumed permits";
      if (s.holders.empty() && s.queue.empty()) return where + "undefined and idle";
    }
    last = 0;
    for (const TableImage::Waiter& w : s.queue) {
      if (!open(w.session)) return where + "waiter of a session not open";
      if (!protocol::is_valid_tag(w.tag)) return where + "invalid waiter tag";
      if (w.mode != TakeMode::kAcquire && w.mode != TakeMode::kWait) return where + "unknown waiter mode";
      if (w.mode == TakeMode::kWait && s.kind == SemaphoreKind::kUndefined) return where + "WAIT of an undefined name";
      if (w.count < 1 || w.count > s.max) return where + "waiter count out of range";
      if (w.timeout_ms < -1 || w.timeout_ms == 0) return where + "waiter timeout out of range";
      if (w.order <= last || w.order > image.last_order) return where + "waiter order out of range";
      last = w.order;
      orders.push_back(w.order);
      tags.emplace_back(w.session, w.tag);
    }
    if (!image.grants_held && !s.queue.empty() && s.queue.front().count <= s.value) {
      return where + "the head of the queue fits";
    }
  }
  std::sort(orders.begin(), orders.end());
  if (std::adjacent_find(orders.begin(), orders.end()) != orders.end()) return "an order used twice";
  std::sort(tags.begin(), tags.end());
  if (std::adjacent_find(tags.begin(), tags.end()) != tags.end()) return "a tag queued twice by one session";
  return {};
}

}  // namespace

Status SemaphoreTable::import_image(const TableImage& image) {
  Impl& t = *impl_;
  if (!t.sessions.empty() || !t.semaphores.empty()) {
    return {StatusCode::kInvalidArgument, "import_image needs an empty table"};
  }
  if (std::string fault = image_fault(image); !fault.empty()) {
    return {StatusCode::kCorruption, "table image: " + fault};
  }
  for (const SessionId id : image.sessions) open_session(id);
  struct Queued {
    Impl::Semaphore* sem;
    const TableImage::Waiter* waiter;
  };
  std::vector<Queued> queued;
  for (const TableImage::Semaphore& in : image.semaphores) {
    Impl::Semaphore& s = t.insert(in.name, in.kind, in.value, in.max);
    s.grants = in.grants;
    for (const TableImage::Holder& h : in.holders) {
      Impl::Session& ses = t.session(h.session);
      s.holds.push_back({&ses, &s, h.count, h.fence, h.since, h.order});
      ses.holds.push_back(std::prev(s.holds.end()));
      s.held += h.count;
      t.held_total += static_cast<std::uint64_t>(h.count);
    }
    for (const TableImage::Waiter& w : in.queue) queued.push_back({&s, &w});
  }
  // In the order they queued: that is the order of equal deadlines in the
  // index (expire() times them out in it), as in the table exported.
  std::sort(queued.begin(), queued.end(),
            [](const Queued& a, const Queued& b) { return a.waiter->order < b.waiter->order; });
  for (const Queued& q : queued) {
    const TableImage::Waiter& in = *q.waiter;
    Impl::Session& ses = t.session(in.session);
    Impl::Waiter& w = q.sem->queue.emplace_back();
    w.self = std::prev(q.sem->queue.end());
    w.session = &ses;
    w.sem = q.sem;
    w.tag = in.tag;
    w.mode = in.mode;
    w.count = in.count;
    w.timeout_ms = in.timeout_ms;
    w.queued_at = in.queued_at;
    w.order = in.order;
    if (in.timeout_ms > 0) {
      if (const auto deadline = deadline_after(in.queued_at, in.timeout_ms)) {
        w.has_deadline = true;
        w.deadline = t.deadlines.emplace(*deadline, &w);
      }
    }
    ses.pending.emplace(w.tag, &w);
    ++t.waiter_total;
  }
  set_fence_floor(image.last_fence);
  t.last_order = image.last_order;
  t.current_time = image.time;
  t.grants_held = image.grants_held;
  ++change_count_;
  return Status::ok();
}

}  // namespace netsem::server
