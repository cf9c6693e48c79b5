// ReadySet (net/ready_set.h): level-triggered readiness of many sockets
// through one descriptor in Asio's loop, over socket pairs: a socket stays
// reported while unread, interest changes take effect, a removed socket is
// no longer reported, more ready sockets than one round takes are all
// served, and stop() lets the io_context run out.
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
    set_->start([this](std::uint64_t key, std::uint32_t events) { on_ready(key, events); }, [this] { ++rounds_; });
  }
  // Runs the loop until `rounds` more rounds happened (or 2 s passed).
  void run_rounds(int rounds) {
    const int until = rounds_ + rounds;
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (rounds_ < until && std::chrono::steady_clock::now() < deadline) io_.run_one_for(100ms);
  }
  // Runs the loop for a while; for "nothing is reported".
  void run_idle(std::chrono::milliseconds time = 100ms) { io_.run_for(time); }

  std::function<void(std::uint64_t, std::uint32_t)> on_ready = [this](std::uint64_t key, std::uint32_t) {
    ++reports_[key];
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

TEST_F(ReadySetTest, InterestChangesTakeEffect) {
  Pair pair;
  ASSERT_TRUE(set_->add(pair.ours, 1, 0));
  std::uint32_t seen = 0;
  on_ready = [&](std::uint64_t, std::uint32_t events) { seen |= events; };
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
