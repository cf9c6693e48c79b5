// RaftNode::Impl (raft_node_impl.h): the stored log, read before raft_start.
// recover() forces this server alone as the configuration (RaftOptions::
// recover, netsemd --recover), raise_term_to() raises the stored term
// (RaftOptions::min_term), and undo_bootstrap() removes again what a first
// start that failed wrote. All run from RaftNode::start, before the raft
// thread.
#include <unistd.h>

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
}

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "raft/data_dir_checks.h"
#include "raft/raft_node_impl.h"
#include "raft/servers.h"

namespace netsem::raft {

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

}  // namespace netsem::raft
