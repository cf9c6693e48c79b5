// The server's authentication tables: the tokens (`[tokens]`, in the main
// configuration or a `tokens_file` kept apart) and the client certificate
// subjects (`[tls_subjects]`), each mapped to Rights. The configuration
// loader (config/config.cc) fills them with parse_token_line and
// parse_subject_line; the dispatcher asks required() and find_*; the
// TokenVerifier checks an AUTH token against tokens.
//
// Lines:
//   [tokens]        <token-name> = <hash> <right>[,<right>...] [<prefix> ...]
//   [tls_subjects]  <subject> = <right>[,<right>...] [<prefix> ...]
// A token name is 1..64 of [A-Za-z0-9_.-] (it appears in logs, never the
// token). The hash is what `netsemd --hash-token` prints. A subject is the
// certificate subject in OpenSSL's RFC 2253 one-line form, percent-decoded
// like a semaphore name, because a configuration key cannot hold `=`:
// `CN%3Dworker-1,O%3DAcme` is the subject CN=worker-1,O=Acme.
//
// A tokens_file is read with read_private_file (common/private_file.h).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "auth/rights.h"
#include "netsem/status.h"

namespace netsem::auth {

struct TokenEntry {
  std::string name;  // the token's name, for logs and reloads
  std::string hash;  // token_hash.h
  Rights rights;
  friend bool operator==(const TokenEntry&, const TokenEntry&) = default;
};

struct SubjectEntry {
  std::string subject;  // decoded, RFC 2253 form
  Rights rights;
  friend bool operator==(const SubjectEntry&, const SubjectEntry&) = default;
};

struct AuthTables {
  std::vector<TokenEntry> tokens;
  std::vector<SubjectEntry> subjects;

  // Whether sessions must authenticate: some token or subject is configured.
  bool required() const { return !tokens.empty() || !subjects.empty(); }
  // The token named `name`, or nullptr.
  const TokenEntry* find_token(std::string_view name) const;
  // The rights of a verified certificate subject, or nullptr.
  const Rights* find_subject(std::string_view subject) const;
  friend bool operator==(const AuthTables&, const AuthTables&) = default;
};

// Whether `name` is a valid token name (see the top of this file).
bool is_valid_token_name(std::string_view name);

// One [tokens] line. kInvalidArgument saying what is wrong (a bad name, a
// value that is not `<hash> <rights> [<prefix> ...]`, a hash libsodium
// cannot read, bad rights); the caller adds "file:line: ".
Result<TokenEntry> parse_token_line(std::string_view name, std::string_view value);
// One [tls_subjects] line (the key as written, percent-encoded).
Result<SubjectEntry> parse_subject_line(std::string_view key, std::string_view value);

}  // namespace netsem::auth
