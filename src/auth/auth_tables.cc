// The authentication tables' lines (see auth_tables.h).
#include "auth/auth_tables.h"

#include <fmt/format.h>

#include <algorithm>

#include "auth/token_hash.h"
#include "protocol/names.h"

namespace netsem::auth {

namespace {

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

}  // namespace

const TokenEntry* AuthTables::find_token(std::string_view name) const {
  for (const TokenEntry& entry : tokens) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

const Rights* AuthTables::find_subject(std::string_view subject) const {
  for (const SubjectEntry& entry : subjects) {
    if (entry.subject == subject) return &entry.rights;
  }
  return nullptr;
}

bool is_valid_token_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

Result<TokenEntry> parse_token_line(std::string_view name, std::string_view value) {
  if (!is_valid_token_name(name)) {
    return invalid(fmt::format("`{}` is not a token name (1 to 64 of A-Z a-z 0-9 _ . -)", name));
  }
  const std::size_t space = value.find_first_of(" \t");
  const std::string_view hash = value.substr(0, space);
  if (space == std::string_view::npos) {
    return invalid(
        "expected `<hash> <right>[,<right>...] [<prefix> ...]` (the hash netsemd --hash-token prints, "
        "then the rights)");
  }
  if (!is_token_hash(hash)) {
    return invalid(fmt::format("`{}` is not a token hash (paste what netsemd --hash-token prints)", hash));
  }
  auto rights = parse_rights(value.substr(space + 1));
  if (!rights) return rights.status();
  return TokenEntry{std::string(name), std::string(hash), std::move(rights).value()};
}

Result<SubjectEntry> parse_subject_line(std::string_view key, std::string_view value) {
  std::string subject;
  if (protocol::decode_name(key, subject) != protocol::ErrorCode::kNone) {
    return invalid(
        fmt::format("`{}` is not a certificate subject (percent-encoded: write `=` as %3D, `:` as %3A)", key));
  }
  if (subject.find('=') == std::string::npos) {
    return invalid(
        fmt::format("`{}` is not a certificate subject in RFC 2253 form (CN%3Dname,O%3Dorg: write `=` as "
                    "%3D, since a line is split at its first `=`)",
                    key));
  }
  auto rights = parse_rights(value);
  if (!rights) return rights.status();
  return SubjectEntry{std::move(subject), std::move(rights).value()};
}

}  // namespace netsem::auth
