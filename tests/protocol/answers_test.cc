// Tests of answers.h and error_code.h: the answer formatters, the client's
// answer splitter and typed parsers, and that the two sides agree.
#include "protocol/answers.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::protocol {
namespace {

using namespace std::string_literals;

// --- Answers ---------------------------------------------------------------------

TEST(ErrorCodeName, SpellsEveryCodeOfTheContract) {
  const std::vector<std::string> spellings = {
      "BAD_REQUEST", "UNKNOWN_VERB", "BAD_NAME", "BAD_ARG",       "NOT_FOUND",     "NOT_HELD",
      "OVERFLOW",    "TOO_MANY",     "EXISTS",   "BUSY",          "DUPLICATE_TAG", "LIMIT",
      "DENIED",      "AUTH",         "SHUTDOWN", "LINE_TOO_LONG", "KICKED",
  };
  EXPECT_EQ(error_code_name(ErrorCode::kNone), "");
  for (std::size_t i = 0; i < spellings.size(); ++i) {
    const auto code = static_cast<ErrorCode>(i + 1);
    EXPECT_EQ(error_code_name(code), spellings[i]);
    ErrorCode parsed = ErrorCode::kNone;
    EXPECT_TRUE(parse_error_code(spellings[i], parsed)) << spellings[i];
    EXPECT_EQ(parsed, code);
  }
  EXPECT_EQ(static_cast<std::size_t>(kLastErrorCode), spellings.size());
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
      {"* ERR KICKED by session 3", "*", AnswerType::kError, "KICKED by session 3", ErrorCode::kKicked, "by session 3"},
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

// --- Typed answers ---------------------------------------------------------------

// The `rest` of the one line `out` holds, as parse_answer splits it.
std::string rest_of(const std::string& out, AnswerType type) {
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;
  Answer answer;
  EXPECT_TRUE(parse_answer(std::string_view(out).substr(0, out.size() - 1), answer)) << out;
  EXPECT_EQ(answer.type, type) << out;
  return std::string(answer.rest);
}

TEST(ParseFenceValueEnd, ReadBackTheNumbers) {
  for (const std::uint64_t n : {std::uint64_t{0}, std::uint64_t{17}, std::uint64_t{18446744073709551615u}}) {
    std::string out;
    append_ok_number(out, "a", n);
    std::uint64_t fence = 1;
    ASSERT_TRUE(parse_fence(rest_of(out, AnswerType::kOk), fence)) << out;
    EXPECT_EQ(fence, n);
    out.clear();
    append_end(out, "l", n);
    std::uint64_t count = 1;
    ASSERT_TRUE(parse_end(rest_of(out, AnswerType::kEnd), count));
    EXPECT_EQ(count, n);
  }
  std::int64_t value = -5;
  EXPECT_TRUE(parse_value("2147483647", value));
  EXPECT_EQ(value, 2147483647);
  for (const std::string_view bad : {"", "-1", "x", "1 2", "18446744073709551616", " 1"}) {
    std::uint64_t u = 0;
    EXPECT_FALSE(parse_fence(bad, u)) << bad;
    EXPECT_FALSE(parse_end(bad, u)) << bad;
    EXPECT_FALSE(parse_value(bad, value)) << bad;
  }
}

TEST(ParseHello, ReadsVersionAndSessionId) {
  HelloAnswer hello;
  std::string out;
  append_ok_text(out, "h", "netsem 1 42");
  ASSERT_TRUE(parse_hello(rest_of(out, AnswerType::kOk), hello));
  EXPECT_EQ(hello.major, 1);
  EXPECT_EQ(hello.minor, 0);
  EXPECT_EQ(hello.session_id, 42u);
  ASSERT_TRUE(parse_hello("netsem 1.1 7", hello));
  EXPECT_EQ(hello.minor, 1);
  EXPECT_EQ(hello.session_id, 7u);
  for (const std::string_view bad : {"", "netsem", "netsem 1", "netsem 1 0", "netsem 1 x", "redis 1 2", "netsem 1. 2",
                                     "netsem .1 2", "netsem 1 2 3", "netsem  1 2", "netsem 1.1.1 2"}) {
    EXPECT_FALSE(parse_hello(bad, hello)) << bad;
  }
}

TEST(ParseGetAndListItem, ReadBackWhatTheServerWrites) {
  const std::vector<SemaphoreView> views = {
      {"host:10.0.0.1 web%", 0, 1, 1, 2, "undefined"},
      {"x", 1, 1, 0, 0, "absent"},
      {"caf\xc3\xa9", 2147483647, 2147483647, 18446744073709551615u, 3, "created"},
  };
  for (const SemaphoreView& view : views) {
    std::string out;
    append_get(out, "g", view);
    SemaphoreItem got;
    ASSERT_TRUE(parse_get(rest_of(out, AnswerType::kOk), got)) << out;
    EXPECT_EQ(got.value, view.value);
    EXPECT_EQ(got.max, view.max);
    EXPECT_EQ(got.holders, view.holders);
    EXPECT_EQ(got.waiters, view.waiters);
    EXPECT_EQ(got.kind, view.kind);

    out.clear();
    append_item(out, "l", view);
    const std::string rest = rest_of(out, AnswerType::kItem);
    SemaphoreItem item;
    ASSERT_TRUE(parse_list_item(rest, item)) << out;
    EXPECT_EQ(item.name, view.name);
    EXPECT_TRUE(item.name_decoded);
    EXPECT_EQ(item.value, view.value);
    EXPECT_EQ(item.max, view.max);
    EXPECT_EQ(item.holders, view.holders);
    EXPECT_EQ(item.waiters, view.waiters);
    EXPECT_EQ(item.kind, view.kind);
  }
}

TEST(ParseListItem, KeepsANameThisBuildRefusesAsSent) {
  SemaphoreItem item;
  ASSERT_TRUE(parse_list_item("$old%2 1 1 0 0 created", item));
  EXPECT_FALSE(item.name_decoded);
  EXPECT_EQ(item.name, "$old%2");
}

TEST(ParseGetAndListItem, RefuseOtherShapes) {
  SemaphoreItem item;
  for (const std::string_view bad : {"", "1 1 0 0", "1 1 0 0 created x", "-1 1 0 0 created", "1 1 0 -1 created",
                                     "1  1 0 0 created", "1 1 0 0 ", "x 1 0 0 created"}) {
    EXPECT_FALSE(parse_get(bad, item)) << bad;
  }
  for (const std::string_view bad : {"", "n 1 1 0 0", "n 1 1 0 0 created x", "n 1 1 x 0 created", " 1 1 0 0 c"}) {
    EXPECT_FALSE(parse_list_item(bad, item)) << bad;
  }
}

TEST(HolderItem, ReadsBackWhatTheServerWrites) {
  const std::vector<HolderView> views = {
      {1, 1, 17, 0, "cron job"},
      {18446744073709551615u, kMaxCount, 18446744073709551615u, 9223372036854775807, ""},
      {3, 2, 0, 5, "ace"},
  };
  for (const HolderView& view : views) {
    std::string out;
    append_holder_item(out, "h", view);
    HolderItem item;
    ASSERT_TRUE(parse_holder_item(rest_of(out, AnswerType::kItem), item)) << out;
    EXPECT_EQ(item.session_id, view.session_id);
    EXPECT_EQ(item.count, view.count);
    EXPECT_EQ(item.fence, view.fence);
    EXPECT_EQ(item.held_ms, view.held_ms);
    EXPECT_EQ(item.label, view.label);
  }
  std::string out;
  append_holder_item(out, "h", {5, 2, 9, 100, "my job"});
  EXPECT_EQ(out, "h ITEM 5 2 9 100 my%20job\n");
  out.clear();
  append_holder_item(out, "h", {5, 2, 9, 100, ""});
  EXPECT_EQ(out, "h ITEM 5 2 9 100 -\n");
  // A label that is "-" is not none.
  out.clear();
  append_holder_item(out, "h", {5, 2, 9, 100, "-"});
  EXPECT_EQ(out, "h ITEM 5 2 9 100 %2D\n");
  HolderItem dash;
  ASSERT_TRUE(parse_holder_item(rest_of(out, AnswerType::kItem), dash));
  EXPECT_EQ(dash.label, "-");
}

TEST(WaiterItem, ReadsBackWhatTheServerWrites) {
  const std::vector<WaiterView> views = {{1, 1, 0, -1, ""}, {2, 3, 40, 960, "batch 100%"}};
  for (const WaiterView& view : views) {
    std::string out;
    append_waiter_item(out, "w", view);
    WaiterItem item;
    ASSERT_TRUE(parse_waiter_item(rest_of(out, AnswerType::kItem), item)) << out;
    EXPECT_EQ(item.session_id, view.session_id);
    EXPECT_EQ(item.count, view.count);
    EXPECT_EQ(item.waited_ms, view.waited_ms);
    EXPECT_EQ(item.timeout_ms_left, view.timeout_ms_left);
    EXPECT_EQ(item.label, view.label);
  }
  std::string out;
  append_waiter_item(out, "w", {2, 3, 40, -1, "x"});
  EXPECT_EQ(out, "w ITEM 2 3 40 -1 x\n");
}

TEST(SessionItem, ReadsBackWhatTheServerWrites) {
  const std::vector<SessionView> views = {
      {1, "127.0.0.1:40000", "v1", 0, 0, 10, 5, ""},
      {2, "[::1]:53559", "ace", 1, 0, 3000, 0, "ace"},
      {3, "10.0.0.2:1", "v1+tls", 4, 2, 1, 1, "netsem-cli run 100%"},
  };
  for (const SessionView& view : views) {
    std::string out;
    append_session_item(out, "s", view);
    SessionItem item;
    ASSERT_TRUE(parse_session_item(rest_of(out, AnswerType::kItem), item)) << out;
    EXPECT_EQ(item.session_id, view.session_id);
    EXPECT_EQ(item.peer, view.peer);
    EXPECT_EQ(item.dialect, view.dialect);
    EXPECT_EQ(item.permits_held, view.permits_held);
    EXPECT_EQ(item.pending, view.pending);
    EXPECT_EQ(item.age_ms, view.age_ms);
    EXPECT_EQ(item.idle_ms, view.idle_ms);
    EXPECT_EQ(item.label, view.label);
  }
  std::string out;
  append_session_item(out, "s", views[2]);
  EXPECT_EQ(out, "s ITEM 3 10.0.0.2:1 v1+tls 4 2 1 1 netsem-cli%20run%20100%25\n");
}

TEST(ListingItems, RefuseOtherShapes) {
  HolderItem holder;
  WaiterItem waiter;
  SessionItem session;
  for (const std::string_view bad :
       {"", "1 1 1 1", "0 1 1 1 -", "1 0 1 1 -", "1 1 1 -1 -", "1 1 1 1 - x", "1 1 1 1 %zz", "1 1 1 1 $x"}) {
    EXPECT_FALSE(parse_holder_item(bad, holder)) << bad;
  }
  for (const std::string_view bad : {"", "1 1 1 -2 -", "1 1 -1 1 -", "x 1 1 1 -", "1 1 1 1"}) {
    EXPECT_FALSE(parse_waiter_item(bad, waiter)) << bad;
  }
  for (const std::string_view bad :
       {"", "1 p v1 0 0 0 0", "1 p v1 0 0 0 0 - x", "1 p v1 -1 0 0 0 -", "1 %zz v1 0 0 0 0 -", "0 p v1 0 0 0 0 -"}) {
    EXPECT_FALSE(parse_session_item(bad, session)) << bad;
  }
}

TEST(MineItems, RoundTripAndRefuseOtherShapes) {  // proposed 1.2
  std::string out;
  append_mine_held(out, "m", "db pool", 2, 1207);
  EXPECT_EQ(out, "m ITEM held db%20pool 2 1207\n");
  MineItem item;
  ASSERT_TRUE(parse_mine_item(rest_of(out, AnswerType::kItem), item)) << out;
  EXPECT_TRUE(item.held);
  EXPECT_EQ(item.name, "db pool");
  EXPECT_EQ(item.count, 2);
  EXPECT_EQ(item.fence, 1207u);
  out.clear();
  append_mine_queued(out, "m", "a7", "100%", 3);
  EXPECT_EQ(out, "m ITEM queued a7 100%25 3\n");
  ASSERT_TRUE(parse_mine_item(rest_of(out, AnswerType::kItem), item)) << out;
  EXPECT_FALSE(item.held);
  EXPECT_EQ(item.tag, "a7");
  EXPECT_EQ(item.name, "100%");
  EXPECT_EQ(item.count, 3);
  for (const std::string_view bad : {"", "held db 1", "held db 0 1", "held db 1 x", "queued a db", "queued a db 1 2",
                                     "queued a db 0", "queued %zz db 1", "other db 1 1", "held %zz 1 1"}) {
    EXPECT_FALSE(parse_mine_item(bad, item)) << bad;
  }
}

}  // namespace
}  // namespace netsem::protocol
