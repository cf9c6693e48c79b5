// Tests of config/config.h: the option table (well-formed, and in agreement
// with docs/configuration.md, etc/netsem.ini and --help), netsem's own file
// format, ACE files, and the errors, each with its file:line.
#include "config/config.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/ini.h"
#include "common/log.h"
#include "support/thread_cpu_time.h"

namespace netsem::server {
namespace {

const std::filesystem::path kSourceDir = NETSEM_SOURCE_DIR;

// What differs from the defaults, one line each: "option=value" (as show()
// writes it), "semaphore name=limit", "ace", "warning: ...".
std::string summary(const ServerConfig& config) {
  std::string out;
  for (const auto& spec : server_options()) {
    if (spec.show(config) != spec.default_text) out += std::string(spec.name) + "=" + spec.show(config) + "\n";
  }
  for (const auto& [name, limit] : config.semaphores) out += "semaphore " + name + "=" + std::to_string(limit) + "\n";
  if (config.ace_format) out += "ace\n";
  for (const auto& warning : config.warnings) out += "warning: " + warning + "\n";
  return out;
}

struct FileCase {
  std::string what;
  std::string text;
  std::string expected;  // summary(), or the error message when it starts with "ERROR "
};

void run(const std::vector<FileCase>& cases) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto config = parse_server_config(c.text, "c.ini");
    if (c.expected.starts_with("ERROR ")) {
      ASSERT_FALSE(config.has_value()) << summary(*config);
      EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(config.status().message(), c.expected.substr(6));
    } else {
      ASSERT_TRUE(config.has_value()) << config.status().to_string();
      EXPECT_EQ(summary(*config), c.expected);
    }
  }
}

std::string read_source_file(const std::string& relative) {
  std::ifstream in(kSourceDir / relative);
  EXPECT_TRUE(in) << "cannot read " << (kSourceDir / relative);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string squeeze_spaces(std::string_view text) {
  std::string out;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t';
    if (space && (out.empty() || out.back() == ' ')) continue;
    out += space ? ' ' : c;
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// ---- the table ----

TEST(ServerOptions, AreWellFormedAndShowTheirDefaults) {
  std::set<std::string_view> names;
  const auto defaults = default_server_config();
  for (const auto& spec : server_options()) {
    SCOPED_TRACE(spec.name);
    EXPECT_TRUE(names.insert(spec.name).second) << "listed twice";
    EXPECT_FALSE(spec.type.empty());
    EXPECT_FALSE(spec.bounds.empty());
    EXPECT_FALSE(spec.help.empty());
    EXPECT_EQ(spec.help.find('|'), std::string_view::npos) << "breaks the Markdown table";
    ASSERT_NE(spec.apply, nullptr);
    ASSERT_NE(spec.show, nullptr);
    EXPECT_EQ(spec.show(defaults), spec.default_text);
    auto config = defaults;
    EXPECT_TRUE(spec.apply(spec, spec.default_text, config).is_ok());
    EXPECT_EQ(summary(config), "");
    EXPECT_EQ(find_server_option(spec.name), &spec);
  }
  EXPECT_EQ(find_server_option("Bind_Port"), nullptr);
  EXPECT_EQ(find_server_option("semaphores"), nullptr);
}

TEST(ServerOptions, IntegersAcceptExactlyTheirBounds) {
  for (const auto& spec : server_options()) {
    if (spec.type != "integer") continue;
    SCOPED_TRACE(spec.name);
    EXPECT_TRUE(spec.bounds.starts_with(std::to_string(spec.min) + ".." + std::to_string(spec.max)));
    for (const auto n : {spec.min, spec.max}) {
      auto config = default_server_config();
      EXPECT_TRUE(spec.apply(spec, std::to_string(n), config).is_ok());
      EXPECT_EQ(spec.show(config), std::to_string(n));
    }
    for (const auto n : {spec.min - 1, spec.max + 1}) {
      auto config = default_server_config();
      const auto status = spec.apply(spec, std::to_string(n), config);
      EXPECT_EQ(status.message(),
                std::to_string(n) + " is out of range " + std::to_string(spec.min) + ".." + std::to_string(spec.max));
      EXPECT_EQ(summary(config), "") << "changed on error";
    }
  }
}

TEST(ServerOptions, ChoicesAcceptEveryListedWord) {
  for (const auto& spec : server_options()) {
    if (spec.type != "choice") continue;
    SCOPED_TRACE(spec.name);
    std::string_view words = spec.bounds;
    int count = 0;
    while (!words.empty()) {
      const auto comma = words.find(", ");
      const auto word = words.substr(0, comma);
      words = comma == std::string_view::npos ? std::string_view() : words.substr(comma + 2);
      auto config = default_server_config();
      EXPECT_TRUE(spec.apply(spec, word, config).is_ok()) << word;
      EXPECT_EQ(spec.show(config), word);
      ++count;
    }
    EXPECT_GE(count, 2);
  }
  auto config = default_server_config();
  const auto* fsync = find_server_option("fsync");
  ASSERT_TRUE(fsync->apply(*fsync, "always", config).is_ok());
  EXPECT_EQ(config.fsync, FsyncPolicy::kAlways);
  ASSERT_TRUE(fsync->apply(*fsync, "no", config).is_ok());
  EXPECT_EQ(config.fsync, FsyncPolicy::kNo);
  // log_level is what init_logging accepts.
  std::string levels(find_server_option("log_level")->bounds);
  for (auto& c : levels) c = c == ',' ? ' ' : c;
  EXPECT_EQ(squeeze_spaces(levels), kLogLevels);
}

// The table rows of docs/configuration.md's section `heading` (e.g. "##
// [cluster]"), by the name in their first cell.
std::map<std::string, std::string> documented_rows(const std::string& heading) {
  const std::string doc = read_source_file("docs/configuration.md");
  const auto start = doc.find("\n" + heading + "\n");
  EXPECT_NE(start, std::string::npos) << "docs/configuration.md lost its heading `" << heading << "`";
  if (start == std::string::npos) return {};
  const auto end = doc.find("\n## ", start + 1);
  std::istringstream section(doc.substr(start, end - start));
  std::map<std::string, std::string> rows;  // option -> its row
  for (std::string line; std::getline(section, line);) {
    if (!line.starts_with("| `")) continue;
    const auto name = line.substr(3, line.find('`', 3) - 3);
    EXPECT_TRUE(rows.emplace(name, line).second) << name << " documented twice";
  }
  return rows;
}

// The table under `heading` of docs/configuration.md has the row `expected`
// gives for each name, and no other row; a failure says what to add
// (the row as it must be) or remove (a row that is not one of `what`).
void expect_documented(const std::string& heading, const std::vector<std::pair<std::string, std::string>>& expected,
                       const std::string& what) {
  auto rows = documented_rows(heading);
  for (const auto& [name, row] : expected) {
    const auto found = rows.find(name);
    if (found == rows.end()) {
      ADD_FAILURE() << name << ": not under \"" << heading << "\" in docs/configuration.md; add:\n" << row;
      continue;
    }
    EXPECT_EQ(found->second, row) << name;
    rows.erase(found);
  }
  for (const auto& [name, row] : rows) ADD_FAILURE() << "documented but not " << what << ": " << name;
}

TEST(ServerOptions, MatchTheDocumentation) {
  std::vector<std::pair<std::string, std::string>> expected;
  for (const auto& spec : server_options()) {
    expected.emplace_back(spec.name, "| `" + std::string(spec.name) + "` | " + std::string(spec.type) + " | `" +
                                         std::string(spec.default_text) + "` | " + std::string(spec.bounds) + " | " +
                                         (spec.reloadable ? "yes" : "no") + " | " + std::string(spec.help) + " |");
  }
  expect_documented("## Options of [server]", expected, "an option");
}

TEST(ClusterKeys, MatchTheDocumentation) {
  std::set<std::string_view> names;
  std::vector<std::pair<std::string, std::string>> expected;
  for (const auto& key : cluster_keys()) {
    SCOPED_TRACE(key.name);
    EXPECT_TRUE(names.insert(key.name).second) << "listed twice";
    EXPECT_FALSE(key.default_text.empty());
    EXPECT_FALSE(key.help.empty());
    EXPECT_EQ(key.help.find('|'), std::string_view::npos) << "breaks the Markdown table";
    expected.emplace_back(key.name, "| `" + std::string(key.name) + "` | " + std::string(key.default_text) + " | " +
                                        std::string(key.help) + " |");
  }
  expect_documented("## [cluster]", expected, "a [cluster] key");
}

TEST(ServerOptions, MatchTheExampleConfiguration) {
  const auto path = kSourceDir / "etc/netsem.ini";
  const std::string text = read_source_file("etc/netsem.ini");
  auto ini = parse_ini(text, path.string());
  ASSERT_TRUE(ini.has_value()) << ini.status().to_string();
  const auto* server = ini->find("server");
  ASSERT_NE(server, nullptr);

  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);

  std::set<std::string> listed;
  for (const auto& entry : server->entries) {
    SCOPED_TRACE(entry.key);
    listed.insert(entry.key);
    const auto* spec = find_server_option(entry.key);
    if (spec == nullptr) {
      ADD_FAILURE() << "etc/netsem.ini sets an option that does not exist";
      continue;
    }
    EXPECT_EQ(entry.value, spec->default_text);
    // The comment block right above the option carries its help.
    std::string comment;
    for (int i = entry.line - 2; i >= 0 && lines[i].starts_with("#"); --i) comment = lines[i].substr(1) + " " + comment;
    EXPECT_NE(squeeze_spaces(comment).find(squeeze_spaces(spec->help)), std::string::npos)
        << "the comment above it should hold its help:\n"
        << spec->help;
  }
  for (const auto& spec : server_options()) {
    EXPECT_TRUE(listed.count(std::string(spec.name))) << spec.name << " missing from etc/netsem.ini";
  }

  auto config = load_server_config(path);
  ASSERT_TRUE(config.has_value()) << config.status().to_string();
  EXPECT_EQ(summary(*config), "");
}

TEST(ServerOptions, DescribeListsEveryOption) {
  const auto text = describe_options();
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) EXPECT_LE(line.size(), 80u) << line;
  const auto flat = squeeze_spaces(text);
  for (const auto& spec : server_options()) {
    SCOPED_TRACE(spec.name);
    EXPECT_NE(text.find("\n  " + std::string(spec.name) + " = " + std::string(spec.default_text) + "\n"),
              std::string::npos);
    EXPECT_NE(flat.find(squeeze_spaces(spec.help)), std::string::npos);
    EXPECT_NE(flat.find(std::string(spec.bounds)), std::string::npos);
  }
  EXPECT_NE(text.find("[semaphores]"), std::string::npos);
  EXPECT_NE(text.find("[service_network_semaphore]"), std::string::npos);
  // [cluster] after them: `value` defaults as `key = value`, the notes in
  // parentheses as written.
  const auto cluster = text.find("\nSection [cluster]");
  ASSERT_NE(cluster, std::string::npos);
  for (const auto& key : cluster_keys()) {
    SCOPED_TRACE(key.name);
    std::string head = "\n  " + std::string(key.name) + " " + std::string(key.default_text) + "\n";
    if (key.default_text.starts_with('`')) {
      head = "\n  " + std::string(key.name) + " = " +
             std::string(key.default_text.substr(1, key.default_text.size() - 2)) + "\n";
    }
    EXPECT_GT(text.find(head), cluster) << head;
    EXPECT_NE(flat.find(squeeze_spaces(key.help)), std::string::npos);
  }
}

// ---- netsem's own format ----

TEST(ParseServerConfig, ReadsNetsemFiles) {
  run({
      {"empty file", "", ""},
      {"comments and an empty [server]", "# nothing\n[server]\n; still nothing\n", ""},
      {"every option",
       "[server]\nbind_address = ::\nbind_port = 0\nallowed_networks = 10.0.0.0/8, ::1\n"
       "admin_networks = 10.1.2.3, fd00::/8\nstats_dir = /s\n"
       "data_dir = d\nfsync = always\nstatus_interval_ms = 10\nsession_timeout_ms = 86400000\n"
       "max_connections = 1\nmax_pending_per_session = 1000000\nmax_semaphores = 100000000\nlog_level = trace\n",
       "bind_address=::\nbind_port=0\nallowed_networks=10.0.0.0/8, ::1\nadmin_networks=10.1.2.3, fd00::/8\n"
       "stats_dir=/s\ndata_dir=d\nfsync=always\n"
       "status_interval_ms=10\nsession_timeout_ms=86400000\nmax_connections=1\nmax_pending_per_session=1000000\n"
       "max_semaphores=100000000\nlog_level=trace\n"},
      {"`:` as the delimiter", "[server]\nbind_port: 1234\n", "bind_port=1234\n"},
      {"allowed_networks continued on the next line", "[server]\nallowed_networks = 10.0.0.0/8,\n    ::1\n",
       "allowed_networks=10.0.0.0/8,\n::1\n"},
      {"[client] is not read", "[client]\nanything = at all\nbare: [x]\n", ""},
      {"semaphores in file order, decoded",
       "[semaphores]\npcap = 1\nhost%3A10.0.0.1%20web = 3\nmy name = 2\nbig = 2147483647\ncaf\xc3\xa9 = 1\n",
       "semaphore pcap=1\nsemaphore host:10.0.0.1 web=3\nsemaphore my name=2\nsemaphore big=2147483647\n"
       "semaphore caf\xc3\xa9=1\n"},
      {"[semaphores] before [server] still counts against max_semaphores",
       "[semaphores]\na = 1\nb = 1\n[server]\nmax_semaphores = 2\n",
       "max_semaphores=2\nsemaphore a=1\nsemaphore b=1\n"},
      {"a `$` inside a name, a `%` escape for `%`", "[semaphores]\na$b = 1\n100%25 = 2\n",
       "semaphore a$b=1\nsemaphore 100%=2\n"},
      {"host-local `$` names are the clients' and skipped", "[semaphores]\n$nightly = 1\ndb = 2\n", "semaphore db=2\n"},
  });
}

TEST(ParseServerConfig, RejectsBadServerValuesWithFileAndLine) {
  run({
      {"port too big", "[server]\nbind_port = 70000\n", "ERROR c.ini:2: bind_port: 70000 is out of range 0..65535"},
      {"negative port", "[server]\n\nbind_port = -1\n", "ERROR c.ini:3: bind_port: -1 is out of range 0..65535"},
      {"huge number", "[server]\nmax_connections = 99999999999999999999\n",
       "ERROR c.ini:2: max_connections: 99999999999999999999 is out of range 1..1000000"},
      {"not a number", "[server]\nbind_port = abc\n", "ERROR c.ini:2: bind_port: `abc` is not a whole number"},
      {"no sign", "[server]\nbind_port = +1\n", "ERROR c.ini:2: bind_port: `+1` is not a whole number"},
      {"no underscores", "[server]\nmax_connections = 1_000\n",
       "ERROR c.ini:2: max_connections: `1_000` is not a whole number"},
      {"empty", "[server]\nbind_port =\n", "ERROR c.ini:2: bind_port: `` is not a whole number"},
      {"inline comment", "[server]\nbind_port = 53559 ; default\n",
       "ERROR c.ini:2: bind_port: `53559 ; default` is not a whole number (comments must be on a line of their own)"},
      {"inline # comment", "[server]\nlog_level = info # default\n",
       "ERROR c.ini:2: log_level: `info # default` is not one of trace, debug, info, warn, warning, error, off "
       "(comments must be "
       "on a line of their own)"},
      {"continued by accident", "[server]\nbind_port = 1\n  max_connections = 2\n",
       "ERROR c.ini:2: bind_port: `1\nmax_connections = 2` is not a whole number (the value continues on line 3: a "
       "line indented deeper than its key continues it)"},
      {"interval too short", "[server]\nstatus_interval_ms = 9\n",
       "ERROR c.ini:2: status_interval_ms: 9 is out of range 10..3600000"},
      {"timeout too long", "[server]\nsession_timeout_ms = 86400001\n",
       "ERROR c.ini:2: session_timeout_ms: 86400001 is out of range 0..86400000"},
      {"no connections", "[server]\nmax_connections = 0\n",
       "ERROR c.ini:2: max_connections: 0 is out of range 1..1000000"},
      {"unknown fsync", "[server]\nfsync = sometimes\n",
       "ERROR c.ini:2: fsync: `sometimes` is not one of always, everysec, no"},
      {"choices are case-sensitive", "[server]\nfsync = Always\n",
       "ERROR c.ini:2: fsync: `Always` is not one of always, everysec, no"},
      {"log level", "[server]\nlog_level = loud\n",
       "ERROR c.ini:2: log_level: `loud` is not one of trace, debug, info, warn, warning, error, off"},
      {"host name", "[server]\nbind_address = localhost\n",
       "ERROR c.ini:2: bind_address: `localhost` is not an IPv4 or IPv6 address (host names are not accepted)"},
      {"bracketed IPv6", "[server]\nbind_address = [::1]\n",
       "ERROR c.ini:2: bind_address: `[::1]` is not an IPv4 or IPv6 address (host names are not accepted)"},
      {"host bits", "[server]\nallowed_networks = 127.0.0.1, 10.0.0.1/8\n",
       "ERROR c.ini:2: allowed_networks: bad network `10.0.0.1/8`: host bits set below the prefix (the network is "
       "10.0.0.0/8)"},
      {"empty network list", "[server]\nallowed_networks =\n",
       "ERROR c.ini:2: allowed_networks: no networks listed (an empty list would refuse every peer)"},
      {"admin host bits", "[server]\nadmin_networks = ::1, 10.0.0.1/8\n",
       "ERROR c.ini:2: admin_networks: bad network `10.0.0.1/8`: host bits set below the prefix (the network is "
       "10.0.0.0/8)"},
      {"admin not an address", "[server]\nadmin_networks = localhost\n",
       "ERROR c.ini:2: admin_networks: bad network `localhost`: not an IPv4 address"},
      {"empty path", "[server]\nstats_dir =\n", "ERROR c.ini:2: stats_dir: a directory is required"},
      {"path continued", "[server]\ndata_dir = a\n  b\n",
       "ERROR c.ini:2: data_dir: `a\nb` contains a control character (the value continues on line 3: a line "
       "indented deeper than its key continues it)"},
      {"every error, one a line (issue 12 item 13)", "[server]\nbind_port = 1\nfsync = x\nlog_level = y\n",
       "ERROR c.ini:3: fsync: `x` is not one of always, everysec, no\n"
       "c.ini:4: log_level: `y` is not one of trace, debug, info, warn, warning, error, off"},
  });
}

// Issue 12 item 13: a syntax error stopped the reading, hiding every other
// error of the file. Now each bad line is one error, the lines around it
// are read and checked, and the errors come in line order.
TEST(ParseServerConfig, ReportsEveryErrorSyntaxErrorsIncludedInLineOrder) {
  run({
      {"netsem's format",
       "[server]\nbind_port = abc\nthis is junk\nfsync = never\n[semaphores]\nalpha = 3\n= 4\nbeta\ngamma = 0\n"
       "[semaphores\nx = 1\n[extra]\n",
       "ERROR c.ini:2: bind_port: `abc` is not a whole number\n"
       "c.ini:3: expected `key = value` or `[section]`\n"
       "c.ini:4: fsync: `never` is not one of always, everysec, no\n"
       "c.ini:7: expected `key = value` or `[section]`\n"
       "c.ini:8: expected `key = value` or `[section]`\n"
       "c.ini:9: gamma: 0 is out of range 1..2147483647\n"
       "c.ini:10: expected `key = value` or `[section]`\n"
       "c.ini:12: unknown section [extra] (netsemd reads [server] and [semaphores]; [client] is for the client "
       "library)"},
      {"duplicates", "[server]\nbind_port = 1\nbind_port = 2\n[server]\nbind_port = 3\n[semaphores]\na = x\n",
       "ERROR c.ini:3: duplicate key `bind_port` in [server] (first at line 2)\n"
       "c.ini:4: duplicate section [server] (first at line 1)\n"
       "c.ini:7: a: `x` is not a whole number"},
      {"an ACE file", "[service_network_semaphore]\nbind_port = x\n[other\nsemaphore_a = 0\n",
       "ERROR c.ini:2: bind_port: `x` is not a whole number\nc.ini:3: expected `key = value` or `[section]`"},
      {"a syntax error alone still fails", "[server]\nbind_port = 1\njunk\n",
       "ERROR c.ini:3: expected `key = value` or `[section]`"},
  });
}

TEST(ParseServerConfig, RejectsUnknownNamesWithFileAndLine) {
  run({
      {"unknown option", "[server]\nport = 1\n", "ERROR c.ini:2: unknown option `port` in [server]"},
      {"option in the wrong case", "[server]\nBind_Port = 1\n",
       "ERROR c.ini:2: unknown option `Bind_Port` in [server] (option names are case-sensitive: bind_port?)"},
      {"duplicate option", "[server]\nbind_port = 1\nbind_port = 2\n",
       "ERROR c.ini:3: duplicate key `bind_port` in [server] (first at line 2)"},
      {"bare key", "[server]\nbind_port\n", "ERROR c.ini:2: expected `key = value` or `[section]`"},
      {"unknown section", "[server]\n[serv]\n",
       "ERROR c.ini:2: unknown section [serv] (netsemd reads [server] and [semaphores]; [client] is for the client "
       "library)"},
      {"section in the wrong case", "[Server]\n",
       "ERROR c.ini:1: unknown section [Server] (section names are case-sensitive: [server]?)"},
      {"older ACE file", "[network_semaphore]\nsemaphore_pcap = 1\n",
       "ERROR c.ini:1: unknown section [network_semaphore] (an older ACE file? netsemd reads ACE's "
       "[service_network_semaphore])"},
      {"[DEFAULT] is not special here", "[DEFAULT]\nx = 1\n",
       "ERROR c.ini:1: unknown section [DEFAULT] (netsemd reads [server] and [semaphores]; [client] is for the "
       "client library)"},
      {"syntax error in [client] still counts", "[client]\n= x\n",
       "ERROR c.ini:2: expected `key = value` or `[section]`"},
  });
}

TEST(ParseServerConfig, RejectsBadSemaphoresWithFileAndLine) {
  const std::string long_name(256, 'n');
  run({
      {"a `$` escaped is still a leading `$`", "[semaphores]\n%24local = 1\n",
       "ERROR c.ini:2: `%24local` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, not "
       "starting with `$`; `%` must start a %XX escape)"},
      {"bad escape", "[semaphores]\nok = 1\nbad%zz = 1\n",
       "ERROR c.ini:3: `bad%zz` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, not "
       "starting with `$`; `%` must start a %XX escape)"},
      {"escaped control character", "[semaphores]\na%0Ab = 1\n",
       "ERROR c.ini:2: `a%0Ab` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, not "
       "starting with `$`; `%` must start a %XX escape)"},
      {"escaped C1 control character", "[semaphores]\na%C2%85b = 1\n",
       "ERROR c.ini:2: `a%C2%85b` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, not "
       "starting with `$`; `%` must start a %XX escape)"},
      {"invalid UTF-8", "[semaphores]\ncaf%C3 = 1\n",
       "ERROR c.ini:2: `caf%C3` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, not "
       "starting with `$`; `%` must start a %XX escape)"},
      {"too long", "[semaphores]\n" + long_name + " = 1\n",
       "ERROR c.ini:2: `" + long_name +
           "` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, not starting with `$`; `%` "
           "must start a %XX escape)"},
      {"limit 0", "[semaphores]\nx = 0\n", "ERROR c.ini:2: x: 0 is out of range 1..2147483647"},
      {"limit too big", "[semaphores]\nx = 2147483648\n", "ERROR c.ini:2: x: 2147483648 is out of range 1..2147483647"},
      {"limit not a number", "[semaphores]\nx = many\n", "ERROR c.ini:2: x: `many` is not a whole number"},
      {"a raw `:` splits the name", "[semaphores]\nhost:10.0.0.1 = 2\n",
       "ERROR c.ini:2: host: `10.0.0.1 = 2` is not a whole number (a line is split at its first `:` or `=`, so the "
       "name was read as `host`: write `:` and `=` in a name as %3A and %3D)"},
      {"the same name spelled twice", "[semaphores]\na%20b = 1\na b = 2\n",
       "ERROR c.ini:3: semaphore `a b` is defined twice (first at line 2 as `a%20b`)"},
      {"more than max_semaphores", "[server]\nmax_semaphores = 2\n[semaphores]\na = 1\nb = 1\nc = 1\n",
       "ERROR c.ini:3: 3 semaphores are defined, more than max_semaphores (2)"},
  });
}

// ---- ACE files ----

// ACE's own [service_network_semaphore] block as shipped in etc/saq.default.ini
// (ace-ecosystem/ACE), with the rest of such a file around it.
constexpr std::string_view kAceShipped = R"(; ACE configuration
[global]
data_dir = data
enable_semaphores = yes
some_flag

[service_network_semaphore]
module = saq.network_semaphore
class = NetworkSemaphoreServer
description = Network Semaphore - global network service for controlling concurrent access to limited resources
enabled = yes

; the address of the network semaphore server (used to bind and listen)
bind_address = 127.0.0.1
bind_port = 53559

; the address of the network semaphore server to the clients that want to use them
; could be the same as the bind_adress and bind_port above
remote_address = 127.0.0.1
remote_port = 53559

; comma separated list of source IP addresses that are allowed to connect
allowed_ipv4 = 127.0.0.1
; directory that contains metrics and current status of semaphores
stats_dir = var/network_semaphore

; SEMAPHORE CAPACITY LIMITS
;
; each of these represents a resource and the number of simultaneous connections allowed to it
semaphore_pcap = 1

[service_engine]
workers = 4
)";

TEST(ParseServerConfig, ReadsAceShippedFileUnchanged) {
  run({
      {"ACE's default", std::string(kAceShipped),
       "allowed_networks=127.0.0.1\nstats_dir=var/network_semaphore\ndata_dir=var/network_semaphore\n"
       "semaphore pcap=1\nace\n"},
  });
}

TEST(ParseServerConfig, ReadsAceFilesAsAceDoes) {
  run({
      {"mixed case, 0.0.0.0, remote_* keys and other sections",
       "[global]\nData_Dir = x\n\n[service_network_semaphore]\nBind_Address = 0.0.0.0\nBIND_PORT = 1_000\n"
       "Remote_Address = ace.example\nremote_port = 53559\nInstance_Type = DEV\nallowed_ipv4 = 0.0.0.0\n"
       "Stats_Dir = /var/ace/ns\nsemaphore_Pcap = 2\nsemaphore_splunk: +3\n[server]\nbind_port = bad\n"
       "[semaphores]\nx = 1\n[client]\nremote = 1\n",
       "bind_address=0.0.0.0\nbind_port=1000\nallowed_networks=0.0.0.0\nstats_dir=/var/ace/ns\ndata_dir=/var/ace/ns\n"
       "semaphore pcap=2\nsemaphore splunk=3\nace\n"
       "warning: c.ini:14: [server] is ignored: this is an ACE configuration file (it has "
       "[service_network_semaphore])\n"
       "warning: c.ini:16: [semaphores] is ignored: this is an ACE configuration file (it has "
       "[service_network_semaphore])\n"
       "warning: c.ini:10: allowed_ipv4 lists 0.0.0.0: any IPv4 address may connect\n"
       "warning: c.ini:12: `semaphore_Pcap` defines semaphore `pcap`: ACE folds keys to lower case\n"},
      {"0.0.0.0 inside a list, continued", "[service_network_semaphore]\nallowed_ipv4 = 10.0.0.0/8 , 0.0.0.0,\n  ::1\n",
       "allowed_networks=10.0.0.0/8 , 0.0.0.0,\n::1\nace\n"
       "warning: c.ini:2: allowed_ipv4 lists 0.0.0.0: any IPv4 address may connect\n"},
      {"unknown keys warn, ignored ones do not",
       "[service_network_semaphore]\nmodule = m\nclass = c\ndescription = d\nenabled = no\ninstance_type = x\n"
       "remote_anything = 1\ndependencies = a, b\nfoo\n",
       "ace\nwarning: c.ini:8: unknown key `dependencies` in [service_network_semaphore] is ignored\n"
       "warning: c.ini:9: unknown key `foo` in [service_network_semaphore] is ignored\n"},
      {"bare ignored keys are fine", "[service_network_semaphore]\nenabled\n", "ace\n"},
      {"an empty ACE section", "[service_network_semaphore]\n", "ace\n"},
      {"names are literal, spaces and `%` included",
       "[service_network_semaphore]\nsemaphore_my pcap = 1\nsemaphore_a%20b = 2\nsemaphore_x$ = 3\n",
       "semaphore my pcap=1\nsemaphore a%20b=2\nsemaphore x$=3\nace\n"},
      {"a name ACE clients cannot send", "[service_network_semaphore]\nsemaphore_a|b = 1\n",
       "semaphore a|b=1\nace\nwarning: c.ini:2: semaphore `a|b` cannot be requested by an ACE client (printable "
       "ASCII without `|` only); protocol v1 clients can use it\n"},
      {"[DEFAULT] keys are inherited unless set",
       "[DEFAULT]\nsemaphore_x = 2\nsemaphore_y = 5\nsomething_else = 1\n[service_network_semaphore]\n"
       "semaphore_Y = 1\n",
       "semaphore y=1\nsemaphore x=2\nace\n"
       "warning: c.ini:6: `semaphore_Y` defines semaphore `y`: ACE folds keys to lower case\n"},
      {"stats_dir alone sets data_dir", "[service_network_semaphore]\nstats_dir = s\n",
       "stats_dir=s\ndata_dir=s\nace\n"},
  });
}

// Every error of a file in one reading (issue 12 item 13), up to 50, in
// the order of their lines.
TEST(ParseServerConfig, ReportsEveryErrorOfAFileUpToFifty) {
  std::string text =
      "[service_network_semaphore]\nsemaphore_host:10.0.0.1 = 2\nbind_port = x\nSEMAPHORE_A = 1\n"
      "semaphore_a = 2\n";
  auto config = parse_server_config(text, "ace.ini");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.status().message(),
            "ace.ini:2: semaphore_host: `10.0.0.1 = 2` is not a whole number (configparser splits a line at its first "
            "`:` or `=`, so the key was read as `semaphore_host` and the value as `10.0.0.1 = 2`: an ACE semaphore "
            "name cannot contain `:` or `=`)\n"
            "ace.ini:3: bind_port: `x` is not a whole number\n"
            "ace.ini:5: duplicate key `semaphore_a` in [service_network_semaphore] (first at line 4 as `SEMAPHORE_A`; "
            "ACE's keys ignore case)");
  text = "[semaphores]\n";
  for (int i = 0; i < 60; ++i) text += "s" + std::to_string(i) + " = 0\n";
  config = parse_server_config(text, "c.ini");
  ASSERT_FALSE(config);
  const std::string message = config.status().message();
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 50) << message;
  EXPECT_TRUE(message.starts_with("c.ini:2: s0: 0 is out of range 1..2147483647\nc.ini:3: s1: ")) << message;
  EXPECT_TRUE(message.ends_with("\nc.ini:51: s49: 0 is out of range 1..2147483647\n... and 10 more errors")) << message;
}

TEST(ParseServerConfig, RejectsBadAceFilesWithFileAndLine) {
  run({
      {"keys equal after folding", "[service_network_semaphore]\nsemaphore_Pcap = 1\nsemaphore_pcap = 2\n",
       "ERROR c.ini:3: duplicate key `semaphore_pcap` in [service_network_semaphore] (first at line 2 as "
       "`semaphore_Pcap`; ACE's keys ignore case)"},
      {"exact duplicate", "[service_network_semaphore]\nbind_port = 1\nbind_port = 2\n",
       "ERROR c.ini:3: duplicate key `bind_port` in [service_network_semaphore] (first at line 2)"},
      {"host bits, as ipaddress.ip_network", "[service_network_semaphore]\nallowed_ipv4 = 10.0.0.1/8\n",
       "ERROR c.ini:2: allowed_ipv4: bad network `10.0.0.1/8`: host bits set below the prefix (the network is "
       "10.0.0.0/8)"},
      {"empty allowed_ipv4", "[service_network_semaphore]\nallowed_ipv4 =\n",
       "ERROR c.ini:2: allowed_ipv4: no networks listed (an empty list would refuse every peer)"},
      {"limit 0", "[service_network_semaphore]\nsemaphore_x = 0\n",
       "ERROR c.ini:2: semaphore_x: a limit of 0 is not supported (ACE would block every request for ever); the "
       "limit must be 1..2147483647"},
      {"negative limit", "[service_network_semaphore]\nsemaphore_x = -1\n",
       "ERROR c.ini:2: semaphore_x: -1 is out of range 1..2147483647"},
      {"huge limit", "[service_network_semaphore]\nsemaphore_x = 99999999999999999999999\n",
       "ERROR c.ini:2: semaphore_x: 99999999999999999999999 is out of range 1..2147483647"},
      {"bad underscores", "[service_network_semaphore]\nsemaphore_x = 1__0\n",
       "ERROR c.ini:2: semaphore_x: `1__0` is not a whole number"},
      {"inline comment, which ACE's getint rejects too", "[service_network_semaphore]\nsemaphore_pcap = 1 ; one\n",
       "ERROR c.ini:2: semaphore_pcap: `1 ; one` is not a whole number (comments must be on a line of their own)"},
      {"empty name", "[service_network_semaphore]\nsemaphore_ = 1\n",
       "ERROR c.ini:2: `` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, not "
       "starting with `$`)"},
      {"local name", "[service_network_semaphore]\nsemaphore_$x = 1\n",
       "ERROR c.ini:2: `$x` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, not "
       "starting with `$`)"},
      {"bare used key", "[service_network_semaphore]\nbind_port\n", "ERROR c.ini:2: `bind_port` has no value"},
      {"bare semaphore", "[service_network_semaphore]\nsemaphore_x\n", "ERROR c.ini:2: `semaphore_x` has no value"},
      {"port out of range", "[service_network_semaphore]\nbind_port = 65536\n",
       "ERROR c.ini:2: bind_port: 65536 is out of range 0..65535"},
      {"host name", "[service_network_semaphore]\nbind_address = ace.local\n",
       "ERROR c.ini:2: bind_address: `ace.local` is not an IPv4 or IPv6 address (host names are not accepted)"},
      {"syntax error in another section", "[service_network_semaphore]\n[other]\n= x\n",
       "ERROR c.ini:3: expected `key = value` or `[section]`"},
      {"bad inherited value", "[DEFAULT]\nsemaphore_x = lots\n[service_network_semaphore]\n",
       "ERROR c.ini:2: semaphore_x: `lots` is not a whole number"},
  });
}

// Issue 10 item 14: --check-config of 10,000 / 20,000 / 40,000 defined names
// took 0.3 / 0.8 / 4.0 s and 500,000 never finished (duplicate keys were
// found by scanning the section, and an ACE key was checked against every
// [DEFAULT] key). Linear, 200,000 names in either format take a fraction of
// a second of CPU; quadratic, minutes. The duplicate checks still work at
// the far end of the file.
TEST(ParseServerConfig, ReadsHugeFilesInLinearTime) {
  using namespace std::chrono_literals;
  constexpr std::size_t kNames = 200'000;
  std::string netsem = "[server]\nmax_semaphores = 1000000\n[semaphores]\n";
  std::string ace = "[DEFAULT]\n";
  for (std::size_t i = 0; i < kNames; ++i) {
    netsem += "n" + std::to_string(i) + " = 2\n";
    ace += "other_" + std::to_string(i) + " = x\n";
  }
  ace += "[service_network_semaphore]\n";
  for (std::size_t i = 0; i < kNames; ++i) ace += "semaphore_n" + std::to_string(i) + " = 2\n";
  for (const std::string* text : {&netsem, &ace}) {
    const auto start = test_support::thread_cpu_time();
    auto config = parse_server_config(*text, "big.ini");
    const auto used = test_support::thread_cpu_time() - start;
    ASSERT_TRUE(config.has_value()) << config.status().message();
    EXPECT_EQ(config->semaphores.size(), kNames);
    EXPECT_EQ(config->semaphores.back(), std::make_pair(std::string("n199999"), std::int64_t{2}));
    EXPECT_LT(used, 10s) << (text == &ace ? "ACE" : "netsem") << " format: reading is not linear";
  }
  auto twice = parse_server_config(netsem + "n%30 = 1\n", "big.ini");
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.status().message(), "big.ini:200004: semaphore `n0` is defined twice (first at line 4 as `n0`)");
  auto folded = parse_server_config(ace + "SEMAPHORE_N7 = 1\n", "big.ini");
  ASSERT_FALSE(folded.has_value());
  EXPECT_EQ(folded.status().message(),
            "big.ini:400003: duplicate key `SEMAPHORE_N7` in [service_network_semaphore] (first at line 200010 as "
            "`semaphore_n7`; ACE's keys ignore case)");
}

// ---- files, reload, command-line overrides ----

TEST(LoadServerConfig, ReadsFilesAndReportsUnreadableOnes) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("netsem_config_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  std::filesystem::create_directories(dir);
  const auto ace = dir / "saq.ini";
  std::ofstream(ace) << kAceShipped;
  auto config = load_server_config(ace);
  ASSERT_TRUE(config.has_value()) << config.status().to_string();
  EXPECT_TRUE(config->ace_format);
  ASSERT_EQ(config->semaphores.size(), 1u);
  EXPECT_EQ(config->semaphores[0], std::make_pair(std::string("pcap"), std::int64_t{1}));

  const auto bad = dir / "bad.ini";
  std::ofstream(bad) << "[server]\nbind_port = x\n";
  auto error = load_server_config(bad);
  ASSERT_FALSE(error.has_value());
  EXPECT_EQ(error.status().message(), bad.string() + ":2: bind_port: `x` is not a whole number");

  const auto missing = dir / "missing.ini";
  auto none = load_server_config(missing);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.status().code(), StatusCode::kIoError);
  EXPECT_EQ(none.status().message(), missing.string() + ": cannot read: No such file or directory");
  std::filesystem::remove_all(dir);
}

// admin_networks: loopback by default; a configured list replaces it, not
// adds to it.
TEST(ParseServerConfig, AdminNetworksReplaceTheLoopbackDefault) {
  const auto defaults = default_server_config();
  EXPECT_TRUE(defaults.admin_networks.allows_v4(0x7f000001));
  EXPECT_TRUE(defaults.admin_networks.allows_v4(0x7f0a0b0c));
  EXPECT_TRUE(defaults.admin_networks.allows({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_FALSE(defaults.admin_networks.allows_v4(0x0a010203));
  auto config = parse_server_config("[server]\nadmin_networks = 10.1.2.3, fd00::/8\n", "c.ini");
  ASSERT_TRUE(config.has_value()) << config.status().to_string();
  EXPECT_TRUE(config->admin_networks.allows_v4(0x0a010203));
  EXPECT_FALSE(config->admin_networks.allows_v4(0x0a010204));
  EXPECT_FALSE(config->admin_networks.allows_v4(0x7f000001));
  EXPECT_TRUE(config->admin_networks.allows({0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}));
  EXPECT_TRUE(config->allowed_networks == defaults.allowed_networks);  // the allow list is its own option
}

TEST(OptionsNeedingRestart, NamesChangedOptionsAReloadCannotTake) {
  const auto running = default_server_config();
  auto loaded = parse_server_config(
      "[server]\nbind_port = 1\nallowed_networks = 10.0.0.0/8\nadmin_networks = 10.0.0.1\nlog_level = debug\n"
      "[semaphores]\nx = 1\n",
      "c.ini");
  ASSERT_TRUE(loaded.has_value()) << loaded.status().to_string();
  EXPECT_EQ(options_needing_restart(running, *loaded), (std::vector<std::string_view>{"bind_port", "log_level"}));
  EXPECT_TRUE(options_needing_restart(running, running).empty());
  // A changed [cluster] section is named too (members change at run time).
  auto clustered = *loaded;
  clustered.cluster.election_timeout_ms += 100;
  EXPECT_EQ(options_needing_restart(*loaded, clustered), (std::vector<std::string_view>{"[cluster]"}));
  for (const auto& spec : server_options()) {
    // The spec and the protocol contract: the allow list and the admin
    // networks reload; so does the slow-wait threshold of the log; and the
    // authentication options (docs/security.md, Reload); and the TLS files,
    // read again so that a renewed certificate serves the next handshakes
    // (turning TLS on or off still takes a restart: the server says so).
    EXPECT_EQ(spec.reloadable, spec.name == "allowed_networks" || spec.name == "admin_networks" ||
                                   spec.name == "slow_wait_ms" || spec.name == "tokens_file" ||
                                   spec.name == "ace_networks" || spec.name == "ace_rights" ||
                                   spec.name == "tls_cert" || spec.name == "tls_key" || spec.name == "tls_client_ca")
        << spec.name;
  }
}

TEST(FindServerOption, AppliesCommandLineOverridesByTheFileRules) {
  auto config = default_server_config();
  const auto* port = find_server_option("bind_port");
  const auto* bind = find_server_option("bind_address");
  ASSERT_NE(port, nullptr);
  ASSERT_NE(bind, nullptr);
  EXPECT_TRUE(port->apply(*port, "0", config).is_ok());
  EXPECT_EQ(config.bind_port, 0);
  EXPECT_TRUE(bind->apply(*bind, "::1", config).is_ok());
  EXPECT_EQ(config.bind_address, "::1");
  EXPECT_EQ(port->apply(*port, "65536", config).message(), "65536 is out of range 0..65535");
  EXPECT_EQ(config.bind_port, 0);
}

}  // namespace
}  // namespace netsem::server
