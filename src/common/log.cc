// Logging set-up: spdlog's default logger to stderr with a timestamped format.
#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace netsem {

Status init_logging(std::string_view level) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},  {"debug", spdlog::level::debug}, {"info", spdlog::level::info},
      {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
  };
  for (const auto& [name, value] : kLevels) {
    if (name == level) {
      // stderr, unbuffered by line, so that logs interleave correctly with a
      // supervisor's capture even when the process is killed.
      auto logger = std::make_shared<spdlog::logger>("netsem", std::make_shared<spdlog::sinks::stderr_sink_st>());
      spdlog::set_default_logger(std::move(logger));
      spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
      spdlog::set_level(value);
      spdlog::flush_on(spdlog::level::trace);
      return Status::ok();
    }
  }
  return Status(StatusCode::kInvalidArgument,
                "unknown log level '" + std::string(level) + "' (one of: " + std::string(kLogLevels) + ")");
}

}  // namespace netsem
