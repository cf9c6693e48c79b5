// Driver (driver.h), part two: netsemd's instances (start until it answers,
// stop by SIGTERM or SIGKILL, notice one that exited on its own), the
// driver's control connection, and the created semaphores it alone changes,
// one request in flight at a time, so that their expected values stay
// exact except around a stop.
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <csignal>

#include "driver.h"
#include "protocol/requests.h"
#include "soak_names.h"

namespace netsem::soak {

namespace {

constexpr Nanos kMs = 1'000'000;
constexpr Nanos kSecond = 1000 * kMs;
// How long a SIGTERMed netsemd may take to exit: it promises to close every
// session within 3 s; the rest is slack for a loaded machine.
constexpr Nanos kCleanStopLimit = 10 * kSecond;
// A restarted netsemd that cannot listen (the port still held) exits at
// once; it is started again until this long has passed.
constexpr Nanos kStartPatience = 15 * kSecond;

}  // namespace

std::optional<std::int64_t> to_number(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A top-level integer field of STATS' JSON.
std::optional<std::int64_t> json_number(std::string_view json, std::string_view field) {
  const std::string key = "\"" + std::string(field) + "\":";
  const auto at = json.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  const auto digits = json.substr(at + key.size());
  return to_number(digits.substr(0, digits.find_first_not_of("0123456789")));
}

bool Driver::start_server() {
  const Nanos give_up = now() + kStartPatience;
  while (now() < give_up) {
    const std::uint32_t instance = instances_++;
    server_->log_line(fmt::format("--- netsem-soak: instance {} starting at {:.3f}s ---", instance, elapsed()));
    control_.close();
    record(EventType::kServerStart, instance);
    std::string error;
    if (!server_->start(error)) {
      std::fprintf(stderr, "netsem-soak: %s\n", error.c_str());
      return false;
    }
    const Nanos ready_by = now() + 10 * kSecond;
    while (now() < ready_by) {
      if (wait_server_exit(now())) {
        record(EventType::kServerExit, instance);
        ++counters_.failed_starts;
        note(fmt::format("netsemd instance {} exited at start; starting it again", instance));
        break;
      }
      if (control_.connect("127.0.0.1", options_.port, now() + 200 * kMs)) {
        const auto stats = request([](std::string& line, std::string_view tag) { protocol::encode_stats(line, tag); });
        const auto floor = stats ? json_number(*stats, "last_fence") : std::nullopt;
        if (floor) {
          const auto lease_wait = json_number(*stats, "lease_wait_ms").value_or(0);
          lease_wait_until_ = now() + (lease_wait + 1) * kMs;
          if (lease_wait > 0) note(fmt::format("netsemd instance {} grants nothing for {} ms", instance, lease_wait));
          record(EventType::kServerReady, instance, static_cast<std::uint64_t>(*floor));
          note(fmt::format("netsemd instance {} ready (pid {}, last_fence {})", instance, server_->pid(), *floor));
          return true;
        }
      }
      idle_until(now() + 10 * kMs);
    }
    if (server_->running()) {  // runs but never answered
      record(EventType::kServerStop, instance);
      server_->signal(SIGKILL);
      (void)wait_server_exit(now() + 5 * kSecond);
      record(EventType::kServerExit, instance);
      violation({Violation::Kind::kServer, now(), "", "netsemd did not answer STATS within 10 s of its start"});
      return false;
    }
    idle_until(now() + 100 * kMs);
  }
  return false;
}

void Driver::restart_server() {
  // SIGTERM first, then SIGKILL, so that even a short run sees both; then
  // either, at random.
  const int signal = next_stop_signal_ == 0   ? SIGTERM
                     : next_stop_signal_ == 1 ? SIGKILL
                                              : (std::bernoulli_distribution(0.5)(random_) ? SIGTERM : SIGKILL);
  ++next_stop_signal_;
  const std::uint32_t instance = instances_ - 1;
  // Half the time a created-semaphore operation is in flight as the server
  // goes: its answer may be lost, and the expectation must allow both.
  std::optional<PendingRequest> in_flight;
  if (std::bernoulli_distribution(0.5)(random_)) in_flight = send_created_op();
  record(EventType::kServerStop, instance);
  server_->signal(signal);
  if (in_flight) finish_created_op(*in_flight, await_answer(in_flight->tag, now() + kSecond));
  control_.close();
  auto status = wait_server_exit(now() + (signal == SIGTERM ? kCleanStopLimit : 5 * kSecond));
  if (!status) {
    violation({Violation::Kind::kServer, now(), "",
               fmt::format("netsemd (pid {}) still ran {} s after {}; killed", server_->pid(),
                           (signal == SIGTERM ? kCleanStopLimit : 5 * kSecond) / kSecond, ::strsignal(signal))});
    server_->signal(SIGKILL);
    status = wait_server_exit(now() + 5 * kSecond);
  }
  record(EventType::kServerExit, instance);
  if (signal == SIGTERM && status && !(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)) {
    violation({Violation::Kind::kServer, now(), "",
               "netsemd ended with " + describe_wait_status(*status) + " after SIGTERM, not exit 0\n" +
                   server_->log_tail(10)});
  }
  ++(signal == SIGTERM ? counters_.restarts_sigterm : counters_.restarts_sigkill);
  note(fmt::format("{} netsemd instance {}: {}", signal == SIGTERM ? "SIGTERM" : "SIGKILL", instance,
                   status ? describe_wait_status(*status) : "?"));
  if (!start_server()) {
    violation({Violation::Kind::kServer, now(), "", "netsemd could not be started again\n" + server_->log_tail(10)});
    server_down_ = true;
    return;
  }
  check_created();
}

void Driver::watch_server() {
  if (!server_->running()) return;
  const auto status = wait_server_exit(now());
  if (!status) return;
  const std::uint32_t instance = instances_ - 1;
  record(EventType::kServerExit, instance);
  violation({Violation::Kind::kServer, now(), "",
             fmt::format("netsemd instance {} exited on its own: {}\n{}", instance, describe_wait_status(*status),
                         server_->log_tail(15))});
  if (!start_server()) {
    server_down_ = true;
    return;
  }
  check_created();
}

void Driver::stop_server_at_end() {
  if (!server_->running()) return;
  record(EventType::kServerStop, instances_ - 1);
  server_->signal(SIGTERM);
  control_.close();
  auto status = wait_server_exit(now() + kCleanStopLimit);
  if (!status) {
    violation({Violation::Kind::kServer, now(), "", "netsemd still ran 10 s after the final SIGTERM"});
    server_->signal(SIGKILL);
    status = wait_server_exit(now() + 5 * kSecond);
  }
  record(EventType::kServerExit, instances_ - 1);
  if (status && !(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)) {
    violation({Violation::Kind::kServer, now(), "",
               "netsemd ended with " + describe_wait_status(*status) + " after the final SIGTERM, not exit 0"});
  }
}

std::optional<int> Driver::wait_server_exit(Nanos deadline) {
  for (;;) {
    if (auto status = server_->wait_exit(now())) return status;
    if (now() >= deadline) return std::nullopt;
    idle_until(now() + 2 * kMs);
  }
}

bool Driver::ensure_control() {
  if (control_.is_open()) return true;
  return server_->running() && control_.connect("127.0.0.1", options_.port, now() + kSecond);
}

std::optional<std::string> Driver::send_request(const Encoder& encode) {
  if (!ensure_control()) return std::nullopt;
  std::string tag = "d" + std::to_string(++control_tag_);
  std::string line;
  encode(line, tag);
  if (!control_.write(line, now() + 2 * kSecond)) return std::nullopt;
  return tag;
}

std::optional<std::string> Driver::await_answer(const std::string& tag, Nanos deadline) {
  std::string line;
  for (;;) {
    if (control_.read_line(line, deadline) != LineConnection::ReadStatus::kLine) {
      control_.close();  // a late answer must not be taken for the next request's
      return std::nullopt;
    }
    if (line.size() > tag.size() && line.compare(0, tag.size(), tag) == 0 && line[tag.size()] == ' ') {
      return line.substr(tag.size() + 1);
    }
    if (line.starts_with("* ")) {  // SHUTDOWN: the server is going
      control_.close();
      return std::nullopt;
    }
  }
}

std::optional<std::string> Driver::request(const Encoder& encode) {
  const auto tag = send_request(encode);
  if (!tag) return std::nullopt;
  return await_answer(*tag, now() + 2 * kSecond);
}

bool Driver::create_semaphores() {
  for (const CreatedName& name : created_names()) {
    const auto answer = request([&](std::string& line, std::string_view tag) {
      protocol::encode_create(line, tag, name.name, name.value, name.max, /*exclusive=*/true);
    });
    if (answer != "OK") {
      std::fprintf(stderr, "netsem-soak: CREATE %s answered '%s'\n", std::string(name.name).c_str(),
                   answer.value_or("nothing").c_str());
      return false;
    }
    created_.emplace_back(name.value, name.max);
  }
  return true;
}

std::optional<Driver::PendingRequest> Driver::send_created_op() {
  PendingRequest op;
  op.created = std::uniform_int_distribution<std::size_t>(0, created_.size() - 1)(random_);
  // In the lease wait after a restart a WAIT try is refused whatever the
  // value, which says nothing about it; POST is served as usual.
  op.post = now() < lease_wait_until_ || std::bernoulli_distribution(0.5)(random_);
  op.count = std::uniform_int_distribution<std::int64_t>(1, 3)(random_);
  const std::string_view name = created_names()[op.created].name;
  auto tag = send_request([&](std::string& line, std::string_view request_tag) {
    if (op.post) {
      protocol::encode_post(line, request_tag, name, op.count);
    } else {
      protocol::encode_wait(line, request_tag, name, op.count, /*timeout_ms=*/0);
    }
  });
  if (!tag) return std::nullopt;  // not sent: nothing changed
  op.tag = std::move(*tag);
  return op;
}

void Driver::finish_created_op(const PendingRequest& op, const std::optional<std::string>& answer) {
  using Outcome = CreatedExpectation::Outcome;
  const std::string name(created_names()[op.created].name);
  Outcome outcome = Outcome::kUnknown;
  std::optional<std::int64_t> observed;
  if (answer) {
    const auto fields = split_fields(*answer);
    if (fields[0] == "OK" && fields.size() == 2 && to_number(fields[1])) {
      outcome = Outcome::kDone;
      if (op.post) observed = to_number(fields[1]);  // POST answers the value after it
    } else if (op.post ? answer->starts_with("ERR OVERFLOW") : *answer == "TIMEOUT") {
      outcome = Outcome::kRefused;
    } else {
      violation({Violation::Kind::kCreatedValue, now(), name,
                 fmt::format("{} {} answered '{}'", op.post ? "POST" : "WAIT", op.count, *answer)});
    }
  }
  if (outcome == Outcome::kUnknown) ++counters_.created_unknown;
  ++counters_.created_ops;
  CreatedExpectation& expected = created_[op.created];
  const auto mismatch = op.post ? expected.post(op.count, outcome) : expected.try_wait(op.count, outcome);
  if (mismatch) violation({Violation::Kind::kCreatedValue, now(), name, *mismatch});
  if (observed) {
    if (auto wrong = expected.observe(*observed)) violation({Violation::Kind::kCreatedValue, now(), name, *wrong});
  }
}

void Driver::check_created() {
  for (std::size_t i = 0; i < created_.size(); ++i) {
    const std::string name(created_names()[i].name);
    const auto reading = get(name);
    if (!reading) continue;  // the server went away again; the next check sees it
    ++counters_.created_checks;
    if (reading->kind != "created" || reading->max != created_[i].max()) {
      violation({Violation::Kind::kCreatedValue, now(), name,
                 fmt::format("after a restart GET shows kind {} max {}, expected created with max {}", reading->kind,
                             reading->max, created_[i].max())});
      continue;
    }
    if (auto wrong = created_[i].observe(reading->value)) {
      violation({Violation::Kind::kCreatedValue, now(), name, "after a restart: " + *wrong});
    }
  }
}

std::optional<SemaphoreReading> Driver::get(const std::string& name) {
  const auto answer = request([&](std::string& line, std::string_view tag) { protocol::encode_get(line, tag, name); });
  if (!answer) return std::nullopt;
  const auto fields = split_fields(*answer);
  if (fields.size() != 6 || fields[0] != "OK") return std::nullopt;
  SemaphoreReading reading;
  const auto value = to_number(fields[1]);
  const auto max = to_number(fields[2]);
  const auto holders = to_number(fields[3]);
  const auto waiters = to_number(fields[4]);
  if (!value || !max || !holders || !waiters) return std::nullopt;
  reading = {*value, *max, *holders, *waiters, std::string(fields[5])};
  return reading;
}

}  // namespace netsem::soak
