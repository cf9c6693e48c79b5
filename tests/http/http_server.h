// A netsemd with its HTTP listener on a free loopback port, for the tests of
// tests/http: start_http_server() starts the real netsemd (http_port = 0,
// then the test's own [server] lines and [semaphores]) and reads the port it
// chose from its log line `HTTP on http://ADDRESS:PORT/`.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "netsemd_harness.h"
#include "support/http_client.h"

namespace netsem::testing {

inline constexpr std::string_view kHttpLine = "HTTP on http://";

// A netsemd and its HTTP port (0 when it did not start or did not listen:
// the test has failed then).
struct HttpServer {
  std::unique_ptr<Netsemd> server;
  std::uint16_t http_port = 0;
};

inline HttpServer start_http_server(std::string server_options = {}, std::string semaphores = "pcap = 2\n") {
  Netsemd::Options options;
  options.server_options = "http_port = 0\n" + server_options;
  options.semaphores = std::move(semaphores);
  HttpServer started;
  started.server = start_server(options);
  if (!started.server) return started;
  EXPECT_TRUE(started.server->wait_for_log(kHttpLine)) << started.server->log();
  started.http_port = test_support::http_port_from_log(started.server->log());
  EXPECT_NE(started.http_port, 0) << started.server->log();
  return started;
}

}  // namespace netsem::testing
