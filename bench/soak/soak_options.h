// netsem-soak's command line: every option with its default, parsed by
// CLI11 (which also writes --help), and the exit codes of the program.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>

namespace netsem::soak {

inline constexpr int kExitPass = 0;
inline constexpr int kExitFail = 1;       // a violation, too little work, or interrupted
inline constexpr int kExitBadUsage = 2;   // a bad command line
inline constexpr int kExitCannotRun = 3;  // netsemd would not start, no temp directory, ...

struct SoakOptions {
  std::filesystem::path netsemd;  // default: the netsemd of the same build tree
  double seconds = 60;
  std::uint64_t seed = 0;  // 0: from the clock (printed, so a run can be repeated)
  int workers = 12;
  int library_workers = -1;  // -1: half of them
  std::uint16_t port = 0;    // 0: a free port below the ephemeral range
  int hold_max_ms = 20;
  std::pair<double, double> kill_every{1, 3};        // seconds between worker SIGKILLs
  std::pair<double, double> restart_every{3, 8};     // seconds between server restarts
  std::pair<double, double> unwritable_every{4, 9};  // seconds between unwritable-journal phases
  double unwritable_for = 0.5;                       // seconds each phase lasts; 0: none
  double drop_chance = 0.02;                         // per worker cycle
  int lease_workers = 2;                             // extra workers on kLeaseName (lease_worker.cc)
  std::int64_t session_timeout_ms = 2000;            // netsemd's; 0: none (and no frozen networks)
  double freeze_chance = 0.2;                        // per lease-worker cycle, while it holds
  double check_every = 5;                            // seconds between quiescent checks; 0: only at the end
  double free_within = 5;                            // seconds for permits to come back at a check
  std::string fsync = "everysec";
  bool keep_dir = false;
  bool understate_limits = false;  // testing the checker: it must then report violations
  bool verbose = false;
};

// Parses the command line into `options`. Returns an exit code when the
// program should stop at once (--help: kExitPass; an error: kExitBadUsage,
// after printing why), nullopt to run.
std::optional<int> parse_soak_options(int argc, char** argv, SoakOptions& options);

}  // namespace netsem::soak
