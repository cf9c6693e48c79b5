// Server: accept loop with the allow-list and connection limit, the session
// registry, the end-of-turn flush (journal, then answers), the timers and the
// signal handling (stop and reload). What a request means is the
// dispatcher's (dispatcher.h).
#include "server/server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include <fcntl.h>
#include <sys/socket.h>

#include "cluster/peer_link.h"
#include "common/log.h"
#include "net/descriptors.h"
#include "net/socket_options.h"
#include "protocol/ace_codec.h"
#include "protocol/fields.h"
#include "protocol/names.h"
#include "server/admin_probe.h"
#include "server/forked_job.h"
#include "server/session.h"
#include "server/status_file.h"

namespace netsem::server {

namespace {

// One read of a readable socket takes at most this much.
constexpr std::size_t kReadBufferBytes = 64 << 10;
// How long a refused connection waits for the peer's first bytes before it
// is told why anyway: ACE's client sends `acquire:<name>|` as soon as it is
// connected, and it must never read a `*` line.
constexpr auto kRejectListenTime = std::chrono::milliseconds(250);
constexpr auto kRejectDrainTime = std::chrono::milliseconds(500);
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);
constexpr auto kCompactionRetryDelay = std::chrono::seconds(1);
constexpr auto kJournalRetryDelay = std::chrono::milliseconds(100);
constexpr std::string_view kLimitLine = "* ERR LIMIT too many connections\n";
constexpr std::string_view kPeerPrefix = "PEER ";

// A connection refused at accept. It first listens a moment for the dialect:
// a peer whose first bytes are `acquire:` speaks ACE and is closed without a
// word; any other peer, or one that has not decided within
// kRejectListenTime, gets the one `*` line. Then the sending side is shut and
// input discarded briefly, so the peer reads the line (or the end of the
// stream) instead of a reset. The whole life of a Rejection is bounded by
// kRejectListenTime + kRejectDrainTime, whatever the peer does.
//
// A probe (made with a PeerHandler: a connection over the limit from a
// cluster member's address) is counted, while it may be a peer link, in the
// count of the slots kept for probes or, when those are taken, in the
// refusals' (where it would be held while refused anyway): a first line
// `PEER ...` that arrives within kRejectListenTime is not refused, the
// socket goes to the handler, as a session hands over a peer link below the
// limit (a peer link is no session). It stops being a probe at once when its
// first bytes are not `PEER`, when its listening time ends, or when the
// server makes it give way to a newer probe (give_way: the oldest in a
// slot, when the refusals' room is full too): from then on it is refused
// like every connection over the limit, counted with the refusals, or
// closed at once when they have no room left, and counted in limited_total
// and logged (at that moment, where a connection refused at accept is at
// accept).
//
// An admin probe (made with an AdminHandler: a connection over the limit
// from admin_networks, admin_probe.h) is read, within the same listening
// time, to its first line: when opens_admin_probe takes it and the admin
// probes have room, the socket goes to the handler with everything read,
// to be served as a session of those few verbs; anything else is refused
// as above. A connection may be both (a member's host in admin_networks):
// a PEER line is a peer link's, any other first line is judged as an
// admin's.
}  // namespace

class Rejection : public std::enable_shared_from_this<Rejection> {
 public:
  using PeerHandler = std::function<void(UniqueFd fd, std::string line, std::string rest)>;
  // An admin probe's: `has_room` asked when its first line is taken, then
  // `begin` given the socket and every byte read from it.
  struct AdminHandler {
    std::function<bool()> has_room;
    std::function<void(UniqueFd fd, std::string read)> begin;
  };

  // A refusal, counted in `live`.
  Rejection(asio::ip::tcp::socket socket, std::string line, std::size_t& live)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), line_(std::move(line)), live_(&live) {
    ++*live_;
  }
  // A probe, counted in `probing` (the slots' count, or `rejecting` itself)
  // until it is one no more, then in `rejecting` while that is below
  // `max_rejecting`; once it shows it is neither a peer link nor an admin
  // probe, it is a connection refused for the limit: `refused` is called,
  // which counts and logs it as those refused at once are. `peer`, `admin`:
  // either may be empty, not both.
  Rejection(asio::ip::tcp::socket socket, std::string line, std::size_t& probing, PeerHandler peer, AdminHandler admin,
            std::size_t& rejecting, std::size_t max_rejecting, std::function<void()> refused)
      : Rejection(std::move(socket), std::move(line), probing) {
    peer_ = std::move(peer);
    admin_ = std::move(admin);
    rejecting_ = &rejecting;
    max_rejecting_ = max_rejecting;
    refused_ = std::move(refused);
  }
  ~Rejection() {
    if (live_ != nullptr) --*live_;
  }
  Rejection(const Rejection&) = delete;
  Rejection& operator=(const Rejection&) = delete;

  void start() {
    std::error_code ignored;
    socket_.non_blocking(true, ignored);
    arm_timer(kRejectListenTime);
    wait_readable();
  }

  // Whether it is a probe still: it may yet be a peer link or an admin's.
  bool probing() const { return listening_ && (peer_ || admin_.begin) && socket_.is_open(); }
  // A probe gives its place to a newer one: what it sent so far is taken as
  // a client's first bytes, and it listens for the rest of its time.
  void give_way() {
    if (!probing() || !stop_probing()) return;
    first_bytes_.resize(std::min(first_bytes_.size(), protocol::kAcePrefix.size()));
    decide_dialect();
  }

 private:
  // Moves the count from the probes' to the refusals', or closes the
  // socket when the refusals have no room; false when closed. Either way
  // it is a refusal for the limit.
  bool stop_probing() {
    peer_ = nullptr;
    admin_ = {};
    refused_();
    --*live_;
    if (*rejecting_ < max_rejecting_) {
      live_ = rejecting_;
      ++*live_;
      return true;
    }
    live_ = nullptr;
    close();
    return false;
  }
  void decide_dialect() {
    const auto dialect = protocol::detect_dialect(first_bytes_);
    if (dialect != protocol::Dialect::kUndecided) refuse(dialect == protocol::Dialect::kV1);
  }

  // Each arming gets its own phase: a completion that was already queued when
  // the timer was re-armed must not act on the new phase.
  void arm_timer(std::chrono::milliseconds after) {
    ++phase_;
    timer_.expires_after(after);
    timer_.async_wait([self = shared_from_this(), phase = phase_](const std::error_code& error) {
      if (error || phase != self->phase_ || !self->socket_.is_open()) return;
      if (self->listening_) {
        self->refuse(true);  // no dialect in time: a v1 peer waiting to be told
      } else {
        self->close();
      }
    });
  }
  void wait_readable() {
    socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](const std::error_code& error) {
      if (error || !self->socket_.is_open()) return;
      self->on_readable();
    });
  }
  void on_readable() {
    std::error_code error;
    std::size_t n = socket_.read_some(asio::buffer(sink_), error);
    if (error == asio::error::would_block || error == asio::error::try_again) {
      wait_readable();
      return;
    }
    if (error) {
      // End of input while listening: the peer will say no more, but one
      // that only shut down its sending side still reads. ACE never does
      // that before its `acquire:` is complete.
      if (listening_ && error == asio::error::eof) {
        refuse(true);
      } else if (probing()) {
        stop_probing();  // gone (reset) before it said what it is: no peer link
      }
      close();
      return;
    }
    if (probing()) {
      // Everything is kept while it may still be a peer's hello (at most
      // kMaxPeerHelloBytes and one read more) or an admin's first line (at
      // most kMaxLineBytes and one read more).
      first_bytes_.append(sink_.data(), n);
      const std::size_t known = std::min(first_bytes_.size(), kPeerPrefix.size());
      if (peer_ && first_bytes_.compare(0, known, kPeerPrefix, 0, known) == 0) {
        const std::size_t newline = first_bytes_.find('\n');
        if (newline != std::string::npos || first_bytes_.size() > cluster::kMaxPeerHelloBytes + 1) {
          hand_over(std::min(newline, first_bytes_.size()));
          return;
        }
        wait_readable();
        return;
      }
      if (admin_.begin && protocol::detect_dialect(first_bytes_) != protocol::Dialect::kAce) {
        const std::size_t newline = first_bytes_.find('\n');
        if (newline == std::string::npos && first_bytes_.size() <= protocol::kMaxLineBytes + 1) {
          wait_readable();
          return;
        }
        if (newline != std::string::npos && opens_admin_probe(std::string_view(first_bytes_).substr(0, newline)) &&
            admin_.has_room()) {
          hand_to_admin();
          return;
        }
      }
      // A client's first bytes: the dialect decides below.
      if (!stop_probing()) return;
      first_bytes_.resize(std::min(first_bytes_.size(), protocol::kAcePrefix.size()));
      n = 0;
    }
    if (listening_) {
      const std::size_t wanted = protocol::kAcePrefix.size() - first_bytes_.size();
      first_bytes_.append(sink_.data(), std::min(n, wanted));
      decide_dialect();
      if (!socket_.is_open()) return;
    }
    wait_readable();
  }
  // The first line (or more than any hello: the cluster refuses it) and
  // what came after it go to the peer handler with the socket.
  void hand_over(std::size_t end) {
    listening_ = false;
    timer_.cancel();
    std::string line = first_bytes_.substr(0, end);
    std::string rest = end < first_bytes_.size() ? first_bytes_.substr(end + 1) : std::string();
    first_bytes_ = std::string();
    std::error_code error;
    UniqueFd fd(socket_.release(error));
    if (error) return;  // the socket closes with the Rejection
    PeerHandler peer = std::move(peer_);
    peer(std::move(fd), std::move(line), std::move(rest));
  }
  // An admin's first line: the socket and all that was read go to the
  // admin handler.
  void hand_to_admin() {
    listening_ = false;
    timer_.cancel();
    std::string read = std::move(first_bytes_);
    first_bytes_ = std::string();
    std::error_code error;
    UniqueFd fd(socket_.release(error));
    if (error) return;  // the socket closes with the Rejection
    AdminHandler admin = std::move(admin_);
    peer_ = nullptr;
    admin.begin(std::move(fd), std::move(read));
  }
  // Ends the listening: the `*` line if `tell`, then the sending side shut
  // and input discarded until the drain time is up (a probe's in the
  // refusals' count, or none when they have no room).
  void refuse(bool tell) {
    const bool probe = probing();
    listening_ = false;
    std::error_code ignored;
    // A fresh socket's send buffer takes one short line whole.
    if (tell) socket_.write_some(asio::buffer(line_), ignored);
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    if (probe && !stop_probing()) return;
    arm_timer(kRejectDrainTime);
  }
  void close() {
    std::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  const std::string line_;
  std::size_t* live_;                 // the count it is in; null once closed for want of room
  PeerHandler peer_;                  // while the first bytes may be a peer's hello
  AdminHandler admin_;                // while they may be an admin probe's first line
  std::size_t* rejecting_ = nullptr;  // a probe's count once it is one no more
  std::size_t max_rejecting_ = 0;
  std::function<void()> refused_;  // a probe's, called when it is one no more
  std::string first_bytes_;        // at most the length of `acquire:` (of a hello, a line while probing)
  bool listening_ = true;
  std::uint32_t phase_ = 0;
  std::array<char, 512> sink_{};
};

namespace {

std::string describe_peer(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  // An IPv4 client of a dual-stack socket is an IPv4 client (as the allow
  // list takes it): 10.0.0.7:40112, not [::ffff:10.0.0.7]:40112.
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string() + ":" +
           std::to_string(endpoint.port());
  }
  if (address.is_v6()) return "[" + address.to_string() + "]:" + std::to_string(endpoint.port());
  return address.to_string() + ":" + std::to_string(endpoint.port());
}

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

// At EMFILE or ENFILE the pending peer cannot be accepted, and a level-
// triggered accept would report it again at once. The spare descriptor is
// given up for a moment to take the peer off the queue and tell it LIMIT
// (an ACE peer whose `acquire:` has already arrived is closed without a
// word). kFailed when even that failed: the caller retries later.
Server::SpareOutcome Server::refuse_with_spare() {
  spare_fd_.reset();
  UniqueFd peer(::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  const bool accepted = peer.valid();
  const bool nobody_waiting = !accepted && (errno == EAGAIN || errno == EWOULDBLOCK);
  if (accepted) {
    ++counters_.limited_total;
    std::array<char, 8> first{};
    const ssize_t n = ::recv(peer.get(), first.data(), first.size(), MSG_PEEK | MSG_DONTWAIT);
    const bool ace = n > 0 && protocol::detect_dialect(std::string_view(first.data(), static_cast<std::size_t>(n))) ==
                                  protocol::Dialect::kAce;
    if (!ace) ::send(peer.get(), kLimitLine.data(), kLimitLine.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(peer.get(), SHUT_WR);
    // Unread input would turn the close into a reset that can overtake the
    // line: discard what has arrived (a refused peer's first request).
    std::array<char, 4096> sink{};
    while (::recv(peer.get(), sink.data(), sink.size(), MSG_DONTWAIT) > 0) {
    }
    peer_logs_.log(peer_logs_.refused, "refused a connection: the process is out of descriptors");
  }
  // The peer's descriptor is the one the spare gave up: closed first, or
  // the spare could not be had back and the next peer would take the slot.
  peer.reset();
  spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!spare_fd_.valid()) return SpareOutcome::kFailed;
  if (accepted) return SpareOutcome::kRefused;
  return nobody_waiting ? SpareOutcome::kNobodyWaiting : SpareOutcome::kFailed;
}

void Server::accept_next() {
  if (stopping_) return;
  acceptor_.async_accept([this](const std::error_code& error, asio::ip::tcp::socket socket) {
    if (error == asio::error::operation_aborted || stopping_) return;
    if (error == asio::error::no_descriptors || error.value() == ENFILE) {
      switch (refuse_with_spare()) {
        case SpareOutcome::kRefused:
          accept_next();
          return;
        case SpareOutcome::kNobodyWaiting:
          // Out of descriptors, every accept() fails at once, peer or not:
          // wait for the next peer rather than poll.
          acceptor_.async_wait(asio::socket_base::wait_read, [this](const std::error_code& wait_error) {
            if (!wait_error && !stopping_) accept_next();
          });
          return;
        case SpareOutcome::kFailed:
          break;
      }
    }
    if (error) {
      // Out of descriptors (and no spare) or the like: retry a little later
      // instead of spinning; existing sessions carry on.
      peer_logs_.log(peer_logs_.accept_failed, "accept failed: {}", error.message());
      accept_retry_timer_.expires_after(kAcceptRetryDelay);
      accept_retry_timer_.async_wait([this](const std::error_code& timer_error) {
        if (!timer_error) accept_next();
      });
      return;
    }
    // A spare lost when even a refusal failed (another process took the
    // last file of the system's table, say) is taken back once a descriptor
    // is free again, or the next shortage could refuse no one.
    if (!spare_fd_.valid()) spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    on_accept(std::move(socket));
    accept_next();
    end_turn();
  });
}

void Server::on_accept(asio::ip::tcp::socket socket) {
  std::error_code error;
  const auto remote = socket.remote_endpoint(error);
  if (error) return;  // already gone
  const std::string peer = describe_peer(remote);
  const auto address = remote.address();
  const bool allowed = address.is_v4() ? config_.allowed_networks.allows_v4(address.to_v4().to_uint())
                                       : config_.allowed_networks.allows(address.to_v6().to_bytes());
  if (!allowed) {
    ++counters_.denied_total;
    peer_logs_.log(peer_logs_.denied, "denied connection from {}: not in allowed_networks", peer);
    reject(std::move(socket), "* ERR DENIED address " + address.to_string() + " is not allowed\n");
    return;
  }
  if (client_sessions() >= connection_limit_) {
    const auto address_bytes = address.is_v6()
                                   ? address.to_v6().to_bytes()
                                   : asio::ip::make_address_v6(asio::ip::v4_mapped, address.to_v4()).to_bytes();
    // An operator must see the server in the incident that filled it: a
    // connection from admin_networks is read to its first line, in the
    // refusals' room (where it would be held while refused anyway), and
    // served as an admin probe when that asks for the status
    // (admin_probe.h).
    const bool admin = config_.admin_networks.allows(address_bytes);
    // A cluster member's peer link is no session and must not be refused for
    // the clients' limit (its server's clients would go unanswered): a
    // connection from a member's address is read to its first line, in one
    // of the slots kept for that, before it is refused. When they are all
    // taken, the oldest gives way: a link sends its PEER line at once, so
    // only connections that say nothing (or not PEER) for longer than the
    // next few take to come are refused, never a link behind them.
    if (cluster_ && peer_probe_slots_ > 0 && cluster_->is_peer_host(address_bytes)) {
      // When the slots are taken, a newcomer is read in the refusals'
      // room rather than push out a connection that may be a link whose
      // PEER line is on its way; only when that room is full too does the
      // oldest in a slot give way.
      const bool room = probing_peers_ >= peer_probe_slots_ && rejecting_ < max_rejecting_;
      if (!room && probing_peers_ >= peer_probe_slots_) oldest_probe_gives_way();
      if (room || probing_peers_ < peer_probe_slots_) {
        configure_session_socket(socket, config_.session_timeout_ms);
        probe_first_line(std::move(socket), address_bytes, peer, /*in_slot=*/!room, /*link=*/true, admin);
        return;
      }
    }
    if (admin && rejecting_ < max_rejecting_) {
      configure_session_socket(socket, config_.session_timeout_ms);
      probe_first_line(std::move(socket), address_bytes, peer, /*in_slot=*/false, /*link=*/false, admin);
      return;
    }
    refused_for_the_limit(peer);
    reject(std::move(socket), std::string(kLimitLine));
    return;
  }
  configure_session_socket(socket, config_.session_timeout_ms);
  // The session's socket leaves Asio's reactor for the ReadySet (see ready_set.h).
  std::error_code release_error;
  UniqueFd fd(socket.release(release_error));
  if (release_error) {
    spdlog::warn("connection from {}: cannot take its socket: {}", peer, release_error.message());
    return;
  }
  begin_session(std::move(fd), address, peer, nullptr, {});
}

void Server::probe_first_line(asio::ip::tcp::socket socket, const std::array<std::uint8_t, 16>& address,
                              const std::string& peer, bool in_slot, bool link, bool admin) {
  Rejection::PeerHandler on_link;
  if (link) {
    on_link = [this, address, peer](UniqueFd fd, std::string line, std::string rest) {
      spdlog::debug("connection from {} over max_connections: a peer link", peer);
      hand_over_peer_link(std::move(fd), address, line, std::move(rest));
      end_turn();
    };
  }
  Rejection::AdminHandler on_admin;
  if (admin) {
    on_admin.has_room = [this] { return !stopping_ && admin_probes_.size() < kAdminProbes; };
    on_admin.begin = [this, address, peer](UniqueFd fd, std::string read) {
      begin_admin_probe(std::move(fd), address, peer, std::move(read));
      end_turn();
    };
  }
  auto probe = std::make_shared<Rejection>(
      std::move(socket), std::string(kLimitLine), in_slot ? probing_peers_ : rejecting_, std::move(on_link),
      std::move(on_admin), rejecting_, max_rejecting_, [this, peer] { refused_for_the_limit(peer); });
  if (in_slot) {
    std::erase_if(probes_, [](const std::weak_ptr<Rejection>& old) {
      const auto alive = old.lock();
      return !alive || !alive->probing();
    });
    probes_.push_back(probe);
  }
  probe->start();
}

void Server::oldest_probe_gives_way() {
  while (!probes_.empty()) {
    const auto oldest = probes_.front().lock();
    probes_.pop_front();
    if (oldest && oldest->probing()) {
      oldest->give_way();
      return;
    }
  }
}

std::shared_ptr<Session> Server::make_session(UniqueFd fd, const asio::ip::address& address, const std::string& peer) {
  ++counters_.connections_total;
  // The connection's key; on a single server the session's id too (on the
  // log the id comes with the OpenSession's apply).
  const SessionId key = next_session_id_++;
  // For the admin right (protocol 1.1): IPv6, or IPv4-mapped.
  const auto address_bytes = address.is_v6()
                                 ? address.to_v6().to_bytes()
                                 : asio::ip::make_address_v6(asio::ip::v4_mapped, address.to_v4()).to_bytes();
  auto session = std::make_shared<Session>(*this, *dispatcher_, peer_logs_, io_, *ready_, std::move(fd), key,
                                           cluster_ ? SessionId{0} : key, peer, address_bytes);
  sessions_.emplace(key, session);
  return session;
}

void Server::begin_session(UniqueFd fd, const asio::ip::address& address, const std::string& peer, SslPtr ssl,
                           std::string tls_subject) {
  auto session = make_session(std::move(fd), address, peer);
  if (ssl) session->use_tls(std::move(ssl), std::move(tls_subject));
  session->start();  // logs "session began"
}

void Server::begin_admin_probe(UniqueFd fd, const std::array<std::uint8_t, 16>& address, const std::string& peer,
                               std::string read) {
  if (stopping_) return;  // closed as it goes
  peer_logs_.log(peer_logs_.refused, "connection from {} over max_connections ({}): served as an admin probe", peer,
                 connection_limit_);
  auto session = make_session(std::move(fd), asio::ip::address_v6(address), peer);
  admin_probes_.push_back(session->key());
  session->make_admin_probe(std::move(read), std::chrono::steady_clock::now() + kAdminProbeTime);
  session->start();
}

void Server::refused_for_the_limit(const std::string& peer) {
  ++counters_.limited_total;
  if (connection_limit_ == config_.max_connections) {
    peer_logs_.log(peer_logs_.refused, "refused connection from {}: max_connections ({}) reached", peer,
                   config_.max_connections);
  } else {
    peer_logs_.log(peer_logs_.refused, "refused connection from {}: {} sessions, all the descriptor limit allows", peer,
                   connection_limit_);
  }
}

void Server::admin_probe_refused(const std::string& peer) {
  refused_for_the_limit(peer);
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

void Server::on_tls_accept(TlsListener::Connection connection) {
  if (stopping_) return;  // closed as it goes
  const std::string peer = describe_peer(connection.remote);
  const auto address = connection.remote.address();
  const bool allowed = address.is_v4() ? config_.allowed_networks.allows_v4(address.to_v4().to_uint())
                                       : config_.allowed_networks.allows(address.to_v6().to_bytes());
  if (!allowed) {
    ++counters_.denied_total;
    peer_logs_.log(peer_logs_.denied, "denied TLS connection from {}: not in allowed_networks", peer);
    tls_->refuse(std::move(connection), "* ERR DENIED address " + address.to_string() + " is not allowed\n");
    return;
  }
  if (client_sessions() >= connection_limit_) {
    ++counters_.limited_total;
    peer_logs_.log(peer_logs_.refused, "refused TLS connection from {}: {} sessions, the most allowed", peer,
                   connection_limit_);
    tls_->refuse(std::move(connection), std::string(kLimitLine));
    return;
  }
  begin_session(std::move(connection.fd), address, peer, std::move(connection.ssl), std::move(connection.subject));
}

void Server::reload_tls(const ServerConfig& loaded) {
  if (!tls_) {
    if (!loaded.tls_cert.empty()) spdlog::warn("SIGHUP: tls_cert is set; TLS starts after a restart");
    return;
  }
  if (loaded.tls_cert.empty() || loaded.tls_key.empty()) {
    spdlog::error("SIGHUP: tls_cert or tls_key is empty; TLS keeps the running certificates until a restart");
    return;
  }
  auto context = make_server_tls_context(loaded.tls_cert, loaded.tls_key, loaded.tls_client_ca);
  if (!context) {
    spdlog::error("SIGHUP: TLS: {}; keeping the running certificates", context.status().message());
    return;
  }
  tls_->set_context(std::move(*context));
  config_.tls_cert = loaded.tls_cert;
  config_.tls_key = loaded.tls_key;
  config_.tls_client_ca = loaded.tls_client_ca;
  spdlog::info("SIGHUP: TLS certificates read again from {} (client certificates {})", config_.tls_cert.string(),
               config_.tls_client_ca.empty() ? "not asked for" : "verified against " + config_.tls_client_ca.string());
}

void Server::reject(asio::ip::tcp::socket socket, std::string line) {
  if (rejecting_ >= max_rejecting_) return;  // the socket closes as it goes out of scope
  std::make_shared<Rejection>(std::move(socket), std::move(line), rejecting_)->start();
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

void Server::reload() {
  if (config_file_.empty()) {
    spdlog::info("SIGHUP: running on embedded defaults, no configuration file to reload");
    return;
  }
  // The loop answers nobody while a reload runs: its time is logged (it is
  // linear in the number of names: a few seconds for a million).
  const auto began = std::chrono::steady_clock::now();
  auto loaded = load_server_config(config_file_);
  if (!loaded) {
    spdlog::error("SIGHUP: {}; keeping the running configuration", loaded.status().message());
    return;
  }
  for (const auto& warning : loaded->warnings) spdlog::warn("{}", warning);
  for (const auto& [option, value] : overrides_) {
    const auto* spec = find_server_option(option);
    if (auto status = spec->apply(*spec, value, *loaded); !status) {
      spdlog::error("SIGHUP: {}; keeping the running configuration", status.message());  // valid at start
      return;
    }
  }
  for (const auto& name : dispatcher_->reconfigure(loaded->semaphores)) {
    spdlog::warn("semaphore {} is listed in [semaphores] but was created by CREATE; it stays a created semaphore",
                 escape_for_log(name));
  }
  for (const auto option : options_needing_restart(config_, *loaded)) {
    spdlog::warn("SIGHUP: {} changed; it takes effect after a restart", option);
  }
  config_.semaphores = std::move(loaded->semaphores);
  config_.allowed_networks = std::move(loaded->allowed_networks);
  config_.allowed_networks_text = std::move(loaded->allowed_networks_text);
  config_.admin_networks = std::move(loaded->admin_networks);
  config_.admin_networks_text = std::move(loaded->admin_networks_text);
  if (http_backend_) http_backend_->set_access(config_.allowed_networks, config_.admin_networks);
  reload_auth(*loaded);
  reload_tls(*loaded);
  config_.slow_wait_ms = loaded->slow_wait_ms;
  if (table_) table_->set_slow_wait(std::chrono::milliseconds(config_.slow_wait_ms));
  // On the log the leader replicates the limits (Reconfigure).
  if (cluster_) cluster_->configure(config_);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
  spdlog::info("SIGHUP: reloaded {} defined semaphores, allowed {}, admin {} ({} ms)", config_.semaphores.size(),
               config_.allowed_networks_text, config_.admin_networks_text, took.count());
}

void Server::reload_auth(ServerConfig& loaded) {
  config_.tokens_file = std::move(loaded.tokens_file);
  config_.ace_networks = std::move(loaded.ace_networks);
  config_.ace_networks_text = std::move(loaded.ace_networks_text);
  config_.ace_rights = std::move(loaded.ace_rights);
  config_.ace_rights_text = std::move(loaded.ace_rights_text);
  if (loaded.auth == config_.auth) return;
  const bool was_required = config_.auth.required();
  config_.auth = std::move(loaded.auth);
  verifier_->set_tokens(config_.auth.tokens);
  if (http_backend_) http_backend_->set_auth(config_.auth, verifier_.get());
  const std::size_t ended = dispatcher_->reauthorize(was_required);
  spdlog::info("SIGHUP: authentication {}: {} tokens, {} TLS subjects; {} sessions ended",
               config_.auth.required() ? "required" : "not required", config_.auth.tokens.size(),
               config_.auth.subjects.size(), ended);
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
