// LoopJobs (loop_jobs.h): the queue, the eventfd that wakes the loop, and the
// loop's side that runs what was queued.
#include "server/loop_jobs.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace netsem::server {

LoopJobs::LoopJobs(asio::io_context& io, std::size_t max_queued, std::function<void()> after_jobs)
    : io_(io), max_queued_(max_queued), after_jobs_(std::move(after_jobs)) {}

LoopJobs::~LoopJobs() {
  close();
}

Status LoopJobs::start() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Status(StatusCode::kIoError, std::string("eventfd: ") + std::strerror(errno));
  watcher_.emplace(io_, fd);  // owns it from here
  {
    std::lock_guard lock(mutex_);
    event_fd_ = fd;
  }
  watch();
  return Status::ok();
}

void LoopJobs::close() {
  std::deque<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    event_fd_ = -1;  // the watcher closes it below: no writer may touch it now
    dropped.swap(queue_);
  }
  for (const auto& job : dropped) job->cancel();
  if (watcher_) {
    std::error_code ignored;
    watcher_->cancel(ignored);
    watcher_->close(ignored);
    watcher_.reset();
  }
}

Status LoopJobs::submit(std::shared_ptr<Job> job) {
  std::lock_guard lock(mutex_);
  if (closed_ || event_fd_ < 0) return Status(StatusCode::kShutdown, "the server is stopping");
  if (queue_.size() >= max_queued_) {
    return Status(StatusCode::kBusy, "too many requests wait for the server's event loop");
  }
  queue_.push_back(std::move(job));
  // Under the lock, so close() cannot close the descriptor in between (a
  // nonblocking eventfd write does not wait). The loop reads the counter and
  // then takes the queue, so a job queued before this write is seen by the
  // read it causes, or earlier.
  const std::uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(event_fd_, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
  // EAGAIN: the counter is at its maximum, so the loop is woken already.
  return Status::ok();
}

void LoopJobs::watch() {
  watcher_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const std::error_code& error) {
    if (error || !watcher_) return;
    std::uint64_t count = 0;
    while (::read(watcher_->native_handle(), &count, sizeof count) < 0 && errno == EINTR) {
    }
    run_queued();
    if (watcher_) watch();
  });
}

void LoopJobs::run_queued() {
  std::deque<std::shared_ptr<Job>> jobs;
  {
    std::lock_guard lock(mutex_);
    jobs.swap(queue_);
  }
  if (jobs.empty()) return;
  for (const auto& job : jobs) job->run();
  if (after_jobs_) after_jobs_();
}

}  // namespace netsem::server
