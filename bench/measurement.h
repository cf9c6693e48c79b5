// Measurement: what one scenario run found (ops, acquire latency, errors,
// CPU and memory of the server), and MeasureWindow, which takes the time and
// CPU readings at the start and end of the measured part of a run so every
// scenario accounts for them the same way.
//
// Thread safety: none; plain values.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "connection.h"
#include "latency_histogram.h"
#include "proc_stats.h"

namespace netsem::bench {

struct Measurement {
  std::string op;  // what one op is, for the report
  std::uint64_t ops = 0;
  double seconds = 0;  // the measured window
  LatencyHistogram latency;
  std::uint64_t queued = 0;  // acquires the server queued (QUEUED, or ACE's wait|)
  std::uint64_t errors = 0;  // refusals, unexpected replies, failed connections
  std::string first_error;
  std::optional<std::uint64_t> server_cpu_us;         // over the window; needs the server's pid
  std::optional<std::uint64_t> server_system_cpu_us;  // the kernel's part of it
  std::uint64_t client_cpu_us = 0;                    // this process, over the window
  // sessions and names: the server's RSS before and after, and what the
  // difference is spread over.
  std::optional<std::uint64_t> rss_before;
  std::optional<std::uint64_t> rss_after;
  std::string per;  // "session" or "semaphore"; empty otherwise
  std::uint64_t per_count = 0;
  std::optional<std::int64_t> limit;  // contended: the semaphore's max as found
  std::vector<std::string> notes;

  void error(std::string_view what) {
    if (errors++ == 0) first_error = what;
  }
};

class MeasureWindow {
 public:
  // `more_pids`: further server processes whose CPU time is added to
  // `server_pid`'s (a cluster's other servers).
  explicit MeasureWindow(pid_t server_pid, std::vector<pid_t> more_pids = {})
      : server_pid_(server_pid), more_pids_(std::move(more_pids)) {}

  // Starts (or restarts, after a warm-up) the window.
  void start();
  // Closes the window into `m`: seconds, server and client CPU.
  void finish(Measurement& m) const;

 private:
  // The summed CPU time of server_pid_ and more_pids_; none when one of them
  // cannot be read.
  std::optional<CpuTimes> servers_cpu() const;

  pid_t server_pid_;
  std::vector<pid_t> more_pids_;
  Clock::time_point started_{};
  std::optional<CpuTimes> server_cpu_;
  std::uint64_t client_cpu_us_ = 0;
};

}  // namespace netsem::bench
