// What the benchmark reads about processes from /proc and getrusage: the
// CPU time a server spent (utime + stime from /proc/PID/stat, in clock
// ticks, usually 10 ms), its resident memory (VmRSS from /proc/PID/status),
// and this process's own CPU time, to show the generator was not the
// bottleneck. Also raises this process's descriptor limit for scenarios
// that hold thousands of connections.
//
// Plain functions, no state: safe from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace netsem::bench {

// CPU time of a process, split: the system part is what the kernel spent on
// its behalf (for a server on loopback, mostly the network stack).
struct CpuTimes {
  std::uint64_t user_us = 0;
  std::uint64_t system_us = 0;
  std::uint64_t total_us() const { return user_us + system_us; }
};

// CPU time of process `pid`; nullopt when it cannot be read (no such
// process, not ours to read).
std::optional<CpuTimes> process_cpu(pid_t pid);

// Resident set size of process `pid` in bytes; nullopt when unreadable.
std::optional<std::uint64_t> process_rss_bytes(pid_t pid);

// CPU time (user + system) of this process in microseconds.
std::uint64_t self_cpu_us();

// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the new soft
// limit.
std::uint64_t raise_fd_limit();

}  // namespace netsem::bench
