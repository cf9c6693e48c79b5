// STATS' answer (`OK <one-line JSON>`) read on the client's side: the
// members of its top-level object, in the order sent, each with the raw JSON
// text of its value, so that a field this build does not know (a newer
// server's, or a histogram's nested object) is kept and shown, not refused.
//
// The reader is strict JSON (RFC 8259) with a nesting limit: a server that
// sends anything else is not trusted for the figures a client acts on (the
// session timeout it pings by).
//
// Pure functions, no state: safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::protocol {

enum class JsonType : std::uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

struct StatsField {
  std::string name;  // unescaped
  JsonType type = JsonType::kNull;
  std::string_view value;  // the value's JSON text, pointing into the parsed text
};

// Nested arrays and objects deeper than this are refused.
inline constexpr int kMaxJsonDepth = 32;

// Parses one JSON object (and nothing after it but spaces) into its members;
// false, with `fields` unspecified, for anything else.
bool parse_stats(std::string_view json, std::vector<StatsField>& fields);

// The member called `name`, or nullptr. (A name sent twice: the first.)
const StatsField* find_stats_field(const std::vector<StatsField>& fields, std::string_view name);

// The integer value of member `name`: false when absent, not a number, or
// not an integer in the range of int64 (no fraction, no exponent).
bool stats_integer(const std::vector<StatsField>& fields, std::string_view name, std::int64_t& out);

// The value of a string member, unescaped; false when absent or not a string.
bool stats_string(const std::vector<StatsField>& fields, std::string_view name, std::string& out);

// Unescapes a JSON string literal (quotes included) into `out`; false when
// it is not one (bad escape, control byte, a lone surrogate).
bool decode_json_string(std::string_view literal, std::string& out);

}  // namespace netsem::protocol
