// Server: the session registry, the end-of-turn flush (journal, then
// answers), the timers of the turn (deadlines, journal retry and sync,
// compaction), the signal handling and the stop. What a request means is the
// dispatcher's (dispatcher.h). The rest of the class lives beside it, one
// concern a file:
//   server_start.cc   start() and its parts: the listener, the journal or the
//                     cluster, HTTP, TLS, the lease wait, the descriptor plan;
//   server_accept.cc  the accept loop: the allow-list, the connection limit,
//                     the refusals and probes (a Rejection each, rejection.h),
//                     the sessions' and admin probes' start;
//   server_status.cc  what it shows outside the protocol: the status file,
//                     the figures for HTTP, the service manager's status;
//   server_reload.cc  SIGHUP: the configuration, authentication and TLS read
//                     again.
// The hot path (end_turn and what it calls each turn) stays in this file.
#include "server/server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>

#include "common/log.h"
#include "server/forked_job.h"
#include "server/session.h"

namespace netsem::server {

namespace {

constexpr auto kCompactionRetryDelay = std::chrono::seconds(1);
constexpr auto kJournalRetryDelay = std::chrono::milliseconds(100);

}  // namespace

Server::Server(asio::io_context& io, ServerConfig config, std::filesystem::path config_file)
    : SessionHost(counters_.output_bytes, config.max_output_bytes),
      io_(io),
      config_(std::move(config)),
      config_file_(std::move(config_file)),
      acceptor_(io),
      signals_(io),
      deadline_timer_(io),
      status_timer_(io),
      sync_timer_(io),
      accept_retry_timer_(io),
      journal_retry_timer_(io),
      log_report_timer_(io),
      publish_timer_(io),
      watchdog_timer_(io) {
  peer_logs_.set_on_logged([this] { arm_log_report_timer(); });
}

Server::~Server() {
  // The raft thread first: it wakes the loop.
  if (cluster_) cluster_->stop();
  // The TLS thread first: it posts to the loop.
  if (tls_) tls_->stop();
  // The HTTP threads: their handlers may wait on the loop jobs (and check
  // bearer tokens with the verifier).
  if (loop_jobs_) loop_jobs_->close();
  if (http_) http_->stop();
  // The verifier's thread, which posts its answers to the loop too.
  verifier_.reset();
  if (from_threads_) from_threads_->close();
}

void Server::wait_signals() {
  signals_.async_wait([this](const std::error_code& error, int signal) {
    if (error) return;
    if (signal == SIGHUP) {
      notify_.reloading();
      reload();
      notify_.ready(service_status());
      wait_signals();
    } else {
      spdlog::info("signal {}: shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      stop();
    }
    end_turn();
  });
}

void Server::stop() {
  if (stopping_) return;
  stopping_ = true;
  notify_.stopping(fmt::format("stopping: closing {} sessions", sessions_.size()));
  watchdog_timer_.cancel();
  // HTTP first: handlers waiting for a loop query are answered 503 now (the
  // loop will run no more of them), then the listener's threads are joined.
  if (http_backend_) http_backend_->set_readiness(api::Readiness::kStopping);
  if (loop_jobs_) loop_jobs_->close();
  if (http_) http_->stop();
  publish_timer_.cancel();
  std::error_code ignored;
  acceptor_.close(ignored);
  if (tls_) tls_->stop();  // handshakes in progress are dropped
  if (from_threads_) from_threads_->close();
  // Back to the default actions: a second SIGTERM or SIGINT during the
  // shutdown ends the process at once.
  signals_.clear(ignored);
  signals_.cancel(ignored);
  accept_retry_timer_.cancel();
  log_report_timer_.cancel();
  std::vector<std::shared_ptr<Session>> live;
  live.reserve(sessions_.size());
  for (const auto& [id, session] : sessions_) live.push_back(session);
  spdlog::info("closing {} sessions", live.size());
  // Counted before the sessions end: their holders may work on under their
  // leases, which the next start waits for.
  const std::uint64_t held = table_ ? table_->stats().held : 0;
  // A stop during the lease wait keeps the run recorded as running: the
  // previous run's holders may still be at work, so the next start waits too.
  const bool lease_waiting = table_ && table_->grants_held();
  // No grants from here on: a stopping server hands out no permit.
  if (dispatcher_) dispatcher_->begin_shutdown();
  for (const auto& session : live) session->shut_down();
  if (dispatcher_) dispatcher_->finish_shutdown();  // the status file shows every permit back
  // After the sessions' end lines: what the rate limits held back is counted.
  peer_logs_.for_each([](RateLimitedLog& log) { log.flush_all(); });
  end_turn();
  // The set's wait ends with the last session (forget()), so the loop runs out.
  if (sessions_.empty() && ready_) ready_->stop();
  status_job_.reset();  // a child still writing is killed: the last word is written here
  if (compaction_job_) {
    compaction_job_.reset();
    journal_->abort_compaction();  // the journal as it is holds everything
  }
  write_status_file();
  if (journal_) {
    // The proof of how many records are durable lets the next start refuse
    // a journal cut short; only after a successful sync.
    auto status = journal_->sync();
    if (status) status = journal_->write_proof();
    if (status && !lease_waiting) {
      status = journal_->record_run({journal_format::RunRecord::State::kStopped, recorded_timeout_ms_, held});
    }
    if (!status) spdlog::error("journal: {}", status.to_string());
  }
  deadline_timer_.cancel();
  status_timer_.cancel();
  sync_timer_.cancel();
  // The node stops once the sessions' closes are applied (their permits
  // handed on at once), or after two election timeouts (then the log's
  // session expiry ends them).
  if (cluster_) cluster_->stop_when_drained(std::chrono::milliseconds(2 * config_.cluster.election_timeout_ms));
}

void Server::hand_over_peer_link(UniqueFd fd, const std::array<std::uint8_t, 16>& address, std::string_view line,
                                 std::string rest) {
  if (!cluster_ || stopping_) return;
  cluster_->accept_peer(std::move(fd), asio::ip::address_v6(address), line, std::move(rest));
}

void Server::arm_log_report_timer() {
  if (log_report_armed_ || stopping_) return;
  std::optional<std::chrono::steady_clock::time_point> due;
  peer_logs_.for_each([&](RateLimitedLog& log) {
    if (const auto at = log.report_due(); at && (!due || *at < *due)) due = at;
  });
  if (!due) return;
  log_report_armed_ = true;
  log_report_timer_.expires_at(*due);
  log_report_timer_.async_wait([this](const std::error_code& error) {
    log_report_armed_ = false;
    if (error) return;
    const auto now = std::chrono::steady_clock::now();
    peer_logs_.for_each([&](RateLimitedLog& log) { log.flush(now); });
    arm_log_report_timer();
  });
}

void Server::mark_dirty(std::shared_ptr<Session> session) {
  dirty_.push_back(std::move(session));
}

void Server::end_turn() {
  for (;;) {
    // Recorded before answered: an answer that depends on journal records
    // (SessionState::holds) goes out only once they are written (and under
    // fsync = always, synced); every other answer goes out now, even while
    // the journal cannot write. Each pass, since writing one session can end
    // it and grant others (new records).
    if (journal_ && journal_->answerable_sequence() < journal_->sequence()) note_journal(journal_->flush());
    release_held();
    if (dirty_.empty()) break;
    flushing_.swap(dirty_);
    for (const auto& session : flushing_) session->flush();
    flushing_.clear();
  }
  if (dispatcher_) dispatcher_->begin_turn();  // the next turn's answers depend only on its own records
  if (dispatcher_) arm_deadline_timer();
  compact_if_due();
}

void Server::note_journal(const Status& status) {
  const std::uint64_t waiting = journal_pending_records();
  if (!status) {
    if (!journal_failing_) {
      journal_failing_ = true;
      journal_failed_at_ = std::chrono::steady_clock::now();
      journal_waited_records_ = 0;
      spdlog::error(
          "journal: {}; answers that depend on unwritten records wait (other answers go on), retrying every {} ms",
          status.to_string(), kJournalRetryDelay.count());
    }
  } else if (journal_failing_ && waiting == 0) {
    journal_failing_ = false;
    spdlog::info(
        "journal: written again after {} ms; {} records had waited",
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - journal_failed_at_)
            .count(),
        journal_waited_records_);
  }
  journal_waited_records_ = std::max(journal_waited_records_, waiting);
  if (waiting != 0) arm_journal_retry();
}

void Server::arm_journal_retry() {
  if (journal_retry_armed_ || stopping_) return;
  journal_retry_armed_ = true;
  journal_retry_timer_.expires_after(kJournalRetryDelay);
  journal_retry_timer_.async_wait([this](const std::error_code& error) {
    journal_retry_armed_ = false;
    if (!error) end_turn();
  });
}

void Server::hold(std::shared_ptr<Session> session) {
  if (session->held()) return;
  // Sessions that closed while held need not wait for the journal to go.
  if (held_.size() >= 1024 && held_.size() % 1024 == 0) {
    std::erase_if(held_, [](const std::shared_ptr<Session>& s) {
      if (!s->closed()) return false;
      s->set_held(false);
      return true;
    });
  }
  session->set_held(true);
  held_.push_back(std::move(session));
}

void Server::release_held() {
  if (held_.empty()) return;
  const std::uint64_t answerable = answerable_sequence();
  if (answerable <= held_released_at_) return;
  held_released_at_ = answerable;
  std::vector<std::shared_ptr<Session>> held;
  held.swap(held_);
  for (const auto& session : held) {
    session->set_held(false);
    session->mark_dirty();  // still held: flush() holds it again
  }
}

void Server::forget(SessionId key) {
  sessions_.erase(key);
  std::erase(admin_probes_, key);
  // Stopping: the set's wait ends with the last session, so the loop runs out.
  if (stopping_ && sessions_.empty() && ready_) ready_->stop();
}

void Server::shed_output_if_over_cap() {
  while (counters_.output_bytes > config_.max_output_bytes) {
    // A linear scan, but only while over the cap, and each pass closes the
    // largest backlog: a flood of non-readers pays it, the grant path not.
    std::shared_ptr<Session> largest;  // kept alive through its close
    for (const auto& [id, session] : sessions_) {
      if (session->closed() || !session->write_waiting()) continue;
      if (!largest || session->accounted_output() > largest->accounted_output()) largest = session;
    }
    if (largest == nullptr) return;
    ++counters_.shed_total;
    peer_logs_.log(peer_logs_.overflow,
                   "session {} ({}): closed, the largest of the unread answers ({} bytes) when all sessions' reached "
                   "max_output_bytes ({})",
                   largest->id(), largest->peer(), largest->accounted_output(), config_.max_output_bytes);
    largest->close_now(stats::EndCause::kShed);
  }
}

void Server::arm_deadline_timer() {
  const auto next = dispatcher_->next_deadline();
  if (!next || (deadline_armed_ && *deadline_armed_ <= *next) || stopping_) return;
  deadline_armed_ = *next;
  deadline_timer_.expires_at(*next);
  deadline_timer_.async_wait([this](const std::error_code& error) {
    if (error) return;
    deadline_armed_.reset();
    dispatcher_->expire();
    end_turn();
  });
}

void Server::arm_sync_timer() {
  // Every policy: under everysec the fsync; under every one the proof of
  // what is durable (the fences file), so that a journal cut short is
  // detected down to about the last second.
  sync_timer_.expires_after(std::chrono::seconds(1));
  sync_timer_.async_wait([this](const std::error_code& error) {
    if (error || stopping_ || !journal_) return;
    Status status = Status::ok();
    if (config_.fsync == FsyncPolicy::kEverySec) status = journal_->sync();
    if (status) status = journal_->write_proof();
    if (!status) spdlog::error("journal: {}", status.to_string());
    arm_sync_timer();
  });
}

void Server::compact_if_due() {
  if (!journal_ || compaction_job_ || stopping_ || !journal_->wants_compaction()) return;
  // A failing disk must not turn every turn into a snapshot attempt.
  const auto now = std::chrono::steady_clock::now();
  if (now < next_compaction_attempt_) return;
  next_compaction_attempt_ = now + kCompactionRetryDelay;
  const std::uint64_t generation = journal_->begin_compaction();
  auto job = ForkedJob::start(
      io_, "netsemd-compact",
      // In the child, over its copy of the table as it is at the begin.
      [this, generation](std::string& report) {
        std::uint64_t records = 0;
        const Status status = journal_->write_snapshot_body(
            generation, [this](const auto& visit) { table_->for_each_created(visit); }, records);
        report = std::to_string(records);
        return status;
      },
      [this, now](const Status& status, const std::string& report) {
        compaction_job_.reset();
        std::uint64_t records = 0;
        const auto parsed = std::from_chars(report.data(), report.data() + report.size(), records);
        Status finished = status;
        if (finished && (parsed.ec != std::errc() || parsed.ptr != report.data() + report.size())) {
          finished = Status(StatusCode::kInternal, "the child's report is not a count: " + report);
        }
        const auto finishing = std::chrono::steady_clock::now();
        if (!finished) {
          journal_->abort_compaction();
        } else {
          finished = journal_->finish_compaction(records);
        }
        if (!finished) {
          spdlog::error("journal compaction: {}", finished.message());
          return;
        }
        const auto ended = std::chrono::steady_clock::now();
        spdlog::info(
            "journal compacted ({} semaphores) in {} ms, the snapshot written by a child; the event loop spent {} ms "
            "on the finish",
            records, std::chrono::duration_cast<std::chrono::milliseconds>(ended - now).count(),
            std::chrono::duration_cast<std::chrono::milliseconds>(ended - finishing).count());
      });
  spdlog::debug(
      "journal compaction: forked in {} ms",
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - now).count() / 1000.0);
  if (!job) {
    journal_->abort_compaction();
    spdlog::warn("journal compaction: {}; compacting in the event loop instead", job.status().message());
    compact_in_loop();
    return;
  }
  compaction_job_ = std::move(*job);
}

void Server::compact_in_loop() {
  std::map<std::string, CreatedState> state;
  table_->for_each_created(
      [&](std::string_view name, const CreatedState& created) { state.emplace(std::string(name), created); });
  if (auto status = journal_->compact(state); !status) spdlog::error("journal compaction: {}", status.to_string());
}

}  // namespace netsem::server
