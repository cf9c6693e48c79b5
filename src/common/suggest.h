// "Did you mean": the known word closest to a mistyped one, for the usage
// errors of netsem and netsemd (`--jsn` -> `--json`, `stauts` -> `status`).
//
// Pure functions: safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace netsem {

// The word of `known` nearest to `typed` by edit distance (insertions,
// deletions, substitutions and swaps of two neighbours each count one), if
// it is near enough to be a typo: at most 2 edits, and fewer than half of
// `typed`'s length (so that `-x` suggests nothing). The first of equals wins.
std::optional<std::string> closest_word(std::string_view typed, const std::vector<std::string>& known);

}  // namespace netsem
