// What netsem's command line needs beyond CLI11 (main.cc uses it): run's
// words sorted into netsem's and CMD's before CLI11 reads them, so that
// options may stand anywhere before CMD as with flock(1); typo suggestions
// for unknown options and subcommands; the global options' part of each
// subcommand's --help.
//
// Thread safety: single-threaded use from main().
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

namespace netsem::cli {

// Rewrites `words` (the command line without argv[0]) when its subcommand is
// run: netsem's options before and after NAME, then `-- NAME --`, then CMD's
// words, so that CLI11 (which takes every word after `--` as positional)
// reads NAME and CMD as they were meant. After NAME, the first word that is
// not an option of run or a global option is CMD; `--` ends the options;
// `-c STRING` / `--command STRING` (the last two words) is CMD run by the
// shell, `$SHELL -c STRING` (/bin/sh without $SHELL), as flock(1) does.
// Words before NAME are left to CLI11 as they are. Returns the message of a
// usage error: an unknown option after NAME, or a -c not followed by exactly
// one word.
std::optional<std::string> arrange_run_words(const CLI::App& app, std::vector<std::string>& words);

// " (did you mean --json?)" when `typed` is near an option of `command` or
// of `app` (global options), or a subcommand of `app`; else "".
std::string suggestion(const CLI::App& app, const CLI::App* command, const std::string& typed);

// The global options as CLI11 lists options, under "Global options:", for
// the footer of each subcommand's --help.
std::string global_options_help(const CLI::App& app);

}  // namespace netsem::cli
