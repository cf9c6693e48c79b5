// The lease worker (worker.h): libnetsem's Client on the name kLeaseName
// alone, through a TcpProxy of its own (tests/client/tcp_proxy.h) that it
// freezes now and then while it holds, and with fallback `local`, so that
// items 3 and 5 of issue 10 are put to the test together:
//
// - Frozen network: the proxy stops passing bytes without closing anything.
//   The client's lease lapses (half the session timeout without an answer)
//   and the permit is lost with a stop-by time; the worker works on until
//   then, as `netsem run` would, and only then reports its drop. netsemd
//   ends the frozen session T after the last request it read and grants the
//   name again, to the other lease worker.
// - Server kill during a grace: when the driver kills netsemd while the
//   worker holds, the permit is lost at once; the worker works on for a
//   grace before giving it up. Meanwhile the other lease worker falls back
//   (or the restarted server grants it), and must wait for the grace to end.
//
// The driver checks these holds with check_host_holds: from the grant to the
// release or drop the worker reports once its work has stopped, whatever the
// server did meanwhile.
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include "netsem/client.h"
#include "netsem/log.h"
#include "soak_names.h"
#include "tcp_proxy.h"
#include "worker.h"

namespace netsem::soak {

namespace {

std::uint8_t lease_name_index() {
  const auto& names = worker_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i].name == kLeaseName) return static_cast<std::uint8_t>(i);
  }
  return 0;
}

std::unique_ptr<Client> make_client(std::uint16_t port, const std::string& local_dir) {
  ClientOptions options;
  options.servers = {"127.0.0.1:" + std::to_string(port)};
  options.label = "netsem-soak-lease";
  options.local_dir = local_dir;
  options.limits[std::string(kLeaseName)] = 1;  // fallback: a host-local limit of 1, as on the server
  options.connect_timeout = std::chrono::milliseconds(300);
  options.reconnect_min = std::chrono::milliseconds(10);
  options.reconnect_max = std::chrono::milliseconds(200);
  options.request_timeout = std::chrono::hours(1);  // the lease, not this, ends a silent session
  auto client = Client::create(std::move(options));
  if (!client) {
    std::fprintf(stderr, "netsem-soak: lease worker cannot create a client: %s\n", client.status().to_string().c_str());
    ::_exit(3);
  }
  return std::move(*client);
}

void sleep_ns(std::int64_t ns) {
  if (ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(ns));
}

}  // namespace

void run_lease_worker(WorkerLoop& loop) {
  set_log_handler([](LogLevel, std::string_view) {});
  const WorkerPlan& plan = loop.plan();
  const std::uint8_t name = lease_name_index();
  const std::int64_t timeout_ns = plan.session_timeout_ms * 1'000'000;
  std::uint32_t number = 1;
  auto proxy = std::make_unique<testing::TcpProxy>(plan.port);
  std::unique_ptr<Client> client = make_client(proxy->port(), plan.local_dir);
  const auto report = [&](RecordType type, std::int32_t count) {
    loop.report(Record{.time_ns = monotonic_ns(), .connection = number, .count = count, .type = type, .name = name});
  };
  const auto reconnect = [&] {
    client.reset();
    proxy = std::make_unique<testing::TcpProxy>(plan.port);
    ++number;
    client = make_client(proxy->port(), plan.local_dir);
  };
  for (;;) {
    if (loop.pause_if_asked()) continue;
    const std::int64_t requested = monotonic_ns();
    Result<Permit> permit = client->acquire(kLeaseName, {.timeout = std::chrono::milliseconds(300)});
    if (!permit) {
      if (permit.status().code() != StatusCode::kTimeout) ::usleep(10'000);
      continue;
    }
    loop.report(Record{.time_ns = monotonic_ns(),
                       .request_ns = requested,
                       .fence = permit->fence().value_or(0),  // 0: served locally (fallback)
                       .connection = number,
                       .count = 1,
                       .type = RecordType::kGrant,
                       .name = name});
    if (!permit->is_local() && timeout_ns > 0 && loop.chance(plan.freeze_chance)) {
      proxy->freeze();
      // The lease lapses at T/2 without an answer; a loss must come by then.
      const std::int64_t give_up = monotonic_ns() + 2 * timeout_ns;
      while (!permit->lost() && monotonic_ns() < give_up) ::usleep(2'000);
      if (!permit->lost()) {
        report(RecordType::kRefused, 1);  // an anomaly: the lease did not lapse
      } else if (const auto stop_by = permit->stop_by()) {
        // Work on as long as the lease allows, as netsem run would.
        sleep_ns(
            std::chrono::duration_cast<std::chrono::nanoseconds>(*stop_by - std::chrono::steady_clock::now()).count());
      } else {
        sleep_ns(loop.uniform_ns(300'000'000));  // the server went away meanwhile: a grace
      }
      report(RecordType::kDrop, 0);
      *permit = Permit();
      reconnect();
      continue;
    }
    const std::int64_t hold_until = monotonic_ns() + loop.uniform_ns(300'000'000);
    while (monotonic_ns() < hold_until && !permit->lost()) ::usleep(2'000);
    if (permit->lost()) sleep_ns(loop.uniform_ns(500'000'000));  // the server was killed: a grace
    report(RecordType::kRelease, 1);
    (void)permit->release();
  }
}

}  // namespace netsem::soak
