// Driver (driver.h), part three: quiescent points. The driver asks every
// worker to stand idle (holding and waiting for nothing), then checks over
// GET and STATS that every permit of every worker name is free within
// --free-within, and runs the hold checker over the events since the last
// point: at a quiescent point every client interval has ended, so the
// events can be checked in stretches and then forgotten, which keeps an
// hour's run in bounded memory. finish() ends the run the same way, then
// kills every worker and checks once more.
#include <fmt/format.h>
#include <unistd.h>

#include "driver.h"
#include "protocol/requests.h"
#include "soak_names.h"

namespace netsem::soak {

namespace {

constexpr Nanos kMs = 1'000'000;
constexpr Nanos kSecond = 1000 * kMs;
// A worker finishes its cycle (a wait of at most 300 ms, a hold of a few ms,
// or a Client::create of at most a second) well within this.
constexpr Nanos kPauseLimit = 3 * kSecond;

}  // namespace

bool Driver::pause_workers() {
  const std::uint32_t epoch = ++pause_epoch_;
  (*shared_)->pause_epoch.store(epoch, std::memory_order_release);
  for (int round = 0; round < 3; ++round) {
    const Nanos deadline = now() + kPauseLimit;
    for (;;) {
      reap_workers();
      std::vector<std::size_t> busy;
      for (std::size_t slot = 0; slot < slots_.size(); ++slot) {
        const bool idle = (*shared_)->channels[slot].idle_epoch.load(std::memory_order_acquire) == epoch;
        if (slots_[slot].pid > 0 && !idle) busy.push_back(slot);
      }
      if (busy.empty()) return true;
      if (now() >= deadline) {
        // A worker that cannot finish its cycle is stuck in something the
        // soak does not know about; replace it (the kill is recorded, so
        // its holds still end) and wait for the fresh one.
        for (const std::size_t slot : busy) {
          std::printf("  %7.1fs  worker %u did not pause within %llds: killed\n", elapsed(), slots_[slot].incarnation,
                      static_cast<long long>(kPauseLimit / kSecond));
          kill_worker(slot);
          ++counters_.worker_kills;
        }
        break;
      }
      idle_until(now() + 2 * kMs);
    }
  }
  return false;
}

void Driver::resume_workers() {
  (*shared_)->pause_epoch.store(0, std::memory_order_release);
}

void Driver::await_permits_back() {
  const Nanos deadline = now() + static_cast<Nanos>(options_.free_within * 1e9);
  const auto& names = worker_names();
  for (const WorkerName& name : names) {
    const std::string text(name.name);
    std::optional<Violation> problem;
    for (;;) {
      const auto reading = get(text);
      problem = reading ? check_permits_back(text, name.limit, name.defined, *reading, now())
                        : Violation{Violation::Kind::kPermitNotBack, now(), text, "GET got no answer"};
      if (!problem || now() >= deadline) break;
      idle_until(now() + 20 * kMs);
    }
    if (problem) {
      problem->what += fmt::format(" ({} s after the workers stood idle or died)", options_.free_within);
      violation(std::move(*problem));
    }
  }
  // Nothing held or queued anywhere, including names the soak does not know.
  std::string last = "no answer";
  for (;;) {
    const auto stats = request([](std::string& line, std::string_view tag) { protocol::encode_stats(line, tag); });
    if (stats) {
      last = *stats;
      if (json_number(*stats, "held") == 0 && json_number(*stats, "waiters") == 0) return;
    }
    if (now() >= deadline) break;
    idle_until(now() + 20 * kMs);
  }
  violation({Violation::Kind::kPermitNotBack, now(), "*", "STATS still shows permits held or queued: " + last});
}

void Driver::check_hold_segment() {
  drain_events();
  HoldCheckInput input;
  for (const WorkerName& name : worker_names()) input.names.emplace_back(name.name);
  input.limits = checker_limits_;
  input.events = std::move(worker_events_);
  input.events.insert(input.events.end(), driver_events_.begin(), driver_events_.end());
  worker_events_.clear();
  input.session_timeout = options_.session_timeout_ms * kMs;
  input.without_lease = raw_workers_;
  HoldCheckResult result = check_holds(input, &fence_carry_);
  // The lease workers' holds, with no server stop to cut them (checker.h, 1b).
  HoldCheckInput lease;
  lease.names = input.names;
  lease.limits = checker_limits_;
  lease.events = std::move(lease_events_);
  lease.events.insert(lease.events.end(), driver_events_.begin(), driver_events_.end());
  lease_events_.clear();
  HoldCheckResult host = check_host_holds(lease);
  counters_.lease_holds_checked += host.checked;
  counters_.skipped_unterminated += host.skipped_unterminated;
  for (std::size_t i = 0; i < host.peak.size(); ++i) result.peak[i] = std::max(result.peak[i], host.peak[i]);
  for (Violation& v : host.violations) violation(std::move(v));
  counters_.holds_checked += result.checked;
  counters_.cut_by_server_stop += result.cut_by_server_stop;
  counters_.skipped_unexplained_loss += result.skipped_unexplained_loss;
  counters_.skipped_unterminated += result.skipped_unterminated;
  counters_.skipped_unstopped_instance += result.skipped_unstopped_instance;
  for (std::size_t i = 0; i < result.peak.size(); ++i) {
    counters_.peak[i] = std::max(counters_.peak[i], result.peak[i]);
  }
  for (Violation& v : result.violations) violation(std::move(v));
}

void Driver::quiescent_check() {
  if (server_down_) return;
  const bool paused = pause_workers();
  if (paused) {
    await_permits_back();
    check_hold_segment();
    ++counters_.quiescent_checks;
  }
  resume_workers();
}

void Driver::finish() {
  if (!server_down_ && pause_workers()) {
    await_permits_back();  // idle but connected
    ++counters_.quiescent_checks;
  }
  // Every worker killed, holding nothing or not: each session ends with its
  // process, and every permit must come back once more.
  for (std::size_t slot = 0; slot < slots_.size(); ++slot) kill_worker(slot, /*respawn=*/false);
  if (!server_down_) {
    await_permits_back();
    check_created();
    ++counters_.quiescent_checks;
  }
  check_hold_segment();
  if (!server_down_) stop_server_at_end();
}

}  // namespace netsem::soak
