// The figures of netsemd: the counters each part bumps as things happen, the
// gauges read when the figures are taken, and Snapshot, the copy of all of
// them that STATS, the status file and (next) a /metrics listener read. What
// each figure is called and means is the field table (stats/fields.h); how a
// snapshot is written out is stats/render.h.
//
// API: each part owns the counters of its own events as a member and bumps
// them where they happen: SemaphoreTable a TableCounters (grants, timeouts,
// cancellations, wait and hold times), the network layer a ServerCounters
// (requests, connections, refusals, session ends by cause), the journal a
// JournalCounters (writes, fsync latency). A bump is `++counters.x` or
// `histogram.observe(v)`: a few instructions, no allocation, no lock. To
// read them, the server fills a Snapshot: it copies the three structs and
// sets the gauges (sessions, held, uptime, ...) from their owners. Every
// member is a std::uint64_t or a Histogram, so a Snapshot is trivially
// copyable: taking one is a memcpy of about 1.5 KB, and PublishedSnapshot
// hands copies to another thread.
//
// Thread safety: the counters belong to the event loop's thread; a Snapshot
// is a value; PublishedSnapshot is safe from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <type_traits>

#include "stats/histogram.h"

namespace netsem::stats {

// Why a session ended; each has its counter (ServerCounters::session_ends).
enum class EndCause : std::uint8_t {
  kQuit,      // the peer said QUIT (v1), or released its permit (ACE)
  kClose,     // the peer closed the connection or reset it
  kTimeout,   // no request for session_timeout_ms
  kOverflow,  // the peer did not read its own answers (over the session's cap, or a LIST not taken)
  kShed,      // closed by the server-wide cap on unwritten answers (max_output_bytes)
  kError,     // a protocol error (line too long, NUL byte; ACE: out of turn, refused, ended ungranted)
  kKicked,    // an administrator's KICK
  kShutdown,  // the server stopped
};
inline constexpr std::size_t kEndCauses = 8;
// "quit", "close", ...: the cause as it appears in field names.
std::string_view end_cause_name(EndCause cause);

// Bumped by the semaphore table.
struct TableCounters {
  std::uint64_t grants = 0;         // ACQUIRE, WAIT and ACE grants, at once or after queueing
  std::uint64_t timeouts = 0;       // requests answered TIMEOUT: tries, and queued ones whose time ran out
  std::uint64_t cancellations = 0;  // queued requests ended by CANCEL
  Histogram wait_us;                // queued requests granted: from queueing to the grant
  Histogram hold_us;                // holds: from the grant that made a holder to the end of the hold
};

// Bumped by the network layer.
struct ServerCounters {
  std::uint64_t requests = 0;                            // request lines read, plus one per ACE acquire
  std::uint64_t connections_total = 0;                   // connections accepted as sessions
  std::uint64_t denied_total = 0;                        // connections refused with DENIED
  std::uint64_t limited_total = 0;                       // connections refused for the connection limit
  std::uint64_t output_bytes = 0;                        // a gauge: answer bytes buffered unwritten, all sessions
  std::uint64_t shed_total = 0;                          // sessions closed by the server-wide output cap
  std::uint64_t auth_failures_total = 0;                 // AUTH lines answered ERR AUTH
  std::array<std::uint64_t, kEndCauses> session_ends{};  // indexed by EndCause

  void count_end(EndCause cause) { ++session_ends[static_cast<std::size_t>(cause)]; }
};

// Bumped by the journal.
struct JournalCounters {
  std::uint64_t writes = 0;  // write(2) calls on the journal file
  Histogram fsync_us;        // fsyncs of the journal file, failed ones included
};

// Figures that are states, not events: read from their owners when a
// snapshot is taken.
struct Gauges {
  std::uint64_t sessions = 0;
  std::uint64_t semaphores = 0;
  std::uint64_t held = 0;
  std::uint64_t waiters = 0;
  std::uint64_t last_fence = 0;
  std::uint64_t uptime_s = 0;
  std::uint64_t session_timeout_ms = 0;
  std::uint64_t journal_ok = 0;
  std::uint64_t journal_pending_records = 0;
  std::uint64_t lease_wait_ms = 0;  // left of the lease wait after a restart (0: granting)
};

// Every figure at one instant. Each member is exactly one field of the
// field table (a test checks that every byte of it is read by one field).
struct Snapshot {
  Gauges gauges;
  ServerCounters server;
  TableCounters table;
  JournalCounters journal;
};
static_assert(std::is_trivially_copyable_v<Snapshot>, "a snapshot is taken and handed over by copying it");

// The latest snapshot the event loop published, for readers on other
// threads (a /metrics listener): publish() and read() copy under a mutex,
// held only for the copy. Before the first publish(), read() is a snapshot
// of zeros (every member of a default Snapshot is 0).
class PublishedSnapshot {
 public:
  void publish(const Snapshot& snapshot) {
    std::lock_guard lock(mutex_);
    latest_ = snapshot;
  }
  Snapshot read() const {
    std::lock_guard lock(mutex_);
    return latest_;
  }

 private:
  mutable std::mutex mutex_;
  Snapshot latest_;  // guarded by mutex_
};

}  // namespace netsem::stats
