// One peer line alone on a connection of its own (peer_link.h:
// send_peer_line, ask_peer_line): the leader's removal notice, sent, and its
// secret check's challenge, answered by one line. Over Asio, from this
// server's own client host, as a peer link connects (peer_connect.h).
#include "cluster/peer_link.h"

#include <charconv>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "cluster/peer_connect.h"

namespace netsem::cluster {

namespace {

// Opens `socket` for `address` (a numeric host:port) and binds it to this
// server's own client host `local_host`, where a peer link's hello must
// come from (the receiver checks it): the endpoint to connect to, or why
// not (send_peer_line and ask_peer_line).
Result<asio::ip::tcp::endpoint> open_from_own_host(asio::ip::tcp::socket& socket, const std::string& local_host,
                                                   const std::string& address) {
  const auto where = split_host_port(address);
  asio::error_code e;
  const asio::ip::address host = where ? asio::ip::make_address(where->first, e) : asio::ip::address();
  unsigned long port = 0;
  if (!where || e ||
      std::from_chars(where->second.data(), where->second.data() + where->second.size(), port).ec != std::errc() ||
      port < 1 || port > 65535) {
    return Status(StatusCode::kInvalidArgument, "not a numeric host:port");
  }
  const asio::ip::tcp::endpoint endpoint(host, static_cast<unsigned short>(port));
  socket.open(endpoint.protocol(), e);
  if (e) return Status(StatusCode::kIoError, e.message());
  const asio::ip::address local = asio::ip::make_address(local_host, e);
  if (!e && local.is_v4() == endpoint.address().is_v4()) {
    socket.bind(asio::ip::tcp::endpoint(local, 0), e);
    if (e) return Status(StatusCode::kIoError, "cannot bind to " + local_host + ": " + e.message());
  }
  return endpoint;
}

// How long ask_peer_line waits for the answer once connected.
constexpr std::chrono::milliseconds kAnswerTimeout{2000};

// One line sent alone on a connection of its own and, when `wants_answer`,
// one line read back: send_peer_line's and ask_peer_line's exchange.
// Failures to connect are kUnavailable, later ones kIoError.
struct LineExchange : std::enable_shared_from_this<LineExchange> {
  LineExchange(asio::io_context& io, std::string text, bool answer_wanted,
               std::function<void(Result<std::string>)> callback)
      : socket(io), timer(io), line(std::move(text)), wants_answer(answer_wanted), done(std::move(callback)) {}

  void start(const std::string& local_host, const std::string& address) {
    auto self = shared_from_this();
    const Result<asio::ip::tcp::endpoint> opened = open_from_own_host(socket, local_host, address);
    if (!opened) {
      return asio::post(socket.get_executor(), [self, why = opened.status().message()] {
        self->finish(Status(StatusCode::kUnavailable, why));
      });
    }
    timer.expires_after(kConnectTimeout);
    timer.async_wait([self](const asio::error_code& c) {
      if (c || self->connected) return;  // the answer's wait replaced it
      self->finish(Status(StatusCode::kUnavailable, "no answer to the connect within 1 s"));
    });
    socket.async_connect(*opened, [self](const asio::error_code& c) {
      if (!self->done) return;
      if (c) return self->finish(Status(StatusCode::kUnavailable, "cannot connect: " + c.message()));
      self->connected = true;
      self->timer.cancel();
      if (self->wants_answer) {
        self->timer.expires_after(kAnswerTimeout);
        self->timer.async_wait([self](const asio::error_code& t) {
          if (!t) self->finish(Status(StatusCode::kIoError, "no answer within 2 s"));
        });
      }
      asio::async_write(self->socket, asio::buffer(self->line), [self](const asio::error_code& w, std::size_t) {
        if (!self->done) return;
        if (w) return self->finish(Status(StatusCode::kIoError, "cannot write: " + w.message()));
        if (!self->wants_answer) return self->finish(std::string());
        self->read();
      });
    });
  }

  void read() {
    asio::async_read_until(
        socket, asio::dynamic_buffer(answer, kMaxPeerHelloBytes), '\n',
        [self = shared_from_this()](const asio::error_code& r, std::size_t n) {
          if (!self->done) return;
          if (r) {
            const bool closed = r == asio::error::eof || r == asio::error::connection_reset;
            return self->finish(Status(StatusCode::kIoError, closed ? "it closed the connection without a word"
                                                                    : "no answer: " + r.message()));
          }
          std::string got = self->answer.substr(0, n - 1);
          if (!got.empty() && got.back() == '\r') got.pop_back();
          self->finish(std::move(got));
        });
  }

  void finish(Result<std::string> outcome) {
    if (!done) return;
    asio::error_code ignored;
    timer.cancel();
    socket.close(ignored);
    auto callback = std::move(done);
    done = nullptr;
    callback(std::move(outcome));
  }

  asio::ip::tcp::socket socket;
  asio::steady_timer timer;
  std::string line;
  std::string answer;
  const bool wants_answer;
  std::function<void(Result<std::string>)> done;
  bool connected = false;
};

}  // namespace

void send_peer_line(asio::io_context& io, const std::string& local_host, const std::string& address, std::string line,
                    std::function<void(Status)> done) {
  std::make_shared<LineExchange>(
      io, std::move(line), false,
      [address, done = std::move(done)](Result<std::string> sent) {
        done(sent ? Status::ok()
                  : Status(StatusCode::kIoError, "to " + address + ": " + std::string(sent.status().message())));
      })
      ->start(local_host, address);
}

void ask_peer_line(asio::io_context& io, const std::string& local_host, const std::string& address, std::string line,
                   std::function<void(Result<std::string>)> done) {
  std::make_shared<LineExchange>(io, std::move(line), true, std::move(done))->start(local_host, address);
}

}  // namespace netsem::cluster
