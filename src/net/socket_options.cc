// Keepalive on session sockets: the rule in seconds, applied with setsockopt
// (Asio has no names for TCP_KEEPIDLE and its siblings).
#include "net/socket_options.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

namespace netsem::server {

KeepAlive keepalive_for(std::int64_t session_timeout_ms) {
  if (session_timeout_ms <= 0) return KeepAlive{.idle_s = 60, .interval_s = 10, .count = 6};
  const std::int64_t seconds = (session_timeout_ms + 999) / 1000;
  KeepAlive keepalive;
  keepalive.idle_s = static_cast<int>(std::clamp<std::int64_t>(seconds / 3, 1, 32767));  // the kernel's maximum
  keepalive.interval_s = static_cast<int>(std::clamp<std::int64_t>(seconds / 9, 1, 32767));
  keepalive.count = 3;
  return keepalive;
}

void configure_session_socket(asio::ip::tcp::socket& socket, std::int64_t session_timeout_ms) {
  const KeepAlive keepalive = keepalive_for(session_timeout_ms);
  const int fd = socket.native_handle();
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive.idle_s, sizeof keepalive.idle_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &keepalive.interval_s, sizeof keepalive.interval_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &keepalive.count, sizeof keepalive.count);
}

std::string describe_peer(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string() + ":" +
           std::to_string(endpoint.port());
  }
  if (address.is_v6()) return "[" + address.to_string() + "]:" + std::to_string(endpoint.port());
  return address.to_string() + ":" + std::to_string(endpoint.port());
}

}  // namespace netsem::server
