// The wire spelling of the error codes, both ways (error_code.h).
#include "protocol/error_code.h"

namespace netsem::protocol {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNone:
      return "";
    case ErrorCode::kBadRequest:
      return "BAD_REQUEST";
    case ErrorCode::kUnknownVerb:
      return "UNKNOWN_VERB";
    case ErrorCode::kBadName:
      return "BAD_NAME";
    case ErrorCode::kBadArg:
      return "BAD_ARG";
    case ErrorCode::kNotFound:
      return "NOT_FOUND";
    case ErrorCode::kNotHeld:
      return "NOT_HELD";
    case ErrorCode::kOverflow:
      return "OVERFLOW";
    case ErrorCode::kTooMany:
      return "TOO_MANY";
    case ErrorCode::kExists:
      return "EXISTS";
    case ErrorCode::kBusy:
      return "BUSY";
    case ErrorCode::kDuplicateTag:
      return "DUPLICATE_TAG";
    case ErrorCode::kLimit:
      return "LIMIT";
    case ErrorCode::kDenied:
      return "DENIED";
    case ErrorCode::kAuth:
      return "AUTH";
    case ErrorCode::kShutdown:
      return "SHUTDOWN";
    case ErrorCode::kLineTooLong:
      return "LINE_TOO_LONG";
    case ErrorCode::kKicked:
      return "KICKED";
  }
  return "";
}

bool parse_error_code(std::string_view text, ErrorCode& code) {
  for (auto c = static_cast<std::uint8_t>(ErrorCode::kBadRequest); c <= static_cast<std::uint8_t>(kLastErrorCode);
       ++c) {
    if (error_code_name(static_cast<ErrorCode>(c)) == text) {
      code = static_cast<ErrorCode>(c);
      return true;
    }
  }
  return false;
}

}  // namespace netsem::protocol
