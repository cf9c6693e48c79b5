// Text helpers (text.h).
#include "common/text.h"

#include <algorithm>

namespace netsem {

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(kAsciiWhitespace);
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(kAsciiWhitespace);
  return text.substr(first, last - first + 1);
}

bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace netsem
