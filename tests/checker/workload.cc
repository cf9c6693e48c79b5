// netsem-workload: the clients of a failure test (issue 16). Runs libnetsem
// clients against the servers given, each on its own connection, for a fixed
// time, and writes everything they saw as the history the checker reads
// (history.h; docs/replication.md, "The checker"): holders of one name
// acquire it with a server-side timeout, hold it for a while and release it,
// noting when their library declares a permit lost (its lease ran out), and
// counters post to and try-wait on a created semaphore. At the end one more
// client reads the created semaphore ("final"). Clients never fall back to
// local semaphores (fallback = fail): a local grant is no grant of the
// server's. SIGTERM or SIGINT ends the run early (the history is still
// written), so a test can run the clients exactly as long as it needs. Not
// installed.
//
// Outcomes: OK is "ok"; the server's refusals (TIMEOUT of an acquire or a
// try-wait, NOT_FOUND, TOO_MANY, OVERFLOW, BUSY, LIMIT, DENIED, invalid) are
// "fail"; anything else (the connection lost, the server shutting down, the
// client's own request timeout) is "unknown": it may have happened.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "netsem/client.h"

namespace {

using netsem::StatusCode;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Set by SIGTERM or SIGINT: the clients stop and the history is written.
volatile std::sig_atomic_t stopping = 0;
void stop(int) {
  stopping = 1;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

std::string outcome_of(const netsem::Status& status) {
  if (status.is_ok()) return "ok";
  switch (status.code()) {
    case StatusCode::kTimeout:
    case StatusCode::kNotFound:
    case StatusCode::kAlreadyExists:
    case StatusCode::kTooMany:
    case StatusCode::kOverflow:
    case StatusCode::kBusy:
    case StatusCode::kLimit:
    case StatusCode::kDenied:
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotHeld:
      return "fail";
    default:
      return "unknown";
  }
}

// The JSON of a string with nothing to escape (names and client labels are
// the workload's own: letters, digits, '-' and '/').
std::string json_string(const std::string& text) {
  return "\"" + text + "\"";
}

class History {
 public:
  void add(std::string line) {
    std::lock_guard lock(mu_);
    lines_.push_back(std::move(line));
  }
  bool write(const std::string& path) {
    std::lock_guard lock(mu_);
    std::ofstream out(path, std::ios::trunc);
    for (const std::string& line : lines_) out << line << '\n';
    return static_cast<bool>(out.flush());
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return lines_.size();
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

struct Settings {
  std::vector<std::string> servers;
  int holders = 6;
  int counters = 2;
  double seconds = 5;
  std::string name = "db";
  std::int64_t limit = 2;
  std::string counter = "q";
  std::int64_t counter_max = 1000;
  int hold_ms = 20;
  int long_holders = 0;  // the first of the holders hold for long_hold_ms instead
  int long_hold_ms = 5000;
  int acquire_timeout_ms = 1000;
  bool rotate = false;
  std::string history;
};

// The servers client `index` is given: in the order given, or with --rotate
// starting at server index % n (so that clients sit on every server).
netsem::ClientOptions client_options(const Settings& s, const std::string& label, std::size_t index) {
  netsem::ClientOptions o;
  o.servers = s.servers;
  if (s.rotate && !o.servers.empty()) {
    std::rotate(o.servers.begin(), o.servers.begin() + static_cast<std::ptrdiff_t>(index % o.servers.size()),
                o.servers.end());
  }
  o.label = label;
  o.fallback = netsem::FallbackPolicy{.mode = netsem::FallbackPolicy::Mode::kFail};
  o.connect_timeout = 500ms;
  o.reconnect_min = 20ms;
  o.reconnect_max = 300ms;
  return o;
}

// A client of its own for `label`; nullptr (said on stderr) when it cannot be made.
std::unique_ptr<netsem::Client> connect(const Settings& s, const std::string& label, std::size_t index = 0) {
  auto client = netsem::Client::create(client_options(s, label, index));
  if (!client) {
    std::fprintf(stderr, "netsem-workload: %s: %s\n", label.c_str(), client.status().to_string().c_str());
    return nullptr;
  }
  return std::move(*client);
}

void holder(const Settings& s, const std::string& label, std::size_t index, Clock::time_point end, History& history) {
  auto client = connect(s, label, index);
  if (!client) return;
  std::mt19937 random(std::hash<std::string>{}(label));
  while (Clock::now() < end && !stopping) {
    const std::int64_t invoke = now_ns();
    auto permit = client->acquire(s.name, {.timeout = std::chrono::milliseconds(s.acquire_timeout_ms)});
    const std::int64_t complete = now_ns();
    const std::string outcome = outcome_of(permit ? netsem::Status() : permit.status());
    std::string line = R"({"op":"acquire","client":)" + json_string(label) + R"(,"name":)" + json_string(s.name) +
                       R"(,"count":1,"invoke_ns":)" + std::to_string(invoke) + R"(,"complete_ns":)" +
                       std::to_string(complete) + R"(,"outcome":")" + outcome + "\"";
    if (!permit || !permit->fence()) {
      history.add(line + "}");
      if (outcome == "unknown") std::this_thread::sleep_for(20ms);  // no server now: do not spin
      continue;
    }
    const std::uint64_t fence = *permit->fence();
    // The server the client is connected to (the grant's, unless it moved
    // since): the checker ignores it, a test may judge by it.
    history.add(line + R"(,"fence":)" + std::to_string(fence) + R"(,"server":)" + json_string(client->stats().server) +
                "}");
    // Shared with the callback, which the library may run on its own thread
    // after this iteration ended.
    const auto lost_at_ptr = std::make_shared<std::atomic<std::int64_t>>(0);
    std::atomic<std::int64_t>& lost_at = *lost_at_ptr;
    permit->on_lost([lost_at_ptr](const netsem::Status&) { *lost_at_ptr = now_ns(); });
    // The work: hold for a while, stopping at once when the permit is lost.
    const int hold_ms = static_cast<int>(index) < s.long_holders ? s.long_hold_ms : s.hold_ms;
    const auto until = Clock::now() + std::chrono::milliseconds(hold_ms / 2 + random() % (hold_ms + 1));
    while (Clock::now() < until && lost_at.load() == 0) std::this_thread::sleep_for(1ms);
    if (lost_at.load() != 0) {
      history.add(R"({"op":"lost","client":)" + json_string(label) + R"(,"name":)" + json_string(s.name) +
                  R"(,"at_ns":)" + std::to_string(lost_at.load()) + R"(,"fence":)" + std::to_string(fence) + "}");
      continue;
    }
    const std::int64_t release_invoke = now_ns();
    const netsem::Status released = permit->release();
    const std::int64_t release_complete = now_ns();
    history.add(R"({"op":"release","client":)" + json_string(label) + R"(,"name":)" + json_string(s.name) +
                R"(,"invoke_ns":)" + std::to_string(release_invoke) + R"(,"complete_ns":)" +
                std::to_string(release_complete) + R"(,"outcome":")" + outcome_of(released) + R"(","fence":)" +
                std::to_string(fence) + "}");
    if (lost_at.load() != 0 && lost_at.load() < release_invoke) {
      history.add(R"({"op":"lost","client":)" + json_string(label) + R"(,"name":)" + json_string(s.name) +
                  R"(,"at_ns":)" + std::to_string(lost_at.load()) + R"(,"fence":)" + std::to_string(fence) + "}");
    }
  }
}

void counter(const Settings& s, const std::string& label, std::size_t index, Clock::time_point end, History& history) {
  auto client = connect(s, label, index);
  if (!client) return;
  std::mt19937 random(std::hash<std::string>{}(label));
  while (Clock::now() < end && !stopping) {
    const bool post = random() % 2 == 0;
    const std::int64_t count = 1 + random() % 3;
    const std::int64_t invoke = now_ns();
    const netsem::Status status = post ? client->post(s.counter, count) : client->try_wait(s.counter, count);
    const std::int64_t complete = now_ns();
    const std::string outcome = outcome_of(status);
    history.add(std::string(R"({"op":")") + (post ? "post" : "wait") + R"(","client":)" + json_string(label) +
                R"(,"name":)" + json_string(s.counter) + R"(,"count":)" + std::to_string(count) + R"(,"invoke_ns":)" +
                std::to_string(invoke) + R"(,"complete_ns":)" + std::to_string(complete) + R"(,"outcome":")" + outcome +
                "\"}");
    std::this_thread::sleep_for(outcome == "unknown" ? 20ms : 2ms);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"netsem-workload: failure-test clients writing a history for netsem-check-history"};
  app.add_option("--server", s.servers, "a server host:port (repeat for a cluster)")->required();
  app.add_option("--holders", s.holders, "clients acquiring --name")->check(CLI::Range(0, 256));
  app.add_option("--counters", s.counters, "clients posting to and waiting on --counter")->check(CLI::Range(0, 256));
  app.add_option("--seconds", s.seconds, "how long the clients run (SIGTERM ends them sooner)")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--name", s.name, "the defined semaphore the holders acquire");
  app.add_option("--limit", s.limit, "its limit (the checker's bound)")->check(CLI::Range(1, 1 << 30));
  app.add_option("--counter", s.counter, "the created semaphore the counters change");
  app.add_option("--counter-max", s.counter_max, "its max")->check(CLI::Range(1, 1 << 30));
  app.add_option("--hold-ms", s.hold_ms, "how long a holder holds, on average")->check(CLI::Range(0, 60000));
  app.add_option("--acquire-timeout-ms", s.acquire_timeout_ms, "the server-side timeout of each acquire");
  app.add_option("--long-holders", s.long_holders, "how many of the holders hold for --long-hold-ms instead")
      ->check(CLI::Range(0, 256));
  app.add_option("--long-hold-ms", s.long_hold_ms,
                 "their hold, on average (past the session timeout: the lease's test)")
      ->check(CLI::Range(0, 600000));
  app.add_flag("--rotate", s.rotate, "client i tries the servers from the (i mod n)th on, not all from the first");
  app.add_option("--history", s.history, "where to write the history (JSON lines)")->required();
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGTERM, stop);
  std::signal(SIGINT, stop);

  History history;
  history.add(R"({"op":"limit","name":)" + json_string(s.name) + R"(,"max":)" + std::to_string(s.limit) + "}");
  if (s.counters > 0) {
    auto client = connect(s, "creator");
    if (!client) return 1;
    const std::int64_t value = s.counter_max / 2;
    const std::int64_t invoke = now_ns();
    const netsem::Status created = client->create(s.counter, value, s.counter_max, /*exclusive=*/true);
    if (!created.is_ok()) {
      std::fprintf(stderr, "netsem-workload: cannot create %s: %s\n", s.counter.c_str(), created.to_string().c_str());
      return 1;
    }
    history.add(R"({"op":"create","client":"creator","name":)" + json_string(s.counter) + R"(,"value":)" +
                std::to_string(value) + R"(,"max":)" + std::to_string(s.counter_max) + R"(,"invoke_ns":)" +
                std::to_string(invoke) + R"(,"complete_ns":)" + std::to_string(now_ns()) + R"(,"outcome":"ok"})");
  }
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s.seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < s.holders; ++i)
    threads.emplace_back(holder, std::cref(s), "holder-" + std::to_string(i), static_cast<std::size_t>(i), end,
                         std::ref(history));
  for (int i = 0; i < s.counters; ++i)
    threads.emplace_back(counter, std::cref(s), "counter-" + std::to_string(i), static_cast<std::size_t>(s.holders + i),
                         end, std::ref(history));
  for (std::thread& t : threads) t.join();

  if (s.counters > 0) {
    // The final read, once a server answers (bounded).
    auto client = connect(s, "final");
    const auto give_up = Clock::now() + 20s;
    bool read = false;
    while (client && Clock::now() < give_up && !read) {
      auto info = client->get(s.counter);
      if (info && info->kind != "absent") {
        history.add(R"({"op":"final","name":)" + json_string(s.counter) + R"(,"exists":true,"value":)" +
                    std::to_string(info->value) + R"(,"max":)" + std::to_string(info->max) + "}");
        read = true;
      } else if (info || info.status().code() == StatusCode::kNotFound) {
        history.add(R"({"op":"final","name":)" + json_string(s.counter) + R"(,"exists":false})");
        read = true;
      } else {
        std::this_thread::sleep_for(100ms);
      }
    }
    if (!read) {
      std::fprintf(stderr, "netsem-workload: no server answered the final read of %s\n", s.counter.c_str());
      return 1;
    }
  }
  if (!history.write(s.history)) {
    std::fprintf(stderr, "netsem-workload: cannot write %s\n", s.history.c_str());
    return 1;
  }
  std::printf("%zu events\n", history.size());
  return 0;
}
