// Helpers of the operations tests (tests/ops): a service manager's notify
// socket of the test's own (what systemd gives a Type=notify service as
// NOTIFY_SOCKET), environment variables set for the servers a test starts,
// netsemd started without the harness (for logs that do not say where it
// listens: it says so to the notify socket), and a server's log read as
// lines or JSON objects.
//
// Thread safety: one object per test thread.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "netsemd_harness.h"

#ifndef NETSEMD_PATH
#error "NETSEMD_PATH must name the netsemd binary"
#endif

namespace netsem::testing {

// A unix datagram socket bound in `dir`, as systemd's notify socket: each
// datagram is one notification ("READY=1\nSTATUS=...").
class NotifySocket {
 public:
  explicit NotifySocket(const std::filesystem::path& dir) : path_(dir / "notify.sock") {
    ::unlink(path_.c_str());  // an earlier socket of the same test
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string text = path_.string();
    EXPECT_LT(text.size(), sizeof address.sun_path);
    std::memcpy(address.sun_path, text.c_str(), std::min(text.size(), sizeof address.sun_path - 1));
    EXPECT_EQ(::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The next notification, or nullopt when none comes within `timeout`.
  std::optional<std::string> next(std::chrono::milliseconds timeout = 5s) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buffer[4096];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0) return std::nullopt;
    std::string message(buffer, static_cast<std::size_t>(n));
    seen_.push_back(message);
    return message;
  }
  // Reads notifications until one holds the line `line` (e.g. "READY=1");
  // returns it, or nullopt after `timeout`.
  std::optional<std::string> wait_for(std::string_view line, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto message = next(left);
      if (!message) return std::nullopt;
      if (has_line(*message, line)) return message;
    }
  }
  // Every notification received so far, in order.
  const std::vector<std::string>& seen() const { return seen_; }

  // Whether `message` has `line` as one of its lines.
  static bool has_line(std::string_view message, std::string_view line) {
    std::size_t start = 0;
    while (start <= message.size()) {
      const auto end = message.find('\n', start);
      if (message.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start) == line) {
        return true;
      }
      if (end == std::string_view::npos) break;
      start = end + 1;
    }
    return false;
  }
  // The value of `key=` in `message`, or "".
  static std::string value_of(std::string_view message, std::string_view key) {
    std::istringstream in{std::string(message)};
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with(std::string(key) + "=")) return line.substr(key.size() + 1);
    }
    return "";
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<std::string> seen_;
};

// Environment variables set for the life of the object (the servers a test
// starts inherit them), then removed.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<std::string, std::string>> variables) {
    for (const auto& [name, value] : variables) {
      ::setenv(name.c_str(), value.c_str(), 1);
      names_.push_back(name);
    }
  }
  ~ScopedEnv() {
    for (const auto& name : names_) ::unsetenv(name.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::vector<std::string> names_;
};

// netsemd started with `args` (no --config unless given), its stderr in
// `log`, NOTIFY_SOCKET set to `notify`. The destructor kills it (SIGKILL)
// if it still runs.
class Spawned {
 public:
  Spawned(const std::vector<std::string>& args, const std::filesystem::path& log, const NotifySocket& notify)
      : log_(log) {
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the test died: so does the server
      if (::getppid() != parent) ::_exit(1);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, STDERR_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      ::setenv("NOTIFY_SOCKET", notify.path().c_str(), 1);
      std::vector<const char*> argv = {"netsemd"};
      for (const auto& arg : args) argv.push_back(arg.c_str());
      argv.push_back(nullptr);
      ::execv(NETSEMD_PATH, const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
  }
  ~Spawned() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;

  pid_t pid() const { return pid_; }
  // The wait status, or nullopt when it still runs after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    do {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return status;
      }
      std::this_thread::sleep_for(5ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return std::nullopt;
  }
  std::string log() const { return read_text(log_); }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

// The port in a READY=1 notification's "STATUS=serving on 127.0.0.1:PORT, ...".
inline std::uint16_t port_of_status(std::string_view message) {
  static const std::regex kServing(R"(serving on [^ ]*:(\d+),)");
  const std::string status = NotifySocket::value_of(message, "STATUS");
  std::smatch match;
  if (!std::regex_search(status, match, kServing)) return 0;
  return static_cast<std::uint16_t>(std::stoi(match[1]));
}

// The lines of a log.
inline std::vector<std::string> log_lines(const std::string& log) {
  std::vector<std::string> lines;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Every line of a JSON log parsed (a test failure for a line that is not one
// JSON object with a UTC time, a level and a message).
inline std::vector<nlohmann::json> json_log(const std::string& log) {
  static const std::regex kTime(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  std::vector<nlohmann::json> objects;
  for (const auto& line : log_lines(log)) {
    auto object = nlohmann::json::parse(line, nullptr, false);
    if (object.is_discarded() || !object.is_object()) {
      ADD_FAILURE() << "not a JSON object: " << line;
      continue;
    }
    EXPECT_TRUE(object.contains("time") && object["time"].is_string() &&
                std::regex_match(object["time"].get<std::string>(), kTime))
        << line;
    EXPECT_TRUE(object.contains("level") && object["level"].is_string()) << line;
    EXPECT_TRUE(object.contains("message") && object["message"].is_string()) << line;
    objects.push_back(std::move(object));
  }
  return objects;
}

// The JSON log's objects whose message is `message`.
inline std::vector<nlohmann::json> events(const std::vector<nlohmann::json>& log, std::string_view message) {
  std::vector<nlohmann::json> found;
  for (const auto& object : log) {
    if (object.value("message", "") == message) found.push_back(object);
  }
  return found;
}

}  // namespace netsem::testing
