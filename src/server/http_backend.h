// HttpBackend: the server's side of the HTTP API (api::Backend), the
// hand-over between the HTTP threads and the event loop. It answers from
// what the loop published (the latest stats::Snapshot and, in a cluster,
// stats::ClusterFigures, the history ring,
// readiness, the access lists) without touching the loop, and for per-name
// and per-session data runs a loop query (LoopJobs) whose body is one of
// the socket-free page builders (core/api_pages.h: a page of plain rows out
// of the table and the dispatcher, at most api::kMaxPage, so a million
// names or a name with 100k holders never make one long loop turn) or a
// step of the metrics collector (core/name_metrics_collector.h). What a
// page shows is decided there; serialising it is the HTTP thread's work.
//
// Thread safety: the api::Backend methods and admits() are called from HTTP
// threads; publish(), set_access(), set_readiness() and the loop queries'
// bodies run on the event loop's thread. Shared state is behind a mutex or
// atomic (stated per member).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/backend.h"
#include "auth/token_verifier.h"
#include "config/allow_list.h"
#include "core/dispatcher.h"
#include "server/loop_jobs.h"
#include "stats/cluster_figures.h"
#include "stats/history.h"
#include "stats/stats.h"
#include "table/semaphore_table.h"

namespace netsem::server {

// Wall clock, ms since the Unix epoch.
std::int64_t wall_clock_ms();

class HttpBackend final : public api::Backend {
 public:
  // How long an HTTP thread waits for a loop query before answering 503 BUSY.
  static constexpr std::chrono::milliseconds kLoopQueryTimeout{2000};
  // How long GET /metrics may take to copy its per-name rows, in steps of
  // a bounded loop job each (NameMetricsCollector), before 503 BUSY.
  static constexpr std::chrono::milliseconds kMetricsTimeout{5000};

  // `jobs` must outlive the backend. Until attach(), the backend answers as
  // a server that is starting: readiness kStarting, loop queries
  // kUnavailable at once.
  HttpBackend(LoopJobs& jobs, std::int64_t started_at_ms);

  // --- event loop side ---
  // The table and the dispatcher, once the journal is recovered; used only
  // inside loop queries (on the loop thread); they must outlive the backend.
  // REQUIRES: before the loop runs, or on the loop thread between queries
  // (a cluster's loop replica restored from a snapshot has a new table).
  void attach(const SemaphoreTable& table, Dispatcher& dispatcher) {
    table_ = &table;
    dispatcher_ = &dispatcher;
  }
  // Publishes the figures of now (and offers them to the history ring);
  // a server in a cluster its cluster figures with them.
  void publish(const stats::Snapshot& snapshot, std::int64_t at_ms,
               std::optional<stats::ClusterFigures> cluster = std::nullopt);
  void set_access(const AllowList& allowed, const AllowList& admin);
  // The authentication tables in force (start, reload) and the verifier
  // that checks bearer tokens (docs/security.md, "The HTTP API").
  // REQUIRES: `verifier` outlives the backend's use.
  void set_auth(const auth::AuthTables& tables, auth::TokenVerifier* verifier);
  bool auth_required() const override;
  std::optional<auth::Rights> bearer_rights(std::string_view token) override;
  // The host names of http_hosts ("*": any). REQUIRES: before the listener starts.
  void set_host_names(std::vector<std::string> names) { host_names_ = std::move(names); }
  void set_readiness(api::Readiness readiness) { readiness_.store(readiness); }
  // A cluster member's reason not to be ready (ClusterRuntime::unready_reason),
  // set by the loop; "" when it has none.
  void set_unready_reason(std::string reason) {
    std::lock_guard lock(unready_mutex_);
    unready_reason_ = std::move(reason);
  }
  // The cap on per-name series of GET /metrics (metrics_max_names).
  void set_metrics_max_names(std::size_t max_names) { metrics_max_names_.store(max_names); }

  // --- HTTP side ---
  // Whether a peer may connect (allowed_networks as last set).
  bool admits(const std::array<std::uint8_t, 16>& peer) const;

  stats::Snapshot snapshot() const override { return published_.read(); }
  std::optional<stats::ClusterFigures> cluster_figures() const override {
    std::lock_guard lock(cluster_mutex_);
    return cluster_;
  }
  std::vector<stats::HistorySample> history() const override { return history_.samples(); }
  api::Readiness readiness() const override { return readiness_.load(); }
  std::string unready_reason() const override {
    std::lock_guard lock(unready_mutex_);
    return unready_reason_;
  }
  std::int64_t started_at_ms() const override { return started_at_ms_; }
  bool is_admin(const std::array<std::uint8_t, 16>& peer) const override;
  bool answers_to(std::string_view name) const override;
  Result<api::SemaphorePage> semaphores(std::string prefix, std::string after, std::size_t limit) override;
  Result<std::optional<api::SemaphoreDetail>> semaphore(std::string name) override;
  Result<api::SessionPage> sessions(std::uint64_t after, std::size_t limit) override;
  Result<KickOutcome> kick(std::uint64_t id, std::string reason) override;
  Result<std::string> metrics() override;

 private:
  struct Access {
    AllowList allowed;
    AllowList admin;
  };
  std::shared_ptr<const Access> access() const;
  // kUnavailable while starting, kShutdown while stopping; ok when ready.
  Status serving() const;

  LoopJobs& jobs_;
  const SemaphoreTable* table_ = nullptr;  // loop thread only (set before the loop runs)
  Dispatcher* dispatcher_ = nullptr;       // loop thread only
  const std::int64_t started_at_ms_;
  stats::PublishedSnapshot published_;  // thread-safe
  stats::History history_;              // thread-safe
  mutable std::mutex cluster_mutex_;
  std::optional<stats::ClusterFigures> cluster_;  // guarded by cluster_mutex_
  std::atomic<api::Readiness> readiness_{api::Readiness::kStarting};
  std::atomic<std::size_t> metrics_max_names_{1000};
  mutable std::mutex unready_mutex_;
  std::string unready_reason_;           // guarded by unready_mutex_
  std::vector<std::string> host_names_;  // set before the listener starts, then read only
  mutable std::mutex access_mutex_;
  std::shared_ptr<const auth::AuthTables> auth_;  // guarded by access_mutex_ (the pointer)
  auth::TokenVerifier* verifier_ = nullptr;       // guarded by access_mutex_
  std::shared_ptr<const Access> access_;          // guarded by access_mutex_ (the pointer; the lists are immutable)
};

}  // namespace netsem::server
