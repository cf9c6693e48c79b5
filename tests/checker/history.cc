// The checker's parsing and its three proofs (history.h). Each proof sorts
// the events it needs once: O(n log n) in the history's length, so a long
// failure run's millions of events check in seconds.
#include "checker/history.h"

#include <algorithm>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

namespace netsem::checker {
namespace {

constexpr std::int64_t kForever = std::numeric_limits<std::int64_t>::max();

Result<Op> op_of(std::string_view text) {
  static const std::pair<std::string_view, Op> kOps[] = {
      {"limit", Op::kLimit},     {"acquire", Op::kAcquire}, {"wait", Op::kWait},
      {"release", Op::kRelease}, {"lost", Op::kLost},       {"post", Op::kPost},
      {"create", Op::kCreate},   {"delete", Op::kDelete},   {"final", Op::kFinal}};
  for (const auto& [name, op] : kOps) {
    if (name == text) return op;
  }
  return Status(StatusCode::kInvalidArgument, "unknown op \"" + std::string(text) + "\"");
}

Result<Outcome> outcome_of(std::string_view text) {
  if (text == "ok") return Outcome::kOk;
  if (text == "fail") return Outcome::kFail;
  if (text == "unknown") return Outcome::kUnknown;
  return Status(StatusCode::kInvalidArgument, "unknown outcome \"" + std::string(text) + "\"");
}

std::string at(const Event& e) {
  return (e.source.empty() ? std::string() : e.source + ":") + "line " + std::to_string(e.line) + " (" + e.client + ")";
}

// Reads one event; throws nlohmann's exceptions for missing or mistyped fields.
Result<Event> read_event(const nlohmann::json& j, std::size_t line) {
  Event e;
  e.line = line;
  auto op = op_of(j.at("op").get<std::string>());
  if (!op) return op.status();
  e.op = *op;
  e.name = j.at("name").get<std::string>();
  e.client = j.value("client", std::string());
  switch (e.op) {
    case Op::kLimit:
      e.max = j.at("max").get<std::int64_t>();
      if (e.max < 1) return Status(StatusCode::kInvalidArgument, "max must be 1 or more");
      return e;
    case Op::kFinal:
      e.exists = j.at("exists").get<bool>();
      if (e.exists) {
        e.value = j.at("value").get<std::int64_t>();
        e.max = j.at("max").get<std::int64_t>();
      }
      return e;
    case Op::kLost:
      e.invoke_ns = e.complete_ns = j.at("at_ns").get<std::int64_t>();
      e.fence = j.at("fence").get<std::uint64_t>();
      return e;
    default:
      break;
  }
  e.invoke_ns = j.at("invoke_ns").get<std::int64_t>();
  e.complete_ns = j.at("complete_ns").get<std::int64_t>();
  if (e.complete_ns < e.invoke_ns) return Status(StatusCode::kInvalidArgument, "complete_ns is before invoke_ns");
  auto outcome = outcome_of(j.at("outcome").get<std::string>());
  if (!outcome) return outcome.status();
  e.outcome = *outcome;
  if (j.contains("count")) e.count = j.at("count").get<std::int64_t>();
  if (e.count < 1) return Status(StatusCode::kInvalidArgument, "count must be 1 or more");
  if (j.contains("fence")) e.fence = j.at("fence").get<std::uint64_t>();
  if (e.op == Op::kCreate) {
    e.value = j.at("value").get<std::int64_t>();
    e.max = j.at("max").get<std::int64_t>();
  }
  if (e.op == Op::kAcquire && e.outcome == Outcome::kOk && !e.fence) {
    return Status(StatusCode::kInvalidArgument, "a granted request without its fence");
  }
  if (e.op == Op::kRelease && !e.fence) {
    return Status(StatusCode::kInvalidArgument, "a release without the fence of the permit it ends");
  }
  return e;
}

// --- proof 1: never more permits in use than the limit ---

struct Holding {
  const Event* grant;
  std::int64_t end_ns;
};

void check_limits(const std::vector<Event>& events, Report& report) {
  std::map<std::string, std::int64_t> limits;
  for (const Event& e : events) {
    if (e.op == Op::kLimit) limits[e.name] = e.max;
  }
  // Each granted acquire is a holding until its release is sent or its loss
  // declared, whichever comes first.
  std::map<std::tuple<std::string, std::string, std::uint64_t>, Holding> holdings;
  for (const Event& e : events) {
    if (e.op == Op::kAcquire && e.outcome == Outcome::kOk) {
      auto [it, fresh] = holdings.try_emplace({e.name, e.client, *e.fence}, Holding{&e, kForever});
      if (!fresh)
        report.violations.push_back(at(e) + ": " + e.name + " granted fence " + std::to_string(*e.fence) +
                                    " to this client twice");
    }
  }
  for (const Event& e : events) {
    if (e.op != Op::kRelease && e.op != Op::kLost) continue;
    auto it = holdings.find({e.name, e.client, *e.fence});
    if (it != holdings.end()) it->second.end_ns = std::min(it->second.end_ns, e.invoke_ns);
  }
  // A sweep per name: +count at a grant's arrival, -count at its end; at one
  // instant ends go first (a release sent as another grant arrives).
  std::map<std::string, std::vector<std::pair<std::int64_t, std::int64_t>>> points;
  for (const auto& [key, holding] : holdings) {
    const Event& grant = *holding.grant;
    if (holding.end_ns <= grant.complete_ns) continue;  // let go before it was ever used
    points[grant.name].emplace_back(grant.complete_ns, grant.count);
    if (holding.end_ns != kForever) points[grant.name].emplace_back(holding.end_ns, -grant.count);
  }
  for (auto& [name, changes] : points) {
    std::sort(changes.begin(), changes.end());  // at one time, negative (ends) first
    NameFigures& figures = report.names[name];
    const auto limit = limits.find(name);
    figures.limit = limit == limits.end() ? 0 : limit->second;
    std::int64_t in_use = 0;
    int reported = 0;
    for (const auto& [time, delta] : changes) {
      in_use += delta;
      if (in_use > figures.most_in_use) figures.most_in_use = in_use;
      if (figures.limit > 0 && in_use > figures.limit && delta > 0 && reported < 3) {
        ++reported;
        std::string who;
        for (const auto& [key, holding] : holdings) {
          const Event& g = *holding.grant;
          if (g.name == name && g.complete_ns <= time && holding.end_ns > time) {
            who += " " + g.client + "(fence " + std::to_string(*g.fence) + ", " + at(g) + ")";
          }
        }
        report.violations.push_back(name + ": " + std::to_string(in_use) + " permits in use at " +
                                    std::to_string(time) + " ns, over its limit of " + std::to_string(figures.limit) +
                                    ": held by" + who);
      }
    }
  }
}

// --- proof 2: fences distinct and in real-time order ---

void check_fences(const std::vector<Event>& events, Report& report) {
  std::map<std::string, std::vector<const Event*>> grants;
  for (const Event& e : events) {
    if ((e.op == Op::kAcquire || e.op == Op::kWait) && e.outcome == Outcome::kOk && e.fence)
      grants[e.name].push_back(&e);
    if (e.outcome == Outcome::kUnknown && e.op != Op::kLimit && e.op != Op::kFinal && e.op != Op::kLost) {
      ++report.names[e.name].unknown;
    }
  }
  for (auto& [name, list] : grants) {
    report.names[name].grants = list.size();
    std::map<std::uint64_t, const Event*> by_fence;
    for (const Event* g : list) {
      auto [it, fresh] = by_fence.emplace(*g->fence, g);
      if (!fresh) {
        report.violations.push_back(name + ": fence " + std::to_string(*g->fence) + " granted twice, " +
                                    at(*it->second) + " and " + at(*g));
      }
    }
    // For each grant B: every grant whose answer arrived before B was asked
    // must have a smaller fence.
    std::vector<const Event*> by_complete = list;
    std::sort(by_complete.begin(), by_complete.end(),
              [](const Event* a, const Event* b) { return a->complete_ns < b->complete_ns; });
    std::vector<const Event*> by_invoke = list;
    std::sort(by_invoke.begin(), by_invoke.end(),
              [](const Event* a, const Event* b) { return a->invoke_ns < b->invoke_ns; });
    const Event* highest = nullptr;  // the highest fence among grants completed so far
    std::size_t next = 0;
    int reported = 0;
    for (const Event* b : by_invoke) {
      while (next < by_complete.size() && by_complete[next]->complete_ns < b->invoke_ns) {
        if (!highest || *by_complete[next]->fence > *highest->fence) highest = by_complete[next];
        ++next;
      }
      if (highest && *highest->fence >= *b->fence && reported < 3) {
        ++reported;
        report.violations.push_back(name + ": fence " + std::to_string(*b->fence) + " (" + at(*b) +
                                    ") was asked after fence " + std::to_string(*highest->fence) + " (" + at(*highest) +
                                    ") had been granted: fences went back");
      }
    }
  }
}

// --- proof 3: acknowledged changes of created semaphores survive ---

void check_changes(const std::vector<Event>& events, Report& report) {
  std::map<std::string, const Event*> finals;
  std::map<std::string, std::vector<const Event*>> changes;
  for (const Event& e : events) {
    if (e.op == Op::kFinal) finals[e.name] = &e;
    if (e.op == Op::kCreate || e.op == Op::kDelete || e.op == Op::kPost || e.op == Op::kWait) {
      changes[e.name].push_back(&e);
    }
  }
  for (const auto& [name, final] : finals) {
    std::vector<const Event*>& list = changes[name];
    const auto is_existence = [](const Event* e) { return e->op == Op::kCreate || e->op == Op::kDelete; };
    // The last acknowledged CREATE or DELETE (by when its answer came)
    // decides whether the name exists, unless another one may have been
    // applied after it: an acknowledged one that overlaps it in time, or
    // one of unknown outcome (whenever it was sent).
    const Event* last = nullptr;
    for (const Event* e : list) {
      if (is_existence(e) && e->outcome == Outcome::kOk && (!last || e->complete_ns > last->complete_ns)) last = e;
    }
    if (!last) continue;  // nothing acknowledged: nothing to prove
    bool may_exist = last->op == Op::kCreate;
    bool may_not_exist = last->op == Op::kDelete;
    bool later_possible = false;  // another CREATE or DELETE may have come after `last`
    for (const Event* e : list) {
      if (!is_existence(e) || e == last || e->outcome == Outcome::kFail) continue;
      if (e->outcome == Outcome::kUnknown || e->complete_ns > last->invoke_ns) {
        (e->op == Op::kCreate ? may_exist : may_not_exist) = true;
        later_possible = true;
      }
    }
    if (final->exists ? !may_exist : !may_not_exist) {
      report.violations.push_back(name + ": " + (final->exists ? "exists" : "is gone") + " at the end, but the " +
                                  (last->op == Op::kCreate ? "CREATE" : "DELETE") + " acknowledged at " + at(*last) +
                                  " says otherwise");
      continue;
    }
    if (!final->exists || last->op != Op::kCreate || later_possible) continue;
    // Its value: the CREATE's, plus every acknowledged POST, minus every
    // acknowledged WAIT sent after it was answered; one that overlaps it,
    // or of unknown outcome (sent at any time), may or may not count.
    std::int64_t value = last->value;
    std::int64_t may_add = 0;
    std::int64_t may_take = 0;
    for (const Event* e : list) {
      if ((e->op != Op::kPost && e->op != Op::kWait) || e->outcome == Outcome::kFail) continue;
      if (e->outcome == Outcome::kOk && e->complete_ns < last->invoke_ns) continue;  // applied before this CREATE
      const std::int64_t sign = e->op == Op::kPost ? 1 : -1;
      if (e->outcome == Outcome::kOk && e->invoke_ns > last->complete_ns) {
        value += sign * e->count;
      } else {
        (sign > 0 ? may_add : may_take) += e->count;
      }
    }
    if (final->max != last->max || final->value < value - may_take || final->value > value + may_add) {
      report.violations.push_back(name + ": value " + std::to_string(final->value) + " of " +
                                  std::to_string(final->max) + " at the end; the acknowledged changes since the " +
                                  "CREATE at " + at(*last) + " make it " + std::to_string(value) + " of " +
                                  std::to_string(last->max) +
                                  (may_add || may_take ? " (" + std::to_string(value - may_take) + ".." +
                                                             std::to_string(value + may_add) + " with the unknown ones)"
                                                       : std::string()) +
                                  ": an acknowledged change was lost");
    }
  }
}

}  // namespace

Result<std::vector<Event>> parse_history(std::string_view text, std::string_view source) {
  std::vector<Event> events;
  std::size_t line_number = 0;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const auto where = [&] {
      return (source.empty() ? std::string() : std::string(source) + ":") + "line " + std::to_string(line_number) +
             ": ";
    };
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Status(StatusCode::kInvalidArgument, where() + "not a JSON object");
    }
    try {
      auto event = read_event(j, line_number);
      if (!event) return Status(StatusCode::kInvalidArgument, where() + event.status().message());
      event->source = std::string(source);
      events.push_back(std::move(*event));
    } catch (const nlohmann::json::exception& e) {
      return Status(StatusCode::kInvalidArgument, where() + e.what());
    }
  }
  return events;
}

Report check_history(const std::vector<Event>& events) {
  Report report;
  check_limits(events, report);
  check_fences(events, report);
  check_changes(events, report);
  return report;
}

}  // namespace netsem::checker
