// classify_probe_line (server/admin_probe.h): which lines an admin probe
// over max_connections may send, table-driven. The probe itself, against
// the real netsemd: server_robustness_test (AnAdminProbe...) and
// cluster_netsemd_test (AnOperatorSeesTheClusterOfAFullLeader).
#include "server/admin_probe.h"

#include <gtest/gtest.h>

#include <string_view>

namespace netsem::server {
namespace {

TEST(AdminProbe, TakesTheStatusHandshakeAndItsAsksOnly) {
  const struct {
    std::string_view line;
    ProbeLine expected;
  } cases[] = {
      // netsem cluster status: PING in HELLO's place, AUTH, LEASE, OPTION.
      {"t1 PING", ProbeLine::kHandshake},
      {"t2 AUTH 0123456789abcdef", ProbeLine::kHandshake},
      {"t3 LEASE", ProbeLine::kHandshake},
      {"t4 OPTION queued off\r", ProbeLine::kHandshake},
      {"q QUIT", ProbeLine::kHandshake},
      {"", ProbeLine::kHandshake},
      {"t5 CLUSTER STATUS", ProbeLine::kAsk},
      {"s STATS", ProbeLine::kAsk},
      // A session's requests, and the cluster's changes.
      {"h HELLO 1", ProbeLine::kRefused},
      {"a ACQUIRE lock", ProbeLine::kRefused},
      {"g GET lock", ProbeLine::kRefused},
      {"l LIST", ProbeLine::kRefused},
      {"k KICK 7", ProbeLine::kRefused},
      {"c CLUSTER REMOVE 2", ProbeLine::kRefused},
      {"r RESUME 1 0123456789abcdef", ProbeLine::kRefused},
      // Lines that do not parse.
      {"STATS", ProbeLine::kRefused},
      {"x NOSUCHVERB", ProbeLine::kRefused},
      {"acquire:lock|", ProbeLine::kRefused},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(classify_probe_line(c.line), c.expected) << '"' << c.line << '"';
  }
}

}  // namespace
}  // namespace netsem::server
