// A netsemd for the web page's tests and its screenshot: the real server
// with its HTTP listener on a free loopback port (http_port = 0), and the
// port it chose, read from its log line "HTTP on http://127.0.0.1:<port>/".
//
// Thread safety: as the harness (netsemd_harness.h): one per test thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "netsemd_harness.h"

namespace netsem::testing {

struct WebServer {
  std::unique_ptr<Netsemd> server;
  std::uint16_t http_port = 0;

  // "http://127.0.0.1:<http_port><path>".
  std::string url(const std::string& path) const;
};

// Starts netsemd with `semaphores` as its [semaphores] section (and
// `server_options` as more [server] lines) and waits (at most 10 s) for its
// HTTP listener; fails the current test (and returns http_port 0) when
// either does not come up.
WebServer start_web_server(const std::string& semaphores, const std::string& server_options = "");

}  // namespace netsem::testing
