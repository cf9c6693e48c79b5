// holders, waiters, sessions, kick and stats (inspect_commands.h): each
// builds a Client (client_setup.cc), asks the server, and prints an aligned
// table for people or, with --json, JSON for programs (docs/cli.md lists the
// fields). None falls back: without a server they exit 69, and against a
// server of protocol 1.0 the 1.1 ones exit 76 with the library's message
// ("server ... speaks protocol 1.0; HOLDERS needs 1.1").
#include "cli/inspect_commands.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "protocol/stats_json.h"

namespace netsem::cli {

namespace {

using std::chrono::milliseconds;

// A label as a person reads it: "-" for none.
std::string label_text(const std::string& label) {
  return label.empty() ? "-" : label;
}

// "850 ms", "5.2 s", "3 min 20 s", "2 h 5 min".
std::string duration_text(milliseconds duration) {
  const std::int64_t ms = duration.count();
  char text[48];
  if (ms < 1000) {
    std::snprintf(text, sizeof text, "%lld ms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(ms / 100) / 10);
  } else if (ms < 3'600'000) {
    std::snprintf(text, sizeof text, "%lld min %lld s", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms / 1000 % 60));
  } else {
    std::snprintf(text, sizeof text, "%lld h %lld min", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms / 60'000 % 60));
  }
  return text;
}

// Columns line up in a terminal when widths count code points, not bytes.
struct NameOptions {
  std::string name;
  bool json = false;
};

int holders_command(const GlobalOptions& global, const NameOptions& options) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  if (const int failed = require_server(connection, "holders"); failed != kExitOk) return failed;
  auto rows = connection.client->holders(options.name);
  if (!rows) return report_failure(connection, rows.status());
  if (options.json) {
    std::vector<std::string> objects;
    for (const HolderInfo& row : *rows) {
      objects.push_back("{\"session_id\":" + std::to_string(row.session_id) +
                        ",\"count\":" + std::to_string(row.count) + ",\"fence\":" + std::to_string(row.fence) +
                        ",\"held_ms\":" + std::to_string(row.held.count()) + ",\"label\":" + json_string(row.label) +
                        "}");
    }
    print(json_array(objects));
    return kExitOk;
  }
  std::string text = options.name + ": " + counted(rows->size(), "holder", "holders") + "\n";
  if (!rows->empty()) {
    std::vector<std::vector<std::string>> cells = {{"SESSION", "COUNT", "FENCE", "HELD", "LABEL"}};
    for (const HolderInfo& row : *rows) {
      cells.push_back({std::to_string(row.session_id), std::to_string(row.count), std::to_string(row.fence),
                       duration_text(row.held), label_text(row.label)});
    }
    text += aligned_table(cells);
  }
  print(text);
  return kExitOk;
}

int waiters_command(const GlobalOptions& global, const NameOptions& options) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  if (const int failed = require_server(connection, "waiters"); failed != kExitOk) return failed;
  auto rows = connection.client->waiters(options.name);
  if (!rows) return report_failure(connection, rows.status());
  if (options.json) {
    std::vector<std::string> objects;
    for (const WaiterInfo& row : *rows) {
      objects.push_back("{\"session_id\":" + std::to_string(row.session_id) + ",\"count\":" +
                        std::to_string(row.count) + ",\"waited_ms\":" + std::to_string(row.waited.count()) +
                        ",\"timeout_ms_left\":" + std::to_string(row.timeout_left ? row.timeout_left->count() : -1) +
                        ",\"label\":" + json_string(row.label) + "}");
    }
    print(json_array(objects));
    return kExitOk;
  }
  std::string text = options.name + ": " + counted(rows->size(), "waiter", "waiters") + "\n";
  if (!rows->empty()) {
    std::vector<std::vector<std::string>> cells = {{"SESSION", "COUNT", "WAITED", "TIMEOUT_LEFT", "LABEL"}};
    for (const WaiterInfo& row : *rows) {
      cells.push_back({std::to_string(row.session_id), std::to_string(row.count), duration_text(row.waited),
                       row.timeout_left ? duration_text(*row.timeout_left) : "none", label_text(row.label)});
    }
    text += aligned_table(cells);
  }
  print(text);
  return kExitOk;
}

int sessions_command(const GlobalOptions& global, bool json) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  if (const int failed = require_server(connection, "sessions"); failed != kExitOk) return failed;
  auto rows = connection.client->sessions();
  if (!rows) return report_failure(connection, rows.status());
  const ClientStats stats = connection.client->stats();
  if (json) {
    std::vector<std::string> objects;
    for (const SessionInfo& row : *rows) {
      objects.push_back(
          "{\"session_id\":" + std::to_string(row.session_id) + ",\"peer\":" + json_string(row.peer) +
          ",\"dialect\":" + json_string(row.dialect) + ",\"permits_held\":" + std::to_string(row.permits_held) +
          ",\"pending\":" + std::to_string(row.pending) + ",\"age_ms\":" + std::to_string(row.age.count()) +
          ",\"idle_ms\":" + std::to_string(row.idle.count()) + ",\"label\":" + json_string(row.label) + "}");
    }
    print(json_array(objects));
    return kExitOk;
  }
  // This command's own session is one of them: say which.
  std::string text = "server " + stats.server + ": " + counted(rows->size(), "session", "sessions") + " (this one is " +
                     std::to_string(stats.session_id) + ")\n";
  std::vector<std::vector<std::string>> cells = {
      {"SESSION", "PEER", "DIALECT", "HELD", "PENDING", "AGE", "IDLE", "LABEL"}};
  for (const SessionInfo& row : *rows) {
    cells.push_back({std::to_string(row.session_id), row.peer, row.dialect, std::to_string(row.permits_held),
                     std::to_string(row.pending), duration_text(row.age), duration_text(row.idle),
                     label_text(row.label)});
  }
  text += aligned_table(cells);
  print(text);
  return kExitOk;
}

int kick_command(const GlobalOptions& global, std::uint64_t id) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  if (const int failed = require_server(connection, "kick"); failed != kExitOk) return failed;
  if (Status status = connection.client->kick(id); !status) return report_failure(connection, status);
  return kExitOk;
}

// A histogram's summary: "3 samples, mean 939 us, 99 % at most 2048 us"; the
// JSON as sent when it does not have the documented shape.
std::string histogram_text(std::string_view json, std::string_view unit) {
  std::vector<protocol::StatsField> fields;
  std::int64_t count = 0;
  std::int64_t sum = 0;
  const protocol::StatsField* buckets = nullptr;
  if (!protocol::parse_stats(json, fields) || !protocol::stats_integer(fields, "count", count) ||
      !protocol::stats_integer(fields, "sum", sum) ||
      (buckets = protocol::find_stats_field(fields, "buckets")) == nullptr ||
      buckets->type != protocol::JsonType::kArray) {
    return std::string(json);
  }
  if (count == 0) return "no samples";
  std::string text = counted(static_cast<std::size_t>(count), "sample", "samples") + ", mean " +
                     std::to_string(sum / count) + " " + std::string(unit);
  // Bucket i counts the values up to 2^i (the last, 40, has no bound): the
  // first bound under which 99 % of the values lie.
  std::string_view list = buckets->value.substr(1, buckets->value.size() - 2);
  std::int64_t seen = 0;
  for (int i = 0; !list.empty(); ++i) {
    const std::size_t comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    seen += std::strtoll(std::string(item).c_str(), nullptr, 10);
    if (seen * 100 >= count * 99) {
      text += i >= 40 ? ", 99 % beyond 2^39 " + std::string(unit)
                      : ", 99 % at most " + std::to_string(std::int64_t{1} << i) + " " + std::string(unit);
      break;
    }
  }
  return text;
}

int stats_command(const GlobalOptions& global, bool json) {
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  if (const int failed = require_server(connection, "stats"); failed != kExitOk) return failed;
  auto stats = connection.client->server_stats();
  if (!stats) return report_failure(connection, stats.status());
  if (json) {
    print(*stats + "\n");
    return kExitOk;
  }
  std::vector<protocol::StatsField> fields;
  if (!protocol::parse_stats(*stats, fields)) {
    print_error("stats: the server's STATS is not a JSON object: " + stats->substr(0, 200));
    return kExitProtocol;
  }
  const ClientStats client = connection.client->stats();
  std::string version;
  (void)protocol::stats_string(fields, "version", version);
  std::string text = "server " + client.server + ": netsem " + (version.empty() ? "?" : version) + ", protocol " +
                     client.protocol + "\n";
  std::vector<std::vector<std::string>> cells = {{"FIELD", "VALUE"}};
  for (const protocol::StatsField& field : fields) {
    if (field.name == "version") continue;
    std::string value;
    if (field.type == protocol::JsonType::kObject) {
      const std::string_view unit = field.name.ends_with("_us") ? "us" : "";
      value = histogram_text(field.value, unit);
    } else if (field.type == protocol::JsonType::kString) {
      if (!protocol::decode_json_string(field.value, value)) value = std::string(field.value);
    } else {
      value = std::string(field.value);
    }
    cells.push_back({field.name, value});
  }
  text += aligned_table(cells);
  print(text);
  return kExitOk;
}

}  // namespace

Action define_holders(CLI::App& command) {
  auto options = std::make_shared<NameOptions>();
  command.add_flag("--json", options->json, "print a JSON array of objects instead of a table");
  command.add_option("NAME", options->name, "semaphore name")->required();
  return [options](const GlobalOptions& global) { return holders_command(global, *options); };
}

Action define_waiters(CLI::App& command) {
  auto options = std::make_shared<NameOptions>();
  command.add_flag("--json", options->json, "print a JSON array of objects instead of a table");
  command.add_option("NAME", options->name, "semaphore name")->required();
  return [options](const GlobalOptions& global) { return waiters_command(global, *options); };
}

Action define_sessions(CLI::App& command) {
  auto json = std::make_shared<bool>(false);
  command.add_flag("--json", *json, "print a JSON array of objects instead of a table");
  return [json](const GlobalOptions& global) { return sessions_command(global, *json); };
}

Action define_kick(CLI::App& command) {
  auto id = std::make_shared<std::string>();
  command.add_option("ID", *id, "the session id, as `netsem sessions` shows it")->required();
  return [id](const GlobalOptions& global) {
    // Session ids run to 2^64-1, past what parse_decimal takes.
    std::uint64_t parsed = 0;
    const char* end = id->data() + id->size();
    const bool digits = !id->empty() && id->find_first_not_of("0123456789") == std::string::npos;
    const auto [stop, error] = std::from_chars(id->data(), end, parsed);
    if (!digits || error != std::errc() || stop != end || parsed == 0) {
      print_error("kick: ID must be a session id (a whole number from 1, in decimal digits), not '" + *id + "'");
      return kExitUsage;
    }
    return kick_command(global, parsed);
  };
}

Action define_stats(CLI::App& command) {
  auto json = std::make_shared<bool>(false);
  command.add_flag("--json", *json, "print the server's STATS JSON as it sent it");
  return [json](const GlobalOptions& global) { return stats_command(global, *json); };
}

}  // namespace netsem::cli
