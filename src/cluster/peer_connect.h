// What the peer link's connections share (private to src/cluster): the
// follower's link (peer_link_client.cc) and a line alone on a connection of
// its own (peer_line_exchange.cc) both connect from this server's own
// client host to another server's client address. A constant that both use
// goes here; what only one uses stays in its file.
#pragma once

#include <chrono>

namespace netsem::cluster {

// How long a link may take to connect before it counts as failed.
inline constexpr std::chrono::milliseconds kConnectTimeout{1000};

}  // namespace netsem::cluster
