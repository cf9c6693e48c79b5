// The library worker (worker.h): libnetsem's Client and Permit, as an
// application would use them. Fallback is `fail` for every name, so a call
// made while the server is down fails (kUnavailable) instead of granting a
// host-local permit the server never counted. Its drop is destroying the
// Client while a Permit is held: the connection closes and the server must
// release the permit.
#include <unistd.h>

#include <memory>
#include <string>

#include "netsem/client.h"
#include "netsem/log.h"
#include "soak_names.h"
#include "worker.h"

namespace netsem::soak {

namespace {

std::unique_ptr<Client> make_client(std::uint16_t port) {
  ClientOptions options;
  options.servers = {"127.0.0.1:" + std::to_string(port)};
  options.label = "netsem-soak";
  options.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kFail};
  options.connect_timeout = std::chrono::milliseconds(500);
  options.reconnect_min = std::chrono::milliseconds(10);
  options.reconnect_max = std::chrono::milliseconds(200);
  // The library ends a session whose request goes unanswered this long: a
  // close the soak would not see, so none must happen while a stalled server
  // is still up (a dead one is noticed at once by EOF on loopback). A
  // stalled worker is found at the next quiescent point and killed instead.
  options.request_timeout = std::chrono::hours(1);
  auto client = Client::create(std::move(options));
  if (!client) {
    std::fprintf(stderr, "netsem-soak: worker cannot create a client: %s\n", client.status().to_string().c_str());
    ::_exit(3);
  }
  return std::move(*client);
}

}  // namespace

void run_library_worker(WorkerLoop& loop) {
  // Losing the connection at every restart is the point here; the library's
  // warnings about it would drown the soak's own output.
  set_log_handler([](LogLevel, std::string_view) {});
  std::uint32_t number = 1;  // of the current Client, within this worker
  std::unique_ptr<Client> client = make_client(loop.plan().port);
  const auto report = [&](RecordType type, std::uint8_t name, std::int32_t count) {
    loop.report(Record{.time_ns = monotonic_ns(), .connection = number, .count = count, .type = type, .name = name});
  };
  for (;;) {
    if (loop.pause_if_asked()) continue;
    const WorkerLoop::Pick pick = loop.pick(/*allow_unbounded=*/false);
    const std::int64_t requested = monotonic_ns();
    Result<Permit> permit = client->acquire(
        worker_names()[pick.name].name, {.count = pick.count, .timeout = std::chrono::milliseconds(pick.timeout_ms)});
    if (!permit) {
      const StatusCode code = permit.status().code();
      if (code == StatusCode::kUnavailable || code == StatusCode::kShutdown) {
        ::usleep(10'000);  // the server is restarting
      } else if (code != StatusCode::kTimeout) {
        report(RecordType::kRefused, pick.name, pick.count);
        ::usleep(10'000);
      }
      continue;
    }
    loop.report(Record{.time_ns = monotonic_ns(),
                       .request_ns = requested,
                       .fence = permit->fence().value_or(0),  // 0: served locally (fallback)
                       .connection = number,
                       .count = pick.count,
                       .type = RecordType::kGrant,
                       .name = pick.name});
    if (permit->is_local()) report(RecordType::kRefused, pick.name, pick.count);  // fallback is `fail`
    ::usleep(static_cast<useconds_t>(loop.hold_ns() / 1000));
    if (loop.chance(loop.plan().drop_chance)) {
      report(RecordType::kDrop, pick.name, 0);
      client.reset();  // closes the connection with the permit held; the Permit is then lost
      *permit = Permit();
      ++number;
      client = make_client(loop.plan().port);
      continue;
    }
    if (permit->lost()) {
      report(RecordType::kLost, pick.name, pick.count);
      *permit = Permit();  // releases nothing: the server already did
      continue;
    }
    report(RecordType::kRelease, pick.name, pick.count);
    const Status released = permit->release();
    if (!released.is_ok() && released.code() != StatusCode::kUnavailable && released.code() != StatusCode::kIoError) {
      report(RecordType::kRefused, pick.name, pick.count);
    }
  }
}

}  // namespace netsem::soak
