// Unit tests of the per-name part of GET /metrics: the series of each row,
// label values of hostile names, the aggregates of the unlisted, and the
// whole exposition (the Snapshot's and the per-name part) checked by
// Prometheus's promtool; and the docs' list of series against the code.
#include "stats/name_metrics.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "stats/promtool.h"
#include "stats/render.h"

namespace netsem::stats {
namespace {

NameRow row(std::string name, NameKind kind, std::int64_t value, std::int64_t max, std::int64_t held,
            std::uint64_t holders, std::uint64_t waiters, std::uint64_t grants) {
  return {std::move(name), kind, value, max, held, holders, waiters, grants};
}

// Names a client may send (decoded): quotes, backslashes, braces, `=`, `#`,
// spaces, percent signs, commas, multi-byte UTF-8, the longest name.
std::vector<std::string> hostile_names() {
  return {"a\"b",
          "back\\slash",
          "\\",
          "\"",
          "x} 1\nnetsem_fake 2",  // a line feed cannot be in a name, but must not break a line if one were
          "brace{}=,#",
          "with space",
          "100%",
          "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",  // été € and an emoji
          "# HELP not a comment",
          std::string(255, 'n')};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(NameMetrics, EachRowHasEverySeriesWithItsNameLabel) {
  NameMetrics metrics;
  metrics.rows = {row("db", NameKind::kDefined, 1, 3, 2, 2, 4, 17), row("jobs", NameKind::kCreated, 5, 5, 0, 0, 0, 0)};
  metrics.max_names = 1000;
  metrics.totals = {.defined = 1, .undefined = 2, .created = 1, .held = 4, .waiters = 6};
  const std::string text = to_prometheus(metrics);
  const std::string expected_part =
      "# TYPE netsem_semaphore_info gauge\n"
      "netsem_semaphore_info{name=\"db\",kind=\"defined\"} 1\n"
      "netsem_semaphore_info{name=\"jobs\",kind=\"created\"} 1\n";
  EXPECT_NE(text.find(expected_part), std::string::npos) << text;
  for (const char* sample : {
           "netsem_semaphore_value{name=\"db\"} 1", "netsem_semaphore_max{name=\"db\"} 3",
           "netsem_semaphore_held{name=\"db\"} 2", "netsem_semaphore_holders{name=\"db\"} 2",
           "netsem_semaphore_waiters{name=\"db\"} 4", "netsem_semaphore_grants_total{name=\"db\"} 17",
           "netsem_semaphore_value{name=\"jobs\"} 5", "netsem_semaphore_grants_total{name=\"jobs\"} 0",
           "netsem_semaphores_by_kind{kind=\"defined\"} 1", "netsem_semaphores_by_kind{kind=\"created\"} 1",
           "netsem_semaphores_by_kind{kind=\"undefined\"} 2", "netsem_metrics_max_names 1000",
           "netsem_unlisted_semaphores 2",  // the two undefined ones
           "netsem_unlisted_held 2",        // 4 held, 2 of them of db
           "netsem_unlisted_waiters 2",     // 6 queued, 4 on db
       }) {
    EXPECT_NE(text.find("\n" + std::string(sample) + "\n"), std::string::npos) << sample << "\n" << text;
  }
  // The samples of one metric are together, after its HELP and TYPE.
  std::string last_metric;
  std::set<std::string> seen;
  for (const std::string& line : lines_of(text)) {
    if (line.starts_with("# ")) continue;
    const std::string metric = line.substr(0, line.find_first_of("{ "));
    if (metric != last_metric) {
      EXPECT_TRUE(seen.insert(metric).second) << metric << " is split";
    }
    last_metric = metric;
  }
}

TEST(NameMetrics, WithNoRowsHasTheAggregatesAlone) {
  NameMetrics metrics;
  metrics.max_names = 0;
  metrics.totals = {.defined = 3, .undefined = 0, .created = 2, .held = 7, .waiters = 1};
  const std::string text = to_prometheus(metrics);
  EXPECT_EQ(text.find("{name="), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_unlisted_semaphores 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_unlisted_held 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_metrics_max_names 0\n"), std::string::npos) << text;
}

// Rows copied a turn before the totals may exceed them: the unlisted are
// never negative (nor wrap around).
TEST(NameMetrics, UnlistedFiguresAreNeverBelowZero) {
  NameMetrics metrics;
  metrics.rows = {row("a", NameKind::kDefined, 0, 5, 5, 1, 3, 9)};
  metrics.totals = {.defined = 0, .undefined = 0, .created = 0, .held = 2, .waiters = 1};
  const std::string text = to_prometheus(metrics);
  EXPECT_NE(text.find("\nnetsem_unlisted_semaphores 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_unlisted_held 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_unlisted_waiters 0\n"), std::string::npos) << text;
}

TEST(NameMetrics, LabelValuesEscapeQuotesBackslashesAndLineFeeds) {
  NameMetrics metrics;
  for (const std::string& name : hostile_names())
    metrics.rows.push_back(row(name, NameKind::kCreated, 1, 1, 0, 0, 0, 0));
  const std::string text = to_prometheus(metrics);
  EXPECT_NE(text.find("netsem_semaphore_max{name=\"a\\\"b\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("netsem_semaphore_max{name=\"back\\\\slash\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("netsem_semaphore_max{name=\"\\\\\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("netsem_semaphore_max{name=\"\\\"\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("netsem_semaphore_max{name=\"x} 1\\nnetsem_fake 2\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("netsem_semaphore_max{name=\"brace{}=,#\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("netsem_semaphore_max{name=\"\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"} 1\n"),
            std::string::npos);
  EXPECT_EQ(text.find("\nnetsem_fake"), std::string::npos);
}

// One bad label value makes Prometheus refuse the whole scrape: a name that
// is not valid UTF-8 (the protocol never lets one in) gets no series and is
// counted among the unlisted.
TEST(NameMetrics, ANameThatIsNotUtf8IsCountedAsUnlisted) {
  NameMetrics metrics;
  metrics.rows = {row("ok", NameKind::kDefined, 1, 1, 0, 0, 0, 0),
                  row("bad\xFF", NameKind::kDefined, 1, 1, 0, 0, 2, 0)};
  metrics.totals = {.defined = 2, .undefined = 0, .created = 0, .held = 0, .waiters = 2};
  const std::string text = to_prometheus(metrics);
  EXPECT_EQ(text.find("bad"), std::string::npos);
  EXPECT_NE(text.find("netsem_semaphore_max{name=\"ok\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("\nnetsem_unlisted_semaphores 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_unlisted_waiters 2\n"), std::string::npos) << text;
}

TEST(NameMetrics, HelpTextsNeedNoEscaping) {
  for (const SeriesDoc& series : metric_series()) {
    EXPECT_EQ(series.help.find_first_of("\\\n|"), std::string::npos) << series.metric;
    EXPECT_TRUE(series.metric.starts_with("netsem_")) << series.metric;
  }
}

// What GET /metrics writes, the Snapshot's part then the per-name part,
// passes Prometheus's own checker, lint included: with hostile names, with
// no rows, and with many.
TEST(NameMetrics, TheWholeExpositionPassesPromtool) {
  const std::string promtool = testing::find_program("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool is not installed (Debian: prometheus; scripts/install-deps.sh)";
  Snapshot snapshot;
  snapshot.table.grants = 12;
  snapshot.table.wait_us.observe(1500);
  NameMetrics hostile;
  for (const std::string& name : hostile_names()) {
    hostile.rows.push_back(row(name, NameKind::kCreated, 1, 2, 1, 1, 3, 4));
  }
  hostile.max_names = 1000;
  hostile.totals = {.defined = 0, .undefined = 5, .created = hostile.rows.size(), .held = 20, .waiters = 40};
  NameMetrics many;
  for (int i = 0; i < 2000; ++i)
    many.rows.push_back(row("n" + std::to_string(i), NameKind::kDefined, 1, 1, 0, 0, 0, 0));
  many.max_names = 2000;
  for (const NameMetrics& metrics : {NameMetrics{}, hostile, many}) {
    const auto result = testing::check_metrics(promtool, to_prometheus(snapshot) + to_prometheus(metrics));
    EXPECT_EQ(result.exit_code, 0) << result.output;
  }
}

// docs/operations.md lists every series GET /metrics writes, word for word
// from the code: a series added without its docs fails here.
TEST(NameMetrics, DocsListEverySeries) {
  std::ifstream file(std::string(NETSEM_SOURCE_DIR) + "/docs/operations.md");
  ASSERT_TRUE(file) << "docs/operations.md is missing";
  std::stringstream docs;
  docs << file.rdbuf();
  const std::string table = markdown_metrics_table();
  EXPECT_NE(docs.str().find(table), std::string::npos) << "docs/operations.md, section Metrics, must hold this table:\n"
                                                       << table;
}

// The fenced blocks of `language` in docs/operations.md's Metrics section.
std::vector<std::string> metrics_doc_blocks(const std::string& language) {
  std::ifstream file(std::string(NETSEM_SOURCE_DIR) + "/docs/operations.md");
  std::stringstream docs;
  docs << file.rdbuf();
  const std::string text = docs.str();
  const auto start = text.find("\n## Metrics\n");
  const auto end = text.find("\n## ", start + 1);
  const std::string section = text.substr(start, end == std::string::npos ? end : end - start);
  std::vector<std::string> blocks;
  const std::string fence = "```" + language + "\n";
  for (auto at = section.find(fence); at != std::string::npos; at = section.find(fence, at)) {
    at += fence.size();
    const auto close = section.find("```\n", at);
    blocks.push_back(section.substr(at, close - at));
    at = close;
  }
  return blocks;
}

// The docs' scrape configuration and alerting rules are what Prometheus
// takes: promtool checks them as it would its own files.
TEST(NameMetrics, DocsScrapeConfigAndAlertsPassPromtool) {
  const std::string promtool = testing::find_program("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool is not installed (Debian: prometheus; scripts/install-deps.sh)";
  const std::vector<std::string> yaml = metrics_doc_blocks("yaml");
  ASSERT_EQ(yaml.size(), 2u) << "a scrape configuration and a rules file";
  char dir_template[] = "/tmp/netsem-docs-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string config = dir + "/prometheus.yml";
  const std::string rules = dir + "/rules.yml";
  std::ofstream(config) << yaml[0];
  std::ofstream(rules) << yaml[1];
  const auto checked_config = testing::run_program(promtool, {"check", "config", "--syntax-only", config}, "");
  EXPECT_EQ(checked_config.exit_code, 0) << checked_config.output;
  const auto checked_rules = testing::run_program(promtool, {"check", "rules", rules}, "");
  EXPECT_EQ(checked_rules.exit_code, 0) << checked_rules.output;
  EXPECT_NE(checked_rules.output.find("SUCCESS: 3 rules found"), std::string::npos) << checked_rules.output;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace netsem::stats
