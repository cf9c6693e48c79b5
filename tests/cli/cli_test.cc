// End-to-end tests of the `netsem` command-line tool: the built binary run as
// a child process against the real netsemd on a loopback port (see
// tests/server/netsemd_harness.h), with its exit code, stdout and stderr
// checked. The harness's raw protocol client plays "another process" (a
// holder, an observer). Also checks that docs/cli.md documents every
// subcommand, exit code and JSON field the tool has.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "netsemd_harness.h"
#include "protocol/requests.h"
#include "support/doc_tables.h"
#include "support/free_port.h"
#include "support/line_server.h"
#include "support/request_lines.h"
#include "tcp_proxy.h"

namespace netsem::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool eventually(const std::function<bool()>& condition, milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

// The System V semaphores of host-local names outlive the registry under
// `local_dir`; gives them back to the host.
void remove_local_semaphores(const std::filesystem::path& local_dir) {
  std::error_code ignored;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(local_dir, ignored)) {
    std::istringstream lines(read_text(entry.path()));
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("id ", 0) == 0) ::semctl(std::stoi(line.substr(3)), 0, IPC_RMID);
    }
  }
}

// `first` followed by `then`: a command line put together from its parts.
// The exit codes listed under "Exit codes:" in a --help (`  0  success`,
// ...), in its order, as "0 1 2 69".
std::string exit_codes_of_help(const std::string& help) {
  const auto at = help.find("Exit codes:\n");
  if (at == std::string::npos) return "(no \"Exit codes:\")";
  static const std::regex kCode(R"(\n +([0-9]+)  )");
  const std::string footer = help.substr(at);
  std::string codes;
  for (std::sregex_iterator it(footer.begin(), footer.end(), kCode), end; it != end; ++it) {
    codes += (codes.empty() ? "" : " ") + (*it)[1].str();
  }
  return codes;
}

std::vector<std::string> joined(std::vector<std::string> first, const std::vector<std::string>& then) {
  first.insert(first.end(), then.begin(), then.end());
  return first;
}

// A command for `netsem run` that prints "ready" once it runs, then sleeps
// `sleep` seconds: sh -c, with `before` run first (a trap, a pid written).
std::vector<std::string> ready_then_sleep(const std::string& before = "", int sleep = 30) {
  return {"sh", "-c", before + "echo ready; exec sleep " + std::to_string(sleep)};
}

// What `netsem run NAME -- sh ...` says on stderr when it loses the permit
// of beta and sends SIGTERM to sh: `cause` and `after` are regular
// expressions, `after` what follows once the command was told.
std::regex lost_permit_of_beta(const std::string& cause, const std::string& after = "") {
  return std::regex("netsem: lost the permit of beta while sh ran: " + cause + "; sent SIGTERM to sh \\(pid [0-9]+\\)" +
                    after + "\n");
}

// Every test gets a fresh server with two defined semaphores.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(start_netsemd("", "alpha = 3\nbeta = 1\n"));
    observer_ = Client::connect(server_->port());
    ASSERT_TRUE(observer_);
  }
  void TearDown() override {
    for (const auto& local_dir : local_dirs_) remove_local_semaphores(local_dir);
  }

  // Starts the test's server (in place of the running one, if any; the
  // observer stays connected to the first).
  void start_netsemd(const std::string& server_options, const std::string& semaphores) {
    Netsemd::Options options;
    options.server_options = server_options;
    options.semaphores = semaphores;
    std::string error;
    server_ = Netsemd::start(options, &error);
    ASSERT_TRUE(server_) << error;
  }
  // The server of the tests where a session's lease matters: T = 2 s, beta = 1.
  void start_netsemd_with_short_sessions() { start_netsemd("session_timeout_ms = 2000", "beta = 1"); }

  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  std::string server_env() const { return "NETSEM_SERVER=" + address(); }
  static std::string dead_address() { return "127.0.0.1:" + std::to_string(test_support::free_port_below_ephemeral()); }

  // A client configuration file, <name>.ini in the test's directory, that
  // lists `servers` (when not empty) and keeps its host-local semaphores in
  // a directory of its own, <name>/, given back to the host after the test;
  // `more` is more lines of [client] ("connect_timeout_ms = 2000\n").
  std::filesystem::path local_config(const std::string& servers = "", const std::string& name = "local",
                                     const std::string& more = "") {
    const auto local_dir = dir_.path() / name;
    const auto config = dir_.path() / (name + ".ini");
    write_text(config, "[client]\n" + (servers.empty() ? "" : "servers = " + servers + "\n") +
                           "local_dir = " + local_dir.string() + "\n" + more);
    local_dirs_.push_back(local_dir);
    return config;
  }

  Outcome netsem(const std::vector<std::string>& args) { return Cli(args, {server_env()}).finish(); }

  // The server's GET answer for `name`, without the tag: "OK value max holders waiters kind".
  std::string get(const std::string& name) {
    std::string line;
    protocol::encode_get(line, "g", name);
    observer_->send(line);
    const std::string answer = observer_->read_line().value_or("no answer");
    return answer.rfind("g ", 0) == 0 ? answer.substr(2) : answer;
  }
  // Whether get(`name`) answers `expected` within 5 s; the last answer if not.
  ::testing::AssertionResult get_becomes(const std::string& name, const std::string& expected) {
    std::string last;
    if (eventually([&] { return (last = get(name)) == expected; })) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "GET " << name << " answers \"" << last << "\", not \"" << expected << "\"";
  }

  std::unique_ptr<Netsemd> server_;
  std::unique_ptr<Client> observer_;  // another process, as far as the server can tell
  TempDir dir_;
  std::vector<std::filesystem::path> local_dirs_;  // of local_config()
};

class CliRun : public CliTest {};
class CliStatus : public CliTest {};
class CliCommands : public CliTest {};
class CliUsage : public CliTest {};
class CliServers : public CliTest {};

TEST_F(CliRun, PassesTheCommandsExitStatusThrough) {
  const struct {
    std::vector<std::string> command;
    int exit_code;
  } kCases[] = {
      {{"true"}, 0},
      {{"false"}, 1},
      {{"sh", "-c", "exit 3"}, 3},
      {{"sh", "-c", "kill -TERM $$"}, 128 + SIGTERM},
      {{"sh", "-c", "kill -KILL $$"}, 128 + SIGKILL},
      {{"no-such-command-for-netsem-test"}, 127},
      {{"/dev/null"}, 126},
  };
  for (const auto& test : kCases) {
    const Outcome outcome = netsem(joined({"run", "beta", "--"}, test.command));
    EXPECT_EQ(outcome.exit_code, test.exit_code) << test.command.front() << "\n" << outcome;
    if (test.exit_code == 126 || test.exit_code == 127) {
      EXPECT_EQ(outcome.err.rfind("netsem: cannot run ", 0), 0u) << outcome;
    }
  }
  EXPECT_EQ(get("beta"), "OK 1 1 0 0 defined");  // every permit came back
}

TEST_F(CliRun, EveryWordAfterNameIsTheCommandWithOrWithoutDashDash) {
  // As with flock(1): CMD's own options reach CMD, even those netsem has.
  const struct {
    std::vector<std::string> command;
    int exit_code;
    std::string out;
  } kCases[] = {
      {{"sh", "-c", "exit 3", "-n"}, 3, ""},
      {{"echo", "-n", "hi"}, 0, "hi"},
      {{"ls", "-d", "/"}, 0, "/\n"},
      {{"sh", "-c", "echo \"$*\"", "sh", "-n", "2", "-t", "0", "--server", "x", "-v", "--help", "--", "get"},
       0,
       "-n 2 -t 0 --server x -v --help -- get\n"},
  };
  for (const bool dash_dash : {false, true}) {
    for (const auto& test : kCases) {
      const Outcome outcome = netsem(
          joined(dash_dash ? std::vector<std::string>{"run", "beta", "--"} : std::vector<std::string>{"run", "beta"},
                 test.command));
      EXPECT_EQ(outcome.exit_code, test.exit_code) << dash_dash << " " << test.command.front() << "\n" << outcome;
      EXPECT_EQ(outcome.out, test.out) << outcome;
      EXPECT_EQ(outcome.err, "") << outcome;
    }
  }
  EXPECT_EQ(get("beta"), "OK 1 1 0 0 defined");
}

TEST_F(CliRun, ReadsOptionsAnywhereBeforeTheCommand) {
  // Run's options and the global ones, before or after NAME, are netsem's
  // (issue 12 item 3: `netsem run x --timeout 1 true` ran `--timeout`).
  const std::string get_alpha = R"({"name":"alpha","kind":"defined","value":1,"max":3,"holders":1,"waiters":0})"
                                "\n";
  for (const std::vector<std::string>& args : {
           std::vector<std::string>{"run", "-n", "2", "-t", "5", "alpha", NETSEM_CLI_PATH, "get", "--json", "alpha"},
           std::vector<std::string>{"run", "alpha", "-n", "2", "-t", "5", NETSEM_CLI_PATH, "get", "--json", "alpha"},
           std::vector<std::string>{"run", "-n", "2", "alpha", "--timeout=5", "--", NETSEM_CLI_PATH, "get", "--json",
                                    "alpha"},
           std::vector<std::string>{"run", "alpha", "-n2", "-t5", NETSEM_CLI_PATH, "get", "--json", "alpha"},
       }) {
    const Outcome outcome = netsem(args);
    ASSERT_EQ(outcome.exit_code, 0) << args[1] << "\n" << outcome;
    EXPECT_EQ(outcome.out, get_alpha) << outcome;
  }
  Outcome outcome = netsem({"run", "beta", "--timeout", "1", "true"});
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.err, "") << outcome;
  // A global option after NAME too.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"run", "--server", address(), "beta", "true"},
        std::vector<std::string>{"run", "beta", "--server", address(), "true"}}) {
    outcome = Cli(args, {"NETSEM_SERVER=" + dead_address()}).finish();
    EXPECT_EQ(outcome.exit_code, 0) << outcome;
  }
  // A NAME starting with '-' comes after `--`; a second `--` may then mark CMD.
  for (const std::vector<std::string>& args : {std::vector<std::string>{"run", "--", "-odd", "--", "true"},
                                               std::vector<std::string>{"run", "-t", "5", "--", "-odd", "true"},
                                               std::vector<std::string>{"run", "--", "-odd", "-t", "5", "true"}}) {
    outcome = netsem(args);
    EXPECT_EQ(outcome.exit_code, 0) << outcome;
    EXPECT_EQ(outcome.err, "") << outcome;
  }
  // After `--`, a CMD that starts with '-' is CMD.
  outcome = netsem({"run", "beta", "--", "--timeout", "1"});
  EXPECT_EQ(outcome.exit_code, 127) << outcome;
  EXPECT_EQ(outcome.err, "netsem: cannot run --timeout: No such file or directory\n") << outcome;
  // An option netsem does not know, after NAME, is a usage error, not CMD.
  const struct {
    std::vector<std::string> args;
    std::string err;
  } kBad[] = {
      {{"run", "beta", "--bogus", "true"},
       "netsem: run: unknown option --bogus after NAME; CMD's own options follow CMD, and a CMD that starts with "
       "'-' follows '--': netsem run [OPTIONS] NAME [--] CMD [ARGS...]\n"},
      {{"run", "beta", "--timout", "1", "true"},
       "netsem: run: unknown option --timout after NAME (did you mean "
       "--timeout?); CMD's own options follow CMD"},
      {{"run", "beta", "-t", "1", "-q", "true"}, "netsem: run: unknown option -q after NAME;"},
      {{"run", "beta", "-c"}, "netsem: run: -c takes one word, the shell command, and comes last"},
      {{"run", "beta", "-c", "true", "false"}, "netsem: run: -c takes one word, the shell command, and comes last"},
      {{"run", "beta", "-t", "x", "true"}, "netsem: --timeout: must be a duration like 500ms"},
      {{"run", "beta", "-n"}, "netsem: run: -n needs a value, and CMD is required: netsem run [OPTIONS] NAME"},
      {{"run", "beta", "--timeout"}, "netsem: run: --timeout needs a value, and CMD is required"},
      {{"run", "beta", "--timeout="}, "netsem: run: --timeout needs a value, and CMD is required"},
      {{"run", "beta", "-t", "1", "-E"}, "netsem: run: -E needs a value, and CMD is required"},
      {{"run", "beta", "-vn"}, "netsem: run: -n needs a value, and CMD is required"},
  };
  for (const auto& test : kBad) {
    outcome = netsem(test.args);
    EXPECT_EQ(outcome.exit_code, 2) << test.args[2] << "\n" << outcome;
    EXPECT_EQ(outcome.err.rfind(test.err, 0), 0u) << outcome;
  }
  EXPECT_EQ(get("beta"), "OK 1 1 0 0 defined");
}

TEST_F(CliRun, TakesFlocksOptions) {
  // -c 'shell string' after NAME, as `flock FILE -c STRING`.
  Outcome outcome = netsem({"run", "beta", "-c", "echo \"$0 ran\"; exit 4"});
  EXPECT_EQ(outcome.exit_code, 4) << outcome;
  EXPECT_NE(outcome.out.find(" ran\n"), std::string::npos) << outcome;
  // flock's shell: $SHELL, else /bin/sh.
  const char* shell = std::getenv("SHELL");
  outcome = netsem({"run", "beta", "-t", "5", "--command", "echo \"$0\""});
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out, std::string(shell != nullptr && *shell != '\0' ? shell : "/bin/sh") + "\n") << outcome;
  // Before NAME, -c is still netsem's --config.
  const auto config = local_config(address());
  outcome = Cli({"run", "-c", config.string(), "beta", "true"}, {"NETSEM_SERVER=" + dead_address()}).finish();
  EXPECT_EQ(outcome.exit_code, 0) << outcome;

  // While another process holds beta: -E sets the exit code of a timeout;
  // -w, --wait and --nonblock are flock's --timeout and -n.
  ASSERT_EQ(observer_->request(req::acquire("a", "beta")).rfind("a OK ", 0), 0u);
  const auto marker = dir_.path() / "ran";
  const struct {
    std::vector<std::string> options;
    int exit_code;
    std::string err;
  } kCases[] = {
      {{"--nonblock"}, 75, "netsem: run: timed out after 0 s waiting for 1 permit of beta: 0 of 1 free"},
      {{"-E", "3", "--nonblock"}, 3, "netsem: run: timed out after 0 s waiting for 1 permit of beta"},
      {{"--conflict-exit-code=0", "-w", "100ms"}, 0, "netsem: run: timed out after 0.1 s waiting"},
      {{"-w", "0.2", "-E", "9"}, 9, "netsem: run: timed out after 0.2 s waiting"},
      {{"--wait", "150ms"}, 75, "netsem: run: timed out after 0.15 s waiting"},
  };
  for (const bool after_name : {false, true}) {
    for (const auto& test : kCases) {
      const std::vector<std::string> args =
          after_name ? joined(joined({"run", "beta"}, test.options), {"touch", marker.string()})
                     : joined(joined({"run"}, test.options), {"beta", "touch", marker.string()});
      const auto start = Clock::now();
      outcome = netsem(args);
      EXPECT_EQ(outcome.exit_code, test.exit_code) << test.options.front() << "\n" << outcome;
      EXPECT_EQ(outcome.err.rfind(test.err, 0), 0u) << outcome;
      if (test.err.find("after 0.1") != std::string::npos) {
        EXPECT_GE(outcome.ended - start, milliseconds(100));
      }
      EXPECT_FALSE(std::filesystem::exists(marker));
    }
  }
  for (const std::vector<std::string>& args : {std::vector<std::string>{"run", "--nonblock", "-t", "5", "beta", "true"},
                                               std::vector<std::string>{"run", "-E", "256", "beta", "true"},
                                               std::vector<std::string>{"run", "-E", "-1", "beta", "true"}}) {
    outcome = netsem(args);
    EXPECT_EQ(outcome.exit_code, 2) << args[1] << "\n" << outcome;
    EXPECT_EQ(outcome.err.rfind("netsem: ", 0), 0u) << outcome;
  }
}

TEST_F(CliRun, VerboseSaysHowLongGettingThePermitsTook) {
  Outcome outcome = netsem({"-v", "run", "-n", "2", "alpha", "true"});
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_TRUE(std::regex_search(
      outcome.err,
      std::regex("(^|\n)netsem: getting the 2 permits of alpha took [0-9]+\\.[0-9]{6} seconds; fence [1-9]")))
      << outcome;
  EXPECT_NE(outcome.err.find("\nnetsem: executing true\n"), std::string::npos) << outcome;
  // Without -v, nothing.
  outcome = netsem({"run", "alpha", "true"});
  EXPECT_EQ(outcome.err, "") << outcome;
}

TEST_F(CliRun, TheCommandGetsThePermitInItsEnvironment) {
  const std::string kShow =
      "echo \"${NETSEM_NAME-unset} ${NETSEM_COUNT-unset} ${NETSEM_FENCE-unset} "
      "${NETSEM_LOCAL-unset}\"";
  // Those of an outer run are replaced, not inherited.
  Outcome outcome = Cli({"run", "-n", "2", "alpha", "sh", "-c", kShow},
                        {server_env(), "NETSEM_LOCAL=1", "NETSEM_FENCE=99", "NETSEM_NAME=outer", "NETSEM_COUNT=7"})
                        .finish();
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  std::smatch match;
  ASSERT_TRUE(std::regex_match(outcome.out, match, std::regex("alpha 2 ([1-9][0-9]*) unset\n"))) << outcome;
  // The fence is the server's: the next grant of the name has a higher one.
  const std::uint64_t fence = std::stoull(match[1]);
  outcome = netsem({"run", "alpha", "sh", "-c", kShow});
  ASSERT_TRUE(std::regex_match(outcome.out, match, std::regex("alpha 1 ([1-9][0-9]*) unset\n"))) << outcome;
  EXPECT_GT(std::stoull(match[1]), fence);

  // Served by the host-local fallback: no fence, and NETSEM_LOCAL=1.
  const auto config = local_config(dead_address());
  outcome = Cli({"--config", config.string(), "run", "beta", "sh", "-c", kShow}, {"NETSEM_FENCE=99"}).finish();
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out, "beta 1 unset 1\n") << outcome;
}

TEST_F(CliRun, HoldsThePermitsWhileTheCommandRunsAndReleasesThemAfter) {
  const Outcome outcome = netsem({"run", "-n", "2", "alpha", "--", NETSEM_CLI_PATH, "get", "--json", "alpha"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out, R"({"name":"alpha","kind":"defined","value":1,"max":3,"holders":1,"waiters":0})"
                         "\n");
  EXPECT_EQ(get("alpha"), "OK 3 3 0 0 defined");
}

TEST_F(CliRun, TheCommandInheritsNoConnectionOfNetsem) {
  // A CMD that outlives netsem, or leaves a daemon behind, must not keep the
  // session (and so the permits) alive.
  const Outcome outcome = netsem({"run", "beta", "--", "sh", "-c", "ls -l /proc/$$/fd"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out.find("socket:"), std::string::npos) << outcome.out;
  EXPECT_EQ(outcome.out.find("anon_inode"), std::string::npos) << outcome.out;
}

TEST_F(CliRun, TimesOutWith75WhileAnotherProcessHoldsThePermit) {
  ASSERT_EQ(observer_->request(req::acquire("a", "beta")), "a OK 1");
  const auto marker = dir_.path() / "ran";
  for (const std::string timeout : {"0.3", "0"}) {
    const auto start = Clock::now();
    const Outcome outcome = netsem({"run", "-t", timeout, "beta", "--", "touch", marker.string()});
    EXPECT_EQ(outcome.exit_code, 75) << outcome;
    EXPECT_GE(outcome.ended - start, milliseconds(timeout == "0" ? 0 : 300));
    EXPECT_NE(outcome.err.find("netsem: run: timed out after " + timeout + " s waiting for 1 permit of beta"),
              std::string::npos)
        << outcome;
    EXPECT_NE(outcome.err.find("held by 1 session"), std::string::npos) << outcome;
    EXPECT_FALSE(std::filesystem::exists(marker));
  }
}

// A frozen server (SIGSTOP: its kernel still accepts connections) is no
// outage: the command waits out its -t, exits 75 and runs nothing, never
// under a host-local permit (docs/client.md, "A server that accepts and does
// not answer"). -t is the whole wait, the first round of connection attempts
// included (audit21 finding 5): that round takes the whole connect timeout
// (2 s here), so `-t 3` ends at 3 s, not 5, and `-t 1`, used up by that
// round, ends with it, at 2 s, not 3, in the same words; `run` and `wait`
// alike. The four commands wait side by side (each is reaped, so timed, in
// finish(): in the order they end).
TEST_F(CliRun, TimesOutWith75AgainstAFrozenServerCountingFromTheStartNeverUnderALocalPermit) {
  const auto config = local_config(address(), "local", "connect_timeout_ms = 2000\n");
  const Frozen frozen(*server_);
  const auto marker = dir_.path() / "ran";
  const struct {
    std::string verb;
    std::string timeout;
    milliseconds ends;  // after the start
  } cases[] = {{"run", "1", milliseconds(2000)},
               {"wait", "1", milliseconds(2000)},
               {"run", "3", milliseconds(3000)},
               {"wait", "3", milliseconds(3000)}};
  std::vector<std::unique_ptr<Cli>> clis;
  const auto start = Clock::now();
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--config", config.string(), c.verb, "-t", c.timeout, "beta"};
    if (c.verb == "run") args.insert(args.end(), {"--", "touch", marker.string()});
    clis.push_back(std::make_unique<Cli>(args));
  }
  for (std::size_t i = 0; i < clis.size(); ++i) {
    const auto& c = cases[i];
    const Outcome outcome = clis[i]->finish();
    EXPECT_EQ(outcome.exit_code, 75) << c.verb << " -t " << c.timeout << ": " << outcome;
    EXPECT_GE(outcome.ended - start, c.ends) << c.verb << " -t " << c.timeout;
    EXPECT_LT(outcome.ended - start, c.ends + milliseconds(600)) << c.verb << " -t " << c.timeout;
    EXPECT_NE(outcome.err.find("netsem: " + c.verb + ": timed out after " + c.timeout +
                               " s waiting for 1 permit of beta: server " + address() +
                               " accepted the connection but did not answer within 2000 ms: not an outage, so no "
                               "fallback" +
                               (c.verb == "run" ? "; touch not run\n" : "\n")),
              std::string::npos)
        << outcome;
  }
  EXPECT_FALSE(std::filesystem::exists(marker));
}

// A try (--nonblock, -t 0) against a silent server waits request_timeout
// for an answer and then, unanswered, means "try again later": 75, or
// run's -E N, as a -t that runs out, CMD not run; it exited 69, "no server"
// (audit21 finding 5). The three wait side by side.
TEST_F(CliRun, ATryAgainstAFrozenServerExits75OrItsConflictCode) {
  const auto config =
      local_config(address(), "local", "connect_timeout_ms = 500\nrequest_timeout_ms = 1000\n").string();
  const Frozen frozen(*server_);
  const auto marker = dir_.path() / "ran";
  const struct {
    std::vector<std::string> args;
    int exit_code;
    std::string err;
  } cases[] = {
      {{"run", "--nonblock", "beta", "--", "touch", marker.string()},
       75,
       "netsem: run: no answer to the try for 1 permit of beta: "},
      {{"run", "-t", "0", "-E", "9", "beta", "--", "touch", marker.string()},
       9,
       "netsem: run: no answer to the try for 1 permit of beta: "},
      {{"wait", "-t", "0", "-n", "2", "alpha"}, 75, "netsem: wait: no answer to the try for 2 permits of alpha: "},
  };
  std::vector<std::unique_ptr<Cli>> clis;
  for (const auto& c : cases) clis.push_back(std::make_unique<Cli>(joined({"--config", config}, c.args)));
  for (std::size_t i = 0; i < clis.size(); ++i) {
    const Outcome outcome = clis[i]->finish();
    EXPECT_EQ(outcome.exit_code, cases[i].exit_code) << outcome;
    EXPECT_TRUE(outcome.err.starts_with(cases[i].err + "server " + address() +
                                        " accepted the connection but has not answered within 1000 ms: not an "
                                        "outage, so no fallback"))
        << outcome;
    if (cases[i].args.front() == "run") {
      EXPECT_TRUE(outcome.err.ends_with("; touch not run\n")) << outcome;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST_F(CliRun, StopsTheCommandAtOnceWhenTheServerIsKilled) {
  Cli cli(joined({"run", "beta", "--"}, ready_then_sleep()), {server_env()});
  ASSERT_TRUE(cli.wait_for_stdout("ready"));
  const auto killed = Clock::now();
  server_->send_signal(SIGKILL);
  const Outcome outcome = cli.finish(std::chrono::seconds(5));
  const auto took = std::chrono::duration_cast<milliseconds>(outcome.ended - killed);
  std::printf("netsem exited %lld ms after netsemd was killed\n", static_cast<long long>(took.count()));
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_EQ(outcome.exit_code, 70) << outcome;
  // One clause of cause: the library's own words for a close, or the
  // category before a bare system error (a reset).
  EXPECT_TRUE(std::regex_match(outcome.err, lost_permit_of_beta("(the server closed the connection|the connection "
                                                                "to the server was lost \\([A-Z][a-z ]+\\))")))
      << outcome;
  server_->wait_exit();
}

// True once `pid` has exited: gone, or a zombie nobody reaped yet.
bool process_ended(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');  // the state follows the command name, which may hold anything
  return paren == std::string::npos || text.compare(paren, 3, ") Z") == 0 || text.compare(paren, 3, ") X") == 0;
}

// The pid a command wrote to `pid_file` (see write_pid below).
pid_t read_pid(const std::filesystem::path& pid_file) {
  return static_cast<pid_t>(std::stol(read_text(pid_file)));
}

// A descriptor that becomes readable when process `pid` (not a child of the
// test) exits; -1 when the kernel cannot tell.
int exit_watch(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

bool exited(int watch) {
  pollfd fd{watch, POLLIN, 0};
  return ::poll(&fd, 1, 0) == 1;
}

// `sh -c` words that write the shell's pid to `pid_file` (see read_pid),
// ignoring SIGTERM when `ignore_sigterm`.
std::string write_pid(const std::filesystem::path& pid_file, bool ignore_sigterm) {
  return std::string(ignore_sigterm ? "trap '' TERM; " : "") + "echo $$ > " + pid_file.string() + "; ";
}

TEST_F(CliRun, AFrozenNetworkKillsTheCommandBeforeTheServerGrantsItsPermitAgain) {
  // Item 3 of issue 10: the holder's network goes silent. The server grants
  // the permit to another client T = 2 s after the last request it read;
  // netsem run must have SIGKILLed its command by then, cutting --grace 5 to
  // what is left of its lease (CMD ignores SIGTERM, so only SIGKILL ends it).
  ASSERT_NO_FATAL_FAILURE(start_netsemd_with_short_sessions());
  TcpProxy proxy(server_->port());
  ASSERT_NE(proxy.port(), 0);
  const auto pid_file = dir_.path() / "pid";
  Cli holder(joined({"run", "--grace", "5", "beta", "--"}, ready_then_sleep(write_pid(pid_file, true))),
             {"NETSEM_SERVER=127.0.0.1:" + std::to_string(proxy.port())});
  ASSERT_TRUE(holder.wait_for_stdout("ready"));
  const int watch = exit_watch(read_pid(pid_file));
  ASSERT_GE(watch, 0) << std::strerror(errno);

  proxy.freeze();
  const auto frozen = Clock::now();
  // Another host: on this one, the grant would also wait for the lost permit.
  const auto other_host = local_config("", "other-host");
  Cli other({"--config", other_host.string(), "run", "-t", "10", "beta", "--", "echo", "granted"}, {server_env()});
  const bool granted = other.wait_for_stdout("granted", std::chrono::seconds(10));
  // Looked at after the second command started: a first command that was
  // dead then died before the grant.
  const bool dead_at_grant = exited(watch);
  std::printf("granted again %lld ms after the freeze\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(Clock::now() - frozen).count()));
  EXPECT_TRUE(granted) << other.finish();
  EXPECT_TRUE(dead_at_grant) << "the server granted beta to another process while the frozen holder's command ran";
  const Outcome outcome = holder.finish(std::chrono::seconds(12));
  EXPECT_EQ(outcome.exit_code, 70) << outcome;
  EXPECT_NE(outcome.err.find("the lease on the session's permits ran out"), std::string::npos) << outcome;
  EXPECT_NE(outcome.err.find("the grace is cut to"), std::string::npos) << outcome;
  EXPECT_NE(outcome.err.find("after SIGTERM; sent SIGKILL"), std::string::npos) << outcome;
  EXPECT_EQ(other.finish().exit_code, 0);
  ::close(watch);
}

TEST_F(CliRun, AKilledServersLeaseCutsTheGraceOfTheCommand) {
  // The holder's only server is killed (-9): the session cannot be resumed
  // (the server refuses the new connection: its process, and the session,
  // are gone), and a restart grants nothing before the lease's end (the
  // lease wait). So the permit's stop_by() is the lease's end, as after a
  // SHUTDOWN, and --grace 30 is cut to it: CMD, which ignores SIGTERM, is
  // SIGKILLed within 0.9 T = 1.8 s of the last answered request, not 30 s on.
  ASSERT_NO_FATAL_FAILURE(start_netsemd_with_short_sessions());
  Cli holder(joined({"run", "--grace", "30", "beta", "--"}, ready_then_sleep("trap '' TERM; ", 60)), {server_env()});
  ASSERT_TRUE(holder.wait_for_stdout("ready"));
  // A resumable session (RESUMABLE answered after the handshake).
  std::this_thread::sleep_for(milliseconds(300));
  const auto killed = Clock::now();
  server_->send_signal(SIGKILL);
  const Outcome outcome = holder.finish(std::chrono::seconds(8));
  const auto took = std::chrono::duration_cast<milliseconds>(outcome.ended - killed);
  std::printf("netsem exited %lld ms after netsemd was killed\n", static_cast<long long>(took.count()));
  EXPECT_LT(took, milliseconds(2500)) << outcome;
  EXPECT_EQ(outcome.exit_code, 70) << outcome;
  EXPECT_NE(outcome.err.find("the grace is cut to"), std::string::npos) << outcome;
  EXPECT_NE(outcome.err.find("after SIGTERM; sent SIGKILL"), std::string::npos) << outcome;
  server_->wait_exit();
}

TEST_F(CliRun, AFallbackWaitsForACommandOfThisHostStillInItsGracePeriod) {
  // Item 5 of issue 10: `run --grace 3 beta` holds limit-1 beta; a second
  // run of beta on this host is queued at the server; the server is killed.
  // The second falls back, and must not start its command before the
  // first's (which ignores SIGTERM) is dead.
  const auto config = local_config();
  const auto pid_file = dir_.path() / "pid";
  Cli holder(joined({"--config", config.string(), "run", "--grace", "3", "beta", "--"},
                    ready_then_sleep(write_pid(pid_file, true))),
             {server_env()});
  ASSERT_TRUE(holder.wait_for_stdout("ready"));
  const int watch = exit_watch(read_pid(pid_file));
  ASSERT_GE(watch, 0) << std::strerror(errno);
  Cli queued({"--config", config.string(), "run", "-t", "20", "beta", "--", "echo", "started"}, {server_env()});
  ASSERT_TRUE(get_becomes("beta", "OK 0 1 1 1 defined"));

  const auto killed = Clock::now();
  server_->send_signal(SIGKILL);
  const bool started = queued.wait_for_stdout("started", std::chrono::seconds(10));
  const bool dead_at_start = exited(watch);
  std::printf("the queued command started %lld ms after the server was killed\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(Clock::now() - killed).count()));
  EXPECT_TRUE(started) << queued.finish();
  EXPECT_TRUE(dead_at_start) << "the fallback started its command while the first one still ran";
  const Outcome first = holder.finish();
  EXPECT_EQ(first.exit_code, 70) << first;
  EXPECT_NE(first.err.find("still ran 3 s after SIGTERM; sent SIGKILL"), std::string::npos) << first;
  const Outcome second = queued.finish();
  EXPECT_EQ(second.exit_code, 0) << second;
  EXPECT_NE(second.err.find("beta was served by a host-local semaphore"), std::string::npos) << second;
  ::close(watch);
  server_->wait_exit();
}

TEST_F(CliRun, TheCommandDiesWithASigkilledNetsem) {
  const auto pid_file = dir_.path() / "pid";
  Cli cli(joined({"run", "beta", "--"}, ready_then_sleep(write_pid(pid_file, false))), {server_env()});
  ASSERT_TRUE(cli.wait_for_stdout("ready"));
  const pid_t command = read_pid(pid_file);
  ASSERT_GT(command, 0);
  ASSERT_FALSE(process_ended(command));
  const auto killed = Clock::now();
  ::kill(cli.pid(), SIGKILL);
  const Outcome outcome = cli.finish(std::chrono::seconds(5));
  EXPECT_EQ(outcome.signal, SIGKILL) << outcome;
  // Unchecked, `sleep 30` would run on for half a minute without the permit.
  const bool ended = eventually([&] { return process_ended(command); }, milliseconds(1000));
  if (!ended) ::kill(command, SIGKILL);
  EXPECT_TRUE(ended) << "the command outlived netsem by "
                     << std::chrono::duration_cast<milliseconds>(Clock::now() - killed).count() << " ms";
  // netsem could not QUIT: its session, resumable (protocol 1.2), keeps the
  // permit at the server until its timeout (15 s), as for a broken connection.
  EXPECT_EQ(get("beta"), "OK 0 1 1 0 defined");
}

TEST_F(CliRun, SaysTheServerIsShuttingDownWhenItStops) {
  Cli cli(joined({"run", "beta", "--"}, ready_then_sleep()), {server_env()});
  ASSERT_TRUE(cli.wait_for_stdout("ready"));
  server_->send_signal(SIGTERM);
  const Outcome outcome = cli.finish(std::chrono::seconds(5));
  EXPECT_EQ(outcome.exit_code, 70) << outcome;
  // Said once (issue 12 item 8: it read "the server is shutting down (the
  // server is shutting down)"), in one line with what was done.
  EXPECT_TRUE(std::regex_match(outcome.err, lost_permit_of_beta("the server is shutting down",
                                                                "(; the grace is cut to [0-9.]+ s, when the server may "
                                                                "grant the permit again)?")))
      << outcome;
  server_->wait_exit();
}

TEST_F(CliRun, SaysAKickEndedTheSessionNotThatTheConnectionWasLost) {
  Cli cli(joined({"run", "beta", "--"}, ready_then_sleep()), {server_env()});
  ASSERT_TRUE(cli.wait_for_stdout("ready"));
  const std::string holders = observer_->request(req::holders("h", "beta"));
  ASSERT_EQ(holders.rfind("h ITEM ", 0), 0u) << holders;
  const std::uint64_t id = std::stoull(holders.substr(7));
  ASSERT_EQ(observer_->read_line().value_or(""), "h END 1");
  ASSERT_EQ(observer_->request(req::kick("k", id)), "k OK");
  const Outcome outcome = cli.finish(std::chrono::seconds(5));
  EXPECT_EQ(outcome.exit_code, 70) << outcome;
  // It read "the connection to the server was lost (the server ended the
  // session by KICK: ...)": the connection was fine, the session was ended.
  EXPECT_TRUE(std::regex_match(outcome.err, lost_permit_of_beta("the server ended the session by KICK: kicked by "
                                                                "session [0-9]+ \\(127\\.0\\.0\\.1:[0-9]+\\)")))
      << outcome;
}

TEST_F(CliRun, KillsACommandThatIgnoresSigtermAfterTheGracePeriod) {
  Cli cli({"run", "--grace", "0.5", "beta", "--", "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"},
          {server_env()});
  ASSERT_TRUE(cli.wait_for_stdout("ready"));
  const auto killed = Clock::now();
  server_->send_signal(SIGKILL);
  const Outcome outcome = cli.finish(std::chrono::seconds(5));
  EXPECT_EQ(outcome.exit_code, 70) << outcome;
  EXPECT_GE(outcome.ended - killed, milliseconds(500));
  EXPECT_LT(outcome.ended - killed, std::chrono::seconds(3));
  EXPECT_NE(outcome.err.find("still ran 0.5 s after SIGTERM; sent SIGKILL"), std::string::npos) << outcome;
  server_->wait_exit();
}

TEST_F(CliRun, ForwardsSigtermToTheCommand) {
  Cli cli(joined({"run", "beta", "--"}, ready_then_sleep()), {server_env()});
  ASSERT_TRUE(cli.wait_for_stdout("ready"));
  ::kill(cli.pid(), SIGTERM);
  const Outcome outcome = cli.finish(std::chrono::seconds(5));
  EXPECT_EQ(outcome.signal, 0) << "netsem itself was killed\n" << outcome;
  EXPECT_EQ(outcome.exit_code, 128 + SIGTERM) << outcome;  // the command's status
  EXPECT_TRUE(get_becomes("beta", "OK 1 1 0 0 defined"));
}

TEST_F(CliRun, SigintWhileWaitingEndsNetsemAndItsQueuedRequest) {
  ASSERT_EQ(observer_->request(req::acquire("a", "beta")), "a OK 1");
  Cli cli({"run", "beta", "--", "true"}, {server_env()});
  ASSERT_TRUE(get_becomes("beta", "OK 0 1 1 1 defined"));
  ::kill(cli.pid(), SIGINT);
  const Outcome outcome = cli.finish(std::chrono::seconds(5));
  EXPECT_EQ(outcome.signal, SIGINT) << outcome;
  EXPECT_TRUE(get_becomes("beta", "OK 0 1 1 0 defined"));
}

TEST_F(CliRun, RefusesMorePermitsThanTheMaximum) {
  const Outcome outcome = netsem({"run", "-n", "4", "alpha", "--", "true"});
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_NE(outcome.err.find("TOO_MANY"), std::string::npos) << outcome;
  EXPECT_EQ(
      outcome.err.rfind("netsem: run: alpha allows at most 3 permits at once (its limit), and -n asks for 4; true "
                        "not run (",
                        0),
      0u)
      << outcome;
}

TEST_F(CliRun, WithoutAServerFailsWith69UnderPolicyFail) {
  const auto marker = dir_.path() / "ran";
  const std::vector<std::string> command = {"--server", dead_address(), "run", "beta", "--", "touch", marker.string()};
  // The flag, and the environment variable when no flag is given.
  for (const bool flag : {true, false}) {
    const Outcome outcome = Cli(flag ? joined({"--fallback", "fail"}, command) : command,
                                {flag ? "NETSEM_FALLBACK=local" : "NETSEM_FALLBACK=fail"})
                                .finish();
    EXPECT_EQ(outcome.exit_code, 69) << outcome;
    EXPECT_NE(outcome.err.find("fallback policy of \"beta\" is fail"), std::string::npos) << outcome;
    EXPECT_FALSE(std::filesystem::exists(marker));
  }
}

TEST_F(CliRun, WithoutAServerRunsOnAHostLocalPermitAndSaysSo) {
  const auto config = local_config(dead_address());
  const Outcome outcome = Cli({"--config", config.string(), "run", "beta", "--", "echo", "ran"}).finish();
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out, "ran\n");
  EXPECT_NE(outcome.err.find("netsem: warning: no server reachable"), std::string::npos) << outcome;
  EXPECT_NE(outcome.err.find("beta was served by a host-local semaphore"), std::string::npos) << outcome;
}

TEST_F(CliCommands, WaitAndPostOfAnUnlistedNameDoNotFallBack) {
  // `jobs` counts items on the server; a local stand-in would invent one.
  const std::string dead = dead_address();
  const auto config = local_config(dead);
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"wait", "-t", "0", "jobs"}, std::vector<std::string>{"post", "jobs"}}) {
    const Outcome outcome = Cli(joined({"--config", config.string()}, command)).finish();
    EXPECT_EQ(outcome.exit_code, 69) << outcome;
    EXPECT_NE(outcome.err.find("\"jobs\" is not listed in [semaphores]"), std::string::npos) << outcome;
    EXPECT_NE(outcome.err.find(dead + ": Connection refused"), std::string::npos) << outcome;
  }
}

TEST_F(CliRun, DescribesABusyHostLocalSemaphoreWithoutSessions) {
  // The kernel counts permits held on this host and processes waiting; there
  // are no sessions or requests to speak of. The numbers are the library's.
  const auto config = local_config();
  Cli holder(joined({"--config", config.string(), "run", "$build"}, ready_then_sleep()), {server_env()});
  ASSERT_TRUE(holder.wait_for_stdout("ready"));
  const Outcome outcome =
      Cli({"--config", config.string(), "run", "-t", "0", "$build", "true"}, {server_env()}).finish();
  EXPECT_EQ(outcome.exit_code, 75) << outcome;
  static const std::regex kBusy(
      R"(^netsem: run: timed out after 0 s waiting for 1 permit of \$build: [0-9]+ of 1 free, [0-9]+ permits? )"
      R"(held on this host, [0-9]+ process(es)? waiting; true not run\n$)");
  EXPECT_TRUE(std::regex_search(outcome.err, kBusy)) << outcome;
  EXPECT_EQ(outcome.err.find("session"), std::string::npos) << outcome;
}

// status's output without its host-local section, which shows whatever
// `$` and fallback semaphores this user has on the host (local_cli_test
// tests it).
std::string server_part(const std::string& out) {
  const auto at = out.find("\n\nhost-local (");
  return at == std::string::npos ? out : out.substr(0, at + 1);
}

TEST_F(CliStatus, PrintsATableAndTheServer) {
  ASSERT_EQ(observer_->request(req::acquire("a", "beta")), "a OK 1");
  ASSERT_EQ(observer_->request(req::acquire("b", "beta")), "b QUEUED 1");
  Outcome outcome = netsem({"status"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(server_part(outcome.out), "server " + address() +
                                          ": 2 semaphores\n"
                                          "NAME   KIND     VALUE/MAX  HOLDERS  WAITERS\n"
                                          "alpha  defined  3/3        0        0\n"
                                          "beta   defined  0/1        1        1\n");
  EXPECT_EQ(outcome.err, "");

  outcome = netsem({"status", "be"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out, "server " + address() +
                             ": 1 semaphore named be*\n"
                             "NAME  KIND     VALUE/MAX  HOLDERS  WAITERS\n"
                             "beta  defined  0/1        1        1\n");
  outcome = netsem({"status", "zzz"});
  EXPECT_EQ(outcome.out, "server " + address() + ": 0 semaphores named zzz*\n");
}

TEST_F(CliStatus, ListsALargeTableWhileAnotherSessionKeepsItsPermit) {
  // 200,000 created semaphores: the LIST behind `status` is several MiB,
  // more than a session may leave unread, so the server streams it.
  constexpr int kCreated = 200'000;
  ASSERT_EQ(observer_->request(req::acquire("a", "beta")), "a OK 1");
  std::string lines;
  for (int i = 0; i < kCreated; ++i) protocol::encode_create(lines, "c", "big" + std::to_string(1'000'000 + i), 1, 1);
  protocol::encode_ping(lines, "p", "made");
  observer_->send(lines);
  for (int i = 0; i < kCreated; ++i) ASSERT_EQ(observer_->read_line(10s), "c OK") << "CREATE " << i;
  ASSERT_EQ(observer_->read_line(10s), "p PONG made");

  Outcome outcome = Cli({"status"}, {server_env()}).finish(std::chrono::seconds(60));
  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_TRUE(outcome.out.starts_with("server " + address() + ": " + std::to_string(kCreated + 2) + " semaphores\n"))
      << outcome.out.substr(0, 200);
  const std::string server = server_part(outcome.out);
  EXPECT_EQ(std::count(server.begin(), server.end(), '\n'), kCreated + 4);
  EXPECT_NE(outcome.out.find("\nbig1199999  created  1/1"), std::string::npos);
  EXPECT_EQ(outcome.err, "");
  EXPECT_EQ(get("beta"), "OK 0 1 1 0 defined");
}

TEST_F(CliStatus, PrintsAJsonArrayWithNamesEscaped) {
  ASSERT_EQ(netsem({"create", "we\"ird\\ name é", "2", "5"}).exit_code, 0);
  Outcome outcome = netsem({"status", "--json"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out,
            "[\n"
            R"( {"name":"alpha","kind":"defined","value":3,"max":3,"holders":0,"waiters":0},)"
            "\n"
            R"( {"name":"beta","kind":"defined","value":1,"max":1,"holders":0,"waiters":0},)"
            "\n"
            R"( {"name":"we\"ird\\ name é","kind":"created","value":2,"max":5,"holders":0,"waiters":0})"
            "\n"
            "]\n");
  outcome = netsem({"status", "--json", "nothing"});
  EXPECT_EQ(outcome.out, "[]\n");
  // The table counts characters, not bytes, so that columns line up.
  outcome = netsem({"status", "we"});
  EXPECT_NE(outcome.out.find("we\"ird\\ name é  created  2/5"), std::string::npos) << outcome;
}

TEST_F(CliStatus, SaysWhenTheServerIsUnreachable) {
  const std::string dead = dead_address();
  // An error like every other, table or JSON alike.
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--server", dead, "status"},
                                               std::vector<std::string>{"--server", dead, "status", "--json"}}) {
    const Outcome outcome = netsem(args);
    EXPECT_EQ(outcome.exit_code, 69) << outcome;
    EXPECT_EQ(outcome.out, "");
    EXPECT_EQ(outcome.err, "netsem: status: no server reachable (" + dead + ": Connection refused)\n");
  }
}

TEST_F(CliCommands, GetShowsOneSemaphore) {
  ASSERT_EQ(observer_->request(req::acquire("a", "alpha", 2)), "a OK 1");
  Outcome outcome = netsem({"get", "alpha"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out,
            "NAME   KIND     VALUE/MAX  HOLDERS  WAITERS\n"
            "alpha  defined  1/3        1        0\n");
  outcome = netsem({"get", "--json", "nothing"});
  ASSERT_EQ(outcome.exit_code, 3) << outcome;
  EXPECT_EQ(outcome.out, R"({"name":"nothing","kind":"absent","value":1,"max":1,"holders":0,"waiters":0})"
                         "\n");
}

TEST_F(CliCommands, WaitAndPostCountPermits) {
  ASSERT_EQ(netsem({"create", "jobs", "0", "2"}).exit_code, 0);
  Outcome outcome = netsem({"wait", "-t", "0.2", "jobs"});
  EXPECT_EQ(outcome.exit_code, 75) << outcome;
  EXPECT_EQ(outcome.err,
            "netsem: wait: timed out after 0.2 s waiting for 1 permit of jobs: 0 of 2 free: 2 consumed by WAIT or "
            "not yet posted, 0 held; 0 requests waiting\n")
      << outcome;
  EXPECT_EQ(netsem({"post", "-n", "2", "jobs"}).exit_code, 0);
  EXPECT_EQ(get("jobs"), "OK 2 2 0 0 created");
  outcome = netsem({"post", "jobs"});
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_NE(outcome.err.find("OVERFLOW"), std::string::npos) << outcome;
  EXPECT_EQ(netsem({"wait", "-n", "2", "jobs"}).exit_code, 0);
  EXPECT_EQ(get("jobs"), "OK 0 2 0 0 created");  // consumed, not held

  // A wait queues until a post lets it in.
  Cli waiter({"wait", "jobs"}, {server_env()});
  ASSERT_TRUE(get_becomes("jobs", "OK 0 2 0 1 created"));
  EXPECT_EQ(netsem({"post", "jobs"}).exit_code, 0);
  EXPECT_EQ(waiter.finish(std::chrono::seconds(5)).exit_code, 0);

  outcome = netsem({"wait", "nosuch"});
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_NE(outcome.err.find("NOT_FOUND"), std::string::npos) << outcome;
}

TEST_F(CliCommands, ATimeoutCountsThePermitsConsumedByWaitApartFromTheHeldOnes) {
  // Issue 12 item 8: it read "0 of 3 free, held by 0 sessions", which
  // explains nothing when WAIT took the permits for good.
  ASSERT_EQ(netsem({"wait", "-n", "3", "alpha"}).exit_code, 0);
  Outcome outcome = netsem({"wait", "-t", "0.1", "alpha"});
  EXPECT_EQ(outcome.exit_code, 75) << outcome;
  EXPECT_EQ(outcome.err,
            "netsem: wait: timed out after 0.1 s waiting for 1 permit of alpha: 0 of 3 free: 3 consumed by WAIT, 0 "
            "held; 0 requests waiting\n")
      << outcome;
  // Held permits are counted from HOLDERS (2 permits of 1 session), the
  // rest was consumed.
  ASSERT_EQ(netsem({"post", "-n", "2", "alpha"}).exit_code, 0);
  ASSERT_EQ(observer_->request(req::acquire("a", "alpha", 2)).rfind("a OK ", 0), 0u);
  outcome = netsem({"run", "--nonblock", "alpha", "true"});
  EXPECT_EQ(outcome.exit_code, 75) << outcome;
  EXPECT_EQ(outcome.err,
            "netsem: run: timed out after 0 s waiting for 1 permit of alpha: 0 of 3 free: 1 consumed by WAIT, 2 held "
            "by 1 session; 0 requests waiting; true not run\n")
      << outcome;
  // Nothing consumed: the holders alone.
  ASSERT_EQ(netsem({"post", "alpha"}).exit_code, 0);
  ASSERT_EQ(observer_->request(req::acquire("b", "alpha")).rfind("b OK ", 0), 0u);
  outcome = netsem({"wait", "-t", "0", "alpha"});
  EXPECT_EQ(outcome.exit_code, 75) << outcome;
  EXPECT_EQ(outcome.err,
            "netsem: wait: timed out after 0 s waiting for 1 permit of alpha: 0 of 3 free: 3 held by 1 session; 0 "
            "requests waiting\n")
      << outcome;
}

TEST_F(CliCommands, CreateAndDelete) {
  Outcome outcome = netsem({"create", "pool", "3"});
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.err, "") << outcome;
  EXPECT_EQ(get("pool"), "OK 3 3 0 0 created");
  // Exists: unchanged, as O_CREAT, and said so when other values were asked
  // for (issue 12 item 8: it said nothing); the same values, nothing to say.
  outcome = netsem({"create", "pool", "1"});
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.err,
            "netsem: create: pool exists already, with 3 of 3 free; left unchanged (not 1 of 1): delete it first "
            "to make it anew, or use -x to fail instead\n")
      << outcome;
  EXPECT_EQ(get("pool"), "OK 3 3 0 0 created");
  outcome = netsem({"create", "pool", "3", "3"});
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.err, "") << outcome;
  outcome = netsem({"create", "--exclusive", "pool", "1"});
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_NE(outcome.err.find("EXISTS"), std::string::npos) << outcome;
  EXPECT_EQ(netsem({"create", "empty", "0", "4", "-x"}).exit_code, 0);
  EXPECT_EQ(get("empty"), "OK 0 4 0 0 created");

  EXPECT_EQ(netsem({"delete", "pool"}).exit_code, 0);
  EXPECT_EQ(get("pool"), "OK 1 1 0 0 absent");
  outcome = netsem({"delete", "pool"});
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_NE(outcome.err.find("NOT_FOUND"), std::string::npos) << outcome;
  // EXISTS without -x says why (it read 'CREATE "alpha": EXISTS a semaphore
  // of that name exists: alpha').
  outcome = netsem({"create", "alpha", "2"});
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_EQ(outcome.err,
            "netsem: create: alpha is defined in the server's configuration ([semaphores]), with a limit of 3; it "
            "cannot be created\n")
      << outcome;
  ASSERT_EQ(observer_->request(req::acquire("u", "adhoc")).rfind("u OK ", 0), 0u);
  outcome = netsem({"create", "adhoc", "2"});
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_EQ(outcome.err,
            "netsem: create: adhoc is in use as an undefined semaphore (one that run made on the fly); it cannot be "
            "created until nobody holds or waits on it\n")
      << outcome;
  outcome = netsem({"delete", "alpha"});
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_EQ(outcome.err,
            "netsem: delete: alpha is defined in the server's configuration ([semaphores]); only a semaphore made "
            "by create can be deleted\n")
      << outcome;
}

TEST_F(CliCommands, NumbersAreDecimalWithLeadingZerosAllowed) {
  ASSERT_EQ(netsem({"create", "oct", "010"}).exit_code, 0);
  EXPECT_EQ(get("oct"), "OK 10 10 0 0 created");
  ASSERT_EQ(netsem({"create", "pool", "08", "0020"}).exit_code, 0);
  EXPECT_EQ(get("pool"), "OK 8 20 0 0 created");
  ASSERT_EQ(netsem({"post", "-n", "02", "pool"}).exit_code, 0);
  EXPECT_EQ(get("pool"), "OK 10 20 0 0 created");
  ASSERT_EQ(netsem({"wait", "--count", "09", "pool"}).exit_code, 0);
  EXPECT_EQ(get("pool"), "OK 1 20 0 0 created");
  ASSERT_EQ(netsem({"post", "-n", "010", "pool"}).exit_code, 0);
  const Outcome outcome = netsem({"run", "-n", "010", "pool", NETSEM_CLI_PATH, "get", "--json", "pool"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out, R"({"name":"pool","kind":"created","value":1,"max":20,"holders":1,"waiters":0})"
                         "\n");
}

TEST_F(CliCommands, NamesStartingWithADashComeAfterDashDash) {
  EXPECT_EQ(netsem({"create", "--", "-dash", "2"}).exit_code, 0);
  EXPECT_EQ(get("-dash"), "OK 2 2 0 0 created");
  EXPECT_EQ(netsem({"wait", "-n", "2", "--", "-dash"}).exit_code, 0);
  EXPECT_EQ(netsem({"post", "--", "-dash"}).exit_code, 0);
  const Outcome outcome = netsem({"get", "--json", "--", "-dash"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out, R"({"name":"-dash","kind":"created","value":1,"max":2,"holders":0,"waiters":0})"
                         "\n");
  EXPECT_EQ(netsem({"delete", "--", "-dash"}).exit_code, 0);
  EXPECT_EQ(get("-dash"), "OK 1 1 0 0 absent");
}

TEST_F(CliCommands, PingNamesTheServerOr69) {
  Outcome outcome = netsem({"ping"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out.rfind("PONG from " + address() + " in ", 0), 0u) << outcome;
  outcome = netsem({"--server", dead_address(), "ping"});
  EXPECT_EQ(outcome.exit_code, 69) << outcome;
  EXPECT_EQ(outcome.out, "");
  EXPECT_EQ(outcome.err.rfind("netsem: ping: no server reachable", 0), 0u) << outcome;
}

TEST_F(CliCommands, CommandsThatNeedTheServerExit69WithoutOne) {
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"create", "x", "1"}, {"delete", "x"}, {"get", "x"}}) {
    const Outcome outcome = netsem(joined({"--server", dead_address()}, command));
    EXPECT_EQ(outcome.exit_code, 69) << command.front() << "\n" << outcome;
    EXPECT_EQ(outcome.err.rfind("netsem: ", 0), 0u) << outcome;
  }
}

TEST_F(CliUsage, BadArgumentsExit2WithAMessageOnStderr) {
  const struct {
    std::vector<std::string> args;
    std::string message;  // part of stderr
  } kCases[] = {
      {{}, "a subcommand is needed"},
      {{"frob"}, "unknown subcommand 'frob'"},
      {{"get"}, "netsem: get: NAME is required (see netsem get --help)"},
      {{"get", "a", "b"}, "netsem: get: The following argument was not expected: b (see netsem get --help)"},
      {{"cluster", "add", "4", "127.0.0.4:7001"},
       "netsem: cluster add: CLIENT-ADDRESS is required (see netsem cluster add --help)"},
      // A server id is 1..2^53, as a [cluster] id; 2^64-1 is the resume
      // probe's host in the log. Refused before any connection.
      {{"cluster", "add", "9007199254740993", "127.0.0.4:7001", "127.0.0.4:1"},
       "netsem: cluster add: ID must be a server id, a whole number from 1 to 9007199254740992 (2^53) in decimal "
       "digits, not '9007199254740993'"},
      {{"cluster", "add", "0", "127.0.0.4:7001", "127.0.0.4:1"}, "cluster add: ID must be a server id"},
      {{"cluster", "remove", "18446744073709551615"},
       "cluster remove: ID must be a server id, a whole number from 1 to"},
      {{"get", ""}, "bad semaphore name"},
      {{"run", "beta"}, "run: CMD is required: netsem run [OPTIONS] NAME [--] CMD [ARGS...]"},
      {{"run", "beta", "--"}, "run: CMD is required: netsem run [OPTIONS] NAME [--] CMD [ARGS...]"},
      {{"run", "-n", "2", "beta"}, "run: CMD is required: netsem run [OPTIONS] NAME [--] CMD [ARGS...]"},
      {{"run", "--", "beta"}, "run: CMD is required: netsem run [OPTIONS] NAME [--] CMD [ARGS...]"},
      {{"run", "--", "beta", "--"}, "run: CMD is required: netsem run [OPTIONS] NAME [--] CMD [ARGS...]"},
      {{"get", "-dash"},
       "get: unknown option -dash; a NAME that starts with '-' must come after '--', as in: "
       "netsem get [OPTIONS] -- -dash"},
      {{"get", "--json", "-dash"}, "a NAME that starts with '-' must come after '--'"},
      {{"post", "-dash"}, "post: unknown option -dash; a NAME that starts with '-'"},
      {{"wait", "-t", "1", "-dash"}, "wait: unknown option -dash; a NAME that starts with '-'"},
      {{"delete", "-dash"}, "delete: unknown option -dash; a NAME that starts with '-'"},
      {{"create", "-dash", "1"}, "netsem create [OPTIONS] -- -dash VALUE [MAX]"},
      {{"run", "-dash", "true"}, "netsem run [OPTIONS] -- -dash CMD [ARGS...]"},
      {{"status", "-dash"}, "a PREFIX that starts with '-' must come after '--'"},
      {{"post", "beta", "-n", "0"}, "--count"},
      {{"post", "beta", "-n", "abc"}, "--count"},
      {{"wait", "beta", "-n", "2147483648"}, "--count"},
      {{"wait", "beta", "-t", "soon"}, "--timeout"},
      {{"run", "-t", "-1", "beta", "--", "true"}, "--timeout"},
      {{"run", "--grace", "x", "beta", "--", "true"}, "--grace"},
      {{"create", "x", "abc"}, "VALUE"},
      {{"create", "x", "5", "3"}, "MAX must be at least VALUE"},
      {{"create", "x", "0"}, "VALUE 0 needs a MAX"},
      {{"status", "--bogus"}, "--bogus"},
      {{"--fallback", "sometimes", "ping"}, "--fallback"},
      {{"--server", "a:b:c", "ping"}, "a:b:c"},
      {{"--config", "/nonexistent/netsem.ini", "ping"}, "--config"},
  };
  for (const auto& test : kCases) {
    const Outcome outcome = netsem(test.args);
    std::string args;
    for (const auto& arg : test.args) args += " '" + arg + "'";
    EXPECT_EQ(outcome.exit_code, 2) << args << "\n" << outcome;
    EXPECT_EQ(outcome.err.rfind("netsem: ", 0), 0u) << args << "\n" << outcome;
    EXPECT_NE(outcome.err.find(test.message), std::string::npos) << args << "\n" << outcome;
    EXPECT_EQ(outcome.out, "") << args;
  }
}

TEST_F(CliUsage, NumbersAreDecimalDigitsOnly) {
  // CLI11 alone reads 010 as eight and 0x10 as sixteen.
  const std::string kCount = "--count: must be a whole number from 1 to 2147483647 in decimal digits, not '";
  const std::string kValue = "VALUE: must be a whole number from 0 to 2147483647 in decimal digits, not '";
  const std::string kMax = "MAX: must be a whole number from 1 to 2147483647 in decimal digits, not '";
  for (const std::string bad :
       {"0x10", "+5", "-1", "1e3", "abc", "", " 5", "5 ", "0", "2147483648", "99999999999999999999999"}) {
    const struct {
      std::vector<std::string> args;
      std::string message;
    } kCases[] = {
        {{"post", "-n", bad, "beta"}, kCount + bad + "'"},
        {{"wait", "beta", "--count", bad}, kCount + bad + "'"},
        {{"run", "-n", bad, "beta", "true"}, kCount + bad + "'"},
        // CLI11 reads "--count=" as "--count" and takes the next word.
        {{"run", "--count=" + bad, "beta", "--", "true"}, kCount + (bad.empty() ? "beta" : bad) + "'"},
        {{"create", "x", "1", bad}, kMax + bad + "'"},
    };
    for (const auto& test : kCases) {
      const Outcome outcome = netsem(test.args);
      EXPECT_EQ(outcome.exit_code, 2) << test.args[2] << " '" << bad << "'\n" << outcome;
      EXPECT_EQ(outcome.err.rfind("netsem: " + test.message, 0), 0u) << "'" << bad << "'\n" << outcome;
    }
    if (bad != "0") {  // VALUE may be 0
      const Outcome outcome = netsem({"create", "x", bad, "5"});
      EXPECT_EQ(outcome.exit_code, 2) << "'" << bad << "'\n" << outcome;
      EXPECT_EQ(outcome.err.rfind("netsem: " + kValue + bad + "'", 0), 0u) << "'" << bad << "'\n" << outcome;
    }
  }
  EXPECT_EQ(get("beta"), "OK 1 1 0 0 defined");
  EXPECT_EQ(get("x"), "OK 1 1 0 0 absent");

  // -v counts its repeats and takes no number.
  for (const std::string flag : {"--verbose=2", "--verbose=0", "--verbose=-5", "--verbose=0x10"}) {
    const Outcome outcome = netsem({flag, "ping"});
    EXPECT_EQ(outcome.exit_code, 2) << flag << "\n" << outcome;
    EXPECT_EQ(outcome.err,
              "netsem: --verbose: takes no value; repeat it for more detail (-vv, -vvv) (see netsem --help)\n")
        << outcome;
  }
  EXPECT_EQ(netsem({"-vvvv", "ping"}).exit_code, 0);
}

TEST_F(CliUsage, HelpListsSubcommandsAndExitCodes) {
  Outcome outcome = netsem({"--help"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  for (const char* text : {"run", "status", "get", "post", "wait", "create", "delete", "ping",
                           "Exit codes:", " 69  server unavailable", " 70  run:", " 75  timeout", "127  run:"}) {
    EXPECT_NE(outcome.out.find(text), std::string::npos) << text << "\n" << outcome.out;
  }
  // Each subcommand's --help: its own options, the global ones, and only
  // the exit codes it can return.
  const std::vector<std::string> kGlobal = {"Global options", "--server", "--fallback", "--config", "--verbose"};
  outcome = netsem({"run", "--help"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  for (const std::string& text : kGlobal) EXPECT_NE(outcome.out.find(text), std::string::npos) << text;
  for (const char* text : {"--grace", "--timeout", "--wait", "--nonblock", "--conflict-exit-code", "--count",
                           "DURATION", " 70  run: the permits were lost", " 75  timeout", "126  run:", "128+N"}) {
    EXPECT_NE(outcome.out.find(text), std::string::npos) << text << "\n" << outcome.out;
  }
  for (const std::string subcommand : {"status", "get", "post", "create", "delete", "ping", "wait"}) {
    outcome = netsem({subcommand, "--help"});
    ASSERT_EQ(outcome.exit_code, 0) << subcommand << "\n" << outcome;
    for (const std::string& text : kGlobal) EXPECT_NE(outcome.out.find(text), std::string::npos) << text;
    for (const char* text : {"Exit codes:", "  0  success", " 69  server unavailable", " 77  "}) {
      EXPECT_NE(outcome.out.find(text), std::string::npos) << subcommand << ": " << text << "\n" << outcome.out;
    }
    for (const char* text : {" 70  ", "126  ", "127  ", "128+N", "CMD"}) {
      EXPECT_EQ(outcome.out.find(text), std::string::npos) << subcommand << ": " << text << "\n" << outcome.out;
    }
    const bool waits = subcommand == "wait";
    EXPECT_EQ(outcome.out.find(" 75  timeout") != std::string::npos, waits) << subcommand << "\n" << outcome.out;
    EXPECT_EQ(outcome.out.find(" 75  a server limit") != std::string::npos, !waits) << subcommand;
  }
  // Every subcommand lists the codes it can return and no other: 3 is get's
  // alone, and local, which asks no server, has none of a server's (each
  // listed 3 "get: NAME is no semaphore", and local 69 and 75).
  const std::string kServer = "0 1 2 69 71 75 76 77";
  const struct {
    std::vector<std::string> command;
    std::string codes;
  } kCodes[] = {
      {{"run"}, "0 1 2 69 70 71 75 76 77 126 127"},
      {{"get"}, "0 1 2 3 69 71 75 76 77"},
      {{"status"}, kServer},
      {{"post"}, kServer},
      {{"wait"}, kServer},
      {{"create"}, kServer},
      {{"delete"}, kServer},
      {{"ping"}, kServer},
      {{"stats"}, kServer},
      {{"holders"}, kServer},
      {{"waiters"}, kServer},
      {{"sessions"}, kServer},
      {{"kick"}, kServer},
      {{"cluster"}, kServer},
      {{"cluster", "status"}, kServer},
      {{"cluster", "add"}, kServer},
      {{"cluster", "remove"}, kServer},
      {{"local"}, "0 1 2"},
      {{"local", "list"}, "0 1 2"},
      {{"local", "clean"}, "0 1 2"},
  };
  for (const auto& [command, codes] : kCodes) {
    outcome = netsem(joined(command, {"--help"}));
    ASSERT_EQ(outcome.exit_code, 0) << command.front() << "\n" << outcome;
    EXPECT_EQ(exit_codes_of_help(outcome.out), codes) << command.front() << "\n" << outcome.out;
  }
  // cluster's 75 is a TIMEOUT of its own: the leader gave up on the change.
  outcome = netsem({"cluster", "--help"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_NE(outcome.out.find(" 75  the leader gave up (TIMEOUT: add's server did not catch up, or outcome unknown)"),
            std::string::npos)
      << outcome.out;
  // And its 69 also a status of a server that knows no leader.
  EXPECT_NE(outcome.out.find(" 69  no server reachable; or status: the server knows no leader"), std::string::npos)
      << outcome.out;
  outcome = netsem({"cluster", "add", "--help"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_NE(outcome.out.find(" 75  the leader gave up (TIMEOUT: add's server did not catch up, or outcome unknown)"),
            std::string::npos)
      << outcome.out;
  EXPECT_EQ(outcome.out.find("126  run:"), std::string::npos) << outcome.out;
}

TEST_F(CliUsage, SuggestsTheWordMeantForATypo) {
  const struct {
    std::vector<std::string> args;
    std::string err;
  } kCases[] = {
      {{"status", "--jsn"}, "netsem: status: unknown option --jsn (did you mean --json?) (see netsem status --help)\n"},
      {{"get", "beta", "--josn"}, "netsem: get: unknown option --josn (did you mean --json?)"},
      {{"wait", "--timout", "1", "beta"}, "netsem: wait: unknown option --timout (did you mean --timeout?)"},
      {{"run", "--tiemout", "1", "beta", "true"}, "netsem: run: unknown option --tiemout (did you mean --timeout?)"},
      {{"--servr", "x", "ping"}, "netsem: ping: unknown option --servr (did you mean --server?)"},
      {{"ping", "--verbos"}, "netsem: ping: unknown option --verbos (did you mean --verbose?)"},
      {{"stauts"}, "netsem: unknown subcommand 'stauts' (did you mean status?) (see netsem --help)\n"},
      {{"creat", "x", "1"}, "netsem: unknown subcommand 'creat' (did you mean create?)"},
      {{"frob"}, "netsem: unknown subcommand 'frob' (see netsem --help)\n"},
      {{"cluster", "stauts"},
       "netsem: cluster: unknown subcommand 'stauts' (did you mean status?) (see netsem cluster --help)\n"},
      {{"local", "frob"}, "netsem: local: unknown subcommand 'frob' (see netsem local --help)\n"},
  };
  for (const auto& test : kCases) {
    const Outcome outcome = netsem(test.args);
    EXPECT_EQ(outcome.exit_code, 2) << test.args[0] << "\n" << outcome;
    EXPECT_EQ(outcome.err.rfind(test.err, 0), 0u) << outcome;
  }
}

// A server that answers no is not an outage (issue 10, item 13): no command
// runs under a host-local stand-in, and the exit code says what happened.
TEST_F(CliServers, ARefusingServerIsNotAnOutage) {
  auto denying = start_server(with_server_options("allowed_networks = 10.0.0.0/8\n"));
  ASSERT_TRUE(denying);
  const std::string at = "127.0.0.1:" + std::to_string(denying->port());
  const std::string plain = "netsem: server " + at +
                            " refused this host: address 127.0.0.1 is not allowed (this host's address is not in "
                            "its allowed_networks)\n";
  Outcome outcome = Cli({"run", "x", "--", "echo", "ran"}, {"NETSEM_SERVER=" + at}).finish();
  EXPECT_EQ(outcome.exit_code, 77) << outcome;
  EXPECT_EQ(outcome.out, "") << outcome;  // the command did not run
  EXPECT_EQ(outcome.err, plain) << outcome;
  for (const std::vector<std::string>& args : {std::vector<std::string>{"ping"}, {"status"}, {"get", "x"}}) {
    outcome = Cli(args, {"NETSEM_SERVER=" + at}).finish();
    EXPECT_EQ(outcome.exit_code, 77) << args[0] << ": " << outcome;
    EXPECT_EQ(outcome.err, plain) << outcome;
  }
  // With an unreachable server listed too: still a refusal, and each server's story.
  const std::string dead = dead_address();
  outcome = Cli({"--server", dead + "," + at, "run", "x", "--", "echo", "ran"}).finish();
  EXPECT_EQ(outcome.exit_code, 77) << outcome;
  EXPECT_EQ(outcome.out, "") << outcome;
  EXPECT_NE(outcome.err.find(dead + ": Connection refused"), std::string::npos) << outcome;
}

TEST_F(CliServers, AFullServerSaysSoAndExitsTempfail) {
  FullServer full = start_full_server();
  ASSERT_TRUE(full.holder);
  const std::string at = "127.0.0.1:" + std::to_string(full.server->port());
  const Outcome outcome = Cli({"run", "x", "--", "echo", "ran"}, {"NETSEM_SERVER=" + at}).finish();
  EXPECT_EQ(outcome.exit_code, 75) << outcome;
  EXPECT_EQ(outcome.out, "") << outcome;
  EXPECT_TRUE(outcome.err.starts_with("netsem: server " + at + " is full: it has reached its max_connections"))
      << outcome;
}

// A fake cluster server's answers (test_support::LineServer), for the
// outcomes of `netsem cluster add`, `remove` and `raise-fences` a single
// netsemd cannot give (it answers BAD_ARG: no cluster): LEASE as a 1.0 or
// 1.1 server, ERR UNKNOWN_VERB (the CLI's cluster commands connect
// sessionless: a LEASE in HELLO's place), PING, HELLO as a 1.2 server,
// STATS with a session timeout of 0, each CLUSTER STATUS with
// the next of `views` (the last one again once all were given), CLUSTER
// ADD, REMOVE and FENCES with `change` ("TIMEOUT"), anything else ERR
// UNKNOWN_VERB.
test_support::LineServer::Answer fake_cluster(std::vector<std::string> views, std::string change) {
  return [views = std::move(views), change = std::move(change), statuses = std::size_t{0}](
             int, const std::vector<std::string>& f) mutable -> std::optional<std::string> {
    const std::string& verb = f[1];
    const std::string action = f.size() > 2 ? f[2] : "";
    if (verb == "HELLO") return "OK netsem 1.2 7";
    if (verb == "PING") return "PONG";
    if (verb == "STATS") return "OK {\"session_timeout_ms\":0}";
    if (verb == "CLUSTER" && action == "STATUS") return "OK " + views[std::min(statuses++, views.size() - 1)];
    if (verb == "CLUSTER" && (action == "ADD" || action == "REMOVE" || action == "FENCES")) return change;
    return "ERR UNKNOWN_VERB unknown verb";
  };
}

// The request lines `fake` read, without their tags.
std::vector<std::string> requests(const test_support::LineServer& fake) {
  std::vector<std::string> requests;
  for (const std::string& line : fake.lines()) {
    const auto space = line.find(' ');
    requests.push_back(space == std::string::npos ? "" : line.substr(space + 1));
  }
  return requests;
}

// A CLUSTER STATUS view of server 1: its role and term, the leader it names,
// and the members `members` ("1 voter,2 voter,9 spare").
std::string cluster_view(const std::string& role, int term, int leader_id, const std::string& members) {
  std::string rows;
  std::istringstream list(members);
  for (std::string member; std::getline(list, member, ',');) {
    const auto space = member.find(' ');
    const std::string id = member.substr(0, space);
    rows += std::string(rows.empty() ? "" : ",") + "{\"id\":" + id + ",\"role\":\"" + member.substr(space + 1) +
            "\",\"raft\":\"127.0.0." + id + ":7001\",\"client\":\"127.0.0." + id + ":53559\"}";
  }
  return "{\"id\":1,\"role\":\"" + role + "\",\"term\":" + std::to_string(term) +
         ",\"leader_id\":" + std::to_string(leader_id) + ",\"leader\":\"\",\"members\":[" + rows + "]}";
}

// A change the leader answered TIMEOUT (it gave up on it), then the look at
// CLUSTER STATUS on the same connection (note24 item 3): when the server
// asked still leads in the same term, it never lost its leadership, so the
// outcome is known and said ("not done: ..."; it said "not done for
// certain ... the outcome is unknown" then too, review24 item 9; an ADD it
// shows as a voter after all is done, exit 0); when its term or role
// changed, the outcome is unknown, and the message says what that server
// shows now and that a new leader may still change it. Exit 75 but for a
// change done.
TEST_F(CliServers, AClusterChangeTheLeaderGaveUpOnIsReportedKnownOnlyWhenTheSameLeaderStillLeads) {
  const std::string leads = cluster_view("leader", 2, 1, "1 voter,2 voter,3 voter");
  const std::string add = "cluster add 9 127.0.0.9:7001 127.0.0.9:53559";
  const std::string not_caught_up =
      "server 9 did not catch up with the log in time (is it running, with join = on, and is 127.0.0.9:7001 "
      "reachable from the leader?)";
  const struct {
    std::string command;
    std::string after;  // the view after the TIMEOUT
    int exit_code;
    std::string out;
    std::string err;
  } cases[] = {
      {add, leads, 75, "",
       "netsem: cluster add: not done: " + not_caught_up +
           "; server 1 still leads, in the same term, and has server 9 out of its configuration\n"},
      {add, cluster_view("leader", 2, 1, "1 voter,2 voter,3 voter,9 spare"), 75, "",
       "netsem: cluster add: not done: " + not_caught_up +
           "; server 1 still leads, in the same term, and has server 9 as a spare\n"},
      {add, cluster_view("leader", 2, 1, "1 voter,2 voter,3 voter,9 voter"), 0, "server 9 added: a voter\n", ""},
      {add, cluster_view("follower", 3, 2, "1 voter,2 voter,3 voter,9 spare"), 75, "",
       "netsem: cluster add: not done for certain: " + not_caught_up +
           ", or the leader lost its leadership before the change committed (the leader's log says which); the "
           "outcome is unknown; server 1 (follower, term 3) now has server 9 as a spare, which a new leader may "
           "still change: run netsem cluster status once one is elected\n"},
      // Leader again, but in a later term: it lost its leadership meanwhile.
      {add, cluster_view("leader", 4, 1, "1 voter,2 voter,3 voter"), 75, "",
       "netsem: cluster add: not done for certain: " + not_caught_up +
           ", or the leader lost its leadership before the change committed (the leader's log says which); the "
           "outcome is unknown; server 1 (leader, term 4) now has server 9 out of its configuration\n"},
      {"cluster remove 3", cluster_view("candidate", 3, 0, "1 voter,2 voter,3 voter"), 75, "",
       "netsem: cluster remove: not done for certain: the leader lost its leadership before the change committed; "
       "the outcome is unknown; server 1 (candidate, term 3) now has server 3 as a voter, which a new leader may "
       "still change: run netsem cluster status once one is elected\n"},
      {"cluster remove 3", cluster_view("leader", 2, 1, "1 voter,2 voter,3 voter"), 75, "",
       "netsem: cluster remove: not done: the leader gave up on the change; server 1 still leads, in the same term, "
       "and has server 3 as a voter\n"},
      {"cluster remove 3", cluster_view("leader", 2, 1, "1 voter,2 voter"), 0, "server 3 removed\n", ""},
  };
  for (const auto& c : cases) {
    test_support::LineServer fake(fake_cluster({leads, c.after}, "TIMEOUT"));
    std::vector<std::string> args{"--server", fake.address()};
    std::istringstream words(c.command);
    for (std::string word; words >> word;) args.push_back(word);
    const Outcome outcome = Cli(args).finish();
    EXPECT_EQ(outcome.exit_code, c.exit_code) << c.command << " then " << c.after << "\n" << outcome;
    EXPECT_EQ(outcome.out, c.out) << c.command << " then " << c.after << "\n" << outcome;
    EXPECT_EQ(outcome.err, c.err) << c.command << " then " << c.after << "\n" << outcome;
    // One look before the change, the change, one look after.
    std::vector<std::string> cluster;
    for (const std::string& request : requests(fake)) {
      if (request.starts_with("CLUSTER")) cluster.push_back(request.substr(0, request.find(' ', 8)));
    }
    EXPECT_EQ(cluster, (std::vector<std::string>{
                           "CLUSTER STATUS", c.command.starts_with("cluster add") ? "CLUSTER ADD" : "CLUSTER REMOVE",
                           "CLUSTER STATUS"}))
        << c.command;
  }
}

// `netsem cluster raise-fences N` whose leader answers TIMEOUT (it lost its
// leadership before the raise committed: ClusterRuntime's kCancelled, which
// CLUSTER FENCES answers as ADD and REMOVE do): exit 75 and "not done for
// certain", since a new leader may still commit it; no look at CLUSTER
// STATUS after it (raising again is safe, the words say so). Beside it the
// leader's OK (exit 0, the last fence) and its refusals, with the server's
// words (docs/cli.md): BUSY exits 1, LIMIT 75.
TEST_F(CliServers, ARaiseOfTheFencesTheLeaderGaveUpOnIsNotDoneForCertainAndExits75) {
  const std::string leads = cluster_view("leader", 2, 1, "1 voter,2 voter,3 voter");
  const struct {
    std::string answer;
    int exit_code;
    std::string out;
    std::string err;
  } cases[] = {
      {"TIMEOUT", 75, "",
       "netsem: cluster raise-fences: not done for certain: the leader lost its leadership before the raise "
       "committed; the outcome is unknown (STATS' last_fence on the new leader shows it; raising again is safe)\n"},
      {"OK 1042", 0, "fences raised by 1000: the last fence is 1042; every fence handed out from now on is above it\n",
       ""},
      {"ERR BUSY no leader now", 1, "", "netsem: CLUSTER FENCES 1000: BUSY no leader now\n"},
      {"ERR LIMIT the last fence would pass 2^62", 75, "",
       "netsem: CLUSTER FENCES 1000: LIMIT the last fence would pass 2^62\n"},
  };
  for (const auto& c : cases) {
    test_support::LineServer fake(fake_cluster({leads}, c.answer));
    const Outcome outcome = Cli({"--server", fake.address(), "cluster", "raise-fences", "1000"}).finish();
    EXPECT_EQ(outcome.exit_code, c.exit_code) << c.answer << "\n" << outcome;
    EXPECT_EQ(outcome.out, c.out) << c.answer << "\n" << outcome;
    EXPECT_EQ(outcome.err, c.err) << c.answer << "\n" << outcome;
    std::vector<std::string> cluster;
    for (const std::string& request : requests(fake)) {
      if (request.starts_with("CLUSTER")) cluster.push_back(request);
    }
    EXPECT_EQ(cluster, (std::vector<std::string>{"CLUSTER STATUS", "CLUSTER FENCES 1000"})) << c.answer;
    // Sessionless, LEASE leads (an admin probe's first line over a full
    // server's max_connections), and its UNKNOWN_VERB is no refusal.
    const std::vector<std::string> sent = requests(fake);
    EXPECT_EQ(sent.empty() ? "(none)" : sent.front(), "LEASE") << c.answer;
  }
}

// A change whose answer never comes (note26 section 7 item 5: an ADD whose
// new server needs longer than the lease to catch up; the leader reads
// nothing of the connection meanwhile): libnetsem ends the connection at
// half the session timeout (600 ms here, from LEASE), and the CLI follows
// the change on a new connection to the leader the first CLUSTER STATUS
// named, judging as after a TIMEOUT, while that leader shows the server as
// a spare in the same term. The fake server never answers ADD or REMOVE;
// its views, in order: the look before the change, then the follow-up's.
TEST_F(CliServers, AClusterChangeWhoseAnswerNeverComesIsFollowedAtTheLeader) {
  const std::string leads = cluster_view("leader", 2, 1, "1 voter,2 voter,3 voter");
  const std::string spare = cluster_view("leader", 2, 1, "1 voter,2 voter,3 voter,9 spare");
  const std::string add = "cluster add 9 127.0.0.9:7001 127.0.0.9:53559";
  const struct {
    std::string command;
    std::vector<std::string> views;  // after the first look
    int exit_code;
    std::string out;
    std::string err;  // after "no answer came from server 1 (no answer from the server for N ms"
  } cases[] = {
      {add,
       {spare, spare, cluster_view("leader", 2, 1, "1 voter,2 voter,3 voter,9 voter")},
       0,
       "server 9 added: a voter\n",
       ""},
      {add,
       {spare, leads},
       75,
       "",
       "netsem: cluster add: not done: server 9 did not catch up with the log in time (is it running, with join = "
       "on, and is 127.0.0.9:7001 reachable from the leader?); server 1 still leads, in the same term, and has "
       "server 9 out of its configuration\n"},
      {add,
       {cluster_view("follower", 3, 2, "1 voter,2 voter,3 voter,9 spare")},
       75,
       "",
       ", half its session timeout of 600 ms); the outcome is unknown; server 1 (follower, term 3) now has server "
       "9 as a spare, which a new leader may still change: run netsem cluster status once one is elected\n"},
      {"cluster add -t 1s 9 127.0.0.9:7001 127.0.0.9:53559",
       {spare},
       75,
       "",
       "netsem: cluster add: not done yet after 1 s: server 9 is still catching up (a spare, match index - of -); "
       "server 1 goes on with the change: run netsem cluster status to see it end\n"},
      {"cluster remove 3", {cluster_view("leader", 2, 1, "1 voter,2 voter")}, 0, "server 3 removed\n", ""},
      {"cluster remove 3",
       {leads},
       75,
       "",
       ", half its session timeout of 600 ms); server 1 still leads, in the same term, and has server 3 as a voter, "
       "and may still remove it; run netsem cluster status to see whether server 3 is a member\n"},
  };
  for (const auto& c : cases) {
    std::mutex mutex;
    std::string address;  // the fake's, named as the leader's client address: guarded by mutex
    std::vector<std::string> views{leads};
    views.insert(views.end(), c.views.begin(), c.views.end());
    auto answer = fake_cluster(views, "");
    std::set<int> held;  // the connections of a change: the server thread's
    test_support::LineServer fake(
        [&, answer](int connection, const std::vector<std::string>& f) mutable -> std::optional<std::string> {
          if (f[1] == "LEASE") return "OK 600";
          // As the leader: nothing more of the connection is read.
          if (f[1] == "CLUSTER" && f.size() > 2 && (f[2] == "ADD" || f[2] == "REMOVE")) held.insert(connection);
          if (held.contains(connection)) return std::nullopt;
          std::string said = *answer(connection, f);
          std::lock_guard lock(mutex);
          if (const auto at = said.find("\"leader\":\"\""); at != std::string::npos) {
            said.replace(at, 11, "\"leader\":\"" + address + "\"");
          }
          return said;
        });
    {
      std::lock_guard lock(mutex);
      address = fake.address();
    }
    std::vector<std::string> args{"--server", fake.address()};
    std::istringstream words(c.command);
    for (std::string word; words >> word;) args.push_back(word);
    const Outcome outcome = Cli(args).finish();
    EXPECT_EQ(outcome.exit_code, c.exit_code) << c.command << "\n" << outcome;
    EXPECT_EQ(outcome.out, c.out) << c.command << "\n" << outcome;
    if (c.err.empty() || c.err.starts_with("netsem: cluster add: not done")) {
      EXPECT_EQ(outcome.err, c.err) << c.command << "\n" << outcome;
    } else {
      const std::string what = c.command.starts_with("cluster add") ? "cluster add" : "cluster remove";
      EXPECT_TRUE(outcome.err.starts_with("netsem: " + what +
                                          ": not done for certain: no answer came from server 1 (no answer from "
                                          "the server for "))
          << c.command << "\n"
          << outcome;
      EXPECT_TRUE(outcome.err.ends_with(c.err)) << c.command << "\n" << outcome;
    }
    // The change sent once, on the first connection; the looks after it on
    // another (the first client also connects again meanwhile).
    EXPECT_GE(fake.connections(), 2) << c.command;
    int changes = 0;
    for (const std::string& line : fake.lines()) {
      changes += line.find(" CLUSTER ADD ") != std::string::npos || line.find(" CLUSTER REMOVE ") != std::string::npos;
    }
    EXPECT_EQ(changes, 1) << c.command;
  }
}

// netsem out of file descriptors (a process at its limit: not an outage, no
// fallback, e4de7a2) exits 71, EX_OSERR, which a script can tell from a
// refusal (1), an outage (69) and a timeout (75); it exited 1. It says so
// without the library's "so no fallback: the client tries the servers
// again" (netsem exits; and get and ping never fall back). Each command
// runs under `ulimit -n N` (sh, then exec netsem: the Cli child has only 0,
// 1 and 2 open), N from 3 up: every N at which netsem loads but lacks a
// descriptor (run's own pipe, then the socket; reading the configuration
// file in between is exit 2) exits 71, and the first N that suffices gets
// the server's answer. beta is held by another session:
// a fallback would have granted it.
TEST_F(CliServers, AProcessOutOfDescriptorsExits71AndDoesNotFallBack) {
  ASSERT_EQ(observer_->request(req::acquire("a", "beta")), "a OK 1");
  const std::string config = local_config(address()).string();
  const struct {
    std::vector<std::string> command;
    int served;  // the exit code once descriptors suffice
  } cases[] = {{{"get", "beta"}, 0}, {{"ping"}, 0}, {{"run", "--nonblock", "beta", "--", "echo", "ran"}, 75}};
  for (const auto& [command, served] : cases) {
    bool socket_failed = false;
    int limit = 3;
    for (; limit <= 16; ++limit) {
      const Outcome outcome = Cli(joined({"-c", "ulimit -n " + std::to_string(limit) + " && exec \"$0\" \"$@\"",
                                          NETSEM_CLI_PATH, "--config", config},
                                         command),
                                  {}, "/bin/sh")
                                  .finish();
      if (outcome.err.find("error while loading shared libraries") != std::string::npos) continue;
      // A configuration file that cannot be read is bad usage, whatever the reason.
      if (outcome.err.starts_with("netsem: --config: " + config + ": cannot read: Too many open files")) {
        EXPECT_EQ(outcome.exit_code, 2) << outcome;
        continue;
      }
      if (outcome.err.find("Too many open files") == std::string::npos) {
        EXPECT_EQ(outcome.exit_code, served) << command.front() << ", ulimit -n " << limit << ": " << outcome;
        break;
      }
      std::printf("%s, ulimit -n %d: exit %d: %s", command.front().c_str(), limit, outcome.exit_code,
                  outcome.err.c_str());
      EXPECT_EQ(outcome.exit_code, 71) << command.front() << ", ulimit -n " << limit << ": " << outcome;
      EXPECT_EQ(outcome.err.find("no server reachable"), std::string::npos) << outcome;
      EXPECT_EQ(outcome.out, "") << outcome;  // no row, no PONG, and CMD did not run
      // netsem exits: the library's "the client tries the servers again" is
      // not for it, and fallback only for run, which may fall back.
      EXPECT_EQ(outcome.err.find("tries the servers again"), std::string::npos) << outcome;
      socket_failed = socket_failed ||
                      outcome.err.ends_with(
                          std::string("this process is out of file descriptors (socket: Too many open files); not an "
                                      "outage") +
                          (command.front() == "run" ? ", so no fallback\n" : "\n"));
    }
    EXPECT_TRUE(socket_failed) << command.front() << ": no run failed at its socket";
    EXPECT_LE(limit, 16) << command.front() << ": never served";
  }
  EXPECT_EQ(get("beta"), "OK 0 1 1 0 defined");
}

TEST_F(CliServers, EverySubcommandSaysNoServerReachableInTheSameWords) {
  const std::string dead = dead_address();
  const std::string kWhy = "no server reachable (" + dead + ": Connection refused)";
  for (const std::vector<std::string>& command : {std::vector<std::string>{"status"},
                                                  {"ping"},
                                                  {"get", "beta"},
                                                  {"post", "beta"},
                                                  {"wait", "-t", "0", "beta"},
                                                  {"run", "beta", "true"},
                                                  {"create", "x", "1"},
                                                  {"delete", "x"},
                                                  {"holders", "beta"},
                                                  {"waiters", "beta"},
                                                  {"sessions"},
                                                  {"kick", "3"},
                                                  {"stats"}}) {
    const Outcome outcome = Cli(joined({"--server", dead, "--fallback", "fail"}, command)).finish();
    EXPECT_EQ(outcome.exit_code, 69) << command.front() << "\n" << outcome;
    EXPECT_EQ(outcome.err.rfind("netsem: ", 0), 0u) << outcome;
    EXPECT_NE(outcome.err.find(kWhy), std::string::npos) << outcome;
  }
  // And the warning of a run served by the host-local fallback.
  const Outcome outcome = Cli({"--config", local_config(dead).string(), "run", "beta", "true"}).finish();
  EXPECT_NE(outcome.err.find("netsem: warning: " + kWhy), std::string::npos) << outcome;
}

// The commands that need a session probe for it with a PING when the first
// round found none; against a silent server (here SIGSTOPped) the probe
// waits request_timeout and its failure is the command's, in the command's
// words (audit21 finding 5: they said "PING: server ... has not answered").
// get, create and delete name their own request. Each says it once: the
// servers tried followed in parentheses, the same server's silence in other
// words; with a second server listed, only what that one did (the silent
// one was named again). "so no fallback" only from post, which may fall
// back (the others had it too).
// All wait side by side.
TEST_F(CliServers, ASilentServerIsReportedInTheWordsOfTheCommandNotOfItsProbe) {
  const auto config =
      local_config(address(), "local", "connect_timeout_ms = 500\nrequest_timeout_ms = 1000\n").string();
  const std::string dead = dead_address();
  const Frozen frozen(*server_);
  const std::string kSilent = "server " + address() + " accepted the connection but has not answered within 1000 ms";
  const struct {
    std::vector<std::string> command;
    std::string err;
  } cases[] = {
      {{"stats"}, "stats: " + kSilent + ": not an outage\n"},
      {{"status"}, "status: " + kSilent + ": not an outage\n"},
      {{"holders", "beta"}, "holders: " + kSilent + ": not an outage\n"},
      {{"waiters", "beta"}, "waiters: " + kSilent + ": not an outage\n"},
      {{"sessions"}, "sessions: " + kSilent + ": not an outage\n"},
      {{"ping"}, "ping: " + kSilent + ": not an outage\n"},
      {{"kick", "3"}, "kick: " + kSilent + ": not an outage\n"},
      {{"cluster", "status"}, "cluster status: " + kSilent + ": not an outage\n"},
      {{"get", "beta"}, "GET \"beta\": " + kSilent + ": not an outage\n"},
      {{"create", "x", "1"}, "CREATE \"x\": " + kSilent + ": not an outage\n"},
      {{"delete", "x"}, "DELETE \"x\": " + kSilent + ": not an outage\n"},
      {{"post", "beta"}, "POST \"beta\": " + kSilent + ": not an outage, so no fallback\n"},
      {{"--server", address() + "," + dead, "stats"},
       "stats: " + kSilent + ": not an outage (" + dead + ": Connection refused)\n"},
  };
  std::vector<std::unique_ptr<Cli>> clis;
  for (const auto& c : cases) clis.push_back(std::make_unique<Cli>(joined({"--config", config}, c.command)));
  for (std::size_t i = 0; i < clis.size(); ++i) {
    const Outcome outcome = clis[i]->finish();
    EXPECT_EQ(outcome.exit_code, 69) << cases[i].command.front() << ": " << outcome;
    EXPECT_EQ(outcome.err, "netsem: " + cases[i].err) << outcome;
    EXPECT_EQ(outcome.err.find("PING"), std::string::npos) << outcome;
    EXPECT_EQ(outcome.out, "") << outcome;
  }
}

// Two silent servers (two netsemd SIGSTOPped) and a dead one listed: the
// message names the silent two once, in the plural ("servers A, B ... have
// not answered"; it said "has"), and the parentheses only what the third
// did (they named the two again, with their HELLO unanswered).
TEST_F(CliServers, SeveralSilentServersAreNamedOnceInThePlural) {
  Netsemd::Options options;
  options.semaphores = "beta = 1\n";
  std::string error;
  const std::unique_ptr<Netsemd> second = Netsemd::start(options, &error);
  ASSERT_TRUE(second) << error;
  const std::string other = "127.0.0.1:" + std::to_string(second->port());
  const std::string dead = dead_address();
  const auto config = local_config(address() + "," + other + "," + dead, "local",
                                   "connect_timeout_ms = 500\nrequest_timeout_ms = 1000\n");
  const Frozen one(*server_);
  const Frozen two(*second);
  const std::string kSilent = "servers " + address() + ", " + other +
                              " accepted the connection but have not answered within 1000 ms: not an outage";
  Cli stats({"--config", config.string(), "stats"});
  Cli post({"--config", config.string(), "post", "beta"});
  Outcome outcome = stats.finish();
  EXPECT_EQ(outcome.exit_code, 69) << outcome;
  EXPECT_EQ(outcome.err, "netsem: stats: " + kSilent + " (" + dead + ": Connection refused)\n") << outcome;
  outcome = post.finish();
  EXPECT_EQ(outcome.exit_code, 69) << outcome;
  EXPECT_EQ(outcome.err, "netsem: POST \"beta\": " + kSilent + ", so no fallback (" + dead + ": Connection refused)\n")
      << outcome;
}

TEST_F(CliServers, AnAddressWithoutAPortTakesTheDefaultPort) {
  // Whether a netsemd listens on this host's port 53559 or not, the answer
  // or the refusal names that port.
  for (const auto& [args, env] :
       {std::pair<std::vector<std::string>, std::string>{{"--server", "127.0.0.1", "ping"}, ""},
        {{"ping"}, "NETSEM_SERVER=127.0.0.1"},
        {{"--server", "[::1]", "ping"}, ""},
        {{"ping"}, "NETSEM_SERVER=localhost"}}) {
    const Outcome outcome =
        Cli(args, env.empty() ? std::vector<std::string>{} : std::vector<std::string>{env}).finish();
    ASSERT_TRUE(outcome.exit_code == 0 || outcome.exit_code == 69) << args.front() << " " << env << "\n" << outcome;
    EXPECT_NE((outcome.exit_code == 0 ? outcome.out : outcome.err).find(":53559"), std::string::npos) << outcome;
  }
  // In the config file too, and the flag and the variable still take a port.
  Outcome outcome = Cli({"--config", local_config("127.0.0.1").string(), "ping"}).finish();
  EXPECT_NE((outcome.exit_code == 0 ? outcome.out : outcome.err).find("127.0.0.1:53559"), std::string::npos) << outcome;
  outcome = Cli({"ping"}, {server_env()}).finish();
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
}

TEST_F(CliServers, FlagEnvironmentAndConfigFileAllChooseTheServer) {
  const std::string dead = dead_address();
  const auto config = local_config(address());
  const auto dead_config = local_config(dead, "dead");
  // The server's own file, without [client]: the server it configures.
  const auto server_config = dir_.path() / "server.ini";
  write_text(server_config, "[server]\nbind_address = 0.0.0.0\nbind_port = " + std::to_string(server_->port()) + "\n");
  const struct {
    std::vector<std::string> args;
    std::vector<std::string> env;
    int exit_code;
  } kCases[] = {
      {{"ping"}, {server_env()}, 0},
      {{"ping"}, {"NETSEM_SERVER=" + dead}, 69},
      {{"--server", address(), "ping"}, {"NETSEM_SERVER=" + dead}, 0},  // the flag wins
      {{"ping", "--server", address()}, {}, 0},                         // after the subcommand too
      {{"--server", dead + "," + address(), "ping"}, {}, 0},            // tried in order
      {{"--server", dead, "--server", address(), "ping"}, {}, 0},
      {{"--server", dead, "ping"}, {server_env()}, 69},
      {{"--config", config.string(), "ping"}, {}, 0},
      {{"ping"}, {"NETSEM_CONFIG=" + config.string()}, 0},
      {{"--config", config.string(), "ping"}, {"NETSEM_CONFIG=" + dead_config.string()}, 0},
      {{"--config", dead_config.string(), "ping"}, {server_env()}, 0},  // NETSEM_SERVER overrides the file
      {{"--config", server_config.string(), "ping"}, {}, 0},
  };
  for (const auto& test : kCases) {
    const Outcome outcome = Cli(test.args, test.env).finish();
    std::string what;
    for (const auto& arg : test.args) what += " " + arg;
    for (const auto& entry : test.env) what += " [" + entry + "]";
    EXPECT_EQ(outcome.exit_code, test.exit_code) << what << "\n" << outcome;
    if (test.exit_code == 0) {
      EXPECT_EQ(outcome.out.rfind("PONG from " + address(), 0), 0u) << what << outcome;
    }
  }
}

// netsemd's own command line (issue 12 item 10): its --help lists its exit
// codes, and every error it prints starts with its name.
TEST(NetsemdCommandLine, HelpListsExitCodesAndErrorsNameTheProgram) {
  Outcome outcome = Cli({"--help"}, {}, NETSEMD_PATH).finish();
  ASSERT_EQ(outcome.exit_code, 0) << outcome;
  for (const char* text : {"--check-config", "Exit codes:", "    0  stopped cleanly", "    1  could not start",
                           "    2  bad command line or configuration file"}) {
    EXPECT_NE(outcome.out.find(text), std::string::npos) << text << "\n" << outcome.out;
  }
  const struct {
    std::vector<std::string> args;
    std::string err;  // the start of stderr
  } kCases[] = {
      {{"--chek-config"},
       "netsemd: unknown option --chek-config (did you mean --check-config?) (see netsemd --help)\n"},
      {{"--prot", "1"}, "netsemd: unknown option --prot (did you mean --port?)"},
      {{"--bogus"}, "netsemd: "},
      {{"extra"}, "netsemd: "},
      {{"--port"}, "netsemd: "},
      {{"--port", "x", "--check-config"}, "netsemd: --port: "},
      {{"--config", "/nonexistent/netsemd.ini", "--check-config"}, "netsemd: "},
  };
  for (const auto& test : kCases) {
    outcome = Cli(test.args, {}, NETSEMD_PATH).finish();
    EXPECT_EQ(outcome.exit_code, 2) << test.args.front() << "\n" << outcome;
    EXPECT_EQ(outcome.err.rfind(test.err, 0), 0u) << outcome;
    EXPECT_EQ(outcome.out, "") << outcome;
  }
}

// netsemd that cannot start says so as its other errors, with its name (it
// was a log record, "<time> error cannot start: ..."), and exits 1.
TEST(NetsemdCommandLine, CannotStartNamesTheProgram) {
  std::string error;
  auto running = Netsemd::start({}, &error);
  ASSERT_TRUE(running) << error;
  TempDir dir;
  const auto last_line = [](std::string text) {  // with its '\n'
    if (!text.empty() && text.back() == '\n') text.pop_back();
    const auto newline = text.rfind('\n');
    return (newline == std::string::npos ? text : text.substr(newline + 1)) + "\n";
  };
  // Its data directory is in use by the running one.
  Outcome outcome = Cli({"--config", running->config_path().string()}, {}, NETSEMD_PATH).finish();
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_EQ(last_line(outcome.err).rfind("netsemd: cannot start: BUSY: data directory ", 0), 0u) << outcome;
  EXPECT_NE(outcome.err.find(" is in use by another netsemd (pid " + std::to_string(running->pid()) + ")\n"),
            std::string::npos)
      << outcome;
  // Its port is taken.
  const auto config = dir.path() / "netsemd.ini";
  write_text(config, "[server]\nhttp_enabled = off\ndata_dir = " + (dir.path() / "data").string() +
                         "\nstats_dir = " + (dir.path() / "data").string() + "\n");
  outcome = Cli({"--config", config.string(), "--port", std::to_string(running->port())}, {}, NETSEMD_PATH).finish();
  EXPECT_EQ(outcome.exit_code, 1) << outcome;
  EXPECT_EQ(last_line(outcome.err), "netsemd: cannot start: IO_ERROR: cannot listen on 127.0.0.1:" +
                                        std::to_string(running->port()) + ": Address already in use\n")
      << outcome;
}

// netsemd --check-config (issue 12 item 13): every error of the file in one
// run, the directories, the semaphores found, a name split at ':'.
TEST(NetsemdCommandLine, CheckConfigReportsEveryErrorTheDirectoriesAndTheSemaphores) {
  TempDir dir;
  const auto check = [&](const std::string& text) {
    const auto file = dir.path() / "netsemd.ini";
    write_text(file, text);
    return Cli({"--config", file.string(), "--check-config"}, {}, NETSEMD_PATH).finish();
  };
  const std::string at = (dir.path() / "netsemd.ini").string();
  Outcome outcome = check(
      "[server]\nbind_port = abc\nmax_sessions = 5\nfsync = sometimes\n"
      "[semaphores]\nalpha = 3\nbeta = 0\nhost:10.0.0.1 = 2\nalph%61 = 4\n[extra]\n");
  EXPECT_EQ(outcome.exit_code, 2) << outcome;
  EXPECT_EQ(outcome.out, "") << outcome;
  const std::vector<std::string> kErrors = {
      "netsemd: " + at + ":2: bind_port: `abc` is not a whole number\n",
      "netsemd: " + at + ":3: unknown option `max_sessions` in [server]",
      "netsemd: " + at + ":4: fsync: `sometimes` is not one of",
      "netsemd: " + at + ":7: beta: ",
      "netsemd: " + at + ":8: host: ",
      "(a line is split at its first `:` or `=`, so the name was read as `host`: write `:` and `=` in a name as %3A "
      "and %3D)\n",
      "netsemd: " + at + ":9: semaphore `alpha` is defined twice (first at line 6 as `alpha`)\n",
      "netsemd: " + at + ":10: unknown section [extra]",
  };
  std::size_t from = 0;
  for (const auto& error : kErrors) {  // each once, in the file's order
    const auto found = outcome.err.find(error, from);
    EXPECT_NE(found, std::string::npos) << error << "\n" << outcome;
    if (found != std::string::npos) from = found + error.size();
  }
  EXPECT_EQ(std::count(outcome.err.begin(), outcome.err.end(), '\n'), 7) << outcome;

  // Syntax errors too, each with its line, beside the other errors (it
  // stopped at the first syntax error, line 3, and said nothing else).
  outcome = check("[server]\nbind_port = abc\nthis is junk\n[semaphores]\nalpha = 3\n= 4\nbeta = 0\n[extra\nx = 1\n");
  EXPECT_EQ(outcome.exit_code, 2) << outcome;
  EXPECT_EQ(outcome.out, "") << outcome;
  EXPECT_EQ(outcome.err, "netsemd: " + at + ":2: bind_port: `abc` is not a whole number\n" +     //
                             "netsemd: " + at + ":3: expected `key = value` or `[section]`\n" +  //
                             "netsemd: " + at + ":6: expected `key = value` or `[section]`\n" +  //
                             "netsemd: " + at + ":7: beta: 0 is out of range 1..2147483647\n" +  //
                             "netsemd: " + at + ":8: expected `key = value` or `[section]`\n")
      << outcome;

  // An ACE file: a semaphore name configparser split at ':'.
  outcome = check("[service_network_semaphore]\nsemaphore_host:10.0.0.1 = 2\nsemaphore_ok = 1\nbind_port = x\n");
  EXPECT_EQ(outcome.exit_code, 2) << outcome;
  EXPECT_NE(outcome.err.find("netsemd: " + at +
                             ":2: semaphore_host: `10.0.0.1 = 2` is not a whole number (configparser splits a line at "
                             "its first `:` or `=`, so the key was read as `semaphore_host` and the value as "
                             "`10.0.0.1 = 2`: an ACE semaphore name cannot contain `:` or `=`)\n"),
            std::string::npos)
      << outcome;
  EXPECT_NE(outcome.err.find("netsemd: " + at + ":4: bind_port: "), std::string::npos) << outcome;

  // A good file: the semaphores found, and directories that netsemd could
  // make, not made.
  const auto data = dir.path() / "not" / "yet";
  outcome = check("[server]\ndata_dir = " + data.string() + "\nstats_dir = " + dir.path().string() +
                  "\n[semaphores]\nalpha = 3\nhost%3A10.0.0.1 = 2\n");
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  for (const std::string& line :
       {"data_dir " + data.string() + ": does not exist; netsemd will make it (under " + dir.path().string() + ")\n",
        "stats_dir " + dir.path().string() + ": exists\n", std::string("semaphore alpha = 3\n"),
        std::string("semaphore host:10.0.0.1 = 2\n")}) {
    EXPECT_NE(outcome.out.find(line), std::string::npos) << line << "\n" << outcome;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "not"));
  // A directory under a file cannot be made.
  write_text(dir.path() / "file", "");
  outcome = check("[server]\ndata_dir = " + (dir.path() / "file" / "sub").string() + "\n");
  EXPECT_EQ(outcome.exit_code, 2) << outcome;
  EXPECT_EQ(outcome.err, "netsemd: data_dir " + (dir.path() / "file" / "sub").string() + ": " +
                             (dir.path() / "file").string() + " is not a directory, so the directory cannot be made\n")
      << outcome;
  // A cluster's Raft log directory is checked too; and a server must listen
  // where its own server.<id> line says.
  const std::string cluster = "[cluster]\nid = 1\nserver.1 = 127.0.0.1:7001 127.0.0.1:27531\n";
  const std::string listen = "[server]\nbind_port = 27531\ndata_dir = " + dir.path().string() + "\n";
  outcome = check(listen + cluster + "data_dir = " + (dir.path() / "file" / "raft").string() + "\n");
  EXPECT_EQ(outcome.exit_code, 2) << outcome;
  EXPECT_EQ(outcome.err, "netsemd: [cluster] data_dir " + (dir.path() / "file" / "raft").string() + ": " +
                             (dir.path() / "file").string() + " is not a directory, so the directory cannot be made\n")
      << outcome;
  outcome = check(listen + cluster);
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_NE(outcome.out.find("[cluster] data_dir " + (dir.path() / "raft").string() + ": does not exist"),
            std::string::npos)
      << outcome;
  outcome = check("[server]\nbind_port = 27599\n" + cluster);
  EXPECT_EQ(outcome.exit_code, 2) << outcome;
  EXPECT_NE(outcome.err.find("netsemd: [cluster] server.1 names this server's client address 127.0.0.1:27531, but it "
                             "listens on 127.0.0.1:27599"),
            std::string::npos)
      << outcome;
}

// The bash completions (issue 12 item 14), sourced in a bash that has no
// bash-completion package loaded, with the words of a half-typed line.
class Completion : public CliTest {
 protected:
  // What `file`'s `function` offers for `line` (the last word is the one
  // being completed; an empty one when `line` ends with a space).
  std::vector<std::string> complete(const std::string& file, const std::string& function, const std::string& program,
                                    const std::string& line) {
    const std::string script =
        "source \"$1\"; read -ra COMP_WORDS <<< \"$3\"; COMP_WORDS[0]=$2; "
        "[[ $3 == *' ' ]] && COMP_WORDS+=(''); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); " +
        function + "; printf '%s\\n' \"${COMPREPLY[@]}\"";
    const std::string path = std::string(NETSEM_SOURCE_DIR) + "/contrib/bash-completion/" + file;
    const Outcome outcome =
        Cli({"--norc", "--noprofile", "-c", script, "bash", path, program, line}, {server_env()}, "/bin/bash").finish();
    EXPECT_EQ(outcome.exit_code, 0) << line << "\n" << outcome;
    EXPECT_EQ(outcome.err, "") << line << "\n" << outcome;
    std::vector<std::string> words;
    std::istringstream lines(outcome.out);
    for (std::string word; std::getline(lines, word);) {
      if (!word.empty()) words.push_back(word);
    }
    return words;
  }
  std::vector<std::string> netsem(const std::string& line) {
    return complete("netsem", "_netsem", NETSEM_CLI_PATH, line);
  }
};

bool has(const std::vector<std::string>& words, const std::string& word) {
  return std::find(words.begin(), words.end(), word) != words.end();
}

TEST_F(Completion, NetsemCompletesSubcommandsOptionsValuesAndNames) {
  EXPECT_TRUE(has(netsem("netsem sta"), "status"));
  EXPECT_FALSE(has(netsem("netsem sta"), "run"));
  for (const char* subcommand : {"run", "status", "get", "post", "wait", "create", "delete", "ping"}) {
    EXPECT_TRUE(has(netsem("netsem "), subcommand)) << subcommand;
  }
  EXPECT_EQ(netsem("netsem status --js"), std::vector<std::string>{"--json"});
  EXPECT_EQ(netsem("netsem run --ti"), std::vector<std::string>{"--timeout"});
  for (const char* option : {"--conflict-exit-code", "--config"}) EXPECT_TRUE(has(netsem("netsem run --con"), option));
  EXPECT_EQ(netsem("netsem --fallback f"), std::vector<std::string>{"fail"});
  EXPECT_EQ(netsem("netsem -t 5 run --nonb"), std::vector<std::string>{"--nonblock"});
  // NAME: the server's semaphores; after it, a command.
  EXPECT_EQ(netsem("netsem run al"), std::vector<std::string>{"alpha"});
  EXPECT_EQ(netsem("netsem run -n 2 -t 5 be"), std::vector<std::string>{"beta"});
  EXPECT_EQ(netsem("netsem get b"), std::vector<std::string>{"beta"});
  EXPECT_TRUE(has(netsem("netsem run -t 5 beta tru"), "true"));
  EXPECT_TRUE(netsem("netsem get beta ").empty());
}

TEST_F(Completion, NetsemdCompletesItsOptions) {
  EXPECT_EQ(complete("netsemd", "_netsemd", NETSEMD_PATH, "netsemd --check"),
            std::vector<std::string>{"--check-config"});
  EXPECT_TRUE(has(complete("netsemd", "_netsemd", NETSEMD_PATH, "netsemd --"), "--repair"));
}

TEST_F(CliUsage, DocsDescribeEverySubcommandExitCodeAndJsonField) {
  const std::string doc = read_text(std::filesystem::path(NETSEM_SOURCE_DIR) / "docs/cli.md");
  ASSERT_FALSE(doc.empty());

  const Outcome help = netsem({"--help"});
  const auto subcommands_at = help.out.find("Subcommands:\n");
  ASSERT_NE(subcommands_at, std::string::npos) << help.out;
  std::istringstream lines(help.out.substr(subcommands_at + 13));
  std::set<std::string> subcommands;
  for (std::string line; std::getline(lines, line) && line.rfind("  ", 0) == 0;) {
    subcommands.insert(line.substr(2, line.find(' ', 2) - 2));
  }
  EXPECT_EQ(subcommands.size(), 15u) << help.out;
  for (const auto& subcommand : subcommands) {
    // Its section, up to the next one, lists the codes its --help lists:
    // "Exit codes: 0, 1 (NOT_FOUND), 2, ..." up to a blank line, without
    // what stands in parentheses.
    const auto at = doc.find("\n## netsem " + subcommand + "\n");
    if (at == std::string::npos) {
      ADD_FAILURE() << subcommand << " is not documented";
      continue;
    }
    const std::string section = doc.substr(at, doc.find("\n## ", at + 1) - at);
    const auto codes_at = section.find("\nExit codes: ");
    std::string listed = section.substr(codes_at == std::string::npos ? section.size() : codes_at);
    listed = listed.substr(0, listed.find("\n\n"));
    std::string bare;
    int depth = 0;
    for (const char c : listed) {
      depth += c == '(';
      if (depth == 0) bare += c;
      depth -= c == ')' && depth > 0;
    }
    std::set<int> numbers;
    static const std::regex kNumber(R"(\b[0-9]+\b)");
    for (std::sregex_iterator it(bare.begin(), bare.end(), kNumber), end; it != end; ++it) {
      numbers.insert(std::stoi(it->str()));
    }
    std::string codes;
    for (const int number : numbers) codes += (codes.empty() ? "" : " ") + std::to_string(number);
    EXPECT_EQ(codes, exit_codes_of_help(netsem({subcommand, "--help"}).out))
        << "docs/cli.md, netsem " << subcommand << ": " << listed;
  }

  std::set<std::string> codes_in_help;
  static const std::regex kCode(R"(\n +([0-9]+)  )");
  const std::string footer = help.out.substr(help.out.find("Exit codes:"));
  for (std::sregex_iterator it(footer.begin(), footer.end(), kCode), end; it != end; ++it) {
    codes_in_help.insert((*it)[1]);
  }
  EXPECT_EQ(test_support::table_first_column(doc, "## Exit codes"), codes_in_help);

  const Outcome json = netsem({"status", "--json"});
  const std::set<std::string> emitted = test_support::json_keys(json.out);
  EXPECT_FALSE(emitted.empty()) << json;
  EXPECT_EQ(test_support::table_first_column(doc, "### JSON fields"), emitted);
}

}  // namespace
}  // namespace netsem::testing
