// libFuzzer target for the protocol codec: random bytes go through the line
// framer (in chunks of a size the input picks), every line through
// parse_request, the request encoders, the answer formatters, parse_answer
// and the typed answer parsers (STATS' JSON included), and the same bytes
// through detect_dialect and the ACE token parser. Each step checks what the
// contract promises, so a crash here is a broken rule, not just a bad read.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/ace_codec.h"
#include "protocol/codec.h"
#include "protocol/names.h"

namespace {

using namespace netsem::protocol;

// assert() vanishes under NDEBUG (RelWithDebInfo); these checks must not.
#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (false)

bool is_control(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte < 0x20 || byte == 0x7f;
}

// A valid name survives both encodings and decodes to itself.
void check_name_round_trips(std::string_view name) {
  FUZZ_CHECK(check_name(name) == ErrorCode::kNone);
  std::string field;
  append_encoded_name(field, name);
  FUZZ_CHECK(field.find(' ') == std::string::npos);
  std::string decoded;
  FUZZ_CHECK(decode_name(field, decoded) == ErrorCode::kNone);
  FUZZ_CHECK(decoded == name);
  const std::string request_field = encode_name_for_request(name);
  for (const char c : request_field) FUZZ_CHECK(c != ' ' && !is_control(c));
  FUZZ_CHECK(decode_name(request_field, decoded) == ErrorCode::kNone);
  FUZZ_CHECK(decoded == name);
}

// Formats `text` as one answer line, strips its "\n" and reads it back.
Answer read_back(const std::string& out, std::string& line_storage) {
  FUZZ_CHECK(!out.empty() && out.back() == '\n');
  FUZZ_CHECK(out.find('\n') == out.size() - 1);
  line_storage.assign(out, 0, out.size() - 1);
  Answer answer;
  FUZZ_CHECK(parse_answer(line_storage, answer));
  return answer;
}

void check_answer(const std::string& out, std::string_view tag, AnswerType type) {
  std::string line;
  const Answer answer = read_back(out, line);
  FUZZ_CHECK(answer.type == type);
  FUZZ_CHECK(answer.tag == (tag.empty() ? std::string_view("*") : tag));
}

// Encodes a parsed request's values with the encoders clients use and checks
// that the line parses to the same request.
void check_request_round_trips(const Request& request) {
  std::string line;
  const std::string_view tag = request.tag;
  switch (request.verb) {
    case Verb::kAcquire:
      encode_acquire(line, tag, request.name, request.count, request.timeout_ms);
      break;
    case Verb::kWait:
      encode_wait(line, tag, request.name, request.count, request.timeout_ms);
      break;
    case Verb::kRelease:
      encode_release(line, tag, request.name, request.count);
      break;
    case Verb::kPost:
      encode_post(line, tag, request.name, request.count);
      break;
    case Verb::kCreate:
      encode_create(line, tag, request.name, request.value, request.max, request.exclusive);
      break;
    case Verb::kDelete:
      encode_delete(line, tag, request.name);
      break;
    case Verb::kGet:
      encode_get(line, tag, request.name);
      break;
    case Verb::kList:
      encode_list(line, tag, request.has_name ? std::optional<std::string_view>(request.name) : std::nullopt);
      break;
    case Verb::kCancel:
      encode_cancel(line, tag, request.pending_tag);
      break;
    case Verb::kHello: {
      // The label travels encoded (1.1 reads it as a name; a 1.0 server
      // keeps it as sent): a label that is a name comes back decoded.
      std::string label;
      if (request.has_text && decode_name(request.text, label) != ErrorCode::kNone) return;
      encode_hello(line, tag, label);
      line.pop_back();
      Request again;
      ParseError error;
      FUZZ_CHECK(parse_request(line, again, error) == ParseStatus::kRequest);
      FUZZ_CHECK(again.verb == Verb::kHello && again.has_text == request.has_text);
      std::string label_again;
      if (again.has_text) FUZZ_CHECK(decode_name(again.text, label_again) == ErrorCode::kNone);
      FUZZ_CHECK(label_again == label);
      return;
    }
    case Verb::kPing:
      if (!is_valid_ping_payload(request.text)) return;  // e.g. a trailing "\r" or over 4000 bytes
      encode_ping(line, tag, request.text);
      break;
    case Verb::kStats:
      encode_stats(line, tag);
      break;
    case Verb::kQuit:
      encode_quit(line, tag);
      break;
    case Verb::kOption:
      encode_option(line, tag, request.option, request.option_on);
      break;
    case Verb::kHolders:
      encode_holders(line, tag, request.name);
      break;
    case Verb::kWaiters:
      encode_waiters(line, tag, request.name);
      break;
    case Verb::kSessions:
      encode_sessions(line, tag);
      break;
    case Verb::kLease:
      encode_lease(line, tag);
      break;
    case Verb::kResumable:
      encode_resumable(line, tag);
      break;
    case Verb::kMine:
      encode_mine(line, tag);
      break;
    case Verb::kLeader:
      encode_leader(line, tag);
      break;
    case Verb::kResume: {
      std::uint64_t id = 0;
      FUZZ_CHECK(parse_session_id(request.session_id, id));
      if (request.session_id.front() == '0') return;  // leading zeros are not written back
      encode_resume(line, tag, id, request.secret);
      break;
    }
    case Verb::kAuth:
      encode_auth(line, tag, request.text);
      break;
    case Verb::kKick: {
      std::uint64_t id = 0;
      if (!parse_session_id(request.session_id, id)) return;
      if (request.session_id.front() == '0') return;  // leading zeros are not written back
      encode_kick(line, tag, id);
      break;
    }
    case Verb::kCluster:
      if (request.cluster_action == ClusterAction::kStatus) {
        encode_cluster_status(line, tag);
      } else if (request.cluster_action == ClusterAction::kAdd) {
        encode_cluster_add(line, tag, request.member_id, request.raft_address, request.client_address);
      } else if (request.cluster_action == ClusterAction::kFences) {
        encode_cluster_fences(line, tag, request.fences_by);
      } else {
        encode_cluster_remove(line, tag, request.member_id);
      }
      break;
  }
  FUZZ_CHECK(!line.empty() && line.back() == '\n' && line.find('\n') == line.size() - 1);
  line.pop_back();
  Request again;
  ParseError error;
  FUZZ_CHECK(parse_request(line, again, error) == ParseStatus::kRequest);
  FUZZ_CHECK(again.tag == request.tag);
  FUZZ_CHECK(again.verb == request.verb);
  FUZZ_CHECK(again.name == request.name);
  FUZZ_CHECK(again.has_name == request.has_name);
  FUZZ_CHECK(again.count == request.count);
  FUZZ_CHECK(again.timeout_ms == request.timeout_ms);
  FUZZ_CHECK(again.value == request.value);
  FUZZ_CHECK(again.max == request.max);
  FUZZ_CHECK(again.exclusive == request.exclusive);
  FUZZ_CHECK(again.version == request.version);
  FUZZ_CHECK(again.text == request.text);
  FUZZ_CHECK(again.has_text == request.has_text);
  FUZZ_CHECK(again.pending_tag == request.pending_tag);
  FUZZ_CHECK(again.option == request.option);
  FUZZ_CHECK(again.option_on == request.option_on);
  FUZZ_CHECK(again.cluster_action == request.cluster_action);
  FUZZ_CHECK(again.member_id == request.member_id);
  FUZZ_CHECK(again.fences_by == request.fences_by);
  FUZZ_CHECK(again.raft_address == request.raft_address);
  FUZZ_CHECK(again.client_address == request.client_address);
  FUZZ_CHECK(again.session_id == request.session_id);
}

void check_request(std::string_view line, const Request& request) {
  FUZZ_CHECK(is_valid_tag(request.tag));
  FUZZ_CHECK(request.count >= 1 && request.count <= kMaxCount);
  FUZZ_CHECK(request.timeout_ms >= -1);
  if (request.has_name) check_name_round_trips(request.name);
  if (request.verb == Verb::kCreate) {
    FUZZ_CHECK(request.max >= 1 && request.max <= kMaxCount);
    FUZZ_CHECK(request.value >= 0 && request.value <= request.max);
  }
  if (request.verb == Verb::kHello) FUZZ_CHECK(request.version == kProtocolVersion);
  if (request.verb == Verb::kCancel) FUZZ_CHECK(is_valid_tag(request.pending_tag));
  if (request.has_text) {
    FUZZ_CHECK(!request.text.empty() && request.text.find(' ') == std::string_view::npos);
    // Raw: a view into the line, not a copy or a decoding.
    FUZZ_CHECK(request.text.data() >= line.data() &&
               request.text.data() + request.text.size() <= line.data() + line.size());
  }
  check_request_round_trips(request);

  std::string out;
  append_ok(out, request.tag);
  check_answer(out, request.tag, AnswerType::kOk);
  out.clear();
  append_ok_number(out, request.tag, static_cast<std::uint64_t>(request.timeout_ms));
  check_answer(out, request.tag, AnswerType::kOk);
  out.clear();
  append_queued(out, request.tag, static_cast<std::uint64_t>(request.count));
  check_answer(out, request.tag, AnswerType::kQueued);
  out.clear();
  append_timeout(out, request.tag);
  check_answer(out, request.tag, AnswerType::kTimeout);
  out.clear();
  append_cancelled(out, request.tag);
  check_answer(out, request.tag, AnswerType::kCancelled);
  out.clear();
  append_pong(out, request.tag, request.text, request.has_text);
  {
    std::string answer_line;
    const Answer answer = read_back(out, answer_line);
    FUZZ_CHECK(answer.type == AnswerType::kPong);
    FUZZ_CHECK(answer.rest == request.text);  // echoed byte for byte
  }
  if (request.has_name) {
    const SemaphoreView view{request.name, request.value, request.max, static_cast<std::uint64_t>(request.count), 7,
                             "created"};
    out.clear();
    append_get(out, request.tag, view);
    check_answer(out, request.tag, AnswerType::kOk);
    out.clear();
    append_item(out, request.tag, view);
    std::string answer_line;
    const Answer answer = read_back(out, answer_line);
    FUZZ_CHECK(answer.type == AnswerType::kItem);
    const std::string_view field = answer.rest.substr(0, answer.rest.find(' '));
    std::string decoded;
    FUZZ_CHECK(decode_name(field, decoded) == ErrorCode::kNone);
    FUZZ_CHECK(decoded == request.name);
  }
}

void check_parse_error(const ParseError& error) {
  FUZZ_CHECK(error.code != ErrorCode::kNone);
  FUZZ_CHECK(!error.message.empty());
  FUZZ_CHECK(error.tag.empty() || is_valid_tag(error.tag));
  std::string out;
  append_error(out, error.tag, error.code, error.message);
  std::string line;
  const Answer answer = read_back(out, line);
  FUZZ_CHECK(answer.type == AnswerType::kError);
  FUZZ_CHECK(answer.error == error.code);
  FUZZ_CHECK(answer.tag == (error.tag.empty() ? std::string_view("*") : error.tag));
}

// Whatever a typed parser accepts, the server's formatter writes back to a
// line that parses to the same values.
void check_typed_answers(std::string_view rest) {
  const std::string_view tag = "t";
  std::string out;
  std::string line;
  SemaphoreItem item;
  if (parse_get(rest, item)) {
    append_get(out, tag, {"", item.value, item.max, item.holders, item.waiters, item.kind});
    SemaphoreItem again;
    FUZZ_CHECK(parse_get(read_back(out, line).rest, again));
    FUZZ_CHECK(again.value == item.value && again.max == item.max && again.holders == item.holders &&
               again.waiters == item.waiters && again.kind == item.kind);
  }
  if (parse_list_item(rest, item) && item.name_decoded && check_name(item.name) == ErrorCode::kNone) {
    out.clear();
    append_item(out, tag, {item.name, item.value, item.max, item.holders, item.waiters, item.kind});
    SemaphoreItem again;
    FUZZ_CHECK(parse_list_item(read_back(out, line).rest, again));
    FUZZ_CHECK(again.name == item.name && again.value == item.value && again.kind == item.kind);
  }
  HolderItem holder;
  if (parse_holder_item(rest, holder)) {
    out.clear();
    append_holder_item(out, tag, {holder.session_id, holder.count, holder.fence, holder.held_ms, holder.label});
    HolderItem again;
    FUZZ_CHECK(parse_holder_item(read_back(out, line).rest, again));
    FUZZ_CHECK(again.session_id == holder.session_id && again.count == holder.count && again.fence == holder.fence &&
               again.held_ms == holder.held_ms && again.label == holder.label);
  }
  WaiterItem waiter;
  if (parse_waiter_item(rest, waiter)) {
    out.clear();
    append_waiter_item(out, tag,
                       {waiter.session_id, waiter.count, waiter.waited_ms, waiter.timeout_ms_left, waiter.label});
    WaiterItem again;
    FUZZ_CHECK(parse_waiter_item(read_back(out, line).rest, again));
    FUZZ_CHECK(again.session_id == waiter.session_id && again.timeout_ms_left == waiter.timeout_ms_left &&
               again.label == waiter.label);
  }
  SessionItem session;
  if (parse_session_item(rest, session) && !session.dialect.empty()) {
    out.clear();
    append_session_item(out, tag,
                        {session.session_id, session.peer, session.dialect, session.permits_held, session.pending,
                         session.age_ms, session.idle_ms, session.label});
    SessionItem again;
    FUZZ_CHECK(parse_session_item(read_back(out, line).rest, again));
    FUZZ_CHECK(again.session_id == session.session_id && again.peer == session.peer &&
               again.dialect == session.dialect && again.idle_ms == session.idle_ms && again.label == session.label);
  }
  HelloAnswer hello;
  if (parse_hello(rest, hello)) FUZZ_CHECK(hello.session_id != 0);
  std::vector<StatsField> fields;
  if (parse_stats(rest, fields)) {
    for (const StatsField& field : fields) {
      FUZZ_CHECK(field.value.data() >= rest.data() &&
                 field.value.data() + field.value.size() <= rest.data() + rest.size());
      std::vector<StatsField> inner;
      // A member's text is itself valid JSON: an object member parses alone.
      if (field.type == JsonType::kObject) FUZZ_CHECK(parse_stats(field.value, inner));
    }
  }
}

// Whatever parse_answer accepts has the parts it promises.
void check_any_answer(std::string_view line) {
  Answer answer;
  if (!parse_answer(line, answer)) return;
  FUZZ_CHECK(answer.tag == "*" || is_valid_tag(answer.tag));
  FUZZ_CHECK(line.substr(0, answer.tag.size()) == answer.tag);
  FUZZ_CHECK(answer.rest.empty() || line.ends_with(answer.rest));
  if (answer.type == AnswerType::kError) {
    FUZZ_CHECK(!answer.rest.empty());
    FUZZ_CHECK(answer.rest.ends_with(answer.message));
  } else {
    FUZZ_CHECK(answer.error == ErrorCode::kNone && answer.message.empty());
  }
  check_typed_answers(answer.rest);
}

void fuzz_lines(std::string_view data, std::size_t chunk) {
  LineFramer framer;
  std::size_t fed = 0;
  std::size_t offset = 0;  // where in `data` the next line starts
  Request request;
  while (fed < data.size()) {
    const std::size_t n = std::min(chunk, data.size() - fed);
    framer.buffer().append(data.substr(fed, n));
    fed += n;
    while (true) {
      std::string_view line;
      const LineFramer::Status status = framer.next(line);
      if (status == LineFramer::Status::kNeedMore) {
        FUZZ_CHECK(framer.pending_bytes() == fed - offset);
        FUZZ_CHECK(framer.pending_bytes() <= kMaxLineBytes + 1);
        framer.compact();
        break;
      }
      if (status != LineFramer::Status::kLine) {
        const std::string_view rest = data.substr(offset, fed - offset);
        const std::size_t newline = rest.find('\n');
        const std::string_view upto = rest.substr(0, newline);
        if (status == LineFramer::Status::kNul) {
          FUZZ_CHECK(upto.find('\0') != std::string_view::npos);
        } else {
          FUZZ_CHECK(upto.size() > kMaxLineBytes);
        }
        return;  // the session closes
      }
      FUZZ_CHECK(line.size() <= kMaxLineBytes);
      FUZZ_CHECK(line.find('\n') == std::string_view::npos);
      FUZZ_CHECK(line.find('\0') == std::string_view::npos);
      // The line is exactly the next bytes of the input, then "\n" or "\r\n".
      FUZZ_CHECK(data.substr(offset, line.size()) == line);
      std::size_t end = offset + line.size();
      if (data[end] == '\r') ++end;
      FUZZ_CHECK(data[end] == '\n');
      offset = end + 1;

      ParseError error;
      switch (parse_request(line, request, error)) {
        case ParseStatus::kEmpty:
          FUZZ_CHECK(line.empty());
          break;
        case ParseStatus::kRequest:
          check_request(line, request);
          break;
        case ParseStatus::kError:
          check_parse_error(error);
          break;
      }
      check_any_answer(line);
      std::string decoded;
      if (decode_name(line, decoded) == ErrorCode::kNone) check_name_round_trips(decoded);
      std::int64_t number = 0;
      if (parse_int(line, INT64_MIN, INT64_MAX, number)) {
        std::int64_t again = 0;
        FUZZ_CHECK(parse_int(std::to_string(number), INT64_MIN, INT64_MAX, again) && again == number);
      }
    }
  }
}

void fuzz_ace(std::string_view data, std::size_t chunk) {
  const Dialect dialect = detect_dialect(data);
  FUZZ_CHECK((dialect == Dialect::kAce) == data.starts_with(kAcePrefix));
  FUZZ_CHECK((dialect == Dialect::kUndecided) == (data.size() < kAcePrefix.size() && kAcePrefix.starts_with(data)));

  AceParser parser;
  std::size_t fed = 0;
  while (fed < data.size()) {
    const std::size_t n = std::min(chunk, data.size() - fed);
    parser.buffer().append(data.substr(fed, n));
    fed += n;
    while (true) {
      const AceParser::Token token = parser.next();
      if (token == AceParser::Token::kNeedMore) {
        // Only a partial token stays buffered, and never one past the limit.
        FUZZ_CHECK(parser.buffer().size() < kAcePrefix.size() + kMaxNameBytes + 1);
        FUZZ_CHECK(parser.buffer().find('|') == std::string::npos);
        break;
      }
      if (token == AceParser::Token::kBad) {
        parser.buffer().append("wait|");
        FUZZ_CHECK(parser.next() == AceParser::Token::kBad);
        return;
      }
      if (token == AceParser::Token::kAcquire) {
        const std::string_view name = parser.name();
        FUZZ_CHECK(!name.empty() && name.size() <= kMaxNameBytes);
        FUZZ_CHECK(name.front() != '$');
        for (const char c : name) FUZZ_CHECK(c >= 0x20 && c <= 0x7e && c != '|');
        // An ACE name is a valid netsem name, so v1 clients can reach it.
        check_name_round_trips(name);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the read size, so that splits at every position get
  // tried; 0 means everything at once.
  const std::size_t chunk = bytes[0] == 0 ? size : bytes[0];
  const std::string_view data(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  fuzz_lines(data, chunk);
  fuzz_ace(data, chunk);
  return 0;
}
