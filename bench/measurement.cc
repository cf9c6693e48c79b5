// The measured window of a run (see measurement.h).
#include "measurement.h"

#include "proc_stats.h"

namespace netsem::bench {

void MeasureWindow::start() {
  started_ = Clock::now();
  server_cpu_ = server_pid_ > 0 ? process_cpu(server_pid_) : std::nullopt;
  client_cpu_us_ = self_cpu_us();
}

void MeasureWindow::finish(Measurement& m) const {
  m.seconds = std::chrono::duration<double>(Clock::now() - started_).count();
  m.client_cpu_us = self_cpu_us() - client_cpu_us_;
  if (server_cpu_) {
    if (const auto now = process_cpu(server_pid_)) {
      m.server_cpu_us = now->total_us() - server_cpu_->total_us();
      m.server_system_cpu_us = now->system_us - server_cpu_->system_us;
    }
  }
}

}  // namespace netsem::bench
