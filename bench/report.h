// The report of a run: human-readable text, or one JSON object (--json) for
// scripts such as bench/compare.sh. Both carry the same figures; fields the
// run could not measure (no --server-pid) are null in JSON and left out of
// the text.
//
// JSON fields: target, scenario, clients, pipeline, names, seconds, warmup,
// op (what one op is), ops, ops_per_s, latency_us {p50, p99, p999, max,
// mean, samples} (of the acquire), queued, errors, first_error,
// server_cpu_us_per_op, server_system_cpu_us_per_op (the kernel's part),
// client_cpu_us_per_op, server_rss_before,
// server_rss_after (bytes), per ("session" | "semaphore" | null),
// bytes_per ("bytes per session/semaphore"), limit, notes.
//
// Plain functions: safe from any thread.
#pragma once

#include <string>

#include "bench_options.h"
#include "measurement.h"

namespace netsem::bench {

std::string report_text(const Options& options, const Measurement& m);
std::string report_json(const Options& options, const Measurement& m);

}  // namespace netsem::bench
