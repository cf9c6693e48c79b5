// lock_exclusive's bounded wait and lock_holder's reading of /proc/locks
// (dir_lock.h).
#include "common/dir_lock.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string_view>
#include <thread>

namespace netsem {

int lock_exclusive(int fd, std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EWOULDBLOCK || std::chrono::steady_clock::now() >= deadline) return err;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

long lock_holder(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return 0;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> locks(std::fopen("/proc/locks", "re"), &std::fclose);
  if (!locks) return 0;
  char line[256];
  while (std::fgets(line, sizeof line, locks.get()) != nullptr) {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
    char kind[16] = {};
    long pid = 0;
    unsigned major_id = 0;
    unsigned minor_id = 0;
    unsigned long inode = 0;
    if (std::sscanf(line, "%*s %15s %*s %*s %ld %x:%x:%lu", kind, &pid, &major_id, &minor_id, &inode) != 5) continue;
    if (std::string_view(kind) == "FLOCK" && inode == st.st_ino && major_id == major(st.st_dev) &&
        minor_id == minor(st.st_dev)) {
      return pid;
    }
  }
  return 0;
}

}  // namespace netsem
