// Unit tests of NameMetricsCollector over a real SemaphoreTable: which rows
// (the first max_names defined and created ones in name order), the totals,
// the bound on each step's work, and a table that changes between steps.
#include "core/name_metrics_collector.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "journal/journal.h"

namespace netsem::server {
namespace {

class CollectorTest : public ::testing::Test {
 protected:
  CollectorTest() : table(journal, TableLimits{}) { table.open_session(1); }

  // An undefined name, made and held by session 1.
  void hold(const std::string& name, std::int64_t count = 1) {
    TakeRequest request;
    request.session = 1;
    request.tag = "t";
    request.name = name;
    request.count = count;
    Completions out;
    ASSERT_EQ(table.take(request, out).type, TakeResult::Type::kGranted) << name;
  }

  void define(std::vector<std::pair<std::string, std::int64_t>> limits) {
    Completions out;
    table.configure_defined(limits, out);
  }

  // Steps until done; the number of steps.
  static std::size_t run(NameMetricsCollector& collector, const SemaphoreTable& table, std::size_t budget) {
    std::size_t steps = 1;
    while (!collector.step(table, budget)) ++steps;
    return steps;
  }

  static std::string names(const stats::NameMetrics& metrics) {
    std::string out;
    for (const auto& row : metrics.rows) out += (out.empty() ? "" : " ") + row.name;
    return out;
  }

  MemoryJournal journal;
  SemaphoreTable table;
};

TEST_F(CollectorTest, RowsAreTheDefinedAndCreatedNamesInOrderWithTheirFigures) {
  define({{"db", 3}, {"api", 2}});
  ASSERT_EQ(table.create("jobs", 4, 5, false), ErrorCode::kNone);
  hold("adhoc");  // undefined: no row
  hold("db", 2);
  NameMetricsCollector collector(1000);
  EXPECT_EQ(run(collector, table, NameMetricsCollector::kDefaultBudget), 1u);
  const stats::NameMetrics& m = collector.result();
  EXPECT_EQ(names(m), "api db jobs");
  EXPECT_EQ(m.max_names, 1000u);
  const stats::NameRow& db = m.rows[1];
  EXPECT_EQ(db.kind, stats::NameKind::kDefined);
  EXPECT_EQ(db.value, 1);
  EXPECT_EQ(db.max, 3);
  EXPECT_EQ(db.held, 2);
  EXPECT_EQ(db.holders, 1u);
  EXPECT_EQ(db.grants, 1u);
  EXPECT_EQ(m.rows[2].kind, stats::NameKind::kCreated);
  EXPECT_EQ(m.rows[2].value, 4);
  EXPECT_EQ(m.totals.defined, 2u);
  EXPECT_EQ(m.totals.created, 1u);
  EXPECT_EQ(m.totals.undefined, 1u);
  EXPECT_EQ(m.totals.held, 3u);
}

TEST_F(CollectorTest, StopsAtMaxNamesAndLeavesTheRestToTheAggregates) {
  define({{"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}});
  NameMetricsCollector collector(2);
  run(collector, table, NameMetricsCollector::kDefaultBudget);
  EXPECT_EQ(names(collector.result()), "a b");
  EXPECT_EQ(collector.result().totals.defined, 4u);
  const std::string text = stats::to_prometheus(collector.result());
  EXPECT_NE(text.find("\nnetsem_unlisted_semaphores 2\n"), std::string::npos) << text;

  NameMetricsCollector none(0);
  EXPECT_TRUE(none.step(table, 1));
  EXPECT_TRUE(none.result().rows.empty());
  EXPECT_EQ(none.result().totals.defined, 4u);
}

// Thousands of undefined names before the defined ones: no step visits
// more than its budget, and the rows are those of one long pass.
TEST_F(CollectorTest, EachStepVisitsAtMostItsBudget) {
  for (int i = 0; i < 2500; ++i) hold("a" + std::to_string(10000 + i));
  define({{"b1", 1}, {"b2", 2}});
  ASSERT_EQ(table.create("b3", 1, 1, false), ErrorCode::kNone);
  for (int i = 0; i < 100; ++i) hold("c" + std::to_string(i));
  NameMetricsCollector collector(1000);
  // 2603 names, 100 a step: 27 steps (the 27th visits the last 3 and finds the end).
  EXPECT_EQ(run(collector, table, 100), 27u);
  EXPECT_EQ(names(collector.result()), "b1 b2 b3");
  EXPECT_EQ(collector.result().totals.undefined, 2600u);
  EXPECT_EQ(collector.result().totals.held, 2600u);

  NameMetricsCollector one_by_one(2);
  EXPECT_EQ(run(one_by_one, table, 1), 2502u);  // stops at b2: full
  EXPECT_EQ(names(one_by_one.result()), "b1 b2");
}

// The rows' room is made when the collector is (on the HTTP thread), not
// grown inside a step on the loop, where moving 65536 rows took 8 ms.
TEST_F(CollectorTest, NoStepReallocatesTheRows) {
  std::vector<std::pair<std::string, std::int64_t>> limits;
  for (int i = 0; i < 5000; ++i) limits.emplace_back("n" + std::to_string(10000 + i), 1);
  define(limits);
  NameMetricsCollector collector(5000);
  const stats::NameRow* const rows = collector.result().rows.data();
  EXPECT_GE(collector.result().rows.capacity(), 5000u);
  run(collector, table, 1024);
  EXPECT_EQ(collector.result().rows.size(), 5000u);
  EXPECT_EQ(collector.result().rows.data(), rows);
}

// Between steps the loop runs on: a name removed after the cursor is not
// shown, one added after it is, one added before it is not, and no name
// comes twice or out of order.
TEST_F(CollectorTest, ATableThatChangesBetweenStepsGivesEachNameAtMostOnceInOrder) {
  ASSERT_EQ(table.create("a", 1, 1, false), ErrorCode::kNone);
  ASSERT_EQ(table.create("c", 1, 1, false), ErrorCode::kNone);
  ASSERT_EQ(table.create("e", 1, 1, false), ErrorCode::kNone);
  NameMetricsCollector collector(1000);
  ASSERT_FALSE(collector.step(table, 2));  // a, c
  ASSERT_EQ(table.remove("e"), ErrorCode::kNone);
  ASSERT_EQ(table.remove("c"), ErrorCode::kNone);               // already copied
  ASSERT_EQ(table.create("b", 1, 1, false), ErrorCode::kNone);  // before the cursor
  ASSERT_EQ(table.create("d", 1, 1, false), ErrorCode::kNone);
  EXPECT_TRUE(collector.step(table, 2));
  EXPECT_EQ(names(collector.result()), "a c d");
  EXPECT_EQ(collector.result().totals.created, 3u);  // a b d: the totals are of the last step
}

}  // namespace
}  // namespace netsem::server
