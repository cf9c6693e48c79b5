// Tests of config/allow_list.h: parsing (canonical form and every error),
// matching IPv4, IPv6 and IPv4-mapped peers, at prefix boundaries.
#include "config/allow_list.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

namespace netsem::server {
namespace {

struct ParseCase {
  std::string text;
  std::string expected;  // to_string(), or the error message when it starts with "ERROR "
};

TEST(AllowList, ParsesIntoCanonicalForm) {
  const std::vector<ParseCase> cases = {
      {"127.0.0.1", "127.0.0.1"},
      {"10.0.0.1/32", "10.0.0.1"},
      {"10.0.0.0/8", "10.0.0.0/8"},
      {"10.0.0.0/08", "10.0.0.0/8"},
      {" 10.0.0.0/8 ,192.168.1.7,\n ::1 ", "10.0.0.0/8, 192.168.1.7, ::1"},
      {"fd00::/8, 10.0.0.0/8, ::1/128", "fd00::/8, 10.0.0.0/8, ::1"},
      {"2001:DB8:0:0::1", "2001:db8::1"},
      {"0.0.0.0/0", "0.0.0.0/0"},
      {"::/0", "::/0"},
      {"::ffff:10.0.0.0/104", "10.0.0.0/8"},
      {"::ffff:1.2.3.4", "1.2.3.4"},
      {"::ffff:0:0/96", "0.0.0.0/0"},
      {"::/95", "::/95"},
      {"10.0.0.1, 10.0.0.1", "10.0.0.1, 10.0.0.1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto list = AllowList::parse(c.text);
    ASSERT_TRUE(list.has_value()) << list.status().to_string();
    EXPECT_EQ(list->to_string(), c.expected);
    auto again = AllowList::parse(list->to_string());
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(*again, *list);
  }
}

TEST(AllowList, RejectsBadRulesNamingThem) {
  const std::vector<ParseCase> cases = {
      {"", "no networks listed (an empty list would refuse every peer)"},
      {" \n ", "no networks listed (an empty list would refuse every peer)"},
      {"10.0.0.0/8,", "bad network ``: empty entry (two commas in a row, or one at an end)"},
      {"10.0.0.1,,10.0.0.2", "bad network ``: empty entry (two commas in a row, or one at an end)"},
      {"10.0.0.1/8", "bad network `10.0.0.1/8`: host bits set below the prefix (the network is 10.0.0.0/8)"},
      {"192.168.1.1/31",
       "bad network `192.168.1.1/31`: host bits set below the prefix (the network is "
       "192.168.1.0/31)"},
      {"fd00::1/8", "bad network `fd00::1/8`: host bits set below the prefix (the network is fd00::/8)"},
      {"::ffff:10.0.0.1/104",
       "bad network `::ffff:10.0.0.1/104`: host bits set below the prefix (the network is "
       "10.0.0.0/8)"},
      {"10.0.0.0/33", "bad network `10.0.0.0/33`: the prefix length must be a number from 0 to 32"},
      {"::1/129", "bad network `::1/129`: the prefix length must be a number from 0 to 128"},
      {"10.0.0.0/", "bad network `10.0.0.0/`: the prefix length must be a number from 0 to 32"},
      {"10.0.0.0/+8", "bad network `10.0.0.0/+8`: the prefix length must be a number from 0 to 32"},
      {"10.0.0.0/-1", "bad network `10.0.0.0/-1`: the prefix length must be a number from 0 to 32"},
      {"10.0.0.0/ 8", "bad network `10.0.0.0/ 8`: the prefix length must be a number from 0 to 32"},
      {"10.0.0.0/8/9", "bad network `10.0.0.0/8/9`: the prefix length must be a number from 0 to 32"},
      {"256.0.0.1", "bad network `256.0.0.1`: not an IPv4 address"},
      {"1.2.3", "bad network `1.2.3`: not an IPv4 address"},
      {"localhost", "bad network `localhost`: not an IPv4 address"},
      {"10.0.0.1 10.0.0.2", "bad network `10.0.0.1 10.0.0.2`: not an IPv4 address"},
      {"fe80::1%eth0", "bad network `fe80::1%eth0`: not an IPv6 address"},
      {"1::2::3", "bad network `1::2::3`: not an IPv6 address"},
      {"127.0.0.1, nope", "bad network `nope`: not an IPv4 address"},
      {"0.0.0.0",
       "bad network `0.0.0.0`: no peer has the unspecified address; write 0.0.0.0/0 for any IPv4 "
       "address"},
      {"::", "bad network `::`: no peer has the unspecified address; write ::/0 for any IPv6 address"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto list = AllowList::parse(c.text);
    ASSERT_FALSE(list.has_value()) << list->to_string();
    EXPECT_EQ(list.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(list.status().message(), c.expected);
  }
}

struct MatchCase {
  std::string peer;  // an IPv4 or IPv6 address
  bool allowed;
};

// Checks every way the server may ask: allows() with the peer's 16 bytes
// (IPv4 peers as mapped addresses), and allows_v4() for IPv4 peers.
void expect_matches(const std::string& rules, const std::vector<MatchCase>& cases) {
  auto list = AllowList::parse(rules);
  ASSERT_TRUE(list.has_value()) << list.status().to_string();
  for (const auto& c : cases) {
    SCOPED_TRACE(rules + " / " + c.peer);
    std::array<std::uint8_t, 16> bytes{};
    in_addr v4{};
    if (inet_pton(AF_INET, c.peer.c_str(), &v4) == 1) {
      EXPECT_EQ(list->allows_v4(ntohl(v4.s_addr)), c.allowed);
      bytes[10] = bytes[11] = 0xff;
      std::memcpy(&bytes[12], &v4, 4);
    } else {
      ASSERT_EQ(inet_pton(AF_INET6, c.peer.c_str(), bytes.data()), 1);
    }
    EXPECT_EQ(list->allows(bytes), c.allowed);
  }
}

TEST(AllowList, MatchesPeersByPrefix) {
  expect_matches("10.0.0.0/8, 192.168.1.7, fd00::/8, ::1", {
                                                               {"10.1.2.3", true},
                                                               {"10.255.255.255", true},
                                                               {"11.0.0.0", false},
                                                               {"9.255.255.255", false},
                                                               {"192.168.1.7", true},
                                                               {"192.168.1.8", false},
                                                               {"fd12::5", true},
                                                               {"fe00::", false},
                                                               {"::1", true},
                                                               {"::2", false},
                                                               {"::ffff:10.9.9.9", true},
                                                               {"::ffff:11.0.0.1", false},
                                                           });
  expect_matches("10.0.0.0/31", {{"10.0.0.0", true}, {"10.0.0.1", true}, {"10.0.0.2", false}});
  expect_matches("fd00::/9", {{"fd7f::1", true}, {"fd80::", false}, {"fc00::", false}});
  expect_matches("2001:db8::/127", {{"2001:db8::1", true}, {"2001:db8::2", false}});
}

TEST(AllowList, MatchesMappedPeersAgainstIPv4RulesOnly) {
  expect_matches("::/0", {{"2001:db8::1", true}, {"::ffff:10.0.0.1", false}, {"10.0.0.1", false}});
  expect_matches("0.0.0.0/0", {{"1.2.3.4", true}, {"::ffff:255.255.255.255", true}, {"::1", false}});
  expect_matches("::ffff:0:0/96", {{"1.2.3.4", true}, {"::1", false}});
  expect_matches("::ffff:10.0.0.0/104", {{"10.1.1.1", true}, {"11.1.1.1", false}});
  // Not mapped: ::10.0.0.1 is an (obsolete) IPv4-compatible address, an IPv6 one.
  expect_matches("10.0.0.0/8", {{"::10.0.0.1", false}, {"::ffff:10.0.0.1", true}});
}

TEST(AllowList, DefaultsAndQueries) {
  const AllowList empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_FALSE(empty.allows_v4(0x7f000001));
  EXPECT_EQ(empty.to_string(), "");

  const auto loopback = AllowList::loopback();
  EXPECT_FALSE(loopback.empty());
  EXPECT_EQ(loopback.to_string(), "127.0.0.0/8, ::1");
  EXPECT_TRUE(loopback.allows_v4(0x7f050505));
  EXPECT_FALSE(loopback.allows_v4(0x80000001));
  EXPECT_FALSE(loopback.allows_any_v4());
  EXPECT_NE(loopback, empty);

  EXPECT_TRUE(AllowList::parse("::1, 0.0.0.0/0")->allows_any_v4());
  EXPECT_FALSE(AllowList::parse("0.0.0.0/1, 128.0.0.0/1")->allows_any_v4());
}

}  // namespace
}  // namespace netsem::server
