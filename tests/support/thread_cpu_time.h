// Test support: the CPU time the calling thread has used. A bound on it,
// unlike a bound on wall time, holds on a loaded machine (other processes
// and waiting do not count), so a test can tell linear from quadratic work
// with a generous limit and no flakiness: the size is chosen so that the
// linear code takes a small fraction of the limit and the quadratic one many
// times it.
#pragma once

#include <time.h>

#include <chrono>

namespace netsem::test_support {

inline std::chrono::nanoseconds thread_cpu_time() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
}

}  // namespace netsem::test_support
