// The answers (answers.h): the server's formatters, which only grow the
// output buffer, and the client's splitter and typed parsers, which point
// into the line or fill values the caller owns.
#include "protocol/answers.h"

#include <cassert>
#include <limits>

#include "protocol/names.h"
#include "protocol/requests.h"

namespace netsem::protocol {

namespace {

void append_tag(std::string& out, std::string_view tag) {
  if (tag.empty()) {
    out.push_back('*');
  } else {
    out.append(tag);
  }
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
  append_decimal(out, n);
  out.push_back('\n');
}

void append_counts(std::string& out, const SemaphoreView& view) {
  out.push_back(' ');
  append_decimal(out, view.value);
  out.push_back(' ');
  append_decimal(out, view.max);
  out.push_back(' ');
  append_decimal(out, view.holders);
  out.push_back(' ');
  append_decimal(out, view.waiters);
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

namespace {

// A label or peer field: encoded like a name, "-" for none. A label that is
// "-" itself goes as "%2D", so that it is not read as none.
void add_label(std::string& out, std::string_view label) {
  out.push_back(' ');
  if (label.empty()) {
    out.push_back('-');
  } else if (label == "-") {
    out.append("%2D");
  } else {
    append_encoded_name(out, label);
  }
}

void add_decimal(std::string& out, std::uint64_t n) {
  out.push_back(' ');
  append_decimal(out, n);
}

void add_decimal(std::string& out, std::int64_t n) {
  out.push_back(' ');
  append_decimal(out, n);
}

void begin_item(std::string& out, std::string_view tag, std::uint64_t session_id) {
  append_tag(out, tag);
  out.append(" ITEM");
  add_decimal(out, session_id);
}

}  // namespace

void append_holder_item(std::string& out, std::string_view tag, const HolderView& view) {
  begin_item(out, tag, view.session_id);
  add_decimal(out, view.count);
  add_decimal(out, view.fence);
  add_decimal(out, view.held_ms);
  add_label(out, view.label);
  out.push_back('\n');
}

void append_mine_held(std::string& out, std::string_view tag, std::string_view name, std::int64_t count,
                      std::uint64_t fence) {
  append_tag(out, tag);
  out.append(" ITEM held ");
  append_encoded_name(out, name);
  add_decimal(out, count);
  add_decimal(out, fence);
  out.push_back('\n');
}

void append_mine_queued(std::string& out, std::string_view tag, std::string_view queued_tag, std::string_view name,
                        std::int64_t count) {
  append_tag(out, tag);
  out.append(" ITEM queued ");
  out.append(queued_tag);
  out.push_back(' ');
  append_encoded_name(out, name);
  add_decimal(out, count);
  out.push_back('\n');
}

void append_waiter_item(std::string& out, std::string_view tag, const WaiterView& view) {
  begin_item(out, tag, view.session_id);
  add_decimal(out, view.count);
  add_decimal(out, view.waited_ms);
  add_decimal(out, view.timeout_ms_left);
  add_label(out, view.label);
  out.push_back('\n');
}

void append_session_item(std::string& out, std::string_view tag, const SessionView& view) {
  begin_item(out, tag, view.session_id);
  add_label(out, view.peer);
  out.push_back(' ');
  out.append(view.dialect);
  add_decimal(out, view.permits_held);
  add_decimal(out, view.pending);
  add_decimal(out, view.age_ms);
  add_decimal(out, view.idle_ms);
  add_label(out, view.label);
  out.push_back('\n');
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

  std::uint64_t number = 0;
  const bool rest_is_number = parse_uint(answer.rest, number);
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

// ---------------------------------------------------------------------------
// Typed answers, client side

namespace {

constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();

bool parse_count(std::string_view text, std::uint64_t& out) {
  return parse_uint(text, out);
}

bool parse_ms(std::string_view text, std::int64_t& out) {
  return parse_int(text, 0, kMaxInt64, out);
}

// A label or peer: decoded like a name; "-" is none.
bool parse_label(std::string_view field, std::string& out) {
  if (field == "-") {
    out.clear();
    return true;
  }
  return decode_name(field, out) == ErrorCode::kNone;
}

// "<value> <max> <holders> <waiters> <kind>".
bool parse_counts(const std::string_view* field, SemaphoreItem& item) {
  if (!parse_int(field[0], 0, kMaxInt64, item.value) || !parse_int(field[1], 0, kMaxInt64, item.max) ||
      !parse_count(field[2], item.holders) || !parse_count(field[3], item.waiters)) {
    return false;
  }
  item.kind.assign(field[4]);
  return true;
}

}  // namespace

bool parse_fence(std::string_view rest, std::uint64_t& fence) {
  return parse_uint(rest, fence);
}

bool parse_value(std::string_view rest, std::int64_t& value) {
  return parse_int(rest, 0, kMaxInt64, value);
}

bool parse_end(std::string_view rest, std::uint64_t& count) {
  return parse_uint(rest, count);
}

bool parse_hello(std::string_view rest, HelloAnswer& hello) {
  std::string_view field[3];
  if (!split_fields(rest, field, 3) || field[0] != "netsem") return false;
  HelloAnswer parsed;
  std::int64_t major = 0;
  std::int64_t minor = 0;
  const std::size_t dot = field[1].find('.');
  if (!parse_int(field[1].substr(0, dot), 0, 1000, major)) return false;
  if (dot != std::string_view::npos && !parse_int(field[1].substr(dot + 1), 0, 1000, minor)) return false;
  if (!parse_session_id(field[2], parsed.session_id)) return false;
  parsed.major = static_cast<int>(major);
  parsed.minor = static_cast<int>(minor);
  hello = parsed;
  return true;
}

bool parse_get(std::string_view rest, SemaphoreItem& item) {
  std::string_view field[5];
  return split_fields(rest, field, 5) && parse_counts(field, item);
}

bool parse_list_item(std::string_view rest, SemaphoreItem& item) {
  std::string_view field[6];
  if (!split_fields(rest, field, 6) || !parse_counts(field + 1, item)) return false;
  // A name this build refuses (one an older server stored before a rule
  // tightened) is kept as it came, so that one such name hides no other.
  item.name_decoded = decode_name(field[0], item.name) == ErrorCode::kNone;
  if (!item.name_decoded) item.name.assign(field[0]);
  return true;
}

bool parse_holder_item(std::string_view rest, HolderItem& item) {
  std::string_view field[5];
  return split_fields(rest, field, 5) && parse_session_id(field[0], item.session_id) &&
         parse_int(field[1], 1, kMaxCount, item.count) && parse_uint(field[2], item.fence) &&
         parse_ms(field[3], item.held_ms) && parse_label(field[4], item.label);
}

bool parse_waiter_item(std::string_view rest, WaiterItem& item) {
  std::string_view field[5];
  return split_fields(rest, field, 5) && parse_session_id(field[0], item.session_id) &&
         parse_int(field[1], 1, kMaxCount, item.count) && parse_ms(field[2], item.waited_ms) &&
         parse_int(field[3], -1, kMaxInt64, item.timeout_ms_left) && parse_label(field[4], item.label);
}

bool parse_session_item(std::string_view rest, SessionItem& item) {
  std::string_view field[8];
  if (!split_fields(rest, field, 8) || !parse_session_id(field[0], item.session_id) ||
      !parse_label(field[1], item.peer)) {
    return false;
  }
  item.dialect.assign(field[2]);
  return parse_ms(field[3], item.permits_held) && parse_ms(field[4], item.pending) && parse_ms(field[5], item.age_ms) &&
         parse_ms(field[6], item.idle_ms) && parse_label(field[7], item.label);
}

bool parse_mine_item(std::string_view rest, MineItem& item) {
  std::string_view field[4];
  if (!split_fields(rest, field, 4)) return false;
  if (field[0] == "held") {
    item.held = true;
    item.tag.clear();
    return decode_name(field[1], item.name) == ErrorCode::kNone && parse_int(field[2], 1, kMaxCount, item.count) &&
           parse_uint(field[3], item.fence);
  }
  if (field[0] == "queued" && is_valid_tag(field[1])) {
    item.held = false;
    item.tag.assign(field[1]);
    item.fence = 0;
    return decode_name(field[2], item.name) == ErrorCode::kNone && parse_int(field[3], 1, kMaxCount, item.count);
  }
  return false;
}

}  // namespace netsem::protocol
