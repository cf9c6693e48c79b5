// Tests of requests.h: the request parser (every verb, every refusal the
// contract names) and the encoders, which must give back what they encode.
#include "protocol/requests.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "protocol/names.h"

namespace netsem::protocol {
namespace {

using namespace std::string_literals;

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
      {"t HELLO 1 my%20job", kReq},
      {"t HELLO 1 50%off", kErr, ErrorCode::kBadArg},  // 1.1: the label is checked like a name
      {"t HELLO 1 $me", kErr, ErrorCode::kBadArg},
      {"t HELLO 1 a%01b", kErr, ErrorCode::kBadArg},
      {"t HELLO", kErr, ErrorCode::kBadRequest},
      {"t HELLO 1 a b", kErr, ErrorCode::kBadRequest},
      {"t HELLO 2", kErr, ErrorCode::kBadArg},
      {"t HELLO 0", kErr, ErrorCode::kBadArg},
      {"t RESUME 0 0123456789abcdef", kErr, ErrorCode::kBadArg},  // proposed 1.2: ids from 1
      {"t RESUME x 0123456789abcdef", kErr, ErrorCode::kBadArg},
      {"t RESUME 1 0123456789abcde", kErr, ErrorCode::kBadArg},   // a secret has 16 to 64 digits
      {"t RESUME 1 0123456789ABCDEF", kErr, ErrorCode::kBadArg},  // lower case hex only
      {"t RESUME 1", kErr, ErrorCode::kBadRequest},
      {"t MINE x", kErr, ErrorCode::kBadRequest},
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
      // 1.1: OPTION (name and value case-insensitive)
      {"t OPTION queued off", kReq},
      {"t option QUEUED On", kReq},
      {"t OPTION queued", kErr, ErrorCode::kBadRequest},
      {"t OPTION queued off x", kErr, ErrorCode::kBadRequest},
      {"t OPTION queue off", kErr, ErrorCode::kBadArg},
      {"t OPTION queued no", kErr, ErrorCode::kBadArg},
      {"t OPTION queued  off", kErr, ErrorCode::kBadRequest},
      // HOLDERS, WAITERS
      {"t HOLDERS a%20b", kReq},
      {"t waiters a", kReq},
      {"t HOLDERS", kErr, ErrorCode::kBadRequest},
      {"t WAITERS a b", kErr, ErrorCode::kBadRequest},
      {"t HOLDERS $a", kErr, ErrorCode::kBadName},
      {"t WAITERS %zz", kErr, ErrorCode::kBadName},
      // SESSIONS
      {"t SESSIONS", kReq},
      {"t SESSIONS x", kErr, ErrorCode::kBadRequest},
      // KICK: any id parses; the dispatcher checks the right before the id.
      {"t KICK 7", kReq},
      {"t KICK nobody", kReq},
      {"t KICK", kErr, ErrorCode::kBadRequest},
      {"t KICK 1 2", kErr, ErrorCode::kBadRequest},
      // CLUSTER (proposed 1.2): STATUS, ADD id raft client, REMOVE id.
      {"t CLUSTER STATUS", kReq},
      {"t cluster status", kReq},
      {"t CLUSTER ADD 4 127.0.0.4:7001 127.0.0.4:53559", kReq},
      {"t CLUSTER REMOVE 3", kReq},
      {"t CLUSTER", kErr, ErrorCode::kBadRequest},
      {"t CLUSTER JOIN 3", kErr, ErrorCode::kBadArg},
      {"t CLUSTER STATUS now", kErr, ErrorCode::kBadRequest},
      {"t CLUSTER REMOVE", kErr, ErrorCode::kBadRequest},
      {"t CLUSTER REMOVE 0", kErr, ErrorCode::kBadArg},
      // A server id is 1..2^53, as a [cluster] id (2^64-1 is the resume
      // probe's host in the log).
      {"t CLUSTER REMOVE 9007199254740992", kReq},
      {"t CLUSTER REMOVE 9007199254740993", kErr, ErrorCode::kBadArg},
      {"t CLUSTER ADD 18446744073709551615 127.0.0.4:7001 127.0.0.4:53559", kErr, ErrorCode::kBadArg},
      {"t CLUSTER ADD 0 127.0.0.4:7001 127.0.0.4:53559", kErr, ErrorCode::kBadArg},
      {"t CLUSTER REMOVE x", kErr, ErrorCode::kBadArg},
      {"t CLUSTER ADD 4 127.0.0.4:7001", kErr, ErrorCode::kBadRequest},
      {"t CLUSTER ADD 4 a b c", kErr, ErrorCode::kBadRequest},
      // CLUSTER FENCES n: n is 1..2^53.
      {"t CLUSTER FENCES 1000", kReq},
      {"t cluster fences 9007199254740992", kReq},
      {"t CLUSTER FENCES 9007199254740993", kErr, ErrorCode::kBadArg},
      {"t CLUSTER FENCES 0", kErr, ErrorCode::kBadArg},
      {"t CLUSTER FENCES -1", kErr, ErrorCode::kBadArg},
      {"t CLUSTER FENCES", kErr, ErrorCode::kBadRequest},
      {"t CLUSTER FENCES 1 2", kErr, ErrorCode::kBadRequest},
      // Still unknown here: AUTH belongs to the security issue.
      {"t FROB token", kErr, ErrorCode::kUnknownVerb},
      {"t AUTH", kErr, ErrorCode::kBadRequest},
      {"t AUTH a b", kErr, ErrorCode::kBadRequest},
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
    r.name = "netsem-cli/0.1";  // 1.1: the label decoded like a name
    r.has_name = true;
    cases.push_back({"t hello 1 netsem-cli/0.1", r});
    r.text = "cron%20job";
    r.name = "cron job";
    cases.push_back({"t HELLO 1 cron%20job", r});
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
  {
    Request r = make(Verb::kOption);
    r.option = SessionOption::kQueued;
    r.option_on = false;
    cases.push_back({"t OPTION queued off", r});
    r.option_on = true;
    cases.push_back({"t OPTION Queued ON", r});
  }
  cases.push_back({"t HOLDERS h%3Ax", named(Verb::kHolders, "h:x")});
  cases.push_back({"t WAITERS w%20x", named(Verb::kWaiters, "w x")});
  cases.push_back({"t SESSIONS", make(Verb::kSessions)});
  {
    Request r = make(Verb::kKick);
    r.session_id = "42";
    cases.push_back({"t KICK 42", r});
  }
  {
    Request r = make(Verb::kAuth);
    r.text = "s3cr%t!";
    r.has_text = true;
    cases.push_back({"t auth s3cr%t!", r});  // the token as sent, not decoded
  }
  cases.push_back({"t LEASE", make(Verb::kLease)});  // proposed 1.2
  cases.push_back({"t RESUMABLE", make(Verb::kResumable)});
  {
    Request r = make(Verb::kResume);
    r.session_id = "42";
    r.secret = "9f0c2d5e8a1b4c7d9e0f1a2b3c4d5e6f";
    cases.push_back({"t resume 42 9f0c2d5e8a1b4c7d9e0f1a2b3c4d5e6f", r});
  }
  cases.push_back({"t MINE", make(Verb::kMine)});
  cases.push_back({"t LEADER", make(Verb::kLeader)});

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
    EXPECT_EQ(request.option, w.option) << c.line;
    EXPECT_EQ(request.option_on, w.option_on) << c.line;
    EXPECT_EQ(request.session_id, w.session_id) << c.line;
    EXPECT_EQ(request.secret, w.secret) << c.line;
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

TEST(ParseSessionId, TakesDecimalIdsFromOne) {
  std::uint64_t id = 9;
  EXPECT_TRUE(parse_session_id("1", id));
  EXPECT_EQ(id, 1u);
  EXPECT_TRUE(parse_session_id("18446744073709551615", id));
  EXPECT_EQ(id, 18446744073709551615u);
  for (const std::string_view bad : {"", "0", "-1", "+1", "18446744073709551616", "1x", " 1", "x"}) {
    id = 9;
    EXPECT_FALSE(parse_session_id(bad, id)) << bad;
    EXPECT_EQ(id, 9u) << bad;
  }
}

TEST(VerbName, SpellsEveryVerb) {
  for (auto v = static_cast<std::uint8_t>(Verb::kHello); v <= static_cast<std::uint8_t>(Verb::kCluster); ++v) {
    const auto verb = static_cast<Verb>(v);
    const std::string line = "t " + std::string(verb_name(verb));
    Request request;
    ParseError error;
    // Every verb's word parses back to it (arguments aside).
    (void)parse_request(line, request, error);
    EXPECT_NE(error.code, ErrorCode::kUnknownVerb) << line;
    EXPECT_EQ(request.verb, verb) << line;
  }
}

// --- Encoders ------------------------------------------------------------------

template <typename Encode>
std::string encoded(Encode&& encode) {
  std::string out;
  encode(out);
  return out;
}

TEST(EncodeRequest, WritesTheShortestLine) {
  struct Case {
    std::string line;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {encoded([](std::string& o) { encode_hello(o, "h", ""); }), "h HELLO 1\n"},
      {encoded([](std::string& o) { encode_hello(o, "h", "my job"); }), "h HELLO 1 my%20job\n"},
      {encoded([](std::string& o) { encode_acquire(o, "a", "db"); }), "a ACQUIRE db\n"},
      {encoded([](std::string& o) { encode_acquire(o, "a", "db", 2); }), "a ACQUIRE db 2\n"},
      {encoded([](std::string& o) { encode_acquire(o, "a", "db", 1, 0); }), "a ACQUIRE db 1 0\n"},
      {encoded([](std::string& o) { encode_acquire(o, "a", "db", 3, 5000); }), "a ACQUIRE db 3 5000\n"},
      {encoded([](std::string& o) { encode_acquire(o, "a", "host:10.0.0.1 web%"); }),
       "a ACQUIRE host:10.0.0.1%20web%25\n"},
      {encoded([](std::string& o) { encode_wait(o, "w", "q", 1, -1); }), "w WAIT q\n"},
      {encoded([](std::string& o) { encode_wait(o, "w", "q", 2147483647, 9223372036854775807); }),
       "w WAIT q 2147483647 9223372036854775807\n"},
      {encoded([](std::string& o) { encode_release(o, "r", "db"); }), "r RELEASE db\n"},
      {encoded([](std::string& o) { encode_release(o, "r", "db", 4); }), "r RELEASE db 4\n"},
      {encoded([](std::string& o) { encode_post(o, "p", "q", 1); }), "p POST q\n"},
      {encoded([](std::string& o) { encode_post(o, "p", "q", 2); }), "p POST q 2\n"},
      {encoded([](std::string& o) { encode_cancel(o, "c", "a1"); }), "c CANCEL a1\n"},
      {encoded([](std::string& o) { encode_create(o, "c", "x", 5, 5); }), "c CREATE x 5\n"},
      {encoded([](std::string& o) { encode_create(o, "c", "x", 0, 7); }), "c CREATE x 0 7\n"},
      {encoded([](std::string& o) { encode_create(o, "c", "x", 5, 5, true); }), "c CREATE x 5 EXCL\n"},
      {encoded([](std::string& o) { encode_create(o, "c", "x", 1, 2, true); }), "c CREATE x 1 2 EXCL\n"},
      {encoded([](std::string& o) { encode_delete(o, "d", "x y"); }), "d DELETE x%20y\n"},
      {encoded([](std::string& o) { encode_get(o, "g", "x"); }), "g GET x\n"},
      {encoded([](std::string& o) { encode_list(o, "l"); }), "l LIST\n"},
      {encoded([](std::string& o) { encode_list(o, "l", "host:"); }), "l LIST host:\n"},
      {encoded([](std::string& o) { encode_stats(o, "s"); }), "s STATS\n"},
      {encoded([](std::string& o) { encode_ping(o, "p"); }), "p PING\n"},
      {encoded([](std::string& o) { encode_ping(o, "p", "%41\xff"); }), "p PING %41\xff\n"},
      {encoded([](std::string& o) { encode_quit(o, "q"); }), "q QUIT\n"},
      {encoded([](std::string& o) { encode_option(o, "o", SessionOption::kQueued, false); }), "o OPTION queued off\n"},
      {encoded([](std::string& o) { encode_option(o, "o", SessionOption::kQueued, true); }), "o OPTION queued on\n"},
      {encoded([](std::string& o) { encode_holders(o, "h", "db"); }), "h HOLDERS db\n"},
      {encoded([](std::string& o) { encode_waiters(o, "w", "d b"); }), "w WAITERS d%20b\n"},
      {encoded([](std::string& o) { encode_sessions(o, "s"); }), "s SESSIONS\n"},
      {encoded([](std::string& o) { encode_kick(o, "k", 18446744073709551615u); }), "k KICK 18446744073709551615\n"},
      {encoded([](std::string& o) { encode_auth(o, "a", "tok-1"); }), "a AUTH tok-1\n"},
      {encoded([](std::string& o) { encode_lease(o, "l"); }), "l LEASE\n"},
      {encoded([](std::string& o) { encode_resumable(o, "r"); }), "r RESUMABLE\n"},
      {encoded([](std::string& o) { encode_resume(o, "r", 7, "0123456789abcdef"); }), "r RESUME 7 0123456789abcdef\n"},
      {encoded([](std::string& o) { encode_mine(o, "m"); }), "m MINE\n"},
      {encoded([](std::string& o) { encode_leader(o, "l"); }), "l LEADER\n"},
  };
  for (const Case& c : cases) EXPECT_EQ(c.line, c.expected);
}

// Encodes `line` (one whole line) back through the parser.
Request parse_back(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  Request request;
  ParseError error;
  const std::string_view without = std::string_view(line).substr(0, line.size() - 1);
  EXPECT_EQ(parse_request(without, request, error), ParseStatus::kRequest) << line << ": " << error.message;
  // Views point into `line`, which the caller keeps; copy what is compared.
  return request;
}

// Names whose every byte must survive the trip, raw ones included.
std::vector<std::string> tricky_names() {
  return {"a",
          "host:10.0.0.1 web",
          "100%",
          "%41",
          "tab\there",  // a control byte: encoded, so the line stays one line (the server refuses it: BAD_NAME)
          "caf\xc3\xa9",
          "x$",
          std::string(255, 'n')};
}

TEST(EncodeRequest, ParsesBackToTheValues) {
  for (const std::string& name : tricky_names()) {
    const bool valid = check_name(name) == ErrorCode::kNone;
    for (const std::int64_t count : {std::int64_t{1}, std::int64_t{2}, kMaxCount}) {
      for (const std::int64_t timeout :
           {std::int64_t{-1}, std::int64_t{0}, std::int64_t{1}, std::numeric_limits<std::int64_t>::max()}) {
        for (const Verb verb : {Verb::kAcquire, Verb::kWait}) {
          std::string line;
          (verb == Verb::kAcquire ? encode_acquire : encode_wait)(line, "t1", name, count, timeout);
          if (!valid) {
            Request request;
            ParseError error;
            EXPECT_EQ(parse_request(line.substr(0, line.size() - 1), request, error), ParseStatus::kError);
            EXPECT_EQ(error.code, ErrorCode::kBadName) << line;
            continue;
          }
          const Request r = parse_back(line);
          EXPECT_EQ(r.verb, verb);
          EXPECT_EQ(r.name, name);
          EXPECT_EQ(r.count, count);
          EXPECT_EQ(r.timeout_ms, timeout);
        }
      }
      if (!valid) continue;
      for (const Verb verb : {Verb::kRelease, Verb::kPost}) {
        std::string line;
        (verb == Verb::kRelease ? encode_release : encode_post)(line, "t2", name, count);
        const Request r = parse_back(line);
        EXPECT_EQ(r.verb, verb);
        EXPECT_EQ(r.name, name);
        EXPECT_EQ(r.count, count);
      }
    }
    if (!valid) continue;
    for (const auto& [value, max, excl] : std::vector<std::tuple<std::int64_t, std::int64_t, bool>>{
             {0, 1, false}, {1, 1, true}, {5, 5, false}, {3, 9, true}, {kMaxCount, kMaxCount, false}}) {
      std::string line;
      encode_create(line, "c", name, value, max, excl);
      const Request r = parse_back(line);
      EXPECT_EQ(r.verb, Verb::kCreate);
      EXPECT_EQ(r.name, name);
      EXPECT_EQ(r.value, value);
      EXPECT_EQ(r.max, max);
      EXPECT_EQ(r.exclusive, excl);
    }
    using Named = void (*)(std::string&, std::string_view, std::string_view);
    for (const auto& [encode, verb] : std::vector<std::pair<Named, Verb>>{{encode_delete, Verb::kDelete},
                                                                          {encode_get, Verb::kGet},
                                                                          {encode_holders, Verb::kHolders},
                                                                          {encode_waiters, Verb::kWaiters}}) {
      std::string line;
      encode(line, "n", name);
      const Request r = parse_back(line);
      EXPECT_EQ(r.verb, verb);
      EXPECT_EQ(r.name, name);
    }
    std::string line;
    encode_list(line, "l", name);
    const Request r = parse_back(line);
    EXPECT_EQ(r.verb, Verb::kList);
    EXPECT_TRUE(r.has_name);
    EXPECT_EQ(r.name, name);
  }
}

TEST(EncodeRequest, ParsesBackTheVerbsWithoutNames) {
  struct Case {
    std::string line;
    Verb verb;
  };
  std::string hello, cancel, list, stats, ping, ping_payload, quit, off, on, sessions, kick;
  encode_hello(hello, "h");
  encode_cancel(cancel, "c", "a.b:c-d_e");
  encode_list(list, "l");
  encode_stats(stats, "s");
  encode_ping(ping, "p");
  encode_ping(ping_payload, "p", "%zz\x01\xff");
  encode_quit(quit, "q");
  encode_option(off, "o", SessionOption::kQueued, false);
  encode_option(on, "o", SessionOption::kQueued, true);
  encode_sessions(sessions, "s");
  encode_kick(kick, "k", 77);

  Request r = parse_back(hello);
  EXPECT_EQ(r.verb, Verb::kHello);
  EXPECT_EQ(r.version, kProtocolVersion);
  EXPECT_FALSE(r.has_text);
  r = parse_back(cancel);
  EXPECT_EQ(r.verb, Verb::kCancel);
  EXPECT_EQ(r.pending_tag, "a.b:c-d_e");
  r = parse_back(list);
  EXPECT_EQ(r.verb, Verb::kList);
  EXPECT_FALSE(r.has_name);
  EXPECT_EQ(parse_back(stats).verb, Verb::kStats);
  r = parse_back(ping);
  EXPECT_EQ(r.verb, Verb::kPing);
  EXPECT_FALSE(r.has_text);
  r = parse_back(ping_payload);
  EXPECT_TRUE(r.has_text);
  EXPECT_EQ(r.text, "%zz\x01\xff");
  EXPECT_EQ(parse_back(quit).verb, Verb::kQuit);
  r = parse_back(off);
  EXPECT_EQ(r.verb, Verb::kOption);
  EXPECT_EQ(r.option, SessionOption::kQueued);
  EXPECT_FALSE(r.option_on);
  EXPECT_TRUE(parse_back(on).option_on);
  EXPECT_EQ(parse_back(sessions).verb, Verb::kSessions);
  r = parse_back(kick);
  EXPECT_EQ(r.verb, Verb::kKick);
  std::uint64_t id = 0;
  EXPECT_TRUE(parse_session_id(r.session_id, id));
  EXPECT_EQ(id, 77u);
}

TEST(EncodeRequest, ClusterRoundTrips) {
  std::string status, add, remove;
  encode_cluster_status(status, "s");
  encode_cluster_add(add, "a", 9007199254740992u, "10.0.0.4:7001", "[::1]:53559");
  encode_cluster_remove(remove, "r", 3);
  EXPECT_EQ(status, "s CLUSTER STATUS\n");
  EXPECT_EQ(add, "a CLUSTER ADD 9007199254740992 10.0.0.4:7001 [::1]:53559\n");
  EXPECT_EQ(remove, "r CLUSTER REMOVE 3\n");
  Request r = parse_back(status);
  EXPECT_EQ(r.verb, Verb::kCluster);
  EXPECT_EQ(r.cluster_action, ClusterAction::kStatus);
  r = parse_back(add);
  EXPECT_EQ(r.cluster_action, ClusterAction::kAdd);
  EXPECT_EQ(r.member_id, kMaxServerId);
  EXPECT_EQ(r.raft_address, "10.0.0.4:7001");
  EXPECT_EQ(r.client_address, "[::1]:53559");
  r = parse_back(remove);
  EXPECT_EQ(r.cluster_action, ClusterAction::kRemove);
  EXPECT_EQ(r.member_id, 3u);
  std::string fences;
  encode_cluster_fences(fences, "f", 9007199254740992u);
  EXPECT_EQ(fences, "f CLUSTER FENCES 9007199254740992\n");
  r = parse_back(fences);
  EXPECT_EQ(r.cluster_action, ClusterAction::kFences);
  EXPECT_EQ(r.fences_by, 9007199254740992u);
}

TEST(EncodeRequest, HelloLabelIsEncodedLikeAName) {
  // 1.1 reads the label as a name field: a space travels as %20, and a
  // 1.0 server, which keeps it raw, still gets one field.
  std::string line;
  encode_hello(line, "h", "cron job 100%");
  EXPECT_EQ(line, "h HELLO 1 cron%20job%20100%25\n");
  const Request r = parse_back(line);
  std::string label;
  ASSERT_EQ(decode_name(r.text, label), ErrorCode::kNone);
  EXPECT_EQ(label, "cron job 100%");
  EXPECT_TRUE(r.has_name);  // the parser decodes it too
  EXPECT_EQ(r.name, "cron job 100%");
}

TEST(EncodeRequest, AppendsAfterWhatIsThereWithoutAllocating) {
  std::string out;
  out.reserve(4096);
  const char* const storage = out.data();
  for (int i = 0; i < 10; ++i) {
    encode_acquire(out, "a", "some name%", 3, 5000);
    encode_release(out, "r", "some name%", 3);
    encode_create(out, "c", "x", 1, 2, true);
    encode_kick(out, "k", 123456789);
  }
  EXPECT_EQ(out.data(), storage);
  EXPECT_EQ(out.substr(0, 42), "a ACQUIRE some%20name%25 3 5000\nr RELEASE ");
}

TEST(IsValidPingPayload, RefusesWhatCannotComeBackWhole) {
  EXPECT_TRUE(is_valid_ping_payload(""));
  EXPECT_TRUE(is_valid_ping_payload("x\xff%"));
  EXPECT_TRUE(is_valid_ping_payload(std::string(kMaxPingPayloadBytes, 'p')));
  EXPECT_FALSE(is_valid_ping_payload(std::string(kMaxPingPayloadBytes + 1, 'p')));
  for (const std::string& bad : {"a b"s, "a\r"s, "a\nb"s, "a\0b"s}) EXPECT_FALSE(is_valid_ping_payload(bad)) << bad;
}

}  // namespace
}  // namespace netsem::protocol
