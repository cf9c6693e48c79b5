// netsemd's TLS listener against `openssl s_client`: sessions inside TLS
// (dialect v1+tls, the client certificate's subject), client certificates
// required and verified (missing, another CA's, expired), the start-up
// errors of a bad configuration, and SIGHUP reading a renewed certificate
// (or keeping the running one when the new files are broken).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>

#include "tls_support.h"

namespace netsem::testing {
namespace {

// `openssl s_client` to the TLS port with `args` (certificates), `input`
// on its stdin. -quiet ignores the end of the input: it reads until the
// server closes (so the input ends with QUIT) or the deadline.
CommandRun s_client(std::uint16_t port, const Pki& pki, std::vector<std::string> args, const std::string& input) {
  std::vector<std::string> argv = {
      "openssl", "s_client",     "-quiet", "-verify_return_error", "-connect", "127.0.0.1:" + std::to_string(port),
      "-CAfile", pki.ca.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, input, std::chrono::seconds(10));
}

constexpr std::string_view kRequests = "1 HELLO 1 sclient\n2 SESSIONS\n3 QUIT\n";

TEST(TlsServer, AClientWithACertificateIsAV1PlusTlsSession) {
  Pki pki;
  auto tls = start_tls_server(tls_server_options(pki));
  ASSERT_NE(tls.tls_port, 0);
  const auto run = s_client(tls.tls_port, pki, {"-cert", pki.client_cert.string(), "-key", pki.client_key.string()},
                            std::string(kRequests));
  EXPECT_NE(run.output.find("1 OK netsem 1.1 "), std::string::npos) << run;
  EXPECT_NE(run.output.find(" v1+tls 0 0 "), std::string::npos) << run;
  EXPECT_NE(run.output.find("3 OK"), std::string::npos) << run;
  // The verified subject, in RFC 2253 order (the last RDN first), in the log.
  EXPECT_TRUE(tls.server->wait_for_log("tls_subject=CN%3Dworker-1,O%3DAcme")) << tls.server->log();
  // The plain port still serves plain v1.
  auto plain = Client::connect(tls.server->port());
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->request("p PING"), "p PONG");
}

TEST(TlsServer, ClientCertificatesAreRequiredAndVerified) {
  Pki pki;
  auto tls = start_tls_server(tls_server_options(pki));
  ASSERT_NE(tls.tls_port, 0);
  struct Case {
    const char* what;
    std::vector<std::string> args;
    const char* logged;  // the server's reason
  };
  const Case cases[] = {
      {"no certificate", {}, "peer did not return a certificate"},
      {"another CA's",
       {"-cert", pki.stranger_cert.string(), "-key", pki.stranger_key.string()},
       "unable to get local issuer certificate"},
      {"expired",
       {"-cert", pki.expired_client_cert.string(), "-key", pki.expired_client_key.string()},
       "certificate has expired"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const auto run = s_client(tls.tls_port, pki, c.args, std::string(kRequests));
    EXPECT_EQ(run.output.find("OK netsem"), std::string::npos) << run;
    EXPECT_TRUE(tls.server->wait_for_log(c.logged)) << tls.server->log();
  }
  // None of them became a session.
  EXPECT_EQ(tls.server->log().find("dialect=v1+tls"), std::string::npos);
}

TEST(TlsServer, WithoutClientCaNoCertificateIsAskedFor) {
  Pki pki;
  auto tls = start_tls_server(tls_server_options(pki, false));
  ASSERT_NE(tls.tls_port, 0);
  EXPECT_TRUE(tls.server->wait_for_log("client certificates not asked for"));
  const auto run = s_client(tls.tls_port, pki, {}, std::string(kRequests));
  EXPECT_NE(run.output.find(" v1+tls 0 0 "), std::string::npos) << run;
  EXPECT_TRUE(tls.server->wait_for_log("tls_subject=-")) << tls.server->log();
}

TEST(TlsServer, AceIsNeverOfferedOverTls) {
  Pki pki;
  auto tls = start_tls_server(tls_server_options(pki, false), "pool = 1\n");
  ASSERT_NE(tls.tls_port, 0);
  // ACE's first bytes over TLS are a v1 line like any other: not a request.
  const auto run = s_client(tls.tls_port, pki, {}, "acquire:pool|\n1 HELLO 1 x\n2 QUIT\n");
  EXPECT_NE(run.output.find("ERR BAD_REQUEST"), std::string::npos) << run;
  EXPECT_NE(run.output.find("1 OK netsem 1.1"), std::string::npos) << run;
  EXPECT_EQ(run.output.find("acquired"), std::string::npos) << run;
  auto plain = Client::connect(tls.server->port());
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->request("g GET pool"), "g OK 1 1 0 0 defined");
}

TEST(TlsServer, ABadConfigurationStopsTheStartWithAClearError) {
  Pki pki;
  struct Case {
    std::string options;
    const char* error;
  };
  const Case cases[] = {
      {"tls_cert = " + pki.server_cert.string() + "\n", "tls_cert is set but tls_key is not"},
      {"tls_cert = " + (pki.dir() / "missing.pem").string() + "\ntls_key = " + pki.server_key.string() + "\n",
       "missing.pem"},
      {"tls_cert = " + pki.server_cert.string() + "\ntls_key = " + pki.client_key.string() + "\n",
       "key values mismatch"},
      {tls_server_options(pki, false) + "tls_client_ca = " + (pki.dir() / "nope.pem").string() + "\n", "nope.pem"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.options);
    Netsemd::Options options;
    options.server_options = c.options;
    std::string error;
    auto server = Netsemd::start(options, &error);
    EXPECT_EQ(server, nullptr);
    EXPECT_NE(error.find(c.error), std::string::npos) << error;
  }
}

TEST(TlsServer, SighupReadsARenewedCertificateAndKeepsTheRunningOneWhenTheNewIsBroken) {
  Pki pki;
  // The server's files at a fixed place, as a certificate manager renews them.
  const auto cert = pki.dir() / "live.pem";
  const auto key = pki.dir() / "live.key";
  std::filesystem::copy_file(pki.expired_server_cert, cert);
  std::filesystem::copy_file(pki.expired_server_key, key);
  const std::string options = "tls_port = 0\ntls_cert = " + cert.string() + "\ntls_key = " + key.string() + "\n";
  auto tls = start_tls_server(options);
  ASSERT_NE(tls.tls_port, 0);
  const auto expired = s_client(tls.tls_port, pki, {}, std::string(kRequests));
  EXPECT_EQ(expired.output.find("OK netsem"), std::string::npos) << expired;
  EXPECT_NE(expired.output.find("certificate has expired"), std::string::npos) << expired;

  std::filesystem::copy_file(pki.server_cert, cert, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(pki.server_key, key, std::filesystem::copy_options::overwrite_existing);
  tls.server->send_signal(SIGHUP);
  ASSERT_TRUE(tls.server->wait_for_log("SIGHUP: TLS certificates read again")) << tls.server->log();
  const auto renewed = s_client(tls.tls_port, pki, {}, std::string(kRequests));
  EXPECT_NE(renewed.output.find("1 OK netsem 1.1"), std::string::npos) << renewed;

  // A renewal caught half-written: the running certificate stays.
  {
    FILE* file = std::fopen(cert.c_str(), "w");
    ASSERT_NE(file, nullptr);
    std::fputs("-----BEGIN CERTIFICATE-----\nnot base64\n", file);
    std::fclose(file);
  }
  tls.server->send_signal(SIGHUP);
  ASSERT_TRUE(tls.server->wait_for_log("keeping the running certificates")) << tls.server->log();
  const auto kept = s_client(tls.tls_port, pki, {}, std::string(kRequests));
  EXPECT_NE(kept.output.find("1 OK netsem 1.1"), std::string::npos) << kept;
}

}  // namespace
}  // namespace netsem::testing
