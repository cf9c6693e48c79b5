// Text and JSON reports of a run (see report.h).
#include "report.h"

#include <fmt/format.h>

#include <optional>

#include "wire.h"

namespace netsem::bench {

namespace {

double per_second(const Measurement& m) {
  return m.seconds > 0 ? static_cast<double>(m.ops) / m.seconds : 0;
}

std::optional<double> per_op(const std::optional<std::uint64_t>& total, std::uint64_t ops) {
  if (!total || ops == 0) return std::nullopt;
  return static_cast<double>(*total) / static_cast<double>(ops);
}

std::optional<double> bytes_per(const Measurement& m) {
  if (!m.rss_before || !m.rss_after || m.per_count == 0) return std::nullopt;
  return (static_cast<double>(*m.rss_after) - static_cast<double>(*m.rss_before)) / static_cast<double>(m.per_count);
}

double us(std::uint64_t nanos) {
  return static_cast<double>(nanos) / 1000.0;
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

template <class T>
std::string json_or_null(const std::optional<T>& value) {
  if (!value) return "null";
  if constexpr (std::is_floating_point_v<T>) return fmt::format("{:.3f}", *value);
  return fmt::format("{}", *value);
}

}  // namespace

std::string report_text(const Options& o, const Measurement& m) {
  std::string text =
      fmt::format("netsem-bench: {} {}, {} client(s), pipeline {}, {} name(s), {:.2f} s measured\n",
                  target_name(o.target), scenario_name(o.scenario), o.clients, o.pipeline, o.names, m.seconds);
  text += fmt::format("  ops            {} (op = {})\n", m.ops, m.op);
  text += fmt::format("  ops/s          {:.0f}\n", per_second(m));
  const auto& h = m.latency;
  if (h.count() > 0) {
    text += fmt::format("  acquire        p50 {:.1f} us, p99 {:.1f} us, p99.9 {:.1f} us, max {:.1f} us ({} samples)\n",
                        us(h.percentile(0.5)), us(h.percentile(0.99)), us(h.percentile(0.999)), us(h.max()), h.count());
  }
  if (m.queued > 0) text += fmt::format("  queued         {}\n", m.queued);
  if (o.queued_off) text += "  queued answers off (OPTION queued off)\n";
  if (const auto cpu = per_op(m.server_cpu_us, m.ops)) {
    text += fmt::format("  server CPU     {:.2f} us/op", *cpu);
    if (const auto kernel = per_op(m.server_system_cpu_us, m.ops))
      text += fmt::format(" ({:.2f} in the kernel)", *kernel);
    text += "\n";
  }
  if (const auto cpu = per_op(m.client_cpu_us, m.ops)) text += fmt::format("  client CPU     {:.2f} us/op\n", *cpu);
  if (m.rss_before && m.rss_after) {
    text += fmt::format("  server RSS     {:.1f} MiB before, {:.1f} MiB after\n",
                        static_cast<double>(*m.rss_before) / 1048576, static_cast<double>(*m.rss_after) / 1048576);
  }
  if (const auto bytes = bytes_per(m)) text += fmt::format("  {:<14} {:.0f}\n", "bytes/" + m.per, *bytes);
  if (m.limit) text += fmt::format("  limit          {}\n", *m.limit);
  text += fmt::format("  errors         {}{}\n", m.errors, m.errors ? " (first: " + m.first_error + ")" : "");
  for (const auto& note : m.notes) text += "  note: " + note + "\n";
  return text;
}

std::string report_json(const Options& o, const Measurement& m) {
  const auto& h = m.latency;
  std::string notes;
  for (const auto& note : m.notes) {
    if (!notes.empty()) notes += ',';
    notes += json_string(note);
  }
  return fmt::format(
      "{{\"target\":{},\"scenario\":{},\"clients\":{},\"pipeline\":{},\"names\":{},\"seconds\":{:.3f},"
      "\"warmup\":{:.3f},\"op\":{},\"ops\":{},\"ops_per_s\":{:.1f},"
      "\"latency_us\":{{\"p50\":{:.1f},\"p99\":{:.1f},\"p999\":{:.1f},\"max\":{:.1f},\"mean\":{:.1f},\"samples\":{}}},"
      "\"queued\":{},\"errors\":{},\"first_error\":{},\"server_cpu_us_per_op\":{},"
      "\"server_system_cpu_us_per_op\":{},\"client_cpu_us_per_op\":{},"
      "\"server_rss_before\":{},\"server_rss_after\":{},\"per\":{},\"bytes_per\":{},\"limit\":{},"
      "\"queued_answers\":{},\"tls\":{},\"notes\":[{}]}}\n",
      json_string(target_name(o.target)), json_string(scenario_name(o.scenario)), o.clients, o.pipeline, o.names,
      m.seconds, o.warmup, json_string(m.op), m.ops, per_second(m), us(h.percentile(0.5)), us(h.percentile(0.99)),
      us(h.percentile(0.999)), us(h.max()), h.mean() / 1000.0, h.count(), m.queued, m.errors,
      json_string(m.first_error), json_or_null(per_op(m.server_cpu_us, m.ops)),
      json_or_null(per_op(m.server_system_cpu_us, m.ops)), json_or_null(per_op(m.client_cpu_us, m.ops)),
      json_or_null(m.rss_before), json_or_null(m.rss_after), m.per.empty() ? "null" : json_string(m.per),
      json_or_null(bytes_per(m)), json_or_null(m.limit), o.queued_off ? "\"off\"" : "\"on\"",
      o.tls_port != 0 ? "true" : "false", notes);
}

}  // namespace netsem::bench
