// Tests of codec.h: the line framer, the request parser (every verb, every
// refusal the contract names), the answer formatters and the client's answer
// splitter, and that the two sides agree.
#include "protocol/codec.h"

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

// --- parse_request --------------------------------------------------------------

struct RequestCase {
  std::string line;
  ParseStatus status;
  ErrorCode code = ErrorCode::kNone;
  std::string tag = "t";  // of the request, or of the error ("" for `*`)
};

constexpr auto kReq = ParseStatus::kRequest;
constexpr auto kErr = ParseStatus::kError;

TEST(ParseRequest, ClassifiesEveryShapeOfLine) {
  const std::string name255(255, 'n');
  const std::vector<RequestCase> cases = {
      {"", ParseStatus::kEmpty, ErrorCode::kNone, ""},
      // Tags and fields.
      {" ", kErr, ErrorCode::kBadRequest, ""},
      {" t PING", kErr, ErrorCode::kBadRequest, ""},
      {"PING", kErr, ErrorCode::kBadRequest, "PING"},  // a lone valid tag: no verb
      {"t", kErr, ErrorCode::kBadRequest},
      {"t ", kErr, ErrorCode::kBadRequest},
      {"t  PING", kErr, ErrorCode::kBadRequest},
      {"t PING ", kErr, ErrorCode::kBadRequest},
      {"t PING  x", kErr, ErrorCode::kBadRequest},
      {"t ACQUIRE  x", kErr, ErrorCode::kBadRequest},
      {"t\tPING", kErr, ErrorCode::kBadRequest, ""},
      {"* PING", kErr, ErrorCode::kBadRequest, ""},
      {"a/b PING", kErr, ErrorCode::kBadRequest, ""},
      {std::string(33, 't') + " PING", kErr, ErrorCode::kBadRequest, ""},
      {std::string(32, 't') + " PING", kReq, ErrorCode::kNone, std::string(32, 't')},
      // Verbs.
      {"t FROB", kErr, ErrorCode::kUnknownVerb},
      {"t PINGX", kErr, ErrorCode::kUnknownVerb},
      {"t ping", kReq},
      {"t PiNg", kReq},
      {"t acquire x", kReq},
      {"t FROB  x", kErr, ErrorCode::kBadRequest},  // an empty field beats the unknown verb
      // HELLO
      {"t HELLO 1", kReq},
      {"t HELLO 1 my-client/2.0", kReq},
      {"t HELLO", kErr, ErrorCode::kBadRequest},
      {"t HELLO 1 a b", kErr, ErrorCode::kBadRequest},
      {"t HELLO 2", kErr, ErrorCode::kBadArg},
      {"t HELLO 0", kErr, ErrorCode::kBadArg},
      {"t HELLO -1", kErr, ErrorCode::kBadArg},
      {"t HELLO one", kErr, ErrorCode::kBadArg},
      // ACQUIRE and WAIT
      {"t ACQUIRE x", kReq},
      {"t ACQUIRE x 1 0", kReq},
      {"t WAIT x 2147483647 9223372036854775807", kReq},
      {"t ACQUIRE x 1 -1", kReq},
      {"t ACQUIRE", kErr, ErrorCode::kBadRequest},
      {"t ACQUIRE x 1 5 z", kErr, ErrorCode::kBadRequest},
      {"t ACQUIRE x 0", kErr, ErrorCode::kBadArg},
      {"t ACQUIRE x -1", kErr, ErrorCode::kBadArg},
      {"t ACQUIRE x 2147483648", kErr, ErrorCode::kBadArg},
      {"t ACQUIRE x one", kErr, ErrorCode::kBadArg},
      {"t WAIT x 1 -2", kErr, ErrorCode::kBadArg},
      {"t WAIT x 1 9223372036854775808", kErr, ErrorCode::kBadArg},
      {"t WAIT x 1 +5", kErr, ErrorCode::kBadArg},
      {"t ACQUIRE x 1 -0", kErr, ErrorCode::kBadArg},
      {"t ACQUIRE x 1 -0000", kErr, ErrorCode::kBadArg},
      {"t ACQUIRE x 1 -01", kReq},
      {"t ACQUIRE $x", kErr, ErrorCode::kBadName},
      {"t ACQUIRE %", kErr, ErrorCode::kBadName},
      {"t ACQUIRE a%0Ab", kErr, ErrorCode::kBadName},
      {"t ACQUIRE \xff", kErr, ErrorCode::kBadName},
      {"t ACQUIRE " + name255, kReq},
      {"t ACQUIRE " + name255 + "n", kErr, ErrorCode::kBadName},
      {"t ACQUIRE $x 0", kErr, ErrorCode::kBadName},  // fields are checked in order
      // RELEASE and POST
      {"t RELEASE x", kReq},
      {"t POST x 3", kReq},
      {"t RELEASE", kErr, ErrorCode::kBadRequest},
      {"t RELEASE x 1 5", kErr, ErrorCode::kBadRequest},
      {"t POST x 0", kErr, ErrorCode::kBadArg},
      {"t POST %24x", kErr, ErrorCode::kBadName},
      // CANCEL
      {"t CANCEL a1", kReq},
      {"t CANCEL", kErr, ErrorCode::kBadRequest},
      {"t CANCEL a1 b1", kErr, ErrorCode::kBadRequest},
      {"t CANCEL a/b", kErr, ErrorCode::kBadArg},
      {"t CANCEL " + std::string(33, 'a'), kErr, ErrorCode::kBadArg},
      // CREATE
      {"t CREATE x 5", kReq},
      {"t CREATE x 0 5", kReq},
      {"t CREATE x 5 5 EXCL", kReq},
      {"t CREATE x 5 excl", kReq},
      {"t CREATE x 2147483647 2147483647", kReq},
      {"t CREATE x", kErr, ErrorCode::kBadRequest},
      {"t CREATE x 1 2 EXCL y", kErr, ErrorCode::kBadRequest},
      {"t CREATE x 1 EXCL 2", kErr, ErrorCode::kBadRequest},
      {"t CREATE x 1 EXCL EXCL", kErr, ErrorCode::kBadRequest},
      {"t CREATE x 0", kErr, ErrorCode::kBadArg},
      {"t CREATE x 0 0", kErr, ErrorCode::kBadArg},
      {"t CREATE x 0 EXCL", kErr, ErrorCode::kBadArg},
      {"t CREATE x 5 4", kErr, ErrorCode::kBadArg},
      {"t CREATE x -1 5", kErr, ErrorCode::kBadArg},
      {"t CREATE x 2147483648", kErr, ErrorCode::kBadArg},
      {"t CREATE x 1 2147483648", kErr, ErrorCode::kBadArg},
      {"t CREATE x 1 2 EXCLUSIVE", kErr, ErrorCode::kBadArg},
      {"t CREATE x 1 2 3", kErr, ErrorCode::kBadArg},
      {"t CREATE x 1 EXCLUSIVE", kErr, ErrorCode::kBadArg},
      {"t CREATE $x 1", kErr, ErrorCode::kBadName},
      // DELETE and GET
      {"t DELETE x", kReq},
      {"t GET host%3Aweb", kReq},
      {"t DELETE", kErr, ErrorCode::kBadRequest},
      {"t GET x y", kErr, ErrorCode::kBadRequest},
      {"t GET $x", kErr, ErrorCode::kBadName},
      // LIST
      {"t LIST", kReq},
      {"t LIST host%3A", kReq},
      {"t LIST a b", kErr, ErrorCode::kBadRequest},
      {"t LIST %2", kErr, ErrorCode::kBadName},
      {"t LIST $", kErr, ErrorCode::kBadName},
      // STATS, QUIT
      {"t STATS", kReq},
      {"t QUIT", kReq},
      {"t STATS x", kErr, ErrorCode::kBadRequest},
      {"t QUIT now", kErr, ErrorCode::kBadRequest},
      // PING
      {"t PING", kReq},
      {"t PING %zz\xff\x01", kReq},  // kept raw: no decoding, no checks
      {"t PING a b", kErr, ErrorCode::kBadRequest},
  };
  for (const RequestCase& c : cases) {
    Request request;
    ParseError error;
    const ParseStatus status = parse_request(c.line, request, error);
    EXPECT_EQ(status, c.status) << testing::PrintToString(c.line) << ": " << error.message;
    EXPECT_EQ(error.code, c.code) << testing::PrintToString(c.line);
    if (status == ParseStatus::kError) {
      EXPECT_EQ(error.tag, c.tag) << testing::PrintToString(c.line);
      EXPECT_FALSE(error.message.empty()) << testing::PrintToString(c.line);
    } else if (status == ParseStatus::kRequest) {
      EXPECT_EQ(request.tag, c.tag) << testing::PrintToString(c.line);
    }
  }
}

TEST(ParseRequest, FillsTheFieldsOfEachVerb) {
  struct Case {
    std::string line;
    Request want;
  };
  auto make = [](Verb verb) {
    Request r;
    r.tag = "t";
    r.verb = verb;
    return r;
  };
  auto named = [&](Verb verb, std::string name) {
    Request r = make(verb);
    r.name = std::move(name);
    r.has_name = true;
    return r;
  };
  std::vector<Case> cases;
  {
    Request r = make(Verb::kHello);
    r.version = 1;
    cases.push_back({"t HELLO 1", r});
    r.text = "netsem-cli/0.1";
    r.has_text = true;
    cases.push_back({"t hello 1 netsem-cli/0.1", r});
  }
  {
    Request r = named(Verb::kAcquire, "host:10.0.0.1 web");
    cases.push_back({"t ACQUIRE host%3A10.0.0.1%20web", r});
    r.count = 3;
    cases.push_back({"t ACQUIRE host:10.0.0.1%20web 3", r});
    r.timeout_ms = 0;
    cases.push_back({"t ACQUIRE host:10.0.0.1%20web 3 0", r});
  }
  {
    Request r = named(Verb::kWait, "q");
    r.count = 2147483647;
    r.timeout_ms = 9223372036854775807;
    cases.push_back({"t WAIT q 2147483647 9223372036854775807", r});
  }
  {
    Request r = named(Verb::kRelease, "100%");
    cases.push_back({"t RELEASE 100%25", r});
    r.count = 2;
    cases.push_back({"t release 100%25 2", r});
    r.verb = Verb::kPost;
    cases.push_back({"t POST 100%25 2", r});
  }
  {
    Request r = make(Verb::kCancel);
    r.pending_tag = "a1";
    cases.push_back({"t CANCEL a1", r});
  }
  {
    Request r = named(Verb::kCreate, "c");
    r.value = 5;
    r.max = 5;
    cases.push_back({"t CREATE c 5", r});
    r.exclusive = true;
    cases.push_back({"t CREATE c 5 EXCL", r});
    cases.push_back({"t CREATE c 5 Excl", r});
    r.value = 0;
    r.max = 7;
    cases.push_back({"t CREATE c 0 7 excl", r});
    r.exclusive = false;
    cases.push_back({"t CREATE c 0 7", r});
  }
  cases.push_back({"t DELETE d", named(Verb::kDelete, "d")});
  cases.push_back({"t GET g%20h", named(Verb::kGet, "g h")});
  cases.push_back({"t LIST", make(Verb::kList)});
  cases.push_back({"t LIST host%3a", named(Verb::kList, "host:")});
  cases.push_back({"t STATS", make(Verb::kStats)});
  cases.push_back({"t QUIT", make(Verb::kQuit)});
  cases.push_back({"t PING", make(Verb::kPing)});
  {
    Request r = make(Verb::kPing);
    r.text = "%41\xff";
    r.has_text = true;
    cases.push_back({"t PING %41\xff", r});
  }

  // One Request reused for every line, as a session does: nothing may leak
  // from one line into the next.
  Request request;
  for (const Case& c : cases) {
    ParseError error;
    ASSERT_EQ(parse_request(c.line, request, error), kReq) << c.line << ": " << error.message;
    const Request& w = c.want;
    EXPECT_EQ(request.tag, w.tag) << c.line;
    EXPECT_EQ(request.verb, w.verb) << c.line;
    EXPECT_EQ(request.name, w.name) << c.line;
    EXPECT_EQ(request.has_name, w.has_name) << c.line;
    EXPECT_EQ(request.count, w.count) << c.line;
    EXPECT_EQ(request.timeout_ms, w.timeout_ms) << c.line;
    EXPECT_EQ(request.value, w.value) << c.line;
    EXPECT_EQ(request.max, w.max) << c.line;
    EXPECT_EQ(request.exclusive, w.exclusive) << c.line;
    EXPECT_EQ(request.version, w.version) << c.line;
    EXPECT_EQ(request.text, w.text) << c.line;
    EXPECT_EQ(request.has_text, w.has_text) << c.line;
    EXPECT_EQ(request.pending_tag, w.pending_tag) << c.line;
  }
}

TEST(ParseRequest, ErrorMessagesNameTheRule) {
  struct Case {
    std::string line;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"t HELLO 2", "unsupported version"},
      {"t CREATE x 0", "max must be at least 1"},
      {"t CREATE x 0 0", "max must be at least 1"},
      {"t CREATE x 5 4", "max must be at least value"},
  };
  for (const Case& c : cases) {
    Request request;
    ParseError error;
    ASSERT_EQ(parse_request(c.line, request, error), kErr) << c.line;
    EXPECT_EQ(error.code, ErrorCode::kBadArg) << c.line;
    EXPECT_EQ(error.message, c.message) << c.line;
  }
}

TEST(ParseRequest, ViewsPointIntoTheLine) {
  const std::string line = "a1 PING payload";
  Request request;
  ParseError error;
  ASSERT_EQ(parse_request(line, request, error), kReq);
  EXPECT_EQ(request.tag.data(), line.data());
  EXPECT_EQ(request.text.data(), line.data() + 8);
}

// --- Answers ---------------------------------------------------------------------

TEST(ErrorCodeName, SpellsEveryCodeOfTheContract) {
  const std::vector<std::string> spellings = {
      "BAD_REQUEST", "UNKNOWN_VERB", "BAD_NAME",      "BAD_ARG", "NOT_FOUND", "NOT_HELD", "OVERFLOW", "TOO_MANY",
      "EXISTS",      "BUSY",         "DUPLICATE_TAG", "LIMIT",   "DENIED",    "AUTH",     "SHUTDOWN", "LINE_TOO_LONG",
  };
  EXPECT_EQ(error_code_name(ErrorCode::kNone), "");
  for (std::size_t i = 0; i < spellings.size(); ++i) {
    const auto code = static_cast<ErrorCode>(i + 1);
    EXPECT_EQ(error_code_name(code), spellings[i]);
    ErrorCode parsed = ErrorCode::kNone;
    EXPECT_TRUE(parse_error_code(spellings[i], parsed)) << spellings[i];
    EXPECT_EQ(parsed, code);
  }
  EXPECT_EQ(static_cast<std::size_t>(ErrorCode::kLineTooLong), spellings.size());
}

TEST(ParseErrorCode, RefusesUnknownSpellings) {
  for (const std::string_view text : {"", "bad_request", "BAD_REQUEST ", "NOPE", "OK"}) {
    ErrorCode code = ErrorCode::kBusy;
    EXPECT_FALSE(parse_error_code(text, code)) << text;
    EXPECT_EQ(code, ErrorCode::kBusy);
  }
}

struct FormatCase {
  std::string line;      // what the formatter appended
  std::string expected;  // the exact bytes
  AnswerType type;
};

std::vector<FormatCase> format_cases() {
  auto run = [](auto&& f) {
    std::string out;
    f(out);
    return out;
  };
  SemaphoreView view{"host:10.0.0.1 web%", 0, 1, 1, 2, "undefined"};
  SemaphoreView absent{"x", 1, 1, 0, 0, "absent"};
  SemaphoreView big{"b", 2147483647, 2147483647, 18446744073709551615u, 3, "created"};
  return {
      {run([](std::string& o) { append_ok(o, "a1"); }), "a1 OK\n", AnswerType::kOk},
      {run([](std::string& o) { append_ok_number(o, "a1", 17); }), "a1 OK 17\n", AnswerType::kOk},
      {run([](std::string& o) { append_ok_number(o, "a1", 18446744073709551615u); }), "a1 OK 18446744073709551615\n",
       AnswerType::kOk},
      {run([](std::string& o) { append_ok_number(o, "r1", 0); }), "r1 OK 0\n", AnswerType::kOk},
      {run([](std::string& o) { append_ok_text(o, "h", "netsem 1 42"); }), "h OK netsem 1 42\n", AnswerType::kOk},
      {run([](std::string& o) { append_ok_text(o, "s", R"({"sessions":1})"); }), "s OK {\"sessions\":1}\n",
       AnswerType::kOk},
      {run([](std::string& o) { append_ok_text(o, "s", ""); }), "s OK\n", AnswerType::kOk},
      {run([](std::string& o) { append_queued(o, "b1", 1); }), "b1 QUEUED 1\n", AnswerType::kQueued},
      {run([](std::string& o) { append_timeout(o, "b1"); }), "b1 TIMEOUT\n", AnswerType::kTimeout},
      {run([](std::string& o) { append_cancelled(o, "b1"); }), "b1 CANCELLED\n", AnswerType::kCancelled},
      {run([](std::string& o) { append_pong(o, "p", "", false); }), "p PONG\n", AnswerType::kPong},
      {run([](std::string& o) { append_pong(o, "p", "", true); }), "p PONG\n", AnswerType::kPong},
      {run([](std::string& o) { append_pong(o, "p", "hi\xff%41", true); }), "p PONG hi\xff%41\n", AnswerType::kPong},
      {run([](std::string& o) { append_error(o, "a1", ErrorCode::kNotHeld, "not held"); }),
       "a1 ERR NOT_HELD not held\n", AnswerType::kError},
      {run([](std::string& o) { append_error(o, "", ErrorCode::kLineTooLong, "line longer than 4096 bytes"); }),
       "* ERR LINE_TOO_LONG line longer than 4096 bytes\n", AnswerType::kError},
      {run([](std::string& o) { append_error(o, "a1", ErrorCode::kBusy, ""); }), "a1 ERR BUSY\n", AnswerType::kError},
      {run([](std::string& o) { append_error(o, "a1", ErrorCode::kBadName, "bad\nname\r\0x"s); }),
       "a1 ERR BAD_NAME bad?name??x\n", AnswerType::kError},
      {run([&](std::string& o) { append_get(o, "g", view); }), "g OK 0 1 1 2 undefined\n", AnswerType::kOk},
      {run([&](std::string& o) { append_get(o, "g", absent); }), "g OK 1 1 0 0 absent\n", AnswerType::kOk},
      {run([&](std::string& o) { append_item(o, "l", view); }), "l ITEM host:10.0.0.1%20web%25 0 1 1 2 undefined\n",
       AnswerType::kItem},
      {run([&](std::string& o) { append_item(o, "l", big); }),
       "l ITEM b 2147483647 2147483647 18446744073709551615 3 created\n", AnswerType::kItem},
      {run([](std::string& o) { append_end(o, "l", 2); }), "l END 2\n", AnswerType::kEnd},
      {run([](std::string& o) { append_end(o, "l", 0); }), "l END 0\n", AnswerType::kEnd},
  };
}

TEST(AppendAnswer, WritesExactLines) {
  for (const FormatCase& c : format_cases()) EXPECT_EQ(c.line, c.expected);
}

TEST(AppendAnswer, AppendsAfterWhatIsThere) {
  std::string out = "a1 OK\n";
  append_queued(out, "b1", 3);
  append_end(out, "", 0);
  EXPECT_EQ(out, "a1 OK\nb1 QUEUED 3\n* END 0\n");
}

TEST(AppendAnswer, DoesNotAllocateWhenTheBufferHasRoom) {
  std::string out;
  out.reserve(4096);
  const char* const storage = out.data();
  const SemaphoreView view{"some name", 5, 10, 3, 4, "created"};
  for (int i = 0; i < 10; ++i) {
    append_ok_number(out, "tag", 18446744073709551615u);
    append_get(out, "tag", view);
    append_item(out, "tag", view);
    append_error(out, "tag", ErrorCode::kOverflow, "value would exceed max");
  }
  EXPECT_EQ(out.data(), storage);
}

TEST(ParseAnswer, ReadsBackWhatTheServerWrites) {
  for (const FormatCase& c : format_cases()) {
    std::string_view line = c.line;
    ASSERT_EQ(line.back(), '\n');
    line.remove_suffix(1);
    Answer answer;
    ASSERT_TRUE(parse_answer(line, answer)) << c.line;
    EXPECT_EQ(answer.type, c.type) << c.line;
    EXPECT_EQ(answer.tag, line.substr(0, line.find(' '))) << c.line;
  }
}

TEST(ParseAnswer, SplitsTheParts) {
  struct Case {
    std::string line;
    std::string tag;
    AnswerType type;
    std::string rest;
    ErrorCode error = ErrorCode::kNone;
    std::string message = "";
  };
  const std::vector<Case> cases = {
      {"a1 OK 17", "a1", AnswerType::kOk, "17"},
      {"a1 OK", "a1", AnswerType::kOk, ""},
      {"h OK netsem 1 7", "h", AnswerType::kOk, "netsem 1 7"},
      {"b1 QUEUED 2", "b1", AnswerType::kQueued, "2"},
      {"b1 TIMEOUT", "b1", AnswerType::kTimeout, ""},
      {"b1 CANCELLED", "b1", AnswerType::kCancelled, ""},
      {"p PONG x y", "p", AnswerType::kPong, "x y"},
      {"l ITEM a%20b 1 1 0 0 created", "l", AnswerType::kItem, "a%20b 1 1 0 0 created"},
      {"l END 0", "l", AnswerType::kEnd, "0"},
      {"a1 ERR NOT_FOUND no semaphore named x", "a1", AnswerType::kError, "NOT_FOUND no semaphore named x",
       ErrorCode::kNotFound, "no semaphore named x"},
      {"* ERR SHUTDOWN", "*", AnswerType::kError, "SHUTDOWN", ErrorCode::kShutdown, ""},
      // A code this build does not know is still an error, with the code kept in `rest`.
      {"a1 ERR TEAPOT short and stout", "a1", AnswerType::kError, "TEAPOT short and stout", ErrorCode::kNone,
       "short and stout"},
  };
  for (const Case& c : cases) {
    Answer answer;
    ASSERT_TRUE(parse_answer(c.line, answer)) << c.line;
    EXPECT_EQ(answer.tag, c.tag) << c.line;
    EXPECT_EQ(answer.type, c.type) << c.line;
    EXPECT_EQ(answer.rest, c.rest) << c.line;
    EXPECT_EQ(answer.error, c.error) << c.line;
    EXPECT_EQ(answer.message, c.message) << c.line;
  }
}

TEST(ParseAnswer, RefusesLinesThatAreNotAnswers) {
  const std::vector<std::string> lines = {
      "",          "a1",          "a1 ",     "a1 OK ",    "a/b OK",         "** OK",
      " a1 OK",    "a1 ok",       "a1 NOPE", "a1 ERR",    "a1 ERR ",        "a1 ERR  x",
      "a1 QUEUED", "a1 QUEUED x", "a1 END",  "a1 END -1", "a1 TIMEOUT now", "a1 CANCELLED x",
      "a1 ITEM",   "acquire:x|",
  };
  for (const std::string& line : lines) {
    Answer answer;
    EXPECT_FALSE(parse_answer(line, answer)) << line;
  }
}

}  // namespace
}  // namespace netsem::protocol
