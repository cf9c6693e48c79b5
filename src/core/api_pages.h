// The HTTP API's pages of the table and the sessions, built with no socket:
// one page of GET /api/v1/semaphores (names in the table's order, by
// prefix, resumed after a name), one semaphore with its holders and queue
// (GET /api/v1/semaphore?name= and /api/v1/semaphores/{name}), and one page
// of GET /api/v1/sessions (by id, resumed after an id). Each copies what it
// shows into the api's plain structs (api/pages.h): names, numbers, labels,
// peers, no pointer into the table, so the value may cross to another
// thread and outlive the turn.
//
// Cost: a page visits at most `limit` + 1 entries of the table or of the
// sessions (the one past the last row says whether more follow), through
// the table's cursors (list_after, holders_after, waiters_after) and the
// dispatcher's id-ordered sessions, each found in O(log n): a million names
// or a name with 100k holders never make one long loop turn.
//
// Time is passed in (`now` on the dispatcher's steady clock, the table's
// time; `wall_ms` on the wall clock for the holders' since_ms): nothing here
// reads a clock, so tests drive it by hand.
//
// API: the server's HTTP glue (server/http_backend.cc) calls these inside a
// loop job (LoopJobs) and hands the value to the HTTP thread, which
// serialises it (api/router.cc).
//
// Thread safety: none; call on the thread that owns the table and the
// dispatcher (netsemd's event loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "api/pages.h"
#include "core/dispatcher.h"
#include "table/semaphore_table.h"

namespace netsem::server {

// The semaphores whose names start with `prefix` and sort after `after`
// ("" for the first), at most `limit`, in byte order of names; `next` is
// the last row's name when at least one more follows, else nullopt (a page
// that ends exactly at the last name says so). REQUIRES: limit >= 1.
api::SemaphorePage semaphore_page(const SemaphoreTable& table, std::string_view prefix, std::string_view after,
                                  std::size_t limit);

// Semaphore `name` with its holders (in the order they became holders) and
// its queued requests (in queue order), each with its session's label and
// peer; at most `limit` holders and `limit` waiters, `truncated` when more
// of either exist. held_ms and waited_ms are counted to `now`, since_ms is
// `wall_ms` less held_ms; a waiter whose timeout is past (not yet expired)
// shows 0 left, one that waits for ever nullopt. nullopt for a name that is
// not a semaphore. REQUIRES: limit >= 1.
std::optional<api::SemaphoreDetail> semaphore_detail(const SemaphoreTable& table, const Dispatcher& dispatcher,
                                                     std::string_view name, Clock::time_point now, std::int64_t wall_ms,
                                                     std::size_t limit = api::kMaxPage);

// The open sessions with ids above `after`, at most `limit`, in id order,
// with what each holds and has queued; age_ms and idle_ms counted to `now`.
// `next` is the last row's id when at least one more follows. A session
// that has not yet sent a byte shows dialect "v1". REQUIRES: limit >= 1.
api::SessionPage session_page(const SemaphoreTable& table, const Dispatcher& dispatcher, std::uint64_t after,
                              std::size_t limit, Clock::time_point now);

}  // namespace netsem::server
