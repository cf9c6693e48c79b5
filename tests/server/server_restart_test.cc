// Integration tests of the lease wait after a restart (restart_lease_wait,
// docs/durability.md "Restarts"): a netsemd that starts on the data
// directory of a run that was killed, or stopped with permits held, grants
// nothing for one session timeout, because that run's holders may still work
// under their leases; requests queue and tries time out meanwhile. A run
// that stopped cleanly with nothing held, and a new data directory, grant at
// once. Each test restarts the real netsemd on the same data directory.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using Clock = std::chrono::steady_clock;

Netsemd::Options restart_options(const std::filesystem::path& data_dir, std::string server_options) {
  Netsemd::Options options = with_server_options(std::move(server_options));
  options.semaphores = "pool = 1\n";
  options.data_dir = data_dir;
  return options;
}

// Starts netsemd with `options`, takes pool's one permit with a session
// that stays open, and ends the server with `signal`; returns its data
// directory.
std::filesystem::path run_with_holder_and_end(const Netsemd::Options& options, int signal) {
  auto server = start_server(options);
  if (!server) return {};
  auto holder = Client::connect(server->port());
  EXPECT_EQ(holder->request(req::acquire("a", "pool")), "a OK 1");
  server->send_signal(signal);
  EXPECT_TRUE(server->wait_exit());
  return server->data_dir();
}

std::int64_t millis_since(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

TEST(ServerRestart, AfterAKillGrantsNothingForOneSessionTimeout) {
  TempDir dir;
  const auto options = restart_options(dir.path() / "data", "session_timeout_ms = 1500");
  ASSERT_FALSE(run_with_holder_and_end(options, SIGKILL).empty());

  const auto before_start = Clock::now();
  auto server = start_server(options);
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_log("did not stop cleanly (killed or crashed): granting nothing for 1500 ms"))
      << server->log();
  auto waiter = Client::connect(server->port());
  auto other = Client::connect(server->port());
  EXPECT_EQ(waiter->request(req::acquire("w", "pool")), "w QUEUED 1");
  EXPECT_EQ(other->request(req::acquire("t", "pool", 1, 0)), "t TIMEOUT");  // a try during the wait
  EXPECT_EQ(other->request(req::acquire("q", "adhoc", 1, 100)), "q QUEUED 1");
  EXPECT_EQ(other->read_line(), "q TIMEOUT");  // a timeout still times out
  EXPECT_EQ(other->request(req::get("g", "pool")), "g OK 1 1 0 1 defined");
  const std::string stats = other->request(req::stats("s"));
  EXPECT_EQ(stats.find("\"lease_wait_ms\":0"), std::string::npos) << stats;
  // The grant comes once the wait is over, and not before.
  const auto granted = waiter->read_line(5s);
  ASSERT_TRUE(granted);
  EXPECT_EQ(granted->rfind("w OK ", 0), 0u) << *granted;
  EXPECT_GE(millis_since(before_start), 1500);
  EXPECT_NE(other->request(req::stats("s")).find("\"lease_wait_ms\":0,"), std::string::npos);
  EXPECT_EQ(other->request(req::acquire("t2", "x", 1, 0)).rfind("t2 OK ", 0), 0u);
}

TEST(ServerRestart, AfterACleanStopWithAHolderWaitsToo) {
  TempDir dir;
  const auto options = restart_options(dir.path() / "data", "session_timeout_ms = 1000");
  ASSERT_FALSE(run_with_holder_and_end(options, SIGTERM).empty());
  auto server = start_server(options);
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_log("stopped with 1 permits held: granting nothing for 1000 ms")) << server->log();
  auto c = Client::connect(server->port());
  EXPECT_EQ(c->request(req::acquire("t", "pool", 1, 0)), "t TIMEOUT");
  EXPECT_EQ(c->request(req::acquire("w", "pool", 1, 5000)), "w QUEUED 1");
  EXPECT_EQ(c->read_line(5s).value_or("").rfind("w OK ", 0), 0u);
}

TEST(ServerRestart, AfterACleanStopWithNothingHeldGrantsAtOnce) {
  TempDir dir;
  // A long timeout: a wait would show as QUEUED.
  const auto options = restart_options(dir.path() / "data", "session_timeout_ms = 60000");
  {
    auto server = start_server(options);
    ASSERT_TRUE(server);
    auto c = Client::connect(server->port());
    EXPECT_EQ(c->request(req::acquire("a", "pool")), "a OK 1");
    EXPECT_EQ(c->request(req::release("r", "pool")), "r OK 1");
    server->send_signal(SIGTERM);
    ASSERT_TRUE(server->wait_exit());
  }
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto c = Client::connect(server->port());
  EXPECT_EQ(c->request(req::acquire("a", "pool", 1, 0)).rfind("a OK ", 0), 0u);
  EXPECT_EQ(server->log().find("granting nothing"), std::string::npos) << server->log();
}

TEST(ServerRestart, AStopDuringTheWaitLeavesTheNextStartWaiting) {
  TempDir dir;
  const auto options = restart_options(dir.path() / "data", "session_timeout_ms = 60000");
  ASSERT_FALSE(run_with_holder_and_end(options, SIGKILL).empty());
  {
    // Stopped cleanly with nothing held, but while the killed run's holder
    // may still be at work.
    auto server = start_server(options);
    ASSERT_TRUE(server);
    auto c = Client::connect(server->port());
    EXPECT_EQ(c->request(req::acquire("t", "pool", 1, 0)), "t TIMEOUT");
    server->send_signal(SIGTERM);
    ASSERT_TRUE(server->wait_exit());
  }
  auto server = start_server(options);
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_log("did not stop cleanly")) << server->log();
  auto c = Client::connect(server->port());
  EXPECT_EQ(c->request(req::acquire("t", "pool", 1, 0)), "t TIMEOUT");
}

TEST(ServerRestart, TheLongerTimeoutOfTheTwoRunsIsWaited) {
  TempDir dir;
  ASSERT_FALSE(
      run_with_holder_and_end(restart_options(dir.path() / "data", "session_timeout_ms = 60000"), SIGKILL).empty());
  // Its clients' leases were computed from 60 s, whatever this run says.
  auto server = start_server(restart_options(dir.path() / "data", "session_timeout_ms = 500"));
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_log("granting nothing for 60000 ms")) << server->log();
}

TEST(ServerRestart, OffGrantsAtOnceAndSaysSo) {
  TempDir dir;
  const auto options = restart_options(dir.path() / "data", "session_timeout_ms = 60000\nrestart_lease_wait = off");
  ASSERT_FALSE(run_with_holder_and_end(options, SIGKILL).empty());
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto c = Client::connect(server->port());
  EXPECT_EQ(c->request(req::acquire("a", "pool", 1, 0)).rfind("a OK ", 0), 0u);
  EXPECT_TRUE(server->wait_for_log("restart_lease_wait = off: granting at once")) << server->log();
}

TEST(ServerRestart, ADamagedRunFileIsReadAsARunThatDidNotStop) {
  TempDir dir;
  const auto options = restart_options(dir.path() / "data", "session_timeout_ms = 800");
  {
    auto server = start_server(options);
    ASSERT_TRUE(server);
    server->send_signal(SIGTERM);
    ASSERT_TRUE(server->wait_exit());
  }
  {
    std::FILE* run = std::fopen((dir.path() / "data" / "run").c_str(), "w");
    ASSERT_NE(run, nullptr);
    std::fputs("netsemd-run 1 stopp", run);
    std::fclose(run);
  }
  auto server = start_server(options);
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_log("read as a run that did not stop")) << server->log();
  EXPECT_TRUE(server->wait_for_log("granting nothing for 800 ms")) << server->log();
}

}  // namespace
}  // namespace netsem::testing
