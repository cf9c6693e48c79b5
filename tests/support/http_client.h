// Test support: a small HTTP/1.1 client over plain blocking sockets with a
// deadline on every wait, for tests against netsemd's HTTP listener (no
// library between the test and the wire, so a test can also send what no
// library would: a huge header, a byte a second, a request it never reads
// the answer of). Header-only; the answers it reads are netsemd's, which
// always carry a Content-Length.
//
// Thread safety: an HttpConnection belongs to one thread; the free
// functions are reentrant.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <string_view>

namespace netsem::test_support {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string header(const std::string& name) const {
    const auto found = headers.find(name);
    return found == headers.end() ? std::string() : found->second;
  }
};

// `text` percent-encoded for a URL path segment or query value: every byte
// but A-Z a-z 0-9 - . _ ~ as %XX.
inline std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  return out;
}

// The HTTP port netsemd logged ("HTTP on http://127.0.0.1:PORT/"); 0 when
// it logged none.
inline std::uint16_t http_port_from_log(const std::string& log) {
  static const std::regex kLine(R"(HTTP on http://[^ ]*:(\d+)/)");
  std::smatch match;
  if (!std::regex_search(log, match, kLine)) return 0;
  return static_cast<std::uint16_t>(std::stoi(match[1]));
}

class HttpConnection {
 public:
  // Connects to 127.0.0.1:port (or `host`); an invalid connection (ok()
  // false) when that fails. `receive_buffer` > 0 sets SO_RCVBUF first;
  // `source`, an IPv4 address of this host (any of 127.0.0.0/8), is bound as
  // the connection's own address (another peer, as far as per-address
  // limits go).
  explicit HttpConnection(std::uint16_t port, const char* host = "127.0.0.1", int receive_buffer = 0,
                          const char* source = nullptr) {
    const bool v6 = std::string_view(host).find(':') != std::string_view::npos;
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (receive_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    if (source != nullptr && !v6) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &local.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
        ::close(fd_);
        fd_ = -1;
        return;
      }
    }
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      ::inet_pton(AF_INET6, host, &a->sin6_addr);
      length = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&storage);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      ::inet_pton(AF_INET, host, &a->sin_addr);
      length = sizeof *a;
    }
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&storage), length) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~HttpConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // Sends all of `bytes`; false when the peer closed or reset.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Sends one request (Host: 127.0.0.1 unless `extra_headers` starts with a
  // Host line, Content-Length when a body is given, then `extra_headers`,
  // each ending in \r\n).
  bool send_request(std::string_view method, std::string_view target, std::string_view extra_headers = {},
                    std::string_view body = {}) {
    std::string request = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\n";
    if (!extra_headers.starts_with("Host:")) request += "Host: 127.0.0.1\r\n";
    if (!body.empty()) request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    request += std::string(extra_headers) + "\r\n" + std::string(body);
    return send(request);
  }

  // Reads one response; nullopt on timeout, a close before it is complete,
  // or one that does not parse. `head_only` for the answer to a HEAD.
  std::optional<HttpResponse> read_response(std::chrono::milliseconds timeout = std::chrono::seconds(5),
                                            bool head_only = false) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(deadline)) return std::nullopt;
    }
    HttpResponse response;
    const std::string head = buffer_.substr(0, head_end);
    if (head.size() < 12 || !head.starts_with("HTTP/1.")) return std::nullopt;
    response.status = std::atoi(head.c_str() + 9);
    for (std::size_t at = head.find("\r\n"); at != std::string::npos;) {
      const std::size_t next = head.find("\r\n", at + 2);
      const std::string line = head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        response.headers[name] = value;
      }
      at = next;
    }
    const std::size_t length =
        head_only ? 0
                  : std::stoul(response.header("content-length").empty() ? std::string("0")
                                                                         : response.header("content-length"));
    while (buffer_.size() < head_end + 4 + length) {
      if (!fill(deadline)) return std::nullopt;
    }
    response.body = buffer_.substr(head_end + 4, length);
    buffer_.erase(0, head_end + 4 + length);
    return response;
  }

  // True when the peer closes (or resets) within `timeout`; what it sent
  // meanwhile is dropped.
  bool wait_closed(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char sink[4096];
      const ssize_t n = ::recv(fd_, sink, sizeof sink, 0);
      if (n <= 0) return true;
    }
  }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[16384];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
};

// One request on a fresh connection; nullopt when it could not connect or
// no complete answer came within `timeout`.
inline std::optional<HttpResponse> http_request(std::uint16_t port, std::string_view method, std::string_view target,
                                                std::chrono::milliseconds timeout = std::chrono::seconds(5),
                                                std::string_view extra_headers = {}, std::string_view body = {}) {
  HttpConnection connection(port);
  if (!connection.ok() || !connection.send_request(method, target, extra_headers, body)) return std::nullopt;
  return connection.read_response(timeout, method == "HEAD");
}

inline std::optional<HttpResponse> http_get(std::uint16_t port, std::string_view target,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  return http_request(port, "GET", target, timeout);
}

}  // namespace netsem::test_support
