// HttpBackend (http_backend.h): published state, and the loop queries that
// copy a page of rows out of the table and the dispatcher.
#include "server/http_backend.h"

#include <algorithm>
#include <ctime>

#include "core/name_metrics_collector.h"
#include "core/session_state.h"
#include "stats/name_metrics.h"
#include "stats/render.h"

namespace netsem::server {

namespace {

std::int64_t ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

api::SemaphoreRow row_of(const SemaphoreInfo& info) {
  return {std::string(info.name), std::string(kind_name(info.kind)), info.value, info.max, info.holders, info.waiters};
}

std::string peer_of(const Dispatcher& dispatcher, SessionId id) {
  const auto found = dispatcher.sessions().find(id);
  return found == dispatcher.sessions().end() ? std::string() : found->second->peer;
}

}  // namespace

std::int64_t wall_clock_ms() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

HttpBackend::HttpBackend(LoopJobs& jobs, std::int64_t started_at_ms) : jobs_(jobs), started_at_ms_(started_at_ms) {}

Status HttpBackend::serving() const {
  switch (readiness_.load()) {
    case api::Readiness::kReady:
      return Status::ok();
    case api::Readiness::kStarting:
      return Status(StatusCode::kUnavailable, "the server is starting (recovering its journal)");
    case api::Readiness::kStopping:
      break;
  }
  return Status(StatusCode::kShutdown, "the server is stopping");
}

void HttpBackend::publish(const stats::Snapshot& snapshot, std::int64_t at_ms) {
  published_.publish(snapshot);
  history_.record(at_ms, snapshot);
}

void HttpBackend::set_access(const AllowList& allowed, const AllowList& admin) {
  auto access = std::make_shared<const Access>(Access{allowed, admin});
  std::lock_guard lock(access_mutex_);
  access_ = std::move(access);
}

std::shared_ptr<const HttpBackend::Access> HttpBackend::access() const {
  std::lock_guard lock(access_mutex_);
  return access_;
}

bool HttpBackend::admits(const std::array<std::uint8_t, 16>& peer) const {
  const auto lists = access();
  return lists && lists->allowed.allows(peer);
}

bool HttpBackend::is_admin(const std::array<std::uint8_t, 16>& peer) const {
  const auto lists = access();
  return lists && lists->admin.allows(peer);
}

bool HttpBackend::answers_to(std::string_view name) const {
  return std::any_of(host_names_.begin(), host_names_.end(),
                     [&](const std::string& known) { return known == "*" || known == name; });
}

Result<api::SemaphorePage> HttpBackend::semaphores(std::string prefix, std::string after, std::size_t limit) {
  if (auto status = serving(); !status) return status;
  return jobs_.call<api::SemaphorePage>(
      [this, prefix = std::move(prefix), after = std::move(after), limit] {
        api::SemaphorePage page;
        bool more = false;
        table_->list_after(prefix, after, [&](const SemaphoreInfo& info) {
          if (page.rows.size() == limit) {
            more = true;
            return false;
          }
          page.rows.push_back(row_of(info));
          return true;
        });
        if (more) page.next = page.rows.back().name;
        return page;
      },
      kLoopQueryTimeout);
}

Result<std::optional<api::SemaphoreDetail>> HttpBackend::semaphore(std::string name) {
  if (auto status = serving(); !status) return status;
  return jobs_.call<std::optional<api::SemaphoreDetail>>(
      [this, name = std::move(name)]() -> std::optional<api::SemaphoreDetail> {
        const SemaphoreInfo info = table_->get(name);
        if (info.kind == SemaphoreKind::kAbsent) return std::nullopt;
        api::SemaphoreDetail detail;
        detail.semaphore = row_of(info);
        const Clock::time_point now = dispatcher_->now();
        const std::int64_t wall = wall_clock_ms();
        table_->holders_after(name, now, 0, [&](const HolderInfo& h) {
          if (detail.holders.size() == api::kMaxPage) {
            detail.truncated = true;
            return false;
          }
          detail.holders.push_back({h.session, std::string(dispatcher_->label_of(h.session)),
                                    peer_of(*dispatcher_, h.session), h.count, h.fence, h.held_ms, wall - h.held_ms});
          return true;
        });
        table_->waiters_after(name, now, 0, [&](const WaiterInfo& w) {
          if (detail.waiters.size() == api::kMaxPage) {
            detail.truncated = true;
            return false;
          }
          api::WaiterRow row{w.session,
                             std::string(dispatcher_->label_of(w.session)),
                             peer_of(*dispatcher_, w.session),
                             w.mode == TakeMode::kWait ? "wait" : "acquire",
                             w.count,
                             w.waited_ms,
                             std::nullopt};
          if (w.timeout_ms_left >= 0) row.timeout_left_ms = w.timeout_ms_left;
          detail.waiters.push_back(std::move(row));
          return true;
        });
        return detail;
      },
      kLoopQueryTimeout);
}

Result<api::SessionPage> HttpBackend::sessions(std::uint64_t after, std::size_t limit) {
  if (auto status = serving(); !status) return status;
  return jobs_.call<api::SessionPage>(
      [this, after, limit] {
        api::SessionPage page;
        const Clock::time_point now = dispatcher_->now();
        const auto& by_id = dispatcher_->sessions_by_id();
        for (auto it = by_id.upper_bound(after); it != by_id.end(); ++it) {
          if (page.rows.size() == limit) {
            page.next = page.rows.back().id;
            break;
          }
          const SessionState& s = *it->second;
          const SessionLoad load = table_->session_load(s.id);
          page.rows.push_back({s.id, s.peer, s.dialect == protocol::Dialect::kAce ? "ace" : "v1",
                               std::string(dispatcher_->label_of(s.id)), load.permits_held, load.pending,
                               ms_between(s.began, now), ms_between(s.last_activity, now)});
        }
        return page;
      },
      kLoopQueryTimeout);
}

Result<bool> HttpBackend::kick(std::uint64_t id, std::string reason) {
  if (auto status = serving(); !status) return status;
  return jobs_.call<bool>([this, id, reason = std::move(reason)] { return dispatcher_->kick_session(id, reason); },
                          kLoopQueryTimeout);
}

Result<std::string> HttpBackend::metrics() {
  if (auto status = serving(); !status) return status;
  // The counters from the published copy; the per-name rows from the table,
  // one bounded step per loop job (NameMetricsCollector). The collector is
  // shared with the job: a job still queued when its caller gave up runs on
  // a collector nobody reads any more.
  std::string text = stats::to_prometheus(published_.read());
  auto collector = std::make_shared<NameMetricsCollector>(metrics_max_names_.load());
  const auto give_up = Clock::now() + kMetricsTimeout;
  for (;;) {
    auto done = jobs_.call<bool>([this, collector] { return collector->step(*table_); }, kLoopQueryTimeout);
    if (!done) return done.status();
    if (*done) break;
    if (Clock::now() >= give_up) {
      return Status(StatusCode::kBusy, "the per-name rows of /metrics took longer than the scrape may wait");
    }
  }
  text += stats::to_prometheus(collector->result());
  return text;
}

}  // namespace netsem::server
