// Rights: what a session may do, as protocol 1.1 defines them (`read`,
// `acquire`, `signal`, `admin`), each limited to the names that start with
// one of a list of prefixes (no prefix: every name). One Rights value comes
// from a `[tokens]` line, a `[tls_subjects]` line, `ace_rights`, or the
// server's default when no token is configured; the dispatcher asks it about
// each request (allows / allows_everywhere) and writes names() in AUTH's
// answer.
//
// The text form, shared by every place that configures rights:
//   <right>[,<right>...] [<prefix> ...]
// rights from read, acquire, signal, admin (admin implies the others), the
// prefixes percent-decoded like names (so `jobs%20a/` is the prefix
// "jobs a/"), separated by single or multiple spaces.
//
// Plain values and pure functions: safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"

namespace netsem::auth {

enum class Right : std::uint8_t {
  kRead = 1,     // GET, LIST, HOLDERS, WAITERS, SESSIONS, STATS
  kAcquire = 2,  // ACQUIRE, RELEASE, CANCEL
  kSignal = 4,   // POST, WAIT, CREATE, DELETE
  kAdmin = 8,    // KICK, and every other right
};

// The wire and configuration word of a right ("read", ...).
std::string_view right_name(Right right);

class Rights {
 public:
  // No right at all.
  Rights() = default;
  // `bits` (Right values or'ed) on the names starting with one of
  // `prefixes`, or on every name when `prefixes` is empty.
  explicit Rights(std::uint8_t bits, std::vector<std::string> prefixes = {});
  // What a session has when the server has no tokens: every right but admin,
  // on every name (and admin too when `admin` is true: admin_networks).
  static Rights unauthenticated_default(bool admin);

  // Whether the right is held on `name` (admin holds every right).
  bool allows(Right right, std::string_view name) const;
  // Whether the right is held with no prefix limit: what a verb that names
  // no semaphore (SESSIONS, STATS, KICK) needs.
  bool allows_everywhere(Right right) const { return has(right) && prefixes_.empty(); }
  // Whether the right is held on every name that starts with `prefix` (a
  // LIST of that prefix): `prefix` itself starts with one of the prefixes.
  bool allows_prefix(Right right, std::string_view prefix) const;
  // Whether the right is held on some name at least.
  bool has(Right right) const;
  bool empty() const { return bits_ == 0; }

  // The rights held, comma-separated, in the order read, acquire, signal,
  // admin ("read,acquire"; "-" for none); admin lists all four.
  std::string names() const;
  // The prefixes (decoded), empty for every name.
  const std::vector<std::string>& prefixes() const { return prefixes_; }
  std::uint8_t bits() const { return bits_; }

  friend bool operator==(const Rights&, const Rights&) = default;

 private:
  std::uint8_t bits_ = 0;
  std::vector<std::string> prefixes_;
};

// Parses the text form (see the top of this file). kInvalidArgument naming
// the bad word: an unknown right, an empty list, a prefix that does not
// decode to a valid name.
Result<Rights> parse_rights(std::string_view text);

}  // namespace netsem::auth
