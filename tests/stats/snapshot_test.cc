// Unit tests of snapshots: a Snapshot is a copy; PublishedSnapshot hands a
// whole one to another thread, never a mix of two.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "stats/stats.h"

namespace netsem::stats {
namespace {

// A snapshot whose every counter word is `value`.
Snapshot filled(std::uint64_t value) {
  Snapshot snapshot;
  std::uint64_t words[sizeof(Snapshot) / sizeof(std::uint64_t)];
  for (auto& word : words) word = value;
  static_assert(sizeof(words) == sizeof(Snapshot), "a Snapshot is made of 64-bit words");
  std::memcpy(&snapshot, words, sizeof(Snapshot));
  return snapshot;
}

bool all_words_are(const Snapshot& snapshot, std::uint64_t value) {
  std::uint64_t words[sizeof(Snapshot) / sizeof(std::uint64_t)];
  std::memcpy(words, &snapshot, sizeof(Snapshot));
  for (const auto word : words) {
    if (word != value) return false;
  }
  return true;
}

TEST(Snapshot, IsACopyTheLiveCountersLeaveAlone) {
  JournalCounters live;
  live.writes = 5;
  live.fsync_us.observe(100);
  Snapshot snapshot;
  snapshot.journal = live;
  ++live.writes;
  live.fsync_us.observe(200);
  EXPECT_EQ(snapshot.journal.writes, 5u);
  EXPECT_EQ(snapshot.journal.fsync_us.count(), 1u);
  EXPECT_EQ(snapshot.journal.fsync_us.sum(), 100u);
}

TEST(PublishedSnapshot, StartsAtZeroAndReadsWhatWasPublished) {
  PublishedSnapshot published;
  EXPECT_TRUE(all_words_are(published.read(), 0));
  published.publish(filled(7));
  EXPECT_TRUE(all_words_are(published.read(), 7));
}

TEST(PublishedSnapshot, AReaderOnAnotherThreadNeverSeesHalfOfOne) {
  PublishedSnapshot published;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> torn{0};
  std::thread reader([&] {
    while (!done.load()) {
      const Snapshot snapshot = published.read();
      std::uint64_t first = 0;
      std::memcpy(&first, &snapshot, sizeof(first));
      if (!all_words_are(snapshot, first)) torn.fetch_add(1);
    }
  });
  for (std::uint64_t i = 1; i <= 20'000; ++i) published.publish(filled(i));
  done.store(true);
  reader.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_TRUE(all_words_are(published.read(), 20'000));
}

}  // namespace
}  // namespace netsem::stats
