// Runs Prometheus's own checker, `promtool check metrics`, on a text
// exposition: the judge of "valid /metrics" that the issue names, rather
// than a parser of ours. promtool comes with Debian's `prometheus` package
// (scripts/install-deps.sh installs it); a test calls find_program() first
// and skips, saying why, when it is absent.
//
// run_program() writes a text to a program's stdin through a temporary
// file, collects what it prints, and kills it after a deadline, so a test
// using it is bounded in time whatever the program does.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::testing {

// The full path of `name` on PATH, or "" when there is none.
inline std::string find_program(std::string_view name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    const auto colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    const std::string candidate = std::string(dir.empty() ? "." : dir) + "/" + std::string(name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  return "";
}

struct PromtoolResult {
  int exit_code = -1;  // -1: did not run, or was killed at the deadline
  std::string output;  // stdout and stderr together
};

// `program args... < input`, killed at the deadline.
inline PromtoolResult run_program(const std::string& program, const std::vector<std::string>& args,
                                  const std::string& input_text,
                                  std::chrono::seconds deadline = std::chrono::seconds(30)) {
  const std::string& text = input_text;
  PromtoolResult result;
  char input_path[] = "/tmp/netsem-promtool-XXXXXX";
  const int input = ::mkstemp(input_path);
  if (input < 0) return result;
  ::unlink(input_path);
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(input, text.data() + done, text.size() - done);
    if (n <= 0) {
      ::close(input);
      return result;
    }
    done += static_cast<std::size_t>(n);
  }
  ::lseek(input, 0, SEEK_SET);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(input);
    return result;
  }
  std::vector<char*> argv;  // made before fork: the child only dups and execs
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(input, 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(input);
  ::close(out[1]);
  if (pid < 0) {
    ::close(out[0]);
    return result;
  }
  const auto end = std::chrono::steady_clock::now() + deadline;
  bool killed = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      killed = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n > 0) {
      result.output.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    }
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!killed && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

// `promtool check metrics < text`. 0 means valid and free of lint problems
// (promtool exits 3 for lint problems, 1 for an exposition it cannot parse).
inline PromtoolResult check_metrics(const std::string& promtool, const std::string& text) {
  return run_program(promtool, {"check", "metrics"}, text);
}

}  // namespace netsem::testing
