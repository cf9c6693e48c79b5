// Integration: every verb of protocol v1 against the real netsemd, FIFO
// across sessions, disconnects while holding and while queued, timeouts,
// cancellation and pipelining.
#include <gtest/gtest.h>

#include <thread>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

class ServerVerbs : public ::testing::Test {
 protected:
  void SetUp() override {
    Netsemd::Options options;
    options.semaphores = "splunk = 1\npool = 3\n";
    std::string error;
    server_ = Netsemd::start(options, &error);
    ASSERT_TRUE(server_) << error;
  }
  std::unique_ptr<Client> connect() {
    auto client = Client::connect(server_->port());
    EXPECT_TRUE(client);
    return client;
  }
  std::unique_ptr<Netsemd> server_;
};

TEST_F(ServerVerbs, ContractExampleGrantsQueuesAndHandsOver) {
  auto a = connect();
  auto b = connect();
  const auto first = fence_of(a->request(req::acquire("a1", "splunk", 1, 5000)));
  EXPECT_EQ(b->request(req::acquire("b1", "splunk", 1, 5000)), "b1 QUEUED 1");
  EXPECT_EQ(a->request(req::release("r1", "splunk")), "r1 OK 0");
  const auto second = fence_of(b->read_line().value_or(""));
  EXPECT_GT(second, first);
}

TEST_F(ServerVerbs, EveryVerbAnswersAsTheContractSays) {
  auto c = connect();
  // Well-formed requests come from the encoders; the malformed ones (a
  // version 2, an unknown or lower-case verb, bad fields) are raw on purpose.
  const struct {
    std::string request;
    const char* answer;
  } cases[] = {
      {req::hello("h", "test-client"), nullptr},
      {"h2 HELLO 2", "h2 ERR BAD_ARG"},  // raw on purpose, as are the malformed ones below
      {req::ping("p"), "p PONG"},
      {req::ping("p2", "payload"), "p2 PONG payload"},
      {req::get("g", "nothing"), "g OK 1 1 0 0 absent"},
      {req::get("g2", "pool"), "g2 OK 3 3 0 0 defined"},
      {req::create("c", "jobs", 0, 5), "c OK"},
      {req::create("c2", "jobs", 0, 5), "c2 OK"},
      {req::create("c3", "jobs", 0, 5, true), "c3 ERR EXISTS"},
      {req::create("c4", "pool", 1), "c4 ERR EXISTS"},
      {req::wait("w", "jobs", 1, 0), "w TIMEOUT"},
      {req::post("po", "jobs", 2), "po OK 2"},
      {req::wait("w2", "jobs", 1, 0), nullptr},
      {req::get("g3", "jobs"), "g3 OK 1 5 0 0 created"},
      {req::post("po2", "jobs", 5), "po2 ERR OVERFLOW"},
      {req::post("po3", "nothing"), "po3 ERR NOT_FOUND"},
      {req::wait("w3", "nothing"), "w3 ERR NOT_FOUND"},
      {req::release("r", "pool"), "r ERR NOT_HELD"},
      {req::acquire("a", "pool", 2), nullptr},
      {req::get("g4", "pool"), "g4 OK 1 3 1 0 defined"},
      {req::acquire("a2", "pool", 4), "a2 ERR TOO_MANY"},
      {req::acquire("a3", "fresh", 2), "a3 ERR TOO_MANY"},
      {req::release("r2", "pool", 2), "r2 OK 3"},
      {req::del("d", "pool"), "d ERR BUSY"},
      {req::del("d2", "nothing"), "d2 ERR NOT_FOUND"},
      {req::del("d3", "jobs"), "d3 OK"},
      {req::get("g5", "jobs"), "g5 OK 1 1 0 0 absent"},
      {req::cancel("x", "nope"), "x ERR NOT_FOUND"},
      {"v FROB x", "v ERR UNKNOWN_VERB"},
      {req::acquire("n", "$local"), "n ERR BAD_NAME"},
      {"n2 ACQUIRE bad%zz", "n2 ERR BAD_NAME"},
      {"e ACQUIRE x 0", "e ERR BAD_ARG"},
      {"e2 ACQUIRE x 1 -2", "e2 ERR BAD_ARG"},
      {"e3 ACQUIRE x 1 5 extra", "e3 ERR BAD_REQUEST"},
      {"e4 ACQUIRE", "e4 ERR BAD_REQUEST"},
      {"e5 ACQUIRE  x", "e5 ERR BAD_REQUEST"},
      {"bad!tag PING", "* ERR BAD_REQUEST"},
      {"s stats", "s OK {"},
  };
  for (const auto& test_case : cases) {
    const std::string answer = c->request(test_case.request);
    if (test_case.answer != nullptr) {
      EXPECT_EQ(answer.rfind(test_case.answer, 0), 0u) << test_case.request << " -> " << answer;
    } else {
      EXPECT_NE(answer.find(" OK"), std::string::npos) << test_case.request << " -> " << answer;
    }
  }
  c->send_line("");  // an empty line is ignored
  EXPECT_EQ(c->request(req::quit("q")), "q OK");
  EXPECT_TRUE(c->wait_closed());
}

TEST_F(ServerVerbs, NamesArePercentDecodedAndEncodedInAnswers) {
  auto c = connect();
  fence_of(c->request(req::acquire("a", "host:10.0.0.1 web")));
  // Raw on purpose: the name encoded otherwise than the encoder would (%3A).
  EXPECT_EQ(c->request("g GET host%3A10.0.0.1%20web"), "g OK 0 1 1 0 undefined");
  c->send_line(req::list("l", "host"));
  EXPECT_EQ(c->read_line(), "l ITEM host:10.0.0.1%20web 0 1 1 0 undefined");
  EXPECT_EQ(c->read_line(), "l END 1");
  c->send_line(req::list("l2"));
  std::vector<std::string> items;
  for (auto line = c->read_line(); line && line->rfind("l2 END", 0) != 0; line = c->read_line()) items.push_back(*line);
  ASSERT_EQ(items.size(), 3u);  // sorted: host..., pool, splunk
  EXPECT_EQ(items[1], "l2 ITEM pool 3 3 0 0 defined");
}

TEST_F(ServerVerbs, C1ControlCharactersInNamesAreBadName) {
  auto c = connect();
  // U+0085 (NEL) and the rest of U+0080..U+009F are control characters.
  // Raw on purpose: the names encoded, or not, as the test says.
  EXPECT_EQ(c->request("k CREATE a%C2%85b 1").rfind("k ERR BAD_NAME ", 0), 0u);
  EXPECT_EQ(c->request("k2 CREATE a\xc2\x80 1").rfind("k2 ERR BAD_NAME ", 0), 0u);
  EXPECT_EQ(c->request("a ACQUIRE x%C2%9F").rfind("a ERR BAD_NAME ", 0), 0u);
  EXPECT_EQ(c->request("l LIST a%C2%85").rfind("l ERR BAD_NAME ", 0), 0u);
  EXPECT_EQ(c->request("g GET a%C2%85b").rfind("g ERR BAD_NAME ", 0), 0u);
  // The characters around them are names like any other.
  EXPECT_EQ(c->request("k3 CREATE a%C2%A0b 1"), "k3 OK");
  EXPECT_EQ(c->request("g2 GET a\xc2\xa0"
                       "b"),
            "g2 OK 1 1 0 0 created");
}

TEST_F(ServerVerbs, MinusZeroIsBadArgNotATry) {
  auto holder = connect();
  auto c = connect();
  fence_of(holder->request(req::acquire("h", "splunk")));
  // Raw on purpose: numbers the encoder never writes.
  for (const char* timeout : {"-0", "-00", "-0000"}) {
    const std::string answer = c->request(std::string("t ACQUIRE splunk 1 ") + timeout);
    EXPECT_EQ(answer.rfind("t ERR BAD_ARG ", 0), 0u) << timeout << " -> " << answer;
  }
  EXPECT_EQ(c->request("n ACQUIRE splunk -0").rfind("n ERR BAD_ARG ", 0), 0u);
  EXPECT_EQ(c->request("k CREATE jobs -0 1").rfind("k ERR BAD_ARG ", 0), 0u);
  // A sign before a non-zero value with leading zeros is still that value.
  EXPECT_EQ(c->request("w ACQUIRE splunk 1 -01"), "w QUEUED 1");
  EXPECT_EQ(c->request(req::get("g", "splunk")), "g OK 0 1 1 1 defined");
}

TEST_F(ServerVerbs, FifoAcrossSessionsWithCounts) {
  auto holder = connect();
  auto big = connect();
  auto small = connect();
  fence_of(holder->request(req::acquire("a", "pool", 2)));
  EXPECT_EQ(big->request(req::acquire("b", "pool", 3)), "b QUEUED 1");
  // One permit is free, but the small request must not overtake the big one.
  EXPECT_EQ(small->request(req::acquire("s", "pool")), "s QUEUED 2");
  // A try never barges either.
  auto tryer = connect();
  EXPECT_EQ(tryer->request(req::acquire("t", "pool", 1, 0)), "t TIMEOUT");
  EXPECT_EQ(holder->request(req::release("r", "pool", 2)), "r OK 0");
  fence_of(big->read_line().value_or(""));
  EXPECT_TRUE(small->quiet_for(100ms));
  EXPECT_EQ(big->request(req::release("r", "pool", 3)), "r OK 2");
  fence_of(small->read_line().value_or(""));
}

TEST_F(ServerVerbs, HeadLeavingGrantsEveryWaiterThatNowFits) {
  auto holder = connect();
  auto head = connect();
  auto second = connect();
  auto third = connect();
  fence_of(holder->request(req::acquire("a", "pool")));
  EXPECT_EQ(head->request(req::acquire("h", "pool", 3)), "h QUEUED 1");
  EXPECT_EQ(second->request(req::acquire("s", "pool")), "s QUEUED 2");
  EXPECT_EQ(third->request(req::acquire("t", "pool")), "t QUEUED 3");
  // The head gives up: both smaller waiters fit at once.
  EXPECT_EQ(head->request(req::cancel("c", "h")), "c OK");
  EXPECT_EQ(head->read_line(), "h CANCELLED");
  fence_of(second->read_line().value_or(""));
  fence_of(third->read_line().value_or(""));
}

TEST_F(ServerVerbs, QueuedRequestTimesOut) {
  auto holder = connect();
  auto waiter = connect();
  fence_of(holder->request(req::acquire("a", "splunk")));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(waiter->request(req::acquire("w", "splunk", 1, 200)), "w QUEUED 1");
  EXPECT_EQ(waiter->read_line(), "w TIMEOUT");
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 190ms);
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(holder->request(req::get("g", "splunk")), "g OK 0 1 1 0 defined");
}

TEST_F(ServerVerbs, DuplicateTagWhilePending) {
  auto holder = connect();
  auto waiter = connect();
  fence_of(holder->request(req::acquire("a", "splunk")));
  EXPECT_EQ(waiter->request(req::acquire("w", "splunk")), "w QUEUED 1");
  EXPECT_EQ(waiter->request(req::ping("w")).rfind("w ERR DUPLICATE_TAG", 0), 0u);
  // The take verbs are refused by the table, without naming the semaphore.
  EXPECT_EQ(waiter->request(req::acquire("w", "other")), "w ERR DUPLICATE_TAG the tag names a request still pending");
  EXPECT_EQ(waiter->request(req::wait("w", "splunk")), "w ERR DUPLICATE_TAG the tag names a request still pending");
  EXPECT_EQ(holder->request(req::get("g", "other")), "g OK 1 1 0 0 absent");  // nothing was made
  EXPECT_EQ(waiter->request(req::cancel("c", "w")), "c OK");
  EXPECT_EQ(waiter->read_line(), "w CANCELLED");
  EXPECT_EQ(waiter->request(req::ping("w")), "w PONG");
}

TEST_F(ServerVerbs, DisconnectWhileHoldingReleasesAndWhileQueuedLeavesTheQueue) {
  auto holder = connect();
  auto leaver = connect();
  auto waiter = connect();
  fence_of(holder->request(req::acquire("a", "splunk")));
  EXPECT_EQ(leaver->request(req::acquire("l", "splunk")), "l QUEUED 1");
  EXPECT_EQ(waiter->request(req::acquire("w", "splunk")), "w QUEUED 2");
  leaver.reset();  // queued, then gone
  holder.reset();  // holding, then gone
  fence_of(waiter->read_line().value_or(""));
  EXPECT_EQ(waiter->request(req::get("g", "splunk")), "g OK 0 1 1 0 defined");
}

TEST_F(ServerVerbs, WaitConsumesAndPostGivesBack) {
  auto producer = connect();
  auto consumer = connect();
  EXPECT_EQ(producer->request(req::create("c", "queue", 0, 100)), "c OK");
  EXPECT_EQ(consumer->request(req::wait("w", "queue", 2)), "w QUEUED 1");
  EXPECT_EQ(producer->request(req::post("p", "queue")), "p OK 1");
  EXPECT_TRUE(consumer->quiet_for(50ms));
  EXPECT_EQ(producer->request(req::post("p2", "queue")), "p2 OK 0");
  fence_of(consumer->read_line().value_or(""));
  // Consumed permits are not held: closing the consumer gives nothing back.
  consumer.reset();
  EXPECT_EQ(producer->request(req::get("g", "queue")), "g OK 0 100 0 0 created");
}

TEST_F(ServerVerbs, PostCannotReturnPermitsHeldThroughAcquire) {
  auto c = connect();
  EXPECT_EQ(c->request(req::create("c", "lic", 2)), "c OK");
  fence_of(c->request(req::acquire("a", "lic", 2)));
  EXPECT_EQ(c->request(req::post("p", "lic")).rfind("p ERR OVERFLOW", 0), 0u);
  EXPECT_EQ(c->request(req::release("r", "lic", 2)), "r OK 2");
}

TEST_F(ServerVerbs, UndefinedSemaphoreIsRemovedWhenIdle) {
  auto c = connect();
  fence_of(c->request(req::acquire("a", "temp")));
  EXPECT_EQ(c->request(req::get("g", "temp")), "g OK 0 1 1 0 undefined");
  EXPECT_EQ(c->request(req::create("c", "temp", 1)).rfind("c ERR EXISTS", 0), 0u);
  EXPECT_EQ(c->request(req::release("r", "temp")), "r OK 1");
  EXPECT_EQ(c->request(req::get("g2", "temp")), "g2 OK 1 1 0 0 absent");
}

// Issue 10 item 6: B's WAIT was granted the permit A released, and `u` then
// stayed `0 1 0 0 undefined` for good: ACQUIRE timed out, DELETE was BUSY,
// CREATE was EXISTS until a restart.
TEST_F(ServerVerbs, WaitAndPostOfAnUndefinedNameInUseAreNotFoundAndTheNameIsFreedWhenIdle) {
  auto a = connect();
  auto b = connect();
  fence_of(a->request(req::acquire("a", "u")));
  EXPECT_EQ(b->request(req::wait("w", "u")).rfind("w ERR NOT_FOUND", 0), 0u);
  EXPECT_EQ(b->request(req::post("p", "u")).rfind("p ERR NOT_FOUND", 0), 0u);
  EXPECT_EQ(a->request(req::release("r", "u")), "r OK 1");
  EXPECT_TRUE(b->quiet_for(50ms));  // nothing was queued for B
  a.reset();
  b.reset();
  auto c = connect();
  EXPECT_EQ(await_answer(*c, req::get("g", "u"), "g OK 1 1 0 0 absent"), "g OK 1 1 0 0 absent");
  fence_of(c->request(req::acquire("a", "u", 1, 0)));
  EXPECT_EQ(c->request(req::release("r", "u")), "r OK 1");
  EXPECT_EQ(c->request(req::del("d", "u")).rfind("d ERR NOT_FOUND", 0), 0u);
  EXPECT_EQ(c->request(req::create("c", "u", 1)), "c OK");
  EXPECT_EQ(c->request(req::del("d2", "u")), "d2 OK");
}

TEST_F(ServerVerbs, FencesStrictlyIncrease) {
  auto c = connect();
  std::uint64_t last = 0;
  for (int i = 0; i < 50; ++i) {
    const auto fence = fence_of(c->request(req::acquire("a", "pool")));
    EXPECT_GT(fence, last);
    last = fence;
    EXPECT_EQ(c->request(req::release("r", "pool")), "r OK 3");
  }
}

TEST_F(ServerVerbs, TenThousandPipelinedRequestsAnswerInOrder) {
  auto c = connect();
  constexpr int kPairs = 5000;
  std::string batch;
  for (int i = 0; i < kPairs; ++i) {
    batch += req::acquire("a" + std::to_string(i), "pool") + "\n";
    batch += req::release("r" + std::to_string(i), "pool") + "\n";
  }
  std::thread sender([&] { c->send(batch); });
  std::uint64_t last_fence = 0;
  for (int i = 0; i < kPairs; ++i) {
    const auto acquired = c->read_line(5s).value_or("");
    ASSERT_EQ(acquired.rfind("a" + std::to_string(i) + " OK ", 0), 0u) << acquired;
    const auto fence = std::stoull(fields(acquired)[2]);
    EXPECT_GT(fence, last_fence);
    last_fence = fence;
    ASSERT_EQ(c->read_line(5s), "r" + std::to_string(i) + " OK 3");
  }
  sender.join();
}

TEST_F(ServerVerbs, StatsReportsTheContractFields) {
  auto c = connect();
  const std::string answer = c->request(req::stats("s"));
  for (const char* field : {"sessions", "semaphores", "held", "waiters", "grants", "requests", "uptime_s", "last_fence",
                            "session_timeout_ms"}) {
    EXPECT_NE(answer.find("\"" + std::string(field) + "\":"), std::string::npos) << field << " in " << answer;
  }
}

}  // namespace
}  // namespace netsem::testing
