// TokenVerifier: checks AUTH tokens against the configured hashes on a
// thread of its own, so that a slow hash (tens of milliseconds, 64 MiB,
// times the number of tokens for a token that matches none) never runs on
// the event loop, where it would delay every other session's grants.
//
// API: the server sets the tokens at start and on every reload
// (set_tokens). For an AUTH, the loop first asks lookup(): a token checked
// before under the same tokens is answered from a cache at once, so a client
// that reconnects costs no hash. Otherwise verify() queues the check; `done`
// runs on the verifier's thread with the token that matched (or none), and
// the caller posts the answer back to its loop. The queue is bounded: a
// flood of AUTH lines with unknown tokens makes verify() refuse at once
// (false: the caller answers a retryable ERR LIMIT), not a backlog of minutes.
//
// The cache holds no token: its key is a keyed BLAKE2b hash of the token
// (crypto_generichash) under a random key made per process, so its content
// says nothing without that key. It remembers matches (by token name) and,
// up to kMaxRefusedCached, tokens that matched none; set_tokens empties it.
//
// Thread safety: every member may be called from any thread; `done` is
// called on the verifier's thread, never from inside verify().
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "auth/auth_tables.h"

namespace netsem::auth {

class TokenVerifier {
 public:
  // The token a check matched (its name, hash and rights), or nothing.
  using Outcome = std::optional<TokenEntry>;
  using Done = std::function<void(Outcome)>;

  static constexpr std::size_t kMaxQueued = 256;
  static constexpr std::size_t kMaxRefusedCached = 4096;

  TokenVerifier();
  // Stops the thread; queued checks are dropped without calling their `done`.
  ~TokenVerifier();
  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // The tokens checked from now on (checks already queued use them too);
  // the cache starts empty.
  void set_tokens(std::vector<TokenEntry> tokens);
  // The outcome of a token already checked under the current tokens, or
  // nullopt when it must be verified.
  std::optional<Outcome> lookup(std::string_view token) const;
  // Queues a check of `token`; `done(outcome)` runs on the verifier's thread.
  // False (and `done` never called) when kMaxQueued checks are waiting.
  bool verify(std::string token, Done done);
  // Checks waiting or running (STATS, tests).
  std::size_t queued() const;

 private:
  using Key = std::array<unsigned char, 32>;
  struct KeyHash {
    std::size_t operator()(const Key& key) const;
  };
  struct Job {
    std::string token;
    Done done;
  };

  Key key_of(std::string_view token) const;
  void run();

  std::array<unsigned char, 32> cache_key_{};  // random, set once
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<TokenEntry> tokens_;                         // guarded by mutex_
  std::uint64_t generation_ = 0;                           // guarded by mutex_; bumped by set_tokens
  std::unordered_map<Key, std::size_t, KeyHash> matched_;  // guarded by mutex_; index into tokens_
  std::unordered_map<Key, bool, KeyHash> refused_;         // guarded by mutex_
  std::deque<Job> jobs_;                                   // guarded by mutex_
  std::size_t running_ = 0;                                // guarded by mutex_
  bool stopping_ = false;                                  // guarded by mutex_
  std::thread thread_;
};

}  // namespace netsem::auth
