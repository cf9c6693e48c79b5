// Takes docs/web-page.png: starts the real netsemd, gives it a few
// semaphores, holders and waiters (sessions over the protocol, with labels
// as CI jobs would set them) and some minutes of traffic for the chart,
// opens the page in headless Chromium with one name expanded, and writes a
// PNG of the whole page. Run by hand after the page changes:
//
//   build/tests/web/web_screenshot docs/web-page.png [seconds of traffic, default 90]
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "chromium.h"
#include "support/request_lines.h"
#include "web_scene.h"

using namespace netsem::testing;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<Client> session(std::uint16_t port, const std::string& label) {
  auto client = Client::connect(port);
  if (client) client->request(req::hello("h", label));
  return client;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: web_screenshot OUTPUT.png [SECONDS]\n";
    return 2;
  }
  const int seconds = argc > 2 ? std::stoi(argv[2]) : 90;
  auto browser = Chromium::find_browser();
  if (!browser) {
    std::cerr << "no chromium\n";
    return 1;
  }
  // No session timeout: the scene's sessions stay idle through the traffic.
  WebServer web = start_web_server(
      "ci/build-linux = 4\nci/build-mac = 2\ndeploy/prod = 1\ndb-migrate = 1\ngpu-pool = 8\nlicense/matlab = 5\n",
      "session_timeout_ms = 0\n");
  if (!web.server || web.http_port == 0) return 1;
  const std::uint16_t port = web.server->port();

  std::vector<std::unique_ptr<Client>> sessions;
  auto hold = [&](const std::string& label, const std::string& name, int count) {
    sessions.push_back(session(port, label));
    sessions.back()->request(req::acquire("a", name, count, 0));
  };
  auto queue = [&](const std::string& label, const std::string& name, int count, std::int64_t timeout_ms) {
    sessions.push_back(session(port, label));
    sessions.back()->request(req::acquire("a", name, count, timeout_ms));
  };
  hold("deploy-api-v2.14", "deploy/prod", 1);
  queue("deploy-web-v7.3", "deploy/prod", 1, 600000);
  queue("deploy-worker-v1.9", "deploy/prod", 1, -1);
  for (int i = 0; i < 4; ++i) hold("ci-runner-" + std::to_string(11 + i), "ci/build-linux", 1);
  queue("ci-runner-15", "ci/build-linux", 1, 1800000);
  queue("ci-runner-16", "ci/build-linux", 1, 1800000);
  hold("ci-mac-2", "ci/build-mac", 1);
  hold("trainer-resnet", "gpu-pool", 4);
  hold("trainer-bert", "gpu-pool", 1);
  for (int i = 0; i < 5; ++i) hold("analyst-" + std::to_string(i + 1), "license/matlab", 1);
  queue("analyst-6", "license/matlab", 1, 300000);
  hold("migrate-2026-12-03", "db-migrate", 1);
  sessions.push_back(session(port, "nightly-report"));
  sessions.back()->request(req::create("c", "reports/nightly", 2, 3));
  sessions.back()->request(req::wait("w", "reports/nightly", 1, 0));

  // Traffic for the chart: acquire and release at a rate that rises and
  // falls, and every 15 s three requests that queue for 8 s and time out.
  auto worker = session(port, "load");
  std::vector<std::unique_ptr<Client>> bursts;
  for (int i = 0; i < 3; ++i) bursts.push_back(session(port, "report-" + std::to_string(i + 1)));
  const auto start = std::chrono::steady_clock::now();
  for (int tick = 0; std::chrono::steady_clock::now() - start < std::chrono::seconds(seconds); ++tick) {
    const int per_tick = 3 + static_cast<int>(3 * (1 + std::sin(tick / 40.0)));
    for (int i = 0; i < per_tick; ++i) {
      worker->request(req::acquire("a", "ci/build-mac", 1, 0));
      worker->request(req::release("r", "ci/build-mac"));
    }
    if (tick % 150 == 20) {
      for (auto& burst : bursts) burst->send_line(req::acquire("b", "license/matlab", 1, 8000));
    }
    std::this_thread::sleep_for(100ms);
  }

  std::string error;
  auto chromium = Chromium::start(*browser, &error, 1280, 900);
  if (!chromium) {
    std::cerr << error << "\n";
    return 1;
  }
  if (!chromium->navigate(web.url("/#open=deploy%2Fprod"))) {
    std::cerr << chromium->last_error() << "\n";
    return 1;
  }
  if (!chromium->wait_until("document.querySelectorAll('tr.detail tbody tr').length === 3 && "
                            "document.getElementById('banner').hidden && "
                            "document.querySelectorAll('#chart-grants polyline').length > 0",
                            20s)) {
    auto seen = chromium->evaluate(
        "JSON.stringify([document.querySelectorAll('tr.detail tbody tr').length, "
        "document.querySelectorAll('#chart-grants polyline').length, location.hash])");
    std::cerr << "the page did not fill in: " << (seen ? seen->dump() : chromium->last_error()) << "\n";
    return 1;
  }
  auto png = chromium->screenshot();
  if (!png) {
    std::cerr << chromium->last_error() << "\n";
    return 1;
  }
  std::ofstream(argv[1], std::ios::binary) << *png;
  std::cout << "wrote " << argv[1] << " (" << png->size() << " bytes)\n";
  return 0;
}
