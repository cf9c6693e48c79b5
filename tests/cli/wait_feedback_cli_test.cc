// End-to-end tests of what `netsem run` and `netsem wait` show while they
// wait (issue 12 item 7, src/cli/wait_feedback.h): the built binary against
// the real netsemd on a loopback port, with a raw protocol session (labelled
// "build-7") holding the name. A pseudo-terminal stands for the user's
// terminal; a pipe for a log.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "netsemd_harness.h"
#include "protocol/requests.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using Clock = std::chrono::steady_clock;

class WaitFeedbackCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    Netsemd::Options options = with_semaphores("pool = 6\n");
    // No keep-alive PING within a test (the client pings after T/3 idle), so
    // that the server's request count is netsem's requests alone.
    options.server_options = "session_timeout_ms = 60000\n";
    server_ = Netsemd::start(options, &error);
    ASSERT_TRUE(server_) << error;
    holder_ = Client::connect(server_->port());
    ASSERT_TRUE(holder_);
    std::string line;
    protocol::encode_hello(line, "h", "build-7");
    line.pop_back();
    ASSERT_EQ(holder_->request(line).rfind("h OK", 0), 0u);
  }

  // The server's count of requests read (STATS `requests`), this request
  // included.
  std::int64_t requests() {
    const std::string answer = holder_->request(req::stats("s"));
    const auto at = answer.find("\"requests\":");
    if (at == std::string::npos) {
      ADD_FAILURE() << answer;
      return -1;
    }
    return std::stoll(answer.substr(at + 11));
  }

  std::string server_env() const { return "NETSEM_SERVER=127.0.0.1:" + std::to_string(server_->port()); }

  std::unique_ptr<Netsemd> server_;
  std::unique_ptr<Client> holder_;
};

// netsem on a pseudo-terminal (stdin, stdout and stderr): what it wrote.
class OnTerminal {
 public:
  OnTerminal(const std::vector<std::string>& args, const std::string& env_entry) {
    const ChildCommand command(NETSEM_CLI_PATH, args, {env_entry, "TERM=xterm"}, {"TERM="});
    winsize size{};
    size.ws_col = 200;
    size.ws_row = 24;
    const pid_t parent = ::getpid();
    pid_ = ::forkpty(&master_, nullptr, nullptr, &size);
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      ::execve(command.argv()[0], command.argv(), command.envp());
      ::_exit(126);
    }
    EXPECT_GT(pid_, 0);
  }
  ~OnTerminal() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  // Reads until the output holds `text` (true) or `timeout` passed.
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(8)) {
    const auto deadline = Clock::now() + timeout;
    while (output_.find(text) == std::string::npos) {
      if (!read_some(deadline)) return false;
    }
    return true;
  }
  // Reads to the end (the pty's EIO once netsem exited) and reaps netsem.
  int finish() {
    const auto deadline = Clock::now() + std::chrono::seconds(8);
    while (read_some(deadline)) {
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  const std::string& output() const { return output_; }

 private:
  bool read_some(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd fd = {master_, POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[4096];
    const ssize_t n = ::read(master_, chunk, sizeof chunk);
    if (n <= 0) return false;  // EIO: netsem and its children closed the terminal
    output_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int master_ = -1;
  bool reaped_ = false;
  std::string output_;
};

TEST_F(WaitFeedbackCli, OnATerminalOneLineShowsThePositionTheHoldersAndTheTimeThenIsErased) {
  ASSERT_EQ(holder_->request("a ACQUIRE pool 6"), "a OK 1");
  OnTerminal netsem({"run", "pool", "--", "echo", "ran"}, server_env());
  // The first listing (WAITERS) at 1 s, the second (HOLDERS) at 2 s.
  ASSERT_TRUE(netsem.wait_for("\rnetsem: waiting 1 s for 1 permit of pool: position 1 of 1 in the queue\033[K"))
      << netsem.output();
  ASSERT_TRUE(netsem.wait_for(
      "\rnetsem: waiting 2 s for 1 permit of pool: position 1 of 1 in the queue; held by build-7 (6)\033[K"))
      << netsem.output();
  ASSERT_EQ(holder_->request("b RELEASE pool 6").rfind("b OK", 0), 0u);
  EXPECT_EQ(netsem.finish(), 0) << netsem.output();
  // Erased before the command ran; nothing of the line is left after it.
  const std::string& out = netsem.output();
  const auto erased = out.rfind("\r\033[K");
  ASSERT_NE(erased, std::string::npos) << out;
  EXPECT_EQ(out.substr(erased), "\r\033[Kran\r\n") << out;
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "a line of its own before the command's: " << out;
}

TEST_F(WaitFeedbackCli, AGrantWithinASecondShowsNothing) {
  OnTerminal netsem({"run", "pool", "--", "echo", "ran"}, server_env());
  EXPECT_EQ(netsem.finish(), 0) << netsem.output();
  EXPECT_EQ(netsem.output(), "ran\r\n");
}

TEST_F(WaitFeedbackCli, OffATerminalNothingUnlessVerboseThenPlainLines) {
  ASSERT_EQ(holder_->request("a ACQUIRE pool 6"), "a OK 1");
  NetsemRun quiet = run_netsem({"wait", "pool", "--timeout", "2.5s"}, {server_env()});
  EXPECT_EQ(quiet.exit_code, 75) << quiet;
  EXPECT_EQ(quiet.err.find("netsem: waiting"), std::string::npos) << quiet;

  NetsemRun verbose = run_netsem({"-v", "wait", "pool", "--timeout", "2.5s"}, {server_env()});
  EXPECT_EQ(verbose.exit_code, 75) << verbose;
  EXPECT_NE(
      verbose.err.find("netsem: waiting 2 s for 1 permit of pool: position 1 of 1 in the queue; held by build-7 (6)\n"),
      std::string::npos)
      << verbose;
  EXPECT_EQ(verbose.err.find('\r'), std::string::npos) << verbose;
  EXPECT_EQ(verbose.err.find("waiting 1 s"), std::string::npos) << "one plain line, not one a second: " << verbose;
}

TEST_F(WaitFeedbackCli, AsksForAtMostOneListingASecond) {
  // Issue 12 item 7: the feedback must not load the server. The same wait
  // shorter than a second (no listing yet: the first comes at 1 s) and
  // longer, the server's request counts compared: the difference is the
  // listings alone; the requests every wait makes (HELLO, STATS, WAIT, the
  // timeout's GET and HOLDERS) are in both.
  ASSERT_EQ(holder_->request("a ACQUIRE pool 6"), "a OK 1");
  const auto count_requests = [&](const std::vector<std::string>& args) {
    const std::int64_t before = requests();
    const NetsemRun run = run_netsem(args, {server_env()});
    EXPECT_EQ(run.exit_code, 75) << run;
    return requests() - before - 1;  // less the second STATS
  };
  const std::int64_t base = count_requests({"-v", "wait", "pool", "--timeout", "0.5s"});
  const auto start = Clock::now();
  const std::int64_t verbose = count_requests({"-v", "wait", "pool", "--timeout", "3.5s"});
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count();
  std::printf("requests of a wait: %lld in 0.5 s, %lld in 3.5 s with feedback\n", static_cast<long long>(base),
              static_cast<long long>(verbose));
  // Ticks at 1, 2 and 3 s (one more if netsem ran late past 4 s): one
  // listing each, alternating WAITERS and HOLDERS.
  EXPECT_GE(verbose - base, 2);
  EXPECT_LE(verbose - base, seconds);
}

}  // namespace
}  // namespace netsem::testing
