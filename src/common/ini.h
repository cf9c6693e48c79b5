// A small INI reader, shared by the server configuration (config/config.h)
// and the client library's. It reads the dialect of Python's configparser
// with its default settings, because netsem must read ACE's configuration
// files unchanged and because Python clients read the same files:
//   - `[section]` headers; section names are case-sensitive and kept as written;
//   - `key = value` and `key: value`, split at the first `=` or `:`; key and
//     value are trimmed; keys keep their case (folding is the caller's choice:
//     ACE folds them, netsem's own sections do not);
//   - whole-line comments whose first non-blank character is `#` or `;`;
//     inline comments are NOT stripped (`port = 1 ; x` has the value `1 ; x`),
//     exactly as configparser;
//   - continuation lines: a line indented deeper than its key's line
//     continues that key's value; the parts are joined with '\n'. Blank lines
//     inside a continued value are kept, trailing ones dropped; comment lines
//     inside one are skipped;
//   - a duplicate section or a duplicate key within a section is an error
//     (configparser's strict mode, its default).
// Deviations, all toward rejecting input configparser would read oddly: a line
// starting with `[` must be a whole header (only a comment may follow the `]`).
// No interpolation of any kind is done.
//
// The reader knows nothing of which sections or keys exist: callers check
// that, using the line numbers kept here to point at the offending line.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"

namespace netsem {

struct IniEntry {
  std::string key;    // as written, trimmed
  std::string value;  // trimmed; continuation lines joined with '\n'
  // False only for a bare `key` line read with IniOptions::allow_no_value.
  bool has_value = true;
  int line = 0;       // 1-based line of the key
  int last_line = 0;  // last line of the value (> line when it was continued)
};

struct IniSection {
  std::string name;               // between the brackets, as written
  int line = 0;                   // line of the header
  std::vector<IniEntry> entries;  // file order

  // The entry whose key is exactly `key`, or nullptr.
  const IniEntry* find(std::string_view key) const;
};

struct IniFile {
  std::string file_name;             // as given to the reader, for messages
  std::vector<IniSection> sections;  // file order
  // Read with IniOptions::keep_going: the error of every bad line, in file
  // order, at most IniOptions::kMaxErrors of them; error_count counts them
  // all. Empty and 0 otherwise (the first error is parse_ini's answer).
  std::vector<Status> errors;
  std::size_t error_count = 0;

  // The section named exactly `name`, or nullptr.
  const IniSection* find(std::string_view name) const;
  // "file_name:line", the prefix of every message about that line.
  std::string location(int line) const;
};

struct IniOptions {
  // Accept a line holding only a key (configparser's allow_no_value, which
  // ACE turns on); such entries have has_value == false and an empty value.
  bool allow_no_value = false;
  // Read past bad lines instead of stopping at the first, so that one run
  // reports them all (netsemd --check-config): each bad line's error goes
  // to IniFile::errors and parse_ini answers the file read around them. A
  // bad line is skipped with its continuation lines; a bad or duplicate
  // section header with the whole section under it, up to the next good
  // header, so that its keys are not taken for another section's. A file
  // with errors must not be used: the caller reports them.
  bool keep_going = false;
  // IniFile::errors keeps this many; the rest are only counted.
  static constexpr std::size_t kMaxErrors = 100;
};

// Parses `text`; `file_name` only labels messages.
// Returns kInvalidArgument "file:line: <what>" for the first bad line
// (with keep_going: the file, and every bad line's error in its `errors`):
//   "expected `key = value` or `[section]`" for a line that is neither
//   (including an empty key, `= 1`, and `[]`), "`key` comes before any
//   [section]", "duplicate section [s] (first at line N)", "duplicate key
//   `k` in [s] (first at line N)".
// A UTF-8 byte order mark at the start is skipped; "\r\n" line ends are
// accepted. Time and memory are linear in the size of `text`.
Result<IniFile> parse_ini(std::string_view text, std::string_view file_name, IniOptions options = {});

// What parse_ini without allow_no_value would have answered for the text
// that `file` was read from with it: OK when every entry has a value, else
// kInvalidArgument "file:line: expected `key = value` or `[section]`" for the
// first entry (in file order) without one. So a caller that reads a file
// leniently first need not read it a second time to be strict.
Status require_values(const IniFile& file);
// Every error require_values would answer, in file order, not only the
// first (empty when every entry has a value).
std::vector<Status> missing_values(const IniFile& file);

// The whole content of the file at `path`. kIoError "path: cannot read:
// <reason>" when it cannot be read (a directory included).
Result<std::string> read_text_file(const std::filesystem::path& path);

// Reads and parses the file at `path` (messages name it as path.string()).
// kIoError "path: cannot read: <reason>" when it cannot be read; otherwise
// as parse_ini.
Result<IniFile> read_ini_file(const std::filesystem::path& path, IniOptions options = {});

// A value that must be a whole decimal number in [min, max]: the number, or
// kInvalidArgument saying "`x` is not a whole number" / "x is out of range
// min..max" (callers prefix the file:line and key).
Result<std::int64_t> parse_ini_integer(std::string_view text, std::int64_t min, std::int64_t max);

}  // namespace netsem
