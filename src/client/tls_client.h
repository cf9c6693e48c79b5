// TlsClient: the client side of TLS (ClientOptions::tls): one OpenSSL
// context, made from the options' CA file (or the system's trust store),
// client certificate and key, and one SSL object per connection,
// set to verify the server's certificate and its name, reading and writing
// the connection's non-blocking socket. The Connection's I/O thread drives
// the handshake and the session's reads and writes through it
// (connection.h); nothing here blocks or polls. A Client holds its
// contexts through a RenewingTlsClient, which makes a new one when the files
// are renewed on disk.
//
// Writes go through send(MSG_NOSIGNAL), never write(): a server that closed
// the connection must not kill the application with SIGPIPE.
//
// Thread safety: a TlsClient is immutable once made and may be shared (an
// SSL object keeps its context alive after the TlsClient is replaced); an
// SSL object belongs to the one thread that drives its connection; a
// RenewingTlsClient may be used from any thread.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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

// RenewingTlsClient: the TlsClient of one Client, made again from its files
// when they are renewed on disk while the Client runs (short-lived
// certificates, cert-manager, certbot): without it, a long-lived client would
// present its old certificate until it expired, and then every reconnect
// would be refused. It remembers what each file named by the options
// (tls_ca, tls_cert, tls_key; not the system's trust store) was when it was
// read: device, inode, size and modification time. current(), called at
// each connection attempt, compares them (a stat() per file) and re-reads
// the files only when one of them changed, never on a connect whose files
// are unchanged. New files that cannot be used (a certificate renewed
// before its key, a truncated file, a missing one) leave the previous
// context in use, with one warning for those files; they are tried again
// once one of them changes again.
//
// Thread safety: every member from any thread (a mutex guards the state).
class RenewingTlsClient {
 public:
  // Reads the files as TlsClient::make does (same errors).
  static Result<std::shared_ptr<RenewingTlsClient>> make(const ClientOptions& options);
  RenewingTlsClient(const RenewingTlsClient&) = delete;
  RenewingTlsClient& operator=(const RenewingTlsClient&) = delete;

  // The context for the next connection: a new one when the files changed
  // on disk since the last were read and the new ones can be used, else the
  // one in use. Never null.
  std::shared_ptr<const TlsClient> current();
  // How many times renewed files were read into a new context.
  std::uint64_t renewals() const;

 private:
  // What a file was when looked at; `exists` false when stat() failed.
  struct FileId {
    bool exists = false;
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    std::int64_t size = 0;
    std::int64_t mtime_ns = 0;
    friend bool operator==(const FileId&, const FileId&) = default;
  };
  using FileIds = std::vector<FileId>;

  RenewingTlsClient(ClientOptions options, FileIds ids, std::shared_ptr<const TlsClient> first)
      : options_(std::move(options)), read_ids_(std::move(ids)), current_(std::move(first)) {}
  // The files' identities now, in the order tls_ca, tls_cert, tls_key
  // (those set).
  FileIds file_ids() const;

  const ClientOptions options_;  // the TLS options only
  mutable std::mutex mutex_;
  FileIds read_ids_;                          // guarded by mutex_: the files current_ was made from
  std::shared_ptr<const TlsClient> current_;  // guarded by mutex_
  std::optional<FileIds> refused_ids_;        // guarded by mutex_: files that could not be used (warned)
  std::uint64_t renewals_ = 0;                // guarded by mutex_
};

// What a TLS failure of the last SSL call on this thread was, in words:
// the certificate check's result when it failed, else OpenSSL's reason
// ("tlsv13 alert certificate required", "wrong version number", ...), else
// `fallback`. Clears the thread's error queue.
std::string tls_failure(SSL* ssl, const std::string& fallback);

}  // namespace netsem::client
