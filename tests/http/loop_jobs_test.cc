// LoopJobs (src/server/loop_jobs.h): work from another thread runs on the
// event loop's thread and its value comes back; a loop that does not run
// makes callers wait no longer than their bound; the queue is bounded; a
// close answers every waiter at once; post() runs work without a waiter, in
// order; the queue costs one descriptor.
#include "server/loop_jobs.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

namespace netsem::server {
namespace {

using namespace std::chrono_literals;

TEST(LoopJobs, RunsOnTheLoopThreadAndReturnsTheValue) {
  asio::io_context io;
  std::atomic<int> turns{0};
  LoopJobs jobs(io, 8, [&] { ++turns; });
  ASSERT_TRUE(jobs.start());
  std::thread::id loop_thread;
  std::thread loop([&] {
    loop_thread = std::this_thread::get_id();
    io.run();
  });
  std::thread::id ran_on;
  auto value = jobs.call<int>(
      [&] {
        ran_on = std::this_thread::get_id();
        return 42;
      },
      5s);
  ASSERT_TRUE(value) << value.status().to_string();
  EXPECT_EQ(*value, 42);
  EXPECT_EQ(ran_on, loop_thread);
  // Many callers at once, each its own answer.
  std::vector<std::thread> callers;
  std::atomic<int> right{0};
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&, i] {
      for (int n = 0; n < 50; ++n) {
        auto result = jobs.call<int>([i, n] { return i * 1000 + n; }, 5s);
        if (result && *result == i * 1000 + n) ++right;
      }
    });
  }
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(right.load(), 400);
  asio::post(io, [&] { jobs.close(); });  // close on the loop thread; the loop then runs out
  loop.join();
  // after_jobs ran after each batch (after its callers had their values).
  EXPECT_GE(turns.load(), 1);
}

TEST(LoopJobs, ALoopThatDoesNotRunIsBusyAfterTheBoundAndTheQueueIsBounded) {
  asio::io_context io;  // never run
  LoopJobs jobs(io, 2, nullptr);
  ASSERT_TRUE(jobs.start());
  const auto began = std::chrono::steady_clock::now();
  auto first = jobs.call<int>([] { return 1; }, 100ms);
  const auto waited = std::chrono::steady_clock::now() - began;
  ASSERT_FALSE(first);
  EXPECT_EQ(first.status().code(), StatusCode::kBusy);
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 2s);
  // The timed-out job stays queued: one more fits, then the bound refuses at once.
  EXPECT_FALSE(jobs.call<int>([] { return 2; }, 10ms));
  const auto refused_at = std::chrono::steady_clock::now();
  auto refused = jobs.call<int>([] { return 3; }, 5s);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.status().code(), StatusCode::kBusy);
  EXPECT_NE(refused.status().message().find("too many"), std::string::npos) << refused.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - refused_at, 1s);
}

TEST(LoopJobs, CloseAnswersEveryWaiterAtOnceAndRefusesNewJobs) {
  asio::io_context io;  // never run: this thread stands for the loop's
  LoopJobs jobs(io, 8, nullptr);
  ASSERT_TRUE(jobs.start());
  std::atomic<int> stopped{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&] {
      auto result = jobs.call<int>([] { return 0; }, 30s);
      if (!result && result.status().code() == StatusCode::kShutdown) ++stopped;
    });
  }
  std::this_thread::sleep_for(100ms);  // let them queue (not a synchronisation: a later one is refused the same way)
  const auto began = std::chrono::steady_clock::now();
  jobs.close();
  for (auto& waiter : waiters) waiter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - began, 5s);
  EXPECT_EQ(stopped.load(), 4);
  auto late = jobs.call<int>([] { return 0; }, 5s);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.status().code(), StatusCode::kShutdown);
}

// Descriptors this process has open now.
std::size_t open_descriptors() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

TEST(LoopJobs, PostRunsOnTheLoopInOrderAndTheQueueCostsOneDescriptor) {
  asio::io_context io;
  std::atomic<int> turns{0};
  const asio::posix::stream_descriptor reactor(io);  // Asio opens its reactor's descriptors now
  const std::size_t before = open_descriptors();
  LoopJobs jobs(io, 1000, [&] { ++turns; });
  ASSERT_TRUE(jobs.start());
  // A process near its RLIMIT_NOFILE must still reach the descriptor plan
  // (ServerDescriptors.LimitTooLowForOneSessionRefusesToStart).
  EXPECT_EQ(open_descriptors(), before + 1);
  std::thread::id loop_thread;
  std::thread loop([&] {
    loop_thread = std::this_thread::get_id();
    io.run();
  });
  std::vector<int> seen;  // the loop's only
  std::atomic<bool> wrong_thread{false};
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(jobs.post([&, i] {
      if (std::this_thread::get_id() != loop_thread) wrong_thread = true;
      seen.push_back(i);
    }));
  }
  // A call queued after them runs after them.
  auto count = jobs.call<std::size_t>([&] { return seen.size(); }, 5s);
  ASSERT_TRUE(count) << count.status().to_string();
  EXPECT_EQ(*count, 500U);
  EXPECT_FALSE(wrong_thread.load());
  asio::post(io, [&] { jobs.close(); });
  loop.join();
  for (int i = 0; i < 500; ++i) ASSERT_EQ(seen[i], i);
  EXPECT_FALSE(jobs.post([] {}));
  EXPECT_EQ(open_descriptors(), before);  // its descriptor is closed
}

}  // namespace
}  // namespace netsem::server
