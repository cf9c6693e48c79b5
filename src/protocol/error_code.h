// The error codes of protocol v1 (`<tag> ERR <CODE> <message>`), shared by
// the codec, which spells them, and the semaphore table, which decides them.
// A new code goes at the end of the enum (kLastErrorCode moves with it) and
// gets its spelling in error_code.cc.
#pragma once

#include <cstdint>
#include <string_view>

namespace netsem::protocol {

enum class ErrorCode : std::uint8_t {
  kNone = 0,  // no error: the operation succeeded
  kBadRequest,
  kUnknownVerb,
  kBadName,
  kBadArg,
  kNotFound,
  kNotHeld,
  kOverflow,
  kTooMany,
  kExists,
  kBusy,
  kDuplicateTag,
  kLimit,
  kDenied,
  kAuth,
  kShutdown,
  kLineTooLong,
  kKicked,  // 1.1: only in a `* ERR KICKED` line, before the server ends the session
};

// The last code, for loops over every code.
inline constexpr ErrorCode kLastErrorCode = ErrorCode::kKicked;

// The wire spelling: "BAD_REQUEST", "NOT_HELD", ... ("" for kNone).
std::string_view error_code_name(ErrorCode code);

// The code spelled `text` (exact, upper case); false, leaving `code` alone,
// for kNone's empty spelling or a spelling this build does not know.
bool parse_error_code(std::string_view text, ErrorCode& code);

}  // namespace netsem::protocol
