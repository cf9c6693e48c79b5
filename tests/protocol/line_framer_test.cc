// Tests of line_framer.h: lines, limits (4096 bytes, NUL) and chunking.
#include "protocol/line_framer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::protocol {
namespace {

using namespace std::string_literals;

// --- LineFramer -------------------------------------------------------------

// What the framer said, one entry per next() call, until kNeedMore or an error.
struct Event {
  LineFramer::Status status;
  std::string line;
  bool operator==(const Event&) const = default;
};

void PrintTo(const Event& e, std::ostream* os) {
  *os << "{" << static_cast<int>(e.status) << ", " << testing::PrintToString(e.line) << "}";
}

std::vector<Event> feed(LineFramer& framer, std::string_view chunk) {
  framer.buffer().append(chunk);
  std::vector<Event> events;
  while (true) {
    std::string_view line;
    const LineFramer::Status status = framer.next(line);
    events.push_back({status, status == LineFramer::Status::kLine ? std::string(line) : ""});
    if (status != LineFramer::Status::kLine) break;
  }
  if (events.back().status == LineFramer::Status::kNeedMore) framer.compact();
  return events;
}

std::vector<Event> feed_all(const std::vector<std::string>& chunks) {
  LineFramer framer;
  std::vector<Event> all;
  for (const std::string& chunk : chunks) {
    for (Event& e : feed(framer, chunk)) all.push_back(std::move(e));
    if (all.back().status != LineFramer::Status::kNeedMore) break;
  }
  return all;
}

constexpr auto kLine = LineFramer::Status::kLine;
constexpr auto kMore = LineFramer::Status::kNeedMore;
constexpr auto kTooLong = LineFramer::Status::kLineTooLong;
constexpr auto kNul = LineFramer::Status::kNul;

TEST(LineFramer, SplitsLines) {
  struct Case {
    std::vector<std::string> chunks;
    std::vector<Event> events;
  };
  const std::vector<Case> cases = {
      {{"a1 PING\n"}, {{kLine, "a1 PING"}, {kMore, ""}}},
      {{"a1 PING\r\n"}, {{kLine, "a1 PING"}, {kMore, ""}}},
      {{"\n"}, {{kLine, ""}, {kMore, ""}}},
      {{"\r\n"}, {{kLine, ""}, {kMore, ""}}},
      {{"a\rb\n"}, {{kLine, "a\rb"}, {kMore, ""}}},  // only a "\r" just before "\n" goes
      {{"a\r\r\n"}, {{kLine, "a\r"}, {kMore, ""}}},
      {{"a\nb\r\nc"}, {{kLine, "a"}, {kLine, "b"}, {kMore, ""}}},
      {{"a1 PI", "NG\r", "\nb"}, {{kMore, ""}, {kMore, ""}, {kLine, "a1 PING"}, {kMore, ""}}},
      {{"x", "", "y\n"}, {{kMore, ""}, {kMore, ""}, {kLine, "xy"}, {kMore, ""}}},
      {{"a\0b\n"s}, {{kNul, ""}}},
      {{"ok\nx\0"s}, {{kLine, "ok"}, {kNul, ""}}},  // lines before the NUL come first
      {{"ab", "\0"s}, {{kMore, ""}, {kNul, ""}}},   // reported without waiting for "\n"
      {{"a\n\0\n"s}, {{kLine, "a"}, {kNul, ""}}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(feed_all(c.chunks), c.events) << testing::PrintToString(c.chunks);
  }
}

// next_from on the same chunks: the lines and the verdict it gives.
std::vector<Event> feed_all_from(const std::vector<std::string>& chunks) {
  LineFramer framer;
  std::vector<Event> all;
  for (const std::string& chunk : chunks) {
    std::string_view input = chunk;
    while (true) {
      std::string_view line;
      const LineFramer::Status status = framer.next_from(input, line);
      all.push_back({status, status == kLine ? std::string(line) : ""});
      if (status != kLine) break;
    }
    if (all.back().status != kMore) break;
  }
  return all;
}

TEST(LineFramer, NextFromFramesExactlyAsNextWhateverTheChunking) {
  const std::string long_line(kMaxLineBytes, 'x');
  const std::string inputs[] = {
      "a PING\nb PING\r\nc GET x\n",
      "\n\nz QUIT\npartial",
      long_line + "\r\nafter\n",
      long_line + "y\nnever\n",
      std::string(3 * kMaxLineBytes, 'q') + "\n",
      "ok\nbad\0line\nlater\n"s,
      "half\0",
  };
  for (const std::string& input : inputs) {
    for (const std::size_t chunk_size :
         {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{4097}, input.size()}) {
      std::vector<std::string> chunks;
      for (std::size_t at = 0; at < input.size(); at += chunk_size) chunks.push_back(input.substr(at, chunk_size));
      // The verdict on an over-long line may come a chunk earlier or later
      // from one or the other; the lines before it must agree exactly.
      auto expected = feed_all(chunks);
      auto actual = feed_all_from(chunks);
      auto lines_only = [](std::vector<Event> events) {
        std::erase_if(events, [](const Event& e) { return e.status == kMore; });
        return events;
      };
      EXPECT_EQ(lines_only(actual), lines_only(expected))
          << "chunk size " << chunk_size << " of " << testing::PrintToString(input.substr(0, 40));
    }
  }
}

TEST(LineFramer, AcceptsLinesUpToTheLimit) {
  const std::string longest(kMaxLineBytes, 'x');
  const std::vector<std::vector<std::string>> inputs = {
      {longest + "\n"}, {longest + "\r\n"}, {longest, "\n"}, {longest, "\r", "\n"}, {longest + "\r", "\n"},
  };
  for (const auto& chunks : inputs) {
    const std::vector<Event> events = feed_all(chunks);
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(events[events.size() - 2], (Event{kLine, longest}));
    EXPECT_EQ(events.back().status, kMore);
  }
}

TEST(LineFramer, ReportsLongLinesWithoutWaitingForTheNewline) {
  const std::string longest(kMaxLineBytes, 'x');
  struct Case {
    std::vector<std::string> chunks;
    LineFramer::Status last;
  };
  const std::vector<Case> cases = {
      {{longest + "y"}, kTooLong},
      {{longest, "y"}, kTooLong},
      {{longest + "y\n"}, kTooLong},
      {{longest + "\r"}, kMore},  // may still be a "\r\n" terminator
      {{longest + "\r", "y"}, kTooLong},
      {{longest + "\rx\n"}, kTooLong},
      {{std::string(100000, 'x')}, kTooLong},
      {{"ok\n" + longest + "yz"}, kTooLong},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(feed_all(c.chunks).back().status, c.last) << c.chunks.back().size();
  }
}

TEST(LineFramer, ReturnsLongLinesByteByByte) {
  LineFramer framer;
  const std::string line(kMaxLineBytes, 'q');
  for (const char c : line) ASSERT_EQ(feed(framer, std::string_view(&c, 1)).back().status, kMore);
  EXPECT_EQ(framer.pending_bytes(), kMaxLineBytes);
  EXPECT_EQ(feed(framer, "\n"), (std::vector<Event>{{kLine, line}, {kMore, ""}}));
  EXPECT_EQ(feed(framer, "z").back().status, kMore);
}

TEST(LineFramer, CompactKeepsThePartialLine) {
  LineFramer framer;
  EXPECT_EQ(feed(framer, "a\nbb\ncc"), (std::vector<Event>{{kLine, "a"}, {kLine, "bb"}, {kMore, ""}}));
  EXPECT_EQ(framer.buffer(), "cc");
  EXPECT_EQ(framer.pending_bytes(), 2u);
  EXPECT_EQ(feed(framer, "c\n"), (std::vector<Event>{{kLine, "ccc"}, {kMore, ""}}));
  EXPECT_EQ(framer.pending_bytes(), 0u);
}

TEST(LineFramer, CompactOfAnEmptyRestMovesNothing) {
  LineFramer framer;
  framer.buffer().reserve(8192);
  const char* const storage = framer.buffer().data();
  feed(framer, "a1 PING\nb1 PING\n");
  EXPECT_TRUE(framer.buffer().empty());
  EXPECT_EQ(framer.buffer().data(), storage);
  EXPECT_GE(framer.buffer().capacity(), 8192u);
}

TEST(LineFramer, PendingBytesCountsWhatIsNotReturned) {
  LineFramer framer;
  framer.buffer() = "a\nbcd";
  std::string_view line;
  EXPECT_EQ(framer.pending_bytes(), 5u);
  ASSERT_EQ(framer.next(line), kLine);
  EXPECT_EQ(framer.pending_bytes(), 3u);
  ASSERT_EQ(framer.next(line), kMore);
  EXPECT_EQ(framer.pending_bytes(), 3u);
}

}  // namespace
}  // namespace netsem::protocol
