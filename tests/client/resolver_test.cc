// Tests of resolve(): numeric addresses never reach the name lookup, names
// do, and a lookup that hangs (a dead DNS, stood in by a lookup function that
// blocks until the test lets it go) costs no more than the deadline or a
// stop, both for resolve() alone and for a Connection's stop(); a call made
// while the first round hangs so waits for that round; a lookup cut after a
// silent attempt is silent too (rule 8).
#include "client/resolver.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "client/connection.h"
#include "protocol/requests.h"
#include "support/free_port.h"

namespace netsem::client {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A lookup that blocks until release(), then answers 127.0.0.1, counting calls.
struct HangingDns {
  std::mutex mutex;
  std::condition_variable cv;
  bool released = false;
  std::atomic<int> calls{0};

  void release() {
    {
      std::lock_guard lock(mutex);
      released = true;
    }
    cv.notify_all();
  }
};

LookupFunction hanging_lookup(const std::shared_ptr<HangingDns>& dns) {
  return [dns](const char*, const char* service, const addrinfo* hints, addrinfo** out) {
    ++dns->calls;
    std::unique_lock lock(dns->mutex);
    dns->cv.wait(lock, [&] { return dns->released; });
    return ::getaddrinfo("127.0.0.1", service, hints, out);
  };
}

class ResolverTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_GE(wake_fd_, 0); }
  void TearDown() override {
    dns_->release();  // lets detached lookups finish before the process ends
    ::close(wake_fd_);
  }

  Resolution resolve_with(const std::string& host, Clock::duration budget, const LookupFunction& lookup) {
    return resolve(
        host, 53559, Clock::now() + budget, wake_fd_, [this] { return stopping_.load(); }, lookup);
  }

  const int wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::atomic<bool> stopping_{false};
  std::shared_ptr<HangingDns> dns_ = std::make_shared<HangingDns>();
};

std::string first_address(const Resolution& resolution) {
  if (!resolution.addresses) return "";
  char text[INET6_ADDRSTRLEN] = {};
  const addrinfo* address = resolution.addresses.get();
  const void* raw = address->ai_family == AF_INET
                        ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(address->ai_addr)->sin_addr)
                        : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(address->ai_addr)->sin6_addr);
  ::inet_ntop(address->ai_family, raw, text, sizeof text);
  return text;
}

TEST_F(ResolverTest, NumericAddressesNeverCallTheLookup) {
  for (const std::string host : {"127.0.0.1", "::1", "10.1.2.3"}) {
    const Resolution resolution = resolve_with(host, 1s, hanging_lookup(dns_));
    EXPECT_EQ(first_address(resolution), host) << resolution.error;
  }
  EXPECT_EQ(dns_->calls.load(), 0);
}

TEST_F(ResolverTest, NamesAreLookedUp) {
  dns_->release();
  const Resolution resolution = resolve_with("netsem.example", 5s, hanging_lookup(dns_));
  EXPECT_EQ(first_address(resolution), "127.0.0.1") << resolution.error;
  EXPECT_EQ(dns_->calls.load(), 1);
}

TEST_F(ResolverTest, AFailedLookupSaysWhy) {
  const LookupFunction unknown = [](const char*, const char*, const addrinfo*, addrinfo**) { return EAI_NONAME; };
  const Resolution resolution = resolve_with("no-such-host.example", 5s, unknown);
  EXPECT_FALSE(resolution.addresses);
  EXPECT_NE(resolution.error.find("cannot resolve"), std::string::npos) << resolution.error;
}

TEST_F(ResolverTest, AHangingLookupEndsAtTheDeadline) {
  const auto start = Clock::now();
  const Resolution resolution = resolve_with("dead-dns.example", 200ms, hanging_lookup(dns_));
  const auto took = Clock::now() - start;
  EXPECT_FALSE(resolution.addresses);
  EXPECT_NE(resolution.error.find("longer than the connect timeout"), std::string::npos) << resolution.error;
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 2s);
}

TEST_F(ResolverTest, AStopEndsAHangingLookup) {
  std::thread stopper([this] {
    std::this_thread::sleep_for(100ms);
    stopping_ = true;
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(wake_fd_, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  });
  const auto start = Clock::now();
  const Resolution resolution = resolve_with("dead-dns.example", 60s, hanging_lookup(dns_));
  const auto took = Clock::now() - start;
  stopper.join();
  EXPECT_FALSE(resolution.addresses);
  EXPECT_LT(took, 5s);
}

TEST_F(ResolverTest, AWakeUpWithoutAStopKeepsWaiting) {
  std::thread poker([this] {
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(wake_fd_, &one, sizeof one), static_cast<ssize_t>(sizeof one));
    std::this_thread::sleep_for(100ms);
    dns_->release();
  });
  const Resolution resolution = resolve_with("slow-dns.example", 10s, hanging_lookup(dns_));
  poker.join();
  EXPECT_EQ(first_address(resolution), "127.0.0.1") << resolution.error;
}

TEST_F(ResolverTest, AConnectionStopsWhileItsServerNameHangs) {
  ClientOptions options;
  options.connect_timeout = 60s;
  auto connection = Connection::start(options, {Endpoint{"dead-dns.example", 53559}}, hanging_lookup(dns_));
  while (dns_->calls.load() == 0) std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(connection->connected());
  const auto start = Clock::now();
  connection->stop();
  EXPECT_LT(Clock::now() - start, 5s);
}

// A call made while the first round of connection attempts is still under
// way (it outlasted Client::create's wait: here its name lookup hangs) waits
// for that round, which decides: here it reaches no server. Before, such a
// call was told "no server" at once, and an acquire fell back while the
// round could still reach a server.
TEST_F(ResolverTest, ACallMadeBeforeTheFirstRoundEndsWaitsForThatRound) {
  ClientOptions options;
  options.connect_timeout = 5s;
  const std::uint16_t port = test_support::free_port_below_ephemeral();
  ASSERT_NE(port, 0);
  auto connection = Connection::start(options, {Endpoint{"slow-dns.example", port}}, hanging_lookup(dns_));
  while (dns_->calls.load() == 0) std::this_thread::sleep_for(5ms);
  Connection::Unsent unsent;
  const auto call = connection->send([](std::string& line, std::string_view tag) { protocol::encode_ping(line, tag); },
                                     0, false, &unsent);
  EXPECT_EQ(call, nullptr);
  EXPECT_TRUE(unsent.wait) << "told no server before the first round ended";
  dns_->release();
  std::uint64_t session = 0;
  Status why;
  EXPECT_EQ(connection->await_session(unsent.after, Clock::now() + 5s, std::nullopt, {}, session, why),
            Connection::NextSession::kNoServer);
  EXPECT_TRUE(why.is_ok()) << why.to_string();
  EXPECT_NE(connection->counters().unreachable.find("Connection refused"), std::string::npos)
      << "answered before the round ended: " << connection->counters().unreachable;
  connection->stop();
}

// Rule 9 of the silent server: once the server was silent, the next rounds
// wait on the silent attempt's connection, kept open, and neither look the
// name up again nor connect anew: the name answers once, to find a listener
// that accepts and never answers, then hangs (a lookup would be cut at
// connect_timeout, and rule 8 would take that as silent too). Without rule 9
// the second round's lookup hangs.
TEST_F(ResolverTest, ASilentAttemptIsWaitedOnWithoutLookingTheNameUpAgain) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener, 64), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const LookupFunction hangs = hanging_lookup(dns_);
  auto calls = std::make_shared<std::atomic<int>>(0);
  const LookupFunction once_then_hangs = [hangs, calls](const char* host, const char* service, const addrinfo* hints,
                                                        addrinfo** out) {
    return ++*calls == 1 ? ::getaddrinfo("127.0.0.1", service, hints, out) : hangs(host, service, hints, out);
  };
  ClientOptions options;
  options.connect_timeout = 300ms;
  options.reconnect_min = 20ms;
  options.reconnect_max = 50ms;
  auto connection = Connection::start(options, {Endpoint{"frozen.example", ntohs(address.sin_port)}}, once_then_hangs);
  // Rounds after the first: each waits on the kept connection (300 ms).
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(calls->load(), 1) << "looked the name up again";
  const Connection::Counters counters = connection->counters();
  EXPECT_NE(counters.unreachable.find("frozen.example:" + std::to_string(ntohs(address.sin_port)) +
                                      ": accepted the connection "),
            std::string::npos)
      << counters.unreachable;
  EXPECT_NE(counters.unreachable.find(" ms ago and has not answered HELLO (the same connection, kept open)"),
            std::string::npos)
      << counters.unreachable;
  EXPECT_EQ(counters.fallback_entries, 0u) << counters.unreachable;
  connection->stop();
  ::close(listener);
}

}  // namespace
}  // namespace netsem::client
