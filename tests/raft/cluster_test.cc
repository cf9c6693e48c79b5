// Three (and four) real netsem-raft-node processes on 127.0.0.1-4: leader
// election, the order of committed commands, kill -9 and SIGSTOP of the
// leader, snapshots, membership changes, a damaged data directory, and the
// throughput of batched proposals. Every process is killed by its pid when
// its test ends (Cluster's destructor). Timings are printed.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "raft/node_process.h"

namespace netsem::raft::testing {
namespace {

TEST(RaftCluster, ThreeNodesElectOneLeader) {
  Cluster cluster(fast_timeouts());
  start_three(cluster);
  const auto start = Clock::now();
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  std::printf("leader %d elected in %lld ms\n", leader,
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(Clock::now() - start).count()));
  // Exactly one node says it leads, and all name it.
  int leaders = 0;
  for (int i : kThree) {
    auto s = cluster.node(i).status();
    ASSERT_TRUE(s);
    leaders += (*s)["role"] == "leader";
    EXPECT_EQ((*s)["leader"], std::to_string(leader));
    EXPECT_EQ((*s)["config"], "1:voter,2:voter,3:voter");
  }
  EXPECT_EQ(leaders, 1);
  // A follower refuses a proposal and names the leader.
  const int follower = leader == 1 ? 2 : 1;
  const std::string refused = propose(cluster, follower, "f", "p:x");
  EXPECT_NE(refused.find("err UNAVAILABLE"), std::string::npos) << refused;
  EXPECT_NE(refused.find("leader: " + std::to_string(leader)), std::string::npos) << refused;
}

TEST(RaftCluster, ProposalsCommitOnAllInTheSameOrder) {
  Cluster cluster(fast_timeouts());
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  // 200 proposals sent at once (so batched), then read back everywhere.
  std::string expected;
  for (int n = 0; n < 200; ++n) cluster.node(leader).send("propose t" + std::to_string(n) + " p:v" + std::to_string(n));
  std::set<std::string> positions;
  for (int n = 0; n < 200; ++n) {
    auto line = cluster.node(leader).wait_prefix("done t" + std::to_string(n) + " ", milliseconds(10000));
    ASSERT_TRUE(line) << n;
    ASSERT_TRUE(ok(*line)) << *line;
    positions.insert(line->substr(line->rfind(' ') + 1));
    expected += " p:v" + std::to_string(n);
  }
  EXPECT_EQ(positions.size(), 200u);  // each got a position of its own
  // A command the state machine refuses is refused with its Status, and changes nothing.
  EXPECT_NE(propose(cluster, leader, "bad", "nope").find("err INVALID_ARGUMENT"), std::string::npos);
  ASSERT_TRUE(cluster.wait_same_log(kThree, 200));
  for (int i : kThree) {
    auto log = cluster.node(i).request("log", "log ");
    ASSERT_TRUE(log);
    EXPECT_EQ(*log, "log 200" + expected) << "node " << i;
    EXPECT_TRUE(cluster.wait_status(i, [](auto& s) { return s["refused"] == "1"; })) << "node " << i;
    EXPECT_EQ((*cluster.node(i).status())["violations"], "0");
  }
  auto s = cluster.node(leader).status();
  std::printf("200 proposals sent at once went in %s log entries\n", (*s)["batches"].c_str());
  EXPECT_LT(std::stoi((*s)["batches"]), 200);
}

}  // namespace
}  // namespace netsem::raft::testing
