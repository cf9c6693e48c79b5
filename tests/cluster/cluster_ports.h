// What the tests of real netsemd clusters (netsemd_cluster_test,
// cluster_failure_test, client_resume_cluster_test) prepare before their
// servers start: a client and a Raft port for each server, no two the same,
// and each server's own copy of the cluster's secret. Header-only.
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "support/free_port.h"

namespace netsem::testing {

// Fills `client` and `raft` with free ports below the ephemeral range, all
// distinct.
template <std::size_t N>
void pick_cluster_ports(std::array<std::uint16_t, N>& client, std::array<std::uint16_t, N>& raft) {
  for (std::size_t i = 0; i < N; ++i) {
    client[i] = test_support::free_port_below_ephemeral();
    raft[i] = test_support::free_port_below_ephemeral();
  }
}

// Where server i (from 0) of a cluster under `dir` keeps its secret: the
// `secret_file` of its [cluster] section.
inline std::filesystem::path cluster_secret_file(const std::filesystem::path& dir, int i) {
  return dir / ("secret." + std::to_string(i + 1));
}

// Writes `secret` to the secret file of each of the first `servers`
// servers, readable by its owner only (netsemd refuses any other mode).
inline void write_cluster_secrets(const std::filesystem::path& dir, int servers, const std::string& secret) {
  for (int i = 0; i < servers; ++i) {
    const auto file = cluster_secret_file(dir, i);
    std::ofstream(file) << secret << "\n";
    ::chmod(file.c_str(), 0600);
  }
}

}  // namespace netsem::testing
