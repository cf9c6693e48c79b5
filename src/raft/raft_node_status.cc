// RaftNode::Impl (raft_node_impl.h): what status() shows, and what raft_io
// tells of it. publish() stores the node's state after every loop iteration
// and reports role changes. raft_uv's append, set_term, set_vote and start
// are wrapped: every message received notes when its server was last heard
// from (NodeStatus::last_contact_ms, leader_heard_ms), and a write that
// fails, or libraft turning the node unavailable, is the node's failure for
// good (NodeStatus::failure; the process ends when
// RaftOptions::exit_on_write_failure says so).
#include <spdlog/spdlog.h>
#include <uv.h>

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
}

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "raft/raft_node_impl.h"
#include "raft/servers.h"

namespace netsem::raft {

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

namespace {

// raft_uv's message of its last I/O error (or libraft's, which carries
// it), with the system's words for an errno it gives only as a number
// ("write failed: -28" ends "(No space left on device)"); "" when it said
// nothing.
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

}  // namespace

int RaftNode::Impl::append_wrapped(raft_io* io, raft_io_append* req, const raft_entry entries[], unsigned n,
                                   raft_io_append_cb cb) {
  // libraft's raft_init made io->data the raft, whose data is this node.
  Impl* self = static_cast<Impl*>(static_cast<struct raft*>(io->data)->data);
  if (const auto& refuse = self->options_.refuse_append_for_test) {
    if (const int rv = refuse(); rv != 0) {
      std::snprintf(io->errmsg, sizeof io->errmsg, "%s", "write refused at once (RaftOptions::refuse_append_for_test)");
      self->append_refused_ = io_error_words(io->errmsg);
      return rv;
    }
  }
  {
    std::lock_guard lock(appends_mu_);
    appends_[req] = {self, cb};
  }
  const int rv = self->uv_append_(io, req, entries, n, append_done);
  if (rv != 0) {
    {
      std::lock_guard lock(appends_mu_);
      appends_.erase(req);  // no callback comes
    }
    const std::string said = io_error_words(io->errmsg);
    self->append_refused_ = said.empty() ? std::string(raft_strerror(rv)) : said;
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
  // Not every way into that state is I/O (out of memory, a log that
  // conflicts with a snapshot): libraft's own words (which carry raft_uv's
  // for an I/O error, an errno as a number: said in words too), and an
  // append raft_uv refused at once when libraft's words do not say it.
  const std::string libraft = io_error_words(raft_errmsg(&raft_));
  std::string why = libraft.empty() ? std::string("libraft gave no reason") : "libraft: " + libraft;
  if (!append_refused_.empty() && libraft.find(append_refused_) == std::string::npos) {
    why += "; an append of entries was refused at once: " + append_refused_;
  }
  fail_for_good("libraft turned this node unavailable (" + why + "; data in " + options_.data_dir +
                "); libraft 0.15 never leaves that state (it neither votes nor takes entries again): " +
                (append_refused_.empty() ? std::string("restart this server (on its data)") : std::string(kRestart)));
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

}  // namespace netsem::raft
