// Integration: the figures of STATS and of the status file's header, read
// from the real netsemd after making each event happen over real sockets:
// grants, timeouts, cancellations, wait and hold times, session ends by
// cause, denied and limited connections, journal writes and fsyncs.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using Json = nlohmann::json;

// The JSON of a STATS answer (a test failure and null when it is not one).
Json parse_stats(const std::string& answer, std::string_view tag = "s") {
  const std::string prefix = std::string(tag) + " OK ";
  if (answer.rfind(prefix, 0) != 0) {
    ADD_FAILURE() << "not a STATS answer: " << answer;
    return nullptr;
  }
  Json json = Json::parse(answer.substr(prefix.size()), nullptr, false);
  EXPECT_TRUE(json.is_object()) << answer;
  return json;
}

Json stats_of(Client& client) {
  return parse_stats(client.request(req::stats("s")));
}

std::uint64_t number(const Json& stats, const char* name) {
  if (!stats.is_object() || !stats.contains(name) || !stats[name].is_number_unsigned()) {
    ADD_FAILURE() << name << " is not a number in " << stats.dump();
    return 0;
  }
  return stats[name].get<std::uint64_t>();
}

// Asks STATS until `name` reaches `at_least` (a session the server ends a
// moment after an event) or 5 s pass; returns the last answer.
Json await_stats(Client& client, const char* name, std::uint64_t at_least) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  Json stats = stats_of(client);
  while (number(stats, name) < at_least && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    stats = stats_of(client);
  }
  return stats;
}

// A histogram's buckets (per-bucket counts, at most one per bound and
// +Inf, the last one not empty) add up to its count: checks the shape and
// returns the count.
std::uint64_t histogram_count(const Json& stats, const char* name) {
  const Json& h = stats.at(name);
  const auto count = h.at("count").get<std::uint64_t>();
  const Json& buckets = h.at("buckets");
  EXPECT_LE(buckets.size(), 41u) << name;
  std::uint64_t total = 0;
  for (const Json& bucket : buckets) total += bucket.get<std::uint64_t>();
  EXPECT_EQ(total, count) << name;
  if (!buckets.empty()) {
    EXPECT_NE(buckets.back().get<std::uint64_t>(), 0u) << name;
  }
  return count;
}

TEST(ServerStats, GrantsTimeoutsCancellationsAndWaitAndHoldTimes) {
  auto server = start_server(with_semaphores("db = 1\n"));
  ASSERT_TRUE(server);
  auto a = Client::connect(server->port());
  auto b = Client::connect(server->port());
  ASSERT_TRUE(a && b);
  const Json before = stats_of(*a);
  EXPECT_EQ(number(before, "grants"), 0u);
  EXPECT_EQ(histogram_count(before, "wait_us"), 0u);

  ASSERT_EQ(a->request(req::acquire("a1", "db")).rfind("a1 OK ", 0), 0u);
  const auto held_from = std::chrono::steady_clock::now();
  EXPECT_EQ(b->request(req::acquire("b1", "db", 1, 0)), "b1 TIMEOUT");  // a try
  EXPECT_EQ(b->request(req::acquire("b2", "db", 1, 50)), "b2 QUEUED 1");
  EXPECT_EQ(b->read_line(), "b2 TIMEOUT");  // a queued request's time ran out
  EXPECT_EQ(b->request(req::acquire("b3", "db")), "b3 QUEUED 1");
  EXPECT_EQ(b->request(req::cancel("c", "b3")), "c OK");
  EXPECT_EQ(b->read_line(), "b3 CANCELLED");
  EXPECT_EQ(b->request(req::acquire("b4", "db")), "b4 QUEUED 1");
  // Measured durations, not synchronisation: b4 waits and a holds at least this long.
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(a->request(req::release("r", "db")), "r OK 0");
  const auto held_for = std::chrono::steady_clock::now() - held_from;
  ASSERT_EQ(b->read_line().value_or("").rfind("b4 OK ", 0), 0u);
  EXPECT_EQ(b->request(req::release("r", "db")), "r OK 1");

  const Json after = stats_of(*a);
  EXPECT_EQ(number(after, "grants"), 2u);
  EXPECT_EQ(number(after, "timeouts_total"), 2u);
  EXPECT_EQ(number(after, "cancellations_total"), 1u);
  // Only b4 waited in the queue and was granted.
  EXPECT_EQ(histogram_count(after, "wait_us"), 1u);
  EXPECT_GE(after["wait_us"]["sum"].get<std::uint64_t>(), 30'000u);
  // a's hold and b's, each ended by its RELEASE.
  EXPECT_EQ(histogram_count(after, "hold_us"), 2u);
  const auto hold_sum = after["hold_us"]["sum"].get<std::uint64_t>();
  EXPECT_GE(hold_sum, 30'000u);
  EXPECT_LE(hold_sum, static_cast<std::uint64_t>(
                          std::chrono::duration_cast<std::chrono::microseconds>(held_for).count() + 10'000'000));
}

TEST(ServerStats, AHoldEndedByTheSessionsEndIsTimed) {
  auto server = start_server(with_semaphores("db = 2\n"));
  ASSERT_TRUE(server);
  auto observer = Client::connect(server->port());
  ASSERT_TRUE(observer);
  {
    auto holder = Client::connect(server->port());
    ASSERT_TRUE(holder);
    ASSERT_EQ(holder->request(req::acquire("a", "db", 2)).rfind("a OK ", 0), 0u);
  }  // closed while holding: its permits go back when the server sees it
  const Json stats = await_stats(*observer, "session_ends_close_total", 1);
  EXPECT_EQ(number(stats, "held"), 0u);
  EXPECT_EQ(histogram_count(stats, "hold_us"), 1u);
}

TEST(ServerStats, SessionEndsByCause) {
  auto server = start_server(with_server_options("session_timeout_ms = 1000\n"));
  ASSERT_TRUE(server);
  auto observer = Client::connect(server->port());
  ASSERT_TRUE(observer);

  auto quitting = Client::connect(server->port());
  EXPECT_EQ(quitting->request(req::quit("q")), "q OK");
  EXPECT_TRUE(quitting->wait_closed());

  auto closing = Client::connect(server->port());
  EXPECT_EQ(closing->request(req::ping("p")), "p PONG");
  closing.reset();

  auto erring = Client::connect(server->port());
  erring->send(std::string(5000, 'x'));
  const auto error_line = erring->read_line();
  ASSERT_TRUE(error_line);
  EXPECT_EQ(error_line->rfind("* ERR LINE_TOO_LONG", 0), 0u) << *error_line;
  EXPECT_TRUE(erring->wait_closed());

  auto silent = Client::connect(server->port());
  EXPECT_EQ(silent->request(req::ping("p")), "p PONG");
  // The observer's STATS requests keep it alive; the silent one times out.
  const Json stats = await_stats(*observer, "session_ends_timeout_total", 1);
  EXPECT_TRUE(silent->wait_closed());
  EXPECT_EQ(number(stats, "session_ends_quit_total"), 1u);
  EXPECT_EQ(number(await_stats(*observer, "session_ends_close_total", 1), "session_ends_close_total"), 1u);
  EXPECT_EQ(number(stats, "session_ends_error_total"), 1u);
  EXPECT_EQ(number(stats, "session_ends_timeout_total"), 1u);
  EXPECT_EQ(number(stats, "session_ends_overflow_total"), 0u);
  EXPECT_EQ(number(stats, "session_ends_shed_total"), 0u);
  EXPECT_EQ(number(stats, "session_ends_shutdown_total"), 0u);
  EXPECT_EQ(number(stats, "connections_total"), 5u);
  EXPECT_EQ(number(stats, "sessions"), 1u);
}

TEST(ServerStats, APeerThatTakesNoLineOfALongListIsAnOverflow) {
  std::string semaphores;
  for (int i = 0; i < 300; ++i) semaphores += "sem" + std::to_string(i) + " = 1\n";
  Netsemd::Options options = with_semaphores(semaphores);
  options.server_options = "session_timeout_ms = 1000\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto observer = Client::connect(server->port());
  ASSERT_TRUE(observer);
  // More LIST answers than the sockets' buffers hold, never read.
  auto lister = Client::connect(server->port(), "127.0.0.1", 4096);
  ASSERT_TRUE(lister);
  std::string lines;
  const std::string list = req::list("l") + "\n";
  while (lines.size() < 20000) lines += list;
  lister->send(lines);
  const Json stats = await_stats(*observer, "session_ends_overflow_total", 1);
  EXPECT_EQ(number(stats, "session_ends_overflow_total"), 1u);
  EXPECT_EQ(number(stats, "session_ends_timeout_total"), 0u);
  EXPECT_TRUE(lister->wait_closed(5s));
}

TEST(ServerStats, AKickedSessionIsCountedAndItsHoldTimed) {
  auto server = start_server(with_semaphores("db = 1\n"));
  ASSERT_TRUE(server);
  auto kicked = Client::connect(server->port());
  auto admin = Client::connect(server->port());  // loopback: admin_networks by default
  ASSERT_TRUE(kicked && admin);
  const auto hello = fields(kicked->request(req::hello("h")));
  ASSERT_EQ(hello.size(), 5u);
  ASSERT_EQ(kicked->request(req::acquire("a", "db")).rfind("a OK ", 0), 0u);
  EXPECT_EQ(admin->request(req::kick("k", std::stoull(hello[4]))), "k OK");
  const auto told = kicked->read_line();
  ASSERT_TRUE(told);
  EXPECT_EQ(told->rfind("* ERR KICKED", 0), 0u) << *told;
  const Json stats = stats_of(*admin);
  EXPECT_EQ(number(stats, "session_ends_kicked_total"), 1u);
  EXPECT_EQ(number(stats, "session_ends_close_total"), 0u);
  EXPECT_EQ(histogram_count(stats, "hold_us"), 1u);
  EXPECT_EQ(number(stats, "held"), 0u);
}

TEST(ServerStats, AnAceReleaseIsAQuit) {
  auto server = start_server(with_semaphores("db = 1\n"));
  ASSERT_TRUE(server);
  auto observer = Client::connect(server->port());
  ASSERT_TRUE(observer);
  auto ace = Client::connect(server->port());
  ASSERT_TRUE(ace);
  ace->send("acquire:db|");
  EXPECT_EQ(ace->read_some(), "locked|");
  ace->send("release|");
  EXPECT_TRUE(ace->wait_closed());
  const Json stats = await_stats(*observer, "session_ends_quit_total", 1);
  EXPECT_EQ(number(stats, "session_ends_quit_total"), 1u);
  EXPECT_EQ(number(stats, "grants"), 1u);
  EXPECT_EQ(histogram_count(stats, "hold_us"), 1u);
}

TEST(ServerStats, LimitedConnectionsAreCounted) {
  FullServer full = start_full_server();
  ASSERT_TRUE(full.server && full.holder);
  auto refused = Client::connect(full.server->port());
  ASSERT_TRUE(refused);
  const auto line = refused->read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("* ERR LIMIT", 0), 0u) << *line;
  const Json stats = stats_of(*full.holder);
  EXPECT_EQ(number(stats, "limited_total"), 1u);
  EXPECT_EQ(number(stats, "denied_total"), 0u);
  EXPECT_EQ(number(stats, "connections_total"), 1u);
}

TEST(ServerStats, JournalWritesAndFsyncLatency) {
  auto server = start_server(with_server_options("fsync = always\n"));
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  const Json before = stats_of(*client);
  EXPECT_EQ(client->request(req::create("c", "jobs", 3)), "c OK");
  EXPECT_EQ(client->request(req::post("p", "jobs")).rfind("p ERR OVERFLOW", 0), 0u);
  EXPECT_EQ(client->request(req::wait("w", "jobs")), "w OK 1");
  const Json after = stats_of(*client);
  // The CREATE and the WAIT each made a record, written and synced before
  // their answers under fsync = always.
  EXPECT_GE(number(after, "journal_writes_total"), number(before, "journal_writes_total") + 2);
  EXPECT_GE(histogram_count(after, "journal_fsync_us"), histogram_count(before, "journal_fsync_us") + 2);
}

// The status file's second line is `# stats <the STATS JSON>`, as of its
// writing; the last one, written at shutdown, counts the sessions it ended,
// and the connections denied meanwhile.
TEST(ServerStats, TheStatusFileHeaderHasTheFiguresUpToTheShutdown) {
  auto server = start_server(with_server_options("allowed_networks = 10.0.0.0/8\n"));
  ASSERT_TRUE(server);
  auto denied = Client::connect(server->port());
  ASSERT_TRUE(denied);
  const auto line = denied->read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("* ERR DENIED", 0), 0u) << *line;
  EXPECT_TRUE(server->wait_for_log("denied connection"));
  server->send_signal(SIGTERM);
  ASSERT_TRUE(server->wait_exit());
  const std::string status = read_text(server->data_dir() / "semaphore.status");
  const std::string marker = "\n# stats ";
  const auto at = status.find(marker);
  ASSERT_NE(at, std::string::npos) << status;
  const auto end = status.find('\n', at + 1);
  const Json stats = Json::parse(status.substr(at + marker.size(), end - at - marker.size()), nullptr, false);
  ASSERT_TRUE(stats.is_object()) << status;
  EXPECT_EQ(number(stats, "denied_total"), 1u);
  EXPECT_EQ(number(stats, "sessions"), 0u);
}

TEST(ServerStats, SessionsEndedByTheShutdownAreCountedInTheLastStatusFile) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto a = Client::connect(server->port());
  auto b = Client::connect(server->port());
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->request(req::ping("p")), "p PONG");
  EXPECT_EQ(b->request(req::ping("p")), "p PONG");
  server->send_signal(SIGTERM);
  ASSERT_TRUE(server->wait_exit());
  const std::string status = read_text(server->data_dir() / "semaphore.status");
  const auto at = status.find("\n# stats ");
  ASSERT_NE(at, std::string::npos) << status;
  const Json stats = Json::parse(status.substr(at + 9, status.find('\n', at + 1) - at - 9), nullptr, false);
  EXPECT_EQ(number(stats, "session_ends_shutdown_total"), 2u);
}

}  // namespace
}  // namespace netsem::testing
