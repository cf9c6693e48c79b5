// The answers of protocol v1 and 1.1, both ways: the append_* functions the
// server writes them with, parse_answer which splits any answer line on the
// client's side, and the typed parsers that read what a given request's
// answer carries (a fence, GET's counts, ITEM lines, HELLO's session id).
// STATS' JSON has its own reader (stats_json.h).
//
// API: the server appends whole lines ending in "\n" to a session's output
// buffer; growing it is the only allocation. A client frames lines
// (line_framer.h), splits each with parse_answer, routes it by its tag, and
// reads the final answer's `rest` with the parser of its request. Every
// appender has its parser and tests/protocol/answers_test.cc checks that they
// agree (append then parse gives back the values).
//
// Pure functions and plain values: safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/error_code.h"
#include "protocol/fields.h"

namespace netsem::protocol {

// --- Answers (server side). Each appends one whole line ending in "\n". ---
void append_ok(std::string& out, std::string_view tag);                              // "<tag> OK"
void append_ok_number(std::string& out, std::string_view tag, std::uint64_t n);      // "<tag> OK <n>" (fence, value)
void append_ok_text(std::string& out, std::string_view tag, std::string_view text);  // "<tag> OK <text>"
void append_queued(std::string& out, std::string_view tag, std::uint64_t position);
void append_timeout(std::string& out, std::string_view tag);
void append_cancelled(std::string& out, std::string_view tag);
void append_pong(std::string& out, std::string_view tag, std::string_view payload, bool has_payload);
// "<tag> ERR <CODE> <message>"; an empty tag writes "*".
void append_error(std::string& out, std::string_view tag, ErrorCode code, std::string_view message);
// "<tag> OK <value> <max> <holders> <waiters> <kind>" for GET, or
// "<tag> ITEM <encoded name> <value> <max> <holders> <waiters> <kind>" for LIST.
struct SemaphoreView {
  std::string_view name;
  std::int64_t value = 0;
  std::int64_t max = 0;
  std::uint64_t holders = 0;
  std::uint64_t waiters = 0;
  std::string_view kind;  // defined | created | undefined | absent
};
void append_get(std::string& out, std::string_view tag, const SemaphoreView& view);
void append_item(std::string& out, std::string_view tag, const SemaphoreView& view);
void append_end(std::string& out, std::string_view tag, std::uint64_t count);

// --- Answers (client side). ---
enum class AnswerType : std::uint8_t {
  kOk,
  kQueued,
  kTimeout,
  kCancelled,
  kError,
  kItem,
  kEnd,
  kPong,
};

// One answer line split into its parts; views point into the line. The
// typed parsers below read `rest` further, by what the request was.
struct Answer {
  std::string_view tag;  // "*" for a line the server sent on its own
  AnswerType type = AnswerType::kOk;
  std::string_view rest;               // everything after the answer word (may be empty)
  ErrorCode error = ErrorCode::kNone;  // kError: the code; kNone for a code this build does not know
  std::string_view message;            // kError: the human-readable part
};

// Splits an answer line; false when the line does not have the shape of an
// answer (the caller treats the connection as broken).
bool parse_answer(std::string_view line, Answer& answer);

// "<tag> ITEM <session-id> <count> <fence> <held_ms> <label>" (HOLDERS, 1.1).
// Labels, peers: encoded like names; an empty label is written "-" (and a
// label that is "-" as "%2D", so that the two stay apart).
struct HolderView {
  std::uint64_t session_id = 0;
  std::int64_t count = 0;
  std::uint64_t fence = 0;
  std::int64_t held_ms = 0;
  std::string_view label;
};
void append_holder_item(std::string& out, std::string_view tag, const HolderView& view);
// "<tag> ITEM <session-id> <count> <waited_ms> <timeout_ms_left> <label>"
// (WAITERS, 1.1); timeout_ms_left is -1 for a request that waits for ever.
struct WaiterView {
  std::uint64_t session_id = 0;
  std::int64_t count = 0;
  std::int64_t waited_ms = 0;
  std::int64_t timeout_ms_left = -1;
  std::string_view label;
};
void append_waiter_item(std::string& out, std::string_view tag, const WaiterView& view);
// "<tag> ITEM <session-id> <peer> <dialect> <permits_held> <pending> <age_ms>
// <idle_ms> <label>" (SESSIONS, 1.1).
struct SessionView {
  std::uint64_t session_id = 0;
  std::string_view peer;     // address:port, [v6]:port
  std::string_view dialect;  // v1 | v1+tls | ace
  std::int64_t permits_held = 0;
  std::int64_t pending = 0;
  std::int64_t age_ms = 0;
  std::int64_t idle_ms = 0;
  std::string_view label;
};
void append_session_item(std::string& out, std::string_view tag, const SessionView& view);
// MINE (proposed 1.2): "<tag> ITEM held <encoded name> <count> <fence>" and
// "<tag> ITEM queued <tag of the request> <encoded name> <count>".
void append_mine_held(std::string& out, std::string_view tag, std::string_view name, std::int64_t count,
                      std::uint64_t fence);
void append_mine_queued(std::string& out, std::string_view tag, std::string_view queued_tag, std::string_view name,
                        std::int64_t count);

// --- Typed answers (client side): what `Answer::rest` holds for each request.
// Each returns false when `rest` does not have the contract's shape; the
// caller reports a bad answer, never trusts half of one.

// ACQUIRE/WAIT's "OK <fence>".
bool parse_fence(std::string_view rest, std::uint64_t& fence);
// RELEASE/POST's "OK <value>".
bool parse_value(std::string_view rest, std::int64_t& value);
// END's "<count>".
bool parse_end(std::string_view rest, std::uint64_t& count);

// HELLO's "OK netsem <version> <session-id>": version "1" (1.0) or "1.1".
struct HelloAnswer {
  int major = 1;
  int minor = 0;
  std::uint64_t session_id = 0;
};
bool parse_hello(std::string_view rest, HelloAnswer& hello);

// GET's "OK <value> <max> <holders> <waiters> <kind>", and LIST's ITEM
// "<encoded name> <value> <max> <holders> <waiters> <kind>" (name decoded).
struct SemaphoreItem {
  std::string name;  // ITEM: decoded; as sent when it does not decode (name_decoded false)
  bool name_decoded = true;
  std::int64_t value = 0;
  std::int64_t max = 0;
  std::uint64_t holders = 0;
  std::uint64_t waiters = 0;
  std::string kind;
};
bool parse_get(std::string_view rest, SemaphoreItem& item);
bool parse_list_item(std::string_view rest, SemaphoreItem& item);

// The ITEM lines of the 1.1 listings; labels and peers are decoded, and a
// label sent as "-" (none) comes back empty.
struct HolderItem {
  std::uint64_t session_id = 0;
  std::int64_t count = 0;
  std::uint64_t fence = 0;
  std::int64_t held_ms = 0;
  std::string label;
};
bool parse_holder_item(std::string_view rest, HolderItem& item);
struct WaiterItem {
  std::uint64_t session_id = 0;
  std::int64_t count = 0;
  std::int64_t waited_ms = 0;
  std::int64_t timeout_ms_left = -1;
  std::string label;
};
bool parse_waiter_item(std::string_view rest, WaiterItem& item);
struct SessionItem {
  std::uint64_t session_id = 0;
  std::string peer;
  std::string dialect;
  std::int64_t permits_held = 0;
  std::int64_t pending = 0;
  std::int64_t age_ms = 0;
  std::int64_t idle_ms = 0;
  std::string label;
};
bool parse_session_item(std::string_view rest, SessionItem& item);
// A MINE ITEM (proposed 1.2): held (name, count, fence) or queued (tag,
// name, count); the name decoded.
struct MineItem {
  bool held = true;
  std::string tag;  // queued: the request's tag
  std::string name;
  std::int64_t count = 0;
  std::uint64_t fence = 0;  // held: of the latest grant
};
bool parse_mine_item(std::string_view rest, MineItem& item);

}  // namespace netsem::protocol
