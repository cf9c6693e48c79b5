// TlsListener: netsemd's TLS port (tls_port). It accepts connections and
// runs their TLS handshakes on a thread of its own, with its own
// io_context, then hands each established connection (its descriptor and
// its OpenSSL SSL object) to the event loop, which serves it as a session
// like any other (session.h: the same table, the same FIFO queues).
//
// Why a thread of its own: a handshake costs public-key operations and
// waits on a peer that may stall or lie. Off the loop, a flood of them
// never delays a grant; bounded here, it never grows the server: at most
// kMaxHandshakes connections are in a handshake or being refused at once
// (more wait in the kernel's listen queue: accepting pauses), and each is
// dropped after the handshake timeout, whatever its peer does.
//
// Why OpenSSL's SSL object directly, beside asio::ssl::context: the context
// (certificates, key, client CAs, TLS 1.2 minimum, the system's default
// ciphers) is asio::ssl's, but asio::ssl::stream moves bytes through a
// memory BIO of its own and owns its SSL object to the end, so it cannot
// hand an established connection over to the loop's level-triggered set of
// raw non-blocking descriptors (net/ready_set.h). Here each connection's
// SSL reads and writes its descriptor itself (SSL_set_fd): the handshake
// here with SSL_accept and Asio's readiness waits, the session later with
// SSL_read and SSL_write in the loop, with no copy through Asio.
//
// Certificates are read again by SIGHUP (make_server_tls_context, then
// set_context): the next handshakes use the new ones; an established
// session keeps the one it began with (its SSL holds a reference).
//
// Thread safety: set_context(), refuse() and stop() from any thread; the
// rest of the work is on the listener's own thread; the `deliver` callback
// runs there.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "netsem/status.h"

namespace netsem::server {

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
// One connection's OpenSSL object; it does not own the descriptor.
using SslPtr = std::unique_ptr<SSL, SslFree>;

// The server's TLS context: the certificate chain and key (PEM), and when
// `client_ca` is not empty, the CAs that client certificates must verify
// against (then a client without one fails its handshake). TLS 1.2 at
// least, the system's default ciphers (OpenSSL's configuration), no
// renegotiation, no session tickets. kInvalidArgument naming the file and
// OpenSSL's reason when a file cannot be read or the key does not match.
Result<std::shared_ptr<asio::ssl::context>> make_server_tls_context(const std::filesystem::path& cert,
                                                                    const std::filesystem::path& key,
                                                                    const std::filesystem::path& client_ca);

// The subject of the peer's verified certificate in RFC 2253 form
// (`CN=worker-1,O=Acme`), or "" when it presented none or it did not verify.
std::string verified_subject(SSL* ssl);

class TlsListener {
 public:
  // Connections in a handshake or being refused at once, at most.
  static constexpr std::size_t kMaxHandshakes = 64;

  // An established TLS connection, handed to the loop.
  struct Connection {
    UniqueFd fd;  // non-blocking
    SslPtr ssl;   // its handshake done, reading and writing `fd`
    asio::ip::tcp::endpoint remote;
    std::string subject;  // verified_subject()
  };
  // Called on the listener's thread for each established connection; it
  // posts the connection to the loop. The loop may give it back to refuse().
  using Deliver = std::function<void(Connection)>;

  // Binds `address`:`port` (0: any free port) and starts the thread.
  // Accepted sockets get the sessions' keepalive for `session_timeout_ms`
  // (net/socket_options.h). kInvalidArgument for a bad address, kIoError
  // when it cannot listen.
  static Result<std::unique_ptr<TlsListener>> start(const std::string& address, std::uint16_t port,
                                                    std::shared_ptr<asio::ssl::context> context,
                                                    std::chrono::milliseconds handshake_timeout,
                                                    std::int64_t session_timeout_ms, Deliver deliver);
  // Stops (joins the thread).
  ~TlsListener();
  TlsListener(const TlsListener&) = delete;
  TlsListener& operator=(const TlsListener&) = delete;

  std::uint16_t port() const { return port_; }
  // The context of the next handshakes (SIGHUP).
  void set_context(std::shared_ptr<asio::ssl::context> context);
  // Tells an established connection `line` (`* ERR DENIED ...`, `* ERR
  // LIMIT ...`) inside TLS, ends TLS and the sending side, discards input
  // briefly so the peer reads the line rather than a reset, then closes.
  // Bounded like a handshake; dropped at once past kMaxHandshakes.
  void refuse(Connection connection, std::string line);
  // Closes the listening socket and every connection still in a handshake,
  // joins the thread. Idempotent.
  void stop();

  // Handshakes that failed or timed out so far (for the log and tests).
  std::uint64_t failed_handshakes() const { return failed_.load(); }

 private:
  class Handshake;
  class Refusal;
  TlsListener(std::chrono::milliseconds handshake_timeout, std::int64_t session_timeout_ms, Deliver deliver,
              std::shared_ptr<asio::ssl::context> context);
  void accept_next();
  void on_accept(asio::ip::tcp::socket socket);
  // One fewer connection in a handshake or refusal: accepting resumes.
  void finished();
  std::shared_ptr<asio::ssl::context> context() const;
  // A handshake failed: logged at debug, and at most once a second at info
  // with the count since.
  void note_failure(const std::string& peer, const std::string& why);

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  const std::chrono::milliseconds handshake_timeout_;
  const std::int64_t session_timeout_ms_;
  const Deliver deliver_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mutex_;  // guards context_ and stopped_
  std::shared_ptr<asio::ssl::context> context_;
  bool stopped_ = false;
  std::atomic<std::uint64_t> failed_{0};

  // The listener's thread only.
  std::size_t in_flight_ = 0;
  bool accept_paused_ = false;
  std::chrono::steady_clock::time_point last_failure_log_{};
  std::uint64_t failures_unlogged_ = 0;
};

}  // namespace netsem::server
