// ReplicaAdapter: RaftNode's calls passed to the raft thread's replica, and
// what they did handed to the sink (replica_adapter.h).
#include "cluster/replica_adapter.h"

#include <utility>

namespace netsem::cluster {

ReplicaAdapter::ReplicaAdapter(server::TableLimits limits, ReplicaSink sink)
    : machine_(limits), sink_(std::move(sink)) {}

ReplicaAdapter::~ReplicaAdapter() = default;

Result<std::string> ReplicaAdapter::apply(std::uint64_t index, std::string_view command) {
  Result<std::string> result = machine_.apply(index, command);
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
