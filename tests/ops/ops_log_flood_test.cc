// netsemd's log under pressure, from the real server. A flood of sessions
// past the session lines' rate limit: at most 200 lines a window, and every
// event beyond that counted in a "N similar messages suppressed" line, so
// that nothing is lost from the count. And a log nobody reads: netsemd's
// stderr a pipe whose reader stops (a log shipper or journald that hangs),
// which stalls the event loop in write(2) at its next line; the HTTP
// threads, which log nothing at info, go on answering, and a query that
// needs the loop is answered 503 BUSY after its 2 s bound, and at once when
// 64 queries wait already: a real stalled loop, not a mock. Once the reader
// reads again, everything answers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "netsemd_harness.h"
#include "ops_support.h"
#include "support/http_client.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using Clock = std::chrono::steady_clock;
using test_support::http_get;

// Milliseconds since midnight UTC of a log time "2026-12-03T15:20:01.123Z".
std::int64_t ms_of_day(const std::string& time) {
  return ((std::stoll(time.substr(11, 2)) * 60 + std::stoll(time.substr(14, 2))) * 60 +
          std::stoll(time.substr(17, 2))) *
             1000 +
         std::stoll(time.substr(20, 3));
}

TEST(OpsLogFlood, SessionLinesPastTheRateAreCountedNotLost) {
  Netsemd::Options options;
  options.extra_args = {"--log-format", "json", "--log-level", "info"};
  auto server = start_server(options);
  ASSERT_TRUE(server);
  // 800 sessions opened and closed at once: 1600 events (began, ended),
  // far past 200 lines a window unless the machine takes 8 s for them.
  constexpr int kSessions = 800;
  const auto began = Clock::now();
  for (int i = 0; i < kSessions; ++i) {
    auto client = Client::connect(server->port());
    ASSERT_TRUE(client) << i;
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began);
  // Once the server has accepted and ended all of them (connections still in
  // the listen queue at the stop would never be sessions), one more session
  // is open: the stop ends it, and writes what the limit still held back.
  auto checker = Client::connect(server->port());
  ASSERT_TRUE(checker);
  const auto deadline = Clock::now() + 20s;
  nlohmann::json stats;
  do {
    const std::string answer = checker->request(req::stats("s"));
    ASSERT_EQ(answer.substr(0, 5), "s OK ") << answer;
    stats = nlohmann::json::parse(answer.substr(5));
  } while ((stats.value("connections_total", 0) != kSessions + 1 || stats.value("sessions", 0) != 1) &&
           Clock::now() < deadline);
  ASSERT_EQ(stats.value("connections_total", 0), kSessions + 1) << stats.dump();
  ASSERT_EQ(stats.value("sessions", 0), 1) << stats.dump();
  server->send_signal(SIGTERM);
  const auto status = server->wait_exit();
  ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0);

  const std::regex kSuppressed(R"(^session began, label or ended: (\d+) similar messages suppressed$)");
  std::uint64_t written = 0;
  std::uint64_t suppressed = 0;
  int reports = 0;
  std::vector<std::int64_t> times;  // of the session lines written, in order
  for (const auto& event : json_log(server->log())) {
    const std::string message = event.value("message", "");
    std::smatch match;
    if (message == "session began" || message == "session ended") {
      ++written;
      times.push_back(ms_of_day(event.value("time", "")));
    } else if (std::regex_match(message, match, kSuppressed)) {
      suppressed += std::stoull(match[1]);
      ++reports;
    }
  }
  EXPECT_EQ(written + suppressed, 2u * (kSessions + 1)) << written << " written, " << suppressed << " suppressed";
  if (took < 4s) {
    EXPECT_GT(reports, 0) << "1600 events in " << took.count() << " ms, none suppressed";
  }
  // Fixed windows of a second from the first line each admits: at most 200
  // lines in each (one more either side of a boundary for the times'
  // millisecond truncation).
  std::size_t start = 0;
  for (std::size_t i = 0; i <= times.size(); ++i) {
    if (i == times.size() || times[i] - times[start] >= 1000) {
      EXPECT_LE(i - start, 201u) << "a window from line " << start;
      start = i;
    }
  }
}

// netsemd with its stderr (the log) a pipe of the test's, 4 KiB deep.
class PipedServer {
 public:
  PipedServer() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_fd_ = fds[0];
    // The smallest pipe (a page): a few dozen lines fill it.
    EXPECT_GT(::fcntl(read_fd_, F_SETPIPE_SZ, 4096), 0);
    Netsemd::Options options;  // http_port = 0: a free port
    const auto config = dir_.path() / "netsem.ini";
    std::ofstream(config) << render_config(options, dir_.path(), 0);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the test died: so does the server
      if (::getppid() != parent) ::_exit(1);
      ::dup2(fds[1], STDERR_FILENO);
      ::dup2(fds[1], STDOUT_FILENO);
      ::execl(NETSEMD_PATH, "netsemd", "--config", config.c_str(), "--log-level", "info", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
  }
  ~PipedServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    stop_draining();
    ::close(read_fd_);
  }
  PipedServer(const PipedServer&) = delete;
  PipedServer& operator=(const PipedServer&) = delete;

  // Reads the log until it holds `text` (at most `timeout`).
  bool read_until(std::string_view text, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (log().find(text) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || !read_some(left)) return false;
    }
    return true;
  }
  // From now on a thread reads the log as it comes, until EOF.
  void start_draining() {
    drainer_ = std::thread([this] {
      while (read_some(std::chrono::milliseconds(100)) || !stop_) {
      }
    });
  }
  void stop_draining() {
    stop_ = true;
    if (drainer_.joinable()) drainer_.join();
  }
  std::string log() {
    std::lock_guard lock(mutex_);
    return log_;
  }
  pid_t pid() const { return pid_; }
  // The wait status, or nullopt when it still runs after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    do {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(5ms);
    } while (Clock::now() < deadline);
    return std::nullopt;
  }

 private:
  // One read of what the pipe holds; false at EOF or after `timeout`.
  bool read_some(std::chrono::milliseconds timeout) {
    pollfd p{read_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    char buffer[65536];
    const ssize_t n = ::read(read_fd_, buffer, sizeof buffer);
    if (n <= 0) return false;
    std::lock_guard lock(mutex_);
    log_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }

  TempDir dir_;
  int read_fd_ = -1;
  pid_t pid_ = -1;
  std::mutex mutex_;
  std::string log_;  // guarded by mutex_
  std::atomic<bool> stop_{false};
  std::thread drainer_;
};

TEST(OpsLogFlood, AStuckLogReaderStallsTheLoopAndLoopQueriesAnswerBusy) {
  PipedServer server;
  ASSERT_TRUE(server.read_until("netsemd listening on", 10s)) << server.log();
  const std::string started = server.log();
  const auto http_port = test_support::http_port_from_log(started);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(started, match, std::regex(R"(listening on 127\.0\.0\.1:(\d+))"))) << started;
  const auto port = static_cast<std::uint16_t>(std::stoi(match[1]));
  ASSERT_NE(http_port, 0) << started;
  // Ready (the API says STARTING until just after the "listening" line).
  std::optional<test_support::HttpResponse> ready;
  for (const auto deadline = Clock::now() + 5s; Clock::now() < deadline; std::this_thread::sleep_for(10ms)) {
    ready = http_get(http_port, "/api/v1/semaphores");
    if (ready && ready->status == 200) break;
  }
  ASSERT_TRUE(ready && ready->status == 200) << (ready ? ready->body : "no answer");

  // Nobody reads the log now. Each session writes two lines (began, label)
  // from the loop; once the pipe is full the loop blocks in its write, and
  // a HELLO is no longer answered.
  std::vector<std::unique_ptr<Client>> clients;
  bool stalled = false;
  for (int i = 0; i < 200 && !stalled; ++i) {
    auto client = Client::connect(port);
    ASSERT_TRUE(client);
    client->send_line(req::hello("h", "filler-" + std::to_string(i)));
    stalled = !client->read_line(1s);
    clients.push_back(std::move(client));
  }
  ASSERT_TRUE(stalled) << "the loop never blocked on the full log pipe";

  // The HTTP threads do not wait for the loop: health and the published
  // figures answer at once.
  auto began = Clock::now();
  const auto health = http_get(http_port, "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const auto stats = http_get(http_port, "/api/v1/stats");
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->status, 200) << stats->body;
  EXPECT_LT(Clock::now() - began, 1s);
  // A query the loop must answer: 503 BUSY once its 2 s are over.
  began = Clock::now();
  const auto busy = http_get(http_port, "/api/v1/semaphores", 10s);
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began);
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->status, 503) << busy->body;
  const auto body = nlohmann::json::parse(busy->body, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << busy->body;
  EXPECT_EQ(body.value("error", ""), "BUSY") << busy->body;
  EXPECT_GE(waited, 1900ms);
  EXPECT_LT(waited, 5s);
  // Still stalled: the last HELLO has no answer yet.
  EXPECT_FALSE(clients.back()->read_line(100ms));

  // At most 64 queries wait for the loop: a query that timed out stays
  // queued until the loop runs it. 63 more fill the queue (each answered
  // BUSY after its 2 s, so each was queued); the next is BUSY at once.
  std::vector<std::thread> waiting;
  std::atomic<int> busy_after_waiting{0};
  for (int i = 0; i < 63; ++i) {
    waiting.emplace_back([&] {
      const auto answer = http_get(http_port, "/api/v1/sessions", 10s);
      if (answer && answer->status == 503 && answer->body.find("\"BUSY\"") != std::string::npos) ++busy_after_waiting;
    });
  }
  for (auto& thread : waiting) thread.join();
  EXPECT_EQ(busy_after_waiting.load(), 63);
  began = Clock::now();
  const auto full = http_get(http_port, "/api/v1/semaphores/x", 10s);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 503) << full->body;
  EXPECT_NE(full->body.find("\"BUSY\""), std::string::npos) << full->body;
  EXPECT_LT(Clock::now() - began, 1s) << "a full queue answers at once";

  // The reader reads again: the loop goes on where it stopped.
  server.start_draining();
  const auto hello = clients.back()->read_line(5s);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->substr(0, 13), "h OK netsem 1") << *hello;
  // The 64 queries still queued (and the other fillers' HELLOs) run first:
  // until they have, a new query may still find the queue full. It must
  // be answered once the loop has caught up.
  std::optional<test_support::HttpResponse> after;
  for (const auto until = Clock::now() + 10s; Clock::now() < until;) {
    after = http_get(http_port, "/api/v1/semaphores", 5s);
    if (!after || after->status != 503) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->body;
  auto client = Client::connect(port);
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request(req::acquire("a", "after-the-stall")).substr(0, 5), "a OK ");
  EXPECT_EQ(client->request(req::get("g", "after-the-stall")), "g OK 0 1 1 0 undefined");

  ::kill(server.pid(), SIGTERM);
  const auto status = server.wait_exit(10s);
  ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

}  // namespace
}  // namespace netsem::testing
