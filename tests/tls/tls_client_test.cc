// libnetsem and the netsem CLI over TLS against the real netsemd: sessions
// inside TLS, one FIFO queue for plain and TLS sessions, and every failed
// handshake (another CA, an expired certificate either side, a missing
// client certificate, a wrong server name, the plain port) reported as a
// refusal, kDenied, that never falls back even with fallback = local; a
// frozen TLS server, silent and no outage either; and client certificate
// files renewed on disk, read again at the next connect.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/local_semaphores.h"
#include "client/tls_client.h"
#include "netsem/client.h"
#include "netsem/log.h"
#include "tls_support.h"

namespace netsem::testing {
namespace {

using namespace std::chrono_literals;

class TlsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tls_ = start_tls_server(tls_server_options(pki_), "pool = 1\n");
    ASSERT_NE(tls_.tls_port, 0);
  }
  void TearDown() override { (void)client::LocalSemaphores(local_dir()).remove_all(); }
  std::filesystem::path local_dir() const { return scratch_.path() / "local"; }
  ClientOptions options() const { return tls_client_options(pki_, tls_.tls_port, local_dir()); }

  // A client refused by the server's TLS: every call fails kDenied with a
  // message holding `reason`, and nothing falls back (fallback = local).
  void expect_refused(ClientOptions options, std::string_view reason) {
    options.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kLocal};
    auto client = netsem::Client::create(std::move(options));
    ASSERT_TRUE(client.has_value()) << client.status().to_string();
    const auto permit = (*client)->acquire("pool", {.timeout = 0ms});
    ASSERT_FALSE(permit.has_value());
    EXPECT_EQ(permit.status().code(), StatusCode::kDenied) << permit.status().to_string();
    EXPECT_NE(permit.status().message().find(reason), std::string::npos) << permit.status().to_string();
    const auto stats = (*client)->stats();
    EXPECT_EQ(stats.fallback_entries, 0u);
    EXPECT_EQ(stats.local_grants, 0u);
    EXPECT_FALSE((*client)->connected());
  }

  Pki pki_;
  TempDir scratch_;
  TlsServer tls_;
};

TEST_F(TlsClientTest, AcquiresOverTlsAsAV1PlusTlsSession) {
  auto client = netsem::Client::create(options());
  ASSERT_TRUE(client.has_value()) << client.status().to_string();
  auto permit = (*client)->acquire("pool", {.timeout = 2000ms});
  ASSERT_TRUE(permit.has_value()) << permit.status().to_string();
  const auto sessions = (*client)->sessions();
  ASSERT_TRUE(sessions.has_value()) << sessions.status().to_string();
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ(sessions->front().dialect, "v1+tls");
  EXPECT_EQ(sessions->front().permits_held, 1);
  EXPECT_TRUE(tls_.server->wait_for_log("tls_subject=CN%3Dworker-1,O%3DAcme")) << tls_.server->log();
}

TEST_F(TlsClientTest, PlainAndTlsSessionsShareOneFifoQueue) {
  auto holder = Client::connect(tls_.server->port());
  ASSERT_NE(holder, nullptr);
  ASSERT_EQ(holder->request("h ACQUIRE pool 1 0"), "h OK 1");
  // A TLS client queues first, a plain one behind it.
  auto tls_client = netsem::Client::create(options());
  ASSERT_TRUE(tls_client.has_value()) << tls_client.status().to_string();
  auto tls_wait = std::async(std::launch::async, [&] { return (*tls_client)->acquire("pool", {.timeout = 5000ms}); });
  auto plain = Client::connect(tls_.server->port());
  ASSERT_NE(plain, nullptr);
  ASSERT_EQ(await_answer(*plain, "g GET pool", "g OK 0 1 1 1 defined"), "g OK 0 1 1 1 defined");
  plain->send_line("p ACQUIRE pool 1 5000");
  EXPECT_EQ(plain->read_line(), "p QUEUED 2");
  ASSERT_EQ(holder->request("r RELEASE pool"), "r OK 0");
  // The TLS waiter was first: it gets the permit, the plain one still waits.
  auto granted = tls_wait.get();
  ASSERT_TRUE(granted.has_value()) << granted.status().to_string();
  EXPECT_TRUE(plain->quiet_for(200ms));
  ASSERT_TRUE(granted->release().is_ok());
  const auto answer = plain->read_line();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->rfind("p OK ", 0), 0u) << *answer;
}

TEST_F(TlsClientTest, AServerCertificateOfAnotherCaIsARefusal) {
  auto o = options();
  o.tls_ca = pki_.other_ca;
  expect_refused(o, "certificate");
}

TEST_F(TlsClientTest, AWrongServerNameIsARefusal) {
  auto o = options();
  o.tls_server_name = "db.example.com";
  expect_refused(o, "hostname mismatch");
  // The name the certificate has, in place of the address: served.
  o.tls_server_name = "localhost";
  auto client = netsem::Client::create(o);
  ASSERT_TRUE(client.has_value());
  EXPECT_TRUE((*client)->ping().has_value());
}

TEST_F(TlsClientTest, AMissingClientCertificateIsARefusal) {
  auto o = options();
  o.tls_cert.clear();
  o.tls_key.clear();
  expect_refused(o, "certificate required");
}

TEST_F(TlsClientTest, AnExpiredClientCertificateIsARefusal) {
  auto o = options();
  o.tls_cert = pki_.expired_client_cert;
  o.tls_key = pki_.expired_client_key;
  expect_refused(o, "certificate expired");
}

TEST_F(TlsClientTest, TheServersPlainPortIsARefusal) {
  auto o = options();
  o.servers = {"127.0.0.1:" + std::to_string(tls_.server->port())};
  expect_refused(o, "is that its tls_port?");
}

// A TLS port that accepts the connection and does not answer the handshake
// (here the real server frozen by SIGSTOP: its kernel still accepts) is
// silent, not an outage: nothing falls back, the acquire times out, and the
// server grants once it wakes (docs/client.md, "A server that accepts and
// does not answer").
TEST_F(TlsClientTest, AFrozenTlsServerIsSilentNotAnOutage) {
  const Frozen frozen(*tls_.server);
  auto o = options();
  o.connect_timeout = 500ms;
  o.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kLocal};
  auto client = netsem::Client::create(o);
  ASSERT_TRUE(client.has_value()) << client.status().to_string();
  const auto permit = (*client)->acquire("pool", {.timeout = 1s});
  ASSERT_FALSE(permit.has_value()) << "granted, local: " << permit->is_local();
  EXPECT_EQ(permit.status().code(), StatusCode::kTimeout) << permit.status().to_string();
  const auto stats = (*client)->stats();
  EXPECT_EQ(stats.fallback_entries, 0u);
  EXPECT_EQ(stats.local_grants, 0u);
  // The second round waited on the first one's connection, kept open (rule 9).
  EXPECT_NE(stats.unreachable.find(" ms ago and has not answered the TLS handshake (the same connection, kept open)"),
            std::string::npos)
      << stats.unreachable;
  tls_.server->send_signal(SIGCONT);
  const auto granted = (*client)->acquire("pool", {.timeout = 5s});
  ASSERT_TRUE(granted.has_value()) << granted.status().to_string();
  EXPECT_FALSE(granted->is_local());
}

TEST(TlsClient, AnExpiredServerCertificateIsARefusal) {
  Pki pki;
  TempDir scratch;
  auto tls = start_tls_server("tls_port = 0\ntls_cert = " + pki.expired_server_cert.string() +
                              "\ntls_key = " + pki.expired_server_key.string() + "\n");
  ASSERT_NE(tls.tls_port, 0);
  auto o = tls_client_options(pki, tls.tls_port, scratch.path() / "local");
  o.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kLocal};
  auto client = netsem::Client::create(o);
  ASSERT_TRUE(client.has_value());
  const auto permit = (*client)->acquire("pool", {.timeout = 0ms});
  ASSERT_FALSE(permit.has_value());
  EXPECT_EQ(permit.status().code(), StatusCode::kDenied);
  EXPECT_NE(permit.status().message().find("certificate has expired"), std::string::npos)
      << permit.status().to_string();
  EXPECT_EQ((*client)->stats().fallback_entries, 0u);
}

TEST(TlsClient, BadFilesAreTheCallersErrorAtCreate) {
  Pki pki;
  ClientOptions o;
  o.tls = true;
  o.tls_ca = pki.dir() / "missing-ca.pem";
  auto client = netsem::Client::create(o);
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(client.status().message().find("missing-ca.pem"), std::string::npos) << client.status().to_string();
  o.tls_ca = pki.ca;
  o.tls_cert = pki.client_cert;
  o.tls_key = pki.server_key;
  client = netsem::Client::create(o);
  ASSERT_FALSE(client.has_value());
  EXPECT_NE(client.status().message().find("tls_key " + pki.server_key.string() + ": key values mismatch"),
            std::string::npos)
      << client.status().to_string();
}

TEST(TlsClientOptions, ComeFromTheFileAndTheEnvironment) {
  Pki pki;
  const auto file = pki.dir() / "client.ini";
  {
    FILE* out = std::fopen(file.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::fprintf(out, "[client]\nservers = 127.0.0.1:53561\ntls = on\ntls_ca = %s\ntls_server_name = localhost\n",
                 pki.ca.c_str());
    std::fclose(out);
  }
  auto from_file = ClientOptions::from_file(file);
  ASSERT_TRUE(from_file.has_value()) << from_file.status().to_string();
  EXPECT_TRUE(from_file->tls);
  EXPECT_EQ(from_file->tls_ca, pki.ca);
  EXPECT_EQ(from_file->tls_server_name, "localhost");
  ::setenv("NETSEM_CONFIG", file.c_str(), 1);
  ::setenv("NETSEM_TLS_CERT", pki.client_cert.c_str(), 1);
  ::setenv("NETSEM_TLS_KEY", pki.client_key.c_str(), 1);
  ::setenv("NETSEM_TLS", "off", 1);
  auto from_env = ClientOptions::from_environment();
  ASSERT_TRUE(from_env.has_value()) << from_env.status().to_string();
  EXPECT_FALSE(from_env->tls);
  EXPECT_EQ(from_env->tls_cert, pki.client_cert);
  EXPECT_EQ(from_env->tls_ca, pki.ca);
  ::unsetenv("NETSEM_TLS_KEY");
  from_env = ClientOptions::from_environment();
  ASSERT_FALSE(from_env.has_value());
  EXPECT_NE(from_env.status().message().find("tls_cert is set without tls_key"), std::string::npos);
  ::setenv("NETSEM_TLS", "yes", 1);
  from_env = ClientOptions::from_environment();
  ASSERT_FALSE(from_env.has_value());
  EXPECT_NE(from_env.status().message().find("NETSEM_TLS: `yes` is not on or off"), std::string::npos)
      << from_env.status().to_string();
  for (const char* variable : {"NETSEM_CONFIG", "NETSEM_TLS", "NETSEM_TLS_CERT"}) ::unsetenv(variable);
}

// The CLI: --tls and its files, and a refusal's exit code (77, no fallback).
TEST_F(TlsClientTest, TheCliTalksTlsAndExits77WhenRefused) {
  const std::string server = "127.0.0.1:" + std::to_string(tls_.tls_port);
  const std::vector<std::string> base = {
      NETSEM_CLI_PATH,         "--server", server, "--tls", "--tls-cert", pki_.client_cert.string(), "--tls-key",
      pki_.client_key.string()};
  auto args = base;
  args.insert(args.end(), {"--tls-ca", pki_.ca.string(), "sessions"});
  auto run = run_command(args);
  EXPECT_EQ(run.exit_code, 0) << run;
  EXPECT_NE(run.output.find("v1+tls"), std::string::npos) << run;

  args = base;
  args.insert(args.end(), {"--tls-ca", pki_.other_ca.string(), "run", "pool", "--", "true"});
  run = run_command(args, {}, 10s, {"NETSEM_FALLBACK=local", "XDG_RUNTIME_DIR=" + local_dir().string()});
  EXPECT_EQ(run.exit_code, 77) << run;
  EXPECT_NE(run.output.find("TLS handshake with server " + server + " failed"), std::string::npos) << run;

  // The same from the environment.
  run = run_command({NETSEM_CLI_PATH, "ping"}, {}, 10s,
                    {"NETSEM_SERVER=" + server, "NETSEM_TLS=on", "NETSEM_TLS_CA=" + pki_.ca.string(),
                     "NETSEM_TLS_CERT=" + pki_.client_cert.string(), "NETSEM_TLS_KEY=" + pki_.client_key.string()});
  EXPECT_EQ(run.exit_code, 0) << run;

  run = run_command({NETSEM_CLI_PATH, "--tls", "--tls-cert", pki_.client_cert.string(), "ping"});
  EXPECT_EQ(run.exit_code, 2) << run;
  EXPECT_NE(run.output.find("--tls-cert and --tls-key go together"), std::string::npos) << run;
}

// Certificate files renewed on disk (short-lived certificates, cert-manager,
// certbot) are read again at the next connect of a running Client, and only
// when they changed: A (worker-1) is read once; broken new files keep A's
// context, with one warning however many connects see them; B of the same
// CA, renamed over A's files as cert-manager does, is read once and
// presented from then on.
TEST_F(TlsClientTest, RenewedCertificateFilesAreReadOnceAtTheNextConnect) {
  const auto cert = scratch_.path() / "worker.pem";
  const auto key = scratch_.path() / "worker.key";
  std::filesystem::copy_file(pki_.client_cert, cert);
  std::filesystem::copy_file(pki_.client_key, key);
  auto o = options();
  o.tls_cert = cert;
  o.tls_key = key;
  std::mutex mutex;
  std::vector<std::string> warnings;
  set_log_handler([&](LogLevel level, std::string_view message) {
    std::lock_guard lock(mutex);
    if (level == LogLevel::kWarning) warnings.emplace_back(message);
  });
  struct ResetLog {
    ~ResetLog() { set_log_handler(nullptr); }
  } reset_log;
  const auto warned = [&] {
    std::lock_guard lock(mutex);
    return static_cast<int>(std::count_if(warnings.begin(), warnings.end(), [](const std::string& w) {
      return w.find("certificate files changed on disk but cannot be used") != std::string::npos;
    }));
  };
  // Written beside and renamed over, as cert-manager and certbot do.
  const auto replace = [](const std::filesystem::path& from, const std::filesystem::path& to) {
    const auto next = to.string() + ".next";
    std::filesystem::copy_file(from, next, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::rename(next, to);
  };

  auto renewing = client::RenewingTlsClient::make(o);
  ASSERT_TRUE(renewing) << renewing.status().to_string();
  const auto a = (*renewing)->current();
  EXPECT_EQ((*renewing)->current(), a);  // unchanged: not read again
  const auto garbage = scratch_.path() / "garbage.pem";
  std::ofstream(garbage) << "-----BEGIN CERTIFICATE-----\ntruncated\n";
  replace(garbage, cert);
  EXPECT_EQ((*renewing)->current(), a);  // broken: the old context stays
  EXPECT_EQ((*renewing)->current(), a);
  EXPECT_EQ(warned(), 1);
  const auto renewed = pki_.issue("renewed", "/O=Acme/CN=renewed-worker", "", 2, "ca");
  replace(renewed, cert);
  replace(pki_.key_of("renewed"), key);
  const auto b = (*renewing)->current();
  EXPECT_NE(b, a);
  EXPECT_EQ((*renewing)->current(), b);
  EXPECT_EQ((*renewing)->renewals(), 1u);
  EXPECT_EQ(warned(), 1);
}

// A Client connected with certificate A, its files renewed on disk by B of
// the same CA, its session kicked: the reconnect presents B, as the server's
// log shows. (Before, the Client kept presenting A until a new Client was
// made; once A expired, every reconnect was refused.) Broken files in
// between leave A in use: the reconnect still works.
TEST_F(TlsClientTest, AReconnectPresentsTheRenewedClientCertificate) {
  const auto cert = scratch_.path() / "worker.pem";
  const auto key = scratch_.path() / "worker.key";
  std::filesystem::copy_file(pki_.client_cert, cert);
  std::filesystem::copy_file(pki_.client_key, key);
  auto o = options();
  o.tls_cert = cert;
  o.tls_key = key;
  auto client = netsem::Client::create(o);
  ASSERT_TRUE(client.has_value()) << client.status().to_string();
  ASSERT_TRUE((*client)->connected());
  EXPECT_TRUE(tls_.server->wait_for_log("tls_subject=CN%3Dworker-1,O%3DAcme")) << tls_.server->log();
  const auto reconnect = [&] {
    const auto before = (*client)->stats();
    // The client kicks its own session (admin from 127.0.0.1): it reconnects.
    ASSERT_TRUE((*client)->kick(before.session_id).is_ok());
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline &&
           ((*client)->stats().connects <= before.connects || !(*client)->connected())) {
      std::this_thread::sleep_for(10ms);  // polling a condition, bounded
    }
    ASSERT_GT((*client)->stats().connects, before.connects);
    auto permit = (*client)->acquire("pool", {.timeout = 2000ms});
    ASSERT_TRUE(permit.has_value()) << permit.status().to_string();
    EXPECT_FALSE(permit->is_local());
  };
  std::ofstream(scratch_.path() / "garbage.pem") << "not a certificate\n";
  std::filesystem::rename(scratch_.path() / "garbage.pem", cert);
  reconnect();  // with A still
  EXPECT_EQ(tls_.server->log().find("renewed-worker"), std::string::npos);
  const auto renewed = pki_.issue("renewed", "/O=Acme/CN=renewed-worker", "", 2, "ca");
  std::filesystem::rename(pki_.key_of("renewed"), key);
  std::filesystem::rename(renewed, cert);
  reconnect();
  EXPECT_TRUE(tls_.server->wait_for_log("tls_subject=CN%3Drenewed-worker,O%3DAcme")) << tls_.server->log();
  const auto sessions = (*client)->sessions();
  ASSERT_TRUE(sessions.has_value()) << sessions.status().to_string();
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ(sessions->front().dialect, "v1+tls");
}

}  // namespace
}  // namespace netsem::testing
