// TokenVerifier (see token_verifier.h): one thread, a bounded queue, and a
// cache keyed by a keyed hash of the token.
#include "auth/token_verifier.h"

#include <sodium.h>

#include <cstring>

#include "auth/token_hash.h"

namespace netsem::auth {

TokenVerifier::TokenVerifier() {
  if (sodium_init() >= 0) randombytes_buf(cache_key_.data(), cache_key_.size());
  thread_ = std::thread([this] { run(); });
}

TokenVerifier::~TokenVerifier() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
    jobs_.clear();
  }
  wake_.notify_all();
  thread_.join();
}

std::size_t TokenVerifier::KeyHash::operator()(const Key& key) const {
  std::size_t out = 0;
  std::memcpy(&out, key.data(), sizeof out);  // already uniformly random
  return out;
}

TokenVerifier::Key TokenVerifier::key_of(std::string_view token) const {
  Key key{};
  crypto_generichash(key.data(), key.size(), reinterpret_cast<const unsigned char*>(token.data()), token.size(),
                     cache_key_.data(), cache_key_.size());
  return key;
}

void TokenVerifier::set_tokens(std::vector<TokenEntry> tokens) {
  const std::lock_guard lock(mutex_);
  tokens_ = std::move(tokens);
  ++generation_;
  matched_.clear();
  refused_.clear();
}

std::optional<TokenVerifier::Outcome> TokenVerifier::lookup(std::string_view token) const {
  if (!check_token(token)) return Outcome();  // no configured token is invalid
  const Key key = key_of(token);
  const std::lock_guard lock(mutex_);
  if (const auto found = matched_.find(key); found != matched_.end()) return Outcome(tokens_[found->second]);
  if (refused_.contains(key)) return Outcome();
  return std::nullopt;
}

bool TokenVerifier::verify(std::string token, Done done) {
  {
    const std::lock_guard lock(mutex_);
    if (jobs_.size() + running_ >= kMaxQueued) return false;
    jobs_.push_back({std::move(token), std::move(done)});
  }
  wake_.notify_one();
  return true;
}

std::size_t TokenVerifier::queued() const {
  const std::lock_guard lock(mutex_);
  return jobs_.size() + running_;
}

void TokenVerifier::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    ++running_;
    const std::vector<TokenEntry> tokens = tokens_;  // a reload may replace them meanwhile
    const std::uint64_t generation = generation_;
    lock.unlock();
    // The first match ends the search: how many hashes were tried tells
    // only which line matched, not the token; each comparison is itself
    // constant-time (libsodium).
    Outcome outcome;
    std::size_t index = 0;
    for (; index < tokens.size(); ++index) {
      if (verify_token(tokens[index].hash, job.token)) {
        outcome = tokens[index];
        break;
      }
    }
    const Key key = key_of(job.token);
    lock.lock();
    if (generation == generation_) {
      if (outcome) {
        matched_[key] = index;
      } else {
        if (refused_.size() >= kMaxRefusedCached) refused_.clear();
        refused_[key] = true;
      }
    }
    lock.unlock();
    job.done(std::move(outcome));
    lock.lock();
    --running_;
  }
}

}  // namespace netsem::auth
