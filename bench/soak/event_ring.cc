// WorkerChannel and the shared mapping of SharedControl (event_ring.h).
#include "event_ring.h"

#include <sys/mman.h>
#include <unistd.h>

#include <new>

namespace netsem::soak {

void WorkerChannel::push(const Record& record) {
  const std::uint64_t head = head_.load(std::memory_order_relaxed);
  while (head - tail_.load(std::memory_order_acquire) >= kCapacity) ::usleep(1000);
  records_[head % kCapacity] = record;
  head_.store(head + 1, std::memory_order_release);
}

void WorkerChannel::reset() {
  head_.store(0, std::memory_order_relaxed);
  tail_.store(0, std::memory_order_relaxed);
  idle_epoch.store(0, std::memory_order_relaxed);
}

SharedControlMapping::SharedControlMapping() {
  void* memory = ::mmap(nullptr, sizeof(SharedControl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory != MAP_FAILED) control_ = new (memory) SharedControl();
}

SharedControlMapping::~SharedControlMapping() {
  if (control_ == nullptr) return;
  control_->~SharedControl();
  ::munmap(control_, sizeof(SharedControl));
}

}  // namespace netsem::soak
