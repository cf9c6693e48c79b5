// RaftPort (src/raft/raft_port.h) in-process, on a transport whose accept
// callback stands in for libraft's (uv_recv.c: it keeps the stream, its own
// object as the stream's data, and closes and frees it with raft_free when
// the stream ends): the streams it hands over have TCP_NODELAY and TCP
// keepalive; at most max_open_per_claim streams of a source claiming one id
// and max_open_per_source of a source in all are open, and one closed makes
// room again; refusals are logged through a LogRateLimit, the first at once
// and the rest as one line with their count. Its connect binds the source
// host and writes libraft's handshake before handing the stream over, falls
// back to an unbound socket when the host is not this machine's, and a
// close cancels a connect in flight. The end-to-end cases (real
// netsemd processes) are in tests/cluster/netsemd_cluster_test.cc.
#include "raft/raft_port.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

extern "C" {
#include <raft.h>
#include <raft/uv.h>
}

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/captured_log.h"
#include "support/free_port.h"

namespace netsem::raft {
namespace {

using namespace std::chrono_literals;

class RaftPortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    transport_.data = this;
    transport_.connect = [](raft_uv_transport*, raft_uv_connect*, raft_id, const char*, raft_uv_connect_cb) {
      return RAFT_NOCONNECTION;
    };
    transport_.close = [](raft_uv_transport* t, raft_uv_transport_close_cb cb) { cb(t); };
    port_number_ = test_support::free_port_below_ephemeral();
    ASSERT_NE(port_number_, 0);
  }

  void open(std::size_t per_claim = 2, std::size_t per_source = 16, std::string source_host = "") {
    RaftPortOptions options;
    options.source_host = std::move(source_host);
    options.listen_address = "127.0.0.1:" + std::to_string(port_number_);
    options.max_open_per_claim = per_claim;
    options.max_open_per_source = per_source;
    port_ = std::make_unique<RaftPort>(&transport_, &loop_, std::move(options));
    ASSERT_EQ(transport_.listen(&transport_, on_accept), 0);
  }

  void TearDown() override {
    if (port_ != nullptr) {
      for (uv_stream_t* stream : std::vector(accepted_)) end(stream);
      bool closed = false;
      transport_.data = &closed;
      transport_.close(&transport_, [](raft_uv_transport* t) { *static_cast<bool*>(t->data) = true; });
      uv_run(&loop_, UV_RUN_DEFAULT);
      EXPECT_TRUE(closed);
      port_.reset();
    }
    clients_.clear();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // What libraft's accept callback does with a stream: keeps it, its own
  // object as the stream's data.
  static void on_accept(raft_uv_transport* t, raft_id id, const char*, uv_stream_t* stream) {
    auto* self = static_cast<RaftPortTest*>(t->data);
    stream->data = &self->servers_[self->accepted_.size() % self->servers_.size()];
    self->accepted_.push_back(stream);
    self->ids_.push_back(id);
  }
  // And how libraft ends one (uvServerAbort, uvServerDestroy).
  void end(uv_stream_t* stream) {
    uv_close(reinterpret_cast<uv_handle_t*>(stream), [](uv_handle_t* handle) { raft_free(handle); });
    std::erase(accepted_, stream);
  }

  // A connection to the port that sends libraft's handshake claiming `id`.
  int handshake(std::uint64_t id) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port_number_);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
    char address[16] = "127.0.0.9:1";
    const std::uint64_t preamble[3] = {1, id, sizeof address};
    EXPECT_EQ(::send(fd, preamble, sizeof preamble, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof preamble));
    EXPECT_EQ(::send(fd, address, sizeof address, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof address));
    clients_.emplace_back(fd);
    return fd;
  }

  // Runs the loop until `done` (at most 5 s).
  bool run_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop_, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }
  std::uint64_t refused(PortRefusal reason) const { return port_->refused()[static_cast<std::size_t>(reason)]; }

  // Whether the port closed `fd`'s connection.
  static bool closed(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) != 1) return false;
    char byte = 0;
    return ::recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
  }

  struct Fd {
    explicit Fd(int f) : fd(f) {}
    Fd(Fd&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
    int fd;
  };

  uv_loop_t loop_{};
  raft_uv_transport transport_{};
  std::uint16_t port_number_ = 0;
  std::unique_ptr<RaftPort> port_;
  std::vector<uv_stream_t*> accepted_;
  std::vector<raft_id> ids_;
  std::array<int, 64> servers_{};  // the stand-ins for libraft's uvServers
  std::vector<Fd> clients_;
};

// A listener of the test's on 127.0.0.1 (any port): its port.
std::uint16_t listen_on_loopback(int* fd) {
  *fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof at;
  if (::bind(*fd, reinterpret_cast<const sockaddr*>(&at), sizeof at) != 0 || ::listen(*fd, 8) != 0 ||
      ::getsockname(*fd, reinterpret_cast<sockaddr*>(&at), &length) != 0) {
    return 0;
  }
  return ntohs(at.sin_port);
}

struct Connected {
  bool called = false;
  uv_stream_t* stream = nullptr;
  int status = -1;
};
void on_connected(raft_uv_connect* req, uv_stream_t* stream, int status) {
  auto* c = static_cast<Connected*>(req->data);
  c->called = true;
  c->stream = stream;
  c->status = status;
}

int socket_option(uv_stream_t* stream, int level, int name) {
  uv_os_fd_t fd = -1;
  EXPECT_EQ(uv_fileno(reinterpret_cast<uv_handle_t*>(stream), &fd), 0);
  int value = -1;
  socklen_t length = sizeof value;
  EXPECT_EQ(::getsockopt(fd, level, name, &value, &length), 0);
  return value;
}

// libraft only reads a stream it accepted: one whose peer host is gone
// would stay open for ever without keepalive (30 s here: 15 s idle, then 3
// probes 5 s apart).
TEST_F(RaftPortTest, AStreamHandedOverHasKeepaliveAndNoDelay) {
  open();
  handshake(3);
  ASSERT_TRUE(run_until([&] { return accepted_.size() == 1; }));
  EXPECT_EQ(ids_[0], 3u);
  uv_stream_t* stream = accepted_[0];
  EXPECT_EQ(socket_option(stream, SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(socket_option(stream, IPPROTO_TCP, TCP_KEEPIDLE), 15);
  EXPECT_EQ(socket_option(stream, IPPROTO_TCP, TCP_KEEPINTVL), 5);
  EXPECT_EQ(socket_option(stream, IPPROTO_TCP, TCP_KEEPCNT), 3);
  EXPECT_EQ(socket_option(stream, IPPROTO_TCP, TCP_NODELAY), 1);
}

// Two streams of 127.0.0.1 claiming server 5 are open: a third is closed
// after its handshake; one claiming 6 is taken. Once libraft ended one of
// server 5's (closed and freed it), another one claiming 5 is taken. The
// refusals are logged once at first and their count at the close.
TEST_F(RaftPortTest, AtMostTwoStreamsOfASourceClaimingOneIdAreOpen) {
  ::test_support::CapturedLog log;
  open();
  handshake(5);
  handshake(5);
  ASSERT_TRUE(run_until([&] { return accepted_.size() == 2; }));
  const int third = handshake(5);
  ASSERT_TRUE(run_until([&] { return refused(PortRefusal::kStreams) == 1; }));
  EXPECT_TRUE(closed(third));
  handshake(6);
  ASSERT_TRUE(run_until([&] { return accepted_.size() == 3; }));
  EXPECT_EQ(ids_[2], 6u);
  const int fourth = handshake(5);
  ASSERT_TRUE(run_until([&] { return refused(PortRefusal::kStreams) == 2; }));
  EXPECT_TRUE(closed(fourth));

  end(accepted_[0]);
  handshake(5);
  ASSERT_TRUE(run_until([&] { return ids_.size() == 4; }));
  EXPECT_EQ(ids_[3], 5u);
  EXPECT_EQ(accepted_.size(), 3u);
  const int fifth = handshake(5);
  ASSERT_TRUE(run_until([&] { return refused(PortRefusal::kStreams) == 3; }));
  EXPECT_TRUE(closed(fifth));

  const std::string last =
      "warning raft: refused a connection to the Raft port from 127.0.0.1: closed after its handshake: 2 streams "
      "from that host claiming server 5 (at most 2) and 3 from that host in all (at most 16) are open with libraft";
  std::string text = log.text();
  EXPECT_EQ(text.find("warning raft: refused a connection to the Raft port from 127.0.0.1: closed after its "
                      "handshake: 2 streams from that host claiming server 5 (at most 2) and 2 from that host in "
                      "all (at most 16) are open with libraft\n"),
            0u)
      << text;
  EXPECT_EQ(text.find("refused", text.find('\n')), std::string::npos) << "logged more than once in 10 s\n" << text;
  // The count of the rest is written at the close (or once the 10 s are over).
  for (uv_stream_t* stream : std::vector(accepted_)) end(stream);
  bool closed_transport = false;
  transport_.data = &closed_transport;
  transport_.close(&transport_, [](raft_uv_transport* t) { *static_cast<bool*>(t->data) = true; });
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_TRUE(closed_transport);
  port_.reset();
  text = log.text();
  EXPECT_NE(text.find(last + " (and 1 more from 127.0.0.1 in the last 10 s)\n"), std::string::npos) << text;
}

// A source in all: at most max_open_per_source (3 here), whatever ids it
// claims (raft_allowed_networks may claim any).
TEST_F(RaftPortTest, AtMostMaxOpenPerSourceStreamsOfASourceAreOpen) {
  open(2, 3);
  for (std::uint64_t id = 1; id <= 3; ++id) handshake(id);
  ASSERT_TRUE(run_until([&] { return accepted_.size() == 3; }));
  const int fourth = handshake(4);
  ASSERT_TRUE(run_until([&] { return refused(PortRefusal::kStreams) == 1; }));
  EXPECT_TRUE(closed(fourth));
  end(accepted_[1]);
  handshake(4);
  ASSERT_TRUE(run_until([&] { return ids_.size() == 4; }));
  EXPECT_EQ(ids_[3], 4u);
}

// libraft's own connect binds nothing: between two loopback addresses its
// connections left from 127.0.0.1. RaftPort's leaves from source_host and
// writes the handshake libraft would (protocol 1, this server's id, its
// address padded to 8 with its NUL), then hands the stream over.
TEST_F(RaftPortTest, AConnectionLeavesFromTheSourceHostWithLibraftsHandshake) {
  open(2, 16, "127.0.0.5");
  ASSERT_EQ(transport_.init(&transport_, 7, "127.0.0.5:9001"), 0);
  int listener = -1;
  const std::uint16_t to = listen_on_loopback(&listener);
  Fd listening(listener);
  ASSERT_NE(to, 0);
  Connected connected;
  raft_uv_connect req{};
  req.data = &connected;
  const std::string address = "127.0.0.1:" + std::to_string(to);
  ASSERT_EQ(transport_.connect(&transport_, &req, 2, address.c_str(), on_connected), 0);
  ASSERT_TRUE(run_until([&] { return connected.called; }));
  ASSERT_EQ(connected.status, 0);
  ASSERT_NE(connected.stream, nullptr);
  EXPECT_EQ(socket_option(connected.stream, IPPROTO_TCP, TCP_NODELAY), 1);

  sockaddr_in from{};
  socklen_t length = sizeof from;
  Fd peer(::accept(listener, reinterpret_cast<sockaddr*>(&from), &length));
  ASSERT_GE(peer.fd, 0);
  EXPECT_EQ(ntohl(from.sin_addr.s_addr), 0x7f000005u);
  std::uint64_t preamble[3] = {};
  ASSERT_EQ(::recv(peer.fd, preamble, sizeof preamble, MSG_WAITALL), static_cast<ssize_t>(sizeof preamble));
  EXPECT_EQ(preamble[0], 1u);
  EXPECT_EQ(preamble[1], 7u);
  EXPECT_EQ(preamble[2], 16u);  // "127.0.0.5:9001" and its NUL, padded to 8
  char sent[16] = {};
  ASSERT_EQ(::recv(peer.fd, sent, sizeof sent, MSG_WAITALL), static_cast<ssize_t>(sizeof sent));
  EXPECT_EQ(std::string(sent, sizeof sent), std::string("127.0.0.5:9001\0\0", 16));
  uv_close(reinterpret_cast<uv_handle_t*>(connected.stream), [](uv_handle_t* handle) { raft_free(handle); });
}

// A source host that is no address of this machine (a translated one): the
// connection leaves from where the kernel chooses, said once.
TEST_F(RaftPortTest, ASourceHostOfAnotherMachineLeavesTheChoiceToTheKernelAndSaysSoOnce) {
  ::test_support::CapturedLog log;
  open(2, 16, "192.0.2.1");
  ASSERT_EQ(transport_.init(&transport_, 7, "192.0.2.1:9001"), 0);
  int listener = -1;
  const std::uint16_t to = listen_on_loopback(&listener);
  Fd listening(listener);
  const std::string address = "127.0.0.1:" + std::to_string(to);
  for (int i = 0; i < 2; ++i) {
    Connected connected;
    raft_uv_connect req{};
    req.data = &connected;
    ASSERT_EQ(transport_.connect(&transport_, &req, 2, address.c_str(), on_connected), 0);
    ASSERT_TRUE(run_until([&] { return connected.called; }));
    ASSERT_EQ(connected.status, 0);
    sockaddr_in from{};
    socklen_t length = sizeof from;
    Fd peer(::accept(listener, reinterpret_cast<sockaddr*>(&from), &length));
    EXPECT_EQ(ntohl(from.sin_addr.s_addr), 0x7f000001u);
    uv_close(reinterpret_cast<uv_handle_t*>(connected.stream), [](uv_handle_t* handle) { raft_free(handle); });
  }
  const std::string text = log.text();
  EXPECT_EQ(text.find("warning raft: connections to the other servers' Raft ports cannot leave from 192.0.2.1 (Cannot "
                      "assign requested address): they leave from an address the kernel chooses"),
            0u)
      << text;
  EXPECT_EQ(text.find("cannot leave", text.find('\n')), std::string::npos) << text;
}

// The transport's close ends a connect still in flight: libraft is told
// RAFT_CANCELED (and then the transport is closed), as with its own.
TEST_F(RaftPortTest, TheCloseCancelsAConnectInFlight) {
  open(2, 16, "127.0.0.5");
  ASSERT_EQ(transport_.init(&transport_, 7, "127.0.0.5:9001"), 0);
  Connected connected;
  raft_uv_connect req{};
  req.data = &connected;
  int listener = -1;
  const std::uint16_t to = listen_on_loopback(&listener);
  Fd listening(listener);
  const std::string address = "127.0.0.1:" + std::to_string(to);
  // Closed before the loop ran: the connect has not completed.
  ASSERT_EQ(transport_.connect(&transport_, &req, 2, address.c_str(), on_connected), 0);
  EXPECT_FALSE(connected.called);
  bool closed_transport = false;
  transport_.data = &closed_transport;
  transport_.close(&transport_, [](raft_uv_transport* t) { *static_cast<bool*>(t->data) = true; });
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_TRUE(connected.called);
  EXPECT_EQ(connected.status, RAFT_CANCELED);
  EXPECT_EQ(connected.stream, nullptr);
  EXPECT_TRUE(closed_transport);
  port_.reset();
}

}  // namespace
}  // namespace netsem::raft
