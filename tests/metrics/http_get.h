// A blocking HTTP/1.0 GET to 127.0.0.1 with a deadline, for the tests of
// /metrics and of the Prometheus that scrapes it: enough HTTP to read a
// status, the headers and a body the server ends by closing.
//
// Thread safety: pure functions.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace netsem::testing {

struct HttpAnswer {
  int status = 0;       // 0: no answer (refused, timed out, not HTTP)
  std::string headers;  // the header lines, "\r\n"-separated, status line excluded
  std::string body;
};

// Percent-encodes a query parameter's value (RFC 3986 unreserved kept).
inline std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

// GET http://127.0.0.1:port<target>; gives up at `timeout`.
inline HttpAnswer http_get(std::uint16_t port, std::string_view target,
                           std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  HttpAnswer answer;
  const auto end = std::chrono::steady_clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return answer;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const auto wait = [&](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left.count())) == 1;
  };
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    int error = 0;
    socklen_t size = sizeof error;
    if (errno != EINPROGRESS || !wait(POLLOUT) || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0 ||
        error != 0) {
      ::close(fd);
      return answer;
    }
  }
  const std::string request = "GET " + std::string(target) + " HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(port) +
                              "\r\nConnection: close\r\n\r\n";
  for (std::size_t done = 0; done < request.size();) {
    const ssize_t n = ::send(fd, request.data() + done, request.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EAGAIN && wait(POLLOUT)) {
      continue;
    } else {
      ::close(fd);
      return answer;
    }
  }
  std::string raw;
  for (;;) {
    char buffer[16384];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      raw.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EAGAIN || !wait(POLLIN)) {
      ::close(fd);
      return answer;
    }
  }
  ::close(fd);
  const auto head_end = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/1.") || head_end == std::string::npos || raw.size() < 12) return answer;
  answer.status = std::stoi(raw.substr(9, 3));
  const auto first_line_end = raw.find("\r\n");
  answer.headers = raw.substr(first_line_end + 2, head_end - first_line_end - 2);
  answer.body = raw.substr(head_end + 4);
  return answer;
}

// The value of header `name` (case-insensitive), "" when absent.
inline std::string header_value(const HttpAnswer& answer, std::string_view name) {
  std::string_view rest = answer.headers;
  while (!rest.empty()) {
    const auto eol = rest.find("\r\n");
    const std::string_view line = rest.substr(0, eol);
    const auto colon = line.find(':');
    if (colon == name.size()) {
      bool same = true;
      for (std::size_t i = 0; i < name.size(); ++i) {
        same = same &&
               std::tolower(static_cast<unsigned char>(line[i])) == std::tolower(static_cast<unsigned char>(name[i]));
      }
      if (same) {
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        return std::string(value);
      }
    }
    if (eol == std::string_view::npos) break;
    rest.remove_prefix(eol + 2);
  }
  return "";
}

}  // namespace netsem::testing
