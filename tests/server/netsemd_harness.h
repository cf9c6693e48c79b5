// Test harness for integration tests: starts the real netsemd binary on a
// free 127.0.0.1 port with a generated configuration in a temporary
// directory, and talks to it over real sockets with a blocking client that
// never waits without a deadline; Frozen keeps one stopped for a scope.
//
// Thread safety: one object per test thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::testing {

using namespace std::chrono_literals;

// A scratch directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A running netsemd. The destructor kills it (SIGKILL) if it still runs.
class Netsemd {
 public:
  struct Options {
    std::string server_options;  // extra `key = value` lines for [server]
    std::string semaphores;      // body of [semaphores]
    // A complete configuration file instead of the generated one; `@DIR@` is
    // replaced by the working directory and `@PORT@` by 0.
    std::string raw_config;
    // Data and stats directory; by default a fresh one under the temp dir.
    std::filesystem::path data_dir;
    // The port to listen on (for restarts on the same address); 0 picks a
    // free one. `@PORT@` in raw_config is replaced by it.
    std::uint16_t port = 0;
    // RLIMIT_NOFILE of the server (soft, hard) when not 0: the child sets it
    // before exec, as `ulimit -n` would.
    std::uint64_t nofile_soft = 0;
    std::uint64_t nofile_hard = 0;
    // More netsemd flags after `--config FILE` (e.g. "--repair").
    std::vector<std::string> extra_args;
    // More environment variables of the server ("NAME=value").
    std::vector<std::string> env;
  };

  // Starts netsemd and waits (at most 10 s) until it listens. On failure
  // returns nullptr and puts the reason (with the server's log) in `error`.
  static std::unique_ptr<Netsemd> start(const Options& options, std::string* error = nullptr);
  ~Netsemd();

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  const std::filesystem::path& config_path() const { return config_path_; }
  // Rewrites the configuration file (for SIGHUP tests) from `options`.
  void rewrite_config(const Options& options);
  void send_signal(int signal);
  // Waits for the process to exit; returns its wait status, or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = 10s);
  // Everything the server logged so far.
  std::string log() const;
  // Waits until the log contains `text`.
  bool wait_for_log(std::string_view text, std::chrono::milliseconds timeout = 5s) const;

 private:
  Netsemd() = default;
  std::unique_ptr<TempDir> dir_;
  std::filesystem::path data_dir_;
  std::filesystem::path config_path_;
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  bool exited_ = false;
};

// Renders a configuration file for `options` with `port` (0 = any).
std::string render_config(const Netsemd::Options& options, const std::filesystem::path& data_dir, std::uint16_t port);

// `server` frozen (SIGSTOP) until the guard goes (SIGCONT), however the test
// ends: its kernel still accepts connections and keeps what clients write,
// so to them it is silent, not an outage (docs/client.md, "A server that
// accepts and does not answer"). A test may wake it earlier with
// send_signal(SIGCONT); the guard's is then harmless.
class Frozen {
 public:
  explicit Frozen(Netsemd& server) : server_(server) { server_.send_signal(SIGSTOP); }
  ~Frozen() { server_.send_signal(SIGCONT); }
  Frozen(const Frozen&) = delete;
  Frozen& operator=(const Frozen&) = delete;

 private:
  Netsemd& server_;
};

// A blocking TCP client with deadlines on every read.
class Client {
 public:
  // Connects to 127.0.0.1:port (or `host`, IPv4 or IPv6); nullptr on failure. A
  // `receive_buffer` > 0 sets SO_RCVBUF before connecting, so that a test
  // can make the server's writes to a peer that does not read block early.
  static std::unique_ptr<Client> connect(std::uint16_t port, const char* host = "127.0.0.1", int receive_buffer = 0);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends raw bytes (all of them, or the test fails).
  void send(std::string_view bytes);
  // Sends `line` + "\n".
  void send_line(std::string_view line);
  // The next line without its "\n"; nullopt on timeout or end of stream.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = 3s);
  // send_line + read_line.
  std::string request(std::string_view line, std::chrono::milliseconds timeout = 3s);
  // Whatever arrives within `timeout` (for ACE tokens: returns after the first read).
  std::string read_some(std::chrono::milliseconds timeout = 3s);
  // True when the server closes the connection within `timeout` (buffered
  // and newly read bytes are discarded into `rest` if given).
  bool wait_closed(std::chrono::milliseconds timeout = 3s, std::string* rest = nullptr);
  // True when nothing arrives within `timeout`.
  bool quiet_for(std::chrono::milliseconds timeout);
  void shutdown_write();
  // Closes with an RST (SO_LINGER 0).
  void reset();
  int fd() const { return fd_; }
  // The client's own end, as the server writes a peer: "127.0.0.1:40112",
  // "[::1]:40112".
  std::string local_peer() const;

 private:
  explicit Client(int fd) : fd_(fd) {}
  // Reads once into buffer_ waiting at most `timeout`; false on timeout/EOF.
  bool fill(std::chrono::milliseconds timeout);
  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

// Splits `text` on single spaces.
std::vector<std::string> fields(std::string_view text);

// Options with `lines` as extra [server] lines, or `body` as [semaphores].
Netsemd::Options with_server_options(std::string lines);
Netsemd::Options with_semaphores(std::string body);
// Netsemd::start, failing the current test (with the server's log) when the
// server does not come up.
std::unique_ptr<Netsemd> start_server(const Netsemd::Options& options = {});
// A netsemd with max_connections = 1 whose one session is `holder` (it has
// answered a PING), so that the next peer is refused with LIMIT. Either
// member is null (and the test failed) when that could not be set up.
struct FullServer {
  std::unique_ptr<Netsemd> server;
  std::unique_ptr<Client> holder;
};
FullServer start_full_server();
// The fence of an `<tag> OK <fence>` answer (a test failure otherwise).
std::uint64_t fence_of(const std::string& answer);
// The server's connections_total (connections accepted as sessions) from a
// STATS answer; -1 when it has none.
std::int64_t connections_total(const std::string& stats_answer);
// Sends `request` until the answer is `expected` (state that changes a
// moment after an event, e.g. a close the server sees later) or `timeout`
// passes; returns the last answer.
std::string await_answer(Client& client, std::string_view request, std::string_view expected,
                         std::chrono::milliseconds timeout = 3s);
// Sets a resource limit (RLIMIT_FSIZE, RLIMIT_NOFILE, ...) of a running
// process, as prlimit(1) does: the soft limit to `value` (at most the hard
// one), the hard one to `value` when it is lower; false when that fails.
// RLIMIT_FSIZE at a file's size makes every write past it fail (EFBIG), as
// on a full disk.
bool set_limit(pid_t pid, int resource, std::uint64_t value);
// A whole file's text ("" when it cannot be read).
std::string read_text(const std::filesystem::path& path);

}  // namespace netsem::testing
