// Servers (servers.h; raft_node.h's server_role_name, parse_server_role,
// role_name and parse_servers): their roles' and states' names, the
// `id@host:port` lists, and their translation to and from libraft 0.15's
// (roles, states, a configuration entry's encoding).
#include "raft/servers.h"

#include <arpa/inet.h>
#include <netinet/in.h>

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
}

#include <charconv>
#include <cstring>
#include <string>
#include <utility>

namespace netsem::raft {

std::string_view server_role_name(ServerRole role) {
  switch (role) {
    case ServerRole::kVoter:
      return "voter";
    case ServerRole::kStandby:
      return "standby";
    case ServerRole::kSpare:
      return "spare";
  }
  return "unknown";
}

Result<ServerRole> parse_server_role(std::string_view name) {
  for (ServerRole role : {ServerRole::kVoter, ServerRole::kStandby, ServerRole::kSpare}) {
    if (name == server_role_name(role)) return role;
  }
  return Status(StatusCode::kInvalidArgument,
                "unknown role '" + std::string(name) + "' (expected voter, standby or spare)");
}

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kUnavailable:
      return "unavailable";
    case Role::kFollower:
      return "follower";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown";
}

Status check_address(std::string_view address) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status(StatusCode::kInvalidArgument, "address '" + std::string(address) + "' is not host:port");
  }
  unsigned port = 0;
  const std::string_view digits = address.substr(colon + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc() || end != digits.data() + digits.size() || port == 0 || port > 65535) {
    return Status(StatusCode::kInvalidArgument, "address '" + std::string(address) + "' has no valid port");
  }
  return Status::ok();
}

Result<std::vector<ServerInfo>> parse_servers(std::string_view text) {
  std::vector<ServerInfo> servers;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const std::size_t at = item.find('@');
    ServerInfo server;
    if (at == std::string_view::npos) {
      return Status(StatusCode::kInvalidArgument, "server '" + std::string(item) + "' is not id@host:port");
    }
    const auto [end, ec] = std::from_chars(item.data(), item.data() + at, server.id);
    if (ec != std::errc() || end != item.data() + at || server.id == 0) {
      return Status(StatusCode::kInvalidArgument, "server '" + std::string(item) + "' has no valid id (> 0)");
    }
    server.address = std::string(item.substr(at + 1));
    if (Status s = check_address(server.address); !s) return s;
    for (const ServerInfo& other : servers) {
      if (other.id == server.id) {
        return Status(StatusCode::kInvalidArgument, "server id " + std::to_string(server.id) + " given twice");
      }
      if (other.address == server.address) {
        return Status(StatusCode::kInvalidArgument, "address " + server.address + " given twice");
      }
    }
    servers.push_back(std::move(server));
  }
  if (servers.empty()) return Status(StatusCode::kInvalidArgument, "no servers given");
  return servers;
}

int to_raft_role(ServerRole role) {
  switch (role) {
    case ServerRole::kVoter:
      return RAFT_VOTER;
    case ServerRole::kStandby:
      return RAFT_STANDBY;
    case ServerRole::kSpare:
      return RAFT_SPARE;
  }
  return RAFT_SPARE;
}

ServerRole from_raft_role(int role) {
  return role == RAFT_VOTER ? ServerRole::kVoter : role == RAFT_STANDBY ? ServerRole::kStandby : ServerRole::kSpare;
}

Role from_raft_state(int state) {
  switch (state) {
    case RAFT_FOLLOWER:
      return Role::kFollower;
    case RAFT_CANDIDATE:
      return Role::kCandidate;
    case RAFT_LEADER:
      return Role::kLeader;
    default:
      return Role::kUnavailable;
  }
}

// The IPv4 host of "a.b.c.d:port", in host order; nullopt for anything else.
std::optional<std::uint32_t> ipv4_host_of(std::string_view address) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  in_addr in{};
  if (::inet_pton(AF_INET, std::string(address.substr(0, colon)).c_str(), &in) != 1) return std::nullopt;
  return ntohl(in.s_addr);
}

// A configuration entry's servers (libraft 0.15's configurationEncode: a
// format byte 1, the count as u64, then per server its id as u64, its
// address NUL-terminated and its role as a byte; little-endian, unaligned);
// nullopt when it does not decode.
std::optional<std::vector<ServerInfo>> decode_configuration(const raft_buffer& buf) {
  const auto* bytes = static_cast<const unsigned char*>(buf.base);
  std::size_t at = 0;
  const auto u64 = [&](std::uint64_t& value) {
    if (buf.len - at < 8) return false;
    value = 0;
    for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[at + i];
    at += 8;
    return true;
  };
  if (buf.len < 1 || bytes[0] != 1) return std::nullopt;
  at = 1;
  std::uint64_t n = 0;
  if (!u64(n) || n > buf.len) return std::nullopt;
  std::vector<ServerInfo> servers;
  for (std::uint64_t i = 0; i < n; ++i) {
    ServerInfo server;
    if (!u64(server.id)) return std::nullopt;
    const auto* end = static_cast<const unsigned char*>(std::memchr(bytes + at, 0, buf.len - at));
    if (end == nullptr || end + 1 >= bytes + buf.len) return std::nullopt;
    server.address.assign(reinterpret_cast<const char*>(bytes + at), end - (bytes + at));
    at = static_cast<std::size_t>(end - bytes) + 1;
    server.role = from_raft_role(bytes[at++]);
    servers.push_back(std::move(server));
  }
  return servers;
}

std::string describe_servers(const std::vector<ServerInfo>& servers) {
  std::string text;
  for (const ServerInfo& server : servers) {
    text += (text.empty() ? "" : ", ") + std::to_string(server.id) + "@" + server.address + " (" +
            std::string(server_role_name(server.role)) + ")";
  }
  return text;
}

}  // namespace netsem::raft
