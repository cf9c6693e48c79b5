// The integration-test harness: netsemd as a child process (fork + exec of
// the built binary, its log in a file the harness reads to learn the port)
// and a poll()-based client so that no test can hang on a read.
#include "netsemd_harness.h"
#include "protocol/stats_json.h"
#include "support/request_lines.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#ifndef NETSEMD_PATH
#error "NETSEMD_PATH must name the netsemd binary"
#endif

namespace netsem::testing {

namespace {

std::string read_file_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

}  // namespace

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "netsem-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) std::abort();
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string render_config(const Netsemd::Options& options, const std::filesystem::path& data_dir, std::uint16_t port) {
  if (!options.raw_config.empty()) {
    return replace_all(replace_all(options.raw_config, "@DIR@", data_dir.string()), "@PORT@", std::to_string(port));
  }
  std::string text = "[server]\nbind_address = 127.0.0.1\nbind_port = " + std::to_string(port) +
                     "\nstats_dir = " + data_dir.string() + "\ndata_dir = " + data_dir.string() +
                     "\nlog_level = debug\nstatus_interval_ms = 50\n" + options.server_options + "\n";
  // Every test's netsemd serves HTTP on a free port unless the test chooses
  // one: on the default 53560 they would all collide (and with the operator's).
  if (options.server_options.find("http_port") == std::string::npos) text += "http_port = 0\n";
  text += "[semaphores]\n" + options.semaphores + "\n";
  return text;
}

std::unique_ptr<Netsemd> Netsemd::start(const Options& options, std::string* error) {
  std::unique_ptr<Netsemd> server(new Netsemd());
  server->dir_ = std::make_unique<TempDir>();
  server->data_dir_ = options.data_dir.empty() ? server->dir_->path() / "data" : options.data_dir;
  std::filesystem::create_directories(server->data_dir_);
  server->config_path_ = server->dir_->path() / "netsem.ini";
  server->log_path_ = server->dir_->path() / "netsemd.log";
  write_file(server->config_path_, render_config(options, server->data_dir_, options.port));

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return nullptr;
  if (pid == 0) {
    // A test process that crashes (an assertion abort, a sanitizer report)
    // runs no destructor: the server must not outlive it, holding a port
    // and CPU. The signal comes when the forking thread ends, and every
    // test starts its servers on its main thread.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the test died before prctl
    const int log_fd = ::open(server->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(log_fd, STDERR_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    if (log_fd > STDERR_FILENO) ::close(log_fd);
    if (options.nofile_soft != 0) {
      const rlimit limit{options.nofile_soft, options.nofile_hard};
      if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(126);
    }
    for (const std::string& variable : options.env) ::putenv(const_cast<char*>(variable.c_str()));
    const std::string config = server->config_path_.string();
    std::vector<const char*> argv = {"netsemd", "--config", config.c_str()};
    for (const auto& arg : options.extra_args) argv.push_back(arg.c_str());
    argv.push_back(nullptr);
    ::execv(NETSEMD_PATH, const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  server->pid_ = pid;
  static const std::regex kListening(R"(listening on [^ ]*:(\d+))");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch match;
    const std::string log = server->log();
    if (std::regex_search(log, match, kListening)) {
      server->port_ = static_cast<std::uint16_t>(std::stoi(match[1]));
      return server;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      server->exited_ = true;
      if (error) {
        *error = "netsemd exited at start (" +
                 (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status)) : std::string("signal")) +
                 "): " + log;
      }
      return nullptr;
    }
    std::this_thread::sleep_for(10ms);
  }
  if (error) *error = "netsemd did not listen within 10 s: " + server->log();
  return nullptr;
}

Netsemd::~Netsemd() {
  if (pid_ > 0 && !exited_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

void Netsemd::rewrite_config(const Options& options) {
  write_file(config_path_, render_config(options, data_dir_, port_));
}

namespace {

// Whether every thread of `pid` is stopped: state T (or t) in each
// /proc/PID/task/TID/stat, read after the command name's closing ')'.
bool all_threads_stopped(pid_t pid) {
  std::error_code error;
  std::filesystem::directory_iterator tasks("/proc/" + std::to_string(pid) + "/task", error);
  if (error) return false;
  bool any = false;
  for (const auto& task : tasks) {
    std::ifstream in(task.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;  // a thread that ended meanwhile
    const auto name_end = stat.rfind(')');
    if (name_end == std::string::npos || name_end + 2 >= stat.size()) continue;
    const char state = stat[name_end + 2];
    if (state != 'T' && state != 't') return false;
    any = true;
  }
  return any;
}

}  // namespace

void Netsemd::send_signal(int signal) {
  ::kill(pid_, signal);
  // kill() returns before the target stops: a thread of it running on the
  // other core goes on until it next enters the kernel, and on a loaded
  // machine may still, for a moment, acknowledge an entry. A test that
  // freezes a server and then expects it silent must not race that
  // (AServerCutOffFromTheMajorityAnswersNoPingOrRead got a PONG in CI).
  if (signal != SIGSTOP) return;
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (!all_threads_stopped(pid_) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
}

std::optional<int> Netsemd::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      return status;
    }
    std::this_thread::sleep_for(5ms);
  }
  return std::nullopt;
}

std::string Netsemd::log() const {
  return read_file_text(log_path_);
}

bool Netsemd::wait_for_log(std::string_view text, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    if (log().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(10ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

std::unique_ptr<Client> Client::connect(std::uint16_t port, const char* host, int receive_buffer) {
  const bool v6 = std::string_view(host).find(':') != std::string_view::npos;
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  if (receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (v6) {
    auto& address = reinterpret_cast<sockaddr_in6&>(storage);
    address.sin6_family = AF_INET6;
    address.sin6_port = htons(port);
    ::inet_pton(AF_INET6, host, &address.sin6_addr);
    length = sizeof address;
  } else {
    auto& address = reinterpret_cast<sockaddr_in&>(storage);
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    ::inet_pton(AF_INET, host, &address.sin_addr);
    length = sizeof address;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    ::close(fd);
    return nullptr;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return std::unique_ptr<Client>(new Client(fd));
}

std::string Client::local_peer() const {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return "?";
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET6) {
    const auto& address = reinterpret_cast<const sockaddr_in6&>(storage);
    ::inet_ntop(AF_INET6, &address.sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(address.sin6_port));
  }
  const auto& address = reinterpret_cast<const sockaddr_in&>(storage);
  ::inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
  return std::string(text) + ":" + std::to_string(ntohs(address.sin_port));
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

void Client::send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ADD_FAILURE() << "send failed: " << std::strerror(errno);
      return;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void Client::send_line(std::string_view line) {
  std::string text(line);
  text += '\n';
  send(text);
}

bool Client::fill(std::chrono::milliseconds timeout) {
  if (eof_) return false;
  pollfd poll_fd{fd_, POLLIN, 0};
  if (::poll(&poll_fd, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char chunk[65536];
  const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  buffer_.append(chunk, static_cast<std::size_t>(n));
  return true;
}

std::optional<std::string> Client::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !fill(left)) return std::nullopt;
  }
}

std::string Client::request(std::string_view line, std::chrono::milliseconds timeout) {
  send_line(line);
  return read_line(timeout).value_or("<no answer>");
}

std::string Client::read_some(std::chrono::milliseconds timeout) {
  if (buffer_.empty()) fill(timeout);
  std::string out = std::move(buffer_);
  buffer_.clear();
  return out;
}

bool Client::wait_closed(std::chrono::milliseconds timeout, std::string* rest) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd poll_fd{fd_, POLLIN, 0};
    if (::poll(&poll_fd, 1, static_cast<int>(left.count())) <= 0) break;
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = true;
      break;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
  if (rest) *rest = buffer_;
  return eof_;
}

bool Client::quiet_for(std::chrono::milliseconds timeout) {
  if (!buffer_.empty()) return false;
  pollfd poll_fd{fd_, POLLIN, 0};
  return ::poll(&poll_fd, 1, static_cast<int>(timeout.count())) == 0;
}

void Client::shutdown_write() {
  ::shutdown(fd_, SHUT_WR);
}

void Client::reset() {
  linger option{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &option, sizeof option);
  ::close(fd_);
  fd_ = -1;
}

std::vector<std::string> fields(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto space = text.find(' ', start);
    out.emplace_back(text.substr(start, space - start));
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  return out;
}

Netsemd::Options with_server_options(std::string lines) {
  Netsemd::Options options;
  options.server_options = std::move(lines);
  return options;
}

Netsemd::Options with_semaphores(std::string body) {
  Netsemd::Options options;
  options.semaphores = std::move(body);
  return options;
}

std::unique_ptr<Netsemd> start_server(const Netsemd::Options& options) {
  std::string error;
  auto server = Netsemd::start(options, &error);
  EXPECT_TRUE(server) << error;
  return server;
}

FullServer start_full_server() {
  FullServer full;
  full.server = start_server(with_server_options("max_connections = 1\n"));
  if (!full.server) return full;
  full.holder = Client::connect(full.server->port());
  EXPECT_TRUE(full.holder) << "no connection to netsemd";
  if (full.holder && full.holder->request(req::ping("p")) != "p PONG") {
    ADD_FAILURE() << "the holder's PING went unanswered";
    full.holder.reset();
  }
  return full;
}

bool set_limit(pid_t pid, int resource, std::uint64_t value) {
  rlimit old{};
  if (::prlimit(pid, static_cast<__rlimit_resource>(resource), nullptr, &old) != 0) return false;
  rlimit limit{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
  limit.rlim_max = old.rlim_max;
  if (limit.rlim_cur > old.rlim_max) limit.rlim_cur = old.rlim_max;
  return ::prlimit(pid, static_cast<__rlimit_resource>(resource), &limit, nullptr) == 0;
}

std::int64_t connections_total(const std::string& stats_answer) {
  std::vector<protocol::StatsField> fields;
  std::int64_t total = -1;
  const auto json = stats_answer.find('{');
  if (json == std::string::npos || !protocol::parse_stats(std::string_view(stats_answer).substr(json), fields) ||
      !protocol::stats_integer(fields, "connections_total", total)) {
    return -1;
  }
  return total;
}

std::uint64_t fence_of(const std::string& answer) {
  const auto parts = fields(answer);
  EXPECT_EQ(parts.size(), 3u) << answer;
  EXPECT_EQ(parts.size() > 1 ? parts[1] : "", "OK") << answer;
  return parts.size() == 3 ? std::stoull(parts[2]) : 0;
}

std::string await_answer(Client& client, std::string_view request, std::string_view expected,
                         std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string answer;
  do {
    answer = client.request(request);
    if (answer == expected) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return answer;
}

std::string read_text(const std::filesystem::path& path) {
  return read_file_text(path);
}

}  // namespace netsem::testing
