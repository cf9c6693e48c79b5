// The writers of a Snapshot. JSON goes through nlohmann-json (an ordered
// object, so STATS keeps the table's order); STATS is not on a hot path,
// and a library that escapes strings and writes integers exactly is worth
// the few microseconds more than a hand-written concatenation.
#include "stats/render.h"

#include <nlohmann/json.hpp>

#include "stats/fields.h"

namespace netsem::stats {

namespace {

// Per-bucket counts, not cumulative ones, and no bounds: the smallest
// numbers that say it all, so that STATS stays within a line a client reads
// (render.h: the worst case is tested against protocol's 4096 bytes).
nlohmann::ordered_json histogram_json(const Histogram& histogram) {
  std::size_t used = Histogram::kBuckets;
  while (used > 0 && histogram.bucket(used - 1) == 0) --used;
  nlohmann::ordered_json buckets = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < used; ++i) buckets.push_back(histogram.bucket(i));
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  json["count"] = histogram.count();
  json["sum"] = histogram.sum();
  json["buckets"] = std::move(buckets);
  return json;
}

// HELP text escapes a backslash and a line break; a label value also a quote.
void append_escaped(std::string& out, std::string_view text, bool label) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && label) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void append_sample(std::string& out, std::string_view metric, std::string_view suffix, std::string_view labels,
                   std::string_view value) {
  out += metric;
  out += suffix;
  out += labels;
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

bool is_journal_field(const Field& field) {
  return field.name.starts_with("journal_");
}

std::string to_json(const Snapshot& snapshot, const ClusterFigures* cluster) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  for (const Field& field : fields()) {
    if (cluster != nullptr && is_journal_field(field)) continue;
    const std::string name(field.name);
    switch (field.type) {
      case FieldType::kCounter:
      case FieldType::kGauge:
        json[name] = field.number(snapshot);
        break;
      case FieldType::kHistogram:
        json[name] = histogram_json(field.histogram(snapshot));
        break;
      case FieldType::kText:
        json[name] = std::string(field.text(snapshot));
        break;
    }
  }
  if (cluster != nullptr) json["cluster"] = nlohmann::ordered_json::parse(cluster_json(*cluster));
  return json.dump();
}

PrometheusName prometheus_name(const Field& field) {
  std::string_view base = field.name;
  int decimals = -1;
  std::string_view suffix;
  if (field.unit == "us") {
    decimals = 6, suffix = "_us";
  } else if (field.unit == "ms") {
    decimals = 3, suffix = "_ms";
  } else if (field.unit == "s") {
    decimals = 0, suffix = "_s";
  }
  std::string metric = "netsem_";
  if (decimals >= 0) {
    if (base.ends_with(suffix)) base.remove_suffix(suffix.size());
    metric += base;
    metric += "_seconds";
  } else {
    metric += base;
    decimals = 0;
  }
  if (field.type == FieldType::kCounter && !metric.ends_with("_total")) metric += "_total";
  return {std::move(metric), decimals};
}

std::string prometheus_help(const Field& field) {
  std::string help(field.help);
  if (field.unit == "us" || field.unit == "ms") help += " Here in seconds.";
  return help;
}

std::string scaled_decimal(std::uint64_t value, int decimals) {
  std::string digits = std::to_string(value);
  if (decimals <= 0) return digits;
  const auto places = static_cast<std::size_t>(decimals);
  if (digits.size() <= places) digits.insert(0, places + 1 - digits.size(), '0');
  digits.insert(digits.size() - places, 1, '.');
  while (digits.back() == '0') digits.pop_back();
  if (digits.back() == '.') digits.pop_back();
  return digits;
}

void append_histogram(std::string& out, std::string_view metric, const Histogram& histogram, int decimals) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < Histogram::kBounds; ++i) {
    cumulative += histogram.bucket(i);
    append_sample(out, metric, "_bucket", "{le=\"" + scaled_decimal(Histogram::bound(i), decimals) + "\"}",
                  std::to_string(cumulative));
  }
  append_sample(out, metric, "_bucket", "{le=\"+Inf\"}", std::to_string(histogram.count()));
  append_sample(out, metric, "_sum", "", scaled_decimal(histogram.sum(), decimals));
  append_sample(out, metric, "_count", "", std::to_string(histogram.count()));
}

void append_label_value(std::string& out, std::string_view value) {
  append_escaped(out, value, true);
}

std::string to_prometheus(const Snapshot& snapshot, const ClusterFigures* cluster) {
  std::string out;
  for (const Field& field : fields()) {
    if (cluster != nullptr && is_journal_field(field)) continue;
    const auto [metric, decimals] = prometheus_name(field);
    out += "# HELP " + metric + ' ';
    append_escaped(out, prometheus_help(field), false);
    out += "\n# TYPE " + metric + ' ';
    out += field.type == FieldType::kText ? "gauge" : field_type_name(field.type);
    out += '\n';
    switch (field.type) {
      case FieldType::kCounter:
      case FieldType::kGauge:
        append_sample(out, metric, "", "", scaled_decimal(field.number(snapshot), decimals));
        break;
      case FieldType::kHistogram:
        append_histogram(out, metric, field.histogram(snapshot), decimals);
        break;
      case FieldType::kText: {
        std::string labels = "{" + std::string(field.name) + "=\"";
        append_escaped(labels, field.text(snapshot), true);
        labels += "\"}";
        append_sample(out, metric, "", labels, "1");
        break;
      }
    }
  }
  if (cluster != nullptr) out += cluster_prometheus(*cluster);
  return out;
}

std::string markdown_table() {
  std::string out = "| Name | Type | Unit | Meaning |\n|---|---|---|---|\n";
  for (const Field& field : fields()) {
    out += "| `";
    out += field.name;
    out += "` | ";
    out += field_type_name(field.type);
    out += " | ";
    out += field.unit.empty() ? std::string_view("-") : field.unit;
    out += " | ";
    out += field.help;
    out += " |\n";
  }
  return out;
}

}  // namespace netsem::stats
