// The soak's workers: forked processes that loop acquiring a worker name,
// holding it for a random short time and releasing it, and report every
// grant, release and drop to the driver through their WorkerChannel
// (event_ring.h). Two kinds, so that both the library and the wire are
// exercised: a *library* worker uses libnetsem's Client and Permit (with
// fallback `fail`, so that it never holds a local permit while the server is
// down); a *raw* worker speaks protocol v1 over its own socket
// (LineConnection), waits without a deadline at times, and drops its
// connection itself (shutdown + close) while waiting, while holding, or right
// after a release.
//
// Times in the reports follow the checker's rules (checker.h): a grant is
// stamped after its OK was read, a release and a drop before they happen.
//
// WorkerLoop holds what both kinds share: the random choices, the pause the
// driver asks for at quiescent points, and reporting.
//
// Thread safety: one worker per process; WorkerLoop is used by the worker's
// main thread only.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "event_ring.h"

namespace netsem::soak {

struct WorkerPlan {
  std::size_t slot = 0;           // its channel in SharedControl
  std::uint32_t incarnation = 0;  // unique for the run: events and kills name it
  bool library = false;           // libnetsem, else raw protocol v1
  std::uint16_t port = 0;         // netsemd on 127.0.0.1
  std::uint64_t seed = 0;
  int hold_max_ms = 20;
  double drop_chance = 0.02;  // per cycle: the worker drops its connection
  // A lease worker (lease_worker.cc) instead of the two kinds above.
  bool lease = false;
  std::int64_t session_timeout_ms = 0;  // netsemd's
  double freeze_chance = 0;             // per cycle: its network freezes while it holds
  std::string local_dir;                // its host-wide registry (the run's own)
};

class WorkerLoop {
 public:
  WorkerLoop(const WorkerPlan& plan, SharedControl& control);

  // One cycle's choice.
  struct Pick {
    std::uint8_t name = 0;  // index into worker_names()
    std::int32_t count = 1;
    std::int64_t timeout_ms = 0;  // -1: wait without a deadline; 0: only try
  };
  Pick pick(bool allow_unbounded);
  // How long to hold a grant.
  std::int64_t hold_ns();
  // True with probability `p`.
  bool chance(double p);
  // A uniform time in [0, max_ns].
  std::int64_t uniform_ns(std::int64_t max_ns);

  // True while the driver asks every worker to stand idle. The caller holds
  // and waits for nothing when it calls this: it acknowledges, sleeps a
  // little, and the caller tries again.
  bool pause_if_asked();
  // Whether a pause is asked for (without acknowledging it).
  bool pause_asked() const;

  void report(const Record& record) { channel_.push(record); }

  const WorkerPlan& plan() const { return plan_; }

 private:
  WorkerPlan plan_;
  SharedControl& control_;
  WorkerChannel& channel_;
  std::mt19937_64 random_;
  std::discrete_distribution<int> names_;
};

// Runs a worker until it is killed. Called in the forked child.
[[noreturn]] void run_worker(const WorkerPlan& plan, SharedControl& control);

// The kinds (raw_worker.cc, library_worker.cc, lease_worker.cc).
[[noreturn]] void run_raw_worker(WorkerLoop& loop);
[[noreturn]] void run_library_worker(WorkerLoop& loop);
[[noreturn]] void run_lease_worker(WorkerLoop& loop);

}  // namespace netsem::soak
