// Tests of the log helpers: escape_for_log, the rate limit's decisions on an
// injected clock, and RateLimitedLog's lines captured from spdlog.
#include "common/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <memory>
#include <sstream>
#include <string>

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

// The default logger replaced by one writing into a string for one test.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out_);
    sink->set_pattern("%l %v");
    auto logger = std::make_shared<spdlog::logger>("capture", std::move(sink));
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream out_;
};

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

}  // namespace
}  // namespace netsem
