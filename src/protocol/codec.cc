// The protocol v1 codec: the line framer, the request parser, the answer
// formatters the server uses, and the answer splitter the client uses. Names
// are decoded and checked by names.cc; what a request means is decided by
// the server. The steady state allocates nothing: the parser writes into a
// Request the session reuses, and the formatters only grow the output buffer.
#include "protocol/codec.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <cstring>
#include <limits>
#include <system_error>

#include "protocol/names.h"

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
  }
  return "";
}

bool parse_error_code(std::string_view text, ErrorCode& code) {
  for (auto c = static_cast<std::uint8_t>(ErrorCode::kBadRequest);
       c <= static_cast<std::uint8_t>(ErrorCode::kLineTooLong); ++c) {
    if (error_code_name(static_cast<ErrorCode>(c)) == text) {
      code = static_cast<ErrorCode>(c);
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// LineFramer

LineFramer::Status LineFramer::next(std::string_view& line) {
  const char* const begin = buffer_.data() + consumed_;
  const std::size_t pending = buffer_.size() - consumed_;
  // A line may hold kMaxLineBytes plus "\r\n"; looking further for the "\n"
  // is pointless, so a peer streaming megabytes without one costs one window.
  const std::size_t window = std::min(pending, kMaxLineBytes + 2);
  const char* const from = begin + scanned_;
  const std::size_t unscanned = window > scanned_ ? window - scanned_ : 0;
  const auto* newline = static_cast<const char*>(std::memchr(from, '\n', unscanned));
  const std::size_t searched = newline != nullptr ? static_cast<std::size_t>(newline - from) : unscanned;
  if (std::memchr(from, '\0', searched) != nullptr) return Status::kNul;

  if (newline == nullptr) {
    scanned_ = window;
    // The last byte may be the "\r" of a "\r\n" that completes a line of
    // exactly kMaxLineBytes, so it only counts once the next byte is known.
    if (pending > kMaxLineBytes + 1 || (pending == kMaxLineBytes + 1 && begin[kMaxLineBytes] != '\r')) {
      return Status::kLineTooLong;
    }
    return Status::kNeedMore;
  }

  std::size_t length = static_cast<std::size_t>(newline - begin);
  const std::size_t next_line = consumed_ + length + 1;
  if (length > 0 && begin[length - 1] == '\r') --length;
  if (length > kMaxLineBytes) return Status::kLineTooLong;
  line = std::string_view(begin, length);
  consumed_ = next_line;
  scanned_ = 0;
  return Status::kLine;
}

LineFramer::Status LineFramer::next_from(std::string_view& input, std::string_view& line) {
  if (pending_bytes() == 0) {
    compact();
    const std::size_t window = std::min(input.size(), kMaxLineBytes + 2);
    const auto* newline = static_cast<const char*>(std::memchr(input.data(), '\n', window));
    if (newline != nullptr) {
      const auto length = static_cast<std::size_t>(newline - input.data());
      if (std::memchr(input.data(), '\0', length) != nullptr) return Status::kNul;
      line = input.substr(0, length);
      input.remove_prefix(length + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      return line.size() > kMaxLineBytes ? Status::kLineTooLong : Status::kLine;
    }
  }
  // A line that spans reads is gathered here, up to its "\n" only, so the
  // lines after it are again taken straight from `input`.
  const auto* newline = static_cast<const char*>(std::memchr(input.data(), '\n', input.size()));
  const std::size_t take = newline != nullptr ? static_cast<std::size_t>(newline - input.data()) + 1 : input.size();
  buffer_.append(input.data(), take);
  input.remove_prefix(take);
  return next(line);
}

void LineFramer::compact() {
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
  } else if (consumed_ > 0) {
    buffer_.erase(0, consumed_);
  }
  consumed_ = 0;
}

// ---------------------------------------------------------------------------
// Requests

namespace {

constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();

struct VerbInfo {
  std::string_view word;  // upper case
  Verb verb;
  std::uint8_t min_args;
  std::uint8_t max_args;
};

constexpr std::array<VerbInfo, 13> kVerbs = {{
    {"ACQUIRE", Verb::kAcquire, 1, 3},
    {"RELEASE", Verb::kRelease, 1, 2},
    {"WAIT", Verb::kWait, 1, 3},
    {"POST", Verb::kPost, 1, 2},
    {"PING", Verb::kPing, 0, 1},
    {"HELLO", Verb::kHello, 1, 2},
    {"CANCEL", Verb::kCancel, 1, 1},
    {"CREATE", Verb::kCreate, 2, 4},
    {"DELETE", Verb::kDelete, 1, 1},
    {"GET", Verb::kGet, 1, 1},
    {"LIST", Verb::kList, 0, 1},
    {"STATS", Verb::kStats, 0, 0},
    {"QUIT", Verb::kQuit, 0, 0},
}};

// The most arguments any verb takes; one more slot tells "too many".
constexpr std::size_t kMaxArgs = 4;

bool equals_upper(std::string_view text, std::string_view upper) {
  if (text.size() != upper.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != upper[i]) return false;
  }
  return true;
}

const VerbInfo* find_verb(std::string_view word) {
  for (const VerbInfo& info : kVerbs) {
    if (equals_upper(word, info.word)) return &info;
  }
  return nullptr;
}

ParseStatus fail(ParseError& error, ErrorCode code, std::string_view message) {
  error.code = code;
  error.message.assign(message);
  return ParseStatus::kError;
}

void reset(Request& request) {
  request.tag = {};
  request.verb = Verb::kPing;
  request.name.clear();
  request.has_name = false;
  request.count = 1;
  request.timeout_ms = -1;
  request.value = 0;
  request.max = 0;
  request.exclusive = false;
  request.version = 0;
  request.text = {};
  request.has_text = false;
  request.pending_tag = {};
}

// The messages are fixed texts, never echoes of the request: a field may hold
// any byte, and an answer must stay one clean line.
constexpr std::string_view kBadCount = "count must be 1..2147483647";
constexpr std::string_view kBadTimeout = "timeout_ms must be -1 or 0..9223372036854775807";

ParseStatus parse_name(std::string_view field, Request& request, ParseError& error) {
  if (decode_name(field, request.name) != ErrorCode::kNone) {
    return fail(error, ErrorCode::kBadName,
                "a name is 1-255 bytes of UTF-8 without control characters, not starting with $, "
                "and % must be followed by two hex digits");
  }
  request.has_name = true;
  return ParseStatus::kRequest;
}

ParseStatus parse_create(const std::string_view* args, std::size_t n, Request& request, ParseError& error) {
  if (!parse_int(args[1], 0, kMaxCount, request.value)) {
    return fail(error, ErrorCode::kBadArg, "value must be 0..2147483647");
  }
  request.max = request.value;
  std::size_t next = 2;
  if (n > next && equals_upper(args[next], "EXCL")) {
    // EXCL in the max position: max defaults to value, and EXCL is the last field.
    if (n > next + 1) return fail(error, ErrorCode::kBadRequest, "nothing may follow EXCL");
    request.exclusive = true;
  } else if (n > next) {
    if (!parse_int(args[next], 0, kMaxCount, request.max)) {
      return fail(error, ErrorCode::kBadArg, "max must be 1..2147483647");
    }
    ++next;
    if (n > next) {
      if (!equals_upper(args[next], "EXCL")) return fail(error, ErrorCode::kBadArg, "expected EXCL");
      request.exclusive = true;
    }
  }
  if (request.max < 1) return fail(error, ErrorCode::kBadArg, "max must be at least 1");
  if (request.max < request.value) return fail(error, ErrorCode::kBadArg, "max must be at least value");
  return ParseStatus::kRequest;
}

ParseStatus parse_arguments(const std::string_view* args, std::size_t n, Request& request, ParseError& error) {
  switch (request.verb) {
    case Verb::kHello:
      if (!parse_int(args[0], 0, kMaxInt64, request.version)) {
        return fail(error, ErrorCode::kBadArg, "version must be a number");
      }
      if (request.version != kProtocolVersion) return fail(error, ErrorCode::kBadArg, "unsupported version");
      if (n > 1) {
        request.text = args[1];
        request.has_text = true;
      }
      return ParseStatus::kRequest;
    case Verb::kAcquire:
    case Verb::kWait:
      if (parse_name(args[0], request, error) != ParseStatus::kRequest) return ParseStatus::kError;
      if (n > 1 && !parse_int(args[1], 1, kMaxCount, request.count)) return fail(error, ErrorCode::kBadArg, kBadCount);
      if (n > 2 && !parse_int(args[2], -1, kMaxInt64, request.timeout_ms)) {
        return fail(error, ErrorCode::kBadArg, kBadTimeout);
      }
      return ParseStatus::kRequest;
    case Verb::kRelease:
    case Verb::kPost:
      if (parse_name(args[0], request, error) != ParseStatus::kRequest) return ParseStatus::kError;
      if (n > 1 && !parse_int(args[1], 1, kMaxCount, request.count)) return fail(error, ErrorCode::kBadArg, kBadCount);
      return ParseStatus::kRequest;
    case Verb::kCancel:
      if (!is_valid_tag(args[0])) return fail(error, ErrorCode::kBadArg, "the pending tag is not a valid tag");
      request.pending_tag = args[0];
      return ParseStatus::kRequest;
    case Verb::kCreate:
      if (parse_name(args[0], request, error) != ParseStatus::kRequest) return ParseStatus::kError;
      return parse_create(args, n, request, error);
    case Verb::kDelete:
    case Verb::kGet:
      return parse_name(args[0], request, error);
    case Verb::kList:
      return n > 0 ? parse_name(args[0], request, error) : ParseStatus::kRequest;
    case Verb::kPing:
      if (n > 0) {
        request.text = args[0];
        request.has_text = true;
      }
      return ParseStatus::kRequest;
    case Verb::kStats:
    case Verb::kQuit:
      return ParseStatus::kRequest;
  }
  return fail(error, ErrorCode::kUnknownVerb, "unknown verb");
}

}  // namespace

bool is_valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagBytes) return false;
  for (const char c : tag) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool parse_int(std::string_view text, std::int64_t min, std::int64_t max, std::int64_t& out) {
  if (text.empty()) return false;
  if (text.front() == '-' && min >= 0) return false;
  std::int64_t value = 0;
  const char* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return false;
  // A sign belongs to a negative value: "-0" (or "-000") is not a way to
  // write 0, so that a try is never sent by accident.
  if (text.front() == '-' && value == 0) return false;
  if (value < min || value > max) return false;
  out = value;
  return true;
}

ParseStatus parse_request(std::string_view line, Request& request, ParseError& error) {
  reset(request);
  error.code = ErrorCode::kNone;
  error.tag = {};
  error.message.clear();
  if (line.empty()) return ParseStatus::kEmpty;

  const std::size_t tag_end = line.find(' ');
  const std::string_view tag = line.substr(0, tag_end);
  if (!is_valid_tag(tag)) return fail(error, ErrorCode::kBadRequest, "a line must start with a valid tag");
  error.tag = tag;
  request.tag = tag;
  if (tag_end == std::string_view::npos) return fail(error, ErrorCode::kBadRequest, "missing verb");

  // fields[0] is the verb, then the arguments; the last slot only tells that
  // there are more than any verb takes.
  std::array<std::string_view, kMaxArgs + 2> fields;
  std::size_t count = 0;
  std::string_view rest = line.substr(tag_end + 1);
  while (true) {
    const std::size_t space = rest.find(' ');
    const std::string_view field = rest.substr(0, space);
    if (field.empty()) return fail(error, ErrorCode::kBadRequest, "empty field (fields are separated by one space)");
    if (count < fields.size()) fields[count] = field;
    ++count;
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
  }

  const VerbInfo* info = find_verb(fields[0]);
  if (info == nullptr) return fail(error, ErrorCode::kUnknownVerb, "unknown verb");
  request.verb = info->verb;
  const std::size_t args = count - 1;
  if (args < info->min_args) return fail(error, ErrorCode::kBadRequest, "missing argument");
  if (args > info->max_args) return fail(error, ErrorCode::kBadRequest, "too many arguments");
  return parse_arguments(fields.data() + 1, args, request, error);
}

// ---------------------------------------------------------------------------
// Answers, server side

namespace {

void append_tag(std::string& out, std::string_view tag) {
  if (tag.empty()) {
    out.push_back('*');
  } else {
    out.append(tag);
  }
}

void append_number(std::string& out, std::uint64_t n) {
  char digits[std::numeric_limits<std::uint64_t>::digits10 + 1];
  const auto result = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, result.ptr);
}

void append_number(std::string& out, std::int64_t n) {
  char digits[std::numeric_limits<std::int64_t>::digits10 + 2];
  const auto result = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, result.ptr);
}

void append_word_line(std::string& out, std::string_view tag, std::string_view word) {
  append_tag(out, tag);
  out.push_back(' ');
  out.append(word);
  out.push_back('\n');
}

void append_number_line(std::string& out, std::string_view tag, std::string_view word, std::uint64_t n) {
  append_tag(out, tag);
  out.push_back(' ');
  out.append(word);
  out.push_back(' ');
  append_number(out, n);
  out.push_back('\n');
}

void append_counts(std::string& out, const SemaphoreView& view) {
  out.push_back(' ');
  append_number(out, view.value);
  out.push_back(' ');
  append_number(out, view.max);
  out.push_back(' ');
  append_number(out, view.holders);
  out.push_back(' ');
  append_number(out, view.waiters);
  out.push_back(' ');
  out.append(view.kind);
  out.push_back('\n');
}

}  // namespace

void append_ok(std::string& out, std::string_view tag) {
  append_word_line(out, tag, "OK");
}

void append_ok_number(std::string& out, std::string_view tag, std::uint64_t n) {
  append_number_line(out, tag, "OK", n);
}

void append_ok_text(std::string& out, std::string_view tag, std::string_view text) {
  append_tag(out, tag);
  out.append(" OK");
  if (!text.empty()) {
    out.push_back(' ');
    out.append(text);
  }
  out.push_back('\n');
}

void append_queued(std::string& out, std::string_view tag, std::uint64_t position) {
  append_number_line(out, tag, "QUEUED", position);
}

void append_timeout(std::string& out, std::string_view tag) {
  append_word_line(out, tag, "TIMEOUT");
}

void append_cancelled(std::string& out, std::string_view tag) {
  append_word_line(out, tag, "CANCELLED");
}

void append_pong(std::string& out, std::string_view tag, std::string_view payload, bool has_payload) {
  append_tag(out, tag);
  out.append(" PONG");
  // An empty payload cannot be sent (it would be an empty field), so writing
  // none keeps the answer free of a trailing space.
  if (has_payload && !payload.empty()) {
    out.push_back(' ');
    out.append(payload);
  }
  out.push_back('\n');
}

void append_error(std::string& out, std::string_view tag, ErrorCode code, std::string_view message) {
  assert(code != ErrorCode::kNone);
  append_tag(out, tag);
  out.append(" ERR ");
  out.append(error_code_name(code));
  if (!message.empty()) {
    out.push_back(' ');
    // A message is for humans; a control byte in it must not end or split
    // the line.
    for (const char c : message) {
      const auto byte = static_cast<unsigned char>(c);
      out.push_back(byte < 0x20 || byte == 0x7f ? '?' : c);
    }
  }
  out.push_back('\n');
}

void append_get(std::string& out, std::string_view tag, const SemaphoreView& view) {
  append_tag(out, tag);
  out.append(" OK");
  append_counts(out, view);
}

void append_item(std::string& out, std::string_view tag, const SemaphoreView& view) {
  append_tag(out, tag);
  out.append(" ITEM ");
  append_encoded_name(out, view.name);
  append_counts(out, view);
}

void append_end(std::string& out, std::string_view tag, std::uint64_t count) {
  append_number_line(out, tag, "END", count);
}

// ---------------------------------------------------------------------------
// Answers, client side

bool parse_answer(std::string_view line, Answer& answer) {
  answer = Answer{};
  const std::size_t tag_end = line.find(' ');
  if (tag_end == std::string_view::npos) return false;
  answer.tag = line.substr(0, tag_end);
  if (answer.tag != "*" && !is_valid_tag(answer.tag)) return false;

  std::string_view word = line.substr(tag_end + 1);
  const std::size_t word_end = word.find(' ');
  if (word_end != std::string_view::npos) {
    answer.rest = word.substr(word_end + 1);
    word = word.substr(0, word_end);
    if (answer.rest.empty()) return false;  // a trailing space: not something the server writes
  }

  std::int64_t number = 0;
  const bool rest_is_number = parse_int(answer.rest, 0, kMaxInt64, number);
  if (word == "OK") {
    answer.type = AnswerType::kOk;
  } else if (word == "QUEUED") {
    answer.type = AnswerType::kQueued;
    if (!rest_is_number) return false;
  } else if (word == "TIMEOUT") {
    answer.type = AnswerType::kTimeout;
    if (!answer.rest.empty()) return false;
  } else if (word == "CANCELLED") {
    answer.type = AnswerType::kCancelled;
    if (!answer.rest.empty()) return false;
  } else if (word == "ITEM") {
    answer.type = AnswerType::kItem;
    if (answer.rest.empty()) return false;
  } else if (word == "END") {
    answer.type = AnswerType::kEnd;
    if (!rest_is_number) return false;
  } else if (word == "PONG") {
    answer.type = AnswerType::kPong;
  } else if (word == "ERR") {
    answer.type = AnswerType::kError;
    const std::size_t code_end = answer.rest.find(' ');
    const std::string_view code = answer.rest.substr(0, code_end);
    if (code.empty()) return false;
    if (code_end != std::string_view::npos) answer.message = answer.rest.substr(code_end + 1);
    // A code this client does not know (a newer server) is still an error:
    // `error` stays kNone and `rest` keeps the code as sent.
    ErrorCode parsed = ErrorCode::kNone;
    if (parse_error_code(code, parsed)) answer.error = parsed;
  } else {
    return false;
  }
  return true;
}

}  // namespace netsem::protocol
