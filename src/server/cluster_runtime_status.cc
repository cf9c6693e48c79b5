// ClusterRuntime (cluster_runtime.h): what the node's status shows outside:
// CLUSTER STATUS's JSON, the figures of STATS and /metrics, and why this
// member should get no clients now (/readyz).
#include "server/cluster_runtime.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "raft/segment_fill.h"

namespace netsem::server {

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

}  // namespace netsem::server
