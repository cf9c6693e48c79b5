// A client process out of file descriptors while its server is up and the
// name is held elsewhere (audit 20, C): the connection round that cannot
// make a socket is no outage, so the client neither falls back (a second
// holder) nor reports "no server reachable"; its calls fail with the
// descriptor error, and it reconnects once descriptors are free. The test
// process lowers its own RLIMIT_NOFILE and fills it; netsemd (a child) is
// unaffected. Likewise a host with no local port or source address left to
// connect from (connect()'s EADDRNOTAVAIL), which this test binary's own
// connect() stands in for. Bounded: about 6 s.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "client/connection.h"
#include "client/local_semaphores.h"  // to remove the test's host-wide semaphores
#include "netsem/client.h"
#include "netsemd_harness.h"
#include "support/eventually.h"
#include "support/free_port.h"

namespace {

// Connections to this port, of this address family, fail with EADDRNOTAVAIL
// ("Cannot assign requested address"), as on a host whose ephemeral ports
// are used up or whose source address is gone; 0: none.
std::atomic<int> unavailable_port{0};
std::atomic<int> unavailable_family{AF_INET};

}  // namespace

// This binary's connect() takes the place of libc's for the client library
// linked into it; every other connection is libc's.
extern "C" int connect(int fd, const sockaddr* address, socklen_t length) {
  using Real = int (*)(int, const sockaddr*, socklen_t);
  static const Real real = reinterpret_cast<Real>(::dlsym(RTLD_NEXT, "connect"));
  const int port = unavailable_port.load();
  if (port != 0 && address->sa_family == unavailable_family.load()) {
    const std::uint16_t to = address->sa_family == AF_INET
                                 ? ntohs(reinterpret_cast<const sockaddr_in*>(address)->sin_port)
                                 : ntohs(reinterpret_cast<const sockaddr_in6*>(address)->sin6_port);
    if (to == port) {
      errno = EADDRNOTAVAIL;
      return -1;
    }
  }
  return real(fd, address, length);
}

namespace netsem {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using netsem::testing::Netsemd;

using test_support::eventually;

// Fills the process's descriptor table (under a soft limit lowered to 256)
// until the next socket() fails with EMFILE; the destructor gives all back.
class Exhausted {
 public:
  Exhausted() {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit low = saved_;
    low.rlim_cur = std::min<rlim_t>(saved_.rlim_cur, 256);
    ::setrlimit(RLIMIT_NOFILE, &low);
    fill();
  }
  ~Exhausted() {
    free_all();
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }
  Exhausted(const Exhausted&) = delete;
  Exhausted& operator=(const Exhausted&) = delete;

  // Takes what was freed since (a closed session's socket).
  void fill() {
    for (;;) {
      const int fd = ::dup(STDERR_FILENO);
      if (fd < 0) break;
      fds_.push_back(fd);
    }
  }
  void free_all() {
    for (const int fd : fds_) ::close(fd);
    fds_.clear();
  }
  std::size_t count() const { return fds_.size(); }

 private:
  rlimit saved_{};
  std::vector<int> fds_;
};

// The stage of the tests with a server: netsemd with db = 1, this process's
// client options for it (fallback local, the default, with limit 1), and db
// held by a client as on another host: a registry of its own, so no
// host-wide mark keeps this process's fallback from granting db beside it.
class ClientDescriptorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Netsemd::Options server;
    server.semaphores = "db = 1";
    std::string error;
    netsemd_ = Netsemd::start(server, &error);
    ASSERT_TRUE(netsemd_) << error;
    options_.servers = {"127.0.0.1:" + std::to_string(netsemd_->port())};
    options_.local_dir = scratch_.path() / "local";
    options_.limits["db"] = 1;
    options_.connect_timeout = 500ms;
    ClientOptions elsewhere = options_;
    elsewhere.local_dir = scratch_.path() / "elsewhere";
    Result<std::unique_ptr<Client>> holder = Client::create(elsewhere);
    ASSERT_TRUE(holder) << holder.status().to_string();
    holder_ = std::move(*holder);
    Result<Permit> held = holder_->acquire("db", {.timeout = 1s});
    ASSERT_TRUE(held && !held->is_local());
    held_ = std::move(*held);
  }
  void TearDown() override {
    held_ = Permit();
    holder_.reset();
    for (const char* dir : {"local", "elsewhere"}) {
      EXPECT_TRUE(client::LocalSemaphores(scratch_.path() / dir).remove_all().is_ok());
    }
  }

  netsem::testing::TempDir scratch_;
  std::unique_ptr<Netsemd> netsemd_;
  ClientOptions options_;
  std::unique_ptr<Client> holder_;
  Permit held_;
};

TEST_F(ClientDescriptorsTest, AClientOutOfDescriptorsNeitherFallsBackNorCallsTheServerUnreachable) {
  // One round a second: after the round at EMFILE, the descriptors come
  // back before the next one, as in a busy process whose peak passes.
  options_.reconnect_min = 1s;
  options_.reconnect_max = 1s;
  options_.request_timeout = 3s;
  Result<std::unique_ptr<Client>> client = Client::create(options_);
  ASSERT_TRUE(client);
  const std::uint64_t session = (*client)->stats().session_id;
  ASSERT_NE(session, 0u);

  {
    Exhausted exhausted;
    ASSERT_GT(exhausted.count(), 0u);
    // The client's session ends (its socket closed: taken too); its next
    // round, a second later, cannot make a socket.
    ASSERT_TRUE(holder_->kick(session).is_ok());
    ASSERT_TRUE(eventually([&] { return !(*client)->connected(); }, 3s));
    exhausted.fill();
    ASSERT_TRUE(eventually([&] { return !(*client)->stats().unreachable.empty(); }, 3s));
    // The peak passes before the next round: a fallback would grant db here,
    // beside the holder.
    exhausted.free_all();
    const Result<Permit> permit = (*client)->acquire("db", {.timeout = 0ms});
    ASSERT_FALSE(permit) << "granted db " << (permit->is_local() ? "locally" : "by the server")
                         << " while another session holds it";
    EXPECT_EQ(permit.status().code(), StatusCode::kIoError) << permit.status().to_string();
    EXPECT_NE(permit.status().message().find("this process is out of file descriptors (socket: Too many open files)"),
              std::string::npos)
        << permit.status().message();
    EXPECT_EQ(permit.status().message().find("no server reachable"), std::string::npos) << permit.status().message();
    EXPECT_EQ((*client)->stats().local_grants, 0u);
  }

  // The next round gets through: the server's answer, not a local one.
  ASSERT_TRUE(eventually([&] { return (*client)->connected(); }, 3s));
  EXPECT_EQ((*client)->try_acquire("db").status().code(), StatusCode::kTimeout);
  ASSERT_TRUE(held_.release().is_ok());
  Result<Permit> permit = (*client)->acquire("db", {.timeout = 1s});
  ASSERT_TRUE(permit) << permit.status().to_string();
  EXPECT_FALSE(permit->is_local());
  EXPECT_EQ((*client)->stats().local_grants, 0u);
  EXPECT_TRUE(permit->release().is_ok());
}

// connect()'s EADDRNOTAVAIL is this host's shortage, not an outage: no
// fallback beside the holder, kIoError until a round gets through.
TEST_F(ClientDescriptorsTest, NoLocalPortOrAddressToConnectFromIsNoOutage) {
  options_.reconnect_min = 50ms;
  options_.reconnect_max = 200ms;
  unavailable_port = netsemd_->port();
  Result<std::unique_ptr<Client>> client = Client::create(options_);
  ASSERT_TRUE(client);
  const Result<Permit> permit = (*client)->acquire("db", {.timeout = 0ms});
  unavailable_port = 0;
  ASSERT_FALSE(permit) << "granted db " << (permit->is_local() ? "locally" : "by the server")
                       << " while another session holds it";
  EXPECT_EQ(permit.status().code(), StatusCode::kIoError) << permit.status().to_string();
  EXPECT_NE(permit.status().message().find("this host has no local address or port left to connect from (connect: "
                                           "Cannot assign requested address)"),
            std::string::npos)
      << permit.status().message();
  EXPECT_EQ((*client)->stats().fallback_entries, 0u);
  EXPECT_EQ((*client)->stats().local_grants, 0u);
  // Once a port is free again, the server answers.
  ASSERT_TRUE(eventually([&] { return (*client)->connected(); }, 3s));
  EXPECT_EQ((*client)->try_acquire("db").status().code(), StatusCode::kTimeout);
}

// A name with an IPv6 and an IPv4 address ("localhost" in a container
// without IPv6 on its loopback): EADDRNOTAVAIL from ::1 while 127.0.0.1
// refuses the connection is that family's, not this host's shortage: the
// round reached no server, and the client falls back as before.
TEST(ClientAddressFamilyTest, NoAddressOfOneFamilyBesideARefusedOneIsAnOutage) {
  const std::uint16_t port = test_support::free_port_below_ephemeral();
  ASSERT_NE(port, 0);
  const client::LookupFunction both = [](const char*, const char* service, const addrinfo* hints, addrinfo** out) {
    addrinfo numeric = *hints;
    numeric.ai_family = AF_UNSPEC;
    numeric.ai_flags |= AI_NUMERICHOST;
    addrinfo* v6 = nullptr;
    addrinfo* v4 = nullptr;
    if (const int rc = ::getaddrinfo("::1", service, &numeric, &v6); rc != 0) return rc;
    if (const int rc = ::getaddrinfo("127.0.0.1", service, &numeric, &v4); rc != 0) {
      ::freeaddrinfo(v6);
      return rc;
    }
    addrinfo* last = v6;
    while (last->ai_next != nullptr) last = last->ai_next;
    last->ai_next = v4;
    *out = v6;
    return 0;
  };
  ClientOptions options;
  options.connect_timeout = 500ms;
  options.reconnect_min = 1s;
  options.reconnect_max = 1s;
  unavailable_family = AF_INET6;
  unavailable_port = port;
  const auto connection =
      client::Connection::start(options, {client::Endpoint{.host = "two-families.test", .port = port}}, both);
  connection->wait_first_round(2s);
  const client::Connection::Counters counters = connection->counters();
  connection->stop();
  unavailable_port = 0;
  unavailable_family = AF_INET;
  EXPECT_EQ(counters.fallback_entries, 1u) << counters.unreachable;
  EXPECT_NE(counters.unreachable.find("Connection refused"), std::string::npos) << counters.unreachable;
}

}  // namespace
}  // namespace netsem
