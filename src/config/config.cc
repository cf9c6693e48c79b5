// The [server] option table and netsem's own configuration format (see
// config.h); ACE's format is read by ace_config.cc.
// API: parse_server_config reads the INI text once leniently (ACE's reader
// allows a key without a value), then hands it to parse_ace_file when it has
// [service_network_semaphore], or, once missing_values has refused valueless
// keys as a strict reading would, to parse_netsem_file. It reads past bad
// lines (IniOptions::keep_going) and hands their errors on in an ErrorList,
// so that one reading reports every error of the file. Both end in
// check_semaphore_count, and both are linear in the size of the file (a hash
// lookup for every duplicate check), so a million defined names load in
// seconds. Option values go through the table's apply functions in both
// formats, so a value means the same everywhere; the helpers both loaders
// share are declared in config_internal.h.
#include "config/config.h"
#include "journal/file_journal.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <unordered_map>

#include <arpa/inet.h>
#include <fmt/format.h>

#include "common/ini.h"
#include "common/private_file.h"
#include "common/text.h"
#include "config/config_internal.h"
#include "protocol/names.h"

namespace netsem::server {

using config_detail::apply_entry;
using config_detail::check_semaphore_count;
using config_detail::entry_error;
using config_detail::ErrorList;
using config_detail::invalid;
using config_detail::kAceSection;
using config_detail::kClusterSection;
using config_detail::kMaxLimit;
using config_detail::kNameRules;
using config_detail::kSemaphoresSection;
using config_detail::kServerSection;
using config_detail::lower;
using config_detail::parse_ace_file;
using config_detail::parse_cluster_section;

namespace {

constexpr std::string_view kClientSection = "client";
constexpr std::string_view kTokensSection = "tokens";
constexpr std::string_view kSubjectsSection = "tls_subjects";

template <auto Member>
Status apply_integer(const OptionSpec& spec, std::string_view value, ServerConfig& config) {
  auto n = parse_ini_integer(value, spec.min, spec.max);
  if (!n) return n.status();
  using Field = std::remove_reference_t<decltype(config.*Member)>;
  config.*Member = static_cast<Field>(*n);
  return Status::ok();
}

template <auto Member>
std::string show_integer(const ServerConfig& config) {
  return std::to_string(config.*Member);
}

template <auto Member>
Status apply_path(const OptionSpec&, std::string_view value, ServerConfig& config) {
  if (value.empty()) return invalid("a directory is required");
  if (std::any_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    return invalid(fmt::format("`{}` contains a control character", value));
  }
  config.*Member = std::filesystem::path(value);
  return Status::ok();
}

template <auto Member>
std::string show_path(const ServerConfig& config) {
  return (config.*Member).string();
}

// The word of `value` among the ", "-separated choices of spec.bounds, or an
// error listing them.
Result<std::string_view> pick_choice(const OptionSpec& spec, std::string_view value) {
  std::string_view choices = spec.bounds;
  while (!choices.empty()) {
    const auto comma = choices.find(", ");
    const auto word = choices.substr(0, comma);
    if (word == value) return word;
    choices = comma == std::string_view::npos ? std::string_view() : choices.substr(comma + 2);
  }
  return invalid(fmt::format("`{}` is not one of {}", value, spec.bounds));
}

Status apply_fsync(const OptionSpec& spec, std::string_view value, ServerConfig& config) {
  auto word = pick_choice(spec, value);
  if (!word) return word.status();
  auto policy = parse_fsync_policy(*word);
  if (!policy) return policy.status();
  config.fsync = *policy;
  return Status::ok();
}

std::string show_fsync(const ServerConfig& config) {
  return std::string(fsync_policy_name(config.fsync));
}

Status apply_restart_lease_wait(const OptionSpec& spec, std::string_view value, ServerConfig& config) {
  auto word = pick_choice(spec, value);
  if (!word) return word.status();
  config.restart_lease_wait = *word == "on";
  return Status::ok();
}

std::string show_restart_lease_wait(const ServerConfig& config) {
  return config.restart_lease_wait ? "on" : "off";
}

Status apply_log_level(const OptionSpec& spec, std::string_view value, ServerConfig& config) {
  auto word = pick_choice(spec, value);
  if (!word) return word.status();
  config.log_level = std::string(*word);
  return Status::ok();
}

Status apply_log_format(const OptionSpec& spec, std::string_view value, ServerConfig& config) {
  auto word = pick_choice(spec, value);
  if (!word) return word.status();
  auto format = parse_log_format(*word);
  if (!format) return format.status();
  config.log_format = *format;
  return Status::ok();
}

Status apply_bind_address(const OptionSpec&, std::string_view value, ServerConfig& config) {
  const std::string text(value);
  unsigned char buffer[16];
  if (inet_pton(AF_INET, text.c_str(), buffer) != 1 && inet_pton(AF_INET6, text.c_str(), buffer) != 1) {
    return invalid(fmt::format("`{}` is not an IPv4 or IPv6 address (host names are not accepted)", value));
  }
  config.bind_address = text;
  return Status::ok();
}

Status apply_http_enabled(const OptionSpec& spec, std::string_view value, ServerConfig& config) {
  auto word = pick_choice(spec, value);
  if (!word) return word.status();
  config.http_enabled = *word == "on";
  return Status::ok();
}

Status apply_http_address(const OptionSpec& spec, std::string_view value, ServerConfig& config) {
  // The same rules as bind_address, into http_address.
  ServerConfig parsed;
  if (auto status = apply_bind_address(spec, value, parsed); !status) return status;
  config.http_address = std::move(parsed.bind_address);
  return Status::ok();
}

// A file of the TLS options: any path, or empty for none.
template <auto Member>
Status apply_tls_file(const OptionSpec&, std::string_view value, ServerConfig& config) {
  if (std::any_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    return invalid(fmt::format("`{}` contains a control character", value));
  }
  config.*Member = std::filesystem::path(value);
  return Status::ok();
}

Status apply_http_hosts(const OptionSpec& spec, std::string_view value, ServerConfig& config) {
  std::vector<std::string> hosts;
  for (std::string_view rest = value; !rest.empty();) {
    const auto comma = rest.find(',');
    std::string_view item = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) continue;
    const bool name_chars = std::all_of(item.begin(), item.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
    });
    if (item != "*" && !name_chars) {
      return invalid(
          fmt::format("{}: `{}` is not a host name (letters, digits, '-', '.', '_'; or *)", spec.name, item));
    }
    std::string lower(item);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    hosts.push_back(std::move(lower));
  }
  config.http_hosts = std::move(hosts);
  config.http_hosts_text = std::string(value);
  return Status::ok();
}

Status apply_allowed_networks(const OptionSpec&, std::string_view value, ServerConfig& config) {
  auto list = AllowList::parse(value);
  if (!list) return list.status();
  config.allowed_networks = std::move(list).value();
  config.allowed_networks_text = std::string(value);
  return Status::ok();
}

Status apply_admin_networks(const OptionSpec&, std::string_view value, ServerConfig& config) {
  auto list = AllowList::parse(value);
  if (!list) return list.status();
  config.admin_networks = std::move(list).value();
  config.admin_networks_text = std::string(value);
  return Status::ok();
}

// --- authentication (docs/security.md) ---

Status apply_tokens_file(const OptionSpec&, std::string_view value, ServerConfig& config) {
  if (std::any_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    return invalid(fmt::format("`{}` contains a control character", value));
  }
  config.tokens_file = std::filesystem::path(value);
  return Status::ok();
}

Status apply_ace_networks(const OptionSpec&, std::string_view value, ServerConfig& config) {
  auto list = AllowList::parse(value);
  if (!list) return list.status();
  config.ace_networks = std::move(list).value();
  config.ace_networks_text = std::string(value);
  return Status::ok();
}

Status apply_ace_rights(const OptionSpec&, std::string_view value, ServerConfig& config) {
  auto rights = auth::parse_rights(value);
  if (!rights) return rights.status();
  config.ace_rights = std::move(rights).value();
  config.ace_rights_text = std::string(value);
  return Status::ok();
}

std::vector<OptionSpec> make_server_options() {
  using C = ServerConfig;
  return {
      {.name = "bind_address",
       .type = "address",
       .default_text = "127.0.0.1",
       .bounds = "IPv4 or IPv6, no host name",
       .help = "Address to listen on; 0.0.0.0 or :: for every interface.",
       .apply = apply_bind_address,
       .show = [](const C& c) { return c.bind_address; }},
      {.name = "bind_port",
       .type = "integer",
       .default_text = "53559",
       .bounds = "0..65535 (0: any free port)",
       .help = "TCP port to listen on. 0 lets the system pick a free port, which tests use.",
       .min = 0,
       .max = 65535,
       .apply = apply_integer<&C::bind_port>,
       .show = show_integer<&C::bind_port>},
      {.name = "allowed_networks",
       .type = "networks",
       .default_text = "127.0.0.0/8, ::1",
       .bounds = "comma-separated, at least one",
       .help = "Peers allowed to connect, as IPv4 and IPv6 networks in CIDR form (a plain address is one host; "
               "0.0.0.0/0 is any IPv4 address). Any other peer is told * ERR DENIED and closed. An IPv4 "
               "client reaching a dual-stack socket is matched against the IPv4 networks.",
       .reloadable = true,
       .apply = apply_allowed_networks,
       .show = [](const C& c) { return c.allowed_networks_text; }},
      {.name = "admin_networks",
       .type = "networks",
       .default_text = "127.0.0.0/8, ::1",
       .bounds = "comma-separated, at least one",
       .help = "Peers given the admin right (KICK; in a cluster also CLUSTER: netsem cluster add, remove, status), "
               "as networks in the form of allowed_networks. A session's peer is checked at each such request "
               "against the list in force, so a reload that drops a network takes the right from open sessions at "
               "once. Any other peer is answered ERR DENIED.",
       .reloadable = true,
       .apply = apply_admin_networks,
       .show = [](const C& c) { return c.admin_networks_text; }},
      {.name = "tokens_file",
       .type = "path",
       .default_text = "",
       .bounds = "file, or empty for none",
       .help = "A file of [tokens] (and [tls_subjects]) sections added to this file's, so that the main configuration "
               "holds no token hash. netsemd refuses to start (and a reload keeps the running tables) when the file "
               "is readable or writable by group or others: chmod 600 it. Read again by a reload. See "
               "docs/security.md.",
       .reloadable = true,
       .apply = apply_tokens_file,
       .show = [](const C& c) { return c.tokens_file.string(); }},
      {.name = "ace_networks",
       .type = "networks",
       .default_text = "0.0.0.0/0, ::/0",
       .bounds = "comma-separated, at least one",
       .help = "Peers allowed to speak the ACE dialect, as networks in the form of allowed_networks; a peer must be "
               "in both lists. An ACE peer outside it is closed at its first bytes without an answer, and logged. "
               "The default admits every peer allowed_networks does.",
       .reloadable = true,
       .apply = apply_ace_networks,
       .show = [](const C& c) { return c.ace_networks_text; }},
      {.name = "ace_rights",
       .type = "rights",
       .default_text = "acquire",
       .bounds = "<right>[,<right>...] [<prefix> ...]",
       .help = "The rights of ACE sessions when tokens are configured (ACE clients cannot AUTH), in the syntax of a "
               "[tokens] line without its hash: an acquire: of a name outside them closes the session. Without "
               "tokens ACE sessions may acquire any name.",
       .reloadable = true,
       .apply = apply_ace_rights,
       .show = [](const C& c) { return c.ace_rights_text; }},
      {.name = "stats_dir",
       .type = "path",
       .default_text = "var/netsem",
       .bounds = "directory",
       .help = "Directory of the status file, rewritten every status_interval_ms. A relative path is relative "
               "to the working directory of netsemd.",
       .apply = apply_path<&C::stats_dir>,
       .show = show_path<&C::stats_dir>},
      {.name = "data_dir",
       .type = "path",
       .default_text = "var/netsem",
       .bounds = "directory",
       .help = "Directory of the journal that keeps created semaphores and fences across restarts. A relative "
               "path is relative to the working directory of netsemd.",
       .apply = apply_path<&C::data_dir>,
       .show = show_path<&C::data_dir>},
      {.name = "fsync",
       .type = "choice",
       .default_text = "everysec",
       .bounds = "always, everysec, no",
       .help = "When the journal is flushed to disk: after every change (always), once a second (everysec: a "
               "power loss can lose the last second of changes), or when the kernel decides (no).",
       .apply = apply_fsync,
       .show = show_fsync},
      {.name = "status_interval_ms",
       .type = "integer",
       .default_text = "1000",
       .bounds = "10..3600000",
       .help = "How often the status file is rewritten, in milliseconds.",
       .min = 10,
       .max = 3600000,
       .apply = apply_integer<&C::status_interval_ms>,
       .show = show_integer<&C::status_interval_ms>},
      {.name = "session_timeout_ms",
       .type = "integer",
       .default_text = "15000",
       .bounds = "0..86400000 (0: off)",
       .help = "A session that completes no request line for this long, in milliseconds, is closed and its "
               "permits released. Clients ping at a sixth of it. ACE holders are timed out only when it is at "
               "least 10000; queued ACE clients never. Session sockets also send TCP keepalive probes that "
               "find a vanished peer within it (with 0: within about 2 minutes).",
       .min = 0,
       .max = 86400000,
       .apply = apply_integer<&C::session_timeout_ms>,
       .show = show_integer<&C::session_timeout_ms>},
      {.name = "restart_lease_wait",
       .type = "choice",
       .default_text = "on",
       .bounds = "on, off",
       .help = "After a restart, grant nothing for one session timeout (the longer of this run's and the previous "
               "run's) when the previous run was killed, crashed, or stopped with permits held: their holders may "
               "still work under their leases, which end within that time. Requests queue meanwhile; tries answer "
               "TIMEOUT. Off only when no client of the previous run can still be running.",
       .apply = apply_restart_lease_wait,
       .show = show_restart_lease_wait},
      {.name = "max_connections",
       .type = "integer",
       .default_text = "10000",
       .bounds = "1..1000000",
       .help = "Most open sessions. A further peer is told * ERR LIMIT and closed, but for a few admin probes from "
               "admin_networks (netsem cluster status, STATS: docs/operations.md, When the sessions are full). Fewer "
               "when the descriptor limit allows fewer: netsemd raises its soft RLIMIT_NOFILE to the hard limit at "
               "start and keeps descriptors for its own files (see Descriptors).",
       .min = 1,
       .max = 1000000,
       .apply = apply_integer<&C::max_connections>,
       .show = show_integer<&C::max_connections>},
      {.name = "max_pending_per_session",
       .type = "integer",
       .default_text = "1024",
       .bounds = "1..1000000",
       .help = "Most queued ACQUIRE and WAIT requests of one session, all names together. A request that would "
               "queue beyond it is answered ERR LIMIT.",
       .min = 1,
       .max = 1000000,
       .apply = apply_integer<&C::max_pending_per_session>,
       .show = show_integer<&C::max_pending_per_session>},
      {.name = "max_semaphores",
       .type = "integer",
       .default_text = "1000000",
       .bounds = "1..100000000",
       .help = "Most semaphores in the table: defined, created and undefined ones in use. A CREATE, or an "
               "ACQUIRE that would make an undefined semaphore, beyond it is answered ERR LIMIT.",
       .min = 1,
       .max = 100000000,
       .apply = apply_integer<&C::max_semaphores>,
       .show = show_integer<&C::max_semaphores>},
      {.name = "max_output_bytes",
       .type = "integer",
       .default_text = "67108864",
       .bounds = "65536..1099511627776",
       .help = "Most bytes of answers held unwritten by all sessions together (64 MiB by default). Past it, the "
               "session whose peer has stopped reading with the most unwritten is closed and its permits released, "
               "then the next, until the total is under it. A session is also closed, whatever the total, when it "
               "alone holds more than 4 MiB unwritten.",
       .min = 65536,
       .max = 1099511627776,
       .apply = apply_integer<&C::max_output_bytes>,
       .show = show_integer<&C::max_output_bytes>},
      {.name = "metrics_max_names",
       .type = "integer",
       .default_text = "1000",
       .bounds = "0..100000",
       .help = "Most semaphores given series of their own (a name label) in GET /metrics: the first defined and "
               "created ones in name order. The others, and every undefined one, are counted in aggregates "
               "(netsem_unlisted_*), so that many names never make as many series. Each name adds about 270 bytes "
               "and seven times its length to every scrape; 0 writes the aggregates alone.",
       .min = 0,
       .max = 100000,
       .apply = apply_integer<&C::metrics_max_names>,
       .show = show_integer<&C::metrics_max_names>},
      {.name = "log_level",
       .type = "choice",
       .default_text = "info",
       .bounds = "trace, debug, info, warn, warning, error, off",
       .help = "The least severe messages written to the log (stderr); warn and warning are the same level, off "
               "writes nothing. At info: the start and end of every session, slow waits, reloads, problems. "
               "netsemd --log-level overrides it.",
       .apply = apply_log_level,
       .show = [](const C& c) { return c.log_level; }},
      {.name = "log_format",
       .type = "choice",
       .default_text = "text",
       .bounds = "text, json",
       .help = "How log lines are written: text (a UTC time, the level, the message, then key=value fields) or "
               "json (one object a line with time, level, message and the fields, for log shippers). netsemd "
               "--log-format overrides it.",
       .apply = apply_log_format,
       .show = [](const C& c) { return std::string(c.log_format == LogFormat::kJson ? "json" : "text"); }},
      {.name = "slow_wait_ms",
       .type = "integer",
       .default_text = "5000",
       .bounds = "0..86400000 (0: off)",
       .help = "A request granted after waiting in a queue at least this long, in milliseconds, is logged at info "
               "(slow wait: the name, the session, its label and peer, the count and the time waited).",
       .reloadable = true,
       .min = 0,
       .max = 86400000,
       .apply = apply_integer<&C::slow_wait_ms>,
       .show = show_integer<&C::slow_wait_ms>},
      {.name = "http_enabled",
       .type = "choice",
       .default_text = "on",
       .bounds = "on, off",
       .help = "Whether netsemd serves HTTP (health, the JSON API, /metrics and the web page; docs/operations.md) "
               "on http_address and http_port, on threads of its own. Peers outside allowed_networks are refused.",
       .apply = apply_http_enabled,
       .show = [](const C& c) { return std::string(c.http_enabled ? "on" : "off"); }},
      {.name = "http_address",
       .type = "address",
       .default_text = "127.0.0.1",
       .bounds = "IPv4 or IPv6, no host name",
       .help = "Address of the HTTP listener; 0.0.0.0 or :: for every interface.",
       .apply = apply_http_address,
       .show = [](const C& c) { return c.http_address; }},
      {.name = "http_port",
       .type = "integer",
       .default_text = "53560",
       .bounds = "0..65535 (0: any free port)",
       .help = "TCP port of the HTTP listener. 0 lets the system pick a free port, which the log line `HTTP on "
               "http://ADDRESS:PORT/` names. When the port cannot be bound, netsemd logs an "
               "error and serves the protocol without HTTP.",
       .min = 0,
       .max = 65535,
       .apply = apply_integer<&C::http_port>,
       .show = show_integer<&C::http_port>},
      {.name = "http_hosts",
       .type = "host names",
       .default_text = "localhost",
       .bounds = "comma-separated names, or *",
       .help = "Host names the HTTP listener answers to, besides IP addresses: a request whose Host "
               "header names another host is refused (403 BAD_HOST), so that a web site cannot reach the listener "
               "through a DNS name it controls (DNS rebinding). List the names operators use in their browsers; "
               "* answers to any.",
       .apply = apply_http_hosts,
       .show = [](const C& c) { return c.http_hosts_text; }},
      // --- TLS (docs/security.md, "TLS") ---
      {.name = "tls_port",
       .type = "integer",
       .default_text = "53561",
       .bounds = "0..65535 (0: any free port)",
       .help = "TCP port of the TLS listener, on bind_address, when tls_cert is set: the same protocol v1 inside "
               "TLS (dialect v1+tls; ACE is never offered over TLS). 0 lets the system pick a free port, which the "
               "log line `TLS on ADDRESS:PORT` names.",
       .min = 0,
       .max = 65535,
       .apply = apply_integer<&C::tls_port>,
       .show = show_integer<&C::tls_port>},
      {.name = "tls_cert",
       .type = "path",
       .default_text = "",
       .bounds = "PEM file, or empty",
       .help = "The server's certificate chain (PEM, the server's own certificate first). Set, it turns the TLS "
               "listener on and tls_key is required; empty, TLS is off. SIGHUP reads the files again (a renewed "
               "certificate serves the next handshakes); a reload that cannot read them keeps the running ones and "
               "logs an error. Turning TLS on or off takes a restart.",
       .reloadable = true,
       .apply = apply_tls_file<&C::tls_cert>,
       .show = [](const C& c) { return c.tls_cert.string(); }},
      {.name = "tls_key",
       .type = "path",
       .default_text = "",
       .bounds = "PEM file, or empty",
       .help = "The private key of tls_cert (PEM, unencrypted; keep it readable by netsemd's user only).",
       .reloadable = true,
       .apply = apply_tls_file<&C::tls_key>,
       .show = [](const C& c) { return c.tls_key.string(); }},
      {.name = "tls_client_ca",
       .type = "path",
       .default_text = "",
       .bounds = "PEM file, or empty",
       .help = "CA certificates (PEM) that sign client certificates. Set, every TLS client must present a "
               "certificate that verifies against them, or its handshake fails; the verified subject is the "
               "session's tls_subject. Empty, no client certificate is asked for.",
       .reloadable = true,
       .apply = apply_tls_file<&C::tls_client_ca>,
       .show = [](const C& c) { return c.tls_client_ca.string(); }},
      {.name = "tls_handshake_timeout_ms",
       .type = "integer",
       .default_text = "5000",
       .bounds = "100..600000",
       .help = "A TLS handshake not done within this long is dropped. Handshakes run on a thread of their own, at "
               "most 64 at a time (more connections wait in the listen queue), so that a peer that stalls or sends "
               "garbage costs bounded time and memory and never delays grants.",
       .min = 100,
       .max = 600000,
       .apply = apply_integer<&C::tls_handshake_timeout_ms>,
       .show = show_integer<&C::tls_handshake_timeout_ms>},
  };
}

// Hints added to a value error, for the two configparser rules that surprise.
std::string value_hints(const IniEntry& entry) {
  std::string hints;
  if (entry.last_line > entry.line) {
    hints += fmt::format(" (the value continues on line {}: a line indented deeper than its key continues it)",
                         entry.last_line);
  }
  if (entry.value.find(" ;") != std::string::npos || entry.value.find(" #") != std::string::npos) {
    hints += " (comments must be on a line of their own)";
  }
  return hints;
}

}  // namespace

namespace config_detail {

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

bool ErrorList::add(const Status& status) {
  if (status.is_ok()) return true;
  if (count_++ < kMaxKept) messages_.push_back(status.message());
  return false;
}

void ErrorList::count_more(std::size_t n) {
  count_ += n;
}

Status ErrorList::status() const {
  if (count_ == 0) return Status::ok();
  // The line of a message "file:line: ...", 0 for one without.
  const std::string prefix = file_name_ + ":";
  const auto line_of = [&prefix](const std::string& message) {
    std::int64_t line = 0;
    if (message.starts_with(prefix)) {
      const char* digits = message.data() + prefix.size();
      std::from_chars(digits, message.data() + message.size(), line);
    }
    return line;
  };
  std::vector<std::string> sorted = messages_;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](const std::string& a, const std::string& b) { return line_of(a) < line_of(b); });
  std::string text;
  for (const auto& message : sorted) {
    if (!text.empty()) text += '\n';
    text += message;
  }
  if (count_ > messages_.size()) text += fmt::format("\n... and {} more errors", count_ - messages_.size());
  return invalid(std::move(text));
}

Status entry_error(const IniFile& ini, const IniEntry& entry, const Status& error) {
  return invalid(fmt::format("{}: {}: {}{}", ini.location(entry.line), entry.key, error.message(), value_hints(entry)));
}

Status apply_entry(const IniFile& ini, const IniEntry& entry, const OptionSpec& spec, std::string_view value,
                   ServerConfig& config) {
  if (auto status = spec.apply(spec, value, config); !status) return entry_error(ini, entry, status);
  if (spec.name == "tokens_file") config.tokens_file_at = ini.location(entry.line);  // for its read errors
  return Status::ok();
}

Result<std::string> read_keyed_private_file(std::string_view at, std::string_view key,
                                            const std::filesystem::path& file, std::string& where) {
  const std::string name = file.string();
  where = at.empty() ? std::string() : std::string(at) + ": ";
  where += std::string(key) + ": " + name;
  if (file.is_relative()) {
    std::error_code ec;
    const std::filesystem::path cwd = std::filesystem::current_path(ec);
    where += " (relative to the working directory " + (ec ? std::string("?") : cwd.string()) + ")";
  }
  auto text = read_private_file(file);
  if (text) return text;
  // read_private_file's message begins with the path it was given.
  std::string why(text.status().message());
  if (why.rfind(name, 0) == 0) why.erase(0, name.size());
  return Status(text.status().code(), where + why);
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The defined semaphores count against max_semaphores; more than that could
// never all exist, so it is a configuration error rather than a surprise.
Status check_semaphore_count(const IniFile& ini, int line, const ServerConfig& config) {
  if (config.semaphores.size() <= config.max_semaphores) return Status::ok();
  return invalid(fmt::format("{}: {} semaphores are defined, more than max_semaphores ({})", ini.location(line),
                             config.semaphores.size(), config.max_semaphores));
}

}  // namespace config_detail

namespace {

void parse_server_section(const IniFile& ini, const IniSection& section, ServerConfig& config, ErrorList& errors) {
  for (const auto& entry : section.entries) {
    const auto* spec = find_server_option(entry.key);
    if (spec == nullptr) {
      std::string hint;
      if (find_server_option(lower(entry.key)) != nullptr) {
        hint = fmt::format(" (option names are case-sensitive: {}?)", lower(entry.key));
      }
      errors.add(
          invalid(fmt::format("{}: unknown option `{}` in [server]{}", ini.location(entry.line), entry.key, hint)));
      continue;
    }
    errors.add(apply_entry(ini, entry, *spec, entry.value, config));
  }
}

// [tokens] and [tls_subjects] (auth/auth_tables.h), of the configuration or
// of its tokens_file: each line into config.auth, a name or subject listed
// twice (here or before) an error.
void parse_auth_section(const IniFile& ini, const IniSection& section, ServerConfig& config, ErrorList& errors) {
  const bool tokens = section.name == kTokensSection;
  for (const auto& entry : section.entries) {
    if (tokens) {
      auto parsed = auth::parse_token_line(entry.key, entry.value);
      if (!parsed) {
        errors.add(entry_error(ini, entry, parsed.status()));
      } else if (config.auth.find_token(parsed->name) != nullptr) {
        errors.add(invalid(fmt::format("{}: token `{}` is listed twice", ini.location(entry.line), entry.key)));
      } else {
        config.auth.tokens.push_back(std::move(parsed).value());
      }
      continue;
    }
    auto parsed = auth::parse_subject_line(entry.key, entry.value);
    if (!parsed) {
      errors.add(entry_error(ini, entry, parsed.status()));
    } else if (config.auth.find_subject(parsed->subject) != nullptr) {
      errors.add(invalid(fmt::format("{}: subject `{}` is listed twice", ini.location(entry.line), parsed->subject)));
    } else {
      config.auth.subjects.push_back(std::move(parsed).value());
    }
  }
}

void parse_semaphores_section(const IniFile& ini, const IniSection& section, ServerConfig& config, ErrorList& errors) {
  // A hash of the decoded names keeps this linear (a section may list a
  // million). Its keys are views of the names in config.semaphores, which
  // does not reallocate in this loop (reserved here).
  std::unordered_map<std::string_view, const IniEntry*> seen;
  seen.reserve(section.entries.size());
  config.semaphores.reserve(config.semaphores.size() + section.entries.size());
  std::string name;
  for (const auto& entry : section.entries) {
    // `$` names are host-local semaphores of the clients sharing this file:
    // their limits are for libnetsem, and the server never sees such a name.
    if (!entry.key.empty() && entry.key.front() == '$') continue;
    if (protocol::decode_name(entry.key, name) != protocol::ErrorCode::kNone) {
      errors.add(invalid(fmt::format("{}: `{}` is not a valid semaphore name ({}; `%` must start a %XX escape)",
                                     ini.location(entry.line), entry.key, kNameRules)));
      continue;
    }
    auto limit = parse_ini_integer(entry.value, 1, kMaxLimit);
    if (!limit) {
      // `host:10.0.0.1 = 2` splits at the `:`, leaving `10.0.0.1 = 2` as the value.
      const bool split = entry.value.find_first_of("=:") != std::string::npos;
      errors.add(invalid(fmt::format(
          "{}{}", entry_error(ini, entry, limit.status()).message(),
          split ? fmt::format(" (a line is split at its first `:` or `=`, so the name was read as `{}`: write `:` "
                              "and `=` in a name as %3A and %3D)",
                              entry.key)
                : "")));
      continue;
    }
    // One lookup: the name is stored first, so that the index can view it.
    const auto& stored = config.semaphores.emplace_back(std::move(name), *limit).first;
    if (const auto [it, added] = seen.try_emplace(stored, &entry); !added) {
      errors.add(invalid(fmt::format("{}: semaphore `{}` is defined twice (first at line {} as `{}`)",
                                     ini.location(entry.line), stored, it->second->line, it->second->key)));
      config.semaphores.pop_back();  // the index views the first definition, not this one
    }
  }
  // Past other errors the count may be against a max_semaphores that did not apply.
  if (errors.empty()) errors.add(check_semaphore_count(ini, section.line, config));
}

// `errors` holds those found before (the file's syntax); any error fails it.
Result<ServerConfig> parse_netsem_file(const IniFile& ini, ErrorList& errors) {
  ServerConfig config = default_server_config();
  // [server] first: max_semaphores bounds [semaphores] wherever it is written.
  if (const auto* server = ini.find(kServerSection)) parse_server_section(ini, *server, config, errors);
  for (const auto& section : ini.sections) {
    if (section.name == kServerSection || section.name == kClientSection) continue;
    if (section.name == kSemaphoresSection) {
      parse_semaphores_section(ini, section, config, errors);
      continue;
    }
    if (section.name == kTokensSection || section.name == kSubjectsSection) {
      parse_auth_section(ini, section, config, errors);
      continue;
    }
    if (section.name == kClusterSection) {
      parse_cluster_section(ini, section, config, errors);
      continue;
    }
    std::string hint = " (netsemd reads [server] and [semaphores]; [client] is for the client library)";
    if (section.name == "network_semaphore") {
      hint = " (an older ACE file? netsemd reads ACE's [service_network_semaphore])";
    } else if (const auto folded = lower(section.name);
               folded == kServerSection || folded == kSemaphoresSection || folded == kClientSection) {
      hint = fmt::format(" (section names are case-sensitive: [{}]?)", folded);
    }
    errors.add(invalid(fmt::format("{}: unknown section [{}]{}", ini.location(section.line), section.name, hint)));
  }
  if (!errors.empty()) return errors.status();
  return config;
}

void append_wrapped(std::string& out, std::string_view text, std::string_view indent, std::size_t width) {
  std::size_t column = 0;
  while (!text.empty()) {
    const auto space = text.find(' ');
    const auto word = text.substr(0, space);
    text = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
    if (column > 0 && column + 1 + word.size() > width) {
      out += '\n';
      column = 0;
    }
    if (column == 0) {
      out += indent;
      column = indent.size();
    } else {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
  }
  out += '\n';
}

}  // namespace

const std::vector<OptionSpec>& server_options() {
  static const std::vector<OptionSpec> options = make_server_options();
  return options;
}

const OptionSpec* find_server_option(std::string_view name) {
  for (const auto& spec : server_options()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

ServerConfig default_server_config() {
  return ServerConfig{};
}

Result<ServerConfig> load_server_config(const std::filesystem::path& file) {
  auto text = read_text_file(file);
  if (!text) return text.status();
  auto config = parse_server_config(*text, file.string());
  if (!config) return config;
  if (!config->tokens_file.empty()) {
    if (auto added = load_tokens_file(*config); !added) return added;
  }
  if (!config->cluster.secret_file.empty()) {
    if (auto read = load_cluster_secret(*config); !read) return read;
  }
  return config;
}

Status load_tokens_file(ServerConfig& config) {
  const std::string name = config.tokens_file.string();
  std::string where;
  auto text = config_detail::read_keyed_private_file(config.tokens_file_at, "tokens_file", config.tokens_file, where);
  if (!text) return text.status();
  auto ini = parse_ini(*text, name, IniOptions{.keep_going = true});
  if (!ini) return ini.status();
  ErrorList errors(ini->file_name);
  for (const auto& error : ini->errors) errors.add(error);
  errors.count_more(ini->error_count - ini->errors.size());
  for (const auto& section : ini->sections) {
    if (section.name == kTokensSection || section.name == kSubjectsSection) {
      parse_auth_section(*ini, section, config, errors);
    } else {
      errors.add(invalid(fmt::format("{}: unknown section [{}] (a tokens_file holds [tokens] and [tls_subjects])",
                                     ini->location(section.line), section.name)));
    }
  }
  return errors.status();
}

Result<ServerConfig> parse_server_config(std::string_view text, std::string_view file_name) {
  // Read past bad lines, so that one run reports every error of the file:
  // the syntax errors and those of the values read around them, in line order.
  auto ini = parse_ini(text, file_name, IniOptions{.allow_no_value = true, .keep_going = true});
  if (!ini) return ini.status();
  ErrorList errors(ini->file_name);
  for (const auto& error : ini->errors) errors.add(error);
  errors.count_more(ini->error_count - ini->errors.size());
  if (const auto* ace = ini->find(kAceSection)) return parse_ace_file(*ini, *ace, errors);
  // netsem's own format has no valueless keys: the errors a strict reading
  // gives, without reading a large file twice. Those entries are then left
  // out, so that the key alone is not also reported as a bad value.
  if (const auto missing = missing_values(*ini); !missing.empty()) {
    for (const auto& error : missing) errors.add(error);
    for (auto& section : ini->sections) {
      std::erase_if(section.entries, [](const IniEntry& entry) { return !entry.has_value; });
    }
  }
  return parse_netsem_file(*ini, errors);
}

std::vector<std::string_view> options_needing_restart(const ServerConfig& running, const ServerConfig& loaded) {
  std::vector<std::string_view> names;
  for (const auto& spec : server_options()) {
    if (!spec.reloadable && spec.show(running) != spec.show(loaded)) names.push_back(spec.name);
  }
  if (!(running.cluster == loaded.cluster)) names.push_back("[cluster]");
  return names;
}

std::string describe_options() {
  std::string out = "Configuration file options, section [server] (see docs/configuration.md):\n";
  for (const auto& spec : server_options()) {
    out += fmt::format("  {} = {}\n", spec.name, spec.default_text);
    const auto kind =
        spec.type == "choice" ? fmt::format("one of {}", spec.bounds) : fmt::format("{}, {}", spec.type, spec.bounds);
    append_wrapped(out,
                   fmt::format("{}. {}{}", kind, spec.help, spec.reloadable ? " Taken over by a reload (SIGHUP)." : ""),
                   "      ", 80);
  }
  out +=
      "Section [semaphores]: one `name = limit` line per defined semaphore (limit\n"
      "1..2147483647; the name percent-decoded: host%3A10.0.0.1 for host:10.0.0.1).\n"
      "Section [cluster]: replicated servers (docs/replication.md); without it\n"
      "netsemd is the single server with its journal. Its keys:\n";
  for (const auto& key : cluster_keys()) {
    // `value` is the default's value; a note in parentheses stays one.
    const std::string_view value = key.default_text;
    out += value.size() > 2 && value.starts_with('`') && value.ends_with('`')
               ? fmt::format("  {} = {}\n", key.name, value.substr(1, value.size() - 2))
               : fmt::format("  {} {}\n", key.name, value);
    append_wrapped(out, fmt::format("{}.", key.help), "      ", 80);
  }
  out += "A file with a [service_network_semaphore] section is an ACE configuration.\n";
  return out;
}

}  // namespace netsem::server
