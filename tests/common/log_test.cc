// Tests of the log helpers: escape_for_log, the rate limit's decisions on an
// injected clock, RateLimitedLog's lines captured from spdlog, and the two
// line formats of init_logging with log_event's fields.
#include "common/log.h"

#include <gtest/gtest.h>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include "support/captured_log.h"

#include <cctype>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace netsem {
namespace {

using namespace std::chrono_literals;
using Clock = LogRateLimit::Clock;

TEST(EscapeForLog, PrintableAsciiIsKept) {
  EXPECT_EQ(escape_for_log("db-lock.1:x/y_Z"), "db-lock.1:x/y_Z");
  EXPECT_EQ(escape_for_log(""), "");
}

TEST(EscapeForLog, ControlsSpacePercentAndHighBytesAreEscaped) {
  EXPECT_EQ(escape_for_log("a\x1b[31mb\rc\nd"), "a%1B[31mb%0Dc%0Ad");
  EXPECT_EQ(escape_for_log("50% off"), "50%25%20off");
  EXPECT_EQ(escape_for_log("\x7f\xc3\xa9"), "%7F%C3%A9");
  EXPECT_EQ(escape_for_log(std::string_view("\0x", 2)), "%00x");
  // What a key=value reader splits or quotes by.
  EXPECT_EQ(escape_for_log("a=\"b\""), "a%3D%22b%22");
}

TEST(LogRateLimit, AdmitsBurstThenCountsTheRest) {
  LogRateLimit limit(3, 1s);
  const auto t0 = Clock::time_point() + 100s;
  for (int i = 0; i < 3; ++i) {
    const auto admission = limit.admit(t0 + i * 1ms);
    EXPECT_TRUE(admission.write) << i;
    EXPECT_EQ(admission.suppressed_before, 0u);
  }
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(limit.admit(t0 + 10ms).write);
  ASSERT_TRUE(limit.report_due());
  EXPECT_EQ(*limit.report_due(), t0 + 1s);
  // Not before the window is over.
  EXPECT_EQ(limit.take_suppressed(t0 + 999ms), 0u);
  // The next window's first line carries the count, once.
  const auto next = limit.admit(t0 + 1s);
  EXPECT_TRUE(next.write);
  EXPECT_EQ(next.suppressed_before, 5u);
  EXPECT_FALSE(limit.report_due());
  EXPECT_EQ(limit.take_suppressed(t0 + 5s), 0u);
}

TEST(LogRateLimit, CountIsTakenOnceWhenTheFloodStops) {
  LogRateLimit limit(1, 1s);
  const auto t0 = Clock::time_point() + 100s;
  EXPECT_TRUE(limit.admit(t0).write);
  EXPECT_FALSE(limit.admit(t0 + 1ms).write);
  EXPECT_FALSE(limit.admit(t0 + 2ms).write);
  EXPECT_EQ(limit.take_suppressed(t0 + 1s), 2u);
  EXPECT_EQ(limit.take_suppressed(t0 + 2s), 0u);
  EXPECT_FALSE(limit.report_due());
  // A later line opens a new window with nothing to report.
  const auto later = limit.admit(t0 + 3s);
  EXPECT_TRUE(later.write);
  EXPECT_EQ(later.suppressed_before, 0u);
}

TEST(LogRateLimit, WindowStartsAtTheFirstLineAfterAQuietSpell) {
  LogRateLimit limit(2, 1s);
  const auto t0 = Clock::time_point() + 100s;
  EXPECT_TRUE(limit.admit(t0).write);
  // 10 s later: a fresh window from that moment, not from t0 + 10 * 1s.
  EXPECT_TRUE(limit.admit(t0 + 10s + 500ms).write);
  EXPECT_TRUE(limit.admit(t0 + 11s).write);
  EXPECT_FALSE(limit.admit(t0 + 11s + 499ms).write);
  EXPECT_TRUE(limit.admit(t0 + 11s + 500ms).write);
}

TEST(LogRateLimit, SustainedFloodWritesAtMostBurstPerWindow) {
  LogRateLimit limit(10, 1s);
  const auto t0 = Clock::time_point() + 100s;
  std::uint64_t written = 0;
  std::uint64_t reported = 0;
  // 20,000 lines over 10 s, one every 0.5 ms.
  for (int i = 0; i < 20000; ++i) {
    const auto admission = limit.admit(t0 + i * 500us);
    written += admission.write ? 1 : 0;
    reported += admission.suppressed_before;
  }
  reported += limit.take_suppressed(t0 + 11s);
  EXPECT_LE(written, 10u * 10);
  EXPECT_EQ(written + reported, 20000u) << "every line is written or counted";
}

using test_support::CapturedLog;

TEST(RateLimitedLog, WritesBurstThenOneCountLine) {
  CapturedLog captured;
  RateLimitedLog log(spdlog::level::warn, "denied connection", 2, 1s);
  const auto t0 = Clock::time_point() + 100s;
  for (int i = 0; i < 7; ++i) log.log(t0 + i * 1ms, "denied connection from {}", i);
  log.flush(t0 + 500ms);  // window still open: nothing yet
  EXPECT_EQ(captured.text(), "warning denied connection from 0\nwarning denied connection from 1\n");
  ASSERT_TRUE(log.report_due());
  log.flush(*log.report_due());
  EXPECT_EQ(captured.text(),
            "warning denied connection from 0\nwarning denied connection from 1\n"
            "warning denied connection: 5 similar messages suppressed\n");
  EXPECT_FALSE(log.report_due());
}

TEST(RateLimitedLog, CountPrecedesTheFirstLineOfTheNextWindow) {
  CapturedLog captured;
  RateLimitedLog log(spdlog::level::info, "ACE refused", 1, 1s);
  const auto t0 = Clock::time_point() + 100s;
  log.log(t0, "a");
  log.log(t0 + 1ms, "b");
  log.log(t0 + 2s, "c");
  EXPECT_EQ(captured.text(), "info a\ninfo ACE refused: 1 similar messages suppressed\ninfo c\n");
}

// init_logging into a string for one test (in `format`, at `level`); the
// previous default logger and format come back at the end.
class InitLogging {
 public:
  explicit InitLogging(LogFormat format, std::string_view level = "trace", bool journal_priorities = false)
      : previous_(spdlog::default_logger()), previous_format_(log_format()) {
    EXPECT_TRUE(init_logging(level, format, std::make_shared<spdlog::sinks::ostream_sink_st>(out_), journal_priorities)
                    .is_ok());
  }
  ~InitLogging() {
    (void)init_logging("trace", previous_format_, std::make_shared<spdlog::sinks::null_sink_st>());
    spdlog::set_default_logger(previous_);
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> lines;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  LogFormat previous_format_;
  std::ostringstream out_;
};

TEST(ParseLogLevel, AcceptsEveryListedNameAndNothingElse) {
  std::istringstream names{std::string(kLogLevels)};
  int count = 0;
  for (std::string name; names >> name; ++count) EXPECT_TRUE(parse_log_level(name).has_value()) << name;
  EXPECT_EQ(count, 7);
  EXPECT_EQ(*parse_log_level("warn"), *parse_log_level("warning"));
  EXPECT_EQ(*parse_log_level("off"), spdlog::level::off);
  for (const char* bad : {"", "INFO", "critical", "warn ", "verbose"}) {
    const auto level = parse_log_level(bad);
    ASSERT_FALSE(level.has_value()) << bad;
    EXPECT_NE(level.status().message().find("one of: trace debug info warn warning error off"), std::string::npos);
  }
  EXPECT_EQ(*parse_log_format("json"), LogFormat::kJson);
  EXPECT_EQ(*parse_log_format("text"), LogFormat::kText);
  EXPECT_FALSE(parse_log_format("JSON").has_value());
  EXPECT_FALSE(init_logging("loud").is_ok());
}

TEST(LogEvent, TextLineIsUtcTimeLevelMessageThenKeyValueWords) {
  InitLogging log(LogFormat::kText);
  log_event(spdlog::level::info, "session ended",
            {{"session", std::uint64_t{7}},
             {"label", "build \"7\"\n"},
             {"held", std::int64_t{-1}},
             {"left", std::optional<std::int64_t>()},
             {"name", std::optional<std::string_view>()},
             {"empty", ""}});
  spdlog::warn("plain {}", 1);
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 2u);
  const std::regex time(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z )");
  EXPECT_TRUE(std::regex_search(lines[0], time)) << lines[0];
  EXPECT_EQ(lines[0].substr(25), "info session ended session=7 label=build%20%227%22%0A held=-1 left=null empty=");
  EXPECT_EQ(lines[1].substr(25), "warning plain 1");
}

// A text line as a log parser reads it: the words after the message split
// at their first `=` (logfmt's bare `key=value`: a value without space, `"`
// or `=`), each value percent-decoded. Whatever a field held, the reader
// gets the same fields back, in order.
TEST(LogEvent, TextFieldsReadBackExactlyByAKeyValueParser) {
  InitLogging log(LogFormat::kText);
  static constexpr char kBytes[] = "nul\0\r\n\x1b[31m\x7f\xff end";
  const std::vector<std::string> values = {
      "x cause=kicked held=9",  // a label posing as more fields
      "say \"hi\" \\ caf\xc3\xa9", "=", "\"", "a==b\"\"", "50% off %41", std::string(kBytes, sizeof kBytes - 1), ""};
  for (const auto& value : values) log_event(spdlog::level::info, "session label", {{"label", value}, {"held", 1}});
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), values.size());
  const auto decode = [](std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
        out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16)));
        i += 2;
      } else {
        out.push_back(text[i]);
      }
    }
    return out;
  };
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::string prefix = "info session label ";
    const auto at = lines[i].find(prefix);
    ASSERT_NE(at, std::string::npos) << lines[i];
    std::vector<std::pair<std::string, std::string>> fields;
    std::istringstream words(lines[i].substr(at + prefix.size()));
    for (std::string word; std::getline(words, word, ' ');) {
      const auto equals = word.find('=');
      ASSERT_NE(equals, std::string::npos) << lines[i];
      const std::string value = word.substr(equals + 1);
      // A bare logfmt value: no `=`, no `"`, nothing at or below the space.
      for (const char c : value) {
        EXPECT_TRUE(static_cast<unsigned char>(c) > 0x20 && c != '=' && c != '"') << lines[i];
      }
      fields.emplace_back(word.substr(0, equals), decode(value));
    }
    const std::vector<std::pair<std::string, std::string>> expected = {{"label", values[i]}, {"held", "1"}};
    EXPECT_EQ(fields, expected) << lines[i];
  }
}

TEST(JournalStream, NamesStderrByDeviceAndInode) {
  EXPECT_TRUE(journal_stream_matches("64768:1234", 64768, 1234));
  EXPECT_TRUE(journal_stream_matches("0:18446744073709551615", 0, 18446744073709551615ULL));
  EXPECT_FALSE(journal_stream_matches("64768:1235", 64768, 1234));
  EXPECT_FALSE(journal_stream_matches("64769:1234", 64768, 1234));
  for (const char* bad : {"", "64768", "64768:", ":1234", "a:1234", "64768:12x", "64768:1234:5", " 64768:1234",
                          "64768:1234 ", "-1:1234", "64768:99999999999999999999"}) {
    EXPECT_FALSE(journal_stream_matches(bad, 64768, 1234)) << bad;
  }
}

// Under journald each line starts with its syslog priority (sd-daemon(3)),
// which journald strips: the rest is the line as without it.
TEST(LogEvent, JournalPrioritiesPrefixEveryLineInBothFormats) {
  for (const LogFormat format : {LogFormat::kText, LogFormat::kJson}) {
    InitLogging log(format, "trace", true);
    log_event(spdlog::level::info, "session began", {{"session", 1}});
    spdlog::warn("w");
    spdlog::error("e");
    spdlog::critical("c");
    spdlog::debug("d");
    spdlog::trace("t");
    const auto lines = log.lines();
    ASSERT_EQ(lines.size(), 6u);
    const char* expected[] = {"<6>", "<4>", "<3>", "<2>", "<7>", "<7>"};
    for (std::size_t i = 0; i < lines.size(); ++i) {
      EXPECT_EQ(lines[i].substr(0, 3), expected[i]) << lines[i];
      const std::string rest = lines[i].substr(3);
      if (format == LogFormat::kJson) {
        EXPECT_FALSE(nlohmann::json::parse(rest, nullptr, false).is_discarded()) << lines[i];
      } else {
        EXPECT_TRUE(std::regex_search(rest, std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z )"))) << lines[i];
      }
    }
  }
  InitLogging plain(LogFormat::kText, "trace", false);
  spdlog::warn("w");
  ASSERT_EQ(plain.lines().size(), 1u);
  EXPECT_NE(plain.lines()[0][0], '<');
}

TEST(LogEvent, JsonLinesParseWhateverTheFieldsHold) {
  InitLogging log(LogFormat::kJson);
  // Quotes, backslashes, newlines, controls, DEL, UTF-8 and bytes that are
  // not UTF-8: every line must still be one JSON object.
  const std::string hostile = std::string("a \"b\" \\c\nd\re\x01\x7f \xc3\xa9 \xff\xfe end");
  log_event(spdlog::level::info, "session label",
            {{"session", std::uint64_t{18446744073709551615ULL}},
             {"label", hostile},
             {"held", std::int64_t{-3}},
             {"left", std::optional<std::int64_t>()},
             {"name", std::optional<std::string_view>()}});
  spdlog::error("plain \"quoted\"\nline");
  log_event(spdlog::level::debug, "below the level? no: trace is on", {});
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& line : lines) {
    const auto object = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(object.is_discarded()) << line;
    EXPECT_TRUE(
        std::regex_match(object["time"].get<std::string>(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  }
  const auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["level"], "info");
  EXPECT_EQ(first["message"], "session label");
  EXPECT_EQ(first["session"].get<std::uint64_t>(), 18446744073709551615ULL);
  EXPECT_EQ(first["held"], -3);
  EXPECT_TRUE(first["left"].is_null());
  EXPECT_FALSE(first.contains("name"));  // absent, not null
  // Valid UTF-8 is kept, invalid bytes become U+FFFD.
  EXPECT_EQ(first["label"], "a \"b\" \\c\nd\re\x01\x7f \xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd end");
  const std::vector<std::string> order = {"time", "level", "message", "session", "label", "held", "left"};
  std::vector<std::string> keys;
  const auto ordered = nlohmann::ordered_json::parse(lines[0]);
  for (const auto& [key, value] : ordered.items()) keys.push_back(key);
  EXPECT_EQ(keys, order);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["message"], "plain \"quoted\"\nline");
  EXPECT_EQ(nlohmann::json::parse(lines[1])["level"], "error");
}

TEST(LogEvent, NothingIsWrittenBelowTheLevelOrWhenOff) {
  {
    InitLogging log(LogFormat::kJson, "warn");
    log_event(spdlog::level::info, "session began", {{"session", 1}});
    log_event(spdlog::level::warn, "kept", {});
    ASSERT_EQ(log.lines().size(), 1u);
    EXPECT_EQ(nlohmann::json::parse(log.lines()[0])["level"], "warning");
  }
  InitLogging off(LogFormat::kText, "off");
  log_event(spdlog::level::err, "dropped", {});
  spdlog::critical("dropped too");
  EXPECT_TRUE(off.lines().empty());
}

TEST(RateLimitedLog, EventsShareTheLimitAndCountWhatIsSuppressed) {
  InitLogging log(LogFormat::kJson);
  RateLimitedLog limited(spdlog::level::info, "session began, label or ended", 2, 1s);
  const auto t0 = Clock::time_point() + 100s;
  for (int i = 0; i < 5; ++i) limited.event(t0 + i * 1ms, "session began", {{"session", i}});
  limited.flush(t0 + 1s);
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["session"], 1);
  EXPECT_EQ(nlohmann::json::parse(lines[2])["message"], "session began, label or ended: 3 similar messages suppressed");
}

}  // namespace
}  // namespace netsem
