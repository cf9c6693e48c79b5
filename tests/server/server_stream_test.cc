// Integration tests of the work a large table makes, over the real netsemd:
// LIST streams its ITEM lines as the peer reads (a reader gets all of them
// and keeps its permits, a peer that stops reading is cut off, other
// sessions carry on meanwhile), and the status file and the journal's
// snapshot are written by child processes, off the event loop.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using Clock = std::chrono::steady_clock;

// "n000000" ... : fixed width, so byte order is number order.
std::string name_of(int i) {
  std::string digits = std::to_string(i);
  return "n" + std::string(6 - digits.size(), '0') + digits;
}

// Makes `count` created semaphores n000000... with pipelined CREATEs, and
// checks each was answered OK.
void create_many(std::uint16_t port, int count) {
  auto maker = Client::connect(port);
  ASSERT_TRUE(maker);
  std::string lines;
  lines.reserve(static_cast<std::size_t>(count) * 24);
  for (int i = 0; i < count; ++i) lines += req::create("c", name_of(i), 1) + "\n";
  lines += req::ping("p", "made") + "\n";
  maker->send(lines);
  for (int i = 0; i < count; ++i) {
    const auto answer = maker->read_line(10s);
    ASSERT_TRUE(answer) << "CREATE " << i << " unanswered";
    ASSERT_EQ(*answer, "c OK") << "CREATE " << i;
  }
  ASSERT_EQ(maker->read_line(10s), "p PONG made");
}

constexpr int kCreated = 200'000;

// The names (comm) of the running children of `parent`, from /proc.
std::vector<std::string> children_of(pid_t parent) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const std::string pid = entry.path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_text(entry.path() / "stat");
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const auto open = stat.find('(');
    const auto close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 4 >= stat.size()) continue;
    const auto f = fields(stat.substr(close + 2));
    if (f.size() > 1 && f[1] == std::to_string(parent)) names.push_back(stat.substr(open + 1, close - open - 1));
  }
  return names;
}

TEST(ServerStream, LargeListReachesASlowReaderThatKeepsItsPermit) {
  auto server = start_server(with_semaphores("lic = 1\nlic2 = 1\n"));
  ASSERT_TRUE(server);
  create_many(server->port(), kCreated);
  if (HasFatalFailure()) return;

  // A small receive buffer, so that the server meets a full socket early.
  auto reader = Client::connect(server->port(), "127.0.0.1", 16 << 10);
  auto other = Client::connect(server->port());
  ASSERT_TRUE(reader && other);
  ASSERT_TRUE(reader->request(req::acquire("a", "lic")).starts_with("a OK "));
  ASSERT_TRUE(other->request(req::acquire("b", "lic2")).starts_with("b OK "));
  ASSERT_EQ(reader->request(req::acquire("q", "lic2")), "q QUEUED 1");
  // Pipelined behind the LIST: answered after its END, in order.
  reader->send(req::list("l") + "\n" + req::ping("p", "after") + "\n");

  int items = 0;
  int grant_at = -1;
  std::string previous;
  std::optional<std::string> end;
  const auto deadline = Clock::now() + 60s;
  while (!end && Clock::now() < deadline) {
    const auto line = reader->read_line(5s);
    ASSERT_TRUE(line) << "the LIST stopped after " << items << " items";
    if (line->starts_with("q ")) {
      EXPECT_TRUE(line->starts_with("q OK ")) << *line;
      grant_at = items;
      continue;
    }
    if (line->starts_with("l END ")) {
      end = line;
      break;
    }
    const auto f = fields(*line);
    ASSERT_EQ(f.size(), 8u) << *line;
    ASSERT_EQ(f[1], "ITEM") << *line;
    EXPECT_LT(previous, f[2]) << "names out of order or repeated";
    previous = f[2];
    ++items;
    if (items == 1000) {
      // Mid-LIST: the others are served at once, the reader still holds
      // lic, and a grant for the reader is not held back behind its LIST.
      EXPECT_EQ(other->request(req::get("g", "lic")), "g OK 0 1 1 0 defined");
      EXPECT_EQ(other->request(req::ping("p", "during"), 1s), "p PONG during");
      EXPECT_TRUE(other->request(req::release("r", "lic2")).starts_with("r OK "));
    }
    // A slow reader: a pause every few thousand lines.
    if (items % 4000 == 0) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(end) << "no END after " << items << " items";
  EXPECT_EQ(*end, "l END " + std::to_string(kCreated + 2));
  EXPECT_EQ(items, kCreated + 2);
  EXPECT_GE(grant_at, 1000) << "the grant was not delivered during the LIST";
  EXPECT_LT(grant_at, kCreated) << "the grant was held back behind the LIST";
  EXPECT_EQ(reader->read_line(), "p PONG after");
  EXPECT_EQ(reader->request(req::release("r", "lic")), "r OK 1");
}

// The CPU time (user + system) `pid` has used, in clock ticks, from /proc.
long cpu_ticks(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  const auto f = fields(stat.substr(close + 2));  // f[0] is the state (field 3)
  return f.size() > 12 ? std::stol(f[11]) + std::stol(f[12]) : -1;
}

// A request that comes behind a LIST the peer does not read: the session
// stops watching its socket for reads then (it watched it until bytes came,
// to save an epoll_ctl per held request), so the server does not spin on
// the readable socket, and the request is answered after the LIST's END.
TEST(ServerStream, ARequestBehindAListThePeerDoesNotReadDoesNotSpinTheServer) {
  auto server = start_server();
  ASSERT_TRUE(server);
  create_many(server->port(), kCreated);
  if (HasFatalFailure()) return;
  auto reader = Client::connect(server->port(), "127.0.0.1", 16 << 10);
  ASSERT_TRUE(reader);
  reader->send(req::list("l") + "\n");
  std::this_thread::sleep_for(300ms);  // the LIST fills the socket and waits
  reader->send(req::ping("p", "after") + "\n");
  std::this_thread::sleep_for(100ms);
  const long before = cpu_ticks(server->pid());
  std::this_thread::sleep_for(1s);
  const long used = cpu_ticks(server->pid()) - before;
  ASSERT_GE(before, 0);
  EXPECT_LT(used * 1000 / ::sysconf(_SC_CLK_TCK), 200) << "the server used CPU while its only peer did not read";
  int items = 0;
  std::optional<std::string> line;
  while ((line = reader->read_line(10s)) && !line->starts_with("l END ")) ++items;
  ASSERT_TRUE(line) << "no END after " << items << " items";
  EXPECT_EQ(items, kCreated);
  EXPECT_EQ(reader->read_line(), "p PONG after");
}

TEST(ServerStream, PeerThatStopsReadingAListIsCutOffAndOthersAreNot) {
  // The stall limit is the session timeout when shorter than 30 s.
  Netsemd::Options options = with_semaphores("lic = 1\n");
  options.server_options = "session_timeout_ms = 1500\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  create_many(server->port(), kCreated);
  if (HasFatalFailure()) return;

  auto silent = Client::connect(server->port(), "127.0.0.1", 16 << 10);
  auto other = Client::connect(server->port());
  ASSERT_TRUE(silent && other);
  ASSERT_TRUE(silent->request(req::acquire("a", "lic")).starts_with("a OK "));
  // Many LISTs and then requests behind them, never read: the server holds
  // one LIST's cursor and a bounded buffer, not the table's text.
  std::string lines;
  const std::string list = req::list("l") + "\n";
  for (int i = 0; i < 100; ++i) lines += list;
  silent->send(lines);

  const auto started = Clock::now();
  ASSERT_EQ(other->request(req::acquire("b", "lic", 1, 10000)), "b QUEUED 1");
  // Meanwhile the server answers at once (and the pings keep this session
  // inside its own timeout).
  std::optional<std::string> granted;
  for (int ping = 0; !granted && Clock::now() - started < 10s; ++ping) {
    const std::string tag = "p" + std::to_string(ping);
    other->send_line(req::ping(tag));
    for (auto line = other->read_line(1s); line; line = other->read_line(200ms)) {
      if (line->starts_with("b ")) {
        granted = line;
      } else {
        EXPECT_EQ(*line, tag + " PONG");
        break;
      }
    }
  }
  ASSERT_TRUE(granted) << "the silent peer kept lic";
  EXPECT_TRUE(granted->starts_with("b OK ")) << *granted;
  EXPECT_LT(Clock::now() - started, 9s);
  EXPECT_TRUE(server->wait_for_log("took no line of a LIST", 2s));
  EXPECT_TRUE(silent->wait_closed(5s));
  EXPECT_EQ(other->request(req::ping("p", "after")), "p PONG after");
}

TEST(ServerStream, StatusFileIsWrittenByAChildWhileRequestsAreAnswered) {
  // 300,000 semaphores: rendering the status file takes the event loop
  // hundreds of milliseconds, so it must be done elsewhere. The harness sets
  // status_interval_ms = 50; every request below changes the table.
  constexpr int kMany = 300'000;
  auto server = start_server();
  ASSERT_TRUE(server);
  create_many(server->port(), kMany);
  if (HasFatalFailure()) return;

  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  bool seen = false;
  auto worst = Clock::duration::zero();
  int round_trips = 0;
  const auto started = Clock::now();
  while (Clock::now() - started < 3s || (!seen && Clock::now() - started < 20s)) {
    const auto sent = Clock::now();
    ASSERT_TRUE(client->request(req::acquire("a", "x")).starts_with("a OK "));
    ASSERT_EQ(client->request(req::release("r", "x")), "r OK 1");
    worst = std::max(worst, Clock::now() - sent);
    ++round_trips;
    for (const auto& name : children_of(server->pid())) seen = seen || name == "netsemd-status";
  }
  EXPECT_TRUE(seen) << "no child process wrote the status file";
  const auto worst_ms = std::chrono::duration_cast<std::chrono::milliseconds>(worst).count();
  RecordProperty("worst_round_trip_ms", static_cast<int>(worst_ms));
  std::printf("worst ACQUIRE+RELEASE round trip over %d: %lld ms\n", round_trips, static_cast<long long>(worst_ms));

  // The children's file is whole and current.
  ASSERT_EQ(client->request(req::create("c", "marker", 2)), "c OK");
  const auto path = server->data_dir() / "semaphore.status";
  std::string text;
  const auto deadline = Clock::now() + 10s;
  while (text.find("\nmarker created 2 2 0 0\n") == std::string::npos && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    text = read_text(path);
  }
  EXPECT_NE(text.find("\nmarker created 2 2 0 0\n"), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), kMany + 3) << "two header lines, every semaphore and marker";
  EXPECT_NE(text.find("\nn299999 created 1 1 0 0\n"), std::string::npos);
}

TEST(ServerStream, JournalIsCompactedByAChildAndSurvivesAKill) {
  auto first = start_server();
  ASSERT_TRUE(first);
  const auto data_dir = first->data_dir();
  auto c = Client::connect(first->port());
  ASSERT_TRUE(c);
  ASSERT_EQ(c->request(req::create("c", "kept", 5, 9)), "c OK");
  // Long names make long records: some 70 MiB of them outgrow the 64 MiB at
  // which the journal is compacted, and the churn goes on while the child
  // writes the snapshot, so its tail holds records made meanwhile.
  const std::string churn = "churn." + std::string(240, 'x');
  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += req::create("c", churn, 1) + "\n" + req::del("d", churn) + "\n";
  for (int round = 0; round < 130; ++round) {
    c->send(batch);
    for (int i = 0; i < 1000; ++i) {
      ASSERT_EQ(c->read_line(10s), "c OK");
      ASSERT_EQ(c->read_line(10s), "d OK");
    }
  }
  ASSERT_TRUE(first->wait_for_log("the snapshot written by a child", 20s)) << first->log();
  EXPECT_LT(std::filesystem::file_size(data_dir / "journal"), 8u << 20) << "the journal was not compacted";
  EXPECT_EQ(c->request(req::post("p", "kept", 2)), "p OK 7");
  first->send_signal(SIGKILL);
  ASSERT_TRUE(first->wait_exit());

  Netsemd::Options options;
  options.data_dir = data_dir;
  auto second = start_server(options);
  ASSERT_TRUE(second);
  auto d = Client::connect(second->port());
  EXPECT_EQ(d->request(req::get("g", "kept")), "g OK 7 9 0 0 created");
  EXPECT_EQ(d->request(req::get("g", churn)), "g OK 1 1 0 0 absent");
}

}  // namespace
}  // namespace netsem::testing
