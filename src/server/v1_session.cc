// Protocol v1 on a session: framing input into lines (LineFramer, straight
// from the shared read buffer), and one handler per verb, each a thin step
// from the parsed Request to the table and back to an answer line.
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "netsem/version.h"
#include "protocol/names.h"
#include "server/server.h"
#include "server/session.h"

namespace netsem::server {

using protocol::ErrorCode;
using protocol::Verb;

namespace {

std::string_view detail_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return "no such semaphore";
    case ErrorCode::kNotHeld:
      return "this session holds fewer permits than that";
    case ErrorCode::kOverflow:
      return "value would exceed max";
    case ErrorCode::kTooMany:
      return "count exceeds the semaphore's max";
    case ErrorCode::kExists:
      return "a semaphore of that name exists";
    case ErrorCode::kBusy:
      return "the semaphore is defined, held or waited on";
    case ErrorCode::kDuplicateTag:
      return "the tag names a request still pending";
    case ErrorCode::kLimit:
      return "a server limit was reached";
    default:
      return "request refused";
  }
}

}  // namespace

void Session::handle_v1(std::string_view data) {
  bool saw_request = false;
  std::string_view line;
  while (state_ == State::kOpen && !quit_ && !list_) {
    const auto framed = framer_.next_from(data, line);
    if (framed == protocol::LineFramer::Status::kNeedMore) break;
    if (framed == protocol::LineFramer::Status::kLineTooLong) {
      end_with_error(ErrorCode::kLineTooLong, "request line longer than 4096 bytes");
      break;
    }
    if (framed == protocol::LineFramer::Status::kNul) {
      end_with_error(ErrorCode::kBadRequest, "NUL byte in request line");
      break;
    }
    // An empty line is not activity: a stream of newlines must not keep a
    // dead client's permits.
    saw_request = handle_v1_line(line) || saw_request;
    // Checked per line: one read of `LIST` lines could otherwise produce
    // far more than the cap before the read is done.
    if (close_if_output_overflows()) return;
  }
  // Behind a LIST that streams, the rest waits until its END.
  if (list_ && state_ == State::kOpen) held_input_.append(data);
  // Only a complete request line is activity: bytes that never end one are
  // not.
  if (saw_request) last_activity_ = Clock::now();
}

bool Session::handle_v1_line(std::string_view line) {
  protocol::ParseError parse_error;
  const auto parsed = protocol::parse_request(line, request_, parse_error);
  if (parsed == protocol::ParseStatus::kEmpty) return false;
  ++server_.counters().requests;
  if (parsed == protocol::ParseStatus::kError) {
    protocol::append_error(out_, parse_error.tag, parse_error.code, parse_error.message);
    mark_dirty();
  } else {
    const std::size_t answer = out_.size();
    server_.begin_request();
    handle_v1_request();
    // Its answer is sent once the records it made are written.
    if (const std::uint64_t dependency = server_.answer_dependency()) hold_from(answer, dependency);
  }
  return true;
}

void Session::handle_v1_request() {
  auto& table = server_.table();
  const std::string_view tag = request_.tag;
  mark_dirty();
  // take() refuses a duplicate tag itself, on the grant path's one session
  // lookup; every other verb is checked here.
  const bool takes = request_.verb == Verb::kAcquire || request_.verb == Verb::kWait;
  if (!takes && table.pending_count(id_) != 0 && table.is_pending(id_, tag)) {
    answer_error(tag, ErrorCode::kDuplicateTag);
    return;
  }
  std::int64_t value = 0;
  switch (request_.verb) {
    case Verb::kAcquire:
      handle_take(TakeMode::kAcquire);
      return;
    case Verb::kWait:
      handle_take(TakeMode::kWait);
      return;
    case Verb::kRelease: {
      const auto error = table.release(id_, request_.name, request_.count, value, server_.completions());
      if (error != ErrorCode::kNone) return answer_error(tag, error);
      protocol::append_ok_number(out_, tag, static_cast<std::uint64_t>(value));
      server_.dispatch_completions();
      return;
    }
    case Verb::kPost: {
      const auto error = table.post(request_.name, request_.count, value, server_.completions());
      if (error != ErrorCode::kNone) return answer_error(tag, error);
      protocol::append_ok_number(out_, tag, static_cast<std::uint64_t>(value));
      server_.dispatch_completions();
      return;
    }
    case Verb::kCancel: {
      const auto error = table.cancel(id_, request_.pending_tag, server_.completions());
      if (error != ErrorCode::kNone) return answer_error(tag, error, "no pending request with that tag");
      protocol::append_ok(out_, tag);
      server_.dispatch_completions();
      return;
    }
    case Verb::kCreate: {
      const auto error = table.create(request_.name, request_.value, request_.max, request_.exclusive);
      if (error != ErrorCode::kNone) return answer_error(tag, error);
      protocol::append_ok(out_, tag);
      return;
    }
    case Verb::kDelete: {
      const auto error = table.remove(request_.name);
      if (error != ErrorCode::kNone) return answer_error(tag, error);
      protocol::append_ok(out_, tag);
      return;
    }
    case Verb::kGet: {
      const SemaphoreInfo info = table.get(request_.name);
      protocol::append_get(out_, tag,
                           {info.name, info.value, info.max, info.holders, info.waiters, kind_name(info.kind)});
      return;
    }
    case Verb::kList:
      start_list(tag);
      return;
    case Verb::kStats:
      append_stats(tag);
      return;
    case Verb::kPing:
      protocol::append_pong(out_, tag, request_.text, request_.has_text);
      return;
    case Verb::kHello: {
      if (request_.has_text) label_.assign(request_.text);
      std::string text = "netsem " + std::to_string(protocol::kProtocolVersion) + " " + std::to_string(id_);
      protocol::append_ok_text(out_, tag, text);
      if (!label_.empty()) spdlog::debug("session {} ({}) is {}", id_, peer_, escape_for_log(label_));
      return;
    }
    case Verb::kQuit:
      protocol::append_ok(out_, tag);
      quit_ = true;
      end("QUIT");
      return;
    case Verb::kOption:
    case Verb::kHolders:
    case Verb::kWaiters:
    case Verb::kSessions:
    case Verb::kKick:
      // Protocol 1.1, parsed by the codec but not served yet: answered as a
      // 1.0 server answers a verb it does not know.
      protocol::append_error(out_, tag, ErrorCode::kUnknownVerb, "unknown verb");
      return;
  }
}

void Session::handle_take(TakeMode mode) {
  TakeRequest take;
  take.session = id_;
  take.tag = request_.tag;
  take.name = request_.name;
  take.mode = mode;
  take.count = request_.count;
  take.timeout_ms = request_.timeout_ms;
  take.now = Clock::now();
  const TakeResult result = server_.table().take(take, server_.completions());
  switch (result.type) {
    case TakeResult::Type::kGranted:
      protocol::append_ok_number(out_, take.tag, result.fence);
      break;
    case TakeResult::Type::kQueued:
      protocol::append_queued(out_, take.tag, result.position);
      break;
    case TakeResult::Type::kTimedOut:
      protocol::append_timeout(out_, take.tag);
      break;
    case TakeResult::Type::kError:
      answer_error(take.tag, result.error, result.no_fence ? kNoFenceDetail : std::string_view());
      break;
  }
  server_.dispatch_completions();
}

void Session::start_list(std::string_view tag) {
  list_.emplace();
  list_->tag.assign(tag);
  if (request_.has_name) list_->prefix.assign(request_.name);
  produce_list();               // a short LIST is done here, and the batch goes on
  if (list_) arm_idle_timer();  // the stall limit applies even without a session timeout
}

bool Session::produce_list() {
  if (!list_ || out_.size() - out_sent_ >= kStreamLowWater) return false;
  ListStream& list = *list_;
  const std::size_t stop_at = out_.size() + kStreamLowWater;
  bool more = false;
  std::string_view last;
  // Each line shows its semaphore as it is when the line is made; the cursor
  // is the last name, so names come in byte order, each at most once, even
  // as the table changes between chunks.
  server_.table().list_after(list.prefix, list.last, [&](const SemaphoreInfo& info) {
    if (out_.size() >= stop_at) {
      more = true;
      return false;
    }
    protocol::append_item(out_, list.tag,
                          {info.name, info.value, info.max, info.holders, info.waiters, kind_name(info.kind)});
    ++list.count;
    last = info.name;
    return true;
  });
  if (!last.empty()) list.last.assign(last);
  if (!more) {
    protocol::append_end(out_, list.tag, list.count);
    list_.reset();
  }
  return true;
}

void Session::answer_error(std::string_view tag, ErrorCode code, std::string_view detail) {
  if (detail.empty()) detail = detail_for(code);
  std::string message(detail);
  const Verb verb = request_.verb;
  const bool names_semaphore = verb == Verb::kAcquire || verb == Verb::kWait || verb == Verb::kRelease ||
                               verb == Verb::kPost || verb == Verb::kCreate || verb == Verb::kDelete;
  if (names_semaphore && code != ErrorCode::kDuplicateTag && code != ErrorCode::kLimit) {
    message += ": ";
    protocol::append_encoded_name(message, request_.name);
  }
  protocol::append_error(out_, tag, code, message);
}

void Session::append_stats(std::string_view tag) {
  const TableStats stats = server_.table().stats();
  const auto& counters = server_.counters();
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - server_.started()).count();
  std::string json = "{\"sessions\":" + std::to_string(stats.sessions) +
                     ",\"semaphores\":" + std::to_string(stats.semaphores) + ",\"held\":" + std::to_string(stats.held) +
                     ",\"waiters\":" + std::to_string(stats.waiters) + ",\"grants\":" + std::to_string(stats.grants) +
                     ",\"requests\":" + std::to_string(counters.requests) + ",\"uptime_s\":" + std::to_string(uptime) +
                     ",\"last_fence\":" + std::to_string(stats.last_fence) +
                     ",\"session_timeout_ms\":" + std::to_string(server_.config().session_timeout_ms) +
                     ",\"connections_total\":" + std::to_string(counters.connections_total) +
                     ",\"denied_total\":" + std::to_string(counters.denied_total) +
                     ",\"output_bytes\":" + std::to_string(counters.output_bytes) +
                     ",\"shed_total\":" + std::to_string(counters.shed_total) +
                     ",\"journal_ok\":" + (server_.journal_ok() ? "1" : "0") +
                     ",\"journal_pending_records\":" + std::to_string(server_.journal_pending_records()) +
                     ",\"version\":\"" + kVersion + "\"}";
  protocol::append_ok_text(out_, tag, json);
}

}  // namespace netsem::server
