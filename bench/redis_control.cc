// A blocking RESP client with deadlines (on BlockingSocket), and the Redis target's
// set-up and clean-up around a run (see redis_control.h).
#include "redis_control.h"

#include <algorithm>

namespace netsem::bench {

namespace {

using namespace std::chrono_literals;

constexpr auto kTimeout = 2s;
// Names per DEL: the keys of a large run go in a few commands, none of
// them long enough to stall Redis for the others.
constexpr std::size_t kNamesPerDel = 256;

// Deletes the keys of `names`; the number of keys deleted, or nullopt (with
// an error in `failure`) when Redis did not answer with one.
std::optional<std::int64_t> delete_keys(RedisControl& control, const std::vector<std::string>& names,
                                        std::string& failure) {
  std::int64_t deleted = 0;
  for (std::size_t at = 0; at < names.size(); at += kNamesPerDel) {
    std::vector<std::string> keys;
    for (std::size_t i = at; i < std::min(names.size(), at + kNamesPerDel); ++i) {
      keys.push_back(holders_key(names[i]));
      keys.push_back(notify_key(names[i]));
    }
    std::vector<std::string_view> args{"DEL"};
    args.insert(args.end(), keys.begin(), keys.end());
    const auto reply = control.call(args, kTimeout);
    if (!reply || reply->type != RespValue::Type::kInteger) {
      failure = "DEL: " + (reply ? describe(*reply) : std::string("no answer"));
      return std::nullopt;
    }
    deleted += reply->integer;
  }
  return deleted;
}

std::optional<std::string> load_script(RedisControl& control, std::string_view script, Measurement& m) {
  const auto reply = control.call({"SCRIPT", "LOAD", script}, kTimeout);
  if (!reply || reply->type != RespValue::Type::kBulk || reply->text.size() != 40) {
    m.error("SCRIPT LOAD: " + (reply ? describe(*reply) : std::string("no answer (is this a Redis server?)")));
    return std::nullopt;
  }
  return reply->text;
}

}  // namespace

std::unique_ptr<RedisControl> RedisControl::connect(const Endpoint& endpoint, std::chrono::milliseconds timeout) {
  auto socket = BlockingSocket::connect(endpoint, timeout);
  if (!socket) return nullptr;
  return std::unique_ptr<RedisControl>(new RedisControl(std::move(socket)));
}

std::optional<RespValue> RedisControl::call(std::span<const std::string_view> args, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string out;
  append_command(out, args);
  if (!socket_->send_all(out, deadline)) return std::nullopt;
  for (;;) {
    std::string_view input = buffer_;
    RespValue reply;
    const auto parsed = parse_resp(input, reply);
    if (parsed == RespParse::kMalformed) return std::nullopt;
    if (parsed == RespParse::kComplete) {
      buffer_.erase(0, buffer_.size() - input.size());
      return reply;
    }
    if (!socket_->read_more(buffer_, deadline)) return std::nullopt;
  }
}

bool prepare_redis_run(const Endpoint& endpoint, const std::vector<std::string>& names, WireSettings& settings,
                       Measurement& m) {
  auto control = RedisControl::connect(endpoint, kTimeout);
  if (!control) {
    m.error("cannot connect to the Redis server");
    return false;
  }
  const auto acquire_sha = load_script(*control, kAcquireScript, m);
  const auto release_sha = load_script(*control, kReleaseScript, m);
  if (!acquire_sha || !release_sha) return false;
  settings.acquire_sha = *acquire_sha;
  settings.release_sha = *release_sha;
  std::string failure;
  const auto deleted = delete_keys(*control, names, failure);
  if (!deleted) {
    m.error(failure);
    return false;
  }
  if (*deleted > 0) {
    m.notes.push_back("deleted " + std::to_string(*deleted) +
                      " key(s) of the run's names left on Redis before the run");
  }
  return true;
}

void clear_redis_names(const Endpoint& endpoint, const std::vector<std::string>& names, Measurement& m) {
  auto control = RedisControl::connect(endpoint, kTimeout);
  std::string failure = "cannot connect";
  if (control && delete_keys(*control, names, failure)) return;
  m.notes.push_back("could not delete the run's keys on Redis after the run (" + failure +
                    "): its holds stay until they expire or a run on these names deletes them");
}

}  // namespace netsem::bench
