// The soak in CI form: netsem-soak (bench/soak/) runs against the built
// netsemd for 20 s with faults frequent enough to see netsemd restarted both
// ways and workers killed, and must pass; then a short run whose checker is
// told limits one lower than netsemd's must fail, which proves end to end
// that the checker sees over-grants when there are any.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include "child_process.h"

#ifndef NETSEM_SOAK_PATH
#error "NETSEM_SOAK_PATH must name the netsem-soak binary"
#endif
#ifndef NETSEMD_PATH
#error "NETSEMD_PATH must name the netsemd binary"
#endif

namespace {

using netsem::testing::ChildRun;

// netsem-soak against the built netsemd; stdout and stderr together.
ChildRun run_soak(std::vector<std::string> args, std::chrono::seconds timeout) {
  args.insert(args.begin(), {"--netsemd", NETSEMD_PATH});
  return netsem::testing::run_child(NETSEM_SOAK_PATH, args, timeout, /*merge_stderr=*/true);
}

// The number after `key` in the summary, or -1.
long long summary_value(const std::string& out, const std::string& key) {
  std::smatch match;
  if (!std::regex_search(out, match, std::regex("\n  " + key + " +([0-9]+)"))) return -1;
  return std::stoll(match[1]);
}

TEST(Soak, TwentySecondsWithFaultsPasses) {
  const ChildRun run = run_soak({"--seconds", "20", "--kill-every", "1", "2", "--restart-every", "2.5", "4",
                                 "--check-every", "4", "--drop-chance", "0.05"},
                                std::chrono::seconds(60));
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("result: PASS"), std::string::npos) << run.out;
  EXPECT_EQ(summary_value(run.out, "violations"), 0) << run.out;
  EXPECT_GT(summary_value(run.out, "grants"), 100) << run.out;
  EXPECT_GE(summary_value(run.out, "restarts_sigterm"), 1) << run.out;
  EXPECT_GE(summary_value(run.out, "restarts_sigkill"), 1) << run.out;
  EXPECT_GE(summary_value(run.out, "worker_kills"), 2) << run.out;
  EXPECT_GE(summary_value(run.out, "drops"), 1) << run.out;
  EXPECT_GE(summary_value(run.out, "quiescent_checks"), 2) << run.out;
  EXPECT_GE(summary_value(run.out, "created_checks"), 2) << run.out;
}

TEST(Soak, UnderstatedLimitsMakeTheCheckerFail) {
  const ChildRun run =
      run_soak({"--seconds", "4", "--understate-limits", "--restart-every", "100", "100"}, std::chrono::seconds(40));
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_GT(summary_value(run.out, "violations"), 0) << run.out;
  EXPECT_NE(run.out.find("over-limit"), std::string::npos) << run.out;
}

TEST(Soak, BadCommandLineExitsTwo) {
  EXPECT_EQ(run_soak({"--seconds", "nope"}, std::chrono::seconds(10)).exit_code, 2);
  EXPECT_EQ(run_soak({"--kill-every", "3", "1"}, std::chrono::seconds(10)).exit_code, 2);
}

}  // namespace
