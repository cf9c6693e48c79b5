// Endpoint: a server's address as ClientOptions::servers, the --server flag
// and LEADER's answer give it, "host:port" or "[v6]:port", with netsemd's
// default port where it names none (endpoint.cc). The Connection
// (connection.h) connects to a list of them.
//
// Thread safety: a value type; with_default_port and parse stand alone.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "netsem/status.h"

namespace netsem::client {

// A server address from ClientOptions::servers.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;
  // "host:port" or "[v6]:port", or either without ":port" for
  // ClientOptions::kDefaultPort; kInvalidArgument otherwise.
  static Result<Endpoint> parse(std::string_view text);
};

// `address` with ":<kDefaultPort>" added when it names no port ("host",
// "[v6]"), else as it is: an address without a port means netsemd's default
// port wherever one is taken (--server, NETSEM_SERVER, the config file).
std::string with_default_port(std::string_view address);

}  // namespace netsem::client
