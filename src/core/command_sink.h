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

#include <cstdint>
#include <functional>
#include <string>

#include "netsem/status.h"
#include "replication/entry.h"
#include "stats/cluster_figures.h"

namespace netsem::server {

// A change of the cluster's membership an admin asked for (CLUSTER ADD,
// CLUSTER REMOVE; docs/protocol.md, proposed 1.2).
struct MembershipChange {
  bool add = true;  // false: remove
  std::uint64_t id = 0;
  std::string raft_address;    // ADD: "a.b.c.d:port", where its Raft listens
  std::string client_address;  // ADD: "host:port", where its clients connect
};

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
  // CLUSTER STATUS: one line of JSON (docs/protocol.md). The default: "{}".
  virtual std::string cluster_status_json() const { return "{}"; }
  // CLUSTER ADD / REMOVE: makes the change (on the leader; elsewhere
  // kUnavailable naming the leader) and calls `done` with its outcome on
  // the loop thread, once, normally later (the default: at once, with
  // kUnavailable). The dispatcher accepts both.
  virtual void change_membership(MembershipChange change, std::function<void(Status)> done) {
    (void)change;
    done(Status(StatusCode::kUnavailable, "this server cannot change the cluster's membership"));
  }
  // CLUSTER FENCES: raises the cluster's fences by `by` (a
  // replication::RaiseFences, on the leader; elsewhere kUnavailable naming
  // the leader) and calls `done` once, on the loop thread, normally later,
  // with the new last fence once committed and applied, or why not (kLimit:
  // past replication::kMaxRaisedFence; kCancelled: the leadership was lost
  // before it committed, the outcome is unknown). The default: at once,
  // kUnavailable.
  virtual void raise_fences(std::uint64_t by, std::function<void(Result<std::uint64_t>)> done) {
    (void)by;
    done(Status(StatusCode::kUnavailable, "this server cannot raise the cluster's fences"));
  }

 protected:
  CommandSink() = default;
};

}  // namespace netsem::server
