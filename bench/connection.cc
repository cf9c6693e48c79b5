// A non-blocking client connection on the benchmark's loop (see
// connection.h). One read per readiness event and one write per batch keep
// the generator's syscalls per request at the minimum the server also pays.
#include "connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>

namespace netsem::bench {

namespace {

// Small, since the sessions scenario holds ten thousand connections; the
// buffer doubles whenever a burst leaves less than kMinReadRoom free.
constexpr std::size_t kInitialInputBytes = 4 << 10;
constexpr std::size_t kMinReadRoom = 1 << 10;

}  // namespace

Connection::Connection(EventLoop& loop, Listener& listener, std::size_t index)
    : loop_(loop), listener_(listener), index_(index) {}

Connection::~Connection() {
  close();
}

bool Connection::connect(const Endpoint& endpoint) {
  connect_started_ = Clock::now();
  fd_ = ::socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0 &&
      errno != EINPROGRESS) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    errno = error;
    return false;
  }
  connected_ = false;
  if (in_.empty()) in_.resize(kInitialInputBytes);
  in_begin_ = in_end_ = 0;
  out_.clear();
  out_sent_ = 0;
  // Loopback connects usually complete at once; the writable event says so
  // either way, which keeps one path for both.
  writable_wait_ = true;
  loop_.add(fd_, EPOLLOUT, this);
  return true;
}

void Connection::send(std::string_view bytes) {
  out_.append(bytes);
  if (connected_ && !writable_wait_ && !flush_requested_) {
    flush_requested_ = true;
    loop_.at_end_of_batch(this);
  }
}

void Connection::close() {
  if (fd_ < 0) return;
  loop_.remove(fd_);
  ::close(fd_);
  fd_ = -1;
  connected_ = false;
  writable_wait_ = false;
}

void Connection::on_ready(std::uint32_t events) {
  if (fd_ < 0) return;  // closed earlier in this batch
  if (!connected_) {
    finish_connect();
    return;
  }
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) read_once();
  if (fd_ >= 0 && (events & EPOLLOUT) != 0) flush();
}

void Connection::on_end_of_batch() {
  flush_requested_ = false;
  if (fd_ >= 0 && connected_ && !writable_wait_) flush();
}

void Connection::finish_connect() {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  if (error != 0) {
    fail(error);
    return;
  }
  connected_ = true;
  writable_wait_ = false;
  loop_.modify(fd_, EPOLLIN, this);
  listener_.on_connected(*this);
  if (fd_ >= 0 && out_sent_ < out_.size()) flush();
}

void Connection::read_once() {
  // The buffer keeps its size between reads (resizing would zero-fill it on
  // every read); unconsumed bytes move to the front only when room is short.
  if (in_begin_ == in_end_) {
    in_begin_ = in_end_ = 0;
  } else if (in_.size() - in_end_ < kMinReadRoom && in_begin_ > 0) {
    in_.replace(0, in_end_ - in_begin_, in_, in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  if (in_.size() - in_end_ < kMinReadRoom) in_.resize(in_.size() * 2);
  const ssize_t n = ::read(fd_, in_.data() + in_end_, in_.size() - in_end_);
  if (n > 0) {
    in_end_ += static_cast<std::size_t>(n);
    listener_.on_input(*this);
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  fail(n == 0 ? 0 : errno);
}

void Connection::flush() {
  while (out_sent_ < out_.size()) {
    const ssize_t n = ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        watch_writable(true);
        return;
      }
      fail(errno);
      return;
    }
    out_sent_ += static_cast<std::size_t>(n);
  }
  out_.clear();
  out_sent_ = 0;
  watch_writable(false);
}

void Connection::watch_writable(bool on) {
  if (writable_wait_ == on) return;
  writable_wait_ = on;
  loop_.modify(fd_, on ? EPOLLIN | EPOLLOUT : EPOLLIN, this);
}

void Connection::fail(int error) {
  close();
  listener_.on_closed(*this, error);
}

}  // namespace netsem::bench
