// PartitionProxy (partition_proxy.h): one poll() loop over the listeners, an
// eventfd that cut(), isolate(), heal() and the destructor poke, and each
// proxied connection with a buffer per direction. A connection whose link is
// cut (or whose sender is not known yet, past its handshake) is left out of
// the poll set: nothing is read from or written to it, so the kernel's
// buffers fill and the servers see silence.
#include "raft/partition_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "support/socket_pump.h"

namespace netsem::raft::testing {

namespace {

using test_support::pull;
using test_support::push;

constexpr std::size_t kMaxBuffered = 1 << 20;

sockaddr_in address_of(const std::string& ip, std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  ::inet_pton(AF_INET, ip.c_str(), &address.sin_addr);
  address.sin_port = htons(port);
  return address;
}

}  // namespace

struct PartitionProxy::Connection {
  int fd[2] = {-1, -1};    // 0: the sending server's side, 1: the target server's
  std::string pending[2];  // bytes to write to fd[i]
  std::uint64_t from = 0;  // the sender, from its handshake (0: not read yet)
  std::uint64_t to = 0;
  bool closed = false;
  ~Connection() {
    for (const int each : fd) {
      if (each >= 0) ::close(each);
    }
  }
};

PartitionProxy::PartitionProxy(std::vector<Server> servers) : servers_(std::move(servers)) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  for (const Server& server : servers_) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const sockaddr_in address = address_of(server.advertised_ip, server.port);
    if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(fd, 64) != 0) {
      error_ =
          "cannot listen on " + server.advertised_ip + ":" + std::to_string(server.port) + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return;
    }
    listeners_.push_back(fd);
  }
  thread_ = std::thread([this] { run(); });
}

PartitionProxy::~PartitionProxy() {
  stopping_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
  for (const int fd : listeners_) ::close(fd);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void PartitionProxy::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

bool PartitionProxy::blocked(std::uint64_t a, std::uint64_t b) const {
  return a == 0 || cut_.contains({std::min(a, b), std::max(a, b)});
}

void PartitionProxy::cut(std::uint64_t a, std::uint64_t b) {
  std::lock_guard lock(mu_);
  cut_.insert({std::min(a, b), std::max(a, b)});
  wake();
}

void PartitionProxy::isolate(std::uint64_t id) {
  std::lock_guard lock(mu_);
  for (const Server& other : servers_) {
    if (other.id != id) cut_.insert({std::min(id, other.id), std::max(id, other.id)});
  }
  wake();
}

void PartitionProxy::heal() {
  std::lock_guard lock(mu_);
  cut_.clear();
  wake();
}

std::uint64_t PartitionProxy::connections(std::uint64_t from, std::uint64_t to) const {
  std::lock_guard lock(mu_);
  const auto it = seen_.find({from, to});
  return it == seen_.end() ? 0 : it->second;
}

void PartitionProxy::run() {
  std::vector<std::unique_ptr<Connection>> connections;
  constexpr std::size_t kHandshakeIdEnd = 16;  // protocol u64, then the sender's id u64
  while (!stopping_) {
    std::vector<pollfd> fds = {{wake_fd_, POLLIN, 0}};
    for (const int fd : listeners_) fds.push_back({fd, POLLIN, 0});
    std::vector<std::pair<Connection*, int>> polled;  // (connection, side) of fds past the listeners
    {
      std::lock_guard lock(mu_);
      for (const auto& c : connections) {
        // Until its sender is known only its first bytes are read; a cut
        // link is not touched at all.
        if (c->from == 0) {
          fds.push_back({c->fd[0], POLLIN, 0});
          polled.emplace_back(c.get(), 0);
          continue;
        }
        if (blocked(c->from, c->to)) continue;
        for (int side = 0; side < 2; ++side) {
          // Backpressure: no more is read from a side while the other is
          // kMaxBuffered behind, so a slow receiver slows its sender.
          const bool room = c->pending[1 - side].size() < kMaxBuffered;
          const short events = static_cast<short>((room ? POLLIN : 0) | (c->pending[side].empty() ? 0 : POLLOUT));
          fds.push_back({c->fd[side], events, 0});
          polled.emplace_back(c.get(), side);
        }
      }
    }
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) {
      std::uint64_t drained = 0;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &drained, sizeof drained);
    }
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      if (fds[1 + i].revents == 0) continue;
      for (;;) {
        sockaddr_in source{};
        socklen_t source_length = sizeof source;
        const int client = ::accept4(listeners_[i], reinterpret_cast<sockaddr*>(&source), &source_length,
                                     SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (client < 0) break;
        auto c = std::make_unique<Connection>();
        c->fd[0] = client;
        c->to = servers_[i].id;
        c->fd[1] = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const sockaddr_in target = address_of(servers_[i].bind_ip, servers_[i].port);
        // From the sender's own address: the server checks the source of a
        // connection against the host of the id it claims.
        source.sin_port = 0;
        if (c->fd[1] < 0 || ::bind(c->fd[1], reinterpret_cast<const sockaddr*>(&source), sizeof source) != 0 ||
            ::connect(c->fd[1], reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
          continue;  // the sender sees its connection closed, as with the server down
        }
        const int flags = 1;
        ::setsockopt(c->fd[0], IPPROTO_TCP, TCP_NODELAY, &flags, sizeof flags);
        ::setsockopt(c->fd[1], IPPROTO_TCP, TCP_NODELAY, &flags, sizeof flags);
        connections.push_back(std::move(c));
      }
    }
    std::lock_guard lock(mu_);
    const std::size_t first = 1 + listeners_.size();
    for (std::size_t at = first; at < fds.size(); ++at) {
      auto [c, side] = polled[at - first];
      if (c->closed || fds[at].revents == 0) continue;
      const int other = 1 - side;
      if ((fds[at].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !pull(c->fd[side], c->pending[other])) {
        c->closed = true;
      }
      if (c->from == 0 && c->pending[1].size() >= kHandshakeIdEnd) {
        std::uint64_t id = 0;
        for (int b = 7; b >= 0; --b) id = (id << 8) | static_cast<unsigned char>(c->pending[1][8 + b]);
        c->from = id;
        ++seen_[{c->from, c->to}];
      }
      if (c->from == 0 || blocked(c->from, c->to)) continue;  // held: nothing forwarded
      if (!push(c->fd[other], c->pending[other]) || !push(c->fd[side], c->pending[side])) c->closed = true;
    }
    // An end on either side ends both, once what was read before it is passed
    // on (unless the link is cut: then it is dropped, as a network would).
    std::erase_if(connections, [this](const std::unique_ptr<Connection>& c) {
      if (!c->closed) return false;
      if (c->from != 0 && !blocked(c->from, c->to)) {
        for (int side = 0; side < 2; ++side) (void)push(c->fd[side], c->pending[side]);
      }
      return true;
    });
  }
}

}  // namespace netsem::raft::testing
