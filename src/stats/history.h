// History: the server's figures over the last minutes, for the web page's
// chart (GET /api/v1/history). The event loop offers it every published
// snapshot (about once a second); it keeps one sample per kInterval, the last
// kCapacity of them (15 minutes), in a fixed ring: no allocation after
// construction, a few dozen bytes copied per sample.
//
// A sample holds counters as they were (cumulative: a reader takes
// differences) and gauges as they were then; times are wall-clock
// milliseconds since the Unix epoch, given by the caller (no clock is read
// here).
//
// Thread safety: record() and samples() may be called from any thread (the
// loop records, HTTP threads read); each holds an internal mutex only for a
// copy.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "stats/stats.h"

namespace netsem::stats {

struct HistorySample {
  std::int64_t at_ms = 0;  // wall clock, ms since the Unix epoch
  // Counters (cumulative since the server started).
  std::uint64_t grants = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t cancellations = 0;
  std::uint64_t requests = 0;
  std::uint64_t connections = 0;
  // Gauges (the state at at_ms).
  std::uint64_t waiting = 0;
  std::uint64_t held = 0;
  std::uint64_t sessions = 0;
  std::uint64_t semaphores = 0;
};

// The sample of `snapshot` taken at `at_ms`.
HistorySample sample_of(std::int64_t at_ms, const Snapshot& snapshot);

class History {
 public:
  static constexpr std::chrono::milliseconds kInterval{5000};
  static constexpr std::size_t kCapacity = 180;  // 15 minutes at kInterval

  // Keeps a sample of `snapshot` when none was kept yet or the last kept one
  // is at least kInterval older than `at_ms`; returns whether it did. The
  // oldest sample goes once kCapacity are kept. A clock that steps back
  // keeps nothing until it passes the last sample again.
  bool record(std::int64_t at_ms, const Snapshot& snapshot);
  // The kept samples, oldest first.
  std::vector<HistorySample> samples() const;

 private:
  mutable std::mutex mutex_;
  std::array<HistorySample, kCapacity> ring_{};  // guarded by mutex_
  std::size_t next_ = 0;                         // guarded by mutex_: where the next sample goes
  std::size_t size_ = 0;                         // guarded by mutex_
};

}  // namespace netsem::stats
