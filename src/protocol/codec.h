// The protocol v1 codec: bytes to requests and answers to bytes, with no I/O.
//
// API: a session feeds what it read to a LineFramer, which hands out complete
// lines (or says the input is bad and the session must close). Each line goes
// to parse_request, which fills a Request the session reuses for every line,
// so the steady state allocates nothing. Answers are appended to the session's
// output buffer by the append_* functions, which write whole lines ending in
// "\n". Clients use the same file the other way round: format requests,
// parse answers (parse_answer).
//
// Pure functions and plain values: safe from any thread, one object per user.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/error_code.h"

namespace netsem::protocol {

inline constexpr std::size_t kMaxLineBytes = 4096;
inline constexpr std::size_t kMaxTagBytes = 32;
inline constexpr std::int64_t kMaxCount = 2147483647;  // 2^31 - 1
inline constexpr int kProtocolVersion = 1;

// Splits a byte stream into lines ended by "\n" (a "\r" before it dropped).
// The caller appends what it read to `buffer()`, then calls next() until it
// returns kNeedMore, then compact().
class LineFramer {
 public:
  enum class Status : std::uint8_t {
    kLine,         // `line` holds one line without its terminator
    kNeedMore,     // no complete line buffered
    kLineTooLong,  // more than kMaxLineBytes before a "\n": close the session
                   // (reported once the bytes buffered show it, without the "\n";
                   // a line of exactly kMaxLineBytes may still end in "\r\n")
    kNul,          // a NUL byte in a line: close the session (reported on sight)
  };

  // The buffer to append read bytes to.
  std::string& buffer() { return buffer_; }
  // REQUIRES: the previous line returned by next() is no longer used.
  Status next(std::string_view& line);
  // The same framing straight from a read buffer the caller owns: a line
  // wholly inside `input` is returned as a view into it, copying nothing;
  // only a line that spans reads is gathered in the framer. Consumes from
  // `input` what it returns (and, on kNeedMore, all of it). Do not mix with
  // buffer()/next() on the same framer.
  // REQUIRES: the previous line returned is no longer used.
  Status next_from(std::string_view& input, std::string_view& line);
  // Drops the lines consumed so far; call after next() returned kNeedMore.
  void compact();
  // Bytes buffered but not yet returned as lines.
  std::size_t pending_bytes() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  std::size_t consumed_ = 0;
  std::size_t scanned_ = 0;  // bytes after consumed_ known to hold no "\n"
};

enum class Verb : std::uint8_t {
  kHello,
  kAcquire,
  kWait,
  kRelease,
  kPost,
  kCancel,
  kCreate,
  kDelete,
  kGet,
  kList,
  kStats,
  kPing,
  kQuit,
};

// One parsed request. Views point into the line passed to parse_request (and
// are valid while it is); `name` is decoded into storage the object owns.
struct Request {
  std::string_view tag;
  Verb verb = Verb::kPing;
  std::string name;              // decoded: ACQUIRE WAIT RELEASE POST CREATE DELETE GET, LIST prefix
  bool has_name = false;         // LIST: whether a prefix was given
  std::int64_t count = 1;        // ACQUIRE WAIT RELEASE POST
  std::int64_t timeout_ms = -1;  // ACQUIRE WAIT: -1 forever, 0 try
  std::int64_t value = 0;        // CREATE
  std::int64_t max = 0;          // CREATE (defaults to value)
  bool exclusive = false;        // CREATE ... EXCL
  std::int64_t version = 0;      // HELLO
  std::string_view text;         // PING payload, HELLO label (raw bytes, may be empty)
  bool has_text = false;         // whether PING/HELLO carried the optional field
  std::string_view pending_tag;  // CANCEL
};

// Why a line was refused. `tag` is empty when the line had no valid tag: the
// answer then starts with `*`.
struct ParseError {
  ErrorCode code = ErrorCode::kNone;
  std::string_view tag;
  std::string message;
};

enum class ParseStatus : std::uint8_t { kRequest, kEmpty, kError };

// Parses one line (without terminator). kEmpty for an empty line (ignored by
// the server); kError fills `error` following the contract: missing required
// field or extra field or empty field -> BAD_REQUEST; unknown verb ->
// UNKNOWN_VERB; a number that does not parse or is out of range -> BAD_ARG;
// a bad name -> BAD_NAME; an invalid tag -> BAD_REQUEST with an empty tag.
// Numbers are plain decimal ASCII (an optional leading '-' only where -1 is
// allowed, and never on zero: "-0" is BAD_ARG); no '+', no spaces; leading
// zeros are accepted ("007", "-01").
ParseStatus parse_request(std::string_view line, Request& request, ParseError& error);

// True when `tag` is 1-32 characters of [A-Za-z0-9_.:-].
bool is_valid_tag(std::string_view tag);

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

// One answer line split into its parts; views point into the line.
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

// Parses an unsigned or signed decimal number in [min, max]; false otherwise.
// A '-' is refused when min >= 0, and before a zero value ("-0", "-00").
bool parse_int(std::string_view text, std::int64_t min, std::int64_t max, std::int64_t& out);

}  // namespace netsem::protocol
