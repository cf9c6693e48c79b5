// The per-name part of GET /metrics: one series per figure of a semaphore
// with a `name` label, for the defined and created semaphores up to a cap
// (the option metrics_max_names), and aggregates for everything else, so
// that a million names never make a million series.
//
// API: the server copies NameMetrics out of its table on the event loop
// (core/name_metrics_collector.h: rows in name order, the first max_names
// defined and created ones, and the table's totals), and the HTTP thread
// writes it with to_prometheus() after the Snapshot's exposition
// (render.h). Which series exist, with their type, labels and help, is
// metric_series(), which markdown_metrics_table() turns into
// docs/operations.md's list of every series (a test compares them).
//
// Label values: a name is what the protocol decodes and checks (1-255 bytes
// of valid UTF-8 with no control character), which the exposition format
// takes as a label value once a backslash and a double quote are escaped (a
// line feed too, though a name cannot hold one). A row whose name is not
// valid UTF-8 (it cannot come from the protocol or the configuration) is
// counted among the unlisted instead of written, since one bad label value
// makes Prometheus refuse the whole scrape.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::stats {

// The kinds of semaphore, as the protocol names them.
enum class NameKind : std::uint8_t { kDefined, kUndefined, kCreated };
// "defined", "undefined", "created".
std::string_view name_kind_name(NameKind kind);

// One semaphore's figures, as GET and LIST show them plus what the table
// counts per name.
struct NameRow {
  std::string name;  // decoded
  NameKind kind = NameKind::kDefined;
  std::int64_t value = 0;     // free permits (0 while a lowered limit is still exceeded)
  std::int64_t max = 0;       // the limit
  std::int64_t held = 0;      // permits held through ACQUIRE
  std::uint64_t holders = 0;  // sessions holding permits of it
  std::uint64_t waiters = 0;  // queued requests
  std::uint64_t grants = 0;   // since it came into the table (SemaphoreInfo::grants)
};

// The whole table at one instant (or nearly: see the collector).
struct NameTotals {
  std::uint64_t defined = 0;  // semaphores by kind
  std::uint64_t undefined = 0;
  std::uint64_t created = 0;
  std::uint64_t held = 0;     // permits held through ACQUIRE, all names
  std::uint64_t waiters = 0;  // queued requests, all names
};

struct NameMetrics {
  // Defined and created semaphores in name order (byte order), at most
  // max_names of them: the first ones.
  std::vector<NameRow> rows;
  std::uint64_t max_names = 0;  // the cap in force
  NameTotals totals;
};

// The per-name series and the aggregates, each with `# HELP` and `# TYPE`
// (text format 0.0.4). The aggregates of the unlisted (semaphores, permits
// held and requests queued of the names without series) are the totals less
// the rows, at least 0.
std::string to_prometheus(const NameMetrics& metrics);

// One series of the exposition, for the docs.
struct SeriesDoc {
  std::string metric;  // "netsem_semaphore_value"
  std::string type;    // "counter", "gauge", "histogram"
  std::string labels;  // "name", "name, kind", "le", "" for none
  std::string help;
};
// Every series GET /metrics writes, in its order: the Snapshot's fields
// (render.h) then the per-name series and the aggregates.
std::vector<SeriesDoc> metric_series();
// The table of docs/operations.md's "Metrics" section: a header row, the
// separator, then `| `metric` | type | labels | help |` per series.
std::string markdown_metrics_table();

}  // namespace netsem::stats
