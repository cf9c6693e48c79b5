// Server (server.h): start() and its parts, in the order it runs them: the
// HTTP side, the client listener, TLS, then the journal (a single server,
// with the lease wait after a run that held permits) or the cluster runtime
// (a member of a cluster), and the plan of the descriptors between sessions,
// refusals, HTTP, TLS handshakes and peer links.
#include "server/server.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <thread>

#include "common/log.h"
#include "core/admin_probe.h"
#include "net/descriptors.h"
#include "net/socket_options.h"
#include "protocol/names.h"
#include "server/session.h"

namespace netsem::server {

namespace {

// One read of a readable socket takes at most this much.
constexpr std::size_t kReadBufferBytes = 64 << 10;

}  // namespace

// Work the other threads hand to the loop at once (from_threads_): the
// verifier's answers (at most its queue plus one) and established TLS
// connections (at most its handshakes in flight).
constexpr std::size_t kMaxFromThreads = 4096;

Status Server::start() {
  started_ = std::chrono::steady_clock::now();
  read_buffer_.resize(kReadBufferBytes);
  // Work the verifier's and the TLS listener's threads hand to the loop.
  from_threads_ = std::make_unique<LoopJobs>(io_, kMaxFromThreads, [this] { end_turn(); });
  if (auto status = from_threads_->start(); !status) return status;
  // Before HTTP, whose bearer tokens it checks too.
  verifier_ = std::make_unique<auth::TokenVerifier>();
  verifier_->set_tokens(config_.auth.tokens);
  if (auto status = start_http(); !status) return status;
  // What can fail for a taken port or a bad path, before the Raft node
  // starts: a cluster's first start bootstraps its Raft directory, and a
  // start that failed after that left the stored configuration behind
  // (newuser23 finding 4). Connections wait in the backlog until the loop
  // accepts (accept_next, below).
  if (auto status = start_listening(); !status) return status;
  if (auto status = start_tls(); !status) return status;

  if (config_.cluster.enabled) {
    if (auto status = start_cluster(); !status) return status;
    // The loop replica's first turn (the snapshot and log loaded at start)
    // may have failed it already: it serves nothing (main: exit 3).
    if (!failure_) return failure_;
  } else if (auto status = start_journal(); !status) {
    return status;
  }
  dispatcher_->set_started(started_);
  // The verifier's thread hands its answers to the loop through
  // from_threads_, never asio::post: the io_context runs with
  // ASIO_CONCURRENCY_HINT_UNSAFE (loop_jobs.h). Its queue (far above the
  // verifier's own bound) never refuses an answer; one posted while
  // stopping is dropped with its session.
  dispatcher_->set_token_verifier(verifier_.get(),
                                  [this](std::function<void()> work) { (void)from_threads_->post(std::move(work)); });
  if (config_.auth.required()) {
    spdlog::info("authentication required: {} tokens, {} TLS subjects (docs/security.md)", config_.auth.tokens.size(),
                 config_.auth.subjects.size());
  }

  dispatcher_->set_own_address(describe_peer(acceptor_.local_endpoint()));  // a single server's LEADER
  std::error_code error;
  auto ready = ReadySet::open(io_);
  if (!ready) return ready.status();
  ready_ = std::move(*ready);
  acceptor_.non_blocking(true, error);
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  signals_.add(SIGHUP);
  // Before "listening" is logged: a supervisor (and the tests) take that
  // line for a server that serves.
  if (auto status = plan_connections(); !status) return status;
  spdlog::info("netsemd listening on {} ({} defined semaphores, allowed {})", describe_peer(acceptor_.local_endpoint()),
               config_.semaphores.size(), config_.allowed_networks_text);

  wait_signals();
  // One round per batch of ready session sockets, one end_turn per round.
  ready_->start(
      [this](std::uint64_t id, std::uint32_t events) {
        const auto found = sessions_.find(id);
        if (found == sessions_.end()) return false;              // closed earlier in this round
        const std::shared_ptr<Session> session = found->second;  // alive through a close
        return session->on_ready(events);
      },
      [this] { end_turn(); });
  accept_next();
  write_status_file();
  arm_status_timer();
  arm_sync_timer();
  http_backend_->attach(view_table(), *dispatcher_);
  publish_figures();
  arm_publish_timer();
  http_backend_->set_readiness(api::Readiness::kReady);
  // Recovered, listening, serving (requests queue during a lease wait), as
  // /readyz says.
  notify_.ready(service_status());
  arm_watchdog();
  return Status::ok();
}

Status Server::start_listening() {
  std::error_code error;
  std::filesystem::create_directories(config_.stats_dir, error);
  if (error) {
    return Status(StatusCode::kIoError,
                  "cannot create stats_dir " + config_.stats_dir.string() + ": " + error.message());
  }
  const auto address = asio::ip::make_address(config_.bind_address, error);
  if (error) return Status(StatusCode::kInvalidArgument, "bad bind_address '" + config_.bind_address + "'");
  const asio::ip::tcp::endpoint endpoint(address, config_.bind_port);
  acceptor_.open(endpoint.protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_.bind(endpoint, error);
  // The port is bound before the journal's or the Raft directory's lock,
  // whose wait used to cover a server killed with -9 and started again at
  // once (kill returns before the killed process's exit closes its
  // listener): a port in use is tried again for up to 2 s before it is a
  // failed start.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (error == asio::error::address_in_use && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    error.clear();
    acceptor_.bind(endpoint, error);
  }
  if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return Status(StatusCode::kIoError, "cannot listen on " + describe_peer(endpoint) + ": " + error.message());
  }
  port_ = acceptor_.local_endpoint().port();
  return Status::ok();
}

Status Server::start_journal() {
  RecoveredState recovered;
  JournalOptions journal_options;
  journal_options.fsync = config_.fsync;
  journal_options.repair = repair_;
  auto journal = FileJournal::open(config_.data_dir, journal_options, recovered);
  if (!journal) return journal.status();
  journal_ = std::move(*journal);
  set_sequence_counter(journal_->sequence_counter());
  for (const auto& warning : recovered.warnings) spdlog::warn("{}", warning);
  for (const auto& loss : recovered.losses) spdlog::error("--repair: {}", loss);
  if (repair_ && recovered.losses.empty()) spdlog::info("--repair: the data directory had no damage to accept");

  table_ =
      std::make_unique<SemaphoreTable>(*journal_, TableLimits{config_.max_semaphores, config_.max_pending_per_session});
  table_->set_fence_floor(recovered.fence_floor);
  // Created semaphores first: they are durable user data, and a defined
  // limit of the same name must not silently replace them.
  for (const auto& [name, state] : recovered.created) {
    (void)table_->restore_created(name, state);
    // An older build took names the contract forbids (C1 controls): the
    // value is user data and stays, but no request can name it any more.
    if (protocol::check_name(name) != protocol::ErrorCode::kNone) {
      spdlog::warn(
          "created semaphore {} has a name this version refuses (a control character): it keeps its value and is "
          "listed, but requests naming it are answered BAD_NAME",
          escape_for_log(name));
    }
  }
  Completions none;  // no session exists yet
  for (const auto& name : table_->configure_defined(config_.semaphores, none)) {
    spdlog::warn("semaphore {} is listed in [semaphores] but was created by CREATE; it stays a created semaphore",
                 escape_for_log(name));
  }
  dispatcher_ = std::make_unique<Dispatcher>(
      *table_, static_cast<const JournalProgress&>(*this), config_, counters_, peer_logs_,
      [](const void*) { return Clock::now(); }, nullptr);
  spdlog::info("data directory {}: {} created semaphores, fences above {}", config_.data_dir.string(),
               recovered.created.size(), recovered.fence_floor);
  if (auto status = start_lease_wait(recovered.previous_run); !status) return status;
  return Status::ok();
}

Status Server::start_cluster() {
  // No journal: the log is durable. The loop replica is the table the
  // dispatcher reads; the leader replicates the configured limits.
  auto runtime = ClusterRuntime::start(io_, config_, repair_, ClusterRuntime::kMaxQueuedBytes, recover_raise_);
  if (!runtime) return runtime.status();
  if (auto checked = (*runtime)->check_stored_configuration(config_); !checked) {
    bad_configuration_ = true;
    return checked;
  }
  cluster_ = std::move(*runtime);
  dispatcher_ = std::make_unique<Dispatcher>(
      cluster_->replica(), *cluster_, cluster_->id(), config_, counters_, peer_logs_,
      [](const void*) { return Clock::now(); }, nullptr);
  cluster_->configure(config_);
  cluster_->set_callbacks(ClusterRuntime::Callbacks{
      .applied = [this](const replication::Entry& entry,
                        const replication::EntryResults& results) { dispatcher_->apply_results(entry, results); },
      .restoring = [this] { loads_before_restore_ = dispatcher_->hosted_loads(); },
      // The replica's table is a new object: what holds it looks again. The
      // hosted sessions the skipped entries changed unseen are closed.
      .restored =
          [this] {
            if (http_backend_) http_backend_->attach(view_table(), *dispatcher_);
            dispatcher_->reconcile_restored(loads_before_restore_);
            loads_before_restore_.clear();
          },
      .failed =
          [this](const Status& why) {
            failure_ = why;
            stop();
          },
      .end_turn = [this] { end_turn(); },
      .changed =
          [this] {
            if (http_backend_ && cluster_) http_backend_->set_unready_reason(cluster_->unready_reason());
          },
      .removed = [this] { stop(); },
  });
  return Status::ok();
}

Status Server::start_http() {
  // The queue bound: HTTP requests waiting for the loop beyond it are 503.
  constexpr std::size_t kMaxLoopQueries = 64;
  loop_jobs_ = std::make_unique<LoopJobs>(io_, kMaxLoopQueries, [this] { end_turn(); });
  if (auto status = loop_jobs_->start(); !status) return status;
  const auto started_wall =
      wall_clock_ms() -
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
  http_backend_ = std::make_unique<HttpBackend>(*loop_jobs_, started_wall);
  http_backend_->set_access(config_.allowed_networks, config_.admin_networks);
  http_backend_->set_auth(config_.auth, verifier_.get());
  http_backend_->set_host_names(config_.http_hosts);
  http_backend_->set_metrics_max_names(config_.metrics_max_names);
  if (!config_.http_enabled) {
    spdlog::info("HTTP off (http_enabled = off)");
    return Status::ok();
  }
  HttpBackend& backend = *http_backend_;
  auto listener = http::Listener::start(
      config_.http_address, config_.http_port, http::Limits{},
      [&backend](const api::Request& request) { return api::route(request, backend); },
      [&backend](const std::array<std::uint8_t, 16>& peer) { return backend.admits(peer); });
  if (!listener) {
    if (listener.status().code() == StatusCode::kInvalidArgument) return listener.status();
    spdlog::error("{}; serving the protocol without HTTP", listener.status().message());
    return Status::ok();
  }
  http_ = std::move(*listener);
  const bool v6 = config_.http_address.find(':') != std::string::npos;
  spdlog::info("HTTP on http://{}{}{}:{}/ (web page, /metrics, /api/v1; allowed {})", v6 ? "[" : "",
               config_.http_address, v6 ? "]" : "", http_->port(), config_.allowed_networks_text);
  return Status::ok();
}

Status Server::start_lease_wait(const journal_format::RunRecord& previous) {
  using journal_format::RunRecord;
  const std::chrono::milliseconds wait = config_.restart_lease_wait
                                             ? Dispatcher::lease_wait_after(previous, config_.session_timeout_ms)
                                             : std::chrono::milliseconds::zero();
  // The timeout this run's record carries covers the previous run's clients
  // too while their leases may run: a crash during the wait waits as long.
  recorded_timeout_ms_ = std::max<std::int64_t>(config_.session_timeout_ms, wait.count());
  // Before the server listens: a run that cannot record itself would look,
  // after a crash, like the run before it (perhaps stopped with nothing held).
  if (auto status = journal_->record_run({RunRecord::State::kRunning, recorded_timeout_ms_, 0}); !status) {
    return status;
  }
  if (wait.count() > 0) {
    dispatcher_->hold_grants_until(started_ + wait);
    arm_deadline_timer();
    spdlog::warn(
        "the previous run {}: granting nothing for {} ms, until its holders' leases have run out (requests queue "
        "meanwhile; restart_lease_wait, docs/durability.md)",
        previous.state == RunRecord::State::kRunning ? "did not stop cleanly (killed or crashed)"
                                                     : fmt::format("stopped with {} permits held", previous.held),
        wait.count());
  } else if (!config_.restart_lease_wait && previous.state != RunRecord::State::kNone) {
    spdlog::warn("restart_lease_wait = off: granting at once, whatever holders of the previous run still do");
  }
  return Status::ok();
}

Status Server::plan_connections() {
  // Everything the server keeps open is open now (journal, lock, listening
  // socket, Asio's reactor and signal pipe), plus the spare descriptor.
  spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const auto nofile = current_nofile_limit();
  if (!nofile) return nofile.status();
  const auto open_now = count_open_descriptors();
  if (!open_now) return open_now.status();
  // HTTP connections get at most a quarter of the descriptors left, up to
  // the listener's own limit, so that HTTP clients never take a protocol
  // session's descriptor.
  std::size_t kept_for_http = 0;
  if (http_) {
    const std::uint64_t fixed = static_cast<std::uint64_t>(*open_now) + kOwnFilesReserve;
    const std::uint64_t left = *nofile > fixed ? *nofile - fixed : 0;
    kept_for_http = static_cast<std::size_t>(std::min<std::uint64_t>(http::Limits{}.connections, left / 4));
    http_->limit_connections(static_cast<unsigned>(kept_for_http));
  }
  // And the TLS handshakes' (tls_listener.h), which are not sessions yet.
  const std::size_t kept_for_tls = tls_ ? TlsListener::kMaxHandshakes : 0;
  // And, in a cluster, the peer links: at most one from each other member
  // (a newer link from a server ends its older one), plus one connection
  // per other member being read to its first line while the sessions are at
  // their limit (probe_first_line; more are read in the refusals' room,
  // where they would be held while refused anyway): the links never take a
  // session's descriptor.
  const std::size_t others = cluster_ && !config_.cluster.servers.empty() ? config_.cluster.servers.size() - 1 : 0;
  peer_probe_slots_ = others;
  const std::size_t kept_for_peers = 2 * others;
  // And the admin probes' sessions (admin_probe.h), which are over the limit.
  auto plan = plan_descriptors(*nofile, *open_now, config_.max_connections,
                               kept_for_http + kept_for_tls + kept_for_peers + kAdminProbes);
  if (!plan) return plan.status();
  connection_limit_ = plan->sessions;
  max_rejecting_ = plan->rejecting;
  if (plan->limited) {
    spdlog::warn(
        "max_connections ({}) is above what the descriptor limit allows (RLIMIT_NOFILE {}, {} open, {} kept for "
        "netsemd's own files, {} for HTTP connections, {} for peer links, {} for admin probes, {} for refusals): at "
        "most {} sessions; raise the limit (ulimit -n, LimitNOFILE=) to serve more",
        config_.max_connections, *nofile, *open_now, kOwnFilesReserve, kept_for_http, kept_for_peers, kAdminProbes,
        plan->rejecting, plan->sessions);
  }
  return Status::ok();
}

Status Server::start_tls() {
  if (config_.tls_cert.empty()) {
    if (!config_.tls_key.empty() || !config_.tls_client_ca.empty()) {
      spdlog::warn("tls_key or tls_client_ca is set but tls_cert is not: TLS is off");
    }
    return Status::ok();
  }
  if (config_.tls_key.empty()) {
    return Status(StatusCode::kInvalidArgument, "tls_cert is set but tls_key is not: TLS needs both");
  }
  auto context = make_server_tls_context(config_.tls_cert, config_.tls_key, config_.tls_client_ca);
  if (!context) return context.status();
  auto listener = TlsListener::start(
      config_.bind_address, config_.tls_port, std::move(*context),
      std::chrono::milliseconds(config_.tls_handshake_timeout_ms), config_.session_timeout_ms,
      [this](TlsListener::Connection connection) {
        // From the TLS thread to the loop, through from_threads_ (never
        // asio::post: ASIO_CONCURRENCY_HINT_UNSAFE). Refused when too many
        // wait: the connection is closed as it goes.
        (void)from_threads_->post([this, connection = std::make_shared<TlsListener::Connection>(
                                             std::move(connection))] { on_tls_accept(std::move(*connection)); });
      });
  if (!listener) return listener.status();
  tls_ = std::move(*listener);
  const bool v6 = config_.bind_address.find(':') != std::string::npos;
  spdlog::info(
      "TLS on {}{}{}:{} (client certificates {})", v6 ? "[" : "", config_.bind_address, v6 ? "]" : "", tls_->port(),
      config_.tls_client_ca.empty() ? "not asked for" : "required, verified against " + config_.tls_client_ca.string());
  return Status::ok();
}

}  // namespace netsem::server
