// Rights: the text form and the checks (see rights.h).
#include "auth/rights.h"

#include <fmt/format.h>

#include <array>

#include "protocol/names.h"

namespace netsem::auth {

namespace {

constexpr std::array<Right, 4> kAllRights = {Right::kRead, Right::kAcquire, Right::kSignal, Right::kAdmin};
constexpr std::uint8_t kAllBits = 0x0f;

}  // namespace

std::string_view right_name(Right right) {
  switch (right) {
    case Right::kRead:
      return "read";
    case Right::kAcquire:
      return "acquire";
    case Right::kSignal:
      return "signal";
    case Right::kAdmin:
      return "admin";
  }
  return "";
}

Rights::Rights(std::uint8_t bits, std::vector<std::string> prefixes) : bits_(bits), prefixes_(std::move(prefixes)) {
  if ((bits_ & static_cast<std::uint8_t>(Right::kAdmin)) != 0) bits_ = kAllBits;
}

Rights Rights::unauthenticated_default(bool admin) {
  const auto bits =
      static_cast<std::uint8_t>(static_cast<std::uint8_t>(Right::kRead) | static_cast<std::uint8_t>(Right::kAcquire) |
                                static_cast<std::uint8_t>(Right::kSignal));
  return Rights(admin ? kAllBits : bits);
}

bool Rights::has(Right right) const {
  return (bits_ & static_cast<std::uint8_t>(right)) != 0;
}

bool Rights::allows(Right right, std::string_view name) const {
  if (!has(right)) return false;
  if (prefixes_.empty()) return true;
  for (const std::string& prefix : prefixes_) {
    if (name.starts_with(prefix)) return true;
  }
  return false;
}

bool Rights::allows_prefix(Right right, std::string_view prefix) const {
  // Every name under `prefix` is under one of ours exactly when `prefix`
  // itself starts with one of ours.
  return allows(right, prefix);
}

std::string Rights::names() const {
  std::string out;
  for (const Right right : kAllRights) {
    if (!has(right)) continue;
    if (!out.empty()) out += ',';
    out += right_name(right);
  }
  return out.empty() ? std::string("-") : out;
}

Result<Rights> parse_rights(std::string_view text) {
  const auto invalid = [](std::string message) { return Status(StatusCode::kInvalidArgument, std::move(message)); };
  std::vector<std::string_view> words;
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t start = text.find_first_not_of(" \t", at);
    if (start == std::string_view::npos) break;
    const std::size_t end = std::min(text.find_first_of(" \t", start), text.size());
    words.push_back(text.substr(start, end - start));
    at = end;
  }
  if (words.empty()) return invalid("no rights given (one or more of read, acquire, signal, admin)");
  std::uint8_t bits = 0;
  // Every piece between commas is a right: "read," and "read,,acquire" are errors.
  for (std::size_t at = 0; at <= words[0].size();) {
    const std::size_t comma = std::min(words[0].find(',', at), words[0].size());
    const std::string_view word = words[0].substr(at, comma - at);
    at = comma + 1;
    bool known = false;
    for (const Right right : kAllRights) {
      if (word == right_name(right)) {
        bits = static_cast<std::uint8_t>(bits | static_cast<std::uint8_t>(right));
        known = true;
      }
    }
    if (!known) {
      return invalid(
          fmt::format("`{}` is not a right (read, acquire, signal, admin, comma-separated without spaces)", word));
    }
  }
  std::vector<std::string> prefixes;
  for (std::size_t i = 1; i < words.size(); ++i) {
    std::string prefix;
    if (protocol::decode_name(words[i], prefix) != protocol::ErrorCode::kNone) {
      return invalid(fmt::format(
          "`{}` is not a valid name prefix (decoded like a name: `%` starts a %XX escape, no control characters)",
          words[i]));
    }
    prefixes.push_back(std::move(prefix));
  }
  return Rights(bits, std::move(prefixes));
}

}  // namespace netsem::auth
