// Tests of fields.h: tags, decimal numbers, field splitting.
#include "protocol/fields.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::protocol {
namespace {

using namespace std::string_literals;

// --- is_valid_tag, parse_int --------------------------------------------------

TEST(IsValidTag, AcceptsOnlyTheTagAlphabet) {
  struct Case {
    std::string tag;
    bool valid;
  };
  const std::vector<Case> cases = {
      {"a", true},
      {"a1", true},
      {"A-z_0.9:x", true},
      {std::string(32, 't'), true},
      {"acquire:x", true},
      {"", false},
      {std::string(33, 't'), false},
      {"*", false},
      {"a b", false},
      {"a/b", false},
      {"a%20", false},
      {"t\xc3\xa9", false},
      {"t\0"s, false},
  };
  for (const Case& c : cases) EXPECT_EQ(is_valid_tag(c.tag), c.valid) << c.tag;
}

TEST(ParseInt, ParsesPlainDecimalInRange) {
  struct Case {
    std::string text;
    std::int64_t min;
    std::int64_t max;
    bool ok;
    std::int64_t value;
  };
  constexpr std::int64_t kMax64 = INT64_MAX;
  const std::vector<Case> cases = {
      {"0", 0, 10, true, 0},
      {"10", 0, 10, true, 10},
      {"007", 0, 10, true, 7},
      {"-1", -1, 10, true, -1},
      {"-01", -1, 10, true, -1},  // leading zeros are harmless after the sign too
      {"-0", -1, 10, false, 0},   // a sign on zero: "-0" is not "0"
      {"-00", -1, 10, false, 0},
      {"-0000", -1, 10, false, 0},
      {"-0", INT64_MIN, kMax64, false, 0},
      {"9223372036854775807", -1, kMax64, true, kMax64},
      {"2147483647", 1, kMaxCount, true, kMaxCount},
      {"11", 0, 10, false, 0},
      {"-2", -1, 10, false, 0},
      {"-1", 0, 10, false, 0},
      {"-0", 0, 10, false, 0},  // no sign where negatives are not allowed
      {"9223372036854775808", -1, kMax64, false, 0},
      {"2147483648", 1, kMaxCount, false, 0},
      {"", 0, 10, false, 0},
      {"-", -1, 10, false, 0},
      {"+1", 0, 10, false, 0},
      {" 1", 0, 10, false, 0},
      {"1 ", 0, 10, false, 0},
      {"1x", 0, 10, false, 0},
      {"0x1", 0, 10, false, 0},
      {"1.0", 0, 10, false, 0},
      {"１", 0, 10, false, 0},  // fullwidth digit
  };
  for (const Case& c : cases) {
    std::int64_t out = 42;
    EXPECT_EQ(parse_int(c.text, c.min, c.max, out), c.ok) << c.text;
    EXPECT_EQ(out, c.ok ? c.value : 42) << c.text;
  }
}

TEST(ParseUint, TakesDigitsUpToTwoToTheSixtyFour) {
  std::uint64_t out = 7;
  EXPECT_TRUE(parse_uint("0", out));
  EXPECT_EQ(out, 0u);
  EXPECT_TRUE(parse_uint("18446744073709551615", out));
  EXPECT_EQ(out, 18446744073709551615u);
  for (const std::string_view bad : {"", "-1", "+1", " 1", "1 ", "18446744073709551616", "1x"}) {
    out = 7;
    EXPECT_FALSE(parse_uint(bad, out)) << bad;
    EXPECT_EQ(out, 7u) << bad;
  }
}

TEST(AppendDecimal, WritesTheExtremes) {
  std::string out;
  append_decimal(out, std::uint64_t{18446744073709551615u});
  out.push_back(' ');
  append_decimal(out, std::int64_t{-9223372036854775807 - 1});
  out.push_back(' ');
  append_decimal(out, std::int64_t{0});
  EXPECT_EQ(out, "18446744073709551615 -9223372036854775808 0");
}

TEST(SplitFields, WantsExactlyNNonEmptyFields) {
  std::string_view f[3];
  ASSERT_TRUE(split_fields("a bb c", f, 3));
  EXPECT_EQ(f[0], "a");
  EXPECT_EQ(f[1], "bb");
  EXPECT_EQ(f[2], "c");
  ASSERT_TRUE(split_fields("x", f, 1));
  EXPECT_EQ(f[0], "x");
  EXPECT_TRUE(split_fields("", f, 0));
  for (const std::string_view bad : {"", "a b", "a b c d", "a  b c", " a b c", "a b c ", "a b "}) {
    EXPECT_FALSE(split_fields(bad, f, 3)) << bad;
  }
  EXPECT_FALSE(split_fields("", f, 1));
  EXPECT_FALSE(split_fields("a", f, 0));
}

TEST(EqualsUpper, IgnoresTheCaseOfTheText) {
  EXPECT_TRUE(equals_upper("acquire", "ACQUIRE"));
  EXPECT_TRUE(equals_upper("AcQuIrE", "ACQUIRE"));
  EXPECT_FALSE(equals_upper("ACQUIRES", "ACQUIRE"));
  EXPECT_FALSE(equals_upper("ACQUIR", "ACQUIRE"));
  EXPECT_FALSE(equals_upper("\xc3\xa9", "\xc3\x89"));
}

}  // namespace
}  // namespace netsem::protocol
