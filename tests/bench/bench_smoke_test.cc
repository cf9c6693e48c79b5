// Smoke test of netsem-bench (bench/): the built generator runs short
// scenarios against the real netsemd (and against its own floor server) and
// reports ops and no errors in its JSON. It checks that the benchmark works,
// never how fast anything is: a shared machine makes timings meaningless
// here.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "netsemd_harness.h"

#ifndef NETSEM_BENCH_PATH
#error "NETSEM_BENCH_PATH must name the netsem-bench binary"
#endif

namespace netsem::testing {
namespace {

struct BenchRun {
  int exit_code = -1;  // -1: killed after the deadline
  std::string out;
  std::string err;
};

// Runs netsem-bench with `args`, killing it after `timeout`.
BenchRun run_bench(const std::vector<std::string>& args, std::chrono::seconds timeout = 30s) {
  int out_pipe[2];
  int err_pipe[2];
  BenchRun run;
  if (::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) return run;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    std::vector<char*> argv{const_cast<char*>(NETSEM_BENCH_PATH)};
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    ::execv(NETSEM_BENCH_PATH, argv.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&run.out, &run.err};
  int open_pipes = 2;
  while (open_pipes > 0 && std::chrono::steady_clock::now() < deadline) {
    if (::poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char chunk[4096];
      const ssize_t n = ::read(fds[i].fd, chunk, sizeof chunk);
      if (n > 0) {
        sinks[i]->append(chunk, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
      }
    }
  }
  for (const auto& fd : fds) {
    if (fd.fd >= 0) ::close(fd.fd);
  }
  if (open_pipes > 0) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (open_pipes == 0 && WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  return run;
}

// The value of a top-level number field of the report ("null" -> nullopt).
std::optional<double> number_field(const std::string& json, const std::string& name) {
  const std::regex pattern("\"" + name + "\":(-?[0-9.]+)");
  std::smatch match;
  if (!std::regex_search(json, match, pattern)) return std::nullopt;
  return std::stod(match[1]);
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
void expect_clean(const BenchRun& run) {
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_GT(number_field(run.out, "ops").value_or(0), 0) << run.out;
  EXPECT_EQ(number_field(run.out, "errors"), 0) << run.out;
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
  EXPECT_TRUE(number_field(run.out, "server_cpu_us_per_op")) << run.out;
}

TEST(NetsemBench, ContendedUsesTheDefinedLimit) {
  auto server = start_netsemd();
  ASSERT_TRUE(server);
  const auto run = run_bench(short_run(server->port(), server->pid(), "contended"));
  expect_clean(run);
  EXPECT_EQ(number_field(run.out, "limit"), 10) << run.out;
  EXPECT_EQ(number_field(run.out, "clients"), 64) << run.out;
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
  EXPECT_EQ(number_field(run.out, "ops"), 200) << run.out;
  EXPECT_TRUE(number_field(run.out, "bytes_per")) << run.out;

  auto names = short_run(server->port(), server->pid(), "names");
  names.insert(names.end(), {"--names", "2000"});
  const auto created = run_bench(names);
  expect_clean(created);
  EXPECT_EQ(number_field(created.out, "ops"), 2000) << created.out;
  // The bench deletes what it created.
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request("g GET bench.names.0"), "g OK 1 1 0 0 absent");
}

TEST(NetsemBench, FloorStartedForTheRun) {
  const auto run =
      run_bench({"--target", "floor", "--scenario", "spread", "--seconds", "1", "--warmup", "0.2", "--json"});
  expect_clean(run);
  EXPECT_TRUE(number_field(run.out, "server_cpu_us_per_op")) << run.out;
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
