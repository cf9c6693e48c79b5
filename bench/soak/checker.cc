// The soak's checker (checker.h): client intervals from worker events, their
// attribution to server instances, the sweep that counts permits held at
// once, the fence checks, and the two small checks of quiescent points and
// created semaphores.
#include "checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

namespace netsem::soak {

namespace {

struct Instance {
  Nanos start = kNever;
  std::optional<std::uint64_t> floor;  // last_fence of its first STATS
  Nanos stop = kNever;                 // the driver's SIGTERM or SIGKILL
  Nanos exit = kNever;                 // reaped
};

// One grant as a worker saw it, and what ends its client interval.
struct Hold {
  const Event* grant = nullptr;
  Nanos connected = -1;  // when its connection was opened (raw workers), -1 if unknown
  Nanos worker_end = kNever;
  const char* worker_end_why = "";
  Nanos lost = kNever;
  int instance = -1;  // charged to
  Nanos end = 0;
  const char* end_why = "";
};

std::string seconds(Nanos time, Nanos origin) {
  if (time == kNever) return "never";
  return fmt::format("{:.6f}s", static_cast<double>(time - origin) / 1e9);
}

std::string describe_hold(const Hold& hold, Nanos origin) {
  const Event& g = *hold.grant;
  return fmt::format("[worker {} conn {} count {} fence {} held {}..{} ended by {}, instance {}]", g.worker,
                     g.connection, g.count, g.fence, seconds(g.time, origin), seconds(hold.end, origin), hold.end_why,
                     hold.instance);
}

// When each worker was first killed, and the first server start (0 when
// none): the times every check measures from.
struct KillsAndOrigin {
  std::unordered_map<std::uint32_t, Nanos> kills;
  Nanos origin = kNever;
};

KillsAndOrigin kills_and_origin(const std::vector<Event>& events) {
  KillsAndOrigin out;
  for (const Event& e : events) {
    if (e.type == EventType::kWorkerKill) {
      auto [it, inserted] = out.kills.emplace(e.worker, e.time);
      if (!inserted) it->second = std::min(it->second, e.time);
    }
    if (e.type == EventType::kServerStart) out.origin = std::min(out.origin, e.time);
  }
  if (out.origin == kNever) out.origin = 0;
  return out;
}

std::vector<Instance> collect_instances(const std::vector<Event>& events) {
  std::vector<Instance> instances;
  for (const Event& e : events) {
    if (e.type < EventType::kServerStart) continue;
    if (instances.size() <= e.instance) instances.resize(e.instance + 1);
    Instance& instance = instances[e.instance];
    switch (e.type) {
      case EventType::kServerStart:
        instance.start = e.time;
        break;
      case EventType::kServerReady:
        instance.floor = e.fence;
        break;
      case EventType::kServerStop:
        instance.stop = std::min(instance.stop, e.time);
        break;
      case EventType::kServerExit:
        instance.exit = e.time;
        break;
      default:
        break;
    }
  }
  return instances;
}

// Walks each worker's events in time order and pairs grants with what ends
// them on the worker's side.
std::vector<Hold> collect_holds(const std::vector<Event>& events) {
  std::unordered_map<std::uint32_t, std::vector<const Event*>> by_worker;
  for (const Event& e : events) {
    if (e.type <= EventType::kLost) by_worker[e.worker].push_back(&e);
  }
  std::vector<Hold> holds;
  for (auto& [worker, list] : by_worker) {
    std::stable_sort(list.begin(), list.end(), [](const Event* a, const Event* b) { return a->time < b->time; });
    std::unordered_map<std::uint32_t, Nanos> connected;
    std::vector<std::size_t> open;
    const auto close_where = [&](auto&& matches, Nanos time, const char* why, bool lost) {
      std::erase_if(open, [&](std::size_t i) {
        if (!matches(*holds[i].grant)) return false;
        (lost ? holds[i].lost : holds[i].worker_end) = time;
        if (!lost) holds[i].worker_end_why = why;
        return true;
      });
    };
    for (const Event* e : list) {
      switch (e->type) {
        case EventType::kConnect:
          connected[e->connection] = e->time;
          break;
        case EventType::kGrant: {
          const auto found = connected.find(e->connection);
          holds.push_back({.grant = e, .connected = found == connected.end() ? -1 : found->second});
          open.push_back(holds.size() - 1);
          break;
        }
        case EventType::kRelease:
          close_where([&](const Event& g) { return g.name == e->name; }, e->time, "release", false);
          break;
        case EventType::kDrop:
          close_where([&](const Event& g) { return g.connection == e->connection; }, e->time, "drop", false);
          break;
        case EventType::kLost:
          close_where([&](const Event& g) { return g.connection == e->connection; }, e->time, "loss", true);
          break;
        default:
          break;
      }
    }
  }
  return holds;
}

// Charges `hold` to the earliest instance it can have come from and sets its
// end; false when it has no usable interval (and counts why in `result`).
bool settle_hold(Hold& hold, const std::vector<Instance>& instances,
                 const std::unordered_map<std::uint32_t, Nanos>& kills, const HoldCheckInput& input,
                 HoldCheckResult& result, Nanos origin) {
  const Event& g = *hold.grant;
  int latest = -1;  // the last instance started before the OK was read
  for (std::size_t k = 0; k < instances.size(); ++k) {
    if (instances[k].start < g.time) latest = static_cast<int>(k);
  }
  if (latest < 0) {
    ++result.skipped_unstopped_instance;
    return false;
  }
  int by_fence = 0;  // (a): the fence is above instance k's reported floor
  for (std::size_t k = 0; k < instances.size(); ++k) {
    if (instances[k].floor && g.fence > *instances[k].floor) by_fence = static_cast<int>(k);
  }
  if (by_fence > latest) {
    result.violations.push_back(
        {Violation::Kind::kFenceAboveFloor, g.time, input.names[g.name],
         fmt::format("worker {} read fence {} at {}, before instance {} started, whose first STATS said last_fence {}",
                     g.worker, g.fence, seconds(g.time, origin), by_fence, *instances[by_fence].floor)});
  }
  int by_connection = 0;  // (b): the connection was opened after instance k-1 exited
  for (std::size_t k = 0; hold.connected >= 0 && k < instances.size(); ++k) {
    if (instances[k].exit < hold.connected) by_connection = static_cast<int>(k) + 1;
  }
  hold.instance = std::min(std::max(by_fence, by_connection), latest);

  const Instance& instance = instances[hold.instance];
  if (instance.stop == kNever && instance.exit != kNever) {
    ++result.skipped_unstopped_instance;  // crashed or never started: its end is unknown
    return false;
  }
  const auto kill = kills.find(g.worker);
  const Nanos killed = kill == kills.end() ? kNever : kill->second;
  Nanos outside_end = std::min(killed, instance.stop);
  if (input.session_timeout > 0 && input.without_lease.contains(g.worker)) {
    outside_end = std::min(outside_end, g.request_time + input.session_timeout);
  }
  if (hold.lost != kNever && outside_end > hold.lost) {
    ++result.skipped_unexplained_loss;  // the server ended it on its own, at an unknown time
    return false;
  }
  hold.end = std::min(hold.worker_end, outside_end);
  hold.end_why = hold.end == hold.worker_end ? hold.worker_end_why
                 : hold.end == killed        ? "worker kill"
                 : hold.end == instance.stop ? "server stop"
                                             : "session timeout";
  if (hold.end == kNever) {
    ++result.skipped_unterminated;
    return false;
  }
  if (hold.end == instance.stop && hold.end > g.time) ++result.cut_by_server_stop;
  return hold.end > g.time;
}

// Counts the permits the intervals of one name hold at once; one violation
// per stretch of time above the limit, with the intervals at its worst.
void sweep(std::uint16_t name, const std::vector<const Hold*>& holds, const HoldCheckInput& input,
           HoldCheckResult& result, Nanos origin) {
  struct Point {
    Nanos time;
    std::int32_t delta;
    const Hold* hold;
  };
  std::vector<Point> points;
  points.reserve(holds.size() * 2);
  for (const Hold* hold : holds) {
    points.push_back({hold->grant->time, hold->grant->count, hold});
    points.push_back({hold->end, -hold->grant->count, hold});
  }
  // Half-open intervals: at equal times an end comes before a start.
  std::sort(points.begin(), points.end(),
            [](const Point& a, const Point& b) { return a.time != b.time ? a.time < b.time : a.delta < b.delta; });
  const std::int64_t limit = input.limits[name];
  std::int64_t held = 0;
  std::vector<const Hold*> open;
  std::int64_t worst = 0;
  std::vector<const Hold*> worst_open;
  Nanos worst_time = 0;
  for (const Point& p : points) {
    held += p.delta;
    if (p.delta > 0) {
      open.push_back(p.hold);
    } else {
      std::erase(open, p.hold);
    }
    result.peak[name] = std::max(result.peak[name], held);
    if (held > limit && held > worst) {
      worst = held;
      worst_open = open;
      worst_time = p.time;
    }
    if (held <= limit && worst > 0) {
      std::string what =
          fmt::format("{} permits held at once, limit {}, at {}:", worst, limit, seconds(worst_time, origin));
      for (const Hold* hold : worst_open) what += " " + describe_hold(*hold, origin);
      result.violations.push_back({Violation::Kind::kOverLimit, worst_time, input.names[name], std::move(what)});
      worst = 0;
    }
  }
}

// A grant received before another was requested has the smaller fence.
void check_fence_order(std::uint16_t name, std::vector<const Hold*> holds, const HoldCheckInput& input,
                       HoldCheckResult& result, FenceCarry& carry, Nanos origin) {
  std::vector<const Hold*> by_request = holds;
  std::sort(holds.begin(), holds.end(), [](const Hold* a, const Hold* b) { return a->grant->time < b->grant->time; });
  std::sort(by_request.begin(), by_request.end(),
            [](const Hold* a, const Hold* b) { return a->grant->request_time < b->grant->request_time; });
  std::uint64_t top = 0;
  const Event* top_grant = nullptr;
  std::size_t next = 0;
  for (const Hold* later : by_request) {
    const Event& b = *later->grant;
    if (b.request_time <= 0) continue;  // unknown
    for (; next < holds.size() && holds[next]->grant->time < b.request_time; ++next) {
      if (holds[next]->grant->fence >= top) {
        top = holds[next]->grant->fence;
        top_grant = holds[next]->grant;
      }
    }
    if (top_grant != nullptr && top >= b.fence) {
      result.violations.push_back(
          {Violation::Kind::kFenceOrder, b.time, input.names[name],
           fmt::format("worker {} requested at {} and got fence {}, but worker {} had already received fence {} at {}",
                       b.worker, seconds(b.request_time, origin), b.fence, top_grant->worker, top,
                       seconds(top_grant->time, origin))});
    } else if (carry.received[name] < b.request_time && carry.fence[name] >= b.fence) {
      result.violations.push_back(
          {Violation::Kind::kFenceOrder, b.time, input.names[name],
           fmt::format("worker {} requested at {} and got fence {}, but fence {} had been received at {}", b.worker,
                       seconds(b.request_time, origin), b.fence, carry.fence[name],
                       seconds(carry.received[name], origin))});
    }
  }
  for (const Hold* hold : holds) {
    if (hold->grant->fence > carry.fence[name] || carry.received[name] == kNever) {
      carry.fence[name] = hold->grant->fence;
      carry.received[name] = hold->grant->time;
    }
  }
}

}  // namespace

std::string_view kind_name(Violation::Kind kind) {
  switch (kind) {
    case Violation::Kind::kOverLimit:
      return "over-limit";
    case Violation::Kind::kFenceOrder:
      return "fence-order";
    case Violation::Kind::kFenceAboveFloor:
      return "fence-above-floor";
    case Violation::Kind::kPermitNotBack:
      return "permit-not-back";
    case Violation::Kind::kCreatedValue:
      return "created-value";
    case Violation::Kind::kServer:
      return "server";
  }
  return "?";
}

HoldCheckResult check_holds(const HoldCheckInput& input, FenceCarry* carry_in) {
  HoldCheckResult result;
  result.peak.assign(input.names.size(), 0);
  FenceCarry local_carry;
  FenceCarry& carry = carry_in != nullptr ? *carry_in : local_carry;
  carry.fence.resize(input.names.size(), 0);
  carry.received.resize(input.names.size(), kNever);

  const std::vector<Instance> instances = collect_instances(input.events);
  const auto [kills, origin] = kills_and_origin(input.events);

  std::vector<Hold> holds = collect_holds(input.events);
  result.grants = holds.size();
  std::vector<std::vector<const Hold*>> checked(input.names.size());
  std::vector<std::vector<const Hold*>> received(input.names.size());
  for (Hold& hold : holds) {
    received[hold.grant->name].push_back(&hold);
    if (!settle_hold(hold, instances, kills, input, result, origin)) continue;
    ++result.checked;
    checked[hold.grant->name].push_back(&hold);
  }
  for (std::uint16_t name = 0; name < input.names.size(); ++name) {
    sweep(name, checked[name], input, result, origin);
    check_fence_order(name, received[name], input, result, carry, origin);
  }
  return result;
}

HoldCheckResult check_host_holds(const HoldCheckInput& input) {
  HoldCheckResult result;
  result.peak.assign(input.names.size(), 0);
  const auto [kills, origin] = kills_and_origin(input.events);
  std::vector<Hold> holds = collect_holds(input.events);
  result.grants = holds.size();
  std::vector<std::vector<const Hold*>> checked(input.names.size());
  for (Hold& hold : holds) {
    const auto kill = kills.find(hold.grant->worker);
    const Nanos killed = kill == kills.end() ? kNever : kill->second;
    // Not cut at a server stop, not even a frozen hold whose worker cannot
    // learn that netsemd was killed meanwhile: the restarted server grants
    // nothing until that worker's lease has run out (the lease wait,
    // docs/durability.md "Restarts").
    hold.end = std::min(hold.worker_end, killed);
    hold.end_why = hold.end == hold.worker_end ? hold.worker_end_why : "worker kill";
    if (hold.end == kNever) {
      ++result.skipped_unterminated;
      continue;
    }
    if (hold.end <= hold.grant->time) continue;
    ++result.checked;
    checked[hold.grant->name].push_back(&hold);
  }
  for (std::uint16_t name = 0; name < input.names.size(); ++name) sweep(name, checked[name], input, result, origin);
  return result;
}

std::optional<Violation> check_permits_back(std::string_view name, std::int64_t limit, bool defined,
                                            const SemaphoreReading& reading, Nanos time) {
  const bool free = reading.holders == 0 && reading.waiters == 0 && reading.value == limit && reading.max == limit &&
                    (defined ? reading.kind == "defined" : reading.kind == "absent" || reading.kind == "undefined");
  if (free) return std::nullopt;
  return Violation{Violation::Kind::kPermitNotBack, time, std::string(name),
                   fmt::format("GET answered value {} max {} holders {} waiters {} kind {}; expected {} {} 0 0 {}",
                               reading.value, reading.max, reading.holders, reading.waiters, reading.kind, limit, limit,
                               defined ? "defined" : "absent")};
}

CreatedExpectation::CreatedExpectation(std::int64_t value, std::int64_t max) : max_(max), possible_{value} {}

std::optional<std::string> CreatedExpectation::post(std::int64_t count, Outcome outcome) {
  std::set<std::int64_t> next;
  for (const std::int64_t v : possible_) {
    const bool fits = v + count <= max_;
    if (fits && outcome != Outcome::kRefused) next.insert(v + count);
    if ((!fits && outcome == Outcome::kRefused) || outcome == Outcome::kUnknown) next.insert(v);
  }
  return settle(std::move(next),
                fmt::format("POST {} answered {}", count, outcome == Outcome::kDone ? "OK" : "OVERFLOW"));
}

std::optional<std::string> CreatedExpectation::try_wait(std::int64_t count, Outcome outcome) {
  std::set<std::int64_t> next;
  for (const std::int64_t v : possible_) {
    const bool fits = v >= count;
    if (fits && outcome != Outcome::kRefused) next.insert(v - count);
    if ((!fits && outcome == Outcome::kRefused) || outcome == Outcome::kUnknown) next.insert(v);
  }
  return settle(std::move(next),
                fmt::format("WAIT {} 0 answered {}", count, outcome == Outcome::kDone ? "OK" : "TIMEOUT"));
}

std::optional<std::string> CreatedExpectation::observe(std::int64_t value) {
  std::optional<std::string> mismatch;
  if (!possible_.contains(value)) {
    mismatch = fmt::format("the server reports value {}, but after the operations it answered the value is one of {}",
                           value, describe());
  }
  possible_ = {value};
  return mismatch;
}

std::string CreatedExpectation::describe() const {
  std::string text = "{";
  for (const std::int64_t v : possible_) text += (text.size() > 1 ? ", " : "") + std::to_string(v);
  return text + "}";
}

std::optional<std::string> CreatedExpectation::settle(std::set<std::int64_t> next, std::string_view what) {
  if (!next.empty()) {
    possible_ = std::move(next);
    return std::nullopt;
  }
  // No possible value explains the answer: report it once, then expect
  // anything until the next observed value re-synchronises.
  std::string mismatch = fmt::format("{}, which no possible value ({}) explains", what, describe());
  possible_.clear();
  for (std::int64_t v = 0; v <= max_; ++v) possible_.insert(v);
  return mismatch;
}

}  // namespace netsem::soak
