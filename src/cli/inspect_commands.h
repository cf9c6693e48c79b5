// The subcommands that look into the server and act on its sessions
// (protocol 1.1, and STATS): holders, waiters, sessions, kick and stats.
// Their rows of the subcommand table (subcommands.cc) name these define
// functions; the commands themselves are in inspect_commands.cc.
//
// Thread safety: single-threaded use from main().
#pragma once

#include <CLI/CLI.hpp>

#include "cli/subcommands.h"

namespace netsem::cli {

Action define_holders(CLI::App& command);
Action define_waiters(CLI::App& command);
Action define_sessions(CLI::App& command);
Action define_kick(CLI::App& command);
Action define_stats(CLI::App& command);

}  // namespace netsem::cli
