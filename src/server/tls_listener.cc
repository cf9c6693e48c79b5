// The TLS listener's thread: accept, handshake (SSL_accept driven by Asio's
// readiness waits, bounded by a timer), hand over or refuse. A handshake or
// refusal holds one descriptor and one SSL object and lives at most its
// timeout; there are at most kMaxHandshakes of them.
#include "server/tls_listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "net/socket_options.h"

namespace netsem::server {

namespace {

// How long a refused connection discards input after its line.
constexpr auto kRefusalDrainTime = std::chrono::milliseconds(500);
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

// OpenSSL's reason for the last error of this thread, or `fallback`.
std::string openssl_reason(std::string_view fallback) {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return std::string(fallback);
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? std::string(reason) : std::string(fallback);
}

}  // namespace

Result<std::shared_ptr<asio::ssl::context>> make_server_tls_context(const std::filesystem::path& cert,
                                                                    const std::filesystem::path& key,
                                                                    const std::filesystem::path& client_ca) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  const auto fail = [](std::string_view option, const std::filesystem::path& file, const std::error_code& error) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{} {}: {}", option, file.string(), error ? error.message() : openssl_reason("invalid")));
  };
  // TLS 1.2 at least; the ciphers are the system's (OpenSSL's configuration,
  // /etc/ssl/openssl.cnf), never a list of our own.
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_num_tickets(native, 0);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  // Partial writes of a session's output, retried from a buffer that may
  // have moved (SessionState::out grows); idle sessions give their buffers back.
  SSL_CTX_set_mode(native,
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  std::error_code error;
  context->use_certificate_chain_file(cert.string(), error);
  if (error) return fail("tls_cert", cert, error);
  context->use_private_key_file(key.string(), asio::ssl::context::pem, error);
  if (error) return fail("tls_key", key, error);
  if (SSL_CTX_check_private_key(native) != 1) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("tls_key {} is not the key of tls_cert {}: {}", key.string(), cert.string(),
                              openssl_reason("key values mismatch")));
  }
  if (!client_ca.empty()) {
    context->load_verify_file(client_ca.string(), error);
    if (error) return fail("tls_client_ca", client_ca, error);
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(client_ca.c_str());
    if (names == nullptr) return fail("tls_client_ca", client_ca, {});
    SSL_CTX_set_client_CA_list(native, names);  // takes ownership
    context->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, error);
    if (error) return fail("tls_client_ca", client_ca, error);
  }
  ERR_clear_error();
  return context;
}

std::string verified_subject(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  std::string subject;
  if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    if (size > 0) subject.assign(data, static_cast<std::size_t>(size));
  }
  BIO_free(bio);
  return subject;
}

// One connection's handshake, on the listener's thread.
class TlsListener::Handshake : public std::enable_shared_from_this<Handshake> {
 public:
  Handshake(TlsListener& owner, asio::ip::tcp::socket socket, SslPtr ssl, asio::ip::tcp::endpoint remote)
      : owner_(owner),
        socket_(std::move(socket)),
        timer_(owner.io_),
        ssl_(std::move(ssl)),
        remote_(std::move(remote)) {}

  void start() {
    timer_.expires_after(owner_.handshake_timeout_);
    timer_.async_wait([self = shared_from_this()](const std::error_code& error) {
      if (error || self->done_) return;
      self->fail(fmt::format("no handshake within {} ms", self->owner_.handshake_timeout_.count()), false);
    });
    step();
  }

 private:
  void step() {
    ERR_clear_error();
    const int result = SSL_accept(ssl_.get());
    if (result == 1) {
      succeed();
      return;
    }
    const int error = SSL_get_error(ssl_.get(), result);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      socket_.async_wait(error == SSL_ERROR_WANT_READ ? asio::socket_base::wait_read : asio::socket_base::wait_write,
                         [self = shared_from_this()](const std::error_code& wait_error) {
                           if (self->done_) return;
                           if (wait_error) {
                             self->fail(wait_error.message(), false);
                             return;
                           }
                           self->step();
                         });
      return;
    }
    std::string why;
    if (error == SSL_ERROR_SYSCALL) {
      why = errno != 0 ? std::string(std::strerror(errno)) : openssl_reason("the peer closed the connection");
    } else if (const long verify = SSL_get_verify_result(ssl_.get()); verify != X509_V_OK) {
      why = fmt::format("client certificate: {}", X509_verify_cert_error_string(verify));
      ERR_clear_error();
    } else {
      why = openssl_reason("handshake failed");
    }
    fail(why);
  }

  void succeed() {
    done_ = true;
    timer_.cancel();
    Connection connection;
    connection.subject = verified_subject(ssl_.get());
    connection.remote = remote_;
    std::error_code error;
    connection.fd = UniqueFd(socket_.release(error));
    connection.ssl = std::move(ssl_);
    owner_.finished();
    if (error) {
      owner_.note_failure(describe_peer(remote_), "cannot take its socket: " + error.message());
      return;
    }
    owner_.deliver_(std::move(connection));
  }

  // The handshake failed: the alert OpenSSL wrote, if any, is left to reach
  // the peer (TLS 1.3 clients learn only from it that their certificate was
  // refused): the sending side is shut and input discarded a moment before
  // the close, so that unread input does not turn the close into a reset
  // that overtakes the alert. A handshake that timed out is closed at once.
  void fail(const std::string& why, bool drain = true) {
    done_ = true;
    owner_.note_failure(describe_peer(remote_), why);
    std::error_code ignored;
    if (!drain) {
      close();
      return;
    }
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    timer_.expires_after(kRefusalDrainTime);
    timer_.async_wait([self = shared_from_this()](const std::error_code& error) {
      if (!error) self->close();
    });
    discard_input();
  }

  void discard_input() {
    socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](const std::error_code& error) {
      if (error || self->closed_) return;
      std::array<char, 4096> sink{};
      const ssize_t n = ::recv(self->socket_.native_handle(), sink.data(), sink.size(), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        self->close();
        return;
      }
      self->discard_input();
    });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    std::error_code ignored;
    socket_.close(ignored);  // a pending wait completes, and finds closed_
    owner_.finished();
  }

  TlsListener& owner_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  SslPtr ssl_;
  asio::ip::tcp::endpoint remote_;
  bool done_ = false;    // handshake over (succeeded or failed)
  bool closed_ = false;  // failed and closed
};

// A connection refused after its handshake: the line inside TLS, the end of
// TLS (close_notify) and of the sending side, then input discarded until
// the peer closes or the drain time is up.
class TlsListener::Refusal : public std::enable_shared_from_this<Refusal> {
 public:
  Refusal(TlsListener& owner, Connection connection) : owner_(owner), socket_(owner.io_), timer_(owner.io_) {
    std::error_code error;
    const int fd = connection.fd.release();
    socket_.assign(connection.remote.protocol(), fd, error);
    if (error) ::close(fd);
    ssl_ = std::move(connection.ssl);
  }

  void start(const std::string& line) {
    // A fresh connection's send buffer takes one short line whole; a peer
    // that does not read loses it, nothing more.
    ERR_clear_error();
    if (ssl_) {
      (void)SSL_write(ssl_.get(), line.data(), static_cast<int>(line.size()));
      (void)SSL_shutdown(ssl_.get());
      ERR_clear_error();
    }
    std::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    timer_.expires_after(kRefusalDrainTime);
    timer_.async_wait([self = shared_from_this()](const std::error_code& error) {
      if (!error) self->close();
    });
    wait_readable();
  }

 private:
  void wait_readable() {
    socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](const std::error_code& error) {
      if (error || self->closed_) return;
      std::array<char, 4096> sink{};
      const ssize_t n = ::recv(self->socket_.native_handle(), sink.data(), sink.size(), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        self->close();
        return;
      }
      self->wait_readable();
    });
  }
  void close() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    std::error_code ignored;
    socket_.close(ignored);
    owner_.finished();
  }

  TlsListener& owner_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  SslPtr ssl_;
  bool closed_ = false;
};

Result<std::unique_ptr<TlsListener>> TlsListener::start(const std::string& address, std::uint16_t port,
                                                        std::shared_ptr<asio::ssl::context> context,
                                                        std::chrono::milliseconds handshake_timeout,
                                                        std::int64_t session_timeout_ms, Deliver deliver) {
  std::unique_ptr<TlsListener> listener(
      new TlsListener(handshake_timeout, session_timeout_ms, std::move(deliver), std::move(context)));
  std::error_code error;
  const auto ip = asio::ip::make_address(address, error);
  if (error) return Status(StatusCode::kInvalidArgument, "bad bind_address '" + address + "'");
  const asio::ip::tcp::endpoint endpoint(ip, port);
  auto& acceptor = listener->acceptor_;
  acceptor.open(endpoint.protocol(), error);
  if (!error) acceptor.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor.bind(endpoint, error);
  if (!error) acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return Status(StatusCode::kIoError,
                  fmt::format("cannot listen for TLS on {}: {}", describe_peer(endpoint), error.message()));
  }
  listener->port_ = acceptor.local_endpoint().port();
  listener->accept_next();
  listener->thread_ = std::thread([raw = listener.get()] {
    ::pthread_setname_np(::pthread_self(), "netsemd-tls");
    raw->io_.run();
  });
  return listener;
}

TlsListener::TlsListener(std::chrono::milliseconds handshake_timeout, std::int64_t session_timeout_ms, Deliver deliver,
                         std::shared_ptr<asio::ssl::context> context)
    : acceptor_(io_),
      accept_retry_timer_(io_),
      handshake_timeout_(handshake_timeout),
      session_timeout_ms_(session_timeout_ms),
      deliver_(std::move(deliver)),
      context_(std::move(context)) {}

TlsListener::~TlsListener() {
  stop();
}

void TlsListener::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
  }
  // Everything in progress goes with the io_context: the handshakes'
  // sockets close as their objects are destroyed.
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void TlsListener::set_context(std::shared_ptr<asio::ssl::context> context) {
  std::lock_guard lock(mutex_);
  context_ = std::move(context);
}

std::shared_ptr<asio::ssl::context> TlsListener::context() const {
  std::lock_guard lock(const_cast<std::mutex&>(mutex_));
  return context_;
}

void TlsListener::refuse(Connection connection, std::string line) {
  asio::post(
      io_, [this, connection = std::make_shared<Connection>(std::move(connection)), line = std::move(line)]() mutable {
        if (in_flight_ >= kMaxHandshakes) return;  // closed as it goes
        ++in_flight_;
        std::make_shared<Refusal>(*this, std::move(*connection))->start(line);
      });
}

void TlsListener::accept_next() {
  if (in_flight_ >= kMaxHandshakes) {
    accept_paused_ = true;  // the next ones wait in the listen queue
    return;
  }
  acceptor_.async_accept([this](const std::error_code& error, asio::ip::tcp::socket socket) {
    if (error == asio::error::operation_aborted) return;
    if (error) {
      // Out of descriptors or the like: the loop's sessions carry on; retry.
      spdlog::warn("TLS accept failed: {}", error.message());
      accept_retry_timer_.expires_after(kAcceptRetryDelay);
      accept_retry_timer_.async_wait([this](const std::error_code& timer_error) {
        if (!timer_error) accept_next();
      });
      return;
    }
    on_accept(std::move(socket));
    accept_next();
  });
}

void TlsListener::on_accept(asio::ip::tcp::socket socket) {
  std::error_code error;
  const auto remote = socket.remote_endpoint(error);
  if (error) return;  // already gone
  socket.non_blocking(true, error);
  if (error) return;
  configure_session_socket(socket, session_timeout_ms_);
  const int one = 1;
  ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SslPtr ssl(SSL_new(context()->native_handle()));
  if (!ssl || SSL_set_fd(ssl.get(), socket.native_handle()) != 1) {
    note_failure(describe_peer(remote), openssl_reason("cannot make a TLS connection"));
    return;
  }
  ++in_flight_;
  std::make_shared<Handshake>(*this, std::move(socket), std::move(ssl), remote)->start();
}

void TlsListener::finished() {
  --in_flight_;
  if (accept_paused_ && in_flight_ < kMaxHandshakes) {
    accept_paused_ = false;
    accept_next();
  }
}

void TlsListener::note_failure(const std::string& peer, const std::string& why) {
  ++failed_;
  spdlog::debug("TLS handshake from {} failed: {}", peer, why);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_failure_log_ < std::chrono::seconds(1)) {
    ++failures_unlogged_;
    return;
  }
  last_failure_log_ = now;
  if (failures_unlogged_ != 0) {
    spdlog::info("TLS handshake from {} failed: {} ({} more failed since the last line)", peer, why,
                 failures_unlogged_);
  } else {
    spdlog::info("TLS handshake from {} failed: {}", peer, why);
  }
  failures_unlogged_ = 0;
}

}  // namespace netsem::server
