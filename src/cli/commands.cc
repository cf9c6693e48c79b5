// The subcommands other than `run`: status, get, post, wait, create, delete
// and ping. Each builds a Client (client_setup.cc), makes its call, prints
// the answer on stdout, and returns the exit code. Also the two renderings
// of SemaphoreInfo: an aligned table for people and JSON for programs, whose
// fields docs/cli.md lists (cli_test checks that they agree).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/local_commands.h"
#include "cli/wait_feedback.h"
#include "protocol/stats_json.h"

namespace netsem::cli {

namespace {

std::string json_object(const SemaphoreInfo& info) {
  return "{\"name\":" + json_string(info.name) + ",\"kind\":" + json_string(info.kind) +
         ",\"value\":" + std::to_string(info.value) + ",\"max\":" + std::to_string(info.max) +
         ",\"holders\":" + std::to_string(info.holders) + ",\"waiters\":" + std::to_string(info.waiters) + "}";
}

std::string table(const std::vector<SemaphoreInfo>& items) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "KIND", "VALUE/MAX", "HOLDERS", "WAITERS"}};
  for (const auto& info : items) {
    rows.push_back({info.name, info.kind, std::to_string(info.value) + "/" + std::to_string(info.max),
                    std::to_string(info.holders), std::to_string(info.waiters)});
  }
  return aligned_table(rows);
}

}  // namespace

int status_command(const GlobalOptions& global, const StatusOptions& options) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  Client& client = *connection.client;
  // An error like any other, in both modes, so that a script sees the same
  // stderr line and exit code whether it asked for a table or for JSON.
  if (const int failed = require_server(connection, "status"); failed != kExitOk) return failed;
  auto items = client.list(options.prefix);
  if (!items) return report_failure(connection, items.status());
  if (options.json) {
    std::string text = "[";
    for (std::size_t i = 0; i < items->size(); ++i) text += (i ? ",\n " : "\n ") + json_object((*items)[i]);
    print(text + (items->empty() ? "]\n" : "\n]\n"));
    return kExitOk;
  }
  const std::size_t n = items->size();
  std::string text =
      "server " + client.stats().server + ": " + std::to_string(n) + (n == 1 ? " semaphore" : " semaphores");
  if (!options.prefix.empty()) text += " named " + options.prefix + "*";
  text += '\n';
  if (n > 0) text += table(*items);
  if (options.prefix.empty()) text += local_status_section(connection.options);
  print(text);
  return kExitOk;
}

int get_command(const GlobalOptions& global, const GetOptions& options) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  auto info = connection.client->get(options.name);
  if (!info) return report_failure(connection, info.status());
  print(options.json ? json_object(*info) + "\n" : table({*info}));
  // So that a script can test existence without reading the output.
  return info->kind == "absent" ? kExitAbsent : kExitOk;
}

int post_command(const GlobalOptions& global, const CountOptions& options) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  if (Status status = connection.client->post(options.name, options.count); !status) {
    return report_failure(connection, status, Fallback::kMay);
  }
  if (!connection.client->connected()) warn_local_fallback(connection, options.name);
  return kExitOk;
}

int wait_command(const GlobalOptions& global, const CountOptions& options) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  Client& client = *connection.client;
  WaitFeedback feedback(client, options.name, options.count, global.verbosity);
  const Status status =
      client.wait(options.name, {.count = options.count, .timeout = timeout_left(connection, options.timeout)});
  feedback.stop();
  if (status.code() == StatusCode::kTimeout) {
    print_error("wait: " + describe_timeout(client, options.name, options.count, options.timeout, status));
    return kExitTimeout;
  }
  // A try that silent servers left unanswered: try later, as above.
  if (options.timeout && options.timeout->count() == 0 && unanswered_by_silent_servers(client, status)) {
    print_error("wait: " + describe_unanswered_try("WAIT", options.name, options.count, status));
    return kExitTimeout;
  }
  if (!status) return report_failure(connection, status, Fallback::kMay);
  if (!client.connected()) warn_local_fallback(connection, options.name);
  return kExitOk;
}

int create_command(const GlobalOptions& global, const CreateOptions& options) {
  const std::int64_t max = options.max.value_or(options.value);
  if (max < 1 || max < options.value) {
    print_error(options.max ? "create: MAX must be at least VALUE"
                            : "create: VALUE 0 needs a MAX (MAX defaults to VALUE and must be at least 1)");
    return kExitUsage;
  }
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  Client& client = *connection.client;
  // CREATE of an existing created semaphore is OK and changes nothing (as
  // O_CREAT): whoever asked for other values must learn that they did not
  // apply. Known from a look before (it was there) or after (its max is not
  // the one asked for, which a CREATE of ours would have set).
  std::optional<SemaphoreInfo> before;
  if (!options.exclusive) {
    if (auto info = client.get(options.name); info && info->kind == "created") before = *info;
  }
  if (Status status = client.create(options.name, options.value, max, options.exclusive); !status) {
    // EXISTS names no cause; a defined or undefined name is EXISTS even
    // without -x: say which.
    if (status.code() == StatusCode::kAlreadyExists) {
      if (auto info = client.get(options.name); info && (info->kind == "defined" || info->kind == "undefined")) {
        print_error("create: " + options.name +
                    (info->kind == "defined"
                         ? " is defined in the server's configuration ([semaphores]), with a limit of " +
                               std::to_string(info->max) + "; it cannot be created"
                         : " is in use as an undefined semaphore (one that run made on the fly); it cannot be "
                           "created until nobody holds or waits on it"));
        return exit_code_for(status);
      }
    }
    return report_failure(connection, status);
  }
  if (!options.exclusive) {
    auto now = client.get(options.name);
    const SemaphoreInfo* seen = now && now->kind == "created" ? &*now : before ? &*before : nullptr;
    if (seen != nullptr && (before || seen->max != max) && (seen->value != options.value || seen->max != max)) {
      print_error("create: " + options.name + " exists already, with " + std::to_string(seen->value) + " of " +
                  std::to_string(seen->max) + " free; left unchanged (not " + std::to_string(options.value) + " of " +
                  std::to_string(max) + "): delete it first to make it anew, or use -x to fail instead");
    }
  }
  return kExitOk;
}

int delete_command(const GlobalOptions& global, const std::string& name) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  if (Status status = connection.client->remove(name); !status) {
    // The server answers BUSY for a name of its configuration: say why.
    if (status.code() == StatusCode::kBusy) {
      if (auto info = connection.client->get(name); info && info->kind == "defined") {
        print_error("delete: " + name +
                    " is defined in the server's configuration ([semaphores]); only a semaphore made by create "
                    "can be deleted");
        return exit_code_for(status);
      }
    }
    return report_failure(connection, status);
  }
  return kExitOk;
}

int ping_command(const GlobalOptions& global) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  if (const int failed = require_server(connection, "ping"); failed != kExitOk) return failed;
  const auto start = std::chrono::steady_clock::now();
  auto pong = connection.client->ping();
  if (!pong) return report_failure(connection, pong.status());
  const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
  // What answered: the server's version (from STATS, after the timed round
  // trip) and the protocol its HELLO named. A server whose STATS fails is
  // still up: the PONG is the answer, the version only a detail.
  const ClientStats stats = connection.client->stats();
  std::string version = "?";
  if (auto json = connection.client->server_stats()) {
    std::vector<protocol::StatsField> fields;
    std::string text;
    if (protocol::parse_stats(*json, fields) && protocol::stats_string(fields, "version", text)) version = text;
  }
  std::printf("PONG from %s in %.2f ms (netsem %s, protocol %s)\n", stats.server.c_str(), elapsed.count(),
              version.c_str(), stats.protocol.c_str());
  return kExitOk;
}

}  // namespace netsem::cli
