// ClusterNode: the commands of hosted sessions into the log, the leader's
// duties, the resends (cluster_node.h). The raft thread only runs RaftNode's
// callbacks, which store an atomic (the term this node leads) or push to the
// mailbox; everything else here runs on the loop thread.
#include "cluster/cluster_node.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <string_view>
#include <utility>
#include <variant>

#include "common/log.h"
#include "replication/results.h"

namespace netsem::cluster {

namespace {

// The most commands one forwarded entry carries.
constexpr std::size_t kMaxForwardBatch = 1024;

// What applied() matches a pending command by: its bytes alone
// (encode_command: no frame, no checksum). A command sent twice has the
// same bytes.
std::string key_of(const replication::Command& command) {
  return replication::encode_command(command);
}

}  // namespace

ClusterNode::ClusterNode(ClusterOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<ClusterNode>> ClusterNode::start(ClusterOptions options) {
  if (!options.clock) return Status(StatusCode::kInvalidArgument, "cluster node: no clock");
  std::unique_ptr<ClusterNode> node(new ClusterNode(std::move(options)));
  ClusterNode* self = node.get();
  node->adapter_ = std::make_unique<ReplicaAdapter>(node->options_.limits, node->options_.sink, node->options_.id);
  raft::RaftOptions raft_options;
  raft_options.id = node->options_.id;
  raft_options.address = node->options_.raft_address;
  raft_options.bind_address = node->options_.raft_bind_address;
  raft_options.repair = node->options_.repair;
  raft_options.recover = node->options_.recover;
  raft_options.before_recover = node->options_.before_recover;
  raft_options.min_term = node->options_.min_term;
  node->first_raise_ = node->options_.first_raise;
  raft_options.exit_on_write_failure = node->options_.exit_on_write_failure;
  raft_options.data_dir = node->options_.data_dir;
  raft_options.bootstrap = node->options_.bootstrap;
  raft_options.known_servers = node->options_.known_raft_servers;
  raft_options.allow_peer = node->options_.allow_raft_peer;
  raft_options.election_timeout = node->options_.election_timeout;
  raft_options.heartbeat_timeout = node->options_.heartbeat_timeout;
  raft_options.max_batch = node->options_.max_batch;
  raft_options.group_commit = node->options_.group_commit;
  raft_options.snapshot_threshold = node->options_.snapshot_threshold;
  raft_options.snapshot_trailing = node->options_.snapshot_trailing;
  raft_options.on_role_change = [self](raft::Role role, std::uint64_t term) {
    self->lead_term_.store(role == raft::Role::kLeader ? term : 0, std::memory_order_release);
    if (self->options_.wake) self->options_.wake();
  };
  auto raft = raft::RaftNode::start(std::move(raft_options), *node->adapter_);
  if (!raft) return raft.status();
  node->raft_ = std::move(*raft);
  return node;
}

ClusterNode::~ClusterNode() {
  stop();
}

void ClusterNode::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (raft_) raft_->stop();  // every callback has run when it returns
  lead_term_.store(0, std::memory_order_release);
}

void ClusterNode::post(Mail mail) {
  {
    std::lock_guard lock(mail_mu_);
    mail_.push_back(std::move(mail));
  }
  if (options_.wake) options_.wake();
}

void ClusterNode::refresh_leader() {
  const raft::NodeStatus s = raft_->status();
  leader_id_ = s.leader_id;
  term_ = std::max(s.term, lead_term_.load(std::memory_order_acquire));
}

void ClusterNode::propose(replication::Entry entry, std::uint64_t serial, Duty duty) {
  const std::uint64_t term = lead_term_.load(std::memory_order_acquire);
  ++counters_.proposed;
  raft_->propose(replication::encode_entry(entry), [this, serial, duty, term](Result<std::string> result) {
    if (duty == Duty::kNone) {
      // A command of ours: an apply is seen by applied(); only a failure matters.
      if (serial == 0 || result) return;
      post(Mail{serial, duty, term, 0, result.status()});
      return;
    }
    Mail mail{0, duty, term, 0, result.status()};
    if (result) {
      auto decoded = replication::decode_results(*result);
      if (decoded) mail.index = decoded->index;
    }
    post(std::move(mail));
  });
}

// The first thing proposed in a term this node leads is TouchAll, behind
// the RaiseFences of a recovery while it is not applied.
void ClusterNode::start_term_if_new(std::int64_t now_ms) {
  const std::uint64_t term = lead_term_.load(std::memory_order_acquire);
  if (term == 0 || term == started_term_) return;
  started_term_ = term;
  touch_all_index_ = 0;
  check_configuration_ = true;
  new_leader_check_ = true;
  advance_in_flight_ = false;
  advance_index_ = 0;
  ++counters_.touch_alls;
  replication::Entry entry{now_ms, {replication::TouchAll{}}};
  if (first_raise_ != 0) {
    entry.commands.insert(entry.commands.begin(),
                          replication::RaiseFences{first_raise_, options_.id, options_.first_raise_nonce});
  }
  propose(std::move(entry), 0, Duty::kTouchAll);
}

Status ClusterNode::submit(replication::Command command) {
  if (stopped_) return Status(StatusCode::kShutdown, "cluster node stopped");
  if (replication::ServerId* origin = replication::origin_of(command)) {
    if (*origin == 0) *origin = options_.id;
    if (*origin != options_.id) {
      return Status(StatusCode::kInvalidArgument,
                    "cluster node " + std::to_string(options_.id) + ": a command of origin " + std::to_string(*origin));
    }
  }
  if (Status checked = replication::check_command(command); !checked) return checked;
  const std::uint64_t serial = ++next_serial_;
  Pending pending;
  pending.key = key_of(command);
  pending.command = std::move(command);
  by_key_.emplace(pending.key, serial);
  auto [it, inserted] = pending_.emplace(serial, std::move(pending));
  ++counters_.submitted;
  if (!leads() && (leader_id_ == 0 || leader_id_ == options_.id)) refresh_leader();
  send(serial, it->second, options_.clock());
  return Status::ok();
}

void ClusterNode::send(std::uint64_t serial, Pending& pending, std::int64_t now_ms) {
  if (leads()) {
    start_term_if_new(now_ms);
    propose(replication::Entry{now_ms, {pending.command}}, serial, Duty::kNone);
    pending.sent_to = options_.id;
    pending.sent_term = lead_term_.load(std::memory_order_acquire);
  } else if (leader_id_ != 0 && leader_id_ != options_.id && options_.forwarder != nullptr) {
    options_.forwarder->forward(leader_id_, replication::encode_entry(replication::Entry{0, {pending.command}}));
    ++counters_.forwarded;
    pending.sent_to = leader_id_;
    pending.sent_term = term_;
  } else {
    return;  // no leader to send it to yet: tick() sends it when there is
  }
  pending.sent_ms = now_ms;
  pending.failed = false;
}

Status ClusterNode::propose_as_leader(replication::Command command) {
  if (stopped_) return Status(StatusCode::kShutdown, "cluster node stopped");
  if (Status checked = replication::check_command(command); !checked) return checked;
  if (!leads()) return Status(StatusCode::kUnavailable, "not the leader");
  const std::int64_t now = options_.clock();
  start_term_if_new(now);
  propose(replication::Entry{now, {std::move(command)}}, 0, Duty::kNone);
  return Status::ok();
}

Status ClusterNode::accept_forwarded(std::string_view bytes) {
  if (stopped_) return Status(StatusCode::kShutdown, "cluster node stopped");
  auto entry = replication::decode_entry(bytes);
  if (!entry) return entry.status();
  if (!leads()) return Status(StatusCode::kUnavailable, "not the leader");
  if (entry->commands.empty()) return Status::ok();
  const std::int64_t now = options_.clock();
  start_term_if_new(now);
  entry->time_ms = now;
  ++counters_.accepted;
  propose(std::move(*entry), 0, Duty::kNone);
  return Status::ok();
}

void ClusterNode::set_first_raise(std::uint64_t by, std::uint64_t nonce) {
  first_raise_ = by;
  options_.first_raise = by;
  options_.first_raise_nonce = nonce;
}

void ClusterNode::applied(std::uint64_t index, const replication::Entry& entry) {
  loop_applied_ = std::max(loop_applied_, index);
  if (first_raise_ != 0) {
    for (const replication::Command& command : entry.commands) {
      const auto* raise = std::get_if<replication::RaiseFences>(&command);
      if (raise != nullptr && raise->server == options_.id && raise->nonce == options_.first_raise_nonce) {
        first_raise_ = 0;
      }
    }
  }
  if (by_key_.empty()) return;
  for (const replication::Command& command : entry.commands) {
    const auto found = by_key_.find(key_of(command));
    if (found == by_key_.end()) continue;
    pending_.erase(found->second);
    by_key_.erase(found);
  }
}

void ClusterNode::drain_mail(const replication::StateMachine& loop_replica) {
  (void)loop_replica;
  std::vector<Mail> mail;
  {
    std::lock_guard lock(mail_mu_);
    mail.swap(mail_);
  }
  for (Mail& m : mail) {
    if (m.duty == Duty::kNone) {
      const auto it = pending_.find(m.serial);
      if (it == pending_.end()) continue;  // applied meanwhile
      if (m.status.code() == StatusCode::kUnavailable) {
        it->second.failed = true;  // send again to the leader known now
      } else if (m.status.code() != StatusCode::kShutdown) {
        // The state machine refused it: it will never apply.
        ++counters_.refused;
        const auto range = by_key_.equal_range(it->second.key);
        for (auto k = range.first; k != range.second; ++k) {
          if (k->second == m.serial) {
            by_key_.erase(k);
            break;
          }
        }
        pending_.erase(it);
      }
      continue;
    }
    if (m.term != started_term_) continue;  // a term this node no longer leads
    switch (m.duty) {
      case Duty::kTouchAll:
        if (m.status) touch_all_index_ = m.index;
        break;
      case Duty::kAdvanceTime:
        if (m.status) {
          advance_index_ = m.index;
        } else {
          advance_in_flight_ = false;
        }
        break;
      case Duty::kReconfigure:
        if (m.status) {
          new_leader_check_ = false;
        } else {
          check_configuration_ = true;
        }
        break;
      case Duty::kNone:
        break;
    }
  }
}

void ClusterNode::set_configuration(std::vector<std::pair<std::string, std::int64_t>> limits,
                                    std::int64_t session_timeout_ms) {
  std::sort(limits.begin(), limits.end());
  configuration_.emplace(std::move(limits), session_timeout_ms);
  check_configuration_ = true;
}

std::vector<ConfigurationDifference> configuration_differences(
    const replication::StateMachine& replica, const std::vector<std::pair<std::string, std::int64_t>>& limits,
    std::int64_t session_timeout_ms) {
  std::vector<ConfigurationDifference> out;
  if (replica.session_timeout_ms() != session_timeout_ms) {
    out.push_back({"", replica.session_timeout_ms(), session_timeout_ms, false});
  }
  std::map<std::string, std::int64_t, std::less<>> defined;
  replica.table().list("", [&defined](const server::SemaphoreInfo& info) {
    if (info.kind == server::SemaphoreKind::kDefined) defined.emplace(std::string(info.name), info.max);
  });
  std::map<std::string_view, std::int64_t> configured;
  for (const auto& [name, limit] : limits) configured.emplace(name, limit);
  auto d = defined.begin();
  auto c = configured.begin();
  while (d != defined.end() || c != configured.end()) {
    if (c == configured.end() || (d != defined.end() && d->first < c->first)) {
      out.push_back({d->first, d->second, std::nullopt, false});
      ++d;
    } else if (d == defined.end() || c->first < d->first) {
      const bool created = replica.table().get(c->first).kind == server::SemaphoreKind::kCreated;
      out.push_back({std::string(c->first), std::nullopt, c->second, created});
      ++c;
    } else {
      if (d->second != c->second) out.push_back({d->first, d->second, c->second, false});
      ++d;
      ++c;
    }
  }
  return out;
}

std::string describe(const ConfigurationDifference& difference) {
  const auto cluster = [&]() -> std::string {
    if (difference.replicated) return std::to_string(*difference.replicated) + " in the cluster";
    return difference.created ? "a semaphore created by CREATE in the cluster (it stays one)"
                              : "not defined in the cluster";
  };
  const std::string here = difference.configured ? std::to_string(*difference.configured) + " in this server's file"
                                                 : "not in this server's file";
  const std::string what =
      difference.name.empty() ? "session_timeout_ms" : "[semaphores] " + escape_for_log(difference.name);
  return what + ": " + cluster() + ", " + here;
}

void ClusterNode::log_reconfigure(const replication::StateMachine& replica,
                                  const std::vector<ConfigurationDifference>& differences) const {
  bool none_defined = true;
  replica.table().list("", [&none_defined](const server::SemaphoreInfo& info) {
    if (info.kind == server::SemaphoreKind::kDefined) none_defined = false;
  });
  if (none_defined && replica.session_timeout_ms() == 0) {
    spdlog::info(
        "cluster: replicating this server's configuration as the cluster's first: {} defined semaphores, "
        "session_timeout_ms {}",
        configuration_->first.size(), configuration_->second);
    return;
  }
  for (const ConfigurationDifference& difference : differences) {
    if (new_leader_check_) {
      spdlog::warn(
          "cluster: this server leads and replicates its own file's configuration (the leader's file wins), "
          "which changes the cluster's: {}",
          describe(difference));
    } else {
      spdlog::info("cluster: replicating the reloaded configuration: {}", describe(difference));
    }
  }
}

std::int64_t ClusterNode::tick(std::int64_t now_ms, const replication::StateMachine& loop_replica) {
  const std::int64_t election = options_.election_timeout.count();
  const std::int64_t heartbeat = options_.heartbeat_timeout.count();
  if (stopped_) return now_ms + election;
  drain_mail(loop_replica);
  loop_applied_ = std::max(loop_applied_, loop_replica.last_index());
  refresh_leader();
  if (const auto member = loop_replica.members().find(leader_id_); member != loop_replica.members().end()) {
    leader_member_address_ = member->second;
  } else {
    leader_member_address_.clear();
  }
  std::int64_t next = now_ms + election;

  // The leader's duties, in their order.
  if (leads()) {
    start_term_if_new(now_ms);
    if (check_configuration_ && configuration_) {
      if (touch_all_index_ != 0 && loop_replica.last_index() >= touch_all_index_) {
        check_configuration_ = false;
        const std::vector<ConfigurationDifference> differences =
            configuration_differences(loop_replica, configuration_->first, configuration_->second);
        if (differences.empty()) {
          new_leader_check_ = false;
        } else {
          log_reconfigure(loop_replica, differences);
          ++counters_.reconfigures;
          propose(replication::Entry{now_ms, {replication::Reconfigure{configuration_->first, configuration_->second}}},
                  0, Duty::kReconfigure);
        }
      } else {
        next = std::min(next, now_ms + heartbeat);
      }
    }
    if (advance_in_flight_ && advance_index_ != 0 && loop_replica.last_index() >= advance_index_) {
      advance_in_flight_ = false;
    }
    if (!advance_in_flight_) {
      const auto due = loop_replica.next_expiry_ms();
      if (due && now_ms >= *due) {
        ++counters_.advances;
        advance_in_flight_ = true;
        advance_index_ = 0;
        propose(replication::Entry{now_ms, {replication::AdvanceTime{}}}, 0, Duty::kAdvanceTime);
      } else if (due) {
        next = std::min(next, *due);
      }
    }
    if (advance_in_flight_) next = std::min(next, now_ms + heartbeat);
  }

  // Resends: to a new leader (or term), after a refusal for not leading, or
  // after 2 x election timeout without an apply.
  const std::uint64_t target = leads() ? options_.id : (leader_id_ == options_.id ? 0 : leader_id_);
  replication::Entry batch;
  std::vector<Pending*> batched;
  for (auto& [serial, p] : pending_) {
    const bool due =
        p.sent_to == 0 || p.sent_to != target || p.sent_term != term_ || p.failed || now_ms >= p.sent_ms + 2 * election;
    if (target == 0 || (target != options_.id && options_.forwarder == nullptr)) {
      next = std::min(next, now_ms + heartbeat);  // wait for a leader to send to
      break;
    }
    if (!due) {
      next = std::min(next, p.sent_ms + 2 * election);
      continue;
    }
    if (p.sent_to != 0) ++counters_.resent;
    if (target == options_.id) {
      send(serial, p, now_ms);
    } else {
      batch.commands.push_back(p.command);
      batched.push_back(&p);
      if (batch.commands.size() == kMaxForwardBatch) {
        options_.forwarder->forward(target, replication::encode_entry(batch));
        ++counters_.forwarded;
        batch.commands.clear();
      }
    }
    next = std::min(next, now_ms + 2 * election);
  }
  if (!batch.commands.empty()) {
    options_.forwarder->forward(target, replication::encode_entry(batch));
    ++counters_.forwarded;
  }
  for (Pending* p : batched) {
    p->sent_to = target;
    p->sent_term = term_;
    p->sent_ms = now_ms;
    p->failed = false;
  }
  return std::max(next, now_ms);
}

ClusterStatus ClusterNode::status() const {
  ClusterStatus out = counters_;
  const raft::NodeStatus s = raft_->status();
  out.role = s.role;
  out.term = s.term;
  out.leader_id = s.leader_id;
  out.leader_address = s.leader_address;
  if (!leader_member_address_.empty() && s.leader_id == leader_id_) {
    out.leader_client_address = leader_member_address_;
  } else if (const auto it = options_.client_addresses.find(s.leader_id); it != options_.client_addresses.end()) {
    out.leader_client_address = it->second;
  }
  out.commit_index = s.commit_index;
  out.raft_applied = adapter_->last_index();
  out.loop_applied = loop_applied_;
  // Committed entries this server's loop has not applied yet: those libraft
  // has not applied (of every kind), then those the raft thread's replica
  // applied and the loop has not. Not commit_index - loop_applied: libraft's
  // own entries (barriers, configuration changes) reach no replica, and
  // would count as lag for ever.
  out.lag = (s.commit_index > s.last_applied ? s.commit_index - s.last_applied : 0) +
            (out.raft_applied > loop_applied_ ? out.raft_applied - loop_applied_ : 0);
  out.last_index = s.last_index;
  out.configuration = s.configuration;
  out.match_indexes = s.match_indexes;
  out.configuration_index = s.configuration_index;
  out.removed_at = s.removed_at;
  out.leader_heard_ms = s.leader_heard_ms;
  out.last_contact_ms = s.last_contact_ms;
  out.pending = pending_.size();
  out.failure = s.failure;
  out.commit_us = s.commit_us;
  out.batch_commands = s.batch_commands;
  out.commit_pushes = s.commit_pushes;
  out.raft_connections_refused = s.connections_refused;
  return out;
}

bool reachable(std::int64_t ms, std::int64_t election_timeout_ms) {
  return ms >= 0 && ms <= election_timeout_ms;
}

Status remove_keeps_a_live_majority(const ClusterStatus& now, std::uint64_t self, std::uint64_t id,
                                    std::int64_t election_timeout_ms, std::uint64_t max_behind) {
  std::size_t voters = 0;
  std::size_t live = 0;
  std::string unreachable;
  std::string behind;
  for (const raft::ServerInfo& server : now.configuration) {
    if (server.role != raft::ServerRole::kVoter || server.id == id) continue;
    ++voters;
    if (server.id == self) {
      ++live;
      continue;
    }
    const auto contact = std::find_if(now.last_contact_ms.begin(), now.last_contact_ms.end(),
                                      [&server](const auto& seen) { return seen.first == server.id; });
    const std::int64_t ms = contact == now.last_contact_ms.end() ? -1 : contact->second;
    if (!reachable(ms, election_timeout_ms)) {
      unreachable += (unreachable.empty() ? "" : ", ") + std::string("server ") + std::to_string(server.id) +
                     (ms < 0 ? " (never heard from)" : " (last heard " + std::to_string(ms) + " ms ago)");
      continue;
    }
    const auto match = std::find_if(now.match_indexes.begin(), now.match_indexes.end(),
                                    [&server](const auto& index) { return index.first == server.id; });
    const std::uint64_t matched = match == now.match_indexes.end() ? 0 : match->second;
    const std::uint64_t lag = now.commit_index > matched ? now.commit_index - matched : 0;
    if (lag > max_behind) {
      behind += (behind.empty() ? "" : ", ") + std::string("server ") + std::to_string(server.id) + " is " +
                std::to_string(lag) + " entries behind (match index " + std::to_string(matched) + ")";
      continue;
    }
    ++live;
  }
  if (voters == 0 || live >= voters / 2 + 1) return Status::ok();
  std::string why;
  std::string remedy;
  if (!unreachable.empty()) {
    why += "; unreachable: " + unreachable;
    remedy = "start the unreachable servers again";
  }
  if (!behind.empty()) {
    why += "; not caught up (more than " + std::to_string(max_behind) + " entries below the commit index " +
           std::to_string(now.commit_index) + "): " + behind;
    remedy += std::string(remedy.empty() ? "" : ", ") + "wait for the servers behind to catch up";
  }
  return Status(StatusCode::kUnavailable, "removing server " + std::to_string(id) + " would leave " +
                                              std::to_string(voters) + " voters, of which " + std::to_string(live) +
                                              " are live (heard from within an election timeout, and caught up), "
                                              "fewer than the " +
                                              std::to_string(voters / 2 + 1) + " the change needs to commit" + why +
                                              ". Nothing was changed: " + remedy + ", or remove them first");
}

}  // namespace netsem::cluster
