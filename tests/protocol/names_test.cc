// Tests of names.h: percent-decoding and the name rules, the UTF-8 check, and
// both encodings (the server's minimal one, the client's request one).
#include "protocol/names.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace netsem::protocol {
namespace {

using namespace std::string_literals;

struct DecodeCase {
  std::string field;
  std::string name;  // the decoded name
};

TEST(DecodeName, DecodesValidFields) {
  const std::vector<DecodeCase> cases = {
      {"splunk", "splunk"},
      {"host:10.0.0.1%20web", "host:10.0.0.1 web"},
      {"host%3A10.0.0.1%20web", "host:10.0.0.1 web"},
      {"host%3a10.0.0.1%20web", "host:10.0.0.1 web"},
      {"100%25", "100%"},
      {"%2525", "%25"},  // decoded once only
      {"a$", "a$"},
      {"caf\xc3\xa9", "caf\xc3\xa9"},
      {"caf%C3%A9", "caf\xc3\xa9"},
      {"%F0%9F%98%80", "\xf0\x9f\x98\x80"},
      {"x", "x"},
      {std::string(255, 'n'), std::string(255, 'n')},
      {[] {
         std::string s;
         for (int i = 0; i < 255; ++i) s += "%41";
         return s;
       }(),
       std::string(255, 'A')},  // the limit applies to the decoded bytes
  };
  for (const DecodeCase& c : cases) {
    std::string out = "left over";
    EXPECT_EQ(decode_name(c.field, out), ErrorCode::kNone) << c.field;
    EXPECT_EQ(out, c.name) << c.field;
  }
}

TEST(DecodeName, RejectsBadFields) {
  const std::vector<std::string> fields = {
      "",
      "%",
      "%2",
      "a%2",
      "%zz",
      "%g0",
      "%0g",
      "%%41",
      "$x",
      "%24x",  // a leading `$` is checked after decoding
      std::string(256, 'n'),
      [] {
        std::string s;
        for (int i = 0; i < 256; ++i) s += "%41";
        return s;
      }(),
      "a\x01"s,
      "a%00",
      "a%0A",
      "a%0d",
      "a%1F",
      "a%7F",
      "a\x7f",
      "\xff",
      "%FF",
      "a%C3",          // decodes to a truncated sequence
      "\xc0\x80",      // overlong NUL
      "\xed\xa0\x80",  // surrogate
      "a%C2%85b",      // U+0085, a C1 control
      "a\xc2\x80",
  };
  for (const std::string& field : fields) {
    std::string out;
    EXPECT_EQ(decode_name(field, out), ErrorCode::kBadName) << field;
  }
}

TEST(DecodeName, ClearsOutputAndKeepsItsCapacity) {
  std::string out;
  out.reserve(300);
  out = "something long that was here before";
  const char* const storage = out.data();
  ASSERT_EQ(decode_name("ab%20c", out), ErrorCode::kNone);
  EXPECT_EQ(out, "ab c");
  EXPECT_EQ(out.data(), storage);
}

TEST(CheckName, AppliesTheNameRules) {
  struct Case {
    std::string name;
    bool valid;
  };
  const std::vector<Case> cases = {
      {"a", true},
      {"host:10.0.0.1 web", true},
      {"100%", true},
      {"%zz", true},  // already decoded: `%` is an ordinary byte
      {"a$b", true},
      {std::string(255, 'x'), true},
      {"\xe2\x82\xac", true},
      {"", false},
      {std::string(256, 'x'), false},
      {"$local", false},
      {"tab\there", false},
      {"new\nline", false},
      {"del\x7f", false},
      {"nul\0"s, false},
      {"bad\xc3", false},
      // C1 controls (U+0080..U+009F, Unicode category Cc) are control
      // characters too; U+0085 is a line break for some readers.
      {"a\xc2\x80"
       "b",
       false},
      {"a\xc2\x85"
       "b",
       false},
      {"a\xc2\x9f", false},
      {"\xc2\xa0", true},   // U+00A0, the first character after them
      {"\xc2\x7f", false},  // not a C1 control, just not UTF-8
      {"\xc3\x85", true},   // U+00C5: the byte 0x85 alone is no control
  };
  for (const Case& c : cases) {
    EXPECT_EQ(check_name(c.name), c.valid ? ErrorCode::kNone : ErrorCode::kBadName) << c.name;
  }
}

TEST(IsValidUtf8, AcceptsWellFormedAndRejectsTheRest) {
  struct Case {
    std::string text;
    bool valid;
  };
  const std::vector<Case> cases = {
      {"", true},
      {"plain ascii", true},
      {"\x7f", true},
      {"\xc2\x80", true},          // U+0080, smallest two-byte
      {"\xdf\xbf", true},          // U+07FF
      {"\xe0\xa0\x80", true},      // U+0800, smallest three-byte
      {"\xed\x9f\xbf", true},      // U+D7FF, just below the surrogates
      {"\xee\x80\x80", true},      // U+E000, just above them
      {"\xef\xbf\xbf", true},      // U+FFFF
      {"\xf0\x90\x80\x80", true},  // U+10000, smallest four-byte
      {"\xf4\x8f\xbf\xbf", true},  // U+10FFFF, the largest
      {"\x80", false},             // lone continuation
      {"\xbf", false},
      {"\xc0\x80", false},          // overlong
      {"\xc1\xbf", false},          // overlong
      {"\xe0\x9f\xbf", false},      // overlong three-byte
      {"\xf0\x8f\xbf\xbf", false},  // overlong four-byte
      {"\xed\xa0\x80", false},      // U+D800
      {"\xed\xbf\xbf", false},      // U+DFFF
      {"\xf4\x90\x80\x80", false},  // U+110000
      {"\xf5\x80\x80\x80", false},
      {"\xff", false},
      {"\xc3", false},  // truncated
      {"\xe2\x82", false},
      {"\xf0\x9f\x98", false},
      {"\xe2\x28\xa1", false},  // bad continuation
      {"ok\xc3\xa9then\xc3", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(is_valid_utf8(c.text), c.valid) << testing::PrintToString(c.text);
  }
}

TEST(AppendEncodedName, EncodesOnlyPercentAndSpace) {
  struct Case {
    std::string name;
    std::string encoded;
  };
  const std::vector<Case> cases = {
      {"splunk", "splunk"},
      {"host:10.0.0.1 web", "host:10.0.0.1%20web"},
      {"100%", "100%25"},
      {"%20", "%2520"},
      {"  ", "%20%20"},
      {"a/b+c=d", "a/b+c=d"},
      {"caf\xc3\xa9", "caf\xc3\xa9"},
      {"\t", "\t"},  // never in a valid name; the server encodes nothing else
  };
  for (const Case& c : cases) {
    std::string out = "prefix ";
    append_encoded_name(out, c.name);
    EXPECT_EQ(out, "prefix " + c.encoded) << c.name;
  }
}

TEST(EncodeNameForRequest, EncodesWhatAFieldCannotCarry) {
  struct Case {
    std::string name;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"splunk", "splunk"}, {"a b", "a%20b"},   {"100%", "100%25"},
      {"\t", "%09"},        {"\n\r", "%0A%0D"}, {"\x7f", "%7F"},
      {"\0"s, "%00"},       {"!~", "!~"},       {"caf\xc3\xa9", "caf\xc3\xa9"},
      {"$x", "$x"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(encode_name_for_request(c.name), c.field) << c.name;
  }
}

TEST(EncodeNameForRequest, NoByteOfTheFieldNeedsEscaping) {
  for (int byte = 0; byte < 256; ++byte) {
    const std::string name = "a"s + static_cast<char>(byte) + "z";
    for (const char c : encode_name_for_request(name)) {
      const auto b = static_cast<unsigned char>(c);
      EXPECT_TRUE(b > 0x20 && b != 0x7f) << "byte " << byte;
    }
  }
}

TEST(EncodeNameForRequest, DecodesBackToTheSameName) {
  const std::vector<std::string> names = {
      "splunk",
      "a b",
      "100%",
      "%25",
      "%%",
      "a%2",
      "%zz",
      " lead",
      "trail ",
      "host:10.0.0.1 web",
      "caf\xc3\xa9",
      "\xf0\x9f\x98\x80 x",
      std::string(255, ' '),
      "!\"#&'()*+,-./:;<=>?@[\\]^_`{|}~",
  };
  for (const std::string& name : names) {
    std::string decoded;
    ASSERT_EQ(decode_name(encode_name_for_request(name), decoded), ErrorCode::kNone) << name;
    EXPECT_EQ(decoded, name);
  }
}

TEST(AppendEncodedName, DecodesBackToTheSameName) {
  const std::vector<std::string> names = {"splunk", "a b", "100%", "%25", "%%", " ", "x:y z%"};
  for (const std::string& name : names) {
    std::string field;
    append_encoded_name(field, name);
    std::string decoded;
    ASSERT_EQ(decode_name(field, decoded), ErrorCode::kNone) << name;
    EXPECT_EQ(decoded, name);
  }
}

}  // namespace
}  // namespace netsem::protocol
