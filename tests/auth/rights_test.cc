// Rights: the text form and the checks by right and prefix.
#include "auth/rights.h"

#include <gtest/gtest.h>

namespace netsem::auth {
namespace {

TEST(Rights, ParsesRightsAndDecodedPrefixes) {
  auto rights = parse_rights("read,acquire jobs/ build%20farm/");
  ASSERT_TRUE(rights.has_value()) << rights.status().message();
  EXPECT_TRUE(rights->allows(Right::kRead, "jobs/a"));
  EXPECT_TRUE(rights->allows(Right::kAcquire, "build farm/x"));
  EXPECT_FALSE(rights->allows(Right::kAcquire, "other"));
  EXPECT_FALSE(rights->allows(Right::kSignal, "jobs/a"));
  EXPECT_FALSE(rights->allows_everywhere(Right::kRead));
  EXPECT_EQ(rights->names(), "read,acquire");
  ASSERT_EQ(rights->prefixes().size(), 2u);
  EXPECT_EQ(rights->prefixes()[1], "build farm/");
}

TEST(Rights, NoPrefixMeansEveryName) {
  auto rights = parse_rights("signal");
  ASSERT_TRUE(rights.has_value());
  EXPECT_TRUE(rights->allows(Right::kSignal, "anything"));
  EXPECT_TRUE(rights->allows_everywhere(Right::kSignal));
  EXPECT_FALSE(rights->has(Right::kRead));
}

TEST(Rights, AdminImpliesEveryRight) {
  auto rights = parse_rights("admin");
  ASSERT_TRUE(rights.has_value());
  for (Right r : {Right::kRead, Right::kAcquire, Right::kSignal, Right::kAdmin}) {
    EXPECT_TRUE(rights->allows_everywhere(r)) << right_name(r);
  }
  EXPECT_EQ(rights->names(), "read,acquire,signal,admin");
}

TEST(Rights, ListPrefixMustLieInsideAPrefix) {
  auto rights = parse_rights("read jobs/");
  ASSERT_TRUE(rights.has_value());
  EXPECT_TRUE(rights->allows_prefix(Right::kRead, "jobs/"));
  EXPECT_TRUE(rights->allows_prefix(Right::kRead, "jobs/x"));
  EXPECT_FALSE(rights->allows_prefix(Right::kRead, "job"));
  EXPECT_FALSE(rights->allows_prefix(Right::kRead, ""));
}

TEST(Rights, DefaultWithoutTokens) {
  const Rights plain = Rights::unauthenticated_default(false);
  EXPECT_TRUE(plain.allows_everywhere(Right::kSignal));
  EXPECT_FALSE(plain.has(Right::kAdmin));
  EXPECT_TRUE(Rights::unauthenticated_default(true).allows_everywhere(Right::kAdmin));
  EXPECT_EQ(Rights().names(), "-");
}

TEST(Rights, BadTextIsRefusedWithTheWord) {
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c :
       {Case{"", "no rights"}, Case{"  ", "no rights"}, Case{"write", "`write` is not a right"},
        Case{"read, acquire", "`` is not a right"}, Case{"read,,acquire", "`` is not a right"},
        Case{"read,", "`` is not a right"}, Case{"read bad%zz", "`bad%zz` is not a valid name prefix"}}) {
    auto rights = parse_rights(c.text);
    ASSERT_FALSE(rights.has_value()) << c.text;
    EXPECT_NE(rights.status().message().find(c.says), std::string::npos) << rights.status().message();
  }
}

}  // namespace
}  // namespace netsem::auth
