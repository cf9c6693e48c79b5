// The INI reader (see ini.h). parse_ini follows the loop of CPython's
// configparser.RawConfigParser._read with its default settings
// (empty_lines_in_values=True, strict=True, no inline comment prefixes), so
// that a file configparser reads one way is read here the same way.
#include "common/ini.h"

#include <algorithm>
#include <charconv>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "common/text.h"

namespace netsem {
namespace {

bool is_comment(std::string_view trimmed) {
  return !trimmed.empty() && (trimmed.front() == '#' || trimmed.front() == ';');
}

Status syntax_error(std::string_view file, int line, std::string_view what) {
  return Status(StatusCode::kInvalidArgument, fmt::format("{}:{}: {}", file, line, what));
}

constexpr std::string_view kExpected = "expected `key = value` or `[section]`";

// A key of the file-wide duplicate index: the section's position and the key.
struct SectionKey {
  std::size_t section;
  std::string_view key;
  friend bool operator==(const SectionKey&, const SectionKey&) = default;
};
struct SectionKeyHash {
  std::size_t operator()(const SectionKey& k) const {
    return std::hash<std::string_view>{}(k.key) ^ (k.section * 0x9E3779B97F4A7C15ull);
  }
};

// The section name of a header line (already trimmed, starting with '['), or
// nullopt when the line is not a well-formed header.
std::optional<std::string_view> header_name(std::string_view trimmed) {
  const auto close = trimmed.find(']');
  if (close == std::string_view::npos || close == 1) return std::nullopt;
  // configparser would take `[a] junk` as section `a`; only a comment may
  // follow here, so that a stray character is reported, not ignored.
  const auto rest = trim(trimmed.substr(close + 1));
  if (!rest.empty() && !is_comment(rest)) return std::nullopt;
  return trimmed.substr(1, close - 1);
}

}  // namespace

const IniEntry* IniSection::find(std::string_view key) const {
  for (const auto& entry : entries) {
    if (entry.key == key) return &entry;
  }
  return nullptr;
}

const IniSection* IniFile::find(std::string_view name) const {
  for (const auto& section : sections) {
    if (section.name == name) return &section;
  }
  return nullptr;
}

std::string IniFile::location(int line) const {
  return fmt::format("{}:{}", file_name, line);
}

Result<IniFile> parse_ini(std::string_view text, std::string_view file_name, IniOptions options) {
  IniFile file;
  file.file_name = std::string(file_name);
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);

  // Duplicate checks by hash, so that reading is linear in the size of the
  // file (a [semaphores] section may have a million lines); one index for
  // the whole file, sized once for its number of lines, not one per section
  // growing by rehashes. The views point into `text`, which outlives the
  // parse. Values are the line of the first occurrence.
  std::unordered_map<std::string_view, int> section_lines;
  std::unordered_map<SectionKey, int, SectionKeyHash> key_lines;
  key_lines.reserve(static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1);

  IniSection* section = nullptr;
  IniEntry* entry = nullptr;  // the entry a deeper-indented line would continue
  std::size_t entry_indent = std::numeric_limits<std::size_t>::max();
  int blank_lines = 0;  // blank lines seen since `entry`'s last value line
  // keep_going: lines skipped after an error. A bad entry line takes the
  // lines indented deeper than it (its continuation) along; a bad header
  // takes every line up to the next header.
  std::size_t skip_indent = std::numeric_limits<std::size_t>::max();
  bool skip_section = false;

  // An error: the answer, or with keep_going one more of file.errors.
  std::optional<Status> failed;
  const auto fail = [&](int line, std::string_view what) {
    Status error = syntax_error(file_name, line, what);
    if (!options.keep_going) {
      failed = std::move(error);
      return;
    }
    if (file.errors.size() < IniOptions::kMaxErrors) file.errors.push_back(std::move(error));
    ++file.error_count;
  };

  int line_number = 0;
  std::size_t pos = 0;
  while (pos < text.size() && !failed) {
    const auto end = text.find('\n', pos);
    const auto raw = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? text.size() : end + 1;
    ++line_number;

    const auto line = trim(raw);
    // Comments neither end nor extend a value; blank lines are kept inside a
    // value if a continuation line follows them.
    if (is_comment(line)) continue;
    if (line.empty()) {
      if (entry != nullptr && entry->has_value) ++blank_lines;
      continue;
    }

    const auto indent = raw.find_first_not_of(kAsciiWhitespace);
    if (skip_section && line.front() != '[') continue;
    if (skip_indent != std::numeric_limits<std::size_t>::max()) {
      if (indent > skip_indent) continue;  // continues the bad line
      skip_indent = std::numeric_limits<std::size_t>::max();
    }
    if (entry != nullptr && indent > entry_indent) {
      if (!entry->has_value) {
        fail(line_number, fmt::format("indented line continues `{}`, which has no value", entry->key));
        skip_indent = entry_indent;  // the rest of the block is the same mistake
        entry = nullptr;
        continue;
      }
      entry->value.append(static_cast<std::size_t>(blank_lines) + 1, '\n');
      entry->value += line;
      entry->last_line = line_number;
      blank_lines = 0;
      continue;
    }
    entry_indent = indent;
    blank_lines = 0;
    entry = nullptr;

    if (line.front() == '[') {
      const auto name = header_name(line);
      skip_section = true;  // until this header proves good
      section = nullptr;
      if (!name) {
        fail(line_number, kExpected);
        continue;
      }
      if (const auto [previous, added] = section_lines.try_emplace(*name, line_number); !added) {
        fail(line_number, fmt::format("duplicate section [{}] (first at line {})", *name, previous->second));
        continue;
      }
      skip_section = false;
      file.sections.push_back(IniSection{std::string(*name), line_number, {}});
      section = &file.sections.back();
      continue;
    }

    IniEntry parsed;
    parsed.line = parsed.last_line = line_number;
    std::string_view key;
    const auto delimiter = line.find_first_of("=:");
    if (delimiter == std::string_view::npos) {
      if (!options.allow_no_value) {
        fail(line_number, kExpected);
        skip_indent = indent;
        continue;
      }
      key = line;
      parsed.has_value = false;
    } else {
      key = trim(line.substr(0, delimiter));
      parsed.value = std::string(trim(line.substr(delimiter + 1)));
      if (key.empty()) {
        fail(line_number, kExpected);
        skip_indent = indent;
        continue;
      }
    }
    if (section == nullptr) {
      fail(line_number, fmt::format("`{}` comes before any [section]", key));
      skip_indent = indent;
      continue;
    }
    if (const auto [previous, added] = key_lines.try_emplace(SectionKey{file.sections.size(), key}, line_number);
        !added) {
      fail(line_number,
           fmt::format("duplicate key `{}` in [{}] (first at line {})", key, section->name, previous->second));
      skip_indent = indent;
      continue;
    }
    parsed.key = std::string(key);
    section->entries.push_back(std::move(parsed));
    entry = &section->entries.back();
  }
  if (failed) return *failed;
  return file;
}

Status require_values(const IniFile& file) {
  // Sections and entries are in file order, so the first one found is the
  // first line a strict reading would have stopped at (it reads every line
  // before it the same way).
  for (const auto& section : file.sections) {
    for (const auto& entry : section.entries) {
      if (!entry.has_value) return syntax_error(file.file_name, entry.line, kExpected);
    }
  }
  return Status::ok();
}

std::vector<Status> missing_values(const IniFile& file) {
  std::vector<Status> errors;
  for (const auto& section : file.sections) {
    for (const auto& entry : section.entries) {
      if (!entry.has_value) errors.push_back(syntax_error(file.file_name, entry.line, kExpected));
    }
  }
  return errors;
}

Result<std::string> read_text_file(const std::filesystem::path& path) {
  // An ifstream opens a directory without complaint and then reads nothing.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status(StatusCode::kIoError, fmt::format("{}: cannot read: is a directory", path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(StatusCode::kIoError, fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) {
    return Status(StatusCode::kIoError, fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  }
  return content.str();
}

Result<IniFile> read_ini_file(const std::filesystem::path& path, IniOptions options) {
  auto text = read_text_file(path);
  if (!text) return text.status();
  return parse_ini(*text, path.string(), options);
}

Result<std::int64_t> parse_ini_integer(std::string_view text, std::int64_t min, std::int64_t max) {
  std::int64_t n = 0;
  const auto* last = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), last, n);
  if (text.empty() || ptr != last || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    return Status(StatusCode::kInvalidArgument, fmt::format("`{}` is not a whole number", text));
  }
  if (ec == std::errc::result_out_of_range || n < min || n > max) {
    return Status(StatusCode::kInvalidArgument, fmt::format("{} is out of range {}..{}", text, min, max));
  }
  return n;
}

}  // namespace netsem
