// netsem-raft-node: one RaftNode (src/raft) with the test LogMachine, driven
// by lines on stdin, answering on stdout, so that tests/raft can run a
// cluster of real processes on 127.0.0.x and kill -9 or SIGSTOP them. Not
// installed. Commands (one per line; every answer is one line):
//   propose TAG TEXT   -> later: "done TAG ok RESULT" or "done TAG err STATUS"
//   status             -> "status id=.. role=.. term=.. leader=.. commit=.. applied=.. last=..
//                          snapshot=.. entries=.. hash=.. snapshots=.. restores=.. refused=..
//                          violations=.. batches=.. commands=.. config=ID:ROLE,..."
//   log                -> "log N ENTRY..." (the applied commands, space-separated)
//   bench N SIZE       -> proposes N commands of SIZE bytes at once, waits for all:
//                         "bench n=N ok=K secs=S rate=R batches=B"
//   add ID ADDRESS | assign ID ROLE | remove ID -> "change ok" or "change err STATUS"
//   quit (or end of input) -> stops the node, "bye", exit 0
// Role changes are announced as "role ROLE TERM". A start that fails prints
// "netsem-raft-node: REASON" on stderr and exits 1 (2 for a bad command line).
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>

#include "raft/log_machine.h"
#include "raft/raft_node.h"

namespace {

using netsem::Result;
using netsem::Status;
using namespace netsem::raft;

std::mutex out_mu;
void say(const std::string& line) {
  std::lock_guard lock(out_mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

std::string status_line(const RaftNode& node, const testing::LogMachine& machine, std::uint64_t id) {
  const NodeStatus s = node.status();
  std::ostringstream out;
  out << "status id=" << id << " role=" << role_name(s.role) << " term=" << s.term << " leader=" << s.leader_id
      << " commit=" << s.commit_index << " applied=" << s.last_applied << " last=" << s.last_index
      << " snapshot=" << s.snapshot_index << " entries=" << machine.size() << " hash=" << machine.hash()
      << " snapshots=" << machine.snapshots() << " restores=" << machine.restores() << " refused=" << machine.refused()
      << " violations=" << machine.violations() << " batches=" << s.batches << " commands=" << s.commands << " config=";
  for (std::size_t i = 0; i < s.configuration.size(); ++i) {
    out << (i ? "," : "") << s.configuration[i].id << ":" << server_role_name(s.configuration[i].role);
  }
  if (!s.failure.empty()) out << " failure=" << one_line(s.failure);
  return out.str();
}

void bench(RaftNode& node, std::size_t n, std::size_t size) {
  std::mutex mu;
  std::condition_variable cv;
  std::size_t finished = 0, ok = 0;
  const std::uint64_t batches_before = node.status().batches;
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    std::string command(testing::LogMachine::kPrefix);
    command += "b" + std::to_string(i) + "-";
    if (command.size() < size) command.resize(size, 'x');
    node.propose(std::move(command), [&](Result<std::string> result) {
      std::lock_guard lock(mu);
      ++finished;
      if (result) ++ok;
      if (finished == n) cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return finished == n; });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ostringstream out;
  out << "bench n=" << n << " ok=" << ok << " secs=" << secs << " rate=" << (secs > 0 ? double(ok) / secs : 0.0)
      << " batches=" << node.status().batches - batches_before;
  say(out.str());
}

void change_done(Status status) {
  say(status ? "change ok" : "change err " + one_line(status.to_string()));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netsem-raft-node: one RaftNode with a test state machine, driven on stdin (tests/raft)"};
  RaftOptions options;
  std::string bootstrap;
  unsigned election_ms = 1000, heartbeat_ms = 100;
  std::string log_level = "warn";
  app.add_option("--id", options.id, "this server's id (> 0)")->required();
  app.add_option("--address", options.address, "this server's IPv4 host:port")->required();
  app.add_option("--data-dir", options.data_dir, "the data directory (must exist)")->required();
  app.add_flag("--repair", options.repair, "let a torn last write of the open segment be dropped");
  app.add_option("--bind", options.bind_address, "listen on this IPv4 address (the --address port) instead");
  app.add_option("--bootstrap", bootstrap, "the first configuration: id@host:port,... (first start only)");
  std::string known;
  app.add_option("--known", known,
                 "the servers this one knows besides its configuration, as netsemd's server.N lines: "
                 "id@host:port,... (the Raft port's checks, RaftOptions::known_servers)");
  app.add_option("--election-ms", election_ms, "election timeout (ms)");
  app.add_option("--heartbeat-ms", heartbeat_ms, "heartbeat timeout (ms)");
  app.add_option("--snapshot-threshold", options.snapshot_threshold, "entries between snapshots");
  app.add_option("--snapshot-trailing", options.snapshot_trailing, "entries kept behind a snapshot");
  app.add_option("--max-batch", options.max_batch, "most commands per log entry (1: no batching)");
  unsigned install_snapshot_ms = 5000;
  app.add_option("--install-snapshot-ms", install_snapshot_ms, "a snapshot not acknowledged is sent again after (ms)");
  app.add_option("--log-level", log_level, "spdlog level on stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "netsem-raft-node: %s\n", e.what());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(log_level));
  options.election_timeout = std::chrono::milliseconds(election_ms);
  options.heartbeat_timeout = std::chrono::milliseconds(heartbeat_ms);
  options.install_snapshot_timeout = std::chrono::milliseconds(install_snapshot_ms);
  if (!bootstrap.empty()) {
    auto servers = parse_servers(bootstrap);
    if (!servers) {
      std::fprintf(stderr, "netsem-raft-node: --bootstrap: %s\n", servers.status().message().c_str());
      return 2;
    }
    options.bootstrap = std::move(*servers);
  }
  if (!known.empty()) {
    auto servers = parse_servers(known);
    if (!servers) {
      std::fprintf(stderr, "netsem-raft-node: --known: %s\n", servers.status().message().c_str());
      return 2;
    }
    options.known_servers = std::move(*servers);
  }
  options.on_role_change = [](Role role, std::uint64_t term) {
    say("role " + std::string(role_name(role)) + " " + std::to_string(term));
  };
  const std::uint64_t id = options.id;
  const std::string address = options.address;

  testing::LogMachine machine;
  auto started = RaftNode::start(std::move(options), machine);
  if (!started) {
    std::fprintf(stderr, "netsem-raft-node: %s\n", started.status().to_string().c_str());
    return 1;
  }
  RaftNode& node = **started;
  say("ready id=" + std::to_string(id) + " address=" + address);

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    if (verb == "propose") {
      std::string tag, text;
      in >> tag >> text;
      node.propose(text, [tag](Result<std::string> result) {
        say("done " + tag + (result ? " ok " + *result : " err " + one_line(result.status().to_string())));
      });
    } else if (verb == "status") {
      say(status_line(node, machine, id));
    } else if (verb == "log") {
      std::string out;
      const auto entries = machine.entries();
      out = "log " + std::to_string(entries.size());
      for (const std::string& entry : entries) out += " " + entry;
      say(out);
    } else if (verb == "bench") {
      std::size_t n = 0, size = 16;
      in >> n >> size;
      if (n == 0) {
        say("error bench needs N > 0");
        continue;
      }
      bench(node, n, size);
    } else if (verb == "add") {
      std::uint64_t server = 0;
      std::string server_address;
      in >> server >> server_address;
      node.add_server(server, server_address, change_done);
    } else if (verb == "assign") {
      std::uint64_t server = 0;
      std::string role;
      in >> server >> role;
      auto parsed = parse_server_role(role);
      if (!parsed) {
        change_done(parsed.status());
        continue;
      }
      node.assign(server, *parsed, change_done);
    } else if (verb == "remove") {
      std::uint64_t server = 0;
      in >> server;
      node.remove_server(server, change_done);
    } else if (verb == "quit") {
      break;
    } else if (!verb.empty()) {
      say("error unknown command " + verb);
    }
  }
  node.stop();
  say("bye");
  return 0;
}
