// The web page (GET /) in Debian's headless Chromium against the real
// netsemd: sessions over the protocol make holders and waiters (labels and
// names with markup in them), the browser loads the page from the server's
// HTTP listener, and the test reads the rendered DOM (what the page's script
// built from the JSON API, not the HTML the server sent): the semaphores
// with their bars and counts, an expanded name's holders and queue, the
// sessions, the figures; paging and the filter over 2000 names; the banner
// when the server stops answering and its end when it answers again; no
// polling while the tab is hidden; the token prompt of a server that requires
// tokens (asked once, then only by the banner's button; a kept token serves a
// reload); on a follower of a 3-server cluster, the Cluster figure naming its
// role, term and leader, then the new leader once the leader is killed, and
// red once no leader is known. Keys are pressed as a user would (the
// DevTools protocol's Input events), not simulated in the page.
//
// Skipped, saying so, when no chromium is installed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "auth/token_hash.h"
#include "chromium.h"
#include "cluster/cluster_leader.h"
#include "cluster/cluster_ports.h"
#include "netsemd_harness.h"
#include "support/http_client.h"
#include "support/request_lines.h"
#include "web_scene.h"

namespace netsem::testing {
namespace {

using nlohmann::json;

// A name no page may render as markup, and labels with markup in them.
constexpr const char* kHostileName = "<img src=x onerror=alert(1)>";
constexpr const char* kHolderLabel = "<b>holder</b>";
constexpr const char* kWaiterLabel = "<i>waiter</i>";

// JavaScript: the row of the semaphore named `name` (a JSON string literal
// in the script, so any name is safe to pass).
std::string row_of(const std::string& name) {
  return "[...document.querySelectorAll('#semaphores > tbody > tr:not(.detail)')].find(r => "
         "r.querySelector('button.name').textContent === " +
         json(name).dump() + ")";
}

// JavaScript: the rows of the holders ("holders") or the queue ("queue")
// in the expanded details of `name`, or both ("both").
std::string detail_rows(const std::string& name, const std::string& part) {
  const std::string selector = part == "both" ? ".holders > table > tbody > tr, .queue > table > tbody > tr"
                                              : "." + part + " > table > tbody > tr";
  return row_of(name) + ".nextElementSibling.querySelectorAll('" + selector + "')";
}

// JavaScript: the texts of the cells of each of `rows` (an expression).
std::string cells_of(const std::string& rows) {
  return "[..." + rows + "].map(r => [...r.cells].map(c => c.textContent))";
}

class WebPage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto browser = Chromium::find_browser();
    if (!browser) return;
    std::string error;
    chromium_ = Chromium::start(*browser, &error).release();
    if (chromium_ == nullptr) start_error_ = new std::string(error);
  }
  static void TearDownTestSuite() {
    delete chromium_;
    chromium_ = nullptr;
  }

  void SetUp() override {
    if (!Chromium::find_browser()) {
      GTEST_SKIP() << "no chromium on PATH (nor $NETSEM_CHROMIUM): the web page is not tested. "
                      "scripts/install-deps.sh installs Debian's chromium.";
    }
    ASSERT_NE(chromium_, nullptr) << "chromium did not start: " << (start_error_ ? *start_error_ : "");
    chromium_->clear_page_reports();
  }

  void TearDown() override {
    if (chromium_ == nullptr) return;
    // Leave the tab on a blank page, so that no poll reaches the next test's server.
    chromium_->navigate("about:blank");
    EXPECT_EQ(chromium_->page_errors(), std::vector<std::string>{});
    EXPECT_EQ(chromium_->dialogs(), std::vector<std::string>{});
  }

  Chromium& browser() { return *chromium_; }

  // Evaluates `expression`, failing the test when it throws.
  json eval(const std::string& expression) {
    auto value = chromium_->evaluate(expression);
    EXPECT_TRUE(value.has_value()) << expression << ": " << chromium_->last_error();
    return value.value_or(json());
  }

  bool wait_until(const std::string& expression, std::chrono::milliseconds timeout = 15s) {
    const bool ok = chromium_->wait_until(expression, timeout);
    EXPECT_TRUE(ok) << "not true within " << timeout.count() << " ms: " << expression << " (" << chromium_->last_error()
                    << ")";
    return ok;
  }

  static Chromium* chromium_;
  static std::string* start_error_;
};

Chromium* WebPage::chromium_ = nullptr;
std::string* WebPage::start_error_ = nullptr;

TEST_F(WebPage, ShowsSemaphoresHoldersAndWaitersAsText) {
  auto server = start_web_server("pool = 3\n");
  ASSERT_TRUE(server.server && server.http_port != 0);
  auto holder = Client::connect(server.server->port());
  auto waiter = Client::connect(server.server->port());
  auto hostile = Client::connect(server.server->port());
  auto hostile_waiter = Client::connect(server.server->port());
  ASSERT_TRUE(holder && waiter && hostile && hostile_waiter);
  ASSERT_TRUE(holder->request(req::hello("h", kHolderLabel)).starts_with("h OK netsem 1.1"));
  ASSERT_TRUE(waiter->request(req::hello("h", kWaiterLabel)).starts_with("h OK netsem 1.1"));
  const std::uint64_t fence = fence_of(holder->request(req::acquire("a", "pool", 2)));
  EXPECT_EQ(waiter->request(req::acquire("a", "pool", 2, 600000)), "a QUEUED 1");
  fence_of(hostile->request(req::acquire("a", kHostileName)));
  EXPECT_EQ(hostile_waiter->request(req::acquire("a", kHostileName)), "a QUEUED 1");
  // A valid name no URL path can carry (browsers resolve `..`, %2E%2E too).
  fence_of(hostile->request(req::acquire("d", "..")));

  ASSERT_TRUE(browser().navigate(server.url("/"))) << browser().last_error();
  ASSERT_TRUE(wait_until(row_of("pool") + " !== undefined"));
  // The bar's row: kind, permits in use of max, holders, waiters.
  EXPECT_EQ(eval(cells_of("[" + row_of("pool") + "]")), json::parse(R"([["pool", "defined", "2 of 3", "1", "1"]])"));
  EXPECT_EQ(eval(row_of("pool") + ".querySelector('.bar > span').style.width"), "66.7%");
  EXPECT_EQ(eval(cells_of("[" + row_of(kHostileName) + "]")),
            json::parse(R"([["<img src=x onerror=alert(1)>", "undefined", "1 of 1", "1", "1"]])"));

  // Expand `pool` with the keyboard: Enter on its focused button.
  ASSERT_TRUE(eval(row_of("pool") + ".querySelector('button').focus(), true") == true);
  ASSERT_TRUE(browser().press_key("Enter"));
  ASSERT_TRUE(wait_until(detail_rows("pool", "both") + ".length === 2"));
  EXPECT_EQ(eval(row_of("pool") + ".querySelector('button').getAttribute('aria-expanded')"), "true");
  EXPECT_EQ(eval("location.hash"), "#open=pool");
  const json holders = eval(cells_of(detail_rows("pool", "holders")));
  ASSERT_EQ(holders.size(), 1u);
  // Session, label, peer, count, fence, since, held for.
  EXPECT_EQ(holders[0][1], kHolderLabel);
  EXPECT_EQ(holders[0][2], holder->local_peer());
  EXPECT_EQ(holders[0][3], "2");
  EXPECT_EQ(holders[0][4], std::to_string(fence));
  const json queue = eval(cells_of(detail_rows("pool", "queue")));
  ASSERT_EQ(queue.size(), 1u);
  // Position, session, label, peer, count, waited, timeout left.
  EXPECT_EQ(queue[0][0], "1");
  EXPECT_EQ(queue[0][2], kWaiterLabel);
  EXPECT_EQ(queue[0][3], waiter->local_peer());
  EXPECT_EQ(queue[0][4], "2");
  // Of its 10 minutes, less than one has passed however loaded the machine.
  EXPECT_TRUE(queue[0][6].get<std::string>().starts_with("9 min ")) << queue[0][6];

  // The hostile name's details, by a click; its waiter waits for ever.
  eval(row_of(kHostileName) + ".querySelector('button').click()");
  ASSERT_TRUE(wait_until(detail_rows(kHostileName, "both") + ".length === 2"));
  const json hostile_queue = eval(cells_of(detail_rows(kHostileName, "queue")));
  ASSERT_EQ(hostile_queue.size(), 1u);
  EXPECT_EQ(hostile_queue[0][6], "no timeout");

  // `..` is listed, and its details (one holder) are read by the query form.
  eval(row_of("..") + ".querySelector('button').click()");
  ASSERT_TRUE(wait_until(detail_rows("..", "holders") + ".length === 1"));

  // No markup from the server became elements.
  EXPECT_EQ(eval("document.querySelectorAll('main img, main b, main i').length"), 0);

  // Sessions: labels as text, permits held.
  const json sessions = eval(cells_of("document.querySelectorAll('#sessions tbody tr')"));
  int seen = 0;
  for (const json& row : sessions) {
    if (row[1] == kHolderLabel) {
      EXPECT_EQ(row[2], holder->local_peer());
      EXPECT_EQ(row[4], "2");
      ++seen;
    }
    if (row[1] == kWaiterLabel) {
      EXPECT_EQ(row[4], "0");
      EXPECT_EQ(row[5], "1");
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2) << sessions.dump();

  // The figures: 4 permits held (2 of pool, 1 of the hostile name, 1 of ..), 2 waiting.
  const std::string figures =
      "Object.fromEntries([...document.querySelectorAll('#figures div')].map(d => [d.children[0].textContent, "
      "d.children[1].textContent]))";
  ASSERT_TRUE(wait_until(figures + "['Permits held'] === '4'"));
  EXPECT_EQ(eval(figures + "['Waiting']"), "2");
  EXPECT_EQ(eval(figures + "['Semaphores']"), "3");
  EXPECT_EQ(eval(figures + "['Journal']"), "writing");
  // The chart is drawn (an axis at least, lines once two samples exist).
  EXPECT_GE(eval("document.querySelectorAll('#chart-grants line').length"), 2);

  // A release shows within a poll or two: the waiter now holds.
  EXPECT_EQ(holder->request(req::release("r", "pool", 2)), "r OK 1");
  EXPECT_TRUE(waiter->read_line().has_value());
  ASSERT_TRUE(wait_until(row_of("pool") + ".cells[3].textContent === '1' && " + row_of("pool") +
                         ".cells[4].textContent === '0'"));
  ASSERT_TRUE(wait_until(cells_of(detail_rows("pool", "holders")) + "[0][1] === " + json(kWaiterLabel).dump()));
}

TEST_F(WebPage, PagesAndFiltersTwoThousandNames) {
  auto server = start_web_server("");
  ASSERT_TRUE(server.server && server.http_port != 0);
  auto holder = Client::connect(server.server->port());
  ASSERT_TRUE(holder);
  // 2000 undefined names held by one session, the requests pipelined.
  std::string lines;
  for (int i = 0; i < 2000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "job-%04d", i);
    lines += req::acquire("a", name, 1, 0) + "\n";
  }
  holder->send(lines);
  for (int i = 0; i < 2000; ++i) {
    auto answer = holder->read_line(10s);
    ASSERT_TRUE(answer && answer->starts_with("a OK")) << i << ": " << answer.value_or("(none)");
  }

  const std::string rows = "document.querySelectorAll('#semaphores > tbody > tr:not(.detail)')";
  const std::string first = rows + "[0].querySelector('button').textContent";
  ASSERT_TRUE(browser().navigate(server.url("/"))) << browser().last_error();
  ASSERT_TRUE(wait_until(rows + ".length === 100"));
  EXPECT_EQ(eval(first), "job-0000");
  EXPECT_EQ(eval("document.getElementById('semaphores-page').textContent"), "Page 1: 100 names");
  EXPECT_EQ(eval("document.getElementById('semaphores-prev').disabled"), true);

  eval("document.getElementById('semaphores-next').click()");
  ASSERT_TRUE(wait_until(first + " === 'job-0100'"));
  EXPECT_EQ(eval(rows + ".length"), 100);
  eval("document.getElementById('semaphores-next').click()");
  ASSERT_TRUE(wait_until(first + " === 'job-0200'"));
  eval("document.getElementById('semaphores-prev').click()");
  ASSERT_TRUE(wait_until(first + " === 'job-0100'"));

  // The filter: typed into the box (input events as the browser makes them),
  // applied after a pause; paging starts again from the first name with
  // the prefix.
  eval("document.getElementById('prefix').focus()");
  ASSERT_TRUE(browser().type_text("job-195"));
  ASSERT_TRUE(wait_until(first + " === 'job-1950' && " + rows + ".length === 10"));
  EXPECT_EQ(eval("document.getElementById('semaphores-next').disabled"), true);
  EXPECT_EQ(eval("location.hash"), "#prefix=job-195");
  ASSERT_TRUE(browser().press_key("Backspace"));
  ASSERT_TRUE(wait_until(first + " === 'job-1900' && " + rows + ".length === 100"));
  ASSERT_TRUE(browser().type_text("x"));
  ASSERT_TRUE(
      wait_until("document.getElementById('semaphores-empty').textContent === "
                 "'No semaphore\\'s name starts with “job-19x”.'"));
  EXPECT_EQ(eval(rows + ".length"), 0);

  // A refused prefix is said by the box, not as a failing server.
  eval(
      "document.getElementById('prefix').value = '$local'; document.getElementById('prefix')"
      ".dispatchEvent(new Event('input'))");
  ASSERT_TRUE(wait_until("document.getElementById('filter-error').textContent !== ''"));
  EXPECT_EQ(eval("document.getElementById('banner').hidden"), true);

  // 1000 rows a page.
  eval(
      "document.getElementById('prefix').value = ''; document.getElementById('prefix')"
      ".dispatchEvent(new Event('input'))");
  eval("const s = document.getElementById('page-size'); s.value = '1000'; s.dispatchEvent(new Event('change'))");
  ASSERT_TRUE(wait_until(rows + ".length === 1000"));
  EXPECT_EQ(eval(first), "job-0000");
}

// The highest term in which `server`'s log says it leads (0: none).
std::uint64_t led_term(const Netsemd& server) {
  static const std::regex kLeads(R"(cluster: leader in term (\d+))");
  const std::string log = server.log();
  std::uint64_t term = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kLeads); it != std::sregex_iterator(); ++it) {
    term = std::max<std::uint64_t>(term, std::stoull((*it)[1]));
  }
  return term;
}

// A follower's page in a cluster of three real netsemd: the Cluster figure
// (in place of the Journal) says "follower, term T, leader L"; once the
// leader is killed it names the new one (or "leader, term T" on the new
// leader), and once the last other server is killed too, "no leader known",
// in red.
TEST_F(WebPage, AClusterFollowersPageShowsItsRoleTermAndLeaderAndFollowsAnElection) {
  constexpr int kServers = 3;
  TempDir dir;
  std::array<std::uint16_t, kServers> client_ports{};
  std::array<std::uint16_t, kServers> raft_ports{};
  pick_cluster_ports(client_ports, raft_ports);
  write_cluster_secrets(dir.path(), kServers, "a-cluster-secret-of-the-web-test-0123456789");
  const auto host = [](int i) { return "127.0.0." + std::to_string(i + 1); };
  std::array<std::unique_ptr<Netsemd>, kServers> servers;
  for (int i = 0; i < kServers; ++i) {
    std::string text = "[server]\nbind_address = " + host(i) +
                       "\nbind_port = @PORT@\nstats_dir = @DIR@\ndata_dir = @DIR@\nhttp_enabled = on\n"
                       "http_address = " +
                       host(i) + "\nhttp_port = 0\n[semaphores]\npool = 2\n[cluster]\nid = " + std::to_string(i + 1) +
                       "\nsecret_file = " + cluster_secret_file(dir.path(), i).string() +
                       "\nelection_timeout_ms = 500\nheartbeat_timeout_ms = 50\n";
    for (int j = 0; j < kServers; ++j) {
      text += "server." + std::to_string(j + 1) + " = " + host(j) + ":" + std::to_string(raft_ports[j]) + " " +
              host(j) + ":" + std::to_string(client_ports[j]) + "\n";
    }
    Netsemd::Options options;
    options.raw_config = text;
    options.port = client_ports[i];
    options.data_dir = dir.path() / ("data" + std::to_string(i + 1));
    std::string error;
    servers[i] = Netsemd::start(options, &error);
    ASSERT_TRUE(servers[i] != nullptr) << error;
  }
  const auto logs = [&servers] {
    std::string all;
    for (int i = 0; i < kServers; ++i) {
      if (servers[i] != nullptr) all += "--- server " + std::to_string(i + 1) + ":\n" + servers[i]->log();
    }
    return all;
  };
  const auto kill = [&servers](int i) {
    servers[i]->send_signal(SIGKILL);
    ASSERT_TRUE(servers[i]->wait_exit(5s).has_value());
    servers[i].reset();
  };

  const int lead = cluster_leader(servers, 10s);
  ASSERT_GE(lead, 0) << logs();
  const int page = (lead + 1) % kServers;  // a follower's page
  const std::uint16_t http_port = test_support::http_port_from_log(servers[page]->log());
  ASSERT_NE(http_port, 0) << servers[page]->log();
  ASSERT_TRUE(browser().navigate("http://" + host(page) + ":" + std::to_string(http_port) + "/"))
      << browser().last_error();
  const std::string figure =
      "[...document.querySelectorAll('#figures > div')].find(d => d.querySelector('dt').textContent === 'Cluster')";
  const std::string text = figure + "?.querySelector('dd').textContent";
  const std::string red = figure + "?.querySelector('dd').classList.contains('bad')";
  const std::string shown = "JSON.stringify([" + text + ", " + red + "])";

  const std::string first =
      "follower, term " + std::to_string(led_term(*servers[lead])) + ", leader " + std::to_string(lead + 1);
  EXPECT_TRUE(wait_until(text + " === " + json(first).dump())) << eval(shown) << "\n" << logs();
  EXPECT_EQ(eval(red), false);
  // No journal on a member: its place in the cluster instead.
  EXPECT_EQ(eval("[...document.querySelectorAll('#figures dt')].some(d => d.textContent === 'Journal')"), false);

  ASSERT_NO_FATAL_FAILURE(kill(lead));
  int next = -1;
  std::uint64_t term = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (next < 0 && std::chrono::steady_clock::now() < deadline) {
    const int found = cluster_leader(servers, 1s);
    if (found >= 0 && found != lead) next = found;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GE(next, 0) << logs();
  term = led_term(*servers[next]);
  const std::string second = next == page
                                 ? "leader, term " + std::to_string(term)
                                 : "follower, term " + std::to_string(term) + ", leader " + std::to_string(next + 1);
  EXPECT_TRUE(wait_until(text + " === " + json(second).dump())) << eval(shown) << "\n" << logs();
  EXPECT_EQ(eval(red), false);

  // Alone: no leader (a leader without a majority steps down after an
  // election timeout): said so, in red.
  ASSERT_NO_FATAL_FAILURE(kill(3 - lead - page));
  EXPECT_TRUE(wait_until("(" + text + " || '').includes('no leader known') && " + red)) << eval(shown) << "\n"
                                                                                        << logs();
}

TEST_F(WebPage, ShowsABannerWhileTheServerDoesNotAnswer) {
  auto server = start_web_server("pool = 1\n");
  ASSERT_TRUE(server.server && server.http_port != 0);
  ASSERT_TRUE(browser().navigate(server.url("/"))) << browser().last_error();
  ASSERT_TRUE(wait_until(row_of("pool") + " !== undefined"));
  EXPECT_EQ(eval("document.getElementById('banner').hidden"), true);

  // Stopped: connections are accepted by the kernel but nothing answers
  // (the page gives up on a request after 5 s).
  server.server->send_signal(SIGSTOP);
  ASSERT_TRUE(wait_until("!document.getElementById('banner').hidden", 20s));
  EXPECT_TRUE(
      eval("document.getElementById('banner').textContent").get<std::string>().starts_with("netsemd is not answering"))
      << eval("document.getElementById('banner').textContent");
  EXPECT_EQ(eval("document.body.classList.contains('stale')"), true);
  EXPECT_EQ(eval("document.getElementById('banner').getAttribute('role')"), "alert");
  // The last figures stay on the page.
  EXPECT_EQ(eval(row_of("pool") + " !== undefined"), true);

  server.server->send_signal(SIGCONT);
  ASSERT_TRUE(wait_until("document.getElementById('banner').hidden", 20s));
  EXPECT_EQ(eval("document.body.classList.contains('stale')"), false);

  // Gone: the connection is refused.
  server.server->send_signal(SIGKILL);
  server.server->wait_exit();
  ASSERT_TRUE(wait_until("!document.getElementById('banner').hidden", 20s));
  EXPECT_NE(eval("document.getElementById('banner').textContent").get<std::string>().find("the connection failed"),
            std::string::npos);
}

TEST_F(WebPage, DoesNotPollWhileTheTabIsHidden) {
  auto server = start_web_server("pool = 1\n");
  ASSERT_TRUE(server.server && server.http_port != 0);
  ASSERT_TRUE(browser().navigate(server.url("/"))) << browser().last_error();
  const std::string requests =
      "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/stats')).length";
  eval("performance.setResourceTimingBufferSize(100000)");
  ASSERT_TRUE(wait_until(requests + " >= 2"));  // polling

  // Hidden, as the browser says when the user switches tabs.
  ASSERT_TRUE(browser().set_visible(false));
  ASSERT_EQ(eval("document.hidden"), true);
  // A refresh under way when the tab hid still ends (`running` is the
  // page's own flag); after it, no request for two and a half intervals.
  ASSERT_TRUE(wait_until("!running"));
  const int before = eval(requests).get<int>();
  std::this_thread::sleep_for(5s);
  EXPECT_EQ(eval(requests), before);

  // Visible again: a refresh at once, and polling again.
  ASSERT_TRUE(browser().set_visible(true));
  ASSERT_TRUE(wait_until(requests + " >= " + std::to_string(before + 2)));
}

TEST_F(WebPage, AsksForATokenOnceAndReadsWithIt) {
  TempDir dir;
  const auto tokens = dir.path() / "tokens.ini";
  std::ofstream(tokens) << "[tokens]\nviewer = " << auth::hash_token("viewer-token", auth::HashCost::kMinimum).value()
                        << " read\nworker = " << auth::hash_token("worker-token", auth::HashCost::kMinimum).value()
                        << " acquire\n";
  ASSERT_EQ(::chmod(tokens.c_str(), 0600), 0);
  auto server = start_web_server("pool = 3\n", "tokens_file = " + tokens.string() + "\n");
  ASSERT_TRUE(server.server && server.http_port != 0);
  auto holder = Client::connect(server.server->port());
  ASSERT_TRUE(holder);
  ASSERT_EQ(holder->request("t AUTH worker-token"), "t OK acquire");
  fence_of(holder->request(req::acquire("a", "pool")));
  const std::string banner = "document.getElementById('banner')";
  const std::string button = "document.getElementById('token-button')";

  // A wrong token: asked for once, refused, and not asked for again by the
  // polls that follow (2.5 intervals); the banner offers to enter another.
  browser().set_prompt_answer("wrong-token");
  ASSERT_TRUE(browser().navigate(server.url("/"))) << browser().last_error();
  ASSERT_TRUE(wait_until(button + " !== null"));
  EXPECT_NE(eval(banner + ".textContent").get<std::string>().find("requires a token with the read right"),
            std::string::npos)
      << eval(banner + ".textContent");
  std::this_thread::sleep_for(5s);
  EXPECT_EQ(browser().dialogs(),
            std::vector<std::string>{"prompt: This netsem server requires a token with the read right:"});
  EXPECT_EQ(eval("sessionStorage.getItem('netsem.token')"), json());
  EXPECT_EQ(eval(row_of("pool") + " === undefined"), true);

  // The button asks again; the right token shows the semaphores.
  browser().set_prompt_answer("viewer-token");
  eval(button + ".click(), true");
  ASSERT_TRUE(wait_until(row_of("pool") + " !== undefined && " + banner + ".hidden"));
  EXPECT_EQ(eval(cells_of("[" + row_of("pool") + "]")), json::parse(R"([["pool", "defined", "1 of 3", "1", "0"]])"));
  EXPECT_EQ(eval("sessionStorage.getItem('netsem.token')"), "viewer-token");
  EXPECT_EQ(browser().dialogs().size(), 2u);

  // A reload reads with the token the tab kept: no prompt.
  ASSERT_TRUE(browser().navigate(server.url("/"))) << browser().last_error();
  ASSERT_TRUE(wait_until(row_of("pool") + " !== undefined"));
  EXPECT_EQ(browser().dialogs().size(), 2u);

  // A token without the read right: 403, said as such, with the button; no prompt.
  eval("sessionStorage.setItem('netsem.token', 'worker-token'), true");
  ASSERT_TRUE(browser().navigate(server.url("/"))) << browser().last_error();
  ASSERT_TRUE(wait_until(button + " !== null"));
  EXPECT_NE(eval(banner + ".textContent").get<std::string>().find("may not read"), std::string::npos)
      << eval(banner + ".textContent");
  EXPECT_EQ(browser().dialogs().size(), 2u);
  browser().set_prompt_answer(std::nullopt);
  browser().clear_page_reports();
}

}  // namespace
}  // namespace netsem::testing
