// Unit tests of the field table: complete, unique, well formed, reading
// every figure of a Snapshot exactly once, and documented word for word.
#include "stats/fields.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "stats/render.h"

namespace netsem::stats {
namespace {

TEST(Fields, NamesAreUniqueAndValidMetricNames) {
  std::set<std::string_view> names;
  static const std::regex kName("[a-z][a-z0-9_]*");
  for (const Field& field : fields()) {
    EXPECT_TRUE(names.insert(field.name).second) << "duplicate " << field.name;
    EXPECT_TRUE(std::regex_match(std::string(field.name), kName)) << field.name;
    EXPECT_EQ(find_field(field.name), &field);
  }
  EXPECT_EQ(find_field("no_such_field"), nullptr);
}

TEST(Fields, EveryRowIsWellFormed) {
  for (const Field& field : fields()) {
    SCOPED_TRACE(std::string(field.name));
    EXPECT_FALSE(field.help.empty());
    EXPECT_EQ(field.help.find('\n'), std::string_view::npos);
    EXPECT_EQ(field.help.find('|'), std::string_view::npos) << "breaks the docs' table";
    EXPECT_EQ(field.help.back(), '.');
    // Exactly the accessor its type reads through.
    const bool number = field.type == FieldType::kCounter || field.type == FieldType::kGauge;
    EXPECT_EQ(field.number != nullptr, number);
    EXPECT_EQ(field.histogram != nullptr, field.type == FieldType::kHistogram);
    EXPECT_EQ(field.text != nullptr, field.type == FieldType::kText);
    if (field.type == FieldType::kHistogram) {
      EXPECT_EQ(field.unit, "us");
      EXPECT_TRUE(field.name.ends_with("_us"));
    }
    // Counters of events end in _total, but for the two names of 0.1.0.
    if (field.type == FieldType::kCounter && field.name != "grants" && field.name != "requests") {
      EXPECT_TRUE(field.name.ends_with("_total"));
    }
  }
}

TEST(Fields, TheFieldsOfVersion010ComeFirstInTheirOrder) {
  // STATS keeps every field it answered, with the same name, in the same
  // place; the contract requires the first nine.
  const std::vector<std::string_view> before = {"sessions",
                                                "semaphores",
                                                "held",
                                                "waiters",
                                                "grants",
                                                "requests",
                                                "uptime_s",
                                                "last_fence",
                                                "session_timeout_ms",
                                                "connections_total",
                                                "denied_total",
                                                "output_bytes",
                                                "shed_total",
                                                "journal_ok",
                                                "journal_pending_records",
                                                "version"};
  ASSERT_GE(fields().size(), before.size());
  for (std::size_t i = 0; i < before.size(); ++i) EXPECT_EQ(fields()[i].name, before[i]) << i;
  EXPECT_EQ(find_field("version")->type, FieldType::kText);
}

TEST(Fields, OneFieldPerSessionEndCause) {
  for (std::size_t i = 0; i < kEndCauses; ++i) {
    const std::string name = "session_ends_" + std::string(end_cause_name(static_cast<EndCause>(i))) + "_total";
    const Field* field = find_field(name);
    ASSERT_NE(field, nullptr) << name;
    Snapshot snapshot;
    snapshot.server.count_end(static_cast<EndCause>(i));
    EXPECT_EQ(field->number(snapshot), 1u) << name;
  }
}

// Every byte of a Snapshot is read by exactly one field: a member added to
// a counters struct without its row in the table fails here.
TEST(Fields, EveryMemberOfASnapshotIsExactlyOneField) {
  const Snapshot snapshot;
  const auto* base = reinterpret_cast<const unsigned char*>(&snapshot);
  std::vector<std::string> owner(sizeof(Snapshot));
  for (const Field& field : fields()) {
    const void* address = nullptr;
    std::size_t size = 0;
    if (field.number) {
      address = &field.number(snapshot);
      size = sizeof(std::uint64_t);
    } else if (field.histogram) {
      address = &field.histogram(snapshot);
      size = sizeof(Histogram);
    } else {
      continue;  // a text field is not read from the snapshot
    }
    const auto offset = static_cast<std::size_t>(static_cast<const unsigned char*>(address) - base);
    ASSERT_LE(offset + size, sizeof(Snapshot)) << field.name << " reads outside the snapshot";
    for (std::size_t i = offset; i < offset + size; ++i) {
      EXPECT_TRUE(owner[i].empty()) << field.name << " and " << owner[i] << " read the same member";
      owner[i] = field.name;
    }
  }
  for (std::size_t i = 0; i < owner.size(); i += sizeof(std::uint64_t)) {
    EXPECT_FALSE(owner[i].empty()) << "the member at byte " << i << " of Snapshot has no field";
  }
}

// The table in docs/protocol.md's "STATS fields" section: from its header
// row to the first line that is not a table row.
std::string documented_table() {
  std::ifstream in(NETSEM_SOURCE_DIR "/docs/protocol.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  const auto section = doc.find("\n## STATS fields\n");
  if (section == std::string::npos) return "(no STATS fields section)";
  const auto start = doc.find("\n| Name |", section);
  if (start == std::string::npos) return "(no table)";
  std::string table;
  std::istringstream lines(doc.substr(start + 1));
  for (std::string line; std::getline(lines, line) && line.starts_with("|");) table += line + "\n";
  return table;
}

TEST(Fields, TheDocsTableIsTheFieldTable) {
  EXPECT_EQ(documented_table(), markdown_table())
      << "docs/protocol.md, section \"STATS fields\", must have exactly this table:\n"
      << markdown_table();
}

}  // namespace
}  // namespace netsem::stats
