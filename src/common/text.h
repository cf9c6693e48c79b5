// Small text helpers every part shares, so that each has one definition.
//
// Pure functions: safe from any thread.
#pragma once

#include <string_view>

namespace netsem {

// The ASCII whitespace of the C locale's isspace: space, \t, \n, \v, \f, \r.
inline constexpr std::string_view kAsciiWhitespace = " \t\n\v\f\r";

// `text` without leading and trailing ASCII whitespace (a view into it).
std::string_view trim(std::string_view text);

// Whether two secrets are equal, compared without stopping at the first
// difference, so that how long a refusal takes says nothing about how much
// of a guess was right (the resume secrets, the cluster's peer secret).
bool same_secret(std::string_view a, std::string_view b);

}  // namespace netsem
