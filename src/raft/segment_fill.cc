// ZeroFilledSegments (segment_fill.h): the registry of Raft directories and
// the posix_fallocate that netsemd defines in place of the C library's for
// libraft.so; new files in a registered directory are allocated, then
// written with zeros.
#include "raft/segment_fill.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

namespace netsem::raft {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, int> directories;  // directory -> registrations
  std::atomic<int> count{0};               // registrations in all: 0 = the C library's call only
  std::atomic<unsigned long> filled{0};
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

// Whether `fd` is a file directly in a registered directory.
bool in_registered_directory(int fd) {
  std::array<char, 4096> target{};
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), target.data(), target.size() - 1);
  if (n <= 0) return false;
  const std::string path(target.data(), static_cast<std::size_t>(n));
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return false;
  const std::string directory = slash == 0 ? "/" : path.substr(0, slash);
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.directories.contains(directory);
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
  if (const int rv = real(fd, offset, len); rv != 0 || !fill) return rv;
  if (const int rv = netsem::raft::write_zeros(fd, len, flags); rv != 0) return rv;
  ++r.filled;
  return 0;
}
