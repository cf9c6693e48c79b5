// ForkedJob: the fork, the child's few steps, and the parent's reaping
// through a pidfd.
#include "server/forked_job.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "common/unique_fd.h"

namespace netsem::server {

namespace {

// The descriptor the child's report pipe is moved to; everything above it
// is closed in the child.
constexpr int kChildReportFd = 3;
// A child's error message is cut to this.
constexpr std::size_t kMaxReport = 4096;

Status errno_status(const char* what) {
  return Status(StatusCode::kIoError, std::string(what) + ": " + std::strerror(errno));
}

[[noreturn]] void run_child(int report_fd, const std::string& name, const ForkedJob::Work& work) {
  // Only the report pipe stays: no socket, no journal, no lock, no epoll.
  if (report_fd != kChildReportFd) ::dup2(report_fd, kChildReportFd);
  ::close_range(kChildReportFd + 1, ~0U, 0);
  // The server's signal handlers write to Asio's pipe, closed here: a child
  // that is signalled simply dies, as does one whose server died.
  for (const int signal : {SIGTERM, SIGINT, SIGHUP}) ::signal(signal, SIG_DFL);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ::prctl(PR_SET_NAME, name.c_str());
  std::string report;
  const Status status = work(report);
  const std::string& text = status ? report : status.message();
  // The pipe is empty and holds more than kMaxReport: one write does.
  [[maybe_unused]] const ssize_t n = ::write(kChildReportFd, text.data(), std::min(text.size(), kMaxReport));
  ::_exit(status ? 0 : 1);
}

}  // namespace

Result<std::unique_ptr<ForkedJob>> ForkedJob::start(asio::io_context& io, const std::string& name, Work work,
                                                    Done done) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) return errno_status("cannot make a pipe for a child");
  UniqueFd read_end(ends[0]);
  UniqueFd write_end(ends[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return errno_status("cannot fork");
  if (pid == 0) run_child(write_end.get(), name, work);
  write_end.reset();
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const Status status = errno_status("cannot watch the child (pidfd_open)");
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);  // a killed child: at once
    return status;
  }
  std::unique_ptr<ForkedJob> job(new ForkedJob(io, pid, pidfd, read_end.release(), std::move(done)));
  job->wait_exit();
  return job;
}

ForkedJob::ForkedJob(asio::io_context& io, pid_t pid, int pidfd, int report_fd, Done done)
    : pid_(pid), pidfd_(io, pidfd), report_fd_(report_fd), done_(std::move(done)) {}

ForkedJob::~ForkedJob() {
  *alive_ = false;
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  ::close(report_fd_);
}

void ForkedJob::wait_exit() {
  // A pidfd turns readable when the child has ended.
  pidfd_.async_wait(asio::posix::stream_descriptor::wait_read, [this, alive = alive_](const std::error_code& error) {
    if (!*alive || error == asio::error::operation_aborted) return;
    on_exit();
  });
}

void ForkedJob::on_exit() {
  int wait_status = 0;
  const pid_t reaped = ::waitpid(pid_, &wait_status, WNOHANG);
  if (reaped == 0) {
    wait_exit();  // not ended after all
    return;
  }
  reaped_ = true;
  // The child has ended: whatever it wrote is in the pipe.
  char text[kMaxReport];
  const ssize_t n = ::read(report_fd_, text, sizeof text);
  std::string report = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string();
  Status status;
  if (reaped < 0) {
    status = errno_status("cannot reap the child");
  } else if (WIFSIGNALED(wait_status)) {
    status =
        Status(StatusCode::kIoError, std::string("the child died of signal ") + ::strsignal(WTERMSIG(wait_status)));
  } else if (WEXITSTATUS(wait_status) != 0) {
    status = Status(StatusCode::kIoError, report.empty() ? std::string("the child failed") : report);
  }
  if (!status) report.clear();
  // `done` may destroy this job: nothing of it is touched after the call.
  const Done done = std::move(done_);
  done(status, report);
}

}  // namespace netsem::server
