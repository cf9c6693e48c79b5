// The raw worker (worker.h): protocol v1 over its own LineConnection, one
// request at a time. Each cycle may drop the connection on purpose, at a
// random moment while waiting in the queue, while holding, or right after
// RELEASE went out: the server must give the permits back, or drop the
// queued request, whatever the moment.
#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <string>

#include "line_connection.h"
#include "protocol/requests.h"
#include "soak_names.h"
#include "worker.h"

namespace netsem::soak {

namespace {

constexpr std::int64_t kMs = 1'000'000;
// A request the server does not answer in this long (it is stalled, or its
// answer was lost) is given up by dropping the connection.
constexpr std::int64_t kAnswerPatience = 10'000 * kMs;

enum class DropAt { kNever, kWaiting, kHolding, kAfterRelease };

class RawWorker {
 public:
  explicit RawWorker(WorkerLoop& loop) : loop_(loop) {}

  [[noreturn]] void run() {
    for (;;) {
      if (loop_.pause_if_asked()) continue;
      if (!connection_.is_open() && !connect()) {
        ::usleep(20'000);
        continue;
      }
      cycle();
    }
  }

 private:
  bool connect() {
    ++number_;
    tag_ = 0;
    report(RecordType::kConnect, 0, 1, monotonic_ns());
    return connection_.connect("127.0.0.1", loop_.plan().port, monotonic_ns() + 500 * kMs);
  }

  void cycle() {
    const WorkerLoop::Pick pick = loop_.pick(/*allow_unbounded=*/true);
    DropAt drop_at = DropAt::kNever;
    if (loop_.chance(loop_.plan().drop_chance)) drop_at = static_cast<DropAt>(1 + loop_.uniform_ns(2));
    const std::string_view name = worker_names()[pick.name].name;

    const std::string tag = "a" + std::to_string(++tag_);
    const std::int64_t requested = monotonic_ns();
    std::string line;
    protocol::encode_acquire(line, tag, name, pick.count, pick.timeout_ms);
    if (!connection_.write(line, requested + kAnswerPatience)) {
      report(RecordType::kLost, pick.name, pick.count, monotonic_ns());
      return;
    }
    const std::int64_t drop_waiting = drop_at == DropAt::kWaiting ? requested + loop_.uniform_ns(100 * kMs) : -1;
    std::uint64_t fence = 0;
    if (!await_grant(tag, pick, drop_waiting, fence)) return;
    Record grant{.time_ns = monotonic_ns(),
                 .request_ns = requested,
                 .fence = fence,
                 .connection = number_,
                 .count = pick.count,
                 .type = RecordType::kGrant,
                 .name = pick.name};
    loop_.report(grant);

    const std::int64_t hold = loop_.hold_ns();
    if (drop_at == DropAt::kHolding) {
      ::usleep(static_cast<useconds_t>(loop_.uniform_ns(hold) / 1000));
      drop(pick.name);
      return;
    }
    ::usleep(static_cast<useconds_t>(hold / 1000));
    if (connection_.peer_closed()) {  // the server went away while we held
      report(RecordType::kLost, pick.name, pick.count, monotonic_ns());
      connection_.close();
      return;
    }
    const std::string release_tag = "r" + std::to_string(++tag_);
    const std::int64_t releasing = monotonic_ns();
    report(RecordType::kRelease, pick.name, pick.count, releasing);
    std::string release;
    protocol::encode_release(release, release_tag, name, pick.count);
    if (!connection_.write(release, releasing + kAnswerPatience) || !await_release(release_tag, pick)) {
      return;
    }
    if (drop_at == DropAt::kAfterRelease) drop(pick.name);
  }

  // Reads until the final answer to `tag`; true with `fence` on a grant.
  // Drops the connection at `drop_waiting` (if set and still waiting), or
  // when the driver asks for a pause while the request waits without a
  // deadline.
  bool await_grant(const std::string& tag, const WorkerLoop::Pick& pick, std::int64_t drop_waiting,
                   std::uint64_t& fence) {
    const std::int64_t give_up = monotonic_ns() + kAnswerPatience + pick.timeout_ms * kMs;
    std::string line;
    for (;;) {
      std::int64_t deadline = monotonic_ns() + 20 * kMs;
      if (drop_waiting >= 0) deadline = std::min(deadline, drop_waiting);
      switch (connection_.read_line(line, deadline)) {
        case LineConnection::ReadStatus::kClosed:
          report(RecordType::kLost, pick.name, pick.count, monotonic_ns());
          return false;
        case LineConnection::ReadStatus::kTimeout: {
          const std::int64_t now = monotonic_ns();
          if ((drop_waiting >= 0 && now >= drop_waiting) || (pick.timeout_ms < 0 && loop_.pause_asked()) ||
              (pick.timeout_ms >= 0 && now >= give_up)) {
            drop(pick.name);
            return false;
          }
          continue;
        }
        case LineConnection::ReadStatus::kLine:
          break;
      }
      const auto fields = split_fields(line);
      if (fields[0] != tag || fields.size() < 2) continue;  // `* ERR SHUTDOWN`: the end follows
      if (fields[1] == "QUEUED") continue;
      if (fields[1] == "TIMEOUT") return false;
      if (fields[1] == "OK" && fields.size() == 3 &&
          std::from_chars(fields[2].data(), fields[2].data() + fields[2].size(), fence).ec == std::errc()) {
        return true;
      }
      report(RecordType::kRefused, pick.name, pick.count, monotonic_ns());
      return false;
    }
  }

  bool await_release(const std::string& tag, const WorkerLoop::Pick& pick) {
    const std::int64_t give_up = monotonic_ns() + kAnswerPatience;
    std::string line;
    for (;;) {
      switch (connection_.read_line(line, give_up)) {
        case LineConnection::ReadStatus::kClosed:
          report(RecordType::kLost, pick.name, pick.count, monotonic_ns());
          return false;
        case LineConnection::ReadStatus::kTimeout:
          drop(pick.name);
          return false;
        case LineConnection::ReadStatus::kLine:
          break;
      }
      const auto fields = split_fields(line);
      if (fields[0] != tag || fields.size() < 2) continue;
      if (fields[1] == "OK") return true;
      report(RecordType::kRefused, pick.name, pick.count, monotonic_ns());  // NOT_HELD: a lost hold
      return true;
    }
  }

  void drop(std::uint8_t name) {
    report(RecordType::kDrop, name, 0, monotonic_ns());
    connection_.drop();
  }

  void report(RecordType type, std::uint8_t name, std::int32_t count, std::int64_t time) {
    loop_.report(Record{.time_ns = time, .connection = number_, .count = count, .type = type, .name = name});
  }

  WorkerLoop& loop_;
  LineConnection connection_;
  std::uint32_t number_ = 0;  // of the current connection, within this worker
  std::uint64_t tag_ = 0;
};

}  // namespace

void run_raw_worker(WorkerLoop& loop) {
  RawWorker(loop).run();
}

}  // namespace netsem::soak
