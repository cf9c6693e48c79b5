// netsem-bench's command line: one table of options (name, value, default,
// help) from which the parser and --help are both made, the scenarios and
// their defaults, and the loopback-only rule for the address.
//
// Plain values and functions: safe from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connection.h"
#include "wire.h"

namespace netsem::bench {

enum class Scenario : std::uint8_t { kCycle1, kContended, kDurable, kSpread, kPipelined, kSessions, kNames, kAce };
std::optional<Scenario> parse_scenario(std::string_view text);
std::string_view scenario_name(Scenario scenario);

struct Options {
  Target target = Target::kNetsem;
  Scenario scenario = Scenario::kCycle1;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: netsem's or redis's default port, or a floor server started for the run
  bool port_given = false;
  std::uint64_t clients = 0;             // 0 until defaults are applied
  std::uint64_t pipeline = 0;            // requests in flight per connection
  std::uint64_t names = 0;               // distinct names (the names scenario: semaphores to create)
  std::string name = "bench.contended";  // contended's semaphore (durable's: bench.durable unless given)
  bool name_given = false;
  std::int64_t limit = 10;       // contended's (and durable's) limit when the bench creates the name
  std::string prefix = "bench";  // of every other name the bench uses
  double seconds = 5;
  std::uint64_t ops = 0;    // 0: none; else the measured window ends after this many ops
  bool queued_off = false;  // netsem: every connection sends `OPTION queued off` first (protocol 1.1)
  // netsem: the load's connections go to this TLS port (tls_port) and speak
  // TLS, verifying the server against tls_ca; setup stays on --port. 0: off.
  std::uint16_t tls_port = 0;
  std::string tls_ca;
  double warmup = 1;
  pid_t server_pid = 0;  // 0: not given
  // --server-pid's further pids (a cluster's other servers): their CPU time
  // is added to server_pid's; RSS stays server_pid's alone.
  std::vector<pid_t> more_server_pids;
  bool json = false;
  bool serve_floor = false;
  bool help = false;
};

// Parses argv into `options` and fills the per-scenario defaults. Returns
// an empty string, or what is wrong with the command line.
std::string parse_options(int argc, char** argv, Options& options);

// The --help text, made from the option table.
std::string help_text();

// Resolves a numeric loopback address (127.0.0.0/8 or ::1) and port into
// `endpoint`. Returns an empty string, or why the host is refused: the
// generator never loads a machine other than its own.
std::string loopback_endpoint(std::string_view host, std::uint16_t port, Endpoint& endpoint);

}  // namespace netsem::bench
