// A non-blocking client connection on the benchmark's loop (see
// connection.h). One read per readiness event and one write per batch keep
// the generator's syscalls per request at the minimum the server also pays.
#include "connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <openssl/err.h>

#include <cerrno>

namespace netsem::bench {

namespace {

// Small, since the sessions scenario holds ten thousand connections; the
// buffer doubles whenever a burst leaves less than kMinReadRoom free.
constexpr std::size_t kInitialInputBytes = 4 << 10;
constexpr std::size_t kMinReadRoom = 1 << 10;

SSL_CTX* tls_context = nullptr;  // use_tls(); the process's one

}  // namespace

bool Connection::use_tls(const std::string& ca_file, std::string& error) {
  tls_context = SSL_CTX_new(TLS_client_method());
  if (tls_context == nullptr) {
    error = "cannot make a TLS context";
    return false;
  }
  SSL_CTX_set_min_proto_version(tls_context, TLS1_2_VERSION);
  SSL_CTX_set_mode(tls_context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_verify(tls_context, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(tls_context, ca_file.c_str(), nullptr) != 1) {
    error = "--tls-ca " + ca_file + ": cannot be read as PEM certificates";
    return false;
  }
  X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(tls_context), "127.0.0.1");
  return true;
}

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
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  handshaking_ = false;
  if (fd_ < 0) return;
  loop_.remove(fd_);
  ::close(fd_);
  fd_ = -1;
  connected_ = false;
  writable_wait_ = false;
}

void Connection::on_ready(std::uint32_t events) {
  if (fd_ < 0) return;  // closed earlier in this batch
  if (handshaking_) {
    continue_handshake();
    return;
  }
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
  if (tls_context != nullptr) {
    ssl_ = SSL_new(tls_context);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
      fail(ENOMEM);
      return;
    }
    SSL_set_connect_state(ssl_);
    handshaking_ = true;
    continue_handshake();
    return;
  }
  connected();
}

void Connection::continue_handshake() {
  ERR_clear_error();
  const int result = SSL_do_handshake(ssl_);
  if (result == 1) {
    handshaking_ = false;
    connected();
    return;
  }
  const int error = SSL_get_error(ssl_, result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    loop_.modify(fd_, error == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT, this);
    return;
  }
  ERR_clear_error();
  fail(EPROTO);
}

void Connection::connected() {
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
  if (ssl_ != nullptr) {
    // Everything OpenSSL can give now: the loop would not report what it
    // keeps in its buffer.
    bool got = false;
    for (;;) {
      if (in_.size() - in_end_ < kMinReadRoom) in_.resize(in_.size() * 2);
      ERR_clear_error();
      const int n = SSL_read(ssl_, in_.data() + in_end_, static_cast<int>(in_.size() - in_end_));
      if (n > 0) {
        in_end_ += static_cast<std::size_t>(n);
        got = true;
        continue;
      }
      const int error = SSL_get_error(ssl_, n);
      ERR_clear_error();
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) break;
      if (got) listener_.on_input(*this);
      if (fd_ >= 0) fail(error == SSL_ERROR_ZERO_RETURN ? 0 : EPROTO);
      return;
    }
    if (got) listener_.on_input(*this);
    return;
  }
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
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int n = SSL_write(ssl_, out_.data() + out_sent_, static_cast<int>(out_.size() - out_sent_));
      if (n <= 0) {
        const int error = SSL_get_error(ssl_, n);
        ERR_clear_error();
        if (error == SSL_ERROR_WANT_WRITE) {
          watch_writable(true);
          return;
        }
        fail(EPROTO);
        return;
      }
      out_sent_ += static_cast<std::size_t>(n);
      continue;
    }
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
