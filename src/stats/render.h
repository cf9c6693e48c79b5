// Writing a Snapshot out, every format driven by the field table
// (stats/fields.h), so that no format can name or order a field differently:
// the one-line JSON of STATS (and of the status file's header), the
// Prometheus text exposition (GET /metrics), and the
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

#include <cstdint>
#include <string>
#include <string_view>

#include "stats/cluster_figures.h"
#include "stats/fields.h"
#include "stats/stats.h"

namespace netsem::stats {

// The STATS object: {"sessions":3,...}, one line, fields in table order.
// With `cluster` (a server in a cluster): the journal's fields
// (is_journal_field) left out, and a last member "cluster" with
// cluster_json's object (cluster_figures.h).
std::string to_json(const Snapshot& snapshot, const ClusterFigures* cluster = nullptr);

// Whether `field` is the journal's (journal_*): a server in a cluster has
// no journal, and its STATS and /metrics leave these out.
bool is_journal_field(const Field& field);

// How field `x` is named and scaled in the Prometheus exposition, by the
// conventions `promtool check metrics` holds a server to: `netsem_x` in base
// units (a field in "us", "ms" or "s" loses that suffix for `_seconds`, its
// values divided by 10^6, 10^3 or 1), and a counter ends in `_total`:
// wait_us -> netsem_wait_seconds, grants -> netsem_grants_total,
// uptime_s -> netsem_uptime_seconds, output_bytes -> netsem_output_bytes.
struct PrometheusName {
  std::string metric;
  int decimals = 0;  // the field's values are divided by 10^decimals
};
PrometheusName prometheus_name(const Field& field);
// The field's help as the exposition's HELP: its help, and for a field
// scaled to seconds, " Here in seconds." (the help names the field's unit).
std::string prometheus_help(const Field& field);

// `value / 10^decimals` written exactly in decimal, with no trailing zero
// and no exponent: (1500, 3) -> "1.5", (2, 6) -> "0.000002", (7, 0) -> "7".
// REQUIRES: 0 <= decimals <= 18.
std::string scaled_decimal(std::uint64_t value, int decimals);

// The Prometheus text exposition (format 0.0.4): for each field a `# HELP`
// and a `# TYPE` line, then its samples, named by prometheus_name(). A
// histogram has every bucket (`_bucket{le="..."}`, cumulative, `+Inf`
// last), `_sum` and `_count`; a text field is a gauge `netsem_x{x="..."} 1`.
// The per-name series of /metrics are stats/name_metrics.h's.
// With `cluster`: the journal's fields left out and cluster_prometheus's
// series added.
std::string to_prometheus(const Snapshot& snapshot, const ClusterFigures* cluster = nullptr);

// A histogram's samples in the exposition: every bucket of `metric`
// (`_bucket{le="..."}`, cumulative, `+Inf` last), `_sum` and `_count`, the
// bounds and sum scaled by `decimals` as scaled_decimal does. The HELP and
// TYPE lines are the caller's.
void append_histogram(std::string& out, std::string_view metric, const Histogram& histogram, int decimals);

// A label value as the exposition format writes it between quotes: a
// backslash, a double quote and a line feed escaped (`\\`, `\"`, `\n`).
void append_label_value(std::string& out, std::string_view value);

// The table of docs/protocol.md's "STATS fields" section: a header row, the
// separator, then `| `name` | type | unit | help |` per field ("-" for no unit).
std::string markdown_table();

}  // namespace netsem::stats
