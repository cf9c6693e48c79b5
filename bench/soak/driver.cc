// Driver (driver.h), part one: the run's timeline, the temporary directory
// and netsemd's configuration, the workers (spawn, kill, reap) and the
// draining of their events.
#include "driver.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>

#include "soak_names.h"
#include "worker.h"

namespace netsem::soak {

namespace {

constexpr Nanos kSecond = 1'000'000'000;

std::atomic<bool> g_interrupted{false};

extern "C" void on_interrupt(int) {
  g_interrupted = true;
  // A second Ctrl-C ends the driver at once; its children die with it.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

Nanos to_nanos(double seconds) {
  return static_cast<Nanos>(seconds * 1e9);
}

// A port below the usual ephemeral range (32768-60999), so that no outgoing
// connection of the workers can take it while netsemd is down between two
// instances; tried by binding it as netsemd will (SO_REUSEADDR).
std::uint16_t pick_free_port(std::mt19937_64& random) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const auto port = static_cast<std::uint16_t>(std::uniform_int_distribution<int>(20000, 32000)(random));
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool free = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    if (free) return port;
  }
  return 0;
}

}  // namespace

void install_interrupt_handlers() {
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  std::signal(SIGPIPE, SIG_IGN);
}

bool interrupt_requested() {
  return g_interrupted.load();
}

Driver::Driver(SoakOptions options) : options_(std::move(options)) {
  if (options_.seed == 0)
    options_.seed = static_cast<std::uint64_t>(monotonic_ns()) ^ (static_cast<std::uint64_t>(::getpid()) << 40);
  random_.seed(options_.seed);
  for (const WorkerName& name : worker_names()) {
    const bool understated = options_.understate_limits && name.limit > 1;
    checker_limits_.push_back(understated ? name.limit - 1 : name.limit);
  }
  counters_.peak.assign(worker_names().size(), 0);
}

Driver::~Driver() {
  for (Slot& slot : slots_) {
    if (slot.pid <= 0) continue;
    ::kill(slot.pid, SIGKILL);
    (void)wait_for_exit(slot.pid, monotonic_ns() + 5 * kSecond);
  }
  server_.reset();  // SIGKILLs a netsemd that still runs
  if (dir_.empty()) return;
  // Kept for a post-mortem after a violation, unless violations were the
  // point (--understate-limits).
  const bool unexpected_violations = counters_.violations > 0 && !options_.understate_limits;
  if (options_.keep_dir || unexpected_violations || setup_failed_) {
    std::printf("kept %s (config, data_dir, netsemd.log)\n", dir_.c_str());
  } else {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

int Driver::run() {
  if (!prepare()) {
    setup_failed_ = true;
    return kExitCannotRun;
  }
  print_header();
  started_ = now();
  if (!start_server() || !create_semaphores()) {
    setup_failed_ = true;
    std::fprintf(stderr, "netsem-soak: cannot start netsemd; its log:\n%s", server_->log_tail(20).c_str());
    return kExitCannotRun;
  }
  for (std::size_t slot = 0; slot < slots_.size(); ++slot) spawn_worker(slot);

  const Nanos end = started_ + to_nanos(options_.seconds);
  Nanos next_kill = now() + to_nanos(uniform(options_.kill_every));
  Nanos next_restart = now() + to_nanos(uniform(options_.restart_every));
  Nanos next_unwritable = options_.unwritable_for > 0 ? now() + to_nanos(uniform(options_.unwritable_every)) : kNever;
  Nanos next_check = options_.check_every > 0 ? now() + to_nanos(options_.check_every) : kNever;
  while (now() < end && !interrupt_requested() && !server_down_) {
    drain_events();
    reap_workers();
    watch_server();
    if (now() >= next_kill) {
      kill_worker(std::uniform_int_distribution<std::size_t>(0, slots_.size() - 1)(random_));
      ++counters_.worker_kills;
      next_kill = now() + to_nanos(uniform(options_.kill_every));
    }
    if (now() >= next_restart) {
      restart_server();
      next_restart = now() + to_nanos(uniform(options_.restart_every));
    }
    if (now() >= next_unwritable && now() >= lease_wait_until_ && now() + 2 * kSecond < end) {
      unwritable_phase();
      next_unwritable = now() + to_nanos(uniform(options_.unwritable_every));
    }
    if (now() >= next_check && now() + 2 * kSecond < end) {
      quiescent_check();
      print_progress();
      next_check = now() + to_nanos(options_.check_every);
    }
    if (auto op = send_created_op()) finish_created_op(*op, await_answer(op->tag, now() + 2 * kSecond));
    idle_until(now() + 10'000'000);
  }
  interrupted_ = interrupt_requested();
  finish();
  return print_summary();
}

bool Driver::prepare() {
  std::string pattern = (std::filesystem::temp_directory_path() / "netsem-soak-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::perror("netsem-soak: mkdtemp");
    return false;
  }
  dir_ = pattern;
  if (options_.port == 0) options_.port = pick_free_port(random_);
  if (options_.port == 0) {
    std::fprintf(stderr, "netsem-soak: found no free port on 127.0.0.1\n");
    return false;
  }
  // The data directory is the same for every instance: created semaphores
  // and the fence floor must survive each restart.
  std::ofstream config(dir_ / "netsemd.ini");
  config << "# Written by netsem-soak for one run.\n[server]\nbind_address = 127.0.0.1\nbind_port = " << options_.port
         << "\nallowed_networks = 127.0.0.0/8\n"
         << "data_dir = " << (dir_ / "data").string() << "\nstats_dir = " << (dir_ / "stats").string() << "\n"
         << "fsync = " << options_.fsync
         << "\n"
         // A session timeout ends a silent session: the lease workers' frozen
         // networks need one. The checker ends the holds of raw workers,
         // which do not ping, by T after their request (checker.h).
         << "session_timeout_ms = " << options_.session_timeout_ms << "\nlog_level = info\n\n[semaphores]\n";
  for (const WorkerName& name : worker_names()) {
    if (name.defined) config << name.name << " = " << name.limit << "\n";
  }
  config.close();
  if (!config) {
    std::fprintf(stderr, "netsem-soak: cannot write %s\n", (dir_ / "netsemd.ini").c_str());
    return false;
  }
  shared_ = std::make_unique<SharedControlMapping>();
  if (!shared_->valid()) {
    std::perror("netsem-soak: mmap");
    return false;
  }
  server_ = std::make_unique<ServerProcess>(options_.netsemd, dir_ / "netsemd.ini", dir_ / "netsemd.log");
  slots_.resize(static_cast<std::size_t>(options_.workers + options_.lease_workers));
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].library = i < static_cast<std::size_t>(options_.library_workers);
    slots_[i].lease = i >= static_cast<std::size_t>(options_.workers);
  }
  return true;
}

void Driver::spawn_worker(std::size_t slot) {
  (*shared_)->channels[slot].reset();
  Slot& s = slots_[slot];
  s.incarnation = ++next_incarnation_;
  const WorkerPlan plan{.slot = slot,
                        .incarnation = s.incarnation,
                        .library = s.library,
                        .port = options_.port,
                        .seed = options_.seed ^ (std::uint64_t{s.incarnation} * 0x9E3779B97F4A7C15ULL),
                        .hold_max_ms = options_.hold_max_ms,
                        .drop_chance = options_.drop_chance,
                        .lease = s.lease,
                        .session_timeout_ms = options_.session_timeout_ms,
                        .freeze_chance = options_.freeze_chance,
                        .local_dir = (dir_ / "local").string()};
  if (!s.library && !s.lease) raw_workers_.insert(s.incarnation);
  SharedControl& control = **shared_;
  s.pid = fork_child([&] { run_worker(plan, control); });
  if (s.pid < 0) std::perror("netsem-soak: fork");
}

void Driver::kill_worker(std::size_t slot, bool respawn) {
  Slot& s = slots_[slot];
  if (s.pid <= 0) return;
  record(EventType::kWorkerKill, s.incarnation);
  ::kill(s.pid, SIGKILL);
  (void)wait_for_exit(s.pid, now() + 10 * kSecond);
  drain_slot(slot);  // everything it published before it died
  note(fmt::format("SIGKILL worker {} (slot {})", s.incarnation, slot));
  s.pid = -1;
  if (respawn) spawn_worker(slot);
}

void Driver::reap_workers() {
  for (std::size_t slot = 0; slot < slots_.size(); ++slot) {
    Slot& s = slots_[slot];
    if (s.pid <= 0) continue;
    const auto status = wait_for_exit(s.pid, 0);
    if (!status) continue;
    // Not killed by the driver: its holds have no known end and the checker
    // skips them; counted as an anomaly.
    ++counters_.worker_deaths;
    std::printf("  %7.1fs  worker %u died on its own: %s\n", elapsed(), s.incarnation,
                describe_wait_status(*status).c_str());
    drain_slot(slot);
    s.pid = -1;
    spawn_worker(slot);
  }
}

void Driver::drain_events() {
  for (std::size_t slot = 0; slot < slots_.size(); ++slot) drain_slot(slot);
}

void Driver::drain_slot(std::size_t slot) {
  const std::uint32_t worker = slots_[slot].incarnation;
  (*shared_)->channels[slot].drain([&](const Record& r) {
    Event e{.time = r.time_ns, .worker = worker, .connection = r.connection, .name = r.name, .count = r.count};
    switch (r.type) {
      case RecordType::kConnect:
        e.type = EventType::kConnect;
        break;
      case RecordType::kGrant:
        e.type = EventType::kGrant;
        e.fence = r.fence;
        e.request_time = r.request_ns;
        ++counters_.grants;
        break;
      case RecordType::kRelease:
        e.type = EventType::kRelease;
        ++counters_.releases;
        break;
      case RecordType::kDrop:
        e.type = EventType::kDrop;
        ++(slots_[slot].lease ? counters_.lease_freezes : counters_.drops);
        break;
      case RecordType::kLost:
        e.type = EventType::kLost;
        ++counters_.losses;
        break;
      case RecordType::kRefused:
        ++counters_.refusals;
        return;
    }
    (slots_[slot].lease ? lease_events_ : worker_events_).push_back(e);
  });
}

void Driver::record(EventType type, std::uint32_t worker_or_instance, std::uint64_t fence) {
  Event e{.type = type, .time = now(), .fence = fence};
  if (type == EventType::kWorkerKill) {
    e.worker = worker_or_instance;
  } else {
    e.instance = worker_or_instance;
  }
  driver_events_.push_back(e);
}

void Driver::violation(Violation v) {
  ++counters_.violations;
  ++counters_.violations_by_kind[static_cast<std::size_t>(v.kind)];
  // The first ones in full, as they are found; past that only counted, so
  // that a broken server cannot flood the output.
  if (counters_.violations <= kViolationsShown) {
    std::printf("  %7.1fs  VIOLATION %s %s: %s\n", elapsed(), std::string(kind_name(v.kind)).c_str(), v.name.c_str(),
                v.what.c_str());
  } else if (counters_.violations == kViolationsShown + 1) {
    std::printf("  %7.1fs  more violations: counted, not shown\n", elapsed());
  }
}

double Driver::elapsed() const {
  return static_cast<double>(now() - started_) / 1e9;
}

double Driver::uniform(std::pair<double, double> range) {
  return std::uniform_real_distribution<double>(range.first, range.second)(random_);
}

void Driver::idle_until(Nanos deadline) {
  for (;;) {
    drain_events();
    const Nanos left = deadline - now();
    if (left <= 0) return;
    ::usleep(static_cast<useconds_t>(std::min<Nanos>(left, 5'000'000) / 1000));
  }
}

void Driver::note(const std::string& text) {
  if (options_.verbose) std::printf("  %7.1fs  %s\n", elapsed(), text.c_str());
}

}  // namespace netsem::soak
