// Semaphore names on the wire: percent-decoding of name fields, the validity
// rules of the contract (1-255 bytes of UTF-8, no control characters (C0, DEL
// or C1), no leading `$`), and the encoding the server uses for names in its answers and
// in the status file (`%` as `%25`, space as `%20`, nothing else).
//
// Pure functions, no state: safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "protocol/error_code.h"

namespace netsem::protocol {

inline constexpr std::size_t kMaxNameBytes = 255;

// Decodes a percent-encoded name field into `out` (cleared first; its
// capacity is reused, so a caller that keeps `out` allocates nothing in the
// steady state) and checks the decoded name.
// Returns kNone, or kBadName for a `%` not followed by two hex digits, an
// empty or over-long name, invalid UTF-8, a control character (a byte below
// 0x20, 0x7f, or a C1 control U+0080..U+009F, encoded C2 80..C2 9F), or a
// leading `$`.
ErrorCode decode_name(std::string_view field, std::string& out);

// Checks an already decoded name by the same rules as decode_name.
ErrorCode check_name(std::string_view name);

// Appends `name` to `out` with `%` written as `%25` and space as `%20`.
void append_encoded_name(std::string& out, std::string_view name);

// Appends `name` to `out` with every byte a client must not send raw in a
// field (space, `%`, control bytes) percent-encoded: how the request
// encoders (requests.h) send names. No allocation beyond growing `out`.
void append_request_name(std::string& out, std::string_view name);
// The same into a new string, for a field shown to a user.
std::string encode_name_for_request(std::string_view name);

// True for valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
bool is_valid_utf8(std::string_view text);

}  // namespace netsem::protocol
