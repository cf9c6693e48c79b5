// RaftNode::Impl (raft_node.h's RaftNode): libraft driven from one libuv loop
// on the raft thread. Private to src/raft. Other threads talk to it through a
// locked queue (proposals, and configuration changes as tasks) and a uv_async
// handle that wakes the loop; a uv_check handle, run after each loop
// iteration, publishes the node's state for status() and reports role
// changes. libraft's FSM hooks adapt the byte-based StateMachine: batch
// entries are unframed into commands, the results go back to the proposer
// through the raft_apply callback, which libraft calls right after the FSM's
// apply of the same entry.
//
// Impl's member functions live in one file per concern:
// - raft_node.cc: the node's life. RaftNode's own functions, open() (the
//   data directory locked and checked, libraft and its transport set up,
//   the loop's handles), finish_loop() and the close, the Raft port's checks
//   of sources and claimed ids.
// - raft_node_recovery.cc: the stored log read before raft_start: --recover
//   (recover), the raised term (raise_term_to), and a failed first start's
//   bootstrap undone (undo_bootstrap).
// - raft_node_proposals.cc: the grant path, which must stay in one file:
//   the wake-up and the check phase, pump() and group commit, raft_apply's
//   callback (on_applied), the commit pushed to the followers (push_commit),
//   and libraft's FSM hooks (fsm_apply, fsm_snapshot, fsm_restore).
// - raft_node_status.cc: what status() shows (publish) and what feeds it
//   from raft_io: the wrappers of raft_uv's append, set_term, set_vote and
//   start (contacts heard, writes failed), and the node's failure for good.
// - raft_node_membership.cc: configuration changes (add_server, assign,
//   remove_server) and their callbacks, told after publish() when they fail.
// Not the node itself, and in files of their own: the data directory's
// checks and the words of its load failures (data_dir_checks.h), libraft's
// errors as Statuses (raft_status.h), servers and roles to and from
// libraft's (servers.h), the Raft port (raft_port.h).
//
// To add to it: declare the member here, and define it in the file of its
// concern; a function the grant path calls goes into raft_node_proposals.cc,
// so that the compiler sees it beside pump() and on_applied(). Member
// functions run on the raft thread unless they lock mu_ (propose, post,
// status, request_stop); state is the raft thread's unless marked "guarded
// by mu_".
#pragma once

#include <unistd.h>
#include <uv.h>

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
#include <raft/uv.h>
}

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "netsem/status.h"
#include "raft/entry_format.h"
#include "raft/raft_node.h"
#include "raft/raft_port.h"
#include "raft/segment_fill.h"
#include "stats/histogram.h"

namespace netsem::raft {

class RaftNode::Impl {
 public:
  Impl(RaftOptions options, StateMachine& machine) : options_(std::move(options)), machine_(machine) {}
  ~Impl() {
    if (dir_fd_ >= 0) ::close(dir_fd_);  // releases the directory's lock
    if (group_fd_ >= 0) ::close(group_fd_);
  }

  Status open();
  // RaftOptions::recover, from open() before raft_start: the latest stored
  // configuration replaced by this server alone (raft_recover).
  Status recover();
  // RaftOptions::min_term, from open() before raft_start: the stored term
  // raised to it when below (logged).
  Status raise_term_to(std::uint64_t min_term);
  // After a failed open() and finish_loop(): when this open() bootstrapped
  // the directory, removes what the bootstrap and the start made, so that
  // the directory is pristine again; what is appended to open()'s reason.
  std::string undo_bootstrap();
  void run() { uv_run(&loop_, UV_RUN_DEFAULT); }
  void finish_loop();

  void propose(std::string command, ProposeCallback done) {
    if (command.size() > kMaxCommandBytes) {
      return done(
          Status(StatusCode::kInvalidArgument, "a command is at most " + std::to_string(kMaxCommandBytes) + " bytes"));
    }
    {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        queue_.push_back({std::move(command), std::move(done)});
        // Only when pump() would act: a wake per proposal while a batch is
        // in flight cost the raft thread a wake-up per command for nothing.
        if (queue_.size() >= wake_at_) uv_async_send(&wake_);
        return;
      }
    }
    done(Status(StatusCode::kShutdown, "the raft node is stopping"));
  }

  // Runs `task` on the raft thread, or `refused` here when the node is stopping.
  void post(std::function<void()> task, const std::function<void()>& refused) {
    {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        tasks_.push_back(std::move(task));
        uv_async_send(&wake_);
        return;
      }
    }
    refused();
  }

  NodeStatus status() const {
    std::lock_guard lock(mu_);
    NodeStatus copy = status_;
    copy.proposals_queued = queue_.size();
    return copy;
  }

  void request_stop() {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    uv_async_send(&wake_);
  }

  // Fails what is left after the loop ended (proposals and tasks that never ran).
  void fail_leftovers() {
    std::deque<Pending> queue;
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard lock(mu_);
      queue.swap(queue_);
      tasks.swap(tasks_);
    }
    for (Pending& p : queue) p.done(Status(StatusCode::kShutdown, "the raft node stopped"));
    closing_ = true;
    for (auto& task : tasks) task();  // each fails itself when closing_
  }

  void add_server(std::uint64_t id, std::string address, ChangeCallback done);
  void assign(std::uint64_t id, ServerRole role, ChangeCallback done);
  void remove_server(std::uint64_t id, ChangeCallback done);

  std::thread thread;

 private:
  struct Pending {
    std::string command;
    ProposeCallback done;
  };
  struct Batch {
    struct raft_apply req {};
    Impl* impl = nullptr;
    std::vector<ProposeCallback> callbacks;
  };
  struct Change {
    struct raft_change req {};
    Impl* impl = nullptr;
    std::string address;
    ChangeCallback done;
  };

  // Raft thread: libuv and libraft callbacks.
  static void on_wake(uv_async_t* handle);
  static void on_check(uv_check_t* handle);
  static void on_group_commit(uv_poll_t* handle, int status, int events);
  static void on_applied(struct raft_apply* req, int status, void* result);
  static void on_changed(struct raft_change* req, int status);
  static void on_barrier(struct raft_barrier* req, int status);
  static void on_raft_closed(struct raft* raft);
  static int fsm_apply(raft_fsm* fsm, const raft_buffer* buf, void** result);
  static int fsm_snapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs);
  static int fsm_restore(raft_fsm* fsm, raft_buffer* buf);

  void pump();
  void push_commit();
  void set_group_timer(std::chrono::microseconds after);
  void publish();
  Status not_leader() const;
  Change* new_change(ChangeCallback done);
  void change_started(Change* change, int rv, std::string_view what);
  // raft_uv's append, wrapped: a write of the log that fails (a full or
  // failing disk) is this node's failure. libraft 0.15 only rejects the
  // entries (a follower) or fails their request (a leader) and tries
  // again, and a node that hit one was seen never to store an entry again
  // after the disk recovered: it must be restarted (on its data).
  static int append_wrapped(raft_io* io, raft_io_append* req, const raft_entry entries[], unsigned n,
                            raft_io_append_cb cb);
  static void append_done(raft_io_append* req, int status);
  // raft_uv's set_term and set_vote, wrapped: a write of the term and vote
  // (metadata1 or metadata2) that fails makes libraft 0.15 turn the node
  // unavailable for good, saying nothing; it is this node's failure too.
  static int set_term_wrapped(raft_io* io, raft_term term);
  static int set_vote_wrapped(raft_io* io, raft_id server_id);
  // raft_uv's start, wrapped so that every message received passes through
  // recv_wrapped first, which notes when each server was last heard from
  // (NodeStatus::last_contact_ms; libraft keeps only a flag per follower,
  // reset every election timeout).
  static int start_wrapped(raft_io* io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
  static void recv_wrapped(raft_io* io, raft_message* message);
  // Records a failed write (`what`: of the log, of the term and vote) as
  // this node's failure, logged with libraft's cause and what to do; ends
  // the process when RaftOptions::exit_on_write_failure says so.
  void write_failed(int status, std::string_view what, std::string_view after);
  // libraft turned the node unavailable with no failure recorded (a write
  // refused at once on a follower, say for want of a descriptor: audit28
  // F2; or out of memory, a log that conflicts). libraft 0.15 never leaves
  // that state, so it is this node's failure as a failed write is;
  // publish() notices it after every event. The failure says what libraft
  // said (raft_errmsg), and the refused append only when there was one.
  void became_unavailable();
  // Records `failure` as this node's, logged as critical, and ends the
  // process when RaftOptions::exit_on_write_failure says so.
  void fail_for_good(std::string failure);
  // The Raft port's checks (RaftOptions::known_servers, raft_port.h), on
  // the raft thread: whether a connection from `source` is read at all, and
  // whether it may speak as server `id`.
  bool admits_source(std::uint32_t source) const;
  bool admits_claim(std::uint32_t source, std::uint64_t id) const;
  // Calls `f(id, IPv4 host)` for each server this node knows with an IPv4
  // Raft address: of its configuration, bootstrap, file, and itself.
  template <typename F>
  void for_known_servers(F f) const;

  RaftOptions options_;
  StateMachine& machine_;

  uv_loop_t loop_{};
  uv_async_t wake_{};
  uv_check_t check_{};
  // Group commit (RaftOptions::group_commit): a timerfd, since libuv's
  // timers count whole milliseconds.
  uv_poll_t group_poll_{};
  int group_fd_ = -1;
  raft_uv_transport transport_{};
  // The Raft port's listener and the transport's shims (raft_port.h): kept
  // until the loop has run to its end.
  std::unique_ptr<RaftPort> port_;
  raft_io io_{};
  raft_fsm fsm_{};
  struct raft raft_ {};
  int dir_fd_ = -1;
  // The data directory's new segments are zero-filled (segment_fill.h).
  std::optional<ZeroFilledSegments> zero_filled_;
  // RaftOptions::recover: the configuration replaced, the new one's index.
  std::vector<ServerInfo> recovered_from_;
  std::uint64_t recovered_at_ = 0;
  // Set when open() bootstrapped the directory: the names it held before
  // (a pristine directory's: no whole metadata file, no log).
  std::optional<std::set<std::string>> before_bootstrap_;
  bool loop_open_ = false, transport_open_ = false, io_open_ = false, raft_open_ = false, handles_open_ = false;

  // Raft thread only.
  bool closing_ = false;
  bool raft_closing_ = false;  // raft_close (or raft_uv_close) called: cancelled appends are no failure
  bool in_flight_ = false;
  bool pump_in_check_ = false;  // a batch committed: pump() in this turn's check phase
  // The machine wants the followers told of a commit (take_commit_wanted):
  // push_commit() in this turn's check phase, unless a batch carries it.
  bool push_in_check_ = false;
  std::uint64_t commit_pushes_ = 0;
  // Group commit: the next batch waits for `group_target_` queued commands
  // or for the timer, whichever comes first.
  bool grouping_ = false;
  std::size_t group_target_ = 0;
  std::vector<Result<std::string>> results_;  // the results of the entry being applied
  std::string scratch_;
  Role last_role_ = Role::kUnavailable;
  std::uint64_t last_term_ = 0;
  std::uint64_t batches_ = 0, commands_ = 0;
  // The batches' figures (NodeStatus) and when the batch in flight was proposed.
  stats::Histogram commit_us_, batch_commands_;
  std::uint64_t proposed_at_ns_ = 0;
  std::string failure_;
  // Raft thread: what raft_uv said when it last refused an append at once
  // (append_wrapped), with its errno in words; "" when none was refused.
  // became_unavailable names it: libraft 0.15 turns a follower unavailable
  // for that, and says nothing of it itself.
  std::string append_refused_;
  // Callbacks publish() runs once it stored the status (on_changed).
  std::vector<std::function<void()>> after_publish_;
  std::string halted_at_;  // set once the machine halted (fsm_apply): what, where
  // raft_uv's own append; the appends in flight of every node of the
  // process, each with its node and libraft's callback (a request names
  // neither: its data is libraft's).
  int (*uv_append_)(raft_io*, raft_io_append*, const raft_entry[], unsigned, raft_io_append_cb) = nullptr;
  int (*uv_set_term_)(raft_io*, raft_term) = nullptr;
  int (*uv_set_vote_)(raft_io*, raft_id) = nullptr;
  int (*uv_start_)(raft_io*, unsigned, raft_io_tick_cb, raft_io_recv_cb) = nullptr;
  raft_io_recv_cb raft_recv_ = nullptr;  // libraft's own receive callback
  // Raft thread: when each server was last heard from (uv_hrtime, ns).
  std::unordered_map<std::uint64_t, std::uint64_t> heard_at_ns_;
  // Raft thread: when this node last heard from a leader, or led as a
  // member (uv_hrtime, ns; 0: never). NodeStatus::leader_heard_ms.
  std::uint64_t leader_heard_ns_ = 0;
  // Raft thread: this node was in the configuration at some time in this run.
  bool was_member_ = false;
  inline static std::mutex appends_mu_;
  inline static std::unordered_map<raft_io_append*, std::pair<Impl*, raft_io_append_cb>> appends_;

  mutable std::mutex mu_;
  std::deque<Pending> queue_;                 // guarded by mu_
  std::vector<std::function<void()>> tasks_;  // guarded by mu_
  bool stopping_ = false;                     // guarded by mu_
  // guarded by mu_: propose() wakes the raft thread once the queue holds this
  // many (pump() sets it; kNoWake while a batch is in flight).
  static constexpr std::size_t kNoWake = static_cast<std::size_t>(-1);
  std::size_t wake_at_ = 1;
  NodeStatus status_;  // guarded by mu_
};

}  // namespace netsem::raft
