// The descriptor budget of netsemd. Every session and every connection being
// refused holds a socket; the server's own files (journal, fences, snapshot,
// status file and their temporary files, the configuration re-read on
// SIGHUP) need descriptors at moments no client chooses. If clients could
// take the last descriptor, a grant's fence reservation or a journal
// compaction would fail with EMFILE. So netsemd raises its soft
// RLIMIT_NOFILE to the hard limit at start, counts what it has open once it
// is listening, keeps kOwnFilesReserve descriptors for its own files, and
// lets sessions and refusals share the rest: a peer beyond that is told
// * ERR LIMIT as if max_connections were reached.
//
// API: raise_nofile_limit() and check_descriptor_floor() once in main;
// count_open_descriptors() and plan_descriptors() in Server::start.
// plan_descriptors is pure.
//
// Thread safety: raise_nofile_limit and count_open_descriptors act on the
// process; call them from the main thread before others start.
#pragma once

#include <cstddef>
#include <cstdint>

#include "netsem/status.h"

namespace netsem::server {

// Descriptors kept for the server's own files beyond those open at start:
// a snapshot and its temporary file, the fences file's temporary, the status
// file's temporary, the configuration file on SIGHUP, the directory opened
// to sync a rename, the report pipe and pidfd of each of the two children
// that write the status file and a snapshot (ForkedJob), the spare that lets the accept loop refuse a peer at
// EMFILE, and some slack for libraries (the resolver, syslog, ...).
inline constexpr std::size_t kOwnFilesReserve = 16;
// Most connections being refused at once (each holds a socket for under a
// second); fewer when descriptors are short.
inline constexpr std::size_t kMaxRejecting = 256;

struct NofileLimit {
  std::uint64_t before = 0;  // the soft limit netsemd started with
  std::uint64_t soft = 0;    // the soft limit now
  std::uint64_t hard = 0;
};

// Raises the soft RLIMIT_NOFILE to the hard limit (capped by the kernel's
// fs.nr_open when the hard limit is unlimited). The limits as they are
// afterwards; kIoError when they cannot be read. Failing to raise is not an
// error: `soft` then equals `before`.
Result<NofileLimit> raise_nofile_limit();

// The soft RLIMIT_NOFILE now (kIoError when it cannot be read).
Result<std::uint64_t> current_nofile_limit();

// Descriptors this process has open now (from /proc/self/fd).
Result<std::size_t> count_open_descriptors();

struct DescriptorPlan {
  std::size_t sessions = 0;   // most sessions: min(max_connections, what descriptors allow)
  std::size_t rejecting = 0;  // most connections being refused at once
  bool limited = false;       // descriptors, not max_connections, bound `sessions`
};

// Splits the descriptors left under `nofile` once `open_now` are open and
// kOwnFilesReserve and `kept_for_http` (the HTTP listener's connection
// limit, so that HTTP clients cannot take the descriptors of protocol
// sessions) are kept: an eighth (at least 1, at most kMaxRejecting) for
// refusals, the rest for sessions, up to `max_connections`.
// kInvalidArgument, naming the limit needed, when not even one session and
// one refusal fit.
Result<DescriptorPlan> plan_descriptors(std::uint64_t nofile, std::size_t open_now, std::size_t max_connections,
                                        std::size_t kept_for_http = 0);

// Before the server opens anything: plan_descriptors for one session with
// what is open now, so that a limit too low for the server's own files, one
// session and one refusal is refused in words rather than as the EMFILE of
// whichever file comes first. Status::ok() when it fits (Server::start
// plans again once everything is open).
Status check_descriptor_floor();

}  // namespace netsem::server
