// The fields every protocol v1 line is made of, both ways: tags, decimal
// numbers, and the limits of the contract. requests.h and answers.h build
// their lines from these; names have their own file (names.h).
//
// Pure functions, no state: safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace netsem::protocol {

inline constexpr std::size_t kMaxLineBytes = 4096;
inline constexpr std::size_t kMaxTagBytes = 32;
inline constexpr std::int64_t kMaxCount = 2147483647;  // 2^31 - 1
inline constexpr int kProtocolVersion = 1;

// True when `tag` is 1-32 characters of [A-Za-z0-9_.:-].
bool is_valid_tag(std::string_view tag);

// Parses an unsigned or signed decimal number in [min, max]; false otherwise.
// A '-' is refused when min >= 0, and before a zero value ("-0", "-00").
bool parse_int(std::string_view text, std::int64_t min, std::int64_t max, std::int64_t& out);

// Parses an unsigned decimal number (a fence, a session id, a count in an
// answer): digits only, at most 2^64 - 1; false otherwise.
bool parse_uint(std::string_view text, std::uint64_t& out);

// Append `n` in decimal, with no allocation beyond growing `out`.
void append_decimal(std::string& out, std::uint64_t n);
void append_decimal(std::string& out, std::int64_t n);

// Splits `text` on single spaces into exactly `n` non-empty fields; false
// for another number of fields or an empty one (two spaces in a row, a
// leading or trailing space). `fields` has room for `n`.
bool split_fields(std::string_view text, std::string_view* fields, std::size_t n);

// True when `a` equals the upper-case ASCII word `upper`, ignoring the case
// of `a` (verbs and OPTION's words are case-insensitive).
bool equals_upper(std::string_view a, std::string_view upper);

}  // namespace netsem::protocol
