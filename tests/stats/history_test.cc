// stats::History: one sample per interval, the last kCapacity, oldest first.
#include "stats/history.h"

#include <gtest/gtest.h>

#include <thread>

namespace netsem::stats {
namespace {

Snapshot with_grants(std::uint64_t grants) {
  Snapshot snapshot;
  snapshot.table.grants = grants;
  snapshot.gauges.waiters = grants * 2;
  return snapshot;
}

TEST(History, KeepsOneSamplePerInterval) {
  History history;
  const std::int64_t step = History::kInterval.count();
  EXPECT_TRUE(history.record(1000, with_grants(1)));
  EXPECT_FALSE(history.record(1000 + step - 1, with_grants(2)));  // too soon
  EXPECT_TRUE(history.record(1000 + step, with_grants(3)));
  EXPECT_FALSE(history.record(500, with_grants(4)));  // the clock stepped back
  const auto samples = history.samples();
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].at_ms, 1000);
  EXPECT_EQ(samples[0].grants, 1u);
  EXPECT_EQ(samples[0].waiting, 2u);
  EXPECT_EQ(samples[1].at_ms, 1000 + step);
  EXPECT_EQ(samples[1].grants, 3u);
}

TEST(History, DropsTheOldestPastItsCapacity) {
  History history;
  const std::int64_t step = History::kInterval.count();
  const std::size_t total = History::kCapacity + 7;
  for (std::size_t i = 0; i < total; ++i)
    ASSERT_TRUE(history.record(static_cast<std::int64_t>(i) * step, with_grants(i)));
  const auto samples = history.samples();
  ASSERT_EQ(samples.size(), History::kCapacity);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(samples[i].grants, i + 7) << i;
    EXPECT_EQ(samples[i].at_ms, static_cast<std::int64_t>(i + 7) * step);
  }
}

TEST(History, ReadsWhileRecordingFromAnotherThread) {
  History history;
  const std::int64_t step = History::kInterval.count();
  std::thread writer([&] {
    for (std::int64_t i = 0; i < 2000; ++i) history.record(i * step, with_grants(static_cast<std::uint64_t>(i)));
  });
  for (int i = 0; i < 200; ++i) {
    const auto samples = history.samples();
    for (std::size_t j = 1; j < samples.size(); ++j) ASSERT_EQ(samples[j].at_ms, samples[j - 1].at_ms + step);
  }
  writer.join();
  EXPECT_EQ(history.samples().size(), History::kCapacity);
}

}  // namespace
}  // namespace netsem::stats
