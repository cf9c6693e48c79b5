// netsem's entry point: the command line (CLI11) into the option structs of
// cli.h, logging set-up, then one subcommand's function, whose return value
// is the exit code. A bad command line exits 2 with the message on stderr;
// every --help ends with the exit-code table. Numbers are decimal only, and
// everything after run's NAME is CMD, as with flock(1).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>

#include "cli/cli.h"
#include "common/log.h"
#include "netsem/log.h"
#include "netsem/version.h"

namespace {

using namespace netsem::cli;

constexpr int kMaxCount = 2147483647;  // the protocol's count range is 1 .. 2^31-1

// CLI11 converts integers with C's base detection (010 is eight, 0x10
// sixteen, 08 an error it words as out of range). This transform accepts
// decimal digits alone and hands CLI11 the number without leading zeros,
// which it can only read as decimal. A transform, not a check: CLI11
// discards what a check writes to the text.
CLI::Validator decimal(std::int64_t min, std::int64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        const auto value = parse_decimal(text, min, max);
        if (!value) {
          return "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
                 " in decimal digits, not '" + text + "'";
        }
        text = std::to_string(*value);
        return std::string();
      },
      "", "DECIMAL");
}

// Why: CLI11 lets a counting flag take a value (--verbose=N), which it reads
// with its own rules (0 subtracts one, 0x10 is 0, -5 is minus five); -v is
// only ever repeated.
const CLI::Validator kNoValue(
    [](std::string& text) -> std::string {
      return text == "true" ? std::string() : "takes no value; repeat it for more detail (-vv, -vvv)";
    },
    "", "NOVALUE");

const CLI::Validator kSeconds(
    [](std::string& text) -> std::string {
      return parse_seconds(text) ? std::string() : "must be a number of seconds from 0 to 1e9, like 2 or 0.5";
    },
    "", "SECONDS");

CLI::Option* add_count(CLI::App* command, std::int64_t& count, const char* help) {
  return command->add_option("-n,--count", count, help)->transform(decimal(1, kMaxCount))->type_name("COUNT");
}

CLI::Option* add_seconds(CLI::App* command, const char* flags, std::string& text, const char* help) {
  return command->add_option(flags, text, help)->check(kSeconds)->type_name("SECONDS");
}

constexpr const char* kRunSynopsis = "netsem run [OPTIONS] NAME [--] CMD [ARGS...]";

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

// Why: CLI11's message names the symptom, not the cause, in three cases. A
// stray first word it reports as "not expected" was meant as a subcommand
// when none was recognised; a NAME starting with '-' (above); and a missing
// CMD, worded as main() words it when only a `--` followed NAME.
int usage_error(const CLI::App& app, const CLI::ParseError& error) {
  const auto extras = app.remaining();
  const auto commands = app.get_subcommands();
  const bool misplaced = dynamic_cast<const CLI::RequiredError*>(&error) != nullptr ||
                         dynamic_cast<const CLI::ExtrasError*>(&error) != nullptr;
  if (dynamic_cast<const CLI::ExtrasError*>(&error) != nullptr && commands.empty() && !extras.empty() &&
      extras.front().rfind('-', 0) != 0) {
    print_error("unknown subcommand '" + extras.front() + "' (see netsem --help)");
    return kExitUsage;
  }
  if (misplaced && !commands.empty()) {
    const CLI::App& command = *commands.front();
    if (const auto stray = stray_option(app)) {
      if (const auto hint = dash_name_hint(command, *stray)) {
        print_error(*hint);
        return kExitUsage;
      }
    }
    if (command.get_name() == "run" && command.get_option("CMD")->count() == 0 &&
        command.get_option("NAME")->count() > 0) {
      print_error(std::string("run: CMD is required: ") + kRunSynopsis);
      return kExitUsage;
    }
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
  CLI::App app{"netsem: named counting semaphores shared by every host that talks to one netsemd."};
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
  app.add_flag("-v,--verbose", global.verbosity, "log what the client does on stderr; repeat for more detail")
      ->transform(kNoValue);
  app.add_flag("--version", show_version, "print the version and exit");
  app.fallthrough();  // the global options may follow the subcommand too
  app.footer(exit_code_help());

  RunOptions run_options;
  std::string run_timeout;
  std::string run_grace;
  CLI::App* run =
      app.add_subcommand("run", "run CMD while holding permits of NAME, like flock(1); exit with CMD's status");
  add_count(run, run_options.count, "permits to hold (default 1)");
  add_seconds(run, "-t,--timeout", run_timeout, "give up after SECONDS (0: only try; default: wait for ever)");
  add_seconds(run, "--grace", run_grace, "if the permits are lost, SIGKILL CMD this long after SIGTERM (default 5)");
  run->add_option("NAME", run_options.name, "semaphore name")->required();
  run->add_option("CMD", run_options.command, "the command and its arguments: every word after NAME, options too")
      ->required();
  // After the first positional (NAME) every word is positional, so CMD's
  // own options reach CMD, as with flock(1). prefix_command() does not do
  // this here: with fallthrough() on, CLI11 hands the words after NAME to the
  // top-level app, which rejects them or reads one as another subcommand.
  run->positionals_at_end();
  run->footer(exit_code_help());

  StatusOptions status_options;
  CLI::App* status = app.add_subcommand("status", "list the server's semaphores and say which server answered");
  status->add_flag("--json", status_options.json, "print a JSON array of objects instead of a table");
  status->add_option("PREFIX", status_options.prefix, "only names starting with PREFIX");
  status->footer(exit_code_help());

  GetOptions get_options;
  CLI::App* get = app.add_subcommand("get", "show one semaphore: value, max, holders, waiters, kind");
  get->add_flag("--json", get_options.json, "print a JSON object instead of a table");
  get->add_option("NAME", get_options.name, "semaphore name")->required();
  get->footer(exit_code_help());

  CountOptions post_options;
  CLI::App* post = app.add_subcommand("post", "add permits to a semaphore (sem_post)");
  add_count(post, post_options.count, "permits to add (default 1)");
  post->add_option("NAME", post_options.name, "semaphore name")->required();
  post->footer(exit_code_help());

  CountOptions wait_options;
  std::string wait_timeout;
  CLI::App* wait = app.add_subcommand("wait", "take permits of a semaphore for good (sem_wait); post gives them back");
  add_count(wait, wait_options.count, "permits to take (default 1)");
  add_seconds(wait, "-t,--timeout", wait_timeout, "give up after SECONDS (0: only try; default: wait for ever)");
  wait->add_option("NAME", wait_options.name, "semaphore name")->required();
  wait->footer(exit_code_help());

  CreateOptions create_options;
  std::int64_t create_max = 0;
  CLI::App* create = app.add_subcommand("create", "make a durable semaphore with VALUE free permits out of MAX");
  create->add_flag("-x,--exclusive", create_options.exclusive, "fail (EXISTS) if it exists already");
  create->add_option("NAME", create_options.name, "semaphore name")->required();
  create->add_option("VALUE", create_options.value, "free permits to start with")
      ->required()
      ->transform(decimal(0, kMaxCount));
  CLI::Option* max_option = create->add_option("MAX", create_max, "the most permits it can have (default VALUE)")
                                ->transform(decimal(1, kMaxCount));
  create->footer(exit_code_help());

  std::string delete_name;
  CLI::App* remove = app.add_subcommand("delete", "delete a semaphore made by create (BUSY while in use)");
  remove->add_option("NAME", delete_name, "semaphore name")->required();
  remove->footer(exit_code_help());

  CLI::App* ping = app.add_subcommand("ping", "check that a server answers, and how fast");
  ping->footer(exit_code_help());

  try {
    app.parse(argc, argv);
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
    print_error("a subcommand is needed: run, status, get, post, wait, create, delete or ping (see netsem --help)");
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

  if (*run) {
    // A `--` right after NAME reaches CMD's words (every word after NAME
    // does), but it is netsem's: `netsem run x -- ls` runs ls.
    if (run_options.command.front() == "--") run_options.command.erase(run_options.command.begin());
    if (run_options.command.empty()) {
      print_error(std::string("run: CMD is required: ") + kRunSynopsis);
      return kExitUsage;
    }
    if (!run_timeout.empty()) run_options.timeout = parse_seconds(run_timeout);
    if (!run_grace.empty()) run_options.grace = *parse_seconds(run_grace);
    return run_command(global, run_options);
  }
  if (*status) return status_command(global, status_options);
  if (*get) return get_command(global, get_options);
  if (*post) return post_command(global, post_options);
  if (*wait) {
    if (!wait_timeout.empty()) wait_options.timeout = parse_seconds(wait_timeout);
    return wait_command(global, wait_options);
  }
  if (*create) {
    if (max_option->count() > 0) create_options.max = create_max;
    return create_command(global, create_options);
  }
  if (*remove) return delete_command(global, delete_name);
  return ping_command(global);
}
