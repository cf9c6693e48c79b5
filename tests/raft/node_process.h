// NodeProcess and Cluster: tests/raft's harness around real netsem-raft-node
// processes (raft_node_tool.cc). A NodeProcess is one child with its stdin
// and stdout on pipes (stderr to a file), talked to in lines with deadlines,
// killed by its pid; a Cluster is the processes of one test on 127.0.0.x
// with their data directories in one temporary directory, all killed (by
// pid) and removed when it goes.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/free_port.h"

namespace netsem::raft::testing {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// "k=v" words of a status line.
inline std::map<std::string, std::string> fields_of(const std::string& line) {
  std::map<std::string, std::string> out;
  std::istringstream in(line);
  std::string word;
  while (in >> word) {
    const auto eq = word.find('=');
    if (eq != std::string::npos) out[word.substr(0, eq)] = word.substr(eq + 1);
  }
  return out;
}

class NodeProcess {
 public:
  NodeProcess() = default;
  NodeProcess(const NodeProcess&) = delete;
  NodeProcess& operator=(const NodeProcess&) = delete;
  ~NodeProcess() { kill_now(); }

  // Starts `argv` (argv[0] is the program) with stderr to `stderr_path`.
  bool start(const std::vector<std::string>& argv, const std::string& stderr_path) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return false;
    const pid_t child = ::fork();
    if (child < 0) return false;
    if (child == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (err >= 0) ::dup2(err, 2);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    pid_ = child;
    in_fd_ = in[1];
    out_fd_ = out[0];
    buffer_.clear();
    lines_.clear();
    eof_ = false;
    return true;
  }

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  void send(const std::string& line) {
    if (in_fd_ < 0) return;
    const std::string data = line + "\n";
    [[maybe_unused]] ssize_t n = ::write(in_fd_, data.data(), data.size());
  }

  // The first line (already read or arriving before `timeout`) that `match`
  // accepts, removed from the unread lines; nullopt at the deadline or EOF.
  std::optional<std::string> wait_line(const std::function<bool(const std::string&)>& match, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      for (auto it = lines_.begin(); it != lines_.end(); ++it) {
        if (match(*it)) {
          std::string line = std::move(*it);
          lines_.erase(it);
          return line;
        }
      }
      if (eof_ || out_fd_ < 0) return std::nullopt;
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd p{out_fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[65536];
      const ssize_t n = ::read(out_fd_, chunk, sizeof chunk);
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
      std::size_t nl;
      while ((nl = buffer_.find('\n')) != std::string::npos) {
        lines_.push_back(buffer_.substr(0, nl));
        buffer_.erase(0, nl + 1);
      }
    }
  }
  std::optional<std::string> wait_prefix(const std::string& prefix, milliseconds timeout) {
    return wait_line([&](const std::string& l) { return l.rfind(prefix, 0) == 0; }, timeout);
  }
  // Sends `command` and waits for the answer that starts with `prefix`.
  std::optional<std::string> request(const std::string& command, const std::string& prefix,
                                     milliseconds timeout = milliseconds(5000)) {
    send(command);
    return wait_prefix(prefix, timeout);
  }
  std::optional<std::map<std::string, std::string>> status(milliseconds timeout = milliseconds(3000)) {
    auto line = request("status", "status ", timeout);
    if (!line) return std::nullopt;
    return fields_of(*line);
  }

  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Waits for the process to end; its wait status, or nullopt at the deadline.
  std::optional<int> wait_exit(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        close_pipes();
        pid_ = -1;
        return status;
      }
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return std::nullopt;
  }
  void kill_now() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::kill(pid_, SIGCONT);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    close_pipes();
  }

 private:
  void close_pipes() {
    if (in_fd_ >= 0) ::close(in_fd_);
    if (out_fd_ >= 0) ::close(out_fd_);
    in_fd_ = out_fd_ = -1;
  }

  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1;
  std::string buffer_;
  std::deque<std::string> lines_;
  bool eof_ = false;
};

// The processes of one test: node i (1-based) on 127.0.0.i:port, data in
// <dir>/node<i>, stderr in <dir>/node<i>.err.
class Cluster {
 public:
  // The data directories go under `base` (/tmp by default; /dev/shm, a
  // tmpfs where fsync costs nothing, to measure what fsync costs).
  explicit Cluster(std::vector<std::string> extra_args = {}, const std::string& base = "/tmp")
      : extra_(std::move(extra_args)) {
    ::signal(SIGPIPE, SIG_IGN);
    std::string tmpl = base + "/netsem-raft-XXXXXX";
    dir_ = ::mkdtemp(tmpl.data()) ? tmpl : std::string();
    port_ = test_support::free_port_below_ephemeral();
  }
  ~Cluster() {
    nodes_.clear();  // each killed by its pid
    std::error_code ec;
    if (std::getenv("NETSEM_KEEP_RAFT_DIRS") == nullptr) std::filesystem::remove_all(dir_, ec);
  }

  std::string address(int i) const { return "127.0.0." + std::to_string(i) + ":" + std::to_string(port_); }
  std::uint16_t port() const { return port_; }
  // From now on node i listens on 127.0.1.i (the same port) while its peers
  // still reach it at address(i): where a PartitionProxy listens.
  void bind_privately() { bind_privately_ = true; }
  // The flags given to every node started from now on.
  void set_extra_args(std::vector<std::string> extra_args) { extra_ = std::move(extra_args); }
  std::string data_dir(int i) const { return dir_ + "/node" + std::to_string(i); }
  std::string stderr_path(int i) const { return dir_ + "/node" + std::to_string(i) + ".err"; }
  std::string bootstrap(int n) const {
    std::string out;
    for (int i = 1; i <= n; ++i) out += (i > 1 ? "," : "") + std::to_string(i) + "@" + address(i);
    return out;
  }
  std::string stderr_of(int i) const {
    std::ifstream in(stderr_path(i));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  NodeProcess& node(int i) {
    auto& slot = nodes_[i];
    if (!slot) slot = std::make_unique<NodeProcess>();
    return *slot;
  }

  // Starts node i (its data directory made if missing), bootstrapped with
  // `bootstrap` (empty: none); waits for "ready" unless !wait. Every node
  // knows nodes 1-9 (as netsemd's server.N lines: the Raft port takes a
  // connection only from a server it knows, claiming that server's id).
  bool start(int i, const std::string& bootstrap_servers, bool wait = true) {
    std::filesystem::create_directories(data_dir(i));
    std::vector<std::string> argv = {NETSEM_RAFT_NODE, "--id",      std::to_string(i), "--address", address(i),
                                     "--data-dir",     data_dir(i), "--known",         bootstrap(9)};
    if (!bootstrap_servers.empty()) {
      argv.push_back("--bootstrap");
      argv.push_back(bootstrap_servers);
    }
    if (bind_privately_) {
      argv.push_back("--bind");
      argv.push_back("127.0.1." + std::to_string(i));
    }
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    if (!node(i).start(argv, stderr_path(i))) return false;
    return !wait || node(i).wait_prefix("ready ", milliseconds(10000)).has_value();
  }

  // The id of the leader that every node in `ids` (running, not stopped)
  // names, once one is; 0 at the deadline.
  int wait_leader(const std::vector<int>& ids, milliseconds timeout = milliseconds(15000)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      std::string agreed;
      bool all = true, has_leader = false;
      for (int i : ids) {
        auto s = node(i).status();
        if (!s) return 0;
        const std::string leader = (*s)["leader"];
        if (leader == "0" || (!agreed.empty() && leader != agreed)) all = false;
        agreed = leader;
        if ((*s)["role"] == "leader") has_leader = true;
      }
      if (all && has_leader) return std::stoi(agreed);
      std::this_thread::sleep_for(milliseconds(50));
    }
    return 0;
  }

  // Waits until node i's status satisfies `test`; true when it does.
  bool wait_status(int i, const std::function<bool(std::map<std::string, std::string>&)>& test,
                   milliseconds timeout = milliseconds(15000)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto s = node(i).status();
      if (!s) return false;
      if (test(*s)) return true;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }

  // Waits until every node in `ids` has applied the same log (same size and
  // hash, at least `entries` entries); true when they have.
  bool wait_same_log(const std::vector<int>& ids, std::size_t entries, milliseconds timeout = milliseconds(15000)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      std::string hash;
      bool same = true;
      for (int i : ids) {
        auto s = node(i).status();
        if (!s) return false;
        if (std::stoull((*s)["entries"]) < entries || (!hash.empty() && (*s)["hash"] != hash)) same = false;
        hash = (*s)["hash"];
      }
      if (same) return true;
      std::this_thread::sleep_for(milliseconds(50));
    }
    for (int i : ids) {  // say where each stands
      auto line = node(i).request("status", "status ");
      std::fprintf(stderr, "node %d: %s\n", i, line ? line->c_str() : "no answer");
    }
    return false;
  }

 private:
  std::vector<std::string> extra_;
  std::string dir_;
  std::uint16_t port_ = 0;
  bool bind_privately_ = false;
  std::map<int, std::unique_ptr<NodeProcess>> nodes_;
};

// What the cluster tests share.

inline const std::vector<int> kThree = {1, 2, 3};

// Election 800 ms (a follower stands after a random [800, 1600) ms without a
// leader), heartbeats at a tenth; NETSEM_RAFT_ELECTION_MS measures another.
// `more` are further netsem-raft-node flags.
inline std::vector<std::string> fast_timeouts(std::vector<std::string> more = {}) {
  const char* env = std::getenv("NETSEM_RAFT_ELECTION_MS");
  const int election = env != nullptr ? std::atoi(env) : 800;
  std::vector<std::string> args = {"--election-ms", std::to_string(election), "--heartbeat-ms",
                                   std::to_string(std::max(1, election / 10))};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Starts nodes 1-3 with a three-server bootstrap, failing the test otherwise.
inline void start_three(Cluster& cluster) {
  for (int i : kThree) ASSERT_TRUE(cluster.start(i, cluster.bootstrap(3))) << cluster.stderr_of(i);
}

// Proposes `text` on node i and returns its answer line ("timeout" when none
// came within `timeout`).
inline std::string propose(Cluster& cluster, int i, const std::string& tag, const std::string& text,
                           std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  auto line = cluster.node(i).request("propose " + tag + " " + text, "done " + tag + " ", timeout);
  return line ? *line : "timeout";
}

// Whether a "done" line says the proposal committed.
inline bool ok(const std::string& done_line) {
  return done_line.find(" ok ") != std::string::npos;
}

// Proposes p:aN (tag aN) on node i for N in [from, to), one at a time; true
// when every one was applied.
inline bool propose_numbered(Cluster& cluster, int i, int from, int to) {
  for (int n = from; n < to; ++n) {
    const std::string line = propose(cluster, i, "a" + std::to_string(n), "p:a" + std::to_string(n));
    if (!ok(line)) {
      ADD_FAILURE() << "proposal a" << n << ": " << line;
      return false;
    }
  }
  return true;
}

}  // namespace netsem::raft::testing
