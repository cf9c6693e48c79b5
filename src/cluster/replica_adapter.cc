// ReplicaAdapter: RaftNode's calls passed to the raft thread's replica, and
// what they did handed to the sink (replica_adapter.h).
#include "cluster/replica_adapter.h"

#include <utility>
#include <variant>

namespace netsem::cluster {

ReplicaAdapter::ReplicaAdapter(server::TableLimits limits, ReplicaSink sink, replication::ServerId self)
    : machine_(limits), sink_(std::move(sink)), self_(self) {}

ReplicaAdapter::~ReplicaAdapter() = default;

Result<std::string> ReplicaAdapter::apply(std::uint64_t index, std::string_view command) {
  Result<std::string> result =
      machine_.apply(index, command, [this](const replication::Entry& entry, const replication::EntryResults& results) {
        if (self_ != 0 && !commit_wanted_) commit_wanted_ = wanted_elsewhere(entry, results);
      });
  if (!result) {
    // Handed on all the same: every command in the log was checked before
    // it was proposed, so a refusal means that this replica cannot follow
    // the log (a snapshot ahead of it, damage, a bug), and the loop replica,
    // refusing the same bytes, stops the server rather than skip the entry.
    refused_.fetch_add(1, std::memory_order_relaxed);
    if (sink_) sink_(ReplicaEvent{ReplicaEvent::Kind::kApplied, index, std::string(command)});
    return result;
  }
  last_index_.store(machine_.last_index(), std::memory_order_release);
  applied_.fetch_add(1, std::memory_order_relaxed);
  if (sink_) sink_(ReplicaEvent{ReplicaEvent::Kind::kApplied, index, std::string(command)});
  return result;
}

bool ReplicaAdapter::wanted_elsewhere(const replication::Entry& entry, const replication::EntryResults& results) const {
  for (std::size_t i = 0; i < entry.commands.size() && i < results.commands.size(); ++i) {
    const replication::Command& command = entry.commands[i];
    // Its origin answers its client when it applies the command; a touch
    // and a close have nobody waiting (a PING is a SessionRequest, Sync).
    const replication::ServerId origin = replication::origin_of(command);
    if (origin != 0 && origin != self_ && !std::holds_alternative<replication::TouchSession>(command) &&
        !std::holds_alternative<replication::CloseSession>(command)) {
      return true;
    }
    for (const server::Completion& completion : results.commands[i].completions) {
      // A session that ended with the command is gone: its host closes the
      // connection whenever it learns, nobody waits on that.
      const auto session = machine_.sessions().find(completion.session);
      if (session != machine_.sessions().end() && session->second.host != self_) return true;
    }
  }
  return false;
}

std::string ReplicaAdapter::snapshot() {
  return machine_.snapshot();
}

Status ReplicaAdapter::restore(std::string_view snapshot) {
  Status status = machine_.restore(snapshot);
  if (!status) return status;
  last_index_.store(machine_.last_index(), std::memory_order_release);
  restored_.fetch_add(1, std::memory_order_relaxed);
  if (sink_) sink_(ReplicaEvent{ReplicaEvent::Kind::kRestored, machine_.last_index(), std::string(snapshot)});
  return status;
}

}  // namespace netsem::cluster
