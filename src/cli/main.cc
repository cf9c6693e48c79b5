// netsem's entry point: the global options, every subcommand of the table
// (subcommands.h) on the command line (CLI11), logging set-up, then the
// action of the subcommand given, whose return value is the exit code. A bad command line exits 2 with the message on
// stderr, with a suggestion when a word looks mistyped; every subcommand's --help ends with the global options and the
// exit codes it can return. Numbers are decimal only; run's options may stand before or after NAME, and CMD is the
// first word after them, as with flock(1) (command_line.h).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/cli.h"
#include "cli/command_line.h"
#include "cli/subcommands.h"
#include "common/log.h"
#include "netsem/log.h"
#include "netsem/version.h"

namespace {

using namespace netsem::cli;

// Why: CLI11 lets a counting flag take a value (--verbose=N), which it reads
// with its own rules (0 subtracts one, 0x10 is 0, -5 is minus five); -v is
// only ever repeated.
const CLI::Validator kNoValue(
    [](std::string& text) -> std::string {
      return text == "true" ? std::string() : "takes no value; repeat it for more detail (-vv, -vvv)";
    },
    "", "NOVALUE");

// The first word that CLI11 set aside as an unknown option, if any.
std::optional<std::string> stray_option(const CLI::App& app) {
  for (const auto& word : app.remaining(true)) {
    if (word.size() > 1 && word.front() == '-' && word != "--") return word;
  }
  return std::nullopt;
}

// Why: CLI11 reads a word like "-dash" as an option wherever it stands (not
// "-5", which it takes as a positional), sets it aside as unknown, and then
// reports what that left missing ("NAME is required") or over. Where the
// subcommand takes a NAME or a PREFIX, say how to write one that starts so.
std::optional<std::string> dash_name_hint(const CLI::App& command, const std::string& stray) {
  const char* what = command.get_option_no_throw("NAME") != nullptr     ? "NAME"
                     : command.get_option_no_throw("PREFIX") != nullptr ? "PREFIX"
                                                                        : nullptr;
  if (what == nullptr) return std::nullopt;
  const std::string& name = command.get_name();
  std::string text = name + ": unknown option " + stray + "; a " + what +
                     " that starts with '-' must come after '--', as in: netsem " + name + " [OPTIONS] -- " + stray;
  if (name == "run") text += " CMD [ARGS...]";
  if (name == "create") text += " VALUE [MAX]";
  return text;
}

// The subcommand the command line chose, the deepest of nested ones
// (`cluster add`), or `app` itself when none was.
const CLI::App& chosen_command(const CLI::App& app) {
  const CLI::App* at = &app;
  while (!at->get_subcommands().empty()) at = at->get_subcommands().front();
  return *at;
}

// "cluster add" for `command`, "" for netsem itself.
std::string command_path(const CLI::App& command) {
  std::string path;
  for (const CLI::App* at = &command; at->get_parent() != nullptr; at = at->get_parent()) {
    path = path.empty() ? at->get_name() : at->get_name() + " " + path;
  }
  return path;
}

// Why: CLI11's message names the symptom, not the cause, in three cases. A
// stray first word it reports as "not expected" was meant as a subcommand
// when none was recognised (of netsem, or of `cluster` and `local`); a NAME
// starting with '-' (above); and a missing CMD, worded as main() words it
// when only a `--` followed NAME. A missing or extra argument is said with
// the subcommand it belongs to and that subcommand's --help.
int usage_error(const CLI::App& app, const CLI::ParseError& error) {
  const CLI::App& chosen = chosen_command(app);
  const std::string path = command_path(chosen);
  const std::string where = path.empty() ? std::string() : path + ": ";
  const std::string help = " (see netsem " + (path.empty() ? std::string() : path + " ") + "--help)";
  const auto extras = app.remaining(true);
  const auto commands = app.get_subcommands();
  const bool misplaced = dynamic_cast<const CLI::RequiredError*>(&error) != nullptr ||
                         dynamic_cast<const CLI::ExtrasError*>(&error) != nullptr;
  if (dynamic_cast<const CLI::ExtrasError*>(&error) != nullptr && !chosen.get_subcommands({}).empty() &&
      !extras.empty() && extras.front().rfind('-', 0) != 0) {
    print_error(where + "unknown subcommand '" + extras.front() + "'" + suggestion(chosen, nullptr, extras.front()) +
                help);
    return kExitUsage;
  }
  const CLI::App* command = commands.empty() ? nullptr : commands.front();
  if (const auto stray = stray_option(app); stray && misplaced) {
    // A mistyped option: name the one meant.
    if (const std::string hint = suggestion(app, command, *stray); !hint.empty()) {
      const std::string where = command != nullptr ? command->get_name() + ": " : std::string();
      print_error(where + "unknown option " + *stray + hint + " (see netsem " +
                  (command != nullptr ? command->get_name() + " " : std::string()) + "--help)");
      return kExitUsage;
    }
  }
  if (misplaced && command != nullptr) {
    if (const auto stray = stray_option(app)) {
      if (const auto hint = dash_name_hint(*command, *stray)) {
        print_error(*hint);
        return kExitUsage;
      }
    }
    if (command->get_name() == "run" && command->get_option("CMD")->count() == 0 &&
        command->get_option("NAME")->count() > 0) {
      print_error("run: CMD is required: " + std::string(kRunSynopsis));
      return kExitUsage;
    }
    print_error(where + error.what() + help);
    return kExitUsage;
  }
  print_error(std::string(error.what()) + " (see netsem --help)");
  return kExitUsage;
}

// The library's lines go to the CLI's own logger (stderr, timestamped), as
// "netsem: <message>", at the detail -v asks for.
void route_library_log(int verbosity) {
  static constexpr netsem::LogLevel kLibraryLevels[] = {netsem::LogLevel::kError, netsem::LogLevel::kInfo,
                                                        netsem::LogLevel::kDebug};
  netsem::set_log_level(kLibraryLevels[std::clamp(verbosity, 0, 2)]);
  netsem::set_log_handler([](netsem::LogLevel level, std::string_view message) {
    static constexpr spdlog::level::level_enum kSpdlogLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                                  spdlog::level::warn, spdlog::level::err};
    spdlog::log(kSpdlogLevels[static_cast<int>(level)], "netsem: {}", message);
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "netsem: named counting semaphores shared by every host that talks to one netsemd or one cluster of them."};
  app.name("netsem");
  GlobalOptions global;
  bool show_version = false;
  app.add_option("--server", global.servers,
                 "server to use; repeat it or separate with commas to list several, tried in order "
                 "(default: $NETSEM_SERVER, else [client] servers of the config file, else 127.0.0.1:53559)")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->type_name("HOST:PORT");
  app.add_option("--fallback", global.fallback,
                 "what names do while no server is reachable: local, fail or share:K "
                 "(default: $NETSEM_FALLBACK, else [client] fallback, else local)")
      ->type_name("POLICY");
  app.add_option("-c,--config", global.config_file,
                 "configuration file with a [client] section (default: $NETSEM_CONFIG)")
      ->type_name("FILE");
  app.add_option("--label", global.label,
                 "how this client shows in the server's logs and listings (default: $NETSEM_LABEL, else [client] "
                 "label, else host/pid/program)")
      ->type_name("TEXT");
  app.add_option("--token-file", global.token_file,
                 "file holding the token to AUTH with, mode 600 (default: $NETSEM_TOKEN_FILE, $NETSEM_TOKEN, else "
                 "[client] token_file or token; a token is never taken from the command line)")
      ->type_name("FILE");
  app.add_flag("--tls", global.tls,
               "talk to the servers over TLS: give their TLS port (tls_port) in --server (default: $NETSEM_TLS, "
               "else [client] tls, else off)");
  app.add_option("--tls-ca", global.tls_ca,
                 "CA certificates (PEM) the server's certificate must verify against (default: $NETSEM_TLS_CA, else "
                 "[client] tls_ca, else the system's trust store)")
      ->type_name("FILE");
  app.add_option("--tls-cert", global.tls_cert,
                 "client certificate (PEM) for a server that asks for one; with --tls-key (default: "
                 "$NETSEM_TLS_CERT, else [client] tls_cert)")
      ->type_name("FILE");
  app.add_option("--tls-key", global.tls_key,
                 "the client certificate's private key (PEM) (default: $NETSEM_TLS_KEY, else [client] tls_key)")
      ->type_name("FILE");
  app.add_option("--tls-server-name", global.tls_server_name,
                 "the name the server's certificate must carry (default: $NETSEM_TLS_SERVER_NAME, else [client] "
                 "tls_server_name, else the host of each server address)")
      ->type_name("NAME");
  app.add_flag("-v,--verbose", global.verbosity, "log what the client does on stderr; repeat for more detail")
      ->transform(kNoValue);
  app.add_flag("--version", show_version, "print the version and exit");
  app.fallthrough();  // the global options may follow the subcommand too
  app.footer(exit_code_help());

  // Every subcommand of the table, each with the action its options feed.
  std::vector<std::pair<CLI::App*, Action>> commands;
  const std::string global_help = global_options_help(app);
  for (const Subcommand& subcommand : subcommands()) {
    CLI::App* command = app.add_subcommand(std::string(subcommand.name), std::string(subcommand.help));
    commands.emplace_back(command, subcommand.define(*command));
    command->footer(global_help + "\n" + exit_code_help(subcommand.name));
    // Its own subcommands (cluster add, ...) took netsem's footer when made.
    for (CLI::App* nested : command->get_subcommands({})) nested->footer(command->get_footer());
  }

  // run's options may follow NAME: sort its words before CLI11 reads them.
  std::vector<std::string> words(argv + 1, argv + argc);
  if (const auto error = arrange_run_words(app, words)) {
    print_error(*error);
    return kExitUsage;
  }
  std::vector<char*> arranged = {argv[0]};
  for (auto& word : words) arranged.push_back(word.data());
  try {
    app.parse(static_cast<int>(arranged.size()), arranged.data());
  } catch (const CLI::Success& help) {  // --help
    return app.exit(help);
  } catch (const CLI::ParseError& error) {
    return usage_error(app, error);
  }
  if (show_version) {
    std::printf("netsem %s\n", netsem::kVersion);
    return kExitOk;
  }
  if (app.get_subcommands().empty()) {
    print_error("a subcommand is needed: " + subcommand_names() + " (see netsem --help)");
    return kExitUsage;
  }
  // Quiet by default: what the user must know (a loss, a fallback) netsem
  // says itself.
  static constexpr const char* kLevels[] = {"error", "info", "debug", "trace"};
  if (auto logging = netsem::init_logging(kLevels[std::clamp(global.verbosity, 0, 3)]); !logging) {
    print_error(logging.message());
    return kExitUsage;
  }
  route_library_log(global.verbosity);

  for (const auto& [command, action] : commands) {
    if (command->parsed()) return action(global);
  }
  return kExitUsage;  // unreachable: a subcommand was parsed
}
