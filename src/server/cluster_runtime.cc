// ClusterRuntime (cluster_runtime.h): the raft thread's hand-over through a
// queue and an eventfd, the loop's side that applies it to the loop replica
// and ticks the node, the dispatcher's submit and the reload, and the stop.
// The rest of the class lives beside it, one concern a file:
//   cluster_runtime_start.cc   the node's start from [cluster] and the stored
//                              configuration's check against the server.N lines;
//   cluster_runtime_members.cc the CLUSTER ADD / REMOVE / FENCES verbs, the
//                              replicated client addresses, this server's removal;
//   cluster_runtime_peers.cc   the peer lines on the client port (links,
//                              secret checks, removal notices) and their refusals;
//   cluster_runtime_status.cc  CLUSTER STATUS, the figures and readiness.
// The hot path (push, watch, run_queued, tick, submit) stays in this file.
#include "server/cluster_runtime.h"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <variant>

#include "replication/entry.h"

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
