// Tests of the Redis target's wire (bench/redis_wire.h) without a server:
// the RESP2 encoder and parser (whole replies only, partial input left
// untouched) and the recipe's state machine (granted; full, BLPOP, retry,
// granted; errors), fed replies by hand.
#include "redis_wire.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace netsem::bench {
namespace {

using Type = RespValue::Type;

std::string command(std::initializer_list<std::string_view> args) {
  std::string out;
  append_command(out, args);
  return out;
}

TEST(RespEncoding, ArrayOfBulkStrings) {
  EXPECT_EQ(command({"BLPOP", "{a}:notify", "1"}), "*3\r\n$5\r\nBLPOP\r\n$10\r\n{a}:notify\r\n$1\r\n1\r\n");
  EXPECT_EQ(command({"SET", "", "x y\r\n"}), "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$5\r\nx y\r\n\r\n");
}

struct ParseCase {
  std::string_view bytes;
  Type type;
  std::int64_t integer = 0;
  std::string_view text = {};
  std::size_t elements = 0;
};

TEST(RespParser, ParsesEveryReplyType) {
  const ParseCase cases[] = {
      {":1\r\n", Type::kInteger, 1},
      {":-42\r\n", Type::kInteger, -42},
      {"+OK\r\n", Type::kSimple, 0, "OK"},
      {"-ERR unknown command\r\n", Type::kError, 0, "ERR unknown command"},
      {"$5\r\nhello\r\n", Type::kBulk, 0, "hello"},
      {"$0\r\n\r\n", Type::kBulk, 0, ""},
      {"$4\r\na\r\nb\r\n", Type::kBulk, 0, "a\r\nb"},  // a bulk string may hold CRLF
      {"$-1\r\n", Type::kNil},
      {"*-1\r\n", Type::kNil},
      {"*0\r\n", Type::kArray},
      {"*2\r\n$3\r\nkey\r\n$1\r\n1\r\n", Type::kArray, 0, {}, 2},
      {"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n", Type::kArray, 0, {}, 3},
  };
  for (const auto& c : cases) {
    const std::string buffer = std::string(c.bytes) + ":7\r\n";  // a second reply follows
    std::string_view input = buffer;
    RespValue value;
    ASSERT_EQ(parse_resp(input, value), RespParse::kComplete) << c.bytes;
    EXPECT_EQ(value.type, c.type) << c.bytes;
    EXPECT_EQ(value.integer, c.integer) << c.bytes;
    EXPECT_EQ(value.text, c.text) << c.bytes;
    EXPECT_EQ(value.elements.size(), c.elements) << c.bytes;
    EXPECT_EQ(input, ":7\r\n") << c.bytes;  // only the first reply is taken
  }
}

TEST(RespParser, NestedArrayElements) {
  std::string_view input = "*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n";
  RespValue value;
  ASSERT_EQ(parse_resp(input, value), RespParse::kComplete);
  ASSERT_EQ(value.elements.size(), 3u);
  EXPECT_EQ(value.elements[0].integer, 1);
  EXPECT_EQ(value.elements[1].type, Type::kNil);
  ASSERT_EQ(value.elements[2].elements.size(), 1u);
  EXPECT_EQ(value.elements[2].elements[0].text, "x");
}

TEST(RespParser, EveryProperPrefixIsIncompleteAndUntouched) {
  for (const std::string_view whole : {":12\r\n", "+OK\r\n", "-ERR x\r\n", "$5\r\nhello\r\n", "$-1\r\n",
                                       "*2\r\n$3\r\nkey\r\n$1\r\n1\r\n", "*-1\r\n"}) {
    for (std::size_t size = 0; size < whole.size(); ++size) {
      std::string_view input = whole.substr(0, size);
      RespValue value;
      EXPECT_EQ(parse_resp(input, value), RespParse::kIncomplete) << whole << " cut at " << size;
      EXPECT_EQ(input.size(), size);
    }
  }
}

TEST(RespParser, RefusesWhatIsNotResp) {
  for (const std::string_view bad :
       {"a OK 1\r\n", ":1\n", ":\r\n", ":1x\r\n", "$-2\r\n", "$3\r\nabcd\r\n", "*-5\r\n", "*1\r\n?\r\n", "\r\n"}) {
    std::string_view input = bad;
    RespValue value;
    EXPECT_EQ(parse_resp(input, value), RespParse::kMalformed) << bad;
    EXPECT_EQ(input, bad);
  }
}

TEST(RespParser, RefusesDeepNesting) {
  std::string_view input = "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
  RespValue value;
  EXPECT_EQ(parse_resp(input, value), RespParse::kMalformed);
}

constexpr std::string_view kAcquireSha = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr std::string_view kReleaseSha = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";

RedisWire loaded_wire(std::int64_t limit = 10) {
  return RedisWire(RedisWireConfig{limit, "h1", std::string(kAcquireSha), std::string(kReleaseSha)});
}

const std::string kAcquire = command({"EVALSHA", kAcquireSha, "1", "{s}:holders", "10", "h1", "30000"});
const std::string kRelease = command({"EVALSHA", kReleaseSha, "2", "{s}:holders", "{s}:notify", "h1", "10"});
const std::string kWait = command({"BLPOP", "{s}:notify", "1"});

// Feeds `bytes` to the wire; the replies it returns, and what it wrote.
struct Fed {
  std::vector<Reply> replies;
  std::string out;
  std::size_t left = 0;  // bytes of input not taken
};

Fed feed(RedisWire& wire, std::string_view bytes) {
  Fed fed;
  std::string_view input = bytes;
  // After an error the connection is done (the driver closes it): a
  // malformed reply stays on input, so stop there.
  while (const auto reply = wire.next(input, fed.out)) {
    fed.replies.push_back(*reply);
    if (*reply == Reply::kError) break;
  }
  fed.left = input.size();
  return fed;
}

TEST(RedisWire, AcquireGrantedThenRelease) {
  auto wire = loaded_wire();
  std::string out;
  wire.acquire(out, "s");
  EXPECT_EQ(out, kAcquire);  // the limit and the holder travel as ARGV
  auto fed = feed(wire, ":1\r\n");
  EXPECT_EQ(fed.replies, std::vector{Reply::kGranted});
  EXPECT_EQ(fed.out, "");

  out.clear();
  wire.release(out, "s");
  EXPECT_EQ(out, kRelease);
  fed = feed(wire, ":1\r\n");
  EXPECT_EQ(fed.replies, std::vector{Reply::kReleased});
}

TEST(RedisWire, FullWaitsWithBlpopThenRetriesUntilGranted) {
  auto wire = loaded_wire();
  std::string out;
  wire.acquire(out, "s");

  auto fed = feed(wire, ":0\r\n");  // full
  EXPECT_EQ(fed.replies, std::vector{Reply::kQueued});
  EXPECT_EQ(fed.out, kWait);

  fed = feed(wire, "*2\r\n$10\r\n{s}:notify\r\n$1\r\n1\r\n");  // a token
  EXPECT_TRUE(fed.replies.empty());
  EXPECT_EQ(fed.left, 0u);  // the wake-up is the wire's own step
  EXPECT_EQ(fed.out, kAcquire);

  fed = feed(wire, ":0\r\n");  // taken again: wait again, not queued twice
  EXPECT_TRUE(fed.replies.empty());
  EXPECT_EQ(fed.out, kWait);

  fed = feed(wire, "*-1\r\n");  // BLPOP timed out: try anyway
  EXPECT_TRUE(fed.replies.empty());
  EXPECT_EQ(fed.out, kAcquire);

  fed = feed(wire, ":1\r\n");
  EXPECT_EQ(fed.replies, std::vector{Reply::kGranted});
  EXPECT_EQ(fed.out, "");
}

TEST(RedisWire, RepliesInOneBufferAreTakenInOrder) {
  auto wire = loaded_wire();
  std::string out;
  wire.acquire(out, "s");
  const auto fed = feed(wire, ":0\r\n*-1\r\n:1\r\n");
  EXPECT_EQ(fed.replies, (std::vector{Reply::kQueued, Reply::kGranted}));
  EXPECT_EQ(fed.out, kWait + kAcquire);
  EXPECT_EQ(fed.left, 0u);
}

TEST(RedisWire, PartialReplyIsLeftOnInput) {
  auto wire = loaded_wire();
  std::string out;
  wire.acquire(out, "s");
  std::string_view input = ":";
  EXPECT_EQ(wire.next(input, out), std::nullopt);
  EXPECT_EQ(input, ":");
  input = ":1\r";
  EXPECT_EQ(wire.next(input, out), std::nullopt);
  EXPECT_EQ(input, ":1\r");
  input = ":1\r\n";
  EXPECT_EQ(wire.next(input, out), Reply::kGranted);
  EXPECT_TRUE(input.empty());
}

TEST(RedisWire, PartialReplyAfterAWakeUpIsLeftOnInput) {
  auto wire = loaded_wire();
  std::string out;
  wire.acquire(out, "s");
  feed(wire, ":0\r\n");
  const auto fed = feed(wire, "*-1\r\n:");
  EXPECT_TRUE(fed.replies.empty());
  EXPECT_EQ(fed.left, 1u);  // the wake-up taken, the partial reply left
}

TEST(RedisWire, ErrorReplyIsAnError) {
  auto wire = loaded_wire();
  std::string out;
  wire.acquire(out, "s");
  const auto fed = feed(wire, "-NOSCRIPT No matching script. Please use EVAL.\r\n");
  EXPECT_EQ(fed.replies, std::vector{Reply::kError});
  EXPECT_EQ(wire.last_error(), "acquire: NOSCRIPT No matching script. Please use EVAL.");
}

TEST(RedisWire, ErrorReplyToTheWaitIsAnError) {
  auto wire = loaded_wire();
  std::string out;
  wire.acquire(out, "s");
  const auto fed = feed(wire, ":0\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
  EXPECT_EQ(fed.replies, (std::vector{Reply::kQueued, Reply::kError}));
  EXPECT_NE(wire.last_error().find("BLPOP: WRONGTYPE"), std::string::npos) << wire.last_error();
}

TEST(RedisWire, ReleaseOfAHoldThatExpiredIsAnError) {
  auto wire = loaded_wire();
  std::string out;
  wire.release(out, "s");
  EXPECT_EQ(feed(wire, ":0\r\n").replies, std::vector{Reply::kError});
  EXPECT_NE(wire.last_error().find("held no permit"), std::string::npos) << wire.last_error();
}

TEST(RedisWire, UnexpectedOrMalformedRepliesAreErrors) {
  auto wire = loaded_wire();
  EXPECT_EQ(feed(wire, ":1\r\n").replies, std::vector{Reply::kError});  // nothing was asked
  EXPECT_EQ(wire.last_error(), "unexpected reply: integer 1");

  std::string out;
  wire.acquire(out, "s");
  EXPECT_EQ(feed(wire, "$2\r\nhi\r\n").replies, std::vector{Reply::kError});  // not 0 or 1
  wire.acquire(out, "s");
  EXPECT_EQ(feed(wire, "s OK 1\n").replies, std::vector{Reply::kError});  // not RESP at all
  EXPECT_NE(wire.last_error().find("not a RESP reply"), std::string::npos) << wire.last_error();
}

TEST(RedisWire, PipelinedRequestsAreAnsweredInOrder) {
  auto wire = loaded_wire(1);
  std::string out;
  for (int i = 0; i < 3; ++i) {
    wire.acquire(out, "s");
    wire.release(out, "s");
  }
  const auto fed = feed(wire, ":1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n");
  EXPECT_EQ(fed.replies, (std::vector{Reply::kGranted, Reply::kReleased, Reply::kGranted, Reply::kReleased,
                                      Reply::kGranted, Reply::kReleased}));
}

TEST(RedisWire, CreateAndRemoveDeleteTheKeys) {
  auto wire = loaded_wire();
  std::string out;
  wire.create(out, "s", 5);
  wire.remove(out, "s");
  const std::string del = command({"DEL", "{s}:holders", "{s}:notify"});
  EXPECT_EQ(out, del + del);
  EXPECT_EQ(feed(wire, ":2\r\n:0\r\n").replies, (std::vector{Reply::kDone, Reply::kDone}));
}

TEST(RedisWire, WithoutShasEvalsTheScripts) {
  RedisWire wire(RedisWireConfig{1, "h", "", ""});
  std::string out;
  wire.acquire(out, "s");
  wire.release(out, "s");
  EXPECT_EQ(out, command({"EVAL", kAcquireScript, "1", "{s}:holders", "1", "h", "30000"}) +
                     command({"EVAL", kReleaseScript, "2", "{s}:holders", "{s}:notify", "h", "1"}));
}

TEST(RedisWire, MakeWireGivesEachConnectionItsOwnHolder) {
  WireSettings settings{10, std::string(kAcquireSha), std::string(kReleaseSha)};
  auto first = make_wire(Target::kRedis, settings);
  auto second = make_wire(Target::kRedis, settings);
  std::string first_out;
  std::string second_out;
  first->acquire(first_out, "s");
  second->acquire(second_out, "s");
  EXPECT_NE(first_out, second_out);
  EXPECT_NE(first_out.find(kAcquireSha), std::string::npos);
  std::string_view input = ":1\r\n";
  EXPECT_EQ(first->next(input, first_out), Reply::kGranted);
}

}  // namespace
}  // namespace netsem::bench
