// Runs the built `netsem` binary as a child process for the CLI's end-to-end
// tests: its environment is the test's without NETSEM_* variables plus the
// ones given, stdin is /dev/null, and run_netsem() returns its exit code,
// stdout and stderr once it exits (killing it, and failing the test, past a
// deadline); a Cli runs it in the background, read as it goes (a test waits
// for a line on stdout or stderr, then acts, then finish()es it).
// Header-only: each test file that needs it includes it.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifndef NETSEM_CLI_PATH
#error "NETSEM_CLI_PATH must name the netsem binary"
#endif

extern char** environ;

namespace netsem::testing {

// What a netsem child is started with: `program` then `args`, and the test's
// environment without NETSEM_* variables (nor those whose name `drop` lists,
// e.g. "TERM="), then `env`. argv() and envp() point into the object's own
// strings: keep it alive until the exec (it is neither copied nor moved).
class ChildCommand {
 public:
  ChildCommand(std::string program, const std::vector<std::string>& args, const std::vector<std::string>& env,
               const std::vector<std::string_view>& drop = {})
      : argv_text_{std::move(program)} {
    argv_text_.insert(argv_text_.end(), args.begin(), args.end());
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string_view text(*entry);
      bool dropped = text.starts_with("NETSEM_");
      for (const std::string_view prefix : drop) dropped = dropped || text.starts_with(prefix);
      if (!dropped) env_text_.emplace_back(text);
    }
    env_text_.insert(env_text_.end(), env.begin(), env.end());
    for (auto& arg : argv_text_) argv_.push_back(arg.data());
    for (auto& entry : env_text_) envp_.push_back(entry.data());
    argv_.push_back(nullptr);
    envp_.push_back(nullptr);
  }
  ChildCommand(const ChildCommand&) = delete;
  ChildCommand& operator=(const ChildCommand&) = delete;

  char* const* argv() const { return argv_.data(); }
  char* const* envp() const { return envp_.data(); }

 private:
  std::vector<std::string> argv_text_;
  std::vector<std::string> env_text_;
  std::vector<char*> argv_;
  std::vector<char*> envp_;
};

struct NetsemRun {
  int exit_code = -1;  // the exit status, or 128+N when signal N ended netsem
  std::string out;
  std::string err;
};

inline std::ostream& operator<<(std::ostream& os, const NetsemRun& run) {
  return os << "exit " << run.exit_code << "\n--- stdout:\n" << run.out << "--- stderr:\n" << run.err;
}

inline NetsemRun run_netsem(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                            std::chrono::milliseconds timeout = std::chrono::seconds(8)) {
  const ChildCommand command(NETSEM_CLI_PATH, args, env);

  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) std::abort();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
    if (::getppid() != parent) ::_exit(126);
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    ::execve(command.argv()[0], command.argv(), command.envp());
    ::_exit(126);
  }
  ::close(out[1]);
  ::close(err[1]);
  NetsemRun run;
  int fds[2] = {out[0], err[0]};
  std::string* texts[2] = {&run.out, &run.err};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (fds[0] >= 0 || fds[1] >= 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ADD_FAILURE() << "netsem still ran after " << timeout.count() << " ms; killed";
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd polls[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    if (::poll(polls, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0 || polls[i].revents == 0) continue;
      char chunk[4096];
      const ssize_t n = ::read(fds[i], chunk, sizeof chunk);
      if (n > 0) {
        texts[i]->append(chunk, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i]);
        fds[i] = -1;
      }
    }
  }
  for (const int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) run.exit_code = 128 + WTERMSIG(status);
  return run;
}

// How one run of netsem ended.
struct Outcome {
  int exit_code = -1;  // the exit status, or 128+N when signal N ended netsem
  int signal = 0;      // N when a signal ended netsem
  std::string out;
  std::string err;
  std::chrono::steady_clock::time_point ended;
};

inline std::ostream& operator<<(std::ostream& os, const Outcome& outcome) {
  return os << "exit " << outcome.exit_code << "\n--- stdout:\n" << outcome.out << "--- stderr:\n" << outcome.err;
}

// A running netsem. Its environment is the test's without NETSEM_*
// variables, plus `env`; stdin is /dev/null and no descriptor but 0-2 is
// passed on, so that what CMD inherits is what netsem gave it.
class Cli {
 public:
  using Clock = std::chrono::steady_clock;
  using milliseconds = std::chrono::milliseconds;

  explicit Cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
               const char* program = NETSEM_CLI_PATH) {
    const ChildCommand command(program, args, env);

    int out[2];
    int err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) std::abort();
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // A crashed test runs no destructor; netsem (and the command it runs)
      // must not outlive it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      const int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      ::close_range(3, ~0U, 0);
      ::execve(command.argv()[0], command.argv(), command.envp());
      ::_exit(126);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }
  ~Cli() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
  }
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;

  pid_t pid() const { return pid_; }

  // Reads output until stdout contains `text`; false after `timeout`.
  bool wait_for_stdout(std::string_view text, milliseconds timeout = std::chrono::seconds(5)) {
    return wait_for(out_, text, timeout);
  }
  // Likewise for stderr (what -v logs).
  bool wait_for_stderr(std::string_view text, milliseconds timeout = std::chrono::seconds(5)) {
    return wait_for(err_, text, timeout);
  }

  // Waits for netsem to exit, at most `timeout`; past it, kills netsem and
  // fails the test.
  Outcome finish(milliseconds timeout = std::chrono::seconds(8)) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (!reaped_ && ::waitpid(pid_, &status_, WNOHANG) == pid_) {
        reaped_ = true;
        ended_ = Clock::now();
      }
      // A grandchild may keep the pipes open; its output is not awaited long.
      if (reaped_ && ((out_fd_ < 0 && err_fd_ < 0) || Clock::now() - ended_ > milliseconds(300))) break;
      if (Clock::now() >= deadline) {
        ADD_FAILURE() << "netsem still ran after " << timeout.count() << " ms; killed\n" << out_ << err_;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status_, 0);
        reaped_ = true;
        ended_ = Clock::now();
        break;
      }
      pump(milliseconds(10));
    }
    Outcome outcome;
    if (WIFEXITED(status_)) outcome.exit_code = WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) {
      outcome.signal = WTERMSIG(status_);
      outcome.exit_code = 128 + outcome.signal;
    }
    outcome.out = out_;
    outcome.err = err_;
    outcome.ended = ended_;
    return outcome;
  }

 private:
  bool wait_for(const std::string& output, std::string_view text, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (output.find(text) == std::string::npos) {
      if (Clock::now() >= deadline || (out_fd_ < 0 && err_fd_ < 0)) return false;
      pump(milliseconds(20));
    }
    return true;
  }

  void pump(milliseconds timeout) {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    if (::poll(fds, 2, static_cast<int>(timeout.count())) <= 0) return;
    for (auto [fd, text] : {std::pair{&out_fd_, &out_}, std::pair{&err_fd_, &err_}}) {
      const pollfd& entry = fd == &out_fd_ ? fds[0] : fds[1];
      if (*fd < 0 || entry.revents == 0) continue;
      char chunk[4096];
      const ssize_t n = ::read(*fd, chunk, sizeof chunk);
      if (n > 0) {
        text->append(chunk, static_cast<std::size_t>(n));
      } else {
        ::close(*fd);
        *fd = -1;
      }
    }
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
  bool reaped_ = false;
  int status_ = 0;
  Clock::time_point ended_;
};

}  // namespace netsem::testing
