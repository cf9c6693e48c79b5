// Failures of a three-node cluster of real netsem-raft-node processes on
// 127.0.0.1-4: kill -9 and SIGSTOP of the leader, a lagging node caught up by
// a snapshot, a fourth server added and removed, a damaged data directory
// refused; and the throughput of batched proposals, with and without fsync's
// cost. Every process is killed by its pid when its test ends. Timings and
// rates are printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "raft/node_process.h"
#include "raft/partition_proxy.h"

namespace netsem::raft::testing {
namespace {

std::vector<int> others(int leader) {
  std::vector<int> out;
  for (int i : kThree) {
    if (i != leader) out.push_back(i);
  }
  return out;
}

long long ms_since(Clock::time_point start) {
  return static_cast<long long>(std::chrono::duration_cast<milliseconds>(Clock::now() - start).count());
}

std::string log_of(Cluster& cluster, int i) {
  auto line = cluster.node(i).request("log", "log ");
  return line ? *line : "none";
}

// Election 500 ms here: a follower stands after [500, 1000) ms, and a split
// vote (both followers standing at once) costs one more such wait, so even
// then a leader commits within 2 s. (With 800 ms a split vote took 3.5 s.)
TEST(RaftFailure, KilledLeaderIsReplacedWithinTwoSecondsAndCatchesUpAfterRestart) {
  const char* env = std::getenv("NETSEM_RAFT_ELECTION_MS");
  Cluster cluster(env != nullptr ? fast_timeouts()
                                 : std::vector<std::string>{"--election-ms", "500", "--heartbeat-ms", "50"});
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  for (int n = 0; n < 5; ++n)
    ASSERT_TRUE(ok(propose(cluster, leader, "a" + std::to_string(n), "p:a" + std::to_string(n))));

  const auto killed_at = Clock::now();
  cluster.node(leader).signal(SIGKILL);
  ASSERT_TRUE(cluster.node(leader).wait_exit(milliseconds(5000)));
  // Poll the survivors; propose on whichever leads until a proposal commits.
  long long resumed_ms = -1;
  int new_leader = 0;
  for (int attempt = 0; resumed_ms < 0 && ms_since(killed_at) < 10000; ++attempt) {
    for (int i : others(leader)) {
      auto s = cluster.node(i).status();
      ASSERT_TRUE(s);
      if ((*s)["role"] != "leader") continue;
      if (ok(propose(cluster, i, "k" + std::to_string(attempt), "p:after-kill", milliseconds(2000)))) {
        resumed_ms = ms_since(killed_at);
        new_leader = i;
        break;
      }
    }
    if (resumed_ms < 0) std::this_thread::sleep_for(milliseconds(20));
  }
  std::printf("leader %d killed: leader %d committed a proposal %lld ms later\n", leader, new_leader, resumed_ms);
  ASSERT_GE(resumed_ms, 0);
  EXPECT_LT(resumed_ms, 2000);

  for (int n = 0; n < 5; ++n)
    ASSERT_TRUE(ok(propose(cluster, new_leader, "b" + std::to_string(n), "p:b" + std::to_string(n))));
  // The old leader restarts from its data directory and catches up.
  ASSERT_TRUE(cluster.start(leader, cluster.bootstrap(3))) << cluster.stderr_of(leader);
  ASSERT_TRUE(cluster.wait_same_log(kThree, 11));
  const std::string expected = "log 11 p:a0 p:a1 p:a2 p:a3 p:a4 p:after-kill p:b0 p:b1 p:b2 p:b3 p:b4";
  for (int i : kThree) EXPECT_EQ(log_of(cluster, i), expected) << "node " << i;
  auto s = cluster.node(leader).status();
  EXPECT_EQ((*s)["role"], "follower");
  EXPECT_EQ((*s)["leader"], std::to_string(new_leader));
  EXPECT_EQ((*s)["violations"], "0");
}

TEST(RaftFailure, StoppedLeaderCannotCommitAndFollowsAfterContinue) {
  Cluster cluster(fast_timeouts());
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  ASSERT_TRUE(ok(propose(cluster, leader, "a", "p:before")));

  cluster.node(leader).signal(SIGSTOP);
  const auto stopped_at = Clock::now();
  // Read by the stopped process only once it continues.
  cluster.node(leader).send("propose stopped p:while-stopped");
  const int new_leader = cluster.wait_leader(others(leader));
  ASSERT_NE(new_leader, 0);
  std::printf("leader %d stopped: %d leads %lld ms later\n", leader, new_leader, ms_since(stopped_at));
  ASSERT_TRUE(ok(propose(cluster, new_leader, "b", "p:after")));
  // Stopped for well beyond the election timeout.
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_FALSE(cluster.node(leader).wait_prefix("done stopped ", milliseconds(100)));

  cluster.node(leader).signal(SIGCONT);
  auto answer = cluster.node(leader).wait_prefix("done stopped ", milliseconds(5000));
  ASSERT_TRUE(answer);
  std::printf("the woken leader's proposal: %s\n", answer->c_str());
  EXPECT_NE(answer->find(" err UNAVAILABLE"), std::string::npos) << *answer;
  EXPECT_TRUE(cluster.wait_status(
      leader, [&](auto& s) { return s["role"] == "follower" && s["leader"] == std::to_string(new_leader); }));
  ASSERT_TRUE(ok(propose(cluster, new_leader, "c", "p:last")));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 3));
  for (int i : kThree) EXPECT_EQ(log_of(cluster, i), "log 3 p:before p:after p:last") << "node " << i;
}

// A leader whose followers both died steps down after an election timeout
// with a batch in flight and more proposals queued behind it: each is
// answered UNAVAILABLE and the node lives on. (libraft fails the in-flight
// request while its state still says leader; proposing the next batch from
// that callback crashed libraft 0.15 with a SIGSEGV in raft_apply, which
// netsemd's cluster failure test found.)
TEST(RaftFailure, LeaderThatLostBothFollowersStepsDownWithProposalsQueued) {
  Cluster cluster(fast_timeouts());
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  ASSERT_TRUE(ok(propose(cluster, leader, "a", "p:before")));
  for (int i : others(leader)) {
    cluster.node(i).signal(SIGKILL);
    ASSERT_TRUE(cluster.node(i).wait_exit(milliseconds(5000)));
  }
  for (int n = 0; n < 20; ++n) cluster.node(leader).send("propose q" + std::to_string(n) + " p:q" + std::to_string(n));
  for (int n = 0; n < 20; ++n) {
    auto answer = cluster.node(leader).wait_prefix("done q" + std::to_string(n) + " ", milliseconds(10000));
    ASSERT_TRUE(answer) << "proposal " << n << " unanswered\n" << cluster.stderr_of(leader);
    EXPECT_NE(answer->find(" err UNAVAILABLE"), std::string::npos) << *answer;
  }
  EXPECT_FALSE(cluster.node(leader).wait_exit(milliseconds(200))) << cluster.stderr_of(leader);
  auto s = cluster.node(leader).status();
  ASSERT_TRUE(s) << cluster.stderr_of(leader);
  EXPECT_NE((*s)["role"], "leader");
}

// A leader cut off from both followers by a partition (a PartitionProxy
// between the servers: silence, not resets) cannot commit: what it accepts
// meanwhile never commits, it steps down once it has not heard a majority
// for an election timeout, the other two elect a leader and go on, and
// after the partition heals the old leader follows and its uncommitted
// entry is replaced by the majority's log.
TEST(RaftFailure, PartitionedLeaderCannotCommitAndTheMajorityGoesOn) {
  Cluster cluster(fast_timeouts());
  cluster.bind_privately();
  PartitionProxy proxy({{1, "127.0.0.1", "127.0.1.1", cluster.port()},
                        {2, "127.0.0.2", "127.0.1.2", cluster.port()},
                        {3, "127.0.0.3", "127.0.1.3", cluster.port()}});
  ASSERT_TRUE(proxy.ok()) << proxy.error();
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  ASSERT_TRUE(ok(propose(cluster, leader, "a", "p:before")));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 1));
  const int follower = others(leader).front();
  ASSERT_GT(proxy.connections(leader, follower) + proxy.connections(follower, leader), 0u)
      << "the servers do not talk through the proxy";

  proxy.isolate(leader);
  const auto cut_at = Clock::now();
  cluster.node(leader).send("propose cut p:while-cut");  // accepted by the old leader, never committed
  const int new_leader = cluster.wait_leader(others(leader));
  ASSERT_NE(new_leader, 0);
  ASSERT_NE(new_leader, leader);
  std::printf("leader %d cut off: %d leads %lld ms later\n", leader, new_leader, ms_since(cut_at));
  ASSERT_TRUE(ok(propose(cluster, new_leader, "b", "p:after")));
  // The old leader steps down by itself: it has heard no majority.
  EXPECT_TRUE(cluster.wait_status(
      leader, [](auto& s) { return s["role"] != "leader"; }, milliseconds(5000)));
  auto answer = cluster.node(leader).wait_prefix("done cut ", milliseconds(5000));
  ASSERT_TRUE(answer) << "the cut leader's proposal was never answered";
  EXPECT_NE(answer->find(" err "), std::string::npos) << *answer;

  proxy.heal();
  EXPECT_TRUE(cluster.wait_status(
      leader, [&](auto& s) { return s["role"] == "follower" && s["leader"] == std::to_string(new_leader); }));
  ASSERT_TRUE(ok(propose(cluster, new_leader, "c", "p:last")));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 3));
  for (int i : kThree) EXPECT_EQ(log_of(cluster, i), "log 3 p:before p:after p:last") << "node " << i;
}

TEST(RaftFailure, LaggingNodeIsCaughtUpBySnapshot) {
  // A snapshot the lagging node refuses (it may be taking its own when the
  // leader's comes) is sent again after 1 s, within the wait below; with
  // libraft's 30 s default it once stayed behind for the whole wait (CI).
  Cluster cluster(fast_timeouts(
      {"--snapshot-threshold", "32", "--snapshot-trailing", "8", "--max-batch", "4", "--install-snapshot-ms", "1000"}));
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  const int lagging = others(leader)[0];
  for (int n = 0; n < 5; ++n)
    ASSERT_TRUE(ok(propose(cluster, leader, "a" + std::to_string(n), "p:a" + std::to_string(n))));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 5));
  // Killed before its first snapshot (32 entries): any restore it does later
  // is the leader's snapshot.
  cluster.node(lagging).signal(SIGKILL);
  ASSERT_TRUE(cluster.node(lagging).wait_exit(milliseconds(5000)));
  auto bench = cluster.node(leader).request("bench 300 16", "bench ", milliseconds(30000));
  ASSERT_TRUE(bench);
  EXPECT_EQ(fields_of(*bench)["ok"], "300") << *bench;
  auto s = cluster.node(leader).status();
  EXPECT_GE(std::stoi((*s)["snapshots"]), 1);
  EXPECT_GT(std::stoi((*s)["snapshot"]), 5);

  ASSERT_TRUE(cluster.start(lagging, cluster.bootstrap(3))) << cluster.stderr_of(lagging);
  ASSERT_TRUE(cluster.wait_same_log(kThree, 305));
  auto caught_up = cluster.node(lagging).status();
  std::printf("node %d caught up: restores=%s snapshot=%s entries=%s\n", lagging, (*caught_up)["restores"].c_str(),
              (*caught_up)["snapshot"].c_str(), (*caught_up)["entries"].c_str());
  EXPECT_GE(std::stoi((*caught_up)["restores"]), 1);
  EXPECT_EQ((*caught_up)["violations"], "0");
  EXPECT_EQ(log_of(cluster, lagging), log_of(cluster, leader));
}

// Three nodes started; their leader commits "p:three", adds node 4 (started
// with no configuration: it waits to be added) as `role` and commits
// "p:four", which all four have. The leader; 0 (and the test failed) if not.
int three_and_a_fourth(Cluster& cluster, const std::string& role) {
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  EXPECT_NE(leader, 0);
  if (leader == 0 || !ok(propose(cluster, leader, "a", "p:three"))) return 0;
  EXPECT_TRUE(cluster.start(4, "")) << cluster.stderr_of(4);
  auto& l = cluster.node(leader);
  EXPECT_EQ(l.request("add 4 " + cluster.address(4), "change ", milliseconds(15000)).value_or("timeout"), "change ok");
  EXPECT_EQ(l.request("assign 4 " + role, "change ", milliseconds(15000)).value_or("timeout"), "change ok");
  const bool four = ok(propose(cluster, leader, "b", "p:four")) && cluster.wait_same_log({1, 2, 3, 4}, 2);
  EXPECT_TRUE(four);
  return four ? leader : 0;
}

TEST(RaftFailure, FourthServerAddedPromotedAndRemoved) {
  Cluster cluster(fast_timeouts());
  const int leader = three_and_a_fourth(cluster, "voter");
  ASSERT_NE(leader, 0);
  auto& l = cluster.node(leader);
  EXPECT_EQ(log_of(cluster, 4), "log 2 p:three p:four");
  EXPECT_EQ((*l.status())["config"], "1:voter,2:voter,3:voter,4:voter");
  // Only the leader may change the configuration.
  const int follower = others(leader)[0];
  EXPECT_NE(cluster.node(follower).request("remove 4", "change ").value_or("timeout").find("change err UNAVAILABLE"),
            std::string::npos);

  EXPECT_EQ(l.request("remove 4", "change ", milliseconds(15000)).value_or("timeout"), "change ok");
  EXPECT_EQ((*l.status())["config"], "1:voter,2:voter,3:voter");
  ASSERT_TRUE(ok(propose(cluster, leader, "c", "p:three-again")));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 3));
  // The removed server gets nothing more.
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(log_of(cluster, 4), "log 2 p:three p:four");
}

std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    out[entry.path().filename().string()] = bytes.str();
  }
  return out;
}

// A snapshot libraft cannot load (its data does not decompress, its .meta is
// empty) is refused as damage naming the snapshot: libraft 0.15 itself
// says only "io: LZ4F_decompress ..." or "short read ...", as an I/O error.
TEST(RaftFailure, DamagedSnapshotIsRefusedNamingIt) {
  Cluster cluster(fast_timeouts({"--snapshot-threshold", "32", "--snapshot-trailing", "8", "--max-batch", "4"}));
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  auto bench = cluster.node(leader).request("bench 300 16", "bench ", milliseconds(30000));
  ASSERT_TRUE(bench);
  ASSERT_TRUE(cluster.wait_same_log(kThree, 300));
  const int victim = others(leader)[0];
  ASSERT_TRUE(cluster.node(victim).request("quit", "bye", milliseconds(10000)));
  ASSERT_TRUE(cluster.node(victim).wait_exit(milliseconds(10000)));

  std::string newest;  // the snapshot libraft loads: the last by (term, index, timestamp) with its data
  std::array<unsigned long long, 3> newest_key{};
  const auto files = files_of(cluster.data_dir(victim));
  for (const auto& [name, bytes] : files) {
    std::array<unsigned long long, 3> key{};
    if (std::sscanf(name.c_str(), "snapshot-%llu-%llu-%llu.meta", &key[0], &key[1], &key[2]) == 3 &&
        (newest.empty() || key > newest_key) && files.contains(name.substr(0, name.size() - 5))) {
      newest = name.substr(0, name.size() - 5);
      newest_key = key;
    }
  }
  ASSERT_FALSE(newest.empty()) << "no snapshot in " << cluster.data_dir(victim);
  const std::string dir = cluster.data_dir(victim) + "/";
  const auto original = files_of(cluster.data_dir(victim));
  const auto refused = [&](const std::string& file, const std::string& bytes, const char* what) {
    std::ofstream(dir + file, std::ios::binary | std::ios::trunc) << bytes;
    std::filesystem::remove(cluster.stderr_path(victim));
    const auto before = files_of(cluster.data_dir(victim));
    ASSERT_TRUE(cluster.start(victim, cluster.bootstrap(3), /*wait=*/false));
    auto exit_status = cluster.node(victim).wait_exit(milliseconds(10000));
    ASSERT_TRUE(exit_status) << "a node with " << what << " started";
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 1);
    const std::string err = cluster.stderr_of(victim);
    std::printf("%s refused: %s", what, err.c_str());
    EXPECT_NE(err.find("netsem-raft-node: CORRUPTION"), std::string::npos) << err;
    EXPECT_NE(err.find(newest), std::string::npos) << err;
    EXPECT_TRUE(files_of(cluster.data_dir(victim)) == before) << what << ": the directory was changed";
    std::ofstream(dir + file, std::ios::binary | std::ios::trunc) << original.at(file);
  };
  std::string data = original.at(newest);
  data[data.size() / 2] = static_cast<char>(data[data.size() / 2] ^ 0x5a);
  refused(newest, data, "a damaged snapshot");
  refused(newest + ".meta", "", "an empty snapshot .meta");
  // Put back as it was, it starts and catches up.
  ASSERT_TRUE(cluster.start(victim, cluster.bootstrap(3))) << cluster.stderr_of(victim);
  ASSERT_TRUE(ok(propose(cluster, leader, "last", "p:last")));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 301));
}

// Node `victim`'s data directory made to hold `files` (name to bytes) and
// nothing else.
void put_back(Cluster& cluster, int victim, const std::map<std::string, std::string>& files) {
  for (const auto& entry : std::filesystem::directory_iterator(cluster.data_dir(victim))) {
    std::filesystem::remove(entry.path());
  }
  for (const auto& [name, bytes] : files)
    std::ofstream(cluster.data_dir(victim) + "/" + name, std::ios::binary) << bytes;
}

// Node `victim`'s file `name` made to hold `bytes`.
void write_file(Cluster& cluster, int victim, const std::string& name, const std::string& bytes) {
  std::ofstream(cluster.data_dir(victim) + "/" + name, std::ios::binary | std::ios::trunc) << bytes;
}

// Node `victim`, started on its data directory damaged by `damage`
// (with the three nodes' configuration when `bootstrap`), does not start:
// exit 1, CORRUPTION with each of `expected` and what to do, and the
// directory left as it was.
void expect_refused(Cluster& cluster, int victim, const char* what, const std::function<void()>& damage, bool bootstrap,
                    const std::vector<std::string>& expected) {
  damage();
  std::filesystem::remove(cluster.stderr_path(victim));
  const auto before = files_of(cluster.data_dir(victim));
  ASSERT_TRUE(cluster.start(victim, bootstrap ? cluster.bootstrap(3) : "", /*wait=*/false));
  auto exit_status = cluster.node(victim).wait_exit(milliseconds(10000));
  ASSERT_TRUE(exit_status) << "a node with " << what << " started";
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 1) << what;
  const std::string err = cluster.stderr_of(victim);
  std::printf("%s refused: %s", what, err.c_str());
  EXPECT_NE(err.find("netsem-raft-node: CORRUPTION: "), std::string::npos) << err;
  for (const std::string& part : expected) EXPECT_NE(err.find(part), std::string::npos) << what << ": " << err;
  EXPECT_NE(err.find("Restore the directory from a copy"), std::string::npos) << err;
  EXPECT_NE(err.find("`netsem cluster remove`"), std::string::npos) << err;
  EXPECT_EQ(err.find("libraft does not say which"), std::string::npos) << err;
  EXPECT_TRUE(files_of(cluster.data_dir(victim)) == before) << what << ": the directory was changed";
}

// Files missing from a data directory, or metadata libraft cannot read,
// refused naming what is wrong and what to do. Without its term and vote
// (metadata1 and metadata2 deleted, or both cut to nothing) libraft 0.15
// takes a directory with a log for a pristine one: with --bootstrap it
// wrote a first configuration and term 1 over the log and started (or said
// only "raft bootstrap: I/O error" when the log's first segment was there),
// without it started on its log having forgotten its vote. A metadata file
// of another format, and a log with a gap (its first segment, or its
// snapshots, gone), libraft names; the message says it is damage and what
// to do, no longer blaming the metadata files for the gap.
TEST(RaftFailure, ALogWithoutItsMetadataOrWithAGapIsRefusedNamingWhatIsWrong) {
  Cluster cluster(fast_timeouts({"--snapshot-threshold", "32", "--snapshot-trailing", "8", "--max-batch", "4"}));
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  ASSERT_TRUE(cluster.node(leader).request("bench 300 16", "bench ", milliseconds(30000)));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 300));
  const int victim = others(leader)[0];
  ASSERT_TRUE(cluster.node(victim).request("quit", "bye", milliseconds(10000)));
  ASSERT_TRUE(cluster.node(victim).wait_exit(milliseconds(10000)));

  const std::string dir = cluster.data_dir(victim) + "/";
  const auto original = files_of(cluster.data_dir(victim));
  std::string first_segment;
  std::vector<std::string> snapshots;
  for (const auto& [name, bytes] : original) {
    if (first_segment.empty() && std::regex_match(name, std::regex("[0-9]+-[0-9]+"))) first_segment = name;
    if (name.starts_with("snapshot-")) snapshots.push_back(name);
  }
  ASSERT_FALSE(first_segment.empty()) << "no closed segment in " << dir;
  ASSERT_FALSE(snapshots.empty()) << "no snapshot in " << dir;
  const auto refused = [&](const char* what, const std::function<void()>& damage, bool bootstrap,
                           const std::vector<std::string>& expected) {
    put_back(cluster, victim, original);
    expect_refused(cluster, victim, what, damage, bootstrap, expected);
  };
  const auto write = [&](const std::string& name, const std::string& bytes) {
    write_file(cluster, victim, name, bytes);
  };
  const std::string no_metadata = "raft data directory " + cluster.data_dir(victim) + " holds a log (";
  for (const bool bootstrap : {true, false}) {
    refused("no metadata",
            [&] {
              std::filesystem::remove(dir + "metadata1");
              std::filesystem::remove(dir + "metadata2");
            },
            bootstrap, {no_metadata, "but not its term and vote: metadata1 is missing and metadata2 is missing"});
  }
  refused("empty metadata",
          [&] {
            write("metadata1", "");
            write("metadata2", "");
          },
          true, {no_metadata, "metadata1 is cut short (0 of 32 bytes) and metadata2 is cut short (0 of 32 bytes)"});
  refused("metadata of another format",
          [&] {
            std::string bytes = original.at("metadata1");
            bytes[0] = 7;  // the format's 8 bytes, little-endian: 1 is libraft's
            write("metadata1", bytes);
          },
          true,
          {"raft init (" + cluster.data_dir(victim) + "): io: decode content of metadata1: bad format version 7"});
  const std::string gap = "the log has a gap before that segment (a segment or snapshot before it is missing)";
  refused("no first segment", [&] { std::filesystem::remove(dir + first_segment); }, true,
          {"raft start (" + cluster.data_dir(victim) + "): io: closed segment ", gap});
  refused("no snapshots",
          [&] {
            for (const std::string& name : snapshots) std::filesystem::remove(dir + name);
          },
          true, {"io: unexpected closed segment " + first_segment + ": first index should have been 1", gap});

  // Put back as it was, it starts and catches up.
  put_back(cluster, victim, original);
  ASSERT_TRUE(cluster.start(victim, cluster.bootstrap(3))) << cluster.stderr_of(victim);
  ASSERT_TRUE(ok(propose(cluster, leader, "last", "p:last")));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 301));
}

// The version libraft 0.15 keeps in a metadata file (bytes 8-15,
// little-endian); 0 when the file is not 32 bytes.
std::uint64_t metadata_version(const std::string& bytes) {
  std::uint64_t version = 0;
  if (bytes.size() != 32) return 0;
  for (int i = 15; i >= 8; --i) version = (version << 8) | static_cast<unsigned char>(bytes[i]);
  return version;
}

// One of the two metadata files deleted, cut short or grown, while the other
// says both must be whole (metadata2 there, or metadata1 past version 1):
// refused naming the file and what to do. libraft 0.15 started on the file
// left, whose term and vote may be older (a vote forgotten lets the server
// vote twice in one term). What libraft itself recovers from starts: a
// server added at run time has written its term once (metadata1 at version
// 1, no metadata2), and a first write of metadata2 torn short by a crash is
// dropped by libraft. Both whole but not one version apart, or each at the
// other's parity, is refused naming both versions.
TEST(RaftFailure, OneMetadataFileGoneOrCutShortIsRefusedATornFirstWriteIsNot) {
  Cluster cluster(fast_timeouts());
  // Node 4 is added as a standby (it gets the log and does not vote): it
  // writes the term it learns from the leader, once.
  const int leader = three_and_a_fourth(cluster, "standby");
  ASSERT_NE(leader, 0);
  // Node 4 wrote its term once; a crash that tore its first write of
  // metadata2 short leaves that file cut short. Both start.
  ASSERT_TRUE(cluster.node(4).request("quit", "bye", milliseconds(10000)));
  ASSERT_TRUE(cluster.node(4).wait_exit(milliseconds(10000)));
  const std::string joined = cluster.data_dir(4) + "/";
  const auto files = files_of(cluster.data_dir(4));
  ASSERT_TRUE(files.contains("metadata1")) << joined;
  EXPECT_EQ(metadata_version(files.at("metadata1")), 1u) << joined;
  ASSERT_FALSE(files.contains("metadata2")) << "node 4 wrote its term and vote more than once";
  ASSERT_TRUE(cluster.start(4, "")) << cluster.stderr_of(4);
  ASSERT_TRUE(cluster.node(4).request("quit", "bye", milliseconds(10000)));
  ASSERT_TRUE(cluster.node(4).wait_exit(milliseconds(10000)));
  write_file(cluster, 4, "metadata2", std::string(12, '\0'));
  ASSERT_TRUE(cluster.start(4, "")) << cluster.stderr_of(4);
  ASSERT_TRUE(ok(propose(cluster, leader, "c", "p:torn")));
  ASSERT_TRUE(cluster.wait_same_log({1, 2, 3, 4}, 3));

  // The leader stood for election: a term (metadata2) and its own vote
  // (metadata1) written since its bootstrap (metadata1 at version 1).
  const int victim = leader;
  ASSERT_TRUE(cluster.node(victim).request("quit", "bye", milliseconds(10000)));
  ASSERT_TRUE(cluster.node(victim).wait_exit(milliseconds(10000)));
  const int next = cluster.wait_leader({others(leader)[0], others(leader)[1], 4});
  ASSERT_NE(next, 0);

  const std::string dir = cluster.data_dir(victim) + "/";
  const auto original = files_of(cluster.data_dir(victim));
  const std::string one = original.at("metadata1");
  const std::string two = original.at("metadata2");
  ASSERT_GE(metadata_version(one), 3u) << dir;
  ASSERT_GE(metadata_version(two), 2u) << dir;
  const std::string prefix = "raft data directory " + cluster.data_dir(victim) + ": ";
  const auto refused = [&](const char* what, const std::function<void()>& damage, bool bootstrap,
                           const std::string& expected) {
    put_back(cluster, victim, original);
    expect_refused(cluster, victim, what, damage, bootstrap, {prefix + expected});
  };
  const std::string at1 = "metadata1 is at version " + std::to_string(metadata_version(one)) + ": ";
  const std::string at2 = "metadata2 is at version " + std::to_string(metadata_version(two)) + ": ";
  for (const bool bootstrap : {true, false}) {
    refused(
        "no metadata1", [&] { std::filesystem::remove(dir + "metadata1"); }, bootstrap,
        "metadata1 is missing, but " + at2);
  }
  refused(
      "no metadata2", [&] { std::filesystem::remove(dir + "metadata2"); }, true, "metadata2 is missing, but " + at1);
  refused(
      "metadata1 cut short", [&] { write_file(cluster, victim, "metadata1", one.substr(0, 20)); }, true,
      "metadata1 is cut short (20 of 32 bytes), but " + at2);
  refused(
      "metadata2 cut short", [&] { write_file(cluster, victim, "metadata2", two.substr(0, 16)); }, true,
      "metadata2 is cut short (16 of 32 bytes), but " + at1);
  refused(
      "metadata1 grown", [&] { write_file(cluster, victim, "metadata1", one + std::string(8, '\0')); }, true,
      "metadata1 is 40 bytes long (libraft writes 32)");
  // Both whole at versions not one apart, or at the wrong files' parity
  // (odd in metadata1, even in metadata2): libraft 0.15 started on the file
  // with the higher version, whose term and vote may be the older ones
  // (audit22, m_meta22.sh flip2: one byte of the older file's version).
  const auto at_version = [](std::string bytes, std::uint64_t version) {
    for (int i = 8; i < 16; ++i, version >>= 8) bytes[i] = static_cast<char>(version & 0xff);
    return bytes;
  };
  const auto versions = [&](const std::string& metadata1, const std::string& metadata2) {
    return "metadata1 is at version " + std::to_string(metadata_version(metadata1)) + " and metadata2 at version " +
           std::to_string(metadata_version(metadata2)) + ": libraft writes odd versions to metadata1";
  };
  const bool one_older = metadata_version(one) < metadata_version(two);
  std::string flipped = one_older ? one : two;
  flipped[8] = static_cast<char>(0xfe);
  const std::string flipped_one = one_older ? flipped : one;
  const std::string flipped_two = one_older ? two : flipped;
  refused(
      "the older file's version changed",
      [&] { write_file(cluster, victim, one_older ? "metadata1" : "metadata2", flipped); }, true,
      versions(flipped_one, flipped_two));
  const std::string swapped_one = at_version(one, metadata_version(two));
  const std::string swapped_two = at_version(two, metadata_version(one));
  refused(
      "the versions swapped",
      [&] {
        write_file(cluster, victim, "metadata1", swapped_one);
        write_file(cluster, victim, "metadata2", swapped_two);
      },
      true, versions(swapped_one, swapped_two));
  // Put back as it was, it starts and catches up.
  put_back(cluster, victim, original);
  ASSERT_TRUE(cluster.start(victim, cluster.bootstrap(3))) << cluster.stderr_of(victim);
  ASSERT_TRUE(ok(propose(cluster, next, "d", "p:back")));
  ASSERT_TRUE(cluster.wait_same_log({1, 2, 3, 4}, 4));
}

TEST(RaftFailure, DamagedDataDirectoryIsRefusedAndLeftAsItWas) {
  Cluster cluster(fast_timeouts());
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  ASSERT_TRUE(propose_numbered(cluster, leader, 0, 20));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 20));
  const int victim = others(leader)[0];
  // A clean stop closes the open segment.
  ASSERT_TRUE(cluster.node(victim).request("quit", "bye", milliseconds(10000)));
  auto status = cluster.node(victim).wait_exit(milliseconds(10000));
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);

  std::string segment;
  for (const auto& [name, bytes] : files_of(cluster.data_dir(victim))) {
    if (std::regex_match(name, std::regex("[0-9]+-[0-9]+"))) segment = name;
  }
  ASSERT_FALSE(segment.empty()) << "no closed segment in " << cluster.data_dir(victim);
  const std::string path = cluster.data_dir(victim) + "/" + segment;
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(0, std::ios::end);
    const std::streamoff middle = file.tellg() / 2;
    file.seekg(middle);
    char byte = 0;
    file.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x5a);
    file.seekp(middle);
    file.write(&byte, 1);
  }
  const auto before = files_of(cluster.data_dir(victim));

  ASSERT_TRUE(cluster.start(victim, cluster.bootstrap(3), /*wait=*/false));
  auto exit_status = cluster.node(victim).wait_exit(milliseconds(10000));
  ASSERT_TRUE(exit_status) << "a node with a damaged log started";
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 1);
  const std::string err = cluster.stderr_of(victim);
  std::printf("refused: %s", err.c_str());
  EXPECT_NE(err.find("netsem-raft-node: CORRUPTION"), std::string::npos) << err;
  EXPECT_NE(err.find(segment), std::string::npos) << err;
  // Nothing was repaired or dropped.
  EXPECT_EQ(files_of(cluster.data_dir(victim)), before);
}

// The open segment (entries were being appended to it when the node died):
// libraft 0.15 takes any batch there that fails its checksum for a torn write
// and drops it and all after it, so RaftNode checks first
// (raft/open_segments.h). Damage in the middle, with written batches after
// it, is refused and the directory left as it was, whether the batch's data
// or its header (its entry count: the length of the batch cannot be trusted
// then) is hit; a last batch torn is refused too (it may be an entry this
// node acknowledged), and with --repair (the operator says it lost power)
// the node starts and catches up from the leader. A file cut short inside a
// batch is refused even with --repair.
TEST(RaftFailure, DamageInTheOpenSegmentIsRefusedATornLastWriteNeedsRepair) {
  Cluster cluster(fast_timeouts());
  start_three(cluster);
  const int leader = cluster.wait_leader(kThree);
  ASSERT_NE(leader, 0);
  ASSERT_TRUE(propose_numbered(cluster, leader, 0, 20));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 20));
  // libraft closes the first open segments early; the entries after that
  // stay in the open one until the node stops.
  ASSERT_TRUE(propose_numbered(cluster, leader, 20, 40));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 40));
  const int victim = others(leader)[0];
  cluster.node(victim).kill_now();  // the open segment stays open

  std::string segment;
  for (const auto& [name, bytes] : files_of(cluster.data_dir(victim))) {
    const std::size_t last = bytes.find_last_not_of('\0');
    if (name.starts_with("open-") && last != std::string::npos && last > 256) segment = name;
  }
  ASSERT_FALSE(segment.empty()) << "no written open segment in " << cluster.data_dir(victim);
  const std::string path = cluster.data_dir(victim) + "/" + segment;
  const std::string original = files_of(cluster.data_dir(victim))[segment];
  const std::size_t written = original.find_last_not_of('\0') + 1;
  const auto write_segment = [&](const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  };

  // Each damaged copy is refused, and the directory left as it was.
  const auto refused = [&](const std::string& bytes, const std::string& expected, const char* what) {
    write_segment(bytes);
    std::filesystem::remove(cluster.stderr_path(victim));
    const auto before = files_of(cluster.data_dir(victim));
    ASSERT_TRUE(cluster.start(victim, cluster.bootstrap(3), /*wait=*/false));
    auto exit_status = cluster.node(victim).wait_exit(milliseconds(10000));
    ASSERT_TRUE(exit_status) << "a node with " << what << " started";
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 1);
    const std::string err = cluster.stderr_of(victim);
    std::printf("%s refused: %s", what, err.c_str());
    EXPECT_NE(err.find("CORRUPTION"), std::string::npos) << err;
    EXPECT_NE(err.find(segment + ": the batch at byte"), std::string::npos) << err;
    EXPECT_NE(err.find(expected), std::string::npos) << err;
    EXPECT_TRUE(files_of(cluster.data_dir(victim)) == before) << what << ": the directory was changed";
  };
  // The first batch's entry count (byte 8 + 8: after the format and the two
  // checksums) made larger: its length would cover the rest of the log.
  std::string count_hit = original;
  count_hit[17] = static_cast<char>(count_hit[17] ^ 0x01);
  refused(count_hit, "written data follows it", "a damaged entry count");
  std::string middle = original;
  middle[written / 2] = static_cast<char>(middle[written / 2] ^ 0x5a);
  refused(middle, "written data follows it", "damage in the middle");
  // Cut short inside the last batch's data, or inside the first batch's
  // header: libraft 0.15 read past its buffer there (heap corruption, an
  // abort); no crash leaves a file like that, so even --repair refuses it.
  refused(original.substr(0, written - 4), "the file was cut short", "a file cut inside a batch's data");
  refused(original.substr(0, 8 + 8 + 16), "the file was cut short", "a file cut inside a batch's header");
  cluster.set_extra_args(fast_timeouts({"--repair"}));
  refused(original.substr(0, written - 4), "--repair cannot drop it", "a cut file, with --repair");
  cluster.set_extra_args(fast_timeouts());
  write_segment(original);
  std::string torn = original;  // the last batch's last bytes never written
  for (std::size_t i = written - 8; i < written; ++i) torn[i] = 0;
  refused(torn, "start it with --repair", "a torn last batch");

  // The operator says it lost power: --repair drops the torn batch.
  cluster.set_extra_args(fast_timeouts({"--repair"}));
  ASSERT_TRUE(cluster.start(victim, cluster.bootstrap(3))) << cluster.stderr_of(victim);
  ASSERT_TRUE(ok(propose(cluster, leader, "last", "p:last")));
  ASSERT_TRUE(cluster.wait_same_log(kThree, 41));
}

TEST(RaftFailure, DataDirectoryInUseIsRefused) {
  Cluster cluster(fast_timeouts());
  ASSERT_TRUE(cluster.start(1, "1@" + cluster.address(1))) << cluster.stderr_of(1);
  NodeProcess second;
  ASSERT_TRUE(
      second.start({NETSEM_RAFT_NODE, "--id", "2", "--address", cluster.address(2), "--data-dir", cluster.data_dir(1)},
                   cluster.stderr_path(2)));
  auto status = second.wait_exit(milliseconds(10000));
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1);
  EXPECT_NE(cluster.stderr_of(2).find("netsem-raft-node: BUSY"), std::string::npos) << cluster.stderr_of(2);
  // The first one still leads its one-server cluster.
  EXPECT_EQ(cluster.wait_leader({1}), 1);
  EXPECT_TRUE(ok(propose(cluster, 1, "a", "p:alone")));
}

// Proposals committed per second on three loopback nodes, `n` commands of
// 64 bytes proposed at once on the leader.
double bench_rate(const std::vector<std::string>& args, const std::string& base, int n, std::string* line_out) {
  Cluster cluster(fast_timeouts(args), base);
  for (int i : kThree) {
    if (!cluster.start(i, cluster.bootstrap(3))) return -1;
  }
  const int leader = cluster.wait_leader(kThree);
  if (leader == 0) return -1;
  auto line = cluster.node(leader).request("bench " + std::to_string(n) + " 64", "bench ", milliseconds(60000));
  if (!line) return -1;
  *line_out = *line;
  auto f = fields_of(*line);
  if (f["ok"] != std::to_string(n)) return -1;
  return std::stod(f["rate"]);
}

TEST(RaftThroughput, BatchingAndWhatFsyncCosts) {
  std::string line;
  const double batched = bench_rate({}, "/tmp", 20000, &line);
  std::printf("batched, disk:      %s\n", line.c_str());
  const double single = bench_rate({"--max-batch", "1"}, "/tmp", 500, &line);
  std::printf("max-batch 1, disk:  %s\n", line.c_str());
  const double single_tmpfs = bench_rate({"--max-batch", "1"}, "/dev/shm", 2000, &line);
  std::printf("max-batch 1, tmpfs: %s\n", line.c_str());
  const double batched_tmpfs = bench_rate({}, "/dev/shm", 20000, &line);
  std::printf("batched, tmpfs:     %s\n", line.c_str());
  std::printf("proposals/s: batched %.0f, one per entry %.0f (x%.1f); on tmpfs (fsync free) %.0f and %.0f\n", batched,
              single, batched / single, batched_tmpfs, single_tmpfs);
  ASSERT_GT(batched, 0);
  ASSERT_GT(single, 0);
  EXPECT_GT(batched, 2 * single);
}

}  // namespace
}  // namespace netsem::raft::testing
