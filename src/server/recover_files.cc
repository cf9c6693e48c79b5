// The files of netsemd --recover in the Raft directory (recover_files.h):
// the fence raise it owes and the record of what it forced.
#include "server/recover_files.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "common/unique_fd.h"
#include "replication/entry.h"

namespace netsem::server {

namespace {

// `text` as `dir`/`name`, whole: a temporary file, synced, renamed, the
// directory synced.
Status write_durably(const std::filesystem::path& dir, const char* name, const std::string& text) {
  const std::filesystem::path path = dir / name;
  const std::filesystem::path temporary = dir / (std::string(name) + ".tmp");
  const auto failed = [&](const char* what) {
    return Status(StatusCode::kIoError,
                  std::string("--recover: cannot ") + what + " " + path.string() + ": " + std::strerror(errno));
  };
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return failed("write");
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(fd.get()) != 0) {
    return failed("write");
  }
  fd.reset();
  if (::rename(temporary.c_str(), path.c_str()) != 0) return failed("write");
  const UniqueFd directory(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!directory.valid() || ::fsync(directory.get()) != 0) return failed("sync the directory of");
  return Status::ok();
}

// "1@127.0.0.1:7001,2@127.0.0.2:7001" (raft::parse_servers' form).
std::string servers_text(const std::vector<raft::ServerInfo>& servers) {
  std::string text;
  for (const raft::ServerInfo& server : servers) {
    text += (text.empty() ? "" : ",") + std::to_string(server.id) + "@" + server.address;
  }
  return text;
}

// Same ids at the same addresses (roles aside).
bool same_servers(std::vector<raft::ServerInfo> a, std::vector<raft::ServerInfo> b) {
  const auto by_id = [](const raft::ServerInfo& x, const raft::ServerInfo& y) { return x.id < y.id; };
  std::sort(a.begin(), a.end(), by_id);
  std::sort(b.begin(), b.end(), by_id);
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const raft::ServerInfo& x, const raft::ServerInfo& y) {
    return x.id == y.id && x.address == y.address;
  });
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

}  // namespace

Status write_raise_file(const std::filesystem::path& dir, std::uint64_t by, std::uint64_t nonce) {
  return write_durably(dir, kRaiseFile, std::to_string(by) + " " + std::to_string(nonce) + "\n");
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> read_raise_file(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kRaiseFile;
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::uint64_t by = 0;
  std::uint64_t nonce = 0;
  if (!(in >> by >> nonce) || by == 0 || by > replication::kMaxFenceRaise || nonce == 0) {
    spdlog::error(
        "cluster: {} does not hold a fence raise (\"<by> <nonce>\"): ignored; raise the fences with "
        "`netsem cluster raise-fences N` if this server was recovered (netsemd --recover)",
        path.string());
    return std::nullopt;
  }
  return std::make_pair(by, nonce);
}

RecoveryRecord record_of(const raft::RecoverPlan& plan, std::uint64_t server, std::uint64_t raise) {
  return RecoveryRecord{utc_now(), server, plan.index, plan.term, plan.forced, plan.replaced, raise};
}

std::string format_record(const RecoveryRecord& record) {
  return "# netsemd --recover made server " + std::to_string(record.server) +
         " the only server of its cluster's Raft configuration.\n"
         "# A later netsemd --recover on this directory is refused once the configuration has changed since\n"
         "# (servers added), and does nothing while it has not. Remove this file by hand only to recover\n"
         "# again: when the configuration made since lost its majority for good too (docs/replication.md).\n"
         "time " +
         record.time + "\nserver " + std::to_string(record.server) + "\nindex " + std::to_string(record.index) +
         "\nterm " + std::to_string(record.term) + "\nforced " + servers_text(record.forced) + "\nreplaced " +
         servers_text(record.replaced) + "\nraise-fences " + std::to_string(record.raise) + "\n";
}

Result<RecoveryRecord> parse_record(const std::string& text) {
  RecoveryRecord record;
  bool has_index = false;
  std::istringstream lines(text);
  std::string line;
  const auto number = [](const std::string& value, std::uint64_t& out) {
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
    return ec == std::errc() && end == value.data() + value.size();
  };
  while (std::getline(lines, line)) {
    if (line.empty() || line.front() == '#') continue;
    const std::size_t space = line.find(' ');
    const std::string key = line.substr(0, space);
    const std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    bool ok = true;
    if (key == "time") {
      record.time = value;
    } else if (key == "server") {
      ok = number(value, record.server);
    } else if (key == "index") {
      ok = number(value, record.index) && record.index > 0;
      has_index = ok;
    } else if (key == "term") {
      ok = number(value, record.term);
    } else if (key == "raise-fences") {
      ok = number(value, record.raise);
    } else if (key == "forced" || key == "replaced") {
      auto servers = raft::parse_servers(value);
      ok = servers.has_value();
      if (ok) (key == "forced" ? record.forced : record.replaced) = std::move(*servers);
    }
    if (!ok) return Status(StatusCode::kCorruption, "its line '" + line + "' does not parse");
  }
  if (!has_index || record.forced.empty()) {
    return Status(StatusCode::kCorruption, "it has no 'index' or no 'forced' line");
  }
  return record;
}

Status write_record(const std::filesystem::path& dir, const RecoveryRecord& record) {
  return write_durably(dir, kRecordFile, format_record(record));
}

Result<std::optional<RecoveryRecord>> read_record(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kRecordFile;
  std::ifstream in(path);
  if (!in) {
    std::error_code error;
    if (!std::filesystem::exists(path, error) && !error) return std::optional<RecoveryRecord>();
    return Status(StatusCode::kIoError, "--recover: cannot read " + path.string() + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto record = parse_record(text.str());
  if (!record) {
    return Status(StatusCode::kCorruption,
                  "--recover: " + path.string() + ", the record of an earlier recovery, cannot be read: " +
                      record.status().message() + ". Nothing was changed; remove it by hand to recover anyway");
  }
  return std::optional<RecoveryRecord>(std::move(*record));
}

Result<bool> decide_recover(const std::filesystem::path& dir, const std::optional<RecoveryRecord>& found,
                            const raft::RecoverPlan& plan) {
  if (!found || found->index > plan.replaced_index) return true;
  const RecoveryRecord& record = *found;
  if (record.index == plan.replaced_index && same_servers(record.forced, plan.replaced)) return false;
  const std::string path = (dir / kRecordFile).string();
  return Status(StatusCode::kAlreadyExists,
                "--recover: this Raft directory was recovered before (" + path + ": at " + record.time + ", " +
                    servers_text(record.forced) + " alone at index " + std::to_string(record.index) + ", term " +
                    std::to_string(record.term) + "), and its configuration has changed since: it is now " +
                    servers_text(plan.replaced) + " (index " + std::to_string(plan.replaced_index) +
                    "). Recovering again would drop every server added since. Start without --recover. Only if "
                    "this configuration lost its majority for good too, remove " +
                    path + " by hand and run --recover again. Nothing was changed");
}

}  // namespace netsem::server
