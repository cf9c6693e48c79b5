// ZeroFilledSegments (segment_fill.h): the registry of Raft directories and
// the posix_fallocate that netsemd defines in place of the C library's for
// libraft.so; new files in a registered directory are allocated, then
// written with zeros.
#include "raft/segment_fill.h"

#include <spdlog/spdlog.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "common/log.h"

namespace netsem::raft {
namespace {

// One warning of a segment refused for lack of space per directory and
// window; the ones in between are counted in the next.
constexpr std::chrono::seconds kNoSpaceLogWindow{10};

struct Registry {
  std::mutex mu;
  std::map<std::string, int> directories;  // directory -> registrations
  std::atomic<int> count{0};               // registrations in all: 0 = the C library's call only
  std::atomic<unsigned long> filled{0};
  std::atomic<unsigned long> no_space{0};
  std::map<std::string, LogRateLimit> no_space_logs;  // guarded by mu
};

Registry& registry() {
  static Registry r;
  return r;
}

std::string absolute_directory(const std::string& directory) {
  std::error_code ec;
  std::filesystem::path path = std::filesystem::weakly_canonical(std::filesystem::absolute(directory, ec), ec);
  std::string text = path.string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

// The directory and name of `fd`'s file (/proc/self/fd); nullopt when
// unknown.
std::optional<std::pair<std::string, std::string>> file_of(int fd) {
  std::array<char, 4096> target{};
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), target.data(), target.size() - 1);
  if (n <= 0) return std::nullopt;
  const std::string path(target.data(), static_cast<std::size_t>(n));
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return std::nullopt;
  return std::make_pair(slash == 0 ? std::string("/") : path.substr(0, slash), path.substr(slash + 1));
}

// Whether `fd` is a file directly in a registered directory.
bool in_registered_directory(int fd) {
  const auto file = file_of(fd);
  if (!file) return false;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.directories.contains(file->first);
}

// The C library's posix_fallocate said ENOSPC for `fd`: in a registered
// directory, libraft could not prepare a segment (segment_fill.h). Called
// on libuv's thread pool: counted, and logged (spdlog's sink is thread
// safe, common/log.h) once per directory and window.
void report_no_space(int fd, off_t len) {
  const auto file = file_of(fd);
  if (!file) return;
  Registry& r = registry();
  LogRateLimit::Admission admission;
  {
    std::lock_guard lock(r.mu);
    if (!r.directories.contains(file->first)) return;
    ++r.no_space;
    admission =
        r.no_space_logs.try_emplace(file->first, 1, kNoSpaceLogWindow).first->second.admit(LogRateLimit::Clock::now());
  }
  if (!admission.write) return;
  spdlog::warn(
      "raft: no space left in {} for the next segment of the Raft log ({}, {} bytes){}: libraft prepares it ahead and "
      "tries again when the segment in use is full; if there is no space then either, that write fails and this "
      "server stops (exit 3), taking no more entries. Free space on that disk",
      file->first, file->second, static_cast<long long>(len),
      admission.suppressed_before == 0
          ? std::string()
          : fmt::format(" ({} more times since the last such line)", admission.suppressed_before));
}

// Writes zeros over [0, len) of `fd` and makes them durable; 0 or an errno.
int write_zeros(int fd, off_t len, int flags) {
  alignas(4096) static char zeros[1 << 20];  // never written: zero pages
  off_t at = 0;
  while (at < len) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<off_t>(len - at, sizeof zeros));
    const ssize_t w = ::pwrite(fd, zeros, chunk, at);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    at += w;
  }
  if ((flags & (O_DSYNC | O_SYNC)) == 0 && ::fdatasync(fd) != 0) return errno;
  return 0;
}

}  // namespace

ZeroFilledSegments::ZeroFilledSegments(const std::string& directory) : directory_(absolute_directory(directory)) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  ++r.directories[directory_];
  ++r.count;
}

ZeroFilledSegments::~ZeroFilledSegments() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  if (auto it = r.directories.find(directory_); it != r.directories.end() && --it->second == 0) {
    r.directories.erase(it);
  }
  --r.count;
}

unsigned long ZeroFilledSegments::files_filled() {
  return registry().filled.load();
}

unsigned long ZeroFilledSegments::no_space() {
  return registry().no_space.load();
}

bool ZeroFilledSegments::interposed() {
  return ::dlsym(RTLD_DEFAULT, "posix_fallocate") == reinterpret_cast<void*>(&::posix_fallocate);
}

}  // namespace netsem::raft

// The executable's posix_fallocate, found by libraft.so before the C
// library's (segment_fill.h). It is the C library's for every call but the
// first allocation of an empty file in a registered directory.
extern "C" int posix_fallocate(int fd, off_t offset, off_t len) {
  using Fallocate = int (*)(int, off_t, off_t);
  static const auto real = reinterpret_cast<Fallocate>(::dlsym(RTLD_NEXT, "posix_fallocate"));
  if (real == nullptr) return ENOSYS;
  netsem::raft::Registry& r = netsem::raft::registry();
  struct stat st {};
  const int flags = r.count.load() > 0 ? ::fcntl(fd, F_GETFL) : -1;
  struct statfs fs {};
  constexpr long kTmpfsMagic = 0x01021994;
  const bool fill = flags != -1 && (flags & O_DIRECT) == 0 && offset == 0 && len > 0 && ::fstat(fd, &st) == 0 &&
                    S_ISREG(st.st_mode) && st.st_size == 0 && ::fstatfs(fd, &fs) == 0 &&
                    static_cast<long>(fs.f_type) != kTmpfsMagic && netsem::raft::in_registered_directory(fd);
  const int rv = real(fd, offset, len);
  if (rv == ENOSPC && r.count.load() > 0) netsem::raft::report_no_space(fd, len);
  if (rv != 0 || !fill) return rv;
  if (const int written = netsem::raft::write_zeros(fd, len, flags); written != 0) return written;
  ++r.filled;
  return 0;
}
