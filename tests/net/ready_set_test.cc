// ReadySet (net/ready_set.h): level-triggered readiness of many sockets
// through one descriptor in Asio's loop, over socket pairs: a socket stays
// reported while its handler says it is unread, one read to the end is
// reported again when more arrives (during a round or after), interest
// changes take effect whether made during a round or between rounds, a
// removed socket is no longer reported, more ready sockets than one round
// takes are all served, and stop() or the set's end lets the io_context run
// out.
#include "net/ready_set.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace netsem::server {
namespace {

using namespace std::chrono_literals;

// A connected pair of non-blocking stream sockets, closed on destruction.
struct Pair {
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    ours = fds[0];
    theirs = fds[1];
  }
  ~Pair() {
    ::close(ours);
    ::close(theirs);
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  void send(const char* text) const { ASSERT_GT(::write(theirs, text, std::strlen(text)), 0); }
  void drain() const {
    char buffer[256];
    while (::read(ours, buffer, sizeof buffer) > 0) {
    }
  }
  int ours = -1;
  int theirs = -1;
};

class ReadySetTest : public ::testing::Test {
 protected:
  ReadySetTest() {
    auto opened = ReadySet::open(io_);
    EXPECT_TRUE(opened) << opened.status().to_string();
    if (opened) set_ = std::move(*opened);
  }
  void start() {
    set_->start([this](std::uint64_t key, std::uint32_t events) { return on_ready(key, events); },
                [this] { ++rounds_; });
  }
  // Runs the loop until `rounds` more rounds happened (or 2 s passed).
  void run_rounds(int rounds) {
    const int until = rounds_ + rounds;
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (rounds_ < until && std::chrono::steady_clock::now() < deadline) io_.run_one_for(100ms);
  }
  // Runs the loop for a while; for "nothing is reported".
  void run_idle(std::chrono::milliseconds time = 100ms) { io_.run_for(time); }

  // Counts the report; reads nothing, and says so (the socket stays ready).
  std::function<bool(std::uint64_t, std::uint32_t)> on_ready = [this](std::uint64_t key, std::uint32_t) {
    ++reports_[key];
    return true;
  };
  asio::io_context io_;
  std::unique_ptr<ReadySet> set_;
  std::map<std::uint64_t, int> reports_;
  int rounds_ = 0;
};

TEST_F(ReadySetTest, AnUnreadSocketIsReportedRoundAfterRoundUntilRead) {
  Pair pair;
  ASSERT_TRUE(set_->add(pair.ours, 7, ReadySet::kRead));
  start();
  run_idle();
  EXPECT_EQ(rounds_, 0);                    // nothing ready: no round
  pair.send("a ACQUIRE x\nb ACQUIRE y\n");  // two requests in one segment
  run_rounds(3);
  EXPECT_EQ(reports_[7], 3);  // level-triggered: no re-arming, reported while unread
  pair.drain();
  const int rounds = rounds_;
  run_idle();
  EXPECT_LE(rounds_, rounds + 1);  // at most the round already under way
  reports_.clear();
  pair.send("c PING\n");
  run_rounds(1);
  EXPECT_EQ(reports_[7], 1);
}

// A round that reads everything ends with no re-arm; what arrives later,
// during a round or after it, still starts the next one.
TEST_F(ReadySetTest, ASocketReadToTheEndIsReportedAgainWhenMoreArrives) {
  Pair pair;
  ASSERT_TRUE(set_->add(pair.ours, 3, ReadySet::kRead));
  bool send_during_round = false;
  on_ready = [&](std::uint64_t key, std::uint32_t) {
    ++reports_[key];
    pair.drain();
    if (send_during_round) {
      send_during_round = false;
      pair.send("late\n");  // after this round's wait looked at the set
    }
    return false;
  };
  start();
  pair.send("a PING\n");
  run_rounds(1);
  EXPECT_EQ(reports_[3], 1);
  run_idle();
  EXPECT_EQ(reports_[3], 1);  // nothing new: no round
  send_during_round = true;
  pair.send("b PING\n");
  run_rounds(2);
  EXPECT_EQ(reports_[3], 3);  // b, then what came during its round
  run_idle();
  EXPECT_EQ(reports_[3], 3);
}

// A round that widens a socket's interest (here: from output to input, with
// input already waiting) leaves the set ready with no wake-up to come: the
// next round must still report it, as must a change between rounds.
TEST_F(ReadySetTest, AnInterestWidenedDuringARoundIsReported) {
  Pair pair;
  pair.send("waiting\n");
  ASSERT_TRUE(set_->add(pair.ours, 5, ReadySet::kWrite));  // writable at once
  std::vector<std::uint32_t> seen;
  on_ready = [&](std::uint64_t, std::uint32_t events) {
    seen.push_back(events & (EPOLLIN | EPOLLOUT));
    if ((events & EPOLLOUT) != 0) {
      EXPECT_TRUE(set_->modify(pair.ours, 5, ReadySet::kRead));
    }
    if ((events & EPOLLIN) != 0) pair.drain();
    return false;
  };
  start();
  run_rounds(2);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], static_cast<std::uint32_t>(EPOLLOUT));
  EXPECT_EQ(seen[1], static_cast<std::uint32_t>(EPOLLIN));
}

// The set may go while its operation is queued in Asio's reactor: the
// operation is cancelled and frees itself; the loop runs out.
TEST_F(ReadySetTest, DestroyedWhileWaitingTheLoopRunsOut) {
  Pair pair;
  ASSERT_TRUE(set_->add(pair.ours, 1, ReadySet::kRead));
  start();
  run_idle(20ms);
  set_->remove(pair.ours);
  set_.reset();
  pair.send("x\n");
  const auto began = std::chrono::steady_clock::now();
  io_.run_for(2s);
  EXPECT_LT(std::chrono::steady_clock::now() - began, 1s);
  EXPECT_EQ(rounds_, 0);
}

TEST_F(ReadySetTest, InterestChangesTakeEffect) {
  Pair pair;
  ASSERT_TRUE(set_->add(pair.ours, 1, 0));
  std::uint32_t seen = 0;
  on_ready = [&](std::uint64_t, std::uint32_t events) {
    seen |= events;
    return false;  // says nothing is left: a wider interest must still be reported
  };
  start();
  pair.send("x\n");
  run_idle();
  EXPECT_EQ(seen, 0u);  // neither input nor output watched
  ASSERT_TRUE(set_->modify(pair.ours, 1, ReadySet::kWrite));
  run_rounds(1);
  EXPECT_EQ(seen & (EPOLLOUT | EPOLLIN), static_cast<std::uint32_t>(EPOLLOUT));
  ASSERT_TRUE(set_->modify(pair.ours, 1, ReadySet::kRead));
  seen = 0;
  run_rounds(1);  // the input sent while not watched
  EXPECT_EQ(seen & (EPOLLOUT | EPOLLIN), static_cast<std::uint32_t>(EPOLLIN));
}

TEST_F(ReadySetTest, ARemovedSocketIsNoLongerReported) {
  Pair first;
  Pair second;
  ASSERT_TRUE(set_->add(first.ours, 1, ReadySet::kRead));
  ASSERT_TRUE(set_->add(second.ours, 2, ReadySet::kRead));
  start();
  set_->remove(first.ours);
  first.send("x\n");
  second.send("y\n");
  run_rounds(1);
  EXPECT_EQ(reports_.count(1), 0u);
  EXPECT_EQ(reports_[2], 1);
  EXPECT_FALSE(set_->modify(first.ours, 1, ReadySet::kRead));  // the kernel no longer knows it there
}

TEST_F(ReadySetTest, MoreReadySocketsThanOneRoundTakesAreAllServed) {
  constexpr int kSockets = ReadySet::kMaxEvents + 44;
  std::vector<std::unique_ptr<Pair>> pairs;
  for (int i = 0; i < kSockets; ++i) {
    pairs.push_back(std::make_unique<Pair>());
    ASSERT_TRUE(set_->add(pairs.back()->ours, static_cast<std::uint64_t>(i), ReadySet::kRead));
    pairs.back()->send("p PING\n");
  }
  on_ready = [&](std::uint64_t key, std::uint32_t) {
    ++reports_[key];
    pairs[key]->drain();
    return false;
  };
  start();
  run_rounds(2);
  EXPECT_EQ(reports_.size(), static_cast<std::size_t>(kSockets));
  for (const auto& [key, count] : reports_) EXPECT_EQ(count, 1) << key;
}

TEST_F(ReadySetTest, StopLetsTheLoopRunOut) {
  Pair pair;
  ASSERT_TRUE(set_->add(pair.ours, 1, ReadySet::kRead));
  start();
  set_->stop();
  pair.send("x\n");
  const auto began = std::chrono::steady_clock::now();
  io_.run_for(2s);  // returns at once when nothing is left to wait for
  EXPECT_LT(std::chrono::steady_clock::now() - began, 1s);
  EXPECT_EQ(rounds_, 0);
}

}  // namespace
}  // namespace netsem::server
