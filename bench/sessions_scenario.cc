// sessions: opens --clients connections, each acquiring one permit of an
// undefined name of its own and then staying idle, and reads the server's
// RSS before and after, to tell what one idle session holding a permit
// costs the server. Connects are kept a few hundred in flight so as not to
// overflow the server's listen backlog. An op is one session opened and
// granted; the latency runs from its connect to its grant.
#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <thread>

#include "proc_stats.h"
#include "scenarios.h"
#include "wire.h"

namespace netsem::bench {

namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kConnectsInFlight = 256;
// Lets the server finish what it is doing before its RSS is read.
constexpr auto kSettleTime = 200ms;

class SessionsDriver final : public Connection::Listener {
 public:
  SessionsDriver(const RunContext& context, EventLoop& loop, Measurement& m) : context_(context), loop_(loop), m_(m) {}

  // Starts connects until kConnectsInFlight are under way.
  void top_up() {
    while (next_ < context_.options.clients && connecting_ < kConnectsInFlight) {
      const std::size_t index = clients_.size();
      Client& client = clients_.emplace_back();
      client.connection = std::make_unique<Connection>(loop_, *this, index);
      client.wire = make_wire(context_.options.target);
      ++next_;
      if (client.connection->connect(context_.endpoint)) {
        ++connecting_;
      } else {
        m_.error("connect: " + std::string(std::strerror(errno)));
        ++finished_;
      }
    }
  }

  bool all_finished() const { return finished_ == context_.options.clients; }

  void stop() {
    for (Client& client : clients_) client.connection->close();
  }

  void on_connected(Connection& connection) override {
    Client& client = clients_[connection.index()];
    client.wire->acquire(scratch_, client_name(context_.options, connection.index() % context_.options.names));
    connection.send(scratch_);
    scratch_.clear();
  }

  void on_input(Connection& connection) override {
    Client& client = clients_[connection.index()];
    std::string_view input = connection.input();
    const std::size_t before = input.size();
    while (const auto reply = client.wire->next(input, scratch_)) {
      if (*reply == Reply::kQueued) {
        ++m_.queued;
      } else if (*reply == Reply::kGranted) {
        ++m_.ops;
        m_.latency.record(static_cast<std::uint64_t>((Clock::now() - connection.connect_started()).count()));
        finish(client);
      } else {
        m_.error(client.wire->last_error());
        finish(client);
      }
    }
    connection.consume(before - input.size());
  }

  void on_closed(Connection& connection, int error) override {
    m_.error(error == 0 ? "server closed a session" : std::string(std::strerror(error)));
    finish(clients_[connection.index()]);
  }

 private:
  struct Client {
    std::unique_ptr<Connection> connection;
    std::unique_ptr<Wire> wire;
    bool finished = false;  // granted or failed
  };

  void finish(Client& client) {
    if (client.finished) return;
    client.finished = true;
    --connecting_;
    ++finished_;
    loop_.defer([this] { top_up(); });
  }

  const RunContext& context_;
  EventLoop& loop_;
  Measurement& m_;
  std::deque<Client> clients_;
  std::string scratch_;
  std::uint64_t next_ = 0;        // clients started
  std::uint64_t connecting_ = 0;  // started, not yet granted or failed
  std::uint64_t finished_ = 0;    // granted or failed
};

}  // namespace

Measurement run_sessions(const RunContext& context) {
  Measurement m;
  m.op = "session opened and granted one permit";
  m.per = "session";
  const std::uint64_t fd_limit = raise_fd_limit();
  if (context.options.clients + 64 > fd_limit) {
    m.notes.push_back("descriptor limit " + std::to_string(fd_limit) + " is below the sessions asked for");
  }
  if (context.server_pid > 0) m.rss_before = process_rss_bytes(context.server_pid);
  EventLoop loop;
  SessionsDriver driver(context, loop, m);
  MeasureWindow window(context.server_pid, context.more_server_pids);
  window.start();
  driver.top_up();
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(context.options.seconds));
  poll_until(loop, deadline, [&] { return driver.all_finished(); });
  window.finish(m);
  if (!driver.all_finished()) m.notes.push_back("--seconds ran out before every session was open");
  // The sessions stay open (and idle) while the server settles.
  poll_until(loop, Clock::now() + kSettleTime, [] { return false; });
  if (context.server_pid > 0) m.rss_after = process_rss_bytes(context.server_pid);
  m.per_count = m.ops;
  driver.stop();
  return m;
}

}  // namespace netsem::bench
