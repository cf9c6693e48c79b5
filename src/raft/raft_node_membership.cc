// RaftNode::Impl (raft_node_impl.h): configuration changes. add_server,
// assign and remove_server post a task to the raft thread that submits the
// change (raft_add, raft_assign, raft_remove); on_changed answers it once
// committed, and a change that failed because the leadership was lost is
// told after the next publish() (after_publish_), once status() shows the
// loss.
// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
}

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "raft/raft_node_impl.h"
#include "raft/raft_status.h"
#include "raft/servers.h"

namespace netsem::raft {

RaftNode::Impl::Change* RaftNode::Impl::new_change(ChangeCallback done) {
  if (closing_) {
    done(stopped());
    return nullptr;
  }
  auto* change = new Change;
  change->impl = this;
  change->req.data = change;
  change->done = std::move(done);
  return change;
}

void RaftNode::Impl::change_started(Change* change, int rv, std::string_view what) {
  if (rv == 0) return;  // on_changed will run
  const Status why = rv == RAFT_NOTLEADER ? not_leader() : raft_status(rv, what, raft_errmsg(&raft_));
  std::unique_ptr<Change> owned(change);
  owned->done(why);
}

void RaftNode::Impl::on_changed(struct raft_change* req, int status) {
  std::unique_ptr<Change> change(static_cast<Change*>(req->data));
  if (status == RAFT_NOCONNECTION) {
    // libraft 0.15 fails a change so only when it gives up promoting a
    // server to voter (tick.c): a catch-up round without progress for
    // max_catch_up_round_duration (5 s, libraft's default), or the last of
    // max_catch_up_rounds (10) still slower than an election timeout. The
    // server stays in the configuration in its old role.
    change->done(Status(StatusCode::kTimeout,
                        "raft configuration change: the server did not catch up with the log (no progress for 5 s, "
                        "or too slow); it keeps its old role"));
    return;
  }
  if (status == 0) {
    // status() in `done` shows the change committed (ClusterRuntime names
    // the removal's index in its notice).
    change->impl->publish();
    return change->done(Status::ok());
  }
  // Every other failure comes after the change was submitted. libraft 0.15
  // has one: RAFT_LEADERSHIPLOST when its leader steps down or closes
  // (convert.c convertClearLeader; a promotion still waiting for its server
  // to catch up included, whose spare then stays). A failed write of the
  // leader's own log does not fail the change there (replication.c
  // appendLeaderCb fails only commands; netsemd exits on it first,
  // exit_on_write_failure); later libraft versions fail it with the write's
  // error. Either way a new leader may commit the change or drop it: the
  // outcome is unknown, not a refusal.
  const std::string why = status == RAFT_LEADERSHIPLOST
                              ? "the leader lost its leadership before the change committed"
                              : "libraft failed it after it was submitted (" + std::string(raft_strerror(status)) + ")";
  Status failed(StatusCode::kCancelled,
                "raft configuration change: " + why + "; its outcome is unknown (see CLUSTER STATUS)");
  // libraft fails the change while it steps down, its state still the
  // leader's: told at once, the asker's next look at status() (netsem
  // cluster add's CLUSTER STATUS on the same connection) would still show
  // this node leading in the same term, and take the outcome for known
  // (audit28 F1). So it is told after the next publish(), at the end of this
  // loop iteration, when status() shows the step down; at once when closing.
  Impl* impl = change->impl;
  if (impl->closing_) return change->done(std::move(failed));
  impl->after_publish_.push_back(
      [done = std::move(change->done), failed = std::move(failed)]() mutable { done(std::move(failed)); });
}

void RaftNode::Impl::add_server(std::uint64_t id, std::string address, ChangeCallback done) {
  if (Status s = check_address(address); !s) return done(s);
  auto shared = std::make_shared<ChangeCallback>(std::move(done));
  post(
      [this, id, address = std::move(address), shared]() mutable {
        Change* change = new_change(std::move(*shared));
        if (change == nullptr) return;
        change->address = std::move(address);
        change_started(change, raft_add(&raft_, &change->req, id, change->address.c_str(), on_changed), "raft add");
      },
      [shared] { (*shared)(stopped()); });
}

void RaftNode::Impl::assign(std::uint64_t id, ServerRole role, ChangeCallback done) {
  auto shared = std::make_shared<ChangeCallback>(std::move(done));
  post(
      [this, id, role, shared]() mutable {
        Change* change = new_change(std::move(*shared));
        if (change == nullptr) return;
        const int rv = raft_assign(&raft_, &change->req, id, to_raft_role(role), on_changed);
        // libraft 0.15's raft_assign keeps the request as the pending change
        // (client.c) before it submits it, and leaves it there when the
        // submission fails at once (no memory, or the append refused
        // synchronously): change_started frees the Change, so libraft must
        // not keep it, or a step-down would call on_changed on freed memory
        // and the next change would meet its assert (uaf24). raft_add and
        // raft_remove keep it only once submitted.
        if (rv != 0 && raft_.leader_state.change == &change->req) raft_.leader_state.change = nullptr;
        change_started(change, rv, "raft assign");
      },
      [shared] { (*shared)(stopped()); });
}

void RaftNode::Impl::remove_server(std::uint64_t id, ChangeCallback done) {
  auto shared = std::make_shared<ChangeCallback>(std::move(done));
  post(
      [this, id, shared]() mutable {
        Change* change = new_change(std::move(*shared));
        if (change == nullptr) return;
        change_started(change, raft_remove(&raft_, &change->req, id, on_changed), "raft remove");
      },
      [shared] { (*shared)(stopped()); });
}

}  // namespace netsem::raft
