// Writing a Snapshot out, every format driven by the field table
// (stats/fields.h), so that no format can name or order a field differently:
// the one-line JSON of STATS (and of the status file's header), the
// Prometheus text exposition (for the /metrics listener to come), and the
// Markdown table of docs/protocol.md.
//
// JSON shapes: a counter or gauge is an integer, a text field a string, a
// histogram an object {"count":C,"sum":S,"buckets":[n0,n1,...]} where n_i
// is the number of observations in bucket i (Histogram::bucket: at most
// 2^i, above 2^(i-1); index 40 is +Inf), up to the last bucket that is not
// empty (none when C is 0). The cumulative count at le = 2^i is
// n0 + ... + n_i. Per-bucket counts keep the line short: with every number
// at its largest the whole STATS object is below 4000 bytes (tested), under
// the 4096 bytes a client's line reader takes.
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
