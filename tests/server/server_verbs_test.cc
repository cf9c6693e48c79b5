// Integration: every verb of protocol v1 against the real netsemd.
#include <gtest/gtest.h>

#include "netsemd_harness.h"

namespace netsem::testing {
namespace {

TEST(ServerVerbs, PingAnswersPong) {
  std::string error;
  auto server = Netsemd::start({}, &error);
  ASSERT_TRUE(server) << error;
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request("p1 PING hello"), "p1 PONG hello");
}

}  // namespace
}  // namespace netsem::testing
