// The measured window of a run (see measurement.h).
#include "measurement.h"

#include "proc_stats.h"

namespace netsem::bench {

std::optional<CpuTimes> MeasureWindow::servers_cpu() const {
  if (server_pid_ <= 0) return std::nullopt;
  auto sum = process_cpu(server_pid_);
  for (const pid_t pid : more_pids_) {
    const auto more = process_cpu(pid);
    if (!sum || !more) return std::nullopt;
    sum->user_us += more->user_us;
    sum->system_us += more->system_us;
  }
  return sum;
}

void MeasureWindow::start() {
  started_ = Clock::now();
  server_cpu_ = servers_cpu();
  client_cpu_us_ = self_cpu_us();
}

void MeasureWindow::finish(Measurement& m) const {
  m.seconds = std::chrono::duration<double>(Clock::now() - started_).count();
  m.client_cpu_us = self_cpu_us() - client_cpu_us_;
  if (server_cpu_) {
    if (const auto now = servers_cpu()) {
      m.server_cpu_us = now->total_us() - server_cpu_->total_us();
      m.server_system_cpu_us = now->system_us - server_cpu_->system_us;
    }
  }
}

}  // namespace netsem::bench
