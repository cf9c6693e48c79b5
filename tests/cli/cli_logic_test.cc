// Unit tests of the netsem tool's pure logic (src/cli, netsem_cli): what a
// timeout says of the permits in the way (timeout_detail), for the server
// answers a real netsemd cannot give (protocol 1.0, a reload that lowered a
// limit), and when the 1.1 listings may be asked (listings_served), which
// wait feedback and timeout messages share. The end-to-end behaviour is in
// cli_test and wait_feedback_cli_test.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "cli/cli.h"

namespace netsem::cli {
namespace {

SemaphoreInfo info(std::int64_t value, std::int64_t max, std::uint64_t holders, std::uint64_t waiters,
                   std::string kind = "defined") {
  SemaphoreInfo info;
  info.name = "pool";
  info.value = value;
  info.max = max;
  info.holders = holders;
  info.waiters = waiters;
  info.kind = std::move(kind);
  return info;
}

TEST(TimeoutDetail, SaysWhatHoldsAndWhatWaitConsumed) {
  const struct {
    SemaphoreInfo info;
    std::optional<std::int64_t> held;  // the sum of HOLDERS' counts; nullopt: not known (1.0)
    std::string expected;
  } kCases[] = {
      // The example: WAIT took all six.
      {info(0, 6, 0, 0), 0, "0 of 6 free: 6 consumed by WAIT, 0 held; 0 requests waiting"},
      {info(0, 6, 2, 1), 4, "0 of 6 free: 2 consumed by WAIT, 4 held by 2 sessions; 1 request waiting"},
      {info(0, 1, 1, 3, "undefined"), 1, "0 of 1 free: 1 held by 1 session; 3 requests waiting"},
      {info(1, 4, 0, 0, "created"), 0, "1 of 4 free: 3 consumed by WAIT or not yet posted, 0 held; 0 requests waiting"},
      // All free, yet it timed out: the queue ahead (or the server's lease wait).
      {info(2, 2, 0, 5), std::nullopt, "2 of 2 free; 5 requests waiting"},
      // Protocol 1.0: no HOLDERS. Without holders everything missing was
      // consumed; with holders only a bound, each holding one at least.
      {info(0, 6, 0, 0), std::nullopt, "0 of 6 free: 6 consumed by WAIT, 0 held; 0 requests waiting"},
      {info(0, 6, 2, 0), std::nullopt,
       "0 of 6 free: held by 2 sessions, up to 4 consumed by WAIT (protocol 1.0 does not say how many each holds); "
       "0 requests waiting"},
      {info(0, 2, 2, 0), std::nullopt, "0 of 2 free: held by 2 sessions; 0 requests waiting"},
      // Figures of two requests that disagree (a reload lowered the limit
      // below what is held, a release between them): never negative.
      {info(0, 2, 1, 0), 3, "0 of 2 free: 3 held by 1 session; 0 requests waiting"},
      {info(3, 2, 1, 0), 1, "3 of 2 free; 0 requests waiting"},
      // The kernel's counts of a host-local semaphore.
      {info(0, 1, 1, 2, "local"), std::nullopt, "0 of 1 free, 1 permit held on this host, 2 processes waiting"},
  };
  for (const auto& c : kCases) {
    EXPECT_EQ(timeout_detail(c.info, c.held), c.expected);
  }
}

TEST(ListingsServed, OnlyAConnected1Point1OrLater1xServerForANameItServes) {
  const struct {
    bool connected;
    std::string protocol;  // as ClientStats has it from the HELLO answer
    std::string name;
    bool expected;
  } kCases[] = {
      {true, "1.1", "pool", true},   {true, "1.2", "pool", true},   // additive: a later 1.x keeps the listings
      {true, "1.10", "pool", true},  {true, "1.0", "pool", false},  // a 1.0 server would refuse HOLDERS and WAITERS
      {true, "2.0", "pool", false},  {true, "", "pool", false},     {true, "1", "pool", false},
      {true, "1.x", "pool", false},  {true, "1.1", "$pool", false},  // host-local: no server to ask
      {false, "", "pool", false},                                    // fallback or not yet connected
      {false, "1.1", "pool", false},
  };
  for (const auto& c : kCases) {
    ClientStats stats;
    stats.connected = c.connected;
    stats.protocol = c.protocol;
    EXPECT_EQ(listings_served(stats, c.name), c.expected) << c.connected << " " << c.protocol << " " << c.name;
  }
}

}  // namespace
}  // namespace netsem::cli
