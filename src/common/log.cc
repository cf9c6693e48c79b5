// Logging set-up (spdlog's default logger to stderr, in text or JSON), the
// structured events, the escaping of untrusted text, and the rate limit of
// repeated messages.
#include "common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace netsem {

namespace {

constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevelNames[] = {
    {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},  {"info", spdlog::level::info},
    {"warn", spdlog::level::warn},   {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
    {"off", spdlog::level::off},
};

LogFormat g_format = LogFormat::kText;  // set once by init_logging, before other threads run

// The fields of the log_event call being written on this thread, for the
// JSON formatter, which spdlog calls synchronously from inside that call.
thread_local const std::initializer_list<LogField>* t_fields = nullptr;

// "2026-12-03T15:20:01.123Z": UTC, milliseconds.
std::string utc_timestamp(spdlog::log_clock::time_point time) {
  const auto since_epoch = time.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char text[32];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", std::string_view(text, n), millis);
}

// One JSON object per line: time, level, message, then the fields of a
// log_event. Strings are escaped by nlohmann-json; bytes that are not UTF-8
// become U+FFFD, so every line parses.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line;
    line["time"] = utc_timestamp(msg.time);
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string_view(level.data(), level.size());
    line["message"] = std::string_view(msg.payload.data(), msg.payload.size());
    if (t_fields != nullptr) {
      for (const LogField& field : *t_fields) {
        if (field.kind() == LogField::Kind::kOmitted) continue;
        auto& value = line[std::string(field.key())];
        switch (field.kind()) {
          case LogField::Kind::kText:
            value = field.text();
            break;
          case LogField::Kind::kSigned:
            value = field.signed_number();
            break;
          case LogField::Kind::kUnsigned:
            value = field.unsigned_number();
            break;
          case LogField::Kind::kNull:
          case LogField::Kind::kOmitted:
            value = nullptr;
            break;
        }
      }
    }
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

// sd-daemon(3)'s "<N>" before each line: the syslog priority, which journald
// takes (and strips) from a line of a stream it reads, instead of filing
// every line as info.
class JournalPrefixFormatter final : public spdlog::formatter {
 public:
  explicit JournalPrefixFormatter(std::unique_ptr<spdlog::formatter> inner) : inner_(std::move(inner)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const char prefix[] = {'<', priority(msg.level), '>'};
    dest.append(prefix, prefix + sizeof prefix);
    inner_->format(msg, dest);
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JournalPrefixFormatter>(inner_->clone());
  }

 private:
  static char priority(spdlog::level::level_enum level) {
    switch (level) {
      case spdlog::level::critical:
        return '2';  // LOG_CRIT
      case spdlog::level::err:
        return '3';  // LOG_ERR
      case spdlog::level::warn:
        return '4';  // LOG_WARNING
      case spdlog::level::info:
        return '6';  // LOG_INFO
      default:
        return '7';  // LOG_DEBUG: debug and trace
    }
  }
  std::unique_ptr<spdlog::formatter> inner_;
};

}  // namespace

bool journal_stream_matches(std::string_view journal_stream, std::uint64_t device, std::uint64_t inode) {
  const auto colon = journal_stream.find(':');
  if (colon == std::string_view::npos) return false;
  std::uint64_t named_device = 0;
  std::uint64_t named_inode = 0;
  const auto* first = journal_stream.data();
  const auto* end = first + journal_stream.size();
  const auto [device_end, device_error] = std::from_chars(first, first + colon, named_device);
  const auto [inode_end, inode_error] = std::from_chars(first + colon + 1, end, named_inode);
  return device_error == std::errc() && device_end == first + colon && inode_error == std::errc() && inode_end == end &&
         colon > 0 && colon + 1 < journal_stream.size() && named_device == device && named_inode == inode;
}

bool stderr_is_journal() {
  const char* journal_stream = std::getenv("JOURNAL_STREAM");
  if (journal_stream == nullptr) return false;
  struct stat status {};
  if (::fstat(STDERR_FILENO, &status) != 0) return false;
  return journal_stream_matches(journal_stream, static_cast<std::uint64_t>(status.st_dev),
                                static_cast<std::uint64_t>(status.st_ino));
}

Result<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  for (const auto& [known, value] : kLevelNames) {
    if (known == name) return value;
  }
  return Status(StatusCode::kInvalidArgument,
                "unknown log level '" + std::string(name) + "' (one of: " + std::string(kLogLevels) + ")");
}

Result<LogFormat> parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return Status(StatusCode::kInvalidArgument,
                "unknown log format '" + std::string(name) + "' (one of: " + std::string(kLogFormats) + ")");
}

Status init_logging(std::string_view level, LogFormat format) {
  // stderr, unbuffered by line, so that logs interleave correctly with a
  // supervisor's capture even when the process is killed. The sink locks
  // (_mt): the raft thread and libuv's thread pool log too, and the sink's
  // formatter keeps state between lines.
  return init_logging(level, format, std::make_shared<spdlog::sinks::stderr_sink_mt>(), stderr_is_journal());
}

Status init_logging(std::string_view level, LogFormat format, spdlog::sink_ptr sink, bool journal_priorities) {
  auto value = parse_log_level(level);
  if (!value) return value.status();
  auto logger = std::make_shared<spdlog::logger>("netsem", std::move(sink));
  std::unique_ptr<spdlog::formatter> formatter;
  if (format == LogFormat::kJson) {
    formatter = std::make_unique<JsonFormatter>();
  } else {
    formatter =
        std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  }
  if (journal_priorities) formatter = std::make_unique<JournalPrefixFormatter>(std::move(formatter));
  logger->set_formatter(std::move(formatter));
  logger->set_level(*value);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
  g_format = format;
  return Status::ok();
}

LogFormat log_format() {
  return g_format;
}

void log_event(spdlog::level::level_enum level, std::string_view message, std::initializer_list<LogField> fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  if (g_format == LogFormat::kJson) {
    t_fields = &fields;
    logger->log(level, spdlog::string_view_t(message.data(), message.size()));
    t_fields = nullptr;
    return;
  }
  std::string line(message);
  for (const LogField& field : fields) {
    if (field.kind() == LogField::Kind::kOmitted) continue;
    line += ' ';
    line += field.key();
    line += '=';
    switch (field.kind()) {
      case LogField::Kind::kText:
        // An empty value stays visible as `key=`; escaping keeps the rest one word.
        line += escape_for_log(field.text());
        break;
      case LogField::Kind::kSigned:
        line += std::to_string(field.signed_number());
        break;
      case LogField::Kind::kUnsigned:
        line += std::to_string(field.unsigned_number());
        break;
      case LogField::Kind::kNull:
      case LogField::Kind::kOmitted:
        line += "null";
        break;
    }
  }
  logger->log(level, spdlog::string_view_t(line.data(), line.size()));
}

std::string escape_for_log(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    // `"` and `=` too: a value is then a bare logfmt word, which a parser
    // splits at its first `=` and percent-decodes back to the bytes sent.
    if (byte > 0x20 && byte < 0x7f && c != '%' && c != '"' && c != '=') {
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
