// Durations as a person writes them on a command line: a number and a unit,
// "500ms", "5s", "5m", "1h", or a bare number, which is seconds ("2",
// "0.5"), as flock(1) and sleep(1) read one. One parser for every option of
// netsem and netsemd that takes a time, so that all of them read the same
// words and refuse the same ones with the same message.
//
// Pure functions: safe from any thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "netsem/status.h"

namespace netsem {

// The longest duration parse_duration() takes: 1e9 seconds (31 years).
inline constexpr std::chrono::milliseconds kMaxDuration{1'000'000'000'000};

// Parses "<number>[unit]": the number is decimal digits with an optional
// fraction ("5", "0.5", ".5", "5."), the unit one of ms, s, m, h (none:
// seconds), lower case, with nothing between or around them: no sign, no
// exponent, no space. The value is exact (no floating point) and rounded up
// to a whole millisecond, so that a tiny positive duration never becomes 0.
// Returns kInvalidArgument, whose message says what is accepted and quotes
// `text`, when `text` is not such a word or is longer than kMaxDuration.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// What parse_duration() accepts, for help texts: "a duration like 500ms, 5s,
// 5m or 1h (a bare number is seconds)".
extern const std::string_view kDurationHelp;

}  // namespace netsem
