// Unit tests of stats::Histogram: bucket bounds, observations, copies.
#include "stats/histogram.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace netsem::stats {
namespace {

TEST(Histogram, BucketOfIsTheSmallestBoundAtOrAboveTheValue) {
  const std::vector<std::pair<std::uint64_t, std::size_t>> cases = {
      {0, 0},
      {1, 0},
      {2, 1},
      {3, 2},
      {4, 2},
      {5, 3},
      {8, 3},
      {9, 4},
      {1000, 10},
      {1024, 10},
      {1025, 11},
      {1ULL << 39, 39},
      {(1ULL << 39) + 1, Histogram::kBounds},
      {1ULL << 63, Histogram::kBounds},
      {std::numeric_limits<std::uint64_t>::max(), Histogram::kBounds},
  };
  for (const auto& [value, bucket] : cases) EXPECT_EQ(Histogram::bucket_of(value), bucket) << value;
}

TEST(Histogram, EveryValueNearABoundLandsWhereItsBoundsSay) {
  // Around every power of two (and 0), the bucket is the first whose bound
  // is >= the value, and the bound before it is below the value.
  for (int exponent = 0; exponent < 64; ++exponent) {
    const std::uint64_t power = std::uint64_t{1} << exponent;
    for (const std::uint64_t value : {power - 1, power, power + 1}) {
      const std::size_t i = Histogram::bucket_of(value);
      ASSERT_LE(i, Histogram::kBounds);
      if (i < Histogram::kBounds) {
        EXPECT_LE(value, Histogram::bound(i)) << value;
      } else {
        EXPECT_GT(value, Histogram::bound(Histogram::kBounds - 1)) << value;
      }
      if (i > 0) {
        EXPECT_GT(value, Histogram::bound(i - 1)) << value;
      }
    }
  }
}

TEST(Histogram, ObserveCountsSumsAndBuckets) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.sum(), 0u);
  for (const std::uint64_t v : {0, 1, 3, 4, 100}) h.observe(v);
  h.observe(std::uint64_t{1} << 50);
  EXPECT_EQ(h.count(), 6u);
  EXPECT_EQ(h.sum(), 108u + (std::uint64_t{1} << 50));
  EXPECT_EQ(h.bucket(0), 2u);  // 0 and 1
  EXPECT_EQ(h.bucket(1), 0u);
  EXPECT_EQ(h.bucket(2), 2u);  // 3 and 4
  EXPECT_EQ(h.bucket(7), 1u);  // 100 <= 128
  EXPECT_EQ(h.bucket(Histogram::kBounds), 1u);
}

TEST(Histogram, ACopyIsASnapshotThatLaterObservationsLeaveAlone) {
  Histogram live;
  live.observe(10);
  const Histogram copy = live;
  live.observe(20);
  EXPECT_EQ(copy.count(), 1u);
  EXPECT_EQ(copy.sum(), 10u);
  EXPECT_EQ(live.count(), 2u);
  EXPECT_NE(copy, live);
}

}  // namespace
}  // namespace netsem::stats
