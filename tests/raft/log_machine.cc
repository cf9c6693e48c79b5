// LogMachine (log_machine.h): the test state machine of tests/raft.
#include "raft/log_machine.h"

#include <charconv>

namespace netsem::raft::testing {

Result<std::string> LogMachine::apply(std::uint64_t index, std::string_view command) {
  std::lock_guard lock(mu_);
  if (index < last_index_ || index == 0) ++violations_;
  last_index_ = index;
  if (command.substr(0, kPrefix.size()) != kPrefix) {
    ++refused_;
    return Status(StatusCode::kInvalidArgument, "not a test command");
  }
  entries_.emplace_back(command);
  return std::to_string(entries_.size());
}

std::string LogMachine::snapshot() {
  std::lock_guard lock(mu_);
  ++snapshots_;
  std::string out = "lm1 " + std::to_string(last_index_) + " " + std::to_string(entries_.size()) + "\n";
  for (const std::string& entry : entries_) {
    out += std::to_string(entry.size());
    out += ':';
    out += entry;
  }
  return out;
}

namespace {

bool read_number(std::string_view& in, char end, std::uint64_t& out) {
  const auto [p, ec] = std::from_chars(in.data(), in.data() + in.size(), out);
  if (ec != std::errc() || p == in.data() + in.size() || *p != end) return false;
  in.remove_prefix(static_cast<std::size_t>(p - in.data()) + 1);
  return true;
}

}  // namespace

Status LogMachine::restore(std::string_view snapshot) {
  const Status bad(StatusCode::kCorruption, "not a LogMachine snapshot");
  if (snapshot.substr(0, 4) != "lm1 ") return bad;
  snapshot.remove_prefix(4);
  std::uint64_t last = 0, n = 0;
  if (!read_number(snapshot, ' ', last) || !read_number(snapshot, '\n', n)) return bad;
  std::vector<std::string> entries;
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint64_t length = 0;
    if (!read_number(snapshot, ':', length) || length > snapshot.size()) return bad;
    entries.emplace_back(snapshot.substr(0, length));
    snapshot.remove_prefix(length);
  }
  if (!snapshot.empty()) return bad;
  std::lock_guard lock(mu_);
  if (last < last_index_) ++violations_;
  entries_ = std::move(entries);
  last_index_ = last;
  ++restores_;
  return Status::ok();
}

std::vector<std::string> LogMachine::entries() const {
  std::lock_guard lock(mu_);
  return entries_;
}
std::size_t LogMachine::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}
std::uint64_t LogMachine::hash() const {
  std::lock_guard lock(mu_);
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](unsigned char c) { h = (h ^ c) * 1099511628211ull; };
  for (const std::string& entry : entries_) {
    for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(entry.size() >> (8 * i)));
    for (char c : entry) mix(static_cast<unsigned char>(c));
  }
  return h;
}
std::uint64_t LogMachine::last_index() const {
  std::lock_guard lock(mu_);
  return last_index_;
}
std::uint64_t LogMachine::snapshots() const {
  std::lock_guard lock(mu_);
  return snapshots_;
}
std::uint64_t LogMachine::restores() const {
  std::lock_guard lock(mu_);
  return restores_;
}
std::uint64_t LogMachine::refused() const {
  std::lock_guard lock(mu_);
  return refused_;
}
std::uint64_t LogMachine::violations() const {
  std::lock_guard lock(mu_);
  return violations_;
}

}  // namespace netsem::raft::testing
