// Server (server.h): what the server shows outside the protocol. The status
// file (status_file.h renders it; here when it is written again, and from a
// child process so that no request waits for a large table), the figures
// published once a second for the HTTP threads, and what the service manager
// hears (STATUS=, the watchdog).
#include "server/server.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <optional>

#include "net/socket_options.h"
#include "server/forked_job.h"
#include "server/status_file.h"

namespace netsem::server {

void Server::publish_figures() {
  if (http_backend_ && dispatcher_) {
    http_backend_->publish(dispatcher_->stats_snapshot(), wall_clock_ms(), dispatcher_->cluster_figures());
  }
  if (http_backend_ && cluster_) http_backend_->set_unready_reason(cluster_->unready_reason());
}

void Server::arm_publish_timer() {
  publish_timer_.expires_after(std::chrono::seconds(1));
  publish_timer_.async_wait([this](const std::error_code& error) {
    if (error || stopping_) return;
    publish_figures();
    arm_publish_timer();
  });
}

std::string Server::service_status() const {
  std::error_code error;
  const auto endpoint = acceptor_.local_endpoint(error);
  return fmt::format("serving on {}, {} defined semaphores", error ? config_.bind_address : describe_peer(endpoint),
                     config_.semaphores.size());
}

void Server::arm_watchdog() {
  const auto interval = notify_.watchdog_interval();
  if (!interval || stopping_) return;
  watchdog_timer_.expires_after(*interval);
  watchdog_timer_.async_wait([this](const std::error_code& error) {
    if (error || stopping_) return;
    notify_.watchdog();
    arm_watchdog();
  });
}

void Server::arm_status_timer() {
  status_timer_.expires_after(std::chrono::milliseconds(config_.status_interval_ms));
  status_timer_.async_wait([this](const std::error_code& error) {
    if (error || stopping_) return;
    if (!status_job_ && (view_table().change_count() != status_written_change_ ||
                         shown_of(dispatcher_->cluster_figures()) != status_written_cluster_)) {
      write_status_file_in_background();
    }
    arm_status_timer();
  });
}

std::optional<Server::ClusterShown> Server::shown_of(const std::optional<stats::ClusterFigures>& figures) {
  if (!figures) return std::nullopt;
  return ClusterShown{figures->role,    figures->term,   figures->leader_id,
                      figures->members, figures->voters, figures->lag > 0};
}

void Server::write_status_file() {
  if (!dispatcher_) return;
  status_written_change_ = view_table().change_count();
  // In a cluster STATS's object there: no journal fields, the `cluster` object.
  const std::optional<stats::ClusterFigures> cluster = dispatcher_->cluster_figures();
  status_written_cluster_ = shown_of(cluster);
  if (auto status = netsem::server::write_status_file(config_.stats_dir, view_table(), dispatcher_->stats_snapshot(),
                                                      cluster ? &*cluster : nullptr);
      !status) {
    spdlog::error("status file: {}", status.to_string());
  }
}

void Server::write_status_file_in_background() {
  const std::uint64_t change = view_table().change_count();
  std::optional<stats::ClusterFigures> cluster = dispatcher_->cluster_figures();
  std::optional<ClusterShown> shown = shown_of(cluster);
  const auto started = std::chrono::steady_clock::now();
  auto job = ForkedJob::start(
      io_, "netsemd-status",
      // In the child, over its copy of the table and the figures as they are
      // now (the cluster's taken here: the child must not ask the Raft node,
      // whose lock another thread may have held at the fork).
      [this, figures = dispatcher_->stats_snapshot(), cluster = std::move(cluster)](std::string&) {
        return netsem::server::write_status_file(config_.stats_dir, view_table(), figures,
                                                 cluster ? &*cluster : nullptr);
      },
      [this, started](const Status& status, const std::string&) {
        status_job_.reset();
        if (!status) {
          spdlog::error("status file: {}", status.message());
          status_written_change_ = ~std::uint64_t{0};  // try again at the next tick
          return;
        }
        spdlog::debug(
            "status file written by a child in {} ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
      });
  spdlog::debug(
      "status file: forked in {} ms",
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count() /
          1000.0);
  if (!job) {
    spdlog::warn("status file: {}; written in the event loop instead", job.status().message());
    write_status_file();
    return;
  }
  status_written_change_ = change;
  status_written_cluster_ = std::move(shown);
  status_job_ = std::move(*job);
}

}  // namespace netsem::server
