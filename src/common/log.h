// Logging set-up shared by netsemd and the command-line tool: spdlog's default
// logger writing to stderr, one line per event, level chosen by name.
//
// Thread safety: init_logging once at start, before other threads log.
#pragma once

#include <string_view>

#include "netsem/status.h"

namespace netsem {

// The level names accepted by init_logging and the `log_level` option.
inline constexpr std::string_view kLogLevels = "trace debug info warning error";

// Sets the default logger's level ("trace", "debug", "info", "warning" or
// "error") and line format. kInvalidArgument for any other name.
Status init_logging(std::string_view level);

}  // namespace netsem
