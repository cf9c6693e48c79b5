// WorkerLoop (worker.h): the random choices both kinds of worker make, the
// pause handshake with the driver, and the entry point of a forked worker.
#include "worker.h"

#include <unistd.h>

#include <algorithm>
#include <vector>

#include "soak_names.h"

namespace netsem::soak {

namespace {

std::discrete_distribution<int> name_weights() {
  std::vector<int> weights;
  for (const WorkerName& name : worker_names()) weights.push_back(name.weight);
  return std::discrete_distribution<int>(weights.begin(), weights.end());
}

}  // namespace

WorkerLoop::WorkerLoop(const WorkerPlan& plan, SharedControl& control)
    : plan_(plan),
      control_(control),
      channel_(control.channels[plan.slot]),
      random_(plan.seed),
      names_(name_weights()) {}

WorkerLoop::Pick WorkerLoop::pick(bool allow_unbounded) {
  Pick pick;
  pick.name = static_cast<std::uint8_t>(names_(random_));
  const int max_count = worker_names()[pick.name].max_count;
  pick.count = std::uniform_int_distribution<int>(1, max_count)(random_);
  // A fifth only try, a fifth (raw workers) wait without a deadline, the
  // rest wait up to 300 ms: every way into the queue and out of it.
  const int how = std::uniform_int_distribution<int>(0, 9)(random_);
  if (how < 2) {
    pick.timeout_ms = 0;
  } else if (how < 4 && allow_unbounded) {
    pick.timeout_ms = -1;
  } else {
    pick.timeout_ms = std::uniform_int_distribution<std::int64_t>(1, 300)(random_);
  }
  return pick;
}

std::int64_t WorkerLoop::hold_ns() {
  return uniform_ns(std::int64_t{plan_.hold_max_ms} * 1'000'000);
}

bool WorkerLoop::chance(double p) {
  return std::bernoulli_distribution(std::clamp(p, 0.0, 1.0))(random_);
}

std::int64_t WorkerLoop::uniform_ns(std::int64_t max_ns) {
  return std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(max_ns, 0))(random_);
}

bool WorkerLoop::pause_if_asked() {
  const std::uint32_t epoch = control_.pause_epoch.load(std::memory_order_acquire);
  if (epoch == 0) return false;
  channel_.idle_epoch.store(epoch, std::memory_order_release);
  ::usleep(2000);
  return true;
}

bool WorkerLoop::pause_asked() const {
  return control_.pause_epoch.load(std::memory_order_acquire) != 0;
}

void run_worker(const WorkerPlan& plan, SharedControl& control) {
  WorkerLoop loop(plan, control);
  if (plan.lease) run_lease_worker(loop);
  if (plan.library) run_library_worker(loop);
  run_raw_worker(loop);
}

}  // namespace netsem::soak
