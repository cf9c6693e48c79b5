// The `netsem` command-line tool's internals, shared by its files: main.cc
// parses the command line with the table of subcommands (subcommands.h),
// whose rows fill the option structs below and call one *_command function;
// run_command.cc holds `run`; inspect_commands.cc stats, holders, waiters,
// sessions and kick; commands.cc the others; client_setup.cc builds the Client from file, environment
// and flags and maps a Status to an exit code. Each *_command function returns the process's exit code and has written
// every error to stderr, prefixed "netsem: ".
//
// Thread safety: single-threaded use from main(); only the Client the
// commands create runs a thread of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/client.h"
#include "netsem/client_options.h"
#include "netsem/status.h"

namespace netsem::cli {

// The exit codes, from sysexits.h where one fits, so that scripts and
// supervisors can tell "try later" from "broken". kExitCodes documents them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;             // the server refused: NOT_FOUND, OVERFLOW, BUSY, EXISTS, ...
inline constexpr int kExitUsage = 2;              // bad command line, options or configuration
inline constexpr int kExitAbsent = 3;             // `get`: NAME is no semaphore (kind absent)
inline constexpr int kExitUnavailable = 69;       // EX_UNAVAILABLE: no server, and the command needs one
inline constexpr int kExitPermitsLost = 70;       // EX_SOFTWARE: `run` lost its permits while CMD ran
inline constexpr int kExitOsError = 71;           // EX_OSERR: this process out of descriptors or memory (kIoError)
inline constexpr int kExitTimeout = 75;           // EX_TEMPFAIL: the permits did not come in time, or LIMIT
inline constexpr int kExitProtocol = 76;          // EX_PROTOCOL: the server does not speak protocol v1
inline constexpr int kExitDenied = 77;            // EX_NOPERM: the server refused this host (DENIED, AUTH)
inline constexpr int kExitCannotExecute = 126;    // `run`: CMD exists but cannot be executed
inline constexpr int kExitCommandNotFound = 127;  // `run`: CMD not found

struct ExitCodeDoc {
  int code;
  std::string_view meaning;
};
// Every exit code with its meaning, for --help and the documentation test.
// `run` adds: otherwise CMD's own status, 128+N when a signal N killed it.
inline constexpr ExitCodeDoc kExitCodes[] = {
    {kExitOk, "success"},
    {kExitFailed, "the operation failed (NOT_FOUND, OVERFLOW, BUSY, EXISTS, TOO_MANY, ...)"},
    {kExitUsage, "bad usage: unknown subcommand, missing or malformed argument, bad configuration"},
    {kExitAbsent, "get: NAME is no semaphore (kind absent; the row is printed all the same)"},
    {kExitUnavailable, "server unavailable: none reachable and the fallback policy is fail, or the command needs it"},
    {kExitPermitsLost, "run: the permits were lost while CMD ran (connection lost, server shut down)"},
    {kExitOsError,
     "this host, not the server: netsem is out of file descriptors or memory (try later), or cannot use its local_dir"},
    {kExitTimeout,
     "timeout: the permits were not granted in time; or a server limit (LIMIT: the server is full): try later"},
    {kExitProtocol, "the server answered in a protocol this netsem does not speak (or 1.0, for a 1.1 subcommand)"},
    {kExitDenied,
     "the server refused this host: not in its allowed_networks, or it requires authentication; kick: no admin right"},
    {kExitCannotExecute, "run: CMD was found but cannot be executed"},
    {kExitCommandNotFound, "run: CMD was not found"},
};

// The --help footer: the exit-code table, of every code for an empty
// `subcommand` (netsem --help), else of the codes that subcommand can return:
// 0, 1 and 2 every one; 3 only get; 70, 126 and 127 only run; those of
// connecting and of the servers' answers (69, 71, 75, 76, 77) every one but
// local, which asks no server.
std::string exit_code_help(std::string_view subcommand = {});

// Options every subcommand takes.
struct GlobalOptions {
  std::vector<std::string> servers;  // --server, each "host:port"; empty: from config/env
  std::string fallback;              // --fallback; empty: from config/env
  std::string config_file;           // --config; empty: $NETSEM_CONFIG
  std::string label;                 // --label; empty: $NETSEM_LABEL, [client] label, host/pid/program
  std::string token_file;            // --token-file; empty: $NETSEM_TOKEN_FILE, $NETSEM_TOKEN, [client]
  // TLS (docs/cli.md, "TLS"): --tls turns it on; the files and the name
  // override NETSEM_TLS_* and [client] tls_*; empty: not given.
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  int verbosity = 0;  // -v count
};

struct RunOptions {
  std::string name;
  std::int64_t count = 1;
  std::optional<std::chrono::milliseconds> timeout;  // absent: wait for ever
  std::chrono::milliseconds grace{5000};             // SIGTERM to SIGKILL after a loss
  std::int64_t conflict_exit_code = 75;              // -E: the permits did not come in time
  std::vector<std::string> command;                  // CMD ARGS..., never empty
};

struct StatusOptions {
  std::string prefix;
  bool json = false;
};

struct GetOptions {
  std::string name;
  bool json = false;
};

struct CountOptions {  // post and wait
  std::string name;
  std::int64_t count = 1;
  std::optional<std::chrono::milliseconds> timeout;  // wait only
};

struct CreateOptions {
  std::string name;
  std::int64_t value = 0;
  std::optional<std::int64_t> max;  // absent: max = value, as on the wire
  bool exclusive = false;
};

int run_command(const GlobalOptions& global, const RunOptions& options);
int status_command(const GlobalOptions& global, const StatusOptions& options);
int get_command(const GlobalOptions& global, const GetOptions& options);
int post_command(const GlobalOptions& global, const CountOptions& options);
int wait_command(const GlobalOptions& global, const CountOptions& options);
int create_command(const GlobalOptions& global, const CreateOptions& options);
int delete_command(const GlobalOptions& global, const std::string& name);
int ping_command(const GlobalOptions& global);

// --- client_setup.cc ---

// ClientOptions from the configuration file (--config, else $NETSEM_CONFIG),
// then NETSEM_SERVER, NETSEM_FALLBACK and NETSEM_LABEL, then the flags: each
// later source overrides the earlier ones.
Result<ClientOptions> make_client_options(const GlobalOptions& global);

// A connected-or-falling-back Client, its options (for messages), or the
// exit code to return (the error is printed).
struct Connection {
  std::unique_ptr<Client> client;
  ClientOptions options;
  int failure = kExitOk;  // non-zero when client is null
  // When connect() began, before the Client was made: a command's -t counts
  // from here (timeout_left).
  std::chrono::steady_clock::time_point started;
};
// `sessionless`: the Client's connection opens no session
// (ClientOptions::sessionless), for netsem cluster.
Connection connect(const GlobalOptions& global, bool sessionless = false);

// What is left now of a command's -t (`timeout`), which counts from
// connection.started: the first round of connection attempts, up to the
// connect timeout per listed server, is part of the wait. Absent stays
// absent (wait for ever) and zero stays a try; a positive -t that round
// (nearly) used up leaves a last look of 0.1 s (-t itself when shorter), so
// that the call still ends with the same timeout, in the same words, as one
// that ran out while waiting (with less it might run out before it waits,
// and say no more than "timed out").
std::optional<std::chrono::milliseconds> timeout_left(const Connection& connection,
                                                      std::optional<std::chrono::milliseconds> timeout);

// The servers a message should name as tried: "a:1, b:2".
std::string servers_text(const ClientOptions& options);
// What a message about an unreachable server puts in parentheses: why each
// server failed in the client's last round of attempts ("a:1: Connection
// refused"), or "servers: a:1, b:2" when the client has no reason yet.
std::string unreachable_text(const Connection& connection);

// For the commands that report on the server (no fallback): kExitOk when
// connected; else the error is printed (a server's refusal, "WHAT: no server
// reachable (...)", or for silent servers, after request_timeout, "WHAT:
// server ... accepted the connection but has not answered ...") and its exit
// code returned.
int require_server(const Connection& connection, std::string_view what);

// The exit code for a failed call's status.
int exit_code_for(const Status& status);

// Writes "netsem: <message>\n" to stderr.
void print_error(std::string_view message);
// "1 permit", "2 permits".
std::string counted(std::uint64_t n, std::string_view one, std::string_view many);
// Columns in a terminal: code points, not bytes, of UTF-8 `text`.
std::size_t display_width(std::string_view text);
// An aligned table, two spaces between columns, the last column unpadded;
// rows.front() is the header.
std::string aligned_table(const std::vector<std::vector<std::string>>& rows);
// "[\n {...},\n {...}\n]\n", or "[]\n": `objects` are JSON objects.
std::string json_array(const std::vector<std::string>& objects);
// Writes `text` to stdout as it is (the commands' results).
void print(const std::string& text);
// `text` as a JSON string literal, quotes included: `"` and `\` escaped,
// control bytes as \u00XX, other bytes as they are (names and labels are
// UTF-8 by the protocol).
std::string json_string(std::string_view text);

// Whether a command may serve a name by the host-local fallback while no
// server is reachable: run, wait and post may (docs/cli.md), the others never.
enum class Fallback { kNever, kMay };

// Reports a failed call on stderr (the library's message, which names the
// request, the semaphore and the server's code, or says in plain words why a
// server refused this host), naming the servers tried when none was
// reachable or several were listed, and returns its exit code. Silent
// servers (unanswered_by_silent_servers) are said once: the message names
// them, and the servers tried follow only when several were listed (what
// the others did); "so no fallback" only for a command that `may` fall back.
int report_failure(const Connection& connection, const Status& status, Fallback may = Fallback::kNever);

// Whether a failed call got no answer because the servers accepted the
// connection and did not answer (silent: a frozen server, a cluster electing
// a leader; ClientStats::silent) and the call's own bound ran out: "not an
// outage, so no fallback". A try (-t 0) ends so after request_timeout.
bool unanswered_by_silent_servers(const Client& client, const Status& status);

// "no answer to the try for 1 permit of NAME: server ... accepted the
// connection but has not answered within 10000 ms: ...", from the message of
// the try (`verb` ACQUIRE or WAIT) that silent servers left unanswered.
std::string describe_unanswered_try(std::string_view verb, std::string_view name, std::int64_t count,
                                    const Status& why);

// "timed out after 2 s waiting for 1 permit of NAME", followed by what GET
// says of NAME now (timeout_detail) when it can be had, with the permits
// held counted from HOLDERS when the server speaks 1.1; without a session,
// by the reason the timeout `why` gives (silent servers), if any.
std::string describe_timeout(Client& client, std::string_view name, std::int64_t count,
                             std::optional<std::chrono::milliseconds> timeout, const Status& why);

// Why permits are missing, from GET's `info` and, when known, the permits
// sessions hold (`held`, the sum of HOLDERS' counts): "0 of 6 free: 6
// consumed by WAIT, 0 held; 0 requests waiting", "0 of 1 free: 1 held by 1
// session; 2 requests waiting". Without `held` (a 1.0 server) only what is
// known: the holding sessions, and as a bound what WAIT may have consumed
// (no holder: all that is missing). For kind "local", the kernel's counts:
// permits held on this host and processes waiting.
std::string timeout_detail(const SemaphoreInfo& info, std::optional<std::int64_t> held);

// Whether the 1.1 listings (HOLDERS, WAITERS) can be asked about `name`: the
// client is connected to a server whose HELLO answer named protocol 1.1 or
// a later 1.x, and `name` is not host-local (`$`). A 1.0 server would refuse
// them; a host-local or fallback name has no server to ask.
bool listings_served(const ClientStats& stats, std::string_view name);

// Tells the user, on stderr, that NAME was served by the host-local fallback
// semaphore because no server could be reached: other hosts are then not
// counted, which whoever runs the command must know.
void warn_local_fallback(const Connection& connection, std::string_view name);

// Parses a whole number written in decimal digits only, from `min` to `max`:
// leading zeros are allowed and change nothing ("010" is ten); a sign, a
// base prefix ("0x10"), an exponent or any other character is not.
// REQUIRES: 0 <= min <= max.
std::optional<std::int64_t> parse_decimal(std::string_view text, std::int64_t min, std::int64_t max);

// "0.5 s", "5 s".
std::string seconds_text(std::chrono::milliseconds duration);

}  // namespace netsem::cli
