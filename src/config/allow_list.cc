// AllowList (see allow_list.h): parsing with inet_pton/inet_ntop, matching by
// prefix. Lists are short (a handful of rules), so matching is a linear scan.
#include "config/allow_list.h"

#include "common/text.h"

#include <arpa/inet.h>

#include <cassert>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace netsem::server {
namespace {

std::uint32_t v4_mask(int prefix) {
  return prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
}

bool is_mapped_v4(const std::array<std::uint8_t, 16>& a) {
  for (int i = 0; i < 10; ++i) {
    if (a[i] != 0) return false;
  }
  return a[10] == 0xff && a[11] == 0xff;
}

std::uint32_t mapped_v4(const std::array<std::uint8_t, 16>& a) {
  return std::uint32_t{a[12]} << 24 | std::uint32_t{a[13]} << 16 | std::uint32_t{a[14]} << 8 | a[15];
}

// True if `a` and `network` agree on their first `prefix` bits.
bool v6_matches(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& network, int prefix) {
  int i = 0;
  for (; prefix >= 8; prefix -= 8, ++i) {
    if (a[i] != network[i]) return false;
  }
  if (prefix == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - prefix));
  return (a[i] & mask) == network[i];
}

// Clears the bits of `a` below `prefix`; true if any was set.
bool clear_host_bits(std::array<std::uint8_t, 16>& a, int prefix) {
  bool any = false;
  for (int bit = prefix; bit < 128; ++bit) {
    const auto mask = static_cast<std::uint8_t>(0x80 >> (bit % 8));
    if (a[bit / 8] & mask) {
      any = true;
      a[bit / 8] &= static_cast<std::uint8_t>(~mask);
    }
  }
  return any;
}

std::string v4_text(std::uint32_t host_order) {
  return fmt::format("{}.{}.{}.{}", host_order >> 24, (host_order >> 16) & 0xff, (host_order >> 8) & 0xff,
                     host_order & 0xff);
}

std::string v6_text(const std::array<std::uint8_t, 16>& a) {
  char buffer[INET6_ADDRSTRLEN];
  const char* text = inet_ntop(AF_INET6, a.data(), buffer, sizeof buffer);
  assert(text != nullptr);
  return text;
}

Status bad_rule(std::string_view rule, std::string_view why) {
  return Status(StatusCode::kInvalidArgument, fmt::format("bad network `{}`: {}", rule, why));
}

}  // namespace

Result<AllowList> AllowList::parse(std::string_view comma_separated) {
  if (trim(comma_separated).empty()) {
    return Status(StatusCode::kInvalidArgument, "no networks listed (an empty list would refuse every peer)");
  }
  AllowList list;
  std::size_t start = 0;
  while (true) {
    const auto comma = comma_separated.find(',', start);
    const auto rule = trim(comma_separated.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (rule.empty()) return bad_rule(rule, "empty entry (two commas in a row, or one at an end)");

    const auto slash = rule.find('/');
    const auto address = std::string(rule.substr(0, slash));
    const bool v6 = address.find(':') != std::string::npos;
    const int max_prefix = v6 ? 128 : 32;
    int prefix = max_prefix;
    if (slash != std::string_view::npos) {
      const auto digits = rule.substr(slash + 1);
      const auto* last = digits.data() + digits.size();
      const auto [ptr, ec] = std::from_chars(digits.data(), last, prefix);
      // from_chars takes no sign or space, so "/ 8" and "/+8" fail here.
      if (digits.empty() || ec != std::errc() || ptr != last || prefix < 0 || prefix > max_prefix) {
        return bad_rule(rule, fmt::format("the prefix length must be a number from 0 to {}", max_prefix));
      }
    }

    std::array<std::uint8_t, 16> bytes{};
    if (v6) {
      if (inet_pton(AF_INET6, address.c_str(), bytes.data()) != 1) return bad_rule(rule, "not an IPv6 address");
    } else {
      in_addr v4{};
      if (inet_pton(AF_INET, address.c_str(), &v4) != 1) return bad_rule(rule, "not an IPv4 address");
      // Work in the mapped form so that one routine clears host bits for both.
      bytes[10] = bytes[11] = 0xff;
      std::memcpy(&bytes[12], &v4, 4);
      prefix += 96;
    }
    if (slash == std::string_view::npos && (v6 ? bytes == std::array<std::uint8_t, 16>{} : mapped_v4(bytes) == 0)) {
      return bad_rule(rule, v6 ? "no peer has the unspecified address; write ::/0 for any IPv6 address"
                               : "no peer has the unspecified address; write 0.0.0.0/0 for any IPv4 address");
    }
    auto network = bytes;
    const bool host_bits = clear_host_bits(network, prefix);
    const bool as_v4 = is_mapped_v4(network) && prefix >= 96;
    if (host_bits) {
      return bad_rule(
          rule, fmt::format("host bits set below the prefix (the network is {}/{})",
                            as_v4 ? v4_text(mapped_v4(network)) : v6_text(network), as_v4 ? prefix - 96 : prefix));
    }

    if (as_v4) {
      list.v4_.push_back(V4Rule{mapped_v4(network), prefix - 96});
      list.order_is_v4_.push_back(true);
    } else {
      list.v6_.push_back(V6Rule{network, prefix});
      list.order_is_v4_.push_back(false);
    }

    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return list;
}

AllowList AllowList::loopback() {
  auto list = parse("127.0.0.0/8, ::1");
  assert(list.has_value());
  return std::move(list).value();
}

bool AllowList::allows(const std::array<std::uint8_t, 16>& v6_or_mapped) const {
  if (is_mapped_v4(v6_or_mapped)) return allows_v4(mapped_v4(v6_or_mapped));
  for (const auto& rule : v6_) {
    if (v6_matches(v6_or_mapped, rule.network, rule.prefix)) return true;
  }
  return false;
}

bool AllowList::allows_v4(std::uint32_t host_order) const {
  for (const auto& rule : v4_) {
    if ((host_order & v4_mask(rule.prefix)) == rule.network) return true;
  }
  return false;
}

bool AllowList::allows_any_v4() const {
  for (const auto& rule : v4_) {
    if (rule.prefix == 0) return true;
  }
  return false;
}

std::string AllowList::to_string() const {
  std::string text;
  std::size_t next_v4 = 0;
  std::size_t next_v6 = 0;
  for (const bool is_v4 : order_is_v4_) {
    if (!text.empty()) text += ", ";
    if (is_v4) {
      const auto& rule = v4_[next_v4++];
      text += v4_text(rule.network);
      if (rule.prefix != 32) text += fmt::format("/{}", rule.prefix);
    } else {
      const auto& rule = v6_[next_v6++];
      text += v6_text(rule.network);
      if (rule.prefix != 128) text += fmt::format("/{}", rule.prefix);
    }
  }
  return text;
}

}  // namespace netsem::server
