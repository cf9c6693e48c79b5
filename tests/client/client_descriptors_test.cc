// A client process out of file descriptors while its server is up and the
// name is held elsewhere (audit 20, C): the connection round that cannot
// make a socket is no outage, so the client neither falls back (a second
// holder) nor reports "no server reachable"; its calls fail with the
// descriptor error, and it reconnects once descriptors are free. The test
// process lowers its own RLIMIT_NOFILE and fills it; netsemd (a child) is
// unaffected. Bounded: about 4 s.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "client/local_semaphores.h"  // to remove the test's host-wide semaphores
#include "netsem/client.h"
#include "netsemd_harness.h"
#include "support/eventually.h"

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

TEST(ClientDescriptorsTest, AClientOutOfDescriptorsNeitherFallsBackNorCallsTheServerUnreachable) {
  netsem::testing::TempDir scratch;
  Netsemd::Options server;
  server.semaphores = "db = 1";
  std::string error;
  const std::unique_ptr<Netsemd> netsemd = Netsemd::start(server, &error);
  ASSERT_TRUE(netsemd) << error;

  ClientOptions options;
  options.servers = {"127.0.0.1:" + std::to_string(netsemd->port())};
  options.local_dir = scratch.path() / "local";
  options.limits["db"] = 1;  // fallback local (the default), limit 1
  options.connect_timeout = 500ms;
  // One round a second: after the round at EMFILE, the descriptors come
  // back before the next one, as in a busy process whose peak passes.
  options.reconnect_min = 1s;
  options.reconnect_max = 1s;
  options.request_timeout = 3s;
  // The holder is as on another host: a registry of its own, so no host-wide
  // mark keeps the client's fallback from granting db beside it.
  ClientOptions elsewhere = options;
  elsewhere.local_dir = scratch.path() / "elsewhere";
  Result<std::unique_ptr<Client>> holder = Client::create(elsewhere);
  Result<std::unique_ptr<Client>> client = Client::create(options);
  ASSERT_TRUE(holder && client);
  Result<Permit> held = (*holder)->acquire("db", {.timeout = 1s});
  ASSERT_TRUE(held && !held->is_local());
  const std::uint64_t session = (*client)->stats().session_id;
  ASSERT_NE(session, 0u);

  {
    Exhausted exhausted;
    ASSERT_GT(exhausted.count(), 0u);
    // The client's session ends (its socket closed: taken too); its next
    // round, a second later, cannot make a socket.
    ASSERT_TRUE((*holder)->kick(session).is_ok());
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
  ASSERT_TRUE(held->release().is_ok());
  Result<Permit> permit = (*client)->acquire("db", {.timeout = 1s});
  ASSERT_TRUE(permit) << permit.status().to_string();
  EXPECT_FALSE(permit->is_local());
  EXPECT_EQ((*client)->stats().local_grants, 0u);
  EXPECT_TRUE(permit->release().is_ok());
  EXPECT_TRUE(client::LocalSemaphores(options.local_dir).remove_all().is_ok());
  EXPECT_TRUE(client::LocalSemaphores(elsewhere.local_dir).remove_all().is_ok());
}

}  // namespace
}  // namespace netsem
