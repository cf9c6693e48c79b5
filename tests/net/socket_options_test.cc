// Keepalive on session sockets (issue 10, item 4): the rule (a dead peer is
// found within the session timeout) as a table, and the options as the
// running netsemd really set them on the socket it accepted, read back with
// getsockopt on a duplicate of that descriptor (pidfd_getfd: the test
// started netsemd, so it may take a copy of its descriptors).
#include "net/socket_options.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::server {
namespace {

using namespace std::chrono_literals;
namespace req = netsem::testing::req;

TEST(KeepAlive, FindsADeadPeerWithinTheSessionTimeout) {
  const struct {
    std::int64_t session_timeout_ms;
    KeepAlive expected;
  } kCases[] = {
      {15000, {.idle_s = 5, .interval_s = 1, .count = 3}},  // the default
      {60000, {.idle_s = 20, .interval_s = 6, .count = 3}},
      {10000, {.idle_s = 3, .interval_s = 1, .count = 3}},
      // Below what whole seconds can say: as fast as TCP allows.
      {300, {.idle_s = 1, .interval_s = 1, .count = 3}},
      {86400000, {.idle_s = 28800, .interval_s = 9600, .count = 3}},
      // Off: about two minutes.
      {0, {.idle_s = 60, .interval_s = 10, .count = 6}},
  };
  for (const auto& [timeout, expected] : kCases) {
    SCOPED_TRACE(timeout);
    const KeepAlive got = keepalive_for(timeout);
    EXPECT_EQ(got.idle_s, expected.idle_s);
    EXPECT_EQ(got.interval_s, expected.interval_s);
    EXPECT_EQ(got.count, expected.count);
    if (timeout > 0) {
      // Probing ends within the timeout, or within 4 s when it is shorter.
      EXPECT_LE(1000 * (got.idle_s + got.count * got.interval_s), std::max<std::int64_t>(timeout, 4000));
    }
  }
}

// The port a connected socket is bound to.
std::uint16_t local_port(int fd) {
  sockaddr_in address{};
  socklen_t size = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  return ntohs(address.sin_port);
}

// A duplicate of the descriptor of process `pid` whose socket's peer is
// 127.0.0.1:`peer_port`, or -1.
int steal_peer_socket(pid_t pid, std::uint16_t peer_port) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return -1;
  int found = -1;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error)) {
    const auto target = std::filesystem::read_symlink(entry.path(), error);
    if (error || !target.string().starts_with("socket:")) continue;
    const int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, std::stoi(entry.path().filename()), 0));
    if (fd < 0) continue;
    sockaddr_in peer{};
    socklen_t size = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &size) == 0 && peer.sin_family == AF_INET &&
        ntohs(peer.sin_port) == peer_port) {
      found = fd;
      break;
    }
    ::close(fd);
  }
  ::close(pidfd);
  return found;
}

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t size = sizeof value;
  if (::getsockopt(fd, level, name, &value, &size) != 0) return -2;
  return value;
}

TEST(ServerKeepAlive, AcceptedSessionSocketsProbeTheirPeer) {
  const struct {
    const char* options;
    KeepAlive expected;
  } kCases[] = {
      {"", keepalive_for(15000)},  // the default session timeout
      {"session_timeout_ms = 0\n", keepalive_for(0)},
  };
  for (const auto& [options, expected] : kCases) {
    SCOPED_TRACE(options);
    auto server = testing::start_server(testing::with_server_options(options));
    ASSERT_TRUE(server);
    auto client = testing::Client::connect(server->port());
    ASSERT_TRUE(client);
    ASSERT_EQ(client->request(req::ping("p")), "p PONG");  // accepted and served
    const int fd = steal_peer_socket(server->pid(), local_port(client->fd()));
    if (fd < 0 && (errno == EPERM || errno == ENOSYS)) GTEST_SKIP() << "pidfd_getfd not allowed here";
    ASSERT_GE(fd, 0) << "no socket of netsemd has this client as its peer";
    EXPECT_EQ(int_option(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE), expected.idle_s);
    EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL), expected.interval_s);
    EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPCNT), expected.count);
    EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);  // the kernel's: see socket_options.h
    ::close(fd);
  }
}

// A peer as the log and the answers name it: an IPv4 client of a dual-stack
// socket as IPv4 (as the allow list takes it), IPv6 in brackets.
TEST(DescribePeer, WritesIpv4PlainMappedIpv4AsIpv4AndIpv6InBrackets) {
  using asio::ip::make_address;
  using asio::ip::tcp;
  EXPECT_EQ(describe_peer(tcp::endpoint(make_address("10.0.0.7"), 40112)), "10.0.0.7:40112");
  EXPECT_EQ(describe_peer(tcp::endpoint(make_address("::ffff:10.0.0.7"), 40112)), "10.0.0.7:40112");
  EXPECT_EQ(describe_peer(tcp::endpoint(make_address("::1"), 53559)), "[::1]:53559");
}

}  // namespace
}  // namespace netsem::server
