// `netsem run`: run a command while holding permits, like flock(1) for a
// semaphore that every host shares.
//
// API: run_command() acquires the permits, starts CMD (fork and execvp), then
// waits in one poll() loop on two descriptors until waitpid() has reaped CMD
// (so no zombie is left): a signalfd, for SIGCHLD and the termination signals
// netsem forwards to CMD, and a pipe that the permit's loss callback writes
// to from the client's I/O thread. A loss sends CMD SIGTERM at once and
// SIGKILL after the grace period, and netsem then exits 70 whatever CMD's
// status: CMD ran, at the end, without the permits. After a lapsed lease or
// a SHUTDOWN the grace shrinks to end by the permit's stop_by(): the server
// (silent, or restarted after its lease wait) may grant the permits again
// once the lease runs out, and CMD must be dead first.
//
// Signals: the watched ones are blocked before the Client starts its I/O
// thread, which inherits the mask, so they reach nothing but the signalfd.
// While the permits are awaited a watcher thread takes them (sigtimedwait):
// Ctrl-C cancels the wait, netsem closes its client (QUIT: the server drops
// the queued request and the session at once; a resumable session whose
// connection merely closed would keep them for its timeout) and then dies
// of the signal the default way. CMD starts with the signal mask netsem
// started with.
//
// If netsem itself dies (SIGKILL, OOM killer), CMD must not run on without
// the permits: it starts with PR_SET_PDEATHSIG = SIGKILL, so the kernel kills
// it when netsem's main thread (the one that forked it) ends. A netsem that
// died between fork and prctl is caught by comparing getppid() with the pid
// recorded before the fork.
//
// CMD's environment carries the permit (child_environment): NETSEM_NAME,
// NETSEM_COUNT, and NETSEM_FENCE or NETSEM_LOCAL=1.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "cli/cli.h"
#include "cli/wait_feedback.h"
#include "common/unique_fd.h"

namespace netsem::cli {

namespace {

using Clock = std::chrono::steady_clock;

// The signals netsem passes on to CMD.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

// Carries a permit's loss from the client's I/O thread to the main loop.
class LossNotice {
 public:
  bool open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return false;
    read_ = UniqueFd(fds[0]);
    write_ = UniqueFd(fds[1]);
    return true;
  }
  // On the I/O thread: short, and never calls the Client.
  void notify(const Status& reason) {
    {
      std::lock_guard lock(mutex_);
      reason_ = reason;
    }
    const char byte = 1;
    [[maybe_unused]] const auto ignored = ::write(write_.get(), &byte, 1);
  }
  int fd() const { return read_.get(); }
  Status reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
  }

 private:
  mutable std::mutex mutex_;
  Status reason_;  // guarded by mutex_
  UniqueFd read_;
  UniqueFd write_;
};

struct Signals {
  sigset_t original_mask;  // what CMD starts with
  sigset_t forwarded;      // kForwarded, less those ignored when netsem started
  sigset_t watched;        // forwarded + SIGCHLD: what the signalfd reads
};

Signals block_signals() {
  Signals signals;
  sigemptyset(&signals.forwarded);
  for (const int signal : kForwarded) {
    // A signal ignored by whoever started netsem (nohup, `cmd &` in a
    // script) is meant to be ignored by CMD too, which inherits that.
    struct sigaction action {};
    ::sigaction(signal, nullptr, &action);
    if (action.sa_handler != SIG_IGN) sigaddset(&signals.forwarded, signal);
  }
  // With SIGCHLD ignored the kernel would reap CMD itself and waitpid would
  // have no status to report.
  ::signal(SIGCHLD, SIG_DFL);
  signals.watched = signals.forwarded;
  sigaddset(&signals.watched, SIGCHLD);
  // SIGPIPE too: netsem must outlive CMD even if its stderr is a closed pipe.
  sigset_t blocked = signals.watched;
  sigaddset(&blocked, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &blocked, &signals.original_mask);
  return signals;
}

std::string permits_text(std::int64_t count) {
  return count == 1 ? "the permit" : "the " + std::to_string(count) + " permits";
}

// Why the permits were lost, as one clause. The library's message says it
// whole when it names what the server did (closed the connection, shut down,
// ended the session by KICK, fell silent past the lease); a bare system
// error ("Connection reset by peer") gets the category before it. Never both
// a category and a message that says the same ("shutting down (shutting
// down)").
std::string loss_cause(const Status& reason) {
  const std::string& message = reason.message();
  if (reason.code() == StatusCode::kShutdown) return "the server is shutting down";
  if (message.starts_with("the server ") || message.starts_with("no answer from the server")) return message;
  const std::string category = reason.code() == StatusCode::kUnavailable ? "the connection to the server was lost"
                                                                         : "the server dropped the session";
  return message.empty() ? category : category + " (" + message + ")";
}

int exit_code_of_child(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return kExitFailed;  // waitpid without WUNTRACED reports nothing else
}

// CMD's pid, or the exit code to return when it could not be started.
struct Spawned {
  pid_t pid = -1;
  int failure = kExitOk;
};

// CMD's environment: netsem's, with the permit described in NETSEM_NAME,
// NETSEM_COUNT, and NETSEM_FENCE (the server's fence token, for CMD to pass
// to the resource it guards) or NETSEM_LOCAL=1 (a host-local permit, which
// has no fence). Those of an outer `netsem run` are replaced, not inherited.
std::vector<std::string> child_environment(const RunOptions& options, const Permit& permit) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const bool ours = text.starts_with("NETSEM_NAME=") || text.starts_with("NETSEM_COUNT=") ||
                      text.starts_with("NETSEM_FENCE=") || text.starts_with("NETSEM_LOCAL=");
    if (!ours) environment.emplace_back(text);
  }
  environment.push_back("NETSEM_NAME=" + options.name);
  environment.push_back("NETSEM_COUNT=" + std::to_string(options.count));
  if (permit.is_local()) {
    environment.emplace_back("NETSEM_LOCAL=1");
  } else {
    environment.push_back("NETSEM_FENCE=" + std::to_string(permit.fence().value_or(0)));
  }
  return environment;
}

// Starts CMD with `mask` as its signal mask and `environment`, to be killed
// when netsem dies; prints why when it cannot be started.
Spawned spawn(const std::vector<std::string>& command, const std::vector<std::string>& environment,
              const sigset_t& mask) {
  // Built before the fork: the child may only make async-signal-safe calls.
  std::vector<char*> argv;
  for (const auto& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& entry : environment) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  // The child reports a failed exec's errno here; a successful exec closes it.
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    print_error(std::string("pipe: ") + std::strerror(errno));
    return {.failure = kExitOsError};
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here: other threads held locks at
    // the fork.
    int error = 0;
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
      error = errno;
    } else if (::getppid() != parent) {
      ::_exit(kExitFailed);  // netsem died before prctl: nothing would kill CMD
    } else {
      ::sigprocmask(SIG_SETMASK, &mask, nullptr);
      ::execvpe(argv[0], argv.data(), envp.data());
      error = errno;
    }
    [[maybe_unused]] const auto ignored = ::write(report[1], &error, sizeof error);
    ::_exit(kExitCannotExecute);
  }
  const int saved = errno;
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    print_error("cannot run " + command.front() + ": fork: " + std::strerror(saved));
    return {.failure = kExitOsError};
  }
  int error = 0;
  ssize_t got = 0;
  do {
    got = ::read(report[0], &error, sizeof error);
  } while (got < 0 && errno == EINTR);
  ::close(report[0]);
  if (got != static_cast<ssize_t>(sizeof error)) return {.pid = pid};  // exec'd
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  print_error("cannot run " + command.front() + ": " + std::strerror(error));
  // The shell's codes: 127 not found, 126 found but not executable.
  return {.failure = error == ENOENT ? kExitCommandNotFound : kExitCannotExecute};
}

// Waits until CMD has exited, forwarding signals and acting on a loss of the
// permits. Returns CMD's wait status and whether the permits were lost.
std::pair<int, bool> supervise(pid_t child, const RunOptions& options, const Signals& signals,
                               const UniqueFd& signal_fd, const LossNotice& loss, const Permit& permit) {
  const std::string& command = options.command.front();
  bool lost = false;
  std::optional<Clock::time_point> kill_at;  // SIGKILL due, after a loss
  std::chrono::milliseconds grace = options.grace;
  for (;;) {
    int wait_status = 0;
    if (::waitpid(child, &wait_status, WNOHANG) == child) return {wait_status, lost};

    pollfd fds[2] = {{signal_fd.get(), POLLIN, 0}, {loss.fd(), POLLIN, 0}};
    int timeout_ms = -1;
    if (kill_at) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*kill_at - Clock::now());
      timeout_ms = static_cast<int>(std::max<std::int64_t>(0, left.count()));
    }
    if (::poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
      print_error(std::string("poll: ") + std::strerror(errno));
      ::kill(child, SIGKILL);  // netsem cannot watch CMD any more; CMD must not run unwatched
      ::waitpid(child, &wait_status, 0);
      return {wait_status, true};
    }

    if (fds[1].revents & POLLIN) {
      char drain[16];
      while (::read(loss.fd(), drain, sizeof drain) > 0) {
      }
      if (!lost) {
        lost = true;
        const Status reason = loss.reason();
        const auto now = Clock::now();
        // After a lapsed lease or a SHUTDOWN, the server may grant the
        // permits again from stop_by() on; after a drop it may have already
        // (docs/client.md).
        const auto stop_by = permit.stop_by();
        kill_at = stop_by ? std::min(now + options.grace, *stop_by) : now + options.grace;
        std::string when;
        if (*kill_at < now + options.grace) {
          const auto left =
              std::max(std::chrono::milliseconds(0), std::chrono::floor<std::chrono::milliseconds>(*kill_at - now));
          when = "; the grace is cut to " + seconds_text(left) + ", when the server may grant " +
                 permits_text(options.count) + " again";
        }
        print_error("lost " + permits_text(options.count) + " of " + options.name + " while " + command +
                    " ran: " + loss_cause(reason) + "; sent SIGTERM to " + command + " (pid " + std::to_string(child) +
                    ")" + when);
        ::kill(child, SIGTERM);
        grace = std::max(std::chrono::milliseconds(0), std::chrono::floor<std::chrono::milliseconds>(*kill_at - now));
      }
    }

    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(signal_fd.get(), &info, sizeof info) == sizeof info) {
        const int signal = static_cast<int>(info.ssi_signo);
        // A terminal's Ctrl-C or hangup (sent by the kernel) reached the
        // whole foreground process group, CMD included: passing it on would
        // deliver it twice.
        if (sigismember(&signals.forwarded, signal) && info.ssi_code != SI_KERNEL) ::kill(child, signal);
      }
    }

    if (kill_at && Clock::now() >= *kill_at) {
      print_error(command + " (pid " + std::to_string(child) + ") still ran " + seconds_text(grace) +
                  " after SIGTERM; sent SIGKILL");
      ::kill(child, SIGKILL);
      kill_at.reset();
    }
  }
}

}  // namespace

int run_command(const GlobalOptions& global, const RunOptions& options) {
  const Signals signals = block_signals();
  // Declared before the client so that it outlives any callback the client
  // may still make while it shuts down.
  LossNotice loss;
  if (!loss.open()) {
    print_error(std::string("pipe: ") + std::strerror(errno));
    return kExitOsError;
  }
  Connection connection = connect(global);
  if (!connection.client) return connection.failure;
  Client& client = *connection.client;

  // Started while the signals are blocked: its thread inherits the mask.
  WaitFeedback feedback(client, options.name, options.count, global.verbosity);
  CancelToken cancel;
  std::atomic<int> caught{0};
  std::atomic<bool> waiting{true};
  std::thread watcher([&] {
    while (waiting.load()) {
      const timespec tick{.tv_sec = 0, .tv_nsec = 50'000'000};
      const int signal = ::sigtimedwait(&signals.forwarded, nullptr, &tick);
      if (signal > 0) {
        caught = signal;
        cancel.cancel();
        return;
      }
    }
  });
  const auto asked = Clock::now();
  Result<Permit> permit = client.acquire(
      options.name, {.count = options.count, .timeout = timeout_left(connection, options.timeout), .cancel = &cancel});
  const auto waited = std::chrono::duration<double>(Clock::now() - asked);
  waiting = false;
  watcher.join();
  feedback.stop();
  if (const int signal = caught.load(); signal != 0) {
    // Ended by a signal while waiting: the session ends with QUIT, then
    // netsem dies of the signal, as without the watcher.
    permit = Status(StatusCode::kCancelled, "cancelled");
    connection.client.reset();
    ::signal(signal, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal);
    ::pthread_sigmask(SIG_UNBLOCK, &only, nullptr);
    ::raise(signal);
    return 128 + signal;
  }
  if (!permit) {
    if (permit.status().code() == StatusCode::kTimeout) {
      print_error("run: " + describe_timeout(client, options.name, options.count, options.timeout, permit.status()) +
                  "; " + options.command.front() + " not run");
      return static_cast<int>(options.conflict_exit_code);
    }
    // A try that silent servers left unanswered (after request_timeout):
    // not granted, try later, as a -t that ran out; not an outage (69).
    if (options.timeout && options.timeout->count() == 0 && unanswered_by_silent_servers(client, permit.status())) {
      print_error("run: " + describe_unanswered_try("ACQUIRE", options.name, options.count, permit.status()) + "; " +
                  options.command.front() + " not run");
      return static_cast<int>(options.conflict_exit_code);
    }
    if (permit.status().code() == StatusCode::kTooMany) {
      // Waiting would never help: say the limit that refuses it.
      if (auto info = client.get(options.name); info && info->kind != "absent" && info->max < options.count) {
        print_error("run: " + options.name + " allows at most " + std::to_string(info->max) +
                    (info->max == 1 ? " permit" : " permits") + " at once (its limit), and -n asks for " +
                    std::to_string(options.count) + "; " + options.command.front() + " not run (" +
                    permit.status().message() + ")");
        return exit_code_for(permit.status());
      }
    }
    return report_failure(connection, permit.status(), Fallback::kMay);
  }
  // What flock --verbose says, under -v.
  if (global.verbosity >= 1) {
    char took[64];
    std::snprintf(took, sizeof took, "%.6f", waited.count());
    print_error("getting " + permits_text(options.count) + " of " + options.name + " took " + took + " seconds" +
                (permit->is_local() ? " (host-local)" : "; fence " + std::to_string(permit->fence().value_or(0))));
  }
  if (permit->is_local()) warn_local_fallback(connection, options.name);
  permit->on_lost([&loss](const Status& reason) { loss.notify(reason); });
  if (permit->lost()) {
    print_error("lost " + permits_text(options.count) + " of " + options.name + " before " + options.command.front() +
                " started: " + loss_cause(permit->loss_reason()) + "; not run");
    return kExitPermitsLost;
  }

  UniqueFd signal_fd(::signalfd(-1, &signals.watched, SFD_CLOEXEC | SFD_NONBLOCK));
  if (signal_fd.get() < 0) {
    print_error(std::string("signalfd: ") + std::strerror(errno));
    return kExitOsError;
  }
  if (global.verbosity >= 1) print_error("executing " + options.command.front());
  const Spawned spawned = spawn(options.command, child_environment(options, *permit), signals.original_mask);
  if (spawned.pid < 0) return spawned.failure;
  const pid_t child = spawned.pid;
  spdlog::debug("{} (pid {}) runs holding {} of {}", options.command.front(), child, permits_text(options.count),
                options.name);

  const auto [wait_status, lost] = supervise(child, options, signals, signal_fd, loss, *permit);
  if (lost) return kExitPermitsLost;
  if (Status released = permit->release(); !released) spdlog::debug("release: {}", released.to_string());
  return exit_code_of_child(wait_status);
}

}  // namespace netsem::cli
