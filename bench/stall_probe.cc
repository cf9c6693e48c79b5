// netsem-stall: how long a request waits behind the server's work on the
// whole table (the status file, journal compaction). Against a running
// netsemd it makes `--semaphores` created semaphores, then for `--seconds`
// keeps the table changing from one connection (so the status file is
// rewritten at every status_interval_ms; with `--compact`, with long names,
// so that the journal soon outgrows compact_bytes and is compacted), while
// another connection sends one PING at a time and times each round trip.
// It prints the distribution of those round trips: the worst one is the
// longest any request waited. docs/benchmarks.md has the figures.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "protocol/requests.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 53559;
  long semaphores = 1'000'000;
  double seconds = 20;
  bool compact = false;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "netsem-stall: %s\n", why.c_str());
  std::exit(1);
}

// A blocking line connection.
class Line {
 public:
  Line(const std::string& host, int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) die("bad address " + host);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      die("cannot connect to " + host + ":" + std::to_string(port) + ": " + std::strerror(errno));
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Line() { ::close(fd_); }
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) die(std::string("send: ") + std::strerror(errno));
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  std::string read_line() {
    for (;;) {
      const auto end = buffer_.find('\n', start_);
      if (end != std::string::npos) {
        std::string line = buffer_.substr(start_, end - start_);
        start_ = end + 1;
        if (start_ > (1 << 16)) {
          buffer_.erase(0, start_);
          start_ = 0;
        }
        return line;
      }
      char chunk[1 << 16];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) die("the server closed the connection");
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_ = -1;
  std::string buffer_;
  std::size_t start_ = 0;
};

void expect(Line& line, std::string_view wanted) {
  const std::string got = line.read_line();
  if (got != wanted) die("expected '" + std::string(wanted) + "', got '" + got + "'");
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--host") {
      options.host = value();
    } else if (arg == "--port") {
      options.port = std::atoi(value().c_str());
    } else if (arg == "--semaphores") {
      options.semaphores = std::atol(value().c_str());
    } else if (arg == "--seconds") {
      options.seconds = std::atof(value().c_str());
    } else if (arg == "--compact") {
      options.compact = true;
    } else {
      die("usage: netsem-stall [--host A] [--port P] [--semaphores N] [--seconds S] [--compact]");
    }
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  {
    Line maker(options.host, options.port);
    constexpr long kBatch = 10'000;
    for (long first = 0; first < options.semaphores; first += kBatch) {
      const long last = std::min(options.semaphores, first + kBatch);
      std::string lines;
      for (long i = first; i < last; ++i)
        netsem::protocol::encode_create(lines, "c", "stall." + std::to_string(i), 1, 1);
      maker.send(lines);
      for (long i = first; i < last; ++i) expect(maker, "c OK");
    }
  }
  std::fprintf(stderr, "netsem-stall: %ld semaphores made; measuring for %.0f s\n", options.semaphores,
               options.seconds);

  std::atomic<bool> done{false};
  std::atomic<long> changes{0};
  std::thread churn([&] {
    Line line(options.host, options.port);
    // A long name makes long records: the journal grows fast.
    const std::string name = options.compact ? "churn." + std::string(240, 'x') : std::string("churn");
    while (!done) {
      std::string lines;
      for (int i = 0; i < 100; ++i) {
        netsem::protocol::encode_create(lines, "c", name, 1, 1);
        netsem::protocol::encode_delete(lines, "d", name);
      }
      line.send(lines);
      for (int i = 0; i < 100; ++i) {
        expect(line, "c OK");
        expect(line, "d OK");
      }
      changes += 200;
      // Without --compact, a steady trickle is enough to make every status
      // tick rewrite the file.
      if (!options.compact) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  Line probe(options.host, options.port);
  std::vector<double> round_trips;
  const auto until = Clock::now() + std::chrono::duration<double>(options.seconds);
  while (Clock::now() < until) {
    const auto sent = Clock::now();
    std::string ping;
    netsem::protocol::encode_ping(ping, "p");
    probe.send(ping);
    expect(probe, "p PONG");
    round_trips.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
  }
  done = true;
  churn.join();

  std::sort(round_trips.begin(), round_trips.end());
  auto at = [&](double q) { return round_trips[static_cast<std::size_t>(q * (round_trips.size() - 1))]; };
  const auto over = [&](double ms) {
    return round_trips.end() - std::upper_bound(round_trips.begin(), round_trips.end(), ms);
  };
  std::printf(
      "semaphores %ld, %zu round trips, %ld changes: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms; "
      "over 5 ms: %ld, over 20 ms: %ld\n",
      options.semaphores, round_trips.size(), changes.load(), at(0.5), at(0.99), at(0.999), round_trips.back(),
      static_cast<long>(over(5)), static_cast<long>(over(20)));
  return 0;
}
