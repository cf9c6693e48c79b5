// netsem-bench's option table, parser, help and loopback check (see
// bench_options.h).
#include "bench_options.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>
#include <vector>

namespace netsem::bench {

namespace {

constexpr std::uint16_t kNetsemDefaultPort = 53559;
constexpr std::uint16_t kRedisDefaultPort = 6379;

struct OptionSpec {
  std::string_view name;   // without the leading "--"
  std::string_view value;  // metavariable; empty for a flag
  std::string_view default_text;
  std::string_view help;
  std::function<std::string(std::string_view, Options&)> apply;
};

template <class T>
std::string parse_number(std::string_view text, T min, T max, T& out) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return "must be a number from " + std::to_string(min) + " to " + std::to_string(max);
  }
  out = value;
  return {};
}

std::string parse_seconds(std::string_view text, double min, double& out) {
  try {
    std::size_t used = 0;
    const double value = std::stod(std::string(text), &used);
    if (used != text.size() || !(value >= min) || value > 3600) return "must be a number of seconds up to 3600";
    out = value;
    return {};
  } catch (const std::exception&) {
    return "must be a number of seconds";
  }
}

// Names the bench sends unencoded: printable ASCII without space, `%` or
// `|` (ACE's separator), not starting with `$`.
std::string check_plain_name(std::string_view text) {
  if (text.empty() || text.size() > 200 || text.front() == '$') return "must be 1-200 characters, not starting with $";
  for (const char c : text) {
    if (c <= ' ' || c > '~' || c == '%' || c == '|') return "must be printable ASCII without space, % or |";
  }
  return {};
}

const std::vector<OptionSpec>& option_table() {
  static const std::vector<OptionSpec> table = {
      {"target", "T", "netsem",
       "what is measured: netsem (netsemd, protocol v1), floor (the built-in echo server) or redis (a Redis "
       "server running the Lua counting-semaphore recipe); see below",
       [](std::string_view v, Options& o) -> std::string {
         const auto target = parse_target(v);
         if (!target) return "must be netsem, floor or redis";
         o.target = *target;
         return {};
       }},
      {"scenario", "S", "cycle1", "cycle1, contended, durable, spread, pipelined, sessions, names or ace (see below)",
       [](std::string_view v, Options& o) -> std::string {
         const auto scenario = parse_scenario(v);
         if (!scenario) return "unknown scenario";
         o.scenario = *scenario;
         return {};
       }},
      {"host", "ADDR", "127.0.0.1", "server address: numeric, loopback only (127.0.0.0/8 or ::1)",
       [](std::string_view v, Options& o) -> std::string {
         o.host = v;
         return {};
       }},
      {"port", "N", "53559; floor: a server started for the run; redis: 6379", "server port",
       [](std::string_view v, Options& o) -> std::string {
         o.port_given = true;
         return parse_number<std::uint16_t>(v, 0, 65535, o.port);
       }},
      {"clients", "C", "per scenario", "connections (sessions: idle sessions to open)",
       [](std::string_view v, Options& o) { return parse_number<std::uint64_t>(v, 1, 1'000'000, o.clients); }},
      {"pipeline", "P", "64 for pipelined, 256 for names, else 1",
       "requests in flight per connection (pipelined and names only)",
       [](std::string_view v, Options& o) { return parse_number<std::uint64_t>(v, 1, 65536, o.pipeline); }},
      {"names", "N", "per scenario", "distinct names (names: semaphores to create)",
       [](std::string_view v, Options& o) { return parse_number<std::uint64_t>(v, 1, 100'000'000, o.names); }},
      {"name", "NAME", "bench.contended",
       "the semaphore of contended (durable: bench.durable); created with --limit (and deleted after) when the server "
       "does not have it",
       [](std::string_view v, Options& o) {
         o.name = v;
         o.name_given = true;
         return check_plain_name(v);
       }},
      {"limit", "L", "10",
       "contended, durable: the limit the semaphore is created with when absent (redis: the limit sent with every "
       "acquire)",
       [](std::string_view v, Options& o) { return parse_number<std::int64_t>(v, 1, 2147483647, o.limit); }},
      {"prefix", "P", "bench", "prefix of every other name the bench uses (<prefix>.<scenario>.<i>)",
       [](std::string_view v, Options& o) {
         o.prefix = v;
         return check_plain_name(v);
       }},
      {"seconds", "S", "5", "length of the measurement",
       [](std::string_view v, Options& o) { return parse_seconds(v, 0.05, o.seconds); }},
      {"ops", "N", "none",
       "end the measured window after N ops (cycle scenarios and ace; --seconds still bounds it): a fixed "
       "amount of work, as bench/callgrind.sh needs",
       [](std::string_view v, Options& o) { return parse_number<std::uint64_t>(v, 1, 1'000'000'000, o.ops); }},
      {"queued", "on|off", "on",
       "netsem: off sends `OPTION queued off` (protocol 1.1) first on every connection, so that a waiting "
       "acquire is answered only by its grant (no QUEUED line)",
       [](std::string_view v, Options& o) -> std::string {
         if (v != "on" && v != "off") return "must be on or off";
         o.queued_off = v == "off";
         return {};
       }},
      {"tls-port", "PORT", "none",
       "netsem: the load's connections go to netsemd's TLS port and speak TLS (with --tls-ca); the setup's "
       "control connection stays on --port (cycle scenarios)",
       [](std::string_view v, Options& o) { return parse_number<std::uint16_t>(v, 1, 65535, o.tls_port); }},
      {"tls-ca", "FILE", "none",
       "with --tls-port: the CA certificate (PEM) the server's certificate must verify against",
       [](std::string_view v, Options& o) -> std::string {
         o.tls_ca = v;
         return v.empty() ? "must name a file" : "";
       }},
      {"warmup", "S", "1", "load before measuring (cycle scenarios and ace)",
       [](std::string_view v, Options& o) { return parse_seconds(v, 0, o.warmup); }},
      {"server-pid", "PID[,PID...]", "none",
       "the server's process (netsemd's, or redis-server's), for its CPU time per op (/proc/PID/stat) and its RSS "
       "(/proc/PID/status); several, comma-separated (a cluster's servers): their CPU times are added up, the RSS "
       "is the first one's",
       [](std::string_view v, Options& o) -> std::string {
         o.more_server_pids.clear();
         bool first = true;
         while (true) {
           const auto comma = v.find(',');
           pid_t pid = 0;
           if (auto error = parse_number<pid_t>(v.substr(0, comma), 1, 1 << 30, pid); !error.empty()) return error;
           if (first) {
             o.server_pid = pid;
             first = false;
           } else {
             o.more_server_pids.push_back(pid);
           }
           if (comma == std::string_view::npos) return {};
           v.remove_prefix(comma + 1);
         }
       }},
      {"json", "", "", "print one JSON object instead of text",
       [](std::string_view, Options& o) -> std::string {
         o.json = true;
         return {};
       }},
      {"serve-floor", "", "", "run the floor echo server on --host/--port (0: any port) instead of measuring",
       [](std::string_view, Options& o) -> std::string {
         o.serve_floor = true;
         return {};
       }},
      {"help", "", "", "print this help",
       [](std::string_view, Options& o) -> std::string {
         o.help = true;
         return {};
       }},
  };
  return table;
}

void apply_defaults(Options& o) {
  const auto set = [](std::uint64_t& field, std::uint64_t value) {
    if (field == 0) field = value;
  };
  switch (o.scenario) {
    case Scenario::kCycle1:
      set(o.clients, 1);
      set(o.names, 1);
      break;
    case Scenario::kContended:
      set(o.clients, 64);
      set(o.names, 1);
      break;
    case Scenario::kDurable:
      set(o.clients, 64);
      set(o.names, 1);
      if (!o.name_given) o.name = "bench.durable";
      break;
    case Scenario::kSpread:
      set(o.clients, 64);
      set(o.names, o.clients);
      break;
    case Scenario::kPipelined:
      set(o.clients, 1);
      set(o.pipeline, 64);
      set(o.names, o.clients);
      break;
    case Scenario::kSessions:
      set(o.clients, 10'000);
      set(o.names, o.clients);
      break;
    case Scenario::kNames:
      set(o.clients, 1);
      set(o.pipeline, 256);
      set(o.names, 1'000'000);
      break;
    case Scenario::kAce:
      set(o.clients, 16);
      set(o.names, o.clients);
      break;
  }
  set(o.pipeline, 1);
  if (!o.port_given && o.target == Target::kNetsem) o.port = kNetsemDefaultPort;
  if (!o.port_given && o.target == Target::kRedis) o.port = kRedisDefaultPort;
}

}  // namespace

std::optional<Scenario> parse_scenario(std::string_view text) {
  for (auto s : {Scenario::kCycle1, Scenario::kContended, Scenario::kDurable, Scenario::kSpread, Scenario::kPipelined,
                 Scenario::kSessions, Scenario::kNames, Scenario::kAce}) {
    if (scenario_name(s) == text) return s;
  }
  return std::nullopt;
}

std::string_view scenario_name(Scenario scenario) {
  switch (scenario) {
    case Scenario::kCycle1:
      return "cycle1";
    case Scenario::kContended:
      return "contended";
    case Scenario::kDurable:
      return "durable";
    case Scenario::kSpread:
      return "spread";
    case Scenario::kPipelined:
      return "pipelined";
    case Scenario::kSessions:
      return "sessions";
    case Scenario::kNames:
      return "names";
    case Scenario::kAce:
      return "ace";
  }
  return "?";
}

std::string parse_options(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!arg.starts_with("--")) return "unexpected argument '" + std::string(arg) + "'";
    arg.remove_prefix(2);
    std::optional<std::string_view> inline_value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    const OptionSpec* spec = nullptr;
    for (const auto& candidate : option_table()) {
      if (candidate.name == arg) spec = &candidate;
    }
    if (spec == nullptr) return "unknown option --" + std::string(arg);
    std::string_view value;
    if (!spec->value.empty()) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return "--" + std::string(arg) + " needs a value";
      }
    } else if (inline_value) {
      return "--" + std::string(arg) + " takes no value";
    }
    if (auto error = spec->apply(value, options); !error.empty()) {
      return "--" + std::string(arg) + " " + std::string(value) + ": " + error;
    }
  }
  if (options.help || options.serve_floor) return {};
  apply_defaults(options);
  if (options.scenario == Scenario::kAce && options.target != Target::kNetsem) {
    return "the ace scenario speaks netsemd's ACE dialect: it needs --target netsem";
  }
  if (options.scenario == Scenario::kDurable && options.target != Target::kNetsem) {
    return "the durable scenario WAITs and POSTs a created semaphore, which only netsemd has: it needs --target netsem";
  }
  if (options.target == Target::kRedis &&
      (options.scenario == Scenario::kSessions || options.scenario == Scenario::kNames)) {
    return "the " + std::string(scenario_name(options.scenario)) +
           " scenario does not run against redis (cycle1, contended, spread and pipelined do)";
  }
  const bool pipelines = options.scenario == Scenario::kPipelined || options.scenario == Scenario::kNames;
  if (options.pipeline > 1 && !pipelines) {
    return "--pipeline applies to pipelined and names only (the others wait for each answer)";
  }
  const bool cycles = options.scenario == Scenario::kCycle1 || options.scenario == Scenario::kContended ||
                      options.scenario == Scenario::kSpread || options.scenario == Scenario::kPipelined;
  if (options.queued_off && (options.target != Target::kNetsem || !cycles)) {
    return "--queued off applies to --target netsem in cycle1, contended, spread and pipelined";
  }
  if (options.tls_port != 0 && (options.target != Target::kNetsem || !cycles || options.tls_ca.empty())) {
    return "--tls-port applies to --target netsem in cycle1, contended, spread and pipelined, with --tls-ca";
  }
  if (options.ops != 0 && (options.scenario == Scenario::kSessions || options.scenario == Scenario::kNames)) {
    return "--ops applies to the cycle scenarios and ace (sessions and names count what they make)";
  }
  if (options.scenario == Scenario::kPipelined && options.names < options.clients) {
    return "pipelined needs a name per client (--names >= --clients): a shared name would queue";
  }
  return {};
}

std::string help_text() {
  std::string text =
      "netsem-bench: a load generator for netsemd, in the spirit of redis-benchmark.\n"
      "One thread drives every connection from an epoll loop, so the server is the\n"
      "bottleneck. Loopback only; bounded in time.\n\n"
      "usage: netsem-bench [--target netsem|floor|redis] [--scenario S] [options]\n"
      "       netsem-bench --serve-floor [--host ADDR] [--port N]\n\n"
      "options:\n";
  constexpr std::size_t kIndent = 23;
  constexpr std::size_t kWidth = 80;
  for (const auto& spec : option_table()) {
    std::string left = "  --";
    left += spec.name;
    if (!spec.value.empty()) {
      left += ' ';
      left += spec.value;
    }
    std::string help(spec.help);
    if (!spec.default_text.empty()) {
      help += " [default: ";
      help += spec.default_text;
      help += ']';
    }
    // Word-wrapped into a column, so the help reads in a terminal.
    std::string line = left;
    line.resize(std::max(line.size() + 1, kIndent), ' ');
    std::size_t at = 0;
    while (at < help.size()) {
      std::size_t end = help.find(' ', at);
      if (end == std::string::npos) end = help.size();
      const std::string_view word = std::string_view(help).substr(at, end - at);
      if (line.size() + word.size() > kWidth && line.size() > kIndent) {
        line.back() = '\n';
        text += line;
        line.assign(kIndent, ' ');
      }
      line += word;
      line += ' ';
      at = end + 1;
    }
    line.pop_back();
    text += line + "\n";
  }
  text +=
      "\nscenarios (an op is what ops/s counts; latency is that of the acquire,\n"
      "from sending it to its grant, queueing included):\n"
      "  cycle1     1 client: ACQUIRE then RELEASE of one name, back to back.\n"
      "             op = one cycle (acquire + release, two round trips).\n"
      "  contended  64 clients on --name (limit 10): acquire (queued is fine), hold\n"
      "             for 0, release. op = one cycle.\n"
      "  durable    contended's load on a created semaphore (--name, default\n"
      "             bench.durable, created with --limit when absent): WAIT and POST,\n"
      "             which a server journals (with fsync = always: syncs) where\n"
      "             ACQUIRE and RELEASE of a defined name are not. netsem only.\n"
      "             op = one cycle (wait + post).\n"
      "  spread     64 clients, each on a name of its own. op = one cycle.\n"
      "  pipelined  1 client, --pipeline requests in flight, alternating ACQUIRE and\n"
      "             RELEASE of its own name. op = one cycle (two requests).\n"
      "  sessions   open --clients idle sessions (default 10000), each holding one\n"
      "             permit of a name of its own; reports the server's RSS before and\n"
      "             after, and bytes per session. op = one session opened and granted.\n"
      "  names      CREATE --names semaphores (default 1000000, pipelined), report the\n"
      "             server's RSS and bytes per semaphore, then DELETE them (the\n"
      "             clean-up may run up to 60 s past --seconds). op = one CREATE.\n"
      "  ace        clients speaking ACE's protocol, one connection per acquire:\n"
      "             connect, acquire:NAME|, locked|, release|, ok|, close.\n"
      "             op = one such connection; latency from connect to locked|.\n"
      "\nThe floor (--target floor): a raw epoll echo server with netsemd's shape (one\n"
      "thread, one read and one write per readiness) that answers every request line\n"
      "with one fixed-size line (\"f OK 123456\\n\"). The generator sends it the very\n"
      "same lines, so it measures what the kernel and the loopback alone cost for this\n"
      "traffic. Without --port the bench starts one in a child process for the run and\n"
      "reports its CPU time; or start it yourself with --serve-floor and pass --port\n"
      "and --server-pid.\n"
      "\nRedis (--target redis): a Redis server you started, on --port (default 6379;\n"
      "the bench starts none), running the usual Lua counting-semaphore recipe over\n"
      "the same connections and with the same request pattern: acquire is one\n"
      "EVALSHA of a script that purges expired holders (30 s TTL), counts them and\n"
      "adds this connection's holder id when under the limit; when full, the client\n"
      "waits with BLPOP on the name's notify list (1 s timeout) on the same\n"
      "connection and runs the script again (counted as queued once); release is\n"
      "one EVALSHA that removes the holder and pushes one wake-up token. The limit\n"
      "travels with every acquire: --limit for contended, 1 for the other names.\n"
      "Only cycle1, contended, spread and pipelined run against Redis. The bench\n"
      "loads the scripts once per run and deletes the keys of the names it uses\n"
      "({NAME}:holders, {NAME}:notify) before and after the run.\n"
      "\nServer CPU per op needs --server-pid (netsemd's or redis-server's pid); RSS\n"
      "figures too.\n"
      "The bench raises its own descriptor limit to the hard limit (sessions needs\n"
      "one descriptor per session, and netsemd as many: mind its max_connections).\n";
  return text;
}

std::string loopback_endpoint(std::string_view host, std::uint16_t port, Endpoint& endpoint) {
  const std::string text(host);
  endpoint = Endpoint{};
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    if ((ntohl(v4.s_addr) >> 24) != 127)
      return "refusing " + text + ": netsem-bench loads loopback only (127.0.0.0/8, ::1)";
    auto& address = reinterpret_cast<sockaddr_in&>(endpoint.address);
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr = v4;
    endpoint.length = sizeof(sockaddr_in);
    return {};
  }
  if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&v6)) return "refusing " + text + ": netsem-bench loads loopback only (127.0.0.0/8, ::1)";
    auto& address = reinterpret_cast<sockaddr_in6&>(endpoint.address);
    address.sin6_family = AF_INET6;
    address.sin6_port = htons(port);
    address.sin6_addr = v6;
    endpoint.length = sizeof(sockaddr_in6);
    return {};
  }
  return "refusing '" + text + "': give a numeric loopback address (127.0.0.1 or ::1)";
}

}  // namespace netsem::bench
