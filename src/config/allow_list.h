// AllowList: the networks netsemd accepts connections from (the
// `allowed_networks` option, ACE's `allowed_ipv4`). The server checks every
// accepted peer against it before reading a byte; config.cc builds it from
// the configuration file.
//
// Rules are IPv4 and IPv6 CIDR blocks. A peer that arrives as an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket
// reports for an IPv4 client) is an IPv4 client: it is matched against the
// IPv4 rules only, so `::/0` does not admit IPv4 clients and `0.0.0.0/0`
// admits all of them on either kind of socket. A rule written in mapped form
// (`::ffff:10.0.0.0/104`) is stored as the IPv4 rule it means (10.0.0.0/8).
//
// Thread safety: a value type; const methods may be called concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"

namespace netsem::server {

class AllowList {
 public:
  // An empty list: allows no peer.
  AllowList() = default;

  // Parses a comma-separated list of rules, e.g. "10.0.0.0/8, 192.168.1.7,
  // ::1, fd00::/8". Each rule is an address (a single host: /32 or /128) or
  // address/prefix-length; whitespace (newlines included, for continued
  // configuration values) around rules is ignored.
  // Returns kInvalidArgument naming the offending rule for: an empty list or
  // an empty rule (`a,,b`, a trailing comma), an address inet_pton rejects, a
  // prefix length that is not a decimal number within 0-32 / 0-128, host bits
  // set below the prefix (`10.0.0.1/8`; as Python's ipaddress.ip_network,
  // which ACE uses, so a typo is not silently widened or narrowed), and the
  // unspecified address alone (`0.0.0.0`, `::`), which no peer ever has:
  // `0.0.0.0/0` is the way to write "any IPv4 address".
  static Result<AllowList> parse(std::string_view comma_separated);

  // The default of `allowed_networks`: 127.0.0.0/8 and ::1.
  static AllowList loopback();

  // True if the peer address `v6_or_mapped` (network byte order, as in
  // sockaddr_in6 or asio's address_v6::to_bytes) is allowed.
  bool allows(const std::array<std::uint8_t, 16>& v6_or_mapped) const;
  // True if the IPv4 peer `host_order` (e.g. 0x7f000001 for 127.0.0.1) is
  // allowed.
  bool allows_v4(std::uint32_t host_order) const;

  bool empty() const { return v4_.empty() && v6_.empty(); }
  // True if every IPv4 address is allowed (a /0 IPv4 rule).
  bool allows_any_v4() const;

  // The rules in canonical form, in the order given, IPv4 and IPv6 rules
  // interleaved as written: "127.0.0.0/8, ::1, 10.0.0.0/8". A host rule is
  // written without its prefix length. parse(to_string()) == *this.
  std::string to_string() const;

  friend bool operator==(const AllowList&, const AllowList&) = default;

 private:
  struct V4Rule {
    std::uint32_t network = 0;  // host order, host bits clear
    int prefix = 0;
    friend bool operator==(const V4Rule&, const V4Rule&) = default;
  };
  struct V6Rule {
    std::array<std::uint8_t, 16> network{};  // host bits clear
    int prefix = 0;
    friend bool operator==(const V6Rule&, const V6Rule&) = default;
  };

  std::vector<V4Rule> v4_;
  std::vector<V6Rule> v6_;
  // For to_string: true where the i-th rule written was IPv4.
  std::vector<bool> order_is_v4_;
};

}  // namespace netsem::server
