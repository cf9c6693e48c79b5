// Integration: what the server emits is documented. Every STATS field the
// real netsemd answers has a row in docs/protocol.md's "STATS fields" table
// and every documented field is emitted (the table itself is checked word for
// word against the field table by tests/stats/fields_test.cc); every column
// of the status file has a row in docs/status-file.md.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "netsemd_harness.h"
#include "support/doc_tables.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

TEST(ServerDocs, EveryStatsFieldIsDocumentedAndEveryDocumentedOneEmitted) {
  std::string error;
  auto server = Netsemd::start({}, &error);
  ASSERT_TRUE(server) << error;
  auto client = Client::connect(server->port());
  const std::string answer = client->request(req::stats("s"));
  ASSERT_EQ(answer.rfind("s OK {", 0), 0u) << answer;
  const auto json = nlohmann::json::parse(answer.substr(5), nullptr, false);
  ASSERT_TRUE(json.is_object()) << answer;
  std::set<std::string> emitted;
  for (const auto& [key, value] : json.items()) emitted.insert(key);
  const auto documented =
      test_support::table_first_column(read_text(NETSEM_SOURCE_DIR "/docs/protocol.md"), "## STATS fields");
  EXPECT_FALSE(emitted.empty());
  EXPECT_EQ(emitted, documented);
}

TEST(ServerDocs, EveryStatusFileColumnIsDocumented) {
  Netsemd::Options options;
  options.semaphores = "db = 2\n";
  std::string error;
  auto server = Netsemd::start(options, &error);
  ASSERT_TRUE(server) << error;
  // The file is first written just after the log line the harness waits for
  // ("listening on"): wait for it, 10 s at most.
  static const std::regex kHeader(R"(^# netsem status v1: (.*)\n)");
  std::string status;
  std::smatch match;
  for (int i = 0; i < 1000 && !std::regex_search(status, match, kHeader); ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    status = read_text(server->data_dir() / "semaphore.status");
  }
  ASSERT_TRUE(std::regex_search(status, match, kHeader)) << status;
  std::set<std::string> columns;
  for (const auto& column : fields(match[1].str())) columns.insert(column);
  const auto documented =
      test_support::table_first_column(read_text(NETSEM_SOURCE_DIR "/docs/status-file.md"), "## Format");
  EXPECT_EQ(columns, documented);
  EXPECT_NE(status.find("\ndb defined 2 2 0 0\n"), std::string::npos) << status;
}

}  // namespace
}  // namespace netsem::testing
