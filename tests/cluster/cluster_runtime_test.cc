// ClusterRuntime (src/server/cluster_runtime.h) in-process, on a one-server
// cluster: the queue from the raft thread to the event loop is bounded. A
// loop that does not turn while the raft thread applies entries finds, at
// its next turn, that the bound was passed: it applies what was queued
// before that point and fails the server (Callbacks::failed) instead of
// holding every later entry in memory or skipping one.
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

TEST(ClusterRuntimeQueue, ALoopThatDoesNotTurnFailsPastTheBoundInsteadOfGrowing) {
  char tmpl[] = "/tmp/netsem-runtime-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  const auto secret = dir / "secret";
  std::ofstream(secret) << "a-cluster-secret-of-the-test-0123456789\n";
  ::chmod(secret.c_str(), 0600);
  const std::string client = "127.0.0.1:" + std::to_string(test_support::free_port_below_ephemeral());
  const std::string raft = "127.0.0.1:" + std::to_string(test_support::free_port_below_ephemeral());
  const std::string text = "[server]\nbind_address = 127.0.0.1\nbind_port = 0\nstats_dir = " + dir.string() +
                           "\ndata_dir = " + dir.string() + "\n[semaphores]\nlock = 1\n[cluster]\nid = 1\n" +
                           "secret_file = " + secret.string() +
                           "\nelection_timeout_ms = 200\nheartbeat_timeout_ms = 20\nserver.1 = " + raft + " " + client +
                           "\n";
  auto config = parse_server_config(text, "runtime.ini");
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
    for (int i = 0; i < 250 && (*runtime)->status().role != raft::Role::kLeader; ++i) io.run_for(milliseconds(20));
    ASSERT_EQ((*runtime)->status().role, raft::Role::kLeader);
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
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace netsem::server
