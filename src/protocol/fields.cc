// Tags and decimal numbers (fields.h). Numbers go through <charconv>: no
// locale, no allocation.
#include "protocol/fields.h"

#include <charconv>
#include <limits>
#include <system_error>

namespace netsem::protocol {

bool is_valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagBytes) return false;
  for (const char c : tag) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool parse_int(std::string_view text, std::int64_t min, std::int64_t max, std::int64_t& out) {
  if (text.empty()) return false;
  if (text.front() == '-' && min >= 0) return false;
  std::int64_t value = 0;
  const char* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return false;
  // A sign belongs to a negative value: "-0" (or "-000") is not a way to
  // write 0, so that a try is never sent by accident.
  if (text.front() == '-' && value == 0) return false;
  if (value < min || value > max) return false;
  out = value;
  return true;
}

bool parse_uint(std::string_view text, std::uint64_t& out) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return false;
  std::uint64_t value = 0;
  const char* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return false;
  out = value;
  return true;
}

void append_decimal(std::string& out, std::uint64_t n) {
  char digits[std::numeric_limits<std::uint64_t>::digits10 + 1];
  const auto result = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, result.ptr);
}

void append_decimal(std::string& out, std::int64_t n) {
  char digits[std::numeric_limits<std::int64_t>::digits10 + 2];
  const auto result = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, result.ptr);
}

bool split_fields(std::string_view text, std::string_view* fields, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t space = text.find(' ');
    const bool last = i + 1 == n;
    if (last != (space == std::string_view::npos)) return false;
    fields[i] = text.substr(0, space);
    if (fields[i].empty()) return false;
    if (!last) text.remove_prefix(space + 1);
  }
  return n > 0 || text.empty();
}

bool equals_upper(std::string_view a, std::string_view upper) {
  if (a.size() != upper.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != upper[i]) return false;
  }
  return true;
}

}  // namespace netsem::protocol
