// The configuration of netsemd: the ServerConfig it runs with, the one table
// of [server] options (server_options()) that drives the parser, the --help
// text, docs/configuration.md and etc/netsem.ini (tests/config/config_test.cc
// checks that all four agree), and the loader for both file formats:
//   - netsem's own: [server] options, [semaphores] `name = limit` lines, and
//     a [client] section left to the client library;
//   - ACE's, read unchanged: any file with a [service_network_semaphore]
//     section (see parse_server_config).
// The syntax is configparser's (common/ini.h). Every problem is reported as
// "file:line: message"; an error stops the start (or the reload), a warning
// is kept in ServerConfig::warnings for the caller to log once.
//
// Thread safety: pure functions over values; server_options() is built once
// and read-only afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "auth/auth_tables.h"
#include "common/log.h"
#include "config/allow_list.h"
#include "journal/journal.h"
#include "netsem/status.h"

namespace netsem::server {

// One server of a replicated cluster: a `server.<id>` line of [cluster].
struct ClusterMember {
  std::uint64_t id = 0;        // 1 .. 2^53, unique in the cluster
  std::string raft_address;    // "a.b.c.d:port" (IPv4, as libraft takes it): its Raft listener
  std::string client_address;  // "host:port": its netsemd, for clients and for followers' peer links
  friend bool operator==(const ClusterMember&, const ClusterMember&) = default;
};

// [cluster] (docs/replication.md, "Configuration"). Without the section
// netsemd is the single server with its journal.
struct ClusterConfig {
  bool enabled = false;  // the file has a [cluster] section
  std::uint64_t id = 0;  // this server: one of `servers`
  // libraft's log, metadata and snapshots; "" is `<data_dir>/raft`.
  std::filesystem::path data_dir;
  // The peer links' shared secret (docs/replication.md, "Forwarding to the
  // leader"): a file only its owner may read, required with more than one
  // server; load_server_config reads it into `secret`.
  std::filesystem::path secret_file;
  // Where `secret_file` is set ("file:line", ini.location), for the errors
  // of reading it.
  std::string secret_file_at;
  std::string secret;
  // The first configuration, in id order: a pristine data directory
  // bootstraps with it; later changes are made at run time.
  std::vector<ClusterMember> servers;
  // `join = on`: a pristine data directory is not bootstrapped with
  // `servers`; the server waits for the leader to add it (CLUSTER ADD,
  // `netsem cluster add`). A directory with a log ignores it.
  bool join = false;
  std::int64_t election_timeout_ms = 500;
  std::int64_t heartbeat_timeout_ms = 50;
  // Group commit: how long the leader waits, at most, after a batch commits
  // for the commands its answers bring before it proposes the next batch
  // (raft::RaftOptions::group_commit); 0 proposes at once.
  std::int64_t group_commit_us = 300;
  // When set, the IPv4 address ("a.b.c.d") this server's Raft listens on,
  // on its Raft address's port, instead of the Raft address's own host:
  // for a server its peers reach through a translated address (NAT, a
  // container, a test's partition proxy) or that listens on 0.0.0.0.
  std::string raft_bind_address;
  // Sources the Raft port accepts besides the hosts of the servers this
  // server knows (raft::RaftOptions::allow_peer): a member whose connections
  // leave from another address than its Raft address's (multi-homed, NAT).
  // Empty: none (the default).
  AllowList raft_allowed_networks;
  std::string raft_allowed_networks_text;  // as written, for logs
  // Every field: a reload that changes any of them says so (they take
  // effect after a restart; members change at run time, not by reload).
  friend bool operator==(const ClusterConfig&, const ClusterConfig&) = default;

  // This server's line, or nullptr when the section is absent.
  const ClusterMember* self() const {
    for (const ClusterMember& member : servers) {
      if (member.id == id) return &member;
    }
    return nullptr;
  }
};

struct ServerConfig {
  std::string bind_address = "127.0.0.1";
  std::uint16_t bind_port = 53559;  // 0: the OS picks a free port (tests)
  AllowList allowed_networks = AllowList::loopback();
  std::string allowed_networks_text = "127.0.0.0/8, ::1";  // as written, for logs
  // Peers with the admin right (KICK) while the server has no tokens.
  AllowList admin_networks = AllowList::loopback();
  std::string admin_networks_text = "127.0.0.0/8, ::1";  // as written, for logs
  // Authentication (docs/security.md): [tokens] and [tls_subjects] of this
  // file and of tokens_file ("" none; read by load_server_config), ACE's
  // networks and rights.
  auth::AuthTables auth;
  std::filesystem::path tokens_file;
  // Where `tokens_file` is set ("file:line", ini.location), for the errors
  // of reading it.
  std::string tokens_file_at;
  AllowList ace_networks = AllowList::parse("0.0.0.0/0, ::/0").value();
  std::string ace_networks_text = "0.0.0.0/0, ::/0";
  auth::Rights ace_rights = auth::parse_rights("acquire").value();
  std::string ace_rights_text = "acquire";
  // Relative paths are relative to netsemd's working directory.
  std::filesystem::path stats_dir = "var/netsem";
  std::filesystem::path data_dir = "var/netsem";
  FsyncPolicy fsync = FsyncPolicy::kEverySec;
  std::int64_t status_interval_ms = 1000;
  std::int64_t session_timeout_ms = 15000;  // 0 = off
  // After a restart, grant nothing for one session timeout when the previous
  // run may have left holders working under their leases.
  bool restart_lease_wait = true;
  std::size_t max_connections = 10000;
  std::size_t max_pending_per_session = 1024;
  std::size_t max_semaphores = 1000000;
  std::uint64_t max_output_bytes = 64 << 20;  // all sessions' unwritten answers
  std::size_t metrics_max_names = 1000;       // semaphores with series of their own in GET /metrics
  std::string log_level = "info";             // one of kLogLevels (common/log.h)
  LogFormat log_format = LogFormat::kText;
  // A grant after waiting in a queue this long is logged; 0 = never.
  std::int64_t slow_wait_ms = 5000;
  // The HTTP listener (docs/operations.md): health, JSON API, metrics, web page.
  bool http_enabled = true;
  std::string http_address = "127.0.0.1";
  std::uint16_t http_port = 53560;  // 0: the OS picks a free port (tests)
  // Host names (lower case) the HTTP listener answers to besides IP
  // literals; "*" answers to any (docs/operations.md, "Host names").
  std::vector<std::string> http_hosts{"localhost"};
  std::string http_hosts_text = "localhost";
  // TLS (docs/security.md, "TLS"): a second listener on bind_address and
  // tls_port, on when tls_cert is set (tls_key is then required). The
  // files are read again by SIGHUP.
  std::uint16_t tls_port = 53561;       // 0: the OS picks a free port (tests)
  std::filesystem::path tls_cert;       // PEM certificate chain; empty: TLS off
  std::filesystem::path tls_key;        // PEM private key of tls_cert
  std::filesystem::path tls_client_ca;  // PEM CAs; set: a client certificate is required and verified
  std::int64_t tls_handshake_timeout_ms = 5000;
  // The defined semaphores: [semaphores] (or ACE's semaphore_<name> keys) in
  // file order, names decoded and valid, limits 1..2^31-1, no name twice.
  std::vector<std::pair<std::string, std::int64_t>> semaphores;
  ClusterConfig cluster;              // [cluster]: replicated servers
  bool ace_format = false;            // read from an ACE [service_network_semaphore] file
  std::vector<std::string> warnings;  // "file:line: ...", to log once at start
};

// One option of [server]. The text fields are what --help, the docs and the
// example configuration show; apply and show are what the parser and the
// reload check use.
struct OptionSpec {
  std::string_view name;
  std::string_view type;          // "address", "integer", "networks", "path", "choice"
  std::string_view default_text;  // the default, exactly as written in a file
  // Integers: "min..max", optionally followed by a note; choices: the
  // accepted words separated by ", "; otherwise a short description.
  std::string_view bounds;
  std::string_view help;  // one paragraph, no `|` (it goes into a Markdown table)
  // Taken over by a reload (SIGHUP); any other option needs a restart.
  bool reloadable = false;
  // Integers only: the accepted range, which `bounds` starts with.
  std::int64_t min = 0;
  std::int64_t max = 0;
  // Parses `value` (trimmed, as read) into `config`. kInvalidArgument with a
  // message naming the value and, for a range, its bounds; the caller adds
  // "file:line: name: " in front. `config` is unchanged on error.
  Status (*apply)(const OptionSpec& spec, std::string_view value, ServerConfig& config) = nullptr;
  // The option's value in `config`, written as apply accepts it:
  // show(default_server_config()) == default_text.
  std::string (*show)(const ServerConfig& config) = nullptr;
};

// Every option of [server], in the order the docs and --help list them.
const std::vector<OptionSpec>& server_options();
// The option named exactly `name`, or nullptr. For command-line overrides
// (--bind, --port), which apply through the same code as the file.
const OptionSpec* find_server_option(std::string_view name);

// One key of [cluster] (parse_cluster_section reads each), for --help and
// docs/configuration.md's [cluster] table, whose rows config_test compares
// with these.
struct ClusterKeySpec {
  std::string_view name;  // "server.<id>" stands for every server line
  // As the table's default column writes it: `value` (what ClusterConfig
  // holds without the key), or a note in parentheses.
  std::string_view default_text;
  std::string_view help;  // the table's meaning column: no `|`
};
// Every key of [cluster], in the order the docs and --help list them.
const std::vector<ClusterKeySpec>& cluster_keys();

// The configuration netsemd runs with when no file is given: every option at
// its default, no defined semaphores, no warnings.
ServerConfig default_server_config();

// Reads and parses `file` as parse_server_config, then the tokens_file it
// names (relative to the working directory): its [tokens] and
// [tls_subjects] are added to the file's. kIoError "file: cannot read:
// <reason>" when a file cannot be read; kDenied when the tokens_file is
// readable or writable by group or others; kInvalidArgument for its lines,
// as for the file's, and for a token name or subject listed twice. The
// tokens_file's read errors begin as load_cluster_secret's do: "n.ini:5:
// tokens_file: t (relative to the working directory /x): cannot read: ...".
Result<ServerConfig> load_server_config(const std::filesystem::path& file);
// Reads config.cluster.secret_file into config.cluster.secret (what
// load_server_config does after parsing, when it is set): kDenied when
// group or others may read or write it, kInvalidArgument unless it holds
// one line of 16-256 visible ASCII characters, kIoError when unreadable;
// each message begins with the key, its file and line and the path (a
// relative one with the working directory it was looked for in):
// "n.ini:4: secret_file: s (relative to the working directory /x): cannot
// read: No such file or directory".
Status load_cluster_secret(ServerConfig& config);
// The two addresses of a server added at run time (CLUSTER ADD), checked
// as a `server.<id>` line's are: a Raft address a.b.c.d:port (not
// 0.0.0.0), a numeric client address; kInvalidArgument saying which.
Status check_member_addresses(std::string_view raft_address, std::string_view client_address);
// With [cluster]: whether this server listens where its own `server.<id>`
// line tells the others and the clients to find it (bind_address and
// bind_port, after the command line's --bind and --port): the port must be
// the line's, and the address the line's or a wildcard (0.0.0.0, ::).
// Otherwise the peers' links and LEADER's answers go to a port nobody
// listens on, in silence (found by an audit): kInvalidArgument naming both.
Status check_cluster_listening(const ServerConfig& config);
// Adds the [tokens] and [tls_subjects] of config.tokens_file to config.auth
// (what load_server_config does after parsing); the errors as there.
Status load_tokens_file(ServerConfig& config);

// Parses a whole configuration file; `file_name` only labels messages.
// Returns kInvalidArgument with every error found, one "file:line: message"
// a line (at most 50, then "... and N more errors"; a syntax error ends the
// reading, the others do not):
//   syntax (see common/ini.h); an unknown section; in [server] an unknown
//   option or a bad value; in [semaphores] a bad name (percent-decoded, then
//   checked as on the wire), a limit outside 1..2147483647, a name defined
//   twice (also when two spellings decode to the same name), or more names
//   than max_semaphores; in [tokens] and [tls_subjects] a line
//   auth/auth_tables.h refuses, or a subject listed twice; in [cluster] an
//   unknown key or a bad value (parse_cluster_section). [client] is not
//   looked at.
// An ACE file (one with a [service_network_semaphore] section) is read as
// ACE does: keys folded to lower case (a warning when that changes a
// semaphore's name), a duplicate key after folding is an error, keys of a
// [DEFAULT] section are inherited, integers in Python's int() syntax;
// bind_address, bind_port, stats_dir (data_dir follows it), allowed_ipv4
// (where `0.0.0.0` means any IPv4 address, with a warning) and
// semaphore_<name> = <limit> (the name taken literally, not percent-decoded)
// are used; remote_*, module, class, description, enabled and instance_type
// are ignored, unknown keys too with a warning, and every other section with
// a warning for [server] and [semaphores]. Other options keep their defaults.
Result<ServerConfig> parse_server_config(std::string_view text, std::string_view file_name);

// The names of the options that differ between `running` and `loaded` and
// that a reload cannot take over (reloadable == false), in table order: what
// the server warns about on SIGHUP.
std::vector<std::string_view> options_needing_restart(const ServerConfig& running, const ServerConfig& loaded);

// The text `netsemd --help` prints after its flags: every [server] option with
// its type, bounds, default and help, a note on [semaphores], every
// [cluster] key with its default and help, then a note on ACE files. Lines
// are at most 80 columns.
std::string describe_options();

}  // namespace netsem::server
