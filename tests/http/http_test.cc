// netsemd's HTTP listener, end to end: the real netsemd on 127.0.0.1 with
// http_port = 0, talked to over real sockets by tests/support/http_client.h
// and by protocol clients (netsemd_harness.h). Health, readiness, the
// published figures and their history, allowed_networks and its reload,
// http_enabled, a port already taken, and a stop with requests in flight.
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "http/http_server.h"
#include "netsemd_harness.h"
#include "support/http_client.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using nlohmann::json;
using test_support::http_get;
using test_support::http_port_from_log;
using test_support::http_request;
using test_support::HttpConnection;
using test_support::HttpResponse;

json body_of(const std::optional<HttpResponse>& response) {
  if (!response) return json();
  return json::parse(response->body, nullptr, false);
}

TEST(HttpHealth, HealthzAndReadyz) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  auto health = http_get(port, "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->header("content-type"), "application/json");
  EXPECT_EQ(body_of(health), json({{"status", "ok"}}));
  auto ready = http_get(port, "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(body_of(ready), json({{"status", "ready"}, {"lease_wait_ms", 0}}));
}

TEST(HttpHealth, ReadyzReportsTheLeaseWaitAfterACrash) {
  Netsemd::Options options;
  options.server_options = "http_port = 0\nsession_timeout_ms = 20000\n";
  auto first = start_server(options);
  ASSERT_TRUE(first);
  const auto data_dir = first->data_dir();
  first->send_signal(SIGKILL);
  ASSERT_TRUE(first->wait_exit());
  options.data_dir = data_dir;
  auto second = start_server(options);
  ASSERT_TRUE(second);
  ASSERT_TRUE(second->wait_for_log(kHttpLine));
  const auto port = http_port_from_log(second->log());
  // Ready (it serves requests; they queue) with the wait left in the body.
  auto ready = http_get(port, "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  const json body = body_of(ready);
  EXPECT_EQ(body["status"], "ready");
  EXPECT_GT(body["lease_wait_ms"].get<std::int64_t>(), 10000) << ready->body;
}

TEST(HttpStats, ThePublishedFiguresFollowTheServer) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request(req::acquire("a", "pcap")).substr(0, 5), "a OK ");
  // Published once a second: the grant shows within a few.
  json stats;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    stats = body_of(http_get(port, "/api/v1/stats"));
    if (stats.is_object() && stats["stats"]["grants"] == 1) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(stats.is_object());
  EXPECT_EQ(stats["stats"]["grants"], 1) << stats.dump();
  EXPECT_EQ(stats["stats"]["held"], 1);
  EXPECT_EQ(stats["stats"]["sessions"], 1);
  EXPECT_EQ(stats["protocol"], "1.1");
  EXPECT_TRUE(stats["version"].is_string());
  EXPECT_TRUE(stats["started_at"].get<std::string>().ends_with("Z"));

  const json history = body_of(http_get(port, "/api/v1/history"));
  ASSERT_TRUE(history.is_object());
  EXPECT_EQ(history["interval_ms"], 5000);
  ASSERT_GE(history["samples"].size(), 1u);  // the first is kept at start
  EXPECT_TRUE(history["samples"][0]["at"].is_string());
  EXPECT_TRUE(history["samples"][0]["grants"].is_number());
}

TEST(HttpAccess, PeersOutsideAllowedNetworksAreClosedAndAReloadLetsThemIn) {
  Netsemd::Options options;
  options.server_options = "http_port = 0\nallowed_networks = 10.0.0.0/8\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->wait_for_log(kHttpLine));
  const auto port = http_port_from_log(server->log());
  {
    HttpConnection refused(port);
    ASSERT_TRUE(refused.ok());  // the kernel accepts; netsemd closes at once, reading nothing
    refused.send_request("GET", "/healthz");
    EXPECT_FALSE(refused.read_response(3s));
  }
  options.server_options = "http_port = 0\nallowed_networks = 127.0.0.1\n";
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  ASSERT_TRUE(server->wait_for_log("SIGHUP: reloaded"));
  auto health = http_get(port, "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);

  // And back: a reload that drops the network refuses new connections.
  options.server_options = "http_port = 0\nallowed_networks = 10.0.0.0/8\n";
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  bool refused = false;
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    refused = !http_get(port, "/healthz", 1s);
  }
  EXPECT_TRUE(refused);
}

TEST(HttpConfig, OffMeansNoListener) {
  auto server = start_server(with_server_options("http_enabled = off\nhttp_port = 0\n"));
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->wait_for_log("HTTP off"));
  EXPECT_EQ(server->log().find(kHttpLine), std::string::npos);
}

TEST(HttpConfig, APortTakenIsLoggedAndTheProtocolServed) {
  auto [first, port] = start_http_server();
  ASSERT_NE(port, 0);
  auto second = start_server(with_server_options("http_port = " + std::to_string(port) + "\n"));
  ASSERT_TRUE(second);
  ASSERT_TRUE(second->wait_for_log("serving the protocol without HTTP")) << second->log();
  EXPECT_NE(second->log().find("cannot listen for HTTP on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << second->log();
  auto client = Client::connect(second->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request(req::ping("p")), "p PONG");
}

TEST(HttpConfig, ListensOnIpv6) {
  auto server = start_server(with_server_options("http_port = 0\nhttp_address = ::1\n"));
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->wait_for_log("HTTP on http://[::1]:")) << server->log();
  const auto port = http_port_from_log(server->log());
  ASSERT_NE(port, 0);
  HttpConnection connection(port, "::1");
  ASSERT_TRUE(connection.ok());
  ASSERT_TRUE(connection.send_request("GET", "/healthz"));
  auto health = connection.read_response();
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST(HttpConfig, BadValuesAreRefusedAtStart) {
  for (const char* line : {"http_port = 65536", "http_port = -1", "http_address = localhost", "http_address = 1.2.3",
                           "http_enabled = yes"}) {
    SCOPED_TRACE(line);
    std::string error;
    Netsemd::Options options;
    options.server_options = std::string(line) + "\n";
    auto server = Netsemd::start(options, &error);
    EXPECT_FALSE(server);
    EXPECT_NE(error.find("exit status 2"), std::string::npos) << error;
    EXPECT_NE(error.find(std::string(line).substr(0, std::string(line).find(' '))), std::string::npos) << error;
  }
}

TEST(HttpLifecycle, SigtermWithRequestsInFlightStopsCleanly) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      while (!stop) {
        // Loop queries and published state alike.
        if (http_get(port, i % 2 ? "/api/v1/semaphores" : "/api/v1/stats", 2s)) ++answered;
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (answered < 50 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_GE(answered.load(), 50);
  const auto began = std::chrono::steady_clock::now();
  server->send_signal(SIGTERM);
  const auto status = server->wait_exit(10s);
  const auto took = std::chrono::steady_clock::now() - began;
  stop = true;
  for (auto& thread : clients) thread.join();
  ASSERT_TRUE(status) << "netsemd did not stop";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server->log();
  EXPECT_LT(took, 5s);
  EXPECT_NE(server->log().find("netsemd stopped"), std::string::npos);
}

TEST(HttpLifecycle, SigtermWithSlowAndNonReadingClientsStopsAtOnce) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  for (int i = 0; i < 300; ++i) client->send_line(req::create("c", "name-" + std::to_string(i), 1, 1));
  for (int i = 0; i < 300; ++i) ASSERT_EQ(client->read_line(), "c OK");
  // Half a request line, and a client that asks for large answers and reads none.
  HttpConnection slow(port);
  ASSERT_TRUE(slow.ok());
  ASSERT_TRUE(slow.send("GET /api/v1/sem"));
  HttpConnection non_reader(port, "127.0.0.1", 4096);
  ASSERT_TRUE(non_reader.ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(non_reader.send_request("GET", "/api/v1/semaphores?limit=1000"));
  // The server is writing to the non-reader once its first answer arrives.
  char first = 0;
  pollfd p{non_reader.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1);
  ASSERT_EQ(::recv(non_reader.fd(), &first, 1, MSG_PEEK), 1);
  const auto began = std::chrono::steady_clock::now();
  server->send_signal(SIGTERM);
  const auto status = server->wait_exit(10s);
  ASSERT_TRUE(status) << "netsemd did not stop";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server->log();
  EXPECT_LT(std::chrono::steady_clock::now() - began, 3s);
  EXPECT_TRUE(slow.wait_closed(1s));
}

// Out of descriptors (RLIMIT_NOFILE lowered to the lowest free number, as
// a flood of connections to another port can leave it), a peer waiting on
// the HTTP port must not spin the listener: libmicrohttpd 0.9.75 with no
// HTTP connection open retried accept() at once, a spin for as
// long as the peer waited (40-96% measured with this set-up). The
// listener's own thread tries again every 100 ms, and the peer is served
// once a descriptor is free.
TEST(HttpLifecycle, OutOfDescriptorsTheListenerWaitsInsteadOfSpinningThenServes) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  const pid_t pid = server->pid();
  const std::string proc = "/proc/" + std::to_string(pid);
  std::set<int> open;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd")) {
    open.insert(std::stoi(entry.path().filename().string()));
  }
  int lowest_free = 0;
  while (open.contains(lowest_free)) ++lowest_free;
  ASSERT_TRUE(set_limit(pid, RLIMIT_NOFILE, static_cast<std::uint64_t>(lowest_free)));
  HttpConnection waiting(port);
  ASSERT_TRUE(waiting.ok());
  ASSERT_TRUE(waiting.send_request("GET", "/healthz"));
  // The process's CPU time (utime + stime) in clock ticks.
  const auto cpu_ticks = [&] {
    std::ifstream in(proc + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    long long ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i >= 14) ticks += std::stoll(field);
    }
    return ticks;
  };
  std::this_thread::sleep_for(200ms);  // its first tries failed
  const long long before = cpu_ticks();
  const auto from = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(2s);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
  const double share =
      static_cast<double>(cpu_ticks() - before) / static_cast<double>(::sysconf(_SC_CLK_TCK)) / seconds;
  std::printf("netsemd's CPU while out of descriptors with an HTTP peer waiting: %.1f%% of a core\n", share * 100);
  EXPECT_LT(share, 0.10) << server->log();
  EXPECT_TRUE(server->wait_for_log("http: cannot accept a connection: Too many open files")) << server->log();
  ASSERT_TRUE(set_limit(pid, RLIMIT_NOFILE, static_cast<std::uint64_t>(lowest_free) + 64));
  const auto answer = waiting.read_response(5s);
  ASSERT_TRUE(answer) << server->log();
  EXPECT_EQ(answer->status, 200);
  EXPECT_TRUE(server->wait_for_log("http: accepting again after")) << server->log();
}

}  // namespace
}  // namespace netsem::testing
