// Tests of ace_codec.h: telling ACE from protocol v1 by the first bytes, and
// the token parser with tokens whole, several per read, split across reads,
// and every way a token can be bad.
#include "protocol/ace_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace netsem::protocol {
namespace {

using namespace std::string_literals;

TEST(DetectDialect, DecidesOnThePrefixAcquireColon) {
  struct Case {
    std::string bytes;
    Dialect dialect;
  };
  const std::vector<Case> cases = {
      {"", Dialect::kUndecided},    {"a", Dialect::kUndecided},
      {"acq", Dialect::kUndecided}, {"acquire", Dialect::kUndecided},
      {"acquire:", Dialect::kAce},  {"acquire:pcap|", Dialect::kAce},
      {"acquire:|", Dialect::kAce},  // ACE, and then a bad token
      {"a1 PING\n", Dialect::kV1},  {"b", Dialect::kV1},
      {"acquirex", Dialect::kV1},   {"acquire ", Dialect::kV1},
      {"Acquire:", Dialect::kV1},   {"ACQUIRE:x|", Dialect::kV1},
      {"\n", Dialect::kV1},
  };
  for (const Case& c : cases) EXPECT_EQ(detect_dialect(c.bytes), c.dialect) << c.bytes;
}

// Feeds each chunk, then reads tokens until kNeedMore; records them as text:
// "acquire:<name>", "wait", "release", "more", "bad". Stops at the first "bad".
std::vector<std::string> run(const std::vector<std::string>& chunks) {
  AceParser parser;
  std::vector<std::string> seen;
  for (const std::string& chunk : chunks) {
    parser.buffer().append(chunk);
    while (true) {
      const AceParser::Token token = parser.next();
      switch (token) {
        case AceParser::Token::kNeedMore:
          seen.push_back("more");
          break;
        case AceParser::Token::kAcquire:
          seen.push_back("acquire:" + std::string(parser.name()));
          break;
        case AceParser::Token::kWait:
          seen.push_back("wait");
          break;
        case AceParser::Token::kRelease:
          seen.push_back("release");
          break;
        case AceParser::Token::kBad:
          seen.push_back("bad");
          return seen;
      }
      if (token == AceParser::Token::kNeedMore) break;
    }
  }
  return seen;
}

using Tokens = std::vector<std::string>;

TEST(AceParser, SplitsTokens) {
  struct Case {
    std::vector<std::string> chunks;
    Tokens tokens;
  };
  const std::vector<Case> cases = {
      {{""}, {"more"}},
      {{"acquire:pcap|"}, {"acquire:pcap", "more"}},
      {{"acquire:host:10.0.0.1 web|"}, {"acquire:host:10.0.0.1 web", "more"}},
      {{"acquire:~!$%&()*+,-./;<=>?@[\\]^_`{}|"}, {"acquire:~!$%&()*+,-./;<=>?@[\\]^_`{}", "more"}},
      {{"acquire:pcap|", "wait|", "wait|wait|", "release|"},
       {"acquire:pcap", "more", "wait", "more", "wait", "wait", "more", "release", "more"}},
      {{"acquire:x|wait|release|"}, {"acquire:x", "wait", "release", "more"}},
      {{"wait|release|"}, {"wait", "release", "more"}},
      {{"acq", "uire:p", "ca", "p", "|wa", "it", "|rel", "ease|"},
       {"more", "more", "more", "more", "acquire:pcap", "more", "more", "wait", "more", "release", "more"}},
      // What ACE's own server also takes: a "\n" after the request line.
      {{"acquire:x|\n"}, {"acquire:x", "more"}},
      {{"acquire:x|", "\n", "wait|"}, {"acquire:x", "more", "more", "wait", "more"}},
      {{"acquire:x|\nwait|"}, {"acquire:x", "wait", "more"}},
  };
  for (const Case& c : cases) EXPECT_EQ(run(c.chunks), c.tokens) << testing::PrintToString(c.chunks);
}

TEST(AceParser, RefusesBadTokens) {
  struct Case {
    std::vector<std::string> chunks;
    Tokens tokens;
  };
  const std::vector<Case> cases = {
      {{"acquire:|"}, {"bad"}},
      {{"|"}, {"bad"}},
      {{"ok|"}, {"bad"}},
      {{"locked|"}, {"bad"}},
      {{"WAIT|"}, {"bad"}},
      {{"wait |"}, {"bad"}},
      {{"acquire:x|wait||"}, {"acquire:x", "wait", "bad"}},
      {{"acquire:x|acquire:|"}, {"acquire:x", "bad"}},
      {{"acquire:$local|"}, {"bad"}},
      {{"acquire:tab\there|"}, {"bad"}},
      {{"acquire:nl\n|"}, {"bad"}},
      {{"acquire:caf\xc3\xa9|"}, {"bad"}},
      {{"acquire:x|\n\n"}, {"acquire:x", "bad"}},  // only one "\n", and only there
      {{"acquire:x|\r\n"}, {"acquire:x", "bad"}},
      {{"acquire:x|wait|\n"}, {"acquire:x", "wait", "bad"}},
      {{"\n"}, {"bad"}},
      // Refused as soon as the bytes cannot begin a valid token.
      {{"x"}, {"bad"}},
      {{"wa", "x"}, {"more", "bad"}},
      {{"acquire:x|", "foo"}, {"acquire:x", "more", "bad"}},
      {{"acquire:ab", "\x01"s}, {"more", "bad"}},
      {{"acquire:$"}, {"bad"}},
      {{"release", "d|"}, {"more", "bad"}},
  };
  for (const Case& c : cases) EXPECT_EQ(run(c.chunks), c.tokens) << testing::PrintToString(c.chunks);
}

TEST(AceParser, LimitsNamesTo255Bytes) {
  const std::string longest(255, 'n');
  EXPECT_EQ(run({"acquire:" + longest + "|"}), (Tokens{"acquire:" + longest, "more"}));
  EXPECT_EQ(run({"acquire:" + longest, "|"}), (Tokens{"more", "acquire:" + longest, "more"}));
  EXPECT_EQ(run({"acquire:" + longest + "n|"}), (Tokens{"bad"}));
  // 255 + 8 bytes without `|` may still be a valid token; one more may not.
  EXPECT_EQ(run({"acquire:" + longest}), (Tokens{"more"}));
  EXPECT_EQ(run({"acquire:" + longest, "n"}), (Tokens{"more", "bad"}));
}

TEST(AceParser, StaysBad) {
  AceParser parser;
  parser.buffer() = "nope|";
  ASSERT_EQ(parser.next(), AceParser::Token::kBad);
  parser.buffer() = "wait|";
  EXPECT_EQ(parser.next(), AceParser::Token::kBad);
  parser.buffer().append("release|");
  EXPECT_EQ(parser.next(), AceParser::Token::kBad);
}

TEST(AceParser, KeepsOnlyThePartialToken) {
  AceParser parser;
  parser.buffer() = "acquire:x|wait|wa";
  ASSERT_EQ(parser.next(), AceParser::Token::kAcquire);
  ASSERT_EQ(parser.next(), AceParser::Token::kWait);
  ASSERT_EQ(parser.next(), AceParser::Token::kNeedMore);
  EXPECT_EQ(parser.buffer(), "wa");
  parser.buffer().append("it|");
  ASSERT_EQ(parser.next(), AceParser::Token::kWait);
  ASSERT_EQ(parser.next(), AceParser::Token::kNeedMore);
  EXPECT_TRUE(parser.buffer().empty());
}

TEST(AceParser, NameIsTheLastAcquire) {
  AceParser parser;
  parser.buffer() = "acquire:first|acquire:second|";
  ASSERT_EQ(parser.next(), AceParser::Token::kAcquire);
  EXPECT_EQ(parser.name(), "first");
  ASSERT_EQ(parser.next(), AceParser::Token::kAcquire);
  EXPECT_EQ(parser.name(), "second");
}

}  // namespace
}  // namespace netsem::protocol
