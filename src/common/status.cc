// Names and string forms of netsem::Status codes.
#include "netsem/status.h"

namespace netsem {

std::string_view status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kTimeout:
      return "TIMEOUT";
    case StatusCode::kCancelled:
      return "CANCELLED";
    case StatusCode::kNotHeld:
      return "NOT_HELD";
    case StatusCode::kOverflow:
      return "OVERFLOW";
    case StatusCode::kTooMany:
      return "TOO_MANY";
    case StatusCode::kBusy:
      return "BUSY";
    case StatusCode::kLimit:
      return "LIMIT";
    case StatusCode::kDenied:
      return "DENIED";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kShutdown:
      return "SHUTDOWN";
    case StatusCode::kProtocol:
      return "PROTOCOL";
    case StatusCode::kIoError:
      return "IO_ERROR";
    case StatusCode::kCorruption:
      return "CORRUPTION";
    case StatusCode::kInternal:
      return "INTERNAL";
  }
  return "UNKNOWN";
}

std::string Status::to_string() const {
  if (is_ok()) return "OK";
  std::string text(status_code_name(code_));
  text += ": ";
  text += message_;
  return text;
}

}  // namespace netsem
