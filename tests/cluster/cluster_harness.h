// TestCluster: tests/cluster's three (or more) ClusterNodes in one process,
// node i on 127.0.0.i with its own data directory, each with a loop replica
// that the test thread keeps as netsemd's event loop will: it drains the
// node's sink, applies every entry (or snapshot) to the replica, tells the
// node (applied) and ticks it. The test thread is every node's loop thread.
// Followers reach the leader through InProcessForwarder, which calls the
// leader node's accept_forwarded: the peer link's path without its TCP.
#pragma once

#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/cluster_node.h"
#include "replication/entry.h"
#include "replication/results.h"
#include "replication/state_machine.h"
#include "support/free_port.h"

namespace netsem::cluster::testing {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// The log time of the tests: the steady clock in ms.
inline std::int64_t test_clock_ms() {
  return std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count();
}

// One entry as a loop replica applied it.
struct Applied {
  std::uint64_t index = 0;
  replication::Entry entry;
  replication::EntryResults results;
};

class TestCluster;

// The test's transport between nodes: the leader node's accept_forwarded,
// called at once (on the test thread, every node's loop). Counts what it
// carried; `drop` makes it lose everything (a link that is down).
class InProcessForwarder final : public Forwarder {
 public:
  explicit InProcessForwarder(TestCluster& cluster) : cluster_(cluster) {}
  void forward(std::uint64_t leader_id, std::string entry) override;
  int delivered = 0;
  int refused = 0;
  bool drop = false;

 private:
  TestCluster& cluster_;
};

struct TestServer {
  std::unique_ptr<ClusterNode> node;
  std::mutex mu;
  std::deque<ReplicaEvent> inbox;  // guarded by mu: the sink's queue
  std::unique_ptr<replication::StateMachine> replica;
  std::vector<Applied> applied;  // every entry the loop replica applied
  int restores = 0;
  bool hold = false;  // the loop is "busy": events wait in the inbox
  std::string failure;
};

class TestCluster {
 public:
  explicit TestCluster(int n = 3, milliseconds election = milliseconds(500)) : n_(n), election_(election) {
    ::signal(SIGPIPE, SIG_IGN);  // as netsemd: libuv writes to a closed peer without MSG_NOSIGNAL
    char tmpl[] = "/tmp/netsem-cluster-XXXXXX";
    dir_ = ::mkdtemp(tmpl) ? tmpl : "";
    port_ = test_support::free_port_below_ephemeral();
  }
  ~TestCluster() {
    for (auto& [i, s] : servers_) {
      if (s->node) s->node->stop();
    }
    servers_.clear();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string address(int i) const { return "127.0.0." + std::to_string(i) + ":" + std::to_string(port_); }
  TestServer& server(int i) {
    auto& slot = servers_[i];
    if (!slot) slot = std::make_unique<TestServer>();
    return *slot;
  }
  ClusterNode& node(int i) { return *server(i).node; }
  bool running(int i) { return servers_.count(i) != 0 && servers_[i]->node != nullptr; }
  InProcessForwarder& forwarder() { return forwarder_; }

  // Options for node i (tests may change them before start()).
  ClusterOptions options(int i) {
    ClusterOptions o;
    o.id = static_cast<std::uint64_t>(i);
    o.raft_address = address(i);
    o.data_dir = dir_ + "/node" + std::to_string(i);
    for (int k = 1; k <= n_; ++k) {
      o.bootstrap.push_back({static_cast<std::uint64_t>(k), address(k), raft::ServerRole::kVoter});
      o.client_addresses[static_cast<std::uint64_t>(k)] = "127.0.0." + std::to_string(k) + ":53555";
    }
    o.election_timeout = election_;
    o.heartbeat_timeout = election_ / 10;
    o.clock = test_clock_ms;
    o.forwarder = &forwarder_;
    return o;
  }

  // Starts node i with options(i) changed by `adjust`; a fresh loop replica.
  ::testing::AssertionResult start(int i, const std::function<void(ClusterOptions&)>& adjust = {}) {
    ClusterOptions o = options(i);
    if (adjust) adjust(o);
    std::filesystem::create_directories(o.data_dir);
    TestServer& s = server(i);
    s.replica = std::make_unique<replication::StateMachine>(o.limits);
    s.applied.clear();
    {
      std::lock_guard lock(s.mu);
      s.inbox.clear();
    }
    o.sink = [&s](ReplicaEvent event) {
      std::lock_guard lock(s.mu);
      s.inbox.push_back(std::move(event));
    };
    auto node = ClusterNode::start(std::move(o));
    if (!node) return ::testing::AssertionFailure() << "node " << i << ": " << node.status().to_string();
    s.node = std::move(*node);
    return ::testing::AssertionSuccess();
  }
  void start_all() {
    for (int i = 1; i <= n_; ++i) ASSERT_TRUE(start(i));
  }
  // Stops node i (as a server that dies: nothing more from it).
  void stop(int i) {
    if (!running(i)) return;
    server(i).node->stop();
    server(i).node.reset();
  }

  // Called at the start of every pump() (a test's io_context.poll()).
  std::function<void()> on_pump;

  // One turn of every running node's loop.
  void pump() {
    if (on_pump) on_pump();
    for (auto& [i, sp] : servers_) {
      TestServer& s = *sp;
      if (!s.node) continue;
      std::deque<ReplicaEvent> events;
      if (!s.hold) {
        std::lock_guard lock(s.mu);
        events.swap(s.inbox);
      }
      for (ReplicaEvent& e : events) {
        if (e.kind == ReplicaEvent::Kind::kRestored) {
          Status st = s.replica->restore(e.bytes);
          if (!st) s.failure = "restore: " + st.to_string();
          ++s.restores;
          continue;
        }
        auto entry = replication::decode_entry(e.bytes);
        auto results = s.replica->apply(e.index, e.bytes);
        if (!entry || !results) {
          s.failure = "apply at " + std::to_string(e.index);
          continue;
        }
        auto decoded = replication::decode_results(*results);
        s.applied.push_back({e.index, *entry, *decoded});
        s.node->applied(e.index, *entry);
      }
      (void)s.node->tick(test_clock_ms(), *s.replica);
    }
  }
  // Pumps until `done` holds; false after `timeout`.
  bool pump_until(const std::function<bool()>& done, milliseconds timeout = milliseconds(10000)) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      pump();
      if (done()) return true;
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(2));
    }
  }

  // The leader every running node names, once there is one; 0 at the deadline.
  int wait_leader(milliseconds timeout = milliseconds(10000)) {
    int leader = 0;
    pump_until(
        [&] {
          leader = 0;
          std::uint64_t named = 0;
          for (auto& [i, s] : servers_) {
            if (!s->node) continue;
            const ClusterStatus st = s->node->status();
            if (st.leader_id == 0 || (named != 0 && st.leader_id != named)) return false;
            named = st.leader_id;
            if (st.role == raft::Role::kLeader) leader = i;
          }
          return leader != 0 && named == static_cast<std::uint64_t>(leader);
        },
        timeout);
    return leader;
  }

  // A running node other than `not_this`.
  int other_than(int not_this) {
    for (auto& [i, s] : servers_) {
      if (s->node && i != not_this) return i;
    }
    return 0;
  }

  // The commands node i's loop replica applied, in order.
  std::vector<replication::Command> commands(int i) {
    std::vector<replication::Command> out;
    for (const Applied& a : server(i).applied) out.insert(out.end(), a.entry.commands.begin(), a.entry.commands.end());
    return out;
  }

  // The result of the first applied command equal to `command` on node i.
  const replication::CommandResult* result_of(int i, const replication::Command& command) {
    for (const Applied& a : server(i).applied) {
      for (std::size_t k = 0; k < a.entry.commands.size(); ++k) {
        if (a.entry.commands[k] == command) return &a.results.commands[k];
      }
    }
    return nullptr;
  }
  // How many times node i applied `command`.
  int count_of(int i, const replication::Command& command) {
    int n = 0;
    for (const replication::Command& c : commands(i)) n += c == command;
    return n;
  }

 private:
  int n_;
  milliseconds election_;
  std::string dir_;
  std::uint16_t port_ = 0;
  std::map<int, std::unique_ptr<TestServer>> servers_;
  InProcessForwarder forwarder_{*this};
};

inline void InProcessForwarder::forward(std::uint64_t leader_id, std::string entry) {
  const int i = static_cast<int>(leader_id);
  if (drop || !cluster_.running(i)) {
    ++refused;
    return;
  }
  if (cluster_.node(i).accept_forwarded(entry)) {
    ++delivered;
  } else {
    ++refused;
  }
}

}  // namespace netsem::cluster::testing
