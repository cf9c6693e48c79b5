// classify_probe_line and opens_admin_probe (core/admin_probe.h): which
// lines an admin probe over max_connections may send, and which may open
// one, table-driven. The probe itself, against
// the real netsemd: server_robustness_test (AnAdminProbe...) and
// cluster_netsemd_test (AnOperatorSeesTheClusterOfAFullLeader).
#include "core/admin_probe.h"

#include <gtest/gtest.h>

#include <string_view>

namespace netsem::server {
namespace {

TEST(AdminProbe, TakesTheStatusHandshakeAndItsAsksOnly) {
  const struct {
    std::string_view line;
    ProbeLine expected;
  } cases[] = {
      // netsem cluster status: LEASE in HELLO's place, AUTH, OPTION; PING.
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

// Only a first line no 1.0 or 1.1 client sends first (both proposed 1.2):
// every 1.0 or 1.1 peer over the limit reads the limit line, as
// protocol-v1's Limits say.
TEST(AdminProbe, OnlyLeaseOrClusterStatusOpensOne) {
  const struct {
    std::string_view line;
    bool expected;
  } cases[] = {
      {"t1 LEASE", true},
      {"t1 LEASE\r", true},
      {"c CLUSTER STATUS", true},
      // 1.0 and 1.1 lines, each a probe line after LEASE.
      {"p PING", false},
      {"a AUTH 0123456789abcdef", false},
      {"o OPTION queued off", false},
      {"q QUIT", false},
      {"s STATS", false},
      {"", false},
      // Never a probe's.
      {"h HELLO 1", false},
      {"a ACQUIRE lock", false},
      {"c CLUSTER REMOVE 2", false},
      {"LEASE", false},
      {"acquire:lock|", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(opens_admin_probe(c.line), c.expected) << '"' << c.line << '"';
  }
}

}  // namespace
}  // namespace netsem::server
