// TokenVerifier: checks on its thread, the cache, the bounded queue, and
// set_tokens between checks.
#include "auth/token_verifier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>

#include "auth/token_hash.h"

namespace netsem::auth {
namespace {

TokenEntry entry(std::string name, std::string_view token, std::string_view rights) {
  return TokenEntry{std::move(name), hash_token(token, HashCost::kMinimum).value(), parse_rights(rights).value()};
}

TokenVerifier::Outcome check(TokenVerifier& verifier, const std::string& token) {
  std::promise<TokenVerifier::Outcome> promise;
  auto future = promise.get_future();
  const auto caller = std::this_thread::get_id();
  bool other_thread = false;
  EXPECT_TRUE(verifier.verify(token, [&](TokenVerifier::Outcome outcome) {
    other_thread = std::this_thread::get_id() != caller;
    promise.set_value(std::move(outcome));
  }));
  EXPECT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_TRUE(other_thread);
  return future.get();
}

TEST(TokenVerifier, FindsTheMatchingTokenAndCachesIt) {
  TokenVerifier verifier;
  verifier.set_tokens({entry("a", "alpha", "read"), entry("b", "bravo", "acquire jobs/")});
  EXPECT_FALSE(verifier.lookup("bravo").has_value());  // not checked yet
  auto outcome = check(verifier, "bravo");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->name, "b");
  EXPECT_TRUE(outcome->rights.allows(Right::kAcquire, "jobs/x"));
  // Now known without a hash.
  auto cached = verifier.lookup("bravo");
  ASSERT_TRUE(cached.has_value() && cached->has_value());
  EXPECT_EQ((*cached)->name, "b");
}

TEST(TokenVerifier, AWrongTokenMatchesNoneAndIsRemembered) {
  TokenVerifier verifier;
  verifier.set_tokens({entry("a", "alpha", "read")});
  EXPECT_FALSE(check(verifier, "alpha2").has_value());
  auto cached = verifier.lookup("alpha2");
  ASSERT_TRUE(cached.has_value());
  EXPECT_FALSE(cached->has_value());
  // An invalid token is refused without a check.
  auto invalid = verifier.lookup("has space");
  ASSERT_TRUE(invalid.has_value());
  EXPECT_FALSE(invalid->has_value());
}

TEST(TokenVerifier, NewTokensEmptyTheCache) {
  TokenVerifier verifier;
  verifier.set_tokens({entry("a", "alpha", "read")});
  ASSERT_TRUE(check(verifier, "alpha").has_value());
  verifier.set_tokens({entry("c", "charlie", "read")});
  EXPECT_FALSE(verifier.lookup("alpha").has_value());
  EXPECT_FALSE(check(verifier, "alpha").has_value());
  EXPECT_TRUE(check(verifier, "charlie").has_value());
}

TEST(TokenVerifier, TheQueueIsBounded) {
  std::atomic<int> done{0};  // outlives the verifier, whose running check may still count
  TokenVerifier verifier;
  // A slow hash keeps the thread busy while the queue fills.
  verifier.set_tokens({TokenEntry{"slow", hash_token("slow").value(), parse_rights("read").value()}});
  std::size_t accepted = 0;
  bool refused = false;
  for (std::size_t i = 0; i < TokenVerifier::kMaxQueued + 10; ++i) {
    if (verifier.verify("token" + std::to_string(i), [&](TokenVerifier::Outcome) { ++done; })) {
      ++accepted;
    } else {
      refused = true;
    }
  }
  EXPECT_TRUE(refused);
  EXPECT_LE(accepted, TokenVerifier::kMaxQueued);
  // The destructor drops the rest without calling them, and returns.
}

}  // namespace
}  // namespace netsem::auth
