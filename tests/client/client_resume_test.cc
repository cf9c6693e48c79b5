// Resuming a session on a single server (issue 16; docs/client.md, "Resuming
// the session"): a Client behind a TcpProxy the test controls, against the
// real netsemd. A connection reset keeps the permit and a queued ACQUIRE (the
// session is resumed on a new connection, RESUME + MINE); a RESUME after the
// server's restart is answered NOT_FOUND and the permit is lost then; a
// Client closed cleanly ends its resumable session at once (QUIT). Every
// wait is bounded; each test takes a few seconds.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "client/local_semaphores.h"
#include "netsem/client.h"
#include "netsemd_harness.h"
#include "support/request_lines.h"
#include "tcp_proxy.h"

namespace netsem {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using netsem::testing::Netsemd;
namespace req = netsem::testing::req;

template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = 3s) {
  const auto deadline = Clock::now() + timeout;
  while (!predicate()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class ClientResumeTest : public ::testing::Test {
 protected:
  void TearDown() override { EXPECT_TRUE(client::LocalSemaphores(local_dir()).remove_all().is_ok()); }

  std::filesystem::path local_dir() const { return scratch_.path() / "local"; }

  void start_server(std::uint16_t port = 0) {
    Netsemd::Options options;
    options.server_options = "session_timeout_ms = 6000";
    options.semaphores = "lic = 1";
    options.port = port;
    if (!data_dir_.empty()) options.data_dir = data_dir_;
    std::string error;
    server_ = Netsemd::start(options, &error);
    ASSERT_TRUE(server_) << error;
    data_dir_ = server_->data_dir();
  }

  std::unique_ptr<Client> client_through(std::uint16_t port) {
    ClientOptions options;
    options.servers = {"127.0.0.1:" + std::to_string(port)};
    options.local_dir = local_dir();
    options.connect_timeout = 500ms;
    options.reconnect_min = 20ms;
    options.reconnect_max = 100ms;
    options.request_timeout = 3s;
    options.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kFail};
    Result<std::unique_ptr<Client>> client = Client::create(std::move(options));
    EXPECT_TRUE(client) << client.status().to_string();
    return client ? std::move(*client) : nullptr;
  }

  // A try-ACQUIRE of `name` by another session, straight to the server.
  std::string try_acquire(const std::string& name) {
    auto other = netsem::testing::Client::connect(server_->port());
    return other ? other->request(req::acquire("t", name, 1, 0)) : "<no connection>";
  }

  netsem::testing::TempDir scratch_;
  std::filesystem::path data_dir_;
  std::unique_ptr<Netsemd> server_;
};

TEST_F(ClientResumeTest, AConnectionResetKeepsThePermit) {
  start_server();
  testing::TcpProxy proxy(server_->port());
  ASSERT_NE(proxy.port(), 0);
  auto holder = client_through(proxy.port());
  ASSERT_TRUE(holder && holder->connected());
  Result<Permit> permit = holder->acquire("lic");
  ASSERT_TRUE(permit) << permit.status().to_string();
  ASSERT_FALSE(permit->is_local());
  const std::uint64_t fence = permit->fence().value_or(0);
  std::atomic<bool> lost{false};
  permit->on_lost([&](const Status&) { lost = true; });
  const std::uint64_t session = holder->stats().session_id;

  const auto reset_at = Clock::now();
  proxy.reset();
  ASSERT_TRUE(eventually([&] { return holder->stats().resumes == 1; })) << server_->log();
  std::printf("resumed %lld ms after the reset\n", static_cast<long long>((Clock::now() - reset_at) / 1ms));
  EXPECT_FALSE(lost.load());
  EXPECT_FALSE(permit->lost());
  EXPECT_EQ(holder->stats().session_id, session);
  EXPECT_EQ(holder->stats().connects, 1u);
  EXPECT_EQ(holder->stats().connection_losses, 0u);
  EXPECT_EQ(try_acquire("lic"), "t TIMEOUT");

  // The session goes on: the release reaches the server, which lets the next in.
  ASSERT_TRUE(permit->release().is_ok());
  EXPECT_EQ(netsem::testing::fields(try_acquire("lic"))[1], "OK");
  Result<Permit> again = holder->acquire("lic", {.timeout = 2s});
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_GT(again->fence().value_or(0), fence);
}

TEST_F(ClientResumeTest, AQueuedAcquireIsGrantedAfterAReset) {
  start_server();
  testing::TcpProxy proxy(server_->port());
  ASSERT_NE(proxy.port(), 0);
  auto owner = netsem::testing::Client::connect(server_->port());
  ASSERT_TRUE(owner);
  ASSERT_EQ(netsem::testing::fields(owner->request(req::acquire("a", "lic")))[1], "OK");
  auto waiter = client_through(proxy.port());
  ASSERT_TRUE(waiter && waiter->connected());
  auto granted = std::async(std::launch::async, [&] { return waiter->acquire("lic", {.timeout = 8s}); });
  ASSERT_TRUE(eventually([&] {
    auto look = netsem::testing::Client::connect(server_->port());
    if (!look) return false;
    const auto fields = netsem::testing::fields(look->request(req::get("g", "lic")));
    return fields.size() > 5 && fields[5] == "1";  // one waiter
  }));
  proxy.reset();
  ASSERT_TRUE(eventually([&] { return waiter->stats().resumes == 1; })) << server_->log();
  EXPECT_EQ(granted.wait_for(300ms), std::future_status::timeout) << "the acquire ended before the grant";
  ASSERT_EQ(netsem::testing::fields(owner->request(req::release("r", "lic")))[1], "OK");
  ASSERT_EQ(granted.wait_for(3s), std::future_status::ready);
  Result<Permit> permit = granted.get();
  ASSERT_TRUE(permit) << permit.status().to_string();
  EXPECT_FALSE(permit->is_local());
  EXPECT_FALSE(permit->lost());
  EXPECT_EQ(try_acquire("lic"), "t TIMEOUT");
  EXPECT_EQ(waiter->stats().connection_losses, 0u);
}

TEST_F(ClientResumeTest, AResumeAfterTheServersRestartFindsNoSessionAndLosesThePermit) {
  start_server();
  const std::uint16_t port = server_->port();
  testing::TcpProxy proxy(port);
  ASSERT_NE(proxy.port(), 0);
  auto holder = client_through(proxy.port());
  ASSERT_TRUE(holder && holder->connected());
  Result<Permit> permit = holder->acquire("lic");
  ASSERT_TRUE(permit) << permit.status().to_string();
  std::promise<Status> lost;
  permit->on_lost([&](const Status& reason) { lost.set_value(reason); });
  auto reported = lost.get_future();

  server_->send_signal(SIGKILL);
  server_->wait_exit();
  // Behind the proxy the client cannot tell a dead server from a broken
  // connection: it tries to resume, within its lease (T/2 = 3 s).
  EXPECT_EQ(reported.wait_for(500ms), std::future_status::timeout) << "lost before any RESUME was answered";
  start_server(port);
  ASSERT_EQ(reported.wait_for(4s), std::future_status::ready);
  const Status reason = reported.get();
  EXPECT_EQ(reason.code(), StatusCode::kUnavailable) << reason.to_string();
  // The restarted server let go of the permit with the session: no lease.
  EXPECT_FALSE(permit->stop_by().has_value());
  EXPECT_EQ(holder->stats().resumes, 0u);
  // And the client carries on with a new session.
  ASSERT_TRUE(eventually([&] { return holder->connected(); }));
}

TEST_F(ClientResumeTest, AClosedClientEndsItsResumableSessionAtOnce) {
  // Without QUIT a resumable session would keep its permits for its
  // timeout (6 s) after the client is gone.
  start_server();
  auto holder = client_through(server_->port());
  ASSERT_TRUE(holder && holder->connected());
  Result<Permit> permit = holder->acquire("lic");
  ASSERT_TRUE(permit) << permit.status().to_string();
  holder.reset();  // the permit is lost with its client, not released
  auto other = netsem::testing::Client::connect(server_->port());
  ASSERT_TRUE(other);
  EXPECT_EQ(netsem::testing::fields(other->request(req::acquire("w", "lic", 1, 1000)))[1], "OK");
}

}  // namespace
}  // namespace netsem
