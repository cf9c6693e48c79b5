// What the HTTP API reads and asks of the server, as plain values: the
// Backend interface the router (api/router.h) calls, implemented by the
// server's glue (server/http_backend.h) over the published snapshot, the
// history ring and loop queries. The pages it returns (api/pages.h) point
// nowhere into the table: every row is a copy made on the event loop.
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

#include "api/pages.h"
#include "auth/rights.h"
#include "netsem/status.h"
#include "stats/cluster_figures.h"
#include "stats/history.h"
#include "stats/stats.h"

namespace netsem::api {

enum class Readiness : std::uint8_t {
  kStarting,  // recovering the journal, not yet listening
  kReady,     // serving requests
  kStopping,  // shutting down
};

class Backend {
 public:
  virtual ~Backend() = default;

  // --- published state: no work on the event loop ---
  virtual stats::Snapshot snapshot() const = 0;
  // A server in a cluster: its cluster figures, published with snapshot()
  // (STATS's `cluster` object); nullopt for a single server.
  virtual std::optional<stats::ClusterFigures> cluster_figures() const { return std::nullopt; }
  virtual std::vector<stats::HistorySample> history() const = 0;
  virtual Readiness readiness() const = 0;
  // Why a server that is kReady should get no clients now, for /readyz (a
  // cluster member with no leader known, or behind the log); empty: none.
  virtual std::string unready_reason() const { return {}; }
  // When the server started: wall clock, ms since the Unix epoch.
  virtual std::int64_t started_at_ms() const = 0;
  // Whether a peer (IPv6 or IPv4-mapped) has the admin right now (admin_networks).
  virtual bool is_admin(const std::array<std::uint8_t, 16>& peer) const = 0;
  // Whether requests need a bearer token (tokens are configured:
  // docs/security.md, "The HTTP API"). None by default.
  virtual bool auth_required() const { return false; }
  // The rights of a bearer token, nullopt for a token that matches none.
  // May block the calling HTTP thread for a slow hash (never the loop).
  virtual std::optional<auth::Rights> bearer_rights(std::string_view token) {
    (void)token;
    return std::nullopt;
  }
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
  // Ends session `id` as protocol 1.1's KICK does, telling it `reason`.
  struct KickOutcome {
    bool kicked = false;    // it was open here, and is ended
    std::string elsewhere;  // (a cluster) open, but hosted by another server: which ("server 2 at 10.0.0.2:53559")
  };
  // Neither set: no such session is open.
  virtual Result<KickOutcome> kick(std::uint64_t id, std::string reason) = 0;
  // The Prometheus exposition of GET /metrics.
  virtual Result<std::string> metrics() = 0;
};

}  // namespace netsem::api
