// The rows of the field table (see fields.h for how to add one). The help
// texts are docs/protocol.md's "Meaning" column word for word.
#include "stats/fields.h"

#include <array>

#include "netsem/version.h"

namespace netsem::stats {

namespace {

// Rows are built by these, each with its accessor as a captureless lambda.
using S = const Snapshot&;
using N = const std::uint64_t&;
using H = const Histogram&;

constexpr Field counter(std::string_view name, std::string_view unit, std::string_view help, N (*get)(S)) {
  return {name, FieldType::kCounter, unit, help, get, nullptr, nullptr};
}
constexpr Field gauge(std::string_view name, std::string_view unit, std::string_view help, N (*get)(S)) {
  return {name, FieldType::kGauge, unit, help, get, nullptr, nullptr};
}
constexpr Field histogram(std::string_view name, std::string_view unit, std::string_view help, H (*get)(S)) {
  return {name, FieldType::kHistogram, unit, help, nullptr, get, nullptr};
}
constexpr Field text(std::string_view name, std::string_view help, std::string_view (*get)(S)) {
  return {name, FieldType::kText, "", help, nullptr, nullptr, get};
}

N end_count(S s, EndCause cause) {
  return s.server.session_ends[static_cast<std::size_t>(cause)];
}

constexpr auto kFields = std::to_array<Field>({
    // --- the fields of 0.1.0, in their order ---
    gauge("sessions", "", "Sessions open now, protocol v1 and ACE together.",
          [](S s) -> N { return s.gauges.sessions; }),
    gauge("semaphores", "", "Semaphores in the table now: defined, created, and undefined ones in use.",
          [](S s) -> N { return s.gauges.semaphores; }),
    gauge("held", "", "Permits held now through ACQUIRE (v1 and ACE), summed over all sessions and names.",
          [](S s) -> N { return s.gauges.held; }),
    gauge("waiters", "", "Requests queued now, over all names.", [](S s) -> N { return s.gauges.waiters; }),
    counter("grants", "", "Grants since start: ACQUIRE, WAIT and ACE requests, at once or after queueing.",
            [](S s) -> N { return s.table.grants; }),
    counter(
        "requests", "",
        "Requests read since start: every non-empty protocol v1 line, those answered with ERR included, plus one per "
        "ACE `acquire:`.",
        [](S s) -> N { return s.server.requests; }),
    gauge("uptime_s", "s", "Whole seconds since the server started.", [](S s) -> N { return s.gauges.uptime_s; }),
    gauge("last_fence", "",
          "The highest fence the data directory has reached: the last fence handed out, or after a restart the floor "
          "above which new fences start; 0 on a new data directory before the first grant.",
          [](S s) -> N { return s.gauges.last_fence; }),
    gauge("session_timeout_ms", "ms",
          "The configured session timeout in milliseconds, 0 when off. A client pings at a sixth of it.",
          [](S s) -> N { return s.gauges.session_timeout_ms; }),
    counter("connections_total", "",
            "Connections accepted as sessions since start; those refused with DENIED or LIMIT are not counted.",
            [](S s) -> N { return s.server.connections_total; }),
    counter("denied_total", "", "Connections refused with DENIED since start.",
            [](S s) -> N { return s.server.denied_total; }),
    gauge("output_bytes", "bytes",
          "Bytes of answers buffered in the server now, not yet written to their sessions' sockets, all sessions "
          "together (bounded by `max_output_bytes`).",
          [](S s) -> N { return s.server.output_bytes; }),
    counter(
        "shed_total", "",
        "Sessions closed since start because all sessions' unwritten answers exceeded `max_output_bytes` (the largest "
        "non-reader first); also counted in `session_ends_shed_total`.",
        [](S s) -> N { return s.server.shed_total; }),
    gauge("journal_ok", "",
          "1 while the journal writes; 0 while a write to the data directory fails (answers that depend on unwritten "
          "records wait meanwhile; see docs/durability.md).",
          [](S s) -> N { return s.gauges.journal_ok; }),
    gauge(
        "journal_pending_records", "",
        "Journal records made but not yet written (under `fsync = always`, not yet synced): the answers that depend on "
        "them wait. 0 in normal operation.",
        [](S s) -> N { return s.gauges.journal_pending_records; }),
    text("version", "The netsemd version, for example `0.1.0`.", [](S) { return std::string_view(kVersion); }),

    // --- added in 0.2.0 ---
    counter(
        "limited_total", "",
        "Connections refused since start because the server had all the sessions it may have (`max_connections`, or "
        "what its descriptors allow): answered LIMIT, or closed without a word (an ACE peer, or a flood of refusals), "
        "a connection from a cluster member's host once it shows it is no peer link (docs/replication.md); and AUTH "
        "requests answered LIMIT because too many token checks were waiting (docs/security.md).",
        [](S s) -> N { return s.server.limited_total; }),
    counter("timeouts_total", "",
            "Requests answered TIMEOUT since start: tries that could not be granted at once, and queued requests whose "
            "timeout passed.",
            [](S s) -> N { return s.table.timeouts; }),
    counter("cancellations_total", "", "Queued requests ended by CANCEL since start.",
            [](S s) -> N { return s.table.cancellations; }),
    counter("session_ends_quit_total", "",
            "Sessions ended since start by their peer's QUIT (protocol v1) or release (ACE).",
            [](S s) -> N { return end_count(s, EndCause::kQuit); }),
    counter("session_ends_close_total", "",
            "Sessions ended since start because their peer closed or reset the connection.",
            [](S s) -> N { return end_count(s, EndCause::kClose); }),
    counter("session_ends_timeout_total", "",
            "Sessions ended since start because they sent no request for `session_timeout_ms`.",
            [](S s) -> N { return end_count(s, EndCause::kTimeout); }),
    counter(
        "session_ends_overflow_total", "",
        "Sessions ended since start because their peer did not read its answers: more than 4 MiB unread, or no line "
        "of a LIST taken for 30 s (or the session timeout, when shorter).",
        [](S s) -> N { return end_count(s, EndCause::kOverflow); }),
    counter(
        "session_ends_shed_total", "",
        "Sessions ended since start by the server-wide cap on unwritten answers (`max_output_bytes`); the same count "
        "as `shed_total`.",
        [](S s) -> N { return end_count(s, EndCause::kShed); }),
    counter(
        "session_ends_error_total", "",
        "Sessions ended since start by an error: a line too long or a NUL byte (protocol v1); input out of turn, an "
        "acquire refused, or a queued request ended without a grant (ACE).",
        [](S s) -> N { return end_count(s, EndCause::kError); }),
    counter("session_ends_kicked_total", "",
            "Sessions ended since start by KICK, or by a reload that revoked their token (docs/security.md).",
            [](S s) -> N { return end_count(s, EndCause::kKicked); }),
    counter("session_ends_shutdown_total", "", "Sessions ended because the server stopped.",
            [](S s) -> N { return end_count(s, EndCause::kShutdown); }),
    gauge("lease_wait_ms", "ms",
          "Milliseconds left of the lease wait after a restart, during which the server grants nothing because the "
          "previous run's holders may still work under their leases (see docs/durability.md, Restarts); 0 while "
          "granting.",
          [](S s) -> N { return s.gauges.lease_wait_ms; }),
    counter("journal_writes_total", "",
            "write(2) calls on the journal file since start (a batch of records is one write).",
            [](S s) -> N { return s.journal.writes; }),
    histogram("journal_fsync_us", "us",
              "How long each fsync of the journal file took since start, in microseconds (failed ones included).",
              [](S s) -> H { return s.journal.fsync_us; }),
    histogram(
        "wait_us", "us",
        "How long each request granted after queueing waited since start, in microseconds, from its arrival to its "
        "grant (requests granted at once are not counted).",
        [](S s) -> H { return s.table.wait_us; }),
    histogram("hold_us", "us",
              "How long sessions held the permits of a name since start, in microseconds: from the grant that made the "
              "session a holder of the name to the RELEASE, KICK or end of session after which it held none.",
              [](S s) -> H { return s.table.hold_us; }),
    // Issue 15 (authentication).
    counter("auth_failures_total", "",
            "AUTH requests answered ERR AUTH since start: a token that matches none (docs/security.md).",
            [](S s) -> N { return s.server.auth_failures_total; }),
});

}  // namespace

std::string_view end_cause_name(EndCause cause) {
  switch (cause) {
    case EndCause::kQuit:
      return "quit";
    case EndCause::kClose:
      return "close";
    case EndCause::kTimeout:
      return "timeout";
    case EndCause::kOverflow:
      return "overflow";
    case EndCause::kShed:
      return "shed";
    case EndCause::kError:
      return "error";
    case EndCause::kKicked:
      return "kicked";
    case EndCause::kShutdown:
      return "shutdown";
  }
  return "unknown";
}

std::string_view field_type_name(FieldType type) {
  switch (type) {
    case FieldType::kCounter:
      return "counter";
    case FieldType::kGauge:
      return "gauge";
    case FieldType::kHistogram:
      return "histogram";
    case FieldType::kText:
      return "text";
  }
  return "unknown";
}

std::span<const Field> fields() {
  return kFields;
}

const Field* find_field(std::string_view name) {
  for (const Field& field : kFields) {
    if (field.name == name) return &field;
  }
  return nullptr;
}

}  // namespace netsem::stats
