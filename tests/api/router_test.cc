// api::route with no server: a Backend of the test's own values records what
// the router asked for, and the tests read the JSON the router wrote.
// Routing, decoding of names in paths and queries, every error code, and
// the shape of every endpoint's answer (docs/operations.md).
#include "api/router.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <map>

#include "stats/render.h"
#include "web/web.h"

namespace netsem::api {
namespace {

using nlohmann::json;

constexpr std::array<std::uint8_t, 16> kLoopback = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
constexpr std::array<std::uint8_t, 16> kOther = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 7};

// Values the router renders, and what it asked for.
class TestBackend final : public Backend {
 public:
  stats::Snapshot figures;
  std::optional<stats::ClusterFigures> cluster;  // a server in a cluster
  std::vector<stats::HistorySample> samples;
  Readiness ready = Readiness::kReady;
  std::map<std::string, SemaphoreDetail> semaphores_by_name;
  std::vector<SessionRow> session_rows;
  Status loop_status = Status::ok();  // what loop queries fail with, when not ok

  // What was asked.
  std::string asked_prefix, asked_after, asked_name, kick_reason;
  std::size_t asked_limit = 0;
  std::uint64_t asked_session_after = 0;
  std::vector<std::uint64_t> kicked;
  std::uint64_t elsewhere_id = 0;  // a session another server of a cluster hosts
  int loop_calls = 0;

  stats::Snapshot snapshot() const override { return figures; }
  std::optional<stats::ClusterFigures> cluster_figures() const override { return cluster; }
  std::vector<stats::HistorySample> history() const override { return samples; }
  Readiness readiness() const override { return ready; }
  std::int64_t started_at_ms() const override { return 1764775201123; }  // 2025-12-03T15:20:01.123Z
  bool is_admin(const std::array<std::uint8_t, 16>& peer) const override { return peer == kLoopback; }
  bool answers_to(std::string_view name) const override { return name == "localhost" || name == "netsem.example"; }
  Result<SemaphorePage> semaphores(std::string prefix, std::string after, std::size_t limit) override {
    ++loop_calls;
    asked_prefix = prefix;
    asked_after = after;
    asked_limit = limit;
    if (!loop_status) return loop_status;
    SemaphorePage page;
    for (const auto& [name, detail] : semaphores_by_name) {
      if (!name.starts_with(prefix) || name <= after) continue;
      if (page.rows.size() == limit) {
        page.next = page.rows.back().name;
        break;
      }
      page.rows.push_back(detail.semaphore);
    }
    return page;
  }
  Result<std::optional<SemaphoreDetail>> semaphore(std::string name) override {
    ++loop_calls;
    asked_name = name;
    if (!loop_status) return loop_status;
    const auto found = semaphores_by_name.find(name);
    if (found == semaphores_by_name.end()) return std::optional<SemaphoreDetail>();
    return std::optional<SemaphoreDetail>(found->second);
  }
  Result<SessionPage> sessions(std::uint64_t after, std::size_t limit) override {
    ++loop_calls;
    asked_session_after = after;
    asked_limit = limit;
    if (!loop_status) return loop_status;
    SessionPage page;
    for (const auto& row : session_rows) {
      if (row.id <= after) continue;
      if (page.rows.size() == limit) {
        page.next = page.rows.back().id;
        break;
      }
      page.rows.push_back(row);
    }
    return page;
  }
  Result<KickOutcome> kick(std::uint64_t id, std::string reason) override {
    ++loop_calls;
    if (!loop_status) return loop_status;
    kick_reason = reason;
    for (const auto& row : session_rows) {
      if (row.id == id) {
        kicked.push_back(id);
        return KickOutcome{true, {}};
      }
    }
    if (id == elsewhere_id) return KickOutcome{false, "server 2 at 127.0.0.2:53559"};
    return KickOutcome{};
  }
  Result<std::string> metrics() override { return std::string("netsem_up 1\n"); }

  void add(std::string name, std::int64_t value, std::int64_t max) {
    SemaphoreDetail detail;
    detail.semaphore = {name, "created", value, max, 0, 0};
    semaphores_by_name[name] = detail;
  }
};

struct Answer {
  Response response;
  json body;
};

Answer call(Backend& backend, std::string_view method, std::string_view target,
            const std::array<std::uint8_t, 16>& peer = kLoopback) {
  Request request;
  request.method = method;
  request.target = target;
  request.peer = peer;
  request.peer_text = "127.0.0.1:40112";
  Answer answer{route(request, backend), {}};
  if (answer.response.content_type == "application/json") {
    answer.body = json::parse(answer.response.body, nullptr, false);
    EXPECT_FALSE(answer.body.is_discarded()) << answer.response.body;
  }
  return answer;
}

std::string header(const Response& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return {};
}

TEST(Router, HealthAndReadiness) {
  TestBackend backend;
  auto health = call(backend, "GET", "/healthz");
  EXPECT_EQ(health.response.status, 200);
  EXPECT_EQ(health.body, json({{"status", "ok"}}));

  backend.figures.gauges.lease_wait_ms = 1234;
  auto ready = call(backend, "GET", "/readyz");
  EXPECT_EQ(ready.response.status, 200);
  EXPECT_EQ(ready.body, json({{"status", "ready"}, {"lease_wait_ms", 1234}}));
  backend.ready = Readiness::kStarting;
  EXPECT_EQ(call(backend, "GET", "/readyz").response.status, 503);
  EXPECT_EQ(call(backend, "GET", "/readyz").body["status"], "starting");
  backend.ready = Readiness::kStopping;
  EXPECT_EQ(call(backend, "GET", "/readyz").body["status"], "stopping");
  EXPECT_EQ(backend.loop_calls, 0);  // published state only
}

TEST(Router, StatsEmbedsTheStatsObject) {
  TestBackend backend;
  backend.figures.table.grants = 42;
  backend.figures.gauges.sessions = 3;
  auto answer = call(backend, "GET", "/api/v1/stats");
  ASSERT_EQ(answer.response.status, 200);
  EXPECT_EQ(answer.body["protocol"], "1.1");
  EXPECT_EQ(answer.body["started_at"], "2025-12-03T15:20:01.123Z");
  EXPECT_TRUE(answer.body["version"].is_string());
  EXPECT_EQ(answer.body["stats"]["grants"], 42);
  EXPECT_EQ(answer.body["stats"]["sessions"], 3);
  EXPECT_EQ(backend.loop_calls, 0);
}

// In a cluster /api/v1/stats embeds what STATS answers there: no journal
// fields (there is no journal) and the `cluster` object last. It showed
// the journal's fields and no `cluster` (newuser26 item 1).
TEST(Router, StatsInAClusterIsStatsWithTheClusterObjectAndNoJournal) {
  TestBackend backend;
  backend.figures.table.grants = 42;
  stats::ClusterFigures cluster;
  cluster.id = 2;
  cluster.role = "follower";
  cluster.term = 7;
  cluster.leader_id = 1;
  cluster.commit_index = 90;
  cluster.applied_index = 88;
  cluster.lag = 2;
  backend.cluster = cluster;
  auto answer = call(backend, "GET", "/api/v1/stats");
  ASSERT_EQ(answer.response.status, 200);
  const json& stats = answer.body["stats"];
  EXPECT_EQ(stats, json::parse(stats::to_json(backend.figures, &cluster)));
  EXPECT_EQ(stats["grants"], 42);
  for (const auto& [key, value] : stats.items()) EXPECT_FALSE(key.starts_with("journal_")) << key;
  ASSERT_TRUE(stats.contains("cluster")) << stats;
  EXPECT_EQ(stats["cluster"]["id"], 2);
  EXPECT_EQ(stats["cluster"]["role"], "follower");
  EXPECT_EQ(stats["cluster"]["leader_id"], 1);
  EXPECT_EQ(stats["cluster"]["lag"], 2);
  EXPECT_EQ(backend.loop_calls, 0);  // published state only

  // A single server's keeps its journal fields and has no `cluster`.
  backend.cluster.reset();
  const json single = call(backend, "GET", "/api/v1/stats").body["stats"];
  EXPECT_TRUE(single.contains("journal_ok")) << single;
  EXPECT_FALSE(single.contains("cluster")) << single;
}

TEST(Router, HistoryOldestFirst) {
  TestBackend backend;
  backend.samples.push_back({.at_ms = 1000, .grants = 1, .waiting = 2});
  backend.samples.push_back({.at_ms = 6000, .grants = 5, .held = 1});
  auto answer = call(backend, "GET", "/api/v1/history");
  ASSERT_EQ(answer.response.status, 200);
  EXPECT_EQ(answer.body["interval_ms"], 5000);
  ASSERT_EQ(answer.body["samples"].size(), 2u);
  EXPECT_EQ(answer.body["samples"][0]["at"], "1970-01-01T00:00:01.000Z");
  EXPECT_EQ(answer.body["samples"][0]["grants"], 1);
  EXPECT_EQ(answer.body["samples"][0]["waiting"], 2);
  EXPECT_EQ(answer.body["samples"][1]["grants"], 5);
  EXPECT_EQ(answer.body["samples"][1]["held"], 1);
  for (const char* key : {"timeouts", "cancellations", "requests", "connections", "sessions", "semaphores"}) {
    EXPECT_TRUE(answer.body["samples"][1].contains(key)) << key;
  }
}

TEST(Router, SemaphoresPageWithPrefixAfterAndLimit) {
  TestBackend backend;
  for (const char* name : {"a 1", "a+2", "a/3", "b"}) backend.add(name, 1, 2);
  auto answer = call(backend, "GET", "/api/v1/semaphores?prefix=a%20&limit=5");
  ASSERT_EQ(answer.response.status, 200) << answer.response.body;
  EXPECT_EQ(backend.asked_prefix, "a ");
  EXPECT_EQ(backend.asked_limit, 5u);
  ASSERT_EQ(answer.body["semaphores"].size(), 1u);
  EXPECT_EQ(answer.body["semaphores"][0],
            json({{"name", "a 1"}, {"kind", "created"}, {"value", 1}, {"max", 2}, {"holders", 0}, {"waiters", 0}}));
  EXPECT_TRUE(answer.body["next"].is_null());

  // `+` is a space in a query, %2B a plus.
  call(backend, "GET", "/api/v1/semaphores?prefix=a+1");
  EXPECT_EQ(backend.asked_prefix, "a 1");
  call(backend, "GET", "/api/v1/semaphores?prefix=a%2B");
  EXPECT_EQ(backend.asked_prefix, "a+");

  answer = call(backend, "GET", "/api/v1/semaphores?limit=2");
  EXPECT_EQ(backend.asked_limit, 2u);
  ASSERT_EQ(answer.body["semaphores"].size(), 2u);
  EXPECT_EQ(answer.body["next"], "a+2");
  answer = call(backend, "GET", "/api/v1/semaphores?limit=2&after=a%2B2");
  EXPECT_EQ(backend.asked_after, "a+2");
  ASSERT_EQ(answer.body["semaphores"].size(), 2u);
  EXPECT_EQ(answer.body["semaphores"][0]["name"], "a/3");
  EXPECT_TRUE(answer.body["next"].is_null());

  call(backend, "GET", "/api/v1/semaphores");
  EXPECT_EQ(backend.asked_limit, kDefaultPage);
  call(backend, "GET", "/api/v1/semaphores?limit=1000");
  EXPECT_EQ(backend.asked_limit, 1000u);
}

TEST(Router, OneSemaphoreWithHoldersAndWaiters) {
  TestBackend backend;
  SemaphoreDetail detail;
  detail.semaphore = {"db/main", "defined", 0, 2, 1, 1};
  detail.holders.push_back({7, "backup", "127.0.0.1:5000", 2, 99, 1500, 1000});
  detail.waiters.push_back({8, "", "[::1]:6000", "acquire", 1, 300, std::nullopt});
  detail.waiters.push_back({9, "ace", "127.0.0.1:7000", "wait", 1, 20, 980});
  backend.semaphores_by_name["db/main"] = detail;

  auto answer = call(backend, "GET", "/api/v1/semaphores/db%2Fmain");
  ASSERT_EQ(answer.response.status, 200) << answer.response.body;
  EXPECT_EQ(backend.asked_name, "db/main");
  const json expected = json::parse(R"({"name":"db/main","kind":"defined","value":0,"max":2,"holders":[
      {"session":7,"label":"backup","peer":"127.0.0.1:5000","count":2,"fence":99,"held_ms":1500,
       "since_at":"1970-01-01T00:00:01.000Z"}],
    "waiters":[
      {"session":8,"label":"","peer":"[::1]:6000","mode":"acquire","count":1,"waited_ms":300,"timeout_left_ms":null},
      {"session":9,"label":"ace","peer":"127.0.0.1:7000","mode":"wait","count":1,"waited_ms":20,"timeout_left_ms":980}],
    "truncated":false})");
  EXPECT_EQ(answer.body, expected);

  // A name is decoded as the protocol decodes it: UTF-8, spaces.
  backend.add("h\xc3\xa9 llo", 1, 1);
  answer = call(backend, "GET", "/api/v1/semaphores/h%C3%A9%20llo");
  EXPECT_EQ(answer.response.status, 200);
  EXPECT_EQ(answer.body["name"], "h\xc3\xa9 llo");
  // `+` in a path is a plus.
  call(backend, "GET", "/api/v1/semaphores/a+b");
  EXPECT_EQ(backend.asked_name, "a+b");

  answer = call(backend, "GET", "/api/v1/semaphores/absent");
  EXPECT_EQ(answer.response.status, 404);
  EXPECT_EQ(answer.body["error"], "NOT_FOUND");
}

TEST(Router, BadNamesAreRefusedBeforeTheLoopIsAsked) {
  TestBackend backend;
  for (const char* target : {
           "/api/v1/semaphores/%24dollar",   // a leading $
           "/api/v1/semaphores/a%00b",       // NUL
           "/api/v1/semaphores/a%0Ab",       // a control character
           "/api/v1/semaphores/%C3",         // cut UTF-8
           "/api/v1/semaphores/%C2%85",      // a C1 control
           "/api/v1/semaphores/",            // empty
           "/api/v1/semaphores?prefix=%FF",  // not UTF-8
           "/api/v1/semaphores?after=%01",   // a control character
       }) {
    SCOPED_TRACE(target);
    auto answer = call(backend, "GET", target);
    EXPECT_EQ(answer.response.status, 400);
    EXPECT_EQ(answer.body["error"], "BAD_NAME");
    EXPECT_TRUE(answer.body["message"].is_string());
  }
  const std::string long_name = "/api/v1/semaphores/" + std::string(256, 'x');
  EXPECT_EQ(call(backend, "GET", long_name).body["error"], "BAD_NAME");
  EXPECT_EQ(call(backend, "GET", "/api/v1/semaphores/" + std::string(255, 'x')).response.status, 404);
  EXPECT_EQ(backend.loop_calls, 1);  // only the valid 255-byte name
}

TEST(Router, BadRequests) {
  TestBackend backend;
  for (const char* target : {
           "/api/v1/semaphores/%zz",                       // not hex
           "/api/v1/semaphores/abc%4",                     // cut short
           "/api/v1/semaphores/abc%",                      // cut short
           "/api/v1/semaphores?prefix=%g1",                // in the query
           "/api/v1/semaphores?limit=0",                   // below 1
           "/api/v1/semaphores?limit=1001",                // above the most
           "/api/v1/semaphores?limit=ten",                 // not a number
           "/api/v1/semaphores?limit=-1",                  // not a number
           "/api/v1/semaphores?limit=5&limit=6",           // twice
           "/api/v1/semaphores?color=red",                 // unknown
           "/api/v1/sessions?after=x",                     // not an id
           "/api/v1/sessions?after=18446744073709551616",  // past 64 bits
           "/healthz?verbose=1",                           // takes nothing
           "*",                                            // not a path
       }) {
    SCOPED_TRACE(target);
    auto answer = call(backend, "GET", target);
    EXPECT_EQ(answer.response.status, 400);
    EXPECT_EQ(answer.body["error"], "BAD_REQUEST");
  }
  EXPECT_EQ(backend.loop_calls, 0);
}

TEST(Router, UnknownPathsAndWrongMethods) {
  TestBackend backend;
  for (const char* target :
       {"/index.html", "/assets/", "/assets/nope.js", "/api", "/api/v1", "/api/v2/stats", "/api/v1/stats/x",
        "/healthz/", "//healthz", "/api/v1/sessions/1", "/api/v1/sessions/1/kick/now", "/api/v1/semaphores/a/b"}) {
    SCOPED_TRACE(target);
    auto answer = call(backend, "GET", target);
    EXPECT_EQ(answer.response.status, 404);
    EXPECT_EQ(answer.body["error"], "NOT_FOUND");
  }
  auto answer = call(backend, "POST", "/api/v1/stats");
  EXPECT_EQ(answer.response.status, 405);
  EXPECT_EQ(answer.body["error"], "METHOD_NOT_ALLOWED");
  EXPECT_EQ(header(answer.response, "Allow"), "GET, HEAD");
  answer = call(backend, "DELETE", "/api/v1/semaphores/x");
  EXPECT_EQ(answer.response.status, 405);
  answer = call(backend, "GET", "/api/v1/sessions/3/kick");
  EXPECT_EQ(answer.response.status, 405);
  EXPECT_EQ(header(answer.response, "Allow"), "POST");
  EXPECT_EQ(call(backend, "HEAD", "/healthz").response.status, 200);
  EXPECT_EQ(backend.loop_calls, 0);
}

TEST(Router, ARequestBodyIsRefused) {
  TestBackend backend;
  Request request;
  request.method = "POST";
  request.target = "/api/v1/sessions/1/kick";
  request.peer = kLoopback;
  request.has_body = true;
  const Response response = route(request, backend);
  EXPECT_EQ(response.status, 413);
  EXPECT_EQ(json::parse(response.body)["error"], "PAYLOAD_TOO_LARGE");
  EXPECT_EQ(backend.loop_calls, 0);
}

TEST(Router, SessionsPage) {
  TestBackend backend;
  for (std::uint64_t id = 1; id <= 3; ++id) {
    backend.session_rows.push_back({id, "127.0.0.1:" + std::to_string(4000 + id), id == 3 ? "ace" : "v1",
                                    id == 1 ? "build" : "", static_cast<std::int64_t>(id), id - 1, 100, 10});
  }
  auto answer = call(backend, "GET", "/api/v1/sessions?limit=2");
  ASSERT_EQ(answer.response.status, 200);
  ASSERT_EQ(answer.body["sessions"].size(), 2u);
  EXPECT_EQ(answer.body["sessions"][0], json::parse(R"({"id":1,"peer":"127.0.0.1:4001","dialect":"v1","label":"build",
      "permits_held":1,"pending":0,"age_ms":100,"idle_ms":10})"));
  EXPECT_EQ(answer.body["next"], 2);
  answer = call(backend, "GET", "/api/v1/sessions?after=2");
  EXPECT_EQ(backend.asked_session_after, 2u);
  ASSERT_EQ(answer.body["sessions"].size(), 1u);
  EXPECT_EQ(answer.body["sessions"][0]["dialect"], "ace");
  EXPECT_TRUE(answer.body["next"].is_null());
}

TEST(Router, KickNeedsTheAdminRightFirst) {
  TestBackend backend;
  backend.session_rows.push_back({5, "127.0.0.1:4005", "v1", "", 0, 0, 0, 0});
  // Without the right: 403 whether the id exists or not (it learns nothing).
  for (const char* target : {"/api/v1/sessions/5/kick", "/api/v1/sessions/6/kick", "/api/v1/sessions/x/kick"}) {
    auto answer = call(backend, "POST", target, kOther);
    EXPECT_EQ(answer.response.status, 403) << target;
    EXPECT_EQ(answer.body["error"], "FORBIDDEN");
  }
  EXPECT_EQ(backend.loop_calls, 0);
  auto answer = call(backend, "POST", "/api/v1/sessions/6/kick");
  EXPECT_EQ(answer.response.status, 404);
  EXPECT_EQ(answer.body["error"], "NOT_FOUND");
  EXPECT_EQ(call(backend, "POST", "/api/v1/sessions/0/kick").response.status, 400);
  EXPECT_EQ(call(backend, "POST", "/api/v1/sessions/x/kick").response.status, 400);
  answer = call(backend, "POST", "/api/v1/sessions/5/kick");
  EXPECT_EQ(answer.response.status, 200);
  EXPECT_EQ(answer.body, json({{"kicked", 5}}));
  EXPECT_EQ(backend.kicked, std::vector<std::uint64_t>{5});
  EXPECT_EQ(backend.kick_reason, "kicked over HTTP by 127.0.0.1:40112");
  // (A cluster.) A session another server hosts: 421, naming its host.
  backend.elsewhere_id = 7;
  answer = call(backend, "POST", "/api/v1/sessions/7/kick");
  EXPECT_EQ(answer.response.status, 421);
  EXPECT_EQ(answer.body["error"], "ELSEWHERE");
  EXPECT_NE(answer.body["message"].get<std::string>().find("server 2 at 127.0.0.2:53559"), std::string::npos)
      << answer.body;
}

// A request as a browser sends it: Host, and Origin/Sec-Fetch-Site when given.
Answer browser_call(Backend& backend, std::string_view method, std::string_view target, std::string_view host,
                    std::string_view origin = "", std::string_view fetch_site = "") {
  Request request;
  request.method = method;
  request.target = target;
  request.peer = kLoopback;
  request.peer_text = "127.0.0.1:40112";
  request.host = host;
  request.origin = origin;
  request.sec_fetch_site = fetch_site;
  Answer answer{route(request, backend), {}};
  answer.body = json::parse(answer.response.body, nullptr, false);
  return answer;
}

TEST(Router, OneSemaphoreByQueryReachesEveryNameDotsIncluded) {
  TestBackend backend;
  backend.add(".", 1, 2);
  backend.add("..", 0, 1);
  backend.add("a b+c", 1, 1);
  for (const auto& [target, name] :
       std::vector<std::pair<std::string, std::string>>{{"/api/v1/semaphore?name=.", "."},
                                                        {"/api/v1/semaphore?name=%2E%2E", ".."},
                                                        {"/api/v1/semaphore?name=a+b%2Bc", "a b+c"}}) {
    auto answer = call(backend, "GET", target);
    EXPECT_EQ(answer.response.status, 200) << target;
    EXPECT_EQ(answer.body["name"], name) << target;
    EXPECT_EQ(backend.asked_name, name) << target;
  }
  EXPECT_EQ(call(backend, "GET", "/api/v1/semaphore").response.status, 400);
  EXPECT_EQ(call(backend, "GET", "/api/v1/semaphore?name=absent").response.status, 404);
  EXPECT_EQ(call(backend, "GET", "/api/v1/semaphore?name=%24local").body["error"], "BAD_NAME");
  EXPECT_EQ(call(backend, "GET", "/api/v1/semaphore?name=x&other=1").response.status, 400);
  EXPECT_EQ(call(backend, "POST", "/api/v1/semaphore?name=.").response.status, 405);
}

TEST(Router, AnswersOnlyToTheHostsItIsKnownBy) {
  TestBackend backend;
  backend.add("x", 1, 1);
  // IP literals (any port), no Host at all, and the names of http_hosts.
  for (const char* host : {"127.0.0.1:53560", "127.0.0.1", "10.1.2.3:80", "[::1]:53560", "[::1]", "", "localhost:53560",
                           "LocalHost", "netsem.example:8080"}) {
    EXPECT_EQ(browser_call(backend, "GET", "/api/v1/semaphores", host).response.status, 200) << host;
  }
  // A name of another site pointed at this address (DNS rebinding), and junk.
  for (const char* host : {"evil.example:53560", "evil.example", "127.0.0.1.evil.example", "[::1", "[nonsense]:1",
                           ":53560", "localhost.evil.example"}) {
    for (const char* target : {"/api/v1/semaphores", "/", "/metrics", "/api/v1/stats"}) {
      auto answer = browser_call(backend, "GET", target, host);
      EXPECT_EQ(answer.response.status, 403) << host << " " << target;
      EXPECT_EQ(answer.body["error"], "BAD_HOST") << host << " " << target;
    }
  }
  // Health answers any name: a load balancer probes by its own.
  EXPECT_EQ(browser_call(backend, "GET", "/healthz", "evil.example").response.status, 200);
  EXPECT_EQ(browser_call(backend, "GET", "/readyz", "evil.example").response.status, 200);
  EXPECT_EQ(backend.loop_calls, static_cast<int>(9));  // only the answered GETs of /api/v1/semaphores
}

TEST(Router, AKickFromAPageOfAnotherSiteIsRefused) {
  TestBackend backend;
  backend.session_rows.push_back({5, "127.0.0.1:4005", "v1", "", 0, 0, 0, 0});
  const struct {
    const char* origin;
    const char* fetch_site;
  } refused[] = {{"http://evil.example", ""},
                 {"http://evil.example", "cross-site"},
                 {"", "cross-site"},
                 {"", "same-site"},
                 {"null", ""},
                 {"http://127.0.0.1:53561", ""},
                 {"https://127.0.0.1:53560", "x"}};
  for (const auto& request : refused) {
    auto answer =
        browser_call(backend, "POST", "/api/v1/sessions/5/kick", "127.0.0.1:53560", request.origin, request.fetch_site);
    EXPECT_EQ(answer.response.status, 403) << request.origin << " " << request.fetch_site;
    EXPECT_EQ(answer.body["error"], "CROSS_SITE");
  }
  EXPECT_TRUE(backend.kicked.empty());
  // The page itself (same origin), and a script with no Origin (curl).
  auto answer = browser_call(backend, "POST", "/api/v1/sessions/5/kick", "127.0.0.1:53560", "http://127.0.0.1:53560",
                             "same-origin");
  EXPECT_EQ(answer.response.status, 200);
  answer = browser_call(backend, "POST", "/api/v1/sessions/5/kick", "127.0.0.1:53560");
  EXPECT_EQ(answer.response.status, 200);
  EXPECT_EQ(backend.kicked, (std::vector<std::uint64_t>{5, 5}));
}

TEST(Router, ALoopThatDoesNotAnswerIs503) {
  TestBackend backend;
  backend.add("x", 1, 1);
  backend.loop_status = Status(StatusCode::kBusy, "the server's event loop did not answer in time");
  for (const char* target : {"/api/v1/semaphores", "/api/v1/semaphores/x", "/api/v1/sessions"}) {
    auto answer = call(backend, "GET", target);
    EXPECT_EQ(answer.response.status, 503) << target;
    EXPECT_EQ(answer.body["error"], "BUSY");
  }
  backend.loop_status = Status(StatusCode::kShutdown, "the server is stopping");
  auto answer = call(backend, "POST", "/api/v1/sessions/1/kick");
  EXPECT_EQ(answer.response.status, 503);
  EXPECT_EQ(answer.body["error"], "STOPPING");
  // Published state still answers.
  EXPECT_EQ(call(backend, "GET", "/api/v1/stats").response.status, 200);
}

TEST(Router, WhileStartingOnlyHealthAndThePageAnswer) {
  TestBackend backend;
  backend.ready = Readiness::kStarting;
  backend.loop_status = Status(StatusCode::kUnavailable, "the server is starting (recovering its journal)");
  EXPECT_EQ(call(backend, "GET", "/healthz").response.status, 200);
  EXPECT_EQ(call(backend, "GET", "/").response.status, 200);
  auto ready = call(backend, "GET", "/readyz");
  EXPECT_EQ(ready.response.status, 503);
  EXPECT_EQ(ready.body, json({{"status", "starting"}}));
  for (const char* target : {"/api/v1/stats", "/api/v1/history", "/api/v1/semaphores", "/api/v1/sessions"}) {
    auto answer = call(backend, "GET", target);
    EXPECT_EQ(answer.response.status, 503) << target;
    EXPECT_EQ(answer.body["error"], "STARTING") << target;
  }
}

TEST(Router, MetricsIsPrometheusText) {
  TestBackend backend;
  auto answer = call(backend, "GET", "/metrics");
  EXPECT_EQ(answer.response.status, 200);
  EXPECT_EQ(answer.response.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(answer.response.body, "netsem_up 1\n");
}

TEST(Router, ServesTheWebPageWithItsValidator) {
  TestBackend backend;
  const web::Asset* page = web::find("/");
  ASSERT_NE(page, nullptr);
  auto answer = call(backend, "GET", "/");
  EXPECT_EQ(answer.response.status, 200);
  EXPECT_EQ(answer.response.content_type, page->content_type);
  EXPECT_EQ(answer.response.body, page->bytes());
  EXPECT_EQ(header(answer.response, "ETag"), page->etag);
  EXPECT_EQ(header(answer.response, "Content-Security-Policy"), web::kContentSecurityPolicy);
  EXPECT_EQ(header(answer.response, "Cache-Control"), "no-cache");

  // Every asset at its path; a query string does not change which.
  for (const web::Asset& asset : web::all()) {
    SCOPED_TRACE(asset.path);
    answer = call(backend, "GET", std::string(asset.path) + "?v=1");
    EXPECT_EQ(answer.response.status, 200);
    EXPECT_EQ(answer.response.body, asset.bytes());
  }

  // A matching If-None-Match: 304 and no body; a stale one: the page.
  Request request;
  request.method = "GET";
  request.target = "/";
  request.if_none_match = page->etag;
  Response response = route(request, backend);
  EXPECT_EQ(response.status, 304);
  EXPECT_TRUE(response.body.empty());
  request.if_none_match = "\"0000000000000000\"";
  EXPECT_EQ(route(request, backend).status, 200);

  EXPECT_EQ(call(backend, "POST", "/").response.status, 405);
  EXPECT_EQ(backend.loop_calls, 0);
}

TEST(PercentDecode, Rules) {
  EXPECT_EQ(percent_decode("a%20b%2fc%2F", false), "a b/c/");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode("%00", false), std::string(1, '\0'));
  EXPECT_FALSE(percent_decode("%", false));
  EXPECT_FALSE(percent_decode("%a", false));
  EXPECT_FALSE(percent_decode("%ag", false));
  EXPECT_FALSE(percent_decode("a%", true));
}

TEST(FormatTime, IsoUtcWithMilliseconds) {
  EXPECT_EQ(format_time(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_time(1796311201123), "2026-12-03T15:20:01.123Z");
  EXPECT_EQ(format_time(-1), "1969-12-31T23:59:59.999Z");
}

}  // namespace
}  // namespace netsem::api
