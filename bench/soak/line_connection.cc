// LineConnection (line_connection.h): a non-blocking socket driven by poll()
// with deadlines, so that neither a worker nor the driver can hang on a
// server that stopped answering.
#include "line_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "event_ring.h"

namespace netsem::soak {

namespace {

// Milliseconds from now until `deadline_ns`, for poll(): 0 when passed.
int poll_timeout_ms(std::int64_t deadline_ns) {
  const std::int64_t left = deadline_ns - monotonic_ns();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<std::int64_t>((left + 999'999) / 1'000'000, 60'000));
}

}  // namespace

LineConnection::LineConnection(LineConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), buffer_(std::move(other.buffer_)) {}

LineConnection& LineConnection::operator=(LineConnection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

bool LineConnection::connect(const std::string& address, std::uint16_t port, std::int64_t deadline_ns) {
  close();
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &peer.sin_addr) != 1) return false;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&peer), sizeof peer) == 0) return true;
  if (errno != EINPROGRESS) {
    close();
    return false;
  }
  pollfd waiting{fd_, POLLOUT, 0};
  int error = 0;
  socklen_t length = sizeof error;
  if (::poll(&waiting, 1, poll_timeout_ms(deadline_ns)) != 1 ||
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
    close();
    return false;
  }
  return true;
}

bool LineConnection::send(std::string_view line, std::int64_t deadline_ns) {
  std::string out(line);
  out.push_back('\n');
  return write(out, deadline_ns);
}

bool LineConnection::write(std::string_view out, std::int64_t deadline_ns) {
  if (fd_ < 0) return false;
  std::size_t sent = 0;
  while (sent < out.size()) {
    const ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    pollfd waiting{fd_, POLLOUT, 0};
    if (n < 0 && errno == EAGAIN && ::poll(&waiting, 1, poll_timeout_ms(deadline_ns)) == 1) continue;
    close();
    return false;
  }
  return true;
}

LineConnection::ReadStatus LineConnection::read_line(std::string& line, std::int64_t deadline_ns) {
  for (;;) {
    if (const auto end = buffer_.find('\n'); end != std::string::npos) {
      line.assign(buffer_, 0, end);
      buffer_.erase(0, end + 1);
      return ReadStatus::kLine;
    }
    if (fd_ < 0) return ReadStatus::kClosed;
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd waiting{fd_, POLLIN, 0};
      const int ready = ::poll(&waiting, 1, poll_timeout_ms(deadline_ns));
      if (ready == 0) return ReadStatus::kTimeout;
      if (ready > 0 || errno == EINTR) continue;
    }
    close_socket();  // EOF or an error; buffered complete lines were returned first
  }
}

bool LineConnection::peer_closed() {
  if (fd_ < 0) return true;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
    close_socket();  // keeps complete lines (a `* ERR SHUTDOWN`) for read_line
    return true;
  }
}

void LineConnection::drop() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  close();
}

void LineConnection::close() {
  close_socket();
  buffer_.clear();
}

void LineConnection::close_socket() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  for (std::size_t start = 0;;) {
    const auto space = line.find(' ', start);
    fields.push_back(line.substr(start, space - start));
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  return fields;
}

}  // namespace netsem::soak
