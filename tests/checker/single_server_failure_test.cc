// The failure test's machinery against the single server: the real netsemd,
// the real libnetsem clients of netsem-workload writing their history, and
// the checker judging it. A netsemd killed with -9 and restarted on its data
// directory, then frozen (SIGSTOP) for longer than the session timeout, must
// keep the promise: its restart waits out the old leases, the frozen
// server's holders declare their permits lost before it can grant them
// again, and the created semaphore keeps every acknowledged change. And the
// checker is no rubber stamp: a server that allows 3 holders where the
// history says 2 is caught. (The replicated servers' failure test runs the
// same workload and checker against three of them.)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checker/history.h"
#include "checker/workload_process.h"
#include "netsemd_harness.h"
#include "support/free_port.h"

namespace netsem::checker {
namespace {

using namespace std::chrono_literals;
using testing::Netsemd;
using testing::TempDir;

Report check_file(const std::string& path, std::vector<Event>* events_out = nullptr) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto events = parse_history(text.str());
  EXPECT_TRUE(events) << events.status().to_string();
  if (!events) return Report{{"unparsed"}, {}};
  if (events_out) *events_out = *events;
  return check_history(*events);
}

std::size_t count_of(const std::vector<Event>& events, Op op) {
  std::size_t n = 0;
  for (const Event& e : events) n += e.op == op ? 1 : 0;
  return n;
}

TEST(SingleServerFailure, KillRestartAndFreezeKeepThePromise) {
  TempDir dir;
  Netsemd::Options options;
  options.server_options = "session_timeout_ms = 1500\nfsync = always";
  options.semaphores = "db = 2";
  options.data_dir = dir.path() / "data";
  // Restarted on the same port: one below the ephemeral range, which no
  // outgoing connection (the holders' reconnections among them) takes while
  // the server is down.
  options.port = test_support::free_port_below_ephemeral();
  std::string error;
  auto server = Netsemd::start(options, &error);
  ASSERT_TRUE(server) << error;
  const std::string history = (dir.path() / "history.jsonl").string();
  // One cycle in the README's test command; NETSEM_FAILURE_CYCLES=N runs N
  // (about 7 s each) on demand.
  const char* env = std::getenv("NETSEM_FAILURE_CYCLES");
  const int cycles = env != nullptr ? std::max(1, std::atoi(env)) : 1;
  // The clients run until the test stops them, after the last freeze: a
  // slow start on a loaded machine cannot leave a freeze without clients.
  // One holder holds for about 5 s, longer than a kill and a freeze, so a permit is in
  // use across the kill and the freeze and its holder must declare it lost:
  // a holder of 100 ms has mostly sent its RELEASE before its library notices
  // (a 20-cycle run once declared none).
  Workload workload({"--server",       "127.0.0.1:" + std::to_string(options.port),
                     "--seconds",      "3600",
                     "--holders",      "6",
                     "--counters",     "2",
                     "--name",         "db",
                     "--limit",        "2",
                     "--hold-ms",      "100",
                     "--long-holders", "1",
                     "--long-hold-ms", "5000",
                     "--history",      history});

  for (int cycle = 0; cycle < cycles; ++cycle) {
    // Killed once both permits are held (and so holders are at work): GET's
    // value 0. Starting the workload can take long on a loaded machine.
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    bool held = false;
    while (!held && std::chrono::steady_clock::now() < give_up) {
      if (auto probe = testing::Client::connect(options.port)) {
        held = probe->request("g GET db").starts_with("g OK 0 2 ");
      }
      if (!held) std::this_thread::sleep_for(20ms);  // polling a condition, bounded
    }
    ASSERT_TRUE(held) << "the holders never held both permits (cycle " << cycle << ")";
    std::this_thread::sleep_for(500ms);
    server->send_signal(SIGKILL);  // holders in the middle of their work
    ASSERT_TRUE(server->wait_exit(5s));
    server.reset();
    std::this_thread::sleep_for(300ms);
    server = Netsemd::start(options, &error);  // the same data directory and port
    ASSERT_TRUE(server) << error;
    std::this_thread::sleep_for(2500ms);  // past the restart's lease wait
    server->send_signal(SIGSTOP);         // longer than the session timeout
    std::this_thread::sleep_for(2500ms);
    server->send_signal(SIGCONT);
  }
  std::this_thread::sleep_for(1500ms);  // the clients work again after the freeze
  workload.stop();

  ASSERT_EQ(workload.wait(60s), 0) << "netsem-workload failed";
  std::vector<Event> events;
  const Report report = check_file(history, &events);
  for (const std::string& v : report.violations) ADD_FAILURE() << v;
  ASSERT_TRUE(report.names.contains("db"));
  const NameFigures& db = report.names.at("db");
  std::printf(
      "%zu events: %llu grants of db, at most %lld in use, %zu permits declared lost, %llu requests of "
      "unknown outcome\n",
      events.size(), static_cast<unsigned long long>(db.grants), static_cast<long long>(db.most_in_use),
      count_of(events, Op::kLost), static_cast<unsigned long long>(db.unknown));
  EXPECT_GE(db.grants, 15u) << "too little happened to judge";
  EXPECT_EQ(db.most_in_use, 2) << "the permits were never all in use";
  EXPECT_GE(count_of(events, Op::kLost), 1u) << "no holder was caught by the kill or the freeze";
  EXPECT_EQ(count_of(events, Op::kFinal), 1u);
}

TEST(SingleServerFailure, TheCheckerCatchesOneHolderTooMany) {
  // The server allows 3 holders of db; the history says the limit is 2.
  TempDir dir;
  Netsemd::Options options;
  options.semaphores = "db = 3";
  std::string error;
  auto server = Netsemd::start(options, &error);
  ASSERT_TRUE(server) << error;
  const std::string history = (dir.path() / "history.jsonl").string();
  Workload workload({"--server", "127.0.0.1:" + std::to_string(server->port()), "--seconds", "3", "--holders", "6",
                     "--counters", "0", "--name", "db", "--limit", "2", "--hold-ms", "100", "--history", history});
  ASSERT_EQ(workload.wait(30s), 0);
  const Report report = check_file(history);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.violations.front().find("over its limit of 2"), std::string::npos) << report.violations.front();
  EXPECT_EQ(report.names.at("db").most_in_use, 3);
}

}  // namespace
}  // namespace netsem::checker
