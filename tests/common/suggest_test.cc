// Tests of suggest.h: which typos get a suggestion, and which words get none.
#include "common/suggest.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace netsem {
namespace {

TEST(ClosestWord, SuggestsTheNearestKnownWordForATypo) {
  const std::vector<std::string> options = {"--json", "--help", "--timeout", "--count", "-n", "-t"};
  const std::vector<std::string> commands = {"run", "status", "get", "post", "wait", "create", "delete", "ping"};
  const struct {
    std::string typed;
    const std::vector<std::string>* known;
    std::optional<std::string> want;
  } kCases[] = {
      {"--jsn", &options, "--json"},    // a letter left out
      {"--jsoon", &options, "--json"},  // one too many
      {"--josn", &options, "--json"},   // two swapped
      {"--timout", &options, "--timeout"}, {"--tiemout", &options, "--timeout"}, {"--cuont", &options, "--count"},
      {"stauts", &commands, "status"},     {"creat", &commands, "create"},       {"pign", &commands, "ping"},
      {"--json", &options, std::nullopt},  // known: nothing to suggest
      {"-x", &options, std::nullopt},      // one edit of two letters is no typo
      {"-dash", &options, std::nullopt},   {"--bogus", &options, std::nullopt},  {"frob", &commands, std::nullopt},
      {"", &commands, std::nullopt},
  };
  for (const auto& test : kCases) EXPECT_EQ(closest_word(test.typed, *test.known), test.want) << test.typed;
}

}  // namespace
}  // namespace netsem
