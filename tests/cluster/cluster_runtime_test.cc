// ClusterRuntime (src/server/cluster_runtime.h) in-process, on a one-server
// cluster whose event loop is the test's io_context, turned only when the
// test says: the queue from the raft thread to the event loop is bounded (a
// loop that does not turn while the raft thread applies entries finds, at
// its next turn, that the bound was passed: it applies what was queued
// before that point and fails the server, Callbacks::failed, instead of
// holding every later entry in memory or skipping one); and a loop that
// lags the commit index for a second is not ready, "catching up" (/readyz's
// reason), until it has applied what it knew was committed.
#include "server/cluster_runtime.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "config/config.h"
#include "support/free_port.h"

namespace netsem::server {
namespace {

using std::chrono::milliseconds;

// A one-server cluster's configuration in a temporary directory (removed
// with it).
struct OneServer {
  OneServer() {
    char tmpl[] = "/tmp/netsem-runtime-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return;
    dir = tmpl;
    const auto secret = dir / "secret";
    std::ofstream(secret) << "a-cluster-secret-of-the-test-0123456789\n";
    ::chmod(secret.c_str(), 0600);
    const std::string client = "127.0.0.1:" + std::to_string(test_support::free_port_below_ephemeral());
    const std::string raft = "127.0.0.1:" + std::to_string(test_support::free_port_below_ephemeral());
    const std::string text = "[server]\nbind_address = 127.0.0.1\nbind_port = 0\nstats_dir = " + dir.string() +
                             "\ndata_dir = " + dir.string() + "\n[semaphores]\nlock = 1\n[cluster]\nid = 1\n" +
                             "secret_file = " + secret.string() +
                             "\nelection_timeout_ms = 200\nheartbeat_timeout_ms = 20\nserver.1 = " + raft + " " +
                             client + "\n";
    config = parse_server_config(text, "runtime.ini");
  }
  ~OneServer() {
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  std::filesystem::path dir;
  Result<ServerConfig> config = Status(StatusCode::kInternal, "mkdtemp failed");
};

// Turns `io` until `runtime` leads (its own leader); false if not within 5 s.
bool leads(asio::io_context& io, ClusterRuntime& runtime) {
  for (int i = 0; i < 250 && runtime.status().role != raft::Role::kLeader; ++i) io.run_for(milliseconds(20));
  return runtime.status().role == raft::Role::kLeader;
}

TEST(ClusterRuntimeQueue, ALoopThatDoesNotTurnFailsPastTheBoundInsteadOfGrowing) {
  OneServer server;
  auto& config = server.config;
  ASSERT_TRUE(config) << config.status().to_string();
  {
    asio::io_context io;
    constexpr std::size_t kBound = 4096;  // bytes: some 100 of the commands below
    auto runtime = ClusterRuntime::start(io, *config, false, kBound);
    ASSERT_TRUE(runtime) << runtime.status().to_string();
    int failed = 0, applied = 0;
    Status why;
    ClusterRuntime::Callbacks callbacks;
    callbacks.applied = [&](const replication::Entry& entry, const replication::EntryResults&) {
      applied += static_cast<int>(entry.commands.size());
    };
    callbacks.failed = [&](const Status& status) {
      ++failed;
      why = status;
    };
    (*runtime)->set_callbacks(std::move(callbacks));
    ASSERT_TRUE(leads(io, **runtime));
    io.run_for(milliseconds(100));  // the leader's first entries reach the loop
    ASSERT_EQ(failed, 0);
    applied = 0;

    // The loop stops turning; its commands commit and apply on the raft thread.
    constexpr int kCommands = 500;
    for (int i = 0; i < kCommands; ++i) {
      (*runtime)->submit(replication::SetMember{static_cast<replication::ServerId>(i + 2), "127.0.0.1:7000"});
    }
    std::uint64_t seen = 0;
    for (int i = 0; i < 100; ++i) {
      std::this_thread::sleep_for(milliseconds(100));
      const std::uint64_t now = (*runtime)->status().raft_applied;
      if (now == seen && (*runtime)->status().commit_index == now) break;
      seen = now;
    }
    io.run_for(milliseconds(200));
    EXPECT_EQ(failed, 1);
    EXPECT_EQ(why.code(), StatusCode::kLimit) << why.to_string();
    EXPECT_GT(applied, 0);
    EXPECT_LT(applied, kCommands);
    (*runtime)->stop();
  }
}

// /readyz's "catching up" (ClusterRuntime::unready_reason): a server whose
// loop has not applied, for a second, entries it knows are committed is
// not ready, and says how far behind it is; ready again once it applied
// them. In-process, not on real netsemd servers: a real server's loop
// catches up with a follower's backlog in milliseconds, and a real one
// cannot be made to stop turning while its raft thread goes on; here the
// loop is the test's io_context, which turns only when the test says.
// Fails with the reason removed (the lag would read ready).
TEST(ClusterRuntimeReadiness, ALoopBehindTheCommitIndexForASecondIsCatchingUpUntilItApplied) {
  OneServer server;
  ASSERT_TRUE(server.config) << server.config.status().to_string();
  asio::io_context io;
  auto runtime = ClusterRuntime::start(io, *server.config, false);
  ASSERT_TRUE(runtime) << runtime.status().to_string();
  int applied = 0;
  ClusterRuntime::Callbacks callbacks;
  callbacks.applied = [&](const replication::Entry& entry, const replication::EntryResults&) {
    applied += static_cast<int>(entry.commands.size());
  };
  (*runtime)->set_callbacks(std::move(callbacks));
  ASSERT_TRUE(leads(io, **runtime));
  // The leader's first entries reach the loop: nothing committed is left to apply.
  for (int i = 0; i < 100 && (*runtime)->status().lag != 0; ++i) io.run_for(milliseconds(20));
  ASSERT_EQ((*runtime)->status().lag, 0u);
  ASSERT_EQ((*runtime)->unready_reason(), "");
  applied = 0;

  // Committed and applied on the raft thread while the loop does not turn.
  constexpr int kCommands = 20;
  const std::uint64_t before = (*runtime)->status().raft_applied;
  for (int i = 0; i < kCommands; ++i) {
    (*runtime)->submit(replication::SetMember{static_cast<replication::ServerId>(i + 2), "127.0.0.1:7000"});
  }
  for (int i = 0; i < 100; ++i) {
    const cluster::ClusterStatus now = (*runtime)->status();
    if (now.raft_applied > before && now.commit_index == now.raft_applied) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_GT((*runtime)->status().commit_index, before);
  // Behind, but not yet for a second: ready (a loop always trails a little).
  EXPECT_EQ((*runtime)->unready_reason(), "");
  std::this_thread::sleep_for(milliseconds(1100));
  const std::string reason = (*runtime)->unready_reason();
  EXPECT_EQ(reason.rfind("catching up: applied up to ", 0), 0u) << reason;
  EXPECT_NE(reason.find(", behind the commit index "), std::string::npos) << reason;

  // The loop turns and applies them: ready again.
  for (int i = 0; i < 100 && (applied < kCommands || (*runtime)->status().lag != 0); ++i) {
    io.run_for(milliseconds(20));
  }
  EXPECT_GE(applied, kCommands);  // and the term's first duties
  EXPECT_EQ((*runtime)->unready_reason(), "");
  (*runtime)->stop();
}

}  // namespace
}  // namespace netsem::server
