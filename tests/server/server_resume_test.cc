// Integration: proposed protocol 1.2's sessions that outlive their
// connection on a single netsemd (docs/protocol.md): RESUMABLE, RESUME on a
// new connection after the old one broke (permits, fences and queued
// requests kept, answers of the queue on the new connection), an older
// connection still attached taken over (`* ERR KICKED`), the refusals
// (wrong secret, not the first request, unknown or expired session), a
// move that is no session end (not counted as a kick), MINE,
// and LEADER answering the server's own address. Without RESUMABLE a
// session ends with its connection, as before.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <utility>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

// RESUMABLE's "<tag> OK <id> <secret>": the id and the secret.
std::pair<std::string, std::string> resumable(Client& client) {
  const std::string answer = client.request("r RESUMABLE");
  static const std::regex kShape(R"(r OK (\d+) ([0-9a-f]{32}))");
  std::smatch match;
  EXPECT_TRUE(std::regex_match(answer, match, kShape)) << answer;
  if (match.size() != 3) return {};
  return {match[1].str(), match[2].str()};
}

class ServerResume : public ::testing::Test {
 protected:
  void SetUp() override {
    Netsemd::Options options;
    options.semaphores = "lock = 1\n";
    options.server_options = "session_timeout_ms = 1500\n";
    server_ = start_server(options);
    ASSERT_TRUE(server_);
  }
  std::unique_ptr<Client> connect() {
    auto client = Client::connect(server_->port());
    EXPECT_TRUE(client);
    return client;
  }
  // A RESUME of session `id` on a new connection while `old` is still
  // attached: the session moves to the new one, which is returned, and
  // `old` is told KICKED and closed.
  std::unique_ptr<Client> move_session(Client& old, const std::string& id, const std::string& secret) {
    auto taker = connect();
    if (!taker) return nullptr;
    EXPECT_EQ(taker->request("x RESUME " + id + " " + secret), "x OK " + id + " 0");
    std::string rest;
    EXPECT_TRUE(old.wait_closed(3s, &rest));
    EXPECT_NE(rest.find("* ERR KICKED resumed on another connection"), std::string::npos) << rest;
    return taker;
  }
  std::unique_ptr<Netsemd> server_;
};

TEST_F(ServerResume, ABrokenConnectionsSessionIsResumedWithItsPermitAndQueue) {
  auto holder = connect();
  auto waiter = connect();
  ASSERT_TRUE(holder && waiter);
  const auto [holder_id, holder_secret] = resumable(*holder);
  ASSERT_FALSE(holder_id.empty());
  const std::string granted = holder->request(req::acquire("a", "lock"));
  ASSERT_TRUE(granted.starts_with("a OK ")) << granted;
  const std::uint64_t fence = fence_of(granted);
  const auto [waiter_id, waiter_secret] = resumable(*waiter);
  ASSERT_EQ(waiter->request(req::acquire("q1", "lock", 1, 60000)), "q1 QUEUED 1");
  holder->reset();
  waiter->reset();

  // Nobody else gets the permit while the holder may resume.
  auto third = connect();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->request(req::acquire("t", "lock", 1, 0)), "t TIMEOUT");

  auto holder2 = connect();
  auto waiter2 = connect();
  ASSERT_TRUE(holder2 && waiter2);
  EXPECT_EQ(holder2->request("x RESUME " + holder_id + " " + holder_secret), "x OK " + holder_id + " 0");
  EXPECT_EQ(holder2->request("m MINE"), "m ITEM held lock 1 " + std::to_string(fence));
  EXPECT_EQ(holder2->read_line().value_or(""), "m END 1");
  EXPECT_EQ(waiter2->request("y RESUME " + waiter_id + " " + waiter_secret), "y OK " + waiter_id + " 1");
  EXPECT_EQ(waiter2->request("m MINE"), "m ITEM queued q1 lock 1");
  EXPECT_EQ(waiter2->read_line().value_or(""), "m END 1");
  // The resumed session is the same one: HELLO answers its id.
  EXPECT_EQ(holder2->request("h HELLO 1"), "h OK netsem 1.1 " + holder_id);
  EXPECT_EQ(holder2->request(req::release("rel", "lock")), "rel OK 0");
  const std::string handed = waiter2->read_line().value_or("");
  ASSERT_TRUE(handed.starts_with("q1 OK ")) << handed;
  EXPECT_GT(fence_of(handed), fence);
}

TEST_F(ServerResume, RefusalsTakeOversAndExpiry) {
  auto old = connect();
  ASSERT_TRUE(old);
  const auto [id, secret] = resumable(*old);
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(old->request(req::acquire("a", "lock")).starts_with("a OK "));

  auto other = connect();
  ASSERT_TRUE(other);
  const std::string wrong(secret.size(), secret[0] == '0' ? '1' : '0');
  EXPECT_TRUE(other->request("x RESUME " + id + " " + wrong).starts_with("x ERR DENIED "));
  EXPECT_TRUE(other->request("x RESUME " + id + " " + secret).starts_with("x ERR BUSY "));
  auto unknown = connect();
  ASSERT_TRUE(unknown);
  EXPECT_TRUE(unknown->request("x RESUME 99999 " + secret).starts_with("x ERR NOT_FOUND "));
  EXPECT_EQ(old->request("p PING"), "p PONG");

  // A RESUME while the old connection is attached takes the session over.
  auto taker = move_session(*old, id, secret);
  ASSERT_TRUE(taker);
  EXPECT_EQ(other->request(req::acquire("t", "lock", 1, 0)), "t TIMEOUT");

  // LEADER: a single server is its own leader.
  EXPECT_EQ(taker->request("l LEADER"), "l OK 127.0.0.1:" + std::to_string(server_->port()));

  // Nobody resumes it within the session timeout: it ends, its permit goes.
  taker->reset();
  EXPECT_EQ(other->request(req::acquire("w", "lock", 1, 10000)), "w QUEUED 1");
  const auto broken_at = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(700ms);
  EXPECT_EQ(other->request("p PING"), "p PONG");  // the waiter's own session lives on
  const std::string handed = other->read_line(5s).value_or("");
  EXPECT_TRUE(handed.starts_with("w OK ")) << handed;
  EXPECT_GE(std::chrono::steady_clock::now() - broken_at, 1000ms);
  auto late = connect();
  ASSERT_TRUE(late);
  EXPECT_TRUE(late->request("x RESUME " + id + " " + secret).starts_with("x ERR NOT_FOUND "));
}

// A RESUME that takes the session from a connection still attached moves
// it: the older connection is told KICKED and closed, but no session ended.
// STATS counts no kick (nor a close), the log says "moved", not "session
// ended ... cause=kicked"; an administrator's KICK of it still counts.
TEST_F(ServerResume, AMoveIsNoSessionEndButAKickIs) {
  auto old = connect();
  auto admin = connect();  // loopback: admin_networks by default
  ASSERT_TRUE(old && admin);
  const auto [id, secret] = resumable(*old);
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(old->request(req::acquire("a", "lock")).starts_with("a OK "));
  auto taker = move_session(*old, id, secret);
  ASSERT_TRUE(taker);
  std::string stats = admin->request(req::stats("s"));
  EXPECT_NE(stats.find("\"session_ends_kicked_total\":0,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"session_ends_close_total\":0,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"held\":1,"), std::string::npos) << stats;
  EXPECT_TRUE(server_->wait_for_log("moved to another connection (peer " + taker->local_peer() + ")"))
      << server_->log();
  EXPECT_EQ(server_->log().find("cause=kicked"), std::string::npos) << server_->log();

  EXPECT_EQ(admin->request(req::kick("k", std::stoull(id))), "k OK");
  EXPECT_TRUE(taker->read_line().value_or("").starts_with("* ERR KICKED "));
  EXPECT_TRUE(server_->wait_for_log("cause=kicked")) << server_->log();
  stats = admin->request(req::stats("s"));
  EXPECT_NE(stats.find("\"session_ends_kicked_total\":1,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"held\":0,"), std::string::npos) << stats;
}

TEST_F(ServerResume, WithoutResumableASessionEndsWithItsConnection) {
  auto plain = connect();
  auto waiter = connect();
  ASSERT_TRUE(plain && waiter);
  const std::string hello = plain->request("h HELLO 1");
  ASSERT_TRUE(hello.starts_with("h OK netsem 1.1 ")) << hello;
  ASSERT_TRUE(plain->request(req::acquire("a", "lock")).starts_with("a OK "));
  EXPECT_EQ(waiter->request(req::acquire("w", "lock", 1, 10000)), "w QUEUED 1");
  const auto closed_at = std::chrono::steady_clock::now();
  plain->reset();
  EXPECT_TRUE(waiter->read_line().value_or("").starts_with("w OK "));
  EXPECT_LT(std::chrono::steady_clock::now() - closed_at, 1000ms);
  // MINE of a fresh session: nothing.
  auto fresh = connect();
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->request("m MINE"), "m END 0");
}

}  // namespace
}  // namespace netsem::testing
