// TlsClient: the client side of TLS (ClientOptions::tls): one OpenSSL
// context per Client, made from the options' CA file (or the system's trust
// store), client certificate and key, and one SSL object per connection,
// set to verify the server's certificate and its name, reading and writing
// the connection's non-blocking socket. The Connection's I/O thread drives
// the handshake and the session's reads and writes through it
// (connection.h); nothing here blocks or polls.
//
// Writes go through send(MSG_NOSIGNAL), never write(): a server that closed
// the connection must not kill the application with SIGPIPE.
//
// Thread safety: a TlsClient is immutable once made and may be shared; an
// SSL object belongs to the one thread that drives its connection.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "netsem/client_options.h"
#include "netsem/status.h"

namespace netsem::client {

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

class TlsClient {
 public:
  // Reads options.tls_ca (or the system's trust store when empty) and, when
  // set, options.tls_cert and options.tls_key. kInvalidArgument naming the
  // option, the file and OpenSSL's reason when one cannot be used.
  static Result<std::shared_ptr<TlsClient>> make(const ClientOptions& options);
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // An SSL object for a connected socket `fd` to `host` (the server
  // address's host part): it sends `host` as SNI unless it is an IP
  // address, and verifies that the certificate names the server name
  // option, or else `host` (an IP address against the certificate's IP
  // addresses). nullptr when OpenSSL cannot make one (out of memory).
  SslPtr open(int fd, const std::string& host) const;

 private:
  explicit TlsClient(SSL_CTX* context, std::string server_name)
      : context_(context), server_name_(std::move(server_name)) {}
  SSL_CTX* context_;
  const std::string server_name_;
};

// What a TLS failure of the last SSL call on this thread was, in words:
// the certificate check's result when it failed, else OpenSSL's reason
// ("tlsv13 alert certificate required", "wrong version number", ...), else
// `fallback`. Clears the thread's error queue.
std::string tls_failure(SSL* ssl, const std::string& fallback);

}  // namespace netsem::client
