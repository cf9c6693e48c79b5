// Tests of Dispatcher (src/core/dispatcher.h) with no socket: every verb of
// protocol 1.0 and the ACE dialect, answers byte for byte as a peer would
// read them, completions delivered to other sessions in FIFO order, queued
// requests timing out as the injected clock advances, a session's end
// releasing what it held, answers held back for unwritten journal records,
// LIST streaming in chunks, the idle-timeout policy, and protocol 1.1:
// OPTION, HOLDERS, WAITERS, SESSIONS and KICK with the admin right.
#include "core/dispatcher.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <mutex>

#include "auth/token_hash.h"

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/test_session.h"
#include "journal/journal.h"
#include "support/request_lines.h"

namespace netsem::server {
namespace {

using namespace std::chrono_literals;
using protocol::AceParser;
namespace req = netsem::testing::req;

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() {
    config_.semaphores = {{"splunk", 1}, {"pool", 3}};
    table_ = std::make_unique<SemaphoreTable>(memory_, TableLimits{1000, 4});
    dispatcher_ =
        std::make_unique<Dispatcher>(*table_, journal_, config_, counters_, logs_, &DispatcherTest::read_clock, this);
    dispatcher_->reconfigure(config_.semaphores);
  }

  std::unique_ptr<TestSession> session(protocol::Dialect dialect = protocol::Dialect::kV1) {
    return std::make_unique<TestSession>(*dispatcher_, next_id_++, dialect);
  }
  void advance(Clock::duration by) {
    now_ += by;
    dispatcher_->expire();
  }
  // The dispatcher's clock: now_, each reading counted.
  static Clock::time_point read_clock(const void* self) {
    const auto& test = *static_cast<const DispatcherTest*>(self);
    ++test.clock_reads_;
    return test.now_;
  }

  MemoryJournal memory_;
  TestJournal journal_{memory_};
  ServerConfig config_;
  ServerCounters counters_;
  PeerLogs logs_;
  Clock::time_point now_ = Clock::time_point{} + 1000h;
  mutable int clock_reads_ = 0;
  std::unique_ptr<SemaphoreTable> table_;
  std::unique_ptr<Dispatcher> dispatcher_;
  SessionId next_id_ = 1;
};

// The clock is read once per turn of the event loop, however many requests
// the turn handles, and what the turn does is stamped with that time (the
// table reads no clock); the next turn reads it again.
TEST_F(DispatcherTest, ATurnReadsTheClockOnceAndStampsWhatItDoesWithIt) {
  auto a = session();
  auto b = session();
  dispatcher_->begin_turn();
  const int before = clock_reads_;
  EXPECT_EQ(a->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(b->request(req::acquire("b", "splunk")), "b QUEUED 1\n");
  now_ += 7ms;  // within the turn: not seen
  EXPECT_EQ(a->request(req::release("r", "splunk")), "r OK 0\n");
  EXPECT_EQ(b->read(), "b OK 2\n");
  EXPECT_EQ(a->request(req::ping("p")), "p PONG\n");
  EXPECT_EQ(clock_reads_ - before, 1);
  const stats::TableCounters& figures = table_->counters();
  EXPECT_EQ(figures.wait_us.sum(), 0u);  // queued and granted in the same turn
  EXPECT_EQ(figures.hold_us.sum(), 0u);
  // The next turn reads the clock again: b's hold began at the first turn's time.
  dispatcher_->begin_turn();
  now_ += 3ms;
  EXPECT_EQ(b->request(req::release("r", "splunk")), "r OK 1\n");
  EXPECT_EQ(clock_reads_ - before, 2);
  EXPECT_EQ(figures.hold_us.sum(), 10'000u);
}

TEST_F(DispatcherTest, HelloAnswersTheVersionAndSessionId) {
  auto a = session();
  EXPECT_EQ(a->request(req::hello("h", "build-7")), "h OK netsem 1.1 1\n");
  EXPECT_EQ(a->state.label, "build-7");
  // Raw on purpose: a version the encoder does not write.
  EXPECT_EQ(a->request("h2 HELLO 2").rfind("h2 ERR BAD_ARG ", 0), 0u);
  // 1.1: the label is decoded like a name; one that is no valid name is
  // refused and the label stays.
  EXPECT_EQ(a->request(req::hello("h3", "nightly build")), "h3 OK netsem 1.1 1\n");
  EXPECT_EQ(a->state.label, "nightly build");
  // Raw on purpose: a label that is no valid percent-encoding.
  EXPECT_EQ(a->request("h4 HELLO 1 50%off").rfind("h4 ERR BAD_ARG ", 0), 0u);
  EXPECT_EQ(a->state.label, "nightly build");
}

TEST_F(DispatcherTest, AcquireGrantsQueuesInFifoOrderAndReleaseHandsOver) {
  auto a = session();
  auto b = session();
  auto c = session();
  EXPECT_EQ(a->request(req::acquire("a1", "splunk")), "a1 OK 1\n");
  EXPECT_EQ(b->request(req::acquire("b1", "splunk", 1, 5000)), "b1 QUEUED 1\n");
  EXPECT_EQ(c->request(req::acquire("c1", "splunk")), "c1 QUEUED 2\n");
  EXPECT_EQ(a->request(req::acquire("t", "splunk", 1, 0)), "t TIMEOUT\n");  // a try never overtakes
  // The release answers first, then the grant goes to the head of the queue.
  EXPECT_EQ(a->request(req::release("r1", "splunk")), "r1 OK 0\n");
  EXPECT_EQ(b->completions, 1);
  EXPECT_EQ(b->read(), "b1 OK 2\n");
  EXPECT_EQ(c->read(), "");
  EXPECT_EQ(b->request(req::release("r2", "splunk")), "r2 OK 0\n");
  EXPECT_EQ(c->read(), "c1 OK 3\n");
  EXPECT_EQ(c->request(req::get("g", "splunk")), "g OK 0 1 1 0 defined\n");
}

TEST_F(DispatcherTest, CountsGrantEveryWaiterThatFitsWhenTheHeadLeaves) {
  auto holder = session();
  auto head = session();
  auto second = session();
  auto third = session();
  EXPECT_EQ(holder->request(req::acquire("a", "pool")), "a OK 1\n");
  EXPECT_EQ(head->request(req::acquire("h", "pool", 3)), "h QUEUED 1\n");
  EXPECT_EQ(second->request(req::acquire("s", "pool")), "s QUEUED 2\n");
  EXPECT_EQ(third->request(req::acquire("t", "pool")), "t QUEUED 3\n");
  EXPECT_EQ(head->request(req::cancel("c", "h")), "c OK\nh CANCELLED\n");
  EXPECT_EQ(second->read(), "s OK 2\n");
  EXPECT_EQ(third->read(), "t OK 3\n");
}

TEST_F(DispatcherTest, QueuedRequestTimesOutWhenTheClockPassesItsDeadline) {
  auto holder = session();
  auto waiter = session();
  EXPECT_EQ(holder->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(waiter->request(req::acquire("w", "splunk", 1, 200)), "w QUEUED 1\n");
  ASSERT_TRUE(dispatcher_->next_deadline().has_value());
  EXPECT_EQ(*dispatcher_->next_deadline(), now_ + 200ms);
  advance(199ms);
  EXPECT_EQ(waiter->read(), "");
  advance(1ms);
  EXPECT_EQ(waiter->read(), "w TIMEOUT\n");
  EXPECT_EQ(waiter->completions, 1);
  EXPECT_FALSE(dispatcher_->next_deadline().has_value());
  EXPECT_EQ(holder->request(req::get("g", "splunk")), "g OK 0 1 1 0 defined\n");
}

TEST_F(DispatcherTest, WaitConsumesAndPostGivesBack) {
  auto producer = session();
  auto consumer = session();
  EXPECT_EQ(producer->request(req::create("c", "queue", 0, 100)), "c OK\n");
  EXPECT_EQ(consumer->request(req::wait("w", "queue", 2)), "w QUEUED 1\n");
  EXPECT_EQ(producer->request(req::post("p", "queue")), "p OK 1\n");
  EXPECT_EQ(consumer->read(), "");
  EXPECT_EQ(producer->request(req::post("p2", "queue")), "p2 OK 0\n");
  EXPECT_EQ(consumer->read(), "w OK 1\n");
  EXPECT_EQ(producer->request(req::get("g", "queue")), "g OK 0 100 0 0 created\n");
  EXPECT_EQ(producer->request(req::post("o", "queue", 101)), "o ERR OVERFLOW value would exceed max: queue\n");
  EXPECT_EQ(producer->request(req::post("n", "nothing")), "n ERR NOT_FOUND no such semaphore: nothing\n");
  EXPECT_EQ(producer->request(req::wait("n2", "nothing")), "n2 ERR NOT_FOUND no such semaphore: nothing\n");
}

TEST_F(DispatcherTest, CreateDeleteGetAndErrorsNameTheSemaphore) {
  auto a = session();
  EXPECT_EQ(a->request(req::create("k", "jobs", 2, 5)), "k OK\n");
  EXPECT_EQ(a->request(req::create("k2", "jobs", 2, 5)), "k2 OK\n");
  EXPECT_EQ(a->request(req::create("k3", "jobs", 2, 5, true)), "k3 ERR EXISTS a semaphore of that name exists: jobs\n");
  EXPECT_EQ(a->request(req::create("k4", "splunk", 1)), "k4 ERR EXISTS a semaphore of that name exists: splunk\n");
  EXPECT_EQ(a->request(req::get("g", "jobs")), "g OK 2 5 0 0 created\n");
  EXPECT_EQ(a->request(req::get("g2", "a b")), "g2 OK 1 1 0 0 absent\n");
  EXPECT_EQ(a->request(req::acquire("x", "jobs", 6)), "x ERR TOO_MANY count exceeds the semaphore's max: jobs\n");
  EXPECT_EQ(a->request(req::release("r", "jobs")), "r ERR NOT_HELD this session holds fewer permits than that: jobs\n");
  EXPECT_EQ(a->request(req::acquire("a", "jobs")), "a OK 1\n");
  EXPECT_EQ(a->request(req::del("d", "jobs")), "d ERR BUSY the semaphore is defined, held or waited on: jobs\n");
  EXPECT_EQ(a->request(req::release("r2", "jobs")), "r2 OK 2\n");
  EXPECT_EQ(a->request(req::del("d2", "jobs")), "d2 OK\n");
  EXPECT_EQ(a->request(req::del("d3", "jobs")), "d3 ERR NOT_FOUND no such semaphore: jobs\n");
  // Raw on purpose: a name encoded otherwise than the encoder would (%3A).
  EXPECT_EQ(a->request("d4 DELETE host%3Aa%20b"), "d4 ERR NOT_FOUND no such semaphore: host:a%20b\n");
  EXPECT_EQ(memory_.created().count("jobs"), 0u);
}

TEST_F(DispatcherTest, ParseErrorsAndDuplicateTags) {
  auto a = session();
  auto holder = session();
  EXPECT_EQ(a->request(""), "");
  EXPECT_FALSE(dispatcher_->handle_line(a->state, ""));
  // Raw on purpose: malformed lines.
  EXPECT_EQ(a->request("bad!tag PING").rfind("* ERR BAD_REQUEST ", 0), 0u);
  EXPECT_EQ(a->request("t FROB").rfind("t ERR UNKNOWN_VERB ", 0), 0u);
  EXPECT_EQ(a->request("t ACQUIRE").rfind("t ERR BAD_REQUEST ", 0), 0u);
  EXPECT_EQ(a->request(req::acquire("t", "$local")).rfind("t ERR BAD_NAME ", 0), 0u);
  EXPECT_EQ(a->request("t ACQUIRE x 0").rfind("t ERR BAD_ARG ", 0), 0u);
  EXPECT_EQ(holder->request(req::acquire("h", "splunk")), "h OK 1\n");
  EXPECT_EQ(a->request(req::acquire("w", "splunk")), "w QUEUED 1\n");
  EXPECT_EQ(a->request(req::ping("w")), "w ERR DUPLICATE_TAG the tag names a request still pending\n");
  EXPECT_EQ(a->request(req::acquire("w", "other")), "w ERR DUPLICATE_TAG the tag names a request still pending\n");
  EXPECT_EQ(a->request(req::cancel("c", "nope")), "c ERR NOT_FOUND no pending request with that tag\n");
  EXPECT_EQ(counters_.requests, 10u);  // every non-empty line, of both sessions
}

TEST_F(DispatcherTest, PingStatsAndQuit) {
  auto a = session();
  EXPECT_EQ(a->request(req::ping("p")), "p PONG\n");
  EXPECT_EQ(a->request(req::ping("p", "hello")), "p PONG hello\n");
  now_ += 5s;
  const std::string stats = a->request(req::stats("s"));
  EXPECT_EQ(stats.rfind("s OK {\"sessions\":1,\"semaphores\":2,\"held\":0,\"waiters\":0,\"grants\":0,\"requests\":3,"
                        "\"uptime_s\":5,",
                        0),
            0u)
      << stats;
  EXPECT_NE(stats.find(",\"session_timeout_ms\":15000,"), std::string::npos) << stats;
  EXPECT_NE(stats.find(",\"journal_ok\":1,\"journal_pending_records\":0,\"version\":\""), std::string::npos) << stats;
  EXPECT_EQ(a->request(req::quit("q")), "q OK\n");
  EXPECT_TRUE(a->state.quit);
  EXPECT_EQ(a->ends, std::vector<std::string>{"QUIT"});
  EXPECT_FALSE(a->state.open);
}

TEST_F(DispatcherTest, SessionEndReleasesItsPermitsAndDropsItsQueuedRequests) {
  auto holder = session();
  auto leaver = session();
  auto waiter = session();
  EXPECT_EQ(holder->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(leaver->request(req::acquire("l", "splunk")), "l QUEUED 1\n");
  EXPECT_EQ(waiter->request(req::acquire("w", "splunk")), "w QUEUED 2\n");
  dispatcher_->end_session(leaver->state, stats::EndCause::kClose);
  EXPECT_EQ(dispatcher_->sessions().count(leaver->state.id), 0u);
  dispatcher_->end_session(holder->state, stats::EndCause::kClose);
  dispatcher_->end_session(holder->state, stats::EndCause::kClose);  // twice is harmless
  EXPECT_EQ(waiter->read(), "w OK 2\n");
  EXPECT_EQ(leaver->read(), "");
  EXPECT_EQ(waiter->request(req::get("g", "splunk")), "g OK 0 1 1 0 defined\n");
  EXPECT_EQ(dispatcher_->sessions().size(), 1u);
}

TEST_F(DispatcherTest, SessionEndsAreCountedOnceByCause) {
  const auto ends = [this](stats::EndCause cause) { return counters_.session_ends[static_cast<std::size_t>(cause)]; };
  auto quitter = session();
  EXPECT_EQ(quitter->request(req::quit("q")), "q OK\n");
  EXPECT_EQ(quitter->causes, std::vector<stats::EndCause>{stats::EndCause::kQuit});
  auto holder = session(protocol::Dialect::kAce);
  holder->ace(AceParser::Token::kAcquire, "splunk");
  holder->ace(AceParser::Token::kRelease);  // ACE's orderly end
  auto garbled = session(protocol::Dialect::kAce);
  garbled->ace(AceParser::Token::kBad);
  auto stopped = session();
  dispatcher_->end_with_error(stopped->state, stats::EndCause::kShutdown, protocol::ErrorCode::kShutdown,
                              "server is shutting down");
  auto closed = session();
  dispatcher_->end_session(closed->state, stats::EndCause::kClose);
  dispatcher_->end_session(closed->state, stats::EndCause::kTimeout);  // already ended: not counted
  EXPECT_EQ(ends(stats::EndCause::kQuit), 2u);
  EXPECT_EQ(ends(stats::EndCause::kError), 1u);
  EXPECT_EQ(ends(stats::EndCause::kShutdown), 1u);
  EXPECT_EQ(ends(stats::EndCause::kClose), 1u);
  EXPECT_EQ(ends(stats::EndCause::kTimeout), 0u);
  // STATS shows them, after the fields of 0.1.0.
  auto observer = session();
  const std::string stats = observer->request(req::stats("s"));
  EXPECT_NE(stats.find(",\"session_ends_quit_total\":2,\"session_ends_close_total\":1,"), std::string::npos) << stats;
  EXPECT_NE(stats.find(",\"session_ends_error_total\":1,"), std::string::npos) << stats;
  EXPECT_NE(stats.find(",\"session_ends_shutdown_total\":1,"), std::string::npos) << stats;
  EXPECT_NE(stats.find(",\"grants\":1,"), std::string::npos) << stats;
  EXPECT_NE(stats.find(",\"hold_us\":{\"count\":1,"), std::string::npos) << stats;
}

TEST_F(DispatcherTest, AnswersThatDependOnAnUnwrittenRecordWaitOthersDoNot) {
  auto producer = session();
  auto consumer = session();
  EXPECT_EQ(producer->request(req::create("c", "queue", 0, 10)), "c OK\n");
  EXPECT_EQ(consumer->request(req::wait("w", "queue")), "w QUEUED 1\n");
  journal_.written = memory_.records();  // the journal stops writing here
  dispatcher_->begin_turn();
  dispatcher_->handle_line(producer->state, req::ping("p1"));
  dispatcher_->handle_line(producer->state, req::post("p", "queue"));  // a record: its answer waits
  dispatcher_->handle_line(producer->state, req::ping("p2"));          // behind it, in order
  EXPECT_EQ(producer->read(), "p1 PONG\n");
  EXPECT_EQ(consumer->read(), "");  // the grant the POST caused waits too
  auto other = session();
  EXPECT_EQ(other->request(req::get("g", "splunk")), "g OK 1 1 0 0 defined\n");  // not held up
  journal_.written.reset();
  EXPECT_EQ(producer->read(), "p OK 0\np2 PONG\n");
  EXPECT_EQ(consumer->read(), "w OK 1\n");
}

// A session that ends with a line saying why (KICKED, SHUTDOWN, a line too
// long) is told at once: its answers that wait for the journal are dropped,
// not written ahead of the line nor later.
TEST_F(DispatcherTest, TheLineThatEndsASessionDoesNotWaitBehindHeldAnswers) {
  auto producer = session();
  EXPECT_EQ(producer->request(req::create("c", "queue", 0, 10)), "c OK\n");
  journal_.written = memory_.records();  // the journal stops writing here
  dispatcher_->begin_turn();
  dispatcher_->handle_line(producer->state, req::ping("p1"));
  dispatcher_->handle_line(producer->state, req::post("p", "queue"));  // held
  dispatcher_->handle_line(producer->state, req::ping("p2"));          // behind it
  EXPECT_EQ(producer->read(), "p1 PONG\n");
  dispatcher_->end_with_error(producer->state, stats::EndCause::kShutdown, protocol::ErrorCode::kShutdown,
                              "server is shutting down");
  EXPECT_EQ(producer->read(), "* ERR SHUTDOWN server is shutting down\n");
  journal_.written.reset();
  EXPECT_EQ(producer->read(), "");
}

TEST_F(DispatcherTest, ListStreamsInChunksInNameOrder) {
  auto a = session();
  std::string expected;
  for (int i = 0; i < 40; ++i) {
    const std::string name = "name" + std::string(i < 10 ? "0" : "") + std::to_string(i);
    ASSERT_EQ(a->request(req::create("k", name, 1)), "k OK\n");
  }
  EXPECT_EQ(a->request(req::list("l", "name3")),
            "l ITEM name30 1 1 0 0 created\nl ITEM name31 1 1 0 0 created\nl ITEM name32 1 1 0 0 created\n"
            "l ITEM name33 1 1 0 0 created\nl ITEM name34 1 1 0 0 created\nl ITEM name35 1 1 0 0 created\n"
            "l ITEM name36 1 1 0 0 created\nl ITEM name37 1 1 0 0 created\nl ITEM name38 1 1 0 0 created\n"
            "l ITEM name39 1 1 0 0 created\nl END 10\n");
  EXPECT_FALSE(a->state.list.has_value());
  EXPECT_EQ(a->request(req::list("l2", "zzz")), "l2 END 0\n");

  // A table larger than a chunk: the first chunk stops at the low-water mark,
  // the rest comes as the output drains, each name once.
  const std::string long_name(200, 'x');
  for (int i = 0; i < 400; ++i)
    ASSERT_EQ(a->request(req::create("k", long_name + std::to_string(1000 + i), 1)), "k OK\n");
  dispatcher_->handle_line(a->state, req::list("big", long_name));
  ASSERT_TRUE(a->state.list.has_value());
  EXPECT_EQ(a->timer_changes, 1);                     // the stall limit applies
  EXPECT_FALSE(dispatcher_->produce_list(a->state));  // a chunk is still unwritten
  std::string listed;
  int chunks = 0;
  do {
    listed += a->read();
    ++chunks;
  } while (dispatcher_->produce_list(a->state));
  listed += a->read();
  EXPECT_GT(chunks, 2);
  std::string want;
  for (int i = 0; i < 400; ++i) want += "big ITEM " + long_name + std::to_string(1000 + i) + " 1 1 0 0 created\n";
  want += "big END 400\n";
  EXPECT_EQ(listed, want);
}

TEST_F(DispatcherTest, AStoppingServerGrantsNothingAsItEndsTheSessions) {
  auto holder = session();
  auto waiter = session();
  auto ace = session(protocol::Dialect::kAce);
  EXPECT_EQ(holder->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(waiter->request(req::acquire("w", "splunk")), "w QUEUED 1\n");
  ace->ace(AceParser::Token::kAcquire, "splunk");
  dispatcher_->begin_shutdown();
  dispatcher_->end_with_error(holder->state, stats::EndCause::kShutdown, protocol::ErrorCode::kShutdown,
                              "server is shutting down");
  // The holder may still be at work (its lease runs on): nobody else gets
  // the permit, neither a v1 waiter nor an ACE one.
  EXPECT_EQ(waiter->read(), "");
  EXPECT_EQ(waiter->completions, 0);
  EXPECT_EQ(ace->read(), "");
  dispatcher_->end_with_error(waiter->state, stats::EndCause::kShutdown, protocol::ErrorCode::kShutdown,
                              "server is shutting down");
  EXPECT_EQ(waiter->read(), "* ERR SHUTDOWN server is shutting down\n");
  EXPECT_TRUE(dispatcher_->sessions().size() == 1u);
  dispatcher_->end_with_error(ace->state, stats::EndCause::kShutdown, protocol::ErrorCode::kShutdown,
                              "server is shutting down");
  dispatcher_->finish_shutdown();  // every permit back, still nothing granted
  EXPECT_EQ(table_->get("splunk").value, 1);
  EXPECT_EQ(table_->get("splunk").holders, 0u);
  EXPECT_EQ(table_->stats().waiters, 0u);
  EXPECT_EQ(table_->stats().sessions, 0u);
}

TEST_F(DispatcherTest, EndWithErrorTellsAV1PeerAndNotAnAcePeer) {
  auto v1 = session();
  dispatcher_->end_with_error(v1->state, stats::EndCause::kShutdown, protocol::ErrorCode::kShutdown,
                              "server is shutting down");
  EXPECT_EQ(v1->read(), "* ERR SHUTDOWN server is shutting down\n");
  EXPECT_EQ(v1->ends, std::vector<std::string>{"server is shutting down"});
  auto ace = session(protocol::Dialect::kAce);
  dispatcher_->end_with_error(ace->state, stats::EndCause::kShutdown, protocol::ErrorCode::kShutdown,
                              "server is shutting down");
  EXPECT_EQ(ace->read(), "");
  EXPECT_EQ(ace->ends.size(), 1u);
}

TEST_F(DispatcherTest, AceAcquireQueueHeartbeatGrantAndRelease) {
  auto first = session(protocol::Dialect::kAce);
  auto second = session(protocol::Dialect::kAce);
  first->ace(AceParser::Token::kAcquire, "splunk");
  EXPECT_EQ(first->read(), "locked|");
  EXPECT_EQ(first->state.ace_stage, AceStage::kHolding);
  second->ace(AceParser::Token::kAcquire, "splunk");
  EXPECT_EQ(second->read(), "");  // queued: nothing until the heartbeat
  EXPECT_TRUE(Dispatcher::wants_heartbeat(second->state));
  dispatcher_->ace_heartbeat(second->state);
  dispatcher_->ace_heartbeat(second->state);  // never a backlog
  EXPECT_EQ(second->read(), "wait|");
  first->ace(AceParser::Token::kWait);
  first->ace(AceParser::Token::kRelease);
  EXPECT_EQ(first->read(), "ok|");
  EXPECT_EQ(first->ends, std::vector<std::string>{"ACE: released"});
  EXPECT_EQ(second->read(), "locked|");
  EXPECT_EQ(second->state.ace_stage, AceStage::kHolding);
  EXPECT_FALSE(Dispatcher::wants_heartbeat(second->state));
  // The same semaphore and queue as protocol v1.
  auto v1 = session();
  EXPECT_EQ(v1->request(req::get("g", "splunk")), "g OK 0 1 1 0 defined\n");
}

TEST_F(DispatcherTest, AceRefusesUnexpectedInputDroppingUnwrittenTokens) {
  auto a = session(protocol::Dialect::kAce);
  a->ace(AceParser::Token::kAcquire, "splunk");
  a->ace(AceParser::Token::kBad);  // `acquire:splunk|garbage|` in one read
  EXPECT_EQ(a->read(), "");        // never `locked|` for a grant the close gives back
  EXPECT_EQ(a->ends, std::vector<std::string>{"ACE: invalid input"});
  auto v1 = session();
  EXPECT_EQ(v1->request(req::get("g", "splunk")), "g OK 1 1 0 0 defined\n");
  auto b = session(protocol::Dialect::kAce);
  b->ace(AceParser::Token::kRelease);
  EXPECT_EQ(b->ends, std::vector<std::string>{"ACE: release while not holding"});
  auto c = session(protocol::Dialect::kAce);
  c->ace(AceParser::Token::kAcquire, "splunk");
  c->ace(AceParser::Token::kAcquire, "splunk");
  EXPECT_EQ(c->ends, std::vector<std::string>{"ACE: unexpected acquire"});
}

TEST_F(DispatcherTest, ReloadEndsQueuedRequestsThatNoLongerFit) {
  auto holder = session();
  auto big = session();
  EXPECT_EQ(holder->request(req::acquire("a", "pool")), "a OK 1\n");
  EXPECT_EQ(big->request(req::acquire("b", "pool", 3)), "b QUEUED 1\n");
  dispatcher_->reconfigure({{"splunk", 1}, {"pool", 2}});
  EXPECT_EQ(big->read(), "b ERR TOO_MANY count exceeds the semaphore's max after a reload\n");
}

TEST_F(DispatcherTest, QueuedLinesOffLeavesOutTheQueuedLine) {
  auto holder = session();
  auto quiet = session();
  quiet->state.queued_lines = false;
  EXPECT_EQ(holder->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(quiet->request(req::acquire("q", "splunk")), "");
  EXPECT_EQ(holder->request(req::release("r", "splunk")), "r OK 0\n");
  EXPECT_EQ(quiet->read(), "q OK 2\n");
}

TEST_F(DispatcherTest, IdleTimeoutPolicy) {
  auto v1 = session();
  EXPECT_EQ(dispatcher_->idle_timeout(v1->state), 15000ms);
  auto ace = session(protocol::Dialect::kAce);
  EXPECT_EQ(dispatcher_->idle_timeout(ace->state), 15000ms);  // an unfinished acquire is not activity
  ace->state.ace_stage = AceStage::kQueued;
  EXPECT_EQ(dispatcher_->idle_timeout(ace->state), Clock::duration::zero());
  ace->state.ace_stage = AceStage::kHolding;
  EXPECT_EQ(dispatcher_->idle_timeout(ace->state), 15000ms);
  config_.session_timeout_ms = 5000;  // too short for ACE's 3 s keep-alives
  EXPECT_EQ(dispatcher_->idle_timeout(ace->state), Clock::duration::zero());
  EXPECT_EQ(dispatcher_->idle_timeout(v1->state), 5000ms);
  v1->state.list.emplace();
  EXPECT_EQ(dispatcher_->idle_timeout(v1->state), 5000ms);
  config_.session_timeout_ms = 0;
  EXPECT_EQ(dispatcher_->idle_timeout(v1->state), Dispatcher::kStreamStallTime);
  v1->state.list.reset();
  EXPECT_EQ(dispatcher_->idle_timeout(v1->state), Clock::duration::zero());
}

}  // namespace
}  // namespace netsem::server

namespace netsem::server {
namespace {

// ---- protocol 1.1 ----

// The peer address of a session with the admin right under the default
// admin_networks (127.0.0.0/8, ::1): 127.0.0.1, IPv4-mapped.
constexpr std::array<std::uint8_t, 16> kLoopback = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};

TEST_F(DispatcherTest, OptionQueuedOffSilencesQueuedForLaterRequestsOnly) {
  auto holder = session();
  auto b = session();
  EXPECT_EQ(holder->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(holder->request(req::acquire("a2", "pool", 3)), "a2 OK 2\n");
  EXPECT_EQ(b->request(req::acquire("q1", "splunk")), "q1 QUEUED 1\n");
  EXPECT_EQ(b->request(req::option_queued("o", false)), "o OK\n");
  EXPECT_EQ(b->request(req::acquire("q2", "pool")), "");  // later requests: no QUEUED
  EXPECT_EQ(b->request(req::wait("w", "pool", 1, 100)), "");
  // Every queued request still gets its final answer, the earlier one too.
  EXPECT_EQ(holder->request(req::release("r", "splunk")), "r OK 0\n");
  EXPECT_EQ(b->read(), "q1 OK 3\n");
  advance(100ms);
  EXPECT_EQ(b->read(), "w TIMEOUT\n");
  EXPECT_EQ(b->request("o2 option QUEUED On"), "o2 OK\n");  // case-insensitive, like verbs
  EXPECT_EQ(b->request(req::acquire("q3", "splunk")), "q3 QUEUED 1\n");
  // Raw on purpose: malformed OPTIONs.
  EXPECT_EQ(b->request("o3 OPTION colour off").rfind("o3 ERR BAD_ARG ", 0), 0u);
  EXPECT_EQ(b->request("o4 OPTION queued maybe").rfind("o4 ERR BAD_ARG ", 0), 0u);
  EXPECT_EQ(b->request("o5 OPTION queued").rfind("o5 ERR BAD_REQUEST ", 0), 0u);
  EXPECT_TRUE(b->state.queued_lines);
}

TEST_F(DispatcherTest, HoldersInTheOrderTheyBecameHoldersWithFenceTimeAndLabel) {
  auto a = session();
  auto b = session();
  auto ace = session(protocol::Dialect::kAce);
  EXPECT_EQ(a->request(req::hello("h", "job one")), "h OK netsem 1.1 1\n");
  EXPECT_EQ(a->request(req::acquire("a", "pool")), "a OK 1\n");
  advance(250ms);
  EXPECT_EQ(b->request(req::acquire("b", "pool")), "b OK 2\n");
  ace->ace(AceParser::Token::kAcquire, "pool");
  EXPECT_EQ(ace->read(), "locked|");
  advance(50ms);
  EXPECT_EQ(a->request(req::acquire("a2", "pool", 1, 0)), "a2 TIMEOUT\n");  // full
  EXPECT_EQ(b->request(req::release("r", "pool")), "r OK 1\n");
  EXPECT_EQ(a->request(req::acquire("a3", "pool")), "a3 OK 4\n");  // more for a holder: its first grant's time
  EXPECT_EQ(b->request(req::holders("h", "pool")),
            "h ITEM 1 2 4 300 job%20one\n"
            "h ITEM 3 1 3 50 ace\n"
            "h END 2\n");
  EXPECT_EQ(b->request(req::acquire("b2", "pool")), "b2 QUEUED 1\n");
  advance(10ms);
  ace->ace(AceParser::Token::kRelease);  // grants b2: b holds again, last, from now
  EXPECT_EQ(b->read(), "b2 OK 5\n");
  advance(5ms);
  EXPECT_EQ(b->request(req::holders("h2", "pool")),
            "h2 ITEM 1 2 4 315 job%20one\n"
            "h2 ITEM 2 1 5 5 -\n"
            "h2 END 2\n");
  EXPECT_EQ(b->request(req::holders("h3", "splunk")), "h3 END 0\n");
  EXPECT_EQ(b->request(req::holders("h4", "nothing")), "h4 ERR NOT_FOUND no such semaphore: nothing\n");
  EXPECT_EQ(b->request(req::holders("h5", "$x")).rfind("h5 ERR BAD_NAME ", 0), 0u);
  // Raw on purpose: a field missing.
  EXPECT_EQ(b->request("h6 HOLDERS"), "h6 ERR BAD_REQUEST missing argument\n");
}

TEST_F(DispatcherTest, WaitersInQueueOrderWithWaitedAndTimeLeft) {
  auto holder = session();
  auto b = session();
  auto c = session();
  EXPECT_EQ(holder->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(b->request(req::hello("h", "-")), "h OK netsem 1.1 2\n");  // a label that is "-" shows apart from none
  EXPECT_EQ(b->request(req::acquire("b", "splunk", 1, 5000)), "b QUEUED 1\n");
  advance(1200ms);
  EXPECT_EQ(c->request(req::acquire("c", "splunk")), "c QUEUED 2\n");
  EXPECT_EQ(b->request(req::acquire("b2", "splunk", 1, 300)), "b2 QUEUED 3\n");
  advance(100ms);
  EXPECT_EQ(holder->request(req::waiters("w", "splunk")),
            "w ITEM 2 1 1300 3700 %2D\n"
            "w ITEM 3 1 100 -1 -\n"
            "w ITEM 2 1 100 200 %2D\n"
            "w END 3\n");
  EXPECT_EQ(b->request(req::cancel("x", "b")), "x OK\nb CANCELLED\n");
  EXPECT_EQ(holder->request(req::waiters("w2", "splunk")),
            "w2 ITEM 3 1 100 -1 -\n"
            "w2 ITEM 2 1 100 200 %2D\n"
            "w2 END 2\n");
  EXPECT_EQ(holder->request(req::waiters("w3", "pool")), "w3 END 0\n");
  EXPECT_EQ(holder->request(req::waiters("w4", "nothing")), "w4 ERR NOT_FOUND no such semaphore: nothing\n");
}

TEST_F(DispatcherTest, SessionsListsEveryLiveSessionById) {
  auto c = session();  // id 1
  auto ace = session(protocol::Dialect::kAce);
  auto fresh = session(protocol::Dialect::kUndecided);  // has sent nothing yet
  EXPECT_EQ(c->request(req::hello("h", "cli")), "h OK netsem 1.1 1\n");
  EXPECT_EQ(c->request(req::acquire("a", "pool", 2)), "a OK 1\n");
  EXPECT_EQ(c->request(req::acquire("a2", "splunk")), "a2 OK 2\n");
  ace->ace(AceParser::Token::kAcquire, "splunk");  // queued
  advance(2s);
  EXPECT_EQ(c->request(req::ping("p")), "p PONG\n");
  c->state.last_activity = now_;  // what the network layer does for a complete line
  advance(40ms);
  EXPECT_EQ(c->request(req::sessions("s")),
            "s ITEM 1 127.0.0.1:40001 v1 3 0 2040 40 cli\n"
            "s ITEM 2 127.0.0.1:40002 ace 0 1 2040 2040 ace\n"
            "s ITEM 3 127.0.0.1:40003 v1 0 0 2040 2040 -\n"
            "s END 3\n");
  ace.reset();  // ended: no longer listed
  EXPECT_EQ(c->request(req::sessions("s2")),
            "s2 ITEM 1 127.0.0.1:40001 v1 3 0 2040 40 cli\n"
            "s2 ITEM 3 127.0.0.1:40003 v1 0 0 2040 2040 -\n"
            "s2 END 2\n");
  // Raw on purpose: a field too many.
  EXPECT_EQ(c->request("s3 SESSIONS x"), "s3 ERR BAD_REQUEST too many arguments\n");
}

// HOLDERS, WAITERS and SESSIONS stream in chunks as LIST does: rows in
// order, each once, those gone between chunks left out.
TEST_F(DispatcherTest, ListingsOfWaitersAndSessionsStreamInChunks) {
  auto holder = session();  // 1
  EXPECT_EQ(holder->request(req::acquire("a", "splunk")), "a OK 1\n");
  const std::string label(200, 'x');
  std::vector<std::unique_ptr<TestSession>> waiting;  // 2 .. 51, four requests each
  for (int i = 0; i < 50; ++i) {
    waiting.push_back(session());
    EXPECT_EQ(waiting.back()->request(req::hello("h", label)).substr(0, 5), "h OK ");
    for (int j = 0; j < 4; ++j) waiting.back()->request(req::acquire("q" + std::to_string(j), "splunk"));
  }
  auto asker = session();                           // 52
  std::vector<std::unique_ptr<TestSession>> extra;  // 53 .. 162
  for (int i = 0; i < 110; ++i) {
    extra.push_back(session());
    extra.back()->request(req::hello("h", label));
  }
  // A whole listing, read as the network layer drains it; `between` runs
  // after the first chunk.
  const auto whole = [&](std::string_view request, const std::function<void()>& between) {
    std::string text = asker->request(request);
    EXPECT_TRUE(asker->state.list.has_value()) << "all in one chunk";
    between();
    while (asker->state.list) {
      EXPECT_TRUE(dispatcher_->produce_list(asker->state));
      text += asker->read();
    }
    std::vector<SessionId> ids;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.find(" ITEM ") != std::string::npos) ids.push_back(std::stoull(line.substr(line.find(" ITEM ") + 6)));
    }
    return std::make_pair(ids, text);
  };
  // The last waiter's requests leave the queue before their rows are made.
  auto [ids, text] = whole(req::waiters("w", "splunk"), [&] { waiting.back().reset(); });
  ASSERT_EQ(ids.size(), 196u);
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], 2 + i / 4) << i;
  EXPECT_TRUE(text.ends_with(" " + label + "\nw END 196\n"));
  // SESSIONS: by id, each once; one that ends before its row is left out.
  std::tie(ids, text) = whole(req::sessions("s"), [&] { extra.back().reset(); });
  ASSERT_EQ(ids.size(), 160u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
  EXPECT_EQ(ids.back(), 161u);
  EXPECT_TRUE(text.ends_with("s END 160\n"));
  // HOLDERS of a name nobody holds is one chunk: END at once.
  EXPECT_EQ(asker->request(req::holders("h", "pool")), "h END 0\n");
  EXPECT_FALSE(asker->state.list.has_value());
}

// SESSIONS resumes each chunk after the last id listed, whatever came and
// went meanwhile: the session of the last row (every other chunk), one just ahead of the cursor,
// a new one below the cursor and one above the last id. Every row comes once,
// in id order; none that ended before its row, and all that lived throughout.
TEST_F(DispatcherTest, SessionsResumeAfterTheLastIdAsSessionsComeAndGo) {
  const std::string label(200, 'y');  // about 240 bytes a row: 137 rows a chunk
  std::map<SessionId, std::unique_ptr<TestSession>> live;
  for (SessionId id = 10; id <= 1000; id += 2) {  // even ids only: the odd ones are free
    live[id] = std::make_unique<TestSession>(*dispatcher_, id);
    live[id]->request(req::hello("h", label));
  }
  auto asker = std::make_unique<TestSession>(*dispatcher_, 5000);
  std::set<SessionId> gone;   // ended before their row could be made
  std::set<SessionId> added;  // begun above the cursor: listed
  std::string text = asker->request(req::sessions("s"));
  int chunks = 1;
  const auto last_id = [&text] {
    const std::size_t item = text.rfind(" ITEM ");
    return item == std::string::npos ? SessionId{0} : SessionId{std::stoull(text.substr(item + 6))};
  };
  while (asker->state.list) {
    const SessionId cursor = last_id();
    ASSERT_TRUE(live.contains(cursor)) << cursor;
    if (chunks % 2 == 0) live.erase(cursor);  // the last row's session ends (or stays)
    const auto ahead = live.upper_bound(cursor);
    ASSERT_NE(ahead, live.end());
    gone.insert(ahead->first);
    live.erase(ahead);                                                           // the next one ends before its row
    live[cursor - 1] = std::make_unique<TestSession>(*dispatcher_, cursor - 1);  // below the cursor: not listed
    const SessionId above = 1001 + 2 * chunks;
    live[above] = std::make_unique<TestSession>(*dispatcher_, above);
    added.insert(above);
    ASSERT_TRUE(dispatcher_->produce_list(asker->state));
    text += asker->read();
    ++chunks;
  }
  EXPECT_GE(chunks, 4);
  std::vector<SessionId> ids;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("s ITEM ")) ids.push_back(std::stoull(line.substr(7)));
  }
  EXPECT_TRUE(text.ends_with("s END " + std::to_string(ids.size()) + "\n"));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "a row repeated";
  const std::set<SessionId> listed(ids.begin(), ids.end());
  for (const SessionId id : gone) EXPECT_FALSE(listed.contains(id)) << id << " ended before its row";
  for (const SessionId id : added) EXPECT_TRUE(listed.contains(id)) << id << " begun above the cursor";
  EXPECT_TRUE(listed.contains(5000));
  // Every even id that lived throughout, and no odd one below 1000 (each
  // was begun below the cursor).
  for (SessionId id = 10; id <= 1000; id += 2) {
    if (live.contains(id)) {
      EXPECT_TRUE(listed.contains(id)) << id << " missed";
    }
  }
  for (const SessionId id : listed) EXPECT_FALSE(id < 1000 && id % 2 == 1) << id;
}

TEST_F(DispatcherTest, KickNeedsTheAdminRightBeforeAnythingAboutTheId) {
  auto admin = session();
  auto other = session();
  admin->state.address = kLoopback;
  const std::string denied = "k ERR DENIED KICK needs the admin right (admin_networks)\n";
  EXPECT_EQ(other->request(req::kick("k", 1)), denied);  // no address known: no right
  EXPECT_EQ(other->request(req::kick("k", 99)), denied);
  // Raw on purpose: KICK of what is no session id, or of none.
  EXPECT_EQ(other->request("k KICK abc"), denied);
  EXPECT_EQ(admin->request("k KICK abc"), "k ERR BAD_ARG a session id is a decimal number 1..18446744073709551615\n");
  EXPECT_EQ(admin->request("k KICK 0").rfind("k ERR BAD_ARG ", 0), 0u);
  EXPECT_EQ(admin->request(req::kick("k", 99)), "k ERR NOT_FOUND no such session\n");
  EXPECT_EQ(admin->request("k KICK"), "k ERR BAD_REQUEST missing argument\n");
  // admin_networks is read at each KICK: a reload that drops the network
  // takes the right away from an open session at once.
  auto list = AllowList::parse("10.0.0.0/8");
  ASSERT_TRUE(list.has_value());
  config_.admin_networks = *list;
  EXPECT_EQ(admin->request(req::kick("k", 2)), denied);
  other->state.address = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
  EXPECT_EQ(other->request(req::kick("k", 1)), "k OK\n");
  EXPECT_EQ(admin->ends.size(), 1u);
}

TEST_F(DispatcherTest, KickEndsTheSessionReleasingAndGrantingAtOnceDroppingItsQueue) {
  auto admin = session();
  auto victim = session();
  auto next = session();
  admin->state.address = kLoopback;
  EXPECT_EQ(victim->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(admin->request(req::acquire("f", "pool", 3)), "f OK 2\n");
  EXPECT_EQ(victim->request(req::acquire("q", "pool")), "q QUEUED 1\n");
  EXPECT_EQ(next->request(req::acquire("b", "splunk")), "b QUEUED 1\n");
  EXPECT_EQ(next->request(req::acquire("c", "pool")), "c QUEUED 2\n");
  EXPECT_EQ(admin->request(req::kick("k", 2)), "k OK\n");
  EXPECT_EQ(victim->read(), "* ERR KICKED kicked by session 1 (127.0.0.1:40001)\n");
  EXPECT_EQ(victim->ends, std::vector<std::string>{"kicked by session 1 (127.0.0.1:40001)"});
  EXPECT_EQ(victim->causes, std::vector<stats::EndCause>{stats::EndCause::kKicked});
  EXPECT_EQ(counters_.session_ends[static_cast<std::size_t>(stats::EndCause::kKicked)], 1u);
  EXPECT_FALSE(victim->state.open);
  EXPECT_EQ(next->read(), "b OK 3\n");  // its permit went to the next at once
  // Its queued request is dropped without an answer: the permit the admin
  // gives back goes past it to the next in line.
  EXPECT_EQ(admin->request(req::release("r", "pool")), "r OK 0\n");
  EXPECT_EQ(victim->read(), "");
  EXPECT_EQ(next->read(), "c OK 4\n");
  EXPECT_EQ(admin->request(req::sessions("s")),
            "s ITEM 1 127.0.0.1:40001 v1 2 0 0 0 -\n"
            "s ITEM 3 127.0.0.1:40003 v1 2 0 0 0 -\n"
            "s END 2\n");
  EXPECT_EQ(admin->request(req::kick("k2", 2)), "k2 ERR NOT_FOUND no such session\n");  // ended: not live
}

TEST_F(DispatcherTest, KickClosesAnAceSessionSilentlyAndOneMayKickItself) {
  auto admin = session();
  auto ace = session(protocol::Dialect::kAce);
  auto next = session();
  admin->state.address = kLoopback;
  ace->ace(AceParser::Token::kAcquire, "splunk");
  EXPECT_EQ(ace->read(), "locked|");
  EXPECT_EQ(next->request(req::acquire("b", "splunk")), "b QUEUED 1\n");
  EXPECT_EQ(admin->request(req::kick("k", 2)), "k OK\n");
  EXPECT_EQ(ace->read(), "");  // never a `*` line to ACE
  EXPECT_EQ(ace->ends.size(), 1u);
  EXPECT_EQ(next->read(), "b OK 2\n");
  EXPECT_EQ(admin->request(req::acquire("a", "pool")), "a OK 3\n");
  EXPECT_EQ(admin->request(req::kick("k2", 1)), "k2 OK\n* ERR KICKED kicked by session 1 (127.0.0.1:40001)\n");
  EXPECT_EQ(admin->ends.size(), 1u);
  EXPECT_EQ(next->request(req::get("g", "pool")), "g OK 3 3 0 0 defined\n");
}

// The lease wait after a restart: nothing is granted before its end, the
// queue is granted in FIFO order at its end, a try times out meanwhile,
// STATS shows what is left; lease_wait_after() decides from the run file.
TEST_F(DispatcherTest, GrantsHeldUntilTheLeaseWaitEndsThenInFifoOrder) {
  dispatcher_->hold_grants_until(now_ + 2s);
  auto a = session();
  auto b = session();
  EXPECT_EQ(a->request(req::acquire("a1", "pool", 2)), "a1 QUEUED 1\n");
  EXPECT_EQ(b->request(req::acquire("b1", "pool", 1, 0)), "b1 TIMEOUT\n");
  EXPECT_EQ(b->request(req::acquire("b2", "pool", 2)), "b2 QUEUED 2\n");
  EXPECT_EQ(dispatcher_->next_deadline(), now_ + 2s);
  EXPECT_EQ(dispatcher_->stats_snapshot().gauges.lease_wait_ms, 2000u);
  advance(1999ms);
  EXPECT_EQ(a->read(), "");
  advance(1ms);
  EXPECT_EQ(a->read(), "a1 OK 1\n");
  EXPECT_EQ(b->read(), "");  // 2 of 3 are held: b2 waits for a1's release
  EXPECT_EQ(dispatcher_->stats_snapshot().gauges.lease_wait_ms, 0u);
  EXPECT_EQ(dispatcher_->next_deadline(), std::nullopt);
  EXPECT_EQ(a->request(req::release("r", "pool", 2)), "r OK 1\n");
  EXPECT_EQ(b->read(), "b2 OK 2\n");

  using Run = journal_format::RunRecord;
  EXPECT_EQ(Dispatcher::lease_wait_after({Run::State::kNone, 0, 0}, 15000), 0ms);
  EXPECT_EQ(Dispatcher::lease_wait_after({Run::State::kStopped, 60000, 0}, 15000), 0ms);
  EXPECT_EQ(Dispatcher::lease_wait_after({Run::State::kStopped, 6000, 2}, 15000), 15000ms);
  EXPECT_EQ(Dispatcher::lease_wait_after({Run::State::kRunning, 60000, 0}, 15000), 60000ms);
  EXPECT_EQ(Dispatcher::lease_wait_after({Run::State::kRunning, 0, 0}, 0), 0ms);  // leases off in both runs
}

// --- authentication (docs/security.md) ---

// A client certificate's subject listed in [tls_subjects] gives its rights
// without AUTH; an unlisted one, or none, must AUTH; a reload re-maps the
// subject, and ends the session when it is no longer listed.
TEST_F(DispatcherTest, TlsSubjectsGiveRightsAndAReloadRevokesThem) {
  config_.auth.subjects.push_back({"CN=w1,O=Acme", auth::parse_rights("acquire,read jobs/").value()});
  auto listed = session();
  listed->state.tls_subject = "CN=w1,O=Acme";
  auto unlisted = session();
  unlisted->state.tls_subject = "CN=w2,O=Acme";
  auto plain = session();
  EXPECT_EQ(listed->request(req::acquire("a", "jobs/x")), "a OK 1\n");
  EXPECT_EQ(listed->request(req::acquire("b", "pool")), "b ERR DENIED ACQUIRE needs the acquire right: pool\n");
  EXPECT_EQ(unlisted->request(req::acquire("a", "jobs/x")), "a ERR AUTH authenticate first: AUTH <token>\n");
  EXPECT_EQ(plain->request("g GET jobs/x"), "g ERR AUTH authenticate first: AUTH <token>\n");
  // Re-mapped with new rights.
  config_.auth.subjects[0].rights = auth::parse_rights("acquire,signal jobs/").value();
  EXPECT_EQ(dispatcher_->reauthorize(true), 0u);
  EXPECT_EQ(listed->request("c CREATE jobs/y 1"), "c OK\n");
  // No longer listed: ended, its permit back.
  config_.auth.subjects[0].subject = "CN=other";
  EXPECT_EQ(dispatcher_->reauthorize(true), 1u);
  EXPECT_EQ(listed->read(), "* ERR KICKED the session's certificate subject was revoked by a reload\n");
  ASSERT_EQ(listed->causes.size(), 1u);
  EXPECT_EQ(listed->causes[0], stats::EndCause::kKicked);
  EXPECT_TRUE(unlisted->ends.empty());  // never authenticated: left alone
}

// A reload that turns authentication on ends the sessions that had the
// default rights (their permits go back); one that turns it off gives every
// session the default rights.
TEST_F(DispatcherTest, AReloadThatRequiresTokensEndsDefaultSessions) {
  auto a = session();
  auto b = session();
  EXPECT_EQ(a->request(req::acquire("a", "splunk")), "a OK 1\n");
  EXPECT_EQ(b->request(req::acquire("b", "splunk")), "b QUEUED 1\n");
  config_.auth.subjects.push_back({"CN=b", auth::parse_rights("acquire").value()});
  b->state.tls_subject = "CN=b";
  b->state.rights = config_.auth.subjects[0].rights;  // as its first request after the reload would map it
  EXPECT_EQ(dispatcher_->reauthorize(false), 1u);
  EXPECT_EQ(a->read(), "* ERR KICKED authentication is now required: reconnect and AUTH\n");
  EXPECT_EQ(b->read(), "b OK 2\n");  // a's permit went to b
  config_.auth.subjects.clear();
  EXPECT_EQ(dispatcher_->reauthorize(true), 0u);
  EXPECT_FALSE(b->state.rights.has_value());  // the default rights again
  EXPECT_EQ(b->request("p POST pool"), "p ERR OVERFLOW value would exceed max: pool\n");
}

// AUTH through the real TokenVerifier: the check runs on its thread, the
// answer comes back through the loop's post, requests wait behind it.
TEST_F(DispatcherTest, AuthIsCheckedOffTheLoopAndAnsweredThroughIt) {
  const std::string hash = auth::hash_token("t0ken", auth::HashCost::kMinimum).value();
  config_.auth.tokens.push_back({"ci", hash, auth::parse_rights("read").value()});
  auth::TokenVerifier verifier;
  verifier.set_tokens(config_.auth.tokens);
  std::mutex mutex;
  std::condition_variable posted;
  std::vector<std::function<void()>> loop;  // the test's event loop
  dispatcher_->set_token_verifier(&verifier, [&](std::function<void()> work) {
    std::lock_guard lock(mutex);
    loop.push_back(std::move(work));
    posted.notify_all();
  });
  const auto run_loop = [&] {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(posted.wait_for(lock, 30s, [&] { return !loop.empty(); }));
    auto work = std::move(loop);
    loop.clear();
    lock.unlock();
    for (auto& w : work) w();
  };
  auto a = session();
  EXPECT_EQ(a->request("x AUTH t0ken"), "");  // being checked
  EXPECT_TRUE(a->state.auth_pending);
  EXPECT_TRUE(a->state.input_held());
  run_loop();
  EXPECT_FALSE(a->state.auth_pending);
  EXPECT_EQ(a->read(), "x OK read\n");
  EXPECT_EQ(a->request("s STATS").substr(0, 5), "s OK ");
  EXPECT_EQ(a->request("y AUTH t0ken"), "y OK read\n");  // known now: answered at once
  for (int i = 1; i <= 4; ++i) {
    a->request("z AUTH wrong" + std::to_string(i));
    run_loop();
    EXPECT_EQ(a->read(), "z ERR AUTH the token is not valid\n") << i;
  }
  EXPECT_TRUE(a->ends.empty());
  a->request("z AUTH wrong5");
  run_loop();
  EXPECT_EQ(a->read(), "z ERR AUTH the token is not valid\n* ERR AUTH too many failed AUTH\n");
  ASSERT_EQ(a->ends.size(), 1u);
  EXPECT_EQ(counters_.auth_failures_total, 5u);
}

// Proposed 1.2: LEASE tells the session timeout to every session, whatever
// its rights: without tokens, before AUTH while tokens are required, after
// an AUTH whose token has no read right (STATS is DENIED to it), and 0 when
// the server has no session timeout.
TEST_F(DispatcherTest, LeaseAnswersTheSessionTimeoutToEverySession) {
  auto open = session();
  EXPECT_EQ(open->request("l LEASE"), "l OK 15000\n");
  EXPECT_EQ(open->request("l LEASE now"), "l ERR BAD_REQUEST too many arguments\n");
  config_.session_timeout_ms = 0;
  EXPECT_EQ(open->request("l lease"), "l OK 0\n");
  config_.session_timeout_ms = 2000;

  const std::string hash = auth::hash_token("w0rker", auth::HashCost::kMinimum).value();
  config_.auth.tokens.push_back({"worker", hash, auth::parse_rights("acquire").value()});
  auth::TokenVerifier verifier;
  verifier.set_tokens(config_.auth.tokens);
  std::mutex mutex;
  std::condition_variable posted;
  std::vector<std::function<void()>> loop;  // the test's event loop
  dispatcher_->set_token_verifier(&verifier, [&](std::function<void()> work) {
    std::lock_guard lock(mutex);
    loop.push_back(std::move(work));
    posted.notify_all();
  });
  auto a = session();
  EXPECT_EQ(a->request(req::stats("s")), "s ERR AUTH authenticate first: AUTH <token>\n");
  EXPECT_EQ(a->request("l LEASE"), "l OK 2000\n");  // before AUTH
  EXPECT_EQ(a->request("x AUTH w0rker"), "");       // being checked
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(posted.wait_for(lock, 30s, [&] { return !loop.empty(); }));
  }
  for (auto& work : std::exchange(loop, {})) work();
  EXPECT_EQ(a->read(), "x OK acquire\n");
  EXPECT_EQ(a->request(req::stats("s")), "s ERR DENIED STATS needs the read right on every name (no prefix)\n");
  EXPECT_EQ(a->request("l2 LEASE"), "l2 OK 2000\n");  // after AUTH, without the read right
}

// The verifier's queue full (a flood of unknown tokens) is a server limit,
// not the token's failure: a retryable ERR LIMIT, counted in limited_total,
// never in auth_failures_total nor towards the five failures that close a
// session; once the queue drains, the same token is checked and accepted.
TEST_F(DispatcherTest, AFullVerifierQueueAnswersLimitNotAFailure) {
  const std::string hash = auth::hash_token("g00d", auth::HashCost::kMinimum).value();
  config_.auth.tokens.push_back({"good", hash, auth::parse_rights("acquire").value()});
  auth::TokenVerifier verifier;
  verifier.set_tokens(config_.auth.tokens);
  // The verifier's thread is held in the first check's `done`: nothing
  // leaves the queue until the test lets it.
  std::mutex mutex;
  std::condition_variable changed;
  bool hold = true;
  ASSERT_TRUE(verifier.verify("flood-0", [&](auth::TokenVerifier::Outcome) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return !hold; });
  }));
  for (std::size_t i = 1; i < auth::TokenVerifier::kMaxQueued; ++i) {
    ASSERT_TRUE(verifier.verify("flood-" + std::to_string(i), [](auth::TokenVerifier::Outcome) {})) << i;
  }
  std::vector<std::function<void()>> loop;  // the test's event loop
  dispatcher_->set_token_verifier(&verifier, [&](std::function<void()> work) {
    std::lock_guard lock(mutex);
    loop.push_back(std::move(work));
    changed.notify_all();
  });
  auto a = session();
  for (int i = 1; i <= 6; ++i) {
    EXPECT_EQ(a->request("x AUTH g00d"), "x ERR LIMIT too many token checks waiting at the server; try again later\n")
        << i;
  }
  EXPECT_FALSE(a->state.auth_pending);
  EXPECT_TRUE(a->ends.empty());  // six LIMITs, no failure: still open
  EXPECT_EQ(counters_.auth_failures_total, 0u);
  EXPECT_EQ(counters_.limited_total, 6u);
  EXPECT_EQ(a->request(req::acquire("a", "splunk")), "a ERR AUTH authenticate first: AUTH <token>\n");

  {
    std::lock_guard lock(mutex);
    hold = false;
  }
  changed.notify_all();
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (verifier.queued() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);  // polling a condition, bounded
  }
  ASSERT_EQ(verifier.queued(), 0u);
  EXPECT_EQ(a->request("y AUTH g00d"), "");  // queued now
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, 30s, [&] { return !loop.empty(); }));
  }
  for (auto& work : std::exchange(loop, {})) work();
  EXPECT_EQ(a->read(), "y OK acquire\n");
  EXPECT_EQ(a->request(req::acquire("a", "splunk")), "a OK 1\n");
}

}  // namespace
}  // namespace netsem::server
