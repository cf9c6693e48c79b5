// netsem local list / clean (local_commands.h). Both read the registry of the
// client's configuration ([client] local_dir, else the default directory)
// through LocalRegistry, which does the counting and the safe removal; this
// file turns what it reports into a table for people or JSON for programs
// (docs/cli.md lists the fields). Neither needs a server, nor asks one.
#include "cli/local_commands.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "client/local_registry.h"
#include "client/local_semaphores.h"

namespace netsem::cli {

namespace {

using client::LocalRegistry;

// `local` for a `$` name, `fallback` for a server name's stand-in.
std::string kind_of(const std::string& key) {
  return !key.empty() && key.front() == '$' ? "local" : "fallback";
}

std::string table(const std::vector<LocalRegistry::Listed>& items) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "KIND", "LIMIT", "FREE", "HELD", "WAITING", "SEMID"}};
  for (const auto& item : items) {
    rows.push_back({item.key, kind_of(item.key), std::to_string(item.limit), std::to_string(item.value),
                    std::to_string(item.held), std::to_string(item.waiting), std::to_string(item.id)});
  }
  return aligned_table(rows);
}

std::string json_fields(const LocalRegistry::Listed& item) {
  return "\"name\":" + json_string(item.key) + ",\"kind\":" + json_string(kind_of(item.key)) +
         ",\"limit\":" + std::to_string(item.limit) + ",\"free\":" + std::to_string(item.value) +
         ",\"held\":" + std::to_string(item.held) + ",\"waiting\":" + std::to_string(item.waiting) +
         ",\"semid\":" + std::to_string(item.id);
}

// The registry of the client's configuration, or the exit code to return.
struct Registry {
  std::unique_ptr<LocalRegistry> registry;
  int failure = kExitOk;
};
Registry open_registry(const GlobalOptions& global) {
  auto options = make_client_options(global);
  if (!options) {
    print_error(options.status().message());
    return {.registry = nullptr, .failure = kExitUsage};
  }
  const auto dir = options->local_dir.empty() ? client::LocalSemaphores::default_dir() : options->local_dir;
  return {.registry = std::make_unique<LocalRegistry>(dir)};
}

int list_command(const GlobalOptions& global, bool json) {
  Registry opened = open_registry(global);
  if (!opened.registry) return opened.failure;
  auto items = opened.registry->list();
  if (!items) {
    print_error("local list: " + items.status().message());
    return kExitFailed;
  }
  if (json) {
    std::vector<std::string> objects;
    for (const auto& item : *items) objects.push_back("{" + json_fields(item) + "}");
    print(json_array(objects));
    return kExitOk;
  }
  const std::size_t n = items->size();
  std::string text = opened.registry->dir().native() + ": " + std::to_string(n) +
                     (n == 1 ? " host-local semaphore\n" : " host-local semaphores\n");
  if (n > 0) text += table(*items);
  print(text);
  return kExitOk;
}

int clean_command(const GlobalOptions& global, bool json, bool dry_run) {
  Registry opened = open_registry(global);
  if (!opened.registry) return opened.failure;
  auto cleaned = opened.registry->clean(dry_run);
  if (!cleaned) {
    print_error("local clean: " + cleaned.status().message());
    return kExitFailed;
  }
  if (json) {
    std::vector<std::string> objects;
    for (const auto& item : *cleaned) {
      objects.push_back("{" + json_fields(item.entry) + ",\"stale\":" + (item.stale ? "true" : "false") +
                        ",\"removed\":" + (item.removed ? "true" : "false") +
                        ",\"reason\":" + json_string(item.reason) + "}");
    }
    print(json_array(objects));
    return kExitOk;
  }
  std::size_t removed = 0;
  std::string text;
  const std::string verb = dry_run ? "would remove" : "removed";
  for (const auto& item : *cleaned) {
    const std::string name = item.entry.key.empty() ? item.entry.file.native() : item.entry.key;
    if (item.removed) {
      ++removed;
      text += verb + " " + name +
              (item.stale ? " (stale record: its semaphore was gone)\n"
                          : " (semaphore " + std::to_string(item.entry.id) + ": all " +
                                std::to_string(item.entry.limit) + " permit(s) free, nobody waiting)\n");
    } else {
      text += "kept " + name + ": " + item.reason + "\n";
    }
  }
  text += opened.registry->dir().native() + ": " + verb + " " + std::to_string(removed) + ", kept " +
          std::to_string(cleaned->size() - removed) + "\n";
  print(text);
  return kExitOk;
}

}  // namespace

Action define_local(CLI::App& command) {
  struct State {
    bool json = false;
    bool dry_run = false;
    CLI::App* list = nullptr;
    CLI::App* clean = nullptr;
  };
  auto state = std::make_shared<State>();
  state->list = command.add_subcommand("list", "list this user's host-local semaphores: limit, free, held, waiting");
  state->list->add_flag("--json", state->json, "print a JSON array of objects instead of a table");
  state->clean = command.add_subcommand(
      "clean", "remove the host-local semaphores no process holds or waits on, and stale records");
  state->clean->add_flag("--json", state->json, "print a JSON array of objects instead of lines");
  state->clean->add_flag("--dry-run", state->dry_run, "say what would be removed, remove nothing");
  state->list->fallthrough();
  state->clean->fallthrough();
  command.require_subcommand(0, 1);
  return [state](const GlobalOptions& global) {
    if (state->clean->parsed()) return clean_command(global, state->json, state->dry_run);
    if (state->list->parsed()) return list_command(global, state->json);
    print_error("local: list or clean is needed (see netsem local --help)");
    return kExitUsage;
  };
}

std::string local_status_section(const ClientOptions& options) {
  const auto dir = options.local_dir.empty() ? client::LocalSemaphores::default_dir() : options.local_dir;
  LocalRegistry registry(dir);
  auto items = registry.list();
  if (!items || items->empty()) return {};
  const std::size_t n = items->size();
  return "\nhost-local (" + dir.native() + "): " + std::to_string(n) + (n == 1 ? " semaphore\n" : " semaphores\n") +
         table(*items);
}

}  // namespace netsem::cli
