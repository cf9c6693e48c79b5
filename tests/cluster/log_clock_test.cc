// LogClock (src/cluster/log_clock.h): log time follows the steady clock from
// a wall-clock anchor taken once; a step of the wall clock changes nothing;
// behind the log's own time it moves forward to it and goes on from there.
#include "cluster/log_clock.h"

#include <gtest/gtest.h>

namespace netsem::cluster {
namespace {

TEST(LogClock, FollowsTheSteadyClockFromAWallClockAnchorTakenOnce) {
  std::int64_t steady = 5'000;
  std::int64_t wall = 1'700'000'000'000;
  LogClock clock([&] { return steady; }, [&] { return wall; });
  EXPECT_EQ(clock.now(0), 1'700'000'000'000);
  steady += 1'500;
  EXPECT_EQ(clock.now(0), 1'700'000'001'500);
  // A step of the wall clock, forward or back: log time goes on as before.
  wall += 20'000;
  steady += 100;
  EXPECT_EQ(clock.now(0), 1'700'000'001'600);
  wall -= 60'000;
  steady += 100;
  EXPECT_EQ(clock.now(0), 1'700'000'001'700);
}

TEST(LogClock, BehindTheLogsTimeItMovesForwardToItAndGoesOnFromThere) {
  std::int64_t steady = 0;
  LogClock clock([&] { return steady; }, [] { return std::int64_t{1'000}; });
  // Another leader's clock ran ahead: the log is at 9,000.
  EXPECT_EQ(clock.now(9'000), 9'000);
  steady += 250;
  EXPECT_EQ(clock.now(9'000), 9'250);  // from there, not back to 1,250
  // Ahead of the log: its own time.
  steady += 50;
  EXPECT_EQ(clock.now(9'100), 9'300);
}

}  // namespace
}  // namespace netsem::cluster
