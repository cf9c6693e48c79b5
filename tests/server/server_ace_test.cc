// Integration: the ACE dialect against the real netsemd, spoken by AceClient,
// a test client as strict as ACE's Python NetworkSemaphoreClient (see
// docs/protocol.md, "ACE"): one `acquire:<name>|` write, reads of at most 128
// bytes that must each hold only whole `wait|` / `locked|` tokens, `wait|`
// keep-alives, and a `release|` answered by exactly `ok|` in one read, then
// the close. Protocol v1 clients (the harness's Client) look at the same
// semaphores to check that both dialects share one table and one FIFO queue.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Bytes as a readable C-string literal, for failure messages.
std::string escape(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\\') {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", byte);
      out += hex;
    }
  }
  return '"' + out + '"';
}

// The client side of ACE's protocol, byte for byte as ACE's client speaks it,
// and at least as strict about what it reads. Every read waits with a
// deadline, so a test fails instead of hanging.
class AceClient {
 public:
  // What one recv(128) brought.
  enum class Got { kWait, kLocked, kEof, kTimeout, kInvalid };

  // Connects to 127.0.0.1:port with no socket options, as ACE's client does.
  static std::unique_ptr<AceClient> connect(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ::close(fd);
      return nullptr;
    }
    return std::unique_ptr<AceClient>(new AceClient(fd));
  }

  ~AceClient() { close(); }
  AceClient(const AceClient&) = delete;
  AceClient& operator=(const AceClient&) = delete;

  // Sends `bytes` in one write (ACE's sendall of a short string).
  void send(std::string_view bytes) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(bytes.size())) {
      ADD_FAILURE() << "ACE send of " << escape(bytes) << " failed: " << std::strerror(errno);
    }
  }
  void acquire(std::string_view name) { send("acquire:" + std::string(name) + "|"); }
  void keep_alive() { send("wait|"); }

  // One recv(128) within `timeout`, checked as ACE's client would (but
  // stricter): only whole `wait|` tokens, optionally ending with one
  // `locked|`; and nothing at all once locked. kInvalid adds a failure.
  Got read(std::chrono::milliseconds timeout) {
    last_.clear();
    last_wait_tokens_ = 0;
    if (!fill(timeout)) return eof_ ? Got::kEof : Got::kTimeout;
    if (locked_) {
      ADD_FAILURE() << "ACE client read " << escape(last_) << " after locked| (only ok| may follow, after release|)";
      return Got::kInvalid;
    }
    std::string_view rest = last_;
    while (rest.starts_with("wait|")) {
      rest.remove_prefix(5);
      ++last_wait_tokens_;
    }
    if (rest.empty()) return Got::kWait;
    if (rest == "locked|") {
      locked_ = true;
      return Got::kLocked;
    }
    ADD_FAILURE() << "ACE client read " << escape(last_) << ": not whole wait|/locked| tokens";
    return Got::kInvalid;
  }

  // Reads until `locked|` within `timeout`; each read before it must be
  // `wait|` tokens, whose arrival times go to `waits` (if given).
  ::testing::AssertionResult await_locked(std::chrono::milliseconds timeout,
                                          std::vector<Clock::time_point>* waits = nullptr) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return ::testing::AssertionFailure() << "no locked| within " << timeout.count() << " ms";
      switch (read(left)) {
        case Got::kLocked:
          return ::testing::AssertionSuccess();
        case Got::kWait:
          if (waits) waits->push_back(Clock::now());
          break;
        case Got::kEof:
          return ::testing::AssertionFailure() << "connection closed before locked|";
        case Got::kTimeout:
          return ::testing::AssertionFailure() << "no locked| within " << timeout.count() << " ms";
        case Got::kInvalid:
          return ::testing::AssertionFailure() << "invalid read " << escape(last_);
      }
    }
  }

  // Sends `release|` (or `bytes`, which must contain it) and expects exactly
  // `ok|` in one read, then the end of the stream.
  ::testing::AssertionResult release(std::string_view bytes = "release|") {
    send(bytes);
    last_.clear();
    if (!fill(3s)) return ::testing::AssertionFailure() << (eof_ ? "closed without ok|" : "no answer to release|");
    if (last_ != "ok|") return ::testing::AssertionFailure() << "release answered " << escape(last_) << ", not ok|";
    locked_ = false;
    last_.clear();
    if (fill(3s)) return ::testing::AssertionFailure() << "bytes after ok|: " << escape(last_);
    if (!eof_) return ::testing::AssertionFailure() << "the server did not close after ok|";
    return ::testing::AssertionSuccess();
  }

  // The server closes within `timeout` without sending a single byte.
  ::testing::AssertionResult closed_silently(std::chrono::milliseconds timeout = 3s) {
    last_.clear();
    if (fill(timeout)) return ::testing::AssertionFailure() << "the server sent " << escape(last_);
    if (!eof_) return ::testing::AssertionFailure() << "the server did not close within " << timeout.count() << " ms";
    return ::testing::AssertionSuccess();
  }

  // Neither a byte nor the end of the stream arrives for `period`.
  ::testing::AssertionResult quiet_for(std::chrono::milliseconds period) {
    last_.clear();
    if (fill(period)) return ::testing::AssertionFailure() << "the server sent " << escape(last_);
    if (eof_) return ::testing::AssertionFailure() << "the server closed the connection";
    return ::testing::AssertionSuccess();
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // The bytes of the last read, and how many `wait|` tokens it held.
  const std::string& last() const { return last_; }
  int last_wait_tokens() const { return last_wait_tokens_; }

 private:
  explicit AceClient(int fd) : fd_(fd) {}

  // One recv of at most 128 bytes into last_; false on timeout or EOF.
  bool fill(std::chrono::milliseconds timeout) {
    if (eof_ || fd_ < 0) return false;
    pollfd poll_fd{fd_, POLLIN, 0};
    if (::poll(&poll_fd, 1, static_cast<int>(std::max<std::int64_t>(timeout.count(), 0))) <= 0) return false;
    char chunk[128];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    last_.assign(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool eof_ = false;
  bool locked_ = false;
  std::string last_;
  int last_wait_tokens_ = 0;
};

TEST(ServerAce, FreeSemaphoreIsLockedAtOnceAndReleasedWithOk) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("pcap");
  ASSERT_EQ(ace->read(500ms), AceClient::Got::kLocked) << escape(ace->last());
  EXPECT_EQ(ace->last(), "locked|");

  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  EXPECT_EQ(v1->request(req::get("g", "pcap")), "g OK 0 1 1 0 undefined");
  ASSERT_TRUE(ace->release());
  EXPECT_EQ(await_answer(*v1, req::get("g", "pcap"), "g OK 1 1 0 0 absent"), "g OK 1 1 0 0 absent");
}

TEST(ServerAce, QueuedClientGetsOneWaitPerSecondThenLocked) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto holder = AceClient::connect(server->port());
  ASSERT_TRUE(holder);
  holder->acquire("splunk");
  ASSERT_TRUE(holder->await_locked(1s));

  auto queued = AceClient::connect(server->port());
  ASSERT_TRUE(queued);
  const auto asked = Clock::now();
  queued->acquire("splunk");
  std::vector<Clock::time_point> waits;
  while (Clock::now() - asked < 3500ms) {
    const auto got = queued->read(200ms);
    if (got == AceClient::Got::kTimeout) continue;
    ASSERT_EQ(got, AceClient::Got::kWait) << escape(queued->last());
    // Read promptly, so each read is one heartbeat: more would be a backlog.
    EXPECT_EQ(queued->last(), "wait|");
    waits.push_back(Clock::now());
  }
  ASSERT_GE(waits.size(), 2u);
  EXPECT_LE(waits.size(), 4u);
  EXPECT_GE(waits.front() - asked, 850ms) << "the first wait| came before a second of waiting";
  EXPECT_LE(waits.front() - asked, 1600ms);
  for (std::size_t i = 1; i < waits.size(); ++i) {
    EXPECT_GE(waits[i] - waits[i - 1], 850ms) << "two wait| within a second";
    EXPECT_LE(waits[i] - waits[i - 1], 1600ms) << "a heartbeat was skipped";
  }

  // The holder pings as ACE does; the queued client stays queued.
  holder->keep_alive();
  EXPECT_TRUE(holder->quiet_for(200ms));
  const auto released = Clock::now();
  ASSERT_TRUE(holder->release());
  ASSERT_TRUE(queued->await_locked(1s));
  EXPECT_LT(Clock::now() - released, 500ms) << "the grant waited for a heartbeat";
  ASSERT_TRUE(queued->release());
}

TEST(ServerAce, WaitAndReleaseInOneWriteIsAnsweredOk) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("x");
  ASSERT_TRUE(ace->await_locked(1s));
  ace->keep_alive();
  ace->send("wait|wait|");
  EXPECT_TRUE(ace->quiet_for(200ms));
  ASSERT_TRUE(ace->release("wait|release|"));

  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  EXPECT_EQ(await_answer(*v1, req::get("g", "x"), "g OK 1 1 0 0 absent"), "g OK 1 1 0 0 absent");
}

TEST(ServerAce, NamesWithSpacesAndColonsAreTheV1PercentEncodedNames) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("host:10.0.0.1 web");
  ASSERT_TRUE(ace->await_locked(1s));
  auto percent = AceClient::connect(server->port());
  ASSERT_TRUE(percent);
  percent->acquire("50%off");
  ASSERT_TRUE(percent->await_locked(1s));

  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  EXPECT_EQ(v1->request(req::get("g1", "host:10.0.0.1 web")), "g1 OK 0 1 1 0 undefined");
  // Raw on purpose: the name encoded otherwise than the encoder would (%3A).
  EXPECT_EQ(v1->request("g2 GET host%3A10.0.0.1%20web"), "g2 OK 0 1 1 0 undefined");
  EXPECT_EQ(v1->request(req::get("g3", "host:10.0.0.1")), "g3 OK 1 1 0 0 absent");
  EXPECT_EQ(v1->request(req::get("g4", "50%off")), "g4 OK 0 1 1 0 undefined");
  EXPECT_EQ(v1->request(req::list("l", "host:10.0.0.1 ")), "l ITEM host:10.0.0.1%20web 0 1 1 0 undefined");
  EXPECT_EQ(v1->read_line().value_or("<none>"), "l END 1");
  EXPECT_EQ(v1->request(req::acquire("t", "host:10.0.0.1 web", 1, 0)), "t TIMEOUT");

  ASSERT_TRUE(ace->release());
  EXPECT_EQ(await_answer(*v1, req::get("g5", "host:10.0.0.1 web"), "g5 OK 1 1 0 0 absent"), "g5 OK 1 1 0 0 absent");
  EXPECT_TRUE(v1->request(req::acquire("a", "host:10.0.0.1 web", 1, 0)).starts_with("a OK "));
  ASSERT_TRUE(percent->release());
}

TEST(ServerAce, NamesAreOneTo255Bytes) {
  auto server = start_server();
  ASSERT_TRUE(server);
  const std::string longest(255, 'n');
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire(longest);
  ASSERT_TRUE(ace->await_locked(1s));
  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  EXPECT_EQ(v1->request(req::get("g", longest)), "g OK 0 1 1 0 undefined");

  auto too_long = AceClient::connect(server->port());
  ASSERT_TRUE(too_long);
  too_long->acquire(longest + "n");
  EXPECT_TRUE(too_long->closed_silently());
  ASSERT_TRUE(ace->release());
}

TEST(ServerAce, AceAndV1ClientsShareOneFifoQueue) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto v1_holder = Client::connect(server->port());
  ASSERT_TRUE(v1_holder);
  ASSERT_TRUE(v1_holder->request(req::acquire("a", "shared")).starts_with("a OK "));

  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("shared");
  auto observer = Client::connect(server->port());
  ASSERT_TRUE(observer);
  ASSERT_EQ(await_answer(*observer, req::get("g", "shared"), "g OK 0 1 1 1 undefined"), "g OK 0 1 1 1 undefined");

  auto v1_queued = Client::connect(server->port());
  ASSERT_TRUE(v1_queued);
  EXPECT_EQ(v1_queued->request(req::acquire("c", "shared")), "c QUEUED 2");

  EXPECT_EQ(v1_holder->request(req::release("r", "shared")), "r OK 0");
  ASSERT_TRUE(ace->await_locked(1s)) << "the ACE client, first in the queue, was not granted";
  EXPECT_TRUE(v1_queued->quiet_for(300ms)) << "the later v1 waiter overtook the ACE one";
  EXPECT_EQ(observer->request(req::get("g", "shared")), "g OK 0 1 1 1 undefined");

  ASSERT_TRUE(ace->release());
  const auto granted = v1_queued->read_line(2s);
  ASSERT_TRUE(granted);
  EXPECT_TRUE(granted->starts_with("c OK ")) << *granted;
}

TEST(ServerAce, ClientClosingWhileQueuedLeavesTheQueue) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  ASSERT_TRUE(holder);
  ASSERT_TRUE(holder->request(req::acquire("a", "q")).starts_with("a OK "));

  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("q");
  auto observer = Client::connect(server->port());
  ASSERT_TRUE(observer);
  ASSERT_EQ(await_answer(*observer, req::get("g", "q"), "g OK 0 1 1 1 undefined"), "g OK 0 1 1 1 undefined");
  ace->close();
  EXPECT_EQ(await_answer(*observer, req::get("g", "q"), "g OK 0 1 1 0 undefined"), "g OK 0 1 1 0 undefined");

  // The next waiter is first in line and gets the permit.
  EXPECT_EQ(observer->request(req::acquire("b", "q")), "b QUEUED 1");
  EXPECT_EQ(holder->request(req::release("r", "q")), "r OK 0");
  const auto granted = observer->read_line(2s);
  ASSERT_TRUE(granted);
  EXPECT_TRUE(granted->starts_with("b OK ")) << *granted;
}

TEST(ServerAce, ClientClosingWhileHoldingReleases) {
  auto server = start_server(with_semaphores("pcap = 1\n"));
  ASSERT_TRUE(server);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("pcap");
  ASSERT_TRUE(ace->await_locked(1s));

  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  EXPECT_EQ(v1->request(req::acquire("w", "pcap")), "w QUEUED 1");
  ace->close();
  const auto granted = v1->read_line(2s);
  ASSERT_TRUE(granted);
  EXPECT_TRUE(granted->starts_with("w OK ")) << *granted;
}

TEST(ServerAce, GarbageClosesSilentlyAndLeavesOtherPermits) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  ASSERT_TRUE(holder);
  ASSERT_TRUE(holder->request(req::acquire("a", "x")).starts_with("a OK "));

  const char* const kFirstWrites[] = {
      "acquire:x|garbage|",    // a bad token after the request
      "acquire:x|acquire:y|",  // a second request
      "acquire:|",             // an empty name
      "acquire:$local|",       // a host-local name
      "acquire:x|release|",    // a release before the grant
      "acquire:x\x01|",        // a control byte in the name
      "acquire:x||",           // an empty token
  };
  for (const char* first : kFirstWrites) {
    SCOPED_TRACE(escape(first));
    auto ace = AceClient::connect(server->port());
    ASSERT_TRUE(ace);
    ace->send(first);
    EXPECT_TRUE(ace->closed_silently());
  }
  {
    SCOPED_TRACE("a 300-byte name");
    auto ace = AceClient::connect(server->port());
    ASSERT_TRUE(ace);
    ace->send("acquire:" + std::string(300, 'n') + "|");
    EXPECT_TRUE(ace->closed_silently());
  }
  // None of that touched the v1 holder's permit, nor left a waiter.
  EXPECT_EQ(holder->request(req::get("g", "x")), "g OK 0 1 1 0 undefined");

  // Garbage from a holder closes it silently and releases its own permit only.
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("z");
  ASSERT_TRUE(ace->await_locked(1s));
  EXPECT_EQ(holder->request(req::get("g", "z")), "g OK 0 1 1 0 undefined");
  ace->send("hello|");
  EXPECT_TRUE(ace->closed_silently());
  EXPECT_EQ(await_answer(*holder, req::get("g", "z"), "g OK 1 1 0 0 absent"), "g OK 1 1 0 0 absent");
  EXPECT_EQ(holder->request(req::get("g", "x")), "g OK 0 1 1 0 undefined");
}

// A request with garbage behind it in the same read is refused as a whole:
// the client must not read `locked|` for a permit the server drops with the
// connection at once (ACE's own server rejects such a first read outright).
TEST(ServerAce, GarbageAfterAFreeRequestIsNotGranted) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->send("acquire:free|garbage|");
  EXPECT_TRUE(ace->closed_silently());
  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  EXPECT_EQ(await_answer(*v1, req::get("g", "free"), "g OK 1 1 0 0 absent"), "g OK 1 1 0 0 absent");
}

TEST(ServerAce, ReadsAnAceConfigurationFileUnchanged) {
  Netsemd::Options options;
  options.raw_config =
      "[global]\n"
      "data_dir = data\n"
      "enable_semaphores = yes\n"
      "\n"
      "[service_network_semaphore]\n"
      "module = saq.network_semaphore\n"
      "class = NetworkSemaphoreServer\n"
      "description = Network Semaphore - global network service for controlling concurrent access\n"
      "enabled = yes\n"
      "; the address of the network semaphore server (used to bind and listen)\n"
      "bind_address = 127.0.0.1\n"
      "bind_port = @PORT@\n"
      "remote_address = 127.0.0.1\n"
      "remote_port = 53559\n"
      "allowed_ipv4 = 0.0.0.0\n"
      "stats_dir = @DIR@\n"
      "Semaphore_Pcap = 2\n"
      "semaphore_splunk = 1\n"
      "\n"
      "[service_engine]\n"
      "semaphore_other = 5\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_log("ACE folds keys to lower case")) << server->log();
  EXPECT_TRUE(server->wait_for_log("any IPv4 address")) << server->log();

  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  EXPECT_EQ(v1->request(req::get("g1", "pcap")), "g1 OK 2 2 0 0 defined");
  EXPECT_EQ(v1->request(req::get("g2", "Pcap")), "g2 OK 1 1 0 0 absent");
  EXPECT_EQ(v1->request(req::get("g3", "splunk")), "g3 OK 1 1 0 0 defined");
  EXPECT_EQ(v1->request(req::get("g4", "other")), "g4 OK 1 1 0 0 absent");

  // Two ACE clients hold pcap at once; a third waits.
  auto first = AceClient::connect(server->port());
  auto second = AceClient::connect(server->port());
  auto third = AceClient::connect(server->port());
  ASSERT_TRUE(first && second && third);
  first->acquire("pcap");
  ASSERT_TRUE(first->await_locked(1s));
  second->acquire("pcap");
  ASSERT_TRUE(second->await_locked(1s));
  third->acquire("pcap");
  EXPECT_EQ(await_answer(*v1, req::get("g5", "pcap"), "g5 OK 0 2 2 1 defined"), "g5 OK 0 2 2 1 defined");
  ASSERT_TRUE(first->release());
  ASSERT_TRUE(third->await_locked(2s));
  ASSERT_TRUE(second->release());
  ASSERT_TRUE(third->release());
  EXPECT_EQ(await_answer(*v1, req::get("g6", "pcap"), "g6 OK 2 2 0 0 defined"), "g6 OK 2 2 0 0 defined");
}

TEST(ServerAce, DeniedClientIsClosedWithoutAWord) {
  auto server = start_server(with_server_options("allowed_networks = 10.0.0.0/8\n"));
  ASSERT_TRUE(server);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("pcap");
  EXPECT_TRUE(ace->closed_silently(2s));
  EXPECT_TRUE(server->wait_for_log("denied connection from 127.0.0.1")) << server->log();
  // `acquire:` split over two writes is ACE all the same.
  auto split = AceClient::connect(server->port());
  ASSERT_TRUE(split);
  split->send("acq");
  std::this_thread::sleep_for(50ms);
  split->send("uire:pcap|");
  EXPECT_TRUE(split->closed_silently(2s));
}

TEST(ServerAce, ClientOverMaxConnectionsIsClosedWithoutAWord) {
  auto [server, holder] = start_full_server();
  ASSERT_TRUE(server && holder);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("pcap");
  EXPECT_TRUE(ace->closed_silently(2s));
  EXPECT_TRUE(server->wait_for_log("max_connections (1) reached")) << server->log();
  EXPECT_EQ(holder->request(req::get("g", "pcap")), "g OK 1 1 0 0 absent");
}

TEST(ServerAce, UnfinishedAcquireTimesOut) {
  auto server = start_server(with_server_options("session_timeout_ms = 300\n"));
  ASSERT_TRUE(server);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->send("acquire:never-finished");
  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  // Both sessions are open at first: the ACE one is closed by the timeout,
  // not on sight of its unfinished token.
  const std::string first = v1->request(req::stats("s0"));
  EXPECT_NE(first.find("\"sessions\":2,"), std::string::npos) << first;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  std::string stats;
  while (std::chrono::steady_clock::now() < deadline) {
    stats = v1->request(req::stats("s"));
    if (stats.find("\"sessions\":1,") != std::string::npos) break;
    EXPECT_EQ(v1->request(req::ping("p")), "p PONG");  // keeps the v1 session itself alive
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(stats.find("\"sessions\":1,"), std::string::npos) << stats;
}

TEST(ServerAce, LongWaitInTheQueueIsNotSilenceOnceGranted) {
  // The ACE session timeout applies from the grant, not from the acquire:
  // a client queued longer than the timeout keeps the permit it is given.
  auto server = start_server(with_server_options("session_timeout_ms = 10000\n"));
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  ASSERT_TRUE(holder);
  ASSERT_EQ(holder->request(req::acquire("a", "lic")).rfind("a OK ", 0), 0u);
  auto ace = AceClient::connect(server->port());
  ASSERT_TRUE(ace);
  ace->acquire("lic");
  const auto queued_until = std::chrono::steady_clock::now() + 10500ms;
  while (std::chrono::steady_clock::now() < queued_until) {
    ASSERT_EQ(holder->request(req::ping("p")), "p PONG");  // the v1 holder is not silent
    std::this_thread::sleep_for(1s);
  }
  ASSERT_EQ(holder->request(req::release("r", "lic")), "r OK 0");
  const auto granted_by = std::chrono::steady_clock::now() + 3s;
  auto got = AceClient::Got::kWait;
  while (got == AceClient::Got::kWait && std::chrono::steady_clock::now() < granted_by) got = ace->read(1500ms);
  ASSERT_EQ(got, AceClient::Got::kLocked) << escape(ace->last());
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(holder->request(req::get("g", "lic")), "g OK 0 1 1 0 undefined");
  ASSERT_TRUE(ace->release());
}

TEST(ServerAce, SessionTimeoutBelowTenSecondsSparesAceClients) {
  auto server = start_server(with_server_options("session_timeout_ms = 300\n"));
  ASSERT_TRUE(server);
  auto holder = AceClient::connect(server->port());
  ASSERT_TRUE(holder);
  holder->acquire("t");
  ASSERT_TRUE(holder->await_locked(1s));
  auto queued = AceClient::connect(server->port());
  ASSERT_TRUE(queued);
  queued->acquire("t");
  auto v1 = Client::connect(server->port());
  ASSERT_TRUE(v1);
  ASSERT_TRUE(v1->request(req::acquire("a", "v1held")).starts_with("a OK "));

  // A v1 session silent for well over 300 ms is dropped and released...
  EXPECT_TRUE(v1->wait_closed(1500ms));
  // ...but the silent ACE holder is not, nor the queued ACE client, which
  // only hears its heartbeats.
  EXPECT_TRUE(holder->quiet_for(1200ms));
  ASSERT_EQ(queued->read(500ms), AceClient::Got::kWait) << escape(queued->last());

  auto checker = Client::connect(server->port());
  ASSERT_TRUE(checker);
  EXPECT_EQ(checker->request(req::get("g1", "t")), "g1 OK 0 1 1 1 undefined");
  EXPECT_EQ(checker->request(req::get("g2", "v1held")), "g2 OK 1 1 0 0 absent");
  ASSERT_TRUE(holder->release());
  ASSERT_TRUE(queued->await_locked(1s));
  ASSERT_TRUE(queued->release());
}

// The default session timeout (15 s, issue 10 item 4) ends a silent session
// and grants its permit to the next, and keeps the ACE rules: an ACE holder
// that sends its keep-alives every 3 s, and an ACE client queued (with
// nothing to send), both outlive it. One scenario, about 16 s.
TEST(ServerAce, DefaultSessionTimeoutDropsTheSilentAndSparesAceClients) {
  auto server = start_server();  // no session_timeout_ms: the default
  ASSERT_TRUE(server);
  auto observer = Client::connect(server->port());
  ASSERT_TRUE(observer);
  ASSERT_NE(observer->request(req::stats("s")).find("\"session_timeout_ms\":15000"), std::string::npos);

  auto silent = Client::connect(server->port());
  ASSERT_TRUE(silent);
  ASSERT_EQ(fields(silent->request(req::acquire("a", "lic")))[1], "OK");
  const auto silent_since = Clock::now();
  auto waiter = Client::connect(server->port());
  ASSERT_TRUE(waiter);
  ASSERT_EQ(waiter->request(req::acquire("w", "lic")), "w QUEUED 1");

  auto ace_holder = AceClient::connect(server->port());
  ASSERT_TRUE(ace_holder);
  ace_holder->acquire("pcap");
  ASSERT_TRUE(ace_holder->await_locked(3s));
  auto ace_queued = AceClient::connect(server->port());
  ASSERT_TRUE(ace_queued);
  ace_queued->acquire("pcap");
  ASSERT_EQ(ace_queued->read(3s), AceClient::Got::kWait);

  // The waiter pings every 2 s and the ACE holder sends `wait|` every 3 s, as
  // ACE's client does; the queued ACE client only reads its `wait|` tokens.
  std::optional<std::string> granted;
  auto next_ping = Clock::now() + 2s;
  auto next_keep_alive = Clock::now() + 3s;
  while (!granted && Clock::now() < silent_since + 20s) {
    if (Clock::now() >= next_ping) {
      waiter->send_line(req::ping("p"));
      next_ping += 2s;
    }
    if (Clock::now() >= next_keep_alive) {
      ace_holder->keep_alive();
      next_keep_alive += 3s;
    }
    ASSERT_NE(ace_queued->read(20ms), AceClient::Got::kEof) << "the queued ACE client was dropped";
    for (auto line = waiter->read_line(200ms); line; line = waiter->read_line(1ms)) {
      if (*line != "p PONG") granted = line;
      if (granted) break;
    }
  }
  const auto waited = Clock::now() - silent_since;
  ASSERT_TRUE(granted) << "the silent holder still held lic after 20 s";
  EXPECT_EQ(fields(*granted)[1], "OK") << *granted;
  EXPECT_GE(waited, 14900ms);
  EXPECT_LT(waited, 18s);
  EXPECT_TRUE(silent->wait_closed(1s));
  // Both ACE clients are still there: the holder releases, the queued one is granted.
  ASSERT_TRUE(ace_holder->release());
  ASSERT_TRUE(ace_queued->await_locked(3s));
  ASSERT_TRUE(ace_queued->release());
}

}  // namespace
}  // namespace netsem::testing
