// Logging set-up (spdlog's default logger to stderr with a timestamped
// format), the escaping of untrusted text, and the rate limit of repeated
// messages.
#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

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

std::string escape_for_log(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte > 0x20 && byte < 0x7f && c != '%') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0x0f]);
    }
  }
  return out;
}

LogRateLimit::Admission LogRateLimit::admit(Clock::time_point now) {
  Admission admission;
  if (!started_ || now - window_start_ >= window_) {
    started_ = true;
    window_start_ = now;
    admitted_ = 0;
    admission.suppressed_before = suppressed_;
    suppressed_ = 0;
  }
  if (admitted_ < burst_) {
    ++admitted_;
    admission.write = true;
  } else {
    ++suppressed_;
  }
  return admission;
}

std::uint64_t LogRateLimit::take_suppressed(Clock::time_point now) {
  if (suppressed_ == 0 || now - window_start_ < window_) return 0;
  const std::uint64_t count = suppressed_;
  suppressed_ = 0;
  return count;
}

std::optional<LogRateLimit::Clock::time_point> LogRateLimit::report_due() const {
  if (suppressed_ == 0) return std::nullopt;
  return window_start_ + window_;
}

void RateLimitedLog::report(std::uint64_t count) {
  spdlog::log(level_, "{}: {} similar messages suppressed", kind_, count);
}

}  // namespace netsem
