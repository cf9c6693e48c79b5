// parse_duration(): exact decimal arithmetic on the digits (a 128-bit integer
// for the fraction), so that "0.3s" is 300 ms and not 301 after a floating-point
// product rounds up.
#include "common/duration.h"

#include <algorithm>
#include <cstdint>

namespace netsem {

const std::string_view kDurationHelp = "a duration like 500ms, 5s, 5m or 1h (a bare number is seconds)";

namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t ms;
};
// "ms" before "s" and "m": the longest suffix that matches wins.
constexpr Unit kUnits[] = {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};

// GCC's 128-bit integer, named so under -Wpedantic.
__extension__ using Wide = unsigned __int128;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

Status invalid(std::string_view text, std::string_view why) {
  return Status(StatusCode::kInvalidArgument, "must be " + std::string(kDurationHelp) + ", from 0 to 1e9 s" +
                                                  std::string(why) + ", not '" + std::string(text) + "'");
}

}  // namespace

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::string_view number = text;
  std::int64_t unit_ms = 1000;  // bare: seconds
  for (const Unit& unit : kUnits) {
    if (number.ends_with(unit.suffix)) {
      number.remove_suffix(unit.suffix.size());
      unit_ms = unit.ms;
      break;
    }
  }
  const auto dot = number.find('.');
  const std::string_view whole = number.substr(0, dot);
  const std::string_view fraction = dot == std::string_view::npos ? std::string_view() : number.substr(dot + 1);
  if (whole.empty() && fraction.empty()) return invalid(text, "");
  if (!std::all_of(whole.begin(), whole.end(), is_digit) || !std::all_of(fraction.begin(), fraction.end(), is_digit)) {
    return invalid(text, "");
  }
  // The whole part, bounded before it can overflow: kMaxDuration has 13 digits.
  const std::int64_t limit = kMaxDuration.count() / unit_ms;
  std::int64_t units = 0;
  for (const char c : whole) {
    units = units * 10 + (c - '0');
    if (units > limit) return invalid(text, "");
  }
  std::int64_t ms = units * unit_ms;
  // The fraction, as F / 10^k of a unit, rounded up to a millisecond;
  // trailing zeros change nothing and are dropped first. Past 30 significant
  // digits the int128 would overflow; no one means that much.
  std::string_view digits = fraction;
  while (!digits.empty() && digits.back() == '0') digits.remove_suffix(1);
  if (digits.size() > 30) return invalid(text, " with at most 30 digits after the point");
  Wide numerator = 0;
  Wide denominator = 1;
  for (const char c : digits) {
    numerator = numerator * 10 + (c - '0');
    denominator *= 10;
  }
  const Wide part = numerator * static_cast<Wide>(unit_ms);
  ms += static_cast<std::int64_t>((part + denominator - 1) / denominator);
  if (ms > kMaxDuration.count()) return invalid(text, "");
  return std::chrono::milliseconds(ms);
}

}  // namespace netsem
