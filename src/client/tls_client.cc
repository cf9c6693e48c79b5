// The client's TLS context and connections (tls_client.h): OpenSSL
// directly (the client has no Asio loop), TLS 1.2 at least, the system's
// default ciphers, peer verification always on, no renegotiation; and the
// context made again when its files are renewed on disk.
#include "client/tls_client.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>

#include "client/client_log.h"

namespace netsem::client {

namespace {

// OpenSSL's reason for the last error of this thread, or `fallback`.
std::string openssl_reason(std::string_view fallback) {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return std::string(fallback);
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? std::string(reason) : std::string(fallback);
}

// The socket BIO's write with MSG_NOSIGNAL (no SIGPIPE in the application).
int write_without_signal(BIO* bio, const char* data, int size) {
  int fd = -1;
  BIO_get_fd(bio, &fd);
  errno = 0;
  const ssize_t n = ::send(fd, data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
  BIO_clear_retry_flags(bio);
  if (n <= 0 && BIO_sock_should_retry(static_cast<int>(n)) != 0) BIO_set_retry_write(bio);
  return static_cast<int>(n);
}

// OpenSSL's socket BIO with write_without_signal; made once, kept for the
// life of the process (OpenSSL's own methods are static too).
const BIO_METHOD* socket_method() {
  static const BIO_METHOD* method = [] {
    const BIO_METHOD* base = BIO_s_socket();
    BIO_METHOD* made = BIO_meth_new(BIO_TYPE_SOCKET, "netsem socket");
    if (made == nullptr) return base;
    BIO_meth_set_write(made, write_without_signal);
    BIO_meth_set_read(made, BIO_meth_get_read(base));
    BIO_meth_set_puts(made, BIO_meth_get_puts(base));
    BIO_meth_set_ctrl(made, BIO_meth_get_ctrl(base));
    BIO_meth_set_create(made, BIO_meth_get_create(base));
    BIO_meth_set_destroy(made, BIO_meth_get_destroy(base));
    return static_cast<const BIO_METHOD*>(made);
  }();
  return method;
}

bool is_ip_address(const std::string& host) {
  unsigned char buffer[16];
  return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 || ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

}  // namespace

Result<std::shared_ptr<TlsClient>> TlsClient::make(const ClientOptions& options) {
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  if (context == nullptr) return Status(StatusCode::kInternal, "TLS: " + openssl_reason("cannot make a context"));
  std::shared_ptr<TlsClient> client(new TlsClient(context, options.tls_server_name));
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  const auto fail = [](std::string_view option, const std::filesystem::path& file) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{} {}: {}", option, file.string(), openssl_reason("cannot be used")));
  };
  ERR_clear_error();
  if (options.tls_ca.empty()) {
    if (SSL_CTX_set_default_verify_paths(context) != 1) {
      return Status(StatusCode::kInvalidArgument, "TLS: the system's trust store: " + openssl_reason("unreadable"));
    }
  } else if (SSL_CTX_load_verify_locations(context, options.tls_ca.c_str(), nullptr) != 1) {
    return fail("tls_ca", options.tls_ca);
  }
  if (!options.tls_cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(context, options.tls_cert.c_str()) != 1) {
      return fail("tls_cert", options.tls_cert);
    }
    if (SSL_CTX_use_PrivateKey_file(context, options.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return fail("tls_key", options.tls_key);
    }
    if (SSL_CTX_check_private_key(context) != 1) {
      return Status(StatusCode::kInvalidArgument, fmt::format("tls_key {} is not the key of tls_cert {}",
                                                              options.tls_key.string(), options.tls_cert.string()));
    }
  }
  ERR_clear_error();
  return client;
}

TlsClient::~TlsClient() {
  SSL_CTX_free(context_);
}

SslPtr TlsClient::open(int fd, const std::string& host) const {
  SslPtr ssl(SSL_new(context_));
  if (!ssl) return nullptr;
  BIO* bio = BIO_new(socket_method());
  if (bio == nullptr) return nullptr;
  BIO_set_fd(bio, fd, BIO_NOCLOSE);
  SSL_set_bio(ssl.get(), bio, bio);  // the SSL owns the BIO
  const std::string& name = server_name_.empty() ? host : server_name_;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
  if (is_ip_address(name)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1) return nullptr;
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl.get(), name.c_str()) != 1) return nullptr;
    SSL_set_tlsext_host_name(ssl.get(), name.c_str());
  }
  SSL_set_connect_state(ssl.get());
  return ssl;
}

// --- RenewingTlsClient ---

Result<std::shared_ptr<RenewingTlsClient>> RenewingTlsClient::make(const ClientOptions& options) {
  ClientOptions tls_only;
  tls_only.tls = options.tls;
  tls_only.tls_ca = options.tls_ca;
  tls_only.tls_cert = options.tls_cert;
  tls_only.tls_key = options.tls_key;
  tls_only.tls_server_name = options.tls_server_name;
  // Looked at before they are read: a change in between is read again at
  // the next connect, never missed.
  std::shared_ptr<RenewingTlsClient> renewing(new RenewingTlsClient(std::move(tls_only), {}, nullptr));
  renewing->read_ids_ = renewing->file_ids();
  auto first = TlsClient::make(renewing->options_);
  if (!first) return first.status();
  renewing->current_ = std::move(*first);
  return renewing;
}

RenewingTlsClient::FileIds RenewingTlsClient::file_ids() const {
  FileIds ids;
  for (const std::filesystem::path* file : {&options_.tls_ca, &options_.tls_cert, &options_.tls_key}) {
    if (file->empty()) continue;
    FileId id;
    struct stat info {};
    if (::stat(file->c_str(), &info) == 0) {
      id.exists = true;
      id.device = static_cast<std::uint64_t>(info.st_dev);
      id.inode = static_cast<std::uint64_t>(info.st_ino);
      id.size = static_cast<std::int64_t>(info.st_size);
      id.mtime_ns = static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
    }
    ids.push_back(id);
  }
  return ids;
}

std::shared_ptr<const TlsClient> RenewingTlsClient::current() {
  const FileIds now = file_ids();
  std::lock_guard lock(mutex_);
  if (now == read_ids_ || now == refused_ids_) return current_;
  auto made = TlsClient::make(options_);
  if (!made) {
    refused_ids_ = now;
    log_warning(
        "TLS: the certificate files changed on disk but cannot be used ({}); connections keep the ones read before "
        "until the files change again",
        made.status().message());
    return current_;
  }
  current_ = std::move(*made);
  read_ids_ = now;
  refused_ids_.reset();
  ++renewals_;
  log_info("TLS: the certificate files changed on disk: read again for the next connections");
  return current_;
}

std::uint64_t RenewingTlsClient::renewals() const {
  std::lock_guard lock(mutex_);
  return renewals_;
}

std::string tls_failure(SSL* ssl, const std::string& fallback) {
  if (ssl != nullptr) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      ERR_clear_error();
      return fmt::format("the server's certificate: {}", X509_verify_cert_error_string(verify));
    }
  }
  return openssl_reason(fallback);
}

}  // namespace netsem::client
