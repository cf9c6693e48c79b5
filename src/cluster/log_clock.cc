// LogClock (log_clock.h): the steady clock, anchored to the wall clock once,
// and moved forward to the log's time when it is behind it.
#include "cluster/log_clock.h"

#include <chrono>
#include <utility>

namespace netsem::cluster {

namespace {

template <typename Clock>
std::int64_t ms_of() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

LogClock::LogClock(Source steady, Source wall) : steady_(std::move(steady)), offset_ms_(wall() - steady_()) {}

LogClock::LogClock() : LogClock(ms_of<std::chrono::steady_clock>, ms_of<std::chrono::system_clock>) {}

std::int64_t LogClock::now(std::int64_t log_time_ms) {
  const std::int64_t t = steady_() + offset_ms_;
  if (t >= log_time_ms) return t;
  offset_ms_ += log_time_ms - t;
  return log_time_ms;
}

}  // namespace netsem::cluster
