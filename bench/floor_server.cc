// The floor echo server (see floor_server.h). Deliberately as lean as a
// server on epoll can be, so that whatever netsemd spends beyond it is
// netsemd's own cost: no parsing beyond finding the "\n"s, no allocation
// per request, one write per read.
#include "floor_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "event_loop.h"

namespace netsem::bench {

namespace {

constexpr std::size_t kReadBytes = 64 << 10;

class FloorListener;

class FloorPeer final : public EventLoop::Handler {
 public:
  FloorPeer(EventLoop& loop, FloorListener& server, int fd) : loop_(loop), server_(server), fd_(fd) {
    loop_.add(fd_, EPOLLIN, this);
  }
  ~FloorPeer() { close(); }

  void on_ready(std::uint32_t events) override;

 private:
  void write_pending();
  void close();

  EventLoop& loop_;
  FloorListener& server_;
  int fd_;
  std::string out_;  // answers the peer's socket did not take yet
  std::size_t out_sent_ = 0;
  bool writable_wait_ = false;  // EPOLLOUT is in the interest set
};

class FloorListener final : public EventLoop::Handler {
 public:
  FloorListener(EventLoop& loop, int fd) : loop_(loop), fd_(fd), buffer_(kReadBytes, '\0') {
    loop_.add(fd_, EPOLLIN, this);
  }

  void on_ready(std::uint32_t) override {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or out of descriptors: retried on the next event
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto peer = std::make_unique<FloorPeer>(loop_, *this, fd);
      peers_.emplace(peer.get(), std::move(peer));
    }
  }

  std::string& buffer() { return buffer_; }

  // Destroyed after the batch: later events of this batch may name it.
  void forget(FloorPeer* peer) {
    loop_.defer([this, peer] { peers_.erase(peer); });
  }

 private:
  EventLoop& loop_;
  int fd_;
  std::string buffer_;  // one read buffer for every peer
  std::unordered_map<FloorPeer*, std::unique_ptr<FloorPeer>> peers_;
};

void FloorPeer::on_ready(std::uint32_t events) {
  if (fd_ < 0) return;
  if ((events & EPOLLOUT) != 0) {
    write_pending();
    if (fd_ < 0) return;
  }
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) == 0) return;
  std::string& buffer = server_.buffer();
  const ssize_t n = ::read(fd_, buffer.data(), buffer.size());
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    close();
    return;
  }
  const auto lines = std::count(buffer.data(), buffer.data() + n, '\n');
  for (std::ptrdiff_t i = 0; i < lines; ++i) out_.append(kFloorReply);
  write_pending();
}

void FloorPeer::write_pending() {
  while (out_sent_ < out_.size()) {
    const ssize_t n = ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        if (!writable_wait_) loop_.modify(fd_, EPOLLIN | EPOLLOUT, this);
        writable_wait_ = true;
        return;
      }
      close();
      return;
    }
    out_sent_ += static_cast<std::size_t>(n);
  }
  out_.clear();
  out_sent_ = 0;
  if (writable_wait_) {
    writable_wait_ = false;
    loop_.modify(fd_, EPOLLIN, this);
  }
}

void FloorPeer::close() {
  if (fd_ < 0) return;
  loop_.remove(fd_);
  ::close(fd_);
  fd_ = -1;
  server_.forget(this);
}

}  // namespace

void serve_floor(const Endpoint& endpoint, const std::function<void(std::uint16_t port)>& listening,
                 std::string& error) {
  const int fd = ::socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::bind(fd, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    error = std::string("cannot listen: ") + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return;
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
  const std::uint16_t port = bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                                         : reinterpret_cast<sockaddr_in&>(bound).sin_port;
  EventLoop loop;
  FloorListener listener(loop, fd);
  listening(ntohs(port));
  for (;;) loop.poll(std::chrono::milliseconds(1000));
}

FloorChild::FloorChild(const Endpoint& endpoint, std::string& error) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    return;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return;
  }
  if (pid == 0) {
    ::close(pipe_fds[0]);
    std::string child_error;
    serve_floor(
        endpoint,
        [&](std::uint16_t port) {
          (void)!::write(pipe_fds[1], &port, sizeof port);
          ::close(pipe_fds[1]);
        },
        child_error);
    ::_exit(1);
  }
  ::close(pipe_fds[1]);
  std::uint16_t port = 0;
  if (::read(pipe_fds[0], &port, sizeof port) != sizeof port) {
    error = "the floor server did not start";
    ::close(pipe_fds[0]);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return;
  }
  ::close(pipe_fds[0]);
  pid_ = pid;
  port_ = port;
}

FloorChild::~FloorChild() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

}  // namespace netsem::bench
