// netsem-soak's options (soak_options.h): the CLI11 table and the checks
// CLI11 cannot express (ranges given as two numbers).
#include "soak_options.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "event_ring.h"

namespace netsem::soak {

namespace {

// The netsemd built next to this program: <build>/bench/soak/netsem-soak
// and <build>/src/server/netsemd.
std::filesystem::path sibling_netsemd() {
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return {};
  return self.parent_path().parent_path().parent_path() / "src" / "server" / "netsemd";
}

std::optional<std::string> check_range(const char* option, const std::pair<double, double>& range) {
  if (range.first > 0 && range.first <= range.second) return std::nullopt;
  return std::string(option) + ": MIN and MAX must satisfy 0 < MIN <= MAX";
}

}  // namespace

std::optional<int> parse_soak_options(int argc, char** argv, SoakOptions& options) {
  CLI::App app{
      "netsem-soak: many clients acquire, hold and release netsem semaphores while clients are killed, "
      "connections dropped and netsemd restarted; an independent checker proves that no limit was exceeded, "
      "that permits came back and that created semaphores kept their values."};
  app.option_defaults()->always_capture_default();
  app.add_option("--netsemd", options.netsemd, "the netsemd binary to run (default: the one of this build tree)");
  app.add_option("--seconds", options.seconds, "how long to run, faults included")->check(CLI::Range(1.0, 1e7));
  app.add_option("--seed", options.seed, "seed of every random choice (default: from the clock; always printed)");
  app.add_option("--workers", options.workers, "worker processes")
      ->check(CLI::Range(1, static_cast<int>(SharedControl::kMaxWorkers)));
  app.add_option("--library-workers", options.library_workers,
                 "how many of the workers use libnetsem; the others speak the protocol on raw sockets "
                 "(-1: half)")
      ->check(CLI::Range(0, static_cast<int>(SharedControl::kMaxWorkers)));
  app.add_option("--port", options.port, "port for netsemd on 127.0.0.1 (default: a free one)");
  app.add_option("--hold-max-ms", options.hold_max_ms, "a grant is held for 0..this many milliseconds")
      ->check(CLI::Range(0, 10'000));
  app.add_option("--kill-every", options.kill_every, "SIGKILL a random worker every MIN..MAX seconds (default: 1 3)")
      ->type_name("MIN MAX");
  app.add_option("--restart-every", options.restart_every,
                 "restart netsemd every MIN..MAX seconds, by SIGTERM and SIGKILL in turn, then either at random "
                 "(default: 3 8)")
      ->type_name("MIN MAX");
  app.add_option("--unwritable-every", options.unwritable_every,
                 "make netsemd's journal unwritable (RLIMIT_FSIZE at its size) every MIN..MAX seconds (default: 4 9)")
      ->type_name("MIN MAX");
  app.add_option("--unwritable-for", options.unwritable_for, "seconds each unwritable-journal phase lasts (0: none)")
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--drop-chance", options.drop_chance, "chance per worker cycle that the worker drops its connection")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--lease-workers", options.lease_workers,
                 "extra libnetsem workers on soak.lease through a proxy each, with fallback local: their network "
                 "freezes while they hold, and they work on through a grace after a server kill")
      ->check(CLI::Range(0, 8));
  app.add_option("--session-timeout-ms", options.session_timeout_ms,
                 "netsemd's session_timeout_ms (0: none, and the lease workers' network never freezes)")
      ->check(CLI::Range(0, 600'000));
  app.add_option("--freeze-chance", options.freeze_chance,
                 "chance per lease-worker cycle that its network freezes while it holds")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--check-every", options.check_every,
                 "pause the workers and check that every permit is back every this many seconds (0: only at the end)")
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--free-within", options.free_within, "seconds a permit may take to come back at a check")
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--fsync", options.fsync, "netsemd's fsync policy")
      ->check(CLI::IsMember({"always", "everysec", "no"}));
  app.add_flag("--keep-dir", options.keep_dir,
               "keep the temporary directory (config, data, netsemd's log); it is always kept after a violation");
  app.add_flag("--understate-limits", options.understate_limits,
               "for testing the checker: it takes every limit above 1 as one less than netsemd's, so the run must "
               "report violations and fail");
  app.add_flag("-v,--verbose", options.verbose, "print every fault as it happens");
  app.footer(
      "Exit codes: 0 no violation and enough work done; 1 a violation, too little work (no grant, or no restart "
      "or worker kill in a run long enough for one), or interrupted; 2 bad command line; 3 could not run "
      "(netsemd would not start, ...).");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? kExitPass : kExitBadUsage;
  }
  for (const auto& problem :
       {check_range("--kill-every", options.kill_every), check_range("--restart-every", options.restart_every),
        check_range("--unwritable-every", options.unwritable_every)}) {
    if (problem) {
      std::fprintf(stderr, "netsem-soak: %s\n", problem->c_str());
      return kExitBadUsage;
    }
  }
  if (options.workers + options.lease_workers > static_cast<int>(SharedControl::kMaxWorkers)) {
    std::fprintf(stderr, "netsem-soak: --workers plus --lease-workers cannot exceed %zu\n", SharedControl::kMaxWorkers);
    return kExitBadUsage;
  }
  if (options.library_workers > options.workers) {
    std::fprintf(stderr, "netsem-soak: --library-workers cannot exceed --workers\n");
    return kExitBadUsage;
  }
  if (options.library_workers < 0) options.library_workers = options.workers / 2;
  if (options.netsemd.empty()) options.netsemd = sibling_netsemd();
  if (::access(options.netsemd.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "netsem-soak: no netsemd at '%s'; name it with --netsemd\n", options.netsemd.c_str());
    return kExitBadUsage;
  }
  return std::nullopt;
}

}  // namespace netsem::soak
