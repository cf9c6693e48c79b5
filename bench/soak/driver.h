// Driver: the soak's parent process. It writes netsemd's configuration in a
// temporary directory whose data_dir survives restarts, starts netsemd and
// the workers, and then, until the time is up, injects faults (SIGKILL of a
// worker, restart of netsemd by SIGTERM or SIGKILL), drains the workers'
// events, exercises the created semaphores itself, and stops everything
// now and then to check that every permit came back. At the end it stops the
// workers, checks once more, stops netsemd and prints what happened.
//
// The driver is single-threaded and does one thing at a time; each wait has
// a deadline. It records its own events (kills, server starts, stops, exits)
// with the same clock as the workers, taking each time *before* the act, as
// the checker requires (checker.h).
//
// Files: driver.cc (run, workers, faults), server_control.cc (netsemd's
// instances, the control connection, created semaphores), quiescent.cc
// (pauses, permits back, the hold check), report.cc (the summary).
//
// Thread safety: the driver's thread only; it must stay the process's only
// thread, since it forks.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "checker.h"
#include "event_ring.h"
#include "line_connection.h"
#include "processes.h"
#include "soak_options.h"

namespace netsem::soak {

// What the summary reports.
struct SoakCounters {
  std::uint64_t grants = 0;
  std::uint64_t releases = 0;
  std::uint64_t drops = 0;
  std::uint64_t losses = 0;    // connections the workers saw the server end
  std::uint64_t refusals = 0;  // answers the soak never expects (anomalies)
  std::uint64_t worker_kills = 0;
  std::uint64_t worker_deaths = 0;  // workers that died on their own (anomalies)
  std::uint64_t restarts_sigterm = 0;
  std::uint64_t restarts_sigkill = 0;
  std::uint64_t failed_starts = 0;  // netsemd exited at start (port busy) and was started again
  std::uint64_t quiescent_checks = 0;
  std::uint64_t created_ops = 0;
  std::uint64_t created_unknown = 0;  // answers lost with a stopped server
  std::uint64_t created_checks = 0;   // GETs of created semaphores after a restart
  std::uint64_t holds_checked = 0;
  std::uint64_t lease_holds_checked = 0;  // check_host_holds
  std::uint64_t unwritable_phases = 0;    // moments netsemd's journal could not be written
  std::uint64_t unwritable_grants = 0;    // grants the workers read meanwhile
  std::uint64_t lease_freezes = 0;        // lease workers' holds ended by a frozen network
  std::uint64_t cut_by_server_stop = 0;
  std::uint64_t skipped_unexplained_loss = 0;
  std::uint64_t skipped_unterminated = 0;
  std::uint64_t skipped_unstopped_instance = 0;
  std::uint64_t violations = 0;
  std::uint64_t violations_by_kind[6] = {};  // indexed by Violation::Kind
  std::vector<std::int64_t> peak;            // per worker name
};

// Violations printed in full; the rest are counted.
inline constexpr std::uint64_t kViolationsShown = 20;

class Driver {
 public:
  explicit Driver(SoakOptions options);
  // Stops every process still running and removes the temporary directory
  // (kept after a violation or with --keep-dir).
  ~Driver();
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  // The whole run; returns the exit code.
  int run();

 private:
  struct Slot {
    pid_t pid = -1;
    std::uint32_t incarnation = 0;
    bool library = false;
    bool lease = false;  // a lease worker: its events go to lease_events_
  };

  // --- driver.cc ---
  bool prepare();
  void spawn_worker(std::size_t slot);
  // SIGKILLs the worker (recorded first), reaps it, drains its last events,
  // and starts a fresh one in its slot when `respawn`.
  void kill_worker(std::size_t slot, bool respawn = true);
  void reap_workers();
  void drain_events();
  void drain_slot(std::size_t slot);
  void record(EventType type, std::uint32_t worker_or_instance, std::uint64_t fence = 0);
  void violation(Violation v);
  Nanos now() const { return monotonic_ns(); }
  double elapsed() const;  // seconds since the run began
  double uniform(std::pair<double, double> range);
  // Sleeps while draining events, until `deadline`.
  void idle_until(Nanos deadline);
  void note(const std::string& text);  // printed with --verbose

  // --- server_control.cc ---
  // A request sent on the control connection, its answer still to read.
  struct PendingRequest {
    std::string tag;
    std::size_t created = 0;  // for a created-semaphore operation
    bool post = false;
    std::int64_t count = 0;
  };
  // Starts a new netsemd instance and waits until it answers STATS; retries
  // a start that fails (a port in TIME_WAIT use) for a while.
  bool start_server();
  void restart_server();
  void stop_server_at_end();
  // A netsemd that exited without being told to is a violation; start another.
  void watch_server();
  std::optional<int> wait_server_exit(Nanos deadline);
  bool ensure_control();
  // The control connection's requests: `encode(line, tag)` builds the line
  // with the codec (protocol/requests.h) for the tag send_request picks.
  using Encoder = std::function<void(std::string& line, std::string_view tag)>;
  std::optional<std::string> send_request(const Encoder& encode);
  std::optional<std::string> await_answer(const std::string& tag, Nanos deadline);
  std::optional<std::string> request(const Encoder& encode);
  bool create_semaphores();
  std::optional<PendingRequest> send_created_op();
  void finish_created_op(const PendingRequest& op, const std::optional<std::string>& answer);
  void check_created();
  std::optional<SemaphoreReading> get(const std::string& name);

  // --- unwritable.cc ---
  // The journal unwritable for --unwritable-for seconds, a POST in flight.
  void unwritable_phase();

  // --- quiescent.cc ---
  bool pause_workers();
  void resume_workers();
  void await_permits_back();
  void check_hold_segment();
  void quiescent_check();
  void finish();

  // --- report.cc ---
  void print_header() const;
  void print_progress() const;
  int print_summary() const;

  SoakOptions options_;
  std::mt19937_64 random_;
  std::filesystem::path dir_;
  std::unique_ptr<SharedControlMapping> shared_;
  std::unique_ptr<ServerProcess> server_;
  std::vector<Slot> slots_;
  std::uint32_t next_incarnation_ = 0;
  std::uint32_t instances_ = 0;  // netsemd instances started so far
  std::uint32_t pause_epoch_ = 0;
  int next_stop_signal_ = 0;
  LineConnection control_;
  std::uint64_t control_tag_ = 0;
  std::vector<CreatedExpectation> created_;
  std::vector<std::int64_t> checker_limits_;

  std::vector<Event> worker_events_;     // since the last hold check
  std::vector<Event> lease_events_;      // the lease workers', since the last hold check (check_host_holds)
  std::set<std::uint32_t> raw_workers_;  // incarnations of raw workers: they keep no lease
  std::vector<Event> driver_events_;     // the whole run
  FenceCarry fence_carry_;
  SoakCounters counters_;
  Nanos started_ = 0;
  // Until when, at the latest, the running netsemd may still be in its lease
  // wait after a restart (STATS lease_wait_ms when it became ready): it
  // grants nothing then, so no WAIT try is sent and no unwritable phase
  // begins (it would see no grant).
  Nanos lease_wait_until_ = 0;
  bool interrupted_ = false;
  bool setup_failed_ = false;  // the first netsemd never started
  bool server_down_ = false;   // netsemd could not be started again: the run ends
};

// A whole decimal integer, or nullopt.
std::optional<std::int64_t> to_number(std::string_view text);
// A top-level integer field of a one-line JSON object (STATS' answer).
std::optional<std::int64_t> json_number(std::string_view json, std::string_view field);

// Set by SIGINT/SIGTERM: the run ends early (and fails).
void install_interrupt_handlers();
bool interrupt_requested();

}  // namespace netsem::soak
