// What the HTTP API reads and asks of the server, as plain values: the
// Backend interface the router (api/router.h) calls, implemented by the
// server's glue (server/http_backend.h) over the published snapshot, the
// history ring and loop queries. Nothing here points into the table: every
// row is a copy made on the event loop.
//
// Thread safety: Backend's methods are called from HTTP threads, several at
// once; an implementation must allow that.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"
#include "stats/history.h"
#include "stats/stats.h"

namespace netsem::api {

// The most rows one page gives (semaphores, sessions), and of holders and
// of waiters of one semaphore.
inline constexpr std::size_t kMaxPage = 1000;
inline constexpr std::size_t kDefaultPage = 100;

enum class Readiness : std::uint8_t {
  kStarting,  // recovering the journal, not yet listening
  kReady,     // serving requests
  kStopping,  // shutting down
};

struct SemaphoreRow {
  std::string name;  // decoded
  std::string kind;  // "defined", "created", "undefined"
  std::int64_t value = 0;
  std::int64_t max = 0;
  std::uint64_t holders = 0;
  std::uint64_t waiters = 0;
};

struct SemaphorePage {
  std::vector<SemaphoreRow> rows;   // in name order
  std::optional<std::string> next;  // the name to resume after, when more may follow
};

struct HolderRow {
  std::uint64_t session = 0;
  std::string label;  // "" for none
  std::string peer;   // "addr:port"
  std::int64_t count = 0;
  std::uint64_t fence = 0;
  std::int64_t held_ms = 0;
  std::int64_t since_ms = 0;  // wall clock, ms since the Unix epoch
};

struct WaiterRow {
  std::uint64_t session = 0;
  std::string label;
  std::string peer;
  std::string mode;  // "acquire" or "wait"
  std::int64_t count = 0;
  std::int64_t waited_ms = 0;
  std::optional<std::int64_t> timeout_left_ms;  // nullopt: waits for ever
};

struct SemaphoreDetail {
  SemaphoreRow semaphore;
  std::vector<HolderRow> holders;  // in the order they became holders, at most kMaxPage
  std::vector<WaiterRow> waiters;  // in queue order, at most kMaxPage
  bool truncated = false;          // more holders or waiters than shown
};

struct SessionRow {
  std::uint64_t id = 0;
  std::string peer;
  std::string dialect;  // "v1", "ace"
  std::string label;
  std::int64_t permits_held = 0;
  std::uint64_t pending = 0;
  std::int64_t age_ms = 0;
  std::int64_t idle_ms = 0;
};

struct SessionPage {
  std::vector<SessionRow> rows;       // in id order
  std::optional<std::uint64_t> next;  // the id to resume after, when more may follow
};

class Backend {
 public:
  virtual ~Backend() = default;

  // --- published state: no work on the event loop ---
  virtual stats::Snapshot snapshot() const = 0;
  virtual std::vector<stats::HistorySample> history() const = 0;
  virtual Readiness readiness() const = 0;
  // When the server started: wall clock, ms since the Unix epoch.
  virtual std::int64_t started_at_ms() const = 0;
  // Whether a peer (IPv6 or IPv4-mapped) has the admin right now (admin_networks).
  virtual bool is_admin(const std::array<std::uint8_t, 16>& peer) const = 0;
  // Whether the listener answers to host name `name` (lower case, no port;
  // never an IP literal, which is always answered): http_hosts.
  virtual bool answers_to(std::string_view name) const = 0;

  // --- loop queries: kBusy when the loop did not answer in time or too
  // many wait, kShutdown when the server stops ---

  // At most `limit` semaphores whose names start with `prefix`, after `after`.
  virtual Result<SemaphorePage> semaphores(std::string prefix, std::string after, std::size_t limit) = 0;
  // One semaphore; nullopt for an absent name.
  virtual Result<std::optional<SemaphoreDetail>> semaphore(std::string name) = 0;
  // At most `limit` sessions with ids above `after`.
  virtual Result<SessionPage> sessions(std::uint64_t after, std::size_t limit) = 0;
  // Ends session `id` as protocol 1.1's KICK does, telling it `reason`;
  // false when no such session is open.
  virtual Result<bool> kick(std::uint64_t id, std::string reason) = 0;
  // The Prometheus exposition of GET /metrics.
  virtual Result<std::string> metrics() = 0;
};

}  // namespace netsem::api
