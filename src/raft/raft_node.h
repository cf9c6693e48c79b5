// RaftNode: one netsem Raft server, glue around canonical's libraft (0.15,
// the engine under dqlite) and its libuv I/O backend (raft_uv: the log,
// metadata and snapshots in a data directory; raft_uv_tcp: the peers over
// TCP). It orders opaque commands in a replicated log and applies them, once
// committed, to a StateMachine (state_machine.h); it has no semaphore logic.
//
// API: RaftNode::start(options, machine) loads the data directory (the first
// start with `bootstrap` set writes the first configuration; `recover`
// forces one of this server alone), starts libraft
// on a thread of its own ("netsem-raft", running a libuv loop) and returns
// the running node, or the reason it could not start (a damaged data
// directory is kCorruption: refused, never repaired by dropping entries).
// propose() hands a command to the leader's log; its callback runs on the
// raft thread once the command is applied (with the StateMachine's result)
// or has failed. status() reads role, term, leader, indexes. add_server,
// assign and remove_server change the configuration at run time (leader
// only). stop() (or the destructor) closes libraft and the loop and joins the
// thread; every pending callback has run when it returns.
//
// Batching: while one batch is being committed (one raft_apply in flight),
// every proposal that arrives is queued; when that batch's callback runs, up
// to `max_batch` queued commands become the next batch: one log entry holding
// the commands framed together (entry_format.h), so one disk write, one fsync
// and one round of AppendEntries commit them all. (One raft_apply of N
// buffers would make N entries, but libraft calls the request's callback once,
// for the first entry, so the other N-1 results would have no proposer.)
//
// Commit push: a follower applies an entry only once it learns that the
// entry committed, from the leader's next AppendEntries; when the machine
// says a follower's server waits for what it applied
// (StateMachine::take_commit_wanted) and no batch is about to go, the leader
// appends a barrier (libraft's empty entry, which no StateMachine sees) so
// that the commit index goes out at once, not with the next heartbeat.
//
// Thread safety: start, propose, status, add_server, assign, remove_server
// and stop may be called from any thread. Callbacks (propose's, the
// configuration changes', on_role_change) run on the raft thread: they must
// not block for long and must not call stop(); they may call propose().
// The StateMachine is called on the raft thread only (state_machine.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "netsem/status.h"
#include "raft/raft_port.h"
#include "raft/state_machine.h"
#include "stats/histogram.h"

namespace netsem::raft {

// A server's role in the configuration, as libraft has them.
enum class ServerRole : std::uint8_t {
  kVoter,    // replicates the log and votes: counts for the quorum
  kStandby,  // replicates the log, does not vote
  kSpare,    // neither: a member that is only known
};
std::string_view server_role_name(ServerRole role);
// "voter", "standby" or "spare"; kInvalidArgument otherwise.
Result<ServerRole> parse_server_role(std::string_view name);

struct ServerInfo {
  std::uint64_t id = 0;  // > 0, unique in the cluster
  std::string address;   // "a.b.c.d:port" (IPv4, as raft_uv_tcp takes it)
  ServerRole role = ServerRole::kVoter;
  friend bool operator==(const ServerInfo&, const ServerInfo&) = default;
};

// "1@127.0.0.1:7001,2@127.0.0.2:7001" (role voter) into servers; ids > 0 and
// distinct, addresses host:port; kInvalidArgument saying what is wrong.
Result<std::vector<ServerInfo>> parse_servers(std::string_view text);

// What RaftOptions::recover is about to do, shown to its before_recover.
struct RecoverPlan {
  std::vector<ServerInfo> replaced;  // the latest stored configuration
  std::uint64_t replaced_index = 0;  // its index
  std::vector<ServerInfo> forced;    // this server alone, a voter
  std::uint64_t index = 0;           // where the forced configuration goes
  std::uint64_t term = 0;            // the term the node then starts in
};

// This node's state in Raft.
enum class Role : std::uint8_t { kUnavailable, kFollower, kCandidate, kLeader };
std::string_view role_name(Role role);

struct RaftOptions {
  std::uint64_t id = 0;  // this server's id, > 0
  std::string address;   // this server's "a.b.c.d:port": where it listens and how peers reach it
  // When set, an IPv4 address "a.b.c.d" the listener binds to instead of
  // `address`'s, on its port (libraft's raft_uv_tcp_set_bind_address): for
  // a server that peers reach through a translated address (a container,
  // NAT, a test's proxy), or that listens on every interface ("0.0.0.0").
  std::string bind_address;
  // The Raft port (raft_uv_tcp: no authentication of its own; RaftPort,
  // raft_port.h) reads a connection only from the IPv4 host of a server this
  // node knows: of its latest configuration, of `bootstrap`, of
  // `known_servers` (the servers of its file, for a server that joins and
  // has no configuration yet), itself; the node's own connections to the
  // others leave from `address`'s host (bound to it, when it is an address
  // of this machine), on loopback too. The id its handshake claims must be
  // such a server's whose host is the source. `allow_peer`, when
  // set, admits another source (an IPv4 address in host order), claiming any
  // id: multi-homed hosts, NAT. A handshake must come within
  // `handshake_timeout` (0: the longer of 5 s and election_timeout), and at
  // most `max_pending_handshakes_per_source` connections of one source and
  // `max_pending_handshakes` in all wait for theirs; at most 2 of a source
  // claiming one id (16 of a source in all) are open with libraft
  // (RaftPortOptions::max_open_per_claim). Any other connection is closed
  // before libraft takes it; each is logged (a warning, rate-limited per
  // source and reason) and NodeStatus::connections_refused counts them by
  // reason.
  std::vector<ServerInfo> known_servers;
  std::chrono::milliseconds handshake_timeout{0};
  std::size_t max_pending_handshakes_per_source = 4;
  std::size_t max_pending_handshakes = 32;
  std::function<bool(std::uint32_t ipv4_host_order)> allow_peer;
  std::string data_dir;  // must exist; libraft's log, metadata and snapshots (docs/replication.md)
  // The first configuration (this server among them), written to the data
  // directory on the first start only; ignored when the directory holds a
  // log already. Empty: the node joins a cluster that will add it.
  std::vector<ServerInfo> bootstrap;
  // A follower that hears no leader for a random time in [election_timeout,
  // 2 x election_timeout) starts an election; a leader sends heartbeats every
  // heartbeat_timeout and steps down when it has not heard from a majority
  // for election_timeout. REQUIRES: heartbeat < election.
  std::chrono::milliseconds election_timeout{1000};
  std::chrono::milliseconds heartbeat_timeout{100};
  // Snapshot after this many applied entries, keeping this many entries
  // behind the snapshot in the log (for followers that lag a little).
  unsigned snapshot_threshold = 8192;
  unsigned snapshot_trailing = 2048;
  // The most commands one log entry carries (>= 1; 1 turns batching off).
  std::size_t max_batch = 1024;
  // Group commit: after a batch commits, the next one waits until as many
  // commands are queued as that batch held, or for this long at most (0:
  // proposed at once). The answers to a batch bring the clients' next
  // commands (a holder's RELEASE after its grant): without the wait they miss
  // the batch proposed the moment the last one committed and wait for a
  // whole commit more (docs/replication.md, "Batching"). At most 1 s.
  std::chrono::microseconds group_commit{0};
  // How long to wait before reconnecting to a peer that could not be reached.
  std::chrono::milliseconds connect_retry{200};
  // A snapshot sent to a lagging follower and not acknowledged within this
  // long is sent again. libraft's own default is 30 s: a follower that
  // refused one (it was taking a snapshot of its own when it came) stayed
  // behind that long. Keep it above a snapshot's transfer time.
  std::chrono::milliseconds install_snapshot_timeout{5000};
  // Let libraft drop a last batch of the open segment that does not decode
  // (a write torn by a power loss), which start() refuses otherwise
  // (open_segments.h). For an operator who knows the server lost power:
  // netsemd --repair.
  bool repair = false;
  // Force a new configuration of this server alone, as a voter at
  // `address`, before libraft starts (libraft's raft_recover: one entry,
  // the new configuration, appended to the stored log; `bootstrap` is
  // ignored): for the survivor of a cluster that lost a majority for good
  // (netsemd --recover, docs/replication.md "A majority lost for good").
  // It then starts as the only voter and elects itself at once. Refused,
  // the directory left as it was: kNotFound when it holds no log (nothing
  // to recover), kInvalidArgument when its latest configuration does not
  // hold this server (a removed server is no survivor). The old
  // configuration and the new one are logged (warning) and kept in
  // NodeStatus::recovered_from. `before_recover`, when set, is called once
  // the directory passed those checks, with what the force would do, just
  // before the new configuration is written; its error refuses the start
  // with nothing written, and false starts the node without forcing
  // anything, as without `recover` (the caller found it forced already).
  bool recover = false;
  std::function<Result<bool>(const RecoverPlan&)> before_recover;
  // When not 0: the term the node starts in at least, its stored term
  // raised to it before it starts (logged). netsemd gives the term an
  // earlier --recover recorded (server/recover_files.h), so that a start
  // after a recovery whose raise of the term did not happen (the process
  // died, or the write failed, between the forced configuration and the
  // term) does not lead in the lost leader's term (review28).
  std::uint64_t min_term = 0;
  // When not 0: a write of the log, or of the term and vote (which
  // libraft 0.15 answers by turning the node unavailable for good), that
  // fails (a full or failing disk) ends the process at once with this
  // exit status, from the raft thread,
  // after logging why (spdlog, critical, and stderr). Fail-stop, as etcd
  // does on a failed WAL write: libraft 0.15 does not store an entry again
  // after a failed write, and on a leader its own handling of one (it
  // truncates its in-memory log under entries already sent to the
  // followers) was seen to end in SIGSEGV. When 0 (tests of RaftNode), the
  // failure is only recorded (status().failure) and libraft goes on.
  int exit_on_write_failure = 0;
  // Test seam, unset in netsemd: when set, called on the raft thread before
  // each write of the log is handed to raft_uv; a non-zero libraft error
  // code (RAFT_IOERR) refuses that write at once, as raft_uv's append does
  // when it cannot submit one (no memory, io_submit refused), and raft_uv
  // never sees it. RaftNode's tests make a configuration change fail
  // synchronously with it.
  std::function<int()> refuse_append_for_test;
  // Called on the raft thread when the node's role or term changes.
  std::function<void(Role role, std::uint64_t term)> on_role_change;
};

struct NodeStatus {
  Role role = Role::kUnavailable;
  std::uint64_t term = 0;
  std::uint64_t leader_id = 0;  // 0: no known leader
  std::string leader_address;
  std::uint64_t commit_index = 0;
  std::uint64_t last_applied = 0;
  std::uint64_t last_index = 0;        // the last entry in this node's log
  std::uint64_t snapshot_index = 0;    // the last entry covered by the latest snapshot
  std::uint64_t proposals_queued = 0;  // waiting for the next batch
  std::uint64_t batches = 0;           // entries this node proposed (as leader)
  std::uint64_t commands = 0;          // commands in those entries
  // Barriers this node appended as leader to tell the followers of a commit
  // at once (StateMachine::take_commit_wanted).
  std::uint64_t commit_pushes = 0;
  // Connections to the Raft port refused since start, by reason (index:
  // PortRefusal; RaftOptions::known_servers).
  PortRefusals connections_refused{};
  // Since start, on this node as leader: how long each batch took from its
  // raft_apply to its callback (committed and applied), in microseconds,
  // failed ones left out; and how many commands each batch carried.
  stats::Histogram commit_us;
  stats::Histogram batch_commands;
  std::vector<ServerInfo> configuration;
  // The index of the configuration entry libraft holds as committed (its
  // configuration_index; 0 before any).
  std::uint64_t configuration_index = 0;
  // Not 0: this node was in the configuration earlier in this run and the
  // committed configuration, of this index, leaves it out: it was removed
  // (a leader that removed itself, which commits the change; a follower
  // only learns it if the entry reaches it, which libraft 0.15 does not do:
  // its leader stops replicating to a server the moment it proposes its
  // removal). A node started without a configuration (a server that joins)
  // is no member before it is added, so it is never "removed" before then.
  std::uint64_t removed_at = 0;
  // Milliseconds since this node last heard from a leader (an AppendEntries
  // or InstallSnapshot received) or led itself as a member, in this run; -1:
  // never. A leader sends only to the members of its latest configuration:
  // a node removed_at that hears from one is being added back (it catches
  // up through its own old removal), not removed.
  std::int64_t leader_heard_ms = -1;
  // Each other server of the configuration, by id: milliseconds since this
  // node last received a Raft message from it in this run (-1: none). On the
  // leader a live follower answers every heartbeat (heartbeat_timeout); a
  // follower hears from the leader only.
  std::vector<std::pair<std::uint64_t, std::int64_t>> last_contact_ms;
  // On the leader only (else empty): each other server's match index, the
  // last entry it is known to hold (libraft's progress), by server id.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> match_indexes;
  std::string failure;  // set when the node stopped applying (a corrupt entry): the reason
  // RaftOptions::recover: the configuration this start replaced (the
  // latest the directory held), and the index of the entry that replaced
  // it; empty and 0 otherwise.
  std::vector<ServerInfo> recovered_from;
  std::uint64_t recovered_at = 0;
};

// Called with the StateMachine's result for the command (on the leader that
// proposed it), or: kUnavailable when this node is not the leader (the
// message names the leader if known) or lost the leadership before the
// command committed (then it may still be applied: the outcome is unknown),
// kShutdown when the node stopped first, kInvalidArgument for a command over
// kMaxCommandBytes, or the StateMachine's refusal.
using ProposeCallback = std::function<void(Result<std::string> result)>;
// Called with OK once a configuration change is committed, or why it failed.
using ChangeCallback = std::function<void(Status status)>;

class RaftNode {
 public:
  // Starts a node: checks the options, opens the data directory, bootstraps
  // it if pristine and `bootstrap` is set, loads the log and the latest
  // snapshot (restoring `machine` from it and replaying the committed entries
  // as libraft learns they are committed) and starts the raft thread.
  // kInvalidArgument for bad options, kNotFound for a missing data
  // directory, kBusy for one another node holds (each node locks its
  // directory with flock for its life), kCorruption for a damaged one,
  // kIoError for others (a port in use). `machine` must outlive the node.
  static Result<std::unique_ptr<RaftNode>> start(RaftOptions options, StateMachine& machine);

  // Stops the node (stop()).
  ~RaftNode();
  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;

  // Queues `command` for the next batch; `done` runs exactly once (see
  // ProposeCallback): on the raft thread, or on the caller's at once for a
  // command over kMaxCommandBytes or when the node is stopping. Non-blocking.
  void propose(std::string command, ProposeCallback done);

  // A copy of the node's state, as of the end of the raft thread's latest
  // loop iteration.
  NodeStatus status() const;

  // Configuration changes, on the leader only (else kUnavailable: nothing
  // was submitted), one at a time (else kBusy): add `id` at `address` as a
  // spare, assign it a role (promoting to voter waits until it has caught
  // up: kTimeout when libraft gives up, after 5 s without progress, the
  // server keeping its old role), remove it. kCancelled: the leader lost its
  // leadership (or could not write its log) before the change committed, so
  // its outcome is unknown: the new configuration may have reached the
  // others, and a new leader may commit it. `done`
  // runs exactly once: on the raft thread, or on the caller's at once for a
  // malformed address or when the node is stopping (kShutdown).
  void add_server(std::uint64_t id, std::string address, ChangeCallback done);
  void assign(std::uint64_t id, ServerRole role, ChangeCallback done);
  void remove_server(std::uint64_t id, ChangeCallback done);

  // Closes libraft (pending proposals fail with kShutdown or kUnavailable),
  // closes the loop and joins the raft thread. Idempotent.
  // REQUIRES: not called from the raft thread (a callback).
  void stop();

  class Impl;

 private:
  explicit RaftNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace netsem::raft
