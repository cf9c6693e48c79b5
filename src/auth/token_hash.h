// Token hashes: a token is stored only as a salted, slow hash, made and
// checked by libsodium's crypto_pwhash_str / crypto_pwhash_str_verify
// (Argon2id; the string carries its algorithm, cost and salt, e.g.
// `$argon2id$v=19$m=65536,t=2,p=1$...`, and the check compares in constant
// time). `netsemd --hash-token` prints hash_token(); the server checks AUTH
// with verify_token() on the TokenVerifier's thread, never on the event loop
// (a check costs about as much as the hash: tens of milliseconds and 64 MiB).
//
// Thread safety: pure functions; libsodium is initialised once, on first use,
// from any thread (sodium_init is safe to call concurrently).
#pragma once

#include <string>
#include <string_view>

#include "netsem/status.h"

namespace netsem::auth {

// The longest token accepted (bytes).
inline constexpr std::size_t kMaxTokenBytes = 256;

// What a hash costs. kInteractive is libsodium's interactive limit (what
// netsemd --hash-token makes); kMinimum is libsodium's least, for tests that
// make many hashes.
enum class HashCost { kInteractive, kMinimum };

// A token is 1..kMaxTokenBytes visible ASCII characters (0x21..0x7e): one
// field of an AUTH line. kInvalidArgument saying why otherwise.
Status check_token(std::string_view token);

// A fresh salted hash of `token`. kInvalidArgument for an invalid token;
// kInternal when libsodium cannot (out of memory).
Result<std::string> hash_token(std::string_view token, HashCost cost = HashCost::kInteractive);

// Whether `hash` (a string hash_token made) is the hash of `token`.
bool verify_token(const std::string& hash, std::string_view token);

// Whether `hash` is a hash libsodium can check (an Argon2 string it reads),
// so that a mistyped configuration line is refused at start, not at the
// first AUTH.
bool is_token_hash(std::string_view hash);

}  // namespace netsem::auth
