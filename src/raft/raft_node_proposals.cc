// RaftNode::Impl (raft_node_impl.h): the grant path, kept in one file so
// that its functions are compiled together. A proposal (propose, in the
// header) wakes the raft thread (on_wake) when pump() would act; pump()
// turns the queue into one batch entry at a time (raft_apply), or waits for
// a group (RaftOptions::group_commit, a timerfd); libraft applies the entry
// through fsm_apply and then calls on_applied, which answers the proposers
// and has the loop's check phase (on_check) pump the next batch. A leader
// tells its followers of a commit they wait for with a barrier
// (push_commit). Snapshots go through fsm_snapshot and fsm_restore.
#include <spdlog/spdlog.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
}

#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "raft/entry_format.h"
#include "raft/raft_node_impl.h"
#include "raft/raft_status.h"

namespace netsem::raft {

void RaftNode::Impl::on_wake(uv_async_t* handle) {
  Impl* self = static_cast<Impl*>(handle->data);
  if (self->closing_) return;
  std::vector<std::function<void()>> tasks;
  bool stopping = false;
  {
    std::lock_guard lock(self->mu_);
    tasks.swap(self->tasks_);
    stopping = self->stopping_;
  }
  for (auto& task : tasks) task();
  if (stopping) {
    self->closing_ = true;
    self->raft_closing_ = true;
    self->publish();
    raft_close(&self->raft_, on_raft_closed);
    return;
  }
  self->pump();
}

Status RaftNode::Impl::not_leader() const {
  raft_id id = 0;
  const char* address = nullptr;
  raft_leader(const_cast<struct raft*>(&raft_), &id, &address);
  if (id == 0 || address == nullptr) return Status(StatusCode::kUnavailable, "not the leader (no leader known)");
  return Status(StatusCode::kUnavailable,
                "not the leader (leader: " + std::to_string(id) + " at " + std::string(address) + ")");
}

// The group commit's wait is over: the next batch goes with what is queued.
void RaftNode::Impl::on_group_commit(uv_poll_t* handle, int, int) {
  Impl* self = static_cast<Impl*>(handle->data);
  std::uint64_t expirations = 0;
  (void)!::read(self->group_fd_, &expirations, sizeof expirations);
  self->grouping_ = false;
  if (!self->closing_) self->pump();
}

void RaftNode::Impl::set_group_timer(std::chrono::microseconds after) {
  itimerspec at{};
  at.it_value.tv_sec = static_cast<time_t>(after.count() / 1'000'000);
  at.it_value.tv_nsec = static_cast<long>(after.count() % 1'000'000 * 1000);
  (void)::timerfd_settime(group_fd_, 0, &at, nullptr);  // all zero: disarmed
}

// Turns queued proposals into the next batch, unless one is in flight (or
// the group commit waits for more). Sets what a proposal must make of the
// queue to wake this thread (wake_at_): nothing while a batch is in flight
// (its commit pumps), the group's count while it waits, else the first.
void RaftNode::Impl::pump() {
  while (!in_flight_ && !closing_) {
    if (grouping_) {
      {
        std::lock_guard lock(mu_);
        if (queue_.size() < group_target_) {
          wake_at_ = group_target_;  // the rest may come; on_group_commit ends the wait
          return;
        }
      }
      grouping_ = false;
      set_group_timer(std::chrono::microseconds(0));
    }
    std::vector<std::string> commands;
    std::vector<ProposeCallback> callbacks;
    {
      std::lock_guard lock(mu_);
      if (queue_.empty()) wake_at_ = 1;
      while (!queue_.empty() && commands.size() < options_.max_batch) {
        Pending& p = queue_.front();
        commands.push_back(std::move(p.command));
        callbacks.push_back(std::move(p.done));
        queue_.pop_front();
      }
    }
    if (commands.empty()) return;
    if (raft_state(&raft_) != RAFT_LEADER) {
      const Status why = not_leader();
      for (auto& done : callbacks) done(why);
      continue;
    }
    encode_batch(commands, scratch_);
    raft_buffer buf;
    buf.len = scratch_.size();
    buf.base = raft_malloc(buf.len);
    if (buf.base == nullptr) {
      for (auto& done : callbacks) done(Status(StatusCode::kInternal, "raft: out of memory"));
      continue;
    }
    std::memcpy(buf.base, scratch_.data(), buf.len);
    auto batch = std::make_unique<Batch>();
    batch->impl = this;
    batch->req.data = batch.get();
    batch->callbacks = std::move(callbacks);
    const int rv = raft_apply(&raft_, &batch->req, &buf, 1, on_applied);
    if (rv != 0) {
      raft_free(buf.base);
      const Status why = rv == RAFT_NOTLEADER ? not_leader() : raft_status(rv, "raft apply", raft_errmsg(&raft_));
      for (auto& done : batch->callbacks) done(why);
      continue;
    }
    ++batches_;
    commands_ += batch->callbacks.size();
    batch_commands_.observe(batch->callbacks.size());
    in_flight_ = true;
    {
      std::lock_guard lock(mu_);
      wake_at_ = kNoWake;  // proposals wait for the commit, which pumps
    }
    proposed_at_ns_ = uv_hrtime();
    batch.release();  // owned by libraft until on_applied
  }
}

// Entries applied here that a follower's server answers (take_commit_wanted)
// wait on that follower until it learns of their commit, which libraft sends
// only with the next AppendEntries: with no batch to replicate, the next
// heartbeat (heartbeat_timeout; a follower's client saw 3 or 4 cycles a
// second). A barrier is an entry of libraft's own that no StateMachine sees,
// sent at once to every follower with the commit index. Its cost: one more
// small write on each server, only when a follower waits and no batch goes.
void RaftNode::Impl::push_commit() {
  if (raft_state(&raft_) != RAFT_LEADER) return;
  using Barrier = struct raft_barrier;
  auto* req = new (std::nothrow) Barrier{};
  if (req == nullptr) return;  // the heartbeat tells them
  if (::raft_barrier(&raft_, req, on_barrier) != 0) {
    delete req;
    return;
  }
  ++commit_pushes_;
}

// Applied, or failed (leadership lost, the node closing): nothing waits on it.
void RaftNode::Impl::on_barrier(struct raft_barrier* req, int) {
  delete req;
}

void RaftNode::Impl::on_applied(struct raft_apply* req, int status, void* result) {
  std::unique_ptr<Batch> batch(static_cast<Batch*>(req->data));
  Impl* self = batch->impl;
  self->in_flight_ = false;
  if (status == 0) {
    self->commit_us_.observe((uv_hrtime() - self->proposed_at_ns_) / 1000);
    if (self->options_.group_commit.count() > 0 && !self->closing_) {
      // Its answers bring about as many commands as it held.
      self->grouping_ = true;
      self->group_target_ = batch->callbacks.size();
      self->set_group_timer(self->options_.group_commit);
    }
    auto* results = static_cast<std::vector<Result<std::string>>*>(result);
    assert(results != nullptr && results->size() == batch->callbacks.size());
    for (std::size_t i = 0; i < batch->callbacks.size(); ++i) batch->callbacks[i](std::move((*results)[i]));
    results->clear();
  } else {
    Status why =
        self->closing_ ? Status(StatusCode::kShutdown, "the raft node stopped before the command committed")
        : status == RAFT_LEADERSHIPLOST
            ? Status(StatusCode::kUnavailable, "leadership lost before the command committed (it may still be applied)")
            : raft_status(status, "raft apply", raft_errmsg(&self->raft_));
    for (auto& done : batch->callbacks) done(why);
  }
  // The next batch is proposed from the loop's next turn, not from here:
  // libraft calls this inside its own state changes too. When a leader steps
  // down (it heard no majority for an election timeout), it fails its
  // pending requests while its state still says leader but its replication
  // state is already gone, and a raft_apply from this callback then crashed
  // libraft 0.15 (a SIGSEGV in raft_apply, found by the cluster failure test
  // killing both followers of a leader with proposals queued).
  // On success (always from an I/O callback: the poll phase) the loop's
  // check phase, later in the same turn, pumps without a system call; a
  // failure may come from libraft's timers, before a poll that could block.
  if (self->closing_) return;
  if (status == 0) {
    self->pump_in_check_ = true;
    // And, should the check phase not come before a blocking poll, a
    // proposal wakes the thread.
    std::lock_guard lock(self->mu_);
    self->wake_at_ = 1;
  } else {
    uv_async_send(&self->wake_);
  }
}

int RaftNode::Impl::fsm_apply(raft_fsm* fsm, const raft_buffer* buf, void** result) {
  Impl* self = static_cast<Impl*>(fsm->data);
  // libraft advances last_applied after this call: this entry is the next one.
  const std::uint64_t index = raft_last_applied(&self->raft_) + 1;
  auto commands = decode_batch(std::string_view(static_cast<const char*>(buf->base), buf->len));
  if (!commands) {
    // A committed entry that does not parse: applying nothing and moving on
    // would make this replica differ from the others. Stop applying, loudly.
    self->failure_ = "entry " + std::to_string(index) + ": " + commands.status().to_string();
    spdlog::error("raft: {} (the node stops applying)", self->failure_);
    return RAFT_CORRUPT;
  }
  // Once the machine is halted (StateMachine::halted) it is given nothing
  // more: each command's result says so, and libraft goes on committing (an
  // error here would also fail raft_start, and turn a follower unavailable,
  // without a word on why). fsm_snapshot refuses every snapshot from then on,
  // so the log keeps the entry that halted it, and a restart applies it again.
  self->results_.clear();
  self->results_.reserve(commands->size());
  for (std::string_view command : *commands) {
    if (!self->halted_at_.empty()) {
      self->results_.push_back(Status(StatusCode::kCorruption, self->halted_at_));
      continue;
    }
    self->results_.push_back(self->machine_.apply(index, command));
    if (self->machine_.halted()) {
      self->halted_at_ = "the state machine halted at entry " + std::to_string(index) + " (" +
                         self->results_.back().status().to_string() + ")";
      spdlog::error("raft: {}: it is given nothing more, and no snapshot is taken", self->halted_at_);
    }
  }
  // Asked on every replica, so that a follower's flag never outlives its
  // term as follower; acted on by a leader only.
  if (self->machine_.take_commit_wanted() && raft_state(&self->raft_) == RAFT_LEADER) self->push_in_check_ = true;
  *result = &self->results_;
  return 0;
}

int RaftNode::Impl::fsm_snapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs) {
  Impl* self = static_cast<Impl*>(fsm->data);
  // Nothing a halted machine holds is stored: its state skipped a committed
  // entry. RAFT_BUSY: libraft gives up this snapshot, quietly, and tries
  // again later (every error but RAFT_BUSY would go back up through libraft's
  // apply and fail raft_start or the receipt of entries).
  if (!self->halted_at_.empty()) return RAFT_BUSY;
  const std::string framed = encode_snapshot(self->machine_.snapshot());
  auto* array = static_cast<raft_buffer*>(raft_malloc(sizeof(raft_buffer)));
  if (array == nullptr) return RAFT_NOMEM;
  array[0].len = framed.size();
  array[0].base = raft_malloc(framed.size());
  if (array[0].base == nullptr) {
    raft_free(array);
    return RAFT_NOMEM;
  }
  std::memcpy(array[0].base, framed.data(), framed.size());
  *bufs = array;  // libraft frees both (fsm version 1)
  *n_bufs = 1;
  return 0;
}

int RaftNode::Impl::fsm_restore(raft_fsm* fsm, raft_buffer* buf) {
  Impl* self = static_cast<Impl*>(fsm->data);
  auto payload = decode_snapshot(std::string_view(static_cast<const char*>(buf->base), buf->len));
  Status status = payload ? self->machine_.restore(*payload) : payload.status();
  if (!status) {
    spdlog::error("raft: snapshot refused: {}", status.to_string());
    return RAFT_CORRUPT;
  }
  raft_free(buf->base);  // ours on success
  return 0;
}

void RaftNode::Impl::on_check(uv_check_t* handle) {
  Impl* self = static_cast<Impl*>(handle->data);
  if (self->pump_in_check_) {
    self->pump_in_check_ = false;
    if (!self->closing_) self->pump();
  }
  if (self->push_in_check_) {
    self->push_in_check_ = false;
    // A batch just proposed carries the new commit index in its
    // AppendEntries already.
    if (!self->closing_ && !self->in_flight_) self->push_commit();
  }
  self->publish();
}

}  // namespace netsem::raft
