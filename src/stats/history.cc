// The history ring (history.h).
#include "stats/history.h"

namespace netsem::stats {

HistorySample sample_of(std::int64_t at_ms, const Snapshot& snapshot) {
  HistorySample sample;
  sample.at_ms = at_ms;
  sample.grants = snapshot.table.grants;
  sample.timeouts = snapshot.table.timeouts;
  sample.cancellations = snapshot.table.cancellations;
  sample.requests = snapshot.server.requests;
  sample.connections = snapshot.server.connections_total;
  sample.waiting = snapshot.gauges.waiters;
  sample.held = snapshot.gauges.held;
  sample.sessions = snapshot.gauges.sessions;
  sample.semaphores = snapshot.gauges.semaphores;
  return sample;
}

bool History::record(std::int64_t at_ms, const Snapshot& snapshot) {
  const HistorySample sample = sample_of(at_ms, snapshot);
  std::lock_guard lock(mutex_);
  if (size_ > 0) {
    const HistorySample& last = ring_[(next_ + kCapacity - 1) % kCapacity];
    if (at_ms < last.at_ms + kInterval.count()) return false;
  }
  ring_[next_] = sample;
  next_ = (next_ + 1) % kCapacity;
  if (size_ < kCapacity) ++size_;
  return true;
}

std::vector<HistorySample> History::samples() const {
  std::lock_guard lock(mutex_);
  std::vector<HistorySample> out;
  out.reserve(size_);
  const std::size_t first = (next_ + kCapacity - size_) % kCapacity;
  for (std::size_t i = 0; i < size_; ++i) out.push_back(ring_[(first + i) % kCapacity]);
  return out;
}

}  // namespace netsem::stats
