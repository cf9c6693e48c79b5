// Integration: the network layer's own defences against the real netsemd.
// Logs (untrusted text escaped, floods of one kind of message rate-limited
// with a count of the rest), descriptors (a low RLIMIT_NOFILE answers the
// extra peers * ERR LIMIT instead of failing the server's own files, and a
// server already at its limit refuses a peer through its spare descriptor), and
// memory (a server-wide cap on unread answers, shedding the largest
// non-reader first). Every load targets 127.0.0.1, is bounded in count and
// time, and ends by itself.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using Clock = std::chrono::steady_clock;

bool server_alive(const Netsemd& server) {
  return ::kill(server.pid(), 0) == 0;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++count;
  return count;
}

// The sum of N over the "<kind>: N similar messages suppressed" lines.
std::uint64_t suppressed_count(const std::string& log, const std::string& kind) {
  const std::regex pattern(kind + R"(: (\d+) similar messages suppressed)");
  std::uint64_t total = 0;
  for (std::sregex_iterator it(log.begin(), log.end(), pattern), end; it != end; ++it) total += std::stoull((*it)[1]);
  return total;
}

TEST(ServerLogs, FloodOfDeniedPeersIsLoggedAFewTimesWithACountOfTheRest) {
  auto server = start_server(with_server_options("allowed_networks = 10.0.0.0/8\n"));
  ASSERT_TRUE(server);
  constexpr int kPeers = 2000;
  const auto started = Clock::now();
  int opened = 0;
  for (; opened < kPeers && Clock::now() - started < 10s; ++opened) {
    auto client = Client::connect(server->port());
    ASSERT_TRUE(client) << "connection " << opened << " refused by the kernel";
    // Closed at once with a FIN: the server still accepts and denies it (a
    // reset one may be gone before it is looked at, and is not counted).
  }
  ASSERT_EQ(opened, kPeers);
  // Every denied peer is either a line or counted, and the count is written
  // once the flood stops (at most a second later), without another peer.
  const std::string kLine = "denied connection from 127.0.0.1";
  const auto deadline = Clock::now() + 5s;
  std::string log;
  do {
    std::this_thread::sleep_for(50ms);
    log = server->log();
  } while (count_of(log, kLine) + suppressed_count(log, "denied connection") < kPeers && Clock::now() < deadline);
  const auto lines = count_of(log, kLine);
  EXPECT_EQ(lines + suppressed_count(log, "denied connection"), static_cast<std::uint64_t>(kPeers)) << log;
  // 10 a second: the flood takes well under 10 s even on a loaded machine.
  EXPECT_LE(lines, 110u);
  EXPECT_LE(count_of(log, "\n"), lines + 40) << "other lines per denied peer";
  EXPECT_TRUE(server_alive(*server));
}

// Protocol 1.1 decodes and checks the label like a name, so escape codes
// and a carriage return, raw or percent-encoded, are refused (BAD_ARG) and
// never reach the log; a label that is a valid name is logged escaped.
TEST(ServerLogs, HelloLabelWithEscapeCodesIsRefusedAndLabelsAreLoggedEscaped) {
  auto server = start_server();  // log_level = debug: the label is logged
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  const std::string label = "evil\x1b[2J\x1b[31mred\rforged%";
  // Raw on purpose: the label's control bytes sent as they are, then encoded.
  const auto refused = client->request("h HELLO 1 " + label);
  EXPECT_TRUE(refused.starts_with("h ERR BAD_ARG ")) << refused;
  const auto encoded = client->request("h2 HELLO 1 evil%1B[2J%0Dforged");
  EXPECT_TRUE(encoded.starts_with("h2 ERR BAD_ARG ")) << encoded;
  const auto answer = client->request(req::hello("h3", "100% sure"));
  ASSERT_TRUE(answer.starts_with("h3 OK netsem 1.1 ")) << answer;
  EXPECT_TRUE(server->wait_for_log("label=100%25%20sure")) << server->log();
  const std::string log = server->log();
  EXPECT_EQ(log.find('\x1b'), std::string::npos);
  EXPECT_EQ(log.find('\r'), std::string::npos);
  EXPECT_EQ(log.find("evil"), std::string::npos);
}

Netsemd::Options with_nofile(std::uint64_t soft, std::uint64_t hard, std::string server_options = {}) {
  Netsemd::Options options;
  options.server_options = std::move(server_options);
  options.semaphores = "pool = 1000\n";
  options.nofile_soft = soft;
  options.nofile_hard = hard;
  return options;
}

TEST(ServerDescriptors, LowDescriptorLimitRefusesExtraPeersWithLimitAndKeepsServing) {
  // max_connections = 10000 under soft = hard = 64 descriptors: the peers
  // beyond what the descriptors allow are told LIMIT, and the server's own
  // files (fences, journal, status file) still open.
  TempDir data;
  Netsemd::Options options = with_nofile(64, 64);
  options.data_dir = data.path();
  auto server = start_server(options);
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_log("max_connections (10000) is above what the descriptor limit allows"))
      << server->log();
  auto holder = Client::connect(server->port());
  ASSERT_TRUE(holder);
  EXPECT_EQ(holder->request(req::ping("p")), "p PONG");

  // More peers than descriptors; each asks for a permit of `pool`. The
  // first grant reserves fences (a new file), with the sessions' share of
  // descriptors already taken.
  constexpr int kPeers = 100;
  std::vector<std::unique_ptr<Client>> sessions;
  int limited = 0;
  for (int i = 0; i < kPeers; ++i) {
    auto peer = Client::connect(server->port());
    ASSERT_TRUE(peer) << "connection " << i << " refused by the kernel";
    const auto answer = peer->request(req::acquire("a", "pool"), 3s);
    if (answer.starts_with("a OK ")) {
      sessions.push_back(std::move(peer));
    } else {
      ASSERT_TRUE(answer.starts_with("* ERR LIMIT ")) << "peer " << i << ": `" << answer << "`\n" << server->log();
      EXPECT_TRUE(peer->wait_closed(2s));
      ++limited;
    }
  }
  EXPECT_GE(sessions.size(), 10u);
  EXPECT_GE(limited, 1);
  ASSERT_TRUE(server_alive(*server)) << server->log();
  EXPECT_TRUE(server->wait_for_log("sessions, all the descriptor limit allows"));

  // The sessions keep their permits; grants, created semaphores (journal)
  // and the status file keep working.
  const std::string held = std::to_string(sessions.size());
  EXPECT_EQ(holder->request(req::get("g", "pool")),
            "g OK " + std::to_string(1000 - sessions.size()) + " 1000 " + held + " 0 defined");
  EXPECT_TRUE(holder->request(req::acquire("a", "other")).starts_with("a OK "));
  EXPECT_EQ(holder->request(req::create("c", "made", 3)), "c OK");
  EXPECT_TRUE(holder->request(req::wait("w", "made", 2)).starts_with("w OK "));
  const auto status_path = server->data_dir() / "semaphore.status";
  const auto deadline = Clock::now() + 3s;
  while (read_text(status_path).find("made created 1 3") == std::string::npos && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(read_text(status_path).find("made created 1 3"), std::string::npos) << read_text(status_path);
  for (std::size_t i = 0; i < sessions.size(); i += 7) {
    EXPECT_EQ(sessions[i]->request(req::ping("p", std::to_string(i))), "p PONG " + std::to_string(i));
  }
  EXPECT_EQ(server->log().find("Too many open files"), std::string::npos) << server->log();

  // Restarted on the same data, the created semaphore is there (the write
  // was durable, not only answered).
  sessions.clear();
  server.reset();
  auto restarted = start_server(options);
  ASSERT_TRUE(restarted);
  auto client = Client::connect(restarted->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request(req::get("g", "made")), "g OK 1 3 0 0 created");
}

// A server whose limit falls below what it has open (as when RLIMIT_NOFILE
// is lowered under it, or the system runs out) gets EMFILE from accept(),
// however few sessions it has: it gives up its spare descriptor for a moment
// to take each waiting peer off the queue and tell it LIMIT, reopens the
// spare, waits for the next peer (without polling), and serves its sessions
// on; with the limit back, peers get in again.
TEST(ServerDescriptors, AtItsDescriptorLimitTheServerRefusesAPeerThroughItsSpareDescriptor) {
  auto server = start_server(with_semaphores("pool = 10\n"));
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  ASSERT_TRUE(holder);
  fence_of(holder->request(req::acquire("a", "pool")));  // fences reserved for a while
  // The limit at the lowest descriptor number free: every number below it
  // is in use (a descriptor inherited above it stays open), so accept()
  // meets EMFILE, and only the spare's number can be given back.
  std::set<int> open;
  std::string open_files;  // for a failure's message
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(server->pid()) + "/fd")) {
    open.insert(std::stoi(entry.path().filename().string()));
    std::error_code ignored;
    open_files +=
        entry.path().filename().string() + " " + std::filesystem::read_symlink(entry, ignored).string() + "\n";
  }
  int lowest_free = 0;
  while (open.contains(lowest_free)) ++lowest_free;
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_NOFILE, static_cast<std::uint64_t>(lowest_free)));

  std::vector<std::unique_ptr<Client>> sessions;
  int refused = 0;
  for (int i = 0; i < 40 && refused < 3; ++i) {
    auto peer = Client::connect(server->port());
    ASSERT_TRUE(peer) << "connection " << i << " refused by the kernel";
    peer->send_line(req::ping("p"));
    const std::string answer = peer->read_line().value_or("(none)");
    if (answer == "p PONG") {
      sessions.push_back(std::move(peer));
      continue;
    }
    EXPECT_EQ(answer, "* ERR LIMIT too many connections") << i << "\n" << server->log();
    std::string rest;
    EXPECT_TRUE(peer->wait_closed(3s, &rest)) << i;
    EXPECT_EQ(rest, "");
    ++refused;
  }
  ASSERT_EQ(refused, 3) << open_files << server->log();
  EXPECT_TRUE(server->wait_for_log("refused a connection: the process is out of descriptors")) << server->log();
  // The session carries on, and the refusals were counted.
  EXPECT_EQ(holder->request(req::release("r", "pool")), "r OK 10");
  const std::string stats = holder->request(req::stats("s"));
  EXPECT_NE(stats.find("\"limited_total\":3,"), std::string::npos) << stats;
  for (std::size_t i = 0; i < sessions.size(); ++i) EXPECT_EQ(sessions[i]->request(req::ping("p")), "p PONG") << i;
  // accept() fails at once while out of descriptors, a peer waiting or
  // not: the server waits for the next peer instead of retrying (and
  // logging) every 100 ms.
  EXPECT_EQ(server->log().find("accept failed"), std::string::npos) << server->log();

  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_NOFILE, static_cast<std::uint64_t>(lowest_free) + 64));
  auto welcome = Client::connect(server->port());
  ASSERT_TRUE(welcome);
  EXPECT_EQ(welcome->request(req::ping("p")), "p PONG");
  ASSERT_TRUE(server_alive(*server)) << server->log();
}

// The spare can be lost: with no descriptor number allowed at all, even
// the refusal fails. Once a peer is accepted again the server takes a spare
// back, so that the next shortage refuses peers with LIMIT again.
TEST(ServerDescriptors, ASpareLostInAShortageIsTakenBackAfterIt) {
  auto server = start_server(with_semaphores("pool = 10\n"));
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  ASSERT_TRUE(holder);
  fence_of(holder->request(req::acquire("a", "pool")));  // fences reserved for a while
  const auto lowest_free = [&] {
    std::set<int> open;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(server->pid()) + "/fd")) {
      open.insert(std::stoi(entry.path().filename().string()));
    }
    int free = 0;
    while (open.contains(free)) ++free;
    return free;
  };
  const int first_free = lowest_free();
  // No number allowed: the spare is given up, the peer cannot be taken off
  // the queue, and the spare cannot be had back.
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_NOFILE, 1));
  auto stuck = Client::connect(server->port());
  ASSERT_TRUE(stuck);
  stuck->send_line(req::ping("p"));
  ASSERT_TRUE(server->wait_for_log("accept failed")) << server->log();
  // Room for two: the peer waiting gets the spare's old number, the spare
  // a new one.
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_NOFILE, static_cast<std::uint64_t>(first_free) + 1));
  EXPECT_EQ(stuck->read_line(3s).value_or("(none)"), "p PONG");
  // A shortage again, every number below the limit in use: refused with LIMIT.
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_NOFILE, static_cast<std::uint64_t>(lowest_free())));
  auto refused = Client::connect(server->port());
  ASSERT_TRUE(refused);
  refused->send_line(req::ping("p"));
  EXPECT_EQ(refused->read_line(3s).value_or("(none)"), "* ERR LIMIT too many connections") << server->log();
  EXPECT_EQ(holder->request(req::ping("p")), "p PONG");
}

TEST(ServerDescriptors, SoftLimitIsRaisedToTheHardLimit) {
  auto server = start_server(with_nofile(64, 256));
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_log("descriptor limit (RLIMIT_NOFILE) raised from 64 to 256")) << server->log();
  const std::string limits = read_text("/proc/" + std::to_string(server->pid()) + "/limits");
  EXPECT_NE(limits.find("Max open files            256                  256"), std::string::npos) << limits;
}

TEST(ServerDescriptors, LimitTooLowForOneSessionRefusesToStart) {
  std::string error;
  Netsemd::Options options = with_nofile(20, 20);
  auto server = Netsemd::start(options, &error);
  EXPECT_FALSE(server);
  EXPECT_NE(error.find("is too low: netsemd "), std::string::npos) << error;
}

// A STATS field's value (the JSON is flat and its numbers unquoted).
std::uint64_t stats_field(const std::string& stats, const std::string& name) {
  const auto at = stats.find("\"" + name + "\":");
  if (at == std::string::npos) {
    ADD_FAILURE() << name << " missing from " << stats;
    return 0;
  }
  return std::stoull(stats.substr(at + name.size() + 3));
}

TEST(ServerMemory, OutputCapShedsTheLargestNonReaderAndNeverAReader) {
  // A 2 MiB server-wide cap. Non-readers pipeline PINGs with 4000-byte
  // payloads: one big backlog, then smaller ones until the total crosses
  // the cap. The big one is cut (its permit goes back), the small ones and
  // a session that reads are not, and STATS never shows more than the cap.
  constexpr std::uint64_t kCap = 2 << 20;
  Netsemd::Options options = with_server_options("max_output_bytes = " + std::to_string(kCap) + "\n");
  options.semaphores = "pool = 100\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto reader = Client::connect(server->port());
  ASSERT_TRUE(reader);
  const std::string ping = req::ping("p", std::string(4000, 'x')) + "\n";
  std::uint64_t requests = 0;  // every request line sent so far, by every session
  // Every STATS must be counted in `requests` by its caller.
  const auto stats = [&] {
    const auto answer = reader->request(req::stats("s"));
    EXPECT_TRUE(answer.starts_with("s OK {")) << answer;
    EXPECT_LE(stats_field(answer, "output_bytes"), kCap) << answer;
    return answer;
  };
  // Waits until the server has read every request sent so far.
  const auto settle = [&] {
    const auto deadline = Clock::now() + 5s;
    std::string answer;
    do {
      ++requests;
      answer = stats();
    } while (stats_field(answer, "requests") < requests && Clock::now() < deadline);
    EXPECT_GE(stats_field(answer, "requests"), requests) << answer;
    return answer;
  };
  const auto non_reader = [&](int pings) {
    auto client = Client::connect(server->port(), "127.0.0.1", 4096);
    EXPECT_TRUE(client);
    if (!client) return client;
    EXPECT_TRUE(client->request(req::acquire("a", "pool")).starts_with("a OK "));
    ++requests;
    std::string lines;
    for (int i = 0; i < pings; ++i) lines += ping;
    client->send(lines);
    requests += static_cast<std::uint64_t>(pings);
    return client;
  };

  auto big = non_reader(400);  // about 1.6 MB of answers
  ASSERT_TRUE(big);
  const auto after_big = settle();
  EXPECT_GT(stats_field(after_big, "output_bytes"), 1000000u) << after_big;
  EXPECT_EQ(stats_field(after_big, "shed_total"), 0u);

  std::vector<std::unique_ptr<Client>> small;
  std::string answer;
  for (int i = 0; i < 4 && stats_field(answer = settle(), "shed_total") == 0; ++i) {
    small.push_back(non_reader(120));  // about 480 KB each
    ASSERT_TRUE(small.back());
  }
  answer = settle();
  EXPECT_EQ(stats_field(answer, "shed_total"), 1u) << answer;
  EXPECT_TRUE(big->wait_closed(3s)) << "the largest non-reader is cut first";
  EXPECT_LE(stats_field(answer, "output_bytes"), kCap);
  EXPECT_EQ(stats_field(answer, "sessions"), 1 + small.size()) << answer;
  // Its permit went back; the small ones keep theirs.
  EXPECT_EQ(reader->request(req::get("g", "pool")),
            "g OK " + std::to_string(100 - small.size()) + " 100 " + std::to_string(small.size()) + " 0 defined");
  EXPECT_TRUE(server->wait_for_log("when all sessions' reached max_output_bytes")) << server->log();

  // A session that reads its answers is never cut, though it moves more
  // than the cap through the server: 800 PINGs (3.2 MB), 40 in flight at a
  // time, while the non-readers' answers stay buffered. (A peer that
  // pipelines megabytes faster than it reads holds a backlog like a
  // non-reader's, and is shed like one when it is the largest.)
  std::string window;
  for (int i = 0; i < 40; ++i) window += ping;
  int answered = 0;
  for (int round = 0; round < 20; ++round) {
    reader->send(window);
    for (int i = 0; i < 40; ++i, ++answered) {
      const auto line = reader->read_line(5s);
      if (!line || !line->starts_with("p PONG ")) break;
    }
  }
  EXPECT_EQ(answered, 800);
  EXPECT_EQ(reader->request(req::ping("p", "still")), "p PONG still") << "a reading session was cut";
  const auto last = reader->request(req::stats("s"));
  EXPECT_EQ(stats_field(last, "shed_total"), 1u) << last;
  // The session end is counted by its cause, shed, and by none other.
  EXPECT_EQ(stats_field(last, "session_ends_shed_total"), 1u) << last;
  EXPECT_EQ(stats_field(last, "session_ends_overflow_total"), 0u) << last;
  EXPECT_TRUE(server_alive(*server));
}

}  // namespace
}  // namespace netsem::testing
