// The epoll loop of the benchmark (see event_loop.h).
#include "event_loop.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace netsem::bench {

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "netsem-bench: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

}  // namespace

EventLoop::EventLoop() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) die("epoll_create1");
}

EventLoop::~EventLoop() {
  ::close(epoll_fd_);
}

void EventLoop::add(int fd, std::uint32_t events, Handler* handler) {
  epoll_event event{};
  event.events = events;
  event.data.ptr = handler;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) die("epoll_ctl add");
}

void EventLoop::modify(int fd, std::uint32_t events, Handler* handler) {
  epoll_event event{};
  event.events = events;
  event.data.ptr = handler;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) != 0) die("epoll_ctl modify");
}

void EventLoop::remove(int fd) {
  // A descriptor already closed has left the epoll set by itself.
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr) != 0 && errno != EBADF && errno != ENOENT) {
    die("epoll_ctl delete");
  }
}

int EventLoop::poll(std::chrono::milliseconds timeout) {
  // Work deferred by the previous batch's own deferred tasks runs promptly.
  if (!deferred_.empty() || !end_of_batch_.empty()) timeout = std::chrono::milliseconds(0);
  const int n =
      ::epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()), static_cast<int>(timeout.count()));
  if (n < 0 && errno != EINTR) die("epoll_wait");
  for (int i = 0; i < n; ++i) {
    static_cast<Handler*>(events_[static_cast<std::size_t>(i)].data.ptr)
        ->on_ready(events_[static_cast<std::size_t>(i)].events);
  }
  finish_batch();
  return n < 0 ? 0 : n;
}

void EventLoop::finish_batch() {
  // What these tasks and hooks defer in turn waits for the next batch, so a
  // reconnect that fails at once cannot spin here forever.
  running_.swap(deferred_);
  for (auto& task : running_) task();
  running_.clear();
  ending_.swap(end_of_batch_);
  for (Handler* handler : ending_) handler->on_end_of_batch();
  ending_.clear();
}

}  // namespace netsem::bench
