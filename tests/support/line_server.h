// LineServer: a scripted fake server of the netsem line protocol on a
// loopback port, for what a real netsemd cannot be made to do at will (an
// answer it never gives or holds back, another protocol version, a refusal
// on the second connection only, a hang-up at a chosen line, a cluster's
// answers from a single host). The one copy of the socket loop that
// tests/cli and tests/client each had several of. One thread polls the
// listener and every open connection in 10 ms steps; it records each request
// line, splits it into fields at each space (the tag first) and answers it
// with the test's `answer(connection, fields)`: the text returned goes back
// after "<tag> " with a newline (several lines joined by "\n", each after
// the first with its own tag or "*"); nullopt sends nothing, and a line of
// one field gets no answer. Connections are numbered 0, 1, ... as accepted;
// each stays open until the client closes it, hang_up() or the destructor
// (which stops the thread and closes them).
//
// To extend it, add an option here, and a line to this paragraph, rather
// than another copy of the loop in a test:
// - an answer that depends on earlier lines: state captured by the Answer
//   (it runs on the server thread only, one line at a time: state nothing
//   else touches needs no lock);
// - an answer later than its line (a grant, answers held behind another):
//   return nullopt, then send(connection, text) from the test or from
//   Options::step, which the server thread runs at every step;
// - a hang-up: hang_up() closes every open connection, at the next step
//   (after what send() queued is written), from the test or the Answer;
// - another loopback address, or a port a server let go (a fake in a
//   killed server's place): Options::host and Options::port;
// - a listener of the test's own (its backlog, connections left queued in
//   the kernel): Options::listener and Options::accept_at_most; a
//   connection the test accepted itself: Options::adopt;
// - what a connection sent besides whole lines (a binary frame, a line
//   never ended): bytes(n), everything it sent, as it came.
//
// Thread safety: the public members from any thread; the Answer and
// Options::step run on the server thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace netsem::test_support {

class LineServer {
 public:
  // A request line's fields: the tag, the verb, its arguments.
  using Fields = std::vector<std::string>;
  using Answer = std::function<std::optional<std::string>(int connection, const Fields& fields)>;
  struct Options {
    // The test's listening socket (it stays the test's to close); -1: one
    // of the server's own on `host`:`port` (SO_REUSEADDR; port 0: the
    // kernel's choice).
    int listener = -1;
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    // How many connections it accepts; the later ones stay in the
    // listener's queue. -1: all.
    int accept_at_most = -1;
    // A connection the test accepted already: connection 0 (then closed by
    // the server).
    int adopt = -1;
    // Run by the server thread at every step (10 ms apart at most).
    std::function<void(LineServer&)> step = {};
  };

  explicit LineServer(Answer answer) : LineServer(Options{}, std::move(answer)) {}
  LineServer(Options options, Answer answer) : options_(std::move(options)), answer_(std::move(answer)) {
    listener_ = options_.listener;
    if (listener_ < 0 && options_.adopt < 0) {
      own_listener_ = listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      const int on = 1;
      if (listener_ >= 0) ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(options_.port);
      socklen_t size = sizeof address;
      if (listener_ < 0 || ::inet_pton(AF_INET, options_.host.c_str(), &address.sin_addr) != 1 ||
          ::bind(listener_, reinterpret_cast<sockaddr*>(&address), size) != 0 || ::listen(listener_, 16) != 0) {
        return;  // port() is 0
      }
    }
    if (listener_ >= 0) {
      sockaddr_in address{};
      socklen_t size = sizeof address;
      if (::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size) == 0) {
        port_ = ntohs(address.sin_port);
      }
    }
    if (options_.adopt >= 0) opened(options_.adopt);
    thread_ = std::thread([this] { run(); });
  }
  ~LineServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (const Open& open : open_) ::close(open.fd);
    if (own_listener_ >= 0) ::close(own_listener_);
  }
  LineServer(const LineServer&) = delete;
  LineServer& operator=(const LineServer&) = delete;

  // The port it listens on; 0 when it could not listen.
  std::uint16_t port() const { return port_; }
  std::string address() const { return options_.host + ":" + std::to_string(port_); }
  // How many connections it accepted (or adopted).
  int connections() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(lines_.size());
  }
  // The request lines connection `n` sent so far, with their tags.
  std::vector<std::string> lines(int n) const {
    std::lock_guard lock(mutex_);
    return n >= 0 && n < static_cast<int>(lines_.size()) ? lines_[static_cast<std::size_t>(n)]
                                                         : std::vector<std::string>{};
  }
  // Every connection's lines, connection by connection.
  std::vector<std::string> lines() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> all;
    for (const auto& some : lines_) all.insert(all.end(), some.begin(), some.end());
    return all;
  }
  // Every byte connection `n` sent so far, lines and all.
  std::string bytes(int n) const {
    std::lock_guard lock(mutex_);
    return n >= 0 && n < static_cast<int>(bytes_.size()) ? bytes_[static_cast<std::size_t>(n)] : std::string();
  }
  // Whether connection `n` sent a request of `verb`.
  bool saw(int n, std::string_view verb) const {
    for (const std::string& line : lines(n)) {
      const Fields fields = split(line);
      if (fields.size() > 1 && fields[1] == verb) return true;
    }
    return false;
  }
  // Whether connection `n` is closed (by the client, hang_up or the server).
  bool closed(int n) const {
    std::lock_guard lock(mutex_);
    return n >= 0 && n < static_cast<int>(closed_.size()) && closed_[static_cast<std::size_t>(n)];
  }
  // Writes `text` (whole lines, with their newlines) on connection `n` at
  // the next step; nothing once it is closed.
  void send(int n, std::string text) {
    std::lock_guard lock(mutex_);
    outgoing_.emplace_back(n, std::move(text));
  }
  void hang_up() {
    std::lock_guard lock(mutex_);
    hang_up_ = true;
  }

  // `line` split at each space.
  static Fields split(std::string_view line) {
    Fields fields(1);
    for (const char c : line) {
      if (c == ' ') {
        fields.emplace_back();
      } else {
        fields.back().push_back(c);
      }
    }
    return fields;
  }

 private:
  struct Open {
    int fd = -1;
    int n = 0;  // its number
    std::string input;
  };

  void opened(int fd) {
    std::lock_guard lock(mutex_);
    open_.push_back({fd, static_cast<int>(lines_.size()), {}});
    lines_.emplace_back();
    bytes_.emplace_back();
    closed_.push_back(false);
  }
  void close_open(std::size_t i) {
    ::close(open_[i].fd);
    std::lock_guard lock(mutex_);
    closed_[static_cast<std::size_t>(open_[i].n)] = true;
    open_.erase(open_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  static void write_all(int fd, const std::string& text) {
    // The client may be gone already: no SIGPIPE.
    (void)::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  }

  void run() {
    int accepted = options_.adopt >= 0 ? 1 : 0;
    while (!stop_) {
      if (options_.step) options_.step(*this);
      std::vector<std::pair<int, std::string>> outgoing;
      bool hang_up = false;
      {
        std::lock_guard lock(mutex_);
        outgoing.swap(outgoing_);
        std::swap(hang_up, hang_up_);
      }
      for (const auto& [n, text] : outgoing) {
        for (const Open& open : open_) {
          if (open.n == n) write_all(open.fd, text);
        }
      }
      while (hang_up && !open_.empty()) close_open(0);
      const bool accepting = listener_ >= 0 && (options_.accept_at_most < 0 || accepted < options_.accept_at_most);
      std::vector<pollfd> fds;
      if (accepting) fds.push_back({listener_, POLLIN, 0});
      for (const Open& open : open_) fds.push_back({open.fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 10) <= 0) continue;
      const std::size_t first = accepting ? 1 : 0;
      // Read before accepting: open_ matches fds[first...] until then.
      for (std::size_t i = fds.size(); i-- > first;) {
        if (fds[i].revents != 0) read_from(i - first);
      }
      if (accepting && fds[0].revents != 0) {
        const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
          ++accepted;
          opened(fd);
        }
      }
    }
  }

  // Reads what open_[i] has, answers its complete lines; closes it at its end.
  void read_from(std::size_t i) {
    char chunk[4096];
    const ssize_t got = ::read(open_[i].fd, chunk, sizeof chunk);
    if (got <= 0) return close_open(i);
    Open& open = open_[i];
    open.input.append(chunk, static_cast<std::size_t>(got));
    {
      std::lock_guard lock(mutex_);
      bytes_[static_cast<std::size_t>(open.n)].append(chunk, static_cast<std::size_t>(got));
    }
    for (std::size_t end; (end = open.input.find('\n')) != std::string::npos;) {
      const std::string line = open.input.substr(0, end);
      open.input.erase(0, end + 1);
      {
        std::lock_guard lock(mutex_);
        lines_[static_cast<std::size_t>(open.n)].push_back(line);
      }
      const Fields fields = split(line);
      if (fields.size() < 2) continue;
      if (const std::optional<std::string> reply = answer_(open.n, fields)) {
        write_all(open.fd, fields[0] + " " + *reply + "\n");
      }
    }
  }

  const Options options_;
  const Answer answer_;
  int listener_ = -1;
  int own_listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<Open> open_;  // the server thread's
  mutable std::mutex mutex_;
  std::vector<std::vector<std::string>> lines_;        // guarded by mutex_
  std::vector<std::string> bytes_;                     // guarded by mutex_
  std::vector<bool> closed_;                           // guarded by mutex_
  std::vector<std::pair<int, std::string>> outgoing_;  // guarded by mutex_
  bool hang_up_ = false;                               // guarded by mutex_
  std::thread thread_;
};

}  // namespace netsem::test_support
