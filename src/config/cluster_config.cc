// [cluster]: the replicated servers' section of netsemd's configuration
// (ClusterConfig in config.h; docs/replication.md, "Configuration"), and the
// secret file its peer links share. Parsed with the rest of the file: every
// error is reported as "file:line: key: message", and the section is checked
// whole (this server among the servers, ids and addresses unique, the
// heartbeat well below the election timeout) so that a cluster never starts
// on a configuration libraft would refuse later, or worse, accept.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <set>

#include "common/text.h"
#include "config/config_internal.h"
#include "protocol/requests.h"

namespace netsem::server {
namespace config_detail {
namespace {

constexpr auto kMaxId = static_cast<std::int64_t>(protocol::kMaxServerId);
constexpr std::string_view kServerPrefix = "server.";

bool parse_port(std::string_view text) {
  unsigned port = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  return error == std::errc() && end == text.data() + text.size() && port >= 1 && port <= 65535 && text.front() != '0';
}

// "a.b.c.d:port", as raft_uv_tcp takes an address.
Status check_raft_address(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || !parse_port(text.substr(colon + 1))) {
    return invalid(fmt::format("`{}` is not an IPv4 address with its port (a.b.c.d:port)", text));
  }
  std::string_view host = text.substr(0, colon);
  int parts = 0;
  while (!host.empty()) {
    const auto dot = host.find('.');
    const std::string_view part = host.substr(0, dot);
    unsigned byte = 0;
    const auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), byte);
    if (part.empty() || error != std::errc() || end != part.data() + part.size() || byte > 255 ||
        (part.size() > 1 && part.front() == '0')) {
      parts = -1;
      break;
    }
    ++parts;
    host = dot == std::string_view::npos ? std::string_view() : host.substr(dot + 1);
    if (dot != std::string_view::npos && host.empty()) parts = -1;
  }
  if (parts != 4) return invalid(fmt::format("`{}` is not an IPv4 address with its port (a.b.c.d:port)", text));
  if (text.starts_with("0.0.0.0:")) {
    return invalid(
        fmt::format("`{}` is where the other servers connect: an address of this server, not 0.0.0.0", text));
  }
  return Status::ok();
}

// "host:port" or "[v6]:port", where a client reaches a server.
Status check_client_address(std::string_view text) {
  const auto colon = text.rfind(':');
  std::string_view host = colon == std::string_view::npos ? std::string_view() : text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const bool bracketed = text.front() == '[';
  if (colon == std::string_view::npos || host.empty() || !parse_port(text.substr(colon + 1)) ||
      host.find_first_of(" []") != std::string_view::npos || (!bracketed && host.find(':') != std::string_view::npos)) {
    return invalid(fmt::format("`{}` is not an address with its port (a.b.c.d:port, [v6]:port)", text));
  }
  // Numeric only: the servers check a peer link's remote address against
  // it, and connect to it without a resolver (whose thread would touch the
  // event loop's io_context, ASIO_CONCURRENCY_HINT_UNSAFE).
  std::array<unsigned char, sizeof(in6_addr)> bytes{};
  const std::string host_text(host);
  if (::inet_pton(bracketed ? AF_INET6 : AF_INET, host_text.c_str(), bytes.data()) != 1) {
    return invalid(
        fmt::format("`{}`: the client address must be a numeric IP address (a.b.c.d:port, [v6]:port), "
                    "not a host name",
                    text));
  }
  return Status::ok();
}

Result<ClusterMember> parse_member(std::uint64_t id, std::string_view value) {
  const auto space = value.find_first_of(" \t");
  if (space == std::string_view::npos) {
    return invalid("needs two addresses: `<raft a.b.c.d:port> <client host:port>`");
  }
  const std::string_view raft = value.substr(0, space);
  const std::string_view client = trim(value.substr(space + 1));
  if (client.find_first_of(" \t") != std::string_view::npos) {
    return invalid("takes two addresses: `<raft a.b.c.d:port> <client host:port>`");
  }
  if (auto bad = check_raft_address(raft); !bad) return bad;
  if (auto bad = check_client_address(client); !bad) return bad;
  return ClusterMember{.id = id, .raft_address = std::string(raft), .client_address = std::string(client)};
}

// The keys' names, for the message about an unknown one.
std::string cluster_key_names() {
  std::string names;
  for (const auto& key : cluster_keys()) names += (names.empty() ? "" : ", ") + std::string(key.name);
  return names;
}

}  // namespace

void parse_cluster_section(const IniFile& ini, const IniSection& section, ServerConfig& config, ErrorList& errors) {
  ClusterConfig& cluster = config.cluster;
  cluster.enabled = true;
  const auto error = [&](const IniEntry& entry, const Status& status) { errors.add(entry_error(ini, entry, status)); };
  std::set<std::string> raft_addresses;
  std::set<std::string> client_addresses;
  int id_line = 0;
  int heartbeat_line = 0;
  for (const IniEntry& entry : section.entries) {
    if (entry.key == "id") {
      if (auto id = parse_ini_integer(entry.value, 1, kMaxId)) {
        cluster.id = static_cast<std::uint64_t>(*id);
        id_line = entry.line;
      } else {
        error(entry, id.status());
      }
    } else if (entry.key == "data_dir") {
      cluster.data_dir = entry.value;
    } else if (entry.key == "secret_file") {
      cluster.secret_file = entry.value;
      cluster.secret_file_at = ini.location(entry.line);
    } else if (entry.key == "join") {
      if (entry.value == "on" || entry.value == "off") {
        cluster.join = entry.value == "on";
      } else {
        error(entry, invalid("join is on or off"));
      }
    } else if (entry.key == "election_timeout_ms") {
      if (auto ms = parse_ini_integer(entry.value, 100, 60000)) {
        cluster.election_timeout_ms = *ms;
      } else {
        error(entry, ms.status());
      }
    } else if (entry.key == "heartbeat_timeout_ms") {
      if (auto ms = parse_ini_integer(entry.value, 10, 30000)) {
        cluster.heartbeat_timeout_ms = *ms;
        heartbeat_line = entry.line;
      } else {
        error(entry, ms.status());
      }
    } else if (entry.key == "group_commit_us") {
      if (auto us = parse_ini_integer(entry.value, 0, 100000)) {
        cluster.group_commit_us = *us;
      } else {
        error(entry, us.status());
      }
    } else if (entry.key == "raft_bind_address") {
      // The port is the Raft address's: checked as one with a stand-in port.
      if (auto bad = check_raft_address(entry.value + ":1"); !bad && entry.value != "0.0.0.0") {
        error(entry, invalid(fmt::format("`{}` is not an IPv4 address (a.b.c.d; the port is the Raft address's)",
                                         entry.value)));
      } else {
        cluster.raft_bind_address = entry.value;
      }
    } else if (entry.key == "raft_allowed_networks") {
      if (auto list = AllowList::parse(entry.value); !list) {
        error(entry, list.status());
      } else {
        cluster.raft_allowed_networks = std::move(list).value();
        cluster.raft_allowed_networks_text = entry.value;
      }
    } else if (entry.key.starts_with(kServerPrefix)) {
      auto id = parse_ini_integer(std::string_view(entry.key).substr(kServerPrefix.size()), 1, kMaxId);
      if (!id) {
        error(entry, invalid("the id after `server.` must be a whole number 1.." + std::to_string(kMaxId)));
        continue;
      }
      auto member = parse_member(static_cast<std::uint64_t>(*id), entry.value);
      if (!member) {
        error(entry, member.status());
        continue;
      }
      const bool taken = std::any_of(cluster.servers.begin(), cluster.servers.end(),
                                     [&](const ClusterMember& m) { return m.id == member->id; });
      if (taken) {
        error(entry, invalid(fmt::format("server {} is listed twice", member->id)));
      } else if (!raft_addresses.insert(member->raft_address).second) {
        error(entry, invalid(fmt::format("Raft address {} is another server's too", member->raft_address)));
      } else if (!client_addresses.insert(member->client_address).second) {
        error(entry, invalid(fmt::format("client address {} is another server's too", member->client_address)));
      } else {
        cluster.servers.push_back(std::move(*member));
      }
    } else {
      error(entry, invalid(fmt::format("unknown key in [cluster] ({})", cluster_key_names())));
    }
  }
  std::sort(cluster.servers.begin(), cluster.servers.end(),
            [](const ClusterMember& a, const ClusterMember& b) { return a.id < b.id; });
  if (!errors.empty()) return;
  const std::string where = ini.location(section.line);
  if (cluster.id == 0) {
    errors.add(invalid(where + ": [cluster] needs `id = <this server's id>`"));
  } else if (cluster.self() == nullptr) {
    errors.add(invalid(fmt::format("{}: id: this server ({}) has no `server.{} = <raft address> <client address>` line",
                                   ini.location(id_line), cluster.id, cluster.id)));
  }
  if (cluster.heartbeat_timeout_ms * 2 > cluster.election_timeout_ms) {
    errors.add(
        invalid(fmt::format("{}: heartbeat_timeout_ms ({}) must be at most half of election_timeout_ms ({}): "
                            "a leader must be heard twice per election timeout",
                            heartbeat_line != 0 ? ini.location(heartbeat_line) : where, cluster.heartbeat_timeout_ms,
                            cluster.election_timeout_ms)));
  }
  if (config.session_timeout_ms == 0) {
    // Nothing would end the sessions of a server that died (or was killed):
    // their permits would stay held for ever. docs/replication.md.
    errors.add(invalid(where +
                       ": [cluster] needs a session timeout ([server] session_timeout_ms above 0): the sessions of a "
                       "server that dies are ended by the log only when their timeout passes"));
  }
  if (cluster.servers.size() > 1 && cluster.secret_file.empty()) {
    errors.add(invalid(where + ": [cluster] of several servers needs `secret_file`: the peer links' shared secret"));
  }
}

}  // namespace config_detail

const std::vector<ClusterKeySpec>& cluster_keys() {
  static const std::vector<ClusterKeySpec> keys = {
      {.name = "id", .default_text = "(required)", .help = "this server's id, 1..2^53: one of the `server.<id>` lines"},
      {.name = "server.<id>",
       .default_text = "(one per server)",
       .help = "`<raft address> <client address>`: where its Raft listens and its peers reach it (`a.b.c.d:port`, "
               "IPv4, as libraft takes it), and where clients and followers' peer links reach its netsemd "
               "(`a.b.c.d:port`, `[v6]:port`: numeric, not a host name, since peer links are checked against it and "
               "connect without a resolver). Ids and addresses are unique. This server's own line must name where it "
               "listens: its client address's port is `bind_port`, and its host is `bind_address` unless that is "
               "`0.0.0.0` or `::` (netsemd refuses to start otherwise, `--check-config` too). The first "
               "configuration: a pristine data directory bootstraps with it; later changes are made at run time"},
      {.name = "data_dir", .default_text = "`<data_dir>/raft`", .help = "libraft's log, metadata and snapshots"},
      {.name = "secret_file",
       .default_text = "(required with more than one server)",
       .help = "the peer links' shared secret (proven by HMAC-SHA256, never sent): one line of 16 to 256 visible "
               "ASCII characters (`openssl rand -hex 32`), in a file only its owner may read or write (mode 600; "
               "refused otherwise, as a tokens_file)"},
      {.name = "join",
       .default_text = "`off`",
       .help = "`on`: a server to be added at run time. Its pristine data directory is not bootstrapped with the "
               "`server.<id>` lines; it waits, serving nothing, until the leader adds it (`netsem cluster add`, "
               "docs/replication.md \"Adding and removing servers\"). Its file lists itself and the servers it knows "
               "(at least one to reach the leader through); the others need no line for it. Ignored once the "
               "directory holds a log"},
      {.name = "election_timeout_ms",
       .default_text = "`500`",
       .help = "100..60000: a follower that hears no leader for a random time in [T, 2T) stands for election; a "
               "leader that hears no majority for T steps down"},
      {.name = "heartbeat_timeout_ms",
       .default_text = "`50`",
       .help = "10..30000, at most half of `election_timeout_ms`: the leader's heartbeat period"},
      {.name = "group_commit_us",
       .default_text = "`300`",
       .help = "0..100000 microseconds: group commit. After a batch of commands commits, the leader waits, at most "
               "this long, until as many commands are queued as that batch held before it proposes the next batch: "
               "the answers to a batch bring the clients' next commands (a holder's RELEASE after its grant), and "
               "without the wait they miss the batch proposed the moment the last one committed. A batch that has "
               "its count goes at once, so a lone client waits for nothing (unless one of the leader's own commands "
               "shared its batch); 0 proposes at once (docs/replication.md, \"Batching\"; docs/benchmarks.md)"},
      {.name = "raft_bind_address",
       .default_text = "(the Raft address's host)",
       .help = "an IPv4 address (`a.b.c.d`, or `0.0.0.0` for every interface) this server's Raft listens on, on its "
               "Raft address's port, when its peers reach it at another address: behind NAT or a container's port "
               "mapping, or a test's partition proxy (tests/cluster/cluster_failure_test.cc)"},
      {.name = "raft_allowed_networks",
       .default_text = "(the servers' hosts)",
       .help = "networks, in the form of allowed_networks, whose connections this server's Raft port accepts besides "
               "those from the host of a server it knows (its configuration's, its `server.<id>` lines'): for a "
               "server whose connections leave from another address than its Raft address's host (NAT, a "
               "container: a server binds its connections to its Raft address's host when that is an address of "
               "its machine, else warns once). A connection from these networks may claim any server's id in its "
               "handshake; one from a server's host only that server's. The Raft port closes any other connection "
               "(libraft's transport authenticates nobody; docs/security.md \"A cluster's ports\")"},
  };
  return keys;
}

Status check_member_addresses(std::string_view raft_address, std::string_view client_address) {
  if (auto bad = config_detail::check_raft_address(raft_address); !bad) {
    return Status(StatusCode::kInvalidArgument, "bad Raft address: " + bad.message());
  }
  if (auto bad = config_detail::check_client_address(client_address); !bad) {
    return Status(StatusCode::kInvalidArgument, "bad client address: " + bad.message());
  }
  return Status::ok();
}

Status check_cluster_listening(const ServerConfig& config) {
  const ClusterMember* self = config.cluster.self();
  if (!config.cluster.enabled || self == nullptr) return Status::ok();
  const std::string_view named = self->client_address;
  const auto colon = named.rfind(':');
  std::string_view host = named.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string_view port = named.substr(colon + 1);
  const bool wildcard = config.bind_address == "0.0.0.0" || config.bind_address == "::";
  if (port != std::to_string(config.bind_port) || (!wildcard && host != config.bind_address)) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("[cluster] server.{} names this server's client address {}, but it listens on {}:{} "
                              "(bind_address and bind_port, or --bind and --port): the other servers and the "
                              "clients would look for it where it does not listen. Make them the same (a "
                              "bind_address of 0.0.0.0 or :: takes any address, on the same port)",
                              self->id, named, config.bind_address, config.bind_port));
  }
  return Status::ok();
}

Status load_cluster_secret(ServerConfig& config) {
  std::string where;
  auto text = config_detail::read_keyed_private_file(config.cluster.secret_file_at, "secret_file",
                                                     config.cluster.secret_file, where);
  if (!text) return text.status();
  const std::string_view secret = trim(*text);
  const bool visible = std::all_of(secret.begin(), secret.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  if (secret.size() < 16 || secret.size() > 256 || !visible) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: the cluster secret must be one line of 16 to 256 visible ASCII characters "
                              "(e.g. `openssl rand -hex 32`)",
                              where));
  }
  config.cluster.secret = std::string(secret);
  return Status::ok();
}

}  // namespace netsem::server
