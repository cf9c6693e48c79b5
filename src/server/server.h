// Server: netsemd on one Asio event loop. It owns the listening socket, the
// live sessions, the semaphore table, the journal and the dispatcher that
// answers the sessions' requests (dispatcher.h), and the timers
// (queued-request deadlines, status file, fsync); it handles SIGTERM/SIGINT
// (clean shutdown) and SIGHUP (reload). Sessions (session.h) see it only as
// their SessionHost; the dispatcher sees the journal only as JournalProgress.
//
// API: construct with a loaded configuration, start() (opens the data
// directory, binds, listens), then run the io_context. Every event handler
// ends its work with end_turn(): the journal is flushed before any answer of
// that turn is written, then every session with answers writes them in one
// go. That ordering is the durability promise ("recorded before the server
// answers"), and batching it per turn is what keeps the grant path cheap.
// The session sockets are watched through one level-triggered set
// (net/ready_set.h): a round serves every ready session, then ends the turn
// once.
//
// Thread safety: everything runs on the io_context's single thread.
//
// The member functions live in server.cc (the turn) and server_*.cc, one
// concern a file; server.cc's head paragraph says which holds what.
#pragma once

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/unique_fd.h"
#include "config/config.h"
#include "core/dispatcher.h"
#include "core/peer_logs.h"
#include "http/listener.h"
#include "journal/file_journal.h"
#include "net/ready_set.h"
#include "netsem/status.h"
#include "server/cluster_runtime.h"
#include "server/http_backend.h"
#include "server/loop_jobs.h"
#include "server/service_notify.h"
#include "server/session_host.h"
#include "server/tls_listener.h"
#include "stats/cluster_figures.h"
#include "table/semaphore_table.h"

namespace netsem::server {

class Rejection;  // rejection.h
class Session;
class ForkedJob;

// JournalProgress first: the dispatcher's calls to it need no this-adjusting thunk.
class Server final : private JournalProgress, public SessionHost {
 public:
  // `config_file` is re-read on SIGHUP; empty means embedded defaults (reload
  // then only logs that there is nothing to reload).
  Server(asio::io_context& io, ServerConfig config, std::filesystem::path config_file);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Before start(): accept damage in the data directory that start() would
  // otherwise refuse (netsemd --repair; see FileJournal::open).
  void set_repair(bool repair) { repair_ = repair; }
  // Before start(), in a cluster: force this server alone as the Raft
  // configuration and raise the fences by `raise_fences` (> 0) in its first
  // entry (netsemd --recover --raise-fences N; ClusterRuntime::start).
  void set_recover(std::uint64_t raise_fences) { recover_raise_ = raise_fences; }
  // Before start(): the options the command line set over the file (netsemd
  // --data-dir, --port, --log-level, ...) as (option, value) pairs, valid at
  // start. A reload applies them to the file it reads again, so that it
  // keeps them rather than warn that they changed (under systemd's unit,
  // which gives --data-dir, every reload warned that data_dir had changed).
  void set_overrides(std::vector<std::pair<std::string, std::string>> overrides) { overrides_ = std::move(overrides); }
  // Opens and locks the data directory, restores created semaphores and the
  // fence floor, binds and listens. kBusy when another netsemd holds the data
  // directory, kCorruption when it is damaged (the message names the file
  // and --repair), kIoError when the address cannot be bound.
  Status start();
  // The port actually bound (useful with bind_port = 0).
  std::uint16_t port() const { return port_; }
  // The TLS listener's port; 0 when TLS is off (tls_cert unset).
  std::uint16_t tls_port() const { return tls_ ? tls_->port() : 0; }
  // The HTTP listener's port; 0 when it is off or could not listen.
  std::uint16_t http_port() const { return http_ ? http_->port() : 0; }
  // Begins a clean shutdown: stop accepting, tell v1 sessions, close them,
  // write the status file, flush the journal. The io_context then runs out.
  void stop();
  // Why the server stopped by itself (ok after a requested stop): its
  // cluster replica could not follow the log (main exits with status 3).
  const Status& failure() const { return failure_; }
  // After a failed start(): whether it failed on the configuration, not on
  // the machine (the Raft directory's stored configuration has this server
  // at another address: ClusterRuntime::check_stored_configuration): exit 2.
  bool bad_configuration() const { return bad_configuration_; }
  // Re-reads the configuration file: [semaphores], allowed_networks and
  // admin_networks.
  void reload();

  // --- SessionHost ---
  void mark_dirty(std::shared_ptr<Session> session) override;
  void end_turn() override;
  void hold(std::shared_ptr<Session> session) override;
  void forget(SessionId key) override;
  bool takes_peer_links_from(const std::array<std::uint8_t, 16>& address) const override {
    return cluster_ != nullptr && cluster_->is_peer_host(address);
  }
  void hand_over_peer_link(UniqueFd fd, const std::array<std::uint8_t, 16>& address, std::string_view line,
                           std::string rest) override;
  void admin_probe_refused(const std::string& peer) override;
  // The cluster's runtime when [cluster] is configured (else null).
  const ClusterRuntime* cluster() const { return cluster_.get(); }
  // While the sessions' unwritten answers exceed max_output_bytes, closes
  // the session whose peer is not reading (its socket is full) with the most
  // unwritten, releasing its permits. Sessions whose answers are only this
  // turn's are never shed: the end of the turn writes them.
  void shed_output_if_over_cap() override;

 private:
  // --- JournalProgress (for the dispatcher) ---
  std::uint64_t answerable_sequence() const override {
    return journal_ ? journal_->answerable_sequence() : ~std::uint64_t{0};
  }
  bool ok() const override { return !journal_failing_; }
  stats::JournalCounters counters() const override {
    return journal_ ? journal_->counters() : stats::JournalCounters{};
  }
  std::uint64_t journal_pending_records() const { return sequence() - std::min(sequence(), answerable_sequence()); }

  // Records this run in the data directory and, when the previous run may
  // have left holders working under their leases, holds grants for one
  // session timeout (restart_lease_wait).
  Status start_lease_wait(const journal_format::RunRecord& previous);
  // start()'s stats_dir made and client listener bound (not accepting
  // yet), before the journal or the cluster: kIoError naming the address.
  Status start_listening();
  // start()'s single server: the journal opened, the table recovered, the
  // dispatcher over them, the lease wait.
  Status start_journal();
  // start()'s server of a cluster ([cluster]): no journal (the log is
  // durable); the cluster runtime (its node started), and the dispatcher in
  // cluster mode over its loop replica.
  Status start_cluster();
  // The table reads read: the single server's, or the loop replica's.
  // REQUIRES: after start_journal() or start_cluster().
  const SemaphoreTable& view_table() const { return table_ ? *table_ : cluster_->replica().table(); }
  Status plan_connections();
  void accept_next();
  // What refuse_with_spare() did: told a peer LIMIT, found none waiting
  // (accept() reports EMFILE before it looks at the queue), or failed.
  enum class SpareOutcome : std::uint8_t { kRefused, kNobodyWaiting, kFailed };
  SpareOutcome refuse_with_spare();
  void on_accept(asio::ip::tcp::socket socket);
  // The TLS listener (tls_listener.h), when tls_cert is set: its context
  // from the configured files, its thread started. kInvalidArgument for a
  // file that cannot be read or a missing tls_key, kIoError when it cannot
  // listen.
  Status start_tls();
  // An established TLS connection, posted by the TLS listener's thread:
  // refused (DENIED, LIMIT) like a plain one, or served as a session.
  void on_tls_accept(TlsListener::Connection connection);
  // SIGHUP: reads the TLS files of `loaded` again; on failure keeps the
  // running ones and logs an error.
  void reload_tls(const ServerConfig& loaded);
  // Makes and starts the session of an accepted connection; `ssl` set for
  // a TLS one.
  void begin_session(UniqueFd fd, const asio::ip::address& address, const std::string& peer, SslPtr ssl,
                     std::string tls_subject);
  void reject(asio::ip::tcp::socket socket, std::string line);
  // A connection while the sessions are at their limit, from a cluster
  // member's address (`link`) or from admin_networks (`admin`), read to its
  // first line: a peer link is handed over, an admin probe served
  // (begin_admin_probe), anything else told LIMIT. In one of the slots kept
  // for links (`in_slot`), or else in the refusals' room, where it would be
  // held while refused anyway.
  void probe_first_line(asio::ip::tcp::socket socket, const std::array<std::uint8_t, 16>& address,
                        const std::string& peer, bool in_slot, bool link, bool admin);
  // A session registered (counted in connections_total), not started.
  std::shared_ptr<Session> make_session(UniqueFd fd, const asio::ip::address& address, const std::string& peer);
  // An admin probe's session (admin_probe.h) over `fd`, beyond the limit,
  // with `read`, what its first line came with.
  void begin_admin_probe(UniqueFd fd, const std::array<std::uint8_t, 16>& address, const std::string& peer,
                         std::string read);
  // A connection refused for the limit: counted in limited_total, logged
  // (rate-limited).
  void refused_for_the_limit(const std::string& peer);
  // The sessions that count against the limit: all but the admin probes'.
  std::size_t client_sessions() const { return sessions_.size() - admin_probes_.size(); }
  // The oldest connection still being read in a slot as a possible peer
  // link is refused like any other over the limit, so that a newer one is
  // read (when the refusals' room is full too).
  void oldest_probe_gives_way();
  void wait_signals();
  void arm_deadline_timer();
  void on_deadline();
  // Every status_interval_ms: the status file is written again when a
  // semaphore's line changed or, in a cluster, the state its `cluster`
  // object shows (ClusterShown) did, since the last writing.
  void arm_status_timer();
  // Writes the status file in the event loop (at start and stop, when no
  // request can wait for it, and when no child can be forked).
  void write_status_file();
  // Writes it from a child process (ForkedJob), so that no request waits
  // while a large table is rendered; one child at a time.
  void write_status_file_in_background();
  void arm_sync_timer();
  // Compacts the journal when it asks for it: the snapshot is written by a
  // child process (ForkedJob), the short last steps in the event loop.
  void compact_if_due();
  // Logs a journal failure once, and its end with how long and how many
  // records waited; keeps a retry armed while records wait.
  void note_journal(const Status& status);
  void arm_journal_retry();
  // Moves the held sessions back to dirty_ when the journal has written
  // more since they were held.
  void release_held();
  void arm_log_report_timer();
  // The HTTP side (docs/operations.md): the loop queries, the backend and
  // the listener on threads of its own, first thing at start, so that
  // /healthz answers and /readyz says "starting" while the journal is
  // recovered. A listener that cannot listen is logged, and the protocol is
  // served without it.
  Status start_http();
  // Publishes the figures for the HTTP threads, once a second.
  void publish_figures();
  void arm_publish_timer();
  // Pings the service manager's watchdog from the loop (ServiceNotify).
  void arm_watchdog();
  // What STATUS= says while serving: the address and the defined names.
  std::string service_status() const;
  // Takes over the authentication options of a reloaded configuration:
  // the tables, tokens_file, ace_networks, ace_rights; open sessions follow
  // (Dispatcher::reauthorize).
  void reload_auth(ServerConfig& loaded);
  // The whole compaction in the event loop, when no child can be forked.
  void compact_in_loop();

  asio::io_context& io_;
  ServerConfig config_;
  std::filesystem::path config_file_;
  std::unique_ptr<FileJournal> journal_;
  // [cluster]: the node, the loop replica, the peer links (null on a single
  // server). Before the dispatcher, which submits to it and reads its replica.
  std::unique_ptr<ClusterRuntime> cluster_;
  std::unique_ptr<SemaphoreTable> table_;         // made by start(), once the journal is open
  std::unique_ptr<Dispatcher> dispatcher_;        // made by start(), with the table
  Status failure_;                                // failure()
  Dispatcher::HostedLoads loads_before_restore_;  // cluster: hosted sessions' loads as a snapshot comes
  // What other threads (the token verifier's, the TLS listener's) hand to
  // the loop; made by start(). Declared before verifier_, so it outlives it.
  std::unique_ptr<LoopJobs> from_threads_;
  // Checks AUTH tokens on its thread (made by start(); destroyed before the
  // dispatcher, so no check's answer outlives it).
  std::unique_ptr<auth::TokenVerifier> verifier_;
  std::unique_ptr<ReadySet> ready_;  // the session sockets (net/ready_set.h); made by start()
  asio::ip::tcp::acceptor acceptor_;
  asio::signal_set signals_;
  asio::steady_timer deadline_timer_;
  std::optional<std::chrono::steady_clock::time_point> deadline_armed_;
  asio::steady_timer status_timer_;
  asio::steady_timer sync_timer_;
  asio::steady_timer accept_retry_timer_;
  asio::steady_timer journal_retry_timer_;
  asio::steady_timer log_report_timer_;        // writes suppressed counts when a flood stops
  asio::steady_timer publish_timer_;           // publishes the figures for HTTP
  std::unique_ptr<LoopJobs> loop_jobs_;        // HTTP threads' queries; made by start_http()
  std::unique_ptr<HttpBackend> http_backend_;  // made by start_http()
  std::unique_ptr<http::Listener> http_;       // null when http_enabled is off or it could not listen
  std::unique_ptr<TlsListener> tls_;           // null when TLS is off
  bool log_report_armed_ = false;
  ServiceNotify notify_;  // systemd: READY, RELOADING, STOPPING, WATCHDOG
  asio::steady_timer watchdog_timer_;
  PeerLogs peer_logs_;
  std::uint64_t status_written_change_ = ~std::uint64_t{0};
  // In a cluster, what of the cluster's state the status file's `cluster`
  // object showed at its last writing: a change of it alone (an election on
  // an idle cluster, a member added, a follower caught up) rewrites the file
  // at the next tick, as a change of the table does. Its indexes are
  // written as they are then, but do not call for a writing by themselves
  // (every PING of a session in a cluster moves them).
  struct ClusterShown {
    std::string role;
    std::uint64_t term = 0;
    std::uint64_t leader_id = 0;
    std::uint64_t members = 0;
    std::uint64_t voters = 0;
    bool behind = false;  // lag > 0
    friend bool operator==(const ClusterShown&, const ClusterShown&) = default;
  };
  static std::optional<ClusterShown> shown_of(const std::optional<stats::ClusterFigures>& figures);
  std::optional<ClusterShown> status_written_cluster_;
  std::unique_ptr<ForkedJob> status_job_;      // the child writing the status file, if any
  std::unique_ptr<ForkedJob> compaction_job_;  // the child writing a journal snapshot, if any

  std::unordered_map<SessionId, std::shared_ptr<Session>> sessions_;
  std::vector<std::shared_ptr<Session>> dirty_;
  std::vector<std::shared_ptr<Session>> flushing_;  // dirty_ of the turn being written
  std::vector<std::shared_ptr<Session>> held_;      // answers waiting for the journal
  std::uint64_t held_released_at_ = 0;              // answerable sequence at the last release_held
  bool journal_failing_ = false;
  bool journal_retry_armed_ = false;
  std::chrono::steady_clock::time_point journal_failed_at_{};
  std::uint64_t journal_waited_records_ = 0;  // the most records waiting during the failure
  SessionId next_session_id_ = 1;
  std::size_t rejecting_ = 0;  // connections being refused (DENIED/LIMIT, or silently for ACE)
  // What the descriptors allow (see descriptors.h); set by start().
  std::size_t connection_limit_ = 0;
  std::size_t max_rejecting_ = 0;
  // Connections from members' addresses over the limit being read to their
  // first line in the slots kept for that, and the most at once: one per
  // other member (plan_connections keeps their descriptors, and those of the
  // peer links, out of the sessions'); the oldest first, for
  // oldest_probe_gives_way. More are read in the refusals' room (rejecting_).
  std::size_t probing_peers_ = 0;
  std::size_t peer_probe_slots_ = 0;
  std::deque<std::weak_ptr<Rejection>> probes_;
  // The keys of the admin probes' sessions (at most kAdminProbes), until
  // they are forgotten: beyond the limit (client_sessions()).
  std::vector<SessionId> admin_probes_;
  UniqueFd spare_fd_;  // given up at EMFILE to refuse one peer
  ServerCounters counters_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point next_compaction_attempt_{};
  std::uint16_t port_ = 0;
  bool stopping_ = false;
  // The session timeout this run records in the data directory's run file:
  // its own, or the previous run's lease wait when longer.
  std::int64_t recorded_timeout_ms_ = 0;
  bool repair_ = false;
  std::uint64_t recover_raise_ = 0;                             // set_recover
  bool bad_configuration_ = false;                              // bad_configuration()
  std::vector<std::pair<std::string, std::string>> overrides_;  // set_overrides
};

}  // namespace netsem::server
