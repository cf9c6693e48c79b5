// ReplicaAdapter: the raft thread's replica of netsem's replicated state.
// It is the raft::StateMachine (src/raft/state_machine.h) that RaftNode
// applies committed commands to, snapshots and restores, and it owns the
// replication::StateMachine those calls go to. Every entry it applied and
// every snapshot it restored is handed, in order, to a sink: the server posts
// them to its event loop, which applies them to a second replica of its own
// (the loop replica, docs/replication.md "The cluster node"), so that the
// loop never reads the raft thread's state and the raft thread never waits
// for the loop.
//
// Thread safety: apply, snapshot and restore run on the raft thread (or, for
// the snapshot and log loaded at start, on the thread that starts RaftNode),
// one call at a time, as RaftNode guarantees. last_index() may be read from
// any thread. The sink is called from the same thread as the call that made
// the event; it must not block (copy the event into a queue and wake the
// loop): a sink that blocks delays heartbeats and can cost the leadership.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "netsem/status.h"
#include "raft/state_machine.h"
#include "replication/state_machine.h"
#include "table/semaphore_table.h"

namespace netsem::cluster {

// What the raft thread's replica did, for the loop replica to do the same.
struct ReplicaEvent {
  enum class Kind : std::uint8_t {
    kApplied,   // `bytes` is an entry (NSRE) committed at log `index`: applied, or refused (apply)
    kRestored,  // `bytes` is a snapshot (NSRS) that replaced the whole state; `index` its last index
  };
  Kind kind = Kind::kApplied;
  std::uint64_t index = 0;
  std::string bytes;
  friend bool operator==(const ReplicaEvent&, const ReplicaEvent&) = default;
};

// Called once per applied entry and per restored snapshot, in the order they
// happened. REQUIRES: does not block (see the thread-safety note above).
using ReplicaSink = std::function<void(ReplicaEvent event)>;

class ReplicaAdapter final : public raft::StateMachine {
 public:
  // `limits` must be the same on every replica (the loop replica's too).
  // `self`: this server's id, for take_commit_wanted (0: never wanted).
  ReplicaAdapter(server::TableLimits limits, ReplicaSink sink, replication::ServerId self = 0);
  ~ReplicaAdapter() override;
  ReplicaAdapter(const ReplicaAdapter&) = delete;
  ReplicaAdapter& operator=(const ReplicaAdapter&) = delete;

  // replication::StateMachine::apply; the entry goes to the sink, applied or
  // not. An entry the state machine refuses (kCorruption, an index going
  // back) changes nothing here and is handed on all the same: every command
  // in the log was checked before it was proposed, so a refusal means that
  // this replica cannot follow the log (a snapshot ahead of it, damage, a
  // bug), and the loop replica, refusing the same bytes, stops the server
  // (exit 3) rather than let it skip a committed entry.
  Result<std::string> apply(std::uint64_t index, std::string_view command) override;
  // The replica's snapshot, as is.
  std::string snapshot() override;
  // Once it refused a committed entry: RaftNode then gives it nothing more
  // and takes no snapshot (a snapshot would skip the entry for good).
  bool halted() const override { return refused_count() > 0; }
  // True once an entry applied since the last call answered a command
  // another server proposed and its client waits for (its origin: a
  // follower's forwarded request, PING and read included, open or resume;
  // not a touch or a close, which nobody waits for) or completed a queued
  // request of a session another server hosts (a grant handed on by a
  // RELEASE here, a timeout): that server answers its client when it
  // applies the entry, so RaftNode tells it of the commit at once.
  bool take_commit_wanted() override { return std::exchange(commit_wanted_, false); }
  // replication::StateMachine::restore; the snapshot goes to the sink when it
  // was restored.
  Status restore(std::string_view snapshot) override;

  // The index of the last entry applied or snapshot restored (any thread).
  std::uint64_t last_index() const { return last_index_.load(std::memory_order_acquire); }
  // How many entries were applied and snapshots restored (any thread).
  std::uint64_t applied_count() const { return applied_.load(std::memory_order_relaxed); }
  std::uint64_t restored_count() const { return restored_.load(std::memory_order_relaxed); }
  // How many committed entries the state machine refused (any thread).
  std::uint64_t refused_count() const { return refused_.load(std::memory_order_relaxed); }

 private:
  // Whether another server delivers something of what `entry` did.
  bool wanted_elsewhere(const replication::Entry& entry, const replication::EntryResults& results) const;

  replication::StateMachine machine_;  // the raft thread's only
  ReplicaSink sink_;
  replication::ServerId self_ = 0;
  bool commit_wanted_ = false;
  std::atomic<std::uint64_t> last_index_{0};
  std::atomic<std::uint64_t> applied_{0};
  std::atomic<std::uint64_t> restored_{0};
  std::atomic<std::uint64_t> refused_{0};
};

}  // namespace netsem::cluster
