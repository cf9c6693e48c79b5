// Test support for the bench tools' tests: runs a built program (netsem-bench,
// netsem-soak) as a child with a deadline, collecting what it prints, and
// reads numbers out of its JSON report.
//
// Thread safety: plain functions; each call owns its child.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace netsem::testing {

struct ChildRun {
  int exit_code = -1;  // -1: killed after the deadline, or did not exit normally
  std::string out;     // stdout (and stderr too when merged)
  std::string err;
};

// Runs `path` with `args` (argv[0] is `path`), killing it with SIGKILL after
// `timeout`. With `merge_stderr`, stderr goes into `out`.
ChildRun run_child(const std::string& path, const std::vector<std::string>& args, std::chrono::seconds timeout,
                   bool merge_stderr = false);

// The value of the number field `name` of a JSON object printed on one line;
// nullopt when absent or null.
std::optional<double> json_number(const std::string& json, const std::string& name);

}  // namespace netsem::testing
