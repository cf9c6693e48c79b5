// netsemd's entry point: flags, configuration, run the server, map the
// outcome to an exit code (0 clean stop, a removal from the cluster's
// configuration too, 1 failed to start, 2 bad command
// line or configuration; --help lists them). Every error it prints itself
// starts with "netsemd: ", a mistyped option with a suggestion, a bad
// configuration file with every error found in it. --check-config also checks
// that the directories could be used and lists the semaphores defined.
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "auth/token_hash.h"
#include "common/log.h"
#include "common/suggest.h"
#include "config/config.h"
#include "net/descriptors.h"
#include "netsem/version.h"
#include "protocol/codec.h"
#include "server/pid_file.h"
#include "server/server.h"

namespace {

constexpr int kExitStartFailed = 1;
constexpr int kExitBadConfig = 2;
constexpr int kExitDiverged = 3;

constexpr const char* kExitCodeHelp =
    "Exit codes:\n"
    "    0  stopped cleanly (SIGTERM, SIGINT; or removed from its cluster's configuration), or --help, --version,\n"
    "       --check-config found no error\n"
    "    1  could not start: the port is taken, the data directory cannot be used or is damaged (see --repair);\n"
    "       or --recover found no Raft log to recover, one whose configuration does not hold this server, or one\n"
    "       recovered before whose configuration changed since (docs/replication.md)\n"
    "    2  bad command line or configuration file\n"
    "    3  stopped: its copy of a cluster's replicated state could not follow the log\n";

// CLI11's message for a bad command line, as "netsemd: ...", naming the
// option meant when an unknown one looks mistyped.
std::string usage_message(const CLI::App& app, const CLI::ParseError& error) {
  std::vector<std::string> known;
  for (const CLI::Option* option : app.get_options()) {
    for (const auto& name : option->get_lnames()) known.push_back("--" + name);
    for (const auto& name : option->get_snames()) known.push_back("-" + name);
  }
  for (const auto& word : app.remaining()) {
    if (word.size() < 2 || word.front() != '-') continue;
    if (const auto meant = netsem::closest_word(word.substr(0, word.find('=')), known)) {
      return "netsemd: unknown option " + word + " (did you mean " + *meant + "?) (see netsemd --help)";
    }
  }
  return "netsemd: " + std::string(error.what()) + " (see netsemd --help)";
}

// Writes each line of `message` (a configuration file's errors, one a line)
// to stderr as "netsemd: <line>".
void print_errors(const std::string& message) {
  std::size_t start = 0;
  while (start <= message.size()) {
    const auto end = message.find('\n', start);
    const std::string line = message.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::fprintf(stderr, "netsemd: %s\n", line.c_str());
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

// For --check-config: whether netsemd could use `directory` (the option
// `option`) as it starts, without making it: an existing directory it may
// write, or a path whose nearest existing ancestor is such a directory (the
// rest it would make). Returns the error, or "" and sets `note` to say what
// was found.
std::string check_directory(std::string_view option, const std::filesystem::path& directory, std::string& note) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path absolute = fs::absolute(directory, error);
  const fs::path path = error ? directory : absolute;
  fs::path existing = path;
  while (!fs::exists(existing, error)) {
    if (!existing.has_relative_path()) break;  // the root
    existing = existing.parent_path();
  }
  const std::string where = std::string(option) + " " + directory.string();
  if (!fs::is_directory(existing, error)) {
    return where + ": " + existing.string() + " is not a directory" +
           (existing == path ? "" : ", so the directory cannot be made");
  }
  if (::access(existing.c_str(), W_OK | X_OK) != 0) {
    return where + ": " + existing.string() + " is not writable by this user" +
           (existing == path ? "" : ", so the directory cannot be made");
  }
  note = existing == path ? where + ": exists"
                          : where + ": does not exist; netsemd will make it (under " + existing.string() + ")";
  return "";
}

// --recover and --raise-fences: together, N in 1 .. 2^53, and not with an
// option that starts no server.
netsem::Status check_recover_flags(const CLI::App& app, bool recover, std::uint64_t raise_fences) {
  using netsem::Status;
  using netsem::StatusCode;
  const bool raise_given = app.count("--raise-fences") != 0;
  if (!recover) {
    if (!raise_given) return Status::ok();
    return Status(StatusCode::kInvalidArgument,
                  "--raise-fences goes with --recover (on a running cluster: `netsem cluster raise-fences N`)");
  }
  for (const char* other : {"--check-config", "--hash-token", "--version"}) {
    if (app.count(other) != 0) {
      return Status(StatusCode::kInvalidArgument,
                    std::string("--recover cannot go with ") + other + ", which starts no server (see netsemd --help)");
    }
  }
  if (!raise_given) {
    return Status(StatusCode::kInvalidArgument,
                  "--recover needs --raise-fences N: the lost servers may have handed out fences this server never "
                  "received, and the fences must go on above them. N: more than the fences handed out that this "
                  "server did not see (the old cluster's last fence, STATS last_fence or netsem_last_fence in "
                  "/metrics, minus this server's, when known; else the grants per second times the seconds the lost "
                  "servers may have run ahead, times ten; up to 2^53) (docs/replication.md, \"A majority lost for "
                  "good\")");
  }
  if (raise_fences == 0 || raise_fences > (std::uint64_t{1} << 53)) {
    return Status(StatusCode::kInvalidArgument,
                  "--raise-fences " + std::to_string(raise_fences) + ": out of range (1 .. 2^53)");
  }
  return Status::ok();
}

}  // namespace

// --hash-token: the token is the first line of standard input (its line end
// dropped), never an argument that `ps` would show.
int print_token_hash() {
  std::string token;
  std::getline(std::cin, token);
  if (!token.empty() && token.back() == '\r') token.pop_back();
  auto hash = netsem::auth::hash_token(token);
  if (!hash) {
    std::fprintf(stderr, "netsemd: --hash-token: %s\n", hash.status().message().c_str());
    return kExitBadConfig;
  }
  std::printf("%s\n", hash->c_str());
  return 0;
}

// A function-try-block: what nothing else catches (std::bad_alloc, an
// Asio error thrown by the io_context) ends netsemd with its name on the
// message too, not std::terminate's text.
int main(int argc, char** argv) try {
  using netsem::server::ServerConfig;

  CLI::App app{"netsemd: the netsem network semaphore server"};
  std::string config_file;
  std::string bind_address;
  std::string port;
  std::string data_dir;
  std::string log_level;
  std::string log_format;
  std::string pidfile;
  bool check_config = false;
  bool repair = false;
  bool recover = false;
  std::uint64_t raise_fences = 0;
  bool show_version = false;
  bool hash_token = false;
  app.add_option("-c,--config", config_file,
                 "configuration file (INI, or an ACE configuration); default: embedded defaults");
  app.add_option("--bind", bind_address, "address to listen on (overrides bind_address)");
  app.add_option("--port", port, "port to listen on, 0 for any free port (overrides bind_port)");
  app.add_option("--data-dir", data_dir,
                 "directory of the journal, the run file and the status file (overrides data_dir and stats_dir)");
  app.add_option("--log-level", log_level,
                 "least severe messages logged: trace, debug, info, warn, error or off (overrides log_level)");
  app.add_option("--log-format", log_format, "log lines as text or json, one object a line (overrides log_format)");
  app.add_option("--pidfile", pidfile,
                 "write the pid to FILE once listening, locked while running (a second netsemd with the same FILE "
                 "refuses to start), removed at exit");
  app.add_flag("--repair", repair,
               "start even though the data directory is damaged: cut the journal at mid-journal damage, accept a "
               "journal shorter than the fences file proves, restart fences above the wall clock when the fences "
               "file is lost; logs what was lost and keeps the damaged journal beside it");
  app.add_flag(
      "--recover", recover,
      "for the survivor of a cluster whose majority is lost for good (their disks gone): force a Raft "
      "configuration of this server alone before it starts, so that it leads alone, and raise the fences by "
      "--raise-fences N in its first entry; then add fresh servers with `netsem cluster add`. Never start the "
      "lost servers on their old data. Given again, it does nothing while the configuration is still the one it "
      "forced, and is refused once servers were added (docs/replication.md, \"A majority lost for good\")");
  app.add_option("--raise-fences", raise_fences,
                 "with --recover, required: how much to raise the last fence by (1 .. 2^53), more than the fences "
                 "the lost servers may have handed out that this server never received");
  app.add_flag("--check-config", check_config, "load and check the configuration, print a summary, then exit");
  app.add_flag("--version", show_version, "print the version and exit");
  app.add_flag("--hash-token", hash_token,
               "read a token (one line) from standard input, print the hash to paste into a [tokens] line, and exit "
               "(docs/security.md)");
  app.footer(netsem::server::describe_options() + "\n" + kExitCodeHelp);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& help) {  // --help
    return app.exit(help);
  } catch (const CLI::ParseError& error) {
    std::fprintf(stderr, "%s\n", usage_message(app, error).c_str());
    return kExitBadConfig;
  }
  if (netsem::Status status = check_recover_flags(app, recover, raise_fences); !status) {
    std::fprintf(stderr, "netsemd: %s\n", status.message().c_str());
    return kExitBadConfig;
  }
  if (show_version) {
    std::printf("netsemd %s (protocol %d)\n", netsem::kVersion, netsem::protocol::kProtocolVersion);
    return 0;
  }
  if (hash_token) return print_token_hash();

  netsem::Result<ServerConfig> loaded = config_file.empty()
                                            ? netsem::Result<ServerConfig>(netsem::server::default_server_config())
                                            : netsem::server::load_server_config(config_file);
  if (!loaded) {
    print_errors(loaded.status().message());  // every error of the file, one a line
    return kExitBadConfig;
  }
  ServerConfig config = std::move(*loaded);
  if (recover && !config.cluster.enabled) {
    std::fprintf(stderr,
                 "netsemd: --recover: the configuration%s has no [cluster] section: a single server keeps no Raft log "
                 "to recover (a damaged journal is --repair's)\n",
                 config_file.empty() ? " (the embedded defaults, no -c FILE)" : (" " + config_file).c_str());
    return kExitBadConfig;
  }
  // The flags follow the same rules as the options they override, and
  // override the file: --data-dir puts all of a server's files in one place.
  struct Override {
    const char* flag;
    const char* option;
    const std::string& value;
  };
  // A reload applies them again to the file it reads (Server::set_overrides).
  std::vector<std::pair<std::string, std::string>> overrides;
  for (const Override& o :
       {Override{"bind", "bind_address", bind_address}, Override{"port", "bind_port", port},
        Override{"data-dir", "data_dir", data_dir}, Override{"data-dir", "stats_dir", data_dir},
        Override{"log-level", "log_level", log_level}, Override{"log-format", "log_format", log_format}}) {
    if (app.count(std::string("--") + o.flag) == 0) continue;  // given empty: the option's error
    const auto* spec = netsem::server::find_server_option(o.option);
    if (auto status = spec->apply(*spec, o.value, config); !status) {
      std::fprintf(stderr, "netsemd: --%s: %s\n", o.flag, status.message().c_str());
      return kExitBadConfig;
    }
    overrides.emplace_back(o.option, o.value);
  }

  if (auto status = netsem::server::check_cluster_listening(config); !status) {
    std::fprintf(stderr, "netsemd: %s\n", status.message().c_str());
    return kExitBadConfig;
  }
  if (auto status = netsem::init_logging(config.log_level, config.log_format); !status) {
    std::fprintf(stderr, "netsemd: %s\n", status.message().c_str());
    return kExitBadConfig;
  }
  for (const auto& warning : config.warnings) spdlog::warn("{}", warning);
  if (check_config) {
    // Whether the directories could be used, without making them.
    std::vector<std::string> notes;
    bool usable = true;
    std::vector<std::pair<const char*, std::filesystem::path>> directories = {{"data_dir", config.data_dir},
                                                                              {"stats_dir", config.stats_dir}};
    // A cluster's Raft log (cluster_runtime.cc: <data_dir>/raft by default).
    if (config.cluster.enabled) {
      directories.emplace_back("[cluster] data_dir",
                               config.cluster.data_dir.empty() ? config.data_dir / "raft" : config.cluster.data_dir);
    }
    for (const auto& [option, directory] : directories) {
      std::string note;
      if (const std::string error = check_directory(option, directory, note); !error.empty()) {
        print_errors(error);
        usable = false;
      } else {
        notes.push_back(note);
      }
    }
    if (!usable) return kExitBadConfig;
    std::printf("configuration OK: listen %s:%u, %zu defined semaphores, allowed %s, data_dir %s\n",
                config.bind_address.c_str(), static_cast<unsigned>(config.bind_port), config.semaphores.size(),
                config.allowed_networks_text.c_str(), config.data_dir.string().c_str());
    for (const auto& note : notes) std::printf("%s\n", note.c_str());
    for (const auto& [name, limit] : config.semaphores) {
      std::printf("semaphore %s = %lld\n", name.c_str(), static_cast<long long>(limit));
    }
    if (const auto* self = config.cluster.self()) {
      std::printf("cluster server %llu of %zu: raft %s, clients %s\n", static_cast<unsigned long long>(self->id),
                  config.cluster.servers.size(), self->raft_address.c_str(), self->client_address.c_str());
    }
    return 0;
  }
  // Before anything is opened: a second netsemd on the same pid file stops here.
  std::optional<netsem::server::PidFile> pid_file;
  if (app.count("--pidfile") != 0) {
    auto locked = pidfile.empty() ? netsem::Result<netsem::server::PidFile>(netsem::Status(
                                        netsem::StatusCode::kInvalidArgument, "--pidfile: a file name is required"))
                                  : netsem::server::PidFile::lock(pidfile);
    if (!locked) {
      // As a failed start says it: the program's last word, not a log record.
      std::fprintf(stderr, "netsemd: cannot start: %s\n", locked.status().message().c_str());
      return pidfile.empty() ? kExitBadConfig : kExitStartFailed;
    }
    pid_file.emplace(std::move(*locked));
  }

  // Sessions and the server's own files share the descriptor limit: take
  // all the hard limit allows (Server::start then sizes the sessions' share).
  if (auto limit = netsem::server::raise_nofile_limit(); !limit) {
    spdlog::warn("{}", limit.status().message());
  } else if (limit->soft != limit->before) {
    spdlog::info("descriptor limit (RLIMIT_NOFILE) raised from {} to {}", limit->before, limit->soft);
  } else {
    spdlog::info("descriptor limit (RLIMIT_NOFILE) {} (hard limit {})", limit->soft, limit->hard);
  }
  // A limit too low for netsemd's own files, one session and one refusal is
  // refused now, in the words of Server::start's plan, before anything opens
  // (else whichever file came first failed with EMFILE: "cannot open
  // .../run: Too many open files" in CI).
  if (auto floor = netsem::server::check_descriptor_floor(); !floor) {
    std::fprintf(stderr, "netsemd: cannot start: %s\n", floor.to_string().c_str());
    return kExitStartFailed;
  }

  // Writes to a peer that vanished, or past a file size limit (RLIMIT_FSIZE),
  // must be errors the server handles, not a fatal signal.
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGXFSZ, SIG_IGN);
  // Everything runs on this one thread (signals arrive through Asio's pipe),
  // so Asio need not lock its scheduler and reactor (5 % of netsemd's own
  // instructions per request, callgrind).
  asio::io_context io(ASIO_CONCURRENCY_HINT_UNSAFE);
  netsem::server::Server server(io, std::move(config), config_file);
  server.set_repair(repair);
  if (recover) server.set_recover(raise_fences);
  server.set_overrides(std::move(overrides));
  if (auto status = server.start(); !status) {
    if (const netsem::Status& failure = server.failure(); !failure) {
      // Its replica could not follow the log it loaded: as when that
      // happens later (below).
      std::fprintf(stderr, "netsemd: stopped: %s\n", failure.to_string().c_str());
      return kExitDiverged;
    }
    if (server.bad_configuration()) {
      // The file's [cluster] lines against the Raft directory's: fix the file.
      std::fprintf(stderr, "netsemd: %s\n", status.message().c_str());
      return kExitBadConfig;
    }
    // The program's last word, like its other errors (issue 12 item 10),
    // not a log record: "netsemd: cannot start: CORRUPTION: journal ...".
    std::fprintf(stderr, "netsemd: cannot start: %s\n", status.to_string().c_str());
    return kExitStartFailed;
  }
  if (pid_file) {
    if (auto status = pid_file->write_pid(); !status) spdlog::warn("{}", status.message());
  }
  io.run();
  if (const netsem::Status& failure = server.failure(); !failure) {
    std::fprintf(stderr, "netsemd: stopped: %s\n", failure.to_string().c_str());
    return kExitDiverged;
  }
  spdlog::info("netsemd stopped");
  return 0;
} catch (const std::exception& error) {
  std::fprintf(stderr, "netsemd: stopped by an unexpected error: %s\n", error.what());
  return kExitStartFailed;
}
