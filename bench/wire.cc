// The netsem and floor wires (see wire.h), and make_wire (Redis's wire is in
// redis_wire.cc). Both send the same request lines; they differ in how
// replies are matched to requests: netsem by the answer's tag (one letter
// per kind of request), the floor by order.
#include "wire.h"

#include <cassert>
#include <deque>

#include "floor_server.h"
#include "protocol/codec.h"
#include "redis_wire.h"

namespace netsem::bench {

namespace {

// Takes one line (without "\n" or "\r") off `input`; false when none is whole.
bool take_line(std::string_view& input, std::string_view& line) {
  const auto newline = input.find('\n');
  if (newline == std::string_view::npos) return false;
  line = input.substr(0, newline);
  input.remove_prefix(newline + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return true;
}

class NetsemWire final : public Wire {
 public:
  explicit NetsemWire(const WireSettings& settings) : queued_off_(settings.queued_off), consume_(settings.consume) {}

  void open(std::string& out) override {
    if (queued_off_) protocol::encode_option(out, "o", protocol::SessionOption::kQueued, false);
  }
  void acquire(std::string& out, std::string_view name) override {
    if (consume_) return protocol::encode_wait(out, "a", name);
    protocol::encode_acquire(out, "a", name);
  }
  void release(std::string& out, std::string_view name) override {
    if (consume_) return protocol::encode_post(out, "r", name);
    protocol::encode_release(out, "r", name);
  }
  void create(std::string& out, std::string_view name, std::int64_t limit) override {
    protocol::encode_create(out, "c", name, limit, limit);
  }
  void remove(std::string& out, std::string_view name) override { protocol::encode_delete(out, "d", name); }

  std::optional<Reply> next(std::string_view& input, std::string&) override {
    std::string_view line;
    protocol::Answer answer;
    for (;;) {
      if (!take_line(input, line)) return std::nullopt;
      if (!protocol::parse_answer(line, answer) || answer.tag.size() != 1) return error(line);
      if (answer.tag != "o") break;
      // The answer to open()'s OPTION: the scenario never sees it.
      if (answer.type != protocol::AnswerType::kOk) {
        std::string what = "OPTION queued off: ";
        what.append(line);
        return error(what);
      }
    }
    if (answer.type == protocol::AnswerType::kQueued && answer.tag == "a") return Reply::kQueued;
    if (answer.type != protocol::AnswerType::kOk) return error(line);
    switch (answer.tag[0]) {
      case 'a':
        return Reply::kGranted;
      case 'r':
        return Reply::kReleased;
      case 'c':
      case 'd':
        return Reply::kDone;
      default:
        return error(line);
    }
  }

 private:
  Reply error(std::string_view line) {
    last_error_.assign(line);
    return Reply::kError;
  }

  bool queued_off_;
  bool consume_;
};

class FloorWire final : public Wire {
 public:
  // The very lines NetsemWire sends.
  void acquire(std::string& out, std::string_view name) override {
    protocol::encode_acquire(out, "a", name);
    expected_.push_back(Reply::kGranted);
  }
  void release(std::string& out, std::string_view name) override {
    protocol::encode_release(out, "r", name);
    expected_.push_back(Reply::kReleased);
  }
  void create(std::string& out, std::string_view name, std::int64_t limit) override {
    protocol::encode_create(out, "c", name, limit, limit);
    expected_.push_back(Reply::kDone);
  }
  void remove(std::string& out, std::string_view name) override {
    protocol::encode_delete(out, "d", name);
    expected_.push_back(Reply::kDone);
  }

  std::optional<Reply> next(std::string_view& input, std::string&) override {
    std::string_view line;
    if (!take_line(input, line)) return std::nullopt;
    if (expected_.empty() || line.size() + 1 != kFloorReply.size()) {
      last_error_ = "unexpected floor reply: ";
      last_error_.append(line);
      return Reply::kError;
    }
    const Reply reply = expected_.front();
    expected_.pop_front();
    return reply;
  }

 private:
  std::deque<Reply> expected_;
};

}  // namespace

std::optional<Target> parse_target(std::string_view text) {
  if (text == "netsem") return Target::kNetsem;
  if (text == "floor") return Target::kFloor;
  if (text == "redis") return Target::kRedis;
  return std::nullopt;
}

std::string_view target_name(Target target) {
  switch (target) {
    case Target::kNetsem:
      return "netsem";
    case Target::kFloor:
      return "floor";
    case Target::kRedis:
      return "redis";
  }
  return "?";
}

std::unique_ptr<Wire> make_wire(Target target, const WireSettings& settings) {
  switch (target) {
    case Target::kNetsem:
      return std::make_unique<NetsemWire>(settings);
    case Target::kFloor:
      return std::make_unique<FloorWire>();
    case Target::kRedis:
      return make_redis_wire(settings);
  }
  assert(false && "unknown target");
  return nullptr;
}

}  // namespace netsem::bench
