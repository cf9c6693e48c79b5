// Tests of stats_json.h: STATS' JSON read back field by field, strictly.
#include "protocol/stats_json.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::protocol {
namespace {

TEST(ParseStats, ReadsTheTopLevelMembersInOrder) {
  const std::string json =
      R"({"sessions":3,"held":0,"version":"1.4.0","journal_ok":true,"wait_ms":{"le":[1,2.5,1e3],"count":4},)"
      R"("none":null,"neg":-12})";
  std::vector<StatsField> fields;
  ASSERT_TRUE(parse_stats(json, fields));
  ASSERT_EQ(fields.size(), 7u);
  EXPECT_EQ(fields[0].name, "sessions");
  EXPECT_EQ(fields[0].type, JsonType::kNumber);
  EXPECT_EQ(fields[0].value, "3");
  EXPECT_EQ(fields[2].type, JsonType::kString);
  EXPECT_EQ(fields[2].value, "\"1.4.0\"");
  EXPECT_EQ(fields[3].type, JsonType::kBool);
  EXPECT_EQ(fields[4].name, "wait_ms");
  EXPECT_EQ(fields[4].type, JsonType::kObject);
  EXPECT_EQ(fields[4].value, R"({"le":[1,2.5,1e3],"count":4})");
  EXPECT_EQ(fields[5].type, JsonType::kNull);

  std::int64_t n = 0;
  EXPECT_TRUE(stats_integer(fields, "sessions", n));
  EXPECT_EQ(n, 3);
  EXPECT_TRUE(stats_integer(fields, "neg", n));
  EXPECT_EQ(n, -12);
  EXPECT_FALSE(stats_integer(fields, "version", n));
  EXPECT_FALSE(stats_integer(fields, "wait_ms", n));
  EXPECT_FALSE(stats_integer(fields, "absent", n));
  std::string text;
  EXPECT_TRUE(stats_string(fields, "version", text));
  EXPECT_EQ(text, "1.4.0");
  EXPECT_FALSE(stats_string(fields, "sessions", text));
  EXPECT_EQ(find_stats_field(fields, "none"), &fields[5]);
  EXPECT_EQ(find_stats_field(fields, "nope"), nullptr);
}

TEST(ParseStats, ReadsWhatTheServerSends) {
  std::vector<StatsField> fields;
  ASSERT_TRUE(parse_stats(R"({"sessions":1,"session_timeout_ms":15000,"version":"0.1.0"})", fields));
  std::int64_t timeout = 0;
  ASSERT_TRUE(stats_integer(fields, "session_timeout_ms", timeout));
  EXPECT_EQ(timeout, 15000);
  EXPECT_TRUE(parse_stats("{}", fields));
  EXPECT_TRUE(fields.empty());
  EXPECT_TRUE(parse_stats(" { \"a\" : [ ] , \"b\" : { } } ", fields));
  EXPECT_EQ(fields.size(), 2u);
}

TEST(ParseStats, NumbersOutOfInt64AreNotIntegers) {
  std::vector<StatsField> fields;
  ASSERT_TRUE(parse_stats(R"({"big":9223372036854775808,"frac":1.5,"exp":1e2,"max":9223372036854775807})", fields));
  std::int64_t n = 0;
  EXPECT_FALSE(stats_integer(fields, "big", n));
  EXPECT_FALSE(stats_integer(fields, "frac", n));
  EXPECT_FALSE(stats_integer(fields, "exp", n));
  EXPECT_TRUE(stats_integer(fields, "max", n));
  EXPECT_EQ(n, 9223372036854775807);
}

TEST(ParseStats, RefusesWhatIsNotOneObject) {
  const std::vector<std::string> bad = {
      "",
      "[]",
      "1",
      "{",
      "{}x",
      "{} {}",
      R"({"a":1,})",
      R"({"a"})",
      R"({"a":})",
      R"({a:1})",
      R"({"a":01})",
      R"({"a":1.})",
      R"({"a":.5})",
      R"({"a":+1})",
      R"({"a":-})",
      R"({"a":1e})",
      R"({"a":tru})",
      R"({"a":"x)",
      R"({"a":"\x"})",
      R"({"a":"\u12"})",
      R"({"a":"\udc00"})",
      R"({"a":"\ud800"})",
      R"({"a":"\ud800\u0041"})",
      "{\"a\":\"tab\there\"}",
      R"({"a":[1 2]})",
      R"({"a":{"b":1,}})",
      R"({"a":1 "b":2})",
      std::string(40, '[') + std::string(40, ']'),
      "{\"a\":" + std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']') + "}",
  };
  for (const std::string& text : bad) {
    std::vector<StatsField> fields;
    EXPECT_FALSE(parse_stats(text, fields)) << text;
  }
  std::vector<StatsField> fields;
  EXPECT_TRUE(
      parse_stats("{\"a\":" + std::string(kMaxJsonDepth - 1, '[') + std::string(kMaxJsonDepth - 1, ']') + "}", fields));
}

TEST(DecodeJsonString, UnescapesEveryEscape) {
  std::string out;
  ASSERT_TRUE(decode_json_string(R"("a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00")", out));
  EXPECT_EQ(out, "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
  ASSERT_TRUE(decode_json_string(R"("\u0041\u20AC")", out));
  EXPECT_EQ(out, "A\xe2\x82\xac");
  EXPECT_FALSE(decode_json_string("x", out));
  EXPECT_FALSE(decode_json_string("\"", out));
  EXPECT_FALSE(decode_json_string(R"("a\")", out));
}

}  // namespace
}  // namespace netsem::protocol
