// Which server of a test's cluster leads, read from the servers' own logs
// (ClusterRuntime logs `cluster: leader in term N, ...` at each change):
// shared by the cluster tests (netsemd_cluster_test, cluster_failure_test).
#pragma once

#include <chrono>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include "netsemd_harness.h"

namespace netsem::testing {

// The index of the running server (a null entry is a stopped one) whose log
// says it leads in the highest term; -1 when none does within `timeout`.
template <class Servers>
int cluster_leader(const Servers& servers, std::chrono::milliseconds timeout) {
  static const std::regex kLeads(R"(cluster: leader in term (\d+))");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    int best = -1;
    long best_term = -1;
    for (int i = 0; i < static_cast<int>(servers.size()); ++i) {
      if (servers[i] == nullptr) continue;
      const std::string log = servers[i]->log();
      for (auto it = std::sregex_iterator(log.begin(), log.end(), kLeads); it != std::sregex_iterator(); ++it) {
        const long term = std::stol((*it)[1]);
        if (term > best_term) {
          best_term = term;
          best = i;
        }
      }
    }
    if (best >= 0) return best;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling the logs, bounded
  } while (std::chrono::steady_clock::now() < deadline);
  return -1;
}

}  // namespace netsem::testing
