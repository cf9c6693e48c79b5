// The worker-to-driver channel of netsem-soak: one single-producer,
// single-consumer ring of fixed-size records per worker slot, in memory
// mapped MAP_SHARED | MAP_ANONYMOUS by the driver before it forks, and the
// control words by which the driver pauses every worker at once.
//
// A worker writes a record, then publishes it by advancing `head` with a
// release store; the driver reads up to `head` only. So a worker killed by
// SIGKILL at any instant leaves no torn record behind, and everything it
// published survives it: the driver drains the slot of a dead worker before
// handing the slot to a fresh one. Times are CLOCK_MONOTONIC nanoseconds, one
// clock for every process of the host, so the driver can order events of
// different processes.
//
// Thread safety: push() by the one worker process of a slot, drain() and
// reset() by the driver only; the atomics are lock-free, hence shared-memory
// safe across processes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>

namespace netsem::soak {

// CLOCK_MONOTONIC in nanoseconds: comparable across the processes of a host.
inline std::int64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// What a worker reports. The checker's EventType (checker.h) has the same
// meanings; the driver converts.
enum class RecordType : std::uint8_t {
  kConnect = 1,  // about to connect: connection is the new connection's number
  kGrant,        // a grant's OK arrived (time taken after reading it)
  kRelease,      // about to send RELEASE (time taken before sending)
  kDrop,         // about to close its own connection (time taken before closing)
  kLost,         // noticed that the server ended its connection
  kRefused,      // an answer the soak never expects (ERR, NOT_HELD on release, ...): an anomaly
};

struct Record {
  std::int64_t time_ns = 0;
  std::int64_t request_ns = 0;  // kGrant: taken before the ACQUIRE was sent
  std::uint64_t fence = 0;      // kGrant
  std::uint32_t connection = 0;
  std::int32_t count = 0;
  RecordType type = RecordType::kConnect;
  std::uint8_t name = 0;  // index into soak_names()
};

class WorkerChannel {
 public:
  static constexpr std::uint64_t kCapacity = 1 << 14;

  // Worker side: appends `record`, sleeping while the ring is full (the
  // driver drains every few milliseconds; a full ring only slows the worker).
  void push(const Record& record);
  // Driver side: calls visit(record) for every record published since the
  // last drain, in order; returns how many.
  template <typename Visit>
  std::size_t drain(Visit&& visit) {
    const std::uint64_t head = head_.load(std::memory_order_acquire);
    std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    const std::size_t drained = static_cast<std::size_t>(head - tail);
    for (; tail != head; ++tail) visit(records_[tail % kCapacity]);
    tail_.store(tail, std::memory_order_release);
    return drained;
  }
  // Driver side, while no process uses the slot.
  void reset();

  // The pause epoch (SharedControl) in which this slot's worker last stood
  // idle, holding and waiting for nothing. Written by the worker.
  std::atomic<std::uint32_t> idle_epoch{0};

 private:
  std::atomic<std::uint64_t> head_{0};  // written by the worker
  std::atomic<std::uint64_t> tail_{0};  // written by the driver
  Record records_[kCapacity];
};

struct SharedControl {
  static constexpr std::size_t kMaxWorkers = 64;
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared-memory atomics must be lock-free");

  // Nonzero while the driver wants every worker idle; the value is the
  // epoch each worker acknowledges in its channel's idle_epoch.
  std::atomic<std::uint32_t> pause_epoch{0};
  WorkerChannel channels[kMaxWorkers];
};

// A SharedControl in shared anonymous memory, inherited by forked children;
// unmapped when destroyed (in the driver; children never return).
class SharedControlMapping {
 public:
  SharedControlMapping();
  ~SharedControlMapping();
  SharedControlMapping(const SharedControlMapping&) = delete;
  SharedControlMapping& operator=(const SharedControlMapping&) = delete;

  bool valid() const { return control_ != nullptr; }
  SharedControl& operator*() const { return *control_; }
  SharedControl* operator->() const { return control_; }

 private:
  SharedControl* control_ = nullptr;
};

}  // namespace netsem::soak
