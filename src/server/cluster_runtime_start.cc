// ClusterRuntime (cluster_runtime.h): the node's start from [cluster] (the
// Raft data directory, --repair, --recover and the fence raise it owes, the
// bootstrap from the server.N lines, the raft thread's sink and wake), and
// the check of the configuration the directory holds against those lines.
#include "server/cluster_runtime.h"

#include <spdlog/spdlog.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "server/recover_files.h"

namespace netsem::server {

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

}  // namespace netsem::server
