// Connection: one non-blocking TCP client connection of the load generator,
// on the EventLoop. It connects without blocking, buffers what it reads for
// its Listener to take whole replies from, and writes what the listener
// queued with send() once at the end of the batch (or as soon as it is
// connected), falling back to a writable wait when the socket is full.
//
// TLS (use_tls(), netsem-bench --tls-port): after the connect, a TLS
// handshake driven by the same readiness events; reads and writes then go
// through OpenSSL (a read drains what OpenSSL has, since the loop is
// level-triggered on the socket, not on OpenSSL's buffer).
//
// A Connection object outlives its socket: a scenario keeps one per client
// and reconnects it (from a deferred task, see event_loop.h) after a close.
//
// Thread safety: none; the loop's thread only.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <openssl/ssl.h>

#include "event_loop.h"

namespace netsem::bench {

using Clock = std::chrono::steady_clock;

// Where the generator connects: one loopback address and port.
struct Endpoint {
  sockaddr_storage address{};
  socklen_t length = 0;
};

class Connection final : public EventLoop::Handler {
 public:
  class Listener {
   public:
    virtual void on_connected(Connection& connection) = 0;
    // New bytes are in input(); take whole replies with consume().
    virtual void on_input(Connection& connection) = 0;
    // The socket is closed: `error` is 0 for an orderly end of input, else
    // the errno of the failed connect, read or write.
    virtual void on_closed(Connection& connection, int error) = 0;

   protected:
    ~Listener() = default;
  };

  // Every Connection connects with TLS from now on, verifying the server
  // against `ca_file` (PEM) and the name 127.0.0.1; false with a message
  // when the file cannot be used.
  static bool use_tls(const std::string& ca_file, std::string& error);

  // `index` is the listener's number for this connection (its client).
  Connection(EventLoop& loop, Listener& listener, std::size_t index);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts a non-blocking connect; on_connected or on_closed follows from
  // the loop. Returns false (with errno set) when no socket could be made
  // or the connect failed at once; the connection then stays closed.
  // REQUIRES: closed.
  bool connect(const Endpoint& endpoint);
  // Queues bytes to write at the end of the batch (or once connected).
  void send(std::string_view bytes);
  // Closes the socket at once, dropping unwritten bytes and unread input.
  // No on_closed follows.
  void close();

  bool is_open() const { return fd_ >= 0; }
  bool is_connected() const { return fd_ >= 0 && connected_; }
  std::size_t index() const { return index_; }
  // When the last connect() started.
  Clock::time_point connect_started() const { return connect_started_; }

  // Bytes read and not yet consumed.
  std::string_view input() const { return std::string_view(in_.data() + in_begin_, in_end_ - in_begin_); }
  void consume(std::size_t bytes) { in_begin_ += bytes; }

  void on_ready(std::uint32_t events) override;
  void on_end_of_batch() override;

 private:
  void finish_connect();
  // Drives the TLS handshake; on_connected once it is done.
  void continue_handshake();
  void connected();
  void read_once();
  void flush();
  void fail(int error);
  void watch_writable(bool on);

  EventLoop& loop_;
  Listener& listener_;
  const std::size_t index_;
  int fd_ = -1;
  bool connected_ = false;
  bool flush_requested_ = false;  // in the loop's end-of-batch list
  bool writable_wait_ = false;    // EPOLLOUT is in the interest set
  Clock::time_point connect_started_{};
  std::string in_;  // read bytes live in [in_begin_, in_end_)
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  std::string out_;
  std::size_t out_sent_ = 0;
  SSL* ssl_ = nullptr;  // TLS only; reads and writes fd_
  bool handshaking_ = false;
};

}  // namespace netsem::bench
