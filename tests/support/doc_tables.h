// For the tests that hold a document against what the program emits: the
// names a table of the Markdown documentation lists (docs/cli.md's exit
// codes and JSON fields in tests/cli, docs/protocol.md's STATS fields and
// docs/status-file.md's columns in tests/server), and the keys a JSON text
// has. Header-only.
#pragma once

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace netsem::test_support {

// The first cell of each row of the first table after the line `heading` of
// `doc`, without the header row and the |---| line, trimmed and without the
// backticks around it: "| `name` | string | ... |" gives "name". Every row
// counts, so a row the program does not match fails the caller's check.
// Empty, and a failure of the test, when `doc` has no line `heading`.
inline std::set<std::string> table_first_column(const std::string& doc, const std::string& heading) {
  std::set<std::string> cells;
  const auto at = ("\n" + doc).find("\n" + heading + "\n");
  if (at == std::string::npos) {
    ADD_FAILURE() << "no line \"" << heading << "\" in the document";
    return cells;
  }
  std::istringstream lines(doc.substr(at + heading.size() + 1));
  int row = 0;  // of the table: 1 is the header row, 2 the |---| line
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("|", 0) != 0) {
      if (row > 0) break;  // the table ended
      continue;            // text before the table
    }
    if (++row <= 2) continue;
    const auto end = line.find('|', 1);
    std::string cell = line.substr(1, end == std::string::npos ? std::string::npos : end - 1);
    cell.erase(0, cell.find_first_not_of(' '));
    cell.erase(cell.find_last_not_of(' ') + 1);
    if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`') cell = cell.substr(1, cell.size() - 2);
    cells.insert(cell);
  }
  return cells;
}

// The keys of the objects in `json` (one JSON text, or several in a row):
// every `"key":` of lower-case letters and '_'.
inline std::set<std::string> json_keys(const std::string& json) {
  std::set<std::string> keys;
  static const std::regex kKey(R"re("([a-z_]+)":)re");
  for (std::sregex_iterator it(json.begin(), json.end(), kKey), end; it != end; ++it) keys.insert((*it)[1]);
  return keys;
}

}  // namespace netsem::test_support
