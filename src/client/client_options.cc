// ClientOptions and FallbackPolicy (see netsem/client_options.h): the policy
// words, the [client] option table, [semaphores], and the environment.
//
// API: from_file reads the INI file leniently (an ACE file has keys without
// values, and every section but ours is ignored, so the server's file works
// as is, and without [client] servers names the server it configures), then
// parse_client_section applies each [client] entry through
// kClientOptions or as a `fallback.<name>` override, and
// parse_semaphores_section fills `limits`. from_environment starts from
// NETSEM_CONFIG's file and lets NETSEM_SERVER, NETSEM_FALLBACK,
// NETSEM_LABEL and the NETSEM_TLS* variables override. An ACE file's
// semaphore_<name> lines give the limits that [semaphores] does not
// (add_ace_limits).
// Names in the file are percent-decoded like the server's, but may also be
// local (`$name`), which the server's reader refuses.
#include "netsem/client_options.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <map>
#include <vector>

#include <arpa/inet.h>
#include <fmt/format.h>

#include "client/endpoint.h"
#include "common/ini.h"
#include "common/private_file.h"
#include "common/text.h"
#include "protocol/names.h"

namespace netsem {
namespace {

constexpr std::string_view kClientSection = "client";
constexpr std::string_view kServerSection = "server";
constexpr std::string_view kAceSection = "service_network_semaphore";
constexpr std::string_view kAceDefaultSection = "DEFAULT";  // configparser's, case-sensitive
constexpr std::string_view kAceSemaphorePrefix = "semaphore_";
constexpr std::string_view kSemaphoresSection = "semaphores";
constexpr std::string_view kFallbackPrefix = "fallback.";
constexpr std::int64_t kMaxLimit = 2147483647;
constexpr std::string_view kPolicyForms = "local, fail or share:K with K >= 1";

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

bool has_control(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f;
  });
}

// "host:port" or "[ipv6]:port"; the host is a name or an address (resolved
// only when connecting), the port 1..65535.
Status check_server_address(std::string_view address) {
  std::string_view host;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return invalid(fmt::format("`{}` is not [address]:port", address));
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
    in6_addr ignored{};
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &ignored) != 1) {
      return invalid(fmt::format("`{}` in `{}` is not an IPv6 address", host, address));
    }
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string_view::npos) return invalid(fmt::format("`{}` has no port (write host:port)", address));
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return invalid(fmt::format("`{}`: write an IPv6 address in brackets, as [{}]:{}", address, host, port));
    }
    const bool name_chars = std::all_of(host.begin(), host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
    });
    if (host.empty() || host.size() > 253 || !name_chars) {
      return invalid(fmt::format("`{}` in `{}` is not a host name or address", host, address));
    }
  }
  if (port.empty() || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return invalid(fmt::format("the port of `{}` is not a number", address));
  }
  if (auto n = parse_ini_integer(port, 1, 65535); !n) {
    return invalid(fmt::format("the port of `{}`: {}", address, n.status().message()));
  }
  return Status::ok();
}

// Addresses separated by commas or line breaks (a continued INI value);
// an empty item between two commas is an error.
Result<std::vector<std::string>> parse_servers(std::string_view text) {
  std::vector<std::string> servers;
  std::size_t start = 0;
  for (;;) {
    const auto comma = text.find(',', start);
    auto part = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    bool empty = true;
    while (!part.empty()) {
      const auto eol = part.find('\n');
      const auto item = trim(part.substr(0, eol));
      part = eol == std::string_view::npos ? std::string_view() : part.substr(eol + 1);
      if (item.empty()) continue;
      std::string address = client::with_default_port(item);
      if (auto status = check_server_address(address); !status) return status;
      servers.push_back(std::move(address));
      empty = false;
    }
    if (empty) return invalid(fmt::format("`{}` has an empty server address", trim(text)));
    if (comma == std::string_view::npos) return servers;
    start = comma + 1;
  }
}

// A semaphore name as written in the file: percent-decoded and checked by the
// protocol's rules, except that a leading `$` (a local name) is allowed.
Result<std::string> decode_config_name(std::string_view key) {
  std::string name;
  const bool local = !key.empty() && key.front() == '$';
  bool ok = protocol::decode_name(local ? key.substr(1) : key, name) == protocol::ErrorCode::kNone;
  if (local) {
    name = "$" + name;
    ok = ok && name.size() <= protocol::kMaxNameBytes;
  }
  if (!ok) {
    return invalid(
        fmt::format("`{}` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, "
                    "`$` only as the first byte of a local name; `%` must start a %XX escape)",
                    key));
  }
  return name;
}

Status entry_error(const IniFile& ini, const IniEntry& entry, const Status& error) {
  return invalid(fmt::format("{}: {}: {}", ini.location(entry.line), entry.key, error.message()));
}

// One row per [client] key; `fallback.<name>` is handled apart.
struct ClientOption {
  std::string_view name;
  Status (*apply)(std::string_view value, ClientOptions& options);
};

template <auto Member, std::int64_t Max>
Status apply_ms(std::string_view value, ClientOptions& options) {
  auto n = parse_ini_integer(value, 1, Max);
  if (!n) return n.status();
  options.*Member = std::chrono::milliseconds(*n);
  return Status::ok();
}

Status apply_servers(std::string_view value, ClientOptions& options) {
  auto servers = parse_servers(value);
  if (!servers) return servers.status();
  options.servers = std::move(*servers);
  return Status::ok();
}

Status apply_fallback(std::string_view value, ClientOptions& options) {
  auto policy = FallbackPolicy::parse(value);
  if (!policy) return policy.status();
  options.fallback = *policy;
  return Status::ok();
}

Status apply_label(std::string_view value, ClientOptions& options) {
  // The label is one field of HELLO: a space would split it.
  if (value.size() > 255 || has_control(value) || value.find(' ') != std::string_view::npos) {
    return invalid(fmt::format("`{}` is not a label (at most 255 bytes, no spaces or control characters)", value));
  }
  options.label = std::string(value);
  return Status::ok();
}

Status apply_local_dir(std::string_view value, ClientOptions& options) {
  if (has_control(value)) return invalid(fmt::format("`{}` contains a control character", value));
  options.local_dir = std::filesystem::path(value);
  return Status::ok();
}

// A token is one field of AUTH: 1..256 visible ASCII characters (the
// server's auth::check_token).
Status apply_token(std::string_view value, ClientOptions& options) {
  const bool visible = std::all_of(value.begin(), value.end(), [](char c) { return c > ' ' && c < 0x7f; });
  if (value.empty() || value.size() > 256 || !visible) {
    return invalid("the token is not 1 to 256 visible ASCII characters (no space)");
  }
  options.token = std::string(value);
  return Status::ok();
}

Status apply_token_file(std::string_view value, ClientOptions& options) {
  return options.load_token_file(std::filesystem::path(value));
}

Status apply_tls(std::string_view value, ClientOptions& options) {
  if (value != "on" && value != "off") return invalid(fmt::format("`{}` is not on or off", value));
  options.tls = value == "on";
  return Status::ok();
}

template <auto Member>
Status apply_tls_file(std::string_view value, ClientOptions& options) {
  if (value.empty() || has_control(value)) return invalid(fmt::format("`{}` is not a file name", value));
  options.*Member = std::filesystem::path(value);
  return Status::ok();
}

Status apply_tls_server_name(std::string_view value, ClientOptions& options) {
  if (value.empty() || value.size() > 253 || has_control(value) || value.find(' ') != std::string_view::npos) {
    return invalid(fmt::format("`{}` is not a host name or address", value));
  }
  options.tls_server_name = std::string(value);
  return Status::ok();
}

// A client certificate needs its key, and a key its certificate.
Status check_tls_pair(const ClientOptions& options) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return invalid(options.tls_cert.empty() ? "tls_key is set without tls_cert (a client certificate needs both)"
                                            : "tls_cert is set without tls_key (a client certificate needs both)");
  }
  return Status::ok();
}

constexpr std::int64_t kHourMs = 3'600'000;

constexpr ClientOption kClientOptions[] = {
    {"servers", apply_servers},
    {"fallback", apply_fallback},
    {"connect_timeout_ms", apply_ms<&ClientOptions::connect_timeout, kHourMs>},
    {"reconnect_min_ms", apply_ms<&ClientOptions::reconnect_min, kHourMs>},
    {"reconnect_max_ms", apply_ms<&ClientOptions::reconnect_max, kHourMs>},
    {"request_timeout_ms", apply_ms<&ClientOptions::request_timeout, 24 * kHourMs>},
    {"label", apply_label},
    {"local_dir", apply_local_dir},
    {"token", apply_token},
    {"token_file", apply_token_file},
    {"tls", apply_tls},
    {"tls_ca", apply_tls_file<&ClientOptions::tls_ca>},
    {"tls_cert", apply_tls_file<&ClientOptions::tls_cert>},
    {"tls_key", apply_tls_file<&ClientOptions::tls_key>},
    {"tls_server_name", apply_tls_server_name},
};

std::string known_keys() {
  std::string keys;
  for (const auto& option : kClientOptions) keys += fmt::format("{}, ", option.name);
  return keys + "fallback.<name>";
}

Status parse_client_section(const IniFile& ini, const IniSection& section, ClientOptions& options) {
  std::map<std::string, const IniEntry*> overrides;  // decoded name -> its line, to catch two spellings
  const IniEntry* reconnect_line = nullptr;
  for (const auto& entry : section.entries) {
    if (!entry.has_value) {
      return invalid(
          fmt::format("{}: `{}` has no value (expected `key = value`)", ini.location(entry.line), entry.key));
    }
    if (entry.key.starts_with(kFallbackPrefix)) {
      auto name = decode_config_name(std::string_view(entry.key).substr(kFallbackPrefix.size()));
      if (!name) return entry_error(ini, entry, name.status());
      auto policy = FallbackPolicy::parse(entry.value);
      if (!policy) return entry_error(ini, entry, policy.status());
      const auto [it, inserted] = overrides.emplace(*name, &entry);
      if (!inserted) {
        return invalid(fmt::format("{}: the fallback of `{}` is set twice (first at line {})", ini.location(entry.line),
                                   *name, it->second->line));
      }
      options.fallback_for[*name] = *policy;
      continue;
    }
    const auto* option = std::find_if(std::begin(kClientOptions), std::end(kClientOptions),
                                      [&](const ClientOption& o) { return o.name == entry.key; });
    if (option == std::end(kClientOptions)) {
      return invalid(fmt::format("{}: unknown option `{}` in [client] (known: {}; names are case-sensitive)",
                                 ini.location(entry.line), entry.key, known_keys()));
    }
    if (auto status = option->apply(entry.value, options); !status) return entry_error(ini, entry, status);
    if (entry.key.starts_with("reconnect_")) reconnect_line = &entry;
  }
  if (reconnect_line != nullptr && options.reconnect_min > options.reconnect_max) {
    return invalid(fmt::format("{}: reconnect_min_ms ({}) is above reconnect_max_ms ({})",
                               ini.location(reconnect_line->line), options.reconnect_min.count(),
                               options.reconnect_max.count()));
  }
  if (auto status = check_tls_pair(options); !status) {
    return invalid(fmt::format("{}: [client]: {}", ini.location(section.line), status.message()));
  }
  return Status::ok();
}

Status parse_semaphores_section(const IniFile& ini, const IniSection& section, ClientOptions& options) {
  std::map<std::string, const IniEntry*> seen;
  for (const auto& entry : section.entries) {
    if (!entry.has_value) {
      return invalid(
          fmt::format("{}: `{}` has no limit (expected `name = limit`)", ini.location(entry.line), entry.key));
    }
    auto name = decode_config_name(entry.key);
    if (!name) return invalid(fmt::format("{}: {}", ini.location(entry.line), name.status().message()));
    auto limit = parse_ini_integer(entry.value, 1, kMaxLimit);
    if (!limit) return entry_error(ini, entry, limit.status());
    const auto [it, inserted] = seen.emplace(*name, &entry);
    if (!inserted) {
      return invalid(fmt::format("{}: semaphore `{}` is defined twice (first at line {} as `{}`)",
                                 ini.location(entry.line), *name, it->second->line, it->second->key));
    }
    options.limits[*name] = *limit;
  }
  return Status::ok();
}

// The server a file names without [client] servers: netsemd's own listening
// address from [server] (its loopback when it listens on every interface),
// else the remote_address and remote_port that ACE's clients read. Empty when
// the file names none, or when its port is 0 (picked by the system).
Result<std::string> server_named_by_file(const IniFile& ini) {
  const auto value = [](const IniSection& section, std::string_view key) -> const IniEntry* {
    const IniEntry* entry = section.find(key);
    return entry != nullptr && entry->has_value ? entry : nullptr;
  };
  const IniEntry* address_entry = nullptr;
  const IniEntry* port_entry = nullptr;
  std::string host = "127.0.0.1";
  if (const IniSection* server = ini.find(kServerSection)) {
    address_entry = value(*server, "bind_address");
    port_entry = value(*server, "bind_port");
    if (address_entry != nullptr) {
      const auto address = trim(address_entry->value);
      host = address == "0.0.0.0" ? "127.0.0.1" : address == "::" ? "::1" : std::string(address);
    }
  } else if (const IniSection* ace = ini.find(kAceSection)) {
    address_entry = value(*ace, "remote_address");
    port_entry = value(*ace, "remote_port");
    if (address_entry == nullptr || port_entry == nullptr) return std::string();
    host = std::string(trim(address_entry->value));
  } else {
    return std::string();
  }
  std::int64_t port = ClientOptions::kDefaultPort;
  if (port_entry != nullptr) {
    auto parsed = parse_ini_integer(port_entry->value, 0, 65535);
    if (!parsed) return entry_error(ini, *port_entry, parsed.status());
    port = *parsed;
  }
  if (port == 0) return std::string();
  std::string server =
      host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
  if (auto status = check_server_address(server); !status) {
    return address_entry != nullptr ? entry_error(ini, *address_entry, status) : status;
  }
  return server;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// An ACE file's `semaphore_<name> = N` lines, as fallback limits where
// [semaphores] names none: the file gives one limit per name whichever
// client reads it (netsem.ace, the Python client, libnetsem and the CLI), so
// that they keep one host-wide semaphore per name at one limit. Keys fold to
// lower case as ACE's configparser and netsemd fold them, [DEFAULT]'s come
// first and the section's own override them, and a limit below 1 is 1, as
// in ACE's own fallback.
Status add_ace_limits(const IniFile& ini, const IniSection& ace, ClientOptions& options) {
  std::map<std::string, std::int64_t> found;
  for (const IniSection* section : {ini.find(kAceDefaultSection), &ace}) {
    if (section == nullptr) continue;
    for (const auto& entry : section->entries) {
      const std::string key = lower(entry.key);
      if (!key.starts_with(kAceSemaphorePrefix) || key.size() == kAceSemaphorePrefix.size() || !entry.has_value) {
        continue;
      }
      auto limit = parse_ini_integer(entry.value, std::numeric_limits<std::int64_t>::min(), kMaxLimit);
      if (!limit) return entry_error(ini, entry, limit.status());
      found[key.substr(kAceSemaphorePrefix.size())] = std::max<std::int64_t>(*limit, 1);
    }
  }
  for (const auto& [name, limit] : found) options.limits.try_emplace(name, limit);
  return Status::ok();
}

// The value of environment variable `name`; unset and empty alike are nullptr.
const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? value : nullptr;
}

}  // namespace

Result<FallbackPolicy> FallbackPolicy::parse(std::string_view text) {
  if (text == "local") return FallbackPolicy{.mode = Mode::kLocal};
  if (text == "fail") return FallbackPolicy{.mode = Mode::kFail};
  if (text.starts_with("share:")) {
    const auto digits = text.substr(6);
    auto share = parse_ini_integer(digits, 1, kMaxLimit);
    if (share) return FallbackPolicy{.mode = Mode::kShare, .share = *share};
    return invalid(fmt::format("`{}` is not a fallback policy: the K of share:K must be 1..{}", text, kMaxLimit));
  }
  return invalid(fmt::format("`{}` is not a fallback policy ({})", text, kPolicyForms));
}

std::string FallbackPolicy::to_string() const {
  switch (mode) {
    case Mode::kLocal:
      return "local";
    case Mode::kFail:
      return "fail";
    case Mode::kShare:
      return fmt::format("share:{}", share);
  }
  return "?";
}

std::int64_t FallbackPolicy::local_limit(std::int64_t limit) const {
  if (mode != Mode::kShare || share <= 1) return std::max<std::int64_t>(limit, 1);
  // Rounded up, so that K hosts together never get less than the limit, and
  // written so as not to overflow near INT64_MAX.
  return std::max<std::int64_t>(limit / share + (limit % share > 0 ? 1 : 0), 1);
}

const FallbackPolicy& ClientOptions::fallback_policy(std::string_view name) const {
  const auto it = fallback_for.find(std::string(name));
  return it == fallback_for.end() ? fallback : it->second;
}

std::int64_t ClientOptions::limit(std::string_view name) const {
  const auto it = limits.find(std::string(name));
  return it == limits.end() ? 1 : it->second;
}

Result<ClientOptions> ClientOptions::from_file(const std::filesystem::path& file) {
  auto ini = read_ini_file(file, IniOptions{.allow_no_value = true});
  if (!ini) return ini.status();
  ClientOptions options;
  for (const auto& section : ini->sections) {
    if (section.name == kClientSection) {
      if (auto status = parse_client_section(*ini, section, options); !status) return status;
    } else if (section.name == kSemaphoresSection) {
      if (auto status = parse_semaphores_section(*ini, section, options); !status) return status;
    } else if (const auto folded = lower(section.name); folded == kClientSection || folded == kSemaphoresSection) {
      // Silently ignoring [Client] would leave the user wondering why nothing applies.
      return invalid(fmt::format("{}: section names are case-sensitive: [{}]?", ini->location(section.line), folded));
    }
  }
  if (const IniSection* ace = ini->find(kAceSection)) {
    if (auto status = add_ace_limits(*ini, *ace, options); !status) return status;
  }
  if (options.servers.empty()) {
    auto server = server_named_by_file(*ini);
    if (!server) return server.status();
    if (!server->empty()) options.servers.push_back(std::move(*server));
  }
  return options;
}

Status ClientOptions::load_token_file(const std::filesystem::path& file) {
  auto text = read_private_file(file);
  if (!text) return text.status();
  const std::string_view first = trim(std::string_view(*text).substr(0, text->find('\n')));
  if (auto status = apply_token(first, *this); !status) {
    return invalid(fmt::format("{}: {}", file.string(), status.message()));
  }
  return Status::ok();
}

Result<ClientOptions> ClientOptions::from_environment() {
  ClientOptions options;
  if (const char* config = env("NETSEM_CONFIG")) {
    auto from = from_file(config);
    if (!from) return Status(from.status().code(), fmt::format("NETSEM_CONFIG: {}", from.status().message()));
    options = std::move(*from);
  }
  if (const char* servers = env("NETSEM_SERVER")) {
    auto parsed = parse_servers(servers);
    if (!parsed) return invalid(fmt::format("NETSEM_SERVER: {}", parsed.status().message()));
    options.servers = std::move(*parsed);
  }
  if (const char* fallback = env("NETSEM_FALLBACK")) {
    auto policy = FallbackPolicy::parse(fallback);
    if (!policy) return invalid(fmt::format("NETSEM_FALLBACK: {}", policy.status().message()));
    options.fallback = *policy;
  }
  if (const char* label = env("NETSEM_LABEL")) {
    if (Status status = apply_label(label, options); !status.is_ok()) {
      return invalid(fmt::format("NETSEM_LABEL: {}", status.message()));
    }
  }
  if (const char* file = env("NETSEM_TOKEN_FILE")) {
    if (Status status = options.load_token_file(file); !status.is_ok()) {
      return Status(status.code(), fmt::format("NETSEM_TOKEN_FILE: {}", status.message()));
    }
  }
  if (const char* token = env("NETSEM_TOKEN")) {
    if (Status status = apply_token(token, options); !status.is_ok()) {
      return invalid(fmt::format("NETSEM_TOKEN: {}", status.message()));
    }
  }
  const std::pair<const char*, Status (*)(std::string_view, ClientOptions&)> tls_variables[] = {
      {"NETSEM_TLS", apply_tls},
      {"NETSEM_TLS_CA", apply_tls_file<&ClientOptions::tls_ca>},
      {"NETSEM_TLS_CERT", apply_tls_file<&ClientOptions::tls_cert>},
      {"NETSEM_TLS_KEY", apply_tls_file<&ClientOptions::tls_key>},
      {"NETSEM_TLS_SERVER_NAME", apply_tls_server_name},
  };
  for (const auto& [variable, apply] : tls_variables) {
    if (const char* value = env(variable)) {
      if (Status status = apply(value, options); !status.is_ok()) {
        return invalid(fmt::format("{}: {}", variable, status.message()));
      }
    }
  }
  if (auto status = check_tls_pair(options); !status) return status;
  return options;
}

}  // namespace netsem
