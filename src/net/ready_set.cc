// ReadySet: one level-triggered epoll set, waited on through Asio.
#include "net/ready_set.h"

#include <cerrno>
#include <cstring>
#include <string>

namespace netsem::server {

Result<std::unique_ptr<ReadySet>> ReadySet::open(asio::io_context& io) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (epoll.get() < 0) {
    return Status(StatusCode::kIoError, std::string("cannot make an epoll set: ") + std::strerror(errno));
  }
  return std::unique_ptr<ReadySet>(new ReadySet(io, std::move(epoll)));
}

ReadySet::ReadySet(asio::io_context& io, UniqueFd epoll) : epoll_(std::move(epoll)), watch_(io, epoll_.get()) {}

ReadySet::~ReadySet() {
  std::error_code ignored;
  watch_.cancel(ignored);
  (void)watch_.release();  // epoll_ closes it
}

bool ReadySet::add(int fd, std::uint64_t key, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = key;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) == 0;
}

bool ReadySet::modify(int fd, std::uint64_t key, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = key;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event) == 0;
}

void ReadySet::remove(int fd) {
  epoll_event unused{};
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, &unused);
}

void ReadySet::start(ReadyHandler on_ready, std::function<void()> on_round_end) {
  on_ready_ = std::move(on_ready);
  on_round_end_ = std::move(on_round_end);
  wait();
}

void ReadySet::stop() {
  stopped_ = true;
  std::error_code ignored;
  watch_.cancel(ignored);
}

void ReadySet::wait() {
  if (stopped_) return;
  watch_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const std::error_code& error) {
    if (error || stopped_) return;
    round();
    wait();
  });
}

void ReadySet::round() {
  int n = 0;
  do {
    n = ::epoll_wait(epoll_.get(), events_.data(), kMaxEvents, 0);
  } while (n < 0 && errno == EINTR);
  for (int i = 0; i < n; ++i) on_ready_(events_[i].data.u64, events_[i].events);
  on_round_end_();
}

}  // namespace netsem::server
