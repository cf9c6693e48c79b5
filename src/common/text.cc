// Text helpers (text.h).
#include "common/text.h"

namespace netsem {

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(kAsciiWhitespace);
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(kAsciiWhitespace);
  return text.substr(first, last - first + 1);
}

}  // namespace netsem
