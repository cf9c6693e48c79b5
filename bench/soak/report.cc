// Driver (driver.h), part four: what the soak prints. A header with
// everything needed to repeat the run (seed, options), one progress line per
// quiescent check, and a summary of `key value` lines (the CTest wrapper
// reads them) ending with the verdict, which decides the exit code.
#include <fmt/format.h>

#include <cstdio>

#include "driver.h"
#include "soak_names.h"

namespace netsem::soak {

void Driver::print_header() const {
  std::printf(
      "netsem-soak: seed %llu, %.0f s, %d workers (%d libnetsem, %d raw), netsemd %s on 127.0.0.1:%u\n"
      "  faults: worker SIGKILL every %.1f-%.1f s, netsemd restart every %.1f-%.1f s, drop chance %.3f per cycle; "
      "check every %.1f s%s\n"
      "  directory %s\n",
      static_cast<unsigned long long>(options_.seed), options_.seconds, options_.workers, options_.library_workers,
      options_.workers - options_.library_workers, options_.netsemd.c_str(), options_.port, options_.kill_every.first,
      options_.kill_every.second, options_.restart_every.first, options_.restart_every.second, options_.drop_chance,
      options_.check_every, options_.understate_limits ? "; CHECKER LIMITS UNDERSTATED (testing the checker)" : "",
      dir_.c_str());
  std::fflush(stdout);
}

void Driver::print_progress() const {
  std::printf("  %7.1fs  grants %llu, worker kills %llu, restarts %llu, drops %llu, violations %llu\n", elapsed(),
              static_cast<unsigned long long>(counters_.grants),
              static_cast<unsigned long long>(counters_.worker_kills),
              static_cast<unsigned long long>(counters_.restarts_sigterm + counters_.restarts_sigkill),
              static_cast<unsigned long long>(counters_.drops), static_cast<unsigned long long>(counters_.violations));
  std::fflush(stdout);
}

int Driver::print_summary() const {
  const SoakCounters& c = counters_;
  const auto line = [](const char* key, std::uint64_t value, const std::string& more = {}) {
    std::printf("  %-28s %llu%s\n", key, static_cast<unsigned long long>(value), more.c_str());
  };
  std::printf("netsem-soak: summary after %.1f s (seed %llu)\n", elapsed(),
              static_cast<unsigned long long>(options_.seed));
  line("grants", c.grants);
  line("releases", c.releases);
  line("drops", c.drops, "  (connections the workers closed themselves)");
  line("connection_losses", c.losses, "  (connections the workers saw netsemd end)");
  line("worker_kills", c.worker_kills);
  line("restarts", c.restarts_sigterm + c.restarts_sigkill);
  line("restarts_sigterm", c.restarts_sigterm);
  line("restarts_sigkill", c.restarts_sigkill);
  line("failed_starts", c.failed_starts, "  (netsemd exited at start and was started again)");
  line("quiescent_checks", c.quiescent_checks);
  line("created_ops", c.created_ops);
  line("created_unknown", c.created_unknown, "  (answers lost with a stopped netsemd)");
  line("created_checks", c.created_checks, "  (GETs of created semaphores after restarts)");
  line("holds_checked", c.holds_checked);
  line("lease_holds_checked", c.lease_holds_checked, "  (lease workers: from the server or fallback, graces included)");
  line("unwritable_phases", c.unwritable_phases,
       fmt::format("  (journal unwritable; {} grants meanwhile)", c.unwritable_grants));
  line("lease_freezes", c.lease_freezes, "  (holds whose network froze: lost through the lease)");
  line("holds_cut_by_server_stop", c.cut_by_server_stop);
  line("holds_skipped", c.skipped_unexplained_loss + c.skipped_unterminated + c.skipped_unstopped_instance,
       fmt::format("  (unexplained loss {}, no end {}, crashed or unstarted instance {})", c.skipped_unexplained_loss,
                   c.skipped_unterminated, c.skipped_unstopped_instance));
  line("anomalies", c.refusals + c.worker_deaths,
       fmt::format("  (unexpected answers {}, workers that died on their own {})", c.refusals, c.worker_deaths));
  std::string peaks;
  for (std::size_t i = 0; i < worker_names().size(); ++i) {
    peaks += fmt::format("  {} {}/{}", worker_names()[i].name, c.peak[i], checker_limits_[i]);
  }
  std::printf("  %-28s%s\n", "peak_permits_held", peaks.c_str());
  std::string by_kind;
  for (std::size_t kind = 0; kind < std::size(c.violations_by_kind); ++kind) {
    if (c.violations_by_kind[kind] == 0) continue;
    by_kind += fmt::format("{}{} {}", by_kind.empty() ? "  (" : ", ", kind_name(static_cast<Violation::Kind>(kind)),
                           c.violations_by_kind[kind]);
  }
  if (!by_kind.empty()) by_kind += "; the first are described above)";
  line("violations", c.violations, by_kind);

  // Enough work: something was granted, and a run long enough for faults
  // saw them (a soak that silently stopped injecting them proves little).
  std::string verdict;
  const double seconds = options_.seconds;
  if (c.violations > 0) {
    verdict = "FAIL: violations";
  } else if (interrupted_) {
    verdict = "FAIL: interrupted";
  } else if (c.grants == 0) {
    verdict = "FAIL: no grant at all";
  } else if (seconds > options_.restart_every.second + 2 && c.restarts_sigterm + c.restarts_sigkill == 0) {
    verdict = "FAIL: no server restart happened";
  } else if (c.unwritable_phases > 0 && c.unwritable_grants == 0) {
    verdict = "FAIL: no grant while the journal was unwritable (answers froze)";
  } else if (seconds > options_.kill_every.second + 2 && c.worker_kills == 0) {
    verdict = "FAIL: no worker was killed";
  } else {
    verdict = "PASS";
  }
  std::printf("result: %s\n", verdict.c_str());
  std::fflush(stdout);
  return verdict == "PASS" ? kExitPass : kExitFail;
}

}  // namespace netsem::soak
