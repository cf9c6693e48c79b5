// Resuming a session over TLS (issue 16; docs/client.md, "Resuming the
// session"): each resume attempt, its TLS handshake included, ends with the
// lease, not at connect_timeout. A Client behind a TcpProxy the test
// controls, against the real netsemd with TLS (certificates made by
// tests/tls/tls_support.h): the proxy resets the connection, then accepts
// nothing, so a new connection completes in the kernel's backlog and its TLS
// handshake is never answered. Bounded: a few seconds.
#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "client/local_semaphores.h"
#include "netsem/client.h"
#include "tcp_proxy.h"
#include "tls/tls_support.h"

namespace netsem::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The lease is T/2 = 3 s; connect_timeout is 10 s. Before, the attempt's TLS
// handshake waited the whole connect_timeout: the loss came 10 s after the
// break, past the lease, with a stop_by long gone by then.
TEST(ClientResumeTls, AResumeAttemptEndsWithTheLeaseNotAtConnectTimeout) {
  Pki pki;
  TempDir scratch;
  const TlsServer tls = start_tls_server(tls_server_options(pki) + "session_timeout_ms = 6000\n", "pool = 1\n");
  ASSERT_NE(tls.tls_port, 0);
  TcpProxy proxy(tls.tls_port);
  ASSERT_NE(proxy.port(), 0);
  ClientOptions options = tls_client_options(pki, proxy.port(), scratch.path() / "local");
  options.connect_timeout = 10s;
  options.request_timeout = 5s;
  options.reconnect_min = 20ms;
  options.reconnect_max = 100ms;
  options.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kFail};
  {
    auto client = netsem::Client::create(options);
    ASSERT_TRUE(client) << client.status().to_string();
    ASSERT_TRUE((*client)->connected()) << (*client)->stats().unreachable;
    Result<Permit> permit = (*client)->acquire("pool", {.timeout = 2s});
    ASSERT_TRUE(permit) << permit.status().to_string();
    ASSERT_FALSE(permit->is_local());
    std::promise<Status> lost;
    permit->on_lost([&](const Status& reason) { lost.set_value(reason); });
    auto reported = lost.get_future();

    proxy.freeze();
    const auto broken = Clock::now();
    proxy.reset();
    ASSERT_EQ(reported.wait_for(6s), std::future_status::ready) << "the resume ran past the lease";
    const auto after = Clock::now() - broken;
    std::printf("lost %lld ms after the break\n", static_cast<long long>(after / 1ms));
    EXPECT_LT(after, 4s);
    EXPECT_EQ(reported.get().code(), StatusCode::kUnavailable);
    // Nobody answered within the lease: lost with the lease's stop_by.
    EXPECT_TRUE(permit->stop_by().has_value());
    EXPECT_EQ((*client)->stats().resumes, 0u);
  }
  EXPECT_TRUE(client::LocalSemaphores(scratch.path() / "local").remove_all().is_ok());
}

}  // namespace
}  // namespace netsem::testing
