// Admin probes: what a connection over max_connections from an address in
// admin_networks may still ask (docs/operations.md, "When the sessions are
// full"), so that an operator sees the server, and its cluster, in the very
// incident that filled it: `netsem cluster status`'s handshake and its
// CLUSTER STATUS, and STATS. Proposed for 1.2 (docs/protocol.md, "Admin
// probes"): only a first line no 1.0 or 1.1 client sends first (LEASE or
// CLUSTER STATUS) opens a probe, so every 1.0 and 1.1 peer is refused
// exactly as protocol-v1's Limits say. Everything else is refused as
// before, with the limit line. Socket-free: the accept path
// (Server::on_accept) judges a probe's first line by opens_admin_probe, its
// session (Session::make_admin_probe) every line by classify_probe_line.
//
// Pure functions and constants: safe from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace netsem::server {

// How many admin probes may be sessions at once, beyond max_connections
// (PostgreSQL keeps three connections for superusers the same way). Their
// descriptors are kept out of the sessions' (plan_connections).
inline constexpr std::size_t kAdminProbes = 3;
// The whole life of an admin probe's session: past it, the probe is told
// the limit line and closed, whatever it still waits for.
inline constexpr std::chrono::milliseconds kAdminProbeTime{2000};

// What a line of an admin probe is.
enum class ProbeLine : std::uint8_t {
  // LEASE, AUTH, OPTION, PING, QUIT (and an empty line): the handshake of a
  // sessionless client (`netsem cluster`): answered, the probe reads on.
  kHandshake,
  // CLUSTER STATUS or STATS: answered, then the probe ends.
  kAsk,
  // Anything else (HELLO, ACQUIRE, CLUSTER ADD, a line that does not
  // parse): told the limit line, and the probe ends.
  kRefused,
};

// `line`: one request line, without its "\n" (a "\r" before it is dropped).
ProbeLine classify_probe_line(std::string_view line);

// Whether a connection's first line opens an admin probe: LEASE (the
// sessionless client's first) or CLUSTER STATUS, both proposed for 1.2, so
// never a 1.0 or 1.1 client's first line. PING, AUTH, OPTION, QUIT and
// STATS (all 1.0 or 1.1) are probe lines only after it. `line` as above.
bool opens_admin_probe(std::string_view line);

}  // namespace netsem::server
