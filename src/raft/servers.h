// Servers, between raft_node.h's types and libraft 0.15's: roles and states
// translated, a configuration entry decoded, and what RaftNode checks and
// says of servers (addresses, a list for a log line). servers.cc also
// defines raft_node.h's server_role_name, parse_server_role, role_name and
// parse_servers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"
#include "raft/raft_node.h"

struct raft_buffer;

namespace netsem::raft {

// OK when `address` is host:port with a port in 1..65535.
Status check_address(std::string_view address);

// ServerRole as libraft's RAFT_VOTER, RAFT_STANDBY or RAFT_SPARE, and back
// (anything else: spare).
int to_raft_role(ServerRole role);
ServerRole from_raft_role(int role);
// libraft's RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER; anything else is
// unavailable.
Role from_raft_state(int state);

// The IPv4 host of "a.b.c.d:port", in host order; nullopt for anything else.
std::optional<std::uint32_t> ipv4_host_of(std::string_view address);

// A configuration entry's servers (libraft's encoding: servers.cc); nullopt
// when it does not decode.
std::optional<std::vector<ServerInfo>> decode_configuration(const raft_buffer& buf);

// "1@a.b.c.d:p (voter), 2@... (standby)": for log lines.
std::string describe_servers(const std::vector<ServerInfo>& servers);

}  // namespace netsem::raft
