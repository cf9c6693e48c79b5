// The HTTP listener while the event loop is busy, with netsemd started by
// the test itself (not netsemd_harness's start, which returns only once the
// server listens): 300 000 defined names make the start and a reload take
// a noticeable time on the loop. While the table is being built, /healthz
// answers and /readyz says "starting"; while a reload holds the loop, API
// requests wait for it but /healthz on other connections answers at once.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "netsemd_harness.h"
#include "support/http_client.h"
#include "support/request_lines.h"

#ifndef NETSEMD_PATH
#error "NETSEMD_PATH must name the netsemd binary"
#endif

namespace netsem::testing {
namespace {

using nlohmann::json;
using test_support::http_get;
using test_support::http_port_from_log;
using test_support::HttpResponse;

constexpr int kNames = 300000;

// A netsemd started with fork and exec, killed (by pid) at the end.
class Spawned {
 public:
  explicit Spawned(const std::string& semaphores) {
    Netsemd::Options options;
    options.server_options = "http_port = 0\n";
    options.semaphores = semaphores;
    config_ = dir_.path() / "netsem.ini";
    log_ = dir_.path() / "log";
    std::ofstream(config_) << render_config(options, dir_.path(), 0);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, STDERR_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      const std::string config = config_.string();
      ::execl(NETSEMD_PATH, "netsemd", "--config", config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Spawned() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::string log() const { return read_text(log_); }
  bool wait_for_log(std::string_view text, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }
  pid_t pid() const { return pid_; }

 private:
  TempDir dir_;
  std::filesystem::path config_;
  std::filesystem::path log_;
  pid_t pid_ = -1;
};

std::string many_names() {
  std::string text;
  text.reserve(kNames * 20);
  for (int i = 0; i < kNames; ++i) text += "name-" + std::to_string(1000000 + i) + " = 3\n";
  return text;
}

TEST(HttpBusy, HealthAnswersWhileStartingAndWhileTheLoopIsHeld) {
  Spawned server(many_names());
  ASSERT_TRUE(server.wait_for_log("HTTP on http://", 30s)) << server.log();
  const auto port = http_port_from_log(server.log());
  ASSERT_NE(port, 0);

  // Starting: the table is being built; health answers, readiness says so.
  bool saw_starting = false;
  bool saw_ready = false;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!saw_ready && std::chrono::steady_clock::now() < deadline) {
    auto ready = http_get(port, "/readyz", 2s);
    ASSERT_TRUE(ready);
    const json body = json::parse(ready->body);
    if (ready->status == 503) {
      EXPECT_EQ(body["status"], "starting");
      if (!saw_starting) {
        saw_starting = true;
        auto health = http_get(port, "/healthz", 2s);
        ASSERT_TRUE(health);
        EXPECT_EQ(health->status, 200);
        auto stats = http_get(port, "/api/v1/stats", 2s);
        ASSERT_TRUE(stats);
        EXPECT_EQ(stats->status, 503);
        EXPECT_EQ(json::parse(stats->body)["error"], "STARTING");
      }
    } else {
      EXPECT_EQ(ready->status, 200);
      saw_ready = true;
    }
  }
  EXPECT_TRUE(saw_starting) << "the start was too quick to see: " << server.log();
  ASSERT_TRUE(saw_ready);
  ASSERT_TRUE(server.wait_for_log("listening on", 5s));
  static const std::regex kListening(R"(listening on [^ ]*:(\d+))");
  std::smatch match;
  const std::string log = server.log();
  ASSERT_TRUE(std::regex_search(log, match, kListening));
  auto client = Client::connect(static_cast<std::uint16_t>(std::stoi(match[1])));
  ASSERT_TRUE(client);

  // A reload of every name holds the loop: find the moment a PING stops
  // being answered, then ask the API (it waits) and /healthz (it must not).
  ::kill(server.pid(), SIGHUP);
  bool held = false;
  const auto reload_deadline = std::chrono::steady_clock::now() + 10s;
  while (!held && std::chrono::steady_clock::now() < reload_deadline) {
    client->send_line(req::ping("p"));
    const auto answer = client->read_line(50ms);
    if (!answer) {
      held = true;  // the loop is inside the reload
    } else {
      ASSERT_EQ(*answer, "p PONG");
    }
  }
  ASSERT_TRUE(held) << "no PING went unanswered for 50 ms during the reload";
  std::atomic<int> waiting{4};
  std::vector<std::thread> queries;
  // A moment apart, so that a listener serving connections from a few
  // threads would have each of them waiting (as a pool of 2 did: /healthz
  // then took until the reload's end).
  for (int i = 0; i < 4; ++i) {
    queries.emplace_back([&] {
      auto sessions = http_get(port, "/api/v1/sessions", 5s);
      EXPECT_TRUE(sessions);
      --waiting;
    });
    std::this_thread::sleep_for(30ms);
  }
  const auto asked = std::chrono::steady_clock::now();
  auto health = http_get(port, "/healthz", 5s);
  const auto took = std::chrono::steady_clock::now() - asked;
  const int still_waiting = waiting.load();
  for (auto& query : queries) query.join();
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_GT(still_waiting, 0) << "the reload ended before /healthz answered: not a test of a held loop";
  EXPECT_LT(took, 300ms);
  EXPECT_TRUE(server.wait_for_log("SIGHUP: reloaded", 10s));
  // The answer to the PING that waited arrives with the reload's end.
  EXPECT_EQ(client->read_line(5s), "p PONG");
}

}  // namespace
}  // namespace netsem::testing
