// HttpBackend (http_backend.h): published state, and the loop queries that
// run the API's page builders (core/api_pages.h) and the metrics collector
// on the loop.
#include "server/http_backend.h"

#include <algorithm>
#include <ctime>
#include <future>
#include <optional>

#include "core/api_pages.h"
#include "core/name_metrics_collector.h"
#include "stats/name_metrics.h"
#include "stats/render.h"

namespace netsem::server {

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

void HttpBackend::publish(const stats::Snapshot& snapshot, std::int64_t at_ms,
                          std::optional<stats::ClusterFigures> cluster) {
  {
    std::lock_guard lock(cluster_mutex_);
    cluster_ = std::move(cluster);
  }
  published_.publish(snapshot);
  history_.record(at_ms, snapshot);
}

void HttpBackend::set_access(const AllowList& allowed, const AllowList& admin) {
  auto access = std::make_shared<const Access>(Access{allowed, admin});
  std::lock_guard lock(access_mutex_);
  access_ = std::move(access);
}

void HttpBackend::set_auth(const auth::AuthTables& tables, auth::TokenVerifier* verifier) {
  auto copy = std::make_shared<const auth::AuthTables>(tables);
  std::lock_guard lock(access_mutex_);
  auth_ = std::move(copy);
  verifier_ = verifier;
}

bool HttpBackend::auth_required() const {
  std::lock_guard lock(access_mutex_);
  return auth_ && auth_->required();
}

std::optional<auth::Rights> HttpBackend::bearer_rights(std::string_view token) {
  std::shared_ptr<const auth::AuthTables> tables;
  auth::TokenVerifier* verifier = nullptr;
  {
    std::lock_guard lock(access_mutex_);
    tables = auth_;
    verifier = verifier_;
  }
  if (!tables || verifier == nullptr) return std::nullopt;
  // A token checked before is answered from the verifier's cache; another
  // is checked on its thread while this HTTP thread waits (never the loop).
  std::optional<auth::TokenVerifier::Outcome> outcome = verifier->lookup(token);
  if (!outcome) {
    auto promise = std::make_shared<std::promise<auth::TokenVerifier::Outcome>>();
    auto future = promise->get_future();
    if (!verifier->verify(std::string(token), [promise](auth::TokenVerifier::Outcome o) { promise->set_value(o); })) {
      return std::nullopt;
    }
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) return std::nullopt;
    outcome = future.get();
  }
  if (!*outcome) return std::nullopt;
  // Still listed with the same hash (a reload may have revoked it meanwhile).
  const auth::TokenEntry* listed = tables->find_token((*outcome)->name);
  if (listed == nullptr || listed->hash != (*outcome)->hash) return std::nullopt;
  return listed->rights;
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
  return jobs_.call<api::SemaphorePage>([this, prefix = std::move(prefix), after = std::move(after),
                                         limit] { return semaphore_page(*table_, prefix, after, limit); },
                                        kLoopQueryTimeout);
}

Result<std::optional<api::SemaphoreDetail>> HttpBackend::semaphore(std::string name) {
  if (auto status = serving(); !status) return status;
  return jobs_.call<std::optional<api::SemaphoreDetail>>(
      [this, name = std::move(name)] {
        return semaphore_detail(*table_, *dispatcher_, name, dispatcher_->now(), wall_clock_ms());
      },
      kLoopQueryTimeout);
}

Result<api::SessionPage> HttpBackend::sessions(std::uint64_t after, std::size_t limit) {
  if (auto status = serving(); !status) return status;
  return jobs_.call<api::SessionPage>(
      [this, after, limit] { return session_page(*table_, *dispatcher_, after, limit, dispatcher_->now()); },
      kLoopQueryTimeout);
}

Result<api::Backend::KickOutcome> HttpBackend::kick(std::uint64_t id, std::string reason) {
  if (auto status = serving(); !status) return status;
  return jobs_.call<KickOutcome>(
      [this, id, reason = std::move(reason)] {
        KickOutcome outcome;
        outcome.kicked = dispatcher_->kick_session(id, reason);
        if (!outcome.kicked) outcome.elsewhere = dispatcher_->hosted_elsewhere(id);
        return outcome;
      },
      kLoopQueryTimeout);
}

Result<std::string> HttpBackend::metrics() {
  if (auto status = serving(); !status) return status;
  // The counters from the published copy; the per-name rows from the table,
  // one bounded step per loop job (NameMetricsCollector). The collector is
  // shared with the job: a job still queued when its caller gave up runs on
  // a collector nobody reads any more.
  // A server in a cluster: its figures now (one loop job), and no journal.
  auto cluster = jobs_.call<std::optional<stats::ClusterFigures>>(
      [this] { return dispatcher_ != nullptr ? dispatcher_->cluster_figures() : std::nullopt; }, kLoopQueryTimeout);
  if (!cluster) return cluster.status();
  std::string text = stats::to_prometheus(published_.read(), *cluster ? &**cluster : nullptr);
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
