// cycle1, contended, spread and pipelined: clients on long-lived connections
// that acquire and release, over and over. They differ only in the number of
// clients, the names they share and the requests each keeps in flight, so
// one driver runs them all. Each client alternates ACQUIRE and RELEASE of
// its name, keeping --pipeline requests in flight (1: back to back, every
// request waiting for the answer to the one before). An op is one cycle.
//
// durable is contended on a created semaphore, with WAIT and POST in place
// of ACQUIRE and RELEASE: what a server must journal (with fsync = always,
// sync) before it answers, where a defined semaphore's grants are not.
//
// contended runs on one semaphore with a limit (--name, --limit): against
// netsemd, the driver looks it up first and creates it when absent, then
// deletes it afterwards, so that it works on a server with no configuration.
// Against Redis, whose recipe keeps no definitions, every wire sends the
// limit with each acquire (--limit for contended, 1 for the other
// scenarios' names, as netsemd's undefined semaphores have), and the run
// loads the scripts and clears its names' keys first (redis_control.h).
#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "control_client.h"
#include "protocol/answers.h"
#include "protocol/requests.h"
#include "redis_control.h"
#include "scenarios.h"
#include "wire.h"

namespace netsem::bench {

namespace {

using namespace std::chrono_literals;

// contended and durable: every client on --name.
bool one_name(Scenario scenario) {
  return scenario == Scenario::kContended || scenario == Scenario::kDurable;
}

class CycleDriver final : public Connection::Listener {
 public:
  CycleDriver(const RunContext& context, EventLoop& loop, Measurement& m, const WireSettings& settings)
      : context_(context), m_(m) {
    const Options& o = context.options;
    for (std::uint64_t i = 0; i < o.clients; ++i) {
      Client& client = clients_.emplace_back();
      client.connection = std::make_unique<Connection>(loop, *this, static_cast<std::size_t>(i));
      client.wire = make_wire(o.target, settings);
      client.name = one_name(o.scenario) ? o.name : client_name(o, i % o.names);
    }
  }

  void start() {
    for (Client& client : clients_) {
      if (client.connection->connect(context_.load_endpoint)) {
        ++live_;
      } else {
        m_.error("connect: " + std::string(std::strerror(errno)));
      }
    }
  }

  // Clears the counters as the measured window opens; errors count over
  // the whole run, warm-up included.
  void reset() {
    m_.ops = m_.queued = 0;
    m_.latency.reset();
  }

  void stop() {
    stopping_ = true;
    for (Client& client : clients_) client.connection->close();
  }

  bool all_failed() const { return live_ == 0; }

  void on_connected(Connection& connection) override {
    Client& client = clients_[connection.index()];
    if (stopping_) return;
    client.wire->open(scratch_);  // sent with the first requests
    top_up(client);
  }

  void on_input(Connection& connection) override {
    Client& client = clients_[connection.index()];
    const auto now = Clock::now();
    std::string_view input = connection.input();
    const std::size_t before = input.size();
    while (const auto reply = client.wire->next(input, scratch_)) {
      switch (*reply) {
        case Reply::kGranted:
          m_.latency.record(static_cast<std::uint64_t>((now - client.acquires_sent.front()).count()));
          client.acquires_sent.pop_front();
          --client.in_flight;
          break;
        case Reply::kQueued:
          ++m_.queued;
          break;
        case Reply::kReleased:
          ++m_.ops;
          --client.in_flight;
          break;
        case Reply::kDone:
        case Reply::kError:
          // The cycle is broken (a RELEASE would follow a refused ACQUIRE):
          // this client stops.
          m_.error(client.wire->last_error());
          connection.consume(before - input.size());
          connection.close();
          scratch_.clear();  // follow-ups the wire wrote for this connection
          --live_;
          return;
      }
    }
    connection.consume(before - input.size());
    if (!scratch_.empty()) {
      connection.send(scratch_);
      scratch_.clear();
    }
    top_up(client);
  }

  void on_closed(Connection&, int error) override {
    --live_;
    if (!stopping_) m_.error(error == 0 ? "server closed the connection" : std::string(std::strerror(error)));
  }

 private:
  struct Client {
    std::unique_ptr<Connection> connection;
    std::unique_ptr<Wire> wire;
    std::string name;
    std::uint64_t in_flight = 0;
    bool next_is_acquire = true;
    std::deque<Clock::time_point> acquires_sent;  // of the acquires not granted yet
  };

  void top_up(Client& client) {
    if (stopping_ || !client.connection->is_connected()) return;
    const auto now = Clock::now();
    while (client.in_flight < context_.options.pipeline) {
      if (client.next_is_acquire) {
        client.wire->acquire(scratch_, client.name);
        client.acquires_sent.push_back(now);
      } else {
        client.wire->release(scratch_, client.name);
      }
      client.next_is_acquire = !client.next_is_acquire;
      ++client.in_flight;
    }
    if (!scratch_.empty()) {
      client.connection->send(scratch_);
      scratch_.clear();
    }
  }

  const RunContext& context_;
  Measurement& m_;
  std::deque<Client> clients_;  // a deque: Clients never move once made
  std::string scratch_;         // requests being formatted
  std::uint64_t live_ = 0;
  bool stopping_ = false;
};

// contended's semaphore: its limit as the server has it, creating it when
// absent. Returns whether the bench created it (and must delete it).
bool prepare_contended(const RunContext& context, Measurement& m) {
  const Options& o = context.options;
  auto control = ControlClient::connect(context.endpoint, 2s);
  if (!control) {
    m.error("cannot connect to the server");
    return false;
  }
  std::string line;
  protocol::encode_get(line, "g", o.name);
  const auto got = control->request(line, 2s);
  protocol::Answer answer;
  protocol::SemaphoreItem item;
  if (!got || !protocol::parse_answer(*got, answer) || answer.type != protocol::AnswerType::kOk ||
      !protocol::parse_get(answer.rest, item)) {
    m.error("GET " + o.name + ": " + got.value_or("no answer"));
    return false;
  }
  if (o.scenario == Scenario::kDurable && item.kind != "absent" && item.kind != "created") {
    m.error("durable WAITs and POSTs a created semaphore: " + o.name + " is " + item.kind + " (pass --name)");
    return false;
  }
  if (item.kind != "absent") {
    m.limit = item.max;
    if (*m.limit != o.limit) {
      m.notes.push_back(o.name + " is " + item.kind + " with limit " + std::to_string(item.max) + ", not " +
                        std::to_string(o.limit));
    }
    return false;
  }
  line.clear();
  protocol::encode_create(line, "c", o.name, o.limit, o.limit);
  const auto created = control->request(line, 2s);
  if (created != "c OK") {
    m.error("CREATE " + o.name + ": " + created.value_or("no answer"));
    return false;
  }
  m.limit = o.limit;
  m.notes.push_back(o.name + " was not on the server: created with limit " + std::to_string(o.limit) +
                    " for the run, deleted after");
  return true;
}

// The names the clients use, each once.
std::vector<std::string> names_used(const Options& o) {
  if (one_name(o.scenario)) return {o.name};
  std::vector<std::string> names;
  for (std::uint64_t i = 0; i < std::min(o.clients, o.names); ++i) names.push_back(client_name(o, i));
  return names;
}

void delete_contended(const RunContext& context, Measurement& m) {
  // The server sees the clients' connections end in its own time: until it
  // has, the semaphore is still held and DELETE is BUSY.
  auto control = ControlClient::connect(context.endpoint, 2s);
  for (int attempt = 0; control && attempt < 50; ++attempt) {
    std::string line;
    protocol::encode_delete(line, "d", context.options.name);
    const auto answer = control->request(line, 2s);
    if (answer == "d OK") return;
    if (!answer || answer->find("BUSY") == std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }
  m.notes.push_back("could not delete " + context.options.name + " after the run");
}

}  // namespace

Measurement run_cycles(const RunContext& context) {
  Measurement m;
  m.op = context.options.scenario == Scenario::kPipelined ? "cycle (acquire + release, pipelined)"
         : context.options.scenario == Scenario::kDurable ? "cycle (wait + post, two round trips)"
                                                          : "cycle (acquire + release, two round trips)";
  const Options& o = context.options;
  const bool contended = one_name(o.scenario);
  bool created = false;
  if (contended && o.target == Target::kNetsem) {
    created = prepare_contended(context, m);
    if (m.errors != 0) return m;
  }
  WireSettings settings;
  settings.queued_off = o.queued_off;
  settings.consume = o.scenario == Scenario::kDurable;
  std::vector<std::string> redis_names;
  if (o.target == Target::kRedis) {
    settings.limit = contended ? o.limit : 1;
    redis_names = names_used(o);
    if (!prepare_redis_run(context.endpoint, redis_names, settings, m)) return m;
    if (contended) m.limit = o.limit;
  }
  {
    EventLoop loop;
    CycleDriver driver(context, loop, m, settings);
    driver.start();
    run_warmup_and_window(
        loop, context, m, [&] { driver.reset(); }, [&] { return driver.all_failed(); });
    driver.stop();
  }
  if (created) delete_contended(context, m);
  if (o.target == Target::kRedis) clear_redis_names(context.endpoint, redis_names, m);
  return m;
}

}  // namespace netsem::bench
