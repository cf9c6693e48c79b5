// Writing a Snapshot out, every format driven by the field table
// (stats/fields.h), so that no format can name or order a field differently:
// the one-line JSON of STATS (and of the status file's header), the
// Prometheus text exposition (for the /metrics listener to come), and the
// Markdown table of docs/protocol.md.
//
// JSON shapes: a counter or gauge is an integer, a text field a string, a
// histogram an object {"count":C,"sum":S,"buckets":[[le,n],...]} whose
// buckets are [upper bound, cumulative count] pairs, from le = 1 up to the
// first bound whose cumulative count is C (no pair when C is 0): every
// bound after it, and +Inf, has the count C.
//
// Thread safety: pure functions.
#pragma once

#include <string>

#include "stats/stats.h"

namespace netsem::stats {

// The STATS object: {"sessions":3,...}, one line, fields in table order.
std::string to_json(const Snapshot& snapshot);

// The Prometheus text exposition (format 0.0.4): for each field a `# HELP`
// and a `# TYPE` line, then its samples; field `x` is metric `netsem_x`. A
// histogram has every bucket (`_bucket{le="..."}`, cumulative, `+Inf`
// last), `_sum` and `_count`; a text field is a gauge `netsem_x{x="..."} 1`.
std::string to_prometheus(const Snapshot& snapshot);

// The table of docs/protocol.md's "STATS fields" section: a header row, the
// separator, then `| `name` | type | unit | help |` per field ("-" for no unit).
std::string markdown_table();

}  // namespace netsem::stats
