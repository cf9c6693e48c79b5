// The API's pages of the table and the sessions as plain values: what
// GET /api/v1/semaphores, /api/v1/semaphore(s)/{name} and /api/v1/sessions
// show, with their bounds. The server fills them on the event loop
// (core/api_pages.h) and the router serialises them on an HTTP thread
// (api/router.h): every field is a copy, nothing points into the table.
//
// Header only, no behaviour. Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace netsem::api {

// The most rows one page gives (semaphores, sessions), and of holders and
// of waiters of one semaphore.
inline constexpr std::size_t kMaxPage = 1000;
inline constexpr std::size_t kDefaultPage = 100;

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
  std::string dialect;  // "v1", "v1+tls", "ace"
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

}  // namespace netsem::api
