// ClusterRuntime: what netsemd runs on the replicated log when its
// configuration has a [cluster] section (issue 16, docs/replication.md "The
// servers"). It owns the cluster node (src/cluster: RaftNode, the raft
// thread's replica, forwarding, resends, the leader's duties), the loop
// replica the dispatcher reads, the peer link to the leader (PeerLinkClient,
// the node's Forwarder) and the leader's side of the followers' links
// (PeerLinkReceiver), and it is the dispatcher's CommandSink.
//
// The raft thread hands every entry it applied and every snapshot it
// restored to a queue under a mutex and writes an eventfd (the same for the
// node's wake callback); the event loop watches the eventfd and, in one
// turn, applies the queued events in order to the loop replica (kApplied:
// decode_entry, apply_entry, ClusterNode::applied, then the `applied`
// callback with the results, which the server passes to
// Dispatcher::apply_results; kRestored: restore, then `restored`), ticks the
// node and ends the turn. The queue is bounded (start's max_queued_bytes): a
// loop that falls that far behind stops the server, loudly, rather than
// skip an entry. Not asio::post: netsemd's io_context runs with
// ASIO_CONCURRENCY_HINT_UNSAFE, so no other thread may touch it (as
// loop_jobs.h). A steady timer ticks the node again at the time tick()
// returns.
//
// API (loop thread): start(io, config), then set_callbacks() (which applies
// what the start queued: the snapshot and log replayed), submit() (the
// dispatcher's), configure() at start and reload, accept_peer() for a
// connection whose first line is `PEER ...`, status(), stop().
//
// The members' client addresses (where a follower's peer link goes, which
// hosts may open one) are the configuration's `server.N` lines overridden
// by the replicated members (SetMember: a server added at run time is in no
// other server's file); the leader seeds the replicated members with the
// servers of its `server.N` lines that are in the Raft configuration, and
// takes back (RemoveMember) those of servers in no configuration.
//
// Thread safety: everything on the loop thread but the raft thread's sink
// and wake, which only push under the mutex and write the eventfd.
//
// The member functions live in cluster_runtime.cc (the hot path) and
// cluster_runtime_*.cc, one concern a file; cluster_runtime.cc's head
// paragraph says which holds what.
#pragma once

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/cluster_node.h"
#include "cluster/log_clock.h"
#include "cluster/peer_link.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "config/config.h"
#include "core/command_sink.h"
#include "netsem/status.h"
#include "replication/state_machine.h"
#include "server/recover_files.h"

namespace netsem::server {

class ClusterRuntime final : public CommandSink {
 public:
  struct Callbacks {
    // The loop replica applied `entry` with `results` (Dispatcher::apply_results).
    std::function<void(const replication::Entry& entry, const replication::EntryResults& results)> applied;
    // The loop replica is about to be replaced by a snapshot (what the
    // hosted sessions hold is read now, for `restored`).
    std::function<void()> restoring;
    // The loop replica was replaced by a snapshot (its table is a new object).
    std::function<void()> restored;
    // The loop replica cannot follow the log (it refused an entry or a
    // snapshot the raft thread's replica took): it would diverge, so the
    // server stops, loudly.
    std::function<void(const Status& why)> failed;
    // The end of a turn this runtime began (Server::end_turn).
    std::function<void()> end_turn;
    // The node's role, term or leader changed (logged): readiness may have.
    std::function<void()> changed;
    // This server was removed from the cluster's configuration (logged, at
    // warning): it serves nothing more, so the server stops cleanly (exit 0,
    // which a systemd Restart=on-failure leaves stopped).
    std::function<void()> removed;
  };

  // Starts the node of `config.cluster` (REQUIRES: enabled, self() set): the
  // Raft data directory (cluster.data_dir, or <data_dir>/raft) is created if
  // missing, a pristine one bootstraps with the `server.N` lines. RaftNode's
  // errors (kIoError, kCorruption ...), kIoError for the directory or the
  // eventfd.
  // `repair` (netsemd --repair): a torn last write of the Raft log is
  // dropped instead of refused (docs/replication.md, "What a node stores").
  // `max_queued_bytes`: the most bytes of applied entries and snapshots
  // the raft thread may leave waiting for the loop (a loop that stopped
  // turning); past it nothing more is queued and the loop's next turn fails
  // the server (Callbacks::failed, exit 3) instead of growing without bound
  // or skipping an entry: on restart the replica replays them from the log.
  // `recover_raise` (netsemd --recover --raise-fences N), when not 0:
  // refused (kNotFound) when the Raft directory does not exist; else this
  // server alone is forced as the configuration (cluster::ClusterOptions::
  // recover) and the fences are raised by N in the first entry it leads
  // with. The raise owed is written first to kRaiseFile in the Raft
  // directory and removed once applied: a start that finds it there (one
  // that stopped before the raise) raises them in its first term too.
  static constexpr std::size_t kMaxQueuedBytes = std::size_t{256} << 20;
  // The record it leaves, kRecordFile, refuses a later --recover once the
  // configuration changed, and makes it a no-op until then (recover_files.h).
  static constexpr const char* kRaiseFile = server::kRaiseFile;
  static constexpr const char* kRecordFile = server::kRecordFile;
  static Result<std::unique_ptr<ClusterRuntime>> start(asio::io_context& io, const ServerConfig& config,
                                                       bool repair = false,
                                                       std::size_t max_queued_bytes = kMaxQueuedBytes,
                                                       std::uint64_t recover_raise = 0);
  ~ClusterRuntime() override;
  ClusterRuntime(const ClusterRuntime&) = delete;

  // The Raft configuration the data directory holds (loaded at start)
  // against `config`'s server.N lines (ids and Raft addresses). The stored
  // one wins, as etcd's data directory wins over --initial-cluster: each
  // difference is logged (warning), with how to change the members. When
  // the stored configuration has this server at another Raft address than
  // its server.N line (where it listens and what it tells the others), the
  // others would never reach it: kInvalidArgument saying so (netsemd exits
  // 2). OK, nothing logged, when they agree or nothing is stored yet (join
  // = on, not added yet).
  Status check_stored_configuration(const ServerConfig& config) const;
  ClusterRuntime& operator=(const ClusterRuntime&) = delete;

  // The loop replica: what the dispatcher reads.
  const replication::StateMachine& replica() const { return replica_; }
  // Sets the callbacks and applies what is queued (the log replayed at start).
  void set_callbacks(Callbacks callbacks);

  // CommandSink: a hosted session's command, to ClusterNode::submit.
  void submit(replication::Command command) override;
  // CommandSink: the leader's client address (ClusterStatus), "" if none.
  std::string leader_client_address() const override;

  // The defined semaphores and the session timeout to replicate (start,
  // reload); the leader proposes a change at once. At a reload on a server
  // that does not lead, each difference from the replicated configuration
  // is logged (warning): it takes effect only if this server leads.
  void configure(const ServerConfig& config);

  // A connection whose first line (without its "\n") is `line`, from
  // `remote`, with `rest` read past it: a follower's peer link when
  // check_peer_hello accepts its hello and it proves the cluster secret
  // (PeerLinkReceiver; its entries go to accept_forwarded); a leader's word
  // that this server was removed (check_removal_notice: it stops,
  // Callbacks::removed, once no leader spoke to it for an election timeout,
  // unless it is in no configuration yet or a newer one holds it); a secret
  // check (answered with a proof); else closed (logged).
  void accept_peer(UniqueFd fd, const asio::ip::address& remote, std::string_view line, std::string rest);

  // Whether `address` (IPv6 or IPv4-mapped) is the host of another
  // configured server (one whose first line `PEER ...` is a peer link's).
  bool is_peer_host(const std::array<std::uint8_t, 16>& address) const;

  // CommandSink: CLUSTER STATUS's JSON and CLUSTER ADD / REMOVE (leader
  // only). ADD: the new server asked whether it holds the cluster secret
  // (a challenge it answers with an HMAC proof, cluster::ask_peer_line;
  // refused, kInvalidArgument, when it answers otherwise), then SetMember (its client address, replicated),
  // then RaftNode::add_server (a spare), then assign voter (libraft waits
  // until it caught up); REMOVE: RaftNode::remove_server, then the
  // address taken back (take_back_addresses). `done` runs on the loop
  // thread, never inside the call.
  // ADD of a server that does not catch up (libraft gives up after 5 s
  // without progress): the spare is removed again, `done` gets kTimeout.
  // ADD of a spare at the same Raft address (an ADD its leader did not
  // finish) promotes it.
  std::string cluster_status_json() const override;
  void change_membership(MembershipChange change, std::function<void(Status)> done) override;
  // CommandSink: CLUSTER FENCES (leader only): proposes RaiseFences with
  // this server's id and a nonce of its own; `done` gets the new last fence
  // once the loop replica applied it (kLimit when the state machine
  // refused it), or kCancelled (outcome unknown) when this server stops
  // leading, or the term changes, before it was applied. On the loop
  // thread, never inside the call.
  void raise_fences(std::uint64_t by, std::function<void(Result<std::uint64_t>)> done) override;

  cluster::ClusterStatus status() const;
  // Why this member should get no clients now, for /readyz; "" when it
  // should: no leader known (a leaderless cluster, a removed or cut-off
  // server, which answer nothing that needs the log), "no leader known for
  // 12 s"; or its loop replica has not applied, for 1 s or more, an index it
  // knew to be committed (catching up). Loop thread.
  std::string unready_reason();
  // CommandSink: status() as STATS and /metrics show it, the applied index
  // the loop replica's.
  stats::ClusterFigures cluster_figures() const override;
  // This server's id.
  std::uint64_t id() const { return id_; }

  // Stops the node (its raft thread), the links, the timer and the eventfd
  // watch, so that the io_context can run out. Idempotent.
  void stop();
  // A clean stop: stop() once every command submitted so far was applied
  // here (the sessions' closes are in the log, their permits handed on at
  // once rather than at the log's session expiry), or after `within`.
  void stop_when_drained(std::chrono::milliseconds within);

 private:
  ClusterRuntime(asio::io_context& io, const ServerConfig& config);
  // The commit index, and the last index this server's loop replica reflects
  // (STATS' and CLUSTER STATUS' commit_index and applied_index).
  std::pair<std::uint64_t, std::uint64_t> commit_and_applied(const cluster::ClusterStatus& s) const;
  // Raft thread: queue the event / the wake, write the eventfd.
  void push(std::optional<cluster::ReplicaEvent> event);
  // Any thread: runs `job` on the loop thread, in the next turn.
  void post(std::function<void()> job);
  void watch();
  // Loop thread: applies the queued events, ticks, ends the turn.
  void run_queued();
  // The loop replica cannot follow the log: logs it, stops applying, tells the server.
  void fail(const Status& why);
  // This server was removed from the configuration at `index` (`how`: how
  // it learned it): logs it once and tells the server (Callbacks::removed).
  void removed_from_cluster(std::uint64_t index, const std::string& how);
  // Whether the leader's word `told` is ignored, given the node's status
  // `now` (logged): this server is in no configuration yet, or a newer one
  // than the removal holds it (it was added back).
  bool ignores_removal(const cluster::RemovalNotice& told, const cluster::ClusterStatus& now) const;
  // As leader, once the removal of `id` committed: tells that server so
  // (cluster::peer_removal_notice), as libraft 0.15 replicates nothing more
  // to it. Best effort: a server that does not get it goes on as a
  // candidate until it is stopped (docs/replication.md).
  void tell_removed(std::uint64_t id);
  void tick();
  // Log time now (cluster::LogClock, never behind the loop replica's).
  std::int64_t log_now();
  // Milliseconds since a leader was last known, given the node's status `s`
  // (0 when it names one).
  std::int64_t leaderless_ms(const cluster::ClusterStatus& s) const;
  // OK when `now` says this server leads; else why a leader's request
  // (CLUSTER ADD, REMOVE, FENCES) cannot be done here: no leader, or which one.
  Status leads_now(const cluster::ClusterStatus& now) const;
  void arm_tick(std::int64_t at_ms);

  // What a refusal of a peer line on the client port refused (a key of
  // refusal_logs_, with the source's host).
  // kLinkFrame: a set-up link closed for a frame that did not open (or a
  // malformed one).
  enum class Refused { kRemovalNotice, kSecretCheck, kLinkHello, kLinkSetUp, kLinkProof, kLinkFrame };
  static constexpr std::size_t kRefusedKinds = 6;
  // Its label in netsem_cluster_peer_lines_refused_total{kind="..."}.
  static std::string_view refused_name(Refused kind);
  // Logs `message` (a refusal of a line a member's host sent, which it may
  // send at will) as a warning through a LogRateLimit of its kind from
  // `host` (one line per kRefusalLogWindow): the first at once; those it
  // suppresses are counted and the last of them logged once the window is
  // over, with the count ("... (and N more from H in the last 10 s)",
  // refusal_timer_), so that none goes unsaid.
  void log_refusal(const std::string& host, Refused kind, std::string message);
  // Writes the counts of the windows over at `now` (all of them when `all`,
  // at stop) and arms refusal_timer_ for the next.
  void flush_refusals(std::chrono::steady_clock::time_point now, bool all);
  struct RefusalLog;
  // Writes `count` refusals `log` suppressed from `from`, with its last.
  void report_refusals(const std::string& from, RefusalLog& log, std::uint64_t count);
  static constexpr std::chrono::seconds kRefusalLogWindow{10};
  struct RefusalLog {
    LogRateLimit limit{1, kRefusalLogWindow};
    std::string last;  // the last refusal it suppressed
  };

  // The members' client addresses: the configuration's `server.N` lines,
  // each replaced by the replicated member's (SetMember) when there is one;
  // what the peer links connect to and check hellos against.
  void refresh_members();
  // As leader: SetMember for every server of the Raft configuration that
  // this server's `server.N` lines name and the replicated members lack.
  void seed_members(const cluster::ClusterStatus& now);
  // As leader: RemoveMember (ClusterNode::propose_as_leader) for every
  // replicated member whose id is in no configuration and no change in
  // progress here (changing_): an ADD refused or given up, a REMOVE answered
  // TIMEOUT that took effect. Why it cannot undo an ADD: the .cc.
  void take_back_addresses(const cluster::ClusterStatus& now);
  // change_membership(), once the server to add answered the secret check
  // (`secret_checked`: then everything is checked again, as the leadership
  // and the configuration may have changed meanwhile).
  void change_membership(MembershipChange change, std::function<void(Status)> done, bool secret_checked);
  // Why the answer (cluster::ask_peer_line) to the secret challenge of an
  // ADD of `change` (sent by `leader` with `nonce`) refuses it; OK when it
  // may go on: a proof of `secret` by the server of change.id
  // (cluster::verify_secret_proof), or no connection at all (a server not
  // started yet is added as before: it does not catch up, and the ADD ends
  // in kTimeout).
  static Status secret_check_refusal(const MembershipChange& change, std::string_view secret, std::uint64_t leader,
                                     std::string_view nonce, const Result<std::string>& answer);
  // As leader: assign spare `id` voter. When libraft gives up waiting for
  // it to catch up (kTimeout), removes it again (and its member): `done`
  // gets kTimeout either way, saying whether it stays a spare.
  void promote(std::uint64_t id, std::function<void(Status)> done);

  asio::io_context& io_;
  std::uint64_t id_ = 0;
  // [cluster] election_timeout_ms: CLUSTER STATUS's `reachable`; how long a
  // removed server hears from no leader before it stops (tick).
  std::int64_t election_timeout_ms_ = 0;
  std::string secret_;
  std::string data_dir_;  // the Raft data directory
  // Since when no leader is known (unset: one is), kept by tick(); and for
  // unready_reason() a commit index seen with when (not yet applied then).
  std::optional<std::chrono::steady_clock::time_point> leaderless_since_ = std::chrono::steady_clock::now();
  std::pair<std::uint64_t, std::chrono::steady_clock::time_point> commit_mark_{0, {}};
  std::map<std::uint64_t, std::string> configured_;        // the server.N lines
  std::map<std::uint64_t, std::string> client_addresses_;  // configured_ + the replicated members
  std::uint64_t seeded_term_ = 0;                          // the term seed_members() last submitted in
  std::map<std::uint64_t, std::string> seeded_;            // what it submitted then
  std::set<std::uint64_t> changing_;  // ids of an ADD or REMOVE in progress here (until its `done`)
  // The CLUSTER FENCES proposed here and not yet applied: nonce -> the term
  // proposed in and its `done`; the last nonce (random at start, so that a
  // raise of an earlier run replayed from the log matches none).
  std::map<std::uint64_t, std::pair<std::uint64_t, std::function<void(Result<std::uint64_t>)>>> raises_;
  std::uint64_t raise_nonce_ = 0;
  // The fence raise a --recover owes (kRaiseFile), until applied: its
  // nonce (0: none) and amount.
  std::uint64_t recover_nonce_ = 0;
  std::uint64_t recover_raise_ = 0;
  // A --recover found the configuration forced already (its record): the
  // start made no force.
  bool recover_repeated_ = false;
  // The SetMembers of each id the loop replica applied (counted since start),
  // and take_back_addresses()'s proposals in taken_back_term_: id -> that
  // count then (a RemoveMember is proposed again after another SetMember).
  std::map<std::uint64_t, std::uint64_t> member_sets_;
  std::map<std::uint64_t, std::uint64_t> taken_back_;
  std::uint64_t taken_back_term_ = 0;
  replication::StateMachine replica_;  // the loop replica
  cluster::LogClock log_clock_;        // log time, as this server would stamp it
  Callbacks callbacks_;
  bool attached_ = false;
  bool stopped_ = false;
  bool failed_ = false;   // the loop replica refused an entry or a snapshot: nothing more is applied
  bool removed_ = false;  // removed_from_cluster() ran
  // The leader's word that this server was removed (accept_peer): tick()
  // stops the server once no leader has spoken to it for an election
  // timeout, unless a newer configuration holds it.
  std::optional<cluster::RemovalNotice> told_removed_;

  UniqueFd event_fd_;
  std::optional<asio::posix::stream_descriptor> watcher_;
  std::mutex mutex_;
  std::vector<cluster::ReplicaEvent> queue_;  // guarded by mutex_
  std::size_t queued_bytes_ = 0;              // guarded by mutex_: queue_'s event bytes
  std::size_t max_queued_bytes_ = kMaxQueuedBytes;
  std::uint64_t overflow_index_ = 0;         // guarded by mutex_: the first event not queued (0: none)
  std::vector<std::function<void()>> jobs_;  // guarded by mutex_
  // guarded by mutex_: the eventfd was written since the loop last took the
  // queue, so a push need not write it again (the raft thread applies a
  // batch's commands one by one: one wake per batch, not one per command).
  bool wake_sent_ = false;

  // The role, term and leader last logged.
  raft::Role seen_role_ = raft::Role::kUnavailable;
  std::uint64_t seen_term_ = 0;
  std::uint64_t seen_leader_ = 0;

  asio::steady_timer tick_timer_;
  asio::steady_timer drain_timer_;
  asio::steady_timer refusal_timer_;  // flush_refusals
  // log_refusal's windows by source host and kind: few, as only a member's
  // host's lines reach accept_peer.
  std::map<std::pair<std::string, Refused>, RefusalLog> refusal_logs_;
  // Every refusal log_refusal was given since start, by kind (the figures).
  std::array<std::uint64_t, kRefusedKinds> refused_counts_{};
  bool refusal_timer_armed_ = false;
  bool draining_ = false;  // stop_when_drained() was called
  std::optional<std::int64_t> tick_armed_ms_;
  // Declared before the node: the node's Forwarder outlives it.
  std::unique_ptr<cluster::PeerLinkClient> forwarder_;
  std::vector<std::shared_ptr<cluster::PeerLinkReceiver>> receivers_;
  std::unique_ptr<cluster::ClusterNode> node_;
};

}  // namespace netsem::server
