// RESP2 encoding and parsing, and the Redis counting-semaphore wire (see
// redis_wire.h).
#include "redis_wire.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>

namespace netsem::bench {

namespace {

// Bounds that keep a garbled or hostile reply from costing much: Redis's
// own limit on a bulk string, and nesting far beyond any reply we ask for.
constexpr std::int64_t kMaxBulkLength = 512LL * 1024 * 1024;
constexpr int kMaxDepth = 8;

bool parse_integer(std::string_view text, std::int64_t& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

// Parses the reply that starts at `at`, moving `at` past it.
RespParse parse_at(std::string_view input, std::size_t& at, RespValue& value, int depth) {
  if (at >= input.size()) return RespParse::kIncomplete;
  const char type = input[at];
  const auto newline = input.find('\n', at);
  if (newline == std::string_view::npos) return RespParse::kIncomplete;
  if (newline < at + 2 || input[newline - 1] != '\r') return RespParse::kMalformed;
  const std::string_view line = input.substr(at + 1, newline - 1 - (at + 1));
  std::size_t next = newline + 1;
  switch (type) {
    case '+':
    case '-':
      value.type = type == '+' ? RespValue::Type::kSimple : RespValue::Type::kError;
      value.text.assign(line);
      break;
    case ':':
      value.type = RespValue::Type::kInteger;
      if (!parse_integer(line, value.integer)) return RespParse::kMalformed;
      break;
    case '$': {
      std::int64_t length = 0;
      if (!parse_integer(line, length) || length < -1 || length > kMaxBulkLength) return RespParse::kMalformed;
      if (length == -1) {
        value.type = RespValue::Type::kNil;
        break;
      }
      const auto size = static_cast<std::size_t>(length);
      if (input.size() - next < size + 2) return RespParse::kIncomplete;
      if (input[next + size] != '\r' || input[next + size + 1] != '\n') return RespParse::kMalformed;
      value.type = RespValue::Type::kBulk;
      value.text.assign(input.substr(next, size));
      next += size + 2;
      break;
    }
    case '*': {
      std::int64_t count = 0;
      if (!parse_integer(line, count) || count < -1 || depth >= kMaxDepth) return RespParse::kMalformed;
      if (count == -1) {
        value.type = RespValue::Type::kNil;
        break;
      }
      value.type = RespValue::Type::kArray;
      // Every element takes at least 3 bytes: a count beyond what is
      // buffered is not reserved for before the bytes arrive.
      value.elements.reserve(static_cast<std::size_t>(std::min<std::int64_t>(count, 16)));
      for (std::int64_t i = 0; i < count; ++i) {
        const auto result = parse_at(input, next, value.elements.emplace_back(), depth + 1);
        if (result != RespParse::kComplete) return result;
      }
      break;
    }
    default:
      return RespParse::kMalformed;
  }
  at = next;
  return RespParse::kComplete;
}

std::string printable(std::string_view text, std::size_t max) {
  std::string out;
  for (const char c : text.substr(0, max)) out += (c >= ' ' && c <= '~') ? c : '.';
  if (text.size() > max) out += "...";
  return out;
}

bool is_integer(const RespValue& value, std::int64_t expected) {
  return value.type == RespValue::Type::kInteger && value.integer == expected;
}

}  // namespace

std::string holders_key(std::string_view name) {
  return "{" + std::string(name) + "}:holders";
}

std::string notify_key(std::string_view name) {
  return "{" + std::string(name) + "}:notify";
}

void append_command(std::string& out, std::span<const std::string_view> args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const auto arg : args) {
    out += '$';
    out += std::to_string(arg.size());
    out += "\r\n";
    out += arg;
    out += "\r\n";
  }
}

RespParse parse_resp(std::string_view& input, RespValue& value) {
  std::size_t at = 0;
  RespValue parsed;
  const auto result = parse_at(input, at, parsed, 0);
  if (result == RespParse::kComplete) {
    value = std::move(parsed);
    input.remove_prefix(at);
  }
  return result;
}

std::string describe(const RespValue& value) {
  switch (value.type) {
    case RespValue::Type::kSimple:
      return printable(value.text, 80);
    case RespValue::Type::kError:
      return printable(value.text, 200);
    case RespValue::Type::kInteger:
      return "integer " + std::to_string(value.integer);
    case RespValue::Type::kBulk: {
      // Built by append: GCC 12 warns falsely (-Wrestrict) on "\"" + string.
      std::string quoted = printable(value.text, 80);
      quoted.insert(0, 1, '"');
      quoted.push_back('"');
      return quoted;
    }
    case RespValue::Type::kNil:
      return "nil";
    case RespValue::Type::kArray:
      return "array of " + std::to_string(value.elements.size());
  }
  return "?";
}

RedisWire::RedisWire(RedisWireConfig config) : config_(std::move(config)) {}

void RedisWire::prepare_commands(std::string_view name) {
  if (!acquire_command_.empty() && name == command_name_) return;
  command_name_.assign(name);
  const std::string holders = holders_key(name);
  const std::string notify = notify_key(name);
  const std::string limit = std::to_string(config_.limit);
  const std::string ttl = std::to_string(kHolderTtlMs);
  const bool acquire_loaded = !config_.acquire_sha.empty();
  const bool release_loaded = !config_.release_sha.empty();
  acquire_command_.clear();
  release_command_.clear();
  wait_command_.clear();
  append_command(acquire_command_,
                 {acquire_loaded ? "EVALSHA" : "EVAL", acquire_loaded ? config_.acquire_sha : kAcquireScript, "1",
                  holders, limit, config_.holder, ttl});
  append_command(release_command_,
                 {release_loaded ? "EVALSHA" : "EVAL", release_loaded ? config_.release_sha : kReleaseScript, "2",
                  holders, notify, config_.holder, limit});
  append_command(wait_command_, {"BLPOP", notify, kWakeTimeout});
}

void RedisWire::send_acquire(std::string& out, std::string_view name, bool queued) {
  prepare_commands(name);
  out += acquire_command_;
  expected_.push_back({Step::kAcquire, std::string(name), queued});
}

void RedisWire::acquire(std::string& out, std::string_view name) {
  send_acquire(out, name, false);
}

void RedisWire::release(std::string& out, std::string_view name) {
  prepare_commands(name);
  out += release_command_;
  expected_.push_back({Step::kRelease, {}, false});
}

void RedisWire::create(std::string& out, std::string_view name, std::int64_t) {
  append_command(out, {"DEL", holders_key(name), notify_key(name)});
  expected_.push_back({Step::kDone, {}, false});
}

void RedisWire::remove(std::string& out, std::string_view name) {
  append_command(out, {"DEL", holders_key(name), notify_key(name)});
  expected_.push_back({Step::kDone, {}, false});
}

std::optional<Reply> RedisWire::next(std::string_view& input, std::string& out) {
  for (;;) {
    RespValue value;
    switch (parse_resp(input, value)) {
      case RespParse::kIncomplete:
        return std::nullopt;
      case RespParse::kMalformed:
        last_error_ = "not a RESP reply: " + printable(input, 40);
        return Reply::kError;
      case RespParse::kComplete:
        break;
    }
    if (expected_.empty()) return error("unexpected reply", value);
    Pending pending = std::move(expected_.front());
    expected_.pop_front();
    switch (pending.step) {
      case Step::kAcquire:
        if (is_integer(value, 1)) return Reply::kGranted;
        if (!is_integer(value, 0)) return error("acquire", value);
        // Full: wait for a token on the same connection, then try again.
        // A waiter is queued once, however many times it wakes to find the
        // permits taken again.
        prepare_commands(pending.name);
        out += wait_command_;
        expected_.push_back({Step::kWait, std::move(pending.name), true});
        if (!pending.queued) return Reply::kQueued;
        break;
      case Step::kWait:
        // A token or nil (timed out): either way, try again.
        if (value.type != RespValue::Type::kArray && value.type != RespValue::Type::kNil) {
          return error("BLPOP", value);
        }
        send_acquire(out, pending.name, true);
        break;
      case Step::kRelease:
        if (is_integer(value, 1)) return Reply::kReleased;
        if (is_integer(value, 0)) {
          last_error_ = "release: the holder held no permit (its hold expired, or its keys were deleted)";
          return Reply::kError;
        }
        return error("release", value);
      case Step::kDone:
        if (value.type == RespValue::Type::kInteger) return Reply::kDone;
        return error("DEL", value);
    }
  }
}

Reply RedisWire::error(std::string_view what, const RespValue& value) {
  last_error_.assign(what);
  last_error_ += ": ";
  last_error_ += describe(value);
  return Reply::kError;
}

std::unique_ptr<Wire> make_redis_wire(const WireSettings& settings) {
  // Unique on the server among the holders of any concurrent run: the
  // process id, and the wire's number within the process.
  static std::atomic<std::uint64_t> wires{0};
  RedisWireConfig config;
  config.limit = settings.limit;
  config.holder = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(wires++);
  config.acquire_sha = settings.acquire_sha;
  config.release_sha = settings.release_sha;
  return std::make_unique<RedisWire>(std::move(config));
}

}  // namespace netsem::bench
