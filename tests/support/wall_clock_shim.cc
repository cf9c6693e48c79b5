// wall_clock_shim: an LD_PRELOAD library for tests that steps one process's
// wall clock. It adds an offset in milliseconds, read at each call from the
// file named by NETSEM_TEST_WALL_OFFSET_FILE (a decimal number at its start,
// rewritten by the test), to CLOCK_REALTIME and what reads it (gettimeofday,
// time): what `date -s`, an NTP step or a restored virtual machine does to a
// process. CLOCK_MONOTONIC is untouched.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

namespace {

long long offset_ms() {
  const char* path = getenv("NETSEM_TEST_WALL_OFFSET_FILE");
  if (path == nullptr) return 0;
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[32];
  const ssize_t n = pread(fd, text, sizeof text - 1, 0);
  close(fd);
  if (n <= 0) return 0;
  text[n] = '\0';
  return std::strtoll(text, nullptr, 10);
}

}  // namespace

extern "C" {

int clock_gettime(clockid_t id, struct timespec* tp) noexcept {
  using Real = int (*)(clockid_t, struct timespec*);
  static Real real = reinterpret_cast<Real>(::dlsym(RTLD_NEXT, "clock_gettime"));
  const int rv = real(id, tp);
  if (rv == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
    const long long ns = (long long)tp->tv_sec * 1000000000LL + tp->tv_nsec + offset_ms() * 1000000LL;
    tp->tv_sec = static_cast<time_t>(ns / 1000000000LL);
    tp->tv_nsec = static_cast<long>(ns % 1000000000LL);
  }
  return rv;
}

int gettimeofday(struct timeval* tv, void* tz) noexcept {
  struct timespec ts;
  (void)tz;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (tv != nullptr) {
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
  }
  return 0;
}

time_t time(time_t* t) noexcept {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (t != nullptr) *t = ts.tv_sec;
  return ts.tv_sec;
}

}  // extern "C"
