// `netsem local list` and `netsem local clean`: the host-local semaphores of
// this user on this host (the `$` names and the fallback stand-ins of server
// names), read from the registry directory (LocalRegistry,
// src/client/local_registry.h) and the kernel, without any server. Also the
// section `netsem status` prints about them. Its row of the subcommand table
// (subcommands.cc) names define_local.
//
// Thread safety: single-threaded use from main().
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "cli/subcommands.h"
#include "netsem/client_options.h"

namespace netsem::cli {

Action define_local(CLI::App& command);

// The host-local section of `netsem status`: a blank line, then a heading
// and a table of the live semaphores of `options`' registry, or empty when
// there are none (or the registry cannot be read: status is about the
// server, and `netsem local list` says why).
std::string local_status_section(const ClientOptions& options);

}  // namespace netsem::cli
