// Tests of the library's logging (include/netsem/log.h): a program whose
// stdout carries data keeps it clean while the library logs (a Client that
// falls back because nothing listens), lines go to stderr by default and to
// the host's handler once one is installed, the level filters them, and the
// host's own spdlog set-up is never touched.
#include "netsem/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "client/client_log.h"
#include "client/local_semaphores.h"
#include "netsem/client.h"
#include "netsemd_harness.h"

namespace netsem {
namespace {

using namespace std::chrono_literals;

// A loopback port nothing listens on (bound, so nothing else takes it while
// the socket lives).
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), size) != 0) std::abort();
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
  }
  ~ClosedPort() { ::close(fd_); }
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// Points a standard descriptor at a file for the life of the object; text()
// reads what was written to it. Holds no gtest assertion while redirected.
class Redirect {
 public:
  Redirect(int fd, const std::filesystem::path& file) : fd_(fd), file_(file) {
    std::fflush(nullptr);
    saved_ = ::dup(fd);
    const int target = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ::dup2(target, fd);
    ::close(target);
  }
  void restore() {
    if (saved_ < 0) return;
    std::fflush(nullptr);
    std::cout.flush();
    std::cerr.flush();
    ::dup2(saved_, fd_);
    ::close(saved_);
    saved_ = -1;
  }
  ~Redirect() { restore(); }
  std::string text() const {
    std::ifstream in(file_);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  }

 private:
  int fd_;
  std::filesystem::path file_;
  int saved_ = -1;
};

class ClientLogTest : public ::testing::Test {
 protected:
  void TearDown() override {
    set_log_handler({});
    set_log_level(LogLevel::kWarning);
    (void)client::LocalSemaphores(scratch_.path() / "local").remove_all();
  }

  // A Client whose one server refuses connections: its creation logs the
  // failed attempt (debug) and the start of fallback (warning).
  std::unique_ptr<Client> falling_back_client() {
    ClientOptions options;
    options.servers = {"127.0.0.1:" + std::to_string(closed_.port())};
    options.local_dir = scratch_.path() / "local";
    options.connect_timeout = 500ms;
    options.reconnect_min = 5s;  // one round of attempts: no more lines later
    options.reconnect_max = 5s;
    auto client = Client::create(std::move(options));
    return client ? std::move(*client) : nullptr;
  }

  netsem::testing::TempDir scratch_;
  ClosedPort closed_;
};

TEST_F(ClientLogTest, DefaultGoesToStderrAndNeverToStdout) {
  Redirect out(STDOUT_FILENO, scratch_.path() / "stdout");
  Redirect err(STDERR_FILENO, scratch_.path() / "stderr");
  auto client = falling_back_client();
  const bool connected = client && client->connected();
  client.reset();
  out.restore();
  err.restore();
  ASSERT_FALSE(connected);
  EXPECT_EQ(out.text(), "");
  EXPECT_NE(err.text().find("netsem: warning: entering fallback: no server reachable (127.0.0.1:"), std::string::npos)
      << err.text();
  // Debug lines are below the default level.
  EXPECT_EQ(err.text().find("connect to"), std::string::npos) << err.text();
}

TEST_F(ClientLogTest, LeavesTheHostsSpdlogAlone) {
  std::ostringstream captured;
  const auto before = spdlog::default_logger();
  auto host = std::make_shared<spdlog::logger>("host", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  spdlog::set_default_logger(host);
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::trace);
  set_log_level(LogLevel::kDebug);
  Redirect err(STDERR_FILENO, scratch_.path() / "stderr");
  auto client = falling_back_client();
  client.reset();
  err.restore();
  const bool still_host = spdlog::default_logger() == host;
  spdlog::set_default_logger(before);
  spdlog::set_level(level);
  EXPECT_TRUE(still_host);
  EXPECT_EQ(captured.str(), "");
  EXPECT_EQ(spdlog::get("netsem"), nullptr);  // nothing registered under the library's name
  EXPECT_NE(err.text().find("netsem: debug: connect to 127.0.0.1:"), std::string::npos) << err.text();
}

TEST_F(ClientLogTest, HandlerReceivesTheLinesAtItsLevel) {
  std::mutex mutex;
  std::vector<std::pair<LogLevel, std::string>> lines;
  set_log_handler([&](LogLevel level, std::string_view message) {
    std::lock_guard lock(mutex);
    lines.emplace_back(level, std::string(message));
  });
  Redirect out(STDOUT_FILENO, scratch_.path() / "stdout");
  Redirect err(STDERR_FILENO, scratch_.path() / "stderr");
  auto client = falling_back_client();
  client.reset();
  set_log_level(LogLevel::kDebug);
  client = falling_back_client();
  client.reset();
  out.restore();
  err.restore();
  set_log_handler({});
  EXPECT_EQ(out.text(), "");
  EXPECT_EQ(err.text(), "");
  std::vector<std::pair<LogLevel, std::string>> warnings;
  std::vector<std::pair<LogLevel, std::string>> debug;
  for (const auto& line : lines) (line.first == LogLevel::kWarning ? warnings : debug).push_back(line);
  // One fallback warning per client; the debug lines only from the second.
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_TRUE(warnings[0].second.starts_with("entering fallback: no server reachable (")) << warnings[0].second;
  ASSERT_FALSE(debug.empty());
  for (const auto& [level, message] : debug) {
    EXPECT_EQ(level, LogLevel::kDebug) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
    EXPECT_FALSE(message.starts_with("netsem:")) << message;  // the prefix is the sink's business
  }
  EXPECT_TRUE(debug[0].second.starts_with("connect to 127.0.0.1:")) << debug[0].second;
}

TEST_F(ClientLogTest, LevelFiltersAndNames) {
  std::atomic<int> calls{0};
  set_log_handler([&](LogLevel, std::string_view) { ++calls; });
  set_log_level(LogLevel::kError);
  EXPECT_EQ(log_level(), LogLevel::kError);
  client::log_warning("dropped {}", 1);
  EXPECT_EQ(calls.load(), 0);
  client::log(LogLevel::kError, "kept {}", 2);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(log_level_name(LogLevel::kDebug), "debug");
  EXPECT_EQ(log_level_name(LogLevel::kInfo), "info");
  EXPECT_EQ(log_level_name(LogLevel::kWarning), "warning");
  EXPECT_EQ(log_level_name(LogLevel::kError), "error");
}

TEST_F(ClientLogTest, AThrowingHandlerLosesOnlyItsLine) {
  set_log_handler([](LogLevel, std::string_view) { throw std::runtime_error("host bug"); });
  client::log_warning("one");  // must not propagate
  SUCCEED();
}

TEST_F(ClientLogTest, ReplacingTheHandlerWaitsForARunningCall) {
  std::promise<void> entered;
  std::promise<void> leave;
  std::shared_future<void> leave_future = leave.get_future().share();
  std::atomic<bool> running{false};
  set_log_handler([&](LogLevel, std::string_view) {
    running = true;
    entered.set_value();
    leave_future.wait();
    running = false;
  });
  std::thread logger([] { client::log_warning("slow"); });
  entered.get_future().wait();
  std::atomic<bool> replaced{false};
  std::thread replacer([&] {
    set_log_handler({});
    replaced = true;
  });
  // The replacement cannot return while the old handler runs; give it every
  // chance to (wrongly) do so before letting the handler go.
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(replaced.load());
  leave.set_value();
  replacer.join();
  logger.join();
  EXPECT_TRUE(replaced.load());
  EXPECT_FALSE(running.load());
}

}  // namespace
}  // namespace netsem
