// LogClock: the clock a leader stamps log entries with (log time,
// replication::Entry::time_ms: what sessions expire and queued requests time
// out by, on every replica). It runs with the steady clock, anchored once to
// the wall clock, so that a step of the wall clock (date -s, an NTP step, a
// restored virtual machine) neither ages every session at once nor holds
// every timeout still: with the wall clock itself, a leader stepped 20 s
// forward expired healthy sessions that pinged every second and granted their
// permits to others while their holders still held them (a hostile audit),
// and one stepped back held every queued timeout and every dead session's
// expiry for the length of the step. It never runs behind the log's own time
// (another leader's clock ran ahead, or this one was anchored behind it):
// it then moves forward to it, since an entry stamped in the past holds log
// time still (the replica keeps the largest time it saw).
//
// What a leader change does is left to the log: the first entry of every
// term is TouchAll, which gives each session a whole timeout from the new
// leader's time, so that a leader whose clock is ahead expires no session on
// taking over (docs/replication.md, "Time").
//
// Thread safety: none; the server's loop thread owns it.
#pragma once

#include <cstdint>
#include <functional>

namespace netsem::cluster {

class LogClock {
 public:
  using Source = std::function<std::int64_t()>;  // milliseconds

  // `steady`: a clock that never steps (CLOCK_MONOTONIC); `wall`: the
  // system clock, read once, for log time to start near the date.
  LogClock(Source steady, Source wall);
  // The steady and system clocks of this host.
  LogClock();

  // Log time now: the steady clock plus the anchor, and never before
  // `log_time_ms` (the replica's log time).
  std::int64_t now(std::int64_t log_time_ms);

 private:
  Source steady_;
  std::int64_t offset_ms_ = 0;
};

}  // namespace netsem::cluster
