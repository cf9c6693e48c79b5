// LocalSemaphores: host-wide counting semaphores shared by every process of
// one user on this host, for `$` names and for fallback while no server can
// be reached.
//
// Each name is one System V semaphore. Permits held through acquire() are
// taken with SEM_UNDO, so the kernel gives them back when the process dies,
// SIGKILL included: no lock file to clean up, no permit leaked by a crash.
// System V keys are small integers, so names map to semaphore ids through a
// registry directory (see local_semaphores.cc); the kernel does the counting
// and blocking.
//
// WAIT/POST semantics (consume, give back) use the same semaphore without
// SEM_UNDO: a consumed permit does not come back when the process exits.
//
// Thread safety: all methods from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "netsem/client.h"
#include "netsem/status.h"

namespace netsem::client {

class LocalSemaphores {
 public:
  // `dir` holds the registry; created (mode 0700) when missing.
  explicit LocalSemaphores(std::filesystem::path dir);

  // Takes `count` permits of the local semaphore `key` whose limit is
  // `limit` (the semaphore is made with that many free permits on first use
  // on this host). Waits up to `timeout` (nullopt: for ever; zero: try),
  // returning early with kCancelled when `cancel` is cancelled. Returns OK,
  // kTimeout, kCancelled, kTooMany (count > limit), kIoError.
  Status acquire(std::string_view key, std::int64_t limit, std::int64_t count,
                 std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel);
  // Gives back `count` permits taken by acquire() in this process.
  Status release(std::string_view key, std::int64_t count);
  // Like acquire(), but the permits are consumed (no SEM_UNDO).
  Status wait(std::string_view key, std::int64_t limit, std::int64_t count,
              std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel);
  // Adds `count` permits; kOverflow when value + count would exceed `limit`.
  Status post(std::string_view key, std::int64_t limit, std::int64_t count);
  // Free permits now.
  Result<std::int64_t> value(std::string_view key, std::int64_t limit);

  const std::filesystem::path& dir() const { return dir_; }

 private:
  // The System V id for `key`, creating the semaphore with `limit` free
  // permits if this host has none yet.
  Result<int> semaphore_id(std::string_view key, std::int64_t limit);

  std::filesystem::path dir_;
  std::mutex mutex_;
  std::unordered_map<std::string, int> ids_;  // guarded by mutex_: cache of registry lookups
};

}  // namespace netsem::client
