// The table of netsem's subcommands. Each row names one, says what it does,
// and defines its options and positionals on the command line; define()
// returns the action that runs it (its *_command function, cli.h) once the
// command line is parsed. main.cc adds every row to the command line and
// runs the action of the one given.
//
// To add a subcommand: its *_command function (commands.cc, or a file of its
// own as run_command.cc), its row in subcommands.cc, docs/cli.md, and its
// tests in tests/cli.
//
// Thread safety: single-threaded use from main().
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "cli/cli.h"

namespace netsem::cli {

// A parsed subcommand, ready to run: returns the exit code.
using Action = std::function<int(const GlobalOptions& global)>;

struct Subcommand {
  std::string_view name;
  std::string_view help;
  // Adds the options to `command`, bound to state the returned action owns.
  Action (*define)(CLI::App& command);
};

// Every subcommand, in the order --help lists them.
std::span<const Subcommand> subcommands();

// "run, status, get, ... or ping": the names, for messages.
std::string subcommand_names();

// run's synopsis, for the messages that say CMD is missing.
inline constexpr std::string_view kRunSynopsis = "netsem run [OPTIONS] NAME [--] CMD [ARGS...]";

}  // namespace netsem::cli
