// netsem-check-history: the checker (history.h) as a program, for the long
// failure runs and for reading a history by hand. Reads the history files
// given (or standard input), prints each name's figures and every violation,
// and exits 0 when the history keeps the promise, 1 when it does not, 2 when
// a file cannot be read or parsed.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "checker/history.h"

int main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf(
        "usage: netsem-check-history [HISTORY.jsonl ...]\n"
        "Checks a failure test's client history (docs/replication.md, \"The checker\").\n"
        "Exit status: 0 the promise held, 1 it was broken, 2 unreadable input.\n");
    return 0;
  }
  // Each file parsed on its own, so that a message names its file and line.
  std::vector<netsem::checker::Event> all;
  const auto add = [&](const std::string& text, const std::string& source) {
    auto events = netsem::checker::parse_history(text, source);
    if (!events) {
      std::fprintf(stderr, "netsem-check-history: %s\n", events.status().message().c_str());
      return false;
    }
    all.insert(all.end(), std::make_move_iterator(events->begin()), std::make_move_iterator(events->end()));
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (!in) {
      std::fprintf(stderr, "netsem-check-history: cannot read %s\n", argv[i]);
      return 2;
    }
    if (!add(buffer.str(), argv[i])) return 2;
  }
  if (argc == 1) {
    std::ostringstream buffer;
    buffer << std::cin.rdbuf();
    if (!add(buffer.str(), "stdin")) return 2;
  }
  const std::vector<netsem::checker::Event>* events = &all;
  const netsem::checker::Report report = netsem::checker::check_history(*events);
  for (const auto& [name, figures] : report.names) {
    std::printf("%s: %llu grants, at most %lld in use (limit %lld), %llu of unknown outcome\n", name.c_str(),
                static_cast<unsigned long long>(figures.grants), static_cast<long long>(figures.most_in_use),
                static_cast<long long>(figures.limit), static_cast<unsigned long long>(figures.unknown));
  }
  for (const std::string& violation : report.violations) std::printf("VIOLATION %s\n", violation.c_str());
  std::printf("%zu events: %s\n", events->size(), report.ok() ? "the promise held" : "the promise was broken");
  return report.ok() ? 0 : 1;
}
