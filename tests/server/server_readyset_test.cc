// The session sockets in the server's level-triggered set (net/ready_set.h)
// against the real netsemd: what changed with it, end to end. Many requests
// in one segment are all answered in order; input a round leaves unread
// (past the read buffer, or an end of input behind a request) is read on
// with no further arrival; a write blocked by a peer that
// does not read drains when it reads (EPOLLOUT watched, then dropped); a
// session ended while its socket still holds unread input neither spins nor
// stops the others; 512 peers ready at once are all served; and the server
// still stops cleanly with sessions open.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

TEST(ServerReadySet, ManyRequestsInOneSegmentAreAllAnsweredInOrder) {
  auto server = start_server(with_semaphores("pool = 3\n"));
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  std::string batch;
  for (int i = 0; i < 300; ++i) batch += req::ping("p" + std::to_string(i)) + "\n";
  batch += req::acquire("a", "pool") + "\n" + req::release("r", "pool") + "\n";
  client->send(batch);  // one write: the server reads it in one or a few reads
  for (int i = 0; i < 300; ++i) ASSERT_EQ(client->read_line(), "p" + std::to_string(i) + " PONG");
  EXPECT_EQ(client->read_line().value_or("").rfind("a OK ", 0), 0u);
  EXPECT_EQ(client->read_line(), "r OK 3");
}

// Input a round leaves in the socket gets no wake-up of its own (the set's
// descriptor is woken by arrivals): more than the server's 64 KiB read
// buffer sent at once, and a request followed at once by the end of input,
// must both be read on by the server itself.
TEST(ServerReadySet, InputLeftBehindByARoundIsReadWithoutAnotherArrival) {
  auto server = start_server(with_semaphores("x = 1\n"));
  ASSERT_TRUE(server);
  for (int round = 0; round < 3; ++round) {
    auto client = Client::connect(server->port());
    ASSERT_TRUE(client);
    std::string batch;
    constexpr int kPings = 12000;  // about 150 KB
    for (int i = 0; i < kPings; ++i) batch += req::ping("p" + std::to_string(i)) + "\n";
    std::thread sender([&] { client->send(batch); });
    for (int i = 0; i < kPings; ++i) {
      const auto line = client->read_line(5s);
      ASSERT_EQ(line, "p" + std::to_string(i) + " PONG") << i;
    }
    sender.join();
  }
  // Each session holds x until the server reads its end of input; the next
  // one is granted x only then (QUEUED otherwise).
  for (int i = 0; i < 20; ++i) {
    auto client = Client::connect(server->port());
    ASSERT_TRUE(client);
    client->send(req::acquire("a", "x") + "\n");
    client->shutdown_write();
    const auto answer = client->read_line(5s);
    ASSERT_TRUE(answer) << i;
    ASSERT_EQ(answer->rfind("a OK ", 0), 0u) << i << ": " << *answer;
    ASSERT_TRUE(client->wait_closed(5s)) << i;
  }
}

TEST(ServerReadySet, AWriteBlockedByAPeerThatDoesNotReadDrainsWhenItReads) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto slow = Client::connect(server->port(), "127.0.0.1", 4096);
  auto other = Client::connect(server->port());
  ASSERT_TRUE(slow && other);
  // About 2 MB of answers (below the 4 MiB a session may leave unread):
  // far more than the socket buffers take, so the server's writes block.
  const std::string payload(1000, 'x');
  std::string batch;
  constexpr int kPings = 2000;
  for (int i = 0; i < kPings; ++i) batch += req::ping("p" + std::to_string(i), payload) + "\n";
  std::thread sender([&] { slow->send(batch); });
  // Meanwhile the server serves others.
  EXPECT_EQ(other->request(req::ping("o")), "o PONG");
  for (int i = 0; i < kPings; ++i) {
    const auto line = slow->read_line(5s);
    ASSERT_EQ(line, "p" + std::to_string(i) + " PONG " + payload) << i;
  }
  sender.join();
  EXPECT_EQ(slow->request(req::ping("last")), "last PONG");
  EXPECT_EQ(other->request(req::ping("o2")), "o2 PONG");
}

TEST(ServerReadySet, ASessionEndedWithUnreadInputNeitherSpinsNorStopsOthers) {
  auto server = start_server(with_semaphores("x = 1\n"));
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  auto waiter = Client::connect(server->port());
  ASSERT_TRUE(holder && waiter);
  ASSERT_EQ(holder->request(req::acquire("h", "x")).rfind("h OK ", 0), 0u);
  ASSERT_EQ(waiter->request(req::acquire("w", "x")), "w QUEUED 1");
  // The holder's session ends on a line too long, with more input behind
  // it that the server never reads: the socket stays readable (level-
  // triggered) after the session ended.
  holder->send(std::string(5000, 'a') + "\n" + req::ping("never") + "\n" + std::string(60000, 'b'));
  const auto told = holder->read_line();
  ASSERT_TRUE(told);
  EXPECT_EQ(told->rfind("* ERR LINE_TOO_LONG", 0), 0u) << *told;
  EXPECT_TRUE(holder->wait_closed(5s));
  // Its permit went to the waiter at once, and the server serves on.
  EXPECT_EQ(waiter->read_line().value_or("").rfind("w OK ", 0), 0u);
  EXPECT_EQ(waiter->request(req::ping("p")), "p PONG");
}

TEST(ServerReadySet, FiveHundredTwelvePeersReadyAtOnceAreAllServed) {
  auto server = start_server(with_semaphores("pool = 10\n"));
  ASSERT_TRUE(server);
  constexpr int kPeers = 512;
  std::vector<std::unique_ptr<Client>> peers;
  for (int i = 0; i < kPeers; ++i) {
    peers.push_back(Client::connect(server->port()));
    ASSERT_TRUE(peers.back()) << i;
  }
  // Every peer asks at once (more ready sockets than one round takes);
  // the first ten are granted, the others queue in FIFO order.
  for (int i = 0; i < kPeers; ++i) peers[i]->send(req::acquire("a", "pool") + "\n");
  int granted = 0;
  int queued = 0;
  for (int i = 0; i < kPeers; ++i) {
    const auto line = peers[i]->read_line(10s);
    ASSERT_TRUE(line) << i;
    if (line->rfind("a OK ", 0) == 0) ++granted;
    if (line->rfind("a QUEUED ", 0) == 0) ++queued;
  }
  EXPECT_EQ(granted, 10);
  EXPECT_EQ(queued, kPeers - 10);
  // Every peer releases or cancels at once: nobody is left holding.
  for (int i = 0; i < kPeers; ++i) peers[i]->reset();
  peers.clear();
  auto probe = Client::connect(server->port());
  ASSERT_TRUE(probe);
  EXPECT_EQ(await_answer(*probe, req::get("g", "pool"), "g OK 10 10 0 0 defined", 10s), "g OK 10 10 0 0 defined");
}

TEST(ServerReadySet, StopsCleanlyWithSessionsOpenAndReady) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto idle = Client::connect(server->port());
  auto busy = Client::connect(server->port());
  ASSERT_TRUE(idle && busy);
  ASSERT_EQ(idle->request(req::ping("i")), "i PONG");
  busy->send(req::ping("b") + "\n");
  server->send_signal(SIGTERM);
  EXPECT_EQ(idle->read_line().value_or(""), "* ERR SHUTDOWN server is shutting down");
  const auto status = server->wait_exit(10s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server->log();
}

}  // namespace
}  // namespace netsem::testing
