// A blocking socket and protocol v1 client with deadlines, on poll() (see
// control_client.h).
#include "control_client.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace netsem::bench {

namespace {

bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left < 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

}  // namespace

std::unique_ptr<BlockingSocket> BlockingSocket::connect(const Endpoint& endpoint, std::chrono::milliseconds timeout) {
  const int fd = ::socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  std::unique_ptr<BlockingSocket> socket(new BlockingSocket(fd));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0) {
    if (errno != EINPROGRESS || !wait_for(fd, POLLOUT, Clock::now() + timeout)) return nullptr;
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) return nullptr;
  }
  return socket;
}

BlockingSocket::~BlockingSocket() {
  ::close(fd_);
}

bool BlockingSocket::send_all(std::string_view bytes, Clock::time_point deadline) {
  for (std::size_t sent = 0; sent < bytes.size();) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      if (!wait_for(fd_, POLLOUT, deadline)) return false;
    } else if (n < 0 && errno != EINTR) {
      return false;
    }
  }
  return true;
}

bool BlockingSocket::read_more(std::string& buffer, Clock::time_point deadline) {
  for (;;) {
    if (!wait_for(fd_, POLLIN, deadline)) return false;
    char chunk[4096];
    const ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n > 0) {
      buffer.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) return false;
  }
}

std::unique_ptr<ControlClient> ControlClient::connect(const Endpoint& endpoint, std::chrono::milliseconds timeout) {
  auto socket = BlockingSocket::connect(endpoint, timeout);
  if (!socket) return nullptr;
  return std::unique_ptr<ControlClient>(new ControlClient(std::move(socket)));
}

std::optional<std::string> ControlClient::request(std::string_view request_line, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  if (!socket_->send_all(std::string(request_line), deadline)) return std::nullopt;
  for (;;) {
    if (const auto newline = buffer_.find('\n'); newline != std::string::npos) {
      std::string answer = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      if (!answer.empty() && answer.back() == '\r') answer.pop_back();
      return answer;
    }
    if (!socket_->read_more(buffer_, deadline)) return std::nullopt;
  }
}

}  // namespace netsem::bench
