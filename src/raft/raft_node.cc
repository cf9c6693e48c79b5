// RaftNode (raft_node.h) and the life of its Impl (raft_node_impl.h, which
// says what each raft_node_*.cc holds): RaftNode's own functions, which start
// the raft thread and stop it; open(), which locks and checks the data
// directory and sets up libraft, its transport, the Raft port and the loop's
// handles; finish_loop(), which closes them; and the Raft port's checks of a
// connection's source and claimed id.
#include "raft/raft_node.h"

#include <fcntl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
#include <raft/uv.h>
}

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "common/dir_lock.h"
#include "raft/data_dir_checks.h"
#include "raft/entry_format.h"
#include "raft/open_segments.h"
#include "raft/raft_node_impl.h"
#include "raft/raft_port.h"
#include "raft/raft_status.h"
#include "raft/segment_fill.h"
#include "raft/servers.h"

namespace netsem::raft {

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
