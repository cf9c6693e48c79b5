// tests/tls: what the TLS tests share. Pki makes, at test time and with the
// `openssl` command, a CA and the certificates the tests need (a server
// certificate for localhost and 127.0.0.1, a client certificate, another
// CA's, expired ones); start_tls_server() starts the real netsemd with TLS
// on a free port, found from its log line `TLS on 127.0.0.1:PORT`;
// run_command() runs a program (openssl s_client, the netsem CLI) with some
// input and a deadline. Header-only.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "netsem/client_options.h"
#include "netsemd_harness.h"

extern char** environ;

namespace netsem::testing {

struct CommandRun {
  int exit_code = -1;  // the exit status, or 128+N when signal N ended it (SIGKILL: the deadline)
  std::string output;  // stdout and stderr together
};

// Runs argv[0] (looked up in PATH) with `input` on its stdin, then stdin
// closed; kills it past `timeout`. `env` entries are added to the test's
// environment.
inline CommandRun run_command(const std::vector<std::string>& argv, const std::string& input = {},
                              std::chrono::milliseconds timeout = std::chrono::seconds(10),
                              const std::vector<std::string>& env = {}) {
  CommandRun run;
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return run;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_text;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (!std::string_view(*entry).starts_with("NETSEM_")) env_text.emplace_back(*entry);
  }
  env_text.insert(env_text.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& entry : env_text) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  if (spawned != 0) {
    ::close(in[1]);
    ::close(out[0]);
    run.output = "cannot start " + argv[0];
    return run;
  }
  // The input is small (a few request lines): one write, then EOF. A child
  // that already exited (a refused handshake) makes it EPIPE, not SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  if (!input.empty()) {
    [[maybe_unused]] const ssize_t n = ::write(in[1], input.data(), input.size());
  }
  ::close(in[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd fd{out[0], POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n <= 0) break;
    run.output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

inline std::ostream& operator<<(std::ostream& os, const CommandRun& run) {
  return os << "exit " << run.exit_code << "\n" << run.output;
}

// A CA and certificates made by `openssl` in a scratch directory. EC P-256
// keys: fast to make.
class Pki {
 public:
  Pki() {
    ca = make_ca("ca", "/CN=netsem test CA");
    other_ca = make_ca("other-ca", "/CN=someone else's CA");
    server_cert = issue("server", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", 2, "ca");
    server_key = key_of("server");
    expired_server_cert = issue("server-expired", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", -1, "ca");
    expired_server_key = key_of("server-expired");
    client_cert = issue("client", "/O=Acme/CN=worker-1", "", 2, "ca");
    client_key = key_of("client");
    expired_client_cert = issue("client-expired", "/CN=worker-2", "", -1, "ca");
    expired_client_key = key_of("client-expired");
    stranger_cert = issue("stranger", "/CN=stranger", "", 2, "other-ca");
    stranger_key = key_of("stranger");
  }

  const std::filesystem::path& dir() const { return dir_.path(); }

  // A new key and certificate `name`.pem / `name`.key for `subject`, valid
  // for `days` (negative: it expired that many days ago), signed by `ca`
  // ("ca" or "other-ca"); `san` like "DNS:localhost,IP:127.0.0.1" or empty.
  std::filesystem::path issue(const std::string& name, const std::string& subject, const std::string& san, int days,
                              const std::string& signer) {
    const auto base = dir() / name;
    openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", base.string() + ".key",
             "-out", base.string() + ".csr", "-subj", subject});
    std::vector<std::string> args = {"x509",
                                     "-req",
                                     "-in",
                                     base.string() + ".csr",
                                     "-CA",
                                     (dir() / (signer + ".pem")).string(),
                                     "-CAkey",
                                     (dir() / (signer + ".key")).string(),
                                     "-CAcreateserial",
                                     "-out",
                                     base.string() + ".pem",
                                     "-days",
                                     std::to_string(days)};
    if (!san.empty()) {
      const auto ext = base.string() + ".ext";
      write_text(ext, "subjectAltName=" + san + "\n");
      args.insert(args.end(), {"-extfile", ext});
    }
    openssl(args);
    return base.string() + ".pem";
  }
  std::filesystem::path key_of(const std::string& name) const { return dir() / (name + ".key"); }

  std::filesystem::path ca, other_ca;
  std::filesystem::path server_cert, server_key, expired_server_cert, expired_server_key;
  std::filesystem::path client_cert, client_key, expired_client_cert, expired_client_key;
  std::filesystem::path stranger_cert, stranger_key;  // signed by other_ca

 private:
  std::filesystem::path make_ca(const std::string& name, const std::string& subject) {
    const auto base = dir() / name;
    openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             base.string() + ".key", "-out", base.string() + ".pem", "-days", "3", "-subj", subject});
    return base.string() + ".pem";
  }
  static void openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    const CommandRun run = run_command(args);
    ASSERT_EQ(run.exit_code, 0) << run;
  }
  static void write_text(const std::string& path, const std::string& text) {
    FILE* file = std::fopen(path.c_str(), "w");
    ASSERT_NE(file, nullptr);
    std::fputs(text.c_str(), file);
    std::fclose(file);
  }

  TempDir dir_;
};

inline constexpr std::string_view kTlsLine = "TLS on 127.0.0.1:";

// The port of the log line `TLS on 127.0.0.1:PORT`, or 0.
inline std::uint16_t tls_port_from_log(const std::string& log) {
  const auto at = log.find(kTlsLine);
  if (at == std::string::npos) return 0;
  return static_cast<std::uint16_t>(std::stoi(log.substr(at + kTlsLine.size(), 5)));
}

// The [server] lines of a TLS server with the Pki's server certificate;
// `client_ca`: require client certificates signed by the Pki's CA.
inline std::string tls_server_options(const Pki& pki, bool client_ca = true) {
  std::string text =
      "tls_port = 0\ntls_cert = " + pki.server_cert.string() + "\ntls_key = " + pki.server_key.string() + "\n";
  if (client_ca) text += "tls_client_ca = " + pki.ca.string() + "\n";
  return text;
}

struct TlsServer {
  std::unique_ptr<Netsemd> server;
  std::uint16_t tls_port = 0;
};

inline TlsServer start_tls_server(const std::string& server_options, const std::string& semaphores = {}) {
  Netsemd::Options options;
  options.server_options = server_options;
  options.semaphores = semaphores;
  TlsServer started;
  started.server = start_server(options);
  if (!started.server) return started;
  started.tls_port = tls_port_from_log(started.server->log());
  EXPECT_NE(started.tls_port, 0) << started.server->log();
  return started;
}

// Client options for the TLS port with the Pki's CA and client certificate.
inline ClientOptions tls_client_options(const Pki& pki, std::uint16_t port, const std::filesystem::path& local_dir) {
  ClientOptions options;
  options.servers = {"127.0.0.1:" + std::to_string(port)};
  options.tls = true;
  options.tls_ca = pki.ca;
  options.tls_cert = pki.client_cert;
  options.tls_key = pki.client_key;
  options.connect_timeout = std::chrono::milliseconds(3000);
  options.reconnect_max = std::chrono::milliseconds(200);
  options.local_dir = local_dir;
  options.label = "tls-test";
  return options;
}

}  // namespace netsem::testing
