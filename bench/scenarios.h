// The scenarios of netsem-bench, one driver per family, each running its
// own connections on one EventLoop for a bounded time and returning what it
// measured:
//  - cycle_scenario.cc: cycle1, contended, spread and pipelined (clients
//    acquiring and releasing over long-lived connections);
//  - sessions_scenario.cc: many idle sessions holding a permit each;
//  - names_scenario.cc: many created semaphores;
//  - ace_scenario.cc: ACE's protocol, one connection per acquire.
// The help text in bench_options.cc says what each one does and counts.
//
// Thread safety: each call owns the calling thread for its run.
#pragma once

#include <sys/types.h>

#include <vector>

#include "bench_options.h"
#include "measurement.h"

namespace netsem::bench {

struct RunContext {
  const Options& options;
  Endpoint endpoint;
  pid_t server_pid = 0;                 // 0: unknown (no CPU or RSS figures)
  std::vector<pid_t> more_server_pids;  // CPU time added to server_pid's (a cluster's other servers)
  // Where the cycle scenarios' load connects: `endpoint`, or the TLS port
  // (--tls-port) while setup and checks stay on `endpoint`.
  Endpoint load_endpoint;
};

Measurement run_cycles(const RunContext& context);
Measurement run_sessions(const RunContext& context);
Measurement run_names(const RunContext& context);
Measurement run_ace(const RunContext& context);

// The name client `index` of a scenario uses: <prefix>.<scenario>.<index>.
std::string client_name(const Options& options, std::uint64_t index);

// Polls `loop` until `deadline` or until `done()` holds.
void poll_until(EventLoop& loop, Clock::time_point deadline, const std::function<bool()>& done);

// Runs the warm-up, then the measured window, on `loop`: `on_measure`
// is called as the window opens (to reset counters), `done()` ends the run
// early (every connection failed), and so does `m.ops` reaching --ops.
void run_warmup_and_window(EventLoop& loop, const RunContext& context, Measurement& m,
                           const std::function<void()>& on_measure, const std::function<bool()>& done);

}  // namespace netsem::bench
