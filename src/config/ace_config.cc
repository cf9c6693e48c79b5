// ACE's configuration format, read unchanged: a [service_network_semaphore]
// section whose keys are folded to lower case as configparser does, with the
// [DEFAULT] section inherited and integers in Python's int() syntax (config.h
// lists what is used and what is ignored). parse_server_config (config.cc)
// hands it every file with that section; the values go through the same
// [server] option table and error helpers (config_internal.h) as netsem's own
// format, so a value means the same in either file.
#include "config/config_internal.h"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <limits>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "common/ini.h"
#include "common/text.h"
#include "config/config.h"
#include "protocol/names.h"

// Everything here is config_detail, where the shared helpers live.
namespace netsem::server::config_detail {

namespace {

constexpr std::string_view kAceDefaultSection = "DEFAULT";  // configparser's, case-sensitive
constexpr std::string_view kAceSemaphorePrefix = "semaphore_";

// Python's int(): an optional sign, then digits with single `_` between
// them. ACE reads its integers with configparser's getint, which is int().
// Python's integers are unbounded; here they saturate, which the callers'
// range checks reject just the same.
Result<std::int64_t> parse_python_int(std::string_view text) {
  std::string digits;
  std::string_view rest = text;
  if (!rest.empty() && (rest.front() == '+' || rest.front() == '-')) {
    if (rest.front() == '-') digits += '-';
    rest.remove_prefix(1);
  }
  bool ok = !rest.empty();
  for (std::size_t i = 0; ok && i < rest.size(); ++i) {
    if (rest[i] == '_') {
      ok = i > 0 && i + 1 < rest.size() && rest[i - 1] != '_' && std::isdigit(static_cast<unsigned char>(rest[i + 1]));
    } else {
      ok = std::isdigit(static_cast<unsigned char>(rest[i])) != 0;
      digits += rest[i];
    }
  }
  if (!ok) return invalid(fmt::format("`{}` is not a whole number", text));
  std::int64_t n = 0;
  const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec == std::errc::result_out_of_range) {
    return digits.front() == '-' ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int64_t>::max();
  }
  return n;
}

bool ace_ignored_key(std::string_view key) {
  static constexpr std::string_view kIgnored[] = {"module", "class", "description", "enabled", "instance_type"};
  return key.starts_with("remote_") || std::find(std::begin(kIgnored), std::end(kIgnored), key) != std::end(kIgnored);
}

// allowed_ipv4 as ACE reads it (split on `,`, each entry stripped), except
// that `0.0.0.0`, ACE's shipped example, means any IPv4 address.
Status apply_allowed_ipv4(const IniFile& ini, const IniEntry& entry, ServerConfig& config) {
  std::string rules;
  bool any = false;
  std::size_t start = 0;
  while (true) {
    const auto comma = entry.value.find(',', start);
    auto rule = std::string_view(entry.value).substr(start, comma == std::string::npos ? comma : comma - start);
    rule = trim(rule);
    if (rule == "0.0.0.0") {
      rule = "0.0.0.0/0";
      any = true;
    }
    if (!rules.empty() || start > 0) rules += ',';
    rules += rule;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  auto list = AllowList::parse(rules);
  if (!list) return entry_error(ini, entry, list.status());
  config.allowed_networks = std::move(list).value();
  config.allowed_networks_text = entry.value;
  if (any) {
    config.warnings.push_back(
        fmt::format("{}: allowed_ipv4 lists 0.0.0.0: any IPv4 address may connect", ini.location(entry.line)));
  }
  return Status::ok();
}

Status apply_ace_semaphore(const IniFile& ini, const IniEntry& entry, std::string_view key, ServerConfig& config) {
  const auto name = key.substr(kAceSemaphorePrefix.size());
  if (protocol::check_name(name) != protocol::ErrorCode::kNone) {
    return invalid(
        fmt::format("{}: `{}` is not a valid semaphore name ({})", ini.location(entry.line), name, kNameRules));
  }
  auto limit = parse_python_int(entry.value);
  if (!limit) {
    // configparser splits `semaphore_host:10.0.0.1 = 2` at its `:`.
    if (entry.value.find_first_of("=:") != std::string::npos) {
      return invalid(
          fmt::format("{} (configparser splits a line at its first `:` or `=`, so the key was read as `{}` "
                      "and the value as `{}`: an ACE semaphore name cannot contain `:` or `=`)",
                      entry_error(ini, entry, limit.status()).message(), entry.key, entry.value));
    }
    return entry_error(ini, entry, limit.status());
  }
  if (*limit == 0) {
    return entry_error(ini, entry,
                       invalid("a limit of 0 is not supported (ACE would block every request "
                               "for ever); the limit must be 1..2147483647"));
  }
  if (*limit < 1 || *limit > kMaxLimit) {
    return entry_error(ini, entry, invalid(fmt::format("{} is out of range 1..{}", entry.value, kMaxLimit)));
  }
  if (entry.key.substr(kAceSemaphorePrefix.size()) != name) {
    config.warnings.push_back(fmt::format("{}: `{}` defines semaphore `{}`: ACE folds keys to lower case",
                                          ini.location(entry.line), entry.key, name));
  }
  const auto ace_char = [](char c) { return c >= 0x20 && c < 0x7f && c != '|'; };
  if (!std::all_of(name.begin(), name.end(), ace_char)) {
    config.warnings.push_back(
        fmt::format("{}: semaphore `{}` cannot be requested by an ACE client (printable "
                    "ASCII without `|` only); protocol v1 clients can use it",
                    ini.location(entry.line), name));
  }
  config.semaphores.emplace_back(std::string(name), *limit);
  return Status::ok();
}

struct AceKey {
  std::string folded;
  const IniEntry* entry;
  bool inherited;  // from [DEFAULT]: unknown ones are someone else's, no warning
};

// The keys of `section` folded to lower case, as configparser's optionxform;
// two keys folding to the same one are configparser's DuplicateOptionError.
// Linear: a hash of the folded keys (views of the AceKeys in `out`, which is
// reserved so that they do not move).
void fold_keys(const IniFile& ini, const IniSection& section, bool inherited, std::vector<AceKey>& out,
               ErrorList& errors) {
  std::unordered_map<std::string_view, const IniEntry*> seen;
  seen.reserve(section.entries.size());
  out.reserve(out.size() + section.entries.size());
  for (const auto& entry : section.entries) {
    const auto& key = out.emplace_back(AceKey{lower(entry.key), &entry, inherited});
    if (const auto [it, added] = seen.try_emplace(key.folded, &entry); !added) {
      errors.add(
          invalid(fmt::format("{}: duplicate key `{}` in [{}] (first at line {} as `{}`; ACE's keys ignore case)",
                              ini.location(entry.line), entry.key, section.name, it->second->line, it->second->key)));
      out.pop_back();  // the first one counts; `seen` views it, not this one
    }
  }
}

}  // namespace

Result<ServerConfig> parse_ace_file(const IniFile& ini, const IniSection& ace, ErrorList& errors) {
  ServerConfig config = default_server_config();
  config.ace_format = true;
  for (const auto& section : ini.sections) {
    if (section.name == kServerSection || section.name == kSemaphoresSection) {
      config.warnings.push_back(fmt::format("{}: [{}] is ignored: this is an ACE configuration file (it has [{}])",
                                            ini.location(section.line), section.name, kAceSection));
    }
  }

  std::vector<AceKey> keys;
  fold_keys(ini, ace, false, keys, errors);
  if (const auto* defaults = ini.find(kAceDefaultSection)) {
    std::vector<AceKey> inherited;
    fold_keys(ini, *defaults, true, inherited, errors);
    // Reserved first: `own` views the keys, which must not move after.
    keys.reserve(keys.size() + inherited.size());
    std::unordered_set<std::string_view> own;
    own.reserve(keys.size());
    for (const auto& key : keys) own.insert(key.folded);
    for (auto& key : inherited) {
      if (!own.contains(key.folded)) keys.push_back(std::move(key));
    }
  }

  for (const auto& [key, entry, inherited] : keys) {
    const bool used = key == "bind_address" || key == "bind_port" || key == "allowed_ipv4" || key == "stats_dir" ||
                      key.starts_with(kAceSemaphorePrefix);
    if (used && !entry->has_value) {
      errors.add(invalid(fmt::format("{}: `{}` has no value", ini.location(entry->line), entry->key)));
      continue;
    }
    Status status;
    if (key == "bind_address" || key == "stats_dir") {
      status = apply_entry(ini, *entry, *find_server_option(key), entry->value, config);
    } else if (key == "bind_port") {
      // The table's apply checks the range; it sees the value in its own syntax.
      auto port = parse_python_int(entry->value);
      if (port && (*port < 0 || *port > 65535)) {
        port = invalid(fmt::format("{} is out of range 0..65535", entry->value));
      }
      status = port ? apply_entry(ini, *entry, *find_server_option(key), std::to_string(*port), config)
                    : entry_error(ini, *entry, port.status());
    } else if (key == "allowed_ipv4") {
      status = apply_allowed_ipv4(ini, *entry, config);
    } else if (key.starts_with(kAceSemaphorePrefix)) {
      status = apply_ace_semaphore(ini, *entry, key, config);
    } else if (!ace_ignored_key(key) && !inherited) {
      config.warnings.push_back(
          fmt::format("{}: unknown key `{}` in [{}] is ignored", ini.location(entry->line), entry->key, kAceSection));
    }
    errors.add(status);
  }
  // ACE has one directory; netsem keeps its journal next to the status file.
  config.data_dir = config.stats_dir;
  if (errors.empty()) errors.add(check_semaphore_count(ini, ace.line, config));
  if (!errors.empty()) return errors.status();
  return config;
}

}  // namespace netsem::server::config_detail
