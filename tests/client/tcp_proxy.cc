// TcpProxy (tcp_proxy.h): one poll() loop over the listening socket, an
// eventfd that freeze(), thaw() and the destructor poke, and each proxied
// pair of sockets with a buffer per direction. While frozen the loop polls
// the eventfd alone, so it neither reads, writes nor accepts.
#include "tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "support/socket_pump.h"

namespace netsem::testing {

namespace {

using test_support::pull;
using test_support::push;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  return address;
}

// One client connection and its connection to the target.
struct Pair {
  int fd[2] = {-1, -1};    // 0: the client's side, 1: the target's
  std::string pending[2];  // bytes to write to fd[i]
  bool closed = false;
  ~Pair() {
    for (const int each : fd) {
      if (each >= 0) ::close(each);
    }
  }
};

}  // namespace

TcpProxy::TcpProxy(std::uint16_t target) : target_(target) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  sockaddr_in address = loopback(0);
  socklen_t size = sizeof address;
  if (listen_fd_ < 0 || wake_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
      ::listen(listen_fd_, 64) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    return;
  }
  port_ = ntohs(address.sin_port);
  thread_ = std::thread([this] { run(); });
}

TcpProxy::~TcpProxy() {
  stopping_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void TcpProxy::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void TcpProxy::freeze() {
  std::unique_lock lock(mutex_);
  frozen_ = true;
  wake();
  if (thread_.joinable()) cv_.wait(lock, [&] { return thread_frozen_; });
}

void TcpProxy::thaw() {
  std::lock_guard lock(mutex_);
  frozen_ = false;
  wake();
}

void TcpProxy::reset() {
  std::unique_lock lock(mutex_);
  const std::uint64_t asked = ++resets_asked_;
  wake();
  if (thread_.joinable()) cv_.wait(lock, [&] { return resets_done_ >= asked; });
}

std::string TcpProxy::from_target() {
  std::lock_guard lock(mutex_);
  return from_target_;
}

void TcpProxy::run() {
  std::vector<std::unique_ptr<Pair>> pairs;
  while (!stopping_) {
    bool frozen = false;
    {
      std::lock_guard lock(mutex_);
      frozen = frozen_;
      thread_frozen_ = frozen;
      if (resets_done_ < resets_asked_) {
        // SO_LINGER 0: close() sends a RST, not a FIN.
        const linger abort{.l_onoff = 1, .l_linger = 0};
        for (const auto& pair : pairs) {
          for (const int each : pair->fd) {
            if (each >= 0) ::setsockopt(each, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
          }
        }
        pairs.clear();
        resets_done_ = resets_asked_;
      }
    }
    cv_.notify_all();
    std::vector<pollfd> fds = {{wake_fd_, POLLIN, 0}};
    if (!frozen) {
      fds.push_back({listen_fd_, POLLIN, 0});
      for (const auto& pair : pairs) {
        for (int side = 0; side < 2; ++side) {
          const short events = static_cast<short>(POLLIN | (pair->pending[side].empty() ? 0 : POLLOUT));
          fds.push_back({pair->fd[side], events, 0});
        }
      }
    }
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) {
      std::uint64_t drained = 0;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &drained, sizeof drained);
    }
    if (frozen) continue;
    {
      // A freeze asked for while poll() slept takes effect before any transfer.
      std::lock_guard lock(mutex_);
      if (frozen_) continue;
    }
    if (fds[1].revents != 0) {
      for (;;) {
        const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (client < 0) break;
        auto pair = std::make_unique<Pair>();
        pair->fd[0] = client;
        pair->fd[1] = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const sockaddr_in address = loopback(target_);
        if (pair->fd[1] < 0 ||
            ::connect(pair->fd[1], reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
          continue;  // the client sees its connection closed
        }
        const int one = 1;
        ::setsockopt(pair->fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(pair->fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pairs.push_back(std::move(pair));
      }
    }
    std::size_t at = 2;
    for (const auto& pair : pairs) {
      for (int side = 0; side < 2 && at < fds.size(); ++side, ++at) {
        if (fds[at].fd != pair->fd[side] || pair->closed) continue;
        const int other = 1 - side;
        const std::size_t before = pair->pending[other].size();
        if ((fds[at].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !pull(pair->fd[side], pair->pending[other])) {
          pair->closed = true;
        }
        if (side == 1 && pair->pending[other].size() > before) {
          std::lock_guard lock(mutex_);
          from_target_.append(pair->pending[other], before);
        }
        if (!push(pair->fd[other], pair->pending[other]) || !push(pair->fd[side], pair->pending[side])) {
          pair->closed = true;
        }
      }
    }
    // An end on either side ends both, as a real connection's close would
    // reach the other end (what was read before it is passed on first).
    std::erase_if(pairs, [](const std::unique_ptr<Pair>& pair) {
      if (!pair->closed) return false;
      for (int side = 0; side < 2; ++side) (void)push(pair->fd[side], pair->pending[side]);
      return true;
    });
  }
}

}  // namespace netsem::testing
