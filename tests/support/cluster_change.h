// cluster_change_done(): a CLUSTER ADD or REMOVE that a test needs to take
// effect, made robust the honest way (note24 section 9 item 2). Under load
// a leader can lose its leadership while the change runs and answer
// TIMEOUT, the outcome unknown (docs/protocol.md, CLUSTER): the change may
// have taken effect on the next leader, or not. So on TIMEOUT, and on BUSY
// (which by the contract means nothing happened: "retry"), the helper asks
// the leader now for CLUSTER STATUS and sends the change again only if it
// did not take effect. Any other answer (an ERR but BUSY, or no answer)
// fails the test, as before. Shared by the tests that add or remove a
// server over the protocol or the CLI (tests/cluster).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace netsem::test_support {

struct ClusterChange {
  bool add = false;      // CLUSTER ADD (else REMOVE)
  std::uint64_t id = 0;  // the server added or removed
};

// Whether the configuration in CLUSTER STATUS's JSON `status` shows
// `change` done: an added server a voter, a removed one no member.
inline bool cluster_change_shown(const ClusterChange& change, const std::string& status) {
  const nlohmann::json view = nlohmann::json::parse(status, nullptr, false);
  if (!view.is_object() || !view.contains("members") || !view.at("members").is_array()) return false;
  for (const nlohmann::json& member : view.at("members")) {
    if (!member.is_object() || member.value("id", std::uint64_t{0}) != change.id) continue;
    return change.add && member.value("role", std::string()) == "voter";
  }
  return !change.add;
}

// Makes `change` through `send(attempt)` (attempt 1, 2 ...), which sends it
// once and returns the answer without its tag: "OK", "TIMEOUT", "ERR ...",
// or "" when none came (a CLI's exit 0 is "OK", 75 "TIMEOUT"). On TIMEOUT or
// ERR BUSY, `leader_status()` gives the leader's CLUSTER STATUS JSON now
// (waiting for a leader; "" when none): done if it shows the change, sent
// again if not, at most `tries` sends in all. Success says how it went.
inline ::testing::AssertionResult cluster_change_done(const ClusterChange& change,
                                                      const std::function<std::string(int attempt)>& send,
                                                      const std::function<std::string()>& leader_status,
                                                      int tries = 3) {
  const std::string what = std::string(change.add ? "ADD " : "REMOVE ") + std::to_string(change.id);
  std::string history;
  for (int attempt = 1; attempt <= tries; ++attempt) {
    const std::string answer = send(attempt);
    history += (history.empty() ? "" : ", ") + (answer.empty() ? std::string("no answer") : answer);
    if (answer == "OK") return ::testing::AssertionSuccess() << what << ": " << history;
    if (answer != "TIMEOUT" && answer.rfind("ERR BUSY", 0) != 0) {
      return ::testing::AssertionFailure() << what << ": " << history;
    }
    const std::string status = leader_status();
    if (!status.empty() && cluster_change_shown(change, status)) {
      std::printf("CLUSTER %s: %s, then the leader's CLUSTER STATUS shows it done\n", what.c_str(), history.c_str());
      return ::testing::AssertionSuccess() << what << ": " << history << ", then done";
    }
    std::printf("CLUSTER %s: %s; not done (%s): sending it again\n", what.c_str(), history.c_str(),
                status.empty() ? "no leader" : "the leader's CLUSTER STATUS");
  }
  return ::testing::AssertionFailure() << what << ": " << history << ": not done after " << tries << " tries";
}

}  // namespace netsem::test_support
