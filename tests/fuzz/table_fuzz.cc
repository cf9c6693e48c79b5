// libFuzzer target for SemaphoreTable: the input bytes become a sequence of
// operations (sessions opening and closing, ACQUIRE/WAIT with counts and
// timeouts, RELEASE, POST, CANCEL, CREATE, DELETE, time passing, reloads) on
// a few names and sessions. A shadow model, written the slow obvious way
// (vectors and linear scans, straight from the contract), runs the same
// operations; after every step the table must agree with it: every answer,
// the completions per name in order (each for a request that was queued,
// delivered once), what get/list/stats/pending show, the holders of each
// name (in the order they became holders, with counts, latest fences and
// held times) and its waiters (in queue order, with waited and remaining
// times), each session's load, the next deadline, and the journal's created
// state. The table's clock is the fuzzer's, so held times are exact. Fences must rise strictly and stay within what
// was reserved from the journal. At the end, independently of the model:
// once every session has closed and a reload has dropped every defined name,
// no undefined semaphore is left (one would be a name no verb can free).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "journal/journal.h"
#include "protocol/codec.h"
#include "table/semaphore_table.h"

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

namespace {

using namespace netsem::server;
using netsem::protocol::ErrorCode;
using netsem::protocol::kMaxCount;

// Names of several lengths, so that recycled map nodes change key size.
const std::string kNames[] = {"a", "bb", "a-rather-longer-name-that-is-not-in-sso", "d"};
constexpr SessionId kSessions = 4;  // ids 1 .. kSessions
const std::string kTags[] = {"t0", "t1", "t2"};

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::size_t pick(std::size_t n) { return byte() % n; }
  // Mostly small; sometimes the largest count the protocol allows.
  std::int64_t count() {
    const std::uint8_t b = byte();
    return b >= 0xF8 ? kMaxCount : 1 + b % 4;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

using Event = std::tuple<SessionId, std::string, Completion::Type>;
using EventsByName = std::map<std::string, std::vector<Event>>;

// The contract, executed naively. Time in nanoseconds since TimePoint{}.
struct Model {
  struct Waiter {
    SessionId session;
    std::string tag;
    TakeMode mode;
    std::int64_t count;
    bool has_deadline;
    std::int64_t deadline;
    std::uint64_t seq;
    std::int64_t queued_at;
    std::int64_t timeout_ms;
  };
  // A session holding permits of a name; its count is in `sessions`.
  struct Holder {
    SessionId session;
    std::int64_t since;       // the grant that made it a holder
    std::uint64_t fence = 0;  // the latest grant's, filled in from the table's answers
  };
  struct Sem {
    SemaphoreKind kind;
    std::int64_t value;
    std::int64_t max;
    std::int64_t consumed = 0;  // taken by WAIT, not yet POSTed back
    std::vector<Waiter> queue;
  };
  static Sem fresh(SemaphoreKind kind, std::int64_t value, std::int64_t max) {
    return Sem{kind, value, max, max - value, {}};
  }

  TableLimits limits;
  std::map<std::string, Sem> sems;
  std::map<SessionId, std::map<std::string, std::int64_t>> sessions;  // open sessions' holds
  std::map<std::string, std::vector<Holder>> holder_rows;             // in the order they became holders
  EventsByName events;                                                // this step's completions
  std::uint64_t seq = 0;
  std::int64_t now = 0;  // the clock during this step

  void hold(SessionId session, const std::string& name, std::int64_t count) {
    std::int64_t& held = sessions.at(session)[name];
    if (held == 0) holder_rows[name].push_back({session, now});
    held += count;
  }
  void unhold(SessionId session, const std::string& name) {
    std::erase_if(holder_rows[name], [&](const Holder& h) { return h.session == session; });
  }
  Holder& holder(SessionId session, const std::string& name) {
    auto& rows = holder_rows.at(name);
    return *std::find_if(rows.begin(), rows.end(), [&](const Holder& h) { return h.session == session; });
  }

  std::int64_t held(const std::string& name) const {
    std::int64_t sum = 0;
    for (const auto& [id, holds] : sessions) {
      auto it = holds.find(name);
      if (it != holds.end()) sum += it->second;
    }
    return sum;
  }
  std::uint64_t holders(const std::string& name) const {
    std::uint64_t n = 0;
    for (const auto& [id, holds] : sessions) n += holds.count(name);
    return n;
  }
  std::size_t pending(SessionId session) const {
    std::size_t n = 0;
    for (const auto& [name, s] : sems) {
      for (const Waiter& w : s.queue) n += w.session == session;
    }
    return n;
  }
  const std::string* queued_on(SessionId session, const std::string& tag) const {
    for (const auto& [name, s] : sems) {
      for (const Waiter& w : s.queue) {
        if (w.session == session && w.tag == tag) return &name;
      }
    }
    return nullptr;
  }

  // Grants from the head while it fits.
  void grant_all(const std::string& name) {
    Sem& s = sems.at(name);
    while (!s.queue.empty() && s.queue.front().count <= s.value) {
      const Waiter w = s.queue.front();
      s.queue.erase(s.queue.begin());
      s.value -= w.count;
      if (w.mode == TakeMode::kAcquire) {
        hold(w.session, name, w.count);
      } else {
        s.consumed += w.count;
      }
      events[name].emplace_back(w.session, w.tag, Completion::Type::kGranted);
    }
  }
  // Idle: no holders and no waiters (an undefined semaphore has nothing
  // consumed: WAIT and POST of it are NOT_FOUND).
  void drop_if_idle(const std::string& name) {
    const Sem& s = sems.at(name);
    if (s.kind == SemaphoreKind::kUndefined && holders(name) == 0 && s.queue.empty()) sems.erase(name);
  }
  void settle(const std::string& name) {
    grant_all(name);
    drop_if_idle(name);
  }
  // RELEASE and POST answer the value after the grants, before an idle
  // undefined semaphore goes.
  void settle_and_report(const std::string& name, std::int64_t& value) {
    grant_all(name);
    value = std::max<std::int64_t>(sems.at(name).value, 0);
    drop_if_idle(name);
  }

  TakeResult take(SessionId session, const std::string& tag, const std::string& name, TakeMode mode, std::int64_t count,
                  std::int64_t timeout_ms, std::int64_t now) {
    const auto error = [](ErrorCode code) {
      TakeResult r;
      r.error = code;
      return r;
    };
    if (queued_on(session, tag) != nullptr) return error(ErrorCode::kDuplicateTag);
    if (mode == TakeMode::kWait && (!sems.contains(name) || sems.at(name).kind == SemaphoreKind::kUndefined)) {
      return error(ErrorCode::kNotFound);
    }
    if (!sems.contains(name)) {
      if (count > 1) return error(ErrorCode::kTooMany);
      if (sems.size() >= limits.max_semaphores) return error(ErrorCode::kLimit);
      sems[name] = fresh(SemaphoreKind::kUndefined, 1, 1);
    }
    Sem& s = sems.at(name);
    if (count > s.max) return error(ErrorCode::kTooMany);
    TakeResult r;
    if (s.queue.empty() && s.value >= count) {
      s.value -= count;
      if (mode == TakeMode::kAcquire) {
        hold(session, name, count);
      } else {
        s.consumed += count;
      }
      r.type = TakeResult::Type::kGranted;
      return r;
    }
    if (timeout_ms == 0) {
      r.type = TakeResult::Type::kTimedOut;
      return r;
    }
    if (pending(session) >= limits.max_pending_per_session) return error(ErrorCode::kLimit);
    Waiter w{session, tag, mode, count, false, 0, seq++, now, timeout_ms};
    std::int64_t span = 0;
    if (timeout_ms > 0 && !__builtin_mul_overflow(timeout_ms, std::int64_t{1'000'000}, &span) &&
        !__builtin_add_overflow(now, span, &w.deadline)) {
      w.has_deadline = true;
    }
    s.queue.push_back(w);
    r.type = TakeResult::Type::kQueued;
    r.position = s.queue.size();
    return r;
  }

  ErrorCode release(SessionId session, const std::string& name, std::int64_t count, std::int64_t& value) {
    if (!sems.contains(name)) return ErrorCode::kNotHeld;
    auto& holds = sessions.at(session);
    auto it = holds.find(name);
    if (it == holds.end() || it->second < count) return ErrorCode::kNotHeld;
    if ((it->second -= count) == 0) {
      holds.erase(it);
      unhold(session, name);
    }
    Sem& s = sems.at(name);
    s.value += count;
    settle_and_report(name, value);
    return ErrorCode::kNone;
  }

  ErrorCode post(const std::string& name, std::int64_t count, std::int64_t& value) {
    if (!sems.contains(name) || sems.at(name).kind == SemaphoreKind::kUndefined) return ErrorCode::kNotFound;
    Sem& s = sems.at(name);
    if (s.value + held(name) + count > s.max) return ErrorCode::kOverflow;
    s.value += count;
    s.consumed -= count;
    settle_and_report(name, value);
    return ErrorCode::kNone;
  }

  ErrorCode cancel(SessionId session, const std::string& tag) {
    const std::string* name = queued_on(session, tag);
    if (name == nullptr) return ErrorCode::kNotFound;
    const std::string n = *name;
    auto& q = sems.at(n).queue;
    q.erase(std::find_if(q.begin(), q.end(), [&](const Waiter& w) { return w.session == session && w.tag == tag; }));
    events[n].emplace_back(session, tag, Completion::Type::kCancelled);
    settle(n);
    return ErrorCode::kNone;
  }

  ErrorCode create(const std::string& name, std::int64_t value, std::int64_t max, bool exclusive) {
    auto it = sems.find(name);
    if (it != sems.end()) {
      return it->second.kind == SemaphoreKind::kCreated && !exclusive ? ErrorCode::kNone : ErrorCode::kExists;
    }
    if (sems.size() >= limits.max_semaphores) return ErrorCode::kLimit;
    sems[name] = fresh(SemaphoreKind::kCreated, value, max);
    return ErrorCode::kNone;
  }

  ErrorCode remove(const std::string& name) {
    auto it = sems.find(name);
    if (it == sems.end()) return ErrorCode::kNotFound;
    if (it->second.kind != SemaphoreKind::kCreated || held(name) > 0 || !it->second.queue.empty()) {
      return ErrorCode::kBusy;
    }
    sems.erase(it);
    return ErrorCode::kNone;
  }

  void close(SessionId session) {
    std::set<std::string> touched;
    for (auto& [name, s] : sems) {
      const auto before = s.queue.size();
      std::erase_if(s.queue, [&](const Waiter& w) { return w.session == session; });
      if (s.queue.size() != before) touched.insert(name);
    }
    for (const auto& [name, count] : sessions.at(session)) {
      sems.at(name).value += count;
      unhold(session, name);
      touched.insert(name);
    }
    sessions.erase(session);
    for (const std::string& name : touched) settle(name);
  }

  void expire(std::int64_t now) {
    std::vector<std::tuple<std::int64_t, std::uint64_t, std::string>> due;
    for (const auto& [name, s] : sems) {
      for (const Waiter& w : s.queue) {
        if (w.has_deadline && w.deadline <= now) due.emplace_back(w.deadline, w.seq, name);
      }
    }
    std::sort(due.begin(), due.end());
    std::set<std::string> touched;
    for (const auto& [deadline, id, name] : due) {
      auto& q = sems.at(name).queue;
      auto it = std::find_if(q.begin(), q.end(), [&, id = id](const Waiter& w) { return w.seq == id; });
      events[name].emplace_back(it->session, it->tag, Completion::Type::kTimedOut);
      q.erase(it);
      touched.insert(name);
    }
    for (const std::string& name : touched) settle(name);
  }

  // `limits` in the order given; a name listed twice takes its last limit,
  // and created names are reported in the order they are first listed.
  std::vector<std::string> configure(const std::vector<std::pair<std::string, std::int64_t>>& limits) {
    std::map<std::string, std::int64_t> wanted;
    for (const auto& [name, limit] : limits) wanted[name] = limit;
    std::vector<std::string> created;
    std::set<std::string> touched;
    // A name turning undefined forgets its consumed permits (only POST could
    // give them back) and refuses its queued WAITs, as WAIT of it is refused.
    const auto resize = [&](const std::string& name, std::int64_t max) {
      Sem& s = sems.at(name);
      const bool undefined = s.kind == SemaphoreKind::kUndefined;
      if (undefined) s.consumed = 0;
      s.value = max - held(name) - s.consumed;
      s.max = max;
      const auto refused = [&](const Waiter& w) { return w.count > max || (undefined && w.mode == TakeMode::kWait); };
      for (const Waiter& w : s.queue) {
        if (w.count > max) {
          events[name].emplace_back(w.session, w.tag, Completion::Type::kTooMany);
        } else if (refused(w)) {
          events[name].emplace_back(w.session, w.tag, Completion::Type::kNotFound);
        }
      }
      std::erase_if(s.queue, refused);
      touched.insert(name);
    };
    for (const auto& [name, limit] : wanted) {
      auto it = sems.find(name);
      if (it == sems.end()) {
        sems[name] = fresh(SemaphoreKind::kDefined, limit, limit);
      } else if (it->second.kind == SemaphoreKind::kCreated) {
        // Reported below, in the order listed.
      } else {
        it->second.kind = SemaphoreKind::kDefined;
        resize(name, limit);
      }
    }
    for (auto& [name, s] : sems) {
      if (s.kind == SemaphoreKind::kDefined && !wanted.contains(name)) {
        s.kind = SemaphoreKind::kUndefined;
        resize(name, 1);
      }
    }
    for (const std::string& name : touched) settle(name);
    for (const auto& [name, limit] : limits) {
      if (sems.contains(name) && sems.at(name).kind == SemaphoreKind::kCreated &&
          std::find(created.begin(), created.end(), name) == created.end()) {
        created.push_back(name);
      }
    }
    return created;
  }
};

class Harness {
 public:
  Harness(Input& in, TableLimits limits)
      : table_(journal_, limits) {  // its time is now_ns_: set by expire() and take() as it moves
    model_.limits = limits;
    // Start-up as the server does it: journal recovery, then configuration.
    const std::uint64_t floor = in.byte() * 1000ull;
    journal_.reserve_fences(floor);  // what an earlier run reserved
    table_.set_fence_floor(floor);
    last_fence_ = floor;
    for (const std::string& name : kNames) {
      if (in.pick(4) != 0) continue;
      const std::int64_t max = in.count();
      const std::int64_t value = std::min<std::int64_t>(max, in.byte() % 5);
      journal_.record_set(name, {value, max});
      CHECK(table_.restore_created(name, {value, max}));
      model_.sems[name] = Model::fresh(SemaphoreKind::kCreated, value, max);
    }
    configure(in);
    for (SessionId s = 1; s <= kSessions; ++s) {
      table_.open_session(s);
      model_.sessions[s];
    }
    check_state();
  }

  void step(Input& in) {
    begin_step();

    const SessionId session = 1 + in.pick(kSessions);
    const std::string& name = kNames[in.pick(std::size(kNames))];
    const std::string& tag = kTags[in.pick(std::size(kTags))];
    const bool open = model_.sessions.contains(session);
    switch (in.pick(11)) {
      case 0:
      case 1:
        if (open) {
          table_.close_session(session, out_);
          model_.close(session);
        } else {
          table_.open_session(session);
          model_.sessions[session];
        }
        break;
      case 2:
      case 3:
      case 4:
        if (open) take(in, session, tag, name);
        break;
      case 5:
        if (open) {
          const std::int64_t count = in.count();
          std::int64_t got = -1, want = -1;
          CHECK(table_.release(session, name, count, got, out_) == model_.release(session, name, count, want));
          CHECK(got == want);
        }
        break;
      case 6: {
        const std::int64_t count = in.count();
        std::int64_t got = -1, want = -1;
        CHECK(table_.post(name, count, got, out_) == model_.post(name, count, want));
        CHECK(got == want);
        break;
      }
      case 7:
        if (open) CHECK(table_.cancel(session, tag, out_) == model_.cancel(session, tag));
        break;
      case 8: {
        const std::int64_t max = in.count();
        const std::int64_t value = in.pick(2) != 0 ? max : std::min<std::int64_t>(max, in.byte() % 4);
        const bool exclusive = in.pick(2) != 0;
        CHECK(table_.create(name, value, max, exclusive) == model_.create(name, value, max, exclusive));
        break;
      }
      case 9:
        CHECK(table_.remove(name) == model_.remove(name));
        break;
      case 10:
        if (in.pick(4) == 0) {
          configure(in);
        } else {
          // Sometimes not whole milliseconds: held and waited times are
          // truncated to them.
          now_ns_ += static_cast<std::int64_t>(in.byte()) * (in.pick(2) != 0 ? 1'000'000 : 333'333);
          model_.now = now_ns_;
          table_.expire(TimePoint(TimePoint::duration(now_ns_)), out_);
          model_.expire(now_ns_);
        }
        break;
    }
    check_completions();
    check_state();
  }

  // Every session closes and a reload drops every defined name: whatever
  // came before, no undefined semaphore may remain.
  void finish() {
    begin_step();
    for (SessionId session = 1; session <= kSessions; ++session) {
      if (!model_.sessions.contains(session)) continue;
      table_.close_session(session, out_);
      model_.close(session);
    }
    CHECK(table_.configure_defined({}, out_) == model_.configure({}));
    check_completions();
    check_state();
    table_.list("", [](const SemaphoreInfo& i) { CHECK(i.kind == SemaphoreKind::kCreated); });
    CHECK(table_.stats().held == 0 && table_.stats().waiters == 0);
  }

 private:
  // Notes what is queued before the step, whose completions it checks.
  void begin_step() {
    pending_before_.clear();
    pending_modes_.clear();
    for (const auto& [name, s] : model_.sems) {
      for (const Model::Waiter& w : s.queue) {
        pending_before_[{w.session, w.tag}] = name;
        pending_modes_[{w.session, w.tag}] = w.mode;
      }
    }
    model_.now = now_ns_;
    model_.events.clear();
    out_.clear();
  }

  void take(Input& in, SessionId session, const std::string& tag, const std::string& name) {
    TakeRequest r;
    r.session = session;
    r.tag = tag;
    r.name = name;
    r.mode = in.pick(3) == 0 ? TakeMode::kWait : TakeMode::kAcquire;
    r.count = in.count();
    const std::int64_t room_ms = (INT64_MAX - now_ns_) / 1'000'000;
    switch (in.pick(8)) {
      case 0:
        r.timeout_ms = 0;
        break;
      case 1:
        r.timeout_ms = -1;
        break;
      case 2:
        r.timeout_ms = INT64_MAX;
        break;
      case 3:
        r.timeout_ms = room_ms + in.pick(2);
        break;  // the clock's edge
      default:
        r.timeout_ms = 1 + in.byte() % 32;
        break;  // short: several expire together
    }
    r.now = TimePoint(TimePoint::duration(now_ns_));
    const TakeResult got = table_.take(r, out_);
    const TakeResult want = model_.take(session, tag, name, r.mode, r.count, r.timeout_ms, now_ns_);
    CHECK(got.type == want.type);
    CHECK(got.error == want.error);
    CHECK(got.position == want.position);
    if (got.type == TakeResult::Type::kGranted) {
      check_fence(got.fence);
      if (r.mode == TakeMode::kAcquire) model_.holder(session, name).fence = got.fence;
    }
  }

  void configure(Input& in) {
    std::vector<std::pair<std::string, std::int64_t>> limits;
    for (std::size_t n = in.pick(6); n > 0; --n) {
      const std::string& name = kNames[in.pick(std::size(kNames))];
      limits.emplace_back(name, in.count());
    }
    CHECK(table_.configure_defined(limits, out_) == model_.configure(limits));
  }

  void check_fence(std::uint64_t fence) {
    CHECK(fence > last_fence_);
    CHECK(fence <= journal_.reserved_fences());
    last_fence_ = fence;
  }

  void check_completions() {
    EventsByName got;
    for (const Completion& c : out_) {
      auto it = pending_before_.find({c.session, c.tag});
      CHECK(it != pending_before_.end());  // queued before, and not yet delivered
      got[it->second].emplace_back(c.session, c.tag, c.type);
      if (c.type == Completion::Type::kGranted) {
        check_fence(c.fence);
        // Fences rise, so the last grant of a name to a session is its latest.
        if (pending_modes_.at(it->first) == TakeMode::kAcquire) model_.holder(c.session, it->second).fence = c.fence;
      }
      pending_before_.erase(it);
    }
    std::erase_if(model_.events, [](const auto& e) { return e.second.empty(); });
    CHECK(got == model_.events);
  }

  void check_state() {
    const TimePoint now{TimePoint::duration(now_ns_)};
    std::uint64_t held = 0, waiters = 0;
    std::array<std::uint64_t, 3> kinds{};  // by SemaphoreKind, absent excluded
    std::map<std::string, CreatedState> created;
    std::vector<std::string> names;
    std::optional<std::int64_t> next;
    for (const auto& [name, s] : model_.sems) {
      const std::int64_t h = model_.held(name);
      held += static_cast<std::uint64_t>(h);
      waiters += s.queue.size();
      names.push_back(name);
      // Permits are free, held or consumed; only a lowered reload makes value negative.
      CHECK(s.value + h + s.consumed == s.max);
      CHECK(s.value <= s.max && s.consumed >= 0);
      if (s.kind == SemaphoreKind::kCreated) created[name] = {s.value + h, s.max};
      const SemaphoreInfo info = table_.get(name);
      CHECK(info.name == name);
      CHECK(info.kind == s.kind);
      CHECK(info.value == std::max<std::int64_t>(s.value, 0));
      CHECK(info.max == s.max);
      CHECK(info.holders == model_.holders(name));
      CHECK(info.waiters == s.queue.size());
      CHECK(info.held == h);
      ++kinds[static_cast<std::size_t>(s.kind)];
      for (const Model::Waiter& w : s.queue) {
        if (w.has_deadline && (!next || w.deadline < *next)) next = w.deadline;
      }
    }
    for (const std::string& name : kNames) {
      if (!model_.sems.contains(name)) {
        CHECK(table_.get(name).kind == SemaphoreKind::kAbsent);
        CHECK(!table_.holders(name, now, [](const HolderInfo&) { CHECK(false); }));
        CHECK(!table_.waiters(name, now, [](const WaiterInfo&) { CHECK(false); }));
      } else {
        check_holders_and_waiters(name, model_.sems.at(name));
      }
    }
    std::vector<std::string> listed;
    table_.list("", [&](const SemaphoreInfo& i) { listed.emplace_back(i.name); });
    CHECK(listed == names);  // std::map order is byte order too
    CHECK(journal_.created() == created);
    std::map<std::string, CreatedState> visited;
    table_.for_each_created([&](std::string_view n, const CreatedState& c) { visited[std::string(n)] = c; });
    CHECK(visited == created);

    const TableStats stats = table_.stats();
    CHECK(stats.sessions == model_.sessions.size());
    CHECK(stats.semaphores == model_.sems.size());
    CHECK(stats.held == held);
    CHECK(stats.waiters == waiters);
    CHECK(stats.last_fence == last_fence_);
    CHECK(stats.defined == kinds[static_cast<std::size_t>(SemaphoreKind::kDefined)]);
    CHECK(stats.undefined == kinds[static_cast<std::size_t>(SemaphoreKind::kUndefined)]);
    CHECK(stats.created == kinds[static_cast<std::size_t>(SemaphoreKind::kCreated)]);
    CHECK(journal_.reserved_fences() >= stats.last_fence);

    const std::optional<TimePoint> deadline = table_.next_deadline();
    CHECK(deadline.has_value() == next.has_value());
    if (next) CHECK(deadline->time_since_epoch().count() == *next);
    for (const auto& [session, holds] : model_.sessions) {
      CHECK(table_.pending_count(session) == model_.pending(session));
      std::int64_t permits = 0;
      for (const auto& [name, count] : holds) permits += count;
      const SessionLoad load = table_.session_load(session);
      CHECK(load.permits_held == permits);
      CHECK(load.pending == model_.pending(session));
      for (const std::string& tag : kTags) {
        CHECK(table_.is_pending(session, tag) == (model_.queued_on(session, tag) != nullptr));
      }
    }
  }

  // HOLDERS and WAITERS of `name` as the model has them, times counted to now.
  void check_holders_and_waiters(const std::string& name, const Model::Sem& s) {
    const TimePoint now{TimePoint::duration(now_ns_)};
    using Row = std::tuple<SessionId, std::int64_t, std::uint64_t, std::int64_t>;
    std::vector<Row> got, want;
    std::uint64_t order = 0;
    CHECK(table_.holders(name, now, [&](const HolderInfo& i) {
      CHECK(i.order > order);
      order = i.order;
      got.emplace_back(i.session, i.count, i.fence, i.held_ms);
    }));
    if (auto rows = model_.holder_rows.find(name); rows != model_.holder_rows.end()) {
      for (const Model::Holder& h : rows->second) {
        want.emplace_back(h.session, model_.sessions.at(h.session).at(name), h.fence, (now_ns_ - h.since) / 1'000'000);
      }
    }
    CHECK(got == want);
    using WaiterRow = std::tuple<SessionId, std::int64_t, TakeMode, std::int64_t, std::int64_t>;
    std::vector<WaiterRow> got_waiters, want_waiters;
    order = 0;
    CHECK(table_.waiters(name, now, [&](const WaiterInfo& i) {
      CHECK(i.order > order);
      order = i.order;
      got_waiters.emplace_back(i.session, i.count, i.mode, i.waited_ms, i.timeout_ms_left);
    }));
    for (const Model::Waiter& w : s.queue) {
      const std::int64_t waited = (now_ns_ - w.queued_at) / 1'000'000;
      want_waiters.emplace_back(w.session, w.count, w.mode, waited,
                                w.timeout_ms < 0 ? -1 : std::max<std::int64_t>(w.timeout_ms - waited, 0));
    }
    CHECK(got_waiters == want_waiters);
  }

  MemoryJournal journal_;
  SemaphoreTable table_;
  Model model_;
  Completions out_;
  std::map<std::pair<SessionId, std::string>, std::string> pending_before_;
  std::map<std::pair<SessionId, std::string>, TakeMode> pending_modes_;
  std::int64_t now_ns_ = 0;
  std::uint64_t last_fence_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  TableLimits limits;
  limits.max_semaphores = 1 + in.pick(5);
  limits.max_pending_per_session = in.pick(4);
  Harness harness(in, limits);
  while (!in.empty()) harness.step(in);
  harness.finish();
  return 0;
}
