// netsem-bench's entry point: options, the loopback check, the floor server
// (served, or started for the run), the scenario, the report, the exit code
// (0: ops done and no error; 1: errors or nothing done; 2: bad command line).
// The parts live next to this file: bench_options (flags and help),
// scenarios.h (the drivers), wire (targets), floor_server, report.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "bench_options.h"
#include "floor_server.h"
#include "proc_stats.h"
#include "report.h"
#include "scenarios.h"

namespace {

using namespace netsem::bench;

constexpr int kExitBadRun = 1;
constexpr int kExitUsage = 2;

int usage_error(const std::string& message) {
  std::fprintf(stderr, "netsem-bench: %s (see --help)\n", message.c_str());
  return kExitUsage;
}

Measurement run(const RunContext& context) {
  switch (context.options.scenario) {
    case Scenario::kCycle1:
    case Scenario::kContended:
    case Scenario::kDurable:
    case Scenario::kSpread:
    case Scenario::kPipelined:
      return run_cycles(context);
    case Scenario::kSessions:
      return run_sessions(context);
    case Scenario::kNames:
      return run_names(context);
    case Scenario::kAce:
      return run_ace(context);
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (const auto error = parse_options(argc, argv, options); !error.empty()) return usage_error(error);
  if (options.help) {
    std::fputs(help_text().c_str(), stdout);
    return 0;
  }
  Endpoint endpoint;
  if (const auto error = loopback_endpoint(options.host, options.port, endpoint); !error.empty()) {
    return usage_error(error);
  }

  if (options.serve_floor) {
    std::string error;
    serve_floor(
        endpoint,
        [&](std::uint16_t port) {
          std::printf("floor listening on %s port %u\n", options.host.c_str(), static_cast<unsigned>(port));
          std::fflush(stdout);
        },
        error);
    std::fprintf(stderr, "netsem-bench: %s\n", error.c_str());
    return kExitBadRun;
  }

  for (const pid_t pid : options.more_server_pids) {
    if (options.server_pid > 0 && !process_cpu(pid)) {
      return usage_error("--server-pid " + std::to_string(pid) + ": cannot read /proc/" + std::to_string(pid) +
                         "/stat");
    }
  }
  if (options.server_pid > 0 && !process_cpu(options.server_pid)) {
    return usage_error("--server-pid " + std::to_string(options.server_pid) + ": cannot read /proc/" +
                       std::to_string(options.server_pid) + "/stat");
  }
  raise_fd_limit();
  RunContext context{options, endpoint, options.server_pid, options.more_server_pids, endpoint};
  if (options.tls_port != 0) {
    std::string error;
    if (!Connection::use_tls(options.tls_ca, error)) return usage_error(error);
    if (const auto refused = loopback_endpoint(options.host, options.tls_port, context.load_endpoint);
        !refused.empty()) {
      return usage_error(refused);
    }
    std::signal(SIGPIPE, SIG_IGN);  // OpenSSL writes with write(): a closed connection must not kill the bench
  }
  std::unique_ptr<FloorChild> floor;
  if (options.target == Target::kFloor && !options.port_given) {
    std::string error;
    floor = std::make_unique<FloorChild>(endpoint, error);
    if (floor->pid() < 0) {
      std::fprintf(stderr, "netsem-bench: floor server: %s\n", error.c_str());
      return kExitBadRun;
    }
    options.port = floor->port();
    (void)loopback_endpoint(options.host, options.port, context.endpoint);
    context.load_endpoint = context.endpoint;
    context.server_pid = floor->pid();
    context.more_server_pids.clear();
  }

  const Measurement m = run(context);
  floor.reset();
  const std::string report = options.json ? report_json(options, m) : report_text(options, m);
  std::fputs(report.c_str(), stdout);
  return m.errors == 0 && m.ops > 0 ? 0 : kExitBadRun;
}
