// RedisControl: a blocking RESP connection with a deadline on every
// exchange, for what the Redis target does outside its measurement (the
// counterpart of control_client.h for netsemd). Never used while measuring.
//
// Before a run, prepare_redis_run loads the recipe's scripts (once per run:
// Redis's script cache is server-wide, so every connection then EVALSHAs
// them) and deletes the keys of the names the run will use: holds left by an
// earlier run would otherwise block this one until their TTL. After the run,
// clear_redis_names deletes them again: the bench's connections end while
// holding permits, and Redis does not tie a hold to a connection.
//
// Thread safety: none; one object per user.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "connection.h"
#include "control_client.h"
#include "measurement.h"
#include "redis_wire.h"
#include "wire.h"

namespace netsem::bench {

class RedisControl {
 public:
  // nullptr when no connection was made within `timeout`.
  static std::unique_ptr<RedisControl> connect(const Endpoint& endpoint, std::chrono::milliseconds timeout);

  // Sends one command and returns its reply (a Redis error is a reply of
  // type kError); nullopt on timeout, a broken connection or bytes that are
  // not RESP.
  std::optional<RespValue> call(std::span<const std::string_view> args, std::chrono::milliseconds timeout);
  std::optional<RespValue> call(std::initializer_list<std::string_view> args, std::chrono::milliseconds timeout) {
    return call(std::span<const std::string_view>(args.begin(), args.size()), timeout);
  }

 private:
  explicit RedisControl(std::unique_ptr<BlockingSocket> socket) : socket_(std::move(socket)) {}
  std::unique_ptr<BlockingSocket> socket_;
  std::string buffer_;
};

// Loads the scripts, putting their SHA1s into `settings`, and deletes the
// keys of `names`. Returns false, with an error in `m`, when Redis cannot be
// reached or refuses.
bool prepare_redis_run(const Endpoint& endpoint, const std::vector<std::string>& names, WireSettings& settings,
                       Measurement& m);

// Deletes the keys of `names`; a note in `m` when it could not.
void clear_redis_names(const Endpoint& endpoint, const std::vector<std::string>& names, Measurement& m);

}  // namespace netsem::bench
