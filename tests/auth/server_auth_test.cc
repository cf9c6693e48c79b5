// Tokens and rights against the real netsemd (docs/security.md): the hash
// netsemd --hash-token prints, a tokens_file, AUTH with a wrong and a right
// token, five failures closing, rights by verb and by prefix, requests
// pipelined behind an AUTH, a reload revoking a token, ACE sessions'
// ace_rights and ace_networks, and a canary showing that slow hashes do not
// delay other sessions' grants.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "auth/token_hash.h"
#include "netsemd_harness.h"

namespace netsem::testing {
namespace {

using namespace std::chrono_literals;

// netsemd --hash-token with `input` on standard input: its exit status and output.
std::pair<int, std::string> run_hash_token(const std::string& input) {
  const std::string command = "printf '%s' '" + input + "' | " NETSEMD_PATH " --hash-token 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  std::string out;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string hash_of(const std::string& token) {
  auto [status, out] = run_hash_token(token + "\n");
  EXPECT_EQ(status, 0) << out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Writes a tokens file (mode 600 unless told) and returns its path.
std::filesystem::path write_tokens(const TempDir& dir, const std::string& body, mode_t mode = 0600) {
  const auto path = dir.path() / "tokens.ini";
  std::ofstream(path) << body;
  ::chmod(path.c_str(), mode);
  return path;
}

class ServerAuth : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    worker_hash_ = hash_of("work-token");
    tokens_body_ = "[tokens]\nworker = " + worker_hash_ + " acquire,read jobs/\nreader = " + hash_of("read-token") +
                   " read jobs/ ci/\nboss = " + hash_of("admin-token") + " admin\n";
    tokens_path_ = write_tokens(*dir_, tokens_body_);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  std::unique_ptr<Netsemd> start(std::string extra = {}) {
    Netsemd::Options options;
    options.server_options = "tokens_file = " + tokens_path_.string() + "\n" + extra;
    options.semaphores = "pool = 2\n";
    std::string error;
    auto server = Netsemd::start(options, &error);
    EXPECT_TRUE(server) << error;
    return server;
  }

  static TempDir* dir_;
  static std::string worker_hash_;
  static std::string tokens_body_;
  static std::filesystem::path tokens_path_;
};

TempDir* ServerAuth::dir_ = nullptr;
std::string ServerAuth::worker_hash_;
std::string ServerAuth::tokens_body_;
std::filesystem::path ServerAuth::tokens_path_;

TEST(HashToken, PrintsAHashOfTheTokenOnStandardInput) {
  const std::string hash = hash_of("s3cret!");
  ASSERT_TRUE(hash.starts_with("$argon2id$")) << hash;
  EXPECT_TRUE(auth::verify_token(hash, "s3cret!"));
  EXPECT_FALSE(auth::verify_token(hash, "s3cret"));
  EXPECT_NE(hash_of("s3cret!"), hash);  // salted
  const auto [status, out] = run_hash_token("two words\n");
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find("visible ASCII"), std::string::npos) << out;
  EXPECT_EQ(run_hash_token("").first, 2);  // no token
}

TEST_F(ServerAuth, BeforeAuthOnlyHelloAuthPingAndQuit) {
  auto server = start();
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  EXPECT_TRUE(client->request("h HELLO 1").starts_with("h OK netsem 1.1 "));
  EXPECT_EQ(client->request("p PING x"), "p PONG x");
  for (const char* line : {"a ACQUIRE jobs/a", "s STATS", "o OPTION queued off", "l LIST", "k KICK 1"}) {
    EXPECT_TRUE(client->request(line).starts_with(std::string(1, line[0]) + " ERR AUTH ")) << line;
  }
  EXPECT_EQ(client->request("q QUIT"), "q OK");
}

TEST_F(ServerAuth, RightsByVerbAndByPrefix) {
  auto server = start();
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  EXPECT_TRUE(client->request("a AUTH wrong-token").starts_with("a ERR AUTH "));
  EXPECT_EQ(client->request("b AUTH work-token"), "b OK read,acquire");
  EXPECT_TRUE(client->request("c ACQUIRE jobs/a").starts_with("c OK "));
  EXPECT_EQ(client->request("d ACQUIRE pool"), "d ERR DENIED ACQUIRE needs the acquire right: pool");
  EXPECT_TRUE(client->request("e POST jobs/a").starts_with("e ERR DENIED POST needs the signal right"));
  EXPECT_TRUE(client->request("f GET jobs/a").starts_with("f OK "));
  EXPECT_TRUE(client->request("g GET pool").starts_with("g ERR DENIED "));
  EXPECT_TRUE(client->request("h LIST").starts_with("h ERR DENIED LIST needs the read right on every name"));
  EXPECT_TRUE(client->request("i LIST jobs/").starts_with("i ITEM jobs/a "));
  EXPECT_EQ(client->read_line().value_or(""), "i END 1");
  EXPECT_TRUE(client->request("j SESSIONS").starts_with("j ERR DENIED "));
  EXPECT_TRUE(client->request("k KICK 1").starts_with("k ERR DENIED KICK needs the admin right"));
  EXPECT_TRUE(client->request("l RELEASE jobs/a").starts_with("l OK "));
  EXPECT_EQ(client->request("m OPTION queued off"), "m OK");

  auto boss = Client::connect(server->port());
  EXPECT_EQ(boss->request("a AUTH admin-token"), "a OK read,acquire,signal,admin");
  EXPECT_TRUE(boss->request("b POST pool").starts_with("b ERR OVERFLOW"));  // allowed, and full
  EXPECT_TRUE(boss->request("c SESSIONS").starts_with("c ITEM "));
}

TEST_F(ServerAuth, FiveFailedAuthCloseTheSession) {
  auto server = start();
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  for (int i = 1; i <= 4; ++i) {
    EXPECT_TRUE(client->request("a AUTH bad-" + std::to_string(i), 10s).starts_with("a ERR AUTH ")) << i;
  }
  client->send_line("a AUTH bad-5");
  EXPECT_TRUE(client->read_line(10s).value_or("").starts_with("a ERR AUTH "));
  EXPECT_EQ(client->read_line().value_or(""), "* ERR AUTH too many failed AUTH");
  EXPECT_TRUE(client->wait_closed());
  EXPECT_TRUE(server->wait_for_log("AUTH failed (5 of 5)"));
  auto stats = Client::connect(server->port());
  ASSERT_EQ(stats->request("a AUTH admin-token", 10s), "a OK read,acquire,signal,admin");
  EXPECT_NE(stats->request("s STATS").find("\"auth_failures_total\":5"), std::string::npos);
}

TEST_F(ServerAuth, RequestsPipelinedBehindAuthWaitForItsAnswer) {
  auto server = start();
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  // One write: the ACQUIRE is read while the token is checked off the loop.
  client->send("h HELLO 1\na AUTH work-token\nb ACQUIRE jobs/x\nc AUTH nope\nd GET jobs/x\n");
  EXPECT_TRUE(client->read_line().value_or("").starts_with("h OK "));
  EXPECT_EQ(client->read_line(10s).value_or(""), "a OK read,acquire");
  EXPECT_TRUE(client->read_line().value_or("").starts_with("b OK "));
  EXPECT_TRUE(client->read_line(10s).value_or("").starts_with("c ERR AUTH "));
  // A failed AUTH leaves the rights the session had.
  EXPECT_TRUE(client->read_line().value_or("").starts_with("d OK 0 1 "));
}

TEST_F(ServerAuth, ReloadRevokingATokenEndsItsSessions) {
  auto server = start();
  ASSERT_TRUE(server);
  auto worker = Client::connect(server->port());
  auto reader = Client::connect(server->port());
  ASSERT_EQ(worker->request("a AUTH work-token", 10s), "a OK read,acquire");
  ASSERT_EQ(reader->request("a AUTH read-token", 10s), "a OK read");
  ASSERT_TRUE(worker->request("b ACQUIRE jobs/held").starts_with("b OK "));
  auto idle = Client::connect(server->port());  // not authenticated yet: a reload leaves it be
  ASSERT_TRUE(idle->request("h HELLO 1").starts_with("h OK "));
  // The worker's token goes; the reader's stays, now with acquire too.
  std::string body = tokens_body_;
  body.erase(body.find("worker = "), body.find('\n', body.find("worker = ")) + 1 - body.find("worker = "));
  body.replace(body.find(" read jobs/ ci/"), 15, " read,acquire jobs/ ci/");
  TempDir other;
  const auto path = write_tokens(other, body);
  std::filesystem::copy_file(path, tokens_path_, std::filesystem::copy_options::overwrite_existing);
  server->send_signal(SIGHUP);
  EXPECT_EQ(worker->read_line(10s).value_or(""), "* ERR KICKED the session's token was revoked by a reload");
  EXPECT_TRUE(worker->wait_closed());
  EXPECT_TRUE(reader->request("c ACQUIRE jobs/held").starts_with("c OK "));  // given back, and now allowed
  EXPECT_EQ(idle->request("p PING"), "p PONG");
  EXPECT_EQ(idle->request("a AUTH read-token", 10s), "a OK read,acquire");
  std::filesystem::copy_file(write_tokens(other, tokens_body_), tokens_path_,
                             std::filesystem::copy_options::overwrite_existing);
}

TEST_F(ServerAuth, ATokensFileReadableByOthersIsRefusedAtStart) {
  TempDir dir;
  const auto path = write_tokens(dir, tokens_body_, 0644);
  Netsemd::Options options;
  options.server_options = "tokens_file = " + path.string() + "\n";
  std::string error;
  EXPECT_FALSE(Netsemd::start(options, &error));
  EXPECT_NE(error.find("readable or writable by group or others"), std::string::npos) << error;
  EXPECT_NE(error.find("chmod 600"), std::string::npos) << error;
}

TEST_F(ServerAuth, AceSessionsHaveAceRights) {
  auto server = start("ace_rights = acquire ace/\n");
  ASSERT_TRUE(server);
  auto allowed = Client::connect(server->port());
  allowed->send("acquire:ace/x|");
  EXPECT_EQ(allowed->read_some(), "locked|");
  auto refused = Client::connect(server->port());
  refused->send("acquire:jobs/x|");
  EXPECT_TRUE(refused->wait_closed());
  EXPECT_TRUE(server->wait_for_log("outside ace_rights"));
}

TEST_F(ServerAuth, AceNetworksNarrowWhoMaySpeakAce) {
  auto server = start("ace_networks = 10.0.0.0/8\n");
  ASSERT_TRUE(server);
  auto ace = Client::connect(server->port());
  ace->send("acquire:ace/x|");
  std::string rest;
  EXPECT_TRUE(ace->wait_closed(3s, &rest));
  EXPECT_EQ(rest, "");  // closed without an answer
  EXPECT_TRUE(server->wait_for_log("outside ace_networks"));
  // protocol v1 from the same peer is not affected.
  auto v1 = Client::connect(server->port());
  EXPECT_TRUE(v1->request("h HELLO 1").starts_with("h OK "));
}

// One HTTP/1.1 request on a fresh connection to the server's HTTP port; the
// whole answer (status line, headers, body).
std::string http(const Netsemd& server, const std::string& target, const std::string& token = {},
                 const std::string& method = "GET") {
  const std::string log = server.log();
  const std::string marker = "HTTP on http://127.0.0.1:";
  const auto at = log.find(marker);
  if (at == std::string::npos) return "no HTTP port in the log";
  const auto port = static_cast<std::uint16_t>(std::stoi(log.substr(at + marker.size())));
  auto client = Client::connect(port);
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  client->send(request + "\r\n");
  std::string answer;
  client->wait_closed(10s, &answer);
  return answer;
}

TEST_F(ServerAuth, HttpNeedsABearerTokenWithTheRight) {
  auto server = start();
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->wait_for_log("HTTP on http://"));
  const auto status = [](const std::string& answer) { return answer.substr(0, answer.find("\r\n")); };
  // Health and the page hold no data: open.
  EXPECT_EQ(status(http(*server, "/healthz")), "HTTP/1.1 200 OK");
  EXPECT_EQ(status(http(*server, "/")), "HTTP/1.1 200 OK");
  const std::string none = http(*server, "/api/v1/stats");
  EXPECT_EQ(status(none), "HTTP/1.1 401 Unauthorized");
  EXPECT_NE(none.find("WWW-Authenticate: Bearer realm=\"netsem\""), std::string::npos) << none;
  EXPECT_EQ(status(http(*server, "/metrics")), "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(status(http(*server, "/api/v1/stats", "wrong-token")), "HTTP/1.1 401 Unauthorized");
  // An unlimited read (admin) reads everything.
  EXPECT_EQ(status(http(*server, "/api/v1/stats", "admin-token")), "HTTP/1.1 200 OK");
  EXPECT_EQ(status(http(*server, "/metrics", "admin-token")), "HTTP/1.1 200 OK");
  EXPECT_EQ(status(http(*server, "/api/v1/sessions", "admin-token")), "HTTP/1.1 200 OK");
  // A read limited to jobs/ and ci/: only listings and names inside them.
  EXPECT_EQ(status(http(*server, "/api/v1/stats", "read-token")), "HTTP/1.1 403 Forbidden");
  EXPECT_EQ(status(http(*server, "/metrics", "read-token")), "HTTP/1.1 403 Forbidden");
  EXPECT_EQ(status(http(*server, "/api/v1/semaphores", "read-token")), "HTTP/1.1 403 Forbidden");
  EXPECT_EQ(status(http(*server, "/api/v1/semaphores?prefix=jobs/", "read-token")), "HTTP/1.1 200 OK");
  EXPECT_EQ(status(http(*server, "/api/v1/semaphore?name=pool", "read-token")), "HTTP/1.1 403 Forbidden");
  // Kicking needs admin, not admin_networks (the peer is loopback).
  EXPECT_EQ(status(http(*server, "/api/v1/sessions/1/kick", "read-token", "POST")), "HTTP/1.1 403 Forbidden");
  EXPECT_EQ(status(http(*server, "/api/v1/sessions/999/kick", "admin-token", "POST")), "HTTP/1.1 404 Not Found");
}

// A canary: while many AUTH checks keep the verifier busy (each a slow hash
// per configured token), another session's ACQUIRE/RELEASE cycles are
// answered at loop speed.
TEST_F(ServerAuth, SlowHashesDoNotDelayOtherSessionsGrants) {
  auto server = start();
  ASSERT_TRUE(server);
  auto canary = Client::connect(server->port());
  ASSERT_EQ(canary->request("a AUTH work-token", 10s), "a OK read,acquire");
  std::vector<std::unique_ptr<Client>> attackers;
  const auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < 8; ++i) {
    attackers.push_back(Client::connect(server->port()));
    attackers.back()->send_line("a AUTH unknown-" + std::to_string(i));  // each a miss: 3 slow hashes
  }
  auto worst = std::chrono::steady_clock::duration::zero();
  for (int i = 0; i < 40; ++i) {
    const auto at = std::chrono::steady_clock::now();
    ASSERT_TRUE(canary->request("c ACQUIRE jobs/canary").starts_with("c OK "));
    ASSERT_TRUE(canary->request("r RELEASE jobs/canary").starts_with("r OK "));
    worst = std::max(worst, std::chrono::steady_clock::now() - at);
  }
  for (auto& attacker : attackers) EXPECT_TRUE(attacker->read_line(60s).value_or("").starts_with("a ERR AUTH "));
  const auto checks = std::chrono::steady_clock::now() - began;
  const auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::printf("canary: worst cycle %lld ms while 24 slow hashes took %lld ms\n", static_cast<long long>(ms(worst)),
              static_cast<long long>(ms(checks)));
  // The checks took seconds; no cycle waited for them.
  EXPECT_LT(worst, 500ms);
  EXPECT_GT(checks, worst * 4);
}

}  // namespace
}  // namespace netsem::testing
