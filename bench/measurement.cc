// The measured window of a run (see measurement.h).
#include "measurement.h"

#include "proc_stats.h"

namespace netsem::bench {

void MeasureWindow::start() {
  started_ = Clock::now();
  server_cpu_us_ = server_pid_ > 0 ? process_cpu_us(server_pid_) : std::nullopt;
  client_cpu_us_ = self_cpu_us();
}

void MeasureWindow::finish(Measurement& m) const {
  m.seconds = std::chrono::duration<double>(Clock::now() - started_).count();
  m.client_cpu_us = self_cpu_us() - client_cpu_us_;
  if (server_cpu_us_) {
    if (const auto now = process_cpu_us(server_pid_)) m.server_cpu_us = *now - *server_cpu_us_;
  }
}

}  // namespace netsem::bench
