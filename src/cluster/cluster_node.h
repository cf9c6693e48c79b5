// ClusterNode: the node netsemd runs on the replicated log (issue 16,
// docs/replication.md "The cluster node"). It starts a raft::RaftNode whose
// state machine is the raft thread's replica (ReplicaAdapter), takes the
// commands of the sessions this server hosts and gets them into the log (by
// proposing them itself when it leads, or by handing them to a Forwarder for
// the leader when it follows), keeps each one pending until the loop says it
// was applied, and sends it again when it may have been lost (a new leader,
// a proposal refused for not leading, or no apply within 2 x the election
// timeout; the state machine's host/seq/nonce dedupe makes a second copy of
// an applied command change nothing). As leader it also does the leader's
// duties: TouchAll first in each term it leads (behind a pending
// RaiseFences of netsemd --recover, ClusterOptions::first_raise), then
// Reconfigure when the
// replicated limits or session timeout differ from this server's
// configuration, then AdvanceTime whenever the log time reaches the loop
// replica's next_expiry_ms().
//
// API, from the server's event loop:
//   start(options)            the node and its raft thread; entries applied on
//                             the raft thread's replica reach `options.sink`
//   submit(command)           a command of a hosted session, into the log
//   propose_as_leader(command) a command only this leader decides, once
//   accept_forwarded(bytes)   a follower's commands (a Forwarder's payload)
//   applied(entry)            after the loop applied an entry on its replica
//   tick(now, loop_replica)   the leader's duties and the resends; returns
//                             when to call it again
//   set_configuration(...)    the limits and session timeout to replicate
//   status()                  role, term, leader, indexes, lag, counters
//
// Thread safety: everything but the sink, the wake callback and raft() is
// called on one thread (the loop's; "loop thread" below), never from a
// callback of the raft thread. The raft thread does not wait for the loop:
// it hands events to the sink and leaves its proposal outcomes and role
// changes in a mailbox (guarded by a mutex held only to push or swap) that
// tick() reads.
//
// REQUIRES: the process ignores SIGPIPE (netsemd does): libuv writes to
// the peers without MSG_NOSIGNAL, and a peer that closes its end would
// otherwise kill the process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluster/replica_adapter.h"
#include "netsem/status.h"
#include "raft/raft_node.h"
#include "replication/entry.h"
#include "replication/state_machine.h"
#include "stats/histogram.h"

namespace netsem::cluster {

// The link from a follower to the leader (the server's peer link over TCP,
// docs/replication.md "Forwarding to the leader"). The leader's side hands
// what arrives to its ClusterNode::accept_forwarded.
class Forwarder {
 public:
  virtual ~Forwarder() = default;
  // Sends `entry` (encode_entry of the commands; its time is unused: the
  // leader stamps its own) to the server `leader_id`. Called on the loop
  // thread; must not block. It may drop the entry (no link, the server
  // refused it): the node sends pending commands again after a leader change
  // or 2 x election timeout without their apply.
  virtual void forward(std::uint64_t leader_id, std::string entry) = 0;
};

// One way a server's configuration differs from the replicated one (the
// defined semaphores' limits, the session timeout: what a Reconfigure
// sets). In a cluster the leader's file wins (docs/replication.md,
// "Configuration"): a follower's differences change nothing until it leads,
// and a new leader's change the cluster's; both are logged, at warning.
struct ConfigurationDifference {
  std::string name;                        // a [semaphores] name; "" for session_timeout_ms
  std::optional<std::int64_t> replicated;  // the cluster's; nullopt: no such defined semaphore there
  std::optional<std::int64_t> configured;  // this server's; nullopt: not in its [semaphores]
  bool created = false;                    // the cluster has `name` as a semaphore created by CREATE (it stays one)
};

// The differences between `replica`'s configuration and `limits` (any
// order) with `session_timeout_ms`: session_timeout_ms first, then the
// semaphores in byte order of names. None when they agree. Lists the
// replica's table (linear in its names).
std::vector<ConfigurationDifference> configuration_differences(
    const replication::StateMachine& replica, const std::vector<std::pair<std::string, std::int64_t>>& limits,
    std::int64_t session_timeout_ms);

// One difference in words, for the log: "[semaphores] lock: 1 in the
// cluster, 2 in this server's file", "[semaphores] x: not defined in the
// cluster, 3 in this server's file", "[semaphores] y: 4 in the cluster, not
// in this server's file", "session_timeout_ms: 15000 in the cluster, 3000 in
// this server's file" (a name escaped as the log writes names).
std::string describe(const ConfigurationDifference& difference);

struct ClusterOptions {
  std::uint64_t id = 0;      // this server, > 0
  std::string raft_address;  // "a.b.c.d:port": where RaftNode listens and peers reach it
  // When set, "a.b.c.d": where RaftNode listens instead, on raft_address's
  // port (raft::RaftOptions::bind_address).
  std::string raft_bind_address;
  // netsemd --repair: a failing last batch of the open segment (a torn
  // write) is dropped instead of refused (raft::RaftOptions::repair).
  bool repair = false;
  // netsemd --recover: this server alone forced as the configuration before
  // the node starts (raft::RaftOptions::recover; `bootstrap` ignored).
  bool recover = false;
  std::function<Result<bool>(const raft::RecoverPlan&)> before_recover;  // raft::RaftOptions::before_recover
  std::uint64_t min_term = 0;                                            // raft::RaftOptions::min_term
  // Not 0 (netsemd --recover --raise-fences N, and each start after it
  // until applied): the first entry of the first term this node leads in
  // this run is RaiseFences{first_raise, id, first_raise_nonce} followed by
  // TouchAll, so that no grant of this leader comes before the raise; and
  // so on in each term it leads until the loop applied it (applied()).
  std::uint64_t first_raise = 0;
  std::uint64_t first_raise_nonce = 0;
  // raft::RaftOptions::exit_on_write_failure: netsemd sets 3.
  int exit_on_write_failure = 0;
  std::string data_dir;  // must exist: RaftNode's log and snapshots
  // The first configuration, written to a pristine data directory only
  // (raft::RaftOptions::bootstrap).
  std::vector<raft::ServerInfo> bootstrap;
  // The Raft port's checks (raft::RaftOptions::known_servers and
  // allow_peer): the `server.N` lines (a server that joins has no
  // configuration yet), and raft_allowed_networks.
  std::vector<raft::ServerInfo> known_raft_servers;
  std::function<bool(std::uint32_t ipv4_host_order)> allow_raft_peer;
  // The servers' client addresses by id (the `server.N` lines), for status()
  // until the replicated members (SetMember) name them.
  std::map<std::uint64_t, std::string> client_addresses;
  std::chrono::milliseconds election_timeout{1000};
  std::chrono::milliseconds heartbeat_timeout{100};
  std::size_t max_batch = 1024;
  std::chrono::microseconds group_commit{0};  // raft::RaftOptions::group_commit
  unsigned snapshot_threshold = 8192;
  unsigned snapshot_trailing = 2048;
  // The table's limits: the same on every replica (the loop replica's too).
  server::TableLimits limits;
  // Log time in milliseconds (0 .. replication::kMaxLogTimeMs): a LogClock
  // (log_clock.h) in netsemd, a test's clock in tests. Read on the loop thread when
  // this node, as leader, stamps an entry.
  std::function<std::int64_t()> clock;
  // Receives every entry applied and snapshot restored by the raft thread's
  // replica, in order (ReplicaSink: must not block).
  ReplicaSink sink;
  // Optional: called on the raft thread when tick() has something to do (a
  // role change, a proposal's outcome). Must not block: post to the loop.
  std::function<void()> wake;
  // The link to the leader; nullptr: a follower keeps its commands pending
  // until it leads itself. Must outlive the node.
  Forwarder* forwarder = nullptr;
};

struct ClusterStatus {
  raft::Role role = raft::Role::kUnavailable;
  std::uint64_t term = 0;
  std::uint64_t leader_id = 0;        // 0: no known leader
  std::string leader_address;         // its Raft address
  std::string leader_client_address;  // its client address: the replicated members', else the options'; "" if unknown
  std::uint64_t commit_index = 0;
  std::uint64_t raft_applied = 0;               // the raft thread's replica's last index
  std::uint64_t loop_applied = 0;               // the last index the loop said it applied
  std::uint64_t lag = 0;                        // committed entries the loop has not applied (status())
  std::uint64_t last_index = 0;                 // the last entry in this node's log
  std::vector<raft::ServerInfo> configuration;  // the Raft configuration (members and roles)
  // On the leader: each other member's match index (raft::NodeStatus).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> match_indexes;
  // raft::NodeStatus's: the committed configuration's index, the index of
  // the one that removed this server (0: none), and each other member's
  // milliseconds since its last Raft message (-1: none in this run).
  std::uint64_t configuration_index = 0;
  std::uint64_t removed_at = 0;
  std::int64_t leader_heard_ms = -1;
  std::vector<std::pair<std::uint64_t, std::int64_t>> last_contact_ms;
  std::size_t pending = 0;       // submitted, not yet applied
  std::uint64_t submitted = 0;   // commands submitted
  std::uint64_t proposed = 0;    // entries this node proposed to RaftNode (its own and forwarded)
  std::uint64_t forwarded = 0;   // entries handed to the Forwarder
  std::uint64_t resent = 0;      // commands sent again
  std::uint64_t accepted = 0;    // forwarded entries accepted (as leader)
  std::uint64_t refused = 0;     // commands the state machine refused (dropped)
  std::uint64_t touch_alls = 0;  // leader duties proposed
  std::uint64_t advances = 0;
  std::uint64_t reconfigures = 0;
  std::string failure;  // RaftNode's: why it stopped applying, if it did
  // RaftNode's, as leader: each batch's commit time (µs) and commands.
  stats::Histogram commit_us;
  stats::Histogram batch_commands;
  std::uint64_t commit_pushes = 0;                // RaftNode's barriers that told the followers of a commit at once
  raft::PortRefusals raft_connections_refused{};  // RaftNode's: the Raft port's refusals by reason (NodeStatus)
};

class ClusterNode {
 public:
  // Starts RaftNode over a new ReplicaAdapter (raft::RaftNode::start's
  // errors; kInvalidArgument for a missing clock). The sink may be called
  // before this returns (a snapshot and the log replayed at start).
  static Result<std::unique_ptr<ClusterNode>> start(ClusterOptions options);

  // stop().
  ~ClusterNode();
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  // Gets `command` (of a session this server hosts) into the log: proposed
  // in an entry stamped with the log time when this node leads, else
  // forwarded to the known leader, else held until a leader is known. It
  // stays pending until applied() sees it. A command with an origin field
  // (OpenSession, SessionRequest, CloseSession, TouchSession, ResumeSession)
  // is this server's: an origin of 0 becomes options.id. kInvalidArgument
  // for another server's origin or when replication::check_command refuses
  // it (then nothing is kept), kShutdown after stop().
  Status submit(replication::Command command);

  // Proposes `command` in an entry of its own, now, if this node leads;
  // unlike submit(), it is never kept pending, forwarded or sent again: a
  // proposal lost with the leadership is dropped. For what only a leader
  // may decide, and only from its own log (ClusterRuntime's take-back of a
  // client address: a copy that reached a later leader after its ADD would
  // undo it). kUnavailable when this node does not lead, kShutdown after
  // stop(), or why check_command refuses it.
  Status propose_as_leader(replication::Command command);

  // A follower's entry (Forwarder's payload): its commands proposed, in
  // order, in one entry stamped with this leader's log time. kUnavailable
  // when this node does not lead (the follower sends again), kCorruption for
  // bytes decode_entry refuses.
  Status accept_forwarded(std::string_view entry);

  // Replaces options.first_raise and first_raise_nonce (0: no raise), on
  // the loop's thread before its first tick: a --recover that found the
  // configuration forced already (its before_recover said false) owes only
  // what the earlier one still owed.
  void set_first_raise(std::uint64_t by, std::uint64_t nonce);

  // The loop applied `entry` (at log `index`) on its replica: the pending
  // commands it carries are done.
  void applied(std::uint64_t index, const replication::Entry& entry);

  // The outcomes the raft thread left, the leader's duties, the resends.
  // `now_ms` is the log time (options.clock's); `loop_replica` the loop's
  // replica, as current as the loop has it. Returns the log time by which to
  // call it again (sooner is harmless; the wake callback says when earlier).
  std::int64_t tick(std::int64_t now_ms, const replication::StateMachine& loop_replica);

  // The defined semaphores' limits and the session timeout this server is
  // configured with (at start and after a reload); as leader it proposes a
  // Reconfigure when the replicated ones differ, and logs each difference
  // (configuration_differences): at warning in a term's first check (a new
  // leader's file changes the cluster's configuration), at info after a
  // reload of the leader, and as one info line for the cluster's first
  // configuration (a replica with no defined semaphore and session timeout
  // 0: a log no Reconfigure ever reached, as far as can be told).
  void set_configuration(std::vector<std::pair<std::string, std::int64_t>> limits, std::int64_t session_timeout_ms);

  ClusterStatus status() const;

  // For membership changes (add_server, assign, remove_server: any thread).
  raft::RaftNode& raft() { return *raft_; }
  // The entries the log keeps behind a snapshot (ClusterOptions).
  unsigned snapshot_trailing() const { return options_.snapshot_trailing; }

  // Stops RaftNode (its pending proposals fail; the sink is not called any
  // more once it returns). Idempotent.
  void stop();

 private:
  enum class Duty : std::uint8_t { kNone, kTouchAll, kAdvanceTime, kReconfigure };
  // What a proposal's callback leaves for the loop.
  struct Mail {
    std::uint64_t serial = 0;  // a pending command's, or 0 for a duty / a forwarded entry
    Duty duty = Duty::kNone;
    std::uint64_t term = 0;   // the term it was proposed in (duties)
    std::uint64_t index = 0;  // the log index it was applied at, when it was
    Status status;
  };
  struct Pending {
    replication::Command command;
    std::string key;            // the command's bytes: what applied() matches
    std::int64_t sent_ms = 0;   // last sent (log time)
    std::uint64_t sent_to = 0;  // the leader it went to (0: not sent)
    std::uint64_t sent_term = 0;
    bool failed = false;  // refused for not leading: send again to the known leader
  };

  ClusterNode(ClusterOptions options);

  bool leads() const { return lead_term_.load(std::memory_order_acquire) != 0; }
  void refresh_leader();
  void send(std::uint64_t serial, Pending& pending, std::int64_t now_ms);
  void propose(replication::Entry entry, std::uint64_t serial, Duty duty);
  void start_term_if_new(std::int64_t now_ms);
  void drain_mail(const replication::StateMachine& loop_replica);
  // Logs the Reconfigure proposed for `differences` (set_configuration).
  void log_reconfigure(const replication::StateMachine& replica,
                       const std::vector<ConfigurationDifference>& differences) const;
  void post(Mail mail);

  ClusterOptions options_;
  // options_.first_raise until the loop applied it (0 then).
  std::uint64_t first_raise_ = 0;
  std::unique_ptr<ReplicaAdapter> adapter_;  // outlives raft_
  std::unique_ptr<raft::RaftNode> raft_;
  bool stopped_ = false;

  // Set on the raft thread (on_role_change): the term this node leads, 0
  // when it does not.
  std::atomic<std::uint64_t> lead_term_{0};
  mutable std::mutex mail_mu_;
  std::vector<Mail> mail_;  // guarded by mail_mu_

  // Loop thread only from here on.
  std::uint64_t leader_id_ = 0;  // as of the latest refresh_leader()
  std::uint64_t term_ = 0;
  std::uint64_t next_serial_ = 0;
  std::map<std::uint64_t, Pending> pending_;                    // by serial: submission order
  std::unordered_multimap<std::string, std::uint64_t> by_key_;  // Pending::key -> serial
  std::uint64_t loop_applied_ = 0;
  std::string leader_member_address_;  // the leader's client address in the loop replica's members
  // The leader's duties in its current term.
  std::uint64_t started_term_ = 0;     // the term whose TouchAll was proposed
  std::uint64_t touch_all_index_ = 0;  // where it applied (0: not yet)
  bool check_configuration_ = false;   // compare with the replica once it passed touch_all_index_
  bool new_leader_check_ = false;      // the term's first comparison not done (or its Reconfigure not applied)
  bool advance_in_flight_ = false;
  std::uint64_t advance_index_ = 0;  // where the AdvanceTime in flight applied (0: not yet)
  std::optional<std::pair<std::vector<std::pair<std::string, std::int64_t>>, std::int64_t>> configuration_;
  ClusterStatus counters_;
};

// Whether a member last heard from `ms` milliseconds ago (-1: never in this
// run) is reachable: heard within an election timeout. On the leader every
// live voter and standby answers at each heartbeat.
bool reachable(std::int64_t ms, std::int64_t election_timeout_ms);

// Whether the leader `self`, whose status is `now`, may REMOVE server `id`:
// ok when the voters left include a majority that is live (itself
// included); else kUnavailable (ERR BUSY) naming the others. A voter is
// live when the leader can reach it and it has caught up: its match index
// is at most `max_behind` entries below the leader's commit index (the
// node's snapshot_trailing: further behind, it may need a snapshot before
// it can take the change). libraft commits a configuration change under
// the new configuration, so a removal without such a majority cannot
// commit, and the cluster stops until an unreachable voter answers (its
// leader keeps the uncommitted configuration and steps down; a server
// never sent it campaigns under the old one and is refused, its log being
// shorter: audit28 F3), or waits for a far-behind one to catch up. As
// etcd's strict reconfiguration check, it is refused before anything
// changes.
Status remove_keeps_a_live_majority(const ClusterStatus& now, std::uint64_t self, std::uint64_t id,
                                    std::int64_t election_timeout_ms, std::uint64_t max_behind);

}  // namespace netsem::cluster
