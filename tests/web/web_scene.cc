// start_web_server: the harness's netsemd with HTTP on, and its port from
// the log.
#include "web_scene.h"

#include <gtest/gtest.h>

#include <regex>

namespace netsem::testing {

std::string WebServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(http_port) + path;
}

WebServer start_web_server(const std::string& semaphores, const std::string& server_options) {
  WebServer web;
  Netsemd::Options options = with_semaphores(semaphores);
  options.server_options = "http_enabled = on\nhttp_address = 127.0.0.1\nhttp_port = 0\n" + server_options;
  web.server = start_server(options);
  if (!web.server) return web;
  static const std::regex kHttp(R"(HTTP on http://127\.0\.0\.1:(\d+)/)");
  if (!web.server->wait_for_log("HTTP on http://", 10s)) {
    ADD_FAILURE() << "netsemd did not say where its HTTP listener is: " << web.server->log();
    return web;
  }
  std::smatch match;
  const std::string log = web.server->log();
  if (!std::regex_search(log, match, kHttp)) {
    ADD_FAILURE() << "no HTTP port in netsemd's log: " << log;
    return web;
  }
  web.http_port = static_cast<std::uint16_t>(std::stoi(match[1]));
  return web;
}

}  // namespace netsem::testing
