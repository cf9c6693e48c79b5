// ClusterRuntime (cluster_runtime.h): the node's start from [cluster], the
// raft thread's hand-over through a queue and an eventfd, the loop's side
// that applies to the loop replica and ticks the node, and the leader's
// side of the peer links.
#include "server/cluster_runtime.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <variant>

#include <nlohmann/json.hpp>

#include "raft/segment_fill.h"
#include "replication/entry.h"
#include "server/recover_files.h"

namespace netsem::server {

namespace {

// The longest the tick timer sleeps, whatever tick() said.
constexpr std::int64_t kMaxTickSleepMs = 1000;

}  // namespace

ClusterRuntime::ClusterRuntime(asio::io_context& io, const ServerConfig& config)
    : io_(io),
      id_(config.cluster.id),
      election_timeout_ms_(config.cluster.election_timeout_ms),
      secret_(config.cluster.secret),
      replica_(TableLimits{config.max_semaphores, config.max_pending_per_session}),
      tick_timer_(io),
      drain_timer_(io),
      refusal_timer_(io) {
  for (const ClusterMember& member : config.cluster.servers) configured_[member.id] = member.client_address;
  client_addresses_ = configured_;
}

ClusterRuntime::~ClusterRuntime() {
  stop();
}

Result<std::unique_ptr<ClusterRuntime>> ClusterRuntime::start(asio::io_context& io, const ServerConfig& config,
                                                              bool repair, std::size_t max_queued_bytes,
                                                              std::uint64_t recover_raise) {
  const ClusterMember* self = config.cluster.self();
  if (!config.cluster.enabled || self == nullptr) {
    return Status(StatusCode::kInvalidArgument, "[cluster]: this server's id is not among its server.N lines");
  }
  std::unique_ptr<ClusterRuntime> runtime(new ClusterRuntime(io, config));
  runtime->max_queued_bytes_ = max_queued_bytes;
  runtime->event_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!runtime->event_fd_.valid()) {
    return Status(StatusCode::kIoError, std::string("eventfd: ") + std::strerror(errno));
  }
  const int watched = ::dup(runtime->event_fd_.get());
  if (watched < 0) return Status(StatusCode::kIoError, std::string("dup: ") + std::strerror(errno));
  runtime->watcher_.emplace(io, watched);

  const std::filesystem::path data_dir =
      config.cluster.data_dir.empty() ? config.data_dir / "raft" : config.cluster.data_dir;
  std::error_code error;
  if (recover_raise != 0 && !std::filesystem::is_directory(data_dir, error)) {
    return Status(StatusCode::kNotFound,
                  "--recover: the Raft data directory " + data_dir.string() +
                      " does not exist: there is nothing to recover. A new cluster starts without --recover (its "
                      "server.N lines bootstrap it); a server that lost its data joins with join = on and `netsem "
                      "cluster add` on the leader");
  }
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    return Status(StatusCode::kIoError,
                  "cannot create the cluster's data directory " + data_dir.string() + ": " + error.message());
  }

  runtime->forwarder_ =
      std::make_unique<cluster::PeerLinkClient>(io, runtime->id_, runtime->secret_, runtime->client_addresses_);
  cluster::ClusterOptions options;
  options.id = self->id;
  options.raft_address = self->raft_address;
  options.raft_bind_address = config.cluster.raft_bind_address;
  options.repair = repair;
  if (recover_raise != 0) {
    runtime->recover_raise_ = recover_raise;
    runtime->recover_nonce_ = 0;
    while (runtime->recover_nonce_ == 0) {
      runtime->recover_nonce_ = std::random_device()() | (std::uint64_t{std::random_device()()} << 32);
    }
    options.recover = true;
    // The record of an earlier --recover (recover_files.h): no force
    // again on the configuration it forced, a refusal once it changed.
    options.before_recover = [data_dir, raw = runtime.get()](const raft::RecoverPlan& plan) -> Result<bool> {
      auto found = read_record(data_dir);
      if (!found) return found.status();
      auto force = decide_recover(data_dir, *found, plan);
      if (!force || !*force) {
        raw->recover_repeated_ = force.has_value();
        return force;
      }
      if (Status written = write_raise_file(data_dir, raw->recover_raise_, raw->recover_nonce_); !written) {
        return written;
      }
      if (Status written = write_record(data_dir, record_of(plan, raw->id_, raw->recover_raise_)); !written) {
        return written;
      }
      return true;
    };
  } else if (const auto owed = read_raise_file(data_dir)) {
    runtime->recover_raise_ = owed->first;
    runtime->recover_nonce_ = owed->second;
    spdlog::warn(
        "cluster: the fence raise of a recovery (netsemd --recover --raise-fences {}) was not applied yet ({}): "
        "the fences are raised by {} in the first entry this server leads with",
        owed->first, (data_dir / kRaiseFile).string(), owed->first);
  }
  options.first_raise = runtime->recover_raise_;
  options.first_raise_nonce = runtime->recover_nonce_;
  // A log write that fails stops netsemd at once (exit 3), as etcd stops
  // on a failed WAL write (raft_node.h, exit_on_write_failure).
  options.exit_on_write_failure = 3;
  options.data_dir = data_dir.string();
  // An earlier --recover's record: the node starts at least in the term it
  // recorded, should its own raise of the term not have happened.
  auto recorded = read_record(data_dir);
  if (!recorded) return recorded.status();
  if (*recorded) options.min_term = (*recorded)->term;
  // join = on: no first configuration; the leader adds this server.
  if (!config.cluster.join) {
    for (const ClusterMember& member : config.cluster.servers) {
      options.bootstrap.push_back(raft::ServerInfo{member.id, member.raft_address, raft::ServerRole::kVoter});
    }
  }
  for (const ClusterMember& member : config.cluster.servers)
    options.known_raft_servers.push_back(raft::ServerInfo{member.id, member.raft_address, raft::ServerRole::kVoter});
  if (!config.cluster.raft_allowed_networks.empty()) {
    options.allow_raft_peer = [allowed = config.cluster.raft_allowed_networks](std::uint32_t host) {
      return allowed.allows_v4(host);
    };
  }
  options.client_addresses = runtime->client_addresses_;
  options.election_timeout = std::chrono::milliseconds(config.cluster.election_timeout_ms);
  options.heartbeat_timeout = std::chrono::milliseconds(config.cluster.heartbeat_timeout_ms);
  options.group_commit = std::chrono::microseconds(config.cluster.group_commit_us);
  options.limits = TableLimits{config.max_semaphores, config.max_pending_per_session};
  options.clock = [raw = runtime.get()] { return raw->log_now(); };
  ClusterRuntime* raw = runtime.get();
  options.sink = [raw](cluster::ReplicaEvent event) { raw->push(std::move(event)); };
  options.wake = [raw] { raw->push(std::nullopt); };
  options.forwarder = runtime->forwarder_.get();
  auto node = cluster::ClusterNode::start(std::move(options));
  if (!node) return node.status();
  runtime->node_ = std::move(*node);
  if (runtime->recover_repeated_) {
    // A --recover given again (recover_files.h): the raise the first one
    // owes, if it is still owed, and no other.
    const auto owed = read_raise_file(data_dir);
    spdlog::warn(
        "cluster: --recover: {} records that this server was recovered already, and its configuration is still the "
        "one that recovery forced: nothing is forced again, and --raise-fences {} is ignored ({}). Remove --recover "
        "from the command line",
        (data_dir / kRecordFile).string(), runtime->recover_raise_,
        owed ? fmt::format("the raise by {} that recovery owes is made", owed->first)
             : std::string("the fences were raised then; `netsem cluster raise-fences N` raises them more"));
    runtime->recover_raise_ = owed ? owed->first : 0;
    runtime->recover_nonce_ = owed ? owed->second : 0;
    runtime->node_->set_first_raise(runtime->recover_raise_, runtime->recover_nonce_);
  }
  runtime->data_dir_ = data_dir.string();
  runtime->watch();
  // Of the stored configuration once there is one (the file's lines only
  // bootstrap: newuser23 finding 10).
  const std::size_t stored = runtime->node_->status().configuration.size();
  spdlog::info("cluster server {} of {}: raft {} (data {}), clients {}{}", self->id,
               stored == 0 ? fmt::format("{} in the file", config.cluster.servers.size())
                           : fmt::format("{} in the stored configuration", stored),
               self->raft_address, data_dir.string(), self->client_address,
               config.cluster.join ? " (join = on: waiting to be added)" : "");
  return runtime;
}

Status ClusterRuntime::check_stored_configuration(const ServerConfig& config) const {
  if (!node_) return Status::ok();
  const std::vector<raft::ServerInfo> stored = node_->status().configuration;
  if (stored.empty()) return Status::ok();
  std::map<std::uint64_t, const raft::ServerInfo*> by_id;
  for (const raft::ServerInfo& server : stored) by_id[server.id] = &server;
  std::map<std::uint64_t, const ClusterMember*> lines;
  for (const ClusterMember& member : config.cluster.servers) lines[member.id] = &member;
  if (const auto self = by_id.find(id_);
      self != by_id.end() && lines.contains(id_) && self->second->address != lines[id_]->raft_address) {
    return Status(
        StatusCode::kInvalidArgument,
        fmt::format("[cluster]: the Raft directory {} holds a configuration with this server ({}) at the Raft address "
                    "{}, but its server.{} line says {}: the others send to the stored address and would never reach "
                    "this server. The stored configuration wins over the server.N lines once the directory is "
                    "bootstrapped. Put {} back in server.{} (raft_bind_address, if it must listen elsewhere); or, to "
                    "move it: stop it, `netsem cluster remove {}` on the others, empty {}, and start it with join = on "
                    "and `netsem cluster add {} <raft> <client>`",
                    data_dir_, id_, self->second->address, id_, lines[id_]->raft_address, self->second->address, id_,
                    id_, data_dir_, id_));
  }
  std::vector<std::string> differences;
  for (const auto& [id, member] : lines) {
    const auto found = by_id.find(id);
    if (found == by_id.end()) {
      differences.push_back(
          fmt::format("server.{} (raft {}) is not in the stored configuration", id, member->raft_address));
    } else if (found->second->address != member->raft_address) {
      differences.push_back(fmt::format("server.{} says raft {}, the stored configuration {}", id, member->raft_address,
                                        found->second->address));
    }
  }
  for (const auto& [id, server] : by_id) {
    if (!lines.contains(id)) {
      differences.push_back(fmt::format("server {} (raft {}, {}) is stored but has no server.{} line", id,
                                        server->address, raft::server_role_name(server->role), id));
    }
  }
  if (differences.empty()) return Status::ok();
  std::string text;
  for (const std::string& difference : differences) text += (text.empty() ? "" : "; ") + difference;
  spdlog::warn(
      "cluster: the Raft directory {} holds a configuration of {} servers that differs from the server.N lines: {}. "
      "The stored one wins: the lines are read only to bootstrap a pristine directory. Change the members with "
      "`netsem cluster add` and `netsem cluster remove` (docs/replication.md, \"Adding and removing servers\")",
      data_dir_, stored.size(), text);
  return Status::ok();
}

void ClusterRuntime::push(std::optional<cluster::ReplicaEvent> event) {
  {
    std::lock_guard lock(mutex_);
    if (event) {
      if (overflow_index_ != 0) return;  // the loop fails at its next turn (woken already)
      if (!queue_.empty() && queued_bytes_ + event->bytes.size() > max_queued_bytes_) {
        // Never dropped silently: nothing after it is queued, and the loop
        // stops the server once it applied what is before it.
        overflow_index_ = std::max<std::uint64_t>(event->index, 1);
      } else {
        queued_bytes_ += event->bytes.size();
        queue_.push_back(std::move(*event));
      }
    }
    // Woken already: the loop takes this with the rest (run_queued clears
    // the flag when it takes the queue, so what comes after wakes it again).
    if (wake_sent_) return;
    wake_sent_ = true;
  }
  // Under no lock: the loop reads the counter, then takes the queue.
  const std::uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(event_fd_.get(), &one, sizeof one);
  } while (n < 0 && errno == EINTR);
}

void ClusterRuntime::post(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  push(std::nullopt);
}

void ClusterRuntime::watch() {
  watcher_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const std::error_code& error) {
    if (error || !watcher_ || stopped_) return;
    std::uint64_t count = 0;
    while (::read(event_fd_.get(), &count, sizeof count) < 0 && errno == EINTR) {
    }
    run_queued();
    if (watcher_ && !stopped_) watch();
  });
}

std::string ClusterRuntime::leader_client_address() const {
  if (stopped_ || !node_) return {};
  return node_->status().leader_client_address;
}

void ClusterRuntime::fail(const Status& why) {
  // Going on would answer clients from a replica that no longer matches
  // the log: damage is refused loudly, never served.
  spdlog::critical("cluster: {}; this server stops", why.message());
  failed_ = true;
  if (callbacks_.failed) callbacks_.failed(why);
}

void ClusterRuntime::set_callbacks(Callbacks callbacks) {
  callbacks_ = std::move(callbacks);
  attached_ = true;
  run_queued();
}

void ClusterRuntime::run_queued() {
  if (!attached_ || stopped_ || failed_) return;
  std::vector<cluster::ReplicaEvent> events;
  std::vector<std::function<void()>> jobs;
  std::uint64_t overflow_index = 0;
  std::size_t queued_bytes = 0;
  {
    std::lock_guard lock(mutex_);
    events.swap(queue_);
    jobs.swap(jobs_);
    wake_sent_ = false;
    queued_bytes = queued_bytes_;
    queued_bytes_ = 0;
    overflow_index = overflow_index_;
  }
  bool members_may_change = false;
  for (cluster::ReplicaEvent& event : events) {
    if (event.kind == cluster::ReplicaEvent::Kind::kRestored) {
      members_may_change = true;
      taken_back_.clear();  // the map is the snapshot's now
      if (callbacks_.restoring) callbacks_.restoring();
      if (auto restored = replica_.restore(event.bytes); !restored) {
        fail(Status(restored.code(),
                    fmt::format("the loop replica refused the snapshot at {}: {}", event.index, restored.message())));
        return;
      }
      spdlog::info("cluster: the loop replica restored a snapshot at index {}", event.index);
      if (callbacks_.restored) callbacks_.restored();
      continue;
    }
    auto entry = replication::decode_entry(event.bytes);
    if (!entry) {
      // The raft thread's replica refused the same bytes (replica_adapter.h).
      fail(Status(entry.status().code(),
                  fmt::format("the entry at {} does not decode: {}", event.index, entry.status().message())));
      return;
    }
    auto results = replica_.apply_entry(event.index, *entry);
    if (!results) {
      // The raft thread's replica refused it too (replica_adapter.h): this
      // server cannot follow the log, and the entry is never skipped; a
      // restart on the same data refuses it again.
      fail(Status(results.status().code(),
                  fmt::format("the loop replica refused the committed entry at {}: {} (this server's replicated state "
                              "cannot follow the log: its data directory holds a snapshot or entry it cannot apply)",
                              event.index, results.status().message())));
      return;
    }
    node_->applied(event.index, *entry);
    for (std::size_t i = 0; i < entry->commands.size(); ++i) {
      const replication::Command& command = entry->commands[i];
      if (const auto* raise = std::get_if<replication::RaiseFences>(&command)) {
        if (recover_nonce_ != 0 && raise->server == id_ && raise->nonce == recover_nonce_) {
          const replication::Answer& answer = results->commands[i].answer;
          if (answer.type == replication::Answer::Type::kValue) {
            spdlog::warn(
                "cluster: fences raised by {} after --recover, at index {}: the last fence is {}; every "
                "grant from here on is above it",
                raise->by, event.index, answer.number);
          } else {
            spdlog::error(
                "cluster: the fences could not be raised by {} after --recover: the last fence would pass "
                "2^62; nothing changed",
                raise->by);
          }
          recover_nonce_ = 0;
          std::error_code gone;
          std::filesystem::remove(std::filesystem::path(data_dir_) / kRaiseFile, gone);
          if (gone) spdlog::warn("cluster: cannot remove {}: {}", data_dir_ + "/" + kRaiseFile, gone.message());
          continue;
        }
        const auto pending = raise->server == id_ ? raises_.find(raise->nonce) : raises_.end();
        if (pending != raises_.end()) {
          const replication::Answer& answer = results->commands[i].answer;
          Result<std::uint64_t> outcome = answer.number;
          if (answer.type == replication::Answer::Type::kValue) {
            spdlog::info("cluster: fences raised by {} at index {}: the last fence is {}", raise->by, event.index,
                         answer.number);
          } else {
            outcome = Status(StatusCode::kLimit, fmt::format("the last fence would pass 2^62 ({}); nothing changed",
                                                             replication::kMaxRaisedFence));
            spdlog::warn("cluster: fences not raised by {}: {}", raise->by, outcome.status().message());
          }
          post([done = std::move(pending->second.second), outcome = std::move(outcome)] { done(outcome); });
          raises_.erase(pending);
        }
      } else if (const auto* set = std::get_if<replication::SetMember>(&command)) {
        ++member_sets_[set->id];
        members_may_change = true;
      } else if (std::holds_alternative<replication::RemoveMember>(command)) {
        members_may_change = true;
      }
    }
    if (callbacks_.applied) callbacks_.applied(*entry, *results);
  }
  if (members_may_change) refresh_members();
  if (overflow_index != 0) {
    fail(Status(StatusCode::kLimit,
                fmt::format("the event loop fell {} bytes of applied entries behind the raft thread (the limit; it "
                            "did not turn for that long): the entry at {} and those after it did not reach the loop "
                            "replica (the log holds them; a restart replays them)",
                            queued_bytes, overflow_index)));
    return;
  }
  for (auto& job : jobs) job();
  tick();
  if (callbacks_.end_turn) callbacks_.end_turn();
  if (draining_ && !stopped_ && node_->status().pending == 0) stop();
}

void ClusterRuntime::stop_when_drained(std::chrono::milliseconds within) {
  if (stopped_ || draining_) return;
  draining_ = true;
  const auto pending = node_ ? node_->status().pending : 0;
  if (pending == 0) {
    stop();
    return;
  }
  spdlog::info("cluster: stopping once {} commands are applied (at most {} ms)", pending, within.count());
  drain_timer_.expires_after(within);
  drain_timer_.async_wait([this](const std::error_code& error) {
    if (error || stopped_) return;
    spdlog::warn("cluster: {} commands not applied in time; stopping anyway", node_->status().pending);
    stop();
  });
}

std::int64_t ClusterRuntime::log_now() {
  return log_clock_.now(replica_.log_time_ms());
}

void ClusterRuntime::tick() {
  if (stopped_ || !node_) return;
  std::int64_t next = node_->tick(log_now(), replica_);
  const cluster::ClusterStatus now = node_->status();
  if (now.role != seen_role_ || now.term != seen_term_ || now.leader_id != seen_leader_) {
    seen_role_ = now.role;
    seen_term_ = now.term;
    seen_leader_ = now.leader_id;
    if (now.leader_id != 0) {
      leaderless_since_.reset();
    } else if (!leaderless_since_) {
      leaderless_since_ = std::chrono::steady_clock::now();
    }
    spdlog::info("cluster: {} in term {}, leader {}", raft::role_name(now.role), now.term,
                 now.leader_id == 0 ? std::string("unknown") : std::to_string(now.leader_id));
    // A raise proposed in another term or role may be lost: its outcome is
    // unknown (the entry may still commit).
    for (auto it = raises_.begin(); it != raises_.end();) {
      if (now.role == raft::Role::kLeader && now.term == it->second.first) {
        ++it;
        continue;
      }
      post([done = std::move(it->second.second)] {
        done(Status(StatusCode::kCancelled,
                    "this server stopped leading before the raise of the fences committed; its outcome is unknown"));
      });
      it = raises_.erase(it);
    }
    if (callbacks_.changed) callbacks_.changed();
  }
  if (!now.failure.empty()) {
    // The node cannot store entries (a failing disk) or stopped applying (a
    // corrupt entry): it would neither commit nor answer again. Stop,
    // loudly, so that the server is restarted on its data (the others, a
    // majority, go on; what it did not store it fetches from the leader).
    return fail(Status(StatusCode::kIoError, "raft: " + now.failure));
  }
  if (told_removed_ && ignores_removal(*told_removed_, now)) told_removed_.reset();
  // This server's removal: a committed configuration without it, or the
  // leader's word (accept_peer).
  const std::uint64_t removal = now.removed_at != 0 ? now.removed_at : told_removed_ ? told_removed_->index : 0;
  if (removal != 0 && !removed_) {
    if (now.leader_heard_ms >= 0 && now.leader_heard_ms < election_timeout_ms_) {
      // A leader spoke to it within an election timeout: it is in that
      // leader's configuration, added back and catching up through its own
      // old removal (audit24: it stopped, a dead voter left behind). Looked
      // at again once the election timeout since then has passed.
      next = std::min(next, log_now() + (election_timeout_ms_ - now.leader_heard_ms) + 1);
    } else {
      // After the jobs already queued (the answer to the REMOVE that
      // removed this leader), not before them.
      const std::string how = now.removed_at != 0
                                  ? std::string()
                                  : " (server " + std::to_string(told_removed_->from) +
                                        " said so: a leader replicates nothing more to a server it removes)";
      post([this, removal, how] { removed_from_cluster(removal, how); });
    }
  }
  if (now.role == raft::Role::kLeader) {
    seed_members(now);
    take_back_addresses(now);
  }
  arm_tick(next);
}

bool ClusterRuntime::ignores_removal(const cluster::RemovalNotice& told, const cluster::ClusterStatus& now) const {
  const bool member = std::any_of(now.configuration.begin(), now.configuration.end(),
                                  [this](const raft::ServerInfo& server) { return server.id == id_; });
  // A server that joins and was never in a configuration, or one added
  // back since (a newer configuration holds it), is not stopped.
  if (!now.configuration.empty() && !(member && now.configuration_index > told.index)) return false;
  spdlog::info("cluster: server {} says this server was removed at index {}; ignored: {}", told.from, told.index,
               now.configuration.empty()
                   ? "it is in no configuration yet"
                   : "its configuration of index " + std::to_string(now.configuration_index) + " holds it");
  return true;
}

void ClusterRuntime::removed_from_cluster(std::uint64_t index, const std::string& how) {
  if (removed_ || stopped_) return;
  removed_ = true;
  spdlog::warn("this server (id {}) was removed from the cluster's configuration at index {}{}; stopping", id_, index,
               how);
  if (callbacks_.removed) callbacks_.removed();
}

void ClusterRuntime::tell_removed(std::uint64_t id) {
  const auto target = client_addresses_.find(id);
  const auto own = client_addresses_.find(id_);
  if (target == client_addresses_.end()) return;
  const auto local = own == client_addresses_.end() ? std::nullopt : cluster::split_host_port(own->second);
  const std::uint64_t index = node_->status().configuration_index;
  cluster::send_peer_line(io_, local ? local->first : std::string(), target->second,
                          cluster::peer_removal_notice(id_, secret_, id, index), [id, index](const Status& sent) {
                            if (sent) {
                              spdlog::info("cluster: told server {} it was removed (at index {})", id, index);
                            } else {
                              spdlog::warn(
                                  "cluster: could not tell server {} it was removed ({}): it goes on as a candidate "
                                  "until it is stopped",
                                  id, sent.message());
                            }
                          });
}

void ClusterRuntime::refresh_members() {
  std::map<std::uint64_t, std::string> merged = configured_;
  for (const auto& [member, address] : replica_.members()) merged[member] = address;
  if (merged == client_addresses_) return;
  for (const auto& [member, address] : merged) {
    const auto old = client_addresses_.find(member);
    if (old == client_addresses_.end() || old->second != address) {
      spdlog::info("cluster: server {} answers clients at {}", member, address);
      if (forwarder_) forwarder_->set_address(member, address);
    }
  }
  for (const auto& [member, address] : client_addresses_) {
    if (!merged.contains(member) && forwarder_) forwarder_->set_address(member, "");
  }
  client_addresses_ = std::move(merged);
}

void ClusterRuntime::seed_members(const cluster::ClusterStatus& now) {
  if (now.term != seeded_term_) {
    seeded_term_ = now.term;
    seeded_.clear();
  }
  for (const raft::ServerInfo& server : now.configuration) {
    const auto configured = configured_.find(server.id);
    if (configured == configured_.end() || replica_.members().contains(server.id)) continue;
    if (const auto sent = seeded_.find(server.id); sent != seeded_.end() && sent->second == configured->second) {
      continue;  // submitted in this term: pending until applied
    }
    seeded_[server.id] = configured->second;
    submit(replication::SetMember{server.id, configured->second});
  }
}

// A client address in the replicated members whose id is in no
// configuration is taken back by the leader: the ADD that replicated it was
// refused by libraft (another member's Raft address) or ended without the
// server joining, or a REMOVE answered TIMEOUT (the leader lost its
// leadership) took effect all the same, and no leader submitted the
// RemoveMember. Left, it is a member to the peer links, the PEER hello
// checks and CLUSTER STATUS's client_addresses, though it is none.
//
// Why this cannot undo an ADD in progress: an id is taken back only when
// neither this leader's latest configuration (committed or only appended:
// libraft's) nor a change in progress on this leader (changing_) has it.
// An ADD on a previous leader makes the server a member only through a
// configuration entry; one that is not in this leader's log never commits
// (Raft: a leader's log holds every entry that can commit while it leads,
// and a later leader holds the take-back if it commits it). One that is in
// its log is its latest configuration, and the id is spared. A later ADD of
// the same id, on this leader or a later one, replicates its SetMember
// after the take-back in the log, so the address it sets stays. That is why
// the take-back goes through ClusterNode::propose_as_leader, which never
// forwards it nor sends it again: a copy of it reaching a later leader
// after that leader's ADD would undo it. (The previous leader's SetMember
// is sent again until applied, and may come after the take-back: it is then
// taken back again, as member_sets_ tells.) Proposed once per term and
// SetMember applied, so a pending one is not proposed twice.
void ClusterRuntime::take_back_addresses(const cluster::ClusterStatus& now) {
  if (now.term != taken_back_term_) {
    taken_back_term_ = now.term;
    taken_back_.clear();
  }
  for (const auto& [id, address] : replica_.members()) {
    if (changing_.contains(id)) continue;
    if (std::any_of(now.configuration.begin(), now.configuration.end(),
                    [id](const raft::ServerInfo& server) { return server.id == id; })) {
      continue;
    }
    const std::uint64_t sets = member_sets_[id];
    if (const auto sent = taken_back_.find(id); sent != taken_back_.end() && sent->second == sets) continue;
    taken_back_[id] = sets;
    spdlog::info("cluster: server {} is in no configuration: taking back its client address {}", id, address);
    if (auto proposed = node_->propose_as_leader(replication::RemoveMember{id}); !proposed) {
      spdlog::warn("cluster: taking back server {}'s client address: {}", id, proposed.to_string());
    }
  }
}

void ClusterRuntime::arm_tick(std::int64_t at_ms) {
  const std::int64_t now = log_now();
  at_ms = std::min(at_ms, now + kMaxTickSleepMs);
  if (tick_armed_ms_ && *tick_armed_ms_ <= at_ms) return;
  tick_armed_ms_ = at_ms;
  tick_timer_.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(0, at_ms - now)));
  tick_timer_.async_wait([this](const std::error_code& error) {
    if (error || stopped_) return;
    tick_armed_ms_.reset();
    // Through run_queued: the events a wake did not bring yet go first.
    run_queued();
  });
}

std::string_view ClusterRuntime::refused_name(Refused kind) {
  switch (kind) {
    case Refused::kRemovalNotice:
      return "removal_notice";
    case Refused::kSecretCheck:
      return "secret_check";
    case Refused::kLinkHello:
      return "link_hello";
    case Refused::kLinkSetUp:
      return "link_set_up";
    case Refused::kLinkProof:
      return "link_proof";
    case Refused::kLinkFrame:
      return "link_frame";
  }
  return "unknown";
}

void ClusterRuntime::log_refusal(const std::string& host, Refused kind, std::string message) {
  ++refused_counts_[static_cast<std::size_t>(kind)];
  if (stopped_) {  // no timer would write what is held back
    spdlog::warn("cluster: {}", message);
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  RefusalLog& log = refusal_logs_[{host, kind}];
  const LogRateLimit::Admission admission = log.limit.admit(now);
  if (admission.suppressed_before != 0) report_refusals(host, log, admission.suppressed_before);
  if (admission.write) {
    spdlog::warn("cluster: {}", message);
  } else {
    log.last = std::move(message);
  }
  if (!refusal_timer_armed_) flush_refusals(now, false);
}

void ClusterRuntime::report_refusals(const std::string& from, RefusalLog& log, std::uint64_t count) {
  if (count == 1) {
    spdlog::warn("cluster: {} (logged late: at most one such line per {} s from {})", log.last,
                 kRefusalLogWindow.count(), from);
  } else {
    spdlog::warn("cluster: {} (and {} more from {} in the last {} s)", log.last, count - 1, from,
                 kRefusalLogWindow.count());
  }
  log.last.clear();
}

void ClusterRuntime::flush_refusals(std::chrono::steady_clock::time_point now, bool all) {
  std::optional<std::chrono::steady_clock::time_point> next;
  for (auto& [key, log] : refusal_logs_) {
    const std::uint64_t count = all ? log.limit.take_all_suppressed() : log.limit.take_suppressed(now);
    if (count != 0) report_refusals(key.first, log, count);
    if (const auto due = log.limit.report_due()) next = next ? std::min(*next, *due) : *due;
  }
  refusal_timer_armed_ = false;
  if (all || stopped_ || !next) return;
  refusal_timer_armed_ = true;
  refusal_timer_.expires_at(*next);
  refusal_timer_.async_wait([this](const std::error_code& error) {
    if (error || stopped_) return;
    refusal_timer_armed_ = false;
    flush_refusals(std::chrono::steady_clock::now(), false);
  });
}

void ClusterRuntime::submit(replication::Command command) {
  if (stopped_) return;
  if (auto status = node_->submit(std::move(command)); !status) {
    spdlog::error("cluster: a command was not submitted: {}", status.to_string());
  }
}

void ClusterRuntime::configure(const ServerConfig& config) {
  if (!node_) return;
  node_->set_configuration(config.semaphores, config.session_timeout_ms);
  if (!attached_) return;  // the start: the replica may not have caught up yet
  // A reload. Only the leader's file is replicated: a follower's differences
  // change nothing now, and each is said.
  if (node_->status().role != raft::Role::kLeader) {
    for (const auto& difference :
         cluster::configuration_differences(replica_, config.semaphores, config.session_timeout_ms)) {
      spdlog::warn(
          "cluster: SIGHUP: {}; only the leader's file sets the cluster's configuration: this takes effect "
          "only if this server leads",
          cluster::describe(difference));
    }
  }
  // A reload's change is proposed now (as leader), not at the next tick.
  tick();
}

namespace {

// As check_peer_hello compares it: an IPv4 peer of a dual-stack socket is
// an IPv4 peer, as configured.
asio::ip::address plain_address(const asio::ip::address& remote) {
  if (remote.is_v6() && remote.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, remote.to_v6());
  }
  return remote;
}

}  // namespace

bool ClusterRuntime::is_peer_host(const std::array<std::uint8_t, 16>& address) const {
  const std::string host = plain_address(asio::ip::address_v6(address)).to_string();
  for (const auto& [id, client_address] : client_addresses_) {
    if (id == id_) continue;
    const auto parts = cluster::split_host_port(client_address);
    if (parts && parts->first == host) return true;
  }
  return false;
}

void ClusterRuntime::accept_peer(UniqueFd fd, const asio::ip::address& remote, std::string_view line,
                                 std::string rest) {
  const asio::ip::address address = plain_address(remote);
  const std::string host = address.to_string();
  if (auto notice = cluster::check_removal_notice(line, host, id_, client_addresses_, secret_)) {
    if (!*notice) {
      log_refusal(host, Refused::kRemovalNotice,
                  fmt::format("refused a removal notice from {}: {}", host, notice->status().to_string()));
      return;  // fd closes
    }
    const cluster::RemovalNotice& told = **notice;
    if (told.removed != id_ || stopped_ || !node_) return;
    if (ignores_removal(told, node_->status())) return;
    // It stops once no leader has spoken to it for an election timeout
    // (tick(), as for a committed configuration without it): a replay of an
    // old notice to a server added back since, whose configuration is not
    // yet the newer one, changes nothing while its leader talks to it.
    // In a turn of its own: this runs inside a session's read.
    spdlog::info(
        "cluster: server {} says this server was removed at index {}; it stops once no leader has spoken to it for "
        "an election timeout ({} ms)",
        told.from, told.index, election_timeout_ms_);
    told_removed_ = told;
    post([this] { tick(); });
    return;
  }
  if (auto challenge = cluster::check_secret_challenge(line, host, id_, client_addresses_)) {
    if (!*challenge) {
      log_refusal(host, Refused::kSecretCheck,
                  fmt::format("refused a secret check from {}: {}", host, challenge->status().to_string()));
      return;  // fd closes without a word: the leader refuses the ADD
    }
    const cluster::SecretChallenge& asked = **challenge;
    // The proof is all this server says: the leader, which holds the
    // secret, tells whether it matches; this server cannot, and need not
    // (it changes nothing here). It binds this server's own client address
    // (its server.N line): a proof relayed to the leader from another
    // address does not hold there (audit27).
    const auto own = client_addresses_.find(id_);
    const std::string own_address = own == client_addresses_.end() ? std::string() : own->second;
    const std::string answer = cluster::peer_secret_proof(
        id_, cluster::secret_check_proof(secret_, asked.from, asked.added, id_, asked.nonce, own_address));
    if (::send(fd.get(), answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
      spdlog::warn("cluster: answering server {}'s secret check: {}", asked.from, std::strerror(errno));
    } else if (asked.added != id_) {
      spdlog::warn("cluster: server {} would add this server as server {}, but it is server {}", asked.from,
                   asked.added, id_);
    } else {
      spdlog::info(
          "cluster: server {} asked whether this server holds the cluster secret before adding it; answered with a "
          "proof (if the add fails with 'did not confirm the cluster secret', this server's secret_file is not the "
          "cluster's)",
          asked.from);
    }
    return;  // fd closes
  }
  const Result<cluster::LinkHello> hello = cluster::check_peer_hello(line, host, id_, client_addresses_);
  if (!hello) {
    log_refusal(host, Refused::kLinkHello,
                fmt::format("refused a peer link from {}: {}", host, hello.status().to_string()));
    return;  // fd closes
  }
  const cluster::ServerId peer = hello->from;
  // Links not yet set up are few: a follower opens one at a time. A host
  // that opens more (each is answered, and waits up to
  // kPeerLinkSetUpTimeout for its proof) is refused beyond this.
  constexpr std::size_t kMaxSettingUp = 16;
  if (std::count_if(receivers_.begin(), receivers_.end(), [](const auto& r) { return !r->linked(); }) >=
      static_cast<std::ptrdiff_t>(kMaxSettingUp)) {
    log_refusal(host, Refused::kLinkSetUp,
                fmt::format("refused a peer link from {} (server {}): {} links are being set up already", host, peer,
                            kMaxSettingUp));
    return;  // fd closes
  }
  asio::ip::tcp::socket socket(io_);
  std::error_code error;
  socket.assign(address.is_v4() ? asio::ip::tcp::v4() : asio::ip::tcp::v6(), fd.get(), error);
  if (error) {
    spdlog::warn("cluster: peer link from server {}: {}", peer, error.message());
    return;  // fd still owns the descriptor and closes it
  }
  (void)fd.release();  // the socket owns it now
  // Which receiver this is, for its handlers (set once it is made).
  auto slot = std::make_shared<const cluster::PeerLinkReceiver*>(nullptr);
  auto receiver = cluster::PeerLinkReceiver::start(
      std::move(socket), *hello, id_, secret_, std::move(rest),
      [this](cluster::ServerId from, std::string entry) {
        if (stopped_) return;
        if (auto status = node_->accept_forwarded(entry); !status) {
          spdlog::debug("cluster: an entry forwarded by server {}: {}", from, status.to_string());
        }
        if (callbacks_.end_turn) callbacks_.end_turn();
      },
      [this, slot, host](cluster::ServerId from, const Status& why) {
        const auto self =
            std::find_if(receivers_.begin(), receivers_.end(), [&slot](const auto& r) { return r.get() == *slot; });
        const bool linked = self != receivers_.end() && (*self)->linked();
        if (!linked && why.code() != StatusCode::kCancelled) {
          log_refusal(host, Refused::kLinkProof,
                      fmt::format("refused a peer link from {} (server {}): {}", host, from, why.to_string()));
        } else if (why.code() == StatusCode::kDenied || why.code() == StatusCode::kProtocol) {
          // A frame altered, replayed or lost on the way (or not a frame):
          // the link is closed, the follower sets up another and sends again
          // what it has no outcome for.
          log_refusal(
              host, Refused::kLinkFrame,
              fmt::format("closed the peer link from {} (server {}): {}; it links again", host, from, why.to_string()));
        } else if (why.code() != StatusCode::kCancelled) {
          spdlog::info("cluster: peer link from server {} ended: {}", from,
                       why ? std::string("closed") : why.to_string());
        }
        std::erase_if(receivers_,
                      [&slot](const std::shared_ptr<cluster::PeerLinkReceiver>& r) { return r.get() == *slot; });
      },
      [this, slot, host](cluster::ServerId from) {
        spdlog::info("cluster: peer link from server {} ({})", from, host);
        // A server keeps one link to its leader: an older link from it (one
        // that died without a FIN, across a partition) is ended, not kept
        // for ever; only once this one proved the secret.
        std::vector<std::shared_ptr<cluster::PeerLinkReceiver>> older;
        for (const auto& r : receivers_) {
          if (r->peer() == from && r.get() != *slot && r->linked()) older.push_back(r);
        }
        for (const auto& r : older) r->close();  // its on_close takes it out of receivers_
      });
  *slot = receiver.get();
  receivers_.push_back(std::move(receiver));
}

std::string ClusterRuntime::unready_reason() {
  if (stopped_ || !node_) return "the cluster node is stopped";
  const cluster::ClusterStatus s = node_->status();
  const auto now = std::chrono::steady_clock::now();
  if (s.configuration.empty()) {
    return fmt::format(
        "waiting to be added: this server (id {}) is in no configuration yet (join = on); `netsem cluster add` "
        "against the cluster adds it",
        id_);
  }
  if (s.leader_id == 0) {
    return fmt::format("no leader known for {} s (this server is {} in term {}): it answers nothing that needs the log",
                       leaderless_ms(s) / 1000, raft::role_name(s.role), s.term);
  }
  const auto [commit, applied] = commit_and_applied(s);
  if (applied >= commit_mark_.first) {
    commit_mark_ = {commit, now};
    return {};
  }
  if (now - commit_mark_.second < std::chrono::seconds(1)) return {};
  return fmt::format("catching up: applied up to {}, behind the commit index {} it knew {} ms ago (now {})", applied,
                     commit_mark_.first,
                     std::chrono::duration_cast<std::chrono::milliseconds>(now - commit_mark_.second).count(), commit);
}

cluster::ClusterStatus ClusterRuntime::status() const {
  return node_ ? node_->status() : cluster::ClusterStatus{};
}

std::pair<std::uint64_t, std::uint64_t> ClusterRuntime::commit_and_applied(const cluster::ClusterStatus& s) const {
  // The raft thread publishes its status once per turn of its loop, after
  // the entries it applied reached this replica: an entry applied here is
  // committed, whatever the published index says.
  const std::uint64_t commit = std::max(s.commit_index, replica_.last_index());
  // Applied: every committed entry but the loop's lag. libraft's own entries
  // (barriers, configuration changes) reach no replica, and count as applied
  // once the entries before them are (ClusterNode::status's lag).
  return {commit, commit - std::min(commit, s.lag)};
}

std::int64_t ClusterRuntime::leaderless_ms(const cluster::ClusterStatus& s) const {
  if (s.leader_id != 0) return 0;
  // tick() keeps leaderless_since_ as it sees the leader come and go; a
  // status read between a change and its tick counts from now.
  const auto now = std::chrono::steady_clock::now();
  return std::chrono::duration_cast<std::chrono::milliseconds>(now - leaderless_since_.value_or(now)).count();
}

std::string ClusterRuntime::cluster_status_json() const {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  json["id"] = id_;
  if (!node_) return json.dump();
  const cluster::ClusterStatus s = node_->status();
  json["role"] = std::string(raft::role_name(s.role));
  json["term"] = s.term;
  json["leader_id"] = s.leader_id;
  json["leader"] = s.leader_client_address;
  // How long this server has known no leader: it answers nothing that needs
  // the log meanwhile (a removed server, one cut off from the majority).
  if (s.leader_id == 0) json["no_leader_ms"] = leaderless_ms(s);
  const auto [commit, applied] = commit_and_applied(s);
  json["commit_index"] = commit;
  json["applied_index"] = applied;
  json["last_index"] = s.last_index;
  nlohmann::ordered_json members = nlohmann::ordered_json::array();
  for (const raft::ServerInfo& server : s.configuration) {
    nlohmann::ordered_json member = nlohmann::ordered_json::object();
    member["id"] = server.id;
    member["role"] = std::string(raft::server_role_name(server.role));
    member["raft"] = server.address;
    const auto client = client_addresses_.find(server.id);
    member["client"] = client == client_addresses_.end() ? std::string() : client->second;
    if (server.id == id_ && s.role == raft::Role::kLeader) {
      member["match_index"] = s.last_index;
      member["lag"] = 0;
    }
    for (const auto& [other, match] : s.match_indexes) {
      if (other != server.id) continue;
      member["match_index"] = match;
      member["lag"] = s.last_index > match ? s.last_index - match : 0;
    }
    // When this server last heard from it over Raft (null: not in this
    // run); on the leader, which every live voter and standby answers at
    // each heartbeat (a spare gets none), whether that was within an
    // election timeout.
    for (const auto& [other, ms] : s.last_contact_ms) {
      if (other != server.id) continue;
      member["last_contact_ms"] = ms < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(ms);
      if (s.role == raft::Role::kLeader && server.role != raft::ServerRole::kSpare) {
        member["reachable"] = cluster::reachable(ms, election_timeout_ms_);
      }
    }
    members.push_back(std::move(member));
  }
  json["members"] = std::move(members);
  // The replicated client addresses (SetMember), by id: those of the
  // members, and of a server in no configuration while an ADD of it runs
  // (or until the leader takes it back: take_back_addresses).
  nlohmann::ordered_json addresses = nlohmann::ordered_json::array();
  for (const auto& [id, address] : replica_.members()) {
    addresses.push_back(nlohmann::ordered_json{{"id", id}, {"client", address}});
  }
  json["client_addresses"] = std::move(addresses);
  return json.dump();
}

Status ClusterRuntime::leads_now(const cluster::ClusterStatus& now) const {
  if (now.role == raft::Role::kLeader) return Status::ok();
  if (now.leader_id == 0) {
    return Status(StatusCode::kUnavailable,
                  fmt::format("no leader now (none known for {} s); retry", leaderless_ms(now) / 1000));
  }
  return Status(StatusCode::kUnavailable, "not the leader; the leader is server " + std::to_string(now.leader_id) +
                                              " at " + now.leader_client_address);
}

void ClusterRuntime::change_membership(MembershipChange change, std::function<void(Status)> done) {
  change_membership(std::move(change), std::move(done), false);
}

Status ClusterRuntime::secret_check_refusal(const MembershipChange& change, std::string_view secret,
                                            std::uint64_t leader, std::string_view nonce,
                                            const Result<std::string>& answer) {
  const std::string server = "server " + std::to_string(change.id) + " at " + change.client_address;
  if (answer.status().code() == StatusCode::kUnavailable) {
    // Never added unconfirmed (audit27 2b): a server that does not run
    // could not catch up anyway, and one whose client port the leader
    // cannot reach (a mistyped port, a firewall) would become a voter
    // whose secret nobody checked, and the removal notice would later go
    // to that address.
    return Status(StatusCode::kInvalidArgument,
                  server + " could not be asked whether it holds the cluster secret (" +
                      std::string(answer.status().message()) + "): start it (with join = on) and check that " +
                      change.client_address + " is its client address, reachable from the leader; nothing was changed");
  }
  const Result<cluster::ServerId> proven =
      answer ? cluster::verify_secret_proof(*answer, secret, leader, change.id, nonce, change.client_address)
             : Result<cluster::ServerId>(answer.status());
  if (proven && *proven == change.id) return Status::ok();
  if (proven) {
    return Status(StatusCode::kInvalidArgument,
                  "the server at " + change.client_address + " is server " + std::to_string(*proven) + ", not server " +
                      std::to_string(change.id) + " (its [cluster] id); nothing was changed");
  }
  std::string why;
  if (!answer) {
    why = std::string(answer.status().message()) +
          "): it has no server.N line for this server, or it runs a netsemd older than the secret challenge (its "
          "log then says 'refused a peer link ... wrong secret'), or it is no netsemd";
  } else if (proven.status().code() == StatusCode::kDenied) {
    why = "its proof does not match): its secret_file is not the cluster's, or its own server." +
          std::to_string(change.id) + " line gives another client address than " + change.client_address +
          " (the proof binds the address), or it runs a netsemd of another secret check";
  } else {
    why = "it answered '" + answer->substr(0, 80) + "', no proof): it is no netsemd of this version";
  }
  return Status(StatusCode::kInvalidArgument,
                server + " did not confirm the cluster secret (" + why + "; nothing was changed");
}

void ClusterRuntime::change_membership(MembershipChange change, std::function<void(Status)> done, bool secret_checked) {
  const auto fail = [this, &done](Status why) { post([done, why = std::move(why)] { done(why); }); };
  if (stopped_ || !node_) return fail(Status(StatusCode::kShutdown, "the server is stopping"));
  const cluster::ClusterStatus now = node_->status();
  if (Status leads = leads_now(now); !leads) return fail(std::move(leads));
  const auto found = std::find_if(now.configuration.begin(), now.configuration.end(),
                                  [&change](const raft::ServerInfo& server) { return server.id == change.id; });
  const bool member = found != now.configuration.end();
  const std::uint64_t id = change.id;
  if (changing_.contains(id)) {
    return fail(Status(StatusCode::kUnavailable, "a change of server " + std::to_string(id) + " is still running"));
  }
  // From here until `done`, its client address is not taken back
  // (take_back_addresses): the REMOVE's notice needs it, the ADD sets it.
  const auto track = [this, id, &done] {
    changing_.insert(id);
    done = [this, id, done = std::move(done)](Status outcome) {
      changing_.erase(id);
      done(std::move(outcome));
    };
  };
  if (!change.add) {
    if (!member) return fail(Status(StatusCode::kNotFound, "server " + std::to_string(id) + " is not a member"));
    if (Status live =
            cluster::remove_keeps_a_live_majority(now, id_, id, election_timeout_ms_, node_->snapshot_trailing());
        !live) {
      spdlog::warn("cluster: not removing server {}: {}", id, live.message());
      return fail(std::move(live));
    }
    spdlog::info("cluster: removing server {}", id);
    track();
    node_->raft().remove_server(id, [this, id, done](Status outcome) {
      post([this, id, done, outcome] {
        if (outcome) {
          // Its client address is taken back once `done` ran
          // (take_back_addresses, at the turn's tick).
          spdlog::info("cluster: server {} removed", id);
          if (id != id_ && !stopped_ && node_) tell_removed(id);
        } else {
          spdlog::warn("cluster: removing server {}: {}", id, outcome.to_string());
        }
        done(outcome);
      });
    });
    return;
  }
  // A spare at the same Raft address is an ADD that did not finish (its
  // leader lost the leadership while the server caught up): it goes on
  // from the promotion.
  const bool unfinished = member && found->role == raft::ServerRole::kSpare && found->address == change.raft_address;
  if (member && !unfinished) {
    return fail(Status(StatusCode::kAlreadyExists, "server " + std::to_string(id) + " is a member already"));
  }
  // As a server.<id> line is checked: no host name, no 0.0.0.0 (an audit
  // added both, and the server stayed a spare).
  if (auto checked = check_member_addresses(change.raft_address, change.client_address); !checked) {
    return fail(checked);
  }
  const replication::SetMember set{id, change.client_address};
  if (auto checked = replication::check_command(set); !checked) {
    return fail(Status(StatusCode::kInvalidArgument, "bad client address (host:port): " + checked.message()));
  }
  if (auto parsed = raft::parse_servers(std::to_string(id) + "@" + change.raft_address); !parsed) {
    return fail(Status(StatusCode::kInvalidArgument, "bad Raft address (a.b.c.d:port): " + parsed.status().message()));
  }
  if (!secret_checked) {
    // The server must hold the cluster secret before anything commits: one
    // with another secret would catch up and vote over Raft (which knows no
    // secret) while every server refuses its peer links, and its removal
    // notice later (audit25: a "healthy" voter that could not be removed).
    const auto own = client_addresses_.find(id_);
    const auto local = own == client_addresses_.end() ? std::nullopt : cluster::split_host_port(own->second);
    spdlog::info("cluster: asking server {} at {} whether it holds the cluster secret", id, change.client_address);
    const std::string address = change.client_address;
    // A fresh nonce: the server proves it holds the secret without either
    // side sending it (cluster::peer_secret_challenge).
    Result<std::string> nonce = cluster::new_peer_nonce();
    if (!nonce) return fail(nonce.status());
    cluster::ask_peer_line(
        io_, local ? local->first : std::string(), address, cluster::peer_secret_challenge(id_, id, *nonce),
        [this, change = std::move(change), done = std::move(done), nonce = *nonce](Result<std::string> answer) {
          post([this, change, done, nonce, answer = std::move(answer)] {
            if (Status refused = secret_check_refusal(change, secret_, id_, nonce, answer); !refused) {
              spdlog::warn("cluster: not adding server {}: {}", change.id, refused.message());
              return done(refused);
            }
            change_membership(change, done, true);
          });
        });
    return;
  }
  spdlog::info("cluster: adding server {} (raft {}, clients {}){}", id, change.raft_address, change.client_address,
               unfinished ? ": a spare already, promoting it" : "");
  // Its client address first, so that the others let its peer link in and
  // name it; then Raft's: a spare, then a voter once it caught up. Should
  // libraft refuse it (another member has that Raft address) or the server
  // not join, the address is taken back once `done` ran.
  track();
  submit(set);
  if (unfinished) return promote(id, std::move(done));
  node_->raft().add_server(id, change.raft_address, [this, id, done](Status added) {
    post([this, id, done, added] {
      if (!added || stopped_ || !node_) {
        spdlog::warn("cluster: adding server {}: {}", id, added ? "stopped" : added.to_string());
        done(added ? Status(StatusCode::kShutdown, "the server is stopping") : added);
        return;
      }
      promote(id, done);
    });
  });
}

void ClusterRuntime::raise_fences(std::uint64_t by, std::function<void(Result<std::uint64_t>)> done) {
  const auto fail = [this, &done](Status why) { post([done, why = std::move(why)] { done(why); }); };
  if (stopped_ || !node_) return fail(Status(StatusCode::kShutdown, "the server is stopping"));
  const cluster::ClusterStatus now = node_->status();
  if (Status leads = leads_now(now); !leads) return fail(std::move(leads));
  if (raise_nonce_ == 0) raise_nonce_ = std::random_device()() | (std::uint64_t{std::random_device()()} << 32);
  const std::uint64_t nonce = ++raise_nonce_;
  if (Status proposed = node_->propose_as_leader(replication::RaiseFences{by, id_, nonce}); !proposed) {
    return fail(proposed);
  }
  spdlog::info("cluster: raising the fences by {} (term {})", by, now.term);
  raises_.emplace(nonce, std::make_pair(now.term, std::move(done)));
}

void ClusterRuntime::promote(std::uint64_t id, std::function<void(Status)> done) {
  node_->raft().assign(id, raft::ServerRole::kVoter, [this, id, done](Status assigned) {
    post([this, id, done, assigned] {
      if (assigned) {
        spdlog::info("cluster: server {} added as a voter", id);
        return done(assigned);
      }
      if (assigned.code() != StatusCode::kTimeout || stopped_ || !node_) {
        // Not the leader any more, or stopping: it may stay a spare (CLUSTER
        // STATUS shows it; an ADD again on the leader promotes it).
        spdlog::warn("cluster: server {} is a spare, not a voter: {}", id, assigned.to_string());
        return done(assigned);
      }
      // libraft gave up waiting for it (nothing answers at its Raft
      // address, or it cannot keep up): the spare goes, so that the
      // configuration is the one before the ADD.
      spdlog::warn("cluster: server {} did not catch up with the log; removing it: {}", id, assigned.message());
      node_->raft().remove_server(id, [this, id, done](Status removed) {
        post([this, id, done, removed] {
          const std::string what = "server " + std::to_string(id) + " did not catch up with the log within 5 s";
          if (!removed) {
            spdlog::warn("cluster: server {} stays a spare: {}", id, removed.to_string());
            return done(Status(StatusCode::kTimeout,
                               what + "; it stays a spare (CLUSTER REMOVE it): " + std::string(removed.message())));
          }
          spdlog::info("cluster: server {} removed: it did not catch up", id);
          done(Status(StatusCode::kTimeout, what + "; removed again"));
        });
      });
    });
  });
}

stats::ClusterFigures ClusterRuntime::cluster_figures() const {
  stats::ClusterFigures figures;
  figures.id = id_;
  if (!node_) return figures;
  const cluster::ClusterStatus s = node_->status();
  figures.role = std::string(raft::role_name(s.role));
  figures.term = s.term;
  figures.leader_id = s.leader_id;
  std::tie(figures.commit_index, figures.applied_index) = commit_and_applied(s);
  figures.last_index = s.last_index;
  figures.lag = figures.commit_index - figures.applied_index;
  figures.members = s.configuration.size();
  figures.voters = static_cast<std::uint64_t>(
      std::count_if(s.configuration.begin(), s.configuration.end(),
                    [](const raft::ServerInfo& server) { return server.role == raft::ServerRole::kVoter; }));
  for (const auto& [member, match] : s.match_indexes) {
    figures.followers.push_back({member, match, s.last_index > match ? s.last_index - match : 0});
  }
  figures.commit_us = s.commit_us;
  figures.batch_commands = s.batch_commands;
  figures.commit_pushes = s.commit_pushes;
  figures.segment_no_space = raft::ZeroFilledSegments::no_space();
  for (std::size_t i = 0; i < raft::kPortRefusals; ++i) {
    figures.raft_connections_refused.emplace_back(raft::port_refusal_name(static_cast<raft::PortRefusal>(i)),
                                                  s.raft_connections_refused[i]);
  }
  for (std::size_t i = 0; i < kRefusedKinds; ++i) {
    figures.peer_lines_refused.emplace_back(refused_name(static_cast<Refused>(i)), refused_counts_[i]);
  }
  return figures;
}

void ClusterRuntime::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (node_) {
    const auto last = node_->status();
    node_->stop();
    spdlog::info("cluster: node stopped ({}, term {}, commit {})", raft::role_name(last.role), last.term,
                 last.commit_index);
  }
  if (forwarder_) forwarder_->close();
  auto receivers = std::move(receivers_);
  receivers_.clear();
  for (const auto& receiver : receivers) receiver->close();
  std::error_code ignored;
  tick_timer_.cancel();
  drain_timer_.cancel();
  refusal_timer_.cancel();
  flush_refusals(std::chrono::steady_clock::now(), true);
  if (watcher_) {
    watcher_->cancel(ignored);
    watcher_->close(ignored);
    watcher_.reset();
  }
}

}  // namespace netsem::server
