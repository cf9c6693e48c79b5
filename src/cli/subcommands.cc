// The subcommand table (subcommands.h): one define function per subcommand,
// which declares its options the way CLI11 takes them and turns what it
// parsed into the option struct of its *_command function. What CLI11 cannot
// say (an optional MAX, run's `--`, durations as milliseconds) is settled in the
// action, after the parse.
#include "cli/subcommands.h"

#include <memory>
#include <string>

#include "cli/cluster_commands.h"
#include "cli/inspect_commands.h"
#include "cli/local_commands.h"
#include "common/duration.h"

namespace netsem::cli {

namespace {

constexpr std::int64_t kMaxCount = 2147483647;  // the protocol's count range is 1 .. 2^31-1

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

// Every option that takes a time reads it with the one parser (durations.h).
const CLI::Validator kDuration(
    [](std::string& text) -> std::string {
      auto duration = parse_duration(text);
      return duration ? std::string() : duration.status().message();
    },
    "", "DURATION");

CLI::Option* add_count(CLI::App& command, std::int64_t& count, const char* help) {
  return command.add_option("-n,--count", count, help)->transform(decimal(1, kMaxCount))->type_name("COUNT");
}

CLI::Option* add_duration(CLI::App& command, const char* flags, std::string& text, const char* help) {
  return command.add_option(flags, text, help)->check(kDuration)->type_name("DURATION");
}

constexpr const char* kTimeoutHelp =
    "give up after DURATION: 500ms, 5s, 5m, 1h, a bare number is seconds (0: only try; default: wait for ever)";

Action define_run(CLI::App& command) {
  struct State {
    RunOptions options;
    std::string timeout;
    std::string grace;
    bool nonblock = false;
  };
  auto state = std::make_shared<State>();
  add_count(command, state->options.count, "permits to hold (default 1)");
  CLI::Option* timeout = add_duration(command, "-t,--timeout,-w,--wait", state->timeout, kTimeoutHelp);
  // flock's -n is its --nonblock; netsem's -n is --count, so only the long name.
  command.add_flag("--nonblock", state->nonblock, "only try: the same as --timeout 0 (flock's -n)")->excludes(timeout);
  command
      .add_option("-E,--conflict-exit-code", state->options.conflict_exit_code,
                  "exit with N when the permits were not granted in time (default 75), as flock's -E")
      ->transform(decimal(0, 255))
      ->type_name("N");
  add_duration(command, "--grace", state->grace,
               "if the permits are lost, SIGKILL CMD this long after SIGTERM (default 5s)");
  command.add_option("NAME", state->options.name, "semaphore name")->required();
  command
      .add_option("CMD", state->options.command,
                  "the command and its arguments: every word after NAME and netsem's options, or -c 'SHELL COMMAND' "
                  "as the last two words")
      ->required();
  // main.cc has put `-- NAME --` before CMD (arrange_run_words); after the
  // first positional every word is positional too, so that CMD's own options
  // reach CMD.
  command.positionals_at_end();
  return [state](const GlobalOptions& global) {
    RunOptions& options = state->options;
    // A `--` right after NAME reaches CMD's words (every word after NAME
    // does), but it is netsem's: `netsem run x -- ls` runs ls.
    if (!options.command.empty() && options.command.front() == "--") options.command.erase(options.command.begin());
    if (options.command.empty()) {
      print_error("run: CMD is required: " + std::string(kRunSynopsis));
      return kExitUsage;
    }
    if (!state->timeout.empty()) options.timeout = *parse_duration(state->timeout);
    if (state->nonblock) options.timeout = std::chrono::milliseconds(0);
    if (!state->grace.empty()) options.grace = *parse_duration(state->grace);
    return run_command(global, options);
  };
}

Action define_status(CLI::App& command) {
  auto options = std::make_shared<StatusOptions>();
  command.add_flag("--json", options->json, "print a JSON array of objects instead of a table");
  command.add_option("PREFIX", options->prefix, "only names starting with PREFIX");
  return [options](const GlobalOptions& global) { return status_command(global, *options); };
}

Action define_get(CLI::App& command) {
  auto options = std::make_shared<GetOptions>();
  command.add_flag("--json", options->json, "print a JSON object instead of a table");
  command.add_option("NAME", options->name, "semaphore name")->required();
  return [options](const GlobalOptions& global) { return get_command(global, *options); };
}

Action define_post(CLI::App& command) {
  auto options = std::make_shared<CountOptions>();
  add_count(command, options->count, "permits to add (default 1)");
  command.add_option("NAME", options->name, "semaphore name")->required();
  return [options](const GlobalOptions& global) { return post_command(global, *options); };
}

Action define_wait(CLI::App& command) {
  struct State {
    CountOptions options;
    std::string timeout;
  };
  auto state = std::make_shared<State>();
  add_count(command, state->options.count, "permits to take (default 1)");
  add_duration(command, "-t,--timeout", state->timeout, kTimeoutHelp);
  command.add_option("NAME", state->options.name, "semaphore name")->required();
  return [state](const GlobalOptions& global) {
    if (!state->timeout.empty()) state->options.timeout = *parse_duration(state->timeout);
    return wait_command(global, state->options);
  };
}

Action define_create(CLI::App& command) {
  struct State {
    CreateOptions options;
    std::int64_t max = 0;
    CLI::Option* max_option = nullptr;
  };
  auto state = std::make_shared<State>();
  command.add_flag("-x,--exclusive", state->options.exclusive, "fail (EXISTS) if it exists already");
  command.add_option("NAME", state->options.name, "semaphore name")->required();
  command.add_option("VALUE", state->options.value, "free permits to start with")
      ->required()
      ->transform(decimal(0, kMaxCount));
  state->max_option = command.add_option("MAX", state->max, "the most permits it can have (default VALUE)")
                          ->transform(decimal(1, kMaxCount));
  return [state](const GlobalOptions& global) {
    if (state->max_option->count() > 0) state->options.max = state->max;
    return create_command(global, state->options);
  };
}

Action define_delete(CLI::App& command) {
  auto name = std::make_shared<std::string>();
  command.add_option("NAME", *name, "semaphore name")->required();
  return [name](const GlobalOptions& global) { return delete_command(global, *name); };
}

Action define_ping(CLI::App&) {
  return [](const GlobalOptions& global) { return ping_command(global); };
}

constexpr Subcommand kSubcommands[] = {
    {"run", "run CMD while holding permits of NAME, like flock(1); exit with CMD's status", define_run},
    {"status", "list the server's semaphores and say which server answered", define_status},
    {"get", "show one semaphore: value, max, holders, waiters, kind", define_get},
    {"post", "add permits to a semaphore (sem_post)", define_post},
    {"wait", "take permits of a semaphore for good (sem_wait); post gives them back", define_wait},
    {"create", "make a durable semaphore with VALUE free permits out of MAX", define_create},
    {"delete", "delete a semaphore made by create (BUSY while in use)", define_delete},
    {"ping", "check that a server answers, and how fast", define_ping},
    {"stats", "show the server's figures (STATS): sessions, grants, waits, ...", define_stats},
    {"holders", "list the sessions holding permits of NAME (protocol 1.1)", define_holders},
    {"waiters", "list the requests queued for NAME, in grant order (protocol 1.1)", define_waiters},
    {"sessions", "list the server's sessions: peer, permits held, age, label (protocol 1.1)", define_sessions},
    {"local", "list or clean this user's host-local semaphores ($ names, fallback) on this host", define_local},
    {"kick", "end the session ID as if it had closed; its permits go to the next waiters (admin)", define_kick},
    {"cluster", "show a cluster of replicated servers, add or remove a server (admin)", define_cluster},
};

}  // namespace

std::span<const Subcommand> subcommands() {
  return kSubcommands;
}

std::string subcommand_names() {
  std::string names;
  const std::size_t n = std::size(kSubcommands);
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) names += i + 1 == n ? " or " : ", ";
    names += kSubcommands[i].name;
  }
  return names;
}

}  // namespace netsem::cli
