// StateMachine: what netsem replicates with Raft, seen from the consensus
// layer (src/raft). It is the meeting point between RaftNode (which orders
// commands in a replicated log with canonical's libraft) and the replicated
// semaphore state (src/replication), and knows nothing of either: commands,
// results and snapshots are opaque bytes.
//
// Contract, for every implementation:
// - Determinism: apply() is called with the same commands in the same order,
//   at the same log indexes, on every replica; given the same state and the
//   same command it must give the same result and the same new state on every
//   replica. So apply reads no clock, no random source, no environment: what
//   it needs is in the command (the leader proposes times).
// - A command that apply refuses (malformed, not allowed in this state) must
//   leave the state unchanged; the refusal is then the command's result on
//   every replica (the entry stays in the log and is refused again on replay).
// - A replica that cannot follow the log says so through halted(), below.
// - Several commands can share one log index: RaftNode batches the commands
//   proposed while an earlier batch was being committed into one log entry,
//   and applies them in their proposal order. Their (index, position in the
//   entry) order is the log order; a state machine that needs a number unique
//   to each command keeps its own counter.
//
// Thread safety: RaftNode calls apply, snapshot and restore on its raft thread
// only, one call at a time, never concurrently with each other; they must not
// block for long (the raft thread also sends heartbeats: a call longer than
// the heartbeat timeout delays them, one longer than the election timeout can
// cost the leadership). Anything else that reads the state from another
// thread must synchronise with those calls itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "netsem/status.h"

namespace netsem::raft {

class StateMachine {
 public:
  virtual ~StateMachine() = default;

  // Applies one committed command: `index` is the index of the log entry that
  // carries it (indexes increase; commands of one entry share it). The value
  // is the result handed to the proposer's callback on the leader (on the
  // other replicas it is dropped). A non-OK Status refuses the command: the
  // state must be unchanged, and the proposer gets that Status.
  virtual Result<std::string> apply(std::uint64_t index, std::string_view command) = 0;

  // The whole state as bytes, taken when libraft decides to snapshot (after
  // `snapshot_threshold` entries): restore(snapshot()) on a fresh instance must
  // give the same state. RaftNode frames and checksums the bytes.
  virtual std::string snapshot() = 0;

  // Replaces the whole state with one that snapshot() produced (at start, from
  // the data directory, or when the leader sends a snapshot to a lagging
  // replica). A non-OK Status (kCorruption for bytes that do not parse)
  // refuses it and must leave the state unchanged; the node then refuses to
  // start, or the install fails loudly.
  virtual Status restore(std::string_view snapshot) = 0;

  // True once this replica can no longer follow the log: a refusal no
  // replica should ever make (damage, a snapshot ahead of the log, a bug), as
  // opposed to the ordinary refusals above, which are results. RaftNode asks
  // after each command: once true, it gives the machine nothing more (every
  // later command's result is kCorruption) and takes no snapshot any more,
  // since one would store a state that skipped a committed entry, and a
  // restart would load it and serve on in silence; the log keeps the entry,
  // and a restart applies it again. Stopping the process is the
  // implementation's business (netsem's loop replica refuses the same entry
  // and stops the server).
  virtual bool halted() const { return false; }

  // True when a command applied since the last call has an effect that
  // another replica's server delivers as soon as that replica applies it
  // (in netsem: the answer to a command a follower forwarded, a grant to a
  // session a follower hosts). A follower applies an entry only once it
  // learns that the entry committed, and libraft tells it so in its next
  // AppendEntries: with nothing more to replicate, the next heartbeat, up to
  // heartbeat_timeout later. So RaftNode, as leader, asks after applying
  // and, when true and no batch is about to carry the news, appends a
  // barrier (libraft's empty entry) to send the commit index at once.
  // Reading it clears it. By default never true.
  virtual bool take_commit_wanted() { return false; }
};

}  // namespace netsem::raft
