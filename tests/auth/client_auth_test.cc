// libnetsem and the CLI with tokens against the real netsemd: AUTH after
// HELLO on every (re)connect, a wrong token or a token without the right
// reported as a refusal (kDenied) that never falls back, the lease of a
// token without `read` (LEASE), token_file's mode check, NETSEM_TOKEN, and
// `netsem --token-file`.
#include <gtest/gtest.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "netsem/client.h"
#include "netsem/client_options.h"
#include "netsemd_harness.h"

namespace netsem::testing {
namespace {

using namespace std::chrono_literals;

std::string hash_of(const std::string& token) {
  const std::string command = "printf '%s\\n' '" + token + "' | " NETSEMD_PATH " --hash-token";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string out;
  char buffer[512];
  while (pipe != nullptr && std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
  if (pipe != nullptr) ::pclose(pipe);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// A hash of `token` at a small cost (1 MiB, one pass: a few milliseconds a
// check where netsemd --hash-token's costs about 100 ms, and seconds on a
// loaded machine), so that the handshake's AUTH stays well within
// connect_timeout and a flood of checks drains in seconds.
// A hash of `token` whose check costs about `memory` bytes' worth of
// Argon2id work (1 MiB: under a millisecond; 8 MiB: about 6 ms here).
std::string cheap_hash(const std::string& token, std::size_t memory = 1 << 20) {
  char hash[crypto_pwhash_STRBYTES] = {};
  if (sodium_init() < 0 || crypto_pwhash_str(hash, token.data(), token.size(), 1, memory) != 0) return "?";
  return hash;
}

class ClientAuth : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    tokens_ = dir_->path() / "tokens.ini";
    // The one token made by netsemd --hash-token comes last: the first
    // match ends a check, so only a wrong token pays its cost.
    std::ofstream(tokens_) << "[tokens]\nworker = " << cheap_hash("work-token")
                           << " acquire,read jobs/\nrunner = " << cheap_hash("run-token")
                           << " acquire\nboss = " << hash_of("admin-token") << " admin\n";
    ::chmod(tokens_.c_str(), 0600);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { start_server(""); }
  // (Re)starts netsemd with `more` [server] lines and the tokens of
  // `tokens` (the suite's file when empty).
  void start_server(const std::string& more, std::filesystem::path tokens = {}) {
    server_.reset();
    Netsemd::Options options;
    options.server_options = "tokens_file = " + (tokens.empty() ? tokens_ : tokens).string() + "\n" + more;
    std::string error;
    server_ = Netsemd::start(options, &error);
    ASSERT_TRUE(server_) << error;
  }
  ClientOptions options(std::string token) const {
    ClientOptions o;
    o.servers = {"127.0.0.1:" + std::to_string(server_->port())};
    o.local_dir = dir_->path() / "local";
    o.connect_timeout = 5s;  // AUTH's hash is part of the handshake (a wrong token's: netsemd --hash-token's)
    o.reconnect_min = 20ms;
    o.reconnect_max = 100ms;
    o.request_timeout = 5s;
    o.token = std::move(token);
    o.limits["jobs/a"] = 1;  // listed: fallback would grant it locally in an outage
    return o;
  }
  std::filesystem::path write_file(const std::string& name, const std::string& body, mode_t mode) const {
    const auto path = dir_->path() / name;
    std::ofstream(path) << body;
    ::chmod(path.c_str(), mode);
    return path;
  }

  static TempDir* dir_;
  static std::filesystem::path tokens_;
  std::unique_ptr<Netsemd> server_;
};

TempDir* ClientAuth::dir_ = nullptr;
std::filesystem::path ClientAuth::tokens_;

TEST_F(ClientAuth, ATokenAuthenticatesEveryConnect) {
  auto client = netsem::Client::create(options("work-token"));
  ASSERT_TRUE(client) << client.status().to_string();
  auto permit = (*client)->acquire("jobs/a", {.timeout = 5s});
  ASSERT_TRUE(permit) << permit.status().to_string();
  EXPECT_FALSE(permit->is_local());
  EXPECT_TRUE(permit->release());
  // KICK ends the session; the client reconnects, and AUTHs again.
  auto admin = Client::connect(server_->port());
  ASSERT_EQ(admin->request("a AUTH admin-token", 10s), "a OK read,acquire,signal,admin");
  const std::string row = admin->request("s SESSIONS");  // the client's session comes first (lower id)
  ASSERT_TRUE(row.starts_with("s ITEM ")) << row;
  const std::string id = row.substr(7, row.find(' ', 7) - 7);
  while (auto line = admin->read_line(1s)) {
    if (line->starts_with("s END")) break;
  }
  ASSERT_EQ(admin->request("k KICK " + id), "k OK");
  // Between the loss and the reconnect the name may fall back (an outage);
  // once reconnected, the server grants it again: the new session AUTHed.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while ((*client)->stats().connects < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);  // polling a condition, bounded
  }
  ASSERT_GE((*client)->stats().connects, 2u);
  auto again = (*client)->acquire("jobs/a", {.timeout = 5s});
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_FALSE(again->is_local());
}

TEST_F(ClientAuth, AWrongTokenIsARefusalNeverAFallback) {
  auto client = netsem::Client::create(options("wrong-token"));
  ASSERT_TRUE(client) << client.status().to_string();
  auto permit = (*client)->acquire("jobs/a", {.timeout = 0ms});
  ASSERT_FALSE(permit) << "granted, local: " << permit->is_local();
  EXPECT_EQ(permit.status().code(), StatusCode::kDenied) << permit.status().to_string();
  EXPECT_NE(permit.status().message().find("refused this client's token"), std::string::npos)
      << permit.status().message();
  EXPECT_EQ((*client)->stats().fallback_entries, 0u);
}

TEST_F(ClientAuth, NoTokenIsARefusalToo) {
  auto client = netsem::Client::create(options(""));
  ASSERT_TRUE(client);
  auto permit = (*client)->acquire("jobs/a", {.timeout = 0ms});
  ASSERT_FALSE(permit);
  EXPECT_EQ(permit.status().code(), StatusCode::kDenied) << permit.status().to_string();
  EXPECT_EQ((*client)->stats().fallback_entries, 0u);
}

TEST_F(ClientAuth, ANameOutsideTheTokensPrefixIsDenied) {
  auto client = netsem::Client::create(options("work-token"));
  ASSERT_TRUE(client);
  auto permit = (*client)->acquire("other", {.timeout = 0ms});
  ASSERT_FALSE(permit);
  EXPECT_EQ(permit.status().code(), StatusCode::kDenied) << permit.status().to_string();
  EXPECT_EQ((*client)->stats().fallback_entries, 0u);
}

// A token with only `acquire` may not read STATS, where libnetsem learned
// the session timeout T; LEASE (proposed 1.2) tells it. With T = 2 s: the
// client pings at T/3, so an idle session outlives T with its permit; and a
// frozen server (SIGSTOP) makes the permit lost with a stop-by time before
// T, as without tokens. Before LEASE the client pinged every half of
// request_timeout (2.5 s here): the server ended the idle session at 2 s,
// and the frozen one went unnoticed until request_timeout.
TEST_F(ClientAuth, ATokenWithoutReadStillLearnsTheSessionTimeout) {
  const auto timeout = 2000ms;
  start_server("session_timeout_ms = 2000\n");
  ClientOptions o = options("run-token");
  o.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kFail};
  auto client = netsem::Client::create(o);
  ASSERT_TRUE(client) << client.status().to_string();
  EXPECT_EQ((*client)->server_stats().status().code(), StatusCode::kDenied);  // STATS: no read right
  auto permit = (*client)->acquire("jobs/a", {.timeout = 5s});
  ASSERT_TRUE(permit) << permit.status().to_string();
  ASSERT_FALSE(permit->is_local());

  std::this_thread::sleep_for(timeout * 3 / 2);  // idle past T: the pings keep the session
  EXPECT_FALSE(permit->lost()) << permit->loss_reason().to_string();
  EXPECT_EQ((*client)->stats().connection_losses, 0u);

  std::promise<std::chrono::steady_clock::time_point> lost;
  permit->on_lost([&](const Status&) { lost.set_value(std::chrono::steady_clock::now()); });
  const auto frozen_at = std::chrono::steady_clock::now();
  server_->send_signal(SIGSTOP);
  auto reported = lost.get_future();
  const bool lost_in_time = reported.wait_for(10s) == std::future_status::ready;
  server_->send_signal(SIGCONT);
  ASSERT_TRUE(lost_in_time) << "the holder never noticed the frozen server";
  const auto lost_after = reported.get() - frozen_at;
  std::printf("lost %lld ms after the freeze (T = %lld ms)\n", static_cast<long long>(lost_after / 1ms),
              static_cast<long long>(timeout.count()));
  EXPECT_LT(lost_after, timeout) << "lost after the server could have granted the permit again";
  EXPECT_NE(permit->loss_reason().message().find("lease"), std::string::npos) << permit->loss_reason().to_string();
  ASSERT_TRUE(permit->stop_by().has_value());
  EXPECT_LE(*permit->stop_by(), frozen_at + timeout * 9 / 10);
}

// A flood of wrong tokens fills the server's queue of token checks (256):
// the AUTHs past it are answered a retryable ERR LIMIT, not ERR AUTH, and a
// good client still gets in: its AUTH is checked (queued behind the flood)
// or answered LIMIT and accepted when retried, never refused. The tokens
// file holds one token whose check costs about 6 ms (8 MiB): the 300 AUTHs
// arrive within milliseconds, far faster than they are checked, so the queue
// fills on any machine (with a 1 MiB hash, checked in well under a
// millisecond on CI's machine, it once never filled), and the flood still
// drains in about 2 s.
TEST_F(ClientAuth, AFloodOfWrongTokensDoesNotLockGoodClientsOut) {
  const auto tokens =
      write_file("flood-tokens.ini", "[tokens]\ngood = " + cheap_hash("good-token", 8 << 20) + " acquire\n", 0600);
  start_server("", tokens);
  constexpr int kFlood = 300;
  std::vector<std::unique_ptr<Client>> flood;
  for (int i = 0; i < kFlood; ++i) {
    flood.push_back(Client::connect(server_->port()));
    ASSERT_TRUE(flood.back()) << i;
  }
  // A good raw session in the middle of the flood: OK, or LIMIT then OK.
  auto good = Client::connect(server_->port());
  ASSERT_TRUE(good);
  for (int i = 0; i < kFlood; ++i) {
    flood[static_cast<std::size_t>(i)]->send_line("a AUTH wrong-" + std::to_string(i));
    if (i == kFlood / 2) good->send_line("g AUTH good-token");
  }
  // And libnetsem, connecting meanwhile: its AUTH may wait behind the flood.
  ClientOptions o = options("good-token");
  o.connect_timeout = 20s;
  o.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kFail};
  auto client = netsem::Client::create(o);
  ASSERT_TRUE(client) << client.status().to_string();

  int limited = 0;
  int refused = 0;
  for (auto& session : flood) {
    const std::optional<std::string> answer = session->read_line(30s);
    ASSERT_TRUE(answer) << "no answer to a flood AUTH";
    if (answer->starts_with("a ERR LIMIT ")) {
      ++limited;
    } else if (answer->starts_with("a ERR AUTH ")) {
      ++refused;
    } else {
      ADD_FAILURE() << *answer;
    }
  }
  std::printf("flood of %d wrong tokens: %d answered LIMIT, %d checked and refused\n", kFlood, limited, refused);
  EXPECT_GE(limited, 1) << "the queue of checks never filled";
  const std::optional<std::string> good_answer = good->read_line(30s);
  ASSERT_TRUE(good_answer);
  if (good_answer->starts_with("g ERR LIMIT ")) {
    EXPECT_EQ(*good_answer, "g ERR LIMIT too many token checks waiting at the server; try again later");
    EXPECT_EQ(good->request("g2 AUTH good-token", 30s), "g2 OK acquire");
  } else {
    EXPECT_EQ(*good_answer, "g OK acquire");
  }

  // libnetsem: served, or told kLimit (retryable) until a reconnect is;
  // never kDenied, never a fallback.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  Result<Permit> permit = Status(StatusCode::kUnavailable, "not tried");
  while (std::chrono::steady_clock::now() < deadline) {
    permit = (*client)->acquire("jobs/a", {.timeout = 1s});
    if (permit) break;
    EXPECT_EQ(permit.status().code(), StatusCode::kLimit) << permit.status().to_string();
    EXPECT_NE(permit.status().message().find("too many token checks waiting at the server; try again later"),
              std::string::npos)
        << permit.status().to_string();
    std::this_thread::sleep_for(50ms);  // polling a condition, bounded
  }
  ASSERT_TRUE(permit) << permit.status().to_string();
  EXPECT_FALSE(permit->is_local());
  EXPECT_EQ((*client)->stats().fallback_entries, 0u);
}

TEST_F(ClientAuth, TokenFileMustBePrivate) {
  ClientOptions o;
  const auto open = write_file("open-token", "work-token\n", 0644);
  Status status = o.load_token_file(open);
  EXPECT_EQ(status.code(), StatusCode::kDenied) << status.to_string();
  const auto closed = write_file("closed-token", "  work-token \n", 0600);
  ASSERT_TRUE(o.load_token_file(closed)) << o.load_token_file(closed).to_string();
  EXPECT_EQ(o.token, "work-token");
  EXPECT_EQ(o.load_token_file(write_file("bad-token", "two words\n", 0600)).code(), StatusCode::kInvalidArgument);
}

TEST_F(ClientAuth, EnvironmentAndConfigFileGiveTheToken) {
  const auto file = write_file("env-token", "work-token\n", 0600);
  ::setenv("NETSEM_TOKEN_FILE", file.c_str(), 1);
  auto from_env = ClientOptions::from_environment();
  ::unsetenv("NETSEM_TOKEN_FILE");
  ASSERT_TRUE(from_env) << from_env.status().to_string();
  EXPECT_EQ(from_env->token, "work-token");
  ::setenv("NETSEM_TOKEN", "other-token", 1);
  auto direct = ClientOptions::from_environment();
  ::unsetenv("NETSEM_TOKEN");
  ASSERT_TRUE(direct);
  EXPECT_EQ(direct->token, "other-token");
  const auto ini = write_file("client.ini", "[client]\ntoken_file = " + file.string() + "\n", 0644);
  auto from_file = ClientOptions::from_file(ini);
  ASSERT_TRUE(from_file) << from_file.status().to_string();
  EXPECT_EQ(from_file->token, "work-token");
}

TEST_F(ClientAuth, CliTakesATokenFile) {
  const auto file = write_file("cli-token", "work-token\n", 0600);
  const std::string server = "127.0.0.1:" + std::to_string(server_->port());
  const auto run = [&](const std::string& args) {
    const std::string command = NETSEM_CLI_PATH " --server " + server + " --fallback fail " + args + " 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    std::string out;
    char buffer[512];
    while (pipe != nullptr && std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
    const int status = pipe != nullptr ? ::pclose(pipe) : -1;
    return std::pair{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  };
  const auto ok = run("--token-file " + file.string() + " run jobs/cli -- true");
  EXPECT_EQ(ok.first, 0) << ok.second;
  const auto denied = run("run jobs/cli -- true");  // no token
  EXPECT_NE(denied.first, 0) << denied.second;
  EXPECT_NE(denied.second.find("authentication"), std::string::npos) << denied.second;
  const auto open = write_file("cli-open", "work-token\n", 0644);
  const auto refused = run("--token-file " + open.string() + " run jobs/cli -- true");
  EXPECT_NE(refused.first, 0);
  EXPECT_NE(refused.second.find("chmod 600"), std::string::npos) << refused.second;
}

}  // namespace
}  // namespace netsem::testing
