// What the two configuration loaders share: config.cc (the [server] option
// table, netsem's own format and parse_server_config, which picks the format)
// and ace_config.cc (ACE's format). Both report a bad value the same way and
// apply it through the same option table, so a value means the same in either
// file. Private to those two files; config.h is the interface.
//
// Thread safety: pure functions over values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/ini.h"
#include "config/config.h"
#include "netsem/status.h"

namespace netsem::server::config_detail {

inline constexpr std::string_view kServerSection = "server";
inline constexpr std::string_view kSemaphoresSection = "semaphores";
inline constexpr std::string_view kAceSection = "service_network_semaphore";
inline constexpr std::string_view kClusterSection = "cluster";
// A defined semaphore's limit is 1..kMaxLimit in either format.
inline constexpr std::int64_t kMaxLimit = 2147483647;
inline constexpr std::string_view kNameRules = "1-255 bytes of UTF-8, no control characters, not starting with `$`";

// kInvalidArgument with `message`.
Status invalid(std::string message);

// The errors of one file, gathered so that one reading reports them all
// (netsemd --check-config, a start, a reload) instead of one per attempt.
class ErrorList {
 public:
  // `file_name` as the messages' "file:line: " prefix names it.
  explicit ErrorList(std::string file_name) : file_name_(std::move(file_name)) {}
  // At most this many messages are kept; the rest are only counted.
  static constexpr std::size_t kMaxKept = 50;
  // Records `status` when it is an error; returns whether it was ok.
  bool add(const Status& status);
  // Counts `n` more errors whose messages are not kept (the reader's own
  // overflow).
  void count_more(std::size_t n);
  bool empty() const { return count_ == 0; }
  // Ok when empty; else kInvalidArgument whose message has every kept
  // error, one a line in the order of their lines in the file (a syntax
  // error beside the bad values around it; errors of one line, or without a
  // line, in the order found), then "... and N more errors" past kMaxKept.
  // One error reads exactly as it did alone.
  Status status() const;

 private:
  std::string file_name_;
  std::vector<std::string> messages_;
  std::size_t count_ = 0;
};
// kInvalidArgument "file:line: key: <error's message>", with hints for the
// configparser rules that surprise (a continued value, an inline comment).
Status entry_error(const IniFile& ini, const IniEntry& entry, const Status& error);
// Applies `value` (the entry's, or its translation) through spec.apply;
// errors as entry_error.
Status apply_entry(const IniFile& ini, const IniEntry& entry, const OptionSpec& spec, std::string_view value,
                   ServerConfig& config);
// read_private_file of `file`, a file of secrets that the key `key` names,
// set at `at` ("file:line" as IniFile::location gives it; "" when unknown).
// Sets `where` to how its errors begin, for the caller's errors about the
// file's content too: the key's file and line, the key, the path and, for
// a relative path, the working directory it was looked for in: "n.ini:4:
// secret_file: s (relative to the working directory /x)", then ": cannot
// read: No such file or directory" (secret_file, tokens_file).
Result<std::string> read_keyed_private_file(std::string_view at, std::string_view key,
                                            const std::filesystem::path& file, std::string& where);
// `text` lower-cased byte by byte (std::tolower).
std::string lower(std::string_view text);
// kInvalidArgument at `line` when more semaphores are defined than
// max_semaphores allows.
Status check_semaphore_count(const IniFile& ini, int line, const ServerConfig& config);

// Reads an ACE file, `ace` being its [service_network_semaphore] section, as
// config.h's parse_server_config describes (ace_config.cc). `errors` holds
// those found before (the file's syntax); any error fails it.
// [cluster] into config.cluster, every error into `errors` (cluster_config.cc).
void parse_cluster_section(const IniFile& ini, const IniSection& section, ServerConfig& config, ErrorList& errors);

Result<ServerConfig> parse_ace_file(const IniFile& ini, const IniSection& ace, ErrorList& errors);

}  // namespace netsem::server::config_detail
