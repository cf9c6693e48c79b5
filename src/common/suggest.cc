// closest_word(): the optimal-string-alignment distance (Damerau-Levenshtein
// without repeated edits of one substring), O(n*m) on words of a command line.
#include "common/suggest.h"

#include <algorithm>
#include <cstddef>

namespace netsem {

namespace {

std::size_t distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

}  // namespace

std::optional<std::string> closest_word(std::string_view typed, const std::vector<std::string>& known) {
  std::optional<std::string> best;
  std::size_t best_distance = 3;  // at most 2 edits
  for (const auto& word : known) {
    if (word == typed) continue;
    const std::size_t d = distance(typed, word);
    if (d < best_distance && 2 * d < typed.size()) {
      best = word;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace netsem
