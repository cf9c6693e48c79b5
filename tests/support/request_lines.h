// Request lines for tests, written by the codec's encoders
// (src/protocol/requests.h) so that no test formats a well-formed request by
// hand: `req::acquire("a", "x", 1, 0)` is "a ACQUIRE x 1 0". Each returns
// the line without its "\n", as Dispatcher::handle_line and the harness's
// Client::request and send_line take it. Optional fields are left out when
// they hold their defaults, as the encoders do ("a ACQUIRE x", not "a ACQUIRE
// x 1"); a test about the bytes of a line (a field given explicitly, bad
// syntax, case, CR/LF) writes that line raw and says so.
//
// Header-only; needs netsem::protocol. Pure functions: safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/requests.h"

namespace netsem::testing::req {

namespace detail {
// The encoder's line without its terminator.
inline std::string chomp(std::string line) {
  if (!line.empty() && line.back() == '\n') line.pop_back();
  return line;
}
}  // namespace detail

inline std::string hello(std::string_view tag, std::string_view label = {}) {
  std::string out;
  protocol::encode_hello(out, tag, label);
  return detail::chomp(std::move(out));
}
inline std::string acquire(std::string_view tag, std::string_view name, std::int64_t count = 1,
                           std::int64_t timeout_ms = -1) {
  std::string out;
  protocol::encode_acquire(out, tag, name, count, timeout_ms);
  return detail::chomp(std::move(out));
}
inline std::string wait(std::string_view tag, std::string_view name, std::int64_t count = 1,
                        std::int64_t timeout_ms = -1) {
  std::string out;
  protocol::encode_wait(out, tag, name, count, timeout_ms);
  return detail::chomp(std::move(out));
}
inline std::string release(std::string_view tag, std::string_view name, std::int64_t count = 1) {
  std::string out;
  protocol::encode_release(out, tag, name, count);
  return detail::chomp(std::move(out));
}
inline std::string post(std::string_view tag, std::string_view name, std::int64_t count = 1) {
  std::string out;
  protocol::encode_post(out, tag, name, count);
  return detail::chomp(std::move(out));
}
inline std::string cancel(std::string_view tag, std::string_view pending_tag) {
  std::string out;
  protocol::encode_cancel(out, tag, pending_tag);
  return detail::chomp(std::move(out));
}
// "CREATE name value [max] [EXCL]"; max defaults to value.
inline std::string create(std::string_view tag, std::string_view name, std::int64_t value,
                          std::optional<std::int64_t> max = std::nullopt, bool exclusive = false) {
  std::string out;
  protocol::encode_create(out, tag, name, value, max.value_or(value), exclusive);
  return detail::chomp(std::move(out));
}
inline std::string del(std::string_view tag, std::string_view name) {
  std::string out;
  protocol::encode_delete(out, tag, name);
  return detail::chomp(std::move(out));
}
inline std::string get(std::string_view tag, std::string_view name) {
  std::string out;
  protocol::encode_get(out, tag, name);
  return detail::chomp(std::move(out));
}
inline std::string list(std::string_view tag, std::optional<std::string_view> prefix = std::nullopt) {
  std::string out;
  protocol::encode_list(out, tag, prefix);
  return detail::chomp(std::move(out));
}
inline std::string stats(std::string_view tag) {
  std::string out;
  protocol::encode_stats(out, tag);
  return detail::chomp(std::move(out));
}
inline std::string ping(std::string_view tag, std::string_view payload = {}) {
  std::string out;
  protocol::encode_ping(out, tag, payload);
  return detail::chomp(std::move(out));
}
inline std::string quit(std::string_view tag) {
  std::string out;
  protocol::encode_quit(out, tag);
  return detail::chomp(std::move(out));
}
inline std::string option_queued(std::string_view tag, bool on) {
  std::string out;
  protocol::encode_option(out, tag, protocol::SessionOption::kQueued, on);
  return detail::chomp(std::move(out));
}
inline std::string holders(std::string_view tag, std::string_view name) {
  std::string out;
  protocol::encode_holders(out, tag, name);
  return detail::chomp(std::move(out));
}
inline std::string waiters(std::string_view tag, std::string_view name) {
  std::string out;
  protocol::encode_waiters(out, tag, name);
  return detail::chomp(std::move(out));
}
inline std::string sessions(std::string_view tag) {
  std::string out;
  protocol::encode_sessions(out, tag);
  return detail::chomp(std::move(out));
}
inline std::string kick(std::string_view tag, std::uint64_t session_id) {
  std::string out;
  protocol::encode_kick(out, tag, session_id);
  return detail::chomp(std::move(out));
}
inline std::string resume(std::string_view tag, std::uint64_t session_id, std::string_view secret) {
  std::string out;
  protocol::encode_resume(out, tag, session_id, secret);
  return detail::chomp(std::move(out));
}

}  // namespace netsem::testing::req
