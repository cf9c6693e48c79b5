// Tests of text.h: the one trim.
#include "common/text.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace netsem {
namespace {

TEST(Trim, DropsAsciiWhitespaceAtBothEnds) {
  struct Case {
    std::string text;
    std::string_view want;
  };
  const Case cases[] = {
      {"", ""},
      {"x", "x"},
      {"  a b  ", "a b"},
      {" \t\n\v\f\rmid dle\r\n\t ", "mid dle"},
      {" \t\r\n", ""},
      {"\xc2\xa0x\xc2\xa0", "\xc2\xa0x\xc2\xa0"},  // only ASCII whitespace: a no-break space stays
      {std::string("a\0", 2), std::string_view("a\0", 2)},
  };
  for (const Case& c : cases) EXPECT_EQ(trim(c.text), c.want) << testing::PrintToString(c.text);
}

TEST(Trim, ReturnsAViewIntoTheText) {
  const std::string text = "  word ";
  const std::string_view trimmed = trim(text);
  EXPECT_EQ(trimmed.data(), text.data() + 2);
}

}  // namespace
}  // namespace netsem
