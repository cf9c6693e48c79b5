// Integration: netsemd on the replicated log (issue 16, docs/replication.md
// "The servers"). Three real netsemd processes on 127.0.0.1-3, each with a
// [cluster] section and a private secret file; raw protocol v1 clients on
// different servers: a grant through a follower (forwarded to the leader
// over a peer link), a queue on another server handed over by a RELEASE,
// then the leader killed with -9 and a client of a surviving server working
// on, fences rising throughout; a clean stop whose sessions end in the log;
// a forged peer link refused; the cluster figures of STATS and /metrics;
// sessions that outlive their connection (proposed 1.2: RESUMABLE, RESUME
// on another server, MINE, LEADER);
// a fourth server added at run time (CLUSTER ADD), one removed; a leader at
// max_connections that still takes a restarted follower's peer link; a
// server whose Raft metadata is gone, or one of its two files, refusing to
// start.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_runner.h"
#include "cluster/peer_link.h"
#include "cluster_leader.h"
#include "cluster_ports.h"
#include "common/unique_fd.h"
#include "net/descriptors.h"
#include "netsemd_harness.h"
#include "raft/partition_proxy.h"
#include "raft/raft_node.h"
#include "raft/state_machine.h"
#include "replication/entry.h"
#include "replication/state_machine.h"
#include "stats/promtool.h"
#include "support/cluster_change.h"
#include "support/eventually.h"
#include "support/free_port.h"
#include "support/http_client.h"
#include "support/line_server.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

constexpr int kServers = 3;     // the first configuration
constexpr int kMaxServers = 4;  // and one added at run time (join = on)
// Short, so that a test can wait for the log's expiry of a session.
constexpr int kSessionTimeoutMs = 3000;

class NetsemdCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    pick_cluster_ports(client_ports_, raft_ports_);
    write_cluster_secrets(dir_.path(), kMaxServers, "a-cluster-secret-of-the-test-0123456789");
    if (raft_proxy_) {
      std::vector<raft::testing::PartitionProxy::Server> links;
      // The fourth too (it listens once started): a test can hold back its
      // catch-up.
      for (int i = 0; i < kMaxServers; ++i) {
        links.push_back({static_cast<std::uint64_t>(i + 1), host(i), raft_bind_host(i), raft_ports_[i]});
      }
      proxy_ = std::make_unique<raft::testing::PartitionProxy>(links);
      ASSERT_TRUE(proxy_->ok()) << proxy_->error();
    }
    for (int i = 0; i < kServers; ++i) start(i);
  }

  std::string host(int i) const { return "127.0.0." + std::to_string(i + 1); }
  std::string client_address(int i) const { return host(i) + ":" + std::to_string(client_ports_[i]); }
  std::string raft_address(int i) const { return host(i) + ":" + std::to_string(raft_ports_[i]); }
  // Where server i's Raft listens when its links go through proxy_.
  std::string raft_bind_host(int i) const { return "127.0.1." + std::to_string(i + 1); }

  std::string config(int i, int limit = 1) const {
    std::string text =
        "[server]\nbind_address = " + host(i) +
        "\nbind_port = @PORT@\nstats_dir = @DIR@\ndata_dir = @DIR@\nlog_level = debug\n"
        "http_enabled = on\nhttp_address = " +
        host(i) + "\nhttp_port = 0\nstatus_interval_ms = 200\n" +
        (extra_server_config_.empty() ? "session_timeout_ms = " + std::to_string(kSessionTimeoutMs) + "\n"
                                      : extra_server_config_) +
        "[semaphores]\nlock = " + std::to_string(limit) +
        "\n"
        "[cluster]\nid = " +
        std::to_string(i + 1) + "\nsecret_file = " + cluster_secret_file(dir_.path(), i).string() + "\n" +
        raft_timeouts_;
    for (int j = 0; j < kMaxServers; ++j) {
      // The first three know nothing of the fourth; it knows them, itself,
      // and that it waits to be added.
      if (j >= kServers && j != i) continue;
      text += "server." + std::to_string(j + 1) + " = " + raft_address(j) + " " + client_address(j) + "\n";
    }
    if (i >= kServers) text += "join = on\n";
    if (raft_proxy_) text += "raft_bind_address = " + raft_bind_host(i) + "\n";
    if (const auto found = cluster_data_dirs_.find(i); found != cluster_data_dirs_.end()) {
      text += "data_dir = " + found->second.string() + "\n";
    }
    return text;
  }

  void start(int i) {
    std::string error;
    servers_[i] = try_start(i, &error);
    ASSERT_TRUE(servers_[i] != nullptr) << error;
  }
  // Server i started; null, and why in `error`, when it does not start.
  std::unique_ptr<Netsemd> try_start(int i, std::string* error) const {
    Netsemd::Options options;
    options.raw_config = config(i);
    options.port = client_ports_[i];
    options.data_dir = data_dir(i);
    return Netsemd::start(options, error);
  }
  std::filesystem::path data_dir(int i) const { return dir_.path() / ("data" + std::to_string(i + 1)); }

  std::unique_ptr<Client> connect(int i) {
    auto client = Client::connect(client_ports_[i], host(i).c_str());
    EXPECT_TRUE(client != nullptr) << "cannot connect to server " << i + 1;
    return client;
  }

  // Whether `client`'s ACQUIRE of one permit of `name` (timeout
  // `timeout_ms`) is granted within 10 s; the answer and the logs if not.
  ::testing::AssertionResult grants(Client& client, const std::string& tag, const std::string& name,
                                    int timeout_ms = 20000) const {
    const std::string answer = client.request(req::acquire(tag, name, 1, timeout_ms), 10s);
    if (answer.rfind(tag + " OK ", 0) == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << tag << ": " << answer << "\n" << logs();
  }
  // Whether it is queued, first in line, instead.
  ::testing::AssertionResult queues(Client& client, const std::string& tag, const std::string& name,
                                    int timeout_ms = 20000) const {
    const std::string answer = client.request(req::acquire(tag, name, 1, timeout_ms), 10s);
    if (answer == tag + " QUEUED 1") return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << tag << ": " << answer << "\n" << logs();
  }

  // kill -9 of server i, reaped; it is gone from servers_.
  void kill_server(int i) {
    servers_[i]->send_signal(SIGKILL);
    ASSERT_TRUE(servers_[i]->wait_exit(5s).has_value());
    servers_[i].reset();
  }

  // The leader the others elect once `old` lost it; -1 when none within 10 s.
  int leader_other_than(int old) const {
    int next = -1;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      next = leader(1s);
      if (next >= 0 && next != old) return next;
      std::this_thread::sleep_for(20ms);
    }
    return next;
  }

  // Starts the fourth server (join = on), which waits to be added.
  void start_fourth() {
    start(3);
    ASSERT_TRUE(servers_[3] != nullptr);
    ASSERT_TRUE(servers_[3]->wait_for_log("join = on", 5s)) << logs();
  }
  // The CLUSTER ADD of the fourth server, without a tag, and tagged `tag`.
  std::string fourth_add() const { return "CLUSTER ADD 4 " + raft_address(3) + " " + client_address(3); }
  std::string add_fourth(const std::string& tag) const { return tag + " " + fourth_add(); }

  // Grants and releases of lock through `client`, one after the other,
  // `times` times.
  void grant_and_release(Client& client, int times) const {
    for (int i = 0; i < times; ++i) {
      const std::string tag = std::to_string(i);
      ASSERT_TRUE(grants(client, "a" + tag, "lock"));
      ASSERT_EQ(client.request(req::release("r" + tag, "lock"), 10s).rfind("r" + tag + " OK", 0), 0u) << logs();
    }
  }

  // The running server whose log says it leads in the highest term; -1
  // when none does within `timeout`.
  int leader(std::chrono::milliseconds timeout = 10s) const { return cluster_leader(servers_, timeout); }

  // A server's disk fails while it runs (below).
  void disk_fails(int bad, int good);

  // Server i's /readyz once it answers `status` with a body that holds
  // `body_has` ("" for any), asked every 100 ms for at most 10 s (a server
  // still starting answers 503 with {"status":"starting"}); a failure of
  // the test and the last response if it never does.
  test_support::HttpResponse readyz_becomes(int i, int status, std::string_view body_has = {}) const {
    const auto readyz = [this, i] {
      const std::uint16_t port = test_support::http_port_from_log(servers_[i]->log());
      test_support::HttpConnection connection(port, host(i).c_str());
      std::optional<test_support::HttpResponse> response;
      if (connection.ok() && connection.send_request("GET", "/readyz")) response = connection.read_response(5s, false);
      return response.value_or(test_support::HttpResponse{});
    };
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    test_support::HttpResponse last;
    while (std::chrono::steady_clock::now() < deadline) {
      last = readyz();
      if (last.status == status && last.body.find(body_has) != std::string::npos) return last;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "server " << i + 1 << " /readyz: " << last.status << " " << last.body << "\n" << logs();
    return last;
  }

  // The leader's CLUSTER STATUS JSON, asked of every running server until
  // one says it leads (the highest term's); "" when none within 10 s. Its
  // index in `index`.
  std::string leader_status(int* index = nullptr) const {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    do {
      std::string best;
      std::uint64_t best_term = 0;
      for (int i = 0; i < kMaxServers; ++i) {
        if (servers_[i] == nullptr) continue;
        auto c = Client::connect(client_ports_[i], host(i).c_str());
        if (c == nullptr) continue;
        const std::string answer = c->request("ls CLUSTER STATUS", 2s);
        if (answer.rfind("ls OK ", 0) != 0) continue;
        const nlohmann::json view = nlohmann::json::parse(answer.substr(6), nullptr, false);
        if (!view.is_object() || view.value("role", std::string()) != "leader") continue;
        if (view.value("term", std::uint64_t{0}) < best_term) continue;
        best_term = view.value("term", std::uint64_t{0});
        best = answer.substr(6);
        if (index != nullptr) *index = i;
      }
      if (!best.empty()) return best;
      std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return "";
  }
  // `request` ("CLUSTER REMOVE 3", "CLUSTER ADD 4 ...", no tag) sent to
  // the leader until it took effect: a TIMEOUT (the leader lost its
  // leadership) is looked at, and sent again if the change did not happen
  // (test_support::cluster_change_done); any other ERR fails.
  ::testing::AssertionResult changes(const std::string& request, std::chrono::milliseconds per_try = 30s) const {
    std::istringstream words(request);
    std::string verb, action;
    test_support::ClusterChange change;
    words >> verb >> action >> change.id;
    change.add = action == "ADD";
    return test_support::cluster_change_done(
        change,
        [&](int attempt) {
          int to = -1;
          if (leader_status(&to).empty()) return std::string();
          auto c = Client::connect(client_ports_[to], host(to).c_str());
          if (c == nullptr) return std::string();
          const std::string tag = "ch" + std::to_string(attempt);
          const std::string answer = c->request(tag + " " + request, per_try);
          return answer.rfind(tag + " ", 0) == 0 ? answer.substr(tag.size() + 1) : answer;
        },
        [this] { return leader_status(); });
  }
  // The same with `netsem cluster add|remove` (`args` after the
  // subcommand's words): exit 0 is OK, 75 TIMEOUT. The last run in `last`.
  ::testing::AssertionResult cli_changes(const std::vector<std::string>& args, NetsemRun* last) const {
    test_support::ClusterChange change;
    const auto at = std::find(args.begin(), args.end(), "cluster");
    change.add = at != args.end() && at + 1 != args.end() && at[1] == "add";
    change.id = at != args.end() && at + 2 < args.end() ? std::stoull(at[2]) : 0;
    return test_support::cluster_change_done(
        change,
        [&](int) {
          *last = run_netsem(args, {}, 30s);
          if (last->exit_code == 0) return std::string("OK");
          if (last->exit_code == 75) return std::string("TIMEOUT");
          return "ERR exit " + std::to_string(last->exit_code) + ": " + last->err;
        },
        [this] { return leader_status(); });
  }

  // A number of STATS, asked through `session` (of the server it is connected to).
  static std::uint64_t stats_number(Client& session, const char* name) {
    const std::string answer = session.request("st STATS", 10s);
    EXPECT_EQ(answer.rfind("st OK {", 0), 0u) << answer;
    if (answer.rfind("st OK {", 0) != 0) return 0;
    return nlohmann::json::parse(answer.substr(6)).at(name).get<std::uint64_t>();
  }

  std::string logs() const {
    std::string all;
    for (int i = 0; i < kMaxServers; ++i) {
      if (servers_[i] != nullptr) all += "--- server " + std::to_string(i + 1) + ":\n" + servers_[i]->log();
    }
    return all;
  }

  // Lines added to each server's [server] section (set before SetUp).
  std::string extra_server_config_;
  // The [cluster] section's Raft timeouts (set before SetUp).
  std::string raft_timeouts_ = "election_timeout_ms = 500\nheartbeat_timeout_ms = 50\n";
  // A [cluster] data_dir for server i (set before SetUp).
  std::map<int, std::filesystem::path> cluster_data_dirs_;
  // Whether the first three servers' Raft links go through proxy_, which
  // can cut them while their clients still reach them (set before SetUp).
  bool raft_proxy_ = false;
  std::unique_ptr<raft::testing::PartitionProxy> proxy_;
  TempDir dir_;
  std::array<std::uint16_t, kMaxServers> client_ports_{};
  std::array<std::uint16_t, kMaxServers> raft_ports_{};
  std::array<std::unique_ptr<Netsemd>, kMaxServers> servers_;
};

TEST_F(NetsemdCluster, GrantsQueuesAndHandsOverAcrossServersAndSurvivesTheLeadersDeath) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << "no leader elected\n" << logs();
  const int first = (lead + 1) % kServers;   // a follower
  const int second = (lead + 2) % kServers;  // the other follower

  // A client of a follower: its OpenSession and ACQUIRE are forwarded to the
  // leader over a peer link, and answered once the follower applied them.
  auto a = connect(first);
  ASSERT_TRUE(a != nullptr);
  const std::string granted = a->request(req::acquire("a1", "lock", 1, 20000), 10s);
  ASSERT_EQ(granted.rfind("a1 OK ", 0), 0u) << granted << "\n" << logs();
  const std::uint64_t fence1 = fence_of(granted);

  // A client of the other follower queues behind it; a RELEASE on the first
  // server grants it, with a higher fence.
  auto b = connect(second);
  ASSERT_TRUE(b != nullptr);
  EXPECT_TRUE(queues(*b, "b1", "lock"));
  EXPECT_EQ(a->request(req::release("r1", "lock"), 10s).rfind("r1 OK", 0), 0u) << logs();
  const std::string handed = b->read_line(10s).value_or("");
  ASSERT_EQ(handed.rfind("b1 OK ", 0), 0u) << handed << "\n" << logs();
  const std::uint64_t fence2 = fence_of(handed);
  EXPECT_GT(fence2, fence1);
  // Every replica applied the same: GET on the first server sees the holder.
  EXPECT_EQ(a->request("g GET lock", 10s).rfind("g OK ", 0), 0u);

  // The leader dies; the surviving servers elect another and go on.
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(kill_server(lead));
  const std::string released = b->request(req::release("r2", "lock"), 15s);
  const auto answered_at = std::chrono::steady_clock::now();
  EXPECT_EQ(released.rfind("r2 OK", 0), 0u) << released << "\n" << logs();
  std::printf(
      "kill -9 of the leader to the next answer (a RELEASE via a follower): %lld ms\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(answered_at - killed_at).count()));
  const std::string again = a->request(req::acquire("a2", "lock", 1, 20000), 15s);
  ASSERT_EQ(again.rfind("a2 OK ", 0), 0u) << again << "\n" << logs();
  EXPECT_GT(fence_of(again), fence2);
  EXPECT_NE(leader(), lead);
}

// CLUSTER FENCES / netsem cluster raise-fences (after a restore from a
// backup copy): the leader commits RaiseFences and answers the new last
// fence; every server's next grant is above it; a follower names the
// leader; the CLI finds the leader itself.
TEST_F(NetsemdCluster, RaisingTheFencesPutsEveryServersNextGrantAboveThem) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  auto a = connect(follower);
  ASSERT_TRUE(a != nullptr);
  const std::string granted = a->request(req::acquire("a1", "lock", 1, 20000), 10s);
  ASSERT_EQ(granted.rfind("a1 OK ", 0), 0u) << granted << "\n" << logs();
  const std::uint64_t fence = fence_of(granted);
  ASSERT_EQ(a->request(req::release("r1", "lock"), 10s).rfind("r1 OK", 0), 0u) << logs();

  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const std::string raised = admin->request("f1 CLUSTER FENCES 1000", 10s);
  ASSERT_EQ(raised.rfind("f1 OK ", 0), 0u) << raised << "\n" << logs();
  const std::uint64_t last = fence_of(raised);
  EXPECT_EQ(last, fence + 1000) << raised;
  EXPECT_EQ(admin->request("f2 CLUSTER FENCES 0", 5s).rfind("f2 ERR BAD_ARG ", 0), 0u);
  const std::string refused = a->request("f3 CLUSTER FENCES 5", 5s);
  EXPECT_EQ(refused.rfind("f3 ERR BUSY not the leader; the leader is server " + std::to_string(lead + 1), 0), 0u)
      << refused;

  // The follower's client and the leader's: both above it.
  const std::string again = a->request(req::acquire("a2", "lock", 1, 20000), 10s);
  ASSERT_EQ(again.rfind("a2 OK ", 0), 0u) << again << "\n" << logs();
  EXPECT_GT(fence_of(again), fence + 1000);
  const std::string other = admin->request(req::acquire("a3", "other", 1, 20000), 10s);
  ASSERT_EQ(other.rfind("a3 OK ", 0), 0u) << other << "\n" << logs();
  EXPECT_GT(fence_of(other), fence_of(again));

  // The CLI, asked of a follower, raises them on the leader.
  const NetsemRun cli =
      run_netsem({"--server", client_address(follower), "cluster", "raise-fences", "1000000"}, {}, 20s);
  EXPECT_EQ(cli.exit_code, 0) << cli.out << cli.err << logs();
  EXPECT_NE(cli.out.find("the last fence is " + std::to_string(fence_of(other) + 1000000)), std::string::npos)
      << cli.out << cli.err;
  const NetsemRun bad = run_netsem({"--server", client_address(follower), "cluster", "raise-fences", "0"}, {}, 10s);
  EXPECT_EQ(bad.exit_code, 2) << bad.out << bad.err;
  const std::string third = connect((lead + 2) % kServers)->request(req::acquire("a4", "third", 1, 20000), 10s);
  ASSERT_EQ(third.rfind("a4 OK ", 0), 0u) << third << "\n" << logs();
  EXPECT_GT(fence_of(third), fence_of(other) + 1000000);
}

// Without the admin right (admin_networks), CLUSTER FENCES is DENIED and
// the fences go on from where they were.
// CLUSTER FENCES to a leader that loses its majority before the raise
// commits (both followers frozen: it steps down after an election timeout)
// is answered TIMEOUT, its outcome unknown (ClusterRuntime's kCancelled, as
// an ADD or REMOVE then; it was untested, note26 §7 item 2), not BUSY (which
// says nothing happened) and not never. Once a leader is elected again the
// raise is either in the log or not: a second raise of the same amount puts
// the last fence 1000 or 2000 above the fence before, and the next grant
// above it, on any server (raising again is safe, as the CLI says).
TEST_F(NetsemdCluster, ARaiseOfTheFencesWhoseLeaderLostItsMajorityIsAnsweredTimeoutAndCanBeRepeated) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const std::string granted = admin->request(req::acquire("a1", "lock", 1, 20000), 10s);
  ASSERT_EQ(granted.rfind("a1 OK ", 0), 0u) << granted << "\n" << logs();
  const std::uint64_t fence = fence_of(granted);
  ASSERT_EQ(admin->request(req::release("r1", "lock"), 10s).rfind("r1 OK", 0), 0u) << logs();
  std::string answer;
  {
    const Frozen one(*servers_[(lead + 1) % kServers]);
    const Frozen two(*servers_[(lead + 2) % kServers]);
    admin->send_line("f1 CLUSTER FENCES 1000");
    // The leader steps down within about an election timeout (500 ms).
    const auto line = admin->read_line(10s);
    ASSERT_TRUE(line.has_value()) << "no answer while the followers were frozen\n" << logs();
    answer = *line;
  }
  EXPECT_EQ(answer, "f1 TIMEOUT") << logs();
  // The session log's event, its words percent-encoded.
  EXPECT_NE(servers_[lead]->log().find("cluster change timed out session=1 "), std::string::npos) << logs();
  EXPECT_NE(servers_[lead]->log().find("stopped%20leading%20before%20the%20raise%20of%20the%20fences%20committed;"
                                       "%20its%20outcome%20is%20unknown"),
            std::string::npos)
      << logs();

  int next = -1;
  ASSERT_FALSE(leader_status(&next).empty()) << "no leader after the thaw\n" << logs();
  auto again = connect(next);
  ASSERT_TRUE(again != nullptr);
  const std::string raised = again->request("f2 CLUSTER FENCES 1000", 10s);
  ASSERT_EQ(raised.rfind("f2 OK ", 0), 0u) << raised << "\n" << logs();
  const std::uint64_t last = fence_of(raised);
  EXPECT_TRUE(last == fence + 1000 || last == fence + 2000) << raised << " after fence " << fence;
  std::printf("the raise answered TIMEOUT %s; the second one's last fence: %llu (fence before %llu)\n",
              last == fence + 2000 ? "committed" : "was dropped", static_cast<unsigned long long>(last),
              static_cast<unsigned long long>(fence));
  for (int i = 0; i < kServers; ++i) {
    auto c = connect(i);
    ASSERT_TRUE(c != nullptr);
    const std::string name = "after" + std::to_string(i);
    const std::string next_grant = c->request(req::acquire("a2", name, 1, 20000), 10s);
    ASSERT_EQ(next_grant.rfind("a2 OK ", 0), 0u) << next_grant << "\n" << logs();
    EXPECT_GT(fence_of(next_grant), last) << "server " << i + 1;
  }
}

class NetsemdClusterNoAdmins : public NetsemdCluster {
 protected:
  void SetUp() override {
    extra_server_config_ =
        "session_timeout_ms = " + std::to_string(kSessionTimeoutMs) + "\nadmin_networks = 10.0.0.0/8\n";
    NetsemdCluster::SetUp();
  }
};

TEST_F(NetsemdClusterNoAdmins, RaisingTheFencesNeedsTheAdminRight) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const std::string granted = admin->request(req::acquire("a1", "lock", 1, 20000), 10s);
  ASSERT_EQ(granted.rfind("a1 OK ", 0), 0u) << granted << "\n" << logs();
  const std::string denied = admin->request("f1 CLUSTER FENCES 1000", 10s);
  EXPECT_EQ(denied.rfind("f1 ERR DENIED ", 0), 0u) << denied;
  const std::string next = admin->request(req::acquire("a2", "other", 1, 20000), 10s);
  ASSERT_EQ(next.rfind("a2 OK ", 0), 0u) << next << "\n" << logs();
  EXPECT_EQ(fence_of(next), fence_of(granted) + 1);
}

TEST_F(NetsemdCluster, ACleanStopLeavesItsSessionsToTheirTimeout) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int stopping = lead;
  const int other = (lead + 1) % kServers;
  auto holder = connect(stopping);
  ASSERT_TRUE(holder != nullptr);
  ASSERT_TRUE(grants(*holder, "h", "lock"));
  auto waiter = connect(other);
  ASSERT_TRUE(waiter != nullptr);
  ASSERT_TRUE(queues(*waiter, "w", "lock"));
  // SIGTERM: the holder is told SHUTDOWN, and a client may work on under
  // its lease (docs/client.md) until the session timeout. So the others do
  // not grant its permit before the log's expiry: not at the stop.
  const auto stopped_at = std::chrono::steady_clock::now();
  servers_[stopping]->send_signal(SIGTERM);
  EXPECT_EQ(holder->read_line(5s).value_or("").rfind("* ERR SHUTDOWN", 0), 0u) << logs();
  const auto status = servers_[stopping]->wait_exit(5s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << logs();
  servers_[stopping].reset();
  // The waiter pings (as a client does at a third of the session timeout),
  // so that its own session stays; it notes when its grant comes.
  std::string granted;
  auto granted_at = std::chrono::steady_clock::now();
  for (int ping = 0; granted.empty() && ping < 20; ++ping) {
    waiter->send_line("p PING");
    for (;;) {
      const auto line = waiter->read_line(5s);
      if (!line || *line == "p PONG") break;
      granted = *line;
      granted_at = std::chrono::steady_clock::now();
    }
    if (granted.empty()) std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(granted.rfind("w OK ", 0), 0u) << granted << "\n" << logs();
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(granted_at - stopped_at);
  std::printf("SIGTERM of the leader to its holder's successor's grant: %lld ms (session timeout %d ms)\n",
              static_cast<long long>(waited.count()), kSessionTimeoutMs);
  EXPECT_GE(waited.count(), kSessionTimeoutMs);
}

TEST_F(NetsemdCluster, ARestartedServerNeverGivesItsNewClientsAnOldSessionsAnswers) {
  // A server's previous run opened sessions in the log; a restarted server
  // replays those entries while it catches up. Its new clients must get
  // their own sessions and answers, never the old ones'.
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  {
    auto old_client = connect(follower);
    ASSERT_TRUE(old_client != nullptr);
    ASSERT_EQ(old_client->request(req::create("c", "counter", 0, 100), 10s), "c OK") << logs();
    ASSERT_EQ(old_client->request(req::post("p", "counter"), 10s), "p OK 1") << logs();
    ASSERT_NO_FATAL_FAILURE(kill_server(follower));
  }
  start(follower);
  auto fresh = connect(follower);
  ASSERT_TRUE(fresh != nullptr);
  // Its own POST: applied once, answered with its own value.
  EXPECT_EQ(fresh->request(req::post("y", "counter"), 10s), "y OK 2") << logs();
  EXPECT_EQ(fresh->request(req::get("g", "counter"), 10s).rfind("g OK 2 ", 0), 0u) << logs();
}

TEST_F(NetsemdCluster, AServerCutOffFromTheMajorityAnswersNoPingOrRead) {
  // A PING renews a client's lease (docs/client.md). A server that cannot
  // reach a majority must not answer it: the majority expires the session
  // after its timeout and may grant its permits, so its client has to see
  // silence and stop. Reads likewise wait for the log (no stale answer).
  ASSERT_GE(leader(), 0) << logs();
  const int alone = 0;
  auto client = connect(alone);
  ASSERT_TRUE(client != nullptr);
  // A holder: its session is in the log, and its PONGs renew its lease.
  ASSERT_TRUE(grants(*client, "h", "lock"));
  ASSERT_EQ(client->request(req::ping("p0"), 10s), "p0 PONG") << logs();
  for (int i = 1; i < kServers; ++i) servers_[i]->send_signal(SIGSTOP);
  client->send_line(req::ping("p1"));
  client->send_line(req::get("g1", "lock"));
  const auto silent = client->read_line(2s);
  for (int i = 1; i < kServers; ++i) servers_[i]->send_signal(SIGCONT);
  EXPECT_FALSE(silent.has_value()) << *silent << "\n" << logs();
  // The majority back: both are answered, in order.
  EXPECT_EQ(client->read_line(15s).value_or(""), "p1 PONG") << logs();
  EXPECT_EQ(client->read_line(10s).value_or("").rfind("g1 OK ", 0), 0u) << logs();
}

TEST_F(NetsemdCluster, AFollowersClientThatDisconnectsGivesItsPermitBackAtOnce) {
  // The single server's rule, on the log: a connection that ends (not a
  // server's stop) ends its session, and the permit goes to the next waiter
  // now, not at the session timeout.
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  auto holder = connect(follower);
  ASSERT_TRUE(holder != nullptr);
  ASSERT_TRUE(grants(*holder, "h", "lock"));
  auto waiter = connect(lead);
  ASSERT_TRUE(waiter != nullptr);
  ASSERT_TRUE(queues(*waiter, "w", "lock"));
  const auto closed_at = std::chrono::steady_clock::now();
  holder.reset();  // the connection closes
  const std::string granted = waiter->read_line(std::chrono::milliseconds(kSessionTimeoutMs / 2)).value_or("");
  EXPECT_EQ(granted.rfind("w OK ", 0), 0u) << granted << "\n" << logs();
  std::printf(
      "a follower's client closed to the next grant: %lld ms\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - closed_at).count()));
}

// In a cluster a connection's session begins when the log opens it ("session
// began", with the log's id). A connection that never needed one (a client
// that only connected, a follower's peer link to the leader) logged "session
// ended session=0" when it closed, for a session that never was.
TEST_F(NetsemdCluster, AConnectionThatNeverHadASessionLogsNoSessionEnd) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  ASSERT_TRUE(connect(lead) != nullptr);  // connects, says nothing, closes
  // The follower forwards this client's requests over its peer link to the
  // leader; the follower's stop closes that link.
  auto holder = connect(follower);
  ASSERT_TRUE(holder != nullptr);
  ASSERT_TRUE(grants(*holder, "h", "lock"));
  holder.reset();
  ASSERT_TRUE(servers_[follower]->wait_for_log("session ended session=")) << logs();
  servers_[follower]->send_signal(SIGTERM);
  ASSERT_TRUE(servers_[follower]->wait_exit(10s).has_value()) << logs();
  // A session of the leader's own that ends after both: its line comes last.
  auto last = connect(lead);
  ASSERT_TRUE(last != nullptr);
  ASSERT_TRUE(grants(*last, "l", "lock"));
  last.reset();
  ASSERT_TRUE(servers_[lead]->wait_for_log("cause=close")) << logs();
  EXPECT_EQ(servers_[lead]->log().find("session ended session=0 "), std::string::npos) << logs();
  EXPECT_EQ(servers_[follower]->log().find("session ended session=0 "), std::string::npos) << logs();
}

TEST_F(NetsemdCluster, AReloadedLimitIsReplicated) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  // Every server's file says lock = 2 now; the leader's reload replicates it.
  for (int i = 0; i < kServers; ++i) {
    Netsemd::Options options;
    options.raw_config = config(i, 2);
    servers_[i]->rewrite_config(options);
    servers_[i]->send_signal(SIGHUP);
  }
  for (int i = 0; i < kServers; ++i) ASSERT_TRUE(servers_[i]->wait_for_log("SIGHUP: reloaded", 5s)) << logs();
  auto a = connect((lead + 1) % kServers);
  auto b = connect((lead + 2) % kServers);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  EXPECT_TRUE(grants(*a, "a", "lock"));
  EXPECT_TRUE(grants(*b, "b", "lock"));
}

// Only the leader's file sets the replicated limits. A follower's reload
// of other limits changed nothing, silently, and the next leader's file
// changed the cluster's, silently (newuser26 item 2): now both are logged
// at warning, naming the limit, and the leader's file still wins.
TEST_F(NetsemdCluster, AFollowersReloadedLimitWarnsAndANewLeadersFileChangesTheClustersLoudly) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int f1 = (lead + 1) % kServers;
  const int f2 = (lead + 2) % kServers;
  const std::string changed = "[semaphores] lock: 1 in the cluster, 2 in this server's file";
  // The first leader's configuration is the cluster's first: no warning.
  ASSERT_TRUE(servers_[lead]->wait_for_log("as the cluster's first: 1 defined semaphores", 5s)) << logs();
  // Both followers' files say lock = 2 now, once they applied the first
  // configuration; the leader's still 1.
  for (const int i : {f1, f2}) {
    auto reader = connect(i);
    ASSERT_TRUE(reader != nullptr);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    std::string got;
    while ((got = reader->request(req::get("g", "lock"), 5s)) != "g OK 1 1 0 0 defined" &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);
    }
    ASSERT_EQ(got, "g OK 1 1 0 0 defined") << logs();
  }
  for (const int i : {f1, f2}) {
    Netsemd::Options options;
    options.raw_config = config(i, 2);
    servers_[i]->rewrite_config(options);
    servers_[i]->send_signal(SIGHUP);
  }
  for (const int i : {f1, f2}) {
    ASSERT_TRUE(servers_[i]->wait_for_log("SIGHUP: reloaded", 5s)) << logs();
    EXPECT_TRUE(servers_[i]->wait_for_log("cluster: SIGHUP: " + changed +
                                              "; only the leader's file sets the "
                                              "cluster's configuration: this takes effect only if this server leads",
                                          1s))
        << servers_[i]->log();
  }
  // The cluster's limit is still the leader's 1.
  auto a = connect(f1);
  auto b = connect(f1);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  ASSERT_TRUE(grants(*a, "a", "lock"));
  ASSERT_TRUE(queues(*b, "b", "lock"));
  for (int i = 0; i < kServers; ++i) {
    EXPECT_EQ(servers_[i]->log().find("replicates its own file's configuration"), std::string::npos) << logs();
  }

  // The leader dies: the new one (a follower, lock = 2) replicates its
  // file's limit, saying so, and b is granted.
  ASSERT_NO_FATAL_FAILURE(kill_server(lead));
  const int next = leader_other_than(lead);
  ASSERT_GE(next, 0) << logs();
  EXPECT_TRUE(servers_[next]->wait_for_log(
      "cluster: this server leads and replicates its own file's configuration (the leader's file wins), which "
      "changes the cluster's: " +
          changed,
      10s))
      << logs();
  const std::string handed = b->read_line(10s).value_or("");
  EXPECT_EQ(handed.rfind("b OK ", 0), 0u) << handed << "\n" << logs();
}

// A connection from `from` (a numeric IPv4 address) to `to_port` on
// `to_host`: invalid when it cannot be made.
UniqueFd raw_connection(const std::string& from, const std::string& to_host, int to_port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  sockaddr_in local{};
  local.sin_family = AF_INET;
  ::inet_pton(AF_INET, from.c_str(), &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<std::uint16_t>(to_port));
  ::inet_pton(AF_INET, to_host.c_str(), &remote.sin_addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
      ::connect(fd.get(), reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0) {
    return UniqueFd();
  }
  return fd;
}

bool send_all(const UniqueFd& fd, std::string_view bytes) {
  return ::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

// What `fd` says until its first newline (included) or its close, within
// `within`; `closed` tells whether it closed.
std::string read_from(const UniqueFd& fd, std::chrono::milliseconds within, bool until_newline, bool* closed) {
  std::string got;
  *closed = false;
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd reading{fd.get(), POLLIN, 0};
    if (::poll(&reading, 1, 20) != 1) continue;
    char chunk[4096];
    const ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (n <= 0) {
      *closed = true;
      break;
    }
    got.append(chunk, static_cast<std::size_t>(n));
    if (until_newline && got.find('\n') != std::string::npos) break;
  }
  return got;
}

// A connection from a follower's host that says PEER but does not prove the
// cluster secret is refused, nothing it sends is handed on: the hello of an
// older netsemd (the secret in clear: refused unread, unanswered), and a
// hello of this build whose proof is forged. The leader's answer to that
// hello proves the secret (the test holds it) and carries no secret.
TEST_F(NetsemdCluster, APeerLinkThatDoesNotProveTheSecretIsRefused) {
  const std::string secret = "a-cluster-secret-of-the-test-0123456789";
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int from = (lead + 1) % kServers;
  const auto f = static_cast<cluster::ServerId>(from + 1);
  const auto l = static_cast<cluster::ServerId>(lead + 1);
  bool closed = false;
  {
    const UniqueFd old = raw_connection(host(from), host(lead), client_ports_[lead]);
    ASSERT_TRUE(old.valid());
    ASSERT_TRUE(send_all(old, "PEER " + std::to_string(f) + " " + secret + "\n" + cluster::frame_entry("x")));
    EXPECT_EQ(read_from(old, 5s, false, &closed), "");
    EXPECT_TRUE(closed);
    EXPECT_TRUE(servers_[lead]->wait_for_log(
        "refused a peer link from " + host(from) + ": DENIED: PEER " + std::to_string(f) +
            " <secret>: the peer link hello of an older netsemd, which sends the cluster secret in clear; refused",
        5s))
        << logs();
  }
  {
    const UniqueFd forged = raw_connection(host(from), host(lead), client_ports_[lead]);
    ASSERT_TRUE(forged.valid());
    const std::string nonce = *cluster::new_peer_nonce();
    ASSERT_TRUE(send_all(forged, cluster::peer_link_hello(f, l, nonce)));
    const std::string answer = read_from(forged, 5s, true, &closed);
    ASSERT_FALSE(answer.empty()) << logs();
    EXPECT_EQ(answer.find(secret.substr(0, 16)), std::string::npos) << answer;
    const Result<std::string> theirs =
        cluster::verify_link_answer(answer.substr(0, answer.size() - 1), secret, f, l, nonce);
    EXPECT_TRUE(theirs) << answer << ": " << theirs.status().to_string();
    ASSERT_TRUE(send_all(forged, "PEER " + std::to_string(f) + " LINK-PROOF " + std::string(64, 'a') + "\n" +
                                     cluster::frame_entry("x")));
    EXPECT_EQ(read_from(forged, 5s, false, &closed), "");
    EXPECT_TRUE(closed);
    EXPECT_TRUE(servers_[lead]->wait_for_log("refused a peer link from " + host(from) + " (server " +
                                                 std::to_string(f) + "): DENIED: server " + std::to_string(f) +
                                                 "'s proof does not match the cluster secret",
                                             5s))
        << logs();
  }
  // A client's connection is not mistaken for one, and the real links work.
  auto client = connect(from);
  ASSERT_TRUE(client != nullptr);
  EXPECT_EQ(client->request("p PING", 5s), "p PONG");
  EXPECT_TRUE(grants(*client, "a1", "lock"));
}

std::string metrics_of(const Netsemd& server, const std::string& host);
// The /metrics body once it holds `line` (a counter reaches /metrics a
// moment after its event: at most 3 s), or the last body read.
std::string metrics_having(const Netsemd& server, const std::string& host, const std::string& line);

// After the set-up every frame is sealed under the link's own key: a frame
// that opens is handed on (here a sealed entry of garbage: its decode fails,
// the link stays), one altered on the way does not open, and the leader
// closes the link and logs and counts it with the refusals; a follower's link of this
// build works on. (Before the frames were sealed, the altered frame was
// taken for an entry, refused by its decode, and the link stayed open.)
TEST_F(NetsemdCluster, AFrameThatDoesNotOpenClosesThePeerLink) {
  const std::string secret = "a-cluster-secret-of-the-test-0123456789";
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int from = (lead + 1) % kServers;
  const auto f = static_cast<cluster::ServerId>(from + 1);
  const auto l = static_cast<cluster::ServerId>(lead + 1);
  bool closed = false;
  const UniqueFd link = raw_connection(host(from), host(lead), client_ports_[lead]);
  ASSERT_TRUE(link.valid());
  const std::string nonce = *cluster::new_peer_nonce();
  ASSERT_TRUE(send_all(link, cluster::peer_link_hello(f, l, nonce)));
  const std::string answer = read_from(link, 5s, true, &closed);
  const Result<std::string> theirs =
      cluster::verify_link_answer(answer.substr(0, answer.size() - 1), secret, f, l, nonce);
  ASSERT_TRUE(theirs) << answer << ": " << theirs.status().to_string() << "\n" << logs();
  cluster::PeerFrameCipher sealer(cluster::PeerFrameCipher::Mode::kSeal,
                                  cluster::peer_link_key(secret, cluster::LinkSide::kLinking, f, l, nonce, *theirs));
  ASSERT_TRUE(
      send_all(link, cluster::peer_link_proof_line(
                         f, cluster::peer_link_proof(secret, cluster::LinkSide::kLinking, f, l, nonce, *theirs)) +
                         *sealer.seal("not an entry")));
  ASSERT_TRUE(servers_[lead]->wait_for_log("peer link from server " + std::to_string(f) + " (" + host(from) + ")", 5s))
      << logs();
  EXPECT_EQ(read_from(link, 300ms, false, &closed), "");
  EXPECT_FALSE(closed) << "a frame that opens does not end the link\n" << logs();
  std::string altered = *sealer.seal("not an entry either");
  altered[6] = static_cast<char>(altered[6] ^ 0x01);
  ASSERT_TRUE(send_all(link, altered));
  EXPECT_EQ(read_from(link, 5s, false, &closed), "");
  EXPECT_TRUE(closed) << logs();
  EXPECT_TRUE(servers_[lead]->wait_for_log("closed the peer link from " + host(from) + " (server " + std::to_string(f) +
                                               "): DENIED: peer link: frame 1 does not open",
                                           5s))
      << logs();
  const std::string counted = "netsem_cluster_peer_lines_refused_total{kind=\"link_frame\"} 1\n";
  const std::string metrics = metrics_having(*servers_[lead], host(lead), counted);
  EXPECT_NE(metrics.find(counted), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("netsem_cluster_peer_lines_refused_total{kind=\"link_proof\"} 0\n"), std::string::npos)
      << metrics;
  auto client = connect(from);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a1", "lock"));
}

// The leader's word to a server it removed carries a MAC, not the secret;
// one with a wrong MAC is refused, and one that holds (as a replay of a
// genuine notice would, reaching a server added back that is still
// catching up through its own old removal) stops no server a leader still
// talks to: it would stop once no leader spoke to it for an election
// timeout.
TEST_F(NetsemdCluster, ARemovalNoticeStopsNoServerALeaderStillTalksTo) {
  const std::string secret = "a-cluster-secret-of-the-test-0123456789";
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int told = (lead + 1) % kServers;
  const auto t = static_cast<cluster::ServerId>(told + 1);
  const auto l = static_cast<cluster::ServerId>(lead + 1);
  auto on_told = connect(told);
  ASSERT_TRUE(on_told != nullptr);
  const std::string status = on_told->request("s1 CLUSTER STATUS", 5s);
  ASSERT_EQ(status.rfind("s1 OK ", 0), 0u) << status;
  const std::uint64_t index = nlohmann::json::parse(status.substr(6)).at("commit_index").get<std::uint64_t>() + 1000;
  bool closed = false;
  {
    const UniqueFd wrong = raw_connection(host(lead), host(told), client_ports_[told]);
    ASSERT_TRUE(wrong.valid());
    ASSERT_TRUE(send_all(wrong, cluster::peer_removal_notice(l, "another-secret-0123456789", t, index)));
    EXPECT_EQ(read_from(wrong, 5s, false, &closed), "");
    EXPECT_TRUE(servers_[told]->wait_for_log("refused a removal notice from " + host(lead) + ": DENIED: PEER " +
                                                 std::to_string(l) + " REMOVED: its MAC does not match",
                                             5s))
        << logs();
  }
  {
    const UniqueFd notice = raw_connection(host(lead), host(told), client_ports_[told]);
    ASSERT_TRUE(notice.valid());
    const std::string line = cluster::peer_removal_notice(l, secret, t, index);
    EXPECT_EQ(line.find(secret.substr(0, 16)), std::string::npos);
    ASSERT_TRUE(send_all(notice, line));
    EXPECT_EQ(read_from(notice, 5s, false, &closed), "");
    EXPECT_TRUE(servers_[told]->wait_for_log("server " + std::to_string(l) + " says this server was removed at index " +
                                                 std::to_string(index) +
                                                 "; it stops once no leader has spoken to it for an election timeout",
                                             5s))
        << logs();
  }
  // Four election timeouts later it runs, and grants.
  EXPECT_FALSE(servers_[told]->wait_exit(2s).has_value()) << logs();
  EXPECT_TRUE(grants(*on_told, "a1", "lock"));
  EXPECT_EQ(servers_[told]->log().find("; stopping"), std::string::npos) << logs();
}

// A few sessions at most: a leader whose sessions are all taken must still
// take its followers' peer links (docs/configuration.md, max_connections),
// or every client of a follower whose link is opened again goes unanswered.
constexpr int kFewConnections = 4;

class NetsemdClusterFewConnections : public NetsemdCluster {
 protected:
  void SetUp() override {
    // A long timeout: the leader's idle sessions stay open throughout.
    extra_server_config_ = "session_timeout_ms = 30000\nmax_connections = " + std::to_string(kFewConnections) + "\n";
    NetsemdCluster::SetUp();
  }

  // What the server at `to` answers first to `line` (nothing when empty)
  // sent from the address `from` (another server's, so that the connection
  // may be a peer link): the first line, "" when none comes within 5 s.
  std::string first_answer_from(const std::string& from, int to, const std::string& line) const {
    const UniqueFd fd = connect_from(from, to);
    if (!fd.valid()) return "";
    const std::string sent = line.empty() ? line : line + "\n";
    if (::send(fd.get(), sent.data(), sent.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(sent.size())) return "";
    return first_line(fd);
  }
  // A connection from the address `from` to the server at `to` (its reads
  // time out after 5 s); invalid when it cannot be made.
  UniqueFd connect_from(const std::string& from, int to) const {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return fd;
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from.c_str(), &local.sin_addr);
    sockaddr_in remote{};
    remote.sin_family = AF_INET;
    remote.sin_port = htons(client_ports_[to]);
    ::inet_pton(AF_INET, host(to).c_str(), &remote.sin_addr);
    const timeval timeout{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
        ::connect(fd.get(), reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0) {
      return UniqueFd();
    }
    return fd;
  }
  // The first line read from `fd`: what came before the end of input or a
  // read timeout when no whole line came.
  static std::string first_line(const UniqueFd& fd) {
    std::string got;
    char c = 0;
    while (::recv(fd.get(), &c, 1, 0) == 1 && c != '\n') got += c;
    return got;
  }

  // Whether `link`, a connection to the full server `lead` that has said
  // nothing yet, is handed to the cluster once it sends a PEER line (no real
  // hello: the cluster closes it) rather than told LIMIT.
  ::testing::AssertionResult handed_over(const UniqueFd& link, int lead) const {
    const std::string hello = "PEER 9 not-a-real-hello\n";
    if (::send(link.get(), hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size())) {
      return ::testing::AssertionFailure() << "cannot send the PEER line";
    }
    if (const std::string answer = first_line(link); !answer.empty()) {
      return ::testing::AssertionFailure() << "answered " << answer << "\n" << logs();
    }
    if (!servers_[lead]->wait_for_log("over max_connections: a peer link", 1s)) {
      return ::testing::AssertionFailure() << "not handed over\n" << logs();
    }
    return ::testing::AssertionSuccess();
  }

  // STATS' limited_total, asked through `session`.
  static std::uint64_t limited_total(Client& session) { return stats_number(session, "limited_total"); }

  // The leader in lead_, and every session it takes, each answered, in
  // pool_. Both followers' peer links are up first (a PING through a
  // follower goes over its link): a link being opened starts as a session
  // until its first line, and would take a slot of the pool for that moment.
  void fill_leader() {
    lead_ = leader();
    ASSERT_GE(lead_, 0) << logs();
    for (const int i : {(lead_ + 1) % kServers, (lead_ + 2) % kServers}) {
      auto through = connect(i);
      ASSERT_TRUE(through != nullptr);
      ASSERT_EQ(through->request("p PING", 10s), "p PONG") << logs();
    }
    for (int i = 0; i < kFewConnections; ++i) {
      pool_.push_back(connect(lead_));
      ASSERT_TRUE(pool_.back() != nullptr);
      ASSERT_EQ(pool_.back()->request("p PING", 10s), "p PONG") << logs();
    }
  }
  int lead_ = -1;
  std::vector<std::unique_ptr<Client>> pool_;
};

TEST_F(NetsemdClusterFewConnections, ALeaderAtMaxConnectionsStillTakesARestartedFollowersPeerLink) {
  ASSERT_NO_FATAL_FAILURE(fill_leader());
  const int follower = (lead_ + 1) % kServers;
  const int other = (lead_ + 2) % kServers;
  // A client over the limit is refused, from a server's address too (read
  // to its first bytes, or for its listening time when it says nothing, in
  // case it is a peer link), and each is counted in limited_total.
  const std::uint64_t limited = limited_total(*pool_.front());
  auto over = connect(lead_);
  ASSERT_TRUE(over != nullptr);
  EXPECT_EQ(over->request(req::acquire("a", "lock"), 5s), "* ERR LIMIT too many connections") << logs();
  EXPECT_EQ(limited_total(*pool_.front()), limited + 1);
  EXPECT_EQ(first_answer_from(host(other), lead_, req::acquire("a", "lock")), "* ERR LIMIT too many connections")
      << logs();
  EXPECT_EQ(limited_total(*pool_.front()), limited + 2);
  EXPECT_EQ(first_answer_from(host(other), lead_, ""), "* ERR LIMIT too many connections") << logs();
  EXPECT_EQ(limited_total(*pool_.front()), limited + 3);

  // The follower restarts: its peer link to the leader is opened again,
  // while the leader is full.
  ASSERT_NO_FATAL_FAILURE(kill_server(follower));
  start(follower);
  auto client = connect(follower);
  ASSERT_TRUE(client != nullptr);
  // Its client's session and ACQUIRE go to the leader over that link.
  const std::string granted = client->request(req::acquire("a", "lock", 1, 20000), 15s);
  EXPECT_EQ(granted.rfind("a OK ", 0), 0u) << granted << "\n" << logs();
  EXPECT_EQ(client->request("p PING", 10s), "p PONG") << logs();
  EXPECT_TRUE(servers_[lead_]->wait_for_log("over max_connections: a peer link", 1s)) << logs();
  // The leader's own sessions are served as before, and it is still full.
  for (const auto& session : pool_) EXPECT_EQ(session->request("p PING", 10s), "p PONG") << logs();
  auto still_over = connect(lead_);
  ASSERT_TRUE(still_over != nullptr);
  EXPECT_EQ(still_over->request(req::acquire("a", "lock"), 5s), "* ERR LIMIT too many connections") << logs();
}

// An operator must see the cluster in the incident that filled it (note28
// section 3): `netsem cluster status` against the full leader, from its
// host (in admin_networks: loopback), is served as an admin probe beside
// the sessions (its first line is LEASE), and so is STATS after a LEASE
// (the leader has its log); STATS first, as a 1.0 client sends it, and an
// ACQUIRE still get the limit line, and a silent connection from that host
// over the limit holds up neither. Without admin probes the CLI was told
// LIMIT (exit 75).
TEST_F(NetsemdClusterFewConnections, AnOperatorSeesTheClusterOfAFullLeader) {
  ASSERT_NO_FATAL_FAILURE(fill_leader());
  const std::uint64_t limited = limited_total(*pool_.front());
  const UniqueFd silent = connect_from(host(lead_), lead_);
  ASSERT_TRUE(silent.valid());
  const NetsemRun shown = run_netsem({"--server", client_address(lead_), "cluster", "status"}, {}, 10s);
  EXPECT_EQ(shown.exit_code, 0) << shown << logs();
  EXPECT_EQ(shown.err, "") << shown;
  EXPECT_NE(shown.out.find("server " + std::to_string(lead_ + 1) + " (leader, term "), std::string::npos) << shown;
  {
    const UniqueFd probe = connect_from(host(lead_), lead_);
    ASSERT_TRUE(probe.valid());
    const std::string sent = "l LEASE\ns STATS\n";
    ASSERT_EQ(::send(probe.get(), sent.data(), sent.size(), MSG_NOSIGNAL), static_cast<ssize_t>(sent.size()));
    EXPECT_EQ(first_line(probe), "l OK 30000") << logs();
    const std::string stats = first_line(probe);
    EXPECT_EQ(stats.rfind("s OK {", 0), 0u) << stats << "\n" << logs();
  }
  EXPECT_EQ(first_answer_from(host(lead_), lead_, "s STATS"), "* ERR LIMIT too many connections") << logs();
  EXPECT_EQ(first_answer_from(host(lead_), lead_, req::acquire("a", "lock")), "* ERR LIMIT too many connections")
      << logs();
  EXPECT_EQ(first_line(silent), "* ERR LIMIT too many connections");
  // STATS first, the ACQUIRE and the silent connection; the leader is still
  // full, and serves its sessions.
  EXPECT_EQ(limited_total(*pool_.front()), limited + 3);
  for (const auto& session : pool_) EXPECT_EQ(session->request("p PING", 10s), "p PONG") << logs();
}

// Idle connections from a member's host (a client there that connects to
// the full leader and says nothing, opened every 30 ms and kept open) must
// not hold up that member's peer link: each over-the-limit connection from
// a member's address is read for its first line in one of a few slots, or
// in the refusals' room when those are taken (the oldest in a slot gives
// way to a newer one only when that is full too), so the link, whose PEER
// line comes at once, is read. Before, each held its slot
// for its 250 ms of listening and the link was refused meanwhile and
// retried: review20 measured the first answer after 2.2 to 14.3 s (100 and
// 30 ms floods), and this test saw none in 15 s; about 0.2 s with the same
// flood from an address that is no member's.
TEST_F(NetsemdClusterFewConnections, IdleConnectionsFromAMembersHostDoNotHoldUpItsPeerLink) {
  ASSERT_NO_FATAL_FAILURE(fill_leader());
  const int follower = (lead_ + 1) % kServers;
  std::atomic<bool> stop{false};
  std::atomic<int> opened{0};
  std::thread flood([&] {
    std::vector<UniqueFd> open;  // idle: they send nothing and read nothing
    while (!stop && open.size() < 1000) {
      if (UniqueFd fd = connect_from(host(follower), lead_); fd.valid()) {
        open.push_back(std::move(fd));
        ++opened;
      }
      std::this_thread::sleep_for(30ms);
    }
  });
  struct Joined {
    std::atomic<bool>& stop;
    std::thread& flood;
    ~Joined() {
      stop = true;
      flood.join();
    }
  } joined{stop, flood};
  // Its client connects to the follower once the flood is under way.
  while (opened < 10) std::this_thread::sleep_for(10ms);
  ASSERT_NO_FATAL_FAILURE(kill_server(follower));
  start(follower);
  auto client = connect(follower);
  ASSERT_TRUE(client != nullptr);
  const auto asked = std::chrono::steady_clock::now();
  const std::string granted = client->request(req::acquire("a", "lock", 1, 20000), 15s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked);
  std::printf("the restarted follower's first ACQUIRE answered after %lld ms, %d idle connections opened\n",
              static_cast<long long>(took.count()), opened.load());
  EXPECT_EQ(granted.rfind("a OK ", 0), 0u) << granted << "\n" << logs();
  EXPECT_LT(took, 3s) << logs();  // about 0.2-0.4 s (not answered in 15 s without the giving way)
  EXPECT_TRUE(servers_[lead_]->wait_for_log("over max_connections: a peer link", 1s)) << logs();
  // The flood's connections were refused as any over the limit.
  EXPECT_EQ(first_answer_from(host(follower), lead_, req::acquire("a", "lock")), "* ERR LIMIT too many connections")
      << logs();
}

// A peer link's connection to a full leader followed, before its PEER
// line, by as many newer connections from its host as there are slots kept
// for reading such connections (one per other server): the newcomers take
// places in the refusals' room instead of pushing the link out, so its line
// is read and it is handed to the cluster (which closes this one, whose
// hello is no real one), not told LIMIT; the idle newcomers are, and are
// counted. Before, the oldest connection gave way to the last newcomer: a
// link that connected just before was refused once (and retried).
TEST_F(NetsemdClusterFewConnections, NewerConnectionsFromItsHostDoNotPushOutALinkBeforeItsPeerLine) {
  ASSERT_NO_FATAL_FAILURE(fill_leader());
  const int other = (lead_ + 2) % kServers;
  const std::uint64_t limited = limited_total(*pool_.front());
  const UniqueFd link = connect_from(host(other), lead_);
  ASSERT_TRUE(link.valid());
  std::this_thread::sleep_for(20ms);  // accepted, waiting for its first line
  std::vector<UniqueFd> idle;
  for (int i = 0; i < kServers - 1; ++i) {
    idle.push_back(connect_from(host(other), lead_));
    ASSERT_TRUE(idle.back().valid());
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(handed_over(link, lead_));
  for (const UniqueFd& fd : idle) EXPECT_EQ(first_line(fd), "* ERR LIMIT too many connections") << logs();
  EXPECT_EQ(limited_total(*pool_.front()), limited + idle.size());
}

// When the refusals' room is full too (a flood from a member's host), the
// oldest connection in a slot still gives way to a newcomer, so that a link
// is read: as many idle connections from another server's address as the
// slots and the room take, then one with a PEER line, handed to the
// cluster. The first idle one, which gave way, is closed at once (the
// refusals have no room left) instead of told LIMIT after its 250 ms.
TEST_F(NetsemdClusterFewConnections, WhenTheRefusalsRoomIsFullTooTheOldestGivesWayToALink) {
  ASSERT_NO_FATAL_FAILURE(fill_leader());
  const int other = (lead_ + 2) % kServers;
  ASSERT_EQ(servers_[lead_]->log().find("over max_connections: a peer link"), std::string::npos);
  // The leader's descriptor limit is high: the room is kMaxRejecting.
  const auto began = std::chrono::steady_clock::now();
  std::vector<UniqueFd> idle;
  for (std::size_t i = 0; i < server::kMaxRejecting + kServers - 1; ++i) {
    idle.push_back(connect_from(host(other), lead_));
    ASSERT_TRUE(idle.back().valid()) << i;
  }
  const UniqueFd link = connect_from(host(other), lead_);
  ASSERT_TRUE(link.valid());
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
  std::printf("%zu idle connections and the link made in %lld ms\n", idle.size(), static_cast<long long>(took.count()));
  ASSERT_LT(took, 200ms) << "too slow to fill the room within the refusals' 250 ms";
  EXPECT_TRUE(handed_over(link, lead_));
  EXPECT_EQ(first_line(idle.front()), "") << "the oldest did not give way";
}

// STATS of a server in a cluster: no journal fields, a `cluster` object
// with role, term, leader, indexes and lag; the leader's has each
// follower's lag. GET /metrics: the netsem_cluster_* series, and promtool
// accepts the exposition. GET /api/v1/stats and the status file's `# stats`
// line: STATS's object, the same way.
TEST_F(NetsemdCluster, StatsAndMetricsShowRoleTermIndexesAndLag) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  // Something in the log: a grant through a follower.
  auto a = connect((lead + 1) % kServers);
  ASSERT_TRUE(a != nullptr);
  ASSERT_TRUE(grants(*a, "a1", "lock"));

  std::uint64_t commit = 0;
  for (int i = 0; i < kServers; ++i) {
    auto client = connect(i);
    ASSERT_TRUE(client != nullptr);
    // The followers learn the commit a moment after the leader: ask until
    // every server applied what the leader committed.
    nlohmann::json cluster;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    do {
      const std::string answer = client->request("s STATS", 5s);
      ASSERT_EQ(answer.rfind("s OK {", 0), 0u) << answer;
      const auto json = nlohmann::json::parse(answer.substr(5));
      EXPECT_FALSE(json.contains("journal_ok")) << answer;
      EXPECT_FALSE(json.contains("journal_fsync_us")) << answer;
      EXPECT_TRUE(json.contains("grants")) << answer;
      ASSERT_TRUE(json.contains("cluster")) << answer;
      cluster = json.at("cluster");
      if (cluster.at("applied_index") >= commit && cluster.at("lag") == 0) break;
      std::this_thread::sleep_for(50ms);
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(cluster.at("id"), i + 1) << cluster;
    EXPECT_EQ(cluster.at("role"), i == lead ? "leader" : "follower") << cluster;
    EXPECT_EQ(cluster.at("leader_id"), lead + 1) << cluster;
    EXPECT_GE(cluster.at("term").get<std::uint64_t>(), 1u) << cluster;
    EXPECT_EQ(cluster.at("members"), 3) << cluster;
    EXPECT_EQ(cluster.at("voters"), 3) << cluster;
    const auto applied = cluster.at("applied_index").get<std::uint64_t>();
    EXPECT_GE(cluster.at("commit_index").get<std::uint64_t>(), applied) << cluster;
    EXPECT_GE(applied, 2u) << cluster;  // at least TouchAll, the limits and the grant
    EXPECT_EQ(cluster.at("lag"), 0) << cluster;
    if (i == lead) {
      commit = cluster.at("commit_index").get<std::uint64_t>();
      const auto& followers = cluster.at("follower_lag");
      ASSERT_EQ(followers.size(), 2u) << cluster;
      for (int j = 0; j < kServers; ++j) {
        if (j != lead) {
          EXPECT_TRUE(followers.contains(std::to_string(j + 1))) << cluster;
        }
      }
    } else {
      EXPECT_TRUE(cluster.at("follower_lag").empty()) << cluster;
    }
  }

  for (int i = 0; i < kServers; ++i) {
    const std::uint16_t port = test_support::http_port_from_log(servers_[i]->log());
    ASSERT_NE(port, 0) << servers_[i]->log();
    test_support::HttpConnection connection(port, host(i).c_str());
    ASSERT_TRUE(connection.ok());
    ASSERT_TRUE(connection.send_request("GET", "/metrics"));
    const auto response = connection.read_response(5s, false);
    ASSERT_TRUE(response.has_value());
    ASSERT_EQ(response->status, 200) << response->body;
    const std::string& text = response->body;
    EXPECT_NE(text.find("netsem_cluster_server_id " + std::to_string(i + 1) + "\n"), std::string::npos) << text;
    EXPECT_NE(
        text.find(std::string("netsem_cluster_role{cluster_role=\"") + (i == lead ? "leader" : "follower") + "\"} 1\n"),
        std::string::npos)
        << text;
    EXPECT_NE(text.find("netsem_cluster_leader_id " + std::to_string(lead + 1) + "\n"), std::string::npos) << text;
    EXPECT_NE(text.find("netsem_cluster_commit_index "), std::string::npos) << text;
    EXPECT_NE(text.find("netsem_cluster_lag "), std::string::npos) << text;
    EXPECT_EQ(text.find("netsem_journal_"), std::string::npos) << text;
    EXPECT_EQ(text.find("netsem_cluster_follower_lag{id=") != std::string::npos, i == lead) << text;
    // The leader's batches: how long each took to commit and how many
    // commands it carried (at least TouchAll's and the grant's).
    EXPECT_NE(text.find("# TYPE netsem_cluster_commit_seconds histogram\n"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE netsem_cluster_batch_commands histogram\n"), std::string::npos) << text;
    EXPECT_NE(text.find("netsem_cluster_commit_seconds_bucket{le=\"0.000001\"} "), std::string::npos) << text;
    EXPECT_NE(text.find("netsem_cluster_batch_commands_bucket{le=\"1\"} "), std::string::npos) << text;
    const auto series = [&text](const std::string& name) -> std::uint64_t {
      const std::size_t at = text.find("\n" + name + " ");
      if (at == std::string::npos) return 0;
      return std::strtoull(text.c_str() + at + name.size() + 2, nullptr, 10);
    };
    EXPECT_NE(text.find("# TYPE netsem_cluster_commit_pushes_total counter\n"), std::string::npos) << text;
    if (i == lead) {
      // a1's grant was answered by a follower: the leader pushed its commit.
      EXPECT_GE(series("netsem_cluster_commit_pushes_total"), 1u) << text;
      EXPECT_GE(series("netsem_cluster_commit_seconds_count"), 2u) << text;
      EXPECT_GE(series("netsem_cluster_batch_commands_count"), series("netsem_cluster_commit_seconds_count")) << text;
      EXPECT_GE(series("netsem_cluster_batch_commands_sum"), series("netsem_cluster_batch_commands_count")) << text;
      EXPECT_NE(text.find("netsem_cluster_batch_commands_bucket{le=\"+Inf\"} " +
                          std::to_string(series("netsem_cluster_batch_commands_count")) + "\n"),
                std::string::npos)
          << text;
    }
    const std::string promtool = find_program("promtool");
    if (!promtool.empty()) {
      const auto checked = check_metrics(promtool, text);
      EXPECT_EQ(checked.exit_code, 0) << checked.output;
    }

    // GET /api/v1/stats embeds STATS's object: no journal, the `cluster`
    // object (published once a second: asked until it names the leader).
    nlohmann::json stats;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    do {
      test_support::HttpConnection api(port, host(i).c_str());
      ASSERT_TRUE(api.ok());
      ASSERT_TRUE(api.send_request("GET", "/api/v1/stats"));
      const auto answer = api.read_response(5s, false);
      ASSERT_TRUE(answer.has_value());
      ASSERT_EQ(answer->status, 200) << answer->body;
      stats = nlohmann::json::parse(answer->body).at("stats");
      EXPECT_FALSE(stats.contains("journal_ok")) << stats;
      EXPECT_FALSE(stats.contains("journal_fsync_us")) << stats;
      ASSERT_TRUE(stats.contains("cluster")) << stats;
      if (stats.at("cluster").at("leader_id") == lead + 1) break;
      std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(stats.at("cluster").at("id"), i + 1) << stats;
    EXPECT_EQ(stats.at("cluster").at("role"), i == lead ? "leader" : "follower") << stats;
    EXPECT_EQ(stats.at("cluster").at("leader_id"), lead + 1) << stats;

    // The status file's `# stats` line: STATS's object too (it showed the
    // journal's fields and no `cluster`). Rewritten within 200 ms of a
    // change of the table (a1's grant, applied once the leader was known):
    // read until it names the leader.
    const std::filesystem::path status_path = data_dir(i) / "semaphore.status";
    std::string status;
    nlohmann::json header;
    const auto written = std::chrono::steady_clock::now() + 5s;
    do {
      std::ifstream in(status_path);
      status.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      const auto at = status.find("\n# stats ");
      if (at != std::string::npos) {
        const auto from = at + std::strlen("\n# stats ");
        header = nlohmann::json::parse(status.substr(from, status.find('\n', from) - from), nullptr, false);
        if (header.is_object() && header.contains("cluster") && header.at("cluster").at("leader_id") == lead + 1) {
          break;
        }
      }
      std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < written);
    ASSERT_TRUE(header.is_object()) << status;
    EXPECT_FALSE(header.contains("journal_ok")) << status;
    EXPECT_FALSE(header.contains("journal_fsync_us")) << status;
    EXPECT_TRUE(header.contains("grants")) << status;
    ASSERT_TRUE(header.contains("cluster")) << status;
    EXPECT_EQ(header.at("cluster").at("id"), i + 1) << status;
    EXPECT_EQ(header.at("cluster").at("role"), i == lead ? "leader" : "follower") << status;
    EXPECT_EQ(header.at("cluster").at("leader_id"), lead + 1) << status;
    EXPECT_NE(status.find("\nlock defined 0 1 1 0\n"), std::string::npos) << status;
  }
}

// Server i's status file's `cluster` object, read until `done` holds of it
// (every 50 ms, up to `within`): the last one read (null if none).
nlohmann::json status_file_cluster_until(const std::filesystem::path& path,
                                         const std::function<bool(const nlohmann::json&)>& done,
                                         std::chrono::milliseconds within) {
  nlohmann::json cluster;
  const auto deadline = std::chrono::steady_clock::now() + within;
  do {
    std::ifstream in(path);
    const std::string status{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto at = status.find("\n# stats ");
    if (at != std::string::npos) {
      const auto from = at + std::strlen("\n# stats ");
      const auto header = nlohmann::json::parse(status.substr(from, status.find('\n', from) - from), nullptr, false);
      if (header.is_object() && header.contains("cluster")) cluster = header.at("cluster");
      if (!cluster.is_null() && done(cluster)) break;
    }
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return cluster;
}

// The status file's `cluster` object is rewritten when the cluster's state
// changes, not only the table: it was written only when a semaphore's line
// changed, so that on an idle cluster a survivor's file named the dead
// leader, in its old term, until the next grant (note26).
TEST_F(NetsemdCluster, AnIdleSurvivorsStatusFileNamesTheNewLeaderAndTermWithinAFewIntervals) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  {
    // A grant and its release through a follower: every file is written
    // once with the leader known. Then the cluster is idle.
    auto a = connect((lead + 1) % kServers);
    ASSERT_TRUE(a != nullptr);
    ASSERT_NO_FATAL_FAILURE(grant_and_release(*a, 1));
  }
  for (int i = 0; i < kServers; ++i) {
    const auto cluster = status_file_cluster_until(
        data_dir(i) / "semaphore.status", [&](const nlohmann::json& c) { return c.at("leader_id") == lead + 1; }, 5s);
    ASSERT_EQ(cluster.value("leader_id", std::uint64_t{0}), static_cast<std::uint64_t>(lead + 1))
        << "server " << i + 1 << ": " << cluster << "\n"
        << logs();
  }
  std::this_thread::sleep_for(500ms);  // the session's close applied everywhere: nothing more changes the table

  ASSERT_NO_FATAL_FAILURE(kill_server(lead));
  const int next = leader_other_than(lead);
  ASSERT_GE(next, 0) << logs();
  const auto elected = std::chrono::steady_clock::now();
  // The new leader's term, from its log: no client connects, since a
  // session's opening is a change of the table, which rewrote the file
  // without the fix too.
  std::uint64_t term = 0;
  static const std::regex kLeads(R"(cluster: leader in term (\d+))");
  const std::string next_log = servers_[next]->log();
  for (auto it = std::sregex_iterator(next_log.begin(), next_log.end(), kLeads); it != std::sregex_iterator(); ++it) {
    term = std::max<std::uint64_t>(term, std::stoull((*it)[1]));
  }
  ASSERT_GT(term, 0u) << next_log;
  for (int i = 0; i < kServers; ++i) {
    if (i == lead) continue;
    // status_interval_ms = 200: within a few of them (a fork each, on a
    // busy machine), not at the next change of the table.
    const auto cluster = status_file_cluster_until(
        data_dir(i) / "semaphore.status",
        [&](const nlohmann::json& c) { return c.at("leader_id") == next + 1 && c.at("term") == term; }, 3s);
    EXPECT_EQ(cluster.value("leader_id", std::uint64_t{0}), static_cast<std::uint64_t>(next + 1))
        << "server " << i + 1 << ": " << cluster << "\n"
        << logs();
    EXPECT_EQ(cluster.value("term", std::uint64_t{0}), term) << cluster;
    EXPECT_EQ(cluster.value("role", std::string()), i == next ? "leader" : "follower") << cluster;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - elected, 6s);
}

// --- proposed 1.2: sessions that outlive their connection ---

// "<tag> OK <id> <secret>" of RESUMABLE: the id and the secret.
std::pair<std::string, std::string> resumable_of(const std::string& answer, std::string_view tag) {
  static const std::regex kShape(R"(\S+ OK (\d+) ([0-9a-f]{32}))");
  std::smatch match;
  EXPECT_TRUE(std::regex_match(answer, match, kShape) && answer.rfind(std::string(tag) + " ", 0) == 0) << answer;
  if (match.size() != 3) return {};
  return {match[1].str(), match[2].str()};
}

// /readyz on a member is ready only with a leader known: a member left
// alone (the others killed: a leaderless cluster, as a removed or cut-off
// server) answers no client, and said 200 ready (newuser23 finding 5). Now
// 503, saying why.
TEST_F(NetsemdCluster, AMemberWithNoLeaderKnownIsNotReady) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const auto becomes = [this](int i, int status) { return readyz_becomes(i, status); };
  for (int i = 0; i < kServers; ++i) {
    EXPECT_NE(becomes(i, 200).body.find("\"status\":\"ready\""), std::string::npos) << "server " << i + 1;
  }
  const int alone = (lead + 1) % kServers;
  for (int i = 0; i < kServers; ++i) {
    if (i != alone) {
      ASSERT_NO_FATAL_FAILURE(kill_server(i));
    }
  }
  const std::string body = becomes(alone, 503).body;
  EXPECT_NE(body.find("\"status\":\"unready\""), std::string::npos) << body;
  EXPECT_NE(body.find("\"reason\":\"no leader known for "), std::string::npos) << body;
}

TEST_F(NetsemdCluster, AResumableSessionKeepsItsPermitAndItsQueueWhenItsServerIsKilled) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int doomed = (lead + 1) % kServers;  // a follower: the others keep their leader
  const int other = (lead + 2) % kServers;

  // A holder and a waiter, both resumable, on the server that will die.
  auto holder = connect(doomed);
  auto waiter = connect(doomed);
  ASSERT_TRUE(holder != nullptr && waiter != nullptr);
  const auto [holder_id, holder_secret] = resumable_of(holder->request("r RESUMABLE", 10s), "r");
  ASSERT_FALSE(holder_id.empty()) << logs();
  const std::string granted = holder->request(req::acquire("a", "lock", 1, 60000), 10s);
  ASSERT_EQ(granted.rfind("a OK ", 0), 0u) << granted << "\n" << logs();
  const std::uint64_t fence1 = fence_of(granted);
  const auto [waiter_id, waiter_secret] = resumable_of(waiter->request("r RESUMABLE", 10s), "r");
  ASSERT_FALSE(waiter_id.empty()) << logs();
  ASSERT_TRUE(queues(*waiter, "q1", "lock", 60000));
  // RESUMABLE again answers the same.
  EXPECT_EQ(holder->request("r2 RESUMABLE", 10s), "r2 OK " + holder_id + " " + holder_secret);

  ASSERT_NO_FATAL_FAILURE(kill_server(doomed));

  // The holder resumes on the leader: its permit, with its fence, is still
  // its own, and nobody else gets it meanwhile.
  auto holder2 = connect(lead);
  ASSERT_TRUE(holder2 != nullptr);
  EXPECT_EQ(holder2->request("x RESUME " + holder_id + " " + holder_secret, 10s), "x OK " + holder_id + " 0") << logs();
  auto third = connect(other);
  ASSERT_TRUE(third != nullptr);
  EXPECT_EQ(third->request(req::acquire("t", "lock", 1, 0), 10s), "t TIMEOUT") << logs();
  EXPECT_EQ(holder2->request("m MINE", 10s), "m ITEM held lock 1 " + std::to_string(fence1));
  EXPECT_EQ(holder2->read_line(5s).value_or(""), "m END 1");

  // The waiter resumes on the other follower, its request still queued;
  // the holder's RELEASE grants it there, under its original tag.
  auto waiter2 = connect(other);
  ASSERT_TRUE(waiter2 != nullptr);
  EXPECT_EQ(waiter2->request("y RESUME " + waiter_id + " " + waiter_secret, 10s), "y OK " + waiter_id + " 1") << logs();
  EXPECT_EQ(waiter2->request("m MINE", 10s), "m ITEM queued q1 lock 1");
  EXPECT_EQ(waiter2->read_line(5s).value_or(""), "m END 1");
  EXPECT_EQ(holder2->request(req::release("rel", "lock"), 10s), "rel OK 0") << logs();
  const std::string handed = waiter2->read_line(10s).value_or("");
  ASSERT_EQ(handed.rfind("q1 OK ", 0), 0u) << handed << "\n" << logs();
  EXPECT_GT(fence_of(handed), fence1);
  EXPECT_EQ(waiter2->request("m2 MINE", 10s), "m2 ITEM held lock 1 " + std::to_string(fence_of(handed)));
  EXPECT_EQ(waiter2->read_line(5s).value_or(""), "m2 END 1");
  EXPECT_EQ(holder2->request("m2 MINE", 10s), "m2 END 0");
}

// The log and the snapshots hold a session's resume secret as its SHA-256
// digest only (entries and snapshots of version 3): after a RESUMABLE and a
// RESUME on another server, the secret is in no file under any server's
// raft/ directory, while its digest reaches each (so the files read are the
// ones the entries went to). Before, the OpenSession and the ResumeSession
// carried it in clear, to every server's disk and over libraft's transport.
TEST_F(NetsemdCluster, AResumeSecretIsInNoFileOfTheRaftDirectories) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int first = (lead + 1) % kServers;
  auto old = connect(first);
  ASSERT_TRUE(old != nullptr);
  const auto [id, secret] = resumable_of(old->request("r RESUMABLE", 10s), "r");
  ASSERT_FALSE(id.empty()) << logs();
  ASSERT_TRUE(grants(*old, "a", "lock", 60000));
  auto taker = connect(lead);
  ASSERT_TRUE(taker != nullptr);
  EXPECT_EQ(taker->request("x RESUME " + id + " " + secret, 10s), "x OK " + id + " 0") << logs();
  // The RESUMABLE answer still gives the client its secret, on the new host too.
  EXPECT_EQ(taker->request("r2 RESUMABLE", 10s), "r2 OK " + id + " " + secret);
  EXPECT_EQ(taker->request(req::release("rel", "lock"), 10s), "rel OK 1") << logs();

  const std::string digest = replication::secret_digest(secret);
  // Whether any file under `dir` holds `needle`.
  const auto in_some_file = [](const std::filesystem::path& dir, const std::string& needle) {
    std::error_code ec;
    for (const auto& file : std::filesystem::recursive_directory_iterator(dir, ec)) {
      if (!file.is_regular_file()) continue;
      std::ifstream in(file.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (bytes.find(needle) != std::string::npos) return true;
    }
    return false;
  };
  for (int i = 0; i < kServers; ++i) {
    const auto raft_dir = data_dir(i) / "raft";
    ASSERT_TRUE(std::filesystem::is_directory(raft_dir)) << raft_dir;
    // Every server appends the entries (the third may lag a little).
    EXPECT_TRUE(test_support::eventually([&] { return in_some_file(raft_dir, digest); }, 10s, 200ms))
        << "the digest never reached server " << i + 1 << "'s raft/ files";
    EXPECT_FALSE(in_some_file(raft_dir, secret)) << "the resume secret in clear under " << raft_dir;
  }
}

TEST_F(NetsemdCluster, AResumeTakesTheSessionFromItsOlderConnection) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int first = (lead + 1) % kServers;
  const int second = (lead + 2) % kServers;
  auto old = connect(first);
  ASSERT_TRUE(old != nullptr);
  const auto [id, secret] = resumable_of(old->request("r RESUMABLE", 10s), "r");
  ASSERT_FALSE(id.empty()) << logs();
  ASSERT_TRUE(grants(*old, "a", "lock", 60000));

  // (`second` may not have applied the session's opening yet: its RESUMEs
  // ask the log first, AResumeOnAServerThatLagsFindsTheSession.)
  // Refusals change nothing: a wrong secret, an unknown session, a RESUME
  // that is not the first request of its connection.
  auto other = connect(second);
  ASSERT_TRUE(other != nullptr);
  const std::string wrong = std::string(secret.size(), secret[0] == '0' ? '1' : '0');
  const std::string denied = other->request("x RESUME " + id + " " + wrong, 10s);
  EXPECT_EQ(denied.rfind("x ERR DENIED", 0), 0u) << denied << "\n" << logs();
  EXPECT_EQ(other->request("x RESUME " + id + " " + secret, 10s).rfind("x ERR BUSY", 0), 0u);
  auto fresh = connect(second);
  ASSERT_TRUE(fresh != nullptr);
  EXPECT_EQ(fresh->request("x RESUME 999999 " + secret, 10s).rfind("x ERR NOT_FOUND", 0), 0u);
  EXPECT_EQ(old->request("p PING", 10s), "p PONG");

  // A RESUME on another server while the old connection is attached: the
  // old one is told and closed, and the session (its permit) goes on.
  auto taker = connect(second);
  ASSERT_TRUE(taker != nullptr);
  EXPECT_EQ(taker->request("x RESUME " + id + " " + secret, 10s), "x OK " + id + " 0") << logs();
  std::string rest;
  EXPECT_TRUE(old->wait_closed(10s, &rest));
  EXPECT_NE(rest.find("* ERR KICKED resumed on another connection"), std::string::npos) << rest;
  auto third = connect(lead);
  ASSERT_TRUE(third != nullptr);
  EXPECT_EQ(third->request(req::acquire("t", "lock", 1, 0), 10s), "t TIMEOUT") << logs();
  EXPECT_EQ(taker->request(req::release("rel", "lock"), 10s), "rel OK 1") << logs();

  // LEADER: the leader's client address, from any server.
  const std::string address = client_address(lead);
  EXPECT_EQ(taker->request("l LEADER", 10s), "l OK " + address);
  EXPECT_EQ(third->request("l LEADER", 10s), "l OK " + address);

  // The move ended no session: the old connection's server counts no kick,
  // and logs the move, not a "session ended".
  auto watcher = connect(first);
  ASSERT_TRUE(watcher != nullptr);
  EXPECT_EQ(stats_number(*watcher, "session_ends_kicked_total"), 0u) << logs();
  EXPECT_TRUE(servers_[first]->wait_for_log("moved to another connection (on server " + std::to_string(second + 1)))
      << logs();
  EXPECT_EQ(servers_[first]->log().find("cause=kicked"), std::string::npos) << logs();
  // An administrator's KICK of it still counts, where it is hosted.
  EXPECT_EQ(third->request("k KICK " + id, 10s), "k OK") << logs();
  const auto kicked = taker->read_line(5s);
  ASSERT_TRUE(kicked.has_value()) << logs();
  EXPECT_EQ(kicked->rfind("* ERR KICKED kicked by session ", 0), 0u) << *kicked;
  EXPECT_TRUE(servers_[second]->wait_for_log("cause=kicked")) << logs();
  EXPECT_EQ(stats_number(*other, "session_ends_kicked_total"), 1u) << logs();
  EXPECT_EQ(stats_number(*watcher, "session_ends_kicked_total"), 0u);
}

// Server i's Raft links through a PartitionProxy (raft_bind_address), so
// that a test can cut them while its clients still reach it.
class NetsemdClusterPartitioned : public NetsemdCluster {
 protected:
  void SetUp() override {
    raft_proxy_ = true;
    NetsemdCluster::SetUp();
  }
};

// A RESUME to a server whose replica lags (session 23's note, 8.1): the
// session was opened while the server was cut off from the log, so its
// replica does not know it. It answered NOT_FOUND, "its permits are gone",
// and the client gave up a live session's permits. Now the server asks the
// log (a probe that changes nothing) and answers once it has applied the
// log that far: the live session is resumed with its permit, a wrong secret
// is still DENIED, and a session that ended is still NOT_FOUND. Without the
// probe the first two answered NOT_FOUND at once.
TEST_F(NetsemdClusterPartitioned, AResumeOnAServerThatLagsFindsTheSession) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int lagging = (lead + 1) % kServers;
  const int other = (lead + 2) % kServers;
  proxy_->isolate(static_cast<std::uint64_t>(lagging + 1));

  // Committed by the other two: a holder, a live session and one that ended.
  auto holder = connect(lead);
  ASSERT_TRUE(holder != nullptr);
  const auto [id, secret] = resumable_of(holder->request("r RESUMABLE", 10s), "r");
  ASSERT_FALSE(id.empty()) << logs();
  const std::string granted = holder->request(req::acquire("a", "lock", 1, 60000), 10s);
  ASSERT_EQ(granted.rfind("a OK ", 0), 0u) << granted << "\n" << logs();
  auto live = connect(other);
  auto ended = connect(other);
  ASSERT_TRUE(live != nullptr && ended != nullptr);
  const auto [live_id, live_secret] = resumable_of(live->request("r RESUMABLE", 10s), "r");
  const auto [ended_id, ended_secret] = resumable_of(ended->request("r RESUMABLE", 10s), "r");
  ASSERT_FALSE(live_id.empty() || ended_id.empty()) << logs();
  ASSERT_EQ(holder->request("k KICK " + ended_id, 10s), "k OK") << logs();

  // The RESUMEs reach the lagging server, which has applied none of it.
  const std::string wrong = std::string(live_secret.size(), live_secret[0] == '0' ? '1' : '0');
  std::array<std::unique_ptr<Client>, 3> resumes;
  const std::array<std::string, 3> lines = {"x RESUME " + id + " " + secret, "y RESUME " + live_id + " " + wrong,
                                            "z RESUME " + ended_id + " " + ended_secret};
  for (std::size_t i = 0; i < resumes.size(); ++i) {
    resumes[i] = connect(lagging);
    ASSERT_TRUE(resumes[i] != nullptr);
    resumes[i]->send_line(lines[i]);
  }
  for (const std::string& session : {id, live_id, ended_id}) {
    ASSERT_TRUE(servers_[lagging]->wait_for_log("session " + session + " unknown to this replica", 10s))
        << "no probe for session " << session << "; answers: " << resumes[0]->read_line(1s).value_or("(none)") << " | "
        << resumes[1]->read_line(1s).value_or("(none)") << "\n"
        << logs();
  }
  // Its answers need the log: none while it is cut off.
  EXPECT_EQ(resumes[0]->read_line(200ms), std::nullopt);
  EXPECT_GT(proxy_->connections(static_cast<std::uint64_t>(lead + 1), static_cast<std::uint64_t>(lagging + 1)), 0u);
  proxy_->heal();

  EXPECT_EQ(resumes[0]->read_line(15s).value_or("(none)"), "x OK " + id + " 0") << logs();
  const std::string denied = resumes[1]->read_line(15s).value_or("(none)");
  EXPECT_EQ(denied.rfind("y ERR DENIED", 0), 0u) << denied << "\n" << logs();
  const std::string gone = resumes[2]->read_line(15s).value_or("(none)");
  EXPECT_EQ(gone.rfind("z ERR NOT_FOUND", 0), 0u) << gone << "\n" << logs();

  // The permit went with the session: the old connection is told, MINE
  // shows it with its fence, and nobody else gets it.
  std::string rest;
  EXPECT_TRUE(holder->wait_closed(10s, &rest));
  EXPECT_NE(rest.find("* ERR KICKED resumed on another connection"), std::string::npos) << rest;
  EXPECT_EQ(resumes[0]->request("m MINE", 10s), "m ITEM held lock 1 " + std::to_string(fence_of(granted)));
  EXPECT_EQ(resumes[0]->read_line(5s).value_or(""), "m END 1");
  auto third = connect(other);
  ASSERT_TRUE(third != nullptr);
  EXPECT_EQ(third->request(req::acquire("t", "lock", 1, 0), 10s), "t TIMEOUT") << logs();
  // The live session was not moved by the refused RESUME.
  EXPECT_EQ(live->request("p PING", 10s), "p PONG") << logs();
}

// Heartbeats a second apart: a follower that learned of a commit only from
// the next one would answer its clients about once a second.
// CLUSTER STATUS's members by id (below).
std::map<std::uint64_t, nlohmann::json> members_of(const std::string& answer, std::string_view tag);

// A majority lost for good (docs/replication.md): the leader and a follower
// killed with -9 and their data deleted, after grants and a POST the two
// made while the survivor was cut off from them. The survivor alone grants
// nothing; restarted with --recover --raise-fences
// 1000 it forces a configuration of itself alone, leads, keeps the created
// semaphore as it had applied it (the POST it never received is lost), and
// its fences go on above every one the lost servers handed out (without
// the raise they repeat them); a fresh fourth server is then added with
// `netsem cluster add` and catches up.
TEST_F(NetsemdClusterPartitioned, ASurvivorRecoveredAloneLeadsKeepsItsStateAndGrantsAboveTheLostFences) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int survivor = (lead + 1) % kServers;
  const int other = (lead + 2) % kServers;
  auto a = connect(lead);
  ASSERT_TRUE(a != nullptr);
  ASSERT_EQ(a->request(req::create("c1", "jobs", 0, 5), 10s), "c1 OK") << logs();
  ASSERT_EQ(a->request(req::post("p1", "jobs", 3), 10s), "p1 OK 3") << logs();
  // A permit held by a client of the survivor.
  auto h = connect(survivor);
  ASSERT_TRUE(h != nullptr);
  const std::string held = h->request(req::acquire("h1", "lock", 1, 20000), 10s);
  ASSERT_EQ(held.rfind("h1 OK ", 0), 0u) << held << "\n" << logs();
  // Read on the survivor: it applied all of the above.
  ASSERT_EQ(h->request(req::get("g1", "jobs"), 10s), "g1 OK 3 5 0 0 created") << logs();

  // The survivor falls behind: the two others grant and POST without it.
  proxy_->isolate(survivor + 1);
  std::uint64_t lost_fence = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string tag = std::to_string(i);
    const std::string granted = a->request(req::acquire("a" + tag, "other", 1, 20000), 10s);
    ASSERT_EQ(granted.rfind("a" + tag + " OK ", 0), 0u) << granted << "\n" << logs();
    lost_fence = std::max(lost_fence, fence_of(granted));
    ASSERT_EQ(a->request(req::release("r" + tag, "other"), 10s).rfind("r" + tag + " OK", 0), 0u) << logs();
  }
  ASSERT_EQ(a->request(req::post("p2", "jobs", 1), 10s), "p2 OK 4") << logs();
  a.reset();
  // The majority is lost for good.
  for (int i : {lead, other}) {
    ASSERT_NO_FATAL_FAILURE(kill_server(i));
    std::filesystem::remove_all(data_dir(i));
  }
  // Alone it grants nothing.
  auto w = connect(survivor);
  ASSERT_TRUE(w != nullptr);
  w->send_line(req::acquire("w1", "fresh", 1, 20000));
  EXPECT_FALSE(w->read_line(2s).has_value()) << "the survivor alone granted\n" << logs();
  w.reset();
  h.reset();
  ASSERT_NO_FATAL_FAILURE(kill_server(survivor));
  // What the proxy held back belonged to connections that are gone.
  proxy_->heal();

  // Recovered.
  Netsemd::Options options;
  options.raw_config = config(survivor);
  options.port = client_ports_[survivor];
  options.data_dir = data_dir(survivor);
  options.extra_args = {"--recover", "--raise-fences", "1000"};
  std::string error;
  servers_[survivor] = Netsemd::start(options, &error);
  ASSERT_TRUE(servers_[survivor] != nullptr) << error;
  EXPECT_EQ(leader(), survivor) << logs();
  const std::string log = servers_[survivor]->log();
  const std::string alone = std::to_string(survivor + 1) + "@" + raft_address(survivor) + " (voter)";
  EXPECT_NE(log.find("raft: --recover: forced a new configuration in "), std::string::npos) << log;
  for (int i = 0; i < kServers; ++i) {
    EXPECT_NE(log.find(std::to_string(i + 1) + "@" + raft_address(i) + " (voter)"), std::string::npos) << log;
  }
  EXPECT_NE(log.find(", is replaced by this server alone, " + alone + ", at index "), std::string::npos) << log;
  auto b = connect(survivor);
  ASSERT_TRUE(b != nullptr);
  EXPECT_EQ(b->request(req::get("g2", "jobs"), 10s), "g2 OK 3 5 0 0 created") << logs();
  const std::string granted = b->request(req::acquire("b1", "fresh", 1, 20000), 10s);
  ASSERT_EQ(granted.rfind("b1 OK ", 0), 0u) << granted << "\n" << logs();
  EXPECT_GT(fence_of(granted), lost_fence) << granted << " after fences up to " << lost_fence << " were lost";
  EXPECT_TRUE(servers_[survivor]->wait_for_log("fences raised by 1000 after --recover", 5s)) << logs();
  EXPECT_FALSE(std::filesystem::exists(data_dir(survivor) / "raft" / "netsem-recover-raise-fences"));
  const auto members = members_of(b->request("s1 CLUSTER STATUS", 5s), "s1");
  EXPECT_EQ(members.size(), 1u) << logs();

  // A fresh fourth server joins it.
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  NetsemRun added;
  ASSERT_TRUE(cli_changes(
      {"--server", client_address(survivor), "cluster", "add", "4", raft_address(3), client_address(3)}, &added))
      << added << logs();
  const auto after = members_of(b->request("s2 CLUSTER STATUS", 5s), "s2");
  ASSERT_EQ(after.size(), 2u) << logs();
  EXPECT_EQ(after.at(4).at("role"), "voter");
  auto d = connect(3);
  ASSERT_TRUE(d != nullptr);
  EXPECT_EQ(d->request(req::get("g3", "jobs"), 10s), "g3 OK 3 5 0 0 created") << logs();
  const std::string fourth = d->request(req::acquire("d1", "fourth", 1, 20000), 10s);
  ASSERT_EQ(fourth.rfind("d1 OK ", 0), 0u) << fourth << "\n" << logs();
  EXPECT_GT(fence_of(fourth), fence_of(granted));
}

// A second --recover (left in a unit file, say). Server 1 recovered alone
// (servers 2 and 3 lost) leaves its record, netsem-recovered, in the Raft
// directory. Given --recover again at once, it forces nothing and raises
// nothing more: the configuration is still the one recorded. Once server 4
// was added, --recover is refused (exit 1, naming the record and what to
// do), and the cluster of 1 and 4 is as it was: server 1 restarted without
// it leads both again. The record removed by hand, --recover forces
// server 1 alone again.
TEST_F(NetsemdCluster, ASecondRecoverForcesNothingAndIsRefusedOnceServersWereAdded) {
  ASSERT_GE(leader(), 0) << logs();
  for (int i = 0; i < kServers; ++i) ASSERT_NO_FATAL_FAILURE(kill_server(i));
  const auto raft_dir = data_dir(0) / "raft";
  const auto record = raft_dir / "netsem-recovered";
  const auto start_first = [&](const std::vector<std::string>& args, std::string* error) {
    Netsemd::Options options;
    options.raw_config = config(0);
    options.port = client_ports_[0];
    options.data_dir = data_dir(0);
    options.extra_args = args;
    servers_[0] = Netsemd::start(options, error);
    return servers_[0] != nullptr;
  };
  const auto stop_first = [&] {
    servers_[0]->send_signal(SIGTERM);
    ASSERT_TRUE(servers_[0]->wait_exit(10s).has_value()) << logs();
    servers_[0].reset();
  };
  const auto members = [&](int i) {
    auto c = connect(i);
    return c == nullptr ? std::map<std::uint64_t, nlohmann::json>{}
                        : members_of(c->request("s CLUSTER STATUS", 5s), "s");
  };
  const std::vector<std::string> recover = {"--recover", "--raise-fences", "100"};
  std::string error;
  ASSERT_TRUE(start_first(recover, &error)) << error;
  EXPECT_EQ(leader(), 0) << logs();
  ASSERT_TRUE(servers_[0]->wait_for_log("fences raised by 100 after --recover", 5s)) << logs();
  std::ifstream in(record);
  const std::string recorded((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(recorded.find("\nforced 1@" + raft_address(0) + "\n"), std::string::npos) << recorded;
  EXPECT_NE(recorded.find("\nreplaced 1@" + raft_address(0) + ",2@" + raft_address(1) + ",3@" + raft_address(2) + "\n"),
            std::string::npos)
      << recorded;
  EXPECT_NE(recorded.find("\nraise-fences 100\n"), std::string::npos) << recorded;
  std::uint64_t fence = 0;
  {
    auto c = connect(0);
    ASSERT_TRUE(c != nullptr);
    fence = fence_of(c->request(req::acquire("a1", "other", 1, 20000), 10s));
    ASSERT_GT(fence, 100u) << logs();
  }

  // Again at once: a no-op.
  ASSERT_NO_FATAL_FAILURE(stop_first());
  ASSERT_TRUE(start_first(recover, &error)) << error;
  EXPECT_EQ(leader(), 0) << logs();
  EXPECT_TRUE(servers_[0]->wait_for_log("records that this server was recovered already", 5s)) << logs();
  EXPECT_EQ(servers_[0]->log().find("forced a new configuration"), std::string::npos) << logs();
  {
    auto c = connect(0);
    ASSERT_TRUE(c != nullptr);
    const std::uint64_t next = fence_of(c->request(req::acquire("a2", "another", 1, 20000), 10s));
    EXPECT_GT(next, fence);
    EXPECT_LT(next, fence + 100) << "the fences were raised again\n" << logs();
  }
  EXPECT_EQ(members(0).size(), 1u) << logs();

  // Server 4 added: refused, nothing changed.
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  NetsemRun added;
  ASSERT_TRUE(
      cli_changes({"--server", client_address(0), "cluster", "add", "4", raft_address(3), client_address(3)}, &added))
      << added << logs();
  ASSERT_EQ(members(0).size(), 2u) << logs();
  ASSERT_NO_FATAL_FAILURE(stop_first());
  EXPECT_FALSE(start_first(recover, &error));
  EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << error;
  EXPECT_NE(error.find("netsemd: cannot start: ALREADY_EXISTS: --recover: this Raft directory was recovered before (" +
                       record.string() + ": at "),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("its configuration has changed since: it is now 1@" + raft_address(0) + ",4@" + raft_address(3)),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("remove " + record.string() + " by hand and run --recover again. Nothing was changed"),
            std::string::npos)
      << error;
  ASSERT_TRUE(start_first({}, &error)) << error;
  const auto both = members(leader() == 0 ? 0 : 3);
  EXPECT_EQ(both.size(), 2u) << logs();
  EXPECT_TRUE(both.contains(1) && both.contains(4)) << logs();

  // The record removed by hand: recovered again (server 4 lost too).
  ASSERT_NO_FATAL_FAILURE(kill_server(3));
  ASSERT_NO_FATAL_FAILURE(stop_first());
  ASSERT_TRUE(std::filesystem::remove(record));
  ASSERT_TRUE(start_first(recover, &error)) << error;
  EXPECT_TRUE(servers_[0]->wait_for_log("raft: --recover: forced a new configuration in ", 5s)) << logs();
  EXPECT_EQ(members(0).size(), 1u) << logs();
  EXPECT_TRUE(std::filesystem::exists(record));

  // A record whose term the stored one is below (the recovery's raise of the
  // term did not happen: the process died, or the write failed, after the
  // forced configuration; review28 reproduced it with ENOSPC): any start,
  // with --recover again or without, raises the term to it before leading,
  // so no entry of this leader shares a term with the lost leader's. Before,
  // the start led in the stored term.
  ASSERT_NO_FATAL_FAILURE(stop_first());
  std::string text;
  {
    std::ifstream current(record);
    text.assign(std::istreambuf_iterator<char>(current), std::istreambuf_iterator<char>());
  }
  const auto at = text.find("\nterm ");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, text.find('\n', at + 1) - at, "\nterm 1000");
  {
    std::ofstream rewritten(record, std::ios::trunc);
    rewritten << text;
  }
  ASSERT_TRUE(start_first({}, &error)) << error;
  EXPECT_TRUE(servers_[0]->wait_for_log("a recovery of " + raft_dir.string() + " owes", 5s)) << logs();
  ASSERT_EQ(leader(), 0) << logs();
  auto c = connect(0);
  ASSERT_TRUE(c != nullptr);
  const std::string status = c->request("s CLUSTER STATUS", 5s);
  ASSERT_EQ(status.rfind("s OK {", 0), 0u) << status;
  EXPECT_GE(nlohmann::json::parse(status.substr(5)).at("term").get<std::uint64_t>(), 1000u) << status;
}

class NetsemdClusterSlowHeartbeat : public NetsemdCluster {
 protected:
  void SetUp() override {
    raft_timeouts_ = "election_timeout_ms = 3000\nheartbeat_timeout_ms = 1000\n";
    NetsemdCluster::SetUp();
  }
};

// A follower's client (ACE, a 1.0 client: one that does not move to the
// leader) is answered when the follower applies its forwarded request, once
// it learns of the commit: the leader tells it at once, not with the next
// heartbeat. Ten requests, each of which would otherwise wait for a
// heartbeat (up to a second), and a grant handed on by the leader's client
// to the follower's.
TEST_F(NetsemdClusterSlowHeartbeat, AFollowersClientIsAnsweredWithoutWaitingForTheHeartbeat) {
  const int lead = leader(15s);
  ASSERT_GE(lead, 0) << logs();
  auto on_follower = connect((lead + 1) % kServers);
  auto on_leader = connect(lead);
  ASSERT_TRUE(on_follower != nullptr && on_leader != nullptr);
  ASSERT_TRUE(grants(*on_follower, "warm", "lock"));
  ASSERT_EQ(on_follower->request(req::release("rwarm", "lock"), 10s).rfind("rwarm OK", 0), 0u) << logs();
  const auto start = std::chrono::steady_clock::now();
  grant_and_release(*on_follower, 5);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 2500ms) << "5 cycles through a follower took "
                          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n"
                          << logs();
  // The leader's client holds; the follower's waits, and is granted when the
  // leader's releases.
  ASSERT_TRUE(grants(*on_leader, "l1", "lock"));
  ASSERT_TRUE(queues(*on_follower, "f1", "lock"));
  const auto handed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(on_leader->request(req::release("lr1", "lock"), 10s).rfind("lr1 OK", 0), 0u) << logs();
  const std::string granted = on_follower->read_line(10s).value_or("(nothing)");
  EXPECT_EQ(granted.rfind("f1 OK ", 0), 0u) << granted << "\n" << logs();
  EXPECT_LT(std::chrono::steady_clock::now() - handed_at, 700ms) << "the grant waited for the heartbeat";
}

// Mutual and secret-free: the bytes a follower's peer link sends to its
// leader's client address hold no secret, and an impostor there hears the
// hello and nothing else. The leader is killed and a fake takes its client
// port on 127.0.0.x before the follower notices (election timeout 3 s); the
// follower's next forward goes to the fake, which answers with a forged
// proof; the request is granted by the next leader all the same. (Before
// the link's challenge, the fake heard `PEER <id> <secret>` and the request.)
TEST_F(NetsemdClusterSlowHeartbeat, AFollowersPeerLinkPutsNoSecretOnTheWireAndGivesAnImpostorNothing) {
  const std::string secret = "a-cluster-secret-of-the-test-0123456789";
  const int lead = leader(15s);
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  auto client = connect(follower);
  ASSERT_TRUE(client != nullptr);
  ASSERT_TRUE(grants(*client, "warm", "lock"));  // its link to the leader works
  ASSERT_EQ(client->request(req::release("rwarm", "lock"), 10s).rfind("rwarm OK", 0), 0u) << logs();
  ASSERT_NO_FATAL_FAILURE(kill_server(lead));
  // The fake leader, at its client address, answers the hello with a forged
  // answer and keeps what it heard.
  test_support::LineServer fake({.host = host(lead), .port = static_cast<std::uint16_t>(client_ports_[lead])},
                                [&](int, const test_support::LineServer::Fields&) {
                                  return std::optional<std::string>(std::to_string(lead + 1) + " LINK-ANSWER " +
                                                                    std::string(64, 'b') + " " + std::string(64, 'a'));
                                });
  // Past the follower's retry delay after the link's break (200 ms).
  std::this_thread::sleep_for(300ms);
  client->send_line(req::acquire("a1", "lock", 1, 20000));
  // Until the follower hangs up on the forged answer (or 5 s).
  test_support::eventually([&] { return fake.connections() > 0 && fake.closed(0); }, 5s, 20ms);
  std::vector<std::string> heard;
  for (int n = 0; n < fake.connections(); ++n) heard.push_back(fake.bytes(n));
  ASSERT_FALSE(heard.empty()) << "the follower never linked to the fake leader\n" << logs();
  const std::string hello = "PEER " + std::to_string(follower + 1) + " LINK " + std::to_string(lead + 1) + " ";
  for (const std::string& bytes : heard) {
    std::printf("the fake leader heard: %s", bytes.c_str());
    EXPECT_EQ(bytes.find(secret), std::string::npos) << "the secret went on the wire: " << bytes;
    EXPECT_EQ(bytes.find(secret.substr(0, 16)), std::string::npos) << bytes;
    // The hello alone: no proof, no request.
    EXPECT_TRUE(std::regex_match(bytes, std::regex(hello + "[0-9a-f]{64} SEALED\n"))) << bytes;
  }
  EXPECT_TRUE(
      servers_[follower]->wait_for_log("its answer to this server's hello does not prove the cluster secret", 5s))
      << logs();
  // The request is not lost: the next leader grants it.
  const std::optional<std::string> granted = client->read_line(20s);
  ASSERT_TRUE(granted.has_value()) << logs();
  EXPECT_EQ(granted->rfind("a1 OK ", 0), 0u) << *granted << "\n" << logs();
}

class NetsemdClusterShortTimeout : public NetsemdCluster {
 protected:
  void SetUp() override {
    extra_server_config_ = "session_timeout_ms = 2000\n";
    NetsemdCluster::SetUp();
  }
};

TEST_F(NetsemdClusterShortTimeout, AResumableSessionLastsTheSessionTimeoutWithoutItsConnection) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int first = (lead + 1) % kServers;
  auto holder = connect(first);
  ASSERT_TRUE(holder != nullptr);
  const auto [id, secret] = resumable_of(holder->request("r RESUMABLE", 10s), "r");
  ASSERT_FALSE(id.empty()) << logs();
  ASSERT_TRUE(grants(*holder, "a", "lock", 60000));
  holder->reset();  // the connection breaks (no QUIT)

  // Still held; resumed on the same server.
  auto third = connect(lead);
  ASSERT_TRUE(third != nullptr);
  EXPECT_EQ(third->request(req::acquire("t", "lock", 1, 0), 10s), "t TIMEOUT") << logs();
  auto again = connect(first);
  ASSERT_TRUE(again != nullptr);
  EXPECT_EQ(again->request("x RESUME " + id + " " + secret, 10s), "x OK " + id + " 0") << logs();
  again->reset();

  // Nobody resumes it: the log's session expiry ends it (its permit goes
  // to the waiter), and a late RESUME finds nothing.
  const auto broken_at = std::chrono::steady_clock::now();
  const std::string granted = third->request(req::acquire("w", "lock", 1, 20000), 10s);
  std::string handed = granted;
  if (granted == "w QUEUED 1") {
    std::this_thread::sleep_for(1000ms);
    EXPECT_EQ(third->request("p PING", 10s), "p PONG");  // the waiter's own session lives on
    handed = third->read_line(10s).value_or("");
  }
  const auto granted_at = std::chrono::steady_clock::now();
  ASSERT_EQ(handed.rfind("w OK ", 0), 0u) << handed << "\n" << logs();
  EXPECT_GE(granted_at - broken_at, 1500ms);
  auto late = connect(first);
  ASSERT_TRUE(late != nullptr);
  EXPECT_EQ(late->request("x RESUME " + id + " " + secret, 10s).rfind("x ERR NOT_FOUND", 0), 0u) << logs();

  // Without RESUMABLE, the end of the connection ends the session at once
  // (on a name of its own: `third` waited silently past the timeout).
  auto plain = connect(first);
  auto watcher = connect(lead);
  ASSERT_TRUE(plain != nullptr && watcher != nullptr);
  ASSERT_TRUE(grants(*plain, "p", "solo", 60000));
  EXPECT_TRUE(queues(*watcher, "w2", "solo"));
  const auto closed_at = std::chrono::steady_clock::now();
  plain->reset();
  const std::string next = watcher->read_line(10s).value_or("");
  EXPECT_EQ(next.rfind("w2 OK ", 0), 0u) << next << "\n" << logs();
  EXPECT_LT(std::chrono::steady_clock::now() - closed_at, 1500ms);
}

// The members' view, from CLUSTER STATUS's JSON: id -> member object.
std::map<std::uint64_t, nlohmann::json> members_of(const std::string& answer, std::string_view tag) {
  std::map<std::uint64_t, nlohmann::json> out;
  const std::string prefix = std::string(tag) + " OK ";
  if (answer.rfind(prefix, 0) != 0) return out;
  const nlohmann::json view = nlohmann::json::parse(answer.substr(prefix.size()));
  for (const auto& member : view.at("members")) {
    out[member.at("id").get<std::uint64_t>()] = member;
  }
  return out;
}

// Membership at run time: a follower refuses a change and names the
// leader; the leader adds a fourth server started with join = on (in none
// of the others' files), which catches up (the grants made before it came
// are in its replica) and serves a client of its own through a peer link
// to the leader (its address known from the replicated members); then a
// follower is removed, stopped, and the remaining three go on.
TEST_F(NetsemdCluster, AServerAddedAtRunTimeCatchesUpAndOneRemovedLeavesTheClusterGoingOn) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const std::string status = admin->request("s1 CLUSTER STATUS", 5s);
  ASSERT_EQ(status.rfind("s1 OK {", 0), 0u) << status;
  EXPECT_EQ(members_of(status, "s1").size(), 3u) << status;

  auto a = connect(follower);
  ASSERT_TRUE(a != nullptr);
  ASSERT_TRUE(grants(*a, "a1", "lock"));
  const std::string refused = a->request("c0 CLUSTER REMOVE 3", 5s);
  EXPECT_EQ(refused.rfind("c0 ERR BUSY not the leader; the leader is server " + std::to_string(lead + 1) + " at " +
                              client_address(lead),
                          0),
            0u)
      << refused;
  EXPECT_EQ(admin->request("c1 CLUSTER ADD 4 nonsense 127.0.0.4:1", 5s).rfind("c1 ERR BAD_ARG ", 0), 0u);
  // Checked as a server.<id> line is: a host name and 0.0.0.0 were let in
  // (an audit), and the server stayed a spare that could never join.
  const std::string named = admin->request("c3 CLUSTER ADD 4 127.0.0.4:7001 localhost:27531", 5s);
  EXPECT_EQ(named.rfind("c3 ERR BAD_ARG bad client address: ", 0), 0u) << named;
  EXPECT_NE(named.find("not a host name"), std::string::npos) << named;
  const std::string any = admin->request("c4 CLUSTER ADD 4 0.0.0.0:7001 127.0.0.4:27531", 5s);
  EXPECT_EQ(any.rfind("c4 ERR BAD_ARG bad Raft address: ", 0), 0u) << any;
  EXPECT_EQ(admin->request("c2 CLUSTER REMOVE 9", 5s).rfind("c2 ERR NOT_FOUND ", 0), 0u);
  // A server id is 1..2^53, as a [cluster] id; 2^64-1 is the resume
  // probe's host in the log (it was taken, and added to the configuration).
  EXPECT_EQ(admin->request("c5 CLUSTER ADD 18446744073709551615 127.0.0.4:7001 127.0.0.4:27531", 5s),
            "c5 ERR BAD_ARG a server id is a decimal number 1..9007199254740992 (2^53)");
  EXPECT_EQ(admin->request("c6 CLUSTER REMOVE 9007199254740993", 5s).rfind("c6 ERR BAD_ARG a server id ", 0), 0u);

  // The fourth server: a pristine directory that does not bootstrap.
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  // With the CLI, against a follower: it asks the leader.
  const auto asked_at = std::chrono::steady_clock::now();
  NetsemRun added;
  ASSERT_TRUE(cli_changes(
      {"-v", "--server", client_address(follower), "cluster", "add", "4", raft_address(3), client_address(3)}, &added))
      << added << logs();
  if (added.exit_code == 0) {  // else a TIMEOUT after which the configuration had it
    EXPECT_EQ(added.out, "server 4 added: a voter\n") << added;
    EXPECT_NE(added.err.find("asking the leader, "), std::string::npos) << added;
  }
  std::printf(
      "netsem cluster add of a pristine fourth server: a voter after %lld ms\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked_at).count()));
  const auto members = members_of(admin->request("s2 CLUSTER STATUS", 5s), "s2");
  ASSERT_EQ(members.size(), 4u) << logs();
  EXPECT_EQ(members.at(4).at("role"), "voter");
  EXPECT_EQ(members.at(4).at("client"), client_address(3));

  const NetsemRun shown = run_netsem({"--server", client_address(3), "cluster", "status"}, {}, 10s);
  ASSERT_EQ(shown.exit_code, 0) << shown;
  EXPECT_NE(shown.out.find("server 4 ("), std::string::npos) << shown;
  const std::regex member_row("\n4 +voter +" + raft_address(3) + " +" + client_address(3) + " +- +- +-\n");
  EXPECT_TRUE(std::regex_search(shown.out, member_row)) << shown;

  // It caught up: the grant made before it came is in its replica.
  auto d = connect(3);
  ASSERT_TRUE(d != nullptr);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  nlohmann::json stats;
  do {
    const std::string answer = d->request("st STATS", 5s);
    ASSERT_EQ(answer.rfind("st OK {", 0), 0u) << answer;
    stats = nlohmann::json::parse(answer.substr(6));
    if (stats.at("grants").get<std::uint64_t>() >= 1 && stats.at("held").get<std::uint64_t>() == 1) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_GE(stats.at("grants").get<std::uint64_t>(), 1u) << stats;
  EXPECT_EQ(stats.at("held"), 1) << stats;
  EXPECT_EQ(stats.at("cluster").at("leader_id"), lead + 1) << stats;
  EXPECT_EQ(stats.at("cluster").at("members"), 4) << stats;
  // Its own client, through its peer link to the leader (which knows its
  // host from the replicated members, not from a file).
  ASSERT_TRUE(grants(*d, "d1", "other"));

  // A follower removed (not the leader), then stopped: three go on.
  const int removed = (lead + 2) % kServers;
  EXPECT_TRUE(changes("CLUSTER REMOVE " + std::to_string(removed + 1))) << logs();
  const auto after = members_of(admin->request("s3 CLUSTER STATUS", 5s), "s3");
  EXPECT_EQ(after.size(), 3u) << logs();
  EXPECT_FALSE(after.contains(removed + 1));
  ASSERT_NO_FATAL_FAILURE(kill_server(removed));
  ASSERT_EQ(a->request(req::release("r1", "lock"), 10s).rfind("r1 OK", 0), 0u) << logs();
  ASSERT_TRUE(grants(*d, "d2", "lock"));
}

// A REMOVE whose remaining voters have no majority the leader hears from
// is refused before anything changes (audit28 F3): with one follower
// killed, removing the other would leave the leader and the dead one, which
// cannot commit the change; the cluster stopped until the dead one came
// back. ERR BUSY names the unreachable server; the cluster grants on; the
// dead one can be removed, which leaves two live voters.
TEST_F(NetsemdCluster, ARemoveThatWouldLeaveNoLiveMajorityIsRefused) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int dead = (lead + 1) % kServers;
  const int live = (lead + 2) % kServers;
  ASSERT_NO_FATAL_FAILURE(kill_server(dead));
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  // The leader counts a server unreachable once an election timeout passed
  // without a word from it.
  std::this_thread::sleep_for(1500ms);
  const std::string refused = admin->request("r1 CLUSTER REMOVE " + std::to_string(live + 1), 10s);
  EXPECT_EQ(refused.rfind("r1 ERR BUSY removing server " + std::to_string(live + 1) + " would leave 2 voters", 0), 0u)
      << refused << "\n"
      << logs();
  EXPECT_NE(refused.find("unreachable: server " + std::to_string(dead + 1)), std::string::npos) << refused;
  // The CLI says it and exits 1, as for every BUSY (docs/cli.md).
  const NetsemRun cli =
      run_netsem({"--server", client_address(lead), "cluster", "remove", std::to_string(live + 1)}, {}, 30s);
  EXPECT_EQ(cli.exit_code, 1) << cli.err;
  EXPECT_NE(cli.err.find("would leave 2 voters"), std::string::npos) << cli.err;
  EXPECT_EQ(members_of(admin->request("s1 CLUSTER STATUS", 5s), "s1").size(), 3u);
  ASSERT_TRUE(grants(*admin, "g1", "lock")) << logs();
  ASSERT_EQ(admin->request(req::release("r2", "lock"), 10s).rfind("r2 OK", 0), 0u) << logs();
  EXPECT_TRUE(changes("CLUSTER REMOVE " + std::to_string(dead + 1))) << logs();
  EXPECT_EQ(members_of(admin->request("s2 CLUSTER STATUS", 5s), "s2").size(), 2u);
  ASSERT_TRUE(grants(*admin, "g2", "lock")) << logs();
}

// A follower removed from the configuration learns it and stops (newuser23:
// server 3 went on as a candidate for ever). libraft 0.15's leader
// replicates nothing more to a server from the moment it proposes its
// removal, so the removed one never applies that entry: the leader tells it
// over its client port once the removal committed. It logs why and exits 0
// (a systemd Restart=on-failure leaves it stopped) within a few seconds
// (its clean stop waits at most two election timeouts for commands that
// will never commit). A server started with join = on and not yet added
// (in no configuration) is not stopped by any of this.
TEST_F(NetsemdCluster, ARemovedFollowerIsToldAndExits0AndAServerWaitingToJoinDoesNot) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  // Waiting to join, it is not ready, and says so (it said "no leader
  // known", as a member cut off from the others).
  const std::string waiting = readyz_becomes(3, 503, "waiting to be added").body;
  EXPECT_NE(waiting.find("\"reason\":\"waiting to be added: this server (id 4) is in no configuration yet"),
            std::string::npos)
      << waiting;
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const int removed = (lead + 1) % kServers;
  const auto asked_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(changes("CLUSTER REMOVE " + std::to_string(removed + 1))) << logs();
  const std::optional<int> status = servers_[removed]->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "the removed server still runs\n" << logs();
  std::printf(
      "a removed follower stopped %lld ms after the REMOVE was sent\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked_at).count()));
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status << "\n" << logs();
  const std::string said = servers_[removed]->log();
  EXPECT_NE(said.find("this server (id " + std::to_string(removed + 1) +
                      ") was removed from the cluster's configuration at index "),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("; stopping"), std::string::npos) << said;
  EXPECT_TRUE(servers_[lead]->wait_for_log("told server " + std::to_string(removed + 1) + " it was removed", 5s))
      << logs();
  servers_[removed].reset();

  // The two left grant on; the server waiting to join still runs and
  // answers, and can be added.
  auto b = connect((lead + 2) % kServers);
  ASSERT_TRUE(b != nullptr);
  EXPECT_TRUE(grants(*b, "b1", "lock"));
  EXPECT_FALSE(servers_[3]->wait_exit(1s).has_value()) << logs();
  auto d = connect(3);
  ASSERT_TRUE(d != nullptr);
  EXPECT_EQ(d->request("p1 PING", 5s), "p1 PONG");
  EXPECT_TRUE(changes(fourth_add())) << logs();
  EXPECT_FALSE(servers_[3]->wait_exit(500ms).has_value()) << logs();
  EXPECT_NE(readyz_becomes(3, 200).body.find("\"status\":\"ready\""), std::string::npos);
}

// A follower removed (it stops), started again on its old data directory
// and added back (audit24 finding 1: answered "a voter", then it stopped,
// exit 0, within 2 s, leaving a dead voter). Catching up, it applies its
// own old removal, a committed configuration without it (here in the
// leader's snapshot, taken at 8192 entries), before the one that adds it
// back; it hears from the leader all along, so it is not removed and goes
// on. It stays running, a voter with lag 0, and the cluster needs it: with
// another server killed, it and the leader grant. The leader's notice
// names the removal's index (it named the one before, 1 here, when the
// status it read was not yet published).
TEST_F(NetsemdCluster, ARemovedFollowerAddedBackOnItsOldDataStaysAVoter) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const int back = (lead + 1) % kServers;
  const int other = (lead + 2) % kServers;
  const std::string id = std::to_string(back + 1);
  ASSERT_TRUE(changes("CLUSTER REMOVE " + id)) << logs();
  const std::optional<int> status = servers_[back]->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "the removed server still runs\n" << logs();
  ASSERT_TRUE(servers_[lead]->wait_for_log("told server " + id + " it was removed (at index ", 5s)) << logs();
  EXPECT_EQ(servers_[lead]->log().find("told server " + id + " it was removed (at index 1)"), std::string::npos)
      << logs();
  servers_[back].reset();
  // Entries between the removal and the ADD, past the leader's first
  // snapshot: it catches up from a snapshot whose configuration lacks it.
  ASSERT_NO_FATAL_FAILURE(grant_and_release(*admin, 4200));

  ASSERT_NO_FATAL_FAILURE(start(back));
  NetsemRun added;
  ASSERT_TRUE(cli_changes(
      {"--server", client_address(lead), "cluster", "add", id, raft_address(back), client_address(back)}, &added))
      << added << logs();
  if (added.exit_code == 0) {  // else a TIMEOUT after which the configuration had it
    EXPECT_EQ(added.out, "server " + id + " added: a voter\n") << added;
  }
  EXPECT_FALSE(servers_[back]->wait_exit(3s).has_value()) << "the server added back stopped\n" << logs();
  EXPECT_EQ(servers_[back]->log().find("was removed from the cluster's configuration"), std::string::npos) << logs();
  admin = connect(lead);  // the first one's session timed out (3 s idle)
  ASSERT_TRUE(admin != nullptr);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::map<std::uint64_t, nlohmann::json> members;
  do {
    members = members_of(admin->request("s1 CLUSTER STATUS", 5s), "s1");
    if (members.size() == 3 && members.at(back + 1).value("lag", 1) == 0) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(members.size(), 3u) << logs();
  EXPECT_EQ(members.at(back + 1).at("role"), "voter") << members.at(back + 1);
  EXPECT_EQ(members.at(back + 1).value("lag", 1), 0) << members.at(back + 1);

  ASSERT_NO_FATAL_FAILURE(kill_server(other));
  auto b = connect(back);
  ASSERT_TRUE(b != nullptr);
  EXPECT_TRUE(grants(*b, "b1", "lock"));
  EXPECT_FALSE(servers_[back]->wait_exit(0ms).has_value()) << logs();
}

// CLUSTER STATUS on the leader says which members it hears from (cli23: a
// follower killed with -9 showed as a voter with a growing lag, nothing
// else): each other member's last_contact_ms, and whether that is within
// an election timeout (reachable). A follower killed with -9 becomes
// unreachable, its last contact growing past the election timeout (500 ms
// here); the CLI's CONTACT column says so.
TEST_F(NetsemdCluster, ClusterStatusSaysWhichMembersTheLeaderHearsFrom) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const int dead = (lead + 1) % kServers;
  const int live = (lead + 2) % kServers;
  auto members = members_of(admin->request("s1 CLUSTER STATUS", 5s), "s1");
  ASSERT_EQ(members.size(), 3u) << logs();
  EXPECT_FALSE(members.at(lead + 1).contains("last_contact_ms")) << members.at(lead + 1);
  for (const int i : {dead, live}) {
    const nlohmann::json& member = members.at(i + 1);
    ASSERT_TRUE(member.contains("last_contact_ms")) << member;
    EXPECT_TRUE(member.at("last_contact_ms").is_number()) << member;
    EXPECT_LE(member.at("last_contact_ms").get<std::int64_t>(), 500) << member;
    EXPECT_EQ(member.at("reachable"), true) << member;
  }
  // A follower's view: the leader only sends to it; no `reachable` there.
  auto f = connect(live);
  ASSERT_TRUE(f != nullptr);
  const auto seen = members_of(f->request("s2 CLUSTER STATUS", 5s), "s2");
  ASSERT_EQ(seen.size(), 3u) << logs();
  EXPECT_TRUE(seen.at(lead + 1).at("last_contact_ms").is_number()) << seen.at(lead + 1);
  EXPECT_FALSE(seen.at(lead + 1).contains("reachable")) << seen.at(lead + 1);

  ASSERT_NO_FATAL_FAILURE(kill_server(dead));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    members = members_of(admin->request("s3 CLUSTER STATUS", 5s), "s3");
    if (members.size() == 3 && members.at(dead + 1).at("reachable") == false) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(members.size(), 3u) << logs();
  EXPECT_EQ(members.at(dead + 1).at("reachable"), false) << members.at(dead + 1);
  EXPECT_GT(members.at(dead + 1).at("last_contact_ms").get<std::int64_t>(), 500) << members.at(dead + 1);
  EXPECT_EQ(members.at(live + 1).at("reachable"), true) << members.at(live + 1);

  const NetsemRun shown = run_netsem({"--server", client_address(lead), "cluster", "status"}, {}, 10s);
  ASSERT_EQ(shown.exit_code, 0) << shown;
  EXPECT_TRUE(std::regex_search(
      shown.out, std::regex("\n" + std::to_string(dead + 1) + " +voter +.* unreachable \\([0-9]+ ms\\)\n")))
      << shown;
  EXPECT_TRUE(std::regex_search(shown.out, std::regex("\n" + std::to_string(live + 1) + " +voter +.* [0-9]+ ms\n")))
      << shown;
  EXPECT_NE(shown.out.find("CONTACT"), std::string::npos) << shown;
}

// netsem cluster against a server that knows no leader (the other two
// killed: as for a removed server, or one cut off from the majority). Its
// HELLO would open the session in the log and wait for a leader: the CLI
// printed nothing and gave up after the connect timeout, exit 69, "has not
// answered" (session 24's note, 9.5). Now its connection says no HELLO
// (ClientOptions::sessionless), and the server answers from its own Raft
// state at once: status shows the server with "no leader known for N s"
// and exits 69 saying why; remove is answered BUSY at once, nothing done.
TEST_F(NetsemdCluster, ClusterCommandsOnAServerWithNoLeaderAnswerAtOnceAndSaySo) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int alone = (lead + 1) % kServers;
  for (int i = 0; i < kServers; ++i) {
    if (i != alone) {
      ASSERT_NO_FATAL_FAILURE(kill_server(i));
    }
  }
  // Once its election timeout has passed, it names no leader.
  auto raw = connect(alone);
  ASSERT_TRUE(raw != nullptr);
  nlohmann::json view;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    const std::string answer = raw->request("s CLUSTER STATUS", 5s);
    ASSERT_EQ(answer.rfind("s OK {", 0), 0u) << answer << "\n" << logs();
    view = nlohmann::json::parse(answer.substr(5));
    if (view.at("leader_id") == 0) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(view.at("leader_id"), 0) << view;
  EXPECT_TRUE(view.at("no_leader_ms").is_number()) << view;

  const std::string server = std::to_string(alone + 1);
  auto started = std::chrono::steady_clock::now();
  const NetsemRun shown = run_netsem({"--server", client_address(alone), "cluster", "status"}, {}, 10s);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s) << shown;
  EXPECT_EQ(shown.exit_code, 69) << shown;
  EXPECT_TRUE(std::regex_search(
      shown.out, std::regex("^server " + server + " \\([a-z]+, term [0-9]+\\); no leader known for [0-9]+ s; commit")))
      << shown;
  EXPECT_NE(shown.out.find("CONTACT"), std::string::npos) << shown;
  EXPECT_NE(shown.err.find("cluster status: server " + server + " has known no leader for "), std::string::npos)
      << shown;

  const NetsemRun json = run_netsem({"--server", client_address(alone), "cluster", "status", "--json"}, {}, 10s);
  EXPECT_EQ(json.exit_code, 69) << json;
  const nlohmann::json parsed = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(parsed.is_object()) << json;
  EXPECT_TRUE(parsed.at("no_leader_ms").is_number()) << json;

  started = std::chrono::steady_clock::now();
  const NetsemRun removed =
      run_netsem({"--server", client_address(alone), "cluster", "remove", std::to_string(lead + 1)}, {}, 10s);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s) << removed;
  EXPECT_EQ(removed.exit_code, 1) << removed;
  EXPECT_NE(removed.err.find("no leader now (none known for "), std::string::npos) << removed;
  // Nothing was done: the configuration still has all three.
  EXPECT_EQ(members_of(raw->request("s2 CLUSTER STATUS", 5s), "s2").size(), 3u) << logs();
}

// CLUSTER ADD of a server that never starts (nothing listens on its Raft
// address): libraft waits for the spare to catch up before it makes it a
// voter. The answer must come within a bound, as an ERR that says so, and
// leave the configuration as it was (no spare left behind), so that a
// following ADD of the same id, started for real, works.
// A server that does not run cannot be asked whether it holds the cluster
// secret: the ADD is refused at once, and nothing changes (audit27 2b: it
// was added all the same, so that a mistyped client port made a server
// with another secret a voter, and took 5 s to end TIMEOUT when nothing
// ran at all).
TEST_F(NetsemdCluster, AnAddOfAServerThatNeverStartsIsRefusedAtOnceAndChangesNothing) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const auto asked_at = std::chrono::steady_clock::now();
  const std::string answer = admin->request(add_fourth("c1"), 30s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked_at);
  std::printf("CLUSTER ADD of a server that never starts: \"%s\" after %lld ms\n", answer.c_str(),
              static_cast<long long>(took.count()));
  EXPECT_TRUE(answer.starts_with("c1 ERR BAD_ARG server 4 at ")) << answer << "\n" << logs();
  EXPECT_NE(answer.find("could not be asked whether it holds the cluster secret (cannot connect: "), std::string::npos)
      << answer;
  EXPECT_NE(answer.find("nothing was changed"), std::string::npos) << answer;
  EXPECT_LT(took, 3s);
  // The session goes on, and the configuration is the first one.
  EXPECT_EQ(admin->request("p1 PING", 5s), "p1 PONG");
  const auto members = members_of(admin->request("s1 CLUSTER STATUS", 5s), "s1");
  EXPECT_EQ(members.size(), 3u) << logs();
  EXPECT_FALSE(members.contains(4));

  // The same server, started for real now, is added.
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  EXPECT_TRUE(changes(fourth_add())) << logs();
  const auto after = members_of(admin->request("s2 CLUSTER STATUS", 5s), "s2");
  ASSERT_EQ(after.size(), 4u) << logs();
  EXPECT_EQ(after.at(4).at("role"), "voter");
}

// CLUSTER REMOVE of the leader itself: it answers OK once the configuration
// without it is committed, steps down, the two others elect a leader and
// grant on (the permit a follower's client held stays held). The removed
// server hears from no leader any more and stands for no election (it is
// in no configuration): it applied the configuration without it, says so
// and stops (exit 0); its clients' sessions end by the log's expiry (their
// closes reach no leader), their permits going to waiters.
TEST_F(NetsemdCluster, RemovingTheLeaderMakesItStepDownAndTheOthersGrantOn) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int f1 = (lead + 1) % kServers;
  const int f2 = (lead + 2) % kServers;
  auto a = connect(f1);
  auto on_removed = connect(lead);
  auto admin = connect(lead);
  ASSERT_TRUE(a != nullptr && on_removed != nullptr && admin != nullptr);
  ASSERT_TRUE(grants(*a, "a1", "lock"));
  ASSERT_TRUE(grants(*on_removed, "h1", "other"));

  const auto asked_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(changes("CLUSTER REMOVE " + std::to_string(lead + 1))) << logs();
  // A new leader among the two others, in a higher term.
  const int next = leader_other_than(lead);
  ASSERT_TRUE(next == f1 || next == f2) << logs();
  // Grants resume, through the new configuration of two.
  auto b = connect(f2);
  ASSERT_TRUE(b != nullptr);
  EXPECT_TRUE(grants(*b, "b1", "free"));
  std::printf(
      "CLUSTER REMOVE of the leader: a grant by the new leader %lld ms after the REMOVE was sent\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked_at).count()));
  const auto members = members_of(b->request("s1 CLUSTER STATUS", 5s), "s1");
  EXPECT_EQ(members.size(), 2u) << logs();
  EXPECT_FALSE(members.contains(lead + 1));
  // The permit held on a follower is still held: a second holder queues.
  EXPECT_EQ(b->request(req::acquire("b2", "lock", 1, 0), 10s), "b2 TIMEOUT") << logs();

  // The removed server applied the configuration without it: it says so
  // and stops cleanly (exit 0).
  const std::optional<int> stopped = servers_[lead]->wait_exit(10s);
  ASSERT_TRUE(stopped.has_value()) << "the removed leader still runs\n" << logs();
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << "wait status " << *stopped << "\n" << logs();
  EXPECT_NE(servers_[lead]->log().find("this server (id " + std::to_string(lead + 1) +
                                       ") was removed from the cluster's configuration at index "),
            std::string::npos)
      << logs();
  // Its client's permit goes to a waiter once the log expires the session
  // (session timeout 3 s, counted from its last activity).
  const auto waited_at = std::chrono::steady_clock::now();
  EXPECT_EQ(b->request(req::acquire("b3", "other", 1, 10000), 5s), "b3 QUEUED 1") << logs();
  const auto handed = b->read_line(12s);
  ASSERT_TRUE(handed.has_value()) << logs();
  EXPECT_EQ(handed->rfind("b3 OK ", 0), 0u) << *handed << "\n" << logs();
  std::printf(
      "the removed server's client's permit handed on %lld ms after a waiter queued\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - waited_at).count()));
}

// CLUSTER REMOVE sent to a leader whose followers are both frozen
// (SIGSTOP): the leader appends the new configuration and sends it, hears
// from no majority, and steps down before it commits. Its answer is
// TIMEOUT: the leader gave up and the outcome is unknown (the frozen
// followers have the configuration in their sockets and may append it once
// thawed). It was `ERR BUSY ... server has lost leadership`, which says
// nothing happened (audit24 finding 2, where the removal took effect).
// Thawed, the servers elect a leader whose CLUSTER STATUS shows the truth,
// two or three members (either may happen: not asserted).
TEST_F(NetsemdCluster, ARemoveWhoseLeaderLostItsLeadershipIsAnsweredTimeoutNotBusy) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int f1 = (lead + 1) % kServers;
  const int f2 = (lead + 2) % kServers;
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  ASSERT_EQ(admin->request("p0 PING", 5s), "p0 PONG");
  std::string answer;
  {
    const Frozen one(*servers_[f1]);
    const Frozen two(*servers_[f2]);
    admin->send_line("c1 CLUSTER REMOVE " + std::to_string(f2 + 1));
    // The leader steps down within about an election timeout (500 ms).
    const auto line = admin->read_line(10s);
    ASSERT_TRUE(line.has_value()) << "no answer while the followers were frozen\n" << logs();
    answer = *line;
  }
  std::printf("CLUSTER REMOVE to a leader that lost its leadership: %s\n", answer.c_str());
  EXPECT_EQ(answer, "c1 TIMEOUT") << logs();
  EXPECT_NE(servers_[lead]->log().find("its outcome is unknown (see CLUSTER STATUS)"), std::string::npos) << logs();

  // The truth, once a leader is elected among the thawed servers.
  int next = -1;
  std::map<std::uint64_t, nlohmann::json> members;
  const auto by = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < by) {
    for (int i = 0; i < kServers && next < 0; ++i) {
      // Not connect(i), which fails the test: a removed server has exited.
      auto c = Client::connect(client_ports_[i], host(i).c_str());
      if (c == nullptr) continue;
      const std::string status = c->request("s1 CLUSTER STATUS", 5s);
      if (status.find("\"role\":\"leader\"") == std::string::npos) continue;
      next = i;
      members = members_of(status, "s1");
    }
    if (next >= 0) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_GE(next, 0) << "no leader after the thaw\n" << logs();
  EXPECT_TRUE(members.size() == 2u || members.size() == 3u) << logs();
  EXPECT_TRUE(members.contains(next + 1));
  std::printf("after the thaw, leader %d lists %zu members: server %d %s\n", next + 1, members.size(), f2 + 1,
              members.contains(f2 + 1) ? "stayed" : "was removed");
}

// A cluster whose sessions last 14 s: an ADD that takes its 5 s to give up
// (nothing at the new server's addresses) lasts longer than two sixths of
// it, after which a PING sent a sixth behind a request and unanswered for a
// sixth moved a session.
class NetsemdClusterLongSessions : public NetsemdCluster {
 protected:
  void SetUp() override {
    extra_server_config_ = "session_timeout_ms = 14000\n";
    NetsemdCluster::SetUp();
  }
};

// newuser25 finding 1: `netsem cluster add` with several servers listed (as
// the README has NETSEM_SERVER list them) exited 69, "outcome unknown: the
// connection broke before the answer", for an ADD longer than a third of
// the session timeout. The leader reads nothing of a session after its
// CLUSTER ADD until it answers it (docs/protocol.md), so the PING sent
// behind it went unanswered, and libnetsem took that for a silent server
// and moved the session to the other one, losing the ADD's answer. (Since
// 561f466 the CLI's cluster connections are sessionless, never moved.) Now
// the requests behind an unanswered ADD or REMOVE are no sign of silence,
// and count from its answer; the ADD itself is bounded by the lease, not by
// request_timeout (3 s here: it ended the connection at 3 s, exit 69,
// checked after 561f466). The ADD of a server that does not run ends as
// documented, TIMEOUT after about 5 s, exit 75; and as the server asked
// still leads in the same term, the outcome is known: not done, server 9
// out of its configuration.
TEST_F(NetsemdClusterLongSessions, AnAddLongerThanASixthOfTheSessionTimeoutIsAnsweredWithSeveralServersListed) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  // Server 4 runs and proves the secret, but the ADD names a Raft address
  // where nothing listens: it never catches up.
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  const std::string nobody = "127.0.0.4:" + std::to_string(test_support::free_port_below_ephemeral());
  const auto config = dir_.path() / "long-add.ini";
  std::ofstream(config) << "[client]\nservers = " << client_address(lead) << "," << client_address(follower)
                        << "\nrequest_timeout_ms = 3000\nlocal_dir = " << (dir_.path() / "local").string() << "\n";
  const auto asked_at = std::chrono::steady_clock::now();
  const NetsemRun added =
      run_netsem({"--config", config.string(), "cluster", "add", "4", nobody, client_address(3)}, {}, 30s);
  const auto took = std::chrono::steady_clock::now() - asked_at;
  std::printf("netsem cluster add of a server that never catches up, two servers listed: exit %d after %lld ms: %s",
              added.exit_code,
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()),
              added.err.c_str());
  EXPECT_GE(took, 4s) << "the ADD gave up sooner than a third of the session timeout and request_timeout: the test "
                         "proves nothing";
  EXPECT_EQ(added.exit_code, 75) << added << logs();
  EXPECT_EQ(added.out, "") << added;
  EXPECT_EQ(added.err,
            "netsem: cluster add: not done: server 4 did not catch up with the log in time (is it running, "
            "with join = on, and is " +
                nobody + " reachable from the leader?); server " + std::to_string(lead + 1) +
                " still leads, in the same term, and has server 4 out of its configuration\n")
      << added;
}

// Issue 16 (note26 section 7 item 5): `netsem cluster add` of a server
// whose catch-up takes longer than the lease (T/2, 1.5 s here) while it
// makes progress in libraft's sense (no round stalls for its 5 s). The
// leader reads nothing of the asking connection until it answers, so
// libnetsem ends that connection at T/2 as silent; the CLI then asked
// nothing more and said "no answer from the server for 1501 ms, half its
// session timeout of 3000 ms: the lease on the session's permits ran out"
// (exit 69, the outcome unknown), which fails here without the fix. The
// fourth server's Raft link to the leader is held (the proxy: a slow link);
// the CLI now follows the change on a new connection to the same leader
// (CLUSTER STATUS, while it shows the server as a spare in the same term):
// with -t 2s it stops there and says the change goes on (exit 75); libraft
// then gives up (no progress for 5 s) and the leader removes the spare.
// Asked again with the link let through after 3 s, the catch-up completes
// and the CLI reports the change done, exit 0, after 3 s.
TEST_F(NetsemdClusterPartitioned, AnAddWhoseCatchUpOutlastsTheLeaseEndsWithAKnownOutcome) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  const std::vector<std::string> add{"--server", client_address(lead), "cluster",        "add",
                                     "4",        raft_address(3),      client_address(3)};
  const auto ms_since = [](std::chrono::steady_clock::time_point at) {
    return static_cast<long long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - at).count());
  };
  proxy_->cut(static_cast<std::uint64_t>(lead + 1), 4);

  std::vector<std::string> bounded = add;
  bounded.insert(bounded.begin() + 4, {"-t", "2s"});
  auto asked_at = std::chrono::steady_clock::now();
  const NetsemRun stopped = run_netsem(bounded, {}, 30s);
  long long took = ms_since(asked_at);
  std::printf("netsem cluster add -t 2s of a server held back: exit %d after %lld ms: %s%s", stopped.exit_code, took,
              stopped.out.c_str(), stopped.err.c_str());
  EXPECT_EQ(stopped.exit_code, 75) << stopped << logs();
  EXPECT_EQ(stopped.out, "") << stopped;
  // Under load the leader's own TIMEOUT (libraft gives up after 5 s) was
  // seen to reach the CLI before it stopped following (5.08 s, with a
  // CI run beside it): a known outcome too, said as such.
  const bool gave_up = stopped.err.starts_with("netsem: cluster add: not done: server 4 did not catch up ");
  if (!gave_up) {
    EXPECT_TRUE(stopped.err.starts_with("netsem: cluster add: not done yet after 2 s: server 4 is still catching up ("))
        << stopped;
    EXPECT_TRUE(stopped.err.ends_with("); server " + std::to_string(lead + 1) +
                                      " goes on with the change: run netsem cluster status to see it end\n"))
        << stopped;
  } else {
    EXPECT_GE(took, 4500) << stopped;
  }
  EXPECT_GE(took, 1900);
  // libraft gives up on the held server (no progress for 5 s); the leader
  // removes it again, its client address too.
  ASSERT_TRUE(test_support::eventually(
      [&] {
        const std::string view = leader_status();
        return !view.empty() && members_of("s OK " + view, "s").count(4) == 0 &&
               view.find("\"id\":4,\"client\"") == std::string::npos;
      },
      15s, 200ms))
      << leader_status() << logs();

  asked_at = std::chrono::steady_clock::now();
  std::thread heal([&] {
    std::this_thread::sleep_for(3s);
    proxy_->heal();
  });
  const NetsemRun added = run_netsem(add, {}, 30s);
  took = ms_since(asked_at);
  heal.join();
  std::printf("netsem cluster add of a server held back 3 s (T/2 = 1.5 s): exit %d after %lld ms: %s%s",
              added.exit_code, took, added.out.c_str(), added.err.c_str());
  EXPECT_EQ(added.exit_code, 0) << added << logs();
  EXPECT_EQ(added.out, "server 4 added: a voter\n") << added;
  EXPECT_EQ(added.err, "") << added;
  EXPECT_GE(took, 2900) << "done before the link was let through: the test proves nothing";
  const auto members = members_of("s OK " + leader_status(), "s");
  ASSERT_EQ(members.count(4), 1u) << logs();
  EXPECT_EQ(members.at(4).at("role"), "voter");
}

// The same with a server that never catches up (it runs and proves the
// secret, but the ADD names a Raft address where nothing listens), T/2
// (1.5 s) before libraft gives up (5 s): exit 69 at T/2 with "the lease on
// the session's permits ran out" before; now the known outcome once the
// leader removed the spare, as with sessions long enough for the answer
// (above). (A server that does not run at all is refused at once: the
// leader cannot ask it for its proof of the secret, audit27.)
TEST_F(NetsemdCluster, AnAddLongerThanTheLeaseOfAServerThatNeverCatchesUpIsKnownNotDone) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  const std::string nobody = "127.0.0.4:" + std::to_string(test_support::free_port_below_ephemeral());
  const auto asked_at = std::chrono::steady_clock::now();
  const NetsemRun added =
      run_netsem({"--server", client_address(lead), "cluster", "add", "4", nobody, client_address(3)}, {}, 30s);
  const auto took = std::chrono::steady_clock::now() - asked_at;
  std::printf(
      "netsem cluster add of a server that never catches up (T/2 = 1.5 s): exit %d after %lld ms: %s", added.exit_code,
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()), added.err.c_str());
  EXPECT_GE(took, 4s);
  EXPECT_EQ(added.exit_code, 75) << added << logs();
  EXPECT_EQ(added.out, "") << added;
  EXPECT_EQ(added.err,
            "netsem: cluster add: not done: server 4 did not catch up with the log in time (is it running, "
            "with join = on, and is " +
                nobody + " reachable from the leader?); server " + std::to_string(lead + 1) +
                " still leads, in the same term, and has server 4 out of its configuration\n")
      << added;
}

// CLUSTER STATUS's replicated client addresses (SetMember): id -> address;
// empty when the answer is no OK.
std::map<std::uint64_t, std::string> client_addresses_of(const std::string& answer, std::string_view tag) {
  std::map<std::uint64_t, std::string> out;
  const std::string prefix = std::string(tag) + " OK ";
  if (answer.rfind(prefix, 0) != 0) return out;
  const nlohmann::json view = nlohmann::json::parse(answer.substr(prefix.size()));
  for (const auto& entry : view.at("client_addresses")) {
    out[entry.at("id").get<std::uint64_t>()] = entry.at("client").get<std::string>();
  }
  return out;
}

// The ids of a client address map, as "1 2 3", for the messages.
std::string ids_of(const std::map<std::uint64_t, std::string>& addresses) {
  std::string out;
  for (const auto& [id, address] : addresses) out += (out.empty() ? "" : " ") + std::to_string(id);
  return out;
}

// Whether `admin`'s CLUSTER STATUS (tag s1) shows the first three servers,
// nothing added: three members, and the replicated client addresses theirs
// (a new leader seeds them once elected, so maybe not yet: asked for 5 s).
::testing::AssertionResult still_the_first_three(Client& admin) {
  std::string status;
  const bool seen = test_support::eventually(
      [&] {
        status = admin.request("s1 CLUSTER STATUS", 5s);
        return ids_of(client_addresses_of(status, "s1")) == "1 2 3";
      },
      5s, 50ms);
  if (seen && members_of(status, "s1").size() == 3u) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << status;
}

// A CLUSTER ADD that libraft refuses (the Raft address is a member's):
// the ADD replicated the new server's client address first; it is taken
// back, on every server, so that no server knows a client address of an id
// that is no member (note24 section 9 item 4: it stayed, and the peer
// links and PEER hello checks took 4 for a member). Without the take-back
// the map keeps 4.
TEST_F(NetsemdCluster, AnAddThatLibraftRefusesLeavesNoClientAddressBehind) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  // A new leader seeds the replicated addresses (SetMember) once elected.
  std::map<std::uint64_t, std::string> before;
  EXPECT_TRUE(test_support::eventually(
      [&] {
        before = client_addresses_of(admin->request("s1 CLUSTER STATUS", 5s), "s1");
        return ids_of(before) == "1 2 3";
      },
      5s, 50ms))
      << ids_of(before) << "\n"
      << logs();
  // Server 4 runs, so that it proves the secret and the ADD goes as far as libraft.
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  const int other = (lead + 1) % kServers;
  const std::string answer = admin->request("c1 CLUSTER ADD 4 " + raft_address(other) + " " + client_address(3), 10s);
  std::printf("CLUSTER ADD at a member's Raft address: %s\n", answer.c_str());
  EXPECT_EQ(answer.rfind("c1 ERR BAD_ARG ", 0), 0u) << answer << "\n" << logs();
  const auto members = members_of(admin->request("s2 CLUSTER STATUS", 5s), "s2");
  EXPECT_EQ(members.size(), 3u) << logs();
  EXPECT_FALSE(members.contains(4)) << logs();
  for (int i = 0; i < kServers; ++i) {
    auto c = connect(i);
    ASSERT_TRUE(c != nullptr);
    std::map<std::uint64_t, std::string> after;
    const bool gone = test_support::eventually(
        [&] {
          after = client_addresses_of(c->request("s3 CLUSTER STATUS", 5s), "s3");
          return ids_of(after) == "1 2 3";
        },
        5s, 50ms);
    EXPECT_TRUE(gone) << "server " << i + 1 << " knows the client addresses of " << ids_of(after) << "\n" << logs();
  }
  EXPECT_TRUE(servers_[lead]->wait_for_log("server 4 is in no configuration: taking back its client address", 1s))
      << logs();
}

// A CLUSTER REMOVE answered TIMEOUT (its leader lost the leadership) that
// took effect all the same: the removed server's client address is taken
// back by the next leader, which never asked for the removal. Both
// followers frozen, the leader appends the configuration without f2, sends
// it (into f1's socket) and steps down: TIMEOUT. f1 is thawed, f2 stays
// frozen: the leader and f1 both hold the configuration without f2, and
// only they can elect a leader, which commits it. Before the fix f2's
// address stayed in every map.
TEST_F(NetsemdCluster, ARemoveAnsweredTimeoutThatTookEffectLeavesNoClientAddressBehind) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int f1 = (lead + 1) % kServers;
  const int f2 = (lead + 2) % kServers;
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  // A new leader seeds the replicated addresses (SetMember) once elected.
  std::map<std::uint64_t, std::string> before;
  EXPECT_TRUE(test_support::eventually(
      [&] {
        before = client_addresses_of(admin->request("s1 CLUSTER STATUS", 5s), "s1");
        return ids_of(before) == "1 2 3";
      },
      5s, 50ms))
      << ids_of(before) << "\n"
      << logs();
  const Frozen frozen_f2(*servers_[f2]);
  {
    const Frozen frozen_f1(*servers_[f1]);
    admin->send_line("c1 CLUSTER REMOVE " + std::to_string(f2 + 1));
    const auto answer = admin->read_line(10s);
    ASSERT_TRUE(answer.has_value()) << "no answer while the followers were frozen\n" << logs();
    ASSERT_EQ(*answer, "c1 TIMEOUT") << logs();
  }
  // The leader and f1 elect a leader (either), whose configuration lacks
  // f2, and which takes f2's client address back.
  std::map<std::uint64_t, nlohmann::json> members;
  std::map<std::uint64_t, std::string> after;
  int next = -1;
  const bool settled = test_support::eventually(
      [&] {
        for (const int i : {lead, f1}) {
          auto c = Client::connect(client_ports_[i], host(i).c_str());
          if (c == nullptr) continue;
          const std::string status = c->request("s2 CLUSTER STATUS", 2s);
          if (status.find("\"role\":\"leader\"") == std::string::npos) continue;
          next = i;
          members = members_of(status, "s2");
          after = client_addresses_of(status, "s2");
          return members.size() == 2 && ids_of(after).find(std::to_string(f2 + 1)) == std::string::npos;
        }
        return false;
      },
      15s, 100ms);
  std::printf("after the TIMEOUT, leader %d lists %zu members and the client addresses of %s\n", next + 1,
              members.size(), ids_of(after).c_str());
  EXPECT_TRUE(settled) << "leader " << next + 1 << ": " << members.size() << " members, client addresses of "
                       << ids_of(after) << "\n"
                       << logs();
  EXPECT_FALSE(members.contains(f2 + 1)) << logs();
  EXPECT_EQ(after.size(), 2u) << ids_of(after);
  // The other one applies the take-back too.
  const int follower = next == lead ? f1 : lead;
  auto c = connect(follower);
  ASSERT_TRUE(c != nullptr);
  std::map<std::uint64_t, std::string> seen;
  EXPECT_TRUE(test_support::eventually(
      [&] {
        seen = client_addresses_of(c->request("s3 CLUSTER STATUS", 5s), "s3");
        return seen.size() == 2 && !seen.contains(f2 + 1);
      },
      5s, 50ms))
      << ids_of(seen) << "\n"
      << logs();
}

// An ADD interrupted by the leader's death (kill -9 just after the ADD
// reached it): the asking connection ends unanswered; the two survivors
// elect a leader and agree on the configuration (CLUSTER STATUS); with the
// killed server back, an ADD again is answered OK (a spare left behind is
// promoted) or EXISTS (the change had completed), and server 4 ends a
// voter that every server lists.
TEST_F(NetsemdCluster, AnAddInterruptedByTheLeadersDeathLeavesOneConfigurationAndCanBeRetried) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  ASSERT_EQ(admin->request("p0 PING", 5s), "p0 PONG");
  admin->send_line(add_fourth("c1"));
  ASSERT_TRUE(servers_[lead]->wait_for_log("cluster: adding server 4", 5s)) << logs();
  ASSERT_NO_FATAL_FAILURE(kill_server(lead));
  // The answer, if one came before the kill, or the end of the connection.
  const auto answer = admin->read_line(3s);
  std::printf("ADD interrupted by the leader's kill -9: the asking client got %s\n",
              answer ? answer->c_str() : "no answer (connection ended)");
  if (answer) {
    EXPECT_EQ(*answer, "c1 OK") << logs();
  }

  const int next = leader_other_than(lead);
  ASSERT_GE(next, 0) << logs();
  ASSERT_NE(next, lead) << logs();
  // The survivors agree on the configuration (ids and roles), once the new
  // leader's view reached the other.
  const auto view = [&](int i) {
    std::map<std::uint64_t, std::string> roles;
    auto c = connect(i);
    if (c == nullptr) return roles;
    for (const auto& [id, member] : members_of(c->request("s CLUSTER STATUS", 5s), "s")) {
      roles[id] = member.at("role").get<std::string>();
    }
    return roles;
  };
  const int other = (next == (lead + 1) % kServers) ? (lead + 2) % kServers : (lead + 1) % kServers;
  std::map<std::uint64_t, std::string> at_leader;
  std::map<std::uint64_t, std::string> at_other;
  const auto agree_by = std::chrono::steady_clock::now() + 5s;
  do {
    at_leader = view(next);
    at_other = view(other);
    if (!at_leader.empty() && at_leader == at_other) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < agree_by);
  EXPECT_EQ(at_leader, at_other) << logs();
  EXPECT_GE(at_leader.size(), 3u) << logs();
  std::string seen;
  for (const auto& [id, role] : at_leader) seen += std::to_string(id) + "=" + role + " ";
  std::printf("configuration after the election: %s\n", seen.c_str());

  // The killed server back on its data; the ADD again, on the new leader.
  start(lead);
  auto again = connect(next);
  ASSERT_TRUE(again != nullptr);
  const std::string retried = again->request(add_fourth("c2"), 30s);
  if (retried == "c2 TIMEOUT" || retried.rfind("c2 ERR BUSY", 0) == 0) {
    // This leader lost its leadership too (under load): looked at and sent
    // again as any change a test needs (test_support::cluster_change_done).
    EXPECT_TRUE(changes(fourth_add())) << retried << "\n" << logs();
  } else {
    EXPECT_TRUE(retried == "c2 OK" || retried.rfind("c2 ERR EXISTS ", 0) == 0u) << retried << "\n" << logs();
  }
  std::printf("the ADD again on the new leader: %s\n", retried.c_str());
  const auto after = members_of(again->request("s2 CLUSTER STATUS", 5s), "s2");
  ASSERT_EQ(after.size(), 4u) << logs();
  EXPECT_EQ(after.at(4).at("role"), "voter") << logs();
  // Server 4 grants through the cluster.
  auto d = connect(3);
  ASSERT_TRUE(d != nullptr);
  EXPECT_TRUE(grants(*d, "d1", "lock"));
}

// A CLUSTER ADD of a server whose secret_file holds another secret than the
// cluster's (audit25: libraft, which knows no secret, made it a voter;
// its /readyz said 200 while every server refused its peer links, and its
// removal notice later, so it could not be removed): the leader asks it
// first and refuses the ADD, BAD_ARG naming the secret, with nothing
// changed (three voters, no client address of 4); the CLI says so and
// exits 2. Server 4 logs the refused check. Started again with the
// cluster's secret, it is added. Without the check the first ADD is OK.
TEST_F(NetsemdCluster, AnAddOfAServerWithAnotherSecretIsRefusedAndChangesNothing) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const auto write_fourth_secret = [this](const std::string& secret) {
    const auto file = cluster_secret_file(dir_.path(), 3);
    std::ofstream(file) << secret << "\n";
    ::chmod(file.c_str(), 0600);
  };
  write_fourth_secret("not-the-secret-of-this-cluster-0123456789");
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const auto asked_at = std::chrono::steady_clock::now();
  const std::string answer = admin->request(add_fourth("c1"), 30s);
  std::printf(
      "CLUSTER ADD of a server with another secret: \"%s\" after %lld ms\n", answer.c_str(),
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked_at).count()));
  EXPECT_EQ(answer.rfind("c1 ERR BAD_ARG server 4 at " + client_address(3) + " did not confirm the cluster secret", 0),
            0u)
      << answer << "\n"
      << logs();
  EXPECT_NE(answer.find("its proof does not match): its secret_file is not the cluster's"), std::string::npos)
      << answer;
  EXPECT_TRUE(servers_[3]->wait_for_log(
      "server " + std::to_string(lead + 1) + " asked whether this server holds the cluster secret", 2s))
      << logs();
  EXPECT_TRUE(still_the_first_three(*admin)) << logs();

  // The CLI, against a follower: the leader's words, exit 2.
  const int follower = (lead + 1) % kServers;
  const NetsemRun refused = run_netsem(
      {"--server", client_address(follower), "cluster", "add", "4", raft_address(3), client_address(3)}, {}, 30s);
  EXPECT_EQ(refused.exit_code, 2) << refused << logs();
  EXPECT_NE(refused.err.find("did not confirm the cluster secret"), std::string::npos) << refused;
  std::printf("netsem cluster add of it: exit %d: %s", refused.exit_code, refused.err.c_str());

  // With the cluster's secret, it is added.
  servers_[3].reset();
  write_fourth_secret("a-cluster-secret-of-the-test-0123456789");
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  EXPECT_TRUE(changes(fourth_add())) << logs();
  // (The admin session may have timed out meanwhile: 3 s idle.)
  const std::string settled = leader_status();
  ASSERT_FALSE(settled.empty()) << logs();
  const auto after = members_of("s2 OK " + settled, "s2");
  ASSERT_EQ(after.size(), 4u) << logs();
  EXPECT_EQ(after.at(4).at("role"), "voter");
  EXPECT_TRUE(servers_[3]->wait_for_log("asked whether this server holds the cluster secret before adding it", 2s))
      << logs();
}

// The secret check of an ADD goes to an address that is no member yet: a
// mistyped or hostile one must learn nothing from it. A fake server at the
// fourth's client address (nothing else listens there) records every byte
// the leader sends, answers a forged proof, and records on until the
// leader closes: the bytes are one challenge line with a fresh nonce and
// hold no secret; the forged proof is refused and nothing changes. With
// the first form (`PEER <leader> <secret> CHECK 4`) the secret was there.
TEST_F(NetsemdCluster, TheSecretCheckOfAnAddPutsNoSecretOnTheWire) {
  const std::string secret = "a-cluster-secret-of-the-test-0123456789";
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  // The fake, at the fourth's client address, answers the challenge with a
  // forged proof and keeps what it heard.
  test_support::LineServer fake({.host = host(3), .port = static_cast<std::uint16_t>(client_ports_[3])},
                                [](int, const test_support::LineServer::Fields&) {
                                  return std::optional<std::string>("4 PROOF " + std::string(64, 'a'));
                                });
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const std::string answer = admin->request(add_fourth("c1"), 30s);
  // The leader's close reaches the fake.
  test_support::eventually([&] { return fake.connections() > 0 && fake.closed(0); }, 2s, 20ms);
  std::vector<std::string> heard;
  for (int n = 0; n < fake.connections(); ++n) heard.push_back(fake.bytes(n));
  std::printf("CLUSTER ADD of a fake server: \"%s\"; it heard %zu connection(s)\n", answer.c_str(), heard.size());
  EXPECT_EQ(answer.rfind("c1 ERR BAD_ARG server 4 at " + client_address(3) + " did not confirm the cluster secret", 0),
            0u)
      << answer << "\n"
      << logs();
  EXPECT_NE(answer.find("its proof does not match"), std::string::npos) << answer;
  ASSERT_EQ(heard.size(), 1u) << logs();
  const std::string& line = heard.front();
  std::printf("it heard: %s", line.c_str());
  EXPECT_EQ(line.find(secret), std::string::npos) << "the secret went to a server not yet added: " << line;
  // Not even a piece of it (the first 16 characters: the shortest secret).
  EXPECT_EQ(line.find(secret.substr(0, 16)), std::string::npos) << line;
  EXPECT_TRUE(std::regex_match(line, std::regex("PEER " + std::to_string(lead + 1) + " CHALLENGE 4 [0-9a-f]{64}\n")))
      << line;
  EXPECT_TRUE(still_the_first_three(*admin));
}

// audit27 2c: a process on the leader's host relays the leader's challenge
// to the real server 4 (from the leader's host, as the server checks) and
// its proof back, at a client address of its own. The proof binds the
// client address the server gives itself, so it does not hold for the
// relay's: refused, nothing changed. (Before, server 4 was added with the
// relay's address as its client address.)
TEST_F(NetsemdCluster, AProofRelayedFromAnotherAddressDoesNotHold) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  ASSERT_NO_FATAL_FAILURE(start_fourth());
  // The relay, on the leader's host: each line it hears goes to server 4's
  // client address from the leader's host, and server 4's answer comes back.
  std::mutex relayed_lock;
  std::string relayed;  // guarded by relayed_lock
  test_support::LineServer relay(
      {.host = host(lead)}, [&](int, const test_support::LineServer::Fields& fields) -> std::optional<std::string> {
        std::string line;
        for (const std::string& field : fields) line += (line.empty() ? "" : " ") + field;
        const UniqueFd onward = raw_connection(host(lead), host(3), client_ports_[3]);
        if (!onward.valid() || !send_all(onward, line + "\n")) return std::nullopt;
        bool closed = false;
        const std::string answer = read_from(onward, 5s, true, &closed);
        {
          const std::lock_guard<std::mutex> hold(relayed_lock);
          relayed = answer;
        }
        // Its answer without its first field ("PEER"), which the server puts back.
        const std::size_t space = answer.find(' ');
        const std::size_t end = answer.find('\n');
        if (space == std::string::npos || end == std::string::npos) return std::nullopt;
        return answer.substr(space + 1, end - space - 1);
      });
  ASSERT_NE(relay.port(), 0);
  auto admin = connect(lead);
  ASSERT_TRUE(admin != nullptr);
  const std::string answer = admin->request("c1 CLUSTER ADD 4 " + raft_address(3) + " " + relay.address(), 30s);
  const std::string relayed_answer = [&] {
    const std::lock_guard<std::mutex> hold(relayed_lock);
    return relayed;
  }();
  std::printf("CLUSTER ADD through a relay at %s: \"%s\"; the relay passed on: %s", relay.address().c_str(),
              answer.c_str(), relayed_answer.c_str());
  EXPECT_TRUE(relayed_answer.starts_with("PEER 4 PROOF ")) << "the relay got no proof: the test proves nothing\n"
                                                           << logs();
  EXPECT_EQ(answer.rfind("c1 ERR BAD_ARG server 4 at " + relay.address() + " did not confirm the cluster secret", 0),
            0u)
      << answer << "\n"
      << logs();
  EXPECT_NE(answer.find("gives another client address than " + relay.address()), std::string::npos) << answer;
  EXPECT_TRUE(still_the_first_three(*admin));
}

// KICK of a session hosted by another server. Protocol KICK goes through
// the log and works from any server. The HTTP API's kick ends sessions its
// own server hosts; for one another server hosts it answers 421 ELSEWHERE
// naming that server (it said 404, no such session, before), and the kick
// through the host's HTTP API works: the victim reads `* ERR KICKED`, its
// permit goes to a waiter on a third server.
TEST_F(NetsemdCluster, KickOfASessionHostedElsewhereWorksByProtocolAndNamesItsHostOverHttp) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int f1 = (lead + 1) % kServers;
  const int f2 = (lead + 2) % kServers;
  auto victim = connect(f1);
  auto waiter = connect(lead);
  auto admin = connect(f2);
  ASSERT_TRUE(victim != nullptr && waiter != nullptr && admin != nullptr);
  const auto [id, secret] = resumable_of(victim->request("r1 RESUMABLE", 10s), "r1");
  ASSERT_FALSE(id.empty()) << logs();
  ASSERT_TRUE(grants(*victim, "a1", "lock"));
  ASSERT_TRUE(queues(*waiter, "w1", "lock"));

  const auto kick_over_http = [&](int i) {
    const std::uint16_t port = test_support::http_port_from_log(servers_[i]->log());
    EXPECT_NE(port, 0);
    test_support::HttpConnection connection(port, host(i).c_str());
    EXPECT_TRUE(connection.ok());
    EXPECT_TRUE(connection.send_request("POST", "/api/v1/sessions/" + id + "/kick"));
    return connection.read_response(5s, false);
  };
  const auto elsewhere = kick_over_http(f2);
  ASSERT_TRUE(elsewhere.has_value());
  EXPECT_EQ(elsewhere->status, 421) << elsewhere->body;
  const std::string named = "server " + std::to_string(f1 + 1) + " at " + client_address(f1);
  EXPECT_NE(elsewhere->body.find("\"ELSEWHERE\""), std::string::npos) << elsewhere->body;
  EXPECT_NE(elsewhere->body.find(named), std::string::npos) << elsewhere->body;
  EXPECT_TRUE(victim->quiet_for(300ms));  // not kicked

  const auto here = kick_over_http(f1);
  ASSERT_TRUE(here.has_value());
  EXPECT_EQ(here->status, 200) << here->body;
  EXPECT_EQ(nlohmann::json::parse(here->body), nlohmann::json({{"kicked", std::stoull(id)}})) << here->body;
  const auto told = victim->read_line(5s);
  ASSERT_TRUE(told.has_value()) << logs();
  EXPECT_EQ(told->rfind("* ERR KICKED kicked over HTTP by ", 0), 0u) << *told;
  const auto granted = waiter->read_line(10s);
  ASSERT_TRUE(granted.has_value()) << logs();
  EXPECT_EQ(granted->rfind("w1 OK ", 0), 0u) << *granted;

  // Protocol KICK from a session on another server than the target's.
  auto second = connect(f1);
  ASSERT_TRUE(second != nullptr);
  const auto [second_id, second_secret] = resumable_of(second->request("r2 RESUMABLE", 10s), "r2");
  ASSERT_FALSE(second_id.empty());
  EXPECT_EQ(admin->request("k1 KICK " + second_id, 10s), "k1 OK") << logs();
  const auto kicked = second->read_line(5s);
  ASSERT_TRUE(kicked.has_value()) << logs();
  EXPECT_EQ(kicked->rfind("* ERR KICKED kicked by session ", 0), 0u) << *kicked;
}

// A server's disk fails while it runs (RLIMIT_FSIZE at 1 byte: every write
// past a file's first byte fails with EFBIG, as on a full disk; the single
// server's journal test uses the same method). libraft 0.15 does not store
// an entry again after a failed write, even once the disk recovered (seen
// here: the server stayed behind for good), so the server stops within an
// election timeout, loudly (exit 3, its log says why); the two others are a majority and
// grant on its client's request is
// never answered OK by it; restarted on its data, it catches up.
void NetsemdCluster::disk_fails(int bad, int good) {
  auto on_bad = connect(bad);
  auto on_good = connect(good);
  ASSERT_TRUE(on_bad != nullptr && on_good != nullptr);
  ASSERT_TRUE(grants(*on_bad, "p1", "early"));
  ASSERT_TRUE(set_limit(servers_[bad]->pid(), RLIMIT_FSIZE, 1));
  const auto failed_at = std::chrono::steady_clock::now();
  on_bad->send_line(req::acquire("b1", "later", 1, 20000));

  // The majority grants on.
  ASSERT_NO_FATAL_FAILURE(grant_and_release(*on_good, 10));
  std::printf(
      "10 grants and releases by the two others after server %d's disk failed: %lld ms\n", bad + 1,
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - failed_at).count()));
  // The failing server stopped, loudly; its client got no OK from it.
  const auto status = servers_[bad]->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << logs();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 3) << *status;
  // (Its log line, `raft: the Raft log could not be written (...)`, is lost
  // here: the log file cannot grow either.)
  for (auto line = on_bad->read_line(2s); line; line = on_bad->read_line(2s)) {
    EXPECT_EQ(line->rfind("b1 OK", 0), std::string::npos) << *line;
  }
  servers_[bad].reset();

  // Restarted on its data, it catches up (the grants are in its replica)
  // and serves its clients again.
  start(bad);
  auto again = connect(bad);
  ASSERT_TRUE(again != nullptr);
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  nlohmann::json stats;
  do {
    const std::string answer = again->request("st STATS", 5s);
    if (answer.rfind("st OK {", 0) == 0) {
      stats = nlohmann::json::parse(answer.substr(6));
      if (stats.at("grants").get<std::uint64_t>() >= 11) break;
    }
    std::this_thread::sleep_for(100ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_GE(stats.value("grants", 0u), 11u) << stats << "\n" << logs();
  EXPECT_TRUE(grants(*again, "c1", "lock"));
}

TEST_F(NetsemdCluster, AFollowersFailingDiskStopsItLoudlyAndTheMajorityGrantsOn) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  disk_fails((lead + 1) % kServers, (lead + 2) % kServers);
}

// The leader's disk: without the stop at its first failed write, libraft
// 0.15's own handling of it (it truncates its in-memory log under entries
// the followers have) ended in SIGSEGV about 1 run in 6.
TEST_F(NetsemdCluster, ALeadersFailingDiskStopsItLoudlyAndTheOthersGrantOn) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  disk_fails(lead, (lead + 1) % kServers);
}

// One of a follower's two Raft metadata files deleted, then cut short,
// while the other (metadata2: every follower of an elected leader wrote a
// term there) says both must be whole: netsemd does not start (exit 1) and
// says which directory, which file, what is wrong and what to do. It started
// on metadata2, whose term and vote may be older than the lost one's. Put
// back, it starts and grants.
TEST_F(NetsemdCluster, AServerWithOneRaftMetadataFileGoneOrCutShortDoesNotStartAndSaysWhy) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  servers_[follower]->send_signal(SIGTERM);
  ASSERT_TRUE(servers_[follower]->wait_exit(10s).has_value()) << logs();
  servers_[follower].reset();
  const auto raft_dir = data_dir(follower) / "raft";
  std::string metadata1;
  {
    std::ifstream in(raft_dir / "metadata1", std::ios::binary);
    metadata1.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_EQ(metadata1.size(), 32u) << raft_dir;
  ASSERT_TRUE(std::filesystem::exists(raft_dir / "metadata2")) << raft_dir;
  const auto refused = [&](const std::string& what, const std::string& fault) {
    std::string error;
    auto server = try_start(follower, &error);
    ASSERT_EQ(server, nullptr) << "netsemd started with " << what << "\n" << server->log();
    EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << error;
    EXPECT_NE(error.find("netsemd: cannot start: CORRUPTION: raft data directory " + raft_dir.string() + ": " + fault +
                         ", but metadata2 is at version "),
              std::string::npos)
        << error;
    EXPECT_NE(error.find("Restore the directory from a copy"), std::string::npos) << error;
  };
  ASSERT_TRUE(std::filesystem::remove(raft_dir / "metadata1"));
  refused("no metadata1", "metadata1 is missing");
  EXPECT_FALSE(std::filesystem::exists(raft_dir / "metadata1")) << "the directory was changed";
  std::ofstream(raft_dir / "metadata1", std::ios::binary) << metadata1.substr(0, 20);
  refused("metadata1 cut short", "metadata1 is cut short (20 of 32 bytes)");
  EXPECT_EQ(std::filesystem::file_size(raft_dir / "metadata1"), 20u) << "the directory was changed";

  std::ofstream(raft_dir / "metadata1", std::ios::binary | std::ios::trunc) << metadata1;
  ASSERT_NO_FATAL_FAILURE(start(follower));
  auto client = connect(follower);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a", "lock"));
}

// Server 3's Raft directory on a 4 MiB tmpfs: raft_uv preallocates each
// segment (8 MiB), so its first append fails with RAFT_NOSPACE (silent in
// a past audit; libraft 0.15 calls it "unknown error"). It stops with exit
// 3 saying "no space" and naming its directory; the two others grant on.
// Mounting needs root (CAP_SYS_ADMIN): skipped, saying so, without it.
class NetsemdClusterSmallDisk : public NetsemdCluster {
 protected:
  void SetUp() override {
    mount_small("size=4m");
    if (IsSkipped()) return;
    NetsemdCluster::SetUp();
  }
  void TearDown() override {
    for (auto& server : servers_) server.reset();
    if (mounted_) ::umount2(small_.c_str(), MNT_DETACH);
  }
  // A tmpfs (`options`) under the test's directory, server 3's Raft
  // directory on it; the test skipped without root.
  void mount_small(const char* options) {
    small_ = dir_.path() / "small";
    std::filesystem::create_directories(small_);
    if (::geteuid() != 0 || ::mount("tmpfs", small_.c_str(), "tmpfs", 0, options) != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs, " << options << " (needs root): " << std::strerror(errno);
    }
    mounted_ = true;
    cluster_data_dirs_[2] = small_ / "raft";
  }
  std::filesystem::path small_;
  bool mounted_ = false;
};

TEST_F(NetsemdClusterSmallDisk, AFollowerThatCannotPreallocateItsSegmentStopsSayingNoSpace) {
  const auto status = servers_[2]->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << logs();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 3) << *status << "\n" << logs();
  const std::string said = servers_[2]->log();
  EXPECT_NE(said.find("netsemd: stopped: raft: the Raft log in " + (small_ / "raft").string() +
                      " could not be written (no space left on its disk"),
            std::string::npos)
      << said;
  servers_[2].reset();
  const int lead = leader();
  ASSERT_TRUE(lead == 0 || lead == 1) << logs();
  auto client = connect(1 - lead);
  ASSERT_TRUE(client != nullptr);
  ASSERT_NO_FATAL_FAILURE(grant_and_release(*client, 5));
}

// Server 3 started alone, its Raft directory on a 48 MiB tmpfs filled up
// once it is bootstrapped; then servers 1 and 2 (audit22,
// d_full.sh). The first election makes it write its first metadata2, a new
// file: ENOSPC. libraft 0.15 turned it unavailable for good, saying only
// "info raft 3: unavailable in term 1", and netsemd went on accepting
// clients it never answered. It stops with exit 3 naming the metadata, its
// directory, the cause and what to do; the two others grant on.
class NetsemdClusterFullDisk : public NetsemdClusterSmallDisk {
 protected:
  void SetUp() override {
    mount_small("size=48m");
    if (IsSkipped()) return;
    pick_cluster_ports(client_ports_, raft_ports_);
    write_cluster_secrets(dir_.path(), kMaxServers, "a-cluster-secret-of-the-test-0123456789");
    start(2);
  }
};

TEST_F(NetsemdClusterFullDisk, AFollowerThatCannotWriteItsTermStopsSayingNoSpace) {
  ASSERT_TRUE(servers_[2] != nullptr);
  // Its bootstrap (metadata1 and the first segment) written, and whatever
  // raft_uv prepares at start: wait until its files stay the same for a
  // second (10 s at most).
  const auto raft_dir = small_ / "raft";
  const auto files = [&] {
    std::map<std::string, std::uintmax_t> found;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(raft_dir, ec), end; !ec && it != end; it.increment(ec)) {
      found[it->path().filename()] = it->file_size(ec);
    }
    return found;
  };
  auto seen = files();
  for (auto stable_since = std::chrono::steady_clock::now(), deadline = stable_since + 10s;
       std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(100ms);
    if (const auto now = files(); now != seen) {
      seen = now;
      stable_since = std::chrono::steady_clock::now();
    } else if (!seen.empty() && std::chrono::steady_clock::now() - stable_since > 1s) {
      break;
    }
  }
  ASSERT_TRUE(seen.contains("metadata1")) << raft_dir << "\n" << servers_[2]->log();
  ASSERT_FALSE(std::filesystem::exists(raft_dir / "metadata2")) << raft_dir;
  {
    // Fill it: a file as large as it takes.
    std::ofstream fill(small_ / "fill", std::ios::binary);
    const std::string chunk(4096, 'x');
    while (fill.write(chunk.data(), chunk.size()) && fill.flush()) {
    }
  }
  start(0);
  start(1);
  const auto status = servers_[2]->wait_exit(15s);
  ASSERT_TRUE(status.has_value()) << "server 3 did not stop\n" << logs();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 3) << *status << "\n" << logs();
  const std::string said = servers_[2]->log();
  const auto stopped = said.find("netsemd: stopped: ");
  std::printf("%s", said.substr(stopped == std::string::npos ? 0 : stopped).c_str());
  EXPECT_NE(said.find("netsemd: stopped: raft: the Raft term and vote (metadata1, metadata2) in " + raft_dir.string() +
                      " could not be written ("),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("metadata2"), said.rfind("metadata2")) << "libraft's cause names the file\n" << said;
  EXPECT_NE(said.find("restart this server (on its data) once its disk takes writes"), std::string::npos) << said;
  servers_[2].reset();
  const int lead = leader();
  ASSERT_TRUE(lead == 0 || lead == 1) << logs();
  auto client = connect(1 - lead);
  ASSERT_TRUE(client != nullptr);
  ASSERT_NO_FATAL_FAILURE(grant_and_release(*client, 5));
}

// A one-server cluster on 127.0.0.1, its data under `dir`.
Netsemd::Options single_server(const TempDir& dir, std::uint16_t client_port, std::uint16_t raft_port) {
  const auto secret = dir.path() / "secret";
  std::ofstream(secret) << "a-cluster-secret-of-the-test-0123456789\n";
  ::chmod(secret.c_str(), 0600);
  Netsemd::Options options;
  options.port = client_port;
  options.data_dir = dir.path() / "data";
  options.raw_config =
      "[server]\nbind_address = 127.0.0.1\nbind_port = @PORT@\nstats_dir = @DIR@\ndata_dir = @DIR@\n"
      "session_timeout_ms = 3000\nhttp_enabled = off\n[semaphores]\nlock = 1\n[cluster]\nid = 1\nsecret_file = " +
      secret.string() +
      "\nelection_timeout_ms = 500\nheartbeat_timeout_ms = 50\nserver.1 = 127.0.0.1:" + std::to_string(raft_port) +
      " 127.0.0.1:" + std::to_string(client_port) + "\n";
  return options;
}

// A one-server cluster of single_server()'s configuration; start() fails
// the test when it does not come up.
struct SingleServer {
  TempDir dir;
  std::uint16_t client_port = test_support::free_port_below_ephemeral();
  std::uint16_t raft_port = test_support::free_port_below_ephemeral();
  Netsemd::Options options = single_server(dir, client_port, raft_port);
  std::unique_ptr<Netsemd> server;

  bool start() {
    std::string error;
    server = Netsemd::start(options, &error);
    EXPECT_NE(server, nullptr) << error;
    return server != nullptr;
  }
  // A client that holds "lock" (limit 1) as "w".
  std::unique_ptr<Client> holder() {
    auto client = Client::connect(client_port);
    EXPECT_NE(client, nullptr);
    if (!client) return nullptr;
    EXPECT_EQ(client->request(req::acquire("w", "lock", 1, 10000), 10s).rfind("w OK ", 0), 0u) << server->log();
    return client;
  }
};

// The answers to the pair "r<i> RELEASE lock" and "a<i> ACQUIRE lock", in order;
// false when one did not come.
bool pair_answered(Client& client, int i) {
  const auto released = client.read_line(10s);
  EXPECT_TRUE(released) << "pair " << i;
  if (!released) return false;
  EXPECT_EQ(released->rfind("r" + std::to_string(i) + " OK", 0), 0u) << *released;
  const auto acquired = client.read_line(10s);
  EXPECT_TRUE(acquired) << "pair " << i << ": the acquire was never answered";
  if (!acquired) return false;
  EXPECT_EQ(acquired->rfind("a" + std::to_string(i) + " OK ", 0), 0u) << *acquired;
  return true;
}

// Another process listening on 127.0.0.1:`port` (the test's own socket).
UniqueFd listen_on(std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!fd.valid() || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&in), sizeof in) != 0 ||
      ::listen(fd.get(), 1) != 0) {
    return UniqueFd();
  }
  return fd;
}

// The Raft port taken by another process: libraft 0.15 says only "I/O
// error" (a hostile audit); netsemd names the address and the error, as
// for a taken client port, and does not start (exit 1, "the port is taken").
TEST(NetsemdClusterStart, ATakenRaftPortIsNamedWithItsError) {
  TempDir dir;
  const std::uint16_t client_port = test_support::free_port_below_ephemeral();
  const std::uint16_t raft_port = test_support::free_port_below_ephemeral();
  const UniqueFd taken = listen_on(raft_port);
  ASSERT_TRUE(taken.valid());
  const Netsemd::Options options = single_server(dir, client_port, raft_port);
  std::string error;
  auto server = Netsemd::start(options, &error);
  ASSERT_EQ(server, nullptr);
  EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << error;
  EXPECT_NE(error.find("netsemd: cannot start: IO_ERROR: cannot listen on the Raft address 127.0.0.1:" +
                       std::to_string(raft_port) + ": Address already in use"),
            std::string::npos)
      << error;
}

// Whether `dir` holds no file, or is not there (a pristine Raft directory).
::testing::AssertionResult pristine(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return ::testing::AssertionSuccess();
  std::string names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names += " " + entry.path().filename().string();
  if (names.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << dir << " holds" << names;
}

// The first start fails on a taken Raft port after libraft bootstrapped the
// directory (raft_bootstrap comes before raft_start, which listens): that
// bootstrap is removed again, so the start after the port moved in the
// server.N line bootstraps with the new address. The directory kept the
// old one, which the others would have been sent to (newuser23 finding 4);
// this test's restart now refuses that (below), and it fails on the
// directory left non-pristine without the undo.
TEST(NetsemdClusterStart, AFirstStartOnATakenRaftPortLeavesTheDirectoryPristine) {
  SingleServer one;
  {
    const UniqueFd taken = listen_on(one.raft_port);
    ASSERT_TRUE(taken.valid());
    std::string error;
    auto server = Netsemd::start(one.options, &error);
    ASSERT_EQ(server, nullptr);
    EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << error;
    EXPECT_NE(error.find("the first configuration this start wrote was removed again"), std::string::npos) << error;
  }
  EXPECT_TRUE(pristine(one.dir.path() / "data" / "raft"));
  one.raft_port = test_support::free_port_below_ephemeral();
  one.options = single_server(one.dir, one.client_port, one.raft_port);
  ASSERT_TRUE(one.start());
  auto client = Client::connect(one.client_port);
  ASSERT_NE(client, nullptr);
  const std::string status = client->request("s CLUSTER STATUS", 10s);
  EXPECT_NE(status.find("\"raft\":\"127.0.0.1:" + std::to_string(one.raft_port) + "\""), std::string::npos)
      << status << "\n"
      << one.server->log();
}

// A restart whose server.N lines differ from the stored configuration: the
// stored one wins, as etcd's data directory wins over --initial-cluster,
// and each difference is named with how to change the members (it was
// silent). Its own line at another Raft address than the stored one is
// refused (exit 2): the others would send to the stored one for ever.
TEST(NetsemdClusterStart, ServerLinesThatDifferFromTheStoredConfigurationAreNamed) {
  SingleServer one;
  ASSERT_TRUE(one.start());
  one.server->send_signal(SIGTERM);
  ASSERT_TRUE(one.server->wait_exit(10s).has_value()) << one.server->log();
  one.server.reset();
  // A second server's line: the stored configuration (server 1 alone) wins.
  const std::uint16_t other_raft = test_support::free_port_below_ephemeral();
  const Netsemd::Options first = one.options;
  one.options.raw_config += "server.2 = 127.0.0.2:" + std::to_string(other_raft) +
                            " 127.0.0.2:" + std::to_string(test_support::free_port_below_ephemeral()) + "\n";
  ASSERT_TRUE(one.start());
  ASSERT_TRUE(one.server->wait_for_log("differs from the server.N lines", 5s)) << one.server->log();
  const std::string log = one.server->log();
  EXPECT_NE(log.find("server.2 (raft 127.0.0.2:" + std::to_string(other_raft) +
                     ") is not in the stored configuration. The stored one wins"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("`netsem cluster add` and `netsem cluster remove`"), std::string::npos) << log;
  // The startup line counts the stored members, not the file's two lines.
  EXPECT_NE(log.find("cluster server 1 of 1 in the stored configuration: raft"), std::string::npos) << log;
  EXPECT_NE(one.holder(), nullptr);
  one.server->send_signal(SIGTERM);
  ASSERT_TRUE(one.server->wait_exit(10s).has_value()) << one.server->log();
  one.server.reset();
  // The same lines as stored: nothing said.
  one.options = first;
  ASSERT_TRUE(one.start());
  ASSERT_NE(one.holder(), nullptr);
  EXPECT_EQ(one.server->log().find("differs from the server.N lines"), std::string::npos) << one.server->log();
  one.server->send_signal(SIGTERM);
  ASSERT_TRUE(one.server->wait_exit(10s).has_value()) << one.server->log();
  one.server.reset();
  // Its own Raft port moved: refused, naming both addresses.
  const std::uint16_t moved = test_support::free_port_below_ephemeral();
  const Netsemd::Options options = single_server(one.dir, one.client_port, moved);
  std::string error;
  auto server = Netsemd::start(options, &error);
  ASSERT_EQ(server, nullptr) << server->log();
  EXPECT_NE(error.find("(exit status 2)"), std::string::npos) << error;
  EXPECT_NE(
      error.find("netsemd: [cluster]: the Raft directory " + (one.dir.path() / "data" / "raft").string() +
                 " holds a configuration with this server (1) at the Raft address 127.0.0.1:" +
                 std::to_string(one.raft_port) + ", but its server.1 line says 127.0.0.1:" + std::to_string(moved)),
      std::string::npos)
      << error;
}

// netsemd --recover refused, with nothing written: without a Raft log
// (the directory missing, or pristine: nothing to recover), without a
// [cluster] section, without --raise-fences (or --raise-fences without
// --recover, or out of range), with --check-config.
TEST(NetsemdClusterStart, ARecoverWithNothingToRecoverOrWithoutItsFenceRaiseIsRefused) {
  SingleServer one;
  const auto raft_dir = one.dir.path() / "data" / "raft";
  const auto refused = [&](const std::vector<std::string>& args, const std::string& status, const std::string& says) {
    Netsemd::Options options = one.options;
    options.extra_args = args;
    std::string error;
    auto server = Netsemd::start(options, &error);
    EXPECT_EQ(server, nullptr) << server->log();
    EXPECT_NE(error.find("(exit status " + status + ")"), std::string::npos) << error;
    EXPECT_NE(error.find(says), std::string::npos) << error;
  };
  refused({"--recover", "--raise-fences", "10"}, "1",
          "netsemd: cannot start: NOT_FOUND: --recover: the Raft data directory " + raft_dir.string() +
              " does not exist: there is nothing to recover");
  EXPECT_FALSE(std::filesystem::exists(raft_dir));
  std::filesystem::create_directories(raft_dir);
  refused({"--recover", "--raise-fences", "10"}, "1",
          "netsemd: cannot start: NOT_FOUND: --recover: the Raft data directory " + raft_dir.string() +
              " holds no log: there is nothing to recover");
  EXPECT_TRUE(pristine(raft_dir));
  refused({"--recover"}, "2", "netsemd: --recover needs --raise-fences N: ");
  refused({"--raise-fences", "10"}, "2", "netsemd: --raise-fences goes with --recover");
  refused({"--recover", "--raise-fences", "0"}, "2", "netsemd: --raise-fences 0: out of range (1 .. 2^53)");
  refused({"--recover", "--raise-fences", "9007199254740993"}, "2", "out of range (1 .. 2^53)");
  refused({"--recover", "--raise-fences", "10", "--check-config"}, "2",
          "netsemd: --recover cannot go with --check-config");
  EXPECT_TRUE(pristine(raft_dir));
  // No [cluster] section.
  Netsemd::Options single;
  single.data_dir = one.dir.path() / "single";
  single.extra_args = {"--recover", "--raise-fences", "10"};
  std::string error;
  auto server = Netsemd::start(single, &error);
  ASSERT_EQ(server, nullptr) << server->log();
  EXPECT_NE(error.find("(exit status 2)"), std::string::npos) << error;
  EXPECT_NE(error.find(" has no [cluster] section: a single server keeps no Raft log to recover"), std::string::npos)
      << error;
}

// A --recover whose start fails after it forced the configuration (its
// Raft port taken: raft_start comes after raft_recover) still owes the fence
// raise: the next start, without --recover, makes it in its first entry
// (the raise waits in the Raft directory, netsem-recover-raise-fences). And
// a restart after that raises nothing more.
TEST(NetsemdClusterStart, AFenceRaiseOwedByARecoverThatDidNotStartIsMadeByTheNextStart) {
  SingleServer one;
  ASSERT_TRUE(one.start());
  std::uint64_t fence = 0;
  {
    auto client = one.holder();
    ASSERT_NE(client, nullptr);
    fence = fence_of(client->request(req::acquire("x", "other", 1, 10000), 10s));
    ASSERT_GT(fence, 0u) << one.server->log();
  }
  one.server->send_signal(SIGTERM);
  ASSERT_TRUE(one.server->wait_exit(10s).has_value()) << one.server->log();
  one.server.reset();
  const auto raft_dir = one.dir.path() / "data" / "raft";
  {
    const UniqueFd taken = listen_on(one.raft_port);
    ASSERT_TRUE(taken.valid());
    Netsemd::Options options = one.options;
    options.extra_args = {"--recover", "--raise-fences", "500"};
    std::string error;
    auto server = Netsemd::start(options, &error);
    ASSERT_EQ(server, nullptr) << server->log();
    EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << error;
    EXPECT_NE(error.find("raft: --recover: forced a new configuration in " + raft_dir.string()), std::string::npos)
        << error;
  }
  EXPECT_TRUE(std::filesystem::exists(raft_dir / "netsem-recover-raise-fences"));
  ASSERT_TRUE(one.start());
  EXPECT_TRUE(
      one.server->wait_for_log("the fence raise of a recovery (netsemd --recover --raise-fences 500) was not "
                               "applied yet",
                               5s))
      << one.server->log();
  auto client = Client::connect(one.client_port);
  ASSERT_NE(client, nullptr);
  const std::uint64_t after = fence_of(client->request(req::acquire("y", "other", 1, 10000), 10s));
  EXPECT_GT(after, fence + 500) << one.server->log();
  EXPECT_TRUE(one.server->wait_for_log("fences raised by 500 after --recover", 5s)) << one.server->log();
  EXPECT_FALSE(std::filesystem::exists(raft_dir / "netsem-recover-raise-fences"));
  client.reset();
  one.server->send_signal(SIGTERM);
  ASSERT_TRUE(one.server->wait_exit(10s).has_value()) << one.server->log();
  one.server.reset();
  ASSERT_TRUE(one.start());
  client = Client::connect(one.client_port);
  ASSERT_NE(client, nullptr);
  const std::uint64_t again = fence_of(client->request(req::acquire("z", "another", 1, 10000), 10s));
  EXPECT_GT(again, after);
  EXPECT_LT(again, after + 500) << one.server->log();
}

// A server whose Raft metadata (metadata1 and metadata2: its term and vote)
// was deleted while its log stayed: netsemd does not start (exit 1) and
// says which directory, what is missing and what to do. It said only
// "IO_ERROR: raft bootstrap: I/O error" (libraft took the directory for a
// pristine one and its bootstrap failed on the log's first segment).
TEST(NetsemdClusterStart, AServerWhoseRaftMetadataIsGoneDoesNotStartAndSaysWhy) {
  SingleServer one;
  ASSERT_TRUE(one.start());
  ASSERT_NE(one.holder(), nullptr);
  one.server->send_signal(SIGTERM);
  const auto stopped = one.server->wait_exit(10s);
  ASSERT_TRUE(stopped.has_value()) << one.server->log();
  one.server.reset();
  const auto raft_dir = one.dir.path() / "data" / "raft";
  ASSERT_TRUE(std::filesystem::remove(raft_dir / "metadata1")) << raft_dir;
  std::filesystem::remove(raft_dir / "metadata2");  // this one-server cluster wrote metadata1 only
  std::string error;
  auto server = Netsemd::start(one.options, &error);
  ASSERT_EQ(server, nullptr) << "netsemd started on a log without its metadata\n" << server->log();
  EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << error;
  EXPECT_NE(error.find("netsemd: cannot start: CORRUPTION: raft data directory " + raft_dir.string() +
                       " holds a log (0000000000000001-"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("but not its term and vote: metadata1 is missing and metadata2 is missing"), std::string::npos)
      << error;
  EXPECT_NE(error.find("Restore the directory from a copy"), std::string::npos) << error;
  EXPECT_FALSE(std::filesystem::exists(raft_dir / "metadata1")) << "the directory was changed";
}

// A taken client port after the node started (its first entries being
// written): the stop cancels raft_uv's appends, which is no failed write
// (it said "the Raft log could not be written (operation canceled)" and
// exited 3 about one start in two). Five starts, each exit 1 and why.
TEST(NetsemdClusterStart, ATakenClientPortIsAFailedStartNotAFailedDisk) {
  for (int run = 0; run < 5; ++run) {
    TempDir dir;
    const std::uint16_t client_port = test_support::free_port_below_ephemeral();
    const std::uint16_t raft_port = test_support::free_port_below_ephemeral();
    const UniqueFd taken = listen_on(client_port);
    ASSERT_TRUE(taken.valid());
    const Netsemd::Options options = single_server(dir, client_port, raft_port);
    std::string error;
    auto server = Netsemd::start(options, &error);
    ASSERT_EQ(server, nullptr);
    EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << "run " << run << ": " << error;
    EXPECT_NE(error.find("netsemd: cannot start: IO_ERROR: cannot listen on 127.0.0.1:" + std::to_string(client_port) +
                         ": Address already in use"),
              std::string::npos)
        << error;
    EXPECT_EQ(error.find("could not be written"), std::string::npos) << "run " << run << ": " << error;
    // Bound before the Raft node starts: its directory is not bootstrapped.
    EXPECT_TRUE(pristine(dir.path() / "data" / "raft")) << "run " << run;
  }
}

// A server killed with SIGKILL and started again at once, without waiting
// for the killed one to be gone (kill -9 returns before its exit closed its
// descriptors): the new one waits for the Raft directory's lock instead of
// refusing it as "in use" (it did about one restart in two). 20 times.
TEST(NetsemdClusterStart, AServerKilledAndStartedAtOnceStartsOnItsData) {
  TempDir dir;
  const std::uint16_t client_port = test_support::free_port_below_ephemeral();
  const std::uint16_t raft_port = test_support::free_port_below_ephemeral();
  const Netsemd::Options options = single_server(dir, client_port, raft_port);
  std::string error;
  auto server = Netsemd::start(options, &error);
  ASSERT_NE(server, nullptr) << error;
  for (int run = 0; run < 20; ++run) {
    server->send_signal(SIGKILL);
    auto again = Netsemd::start(options, &error);
    ASSERT_NE(again, nullptr) << "restart " << run << ": " << error;
    server = std::move(again);  // the killed one is reaped
  }
  auto client = Client::connect(client_port);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->request(req::acquire("a", "lock", 1, 10000), 10s).rfind("a OK ", 0), 0u) << server->log();
}

// Requests that come while one waits for the log (cluster mode holds a
// session's input until its command's answer): read once the hold ends, in
// order, whether they came one by one or many in one write, and an end of
// input seen behind them still ends the session after their answers. The
// session stops watching its socket only when bytes come during a hold
// (Session::on_ready), not at each hold.
TEST(NetsemdClusterStart, RequestsThatComeWhileOneWaitsForTheLogAreAnsweredInOrder) {
  SingleServer one;
  ASSERT_TRUE(one.start());
  auto client = one.holder();
  ASSERT_NE(client, nullptr);
  // One by one, without waiting for answers: 100 acquire/release pairs.
  for (int i = 0; i < 100; ++i) {
    client->send_line(req::release("r" + std::to_string(i), "lock"));
    client->send_line(req::acquire("a" + std::to_string(i), "lock", 1, 10000));
  }
  // Then 100 more pairs in one write, and the end of input behind them.
  std::string batch;
  for (int i = 100; i < 200; ++i) {
    batch += req::release("r" + std::to_string(i), "lock") + "\n";
    batch += req::acquire("a" + std::to_string(i), "lock", 1, 10000) + "\n";
  }
  client->send(batch);
  client->shutdown_write();
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(pair_answered(*client, i)) << one.server->log();
  EXPECT_TRUE(client->wait_closed(10s)) << "the end of input behind the held requests did not end the session";
  // Its permit went back with it.
  auto other = Client::connect(one.client_port);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->request(req::acquire("b", "lock", 1, 5000), 10s).rfind("b OK ", 0), 0u);
}

// A request that comes alone, in its own segment, while the one before it
// waits for the log, and then nothing more: it is read once the first is
// answered. The session stops watching for reads when it comes and starts
// again at the answer, and that re-arming is what reports it: the ReadySet's
// descriptor is woken only by new arrivals, so a session that kept watching
// never saw it (the review of e998a3d: with the pause removed, the second
// request of the first pair was never answered).
TEST(NetsemdClusterStart, ASecondRequestThatComesAloneWhileTheFirstWaitsForTheLogIsRead) {
  SingleServer one;
  ASSERT_TRUE(one.start());
  auto client = one.holder();
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 20; ++i) {
    client->send_line(req::release("r" + std::to_string(i), "lock"));
    std::this_thread::sleep_for(300us);  // the release is read and waits for the log
    client->send_line(req::acquire("a" + std::to_string(i), "lock", 1, 10000));
    ASSERT_TRUE(pair_answered(*client, i)) << "the acquire that came during the release's wait was never read";
  }
}

// The leader's wall clock stepped (date -s, an NTP step, a restored VM):
// log time follows the steady clock (cluster::LogClock). A session that
// pings keeps its permit across a step of 20 s forward, and a queued
// request's timeout is not held back by a step of 50 s back. (With the wall
// clock as log time, the holder's session expired at the step and the
// waiter was granted the permit it still held, and the timeout came 50 s
// late: a hostile audit, with this same LD_PRELOAD shim.)
TEST(NetsemdClusterStart, AStepOfTheLeadersWallClockAgesNoSessionAndHoldsBackNoTimeout) {
  SingleServer one;  // session timeout 3 s
  const auto offset_file = one.dir.path() / "wall-offset";
  const auto step_wall_clock_to = [&](long long offset_ms) { std::ofstream(offset_file) << offset_ms << "\n"; };
  step_wall_clock_to(0);
  one.options.env = {std::string("LD_PRELOAD=") + NETSEM_WALL_CLOCK_SHIM,
                     "NETSEM_TEST_WALL_OFFSET_FILE=" + offset_file.string()};
  ASSERT_TRUE(one.start());
  Netsemd* server = one.server.get();
  auto holder = one.holder();
  auto waiter = Client::connect(one.client_port);
  ASSERT_TRUE(holder && waiter);

  step_wall_clock_to(20'000);
  waiter->send_line(req::acquire("w", "lock", 1, 4000));
  EXPECT_EQ(waiter->read_line(10s), "w QUEUED 1");
  // A session timeout and more, both pinging as clients do; the waiter's
  // answer comes among its PONGs.
  std::optional<std::string> waited;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(holder->request(req::ping("p", "alive"), 10s), "p PONG alive") << server->log();
    waiter->send_line(req::ping("q", "alive"));
    for (auto line = waiter->read_line(10s); line && *line != "q PONG alive"; line = waiter->read_line(10s)) {
      waited = line;
    }
    std::this_thread::sleep_for(500ms);
  }
  ASSERT_TRUE(waited) << "no answer to the queued acquire" << server->log();
  EXPECT_EQ(waited->rfind("w TIMEOUT", 0), 0u)
      << "the holder's session was expired by the step: " << *waited << server->log();
  EXPECT_EQ(holder->request(req::release("r", "lock"), 10s).rfind("r OK", 0), 0u) << server->log();

  // 50 s back: a queued request's 1 s timeout still comes in about 1 s.
  ASSERT_EQ(holder->request(req::acquire("h2", "lock", 1, 10000), 10s).rfind("h2 OK ", 0), 0u);
  step_wall_clock_to(-30'000);
  std::this_thread::sleep_for(100ms);
  waiter->send_line(req::acquire("w2", "lock", 1, 1000));
  EXPECT_EQ(waiter->read_line(10s), "w2 QUEUED 1");
  const auto timed_out = waiter->read_line(5s);
  ASSERT_TRUE(timed_out) << "the 1 s timeout did not come within 5 s of a step back";
  EXPECT_EQ(timed_out->rfind("w2 TIMEOUT", 0), 0u) << *timed_out;
}

// What writes the Raft directory of the test below, as a RaftNode's state
// machine: it takes every command, and its snapshot is a real replica's
// state, of netsem's own format, but at log index 1000, far ahead of the
// log it is stored in (a snapshot copied from another directory, say). It
// decodes; a replica restored from it refuses every entry after it, by rule
// (an index below the last one applied).
class AheadSnapshotMachine final : public raft::StateMachine {
 public:
  Result<std::string> apply(std::uint64_t, std::string_view) override { return std::string(); }
  std::string snapshot() override {
    replication::StateMachine state(server::TableLimits{});
    EXPECT_TRUE(state.apply_entry(1000, replication::Entry{1, {replication::TouchAll{}}}));
    return state.snapshot();
  }
  Status restore(std::string_view) override { return Status::ok(); }
};

// A committed entry that the replicas refuse: netsemd stops (exit 3), saying
// which entry and why in its log and on stderr, and a restart on the same
// data refuses the same entry again, never skipping it. (It skipped them:
// the raft thread's replica refused each entry after the snapshot, handed
// none on, and the server answered clients from the snapshot's state.)
TEST(NetsemdClusterStart, AnEntryTheReplicaRefusesStopsTheServerAtEachStartWithExit3) {
  TempDir dir;
  const std::uint16_t client_port = test_support::free_port_below_ephemeral();
  const std::uint16_t raft_port = test_support::free_port_below_ephemeral();
  const auto raft_dir = dir.path() / "raft";
  std::filesystem::create_directories(raft_dir);
  {
    AheadSnapshotMachine machine;
    raft::RaftOptions o;
    o.id = 1;
    o.address = "127.0.0.1:" + std::to_string(raft_port);
    o.data_dir = raft_dir.string();
    o.bootstrap = {raft::ServerInfo{1, o.address, raft::ServerRole::kVoter}};
    o.election_timeout = 500ms;
    o.heartbeat_timeout = 50ms;
    o.snapshot_threshold = 4;
    o.snapshot_trailing = 2;
    auto node = raft::RaftNode::start(o, machine);
    ASSERT_TRUE(node) << node.status().to_string();
    std::atomic<int> committed = 0;
    int proposed = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    // One TouchAll entry, committed.
    const auto propose_one = [&] {
      while ((*node)->status().role != raft::Role::kLeader && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
      }
      (*node)->propose(replication::encode_entry(replication::Entry{++proposed, {replication::TouchAll{}}}),
                       [&committed](Result<std::string> result) { committed += result ? 1 : 0; });
      while (committed < proposed && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
      return committed == proposed;
    };
    // Until libraft took a snapshot (after 4 entries), then two after it.
    while ((*node)->status().snapshot_index == 0 && proposed < 40) ASSERT_TRUE(propose_one());
    ASSERT_TRUE(propose_one());
    ASSERT_TRUE(propose_one());
    const raft::NodeStatus written = (*node)->status();
    ASSERT_GT(written.snapshot_index, 0u);
    ASSERT_LT(written.snapshot_index, written.last_index);  // entries after it
    (*node)->stop();
  }
  Netsemd::Options options = single_server(dir, client_port, raft_port);
  options.raw_config += "data_dir = " + raft_dir.string() + "\n";
  std::string refused_at;
  for (int run = 0; run < 2; ++run) {
    std::string error;
    auto server = Netsemd::start(options, &error);
    std::string said = error;
    if (server != nullptr) {
      const auto status = server->wait_exit(10s);
      ASSERT_TRUE(status.has_value()) << "run " << run << ": netsemd serves on\n" << server->log();
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 3) << *status;
      said = server->log();
    } else {
      EXPECT_NE(error.find("(exit status 3)"), std::string::npos) << error;
    }
    static const std::regex kStopped(
        "netsemd: stopped: INVALID_ARGUMENT: the loop replica refused the committed entry at ([0-9]+): log index "
        "[0-9]+ is below the last one applied, 1000");
    std::smatch match;
    ASSERT_TRUE(std::regex_search(said, match, kStopped)) << "run " << run << ":\n" << said;
    EXPECT_NE(said.find("critical cluster: the loop replica refused the committed entry at " + match[1].str()),
              std::string::npos)
        << said;
    if (run == 0) refused_at = match[1];
    EXPECT_EQ(match[1], refused_at) << "the restart went past the refused entry";
  }
}

// A connection to `host`:`port` (a Raft port) from `source`, that sends
// nothing; -1 when it cannot be made.
UniqueFd raft_connect_from(const std::string& source, const std::string& host, std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return UniqueFd();
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &to.sin_addr);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&from), sizeof from) != 0 ||
      ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    return UniqueFd();
  }
  return fd;
}

// Sends libraft's handshake on `fd` (protocol 1, claiming to be server
// `claimed_id`) and nothing after it.
bool send_raft_handshake(int fd, std::uint64_t claimed_id) {
  // uv_tcp_listen.c: three little-endian 64-bit words (protocol, id, the
  // address's length, padded to 8), then the address, NUL-terminated.
  char address[16] = "127.0.0.9:1";
  const std::uint64_t preamble[3] = {1, claimed_id, sizeof address};
  return ::send(fd, preamble, sizeof preamble, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof preamble) &&
         ::send(fd, address, sizeof address, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof address);
}

// A connection from `source` that sends libraft's handshake, claiming to be
// server `claimed_id`; -1 when it cannot be made.
UniqueFd raft_handshake_from(const std::string& source, const std::string& host, std::uint16_t port,
                             std::uint64_t claimed_id) {
  UniqueFd fd = raft_connect_from(source, host, port);
  if (!fd.valid() || !send_raft_handshake(fd.get(), claimed_id)) return UniqueFd();
  return fd;
}

// Whether the server closes `fd` within `timeout` (end of file or a reset).
bool closed_within(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  char byte = 0;
  return ::recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
}

// The body of server `i`'s GET /metrics; empty when it cannot be had.
std::string metrics_of(const Netsemd& server, const std::string& host) {
  const std::uint16_t port = test_support::http_port_from_log(server.log());
  if (port == 0) return {};
  test_support::HttpConnection connection(port, host.c_str());
  if (!connection.ok() || !connection.send_request("GET", "/metrics")) return {};
  const auto response = connection.read_response(5s, false);
  return response.has_value() ? response->body : std::string();
}

std::string metrics_having(const Netsemd& server, const std::string& host, const std::string& line) {
  std::string metrics;
  test_support::eventually(
      [&] {
        metrics = metrics_of(server, host);
        return metrics.find(line) != std::string::npos;
      },
      3s, 50ms);
  return metrics;
}

// How often `line` is in `log`.
std::size_t count_of(const std::string& log, const std::string& line) {
  std::size_t n = 0;
  for (std::size_t at = log.find(line); at != std::string::npos; at = log.find(line, at + 1)) ++n;
  return n;
}

// Server 3's Raft directory on a 12 MiB tmpfs: its first segment (8 MiB)
// is allocated, the next one, which libraft 0.15 prepares ahead, is not
// (ENOSPC), and libraft says nothing of it (audit27 1e). netsemd warns,
// naming the directory and what it means, counts it in
// netsem_cluster_segment_no_space_total, and goes on: the cluster grants.
class NetsemdClusterTightDisk : public NetsemdClusterSmallDisk {
 protected:
  void SetUp() override {
    mount_small("size=12m");
    if (IsSkipped()) return;
    NetsemdCluster::SetUp();
  }
};

TEST_F(NetsemdClusterTightDisk, AServerThatCannotPrepareItsNextSegmentSaysSoAndCountsIt) {
  EXPECT_TRUE(servers_[2]->wait_for_log(
      "raft: no space left in " + (small_ / "raft").string() + " for the next segment of the Raft log (open-", 10s))
      << logs();
  EXPECT_TRUE(
      servers_[2]->wait_for_log("this server stops (exit 3), taking no more entries. Free space on that disk", 1s))
      << logs();
  const std::string metrics = metrics_of(*servers_[2], host(2));
  const std::string series = "\nnetsem_cluster_segment_no_space_total ";
  const std::size_t at = metrics.find(series);
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_GE(std::stoull(metrics.substr(at + series.size())), 1u) << metrics;
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  auto client = connect(lead);
  ASSERT_TRUE(client != nullptr);
  ASSERT_NO_FATAL_FAILURE(grant_and_release(*client, 3));
  EXPECT_FALSE(servers_[2]->wait_exit(0ms).has_value()) << logs();
}

// The Raft port accepts connections only from the servers' hosts: one from
// 127.0.0.1-3 is the cluster's; one from 127.0.0.9 is closed at once, before
// its handshake is read, never taken by libraft (which would keep it open,
// waiting for messages), logged once per source and counted in /metrics. The
// cluster goes on granting.
TEST_F(NetsemdCluster, TheRaftPortClosesAConnectionFromAHostThatIsNoMember) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int follower = (lead + 1) % kServers;
  for (int round = 0; round < 2; ++round) {
    for (const int target : {lead, follower}) {
      UniqueFd fd = raft_connect_from("127.0.0.9", host(target), raft_ports_[target]);
      ASSERT_TRUE(fd.valid()) << std::strerror(errno);
      // A handshake sent to a closing connection may fail: it changes nothing.
      send_raft_handshake(fd.get(), 2);
      EXPECT_TRUE(closed_within(fd.get(), 5s)) << "server " << target + 1 << " kept it\n" << logs();
    }
  }
  for (const int target : {lead, follower}) {
    const std::string log = servers_[target]->log();
    EXPECT_EQ(count_of(log,
                       "refused a connection to the Raft port from 127.0.0.9: not the host of a server of this "
                       "node's configuration or file, nor in raft_allowed_networks"),
              1u)
        << log;
    const std::string counted = "netsem_cluster_raft_connections_refused_total{reason=\"host\"} 2\n";
    const std::string metrics = metrics_having(*servers_[target], host(target), counted);
    EXPECT_NE(metrics.find(counted), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("netsem_cluster_raft_connections_refused_total{reason=\"timeout\"} 0\n"), std::string::npos)
        << metrics;
  }
  auto client = connect(follower);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a1", "lock"));
  EXPECT_EQ(client->request(req::release("r1", "lock"), 10s).rfind("r1 OK", 0), 0u) << logs();
}

// A connection from a member's host that sends no handshake (nothing, or a
// part of one) is closed after the handshake deadline, 5 s here (the longer
// of 5 s and the election timeout): libraft's listener kept it open for
// ever. The cluster grants meanwhile.
TEST_F(NetsemdCluster, TheRaftPortClosesAConnectionThatSendsNoHandshakeAfterTheDeadline) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int other = (lead + 1) % kServers;
  const auto opened = std::chrono::steady_clock::now();
  UniqueFd silent = raft_connect_from(host(other), host(lead), raft_ports_[lead]);
  ASSERT_TRUE(silent.valid()) << std::strerror(errno);
  UniqueFd partial = raft_connect_from(host(other), host(lead), raft_ports_[lead]);
  ASSERT_TRUE(partial.valid()) << std::strerror(errno);
  const std::uint64_t protocol = 1;
  ASSERT_EQ(::send(partial.get(), &protocol, sizeof protocol, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof protocol));

  auto client = connect(other);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a1", "lock"));
  EXPECT_EQ(client->request(req::release("r1", "lock"), 10s).rfind("r1 OK", 0), 0u) << logs();
  EXPECT_FALSE(closed_within(silent.get(), 3s)) << "closed before the deadline\n" << logs();
  EXPECT_TRUE(closed_within(silent.get(), 5s)) << "kept past the deadline\n" << logs();
  EXPECT_TRUE(closed_within(partial.get(), 1s)) << "kept past the deadline\n" << logs();
  const auto waited = std::chrono::steady_clock::now() - opened;
  EXPECT_GE(waited, 4900ms);

  const std::string log = servers_[lead]->log();
  EXPECT_EQ(
      count_of(log, "refused a connection to the Raft port from " + host(other) + ": no handshake within 5000 ms"), 1u)
      << log;
  const std::string counted = "netsem_cluster_raft_connections_refused_total{reason=\"timeout\"} 2\n";
  const std::string metrics = metrics_having(*servers_[lead], host(lead), counted);
  EXPECT_NE(metrics.find(counted), std::string::npos) << metrics;
  // A new session: the first expired while the test waited (3 s).
  auto again = connect(lead);
  ASSERT_TRUE(again != nullptr);
  EXPECT_TRUE(grants(*again, "a2", "lock"));
}

// A handshake whose claimed id is not the server of its source's host is
// refused: 127.0.0.3 (server 3's host) saying it is server 2 (on 127.0.0.2),
// or server 7 (no server). Server 3's own id from its host is taken.
TEST_F(NetsemdCluster, TheRaftPortRefusesAHandshakeClaimingAnotherServersId) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  for (const std::uint64_t claimed : {2, 7}) {
    UniqueFd fd = raft_handshake_from(host(2), host(lead), raft_ports_[lead], claimed);
    ASSERT_TRUE(fd.valid()) << std::strerror(errno);
    EXPECT_TRUE(closed_within(fd.get(), 3s)) << "server " << lead + 1 << " took server " << claimed << "'s\n" << logs();
  }
  UniqueFd own = raft_handshake_from(host(2), host(lead), raft_ports_[lead], 3);
  ASSERT_TRUE(own.valid()) << std::strerror(errno);
  EXPECT_FALSE(closed_within(own.get(), 1s)) << logs();
  own = UniqueFd();

  const std::string log = servers_[lead]->log();
  EXPECT_EQ(count_of(log,
                     "refused a connection to the Raft port from 127.0.0.3: it said it was server 2, which is "
                     "not a server of this node's configuration or file with its Raft address on that host"),
            1u)
      << log;
  EXPECT_EQ(count_of(log, "refused a connection to the Raft port from 127.0.0.3: it said"), 1u)
      << "logged twice for one source\n"
      << log;
  const std::string counted = "netsem_cluster_raft_connections_refused_total{reason=\"id\"} 2\n";
  const std::string metrics = metrics_having(*servers_[lead], host(lead), counted);
  EXPECT_NE(metrics.find(counted), std::string::npos) << metrics;
  auto client = connect(lead);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a1", "lock"));
}

// A valid handshake is no licence for any number of streams: libraft keeps
// every stream handed to it, so at most 2 of one host claiming one id are
// open with it (one is a member's own, a second one while the first's end
// is not yet seen). Three more from a member's host claiming its id: the
// first is kept (the member's own is the other), the second and third are
// closed at once after their handshake, logged once and counted
// ("streams"). The member stays connected: with the third
// server killed, the leader's grants need its acknowledgements; and once
// killed and started again (its old stream ends), its new one is taken.
TEST_F(NetsemdCluster, TheRaftPortClosesStreamsBeyondTwoOfAHostClaimingOneId) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const int member = (lead + 1) % kServers;
  const int third = (lead + 2) % kServers;
  const auto id = static_cast<std::uint64_t>(member + 1);
  std::vector<UniqueFd> extra;
  for (int i = 0; i < 3; ++i) {
    extra.push_back(raft_handshake_from(host(member), host(lead), raft_ports_[lead], id));
    ASSERT_TRUE(extra.back().valid()) << std::strerror(errno);
  }
  for (int i = 1; i < 3; ++i) {
    EXPECT_TRUE(closed_within(extra[i].get(), 2s)) << "extra stream " << i << " claiming server " << id << " kept\n"
                                                   << logs();
  }
  EXPECT_FALSE(closed_within(extra[0].get(), 1s)) << logs();

  const std::string log = servers_[lead]->log();
  EXPECT_EQ(count_of(log, "refused a connection to the Raft port from " + host(member) +
                              ": closed after its handshake: 2 streams from that host claiming server " +
                              std::to_string(id) + " (at most 2)"),
            1u)
      << log;
  const std::string counted = "netsem_cluster_raft_connections_refused_total{reason=\"streams\"} 2\n";
  const std::string metrics = metrics_having(*servers_[lead], host(lead), counted);
  EXPECT_NE(metrics.find(counted), std::string::npos) << metrics;

  // Grants need the member now: its stream to the leader was not pushed out.
  kill_server(third);
  {
    auto client = connect(lead);
    ASSERT_TRUE(client != nullptr);
    EXPECT_TRUE(grants(*client, "a1", "lock"));
    EXPECT_EQ(client->request(req::release("r1", "lock"), 10s).rfind("r1 OK", 0), 0u) << logs();
  }
  // Restarted, the member connects again while the extra streams stay open.
  kill_server(member);
  start(member);
  auto client = connect(member);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a2", "lock"));
  EXPECT_FALSE(closed_within(extra[0].get(), 0ms)) << logs();
}

// Each server's connections to the others leave from its own Raft host, so
// the source is matched exactly on loopback too: 127.0.0.1 (server 1's
// host) claiming server 2 (at 127.0.0.2) is refused, as libraft's unbound
// connections (all from 127.0.0.1 between loopback addresses) made it be
// let in. The cluster's own connections are taken: it grants.
TEST_F(NetsemdCluster, TheRaftPortRefusesALoopbackHandshakeClaimingAServerOnAnotherLoopbackAddress) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  for (int target = 0; target < kServers; ++target) {
    UniqueFd fd = raft_handshake_from("127.0.0.1", host(target), raft_ports_[target], 2);
    ASSERT_TRUE(fd.valid()) << std::strerror(errno);
    EXPECT_TRUE(closed_within(fd.get(), 2s)) << "server " << target + 1 << " took 127.0.0.1 as server 2\n" << logs();
    const std::string log = servers_[target]->log();
    EXPECT_EQ(count_of(log,
                       "refused a connection to the Raft port from 127.0.0.1: it said it was server 2, which is "
                       "not a server of this node's configuration or file with its Raft address on that host"),
              1u)
        << log;
  }
  UniqueFd own = raft_handshake_from("127.0.0.1", host(lead), raft_ports_[lead], 1);
  ASSERT_TRUE(own.valid()) << std::strerror(errno);
  EXPECT_FALSE(closed_within(own.get(), 1s)) << logs();
  auto client = connect((lead + 1) % kServers);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a1", "lock"));
}

// raft_allowed_networks admits another source: a member whose connections
// leave from another address. 127.0.0.9's connection is taken (libraft
// keeps it open, waiting for messages) and nothing is refused.
class NetsemdClusterRaftAllowed : public NetsemdCluster {
 protected:
  void SetUp() override {
    raft_timeouts_ += "raft_allowed_networks = 127.0.0.8/29, 10.0.0.0/8\n";
    NetsemdCluster::SetUp();
  }
};

TEST_F(NetsemdClusterRaftAllowed, TheRaftPortTakesAConnectionFromRaftAllowedNetworks) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  UniqueFd fd = raft_handshake_from("127.0.0.9", host(lead), raft_ports_[lead], 2);
  ASSERT_TRUE(fd.valid()) << std::strerror(errno);
  EXPECT_FALSE(closed_within(fd.get(), 2s)) << logs();
  EXPECT_EQ(servers_[lead]->log().find("refused a connection to the Raft port"), std::string::npos) << logs();
  fd = UniqueFd();
  auto client = connect(lead);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a1", "lock"));
}

// At most 4 connections of one source and 32 in all wait for their
// handshake: one more is closed at once. 4 from 127.0.0.2 wait, a fifth is
// closed; 4 from each of 127.0.0.8-14 (raft_allowed_networks) are still
// read and fill the 32 with 127.0.0.2's, and then the first from 127.0.0.15
// is closed at once too. Once they are gone the cluster grants.
TEST_F(NetsemdClusterRaftAllowed, TheRaftPortClosesConnectionsBeyondTheCapAtOnce) {
  const int lead = leader();
  ASSERT_GE(lead, 0) << logs();
  const std::uint16_t port = raft_ports_[lead];
  std::vector<UniqueFd> waiting;
  for (int i = 0; i < 4; ++i) {
    waiting.push_back(raft_connect_from("127.0.0.2", host(lead), port));
    ASSERT_TRUE(waiting.back().valid()) << std::strerror(errno);
  }
  for (int i = 0; i < 2; ++i) {
    UniqueFd excess = raft_connect_from("127.0.0.2", host(lead), port);
    ASSERT_TRUE(excess.valid()) << std::strerror(errno);
    EXPECT_TRUE(closed_within(excess.get(), 1s)) << "a fifth connection from 127.0.0.2 kept\n" << logs();
  }
  for (int source = 8; source < 15; ++source) {
    for (int i = 0; i < 4; ++i) {
      waiting.push_back(raft_connect_from("127.0.0." + std::to_string(source), host(lead), port));
      ASSERT_TRUE(waiting.back().valid()) << std::strerror(errno);
    }
  }
  // 32 wait now (4 + 7 x 4): 127.0.0.15's first is one too many.
  UniqueFd excess = raft_connect_from("127.0.0.15", host(lead), port);
  ASSERT_TRUE(excess.valid()) << std::strerror(errno);
  EXPECT_TRUE(closed_within(excess.get(), 1s)) << "a 33rd connection kept\n" << logs();
  for (const UniqueFd& fd : waiting) EXPECT_FALSE(closed_within(fd.get(), 0ms)) << logs();

  const std::string log = servers_[lead]->log();
  EXPECT_EQ(count_of(log,
                     "refused a connection to the Raft port from 127.0.0.2: closed at once: 4 connections from "
                     "that host (at most 4)"),
            1u)
      << log;
  EXPECT_EQ(count_of(log,
                     "refused a connection to the Raft port from 127.0.0.15: closed at once: 0 connections from "
                     "that host (at most 4) and 32 in all (at most 32)"),
            1u)
      << log;
  const std::string counted = "netsem_cluster_raft_connections_refused_total{reason=\"pending\"} 3\n";
  const std::string metrics = metrics_having(*servers_[lead], host(lead), counted);
  EXPECT_NE(metrics.find(counted), std::string::npos) << metrics;
  waiting.clear();
  auto client = connect(lead);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a1", "lock"));
}

// A member's host may send peer lines at will: their refusals are logged
// the first at once, the rest of each 10 s as one line with their count
// (audit27 2i: 5,000 malformed secret checks wrote 5,000 warnings), none
// left unsaid.
TEST_F(NetsemdCluster, RefusedPeerLinesAreLoggedOncePerSourceAndWindowWithACount) {
  const int to = leader();
  ASSERT_GE(to, 0) << logs();
  const int from = (to + 1) % kServers;
  const auto f = static_cast<cluster::ServerId>(from + 1);
  const std::string line = "PEER " + std::to_string(f) + " CHALLENGE x\n";  // malformed: no nonce
  const std::string refused = "refused a secret check from " + host(from) + ": ";
  constexpr int kSent = 200;
  bool closed = false;
  for (int i = 0; i < kSent; ++i) {
    const UniqueFd fd = raw_connection(host(from), host(to), client_ports_[to]);
    ASSERT_TRUE(fd.valid()) << i;
    ASSERT_TRUE(send_all(fd, line)) << i;
    EXPECT_EQ(read_from(fd, 5s, false, &closed), "");
    EXPECT_TRUE(closed) << i;
    // The first is logged at once.
    if (i == 0) {
      ASSERT_TRUE(servers_[to]->wait_for_log(refused, 2s)) << logs();
    }
  }
  // Every refusal is told: a line each, or counted in a later one's "(and
  // N more ...)", within a window (10 s) or two of the last.
  const std::string more = " more from " + host(from) + " in the last 10 s)";
  std::size_t lines = 0;
  std::size_t told = 0;
  std::string log;
  for (const auto deadline = std::chrono::steady_clock::now() + 25s; std::chrono::steady_clock::now() < deadline;) {
    log = servers_[to]->log();
    lines = count_of(log, refused);
    told = lines;
    for (std::size_t at = log.find(more); at != std::string::npos; at = log.find(more, at + 1)) {
      const std::size_t open = log.rfind("(and ", at);
      ASSERT_NE(open, std::string::npos) << log;
      told += std::stoul(log.substr(open + 5, at - open - 5));
    }
    if (told >= kSent) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(told, static_cast<std::size_t>(kSent)) << log;
  EXPECT_LE(lines, 4u) << log;
  EXPECT_GE(count_of(log, more), 1u) << log;
  // And every one is counted, at once.
  const std::string metrics = metrics_of(*servers_[to], host(to));
  EXPECT_NE(
      metrics.find("netsem_cluster_peer_lines_refused_total{kind=\"secret_check\"} " + std::to_string(kSent) + "\n"),
      std::string::npos)
      << metrics;
  // The real links work.
  auto client = connect(from);
  ASSERT_TRUE(client != nullptr);
  EXPECT_TRUE(grants(*client, "a1", "lock"));
}

}  // namespace
}  // namespace netsem::testing
