// Child processes of the soak (processes.h).
#include "processes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>

#include "event_ring.h"

namespace netsem::soak {

pid_t fork_child(const std::function<void()>& child) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Die with the driver, however it dies; and if it already died between
  // fork and prctl, go now.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  ::setpgid(0, 0);
  for (const int signal : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::signal(signal, SIG_DFL);
  child();
  ::_exit(0);
}

std::optional<int> wait_for_exit(pid_t pid, std::int64_t deadline_ns) {
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return status;
    if (done < 0 && errno != EINTR) return 0;  // not our child any more: nothing to wait for
    if (monotonic_ns() >= deadline_ns) return std::nullopt;
    ::usleep(2000);
  }
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
  }
  return "status " + std::to_string(status);
}

ServerProcess::ServerProcess(std::filesystem::path binary, std::filesystem::path config, std::filesystem::path log)
    : binary_(std::move(binary)), config_(std::move(config)), log_(std::move(log)) {}

ServerProcess::~ServerProcess() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  (void)wait_for_exit(pid_, monotonic_ns() + 5'000'000'000);
}

bool ServerProcess::start(std::string& error) {
  const int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    error = "cannot open " + log_.string() + ": " + std::strerror(errno);
    return false;
  }
  const std::string binary = binary_.string();
  const std::string config = config_.string();
  pid_ = fork_child([&] {
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::execl(binary.c_str(), binary.c_str(), "--config", config.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "netsem-soak: cannot run %s: %s\n", binary.c_str(), std::strerror(errno));
    ::_exit(127);
  });
  ::close(log_fd);
  if (pid_ < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  return true;
}

void ServerProcess::signal(int signal) {
  ::kill(pid_, signal);
}

std::optional<int> ServerProcess::wait_exit(std::int64_t deadline_ns) {
  const auto status = wait_for_exit(pid_, deadline_ns);
  if (status) pid_ = -1;
  return status;
}

void ServerProcess::log_line(const std::string& line) const {
  std::ofstream(log_, std::ios::app) << line << '\n';
}

std::string ServerProcess::log_tail(std::size_t lines) const {
  std::ifstream in(log_);
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(std::move(line));
    if (tail.size() > lines) tail.pop_front();
  }
  std::string text;
  for (const auto& line : tail) text += "    | " + line + "\n";
  return text;
}

}  // namespace netsem::soak
