// The field table: every figure netsemd reports, in one place. Each row
// names a figure, gives its type, unit and help text, and reads it from a
// Snapshot. STATS, the status file's header and docs/protocol.md's "STATS
// fields" table all come from these rows (a test checks the docs against
// them), and so does the Prometheus exposition of GET /metrics: a field `x`
// is the metric `netsem_x` of the same type in base units (render.h,
// prometheus_name), with the help text as HELP.
//
// How to add a figure (redis's blocked.c style: these are all the steps):
//   1. The counter: a std::uint64_t (or a Histogram) member in the counters
//      struct of the part where the event happens (stats/stats.h), or in
//      Gauges for a state read when the snapshot is taken (and set it where
//      the server fills its Snapshot).
//   2. Bump it where the event happens: `++counters.x` or `h.observe(v)`.
//   3. A row in kFields (fields.cc): name (lower case, digits and `_`;
//      counters of events end in `_total` unless an older name stays),
//      type, unit, help, and the accessor. New rows go at the end: STATS
//      keeps its order.
//   4. The same row in docs/protocol.md, "STATS fields": the test
//      (tests/stats/fields_test.cc) prints the expected table when they differ.
//   5. A test that makes the event happen and reads the figure.
// tests/stats/fields_test.cc fails when a Snapshot member has no row, so
// step 3 cannot be forgotten. STATS is one line a client reads whole (4096
// bytes at most): tests/stats/render_test.cc checks that the longest
// possible answer fits, with about 100 bytes to spare today (a counter
// costs at most its name and 24 bytes, a histogram about 930); a figure
// that does not fit needs a shorter shape, or a place other than STATS.
//
// Thread safety: the table is constant.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "stats/histogram.h"
#include "stats/stats.h"

namespace netsem::stats {

enum class FieldType : std::uint8_t {
  kCounter,    // counts events since start; only grows (Prometheus counter)
  kGauge,      // a state now; goes up and down (Prometheus gauge)
  kHistogram,  // a distribution (Prometheus histogram: buckets, sum, count)
  kText,       // a string (Prometheus: a gauge `netsem_x{x="text"} 1`)
};
// "counter", "gauge", "histogram", "text".
std::string_view field_type_name(FieldType type);

struct Field {
  std::string_view name;
  FieldType type = FieldType::kGauge;
  std::string_view unit;  // "" for a plain count; else "ms", "s", "us", "bytes"
  std::string_view help;  // one sentence or a few, no line break
  // The one accessor the type uses; the others are null.
  const std::uint64_t& (*number)(const Snapshot&) = nullptr;  // kCounter, kGauge
  const Histogram& (*histogram)(const Snapshot&) = nullptr;   // kHistogram
  std::string_view (*text)(const Snapshot&) = nullptr;        // kText
};

// Every field, in the order STATS writes them.
std::span<const Field> fields();
// The field called `name`; nullptr when there is none.
const Field* find_field(std::string_view name);

}  // namespace netsem::stats
