// ClusterNode (src/cluster/cluster_node.h) on three real nodes in one
// process (tests/cluster/cluster_harness.h): node i on 127.0.0.i with its own
// data directory, RaftNode and libraft underneath, and a loop replica kept by
// the test thread as netsemd's loop will. Followers reach the leader through
// InProcessForwarder (the leader node's accept_forwarded called directly):
// the test's transport in place of the peer link's TCP.
#include "cluster/cluster_node.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>

#include "cluster/cluster_harness.h"

namespace netsem::cluster::testing {
namespace {

using replication::Answer;
using replication::Command;
using replication::OpenSession;
using replication::RequestVerb;
using replication::SessionRequest;
using server::SessionId;

bool is_touch_all(const Command& c) {
  return std::holds_alternative<replication::TouchAll>(c);
}
bool is_reconfigure(const Command& c) {
  return std::holds_alternative<replication::Reconfigure>(c);
}

constexpr char kSecret[] = "00112233445566778899aabbccddeeff";

// An OpenSession proposed by server `origin`, with a nonce of its own.
OpenSession open_command(int origin, const std::string& peer) {
  static std::uint64_t nonce = 0;
  return OpenSession{
      "", peer, "v1", static_cast<replication::ServerId>(origin), ++nonce, replication::secret_digest(kSecret)};
}

// ACQUIRE by `session`'s host `origin`, its request number `seq`.
SessionRequest acquire(int origin, SessionId session, std::uint64_t seq, std::string tag, std::string name,
                       std::int64_t timeout_ms = -1) {
  SessionRequest r;
  r.session = session;
  r.origin = static_cast<replication::ServerId>(origin);
  r.seq = seq;
  r.verb = RequestVerb::kAcquire;
  r.tag = std::move(tag);
  r.name = std::move(name);
  r.timeout_ms = timeout_ms;
  return r;
}

// Opens a session through node i and returns its id (0 on failure).
SessionId open_session(TestCluster& cluster, int i, const std::string& peer) {
  const OpenSession open = open_command(i, peer);
  EXPECT_TRUE(cluster.node(i).submit(open));
  const replication::CommandResult* result = nullptr;
  if (!cluster.pump_until([&] { return (result = cluster.result_of(i, open)) != nullptr; })) return 0;
  EXPECT_EQ(result->answer.type, Answer::Type::kOpened);
  return result->answer.number;
}

// Where the tests of a follower's command start: the three nodes started,
// their leader, one of its followers, and a session opened through it (0
// when it could not be).
struct FollowersSession {
  int leader;
  int follower;
  SessionId session;
};
FollowersSession start_with_a_followers_session(TestCluster& cluster) {
  cluster.start_all();
  const int leader = cluster.wait_leader();
  EXPECT_NE(leader, 0) << "no leader elected";
  const int follower = cluster.other_than(leader);
  return {leader, follower, open_session(cluster, follower, "10.0.0.2:1")};
}

TEST(ClusterNode, SubmitOnTheLeaderReachesEveryReplicaInOneOrder) {
  std::map<int, std::atomic<int>> wakes;  // the raft threads' calls of `wake` (outlives the nodes)
  for (int i : {1, 2, 3}) wakes[i] = 0;   // made before any thread runs
  TestCluster cluster;
  for (int i : {1, 2, 3}) {
    std::atomic<int>& count = wakes[i];
    ASSERT_TRUE(cluster.start(i, [&count](ClusterOptions& o) { o.wake = [&count] { ++count; }; }));
  }
  const int leader = cluster.wait_leader();
  ASSERT_NE(leader, 0);
  EXPECT_GE(wakes[leader].load(), 1);  // at least its role change
  const SessionId a = open_session(cluster, leader, "10.0.0.1:1");
  ASSERT_NE(a, 0u);
  for (int n = 0; n < 20; ++n) {
    ASSERT_TRUE(
        cluster.node(leader).submit(acquire(leader, a, n + 1, "t" + std::to_string(n), "name" + std::to_string(n))));
  }
  ASSERT_TRUE(cluster.pump_until([&] {
    for (int i : {1, 2, 3}) {
      if (cluster.commands(i).size() < 22) return false;
    }
    return cluster.node(leader).status().pending == 0;
  })) << cluster.commands(1).size()
      << " " << cluster.commands(2).size() << " " << cluster.commands(3).size();
  // The same entries at the same indexes everywhere, the first one TouchAll.
  for (int i : {1, 2, 3}) {
    ASSERT_EQ(cluster.server(i).applied.size(), cluster.server(leader).applied.size()) << i;
    for (std::size_t k = 0; k < cluster.server(i).applied.size(); ++k) {
      EXPECT_EQ(cluster.server(i).applied[k].index, cluster.server(leader).applied[k].index);
      EXPECT_EQ(cluster.server(i).applied[k].entry, cluster.server(leader).applied[k].entry);
      EXPECT_EQ(cluster.server(i).applied[k].results, cluster.server(leader).applied[k].results);
    }
    EXPECT_TRUE(is_touch_all(cluster.commands(i).front()));
    EXPECT_EQ(cluster.server(i).replica->table().get("name19").holders, 1u) << i;
    EXPECT_EQ(cluster.server(i).failure, "");
  }
  const ClusterStatus st = cluster.node(leader).status();
  EXPECT_EQ(st.role, raft::Role::kLeader);
  EXPECT_EQ(st.leader_id, static_cast<std::uint64_t>(leader));
  EXPECT_EQ(st.leader_client_address, "127.0.0." + std::to_string(leader) + ":53555");
  EXPECT_EQ(st.submitted, 21u);
  EXPECT_EQ(st.pending, 0u);
  EXPECT_EQ(st.touch_alls, 1u);
  EXPECT_EQ(st.loop_applied, cluster.server(leader).replica->last_index());
  EXPECT_GE(st.commit_index, st.loop_applied);
  // A command that breaks check_command is refused, and nothing is kept.
  EXPECT_EQ(cluster.node(leader).submit(acquire(leader, a, 30, "bad tag", "x")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cluster.node(leader).status().pending, 0u);
}

TEST(ClusterNode, AFollowersCommandReachesTheLeaderThroughTheForwarder) {
  TestCluster cluster;
  const auto [leader, follower, a] = start_with_a_followers_session(cluster);
  ASSERT_NE(a, 0u);
  const SessionRequest req = acquire(follower, a, 1, "t", "x");
  ASSERT_TRUE(cluster.node(follower).submit(req));
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(follower, req) != nullptr; }));
  EXPECT_EQ(cluster.result_of(follower, req)->answer.type, Answer::Type::kGranted);
  for (int i : {1, 2, 3}) {
    ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(i, req) != nullptr; })) << i;
  }
  EXPECT_EQ(cluster.node(follower).status().pending, 0u);
  EXPECT_EQ(cluster.node(follower).status().forwarded, 2u);
  EXPECT_EQ(cluster.node(leader).status().accepted, 2u);
  EXPECT_EQ(cluster.forwarder().delivered, 2);
  // A follower refuses a forwarded entry: only the leader proposes.
  EXPECT_EQ(cluster.node(follower).accept_forwarded(replication::encode_entry({0, {req}})).code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(cluster.node(leader).accept_forwarded("junk").code(), StatusCode::kCorruption);
}

TEST(ClusterNode, TheLeadersAdvanceTimeTimesOutAQueuedAcquireAtItsDeadline) {
  TestCluster cluster;
  cluster.start_all();
  const int leader = cluster.wait_leader();
  ASSERT_NE(leader, 0);
  const int follower = cluster.other_than(leader);
  const SessionId a = open_session(cluster, leader, "10.0.0.1:1");
  const SessionId b = open_session(cluster, follower, "10.0.0.2:2");
  ASSERT_TRUE(a != 0 && b != 0);
  ASSERT_TRUE(cluster.node(leader).submit(acquire(leader, a, 1, "h", "x")));
  const SessionRequest queued = acquire(follower, b, 1, "w", "x", 400);
  ASSERT_TRUE(cluster.node(follower).submit(queued));
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(follower, queued) != nullptr; }));
  ASSERT_EQ(cluster.result_of(follower, queued)->answer.type, Answer::Type::kQueued);
  std::int64_t queued_at = 0;
  for (const Applied& ap : cluster.server(follower).applied) {
    for (const Command& c : ap.entry.commands) {
      if (c == Command(queued)) queued_at = ap.results.time_ms;
    }
  }
  const auto seen_queued = Clock::now();
  // The follower's replica sees it time out, in an AdvanceTime at or after its deadline.
  std::int64_t timed_out_at = 0;
  ASSERT_TRUE(cluster.pump_until([&] {
    for (const Applied& ap : cluster.server(follower).applied) {
      for (std::size_t k = 0; k < ap.entry.commands.size(); ++k) {
        if (!std::holds_alternative<replication::AdvanceTime>(ap.entry.commands[k])) continue;
        for (const server::Completion& c : ap.results.commands[k].completions) {
          if (c.session == b && c.tag == "w" && c.type == server::Completion::Type::kTimedOut) {
            timed_out_at = ap.results.time_ms;
            return true;
          }
        }
      }
    }
    return false;
  }));
  const auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - seen_queued).count();
  std::printf("queued at log time %lld, timed out at %lld (+%lld ms); seen %lld ms after the queueing\n",
              static_cast<long long>(queued_at), static_cast<long long>(timed_out_at),
              static_cast<long long>(timed_out_at - queued_at), static_cast<long long>(waited));
  EXPECT_GE(timed_out_at, queued_at + 400);
  EXPECT_LE(timed_out_at, queued_at + 400 + 300);  // the leader proposes it when its clock reaches the deadline
  EXPECT_LE(waited, 1500);
  EXPECT_GE(cluster.node(leader).status().advances, 1u);
  EXPECT_EQ(cluster.node(follower).status().advances, 0u);  // only the leader
}

TEST(ClusterNode, ANewLeaderProposesTouchAllFirstAndReconfiguresOnlyWhatDiffers) {
  TestCluster cluster;
  cluster.start_all();
  for (int i : {1, 2, 3}) cluster.node(i).set_configuration({{"db", 3}, {"cache", 2}}, 60000);
  const int leader = cluster.wait_leader();
  ASSERT_NE(leader, 0);
  // The first leader finds the replicated configuration empty and reconfigures.
  ASSERT_TRUE(cluster.pump_until([&] {
    for (int i : {1, 2, 3}) {
      if (cluster.server(i).replica->session_timeout_ms() != 60000) return false;
    }
    return true;
  }));
  for (int i : {1, 2, 3}) {
    const auto cmds = cluster.commands(i);
    ASSERT_GE(cmds.size(), 2u);
    EXPECT_TRUE(is_touch_all(cmds[0]));
    EXPECT_TRUE(is_reconfigure(cmds[1]));
    EXPECT_EQ(cluster.server(i).replica->table().get("db").max, 3);
    EXPECT_EQ(cluster.server(i).replica->table().get("cache").kind, server::SemaphoreKind::kDefined);
  }
  const int follower = cluster.other_than(leader);
  const SessionId a = open_session(cluster, follower, "10.0.0.1:1");
  ASSERT_NE(a, 0u);
  std::size_t before = 0;
  ASSERT_TRUE(cluster.pump_until([&] {
    before = cluster.commands(follower).size();
    return before == cluster.commands(leader).size();
  }));

  // The leader dies; a follower's command waits for the next leader.
  const auto killed = Clock::now();
  cluster.stop(leader);
  const SessionRequest req = acquire(follower, a, 1, "after", "db");
  ASSERT_TRUE(cluster.node(follower).submit(req));
  const int next = cluster.wait_leader();
  ASSERT_NE(next, 0);
  ASSERT_NE(next, leader);
  ASSERT_TRUE(cluster.pump_until([&] {
    for (int i = 1; i <= 3; ++i) {
      if (cluster.running(i) && cluster.result_of(i, req) == nullptr) return false;
    }
    return true;
  }));
  std::printf("new leader %d; the follower's command applied %lld ms after the leader stopped\n", next,
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(Clock::now() - killed).count()));
  for (int i = 1; i <= 3; ++i) {
    if (!cluster.running(i)) continue;
    const auto cmds = cluster.commands(i);
    ASSERT_GT(cmds.size(), before);
    EXPECT_TRUE(is_touch_all(cmds[before])) << "node " << i << ": the new leader's first command";
    EXPECT_EQ(cluster.count_of(i, req), 1) << i;
    EXPECT_EQ(cluster.result_of(i, req)->answer.type, Answer::Type::kGranted);
    // The configuration was the same: no second Reconfigure.
    int reconfigures = 0;
    for (const Command& c : cmds) reconfigures += is_reconfigure(c);
    EXPECT_EQ(reconfigures, 1) << i;
  }
  EXPECT_EQ(cluster.node(next).status().touch_alls, 1u);

  // A reload on the leader: the next tick proposes the new configuration.
  cluster.node(next).set_configuration({{"db", 5}}, 30000);
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.server(follower).replica->session_timeout_ms() == 30000; }));
  EXPECT_EQ(cluster.server(follower).replica->table().get("db").max, 5);
  EXPECT_EQ(cluster.server(follower).replica->table().get("cache").kind, server::SemaphoreKind::kAbsent);
}

// What a server's configuration changes in the cluster's, as the leader's
// Reconfigure and a follower's reload log it (newuser26 item 2).
TEST(ConfigurationDifferences, NameEachChangedAddedAndRemovedLimitAndTheSessionTimeout) {
  replication::StateMachine replica;
  const OpenSession open = open_command(1, "10.0.0.1:1");
  const auto configured = replica.apply_entry(
      1, replication::Entry{1000, {replication::Reconfigure{{{"db", 3}, {"gone", 4}, {"lock", 1}}, 15000}, open}});
  ASSERT_TRUE(configured) << configured.status().to_string();
  ASSERT_EQ(configured->commands.size(), 2u);
  const SessionId session = configured->commands[1].answer.number;
  ASSERT_NE(session, 0u);
  SessionRequest create = acquire(1, session, 1, "c", "made");
  create.verb = RequestVerb::kCreate;
  create.value = 2;
  create.max = 2;
  ASSERT_TRUE(replica.apply_entry(2, replication::Entry{1001, {create}}));
  ASSERT_EQ(replica.table().get("made").kind, server::SemaphoreKind::kCreated);

  // The same configuration, in any order: none.
  EXPECT_TRUE(configuration_differences(replica, {{"lock", 1}, {"db", 3}, {"gone", 4}}, 15000).empty());

  const auto differences = configuration_differences(replica, {{"made", 5}, {"lock", 2}, {"db", 3}, {"new", 7}}, 3000);
  std::vector<std::string> said;
  for (const auto& difference : differences) said.push_back(describe(difference));
  EXPECT_EQ(said, (std::vector<std::string>{
                      "session_timeout_ms: 15000 in the cluster, 3000 in this server's file",
                      "[semaphores] gone: 4 in the cluster, not in this server's file",
                      "[semaphores] lock: 1 in the cluster, 2 in this server's file",
                      "[semaphores] made: a semaphore created by CREATE in the cluster (it stays one), 5 in this "
                      "server's file",
                      "[semaphores] new: not defined in the cluster, 7 in this server's file",
                  }));
}

TEST(ClusterNode, PendingCommandsWaitForALeaderAndAreSentWhenOneIsKnown) {
  TestCluster cluster;
  ASSERT_TRUE(cluster.start(1));
  // Alone of three: no leader, so the command is held.
  const OpenSession open = open_command(1, "10.0.0.9:9");
  ASSERT_TRUE(cluster.node(1).submit(open));
  const auto until = Clock::now() + milliseconds(1200);
  cluster.pump_until([&] { return Clock::now() >= until; }, milliseconds(2000));
  EXPECT_EQ(cluster.node(1).status().pending, 1u);
  EXPECT_EQ(cluster.node(1).status().leader_id, 0u);
  EXPECT_EQ(cluster.result_of(1, open), nullptr);
  ASSERT_TRUE(cluster.start(2));
  ASSERT_TRUE(cluster.start(3));
  ASSERT_NE(cluster.wait_leader(), 0);
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(1, open) != nullptr; }));
  EXPECT_EQ(cluster.count_of(1, open), 1);
  EXPECT_EQ(cluster.node(1).status().pending, 0u);
}

TEST(ClusterNode, ANodeRestartedFromItsSnapshotHandsItToTheLoopReplica) {
  TestCluster cluster;
  const auto small_snapshots = [](ClusterOptions& o) {
    o.snapshot_threshold = 8;
    o.snapshot_trailing = 2;
  };
  for (int i : {1, 2, 3}) ASSERT_TRUE(cluster.start(i, small_snapshots));
  const int leader = cluster.wait_leader();
  ASSERT_NE(leader, 0);
  const SessionId a = open_session(cluster, leader, "10.0.0.1:1");
  ASSERT_NE(a, 0u);
  // One entry per command (each waits for the previous): past the threshold.
  for (int n = 0; n < 30; ++n) {
    const SessionRequest req =
        acquire(leader, a, static_cast<std::uint64_t>(n + 1), "t" + std::to_string(n), "name" + std::to_string(n));
    ASSERT_TRUE(cluster.node(leader).submit(req));
    ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(leader, req) != nullptr; })) << n;
  }
  const int restarted = cluster.other_than(leader);
  ASSERT_TRUE(cluster.pump_until(
      [&] { return cluster.server(restarted).replica->last_index() == cluster.server(leader).replica->last_index(); }));
  cluster.stop(restarted);
  ASSERT_TRUE(cluster.start(restarted, small_snapshots));  // a fresh loop replica
  ASSERT_TRUE(cluster.pump_until(
      [&] { return cluster.server(restarted).replica->last_index() == cluster.server(leader).replica->last_index(); }));
  EXPECT_GE(cluster.server(restarted).restores, 1);
  EXPECT_LT(cluster.server(restarted).applied.size(), 30u);  // the rest came in the snapshot
  EXPECT_EQ(cluster.server(restarted).failure, "");
  EXPECT_EQ(cluster.server(restarted).replica->snapshot(), cluster.server(leader).replica->snapshot());
  EXPECT_EQ(cluster.server(restarted).replica->table().get("name29").holders, 1u);
}

// Every answer node i's replica gave to `command`, in log order.
std::vector<Answer::Type> answers_of(TestCluster& cluster, int i, const Command& command) {
  std::vector<Answer::Type> out;
  for (const Applied& a : cluster.server(i).applied) {
    for (std::size_t k = 0; k < a.entry.commands.size(); ++k) {
      if (a.entry.commands[k] == command) out.push_back(a.results.commands[k].answer.type);
    }
  }
  return out;
}

TEST(ClusterNode, ACommandSentAgainAfterTheLeaderIsLostIsAppliedOnce) {
  TestCluster cluster;
  const auto [leader, follower, a] = start_with_a_followers_session(cluster);
  ASSERT_NE(a, 0u);
  int third = 0;
  for (int i : {1, 2, 3}) third = (i != leader && i != follower) ? i : third;
  // The follower's loop is busy: it ticks but does not see its command
  // applied, so the command stays pending after it committed.
  cluster.server(follower).hold = true;
  const SessionRequest req = acquire(follower, a, 1, "t", "x");
  ASSERT_TRUE(cluster.node(follower).submit(req));
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.count_of(third, req) == 1; }));
  EXPECT_EQ(cluster.node(follower).status().pending, 1u);
  // The leader goes; the follower sends the command again to the next one.
  cluster.stop(leader);
  const int next = cluster.wait_leader();
  ASSERT_NE(next, 0);
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.count_of(third, req) == 2; }));
  cluster.server(follower).hold = false;
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.node(follower).status().pending == 0; }));
  EXPECT_GE(cluster.node(follower).status().resent, 1u);
  for (int i : {follower, third}) {
    ASSERT_TRUE(cluster.pump_until([&] { return cluster.count_of(i, req) == 2; })) << i;
    // In the log twice, applied once: the second copy is a duplicate.
    EXPECT_EQ(answers_of(cluster, i, req),
              (std::vector<Answer::Type>{Answer::Type::kGranted, Answer::Type::kDuplicate}))
        << i;
    EXPECT_EQ(cluster.server(i).replica->table().get("x").held, 1) << i;
    EXPECT_EQ(cluster.server(i).replica->sessions().at(a).last_seq, 1u) << i;
  }
}

TEST(ClusterNode, AForwardThatWasLostIsSentAgainAfterTwiceTheElectionTimeout) {
  TestCluster cluster;
  const auto [leader, follower, a] = start_with_a_followers_session(cluster);
  ASSERT_NE(a, 0u);
  cluster.forwarder().drop = true;  // the link loses what it carries
  const SessionRequest req = acquire(follower, a, 1, "t", "x");
  const auto sent = Clock::now();
  ASSERT_TRUE(cluster.node(follower).submit(req));
  cluster.pump_until([&] { return Clock::now() >= sent + milliseconds(300); }, milliseconds(1000));
  cluster.forwarder().drop = false;
  EXPECT_EQ(cluster.count_of(follower, req), 0);
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.count_of(follower, req) == 1; }));
  const auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - sent).count();
  std::printf("a lost forward was applied %lld ms after its submit (election timeout 500 ms)\n",
              static_cast<long long>(waited));
  EXPECT_GE(waited, 1000);  // 2 x election timeout
  EXPECT_LE(waited, 3000);
  EXPECT_EQ(cluster.node(follower).status().resent, 1u);
  EXPECT_EQ(answers_of(cluster, follower, req), std::vector<Answer::Type>{Answer::Type::kGranted});
}

TEST(ClusterNode, SubmitTakesOnlyItsOwnOrigin) {
  TestCluster cluster;
  cluster.start_all();
  const int leader = cluster.wait_leader();
  ASSERT_NE(leader, 0);
  const int other = cluster.other_than(leader);
  // Another server's origin is refused; origin 0 becomes this server's.
  EXPECT_EQ(cluster.node(leader).submit(open_command(other, "10.0.0.3:3")).code(), StatusCode::kInvalidArgument);
  OpenSession open = open_command(0, "10.0.0.3:4");
  ASSERT_TRUE(cluster.node(leader).submit(open));
  open.origin = static_cast<replication::ServerId>(leader);
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(leader, open) != nullptr; }));
  EXPECT_EQ(cluster.result_of(leader, open)->answer.type, Answer::Type::kOpened);
  EXPECT_EQ(cluster.node(leader).status().pending, 0u);
}

// The REMOVE check (audit28 F3) as the leader's status shows it: only the
// voters left count (a spare or standby never does, the removed one never
// does), the leader counts itself, and a voter is live when heard within an
// election timeout. Refused: with 1 of {1, 2, 3} down, removing the other
// follower, or the leader itself; allowed: removing the unreachable one, or
// any one with all heard.
TEST(RemoveCheck, CountsOnlyTheVotersLeftThatTheLeaderCanReach) {
  ClusterStatus now;
  now.configuration = {{1, "127.0.0.1:1", raft::ServerRole::kVoter},
                       {2, "127.0.0.2:1", raft::ServerRole::kVoter},
                       {3, "127.0.0.3:1", raft::ServerRole::kVoter},
                       {4, "127.0.0.4:1", raft::ServerRole::kSpare},
                       {5, "127.0.0.5:1", raft::ServerRole::kStandby}};
  now.last_contact_ms = {{2, 1500}, {3, 40}, {4, -1}, {5, -1}};
  constexpr std::int64_t kElection = 500;
  constexpr std::uint64_t kBehind = 2048;
  EXPECT_TRUE(remove_keeps_a_live_majority(now, 1, 2, kElection, kBehind));  // leaves 1 and 3, both live
  EXPECT_TRUE(remove_keeps_a_live_majority(now, 1, 4, kElection, kBehind));  // a spare: the voters stay 2 of 3 live
  const Status follower = remove_keeps_a_live_majority(now, 1, 3, kElection, kBehind);
  EXPECT_EQ(follower.code(), StatusCode::kUnavailable);
  EXPECT_NE(follower.message().find("removing server 3 would leave 2 voters, of which 1 are live"), std::string::npos)
      << follower.to_string();
  EXPECT_NE(follower.message().find("unreachable: server 2 (last heard 1500 ms ago)"), std::string::npos)
      << follower.to_string();
  const Status itself = remove_keeps_a_live_majority(now, 1, 1, kElection, kBehind);  // leaves 2 (down) and 3
  EXPECT_EQ(itself.code(), StatusCode::kUnavailable) << itself.to_string();
  now.last_contact_ms = {{2, 20}, {3, -1}};
  const Status never = remove_keeps_a_live_majority(now, 1, 2, kElection, kBehind);
  EXPECT_NE(never.message().find("server 3 (never heard from)"), std::string::npos) << never.to_string();
  now.last_contact_ms = {{2, 20}, {3, 30}};
  for (std::uint64_t id : {1, 2, 3}) EXPECT_TRUE(remove_keeps_a_live_majority(now, 1, id, kElection, kBehind)) << id;
  EXPECT_TRUE(reachable(kElection, kElection));
  EXPECT_FALSE(reachable(kElection + 1, kElection));
  EXPECT_FALSE(reachable(-1, kElection));
}

// A voter the leader hears from but whose match index is far below the
// commit index (more than the entries kept behind a snapshot: it may need
// one) does not count either (review28): the removal would wait for it to
// catch up. The refusal names it and how far behind it is.
TEST(RemoveCheck, AVoterFarBehindTheCommitIndexDoesNotCount) {
  ClusterStatus now;
  now.configuration = {{1, "127.0.0.1:1", raft::ServerRole::kVoter},
                       {2, "127.0.0.2:1", raft::ServerRole::kVoter},
                       {3, "127.0.0.3:1", raft::ServerRole::kVoter}};
  now.last_contact_ms = {{2, 20}, {3, 30}};
  now.commit_index = 15000;
  now.match_indexes = {{2, 3000}, {3, 14990}};
  constexpr std::int64_t kElection = 500;
  constexpr std::uint64_t kBehind = 2048;
  EXPECT_TRUE(remove_keeps_a_live_majority(now, 1, 2, kElection, kBehind));  // leaves 1 and 3, caught up
  const Status refused = remove_keeps_a_live_majority(now, 1, 3, kElection, kBehind);
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("removing server 3 would leave 2 voters, of which 1 are live"), std::string::npos)
      << refused.to_string();
  EXPECT_NE(refused.message().find("not caught up (more than 2048 entries below the commit index 15000): server 2 is "
                                   "12000 entries behind (match index 3000)"),
            std::string::npos)
      << refused.to_string();
  EXPECT_EQ(refused.message().find("unreachable"), std::string::npos) << refused.to_string();
  // At the bound it counts; an unknown match index is 0.
  now.match_indexes = {{2, 15000 - kBehind}};
  EXPECT_TRUE(remove_keeps_a_live_majority(now, 1, 3, kElection, kBehind));
  now.match_indexes = {};
  EXPECT_FALSE(remove_keeps_a_live_majority(now, 1, 3, kElection, kBehind));
  now.commit_index = kBehind;  // a young log: nobody is behind by more
  EXPECT_TRUE(remove_keeps_a_live_majority(now, 1, 3, kElection, kBehind));
}

}  // namespace
}  // namespace netsem::cluster::testing
