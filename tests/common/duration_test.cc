// Tests of duration.h: the one parser of durations on netsem's and netsemd's
// command lines, with its units, its exact rounding and the words it refuses.
#include "common/duration.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace netsem {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, ReadsANumberWithAUnitOrBareSeconds) {
  const struct {
    std::string text;
    milliseconds want;
  } kCases[] = {
      {"0", milliseconds(0)},
      {"0ms", milliseconds(0)},
      {"5", milliseconds(5000)},
      {"500ms", milliseconds(500)},
      {"5s", milliseconds(5000)},
      {"5m", milliseconds(300'000)},
      {"1h", milliseconds(3'600'000)},
      {"0.5", milliseconds(500)},
      {".5", milliseconds(500)},
      {"5.", milliseconds(5000)},
      {"1.5m", milliseconds(90'000)},
      {"0.25h", milliseconds(900'000)},
      {"007s", milliseconds(7000)},
      {"2.000000000000000000000000000000000000000s", milliseconds(2000)},  // trailing zeros drop
      // Exact, not floating point: 0.3 * 1000 and 0.7 * 1000 are not 301 and 701.
      {"0.3", milliseconds(300)},
      {"0.7", milliseconds(700)},
      {"4.35s", milliseconds(4350)},
      // Rounded up to a whole millisecond, so that a tiny timeout is no try.
      {"0.0001", milliseconds(1)},
      {"0.5ms", milliseconds(1)},
      {"1.0001ms", milliseconds(2)},
      {"0.000000000000000000000000000001h", milliseconds(1)},
      {"1000000000", milliseconds(1'000'000'000'000)},
      {"16666666.5m", milliseconds(999'999'990'000)},
      {"277777.7777777777h", milliseconds(1'000'000'000'000)},
  };
  for (const auto& test : kCases) {
    const auto got = parse_duration(test.text);
    ASSERT_TRUE(got) << test.text << ": " << got.status().to_string();
    EXPECT_EQ(got->count(), test.want.count()) << test.text;
  }
}

TEST(ParseDuration, RefusesAnythingElseNamingWhatItTakes) {
  for (const std::string& bad : std::vector<std::string>{"",
                                                         "s",
                                                         "ms",
                                                         ".",
                                                         ".s",
                                                         "-1",
                                                         "+5",
                                                         "5 s",
                                                         " 5",
                                                         "5 ",
                                                         "5S",
                                                         "5sec",
                                                         "5min",
                                                         "5d",
                                                         "5us",
                                                         "1e3",
                                                         "0x10",
                                                         "inf",
                                                         "nan",
                                                         "5..0",
                                                         "1.2.3",
                                                         "5ms5",
                                                         "1h30m",
                                                         "1000000000.001",
                                                         "1000000001",
                                                         "16666667m",
                                                         "277778h",
                                                         "99999999999999999999999",
                                                         "0.0000000000000000000000000000001",
                                                         std::string("5\0", 2)}) {
    const auto got = parse_duration(bad);
    ASSERT_FALSE(got) << "'" << bad << "' read as " << got->count() << " ms";
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find("must be a duration like 500ms, 5s, 5m or 1h (a bare number is seconds)"),
              std::string::npos)
        << got.status().message();
    EXPECT_TRUE(got.status().message().ends_with("not '" + bad + "'")) << got.status().message();
  }
}

}  // namespace
}  // namespace netsem
