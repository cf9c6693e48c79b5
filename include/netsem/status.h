// Status and Result<T>: how every fallible netsem call reports its outcome.
//
// A Status is a code plus a human-readable message; Result<T> holds either a
// value or a non-OK Status, shaped like std::expected (which g++ 12 lacks).
// No exception crosses netsem's public API: errors are these values.
//
// Thread safety: both are plain values; distinct objects may be used from
// distinct threads, a shared one only for reading.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace netsem {

// The canonical error codes. Every code is documented where the call that
// returns it is declared; these are the broad classes.
enum class StatusCode : unsigned char {
  kOk = 0,
  kInvalidArgument,  // the caller passed something malformed or out of range
  kNotFound,         // the named thing does not exist
  kAlreadyExists,    // the named thing exists and the call required it not to
  kTimeout,          // a deadline passed before the call could complete
  kCancelled,        // the call was cancelled before it completed
  kNotHeld,          // releasing permits the caller does not hold
  kOverflow,         // a value would exceed its maximum
  kTooMany,          // more permits asked than the semaphore's maximum
  kBusy,             // the thing is in use and cannot be changed now
  kLimit,            // a configured limit of the server was reached
  kDenied,           // the peer is not allowed (the server's allow-list, or authentication)
  kUnavailable,      // no server could be reached, or the connection was lost
  kShutdown,         // the server is shutting down
  kProtocol,         // the peer answered, but not in a protocol (version) this build speaks
  kIoError,          // a file or socket operation failed
  kCorruption,       // stored data failed its checksum or does not parse
  kInternal,         // a broken invariant: a bug
};

// The stable upper-case name of a code ("NOT_FOUND"), for logs and messages.
std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  // An OK status.
  Status() = default;
  // REQUIRES: code != kOk (an OK status carries no message).
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {
    assert(code != StatusCode::kOk);
  }

  static Status ok() { return Status(); }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "NOT_FOUND: no semaphore named x", or "OK".
  std::string to_string() const;

  friend bool operator==(const Status& a, const Status& b) { return a.code_ == b.code_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  // REQUIRES: !status.is_ok()
  Result(Status status) : state_(std::in_place_index<1>, std::move(status)) {  // NOLINT
    assert(!std::get<1>(state_).is_ok());
  }

  bool has_value() const { return state_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  // REQUIRES: has_value()
  T& value() & {
    assert(has_value());
    return std::get<0>(state_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(state_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(state_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // The error, or an OK status when a value is held.
  Status status() const { return has_value() ? Status() : std::get<1>(state_); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace netsem
