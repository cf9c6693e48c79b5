// `netsem cluster status|add|remove`: a cluster's membership (proposed
// protocol 1.2's CLUSTER, admin right; docs/cli.md, docs/replication.md).
// status prints the answering server's view (role, leader, indexes, the
// members with their addresses and, from the leader, their lag); add and
// remove ask CLUSTER STATUS first and, when the server named is not the
// leader, connect to the leader it names and ask there.
//
// Thread safety: single-threaded use from main().
#pragma once

#include <CLI/CLI.hpp>

#include "cli/subcommands.h"

namespace netsem::cli {

Action define_cluster(CLI::App& command);

}  // namespace netsem::cli
