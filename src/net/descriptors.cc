// The descriptor budget: raising RLIMIT_NOFILE, counting open descriptors,
// and the split between sessions, refusals and the server's own files.
#include "net/descriptors.h"

#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace netsem::server {

namespace {

std::uint64_t as_count(rlim_t value) {
  return value == RLIM_INFINITY ? UINT64_MAX : static_cast<std::uint64_t>(value);
}

}  // namespace

Result<std::uint64_t> current_nofile_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return Status(StatusCode::kIoError, std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
  }
  return as_count(limit.rlim_cur);
}

Result<NofileLimit> raise_nofile_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return Status(StatusCode::kIoError, std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
  }
  NofileLimit result{as_count(limit.rlim_cur), as_count(limit.rlim_cur), as_count(limit.rlim_max)};
  rlim_t wanted = limit.rlim_max;
  if (wanted == RLIM_INFINITY) {
    // Linux refuses a soft limit above fs.nr_open, even under an
    // unlimited hard limit.
    std::ifstream nr_open("/proc/sys/fs/nr_open");
    std::uint64_t cap = 0;
    if (nr_open >> cap && cap > 0) wanted = static_cast<rlim_t>(cap);
  }
  if (wanted != RLIM_INFINITY && limit.rlim_cur != RLIM_INFINITY && wanted > limit.rlim_cur) {
    rlimit raised = limit;
    raised.rlim_cur = wanted;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) result.soft = as_count(wanted);
  }
  return result;
}

Result<std::size_t> count_open_descriptors() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    if (errno == EMFILE) {
      return Status(StatusCode::kInvalidArgument,
                    "the descriptor limit (RLIMIT_NOFILE) is too low: netsemd used all of it before serving "
                    "anything; raise it with ulimit -n or LimitNOFILE=");
    }
    return Status(StatusCode::kIoError, std::string("cannot list /proc/self/fd: ") + std::strerror(errno));
  }
  std::size_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count - 1;  // the directory's own descriptor
}

Result<DescriptorPlan> plan_descriptors(std::uint64_t nofile, std::size_t open_now, std::size_t max_connections,
                                        std::size_t kept_for_http) {
  const std::uint64_t kept = static_cast<std::uint64_t>(open_now) + kOwnFilesReserve + kept_for_http;
  const std::uint64_t needed = kept + 2;  // one session and one refusal
  if (nofile < needed) {
    return Status(
        StatusCode::kInvalidArgument,
        "the descriptor limit (RLIMIT_NOFILE " + std::to_string(nofile) + ") is too low: netsemd needs at least " +
            std::to_string(needed) + " (" + std::to_string(open_now) + " open at start, " +
            std::to_string(kOwnFilesReserve) + " kept for its own files, " + std::to_string(kept_for_http) +
            " for HTTP connections, one session and one refusal); " + "raise it with ulimit -n or LimitNOFILE=");
  }
  const std::uint64_t free = nofile - kept;
  DescriptorPlan plan;
  plan.rejecting = static_cast<std::size_t>(std::clamp<std::uint64_t>(free / 8, 1, kMaxRejecting));
  const std::uint64_t for_sessions = free - plan.rejecting;
  plan.limited = for_sessions < max_connections;
  plan.sessions = plan.limited ? static_cast<std::size_t>(for_sessions) : max_connections;
  return plan;
}

Status check_descriptor_floor() {
  const auto nofile = current_nofile_limit();
  if (!nofile) return nofile.status();
  const auto open_now = count_open_descriptors();
  if (!open_now) return open_now.status();
  const auto plan = plan_descriptors(*nofile, *open_now, 1);
  return plan ? Status::ok() : plan.status();
}

}  // namespace netsem::server
