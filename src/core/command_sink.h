// CommandSink: where a dispatcher on the replicated log (the Dispatcher's
// cluster mode, dispatcher.h) hands the commands of the sessions it hosts.
// netsemd implements it over its cluster node (src/cluster: forwarded to
// the leader, proposed, committed); tests over a real
// replication::StateMachine applied at once.
//
// Thread safety: submit() and cluster_figures() are called on the event-loop thread; what the
// implementation does with the command (another thread, the network) is its
// own.
#pragma once

#include <string>

#include "replication/entry.h"
#include "stats/cluster_figures.h"

namespace netsem::server {

class CommandSink {
 public:
  virtual ~CommandSink() = default;
  // Hands `command` on towards the log. Its outcome comes back only as the
  // results of the entry that carries it, through
  // Dispatcher::apply_results, once the loop replica applied that entry;
  // a command that never commits has no outcome (the sink proposes it again,
  // or the session stays waiting until its connection ends). REQUIRES: does
  // not call back into the dispatcher inside the call.
  virtual void submit(replication::Command command) = 0;
  // The cluster's figures as this server sees them (STATS, /metrics):
  // role, term, indexes, lag, members. The default (a sink with no
  // consensus, as in tests) is a default ClusterFigures.
  virtual stats::ClusterFigures cluster_figures() const { return {}; }
  // The client address ("host:port") of the cluster's leader as this
  // server knows it (proposed 1.2's LEADER); "" while none is known (an
  // election).
  virtual std::string leader_client_address() const { return {}; }

 protected:
  CommandSink() = default;
};

}  // namespace netsem::server
