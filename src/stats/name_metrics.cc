// The per-name series and the aggregates of GET /metrics, from one table of
// series (kNameSeries, kAggregates) that both the writer and the docs read,
// so that a series cannot be written without being documented.
#include "stats/name_metrics.h"

#include <algorithm>
#include <array>

#include "protocol/names.h"
#include "stats/fields.h"
#include "stats/render.h"

namespace netsem::stats {

namespace {

struct NameSeries {
  std::string_view metric;
  std::string_view type;
  std::string_view help;
  std::int64_t (*value)(const NameRow&);  // nullptr: netsem_semaphore_info, 1 with a kind label
};

constexpr auto kNameSeries = std::to_array<NameSeries>({
    {"netsem_semaphore_info", "gauge",
     "1 for each semaphore with per-name series, its kind (defined or created) in the label kind.", nullptr},
    {"netsem_semaphore_value", "gauge",
     "Free permits of the semaphore now (0 while a reload's lowered limit is still exceeded).",
     [](const NameRow& r) { return r.value; }},
    {"netsem_semaphore_max", "gauge", "The semaphore's limit.", [](const NameRow& r) { return r.max; }},
    {"netsem_semaphore_held", "gauge",
     "Permits of the semaphore held now through ACQUIRE, all sessions together (permits WAIT consumed are in "
     "neither value nor held).",
     [](const NameRow& r) { return r.held; }},
    {"netsem_semaphore_holders", "gauge", "Sessions holding permits of the semaphore now.",
     [](const NameRow& r) { return static_cast<std::int64_t>(r.holders); }},
    {"netsem_semaphore_waiters", "gauge", "Requests queued on the semaphore now.",
     [](const NameRow& r) { return static_cast<std::int64_t>(r.waiters); }},
    {"netsem_semaphore_grants_total", "counter",
     "Grants of the semaphore (ACQUIRE and WAIT, at once or after queueing) since it came into the table: since "
     "start for a defined one, since its CREATE or the start that recovered it for a created one.",
     [](const NameRow& r) { return static_cast<std::int64_t>(r.grants); }},
});

struct Aggregate {
  std::string_view metric;
  std::string_view labels;
  std::string_view help;
};

constexpr auto kAggregates = std::to_array<Aggregate>({
    {"netsem_semaphores_by_kind", "kind",
     "Semaphores in the table now by kind (defined, created, undefined); together they are netsem_semaphores."},
    {"netsem_metrics_max_names", "",
     "The most semaphores given per-name series (the option metrics_max_names): the first defined and created ones "
     "in name order."},
    {"netsem_unlisted_semaphores", "",
     "Semaphores without per-name series now: the undefined ones, and the defined and created ones past "
     "metrics_max_names."},
    {"netsem_unlisted_held", "", "Permits held now through ACQUIRE of the semaphores without per-name series."},
    {"netsem_unlisted_waiters", "", "Requests queued now on the semaphores without per-name series."},
});

void append_header(std::string& out, std::string_view metric, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += metric;
  out += ' ';
  out += help;  // the texts above hold no backslash and no line break
  out += "\n# TYPE ";
  out += metric;
  out += ' ';
  out += type;
  out += '\n';
}

void append_gauge(std::string& out, std::string_view metric, std::string_view labels, std::uint64_t value) {
  out += metric;
  out += labels;
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

std::uint64_t less_at_least_zero(std::uint64_t total, std::uint64_t part) {
  return total > part ? total - part : 0;
}

}  // namespace

std::string_view name_kind_name(NameKind kind) {
  switch (kind) {
    case NameKind::kDefined:
      return "defined";
    case NameKind::kUndefined:
      return "undefined";
    case NameKind::kCreated:
      return "created";
  }
  return "unknown";
}

std::string to_prometheus(const NameMetrics& metrics) {
  // The rows written: each one's label set `{name="..."}` made once.
  std::vector<const NameRow*> rows;
  std::vector<std::string> labels;
  rows.reserve(metrics.rows.size());
  labels.reserve(metrics.rows.size());
  std::uint64_t held = 0;
  std::uint64_t waiters = 0;
  for (const NameRow& row : metrics.rows) {
    if (!protocol::is_valid_utf8(row.name)) continue;
    rows.push_back(&row);
    std::string label = "{name=\"";
    append_label_value(label, row.name);
    label += '"';
    labels.push_back(std::move(label));
    held += static_cast<std::uint64_t>(std::max<std::int64_t>(row.held, 0));
    waiters += row.waiters;
  }

  std::string out;
  out.reserve(rows.size() * 420 + 2048);
  for (const NameSeries& series : kNameSeries) {
    append_header(out, series.metric, series.type, series.help);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      out += series.metric;
      out += labels[i];
      if (series.value == nullptr) {
        out += ",kind=\"";
        out += name_kind_name(rows[i]->kind);
        out += "\"} 1\n";
      } else {
        out += "} ";
        out += std::to_string(series.value(*rows[i]));
        out += '\n';
      }
    }
  }

  const NameTotals& t = metrics.totals;
  const std::uint64_t semaphores = t.defined + t.undefined + t.created;
  const std::array<std::uint64_t, 5> values = {0, metrics.max_names, less_at_least_zero(semaphores, rows.size()),
                                               less_at_least_zero(t.held, held),
                                               less_at_least_zero(t.waiters, waiters)};
  for (std::size_t i = 0; i < kAggregates.size(); ++i) {
    const Aggregate& aggregate = kAggregates[i];
    append_header(out, aggregate.metric, "gauge", aggregate.help);
    if (i == 0) {
      append_gauge(out, aggregate.metric, "{kind=\"defined\"}", t.defined);
      append_gauge(out, aggregate.metric, "{kind=\"created\"}", t.created);
      append_gauge(out, aggregate.metric, "{kind=\"undefined\"}", t.undefined);
    } else {
      append_gauge(out, aggregate.metric, "", values[i]);
    }
  }
  return out;
}

std::vector<SeriesDoc> metric_series() {
  std::vector<SeriesDoc> out;
  for (const Field& field : fields()) {
    SeriesDoc doc;
    doc.metric = prometheus_name(field).metric;
    doc.type = field.type == FieldType::kText ? "gauge" : std::string(field_type_name(field.type));
    if (field.type == FieldType::kHistogram) doc.labels = "le";
    if (field.type == FieldType::kText) doc.labels = std::string(field.name);
    doc.help = prometheus_help(field);
    out.push_back(std::move(doc));
  }
  for (const NameSeries& series : kNameSeries) {
    out.push_back({std::string(series.metric), std::string(series.type),
                   series.value == nullptr ? "name, kind" : "name", std::string(series.help)});
  }
  for (const Aggregate& aggregate : kAggregates) {
    out.push_back({std::string(aggregate.metric), "gauge", std::string(aggregate.labels), std::string(aggregate.help)});
  }
  return out;
}

std::string markdown_metrics_table() {
  std::string out = "| Series | Type | Labels | Meaning |\n|---|---|---|---|\n";
  for (const SeriesDoc& series : metric_series()) {
    out += "| `" + series.metric + "` | " + series.type + " | " + (series.labels.empty() ? "-" : series.labels) +
           " | " + series.help + " |\n";
  }
  return out;
}

}  // namespace netsem::stats
