// The JSON API against the real netsemd: semaphores (paging, prefix,
// encoded names), one semaphore's holders and waiters, sessions, the kick
// (403, 404, 200 with the kicked client reading * ERR KICKED), and the web
// page served over the wire.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

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

json get_json(std::uint16_t port, const std::string& target, int expected_status = 200) {
  const auto response = http_get(port, target);
  EXPECT_TRUE(response) << target;
  if (!response) return json();
  EXPECT_EQ(response->status, expected_status) << target << ": " << response->body;
  EXPECT_EQ(response->header("content-type"), "application/json");
  return json::parse(response->body, nullptr, false);
}

// The session id HELLO answers.
std::uint64_t hello(Client& client, std::string_view label = {}) {
  const std::string answer = client.request(req::hello("h", label));
  const std::string prefix = "h OK netsem 1.1 ";
  EXPECT_TRUE(answer.starts_with(prefix)) << answer;
  return answer.starts_with(prefix) ? std::stoull(answer.substr(prefix.size())) : 0;
}

TEST(HttpApi, SemaphoresArePagedInNameOrder) {
  auto [server, port] = start_http_server({}, "pcap = 2\nsplunk = 4\n");
  ASSERT_NE(port, 0);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  // Created names, one with a space, a slash and UTF-8.
  for (const std::string name : {"db/main", "db/replica 1", "d\xc3\xa9j\xc3\xa0"}) {
    EXPECT_EQ(client->request(req::create("c", name, 3, 3)), "c OK") << name;
  }
  json all = get_json(port, "/api/v1/semaphores");
  ASSERT_EQ(all["semaphores"].size(), 5u) << all.dump();
  std::vector<std::string> names;
  for (const auto& row : all["semaphores"]) names.push_back(row["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"db/main", "db/replica 1", "d\xc3\xa9j\xc3\xa0", "pcap", "splunk"}));
  EXPECT_TRUE(all["next"].is_null());
  EXPECT_EQ(all["semaphores"][3],
            json({{"name", "pcap"}, {"kind", "defined"}, {"value", 2}, {"max", 2}, {"holders", 0}, {"waiters", 0}}));
  EXPECT_EQ(all["semaphores"][0]["kind"], "created");

  // Pages of 2 give the same names, each once.
  std::vector<std::string> paged;
  std::string target = "/api/v1/semaphores?limit=2";
  for (int pages = 0; pages < 10; ++pages) {
    json page = get_json(port, target);
    for (const auto& row : page["semaphores"]) paged.push_back(row["name"]);
    if (page["next"].is_null()) break;
    EXPECT_EQ(page["semaphores"].size(), 2u);
    target = "/api/v1/semaphores?limit=2&after=" + test_support::url_encode(page["next"].get<std::string>());
  }
  EXPECT_EQ(paged, names);

  json db = get_json(port, "/api/v1/semaphores?prefix=db%2F");
  ASSERT_EQ(db["semaphores"].size(), 2u);
  EXPECT_EQ(db["semaphores"][1]["name"], "db/replica 1");
  json replica = get_json(port, "/api/v1/semaphores?prefix=db/replica+");
  ASSERT_EQ(replica["semaphores"].size(), 1u);
  EXPECT_EQ(get_json(port, "/api/v1/semaphores?prefix=zzz")["semaphores"].size(), 0u);
  EXPECT_EQ(get_json(port, "/api/v1/semaphores?prefix=%24x", 400)["error"], "BAD_NAME");
}

TEST(HttpApi, OneSemaphoreShowsItsHoldersAndItsQueue) {
  auto [server, port] = start_http_server({}, "db%2Fmain = 2\n");
  ASSERT_NE(port, 0);
  auto holder = Client::connect(server->port());
  auto waiter = Client::connect(server->port());
  auto forever = Client::connect(server->port());
  ASSERT_TRUE(holder && waiter && forever);
  const auto holder_id = hello(*holder, "backup job");
  const auto waiter_id = hello(*waiter, "web");
  const auto forever_id = hello(*forever);
  const std::string holder_answer = holder->request(req::acquire("a", "db/main", 2));
  ASSERT_TRUE(holder_answer.starts_with("a OK ")) << holder_answer;
  const std::uint64_t fence = fence_of(holder_answer);
  EXPECT_EQ(waiter->request(req::option_queued("o", true)), "o OK");
  EXPECT_EQ(waiter->request(req::acquire("w", "db/main", 1, 60000)), "w QUEUED 1");
  forever->send_line(req::wait("f", "db/main", 1));

  json detail;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  do {  // the WAIT queues when the server reads it
    detail = get_json(port, "/api/v1/semaphores/db%2Fmain");
  } while (detail["waiters"].size() < 2 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(detail["name"], "db/main");
  EXPECT_EQ(detail["kind"], "defined");
  EXPECT_EQ(detail["value"], 0);
  EXPECT_EQ(detail["max"], 2);
  EXPECT_EQ(detail["truncated"], false);
  ASSERT_EQ(detail["holders"].size(), 1u) << detail.dump();
  const json& h = detail["holders"][0];
  EXPECT_EQ(h["session"], holder_id);
  EXPECT_EQ(h["label"], "backup job");
  EXPECT_EQ(h["peer"], holder->local_peer());
  EXPECT_EQ(h["count"], 2);
  EXPECT_EQ(h["fence"], fence);
  EXPECT_GE(h["held_ms"].get<std::int64_t>(), 0);
  EXPECT_TRUE(h["since_at"].get<std::string>().ends_with("Z"));
  ASSERT_EQ(detail["waiters"].size(), 2u) << detail.dump();
  const json& w = detail["waiters"][0];
  EXPECT_EQ(w["session"], waiter_id);
  EXPECT_EQ(w["label"], "web");
  EXPECT_EQ(w["peer"], waiter->local_peer());
  EXPECT_EQ(w["mode"], "acquire");
  EXPECT_EQ(w["count"], 1);
  EXPECT_GT(w["timeout_left_ms"].get<std::int64_t>(), 50000);
  EXPECT_LE(w["timeout_left_ms"].get<std::int64_t>(), 60000);
  EXPECT_EQ(detail["waiters"][1]["session"], forever_id);
  EXPECT_EQ(detail["waiters"][1]["mode"], "wait");
  EXPECT_EQ(detail["waiters"][1]["label"], "");
  EXPECT_TRUE(detail["waiters"][1]["timeout_left_ms"].is_null());

  // The list's counts agree.
  json row = get_json(port, "/api/v1/semaphores?prefix=db")["semaphores"][0];
  EXPECT_EQ(row["holders"], 1);
  EXPECT_EQ(row["waiters"], 2);

  EXPECT_EQ(get_json(port, "/api/v1/semaphores/absent", 404)["error"], "NOT_FOUND");
  EXPECT_EQ(get_json(port, "/api/v1/semaphores/db/main", 404)["error"], "NOT_FOUND");  // two segments
  EXPECT_EQ(get_json(port, "/api/v1/semaphores/%ff", 400)["error"], "BAD_NAME");
  EXPECT_EQ(get_json(port, "/api/v1/semaphores/%2", 400)["error"], "BAD_REQUEST");
}

TEST(HttpApi, SessionsInIdOrder) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(Client::connect(server->port()));
    ASSERT_TRUE(clients.back());
    ids.push_back(hello(*clients.back(), "worker-" + std::to_string(i)));
  }
  ASSERT_TRUE(clients[1]->request(req::acquire("a", "pcap", 2)).starts_with("a OK "));
  json all = get_json(port, "/api/v1/sessions");
  ASSERT_EQ(all["sessions"].size(), 3u) << all.dump();
  for (std::size_t i = 0; i < 3; ++i) {
    const json& s = all["sessions"][i];
    EXPECT_EQ(s["id"], ids[i]);
    EXPECT_EQ(s["label"], "worker-" + std::to_string(i));
    EXPECT_EQ(s["peer"], clients[i]->local_peer());
    EXPECT_EQ(s["dialect"], "v1");
    EXPECT_EQ(s["permits_held"], i == 1 ? 2 : 0);
    EXPECT_EQ(s["pending"], 0);
    EXPECT_GE(s["age_ms"].get<std::int64_t>(), s["idle_ms"].get<std::int64_t>());
  }
  json first = get_json(port, "/api/v1/sessions?limit=1");
  ASSERT_EQ(first["sessions"].size(), 1u);
  EXPECT_EQ(first["next"], ids[0]);
  json rest = get_json(port, "/api/v1/sessions?after=" + std::to_string(ids[0]));
  ASSERT_EQ(rest["sessions"].size(), 2u);
  EXPECT_EQ(rest["sessions"][0]["id"], ids[1]);
  EXPECT_TRUE(rest["next"].is_null());
}

TEST(HttpApi, KickEndsTheSessionAsKickDoes) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  auto victim = Client::connect(server->port());
  auto waiter = Client::connect(server->port());
  ASSERT_TRUE(victim && waiter);
  const auto id = hello(*victim, "stuck");
  ASSERT_TRUE(victim->request(req::acquire("a", "pcap", 2)).starts_with("a OK "));
  waiter->send_line(req::acquire("w", "pcap", 1, 10000));
  // The waiter is queued once the list shows it.
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (get_json(port, "/api/v1/semaphores/pcap")["waiters"].empty() && std::chrono::steady_clock::now() < deadline) {
  }

  auto wrong = http_request(port, "GET", "/api/v1/sessions/" + std::to_string(id) + "/kick");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->header("allow"), "POST");
  auto absent = http_request(port, "POST", "/api/v1/sessions/999999/kick");
  ASSERT_TRUE(absent);
  EXPECT_EQ(absent->status, 404);
  auto with_body = http_request(port, "POST", "/api/v1/sessions/" + std::to_string(id) + "/kick", 5s, {}, "now");
  ASSERT_TRUE(with_body);
  EXPECT_EQ(with_body->status, 413);
  EXPECT_TRUE(victim->quiet_for(100ms));  // neither kicked it

  auto kicked = http_request(port, "POST", "/api/v1/sessions/" + std::to_string(id) + "/kick");
  ASSERT_TRUE(kicked);
  EXPECT_EQ(kicked->status, 200);
  EXPECT_EQ(json::parse(kicked->body), json({{"kicked", id}}));
  const auto line = victim->read_line();
  ASSERT_TRUE(line);
  EXPECT_TRUE(line->starts_with("* ERR KICKED kicked over HTTP by 127.0.0.1:")) << *line;
  EXPECT_TRUE(victim->wait_closed());
  // Its permits went back: the waiter is granted (after its QUEUED line).
  auto granted = waiter->read_line();
  if (granted && granted->starts_with("w QUEUED")) granted = waiter->read_line();
  ASSERT_TRUE(granted);
  EXPECT_TRUE(granted->starts_with("w OK ")) << *granted;
  EXPECT_TRUE(server->wait_for_log("kicked over HTTP by 127.0.0.1:"));
  auto again = http_request(port, "POST", "/api/v1/sessions/" + std::to_string(id) + "/kick");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 404);
}

TEST(HttpApi, KickNeedsAdminNetworks) {
  auto [server, port] = start_http_server("admin_networks = 10.0.0.0/8\n");
  ASSERT_NE(port, 0);
  auto victim = Client::connect(server->port());
  ASSERT_TRUE(victim);
  const auto id = hello(*victim);
  for (const std::string& target :
       {"/api/v1/sessions/" + std::to_string(id) + "/kick", std::string("/api/v1/sessions/424242/kick")}) {
    auto refused = http_request(port, "POST", target);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 403) << target;
    EXPECT_EQ(json::parse(refused->body)["error"], "FORBIDDEN");
  }
  EXPECT_EQ(victim->request(req::ping("p")), "p PONG");  // still there
}

// DNS rebinding: a page of evil.example whose name resolves to 127.0.0.1
// sends `Host: evil.example:PORT`; the listener refuses it unless the name is
// one of http_hosts. A kick posted by a page of another site is refused
// even from an admin peer.
TEST(HttpApi, AnswersOnlyToItsHostNamesAndRefusesCrossSiteKicks) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  const std::string evil = "Host: evil.example:" + std::to_string(port) + "\r\n";
  for (const char* target : {"/", "/api/v1/stats", "/api/v1/semaphores", "/metrics"}) {
    auto refused = http_request(port, "GET", target, std::chrono::seconds(5), evil);
    ASSERT_TRUE(refused) << target;
    EXPECT_EQ(refused->status, 403) << target;
    EXPECT_EQ(json::parse(refused->body)["error"], "BAD_HOST") << target;
  }
  auto health = http_request(port, "GET", "/healthz", std::chrono::seconds(5), evil);
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto by_name = http_request(port, "GET", "/api/v1/stats", std::chrono::seconds(5),
                              "Host: localhost:" + std::to_string(port) + "\r\n");
  ASSERT_TRUE(by_name);
  EXPECT_EQ(by_name->status, 200);

  auto victim = Client::connect(server->port());
  ASSERT_TRUE(victim);
  const auto id = hello(*victim);
  const std::string target = "/api/v1/sessions/" + std::to_string(id) + "/kick";
  auto cross = http_request(port, "POST", target, std::chrono::seconds(5),
                            "Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n");
  ASSERT_TRUE(cross);
  EXPECT_EQ(cross->status, 403);
  EXPECT_EQ(json::parse(cross->body)["error"], "CROSS_SITE");
  EXPECT_EQ(victim->request(req::ping("p")), "p PONG");  // still there

  // An operator's name for the host, listed in http_hosts, is answered.
  auto [named, named_port] = start_http_server("http_hosts = localhost, Netsem.Example\n");
  ASSERT_NE(named_port, 0);
  auto listed = http_request(named_port, "GET", "/api/v1/stats", std::chrono::seconds(5),
                             "Host: netsem.example:" + std::to_string(named_port) + "\r\n");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->status, 200);
  auto other = http_request(named_port, "GET", "/api/v1/stats", std::chrono::seconds(5), evil);
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 403);
}

TEST(HttpApi, TheWebPageIsServedWithItsValidator) {
  auto [server, port] = start_http_server();
  ASSERT_NE(port, 0);
  auto page = http_get(port, "/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_TRUE(page->header("content-type").starts_with("text/html")) << page->header("content-type");
  EXPECT_NE(page->body.find("<html"), std::string::npos);
  EXPECT_FALSE(page->header("content-security-policy").empty());
  const std::string etag = page->header("etag");
  ASSERT_FALSE(etag.empty());
  HttpConnection connection(port);
  ASSERT_TRUE(connection.send_request("GET", "/", "If-None-Match: " + etag + "\r\n"));
  auto cached = connection.read_response();
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->status, 304);
  EXPECT_TRUE(cached->body.empty());
  // The same connection serves the next request (keep-alive).
  ASSERT_TRUE(connection.send_request("GET", "/assets/app.js"));
  auto script = connection.read_response();
  ASSERT_TRUE(script);
  EXPECT_EQ(script->status, 200);
  EXPECT_TRUE(script->header("content-type").find("javascript") != std::string::npos);
}

}  // namespace
}  // namespace netsem::testing
