// Integration: GET /metrics of the real netsemd, checked by Prometheus's
// own tools. promtool judges a live exposition (hostile names included),
// and a real Prometheus (Debian's `prometheus`, started here on loopback
// with a 1 s scrape interval, a temporary storage directory and a port of
// its own) scrapes netsemd: the test asks Prometheus's HTTP API for `up`,
// for a counter that moved with the grants the test makes, and for per-name
// gauges, and runs the docs' example queries. Each test skips, saying why,
// when the program it needs is not installed (scripts/install-deps.sh
// installs it); every wait is bounded, and Prometheus is stopped by its pid.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "metrics/http_get.h"
#include "netsemd_harness.h"
#include "stats/promtool.h"
#include "support/free_port.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

using nlohmann::json;

// A netsemd with HTTP on a free port, and that port (from its log line).
struct HttpServer {
  std::unique_ptr<Netsemd> server;
  std::uint16_t http_port = 0;
};

HttpServer start_http_server(const std::string& semaphores) {
  Netsemd::Options options;
  options.server_options = "http_port = 0\n";
  options.semaphores = semaphores;
  HttpServer out;
  out.server = start_server(options);
  if (!out.server) return out;
  static const std::regex kLine(R"(HTTP on http://[^ ]*:(\d+)/)");
  if (!out.server->wait_for_log("HTTP on http://", 10s)) {
    ADD_FAILURE() << "netsemd logged no HTTP listener:\n" << out.server->log();
    return out;
  }
  std::smatch match;
  const std::string log = out.server->log();
  if (std::regex_search(log, match, kLine)) out.http_port = static_cast<std::uint16_t>(std::stoi(match[1]));
  EXPECT_NE(out.http_port, 0) << log;
  return out;
}

// Grants `n` permits of `name` and gives them back, through the protocol.
void cycle(Client& client, const std::string& name, int n) {
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(client.request(req::acquire("a", name)).rfind("a OK ", 0), 0u);
    ASSERT_EQ(client.request(req::release("r", name)), "r OK 2") << name;
  }
}

// A name no client would choose, decoded: quotes, a backslash, braces, `=`,
// a comma, spaces and multi-byte UTF-8 all go into one label value.
const std::string kHostileName = "q\"uo\\te {x=\"1\"}, \xC3\xA9t\xC3\xA9 \xE2\x82\xAC";

TEST(MetricsEndpoint, AnswersTheExpositionThatPromtoolAccepts) {
  HttpServer http = start_http_server("db = 2\n");
  ASSERT_NE(http.http_port, 0);
  auto client = Client::connect(http.server->port());
  ASSERT_TRUE(client);
  cycle(*client, "db", 3);
  ASSERT_EQ(client->request(req::create("c", kHostileName, 5)), "c OK");
  ASSERT_EQ(client->request(req::acquire("h", kHostileName, 2)).rfind("h OK ", 0), 0u);
  ASSERT_EQ(client->request(req::acquire("u", "adhoc")).rfind("u OK ", 0), 0u);  // undefined: aggregated

  const HttpAnswer answer = http_get(http.http_port, "/metrics");
  ASSERT_EQ(answer.status, 200) << answer.headers << answer.body;
  EXPECT_EQ(header_value(answer, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = answer.body;
  EXPECT_NE(text.find("\nnetsem_semaphore_max{name=\"db\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_semaphore_grants_total{name=\"db\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(
      text.find("\nnetsem_semaphore_held{name=\"q\\\"uo\\\\te {x=\\\"1\\\"}, \xC3\xA9t\xC3\xA9 \xE2\x82\xAC\"} 2\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("\nnetsem_semaphores_by_kind{kind=\"undefined\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_unlisted_semaphores 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nnetsem_unlisted_held 1\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("adhoc"), std::string::npos) << "an undefined name has no series";
  EXPECT_NE(text.find("\nnetsem_metrics_max_names 1000\n"), std::string::npos) << text;
  // The figures published once a second: grants appear within a second or two.
  EXPECT_NE(text.find("# TYPE netsem_grants_total counter\n"), std::string::npos) << text;

  const std::string promtool = find_program("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool is not installed (Debian: prometheus; scripts/install-deps.sh)";
  const auto checked = check_metrics(promtool, text);
  EXPECT_EQ(checked.exit_code, 0) << checked.output << "\n" << text;
}

// metrics_max_names caps the per-name series: the first names in name
// order get them, the rest are counted.
TEST(MetricsEndpoint, MetricsMaxNamesCapsThePerNameSeries) {
  Netsemd::Options options;
  options.server_options = "http_port = 0\nmetrics_max_names = 2\n";
  options.semaphores = "d = 1\nb = 1\na = 1\nc = 1\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->wait_for_log("HTTP on http://", 10s)) << server->log();
  static const std::regex kLine(R"(HTTP on http://[^ ]*:(\d+)/)");
  std::smatch match;
  const std::string log = server->log();
  ASSERT_TRUE(std::regex_search(log, match, kLine));
  const HttpAnswer answer = http_get(static_cast<std::uint16_t>(std::stoi(match[1])), "/metrics");
  ASSERT_EQ(answer.status, 200);
  EXPECT_NE(answer.body.find("\nnetsem_semaphore_max{name=\"a\"} 1\nnetsem_semaphore_max{name=\"b\"} 1\n# HELP"),
            std::string::npos)
      << answer.body;
  EXPECT_EQ(answer.body.find("{name=\"c\"}"), std::string::npos);
  EXPECT_NE(answer.body.find("\nnetsem_unlisted_semaphores 2\n"), std::string::npos) << answer.body;
  EXPECT_NE(answer.body.find("\nnetsem_metrics_max_names 2\n"), std::string::npos) << answer.body;
}

// A Prometheus server of the test's own, on loopback.
class Prometheus {
 public:
  // Starts `program` scraping 127.0.0.1:target_port every second; false
  // (with the reason in `error`) when it does not answer within 30 s.
  bool start(const std::string& program, std::uint16_t target_port, std::string& error) {
    char dir_template[] = "/tmp/netsem-prometheus-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) return false;
    dir_ = dir_template;
    // Its own port, below the ephemeral range: free a moment later unless
    // another server takes it in between, which the retry covers.
    for (int attempt = 0; attempt < 3 && pid_ < 0; ++attempt) {
      port_ = test_support::free_port_below_ephemeral();
      std::ofstream(dir_ + "/prometheus.yml") << "global:\n"
                                                 "  scrape_interval: 1s\n"
                                                 "  scrape_timeout: 1s\n"
                                                 "  evaluation_interval: 1s\n"
                                                 "scrape_configs:\n"
                                                 "  - job_name: netsem\n"
                                                 "    static_configs:\n"
                                                 "      - targets: [\"127.0.0.1:"
                                              << target_port << "\"]\n";
      const std::vector<std::string> args = {
          program, "--config.file=" + dir_ + "/prometheus.yml", "--storage.tsdb.path=" + dir_ + "/data",
          "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"};
      std::vector<char*> argv;
      for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
      argv.push_back(nullptr);
      const std::string log_path = dir_ + "/prometheus.log";
      const pid_t pid = ::fork();
      if (pid == 0) {
        const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ::dup2(log, 1);
        ::dup2(log, 2);
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      if (pid < 0) return false;
      pid_ = pid;
      const auto end = std::chrono::steady_clock::now() + 30s;
      while (std::chrono::steady_clock::now() < end) {
        if (http_get(port_, "/-/ready", 1s).status == 200) return true;
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: the port was taken?
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(100ms);
      }
    }
    error = "prometheus did not become ready:\n" + log();
    return false;
  }

  ~Prometheus() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      const auto end = std::chrono::steady_clock::now() + 10s;
      int status = 0;
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > end) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // An instant query; the "data" member of the answer, or null on error.
  json query(const std::string& promql, std::string* error = nullptr) const {
    const HttpAnswer answer = http_get(port_, "/api/v1/query?query=" + url_encode(promql), 5s);
    const json parsed = json::parse(answer.body, nullptr, false);
    if (answer.status != 200 || !parsed.is_object() || parsed.value("status", "") != "success") {
      if (error != nullptr) *error = std::to_string(answer.status) + " " + answer.body;
      return nullptr;
    }
    return parsed.at("data");
  }

  // The value of an instant query's first sample, or nullopt when it has none.
  std::optional<double> value(const std::string& promql) const {
    const json data = query(promql);
    if (!data.is_object() || data.value("resultType", "") != "vector" || data.at("result").empty()) return {};
    return std::stod(data.at("result").at(0).at("value").at(1).get<std::string>());
  }

  // Waits (at most `timeout`) until `promql` has a sample with `accept(v)`.
  template <class Accept>
  std::optional<double> await(const std::string& promql, Accept accept, std::chrono::seconds timeout = 20s) const {
    const auto end = std::chrono::steady_clock::now() + timeout;
    std::optional<double> last;
    while (std::chrono::steady_clock::now() < end) {
      last = value(promql);
      if (last && accept(*last)) return last;
      std::this_thread::sleep_for(200ms);
    }
    return {};
  }

  std::string log() const { return read_text(dir_ + "/prometheus.log"); }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

// The PromQL expressions of docs/operations.md's Metrics section.
std::vector<std::string> documented_queries() {
  const std::string docs = read_text(NETSEM_SOURCE_DIR "/docs/operations.md");
  std::vector<std::string> queries;
  for (auto at = docs.find("```promql\n"); at != std::string::npos; at = docs.find("```promql\n", at)) {
    at += 10;
    std::istringstream block(docs.substr(at, docs.find("```\n", at) - at));
    for (std::string line; std::getline(block, line);) {
      if (!line.empty()) queries.push_back(line);
    }
  }
  return queries;
}

TEST(MetricsPrometheus, ARealPrometheusScrapesNetsemd) {
  const std::string program = find_program("prometheus");
  if (program.empty()) GTEST_SKIP() << "prometheus is not installed (Debian: prometheus; scripts/install-deps.sh)";
  HttpServer http = start_http_server("db = 2\n");
  ASSERT_NE(http.http_port, 0);
  auto client = Client::connect(http.server->port());
  ASSERT_TRUE(client);
  cycle(*client, "db", 2);
  ASSERT_EQ(client->request(req::create("c", kHostileName, 3)), "c OK");

  Prometheus prometheus;
  std::string error;
  ASSERT_TRUE(prometheus.start(program, http.http_port, error)) << error;

  // The target is up: Prometheus parsed a whole scrape.
  EXPECT_TRUE(prometheus.await("up{job=\"netsem\"}", [](double v) { return v == 1; }))
      << "up is not 1:\n"
      << prometheus.query("up").dump() << "\n"
      << prometheus.log();
  const auto before = prometheus.await("netsem_grants_total", [](double v) { return v >= 2; });
  ASSERT_TRUE(before) << prometheus.log();

  // A counter that moves: five more grants, seen in a later scrape.
  cycle(*client, "db", 5);
  EXPECT_TRUE(prometheus.await("netsem_grants_total", [&](double v) { return v >= *before + 5; }));
  EXPECT_TRUE(prometheus.await("netsem_semaphore_grants_total{name=\"db\"}", [](double v) { return v == 7; }));

  // Per-name gauges, the hostile name's label as the protocol decoded it.
  ASSERT_EQ(client->request(req::acquire("h", "db")).rfind("h OK ", 0), 0u);
  EXPECT_TRUE(prometheus.await("netsem_semaphore_held{name=\"db\"}", [](double v) { return v == 1; }));
  EXPECT_TRUE(prometheus.await("netsem_semaphore_max{name=\"db\"}", [](double v) { return v == 2; }));
  const json hostile = prometheus.query("netsem_semaphore_info{kind=\"created\"}");
  ASSERT_TRUE(hostile.is_object());
  ASSERT_EQ(hostile.at("result").size(), 1u) << hostile.dump();
  EXPECT_EQ(hostile.at("result").at(0).at("metric").at("name").get<std::string>(), kHostileName);

  // The docs' example queries are valid PromQL over these series.
  const std::vector<std::string> queries = documented_queries();
  EXPECT_GE(queries.size(), 4u);
  for (const std::string& promql : queries) {
    std::string query_error;
    EXPECT_FALSE(prometheus.query(promql, &query_error).is_null()) << promql << ": " << query_error;
  }
}

}  // namespace
}  // namespace netsem::testing
