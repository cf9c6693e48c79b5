// arrange_run_words() mirrors the way CLI11 reads an option word (a long
// option with or without `=value`, a cluster of short ones, a word like "-5"
// that is a number, not an option), so that it consumes each option's value
// exactly as CLI11 will, and no CMD word is ever read as netsem's.
#include "cli/command_line.h"

#include <cstdlib>
#include <sstream>
#include <string_view>

#include "cli/subcommands.h"
#include "common/suggest.h"

namespace netsem::cli {

namespace {

// CLI11 reads "-5" and "-0.5" as positionals, not options.
bool is_number(std::string_view word) {
  if (word.size() < 2 || word.front() != '-') return false;
  bool digit = false;
  for (const char c : word.substr(1)) {
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c != '.') {
      return false;
    }
  }
  return digit;
}

bool is_option_word(std::string_view word) {
  return word.size() > 1 && word.front() == '-' && word != "--" && !is_number(word);
}

// The option of `command` (or, for a subcommand, of its parent: the global
// options fall through) that `flag` ("-t", "--timeout") names.
const CLI::Option* find_option(const CLI::App& command, const std::string& flag) {
  for (const CLI::App* app = &command; app != nullptr; app = app->get_parent()) {
    if (const CLI::Option* option = app->get_option_no_throw(flag); option != nullptr && !option->get_positional()) {
      return option;
    }
  }
  return nullptr;
}

bool takes_value(const CLI::Option& option) {
  return option.get_expected_max() > 0 && option.get_type_size_max() > 0;
}

// How many words the option word at `words[at]` spans (1, or 2 with its
// value), or nullopt if it names no option of `command`.
std::optional<std::size_t> option_span(const CLI::App& command, const std::vector<std::string>& words, std::size_t at) {
  const std::string& word = words[at];
  if (word.starts_with("--")) {
    const auto equals = word.find('=');
    const CLI::Option* option = find_option(command, word.substr(0, equals));
    if (option == nullptr) return std::nullopt;
    // CLI11 reads "--count=" as "--count" and takes the next word.
    const bool attached = equals != std::string::npos && equals + 1 < word.size();
    return takes_value(*option) && !attached && at + 1 < words.size() ? 2 : 1;
  }
  // A cluster of short options: "-vv", "-n2", "-vt" "5".
  for (std::size_t i = 1; i < word.size(); ++i) {
    const CLI::Option* option = find_option(command, std::string("-") + word[i]);
    if (option == nullptr) return std::nullopt;
    if (takes_value(*option)) return i + 1 == word.size() && at + 1 < words.size() ? 2 : 1;
  }
  return 1;
}

std::vector<std::string> option_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_positional()) continue;
    for (const auto& name : option->get_lnames()) names.push_back("--" + name);
    for (const auto& name : option->get_snames()) names.push_back("-" + name);
  }
  return names;
}

}  // namespace

std::optional<std::string> arrange_run_words(const CLI::App& app, std::vector<std::string>& words) {
  const auto found = app.get_subcommands([](const CLI::App* command) { return command->get_name() == "run"; });
  if (found.empty()) return std::nullopt;
  const CLI::App* run = found.front();
  // Where is the subcommand? Past the global options and their values.
  std::size_t at = 0;
  while (at < words.size() && is_option_word(words[at])) {
    const auto span = option_span(app, words, at);
    at += span.value_or(1);
  }
  if (at >= words.size() || words[at] != "run") return std::nullopt;
  const std::size_t run_at = at++;

  // NAME: the first word that is no option, or the one after `--`.
  while (at < words.size() && is_option_word(words[at])) at += option_span(*run, words, at).value_or(1);
  std::vector<std::string> before(words.begin() + static_cast<std::ptrdiff_t>(run_at) + 1,
                                  words.begin() + static_cast<std::ptrdiff_t>(std::min(at, words.size())));
  if (at < words.size() && words[at] == "--") ++at;
  if (at >= words.size()) return std::nullopt;  // no NAME: CLI11 says so
  const std::string name = words[at++];

  // After NAME: netsem's options up to CMD.
  std::vector<std::string> after;
  std::vector<std::string> command;
  while (at < words.size()) {
    const std::string& word = words[at];
    if (word == "--") {
      ++at;
      break;
    }
    if (word == "-c" || word == "--command") {
      if (at + 2 != words.size()) {
        return "run: " + word + " takes one word, the shell command, and comes last: netsem run [OPTIONS] NAME " +
               word + " 'COMMAND ARGS...'";
      }
      const char* shell = std::getenv("SHELL");
      command = {shell != nullptr && *shell != '\0' ? shell : "/bin/sh", "-c", words[at + 1]};
      at = words.size();
      break;
    }
    if (!is_option_word(word)) break;
    const auto span = option_span(*run, words, at);
    // The last word, an option waiting for its value: CLI11 would take the
    // `--` put after it as the value.
    if (span && *span == 1 && at + 1 == words.size()) {
      std::string flag = word.substr(0, word.find('='));
      bool missing = false;
      if (word.starts_with("--")) {
        const CLI::Option* option = find_option(*run, flag);
        missing = option != nullptr && takes_value(*option) && word.size() <= flag.size() + 1;
      } else {
        // A cluster ("-vn"): the first short option that takes a value takes the rest of the word.
        for (std::size_t i = 1; i < word.size(); ++i) {
          const CLI::Option* option = find_option(*run, std::string("-") + word[i]);
          if (option != nullptr && takes_value(*option)) {
            missing = i + 1 == word.size();
            flag = std::string("-") + word[i];
            break;
          }
        }
      }
      if (missing) return "run: " + flag + " needs a value, and CMD is required: " + std::string(kRunSynopsis);
    }
    if (!span) {
      return "run: unknown option " + word + " after NAME" + suggestion(app, run, word) +
             "; CMD's own options follow CMD, and a CMD that starts with '-' follows '--': " +
             std::string(kRunSynopsis);
    }
    after.insert(after.end(), words.begin() + static_cast<std::ptrdiff_t>(at),
                 words.begin() + static_cast<std::ptrdiff_t>(at + *span));
    at += *span;
  }
  command.insert(command.end(), words.begin() + static_cast<std::ptrdiff_t>(at), words.end());

  std::vector<std::string> arranged(words.begin(), words.begin() + static_cast<std::ptrdiff_t>(run_at) + 1);
  arranged.insert(arranged.end(), before.begin(), before.end());
  arranged.insert(arranged.end(), after.begin(), after.end());
  // The action drops one `--` at the front of CMD: it is netsem's.
  arranged.insert(arranged.end(), {"--", name, "--"});
  arranged.insert(arranged.end(), command.begin(), command.end());
  words = std::move(arranged);
  return std::nullopt;
}

std::string suggestion(const CLI::App& app, const CLI::App* command, const std::string& typed) {
  std::vector<std::string> known;
  if (typed.starts_with("-")) {
    known = option_names(app);
    if (command != nullptr) {
      const auto own = option_names(*command);
      known.insert(known.begin(), own.begin(), own.end());
    }
    // "--jsn=1": the option's name is what was mistyped.
    const auto best = closest_word(typed.substr(0, typed.find('=')), known);
    return best ? " (did you mean " + *best + "?)" : "";
  }
  for (const CLI::App* subcommand : app.get_subcommands({})) known.push_back(subcommand->get_name());
  const auto best = closest_word(typed, known);
  return best ? " (did you mean " + *best + "?)" : "";
}

std::string global_options_help(const CLI::App& app) {
  std::vector<const CLI::Option*> options;
  for (const CLI::Option* option : app.get_options()) {
    if (option != app.get_help_ptr()) options.push_back(option);
  }
  return CLI::Formatter().make_group("Global options (before or after the subcommand)", false, options);
}

}  // namespace netsem::cli
