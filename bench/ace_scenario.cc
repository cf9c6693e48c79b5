// ace: clients speaking ACE's network-semaphore protocol as ACE's own client
// does, one connection per acquire: connect, `acquire:NAME|`, wait for
// `locked|` (ignoring `wait|` heartbeats), `release|`, wait for `ok|`, then
// for the server's close. An op is one such connection; the latency runs
// from the connect to `locked|`, since an ACE client pays the connect on
// every acquire.
//
// The client waits for the server to close first, so the TIME_WAIT state
// lands on the server's side and the generator does not run out of
// ephemeral ports.
#include <cstring>
#include <deque>
#include <memory>

#include "scenarios.h"

namespace netsem::bench {

namespace {

class AceDriver final : public Connection::Listener {
 public:
  AceDriver(const RunContext& context, EventLoop& loop, Measurement& m) : context_(context), loop_(loop), m_(m) {
    const Options& o = context.options;
    for (std::uint64_t i = 0; i < o.clients; ++i) {
      Client& client = clients_.emplace_back();
      client.connection = std::make_unique<Connection>(loop, *this, static_cast<std::size_t>(i));
      client.acquire = "acquire:" + client_name(o, i % o.names) + "|";
    }
  }

  void start() {
    for (std::size_t i = 0; i < clients_.size(); ++i) connect(i);
  }

  void reset() {
    m_.ops = m_.queued = 0;
    m_.latency.reset();
  }

  void stop() {
    stopping_ = true;
    for (Client& client : clients_) client.connection->close();
  }

  bool all_failed() const { return failed_ == clients_.size(); }

  void on_connected(Connection& connection) override {
    Client& client = clients_[connection.index()];
    client.state = State::kAwaitLocked;
    connection.send(client.acquire);
  }

  void on_input(Connection& connection) override {
    Client& client = clients_[connection.index()];
    std::string_view input = connection.input();
    std::size_t used = 0;
    for (;;) {
      const auto bar = input.find('|', used);
      if (bar == std::string_view::npos) break;
      const std::string_view token = input.substr(used, bar + 1 - used);
      used = bar + 1;
      if (token == "wait|" && client.state == State::kAwaitLocked) {
        ++m_.queued;
      } else if (token == "locked|" && client.state == State::kAwaitLocked) {
        m_.latency.record(static_cast<std::uint64_t>((Clock::now() - connection.connect_started()).count()));
        client.state = State::kAwaitOk;
        connection.send("release|");
      } else if (token == "ok|" && client.state == State::kAwaitOk) {
        client.state = State::kAwaitClose;
      } else {
        m_.error("unexpected ACE token " + std::string(token));
        connection.close();
        reconnect_later(connection.index());
        return;
      }
    }
    connection.consume(used);
  }

  void on_closed(Connection& connection, int error) override {
    Client& client = clients_[connection.index()];
    if (error == 0 && client.state == State::kAwaitClose) {
      ++m_.ops;
    } else if (!stopping_) {
      m_.error(error == 0 ? "server closed the ACE connection early" : std::string(std::strerror(error)));
    }
    reconnect_later(connection.index());
  }

 private:
  enum class State : std::uint8_t { kConnecting, kAwaitLocked, kAwaitOk, kAwaitClose };

  struct Client {
    std::unique_ptr<Connection> connection;
    std::string acquire;  // "acquire:<name>|"
    State state = State::kConnecting;
  };

  void connect(std::size_t index) {
    if (stopping_) return;
    Client& client = clients_[index];
    client.state = State::kConnecting;
    if (!client.connection->connect(context_.endpoint)) {
      ++failed_;
      // Out of descriptors or ports: this client stops rather than spin.
      m_.error("connect: " + std::string(std::strerror(errno)));
    }
  }

  // The Connection may still be named by later events of this batch.
  void reconnect_later(std::size_t index) {
    loop_.defer([this, index] { connect(index); });
  }

  const RunContext& context_;
  EventLoop& loop_;
  Measurement& m_;
  std::deque<Client> clients_;
  std::size_t failed_ = 0;  // clients whose connect failed at once: they stop
  bool stopping_ = false;
};

}  // namespace

Measurement run_ace(const RunContext& context) {
  Measurement m;
  m.op = "ACE connection (connect, acquire, release, close)";
  EventLoop loop;
  AceDriver driver(context, loop, m);
  driver.start();
  run_warmup_and_window(
      loop, context, m, [&] { driver.reset(); }, [&] { return driver.all_failed(); });
  driver.stop();
  return m;
}

}  // namespace netsem::bench
