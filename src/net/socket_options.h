// TCP options of the server's session sockets: keepalive probes so that a
// peer whose host vanished (power loss, a cable pulled: no FIN, no RST) is
// found and its session ended, with its permits, even where the session
// timeout does not look (a queued ACE client, which has nothing to send, or a
// server run with session_timeout_ms = 0). keepalive_for() is the pure rule;
// configure_session_socket() applies it to an accepted socket. And how a
// peer's address is written in the log and the answers (describe_peer).
//
// Thread safety: loop only (the socket belongs to the loop).
#pragma once

#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <string>

namespace netsem::server {

struct KeepAlive {
  int idle_s = 0;      // TCP_KEEPIDLE: quiet time before the first probe
  int interval_s = 0;  // TCP_KEEPINTVL: between unanswered probes
  int count = 0;       // TCP_KEEPCNT: unanswered probes that end the connection
};
// Not set: TCP_USER_TIMEOUT. It would also find a peer that vanished while
// the server had data in flight (an ACE `wait|` to a queued client, which
// keepalive does not probe), but it ends sessions on the kernel's view of
// acknowledgements rather than on the session timeout the clients' leases
// count on; with it the soak saw a permit granted twice. Such a peer is found
// by TCP's retransmission timeout (about 15 minutes).

// With a session timeout T > 0, a dead idle peer is found within T: the
// first probe after T/3 of quiet, then 3 probes T/9 apart (at least 1 s
// each). With T = 0 (off): after 60 s of quiet, 6 probes 10 s apart (2
// minutes).
KeepAlive keepalive_for(std::int64_t session_timeout_ms);

// Sets SO_KEEPALIVE and the options above on `socket`. A failure only costs
// the probes (the session works without them), so it is not reported.
void configure_session_socket(asio::ip::tcp::socket& socket, std::int64_t session_timeout_ms);

// ADDRESS:PORT, [ADDRESS]:PORT for IPv6. An IPv4 client of a dual-stack
// socket is an IPv4 client (as the allow list takes it): 10.0.0.7:40112,
// not [::ffff:10.0.0.7]:40112.
std::string describe_peer(const asio::ip::tcp::endpoint& endpoint);

}  // namespace netsem::server
