// Token hashes over libsodium (see token_hash.h).
#include "auth/token_hash.h"

#include <sodium.h>

#include <algorithm>

namespace netsem::auth {

namespace {

bool sodium_ready() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

}  // namespace

Status check_token(std::string_view token) {
  if (token.empty()) return Status(StatusCode::kInvalidArgument, "the token is empty");
  if (token.size() > kMaxTokenBytes) {
    return Status(StatusCode::kInvalidArgument, "the token is longer than 256 bytes");
  }
  const bool visible = std::all_of(token.begin(), token.end(), [](char c) { return c > ' ' && c < 0x7f; });
  if (!visible) {
    return Status(StatusCode::kInvalidArgument,
                  "a token is visible ASCII characters only (no space, no control or non-ASCII character)");
  }
  return Status::ok();
}

Result<std::string> hash_token(std::string_view token, HashCost cost) {
  if (auto status = check_token(token); !status) return status;
  if (!sodium_ready()) return Status(StatusCode::kInternal, "libsodium cannot be initialised");
  const bool minimum = cost == HashCost::kMinimum;
  const unsigned long long ops = minimum ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
  const std::size_t memory = minimum ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, token.data(), token.size(), ops, memory) != 0) {
    return Status(StatusCode::kInternal, "crypto_pwhash_str failed (out of memory?)");
  }
  return std::string(out);
}

bool verify_token(const std::string& hash, std::string_view token) {
  if (!sodium_ready() || !check_token(token)) return false;
  return crypto_pwhash_str_verify(hash.c_str(), token.data(), token.size()) == 0;
}

bool is_token_hash(std::string_view hash) {
  if (!sodium_ready() || hash.size() >= crypto_pwhash_STRBYTES) return false;
  const std::string text(hash);
  // -1 when the string is not one libsodium reads; 0 or 1 (needs a rehash
  // at other limits) when it is.
  return crypto_pwhash_str_needs_rehash(text.c_str(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                        crypto_pwhash_MEMLIMIT_INTERACTIVE) >= 0;
}

}  // namespace netsem::auth
