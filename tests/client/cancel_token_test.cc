// Tests of cancel_token.h on its own (the calls it cancels are tested in
// client_test.cc and local_semaphores_test.cc): the flag, its copies, and the
// waits cancel() wakes.
#include "netsem/cancel_token.h"

#include <gtest/gtest.h>

#include <thread>

#include "client/cancel_state.h"

namespace netsem {
namespace {

TEST(CancelToken, FiresOnceForEveryCopy) {
  CancelToken token;
  const CancelToken copy = token;  // the copy is the point
  EXPECT_FALSE(token.cancelled());
  EXPECT_FALSE(copy.cancelled());
  token.cancel();
  EXPECT_TRUE(token.cancelled());
  EXPECT_TRUE(copy.cancelled());
  token.cancel();  // idempotent
  EXPECT_TRUE(copy.cancelled());
}

TEST(CancelToken, WakesTheRegisteredWaitsFromAnotherThread) {
  CancelToken token;
  const auto& state = client::CancelTokenAccess::state(token);
  int woken = 0;
  {
    std::lock_guard lock(state->mutex);
    state->wakers.emplace(1, [&woken] { ++woken; });
    state->wakers.emplace(2, [&woken] { ++woken; });
  }
  std::thread canceller([&token] { token.cancel(); });
  canceller.join();
  EXPECT_EQ(woken, 2);
  EXPECT_TRUE(state->cancelled.load());
}

}  // namespace
}  // namespace netsem
