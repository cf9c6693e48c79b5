// RaftNode (raft_node.h): libraft driven from one libuv loop on the raft
// thread. Other threads talk to it through a locked queue (proposals, and
// configuration changes as tasks) and a uv_async handle that wakes the loop;
// a uv_check handle, run after each loop iteration, publishes the node's
// state for status() and reports role changes. libraft's FSM hooks adapt the
// byte-based StateMachine: batch entries are unframed into commands, the
// results go back to the proposer through the raft_apply callback, which
// libraft calls right after the FSM's apply of the same entry. The Raft
// port's listener and the shims on libraft's TCP transport are RaftPort's
// (raft_port.h); the node tells it which sources and ids it knows. Not the
// node itself, and in files of their own: the data directory's checks and
// the words of its load failures (data_dir_checks.h), libraft's errors as
// Statuses (raft_status.h), servers and roles to and from libraft's
// (servers.h).
#include "raft/raft_node.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
#include <raft/uv.h>
}

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/dir_lock.h"
#include "raft/data_dir_checks.h"
#include "raft/entry_format.h"
#include "raft/open_segments.h"
#include "raft/raft_port.h"
#include "raft/raft_status.h"
#include "raft/segment_fill.h"
#include "raft/servers.h"

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
  // F2). libraft 0.15 never leaves that state, so it is this node's failure
  // as a failed write is; publish() notices it after every event.
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

template <typename F>
void RaftNode::Impl::for_known_servers(F f) const {
  auto consider = [&](std::uint64_t id, std::string_view address) {
    if (const std::optional<std::uint32_t> host = ipv4_host_of(address)) f(id, *host);
  };
  for (unsigned i = 0; i < raft_.configuration.n; ++i) {
    consider(raft_.configuration.servers[i].id, raft_.configuration.servers[i].address);
  }
  for (const ServerInfo& server : options_.bootstrap) consider(server.id, server.address);
  for (const ServerInfo& server : options_.known_servers) consider(server.id, server.address);
  consider(options_.id, options_.address);
}

// A source is a known server's host (on loopback too: each server's
// connections leave from its own Raft host, RaftPortOptions::source_host).
bool RaftNode::Impl::admits_source(std::uint32_t source) const {
  bool known = false;
  for_known_servers([&](std::uint64_t, std::uint32_t host) {
    if (host == source) known = true;
  });
  return known || (options_.allow_peer && options_.allow_peer(source));
}

// The claimed id must be a known server's whose host is the source;
// raft_allowed_networks may claim any.
bool RaftNode::Impl::admits_claim(std::uint32_t source, std::uint64_t id) const {
  if (options_.allow_peer && options_.allow_peer(source)) return true;
  bool matches = false;
  for_known_servers([&](std::uint64_t server, std::uint32_t host) {
    if (server == id && host == source) matches = true;
  });
  return matches;
}

Status RaftNode::Impl::open() {
  const RaftOptions& o = options_;
  if (o.id == 0) return Status(StatusCode::kInvalidArgument, "the raft id must be > 0");
  if (Status s = check_address(o.address); !s) return s;
  if (!o.bind_address.empty()) {
    if (Status s = check_address(o.bind_address + o.address.substr(o.address.rfind(':'))); !s) {
      return Status(StatusCode::kInvalidArgument, "bind address: " + s.message());
    }
  }
  if (o.heartbeat_timeout.count() <= 0 || o.election_timeout <= o.heartbeat_timeout) {
    return Status(StatusCode::kInvalidArgument, "the heartbeat timeout must be > 0 and below the election timeout");
  }
  if (o.group_commit.count() < 0 || o.group_commit > std::chrono::seconds(1)) {
    return Status(StatusCode::kInvalidArgument, "group_commit must be in [0, 1 s]");
  }
  if (o.max_batch == 0 || o.max_batch > kMaxBatchCommands) {
    return Status(StatusCode::kInvalidArgument, "max_batch must be in [1, " + std::to_string(kMaxBatchCommands) + "]");
  }
  if (o.snapshot_threshold == 0) return Status(StatusCode::kInvalidArgument, "the snapshot threshold must be > 0");

  // One node per data directory: libraft does not lock it, and two writers
  // of one log would destroy it. The lock is held until the node is gone.
  dir_fd_ = ::open(o.data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) {
    const int err = errno;
    return Status(err == ENOENT ? StatusCode::kNotFound : StatusCode::kIoError,
                  "raft data directory " + o.data_dir + ": " + std::strerror(err));
  }
  // A killed server's lock is waited for until its exit released it (dir_lock.h).
  if (const int err = lock_exclusive(dir_fd_); err != 0) {
    if (err != EWOULDBLOCK) {
      return Status(StatusCode::kIoError, "raft data directory " + o.data_dir + ": cannot lock: " + std::strerror(err));
    }
    const long holder = lock_holder(dir_fd_);
    return Status(StatusCode::kBusy, "raft data directory " + o.data_dir + " is in use by another node (" +
                                         (holder > 0 ? "pid " + std::to_string(holder) : std::string("pid unknown")) +
                                         ")");
  }

  // libraft would take damage in the open segment for a torn write and drop
  // what follows it: refused here first (open_segments.h).
  if (Status checked = check_open_segments(o.data_dir, o.repair); !checked) return checked;
  if (Status checked = check_metadata(o.data_dir); !checked) return checked;

  if (int rv = uv_loop_init(&loop_); rv != 0) return Status(StatusCode::kInternal, uv_strerror(rv));
  loop_open_ = true;
  group_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (group_fd_ < 0) return Status(StatusCode::kIoError, std::string("timerfd_create: ") + std::strerror(errno));
  if (int rv = raft_uv_tcp_init(&transport_, &loop_); rv != 0) return raft_status(rv, "raft transport", "");
  transport_open_ = true;
  {
    RaftPortOptions port;
    port.listen_address = o.bind_address.empty() ? o.address : o.bind_address + o.address.substr(o.address.rfind(':'));
    port.handshake_timeout = o.handshake_timeout.count() > 0
                                 ? o.handshake_timeout
                                 : std::max<std::chrono::milliseconds>(std::chrono::seconds(5), o.election_timeout);
    port.max_pending_per_source = o.max_pending_handshakes_per_source;
    port.max_pending = o.max_pending_handshakes;
    port.source_host = o.address.substr(0, o.address.rfind(':'));
    port.admits_source = [this](std::uint32_t source) { return admits_source(source); };
    port.admits_claim = [this](std::uint32_t source, std::uint64_t id) { return admits_claim(source, id); };
    port_ = std::make_unique<RaftPort>(&transport_, &loop_, std::move(port));
  }
  if (!o.bind_address.empty()) {
    // Listen there, on the advertised port (RaftPort does, port.listen_address);
    // libraft's own listener, which the address was for, is not used: this
    // only checks the address as libraft did.
    const std::string bind = o.bind_address + o.address.substr(o.address.rfind(':'));
    if (int rv = raft_uv_tcp_set_bind_address(&transport_, bind.c_str()); rv != 0) {
      return raft_status(rv, "raft bind address " + bind, "");
    }
  }
  zero_filled_.emplace(o.data_dir);
  if (!ZeroFilledSegments::interposed()) {
    spdlog::warn(
        "raft: libraft's posix_fallocate is not netsemd's, so new segments of {} are not zero-filled: on ext4 "
        "and xfs each append then takes a detour through libuv's thread pool (src/raft/segment_fill.h)",
        o.data_dir);
  }
  if (int rv = raft_uv_init(&io_, &loop_, o.data_dir.c_str(), &transport_); rv != 0) {
    return raft_status(rv, "raft data directory " + o.data_dir, io_.errmsg);
  }
  io_open_ = true;
  // Damage on disk is refused, never repaired by dropping what follows it.
  raft_uv_set_auto_recovery(&io_, false);
  raft_uv_set_connect_retry_delay(&io_, static_cast<unsigned>(o.connect_retry.count()));
  uv_append_ = io_.append;
  io_.append = append_wrapped;
  uv_set_term_ = io_.set_term;
  io_.set_term = set_term_wrapped;
  uv_set_vote_ = io_.set_vote;
  io_.set_vote = set_vote_wrapped;
  uv_start_ = io_.start;
  io_.start = start_wrapped;

  fsm_.version = 1;
  fsm_.data = this;
  fsm_.apply = fsm_apply;
  fsm_.snapshot = fsm_snapshot;
  fsm_.restore = fsm_restore;
  if (int rv = raft_init(&raft_, &io_, &fsm_, o.id, o.address.c_str()); rv != 0) {
    return load_failure(rv, "raft init", o.data_dir, raft_errmsg(&raft_));
  }
  raft_open_ = true;
  raft_.data = this;
  raft_set_election_timeout(&raft_, static_cast<unsigned>(o.election_timeout.count()));
  raft_set_heartbeat_timeout(&raft_, static_cast<unsigned>(o.heartbeat_timeout.count()));
  raft_set_snapshot_threshold(&raft_, o.snapshot_threshold);
  raft_set_snapshot_trailing(&raft_, o.snapshot_trailing);
  raft_set_install_snapshot_timeout(&raft_, static_cast<unsigned>(o.install_snapshot_timeout.count()));
  // Pre-vote: a server that was cut off (or paused) asks whether it could win
  // before raising its term, so its return does not depose a working leader.
  raft_set_pre_vote(&raft_, true);

  if (o.recover) {
    if (Status recovered = recover(); !recovered) return recovered;
  } else if (!o.bootstrap.empty()) {
    raft_configuration conf;
    raft_configuration_init(&conf);
    int rv = 0;
    for (const ServerInfo& server : o.bootstrap) {
      rv = raft_configuration_add(&conf, server.id, server.address.c_str(), to_raft_role(server.role));
      if (rv != 0) break;
    }
    std::set<std::string> before;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(o.data_dir, ec), end; !ec && it != end; it.increment(ec)) {
      before.insert(it->path().filename().string());
    }
    if (rv == 0) rv = raft_bootstrap(&raft_, &conf);
    if (rv == 0) before_bootstrap_ = std::move(before);
    raft_configuration_close(&conf);
    // RAFT_CANTBOOTSTRAP: the directory holds a log already, which wins.
    if (rv == RAFT_CANTBOOTSTRAP) {
      spdlog::debug("raft: data directory {} is not pristine, bootstrap skipped", o.data_dir);
    } else if (rv != 0) {
      return raft_status(rv, "raft bootstrap", raft_errmsg(&raft_));
    } else {
      spdlog::info("raft: bootstrapped {} with {} servers", o.data_dir, o.bootstrap.size());
    }
  }
  if (o.min_term > 0) {
    if (Status raised = raise_term_to(o.min_term); !raised) return raised;
  }
  if (int rv = raft_start(&raft_); rv != 0) {
    if (const auto why = port_->listen_failure()) {
      // Another process listens there (or the address is not this host's):
      // said as a taken client port is, naming the address.
      const std::string where =
          o.bind_address.empty() ? o.address : o.bind_address + o.address.substr(o.address.rfind(':'));
      return Status(StatusCode::kIoError, "cannot listen on the Raft address " + where + ": " + *why);
    }
    return load_failure(rv, "raft start", o.data_dir, raft_errmsg(&raft_));
  }
  uv_async_init(&loop_, &wake_, on_wake);
  wake_.data = this;
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, on_check);
  uv_poll_init(&loop_, &group_poll_, group_fd_);
  group_poll_.data = this;
  uv_poll_start(&group_poll_, UV_READABLE, on_group_commit);
  handles_open_ = true;
  publish();
  return Status::ok();
}

namespace {

// What raft_io's load returned (LoadedLog::from), freed with it.
struct LoadedLog {
  raft_term term = 0;
  raft_id vote = 0;
  raft_snapshot* snapshot = nullptr;
  raft_index start_index = 0;
  raft_entry* entries = nullptr;
  std::size_t n = 0;

  LoadedLog() = default;
  LoadedLog(const LoadedLog&) = delete;
  LoadedLog& operator=(const LoadedLog&) = delete;
  ~LoadedLog() {
    if (snapshot != nullptr) {
      raft_configuration_close(&snapshot->configuration);
      for (unsigned i = 0; i < snapshot->n_bufs; ++i) raft_free(snapshot->bufs[i].base);
      raft_free(snapshot->bufs);
      raft_free(snapshot);
    }
    if (entries != nullptr) {
      void* batch = nullptr;
      for (std::size_t i = 0; i < n; ++i) {
        if (entries[i].batch != batch) raft_free(batch = entries[i].batch);
      }
      raft_free(entries);
    }
  }
  // raft_io's load into this; its error code (0 when loaded).
  int from(raft_io& io) { return io.load(&io, &term, &vote, &snapshot, &start_index, &entries, &n); }
};

}  // namespace

// raft_recover appends the new configuration after the last entry of the
// stored log, at term 1 (libraft 0.15's uvRecover), and raft_start then
// takes the latest configuration entry of the log: this server alone, a
// voter, which elects itself at once (a term above every stored one) and
// commits what its log holds with its first entry. The stored log is read
// first (raft_io's load, which raft_start repeats) for what there is to
// recover and the configuration it replaces: libraft would write a first
// configuration into an empty directory as a bootstrap does, and says
// nothing of the old one.

Status RaftNode::Impl::raise_term_to(std::uint64_t min_term) {
  raft_term term = 0;
  {
    LoadedLog log;
    if (int rv = log.from(io_); rv != 0) return load_failure(rv, "raft load", options_.data_dir, io_.errmsg);
    term = log.term;
  }
  if (term >= min_term) return Status::ok();
  if (int rv = uv_set_term_(&io_, min_term); rv != 0) {
    return load_failure(rv, "raft: set the term", options_.data_dir, io_.errmsg);
  }
  spdlog::warn(
      "raft: the stored term was {}, below the {} a recovery of {} owes (its raise of the term did not "
      "happen): raised to {}, so that this server does not lead in the lost leader's term",
      term, min_term, options_.data_dir, min_term);
  return Status::ok();
}

Status RaftNode::Impl::recover() {
  const RaftOptions& o = options_;
  LoadedLog log;
  if (int rv = log.from(io_); rv != 0) return load_failure(rv, "raft recover", o.data_dir, io_.errmsg);
  const raft_term term = log.term;
  const raft_entry* const entries = log.entries;
  const raft_snapshot* const snapshot = log.snapshot;
  const std::size_t n = log.n;
  const raft_index start_index = log.start_index;
  std::optional<std::vector<ServerInfo>> old;
  std::uint64_t old_index = 0;
  for (std::size_t i = n; i-- > 0 && old_index == 0;) {
    if (entries[i].type != RAFT_CHANGE) continue;
    old = decode_configuration(entries[i].buf);
    old_index = start_index + i;
  }
  if (old_index == 0 && snapshot != nullptr) {
    old.emplace();
    for (unsigned i = 0; i < snapshot->configuration.n; ++i) {
      const raft_server& server = snapshot->configuration.servers[i];
      old->push_back({server.id, server.address, from_raft_role(server.role)});
    }
    old_index = snapshot->configuration_index;
  }
  const std::uint64_t last_index = n > 0 ? start_index + n - 1 : snapshot != nullptr ? snapshot->index : 0;
  if (snapshot == nullptr && n == 0) {
    return Status(StatusCode::kNotFound,
                  "--recover: the Raft data directory " + o.data_dir +
                      " holds no log: there is nothing to recover. A new cluster starts without --recover (its "
                      "server.N lines bootstrap it); a server that lost its data joins with join = on and `netsem "
                      "cluster add` on the leader");
  }
  if (!old) {
    return Status(StatusCode::kCorruption, "--recover: the Raft data directory " + o.data_dir +
                                               ": the configuration entry at index " + std::to_string(old_index) +
                                               " does not decode. " + std::string(kDamageAdvice));
  }
  if (std::none_of(old->begin(), old->end(), [&](const ServerInfo& s) { return s.id == o.id; })) {
    return Status(StatusCode::kInvalidArgument,
                  "--recover: the latest configuration in the Raft data directory " + o.data_dir + " (index " +
                      std::to_string(old_index) + ": " + describe_servers(*old) + ") does not hold this server (" +
                      std::to_string(o.id) +
                      "): it was removed, and its log may lag the cluster's; recover the server that was in it "
                      "last. Nothing was changed");
  }
  const std::vector<ServerInfo> alone = {{o.id, o.address, ServerRole::kVoter}};
  if (o.before_recover) {
    const Result<bool> force = o.before_recover(RecoverPlan{*old, old_index, alone, last_index + 1, term + 1});
    if (!force) return force.status();
    if (!*force) return Status::ok();
  }
  raft_configuration conf;
  raft_configuration_init(&conf);
  int rv = raft_configuration_add(&conf, o.id, o.address.c_str(), RAFT_VOTER);
  if (rv == 0) rv = raft_recover(&raft_, &conf);
  raft_configuration_close(&conf);
  if (rv != 0) return load_failure(rv, "raft recover", o.data_dir, raft_errmsg(&raft_));
  // libraft 0.15 makes a lone voter leader in the term it loaded (the fast
  // path of convertToCandidate raises no term): one above it, so that no
  // entry of this leader shares a term with one the lost leader wrote.
  if (rv = uv_set_term_(&io_, term + 1); rv != 0) {
    return load_failure(rv, "raft recover: set the term", o.data_dir, io_.errmsg);
  }
  recovered_from_ = *old;
  recovered_at_ = last_index + 1;
  spdlog::warn(
      "raft: --recover: forced a new configuration in {}: the configuration of index {}, {}, is replaced by this "
      "server alone, {}, at index {} (the log's last entry was {}; the term goes from {} to {}). This server now "
      "leads alone; add fresh servers with `netsem cluster add`, and never start the old ones on their old data",
      o.data_dir, old_index, describe_servers(*old), describe_servers(alone), recovered_at_, last_index, term,
      term + 1);
  return Status::ok();
}

// libraft bootstraps before raft_start, which is where its transport
// listens (raft.h: raft_bootstrap on an instance "not started yet"): a
// first start whose Raft port is taken had written its first configuration
// already, and the next start (the port moved in the server.N lines) kept
// the stored one, the old address (newuser23 finding 4). When open()
// bootstrapped and failed after, nothing was sent or voted (libraft never
// ran), so the files the bootstrap and the start made (metadata1, the
// first segment, open segments) are removed again, and the metadata files
// too: libraft bootstraps only a directory with neither whole, so one there
// before was a torn first write, which libraft itself deletes.
std::string RaftNode::Impl::undo_bootstrap() {
  if (!before_bootstrap_) return {};
  const std::string& dir = options_.data_dir;
  std::vector<std::string> removed;
  std::string failed;
  std::error_code ec;
  std::vector<std::filesystem::path> now;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    now.push_back(it->path());
  }
  std::sort(now.begin(), now.end());
  for (const auto& path : now) {
    const std::string name = path.filename().string();
    if (before_bootstrap_->contains(name) && name != "metadata1" && name != "metadata2") continue;
    std::error_code gone;
    if (std::filesystem::remove(path, gone)) {
      removed.push_back(name);
    } else if (gone) {
      failed += (failed.empty() ? "" : ", ") + name + " (" + gone.message() + ")";
    }
  }
  if (dir_fd_ >= 0) ::fsync(dir_fd_);
  before_bootstrap_.reset();
  std::string names;
  for (const auto& name : removed) names += (names.empty() ? "" : ", ") + name;
  spdlog::info("raft: the first start failed: removed what its bootstrap of {} wrote ({})", dir, names);
  if (!failed.empty()) {
    return "; the first configuration this start wrote could not be removed again (" + failed + "): empty " + dir +
           " before the next start, or it keeps that configuration";
  }
  return "; the first configuration this start wrote was removed again: " + dir +
         " is pristine, and the next start bootstraps it from the server.N lines";
}

// Closes whatever open() opened, on the thread that runs the loop (or on the
// caller of start() when open() failed), and runs the loop until all is closed.
void RaftNode::Impl::finish_loop() {
  raft_closing_ = true;
  if (raft_open_) {
    raft_close(&raft_, on_raft_closed);
    uv_run(&loop_, UV_RUN_DEFAULT);
  } else {
    if (io_open_) raft_uv_close(&io_);
    if (transport_open_) raft_uv_tcp_close(&transport_);
  }
  if (loop_open_) {
    uv_run(&loop_, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop_) != 0) spdlog::warn("raft: the loop closed with handles open");
    loop_open_ = false;
  }
  port_.reset();
}

void RaftNode::Impl::on_raft_closed(struct raft* raft) {
  Impl* self = static_cast<Impl*>(raft->data);
  raft_uv_close(&self->io_);
  raft_uv_tcp_close(&self->transport_);
  self->raft_open_ = self->io_open_ = self->transport_open_ = false;
  if (self->handles_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&self->wake_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->check_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->group_poll_), nullptr);
    self->handles_open_ = false;
  }
}

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

int RaftNode::Impl::append_wrapped(raft_io* io, raft_io_append* req, const raft_entry entries[], unsigned n,
                                   raft_io_append_cb cb) {
  // libraft's raft_init made io->data the raft, whose data is this node.
  Impl* self = static_cast<Impl*>(static_cast<struct raft*>(io->data)->data);
  if (const auto& refuse = self->options_.refuse_append_for_test) {
    if (const int rv = refuse(); rv != 0) {
      std::snprintf(io->errmsg, sizeof io->errmsg, "%s", "write refused at once (RaftOptions::refuse_append_for_test)");
      return rv;
    }
  }
  {
    std::lock_guard lock(appends_mu_);
    appends_[req] = {self, cb};
  }
  const int rv = self->uv_append_(io, req, entries, n, append_done);
  if (rv != 0) {
    std::lock_guard lock(appends_mu_);
    appends_.erase(req);  // no callback comes
  }
  return rv;
}

// What libraft 0.15 does after a failed write, said in write_failed's
// message.
constexpr std::string_view kNoMoreEntries = "libraft 0.15 does not store entries again after a failed write";
constexpr std::string_view kUnavailableForGood =
    "libraft 0.15 leaves the node unavailable after a failed write of them (it neither votes nor takes entries "
    "again)";

void RaftNode::Impl::append_done(raft_io_append* req, int status) {
  Impl* self = nullptr;
  raft_io_append_cb cb = nullptr;
  {
    std::lock_guard lock(appends_mu_);
    const auto found = appends_.find(req);
    if (found == appends_.end()) std::abort();  // not reached: every append went through append_wrapped
    std::tie(self, cb) = found->second;
    appends_.erase(found);
  }
  // RAFT_CANCELED while the node closes (a stop, or a start that failed
  // later): raft_uv ends the appends still queued; nothing failed. At any
  // other time (libraft 0.15 never does it) a cancelled append is an entry
  // not stored, and stops the node as a failed write does.
  if (status != 0 && !(status == RAFT_CANCELED && self->raft_closing_)) {
    self->write_failed(status, "the Raft log", kNoMoreEntries);
  }
  cb(req, status);
}

int RaftNode::Impl::set_term_wrapped(raft_io* io, raft_term term) {
  Impl* self = static_cast<Impl*>(static_cast<struct raft*>(io->data)->data);
  const int rv = self->uv_set_term_(io, term);
  if (rv != 0) self->write_failed(rv, "the Raft term and vote (metadata1, metadata2)", kUnavailableForGood);
  return rv;
}

int RaftNode::Impl::set_vote_wrapped(raft_io* io, raft_id server_id) {
  Impl* self = static_cast<Impl*>(static_cast<struct raft*>(io->data)->data);
  const int rv = self->uv_set_vote_(io, server_id);
  if (rv != 0) self->write_failed(rv, "the Raft term and vote (metadata1, metadata2)", kUnavailableForGood);
  return rv;
}

int RaftNode::Impl::start_wrapped(raft_io* io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv) {
  Impl* self = static_cast<Impl*>(static_cast<struct raft*>(io->data)->data);
  self->raft_recv_ = recv;
  return self->uv_start_(io, msecs, tick, recv_wrapped);
}

void RaftNode::Impl::recv_wrapped(raft_io* io, raft_message* message) {
  Impl* self = static_cast<Impl*>(static_cast<struct raft*>(io->data)->data);
  const std::uint64_t now_ns = uv_hrtime();
  self->heard_at_ns_[message->server_id] = now_ns;
  // Only a leader sends these.
  if (message->type == RAFT_IO_APPEND_ENTRIES || message->type == RAFT_IO_INSTALL_SNAPSHOT) {
    self->leader_heard_ns_ = now_ns;
  }
  self->raft_recv_(io, message);
}

namespace {

// raft_uv's message of its last I/O error, with the system's words for an
// errno it gives only as a number ("write failed: -28" ends "(No space left
// on device)"); "" when it said nothing.
std::string io_error_words(const char* errmsg) {
  std::string text = errmsg;
  const auto colon = text.rfind(": -");
  int code = 0;
  if (colon != std::string::npos) {
    const char* first = text.data() + colon + 3;
    const char* last = text.data() + text.size();
    const auto [end, ec] = std::from_chars(first, last, code);
    if (ec == std::errc() && end == last && code > 0) text += std::string(" (") + std::strerror(code) + ")";
  }
  return text;
}

constexpr std::string_view kRestart =
    "restart this server (on its data) once its disk takes writes again and it has file descriptors to spare";

}  // namespace

void RaftNode::Impl::write_failed(int status, std::string_view what, std::string_view after) {
  if (!failure_.empty()) return;
  // libraft 0.15's raft_strerror has no text for RAFT_NOSPACE ("unknown
  // error"): a full disk, or one that cannot preallocate a segment.
  const std::string why = status == RAFT_NOSPACE ? "no space left on its disk" : raft_strerror(status);
  const std::string said = io_error_words(io_.errmsg);
  fail_for_good(std::string(what) + " in " + options_.data_dir + " could not be written (" + why +
                (said.empty() ? std::string() : ": " + said) + "); " + std::string(after) + ": " +
                std::string(kRestart));
}

void RaftNode::Impl::became_unavailable() {
  if (!failure_.empty()) return;
  const std::string said = io_error_words(io_.errmsg);
  fail_for_good(
      "libraft turned this node unavailable (its last I/O error: " + (said.empty() ? std::string("none said") : said) +
      "; data in " + options_.data_dir +
      "); libraft 0.15 never leaves that state (it neither votes nor takes entries again): " + std::string(kRestart));
}

void RaftNode::Impl::fail_for_good(std::string failure) {
  failure_ = std::move(failure);
  spdlog::critical("raft: {}", failure_);
  if (const int code = options_.exit_on_write_failure; code != 0) {
    // The log file may sit on the failing disk: stderr says it too.
    spdlog::default_logger()->flush();
    std::fprintf(stderr, "%s: stopped: raft: %s\n", program_invocation_short_name, failure_.c_str());
    std::fflush(stderr);
    std::_Exit(code);
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

void RaftNode::Impl::publish() {
  if (handles_open_ && !closing_ && raft_state(&raft_) == RAFT_UNAVAILABLE) became_unavailable();
  NodeStatus s;
  s.role = closing_ ? Role::kUnavailable : from_raft_state(raft_state(&raft_));
  s.term = raft_.current_term;
  raft_id leader = 0;
  const char* leader_address = nullptr;
  raft_leader(&raft_, &leader, &leader_address);
  s.leader_id = leader;
  if (leader_address != nullptr) s.leader_address = leader_address;
  s.commit_index = raft_.commit_index;
  s.last_applied = raft_last_applied(&raft_);
  s.last_index = raft_last_index(&raft_);
  s.snapshot_index = raft_.log.snapshot.last_index;
  s.batches = batches_;
  s.commands = commands_;
  s.commit_pushes = commit_pushes_;
  if (port_) s.connections_refused = port_->refused();
  s.commit_us = commit_us_;
  s.batch_commands = batch_commands_;
  s.failure = failure_;
  s.recovered_from = recovered_from_;
  s.recovered_at = recovered_at_;
  s.configuration_index = raft_.configuration_index;
  const std::uint64_t now_ns = uv_hrtime();
  bool member = false;
  for (unsigned i = 0; i < raft_.configuration.n; ++i) {
    const raft_server& server = raft_.configuration.servers[i];
    s.configuration.push_back({server.id, server.address, from_raft_role(server.role)});
    if (server.id == options_.id) {
      member = true;
    } else {
      const auto heard = heard_at_ns_.find(server.id);
      s.last_contact_ms.emplace_back(server.id, heard == heard_at_ns_.end()
                                                    ? std::int64_t{-1}
                                                    : static_cast<std::int64_t>((now_ns - heard->second) / 1000000));
    }
    // The progress array follows the configuration's order (libraft rebuilds
    // it at each configuration change).
    if (raft_.state == RAFT_LEADER && !closing_ && server.id != options_.id && raft_.leader_state.progress != nullptr) {
      s.match_indexes.emplace_back(server.id, raft_.leader_state.progress[i].match_index);
    }
  }
  // Out of a committed configuration (not one only appended, which a new
  // leader may still overwrite) after being in one.
  was_member_ = was_member_ || member;
  if (was_member_ && !member && raft_.configuration_uncommitted_index == 0 && raft_.configuration_index != 0) {
    s.removed_at = raft_.configuration_index;
  }
  if (raft_.state == RAFT_LEADER && member && !closing_) leader_heard_ns_ = now_ns;
  s.leader_heard_ms = leader_heard_ns_ == 0 ? -1 : static_cast<std::int64_t>((now_ns - leader_heard_ns_) / 1000000);
  const Role role = s.role;
  const std::uint64_t term = s.term;
  {
    std::lock_guard lock(mu_);
    status_ = std::move(s);
  }
  if (role != last_role_ || term != last_term_) {
    if (role != last_role_) spdlog::info("raft {}: {} in term {}", options_.id, role_name(role), term);
    last_role_ = role;
    last_term_ = term;
    if (options_.on_role_change) options_.on_role_change(role, term);
  }
  // Changes that failed because the leadership was lost, told now that
  // status() shows the loss (on_changed).
  std::vector<std::function<void()>> told;
  told.swap(after_publish_);
  for (auto& tell : told) tell();
}

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

Result<std::unique_ptr<RaftNode>> RaftNode::start(RaftOptions options, StateMachine& machine) {
  auto impl = std::make_unique<Impl>(std::move(options), machine);
  if (Status status = impl->open(); !status) {
    impl->finish_loop();
    if (std::string undone = impl->undo_bootstrap(); !undone.empty()) {
      return Status(status.code(), std::string(status.message()) + undone);
    }
    return status;
  }
  Impl* raw = impl.get();
  raw->thread = std::thread([raw] {
    pthread_setname_np(pthread_self(), "netsem-raft");
    raw->run();
  });
  return std::unique_ptr<RaftNode>(new RaftNode(std::move(impl)));
}

RaftNode::RaftNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RaftNode::~RaftNode() {
  stop();
}

void RaftNode::propose(std::string command, ProposeCallback done) {
  impl_->propose(std::move(command), std::move(done));
}

NodeStatus RaftNode::status() const {
  return impl_->status();
}

void RaftNode::add_server(std::uint64_t id, std::string address, ChangeCallback done) {
  impl_->add_server(id, std::move(address), std::move(done));
}
void RaftNode::assign(std::uint64_t id, ServerRole role, ChangeCallback done) {
  impl_->assign(id, role, std::move(done));
}
void RaftNode::remove_server(std::uint64_t id, ChangeCallback done) {
  impl_->remove_server(id, std::move(done));
}

void RaftNode::stop() {
  if (!impl_->thread.joinable()) return;
  assert(impl_->thread.get_id() != std::this_thread::get_id());
  impl_->request_stop();
  impl_->thread.join();
  impl_->finish_loop();
  impl_->fail_leftovers();
}

}  // namespace netsem::raft
