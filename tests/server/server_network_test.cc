// Integration: the network layer's own defences against the real netsemd.
// Logs (untrusted text escaped, floods of one kind of message rate-limited
// with a count of the rest), descriptors (a low RLIMIT_NOFILE answers the
// extra peers * ERR LIMIT instead of failing the server's own files), and
// memory (a server-wide cap on unread answers, shedding the largest
// non-reader first). Every load targets 127.0.0.1, is bounded in count and
// time, and ends by itself.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "netsemd_harness.h"

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

TEST(ServerLogs, HelloLabelWithEscapeCodesAndCarriageReturnIsLoggedEscaped) {
  auto server = start_server();  // log_level = debug: the label is logged
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  const std::string label = "evil\x1b[2J\x1b[31mred\rforged%";
  const auto answer = client->request("h HELLO 1 " + label);
  ASSERT_TRUE(answer.starts_with("h OK netsem 1 ")) << answer;
  EXPECT_TRUE(server->wait_for_log("is evil%1B[2J%1B[31mred%0Dforged%25")) << server->log();
  const std::string log = server->log();
  EXPECT_EQ(log.find('\x1b'), std::string::npos);
  EXPECT_EQ(log.find('\r'), std::string::npos);
}

}  // namespace
}  // namespace netsem::testing
