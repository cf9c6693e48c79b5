// Smoke test of netsem-bench's Redis target: each test starts its own
// redis-server on a free loopback port (never a system Redis), runs a short
// scenario against it and checks the JSON report shows ops and no errors,
// and that the bench left no keys behind. Behaviour only, never timings.
// redis-server must be installed (scripts/install-deps.sh installs it):
// without it these tests fail, they do not skip.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "child_process.h"
#include "support/free_port.h"

#ifndef NETSEM_BENCH_PATH
#error "NETSEM_BENCH_PATH must name the netsem-bench binary"
#endif

namespace {

using namespace std::chrono_literals;
using netsem::testing::ChildRun;
using netsem::testing::json_number;
using netsem::testing::run_child;

// netsem-bench with `args`.
ChildRun run_bench(const std::vector<std::string>& args, std::chrono::seconds timeout = 30s) {
  return run_child(NETSEM_BENCH_PATH, args, timeout);
}

// redis-server on PATH or where Debian puts it; empty when not installed.
std::string find_redis_server() {
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("PATH")) {
    std::string dirs = path;
    for (std::size_t at = 0; at <= dirs.size();) {
      const auto colon = std::min(dirs.find(':', at), dirs.size());
      if (colon > at) candidates.push_back(dirs.substr(at, colon - at) + "/redis-server");
      at = colon + 1;
    }
  }
  candidates.push_back("/usr/bin/redis-server");
  candidates.push_back("/usr/sbin/redis-server");
  for (const auto& candidate : candidates) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// Sends one command (RESP bytes) to 127.0.0.1:`port` and returns the first
// line of the answer; nullopt when no answer came within a second.
std::optional<std::string> redis_line(std::uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  std::optional<std::string> line;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    std::string in;
    pollfd p{fd, POLLIN, 0};
    while (in.find("\r\n") == std::string::npos && ::poll(&p, 1, 1000) > 0) {
      char chunk[512];
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n <= 0) break;
      in.append(chunk, static_cast<std::size_t>(n));
    }
    if (const auto end = in.find("\r\n"); end != std::string::npos) line = in.substr(0, end);
  }
  ::close(fd);
  return line;
}

// A redis-server of the test's own, killed by the destructor.
class RedisServer {
 public:
  // Starts one and waits until it answers PING; pid() is -1 on failure,
  // with `error` saying why.
  explicit RedisServer(std::string& error) {
    const std::string binary = find_redis_server();
    if (binary.empty()) {
      error = "redis-server is not installed (scripts/install-deps.sh installs it)";
      return;
    }
    // The free port may be taken again before Redis binds it: try a few.
    for (int attempt = 0; attempt < 3 && pid_ < 0; ++attempt) start(binary, error);
  }
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }

 private:
  void start(const std::string& binary, std::string& error) {
    port_ = netsem::test_support::free_port_below_ephemeral();
    const std::string port = std::to_string(port_);
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, STDIN_FILENO);
      ::dup2(null, STDOUT_FILENO);
      ::dup2(null, STDERR_FILENO);
      ::execl(binary.c_str(), binary.c_str(), "--bind", "127.0.0.1", "--port", port.c_str(), "--save", "",
              "--appendonly", "no", "--daemonize", "no", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        error = "redis-server exited at start on port " + port;
        return;
      }
      if (redis_line(port_, "*1\r\n$4\r\nPING\r\n") == "+PONG") return;
      std::this_thread::sleep_for(20ms);
    }
    stop();
    error = "redis-server did not answer PING on port " + port;
  }

  void stop() {
    if (pid_ < 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

class RedisBench : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    redis_ = std::make_unique<RedisServer>(error);
    ASSERT_GT(redis_->pid(), 0) << error;
  }

  ChildRun run(const std::string& scenario) {
    return run_bench({"--target", "redis", "--port", std::to_string(redis_->port()), "--server-pid",
                      std::to_string(redis_->pid()), "--scenario", scenario, "--seconds", "1", "--warmup", "0.2",
                      "--json"});
  }

  // The report of a run that must have done ops without an error, and
  // deleted the keys it used after.
  void expect_clean(const ChildRun& run) {
    EXPECT_EQ(run.exit_code, 0) << run.err;
    EXPECT_GT(json_number(run.out, "ops").value_or(0), 0) << run.out;
    EXPECT_EQ(json_number(run.out, "errors"), 0) << run.out;
    EXPECT_TRUE(json_number(run.out, "server_cpu_us_per_op")) << run.out;
    EXPECT_NE(run.out.find("\"target\":\"redis\""), std::string::npos) << run.out;
    EXPECT_EQ(redis_line(redis_->port(), "*1\r\n$6\r\nDBSIZE\r\n"), ":0");
  }

  std::unique_ptr<RedisServer> redis_;
};

TEST_F(RedisBench, Cycle1) {
  expect_clean(run("cycle1"));
}

TEST_F(RedisBench, ContendedWaitsForTheLimit) {
  const auto result = run("contended");
  expect_clean(result);
  EXPECT_EQ(json_number(result.out, "limit"), 10) << result.out;
  EXPECT_EQ(json_number(result.out, "clients"), 64) << result.out;
  // 64 clients on 10 permits: acquires find it full and wait on BLPOP.
  EXPECT_GT(json_number(result.out, "queued").value_or(0), 0) << result.out;
}

TEST_F(RedisBench, Spread) {
  expect_clean(run("spread"));
}

TEST_F(RedisBench, Pipelined) {
  expect_clean(run("pipelined"));
}

TEST_F(RedisBench, ClearsHoldsLeftByAnEarlierRun) {
  // A holder that never released (a crashed client) with 30 s to go: the
  // bench deletes its run's keys first, or cycle1 would wait it out.
  const std::string zadd =
      "*4\r\n$4\r\nZADD\r\n$24\r\n{bench.cycle1.0}:holders\r\n$13\r\n9999999999999\r\n$5\r\nghost\r\n";
  ASSERT_EQ(redis_line(redis_->port(), zadd), ":1");
  const auto result = run("cycle1");
  expect_clean(result);
  EXPECT_NE(result.out.find("left on Redis before the run"), std::string::npos) << result.out;
}

TEST(RedisBenchOptions, RefusesScenariosRedisDoesNotRun) {
  for (const char* scenario : {"sessions", "names", "ace"}) {
    const auto run = run_bench({"--target", "redis", "--port", "1", "--scenario", scenario, "--seconds", "1"});
    EXPECT_EQ(run.exit_code, 2) << scenario << ": " << run.err;
    EXPECT_NE(run.err.find(scenario), std::string::npos) << run.err;
  }
}

}  // namespace
