// What every subcommand shares: the Client built from configuration file,
// environment and flags (in that order of precedence, lowest first), the
// mapping from a Status to an exit code, and error output.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "cli/cli.h"
#include "common/text.h"

namespace netsem::cli {

namespace {

// Reads the options with `file` standing in for $NETSEM_CONFIG, so that
// NETSEM_SERVER and NETSEM_FALLBACK override it exactly as the library
// defines for the file the variable names; the variable is put back after.
Result<ClientOptions> from_file_then_environment(const std::string& file) {
  const char* previous = std::getenv("NETSEM_CONFIG");
  const std::optional<std::string> saved = previous ? std::optional<std::string>(previous) : std::nullopt;
  ::setenv("NETSEM_CONFIG", file.c_str(), 1);
  Result<ClientOptions> options = ClientOptions::from_environment();
  if (!options && options.status().message().starts_with("NETSEM_CONFIG: ")) {
    options = Status(options.status().code(), "--config: " + options.status().message().substr(15));
  }
  if (saved) {
    ::setenv("NETSEM_CONFIG", saved->c_str(), 1);
  } else {
    ::unsetenv("NETSEM_CONFIG");
  }
  return options;
}

// Whether `subcommand` (empty: netsem itself) can exit with `code`.
bool can_exit_with(std::string_view subcommand, int code) {
  if (subcommand.empty()) return true;
  switch (code) {
    case kExitOk:
    case kExitFailed:
    case kExitUsage:
      return true;
    case kExitAbsent:
      return subcommand == "get";
    // Only run starts a command, and only run can lose permits while it runs.
    case kExitPermitsLost:
    case kExitCannotExecute:
    case kExitCommandNotFound:
      return subcommand == "run";
    // Connecting and the servers' answers (69, 71, 75, 76, 77): local asks
    // no server, and its failures are 1.
    default:
      return subcommand != "local";
  }
}

}  // namespace

std::string exit_code_help(std::string_view subcommand) {
  const bool run = subcommand.empty() || subcommand == "run";
  const bool waits = run || subcommand == "wait";
  std::string text = "Exit codes:\n";
  for (auto [code, meaning] : kExitCodes) {
    if (!can_exit_with(subcommand, code)) continue;
    if (!waits && code == kExitTimeout) meaning = "a server limit (LIMIT: the server is full): try later";
    if (subcommand == "local" && code == kExitFailed) meaning = "the registry could not be read, or a removal failed";
    // CLUSTER ADD's and REMOVE's TIMEOUT: the leader gave up on the change
    // (ADD's new server did not catch up, or the leader lost its leadership).
    if (subcommand == "cluster" && code == kExitTimeout) {
      meaning = "the leader gave up (TIMEOUT: add's server did not catch up, or outcome unknown); or LIMIT";
    }
    if (subcommand == "cluster" && code == kExitUnavailable) {
      meaning = "no server reachable; or status: the server knows no leader (its status is printed)";
    }
    char line[160];
    std::snprintf(line, sizeof line, "  %3d  %.*s\n", code, static_cast<int>(meaning.size()), meaning.data());
    text += line;
  }
  if (run) text += "  run: otherwise CMD's exit status, or 128+N when signal N killed CMD\n";
  return text;
}

Result<ClientOptions> make_client_options(const GlobalOptions& global) {
  Result<ClientOptions> options =
      global.config_file.empty() ? ClientOptions::from_environment() : from_file_then_environment(global.config_file);
  if (!options) return options;
  if (!global.servers.empty()) {
    options->servers.clear();
    for (const auto& server : global.servers) {
      const std::string_view address = trim(server);
      if (address.empty()) return Status(StatusCode::kInvalidArgument, "--server: empty server address");
      options->servers.emplace_back(address);
    }
  }
  if (!global.fallback.empty()) {
    auto policy = FallbackPolicy::parse(global.fallback);
    if (!policy) return Status(StatusCode::kInvalidArgument, "--fallback: " + policy.status().message());
    options->fallback = *policy;
  }
  if (!global.label.empty()) {
    // One field of HELLO, as [client] label: a space would split it.
    if (global.label.size() > 255 || std::any_of(global.label.begin(), global.label.end(), [](char c) {
          return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
        })) {
      return Status(
          StatusCode::kInvalidArgument,
          "--label: `" + global.label + "` is not a label (at most 255 bytes, no spaces or control characters)");
    }
    options->label = global.label;
  }
  if (!global.token_file.empty()) {
    if (auto status = options->load_token_file(global.token_file); !status) {
      return Status(status.code(), "--token-file: " + status.message());
    }
  }
  if (global.tls) options->tls = true;
  const std::pair<const std::string&, std::filesystem::path&> files[] = {
      {global.tls_ca, options->tls_ca}, {global.tls_cert, options->tls_cert}, {global.tls_key, options->tls_key}};
  for (const auto& [given, option] : files) {
    if (!given.empty()) option = given;
  }
  if (!global.tls_server_name.empty()) options->tls_server_name = global.tls_server_name;
  if (options->tls_cert.empty() != options->tls_key.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "--tls-cert and --tls-key go together (a client certificate needs its key): only one is set");
  }
  // -v shows what the library does, a request's place in its queue included.
  options->queue_positions = global.verbosity >= 1;
  return options;
}

Connection connect(const GlobalOptions& global, bool sessionless) {
  Connection connection;
  connection.started = std::chrono::steady_clock::now();
  auto options = make_client_options(global);
  if (!options) {
    print_error(options.status().message());
    connection.failure = kExitUsage;
    return connection;
  }
  options->sessionless = sessionless;
  connection.options = *options;
  auto client = Client::create(std::move(*options));
  if (!client) {
    print_error(client.status().message());
    connection.failure = exit_code_for(client.status());
    return connection;
  }
  connection.client = std::move(*client);
  return connection;
}

std::optional<std::chrono::milliseconds> timeout_left(const Connection& connection,
                                                      std::optional<std::chrono::milliseconds> timeout) {
  if (!timeout || timeout->count() == 0) return timeout;
  constexpr std::chrono::milliseconds kLastLook{100};
  const auto spent =
      std::chrono::ceil<std::chrono::milliseconds>(std::chrono::steady_clock::now() - connection.started);
  return std::max(*timeout - spent, std::min(kLastLook, *timeout));
}

std::string servers_text(const ClientOptions& options) {
  if (options.servers.empty()) return std::string(ClientOptions::kDefaultServer);
  std::string text;
  for (const auto& server : options.servers) {
    if (!text.empty()) text += ", ";
    text += server;
  }
  return text;
}

std::string unreachable_text(const Connection& connection) {
  if (connection.client) {
    std::string why = connection.client->stats().unreachable;
    if (!why.empty()) return why;
  }
  return "servers: " + servers_text(connection.options);
}

namespace {

// unreachable_text without the servers that `message` names as silent
// ("server A accepted the connection ...", "servers A, B accepted ..."):
// what the others did, or "" when they were all silent (or only one was
// listed). Each server's entry in ClientStats::unreachable is one "A: why",
// entries apart by "; ", and a silent one's why has no "; " in it.
std::string unreachable_but(const Connection& connection, std::string_view message) {
  if (connection.options.servers.size() <= 1) return {};
  const auto end = message.find(" accepted the connection");
  if (end == std::string_view::npos) return unreachable_text(connection);
  // The words before it, back to "server" or "servers": addresses have no spaces.
  std::vector<std::string> silent;
  std::string_view before = message.substr(0, end);
  for (;;) {
    const auto space = before.rfind(' ');
    std::string_view word = before.substr(space == std::string_view::npos ? 0 : space + 1);
    if (word == "server" || word == "servers" || space == std::string_view::npos) break;
    if (word.ends_with(',')) word.remove_suffix(1);
    silent.emplace_back(word);
    before = before.substr(0, space);
  }
  const std::string all = unreachable_text(connection);
  std::string others;
  std::string_view rest = all;
  while (!rest.empty()) {
    const auto next = rest.find("; ");
    const std::string_view entry = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 2);
    const bool named = std::any_of(silent.begin(), silent.end(),
                                   [&](const std::string& server) { return entry.starts_with(server + ": "); });
    if (named) continue;
    others += (others.empty() ? "" : "; ") + std::string(entry);
  }
  return others;
}

}  // namespace

int exit_code_for(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return kExitOk;
    case StatusCode::kTimeout:
      return kExitTimeout;
    case StatusCode::kUnavailable:
    case StatusCode::kShutdown:
      return kExitUnavailable;
    // A server that answers no is not an outage: no fallback, and a code of
    // its own, so that a script does not retry what only a configuration
    // change can fix (77), and does retry a full server (75).
    case StatusCode::kDenied:
      return kExitDenied;
    case StatusCode::kProtocol:
      return kExitProtocol;
    case StatusCode::kLimit:
      return kExitTimeout;
    case StatusCode::kInvalidArgument:
      return kExitUsage;
    // This process could not do its part (out of descriptors or memory, its
    // fallback's files): the servers were not asked, so neither "refused"
    // (1) nor "unavailable" (69).
    case StatusCode::kIoError:
      return kExitOsError;
    default:
      return kExitFailed;
  }
}

std::string counted(std::uint64_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

std::size_t display_width(std::string_view text) {
  std::size_t width = 0;
  for (const unsigned char c : text) width += (c & 0xC0) != 0x80;
  return width;
}

std::string aligned_table(const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return {};
  std::vector<std::size_t> widths(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], display_width(row[i]));
  }
  std::string text;
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      text += row[i];
      if (i + 1 < row.size()) text.append(widths[i] - display_width(row[i]) + 2, ' ');
    }
    text += '\n';
  }
  return text;
}

std::string json_array(const std::vector<std::string>& objects) {
  std::string text = "[";
  for (std::size_t i = 0; i < objects.size(); ++i) text += (i ? ",\n " : "\n ") + objects[i];
  return text + (objects.empty() ? "]\n" : "\n]\n");
}

void print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + '"';
}

void print_error(std::string_view message) {
  std::fprintf(stderr, "netsem: %.*s\n", static_cast<int>(message.size()), message.data());
}

int report_failure(const Connection& connection, const Status& status, Fallback may) {
  std::string message = status.message();
  const int code = exit_code_for(status);
  const bool refusal = code == kExitDenied || code == kExitProtocol ||
                       (status.code() == StatusCode::kLimit && connection.client && !connection.client->connected());
  const bool silent = connection.client && unanswered_by_silent_servers(*connection.client, status);
  // The library speaks for a client that lives on (this host short of
  // descriptors: "...; not an outage, so no fallback: the client tries the
  // servers again"); netsem exits.
  constexpr std::string_view kTriesAgain = ": the client tries the servers again";
  if (message.ends_with(kTriesAgain)) message.erase(message.size() - kTriesAgain.size());
  // The library says why its client did not fall back; a command that
  // never falls back has no fallback to speak of.
  constexpr std::string_view kNoFallback = ", so no fallback";
  if (may == Fallback::kNever && message.ends_with(kNoFallback)) message.erase(message.size() - kNoFallback.size());
  // The message names the silent servers and what they did: the servers
  // tried would say it again, so only the others are added, if any.
  const std::string others = silent ? unreachable_but(connection, message) : unreachable_text(connection);
  if (!others.empty() && (code == kExitUnavailable || (refusal && connection.options.servers.size() > 1))) {
    // One wording: "no server reachable (why), ...", as every subcommand says it.
    constexpr std::string_view kNone = "no server reachable";
    const std::string why = " (" + others + ")";
    if (message.starts_with(kNone)) {
      message.insert(kNone.size(), why);
    } else {
      message += why;
    }
  }
  print_error(message);
  return code;
}

int require_server(const Connection& connection, std::string_view what) {
  if (connection.client->connected()) return kExitOk;
  // Without a session a call answers at once with why: a server's refusal,
  // or that none could be reached. The probe is a PING, whose failures name
  // it ("PING: server ... has not answered ..."); they are said in the
  // command's words ("stats: server ..."), as the other commands name their
  // own request.
  Status why = connection.client->ping().status();
  constexpr std::string_view kPing = "PING: ";
  if (why.message().starts_with(kPing)) {
    why = Status(why.code(), std::string(what) + ": " + why.message().substr(kPing.size()));
  }
  // Servers that accepted the connection and did not answer are no outage
  // either: the ping waited request_timeout for them, and says so.
  const bool silent = unanswered_by_silent_servers(*connection.client, why);
  if (!why.is_ok() && (silent || (why.code() != StatusCode::kUnavailable && why.code() != StatusCode::kShutdown))) {
    return report_failure(connection, why);
  }
  print_error(std::string(what) + ": no server reachable (" + unreachable_text(connection) + ")");
  return kExitUnavailable;
}

bool listings_served(const ClientStats& stats, std::string_view name) {
  if (!stats.connected || name.starts_with('$')) return false;
  // "major.minor" from the HELLO answer: the listings came with 1.1, and a
  // later 1.x keeps them (the additions are additive).
  const std::string_view protocol = stats.protocol;
  const auto dot = protocol.find('.');
  if (dot == std::string_view::npos) return false;
  const auto major = parse_decimal(protocol.substr(0, dot), 0, 1000000);
  const auto minor = parse_decimal(protocol.substr(dot + 1), 0, 1000000);
  return major && minor && *major == 1 && *minor >= 1;
}

std::string timeout_detail(const SemaphoreInfo& info, std::optional<std::int64_t> held) {
  std::string text = std::to_string(info.value) + " of " + std::to_string(info.max) + " free";
  if (info.kind == "local") {
    // The kernel counts permits and waiting processes; it cannot say how many
    // processes hold the permits, and there are no sessions.
    return text + ", " + counted(info.holders, "permit", "permits") + " held on this host, " +
           counted(info.waiters, "process", "processes") + " waiting";
  }
  // Every permit not free is held (ACQUIRE) or consumed (WAIT); the server
  // counts the held ones per session, so the consumed ones are the rest. A
  // created semaphore may also start below its max: those permits were
  // never posted. The figures come from two requests and may disagree by
  // what changed between them: never below zero.
  const std::string consumed_by = info.kind == "created" ? " consumed by WAIT or not yet posted" : " consumed by WAIT";
  const std::int64_t missing = std::max<std::int64_t>(0, info.max - info.value);
  const std::string sessions = counted(info.holders, "session", "sessions");
  const std::string waiting = "; " + counted(info.waiters, "request", "requests") + " waiting";
  if (missing == 0) return text + waiting;   // all free: the queue, or the server, held it back
  if (!held && info.holders == 0) held = 0;  // nobody holds: all that is missing was consumed
  if (held) {
    const std::int64_t consumed = std::max<std::int64_t>(0, missing - *held);
    text += ": ";
    if (consumed > 0) text += std::to_string(consumed) + consumed_by + ", ";
    text += std::to_string(*held) + " held";
    if (info.holders > 0) text += " by " + sessions;
    return text + waiting;
  }
  // A 1.0 server says how many sessions hold, not how many permits each:
  // each holds one at least, so at most the rest can have been consumed.
  text += ": held by " + sessions;
  const std::int64_t at_most = missing - static_cast<std::int64_t>(std::min<std::uint64_t>(info.holders, missing));
  if (at_most > 0) {
    text += ", up to " + std::to_string(at_most) + consumed_by + " (protocol 1.0 does not say how many each holds)";
  }
  return text + waiting;
}

bool unanswered_by_silent_servers(const Client& client, const Status& status) {
  return status.code() == StatusCode::kUnavailable && client.stats().silent;
}

std::string describe_unanswered_try(std::string_view verb, std::string_view name, std::int64_t count,
                                    const Status& why) {
  // The library names the request first: `ACQUIRE "db": server ...`.
  const std::string request = std::string(verb) + " \"" + std::string(name) + "\": ";
  std::string reason = why.message();
  if (reason.starts_with(request)) reason.erase(0, request.size());
  return "no answer to the try for " + std::to_string(count) + (count == 1 ? " permit of " : " permits of ") +
         std::string(name) + ": " + reason;
}

std::string describe_timeout(Client& client, std::string_view name, std::int64_t count,
                             std::optional<std::chrono::milliseconds> timeout, const Status& why) {
  std::string text = "timed out";
  if (timeout) text += " after " + seconds_text(*timeout);
  text += " waiting for " + std::to_string(count) + (count == 1 ? " permit of " : " permits of ") + std::string(name);
  if (!client.connected() && !name.starts_with('$')) {
    // No session to look with (a GET would wait for one): the timeout's own
    // reason, when it has one (silent servers: "timed out (server … accepted
    // the connection but did not answer …)").
    constexpr std::string_view kReason = "timed out (";
    const std::string& message = why.message();
    const auto at = message.find(kReason);
    if (at != std::string::npos && message.ends_with(')')) {
      text += ": " + message.substr(at + kReason.size(), message.size() - at - kReason.size() - 1);
    }
    return text;
  }
  // What stands in the way, from a second look; a failure here only loses
  // the detail.
  auto info = client.get(name);
  if (!info || info->kind == "absent") return text;
  std::optional<std::int64_t> held;
  if (info->kind != "local" && info->holders > 0 && listings_served(client.stats(), name)) {
    if (auto holders = client.holders(name)) {
      held = 0;
      for (const HolderInfo& holder : *holders) *held += holder.count;
    }
  }
  return text + ": " + timeout_detail(*info, held);
}

void warn_local_fallback(const Connection& connection, std::string_view name) {
  if (name.starts_with('$')) return;  // local by choice
  print_error("warning: no server reachable (" + unreachable_text(connection) + "); " + std::string(name) +
              " was served by a host-local semaphore, so other hosts were not counted");
}

std::string seconds_text(std::chrono::milliseconds duration) {
  char text[48];
  std::snprintf(text, sizeof text, "%g s", static_cast<double>(duration.count()) / 1000);
  return text;
}

std::optional<std::int64_t> parse_decimal(std::string_view text, std::int64_t min, std::int64_t max) {
  // from_chars alone would do, but it takes a leading '-'; checking every
  // character first leaves it only the range to judge.
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;  // past 2^63-1
  if (value < min || value > max) return std::nullopt;
  return value;
}

}  // namespace netsem::cli
