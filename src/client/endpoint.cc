// Endpoint (endpoint.h): a server's address read from "host:port" or
// "[v6]:port", netsemd's default port added where it names none, and
// written back the same way.
#include "client/endpoint.h"

#include <cstdint>
#include <string>

#include "netsem/client_options.h"
#include "protocol/fields.h"

namespace netsem::client {

std::string Endpoint::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string with_default_port(std::string_view address) {
  const bool bracketed = address.starts_with('[') && address.ends_with(']');
  const bool bare = !address.empty() && !address.starts_with('[') && address.find(':') == std::string_view::npos;
  if (!bracketed && !bare) return std::string(address);
  return std::string(address) + ":" + std::to_string(ClientOptions::kDefaultPort);
}

Result<Endpoint> Endpoint::parse(std::string_view address) {
  const std::string full = with_default_port(address);
  const std::string_view text = full;
  Endpoint endpoint;
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find("]:");
    if (close == std::string_view::npos)
      return Status(StatusCode::kInvalidArgument, "bad server address: " + std::string(text));
    endpoint.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.substr(0, colon).find(':') != std::string_view::npos) {
      return Status(StatusCode::kInvalidArgument, "bad server address (host:port): " + std::string(text));
    }
    endpoint.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  std::int64_t number = 0;
  if (endpoint.host.empty() || !protocol::parse_int(port, 1, 65535, number)) {
    return Status(StatusCode::kInvalidArgument, "bad server address (host:port): " + std::string(text));
  }
  endpoint.port = static_cast<std::uint16_t>(number);
  return endpoint;
}

}  // namespace netsem::client
