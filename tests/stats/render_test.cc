// Unit tests of the writers: the STATS JSON (shape, order, values, the
// histogram object) and the Prometheus text exposition.
#include "stats/render.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "netsem/version.h"
#include "stats/fields.h"
#include "stats/promtool.h"

namespace netsem::stats {
namespace {

using nlohmann::ordered_json;

// A snapshot whose 64-bit words are 1, 2, 3, ...: every number field has
// its own value.
Snapshot numbered() {
  Snapshot snapshot;
  std::uint64_t words[sizeof(Snapshot) / sizeof(std::uint64_t)];
  for (std::size_t i = 0; i < std::size(words); ++i) words[i] = i + 1;
  std::memcpy(&snapshot, words, sizeof(Snapshot));
  return snapshot;
}

TEST(StatsJson, IsOneLineWithEveryFieldInTableOrderAndItsValue) {
  const Snapshot snapshot = numbered();
  const std::string text = to_json(snapshot);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  EXPECT_EQ(text.rfind("{\"sessions\":", 0), 0u) << text;
  const ordered_json json = ordered_json::parse(text);
  ASSERT_TRUE(json.is_object());
  ASSERT_EQ(json.size(), fields().size());
  std::size_t i = 0;
  for (const auto& [key, value] : json.items()) {
    const Field& field = fields()[i++];
    ASSERT_EQ(key, field.name);
    switch (field.type) {
      case FieldType::kCounter:
      case FieldType::kGauge:
        ASSERT_TRUE(value.is_number_unsigned()) << key;
        EXPECT_EQ(value.get<std::uint64_t>(), field.number(snapshot)) << key;
        break;
      case FieldType::kHistogram:
        ASSERT_TRUE(value.is_object()) << key;
        EXPECT_EQ(value.at("count").get<std::uint64_t>(), field.histogram(snapshot).count()) << key;
        EXPECT_EQ(value.at("sum").get<std::uint64_t>(), field.histogram(snapshot).sum()) << key;
        break;
      case FieldType::kText:
        EXPECT_EQ(value.get<std::string>(), field.text(snapshot)) << key;
        break;
    }
  }
  EXPECT_EQ(json.at("version").get<std::string>(), kVersion);
}

TEST(StatsJson, ThePrefixOfVersion010IsByteForByteTheOldFormat) {
  Snapshot snapshot;
  snapshot.gauges = {3, 5, 2, 1, 65660, 3600, 30000, 1, 0};
  snapshot.table.grants = 120;
  snapshot.server.requests = 471;
  snapshot.server.connections_total = 9;
  const std::string text = to_json(snapshot);
  const std::string old =
      std::string(
          "{\"sessions\":3,\"semaphores\":5,\"held\":2,\"waiters\":1,\"grants\":120,\"requests\":471,"
          "\"uptime_s\":3600,\"last_fence\":65660,\"session_timeout_ms\":30000,"
          "\"connections_total\":9,\"denied_total\":0,\"output_bytes\":0,\"shed_total\":0,"
          "\"journal_ok\":1,\"journal_pending_records\":0,\"version\":\"") +
      kVersion + "\",";
  EXPECT_EQ(text.substr(0, old.size()), old);
}

TEST(StatsJson, AnEmptyHistogramHasNoBuckets) {
  const ordered_json json = ordered_json::parse(to_json(Snapshot{}));
  EXPECT_EQ(json.at("journal_fsync_us").dump(), R"({"count":0,"sum":0,"buckets":[]})");
}

TEST(StatsJson, HistogramBucketsArePerBucketCountsUpToTheLastNonEmptyOne) {
  Snapshot snapshot;
  for (const std::uint64_t v : {0, 3, 3, 100}) snapshot.journal.fsync_us.observe(v);
  const ordered_json json = ordered_json::parse(to_json(snapshot));
  // 0 in le=1, the 3s in le=4, 100 in le=128.
  EXPECT_EQ(json.at("journal_fsync_us").dump(), R"({"count":4,"sum":106,"buckets":[1,0,2,0,0,0,0,1]})");
}

TEST(StatsJson, AnObservationAboveEveryBoundIsInTheLastBucket) {
  Snapshot snapshot;
  snapshot.journal.fsync_us.observe(5);
  snapshot.journal.fsync_us.observe(std::uint64_t{1} << 45);
  const ordered_json json = ordered_json::parse(to_json(snapshot));
  const auto& buckets = json.at("journal_fsync_us").at("buckets");
  ASSERT_EQ(buckets.size(), Histogram::kBuckets);
  EXPECT_EQ(buckets.at(3).get<std::uint64_t>(), 1u);   // 5 <= 8
  EXPECT_EQ(buckets.back().get<std::uint64_t>(), 1u);  // +Inf
  EXPECT_EQ(json.at("journal_fsync_us").at("count").get<std::uint64_t>(), 2u);
}

// The longest histogram a server can show. Its buckets add up to its count,
// at most 2^64-1 (20 digits), so they cannot all have 20 digits: as long as
// they can be, 15 buckets of 19 digits (10^18) and 26 of 18 (10^17), the rest
// of the count in the first (10^19 for one bucket would leave room for fewer
// digits in all). The sum wraps at 2^64: any value, 20 digits.
Histogram longest_histogram() {
  constexpr std::uint64_t kMax = ~std::uint64_t{0};
  std::array<std::uint64_t, Histogram::kBuckets + 1> words{};  // the buckets, then the sum
  std::uint64_t left = kMax;
  for (std::size_t i = 0; i < Histogram::kBuckets; ++i) {
    words[i] = i < 15 ? 1'000'000'000'000'000'000u : 100'000'000'000'000'000u;
    left -= words[i];
  }
  words[0] += left;
  words[Histogram::kBuckets] = kMax;
  Histogram histogram;
  static_assert(sizeof histogram == sizeof words);
  std::memcpy(&histogram, words.data(), sizeof histogram);
  return histogram;
}

// Every number at its largest and every histogram at its longest (a
// histogram a later change adds is taken at 20 digits a bucket, longer than
// it can be).
Snapshot largest_snapshot() {
  Snapshot snapshot;
  std::uint64_t words[sizeof(Snapshot) / sizeof(std::uint64_t)];
  for (auto& word : words) word = ~std::uint64_t{0};
  std::memcpy(&snapshot, words, sizeof(Snapshot));
  snapshot.table.wait_us = snapshot.table.hold_us = snapshot.journal.fsync_us = longest_histogram();
  return snapshot;
}

// A client reads lines of at most 4096 bytes (protocol::kMaxLineBytes): the
// STATS answer must fit with every number at its largest and every bucket
// used, with room for a tag of 64 bytes. A new field that breaks this needs
// a shorter shape, not a longer line.
TEST(StatsJson, TheLongestStatsAnswerFitsInALine) {
  ASSERT_EQ(longest_histogram().count(), ~std::uint64_t{0});
  const std::string answer = std::string(64, 't') + " OK " + to_json(largest_snapshot()) + "\n";
  EXPECT_LE(answer.size(), 4096u) << answer;
}

TEST(Prometheus, EveryFieldIsAMetricWithHelpTypeAndSamples) {
  Snapshot snapshot = numbered();
  snapshot.journal.fsync_us = Histogram{};
  for (const std::uint64_t v : {2, 2, 1000}) snapshot.journal.fsync_us.observe(v);
  snapshot.gauges.session_timeout_ms = 15500;
  const std::string text = to_prometheus(snapshot);
  static const std::regex kSample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9]+(\.[0-9]+)?)$)");
  std::istringstream lines(text);
  std::vector<std::string> helped;
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# HELP ")) {
      helped.push_back(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.starts_with("# TYPE ")) continue;
    EXPECT_TRUE(std::regex_match(line, kSample)) << line;
  }
  ASSERT_EQ(helped.size(), fields().size());
  for (std::size_t i = 0; i < helped.size(); ++i) EXPECT_EQ(helped[i], prometheus_name(fields()[i]).metric);

  EXPECT_NE(text.find("# TYPE netsem_grants_total counter\nnetsem_grants_total " +
                      std::to_string(snapshot.table.grants) + "\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE netsem_sessions gauge\nnetsem_sessions " + std::to_string(snapshot.gauges.sessions)),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE netsem_version gauge\nnetsem_version{version=\"" + std::string(kVersion) + "\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE netsem_session_timeout_seconds gauge\nnetsem_session_timeout_seconds 15.5\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE netsem_journal_fsync_seconds histogram\n"
                      "netsem_journal_fsync_seconds_bucket{le=\"0.000001\"} 0\n"
                      "netsem_journal_fsync_seconds_bucket{le=\"0.000002\"} 2\n"
                      "netsem_journal_fsync_seconds_bucket{le=\"0.000004\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("netsem_journal_fsync_seconds_bucket{le=\"0.001024\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("netsem_journal_fsync_seconds_bucket{le=\"549755.813888\"} 3\n"
                      "netsem_journal_fsync_seconds_bucket{le=\"+Inf\"} 3\nnetsem_journal_fsync_seconds_sum "
                      "0.001004\nnetsem_journal_fsync_seconds_count 3\n"),
            std::string::npos);
}

// Prometheus's conventions, which promtool's lint enforces: base units
// (seconds) and counters ending in _total.
TEST(Prometheus, NamesAreInBaseUnitsAndCountersEndInTotal) {
  const auto name = [](std::string_view field) { return prometheus_name(*find_field(field)); };
  EXPECT_EQ(name("grants").metric, "netsem_grants_total");
  EXPECT_EQ(name("connections_total").metric, "netsem_connections_total");
  EXPECT_EQ(name("uptime_s").metric, "netsem_uptime_seconds");
  EXPECT_EQ(name("uptime_s").decimals, 0);
  EXPECT_EQ(name("lease_wait_ms").metric, "netsem_lease_wait_seconds");
  EXPECT_EQ(name("lease_wait_ms").decimals, 3);
  EXPECT_EQ(name("wait_us").metric, "netsem_wait_seconds");
  EXPECT_EQ(name("wait_us").decimals, 6);
  EXPECT_EQ(name("output_bytes").metric, "netsem_output_bytes");
  EXPECT_EQ(name("version").metric, "netsem_version");
  EXPECT_EQ(prometheus_help(*find_field("wait_us")), std::string(find_field("wait_us")->help) + " Here in seconds.");
  EXPECT_EQ(prometheus_help(*find_field("uptime_s")), find_field("uptime_s")->help);
}

TEST(Prometheus, ScaledDecimalsAreExact) {
  EXPECT_EQ(scaled_decimal(0, 0), "0");
  EXPECT_EQ(scaled_decimal(0, 6), "0");
  EXPECT_EQ(scaled_decimal(7, 0), "7");
  EXPECT_EQ(scaled_decimal(1500, 3), "1.5");
  EXPECT_EQ(scaled_decimal(2000, 3), "2");
  EXPECT_EQ(scaled_decimal(2, 6), "0.000002");
  EXPECT_EQ(scaled_decimal(1234567, 6), "1.234567");
  EXPECT_EQ(scaled_decimal(~std::uint64_t{0}, 6), "18446744073709.551615");
}

TEST(Prometheus, LabelValuesEscapeBackslashQuoteAndLineFeed) {
  std::string out;
  append_label_value(out, "a\\b\"c\nd\te");
  EXPECT_EQ(out, "a\\\\b\\\"c\\nd\te");
}
// A server in a cluster: no journal fields, a `cluster` object last, and
// with every number at its largest and the most followers STATS names the
// line still fits (the journal's histogram left room for it).
ClusterFigures largest_cluster() {
  ClusterFigures figures;
  const std::uint64_t big = ~std::uint64_t{0};
  figures.id = big;
  figures.role = "unavailable";
  figures.term = figures.leader_id = figures.commit_index = figures.applied_index = big;
  figures.last_index = figures.lag = figures.members = figures.voters = big;
  for (std::uint64_t i = 0; i < kMaxFollowersInStats + 3; ++i) figures.followers.push_back({big - i, big, big});
  for (const char* reason : {"host", "id", "handshake", "timeout", "pending", "streams"}) {
    figures.raft_connections_refused.emplace_back(reason, big);
  }
  figures.segment_no_space = big;
  for (const char* kind : {"removal_notice", "secret_check", "link_hello", "link_set_up", "link_proof", "link_frame"}) {
    figures.peer_lines_refused.emplace_back(kind, big);
  }
  return figures;
}

TEST(StatsJson, InAClusterTheJournalGivesWayToTheClusterObjectAndTheLineFits) {
  const Snapshot snapshot = largest_snapshot();
  const ClusterFigures cluster = largest_cluster();
  const std::string json_text = to_json(snapshot, &cluster);
  const std::string answer = std::string(64, 't') + " OK " + json_text + "\n";
  EXPECT_LE(answer.size(), 4096u) << answer;
  const ordered_json json = ordered_json::parse(json_text);
  EXPECT_FALSE(json.contains("journal_ok"));
  EXPECT_FALSE(json.contains("journal_fsync_us"));
  EXPECT_TRUE(json.contains("grants"));
  ASSERT_EQ(json.back(), json.at("cluster"));
  EXPECT_EQ(json.at("cluster").at("follower_lag").size(), kMaxFollowersInStats);
  EXPECT_EQ(json.at("cluster").at("role"), "unavailable");

  ClusterFigures small;
  small.id = 2;
  small.role = "leader";
  small.followers = {{3, 7, 2}, {1, 9, 0}};
  EXPECT_EQ(cluster_json(small),
            R"({"id":2,"role":"leader","term":0,"leader_id":0,"commit_index":0,"applied_index":0,"last_index":0,)"
            R"("lag":0,"members":0,"voters":0,"follower_lag":{"1":0,"3":2}})");
  // A single server's line is unchanged.
  EXPECT_EQ(to_json(snapshot, nullptr), to_json(snapshot));
  EXPECT_NE(to_json(snapshot).find("journal_fsync_us"), std::string::npos);
}

// The exposition passes Prometheus's own checker, lint included, with every
// number at its smallest and at its largest.
TEST(Prometheus, PassesPromtoolCheckMetrics) {
  const std::string promtool = testing::find_program("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool is not installed (Debian: prometheus; scripts/install-deps.sh)";
  Snapshot largest;
  std::uint64_t words[sizeof(Snapshot) / sizeof(std::uint64_t)];
  for (auto& word : words) word = ~std::uint64_t{0} >> 12;
  std::memcpy(&largest, words, sizeof(Snapshot));
  for (const Snapshot& snapshot : {Snapshot{}, numbered(), largest}) {
    const auto result = testing::check_metrics(promtool, to_prometheus(snapshot));
    EXPECT_EQ(result.exit_code, 0) << result.output;
  }
  // A server in a cluster: the journal's series left out, the cluster's added.
  ClusterFigures leader;
  leader.id = 1;
  leader.role = "leader";
  leader.followers = {{2, 10, 0}, {3, 8, 2}};
  for (const ClusterFigures& cluster : {ClusterFigures{}, leader, largest_cluster()}) {
    const std::string text = to_prometheus(numbered(), &cluster);
    EXPECT_EQ(text.find("netsem_journal_"), std::string::npos);
    const auto result = testing::check_metrics(promtool, text);
    EXPECT_EQ(result.exit_code, 0) << result.output << text;
  }
}

}  // namespace
}  // namespace netsem::stats
