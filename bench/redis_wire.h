// The Redis target of netsem-bench: the usual Lua counting-semaphore recipe,
// spoken in RESP2, so that Redis is driven by the same generator, the same
// connections and the same request pattern as netsemd and the floor.
//
// The recipe, per semaphore NAME (two keys, braced so that both hash to one
// Redis Cluster slot, as a script's keys must):
//  - {NAME}:holders, a sorted set of holder ids scored by when their hold
//    expires (a holder that dies without releasing frees its permit after
//    kHolderTtlMs);
//  - {NAME}:notify, a list of wake-up tokens for waiters.
// acquire runs kAcquireScript (purge expired holders, count, add the holder
// when under the limit: 1 granted, 0 full). When full, the wire sends
// `BLPOP {NAME}:notify kWakeTimeout` on the same connection, reports
// kQueued, and runs the script again when the BLPOP answers (a token, or
// nil on timeout) until it grants. release runs kReleaseScript (remove the
// holder; if it was there, push one token, while fewer than the limit are
// waiting in the list, so tokens cannot pile up without waiters). Redis
// keeps no definition of a semaphore: the limit travels with each request.
//
// Also here, with no I/O: RESP encoding of commands and an incremental
// parser of whole replies, shared with redis_control.h.
//
// Thread safety: none; a RedisWire belongs to one connection.
#pragma once

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wire.h"

namespace netsem::bench {

// KEYS[1] holders; ARGV[1] limit, ARGV[2] holder id, ARGV[3] hold TTL (ms).
// Returns 1 (the holder now holds a permit) or 0 (full).
inline constexpr std::string_view kAcquireScript =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then\n"
    "  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

// KEYS[1] holders, KEYS[2] notify; ARGV[1] holder id, ARGV[2] limit.
// Returns 1 (released) or 0 (the holder held nothing: its hold expired).
inline constexpr std::string_view kReleaseScript =
    "if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then\n"
    "  return 0\n"
    "end\n"
    "if redis.call('LLEN', KEYS[2]) < tonumber(ARGV[2]) then\n"
    "  redis.call('RPUSH', KEYS[2], 1)\n"
    "end\n"
    "return 1\n";

// A hold not released within this time is taken back by the next acquire.
inline constexpr std::int64_t kHolderTtlMs = 30'000;
// A waiter's BLPOP, in seconds: past it the waiter tries again anyway, for
// permits freed by expiry, which push no token.
inline constexpr std::string_view kWakeTimeout = "1";

std::string holders_key(std::string_view name);
std::string notify_key(std::string_view name);

// Appends one command as a RESP array of bulk strings.
void append_command(std::string& out, std::span<const std::string_view> args);
inline void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  append_command(out, std::span<const std::string_view>(args.begin(), args.size()));
}

// One RESP2 reply.
struct RespValue {
  enum class Type : std::uint8_t { kSimple, kError, kInteger, kBulk, kNil, kArray };
  Type type = Type::kNil;
  std::int64_t integer = 0;         // kInteger
  std::string text;                 // kSimple, kError, kBulk
  std::vector<RespValue> elements;  // kArray
};

enum class RespParse : std::uint8_t {
  kComplete,    // `value` holds the reply; `input` is advanced past it
  kIncomplete,  // no whole reply yet; `input` is untouched
  kMalformed,   // not RESP2; `input` is untouched
};

// Parses the first reply off `input`. Nil bulk strings ($-1) and nil arrays
// (*-1) are both kNil.
RespParse parse_resp(std::string_view& input, RespValue& value);

// A short printable rendering of a reply, for error messages.
std::string describe(const RespValue& value);

struct RedisWireConfig {
  std::int64_t limit = 1;  // of every name this wire acquires
  std::string holder;      // this connection's holder id, unique on the server
  // The scripts' SHA1s as SCRIPT LOAD returned them (redis_control.h);
  // empty: EVAL the script text with every request instead.
  std::string acquire_sha;
  std::string release_sha;
};

class RedisWire final : public Wire {
 public:
  explicit RedisWire(RedisWireConfig config);

  void acquire(std::string& out, std::string_view name) override;
  void release(std::string& out, std::string_view name) override;
  // The recipe's semaphore is its two keys, so create and remove both
  // delete them (create starts the name afresh; `limit` is not stored: the
  // limit travels with each acquire). Answered kDone.
  void create(std::string& out, std::string_view name, std::int64_t limit) override;
  void remove(std::string& out, std::string_view name) override;

  // Takes the wake-up replies (BLPOP's) off `input` itself, appending the
  // retried acquire to `out`; so it may return nullopt with `input`
  // advanced past them.
  std::optional<Reply> next(std::string_view& input, std::string& out) override;

 private:
  enum class Step : std::uint8_t { kAcquire, kWait, kRelease, kDone };
  struct Pending {
    Step step;
    std::string name;     // kAcquire and kWait: to retry the acquire
    bool queued = false;  // kAcquire and kWait: kQueued was reported
  };

  void send_acquire(std::string& out, std::string_view name, bool queued);
  void prepare_commands(std::string_view name);
  Reply error(std::string_view what, const RespValue& value);

  RedisWireConfig config_;
  std::deque<Pending> expected_;  // what each reply in flight answers, in order
  // The encoded acquire, release and wait of the last name used: a client
  // works on one name, so they are encoded once.
  std::string command_name_;
  std::string acquire_command_;
  std::string release_command_;
  std::string wait_command_;
};

// A RedisWire with a holder id unique to this process and connection.
std::unique_ptr<Wire> make_redis_wire(const WireSettings& settings);

}  // namespace netsem::bench
