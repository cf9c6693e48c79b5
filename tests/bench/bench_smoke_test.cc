// Smoke test of netsem-bench (bench/): the built generator runs short
// scenarios against the real netsemd (and against its own floor server) and
// reports ops and no errors in its JSON. It checks that the benchmark works,
// never how fast anything is: a shared machine makes timings meaningless
// here.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "netsemd_harness.h"
#include "support/request_lines.h"

#include "child_process.h"

#ifndef NETSEM_BENCH_PATH
#error "NETSEM_BENCH_PATH must name the netsem-bench binary"
#endif

namespace netsem::testing {
namespace {

// netsem-bench with `args`.
ChildRun run_bench(const std::vector<std::string>& args, std::chrono::seconds timeout = 30s) {
  return run_child(NETSEM_BENCH_PATH, args, timeout);
}

std::vector<std::string> short_run(std::uint16_t port, pid_t pid, std::string scenario) {
  return {"--port",       std::to_string(port),
          "--server-pid", std::to_string(pid),
          "--scenario",   std::move(scenario),
          "--seconds",    "1",
          "--warmup",     "0.2",
          "--json"};
}

// The report of a run that must have done ops without an error.
void expect_clean(const ChildRun& run) {
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_GT(json_number(run.out, "ops").value_or(0), 0) << run.out;
  EXPECT_EQ(json_number(run.out, "errors"), 0) << run.out;
}

std::unique_ptr<Netsemd> start_netsemd() {
  Netsemd::Options options;
  options.semaphores = "bench.contended = 10\n";
  std::string error;
  auto server = Netsemd::start(options, &error);
  EXPECT_TRUE(server) << error;
  return server;
}

TEST(NetsemBench, Cycle1) {
  auto server = start_netsemd();
  ASSERT_TRUE(server);
  const auto run = run_bench(short_run(server->port(), server->pid(), "cycle1"));
  expect_clean(run);
  EXPECT_TRUE(json_number(run.out, "server_cpu_us_per_op")) << run.out;
}

TEST(NetsemBench, ContendedUsesTheDefinedLimit) {
  auto server = start_netsemd();
  ASSERT_TRUE(server);
  const auto run = run_bench(short_run(server->port(), server->pid(), "contended"));
  expect_clean(run);
  EXPECT_EQ(json_number(run.out, "limit"), 10) << run.out;
  EXPECT_EQ(json_number(run.out, "clients"), 64) << run.out;
}

TEST(NetsemBench, DurableWaitsAndPostsACreatedSemaphore) {
  auto server = start_netsemd();
  ASSERT_TRUE(server);
  const auto run = run_bench(short_run(server->port(), server->pid(), "durable"));
  expect_clean(run);
  EXPECT_EQ(json_number(run.out, "limit"), 10) << run.out;
  EXPECT_EQ(json_number(run.out, "clients"), 64) << run.out;
  EXPECT_NE(run.out.find("wait + post"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("bench.durable was not on the server: created"), std::string::npos) << run.out;
  // A defined name has no value of its own to WAIT on durably: refused.
  auto defined = short_run(server->port(), server->pid(), "durable");
  defined.insert(defined.end(), {"--name", "bench.contended"});
  const auto refused = run_bench(defined);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE((refused.out + refused.err).find("bench.contended is defined"), std::string::npos)
      << refused.out << refused.err;
  const auto floor = run_bench({"--target", "floor", "--scenario", "durable"});
  EXPECT_EQ(floor.exit_code, 2) << floor.err;
  EXPECT_NE(floor.err.find("needs --target netsem"), std::string::npos) << floor.err;
}

TEST(NetsemBench, Ace) {
  auto server = start_netsemd();
  ASSERT_TRUE(server);
  expect_clean(run_bench(short_run(server->port(), server->pid(), "ace")));
}

TEST(NetsemBench, SessionsAndNamesReportMemory) {
  auto server = start_netsemd();
  ASSERT_TRUE(server);
  auto sessions = short_run(server->port(), server->pid(), "sessions");
  sessions.insert(sessions.end(), {"--clients", "200"});
  const auto run = run_bench(sessions);
  expect_clean(run);
  EXPECT_EQ(json_number(run.out, "ops"), 200) << run.out;
  EXPECT_TRUE(json_number(run.out, "bytes_per")) << run.out;

  auto names = short_run(server->port(), server->pid(), "names");
  names.insert(names.end(), {"--names", "2000"});
  const auto created = run_bench(names);
  expect_clean(created);
  EXPECT_EQ(json_number(created.out, "ops"), 2000) << created.out;
  // The bench deletes what it created.
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request(req::get("g", "bench.names.0")), "g OK 1 1 0 0 absent");
}

TEST(NetsemBench, OpsEndsTheWindowAfterThatManyOps) {
  auto server = start_netsemd();
  ASSERT_TRUE(server);
  // bench/callgrind.sh's fixed amount of work: the window ends at 300 ops,
  // long before --seconds; each of the 64 clients completes at most one
  // cycle between two checks, so it overshoots by less than 64.
  const auto run = run_bench({"--port", std::to_string(server->port()), "--scenario", "spread", "--ops", "300",
                              "--seconds", "120", "--warmup", "0", "--json"});
  expect_clean(run);
  EXPECT_GE(json_number(run.out, "ops").value_or(0), 300) << run.out;
  EXPECT_LT(json_number(run.out, "ops").value_or(1000), 300 + 64) << run.out;
  EXPECT_LT(json_number(run.out, "seconds").value_or(120), 60) << run.out;

  const auto refused = run_bench({"--port", std::to_string(server->port()), "--scenario", "names", "--ops", "10"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("--ops applies to"), std::string::npos) << refused.err;
}

TEST(NetsemBench, ContendedWithQueuedOffHearsNoQueued) {
  auto server = start_netsemd();
  ASSERT_TRUE(server);
  auto args = short_run(server->port(), server->pid(), "contended");
  args.insert(args.end(), {"--queued", "off"});
  const auto run = run_bench(args);
  expect_clean(run);
  // 64 clients on 10 permits: most acquires wait, and none is told so.
  EXPECT_EQ(json_number(run.out, "queued"), 0) << run.out;
  EXPECT_NE(run.out.find("\"queued_answers\":\"off\""), std::string::npos) << run.out;
  // Without the option they are (the same server, the same load).
  const auto queued = run_bench(short_run(server->port(), server->pid(), "contended"));
  expect_clean(queued);
  EXPECT_GT(json_number(queued.out, "queued").value_or(0), 0) << queued.out;
}

TEST(NetsemBench, QueuedOffIsForNetsemCycleScenarios) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--target", "floor", "--queued", "off"},
                                               {"--scenario", "ace", "--queued", "off"},
                                               {"--scenario", "sessions", "--queued", "off"}}) {
    const auto run = run_bench(args);
    EXPECT_EQ(run.exit_code, 2) << args[1];
    EXPECT_NE(run.err.find("--queued off applies to"), std::string::npos) << run.err;
  }
  const auto bad = run_bench({"--queued", "maybe"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("must be on or off"), std::string::npos) << bad.err;
}

TEST(NetsemBench, FloorStartedForTheRun) {
  const auto run =
      run_bench({"--target", "floor", "--scenario", "spread", "--seconds", "1", "--warmup", "0.2", "--json"});
  expect_clean(run);
  EXPECT_TRUE(json_number(run.out, "server_cpu_us_per_op")) << run.out;
}

TEST(NetsemBench, RefusesHostsOutsideLoopback) {
  for (const char* host : {"10.0.0.1", "192.168.1.1", "::2", "localhost"}) {
    const auto run = run_bench({"--host", host, "--seconds", "1"});
    EXPECT_EQ(run.exit_code, 2) << host;
    EXPECT_NE(run.err.find("loopback"), std::string::npos) << run.err;
  }
}

}  // namespace
}  // namespace netsem::testing
