// names: CREATEs --names semaphores over --clients connections with
// --pipeline requests in flight each, reads the server's RSS before and
// after, then DELETEs every one it created, to tell what a created semaphore
// costs the server. The create phase is bounded by --seconds; the clean-up
// is given up to kCleanupTime more. An op is one CREATE.
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "proc_stats.h"
#include "scenarios.h"
#include "wire.h"

namespace netsem::bench {

namespace {

using namespace std::chrono_literals;

constexpr auto kCleanupTime = 60s;
// Answers still in flight when --seconds ends are awaited this long.
constexpr auto kDrainTime = 5s;

class NamesDriver final : public Connection::Listener {
 public:
  NamesDriver(const RunContext& context, EventLoop& loop, Measurement& m)
      : context_(context), m_(m), created_(context.options.names, false) {
    for (std::uint64_t i = 0; i < context.options.clients; ++i) {
      Client& client = clients_.emplace_back();
      client.connection = std::make_unique<Connection>(loop, *this, static_cast<std::size_t>(i));
      client.wire = make_wire(context.options.target);
    }
  }

  void start() {
    for (Client& client : clients_) {
      if (!client.connection->connect(context_.endpoint)) {
        m_.error("connect: " + std::string(std::strerror(errno)));
        ++closed_;
      }
    }
  }

  // Stops issuing requests of the current phase.
  void stop_issuing() { issuing_ = false; }

  // Switches to deleting what was created.
  void start_deleting() {
    deleting_ = true;
    issuing_ = true;
    next_ = 0;
    for (Client& client : clients_) top_up(client);
  }

  bool phase_done() const {
    return closed_ == clients_.size() || (in_flight_ == 0 && (!issuing_ || next_ == created_.size()));
  }
  std::uint64_t deleted() const { return deleted_; }
  std::uint64_t delete_errors() const { return delete_errors_; }

  void stop() {
    for (Client& client : clients_) client.connection->close();
  }

  void on_connected(Connection& connection) override { top_up(clients_[connection.index()]); }

  void on_input(Connection& connection) override {
    Client& client = clients_[connection.index()];
    std::string_view input = connection.input();
    const std::size_t before = input.size();
    while (const auto reply = client.wire->next(input, scratch_)) {
      const std::uint64_t index = client.pending.front();
      client.pending.pop_front();
      --in_flight_;
      if (*reply != Reply::kDone) {
        if (deleting_) {
          ++delete_errors_;
        } else {
          m_.error(client.wire->last_error());
        }
      } else if (deleting_) {
        ++deleted_;
      } else {
        created_[index] = true;
        ++m_.ops;
      }
    }
    connection.consume(before - input.size());
    top_up(client);
  }

  void on_closed(Connection& connection, int error) override {
    Client& client = clients_[connection.index()];
    m_.error(error == 0 ? "server closed the connection" : std::string(std::strerror(error)));
    in_flight_ -= client.pending.size();
    client.pending.clear();
    ++closed_;
  }

 private:
  struct Client {
    std::unique_ptr<Connection> connection;
    std::unique_ptr<Wire> wire;
    std::deque<std::uint64_t> pending;  // name indexes of the requests in flight
  };

  void top_up(Client& client) {
    if (!client.connection->is_connected()) return;
    while (issuing_ && client.pending.size() < context_.options.pipeline && next_ < created_.size()) {
      const std::uint64_t index = next_++;
      if (deleting_) {
        if (!created_[index]) continue;
        client.wire->remove(scratch_, client_name(context_.options, index));
      } else {
        client.wire->create(scratch_, client_name(context_.options, index), 1);
      }
      client.pending.push_back(index);
      ++in_flight_;
    }
    if (!scratch_.empty()) {
      client.connection->send(scratch_);
      scratch_.clear();
    }
  }

  const RunContext& context_;
  Measurement& m_;
  std::deque<Client> clients_;
  std::vector<bool> created_;  // by name index
  std::string scratch_;
  std::uint64_t next_ = 0;  // the next name index to send
  std::uint64_t in_flight_ = 0;
  std::uint64_t deleted_ = 0;
  std::uint64_t delete_errors_ = 0;
  std::size_t closed_ = 0;  // connections lost (or never made)
  bool issuing_ = true;
  bool deleting_ = false;
};

}  // namespace

Measurement run_names(const RunContext& context) {
  Measurement m;
  m.op = "CREATE of a semaphore";
  m.per = "semaphore";
  if (context.server_pid > 0) m.rss_before = process_rss_bytes(context.server_pid);
  EventLoop loop;
  NamesDriver driver(context, loop, m);
  MeasureWindow window(context.server_pid, context.more_server_pids);
  window.start();
  driver.start();
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(context.options.seconds));
  poll_until(loop, deadline, [&] { return driver.phase_done(); });
  driver.stop_issuing();
  poll_until(loop, Clock::now() + kDrainTime, [&] { return driver.phase_done(); });
  window.finish(m);
  if (m.ops < context.options.names)
    m.notes.push_back("created " + std::to_string(m.ops) + " of " + std::to_string(context.options.names));
  if (context.server_pid > 0) m.rss_after = process_rss_bytes(context.server_pid);
  m.per_count = m.ops;

  const auto cleanup_start = Clock::now();
  driver.start_deleting();
  poll_until(loop, Clock::now() + kCleanupTime, [&] { return driver.phase_done(); });
  const double cleanup_s = std::chrono::duration<double>(Clock::now() - cleanup_start).count();
  m.notes.push_back("deleted " + std::to_string(driver.deleted()) + " in " + std::to_string(cleanup_s).substr(0, 5) +
                    " s" + (driver.delete_errors() ? ", " + std::to_string(driver.delete_errors()) + " refused" : ""));
  if (driver.deleted() < m.ops) m.error("clean-up incomplete: some created semaphores are left on the server");
  driver.stop();
  return m;
}

}  // namespace netsem::bench
