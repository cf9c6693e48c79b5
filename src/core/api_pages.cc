// The API's pages (api_pages.h) over the table's cursors and the
// dispatcher's sessions.
#include "core/api_pages.h"

#include <cassert>
#include <string>
#include <utility>

#include "core/session_state.h"

namespace netsem::server {

namespace {

std::int64_t ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

api::SemaphoreRow row_of(const SemaphoreInfo& info) {
  return {std::string(info.name), std::string(kind_name(info.kind)), info.value, info.max, info.holders, info.waiters};
}

// "" for a session that is not open (a holder or waiter is always one of
// the dispatcher's sessions; the fallback costs nothing).
std::string peer_of(const Dispatcher& dispatcher, SessionId id) {
  const auto found = dispatcher.sessions().find(id);
  return found == dispatcher.sessions().end() ? std::string() : found->second->peer;
}

}  // namespace

api::SemaphorePage semaphore_page(const SemaphoreTable& table, std::string_view prefix, std::string_view after,
                                  std::size_t limit) {
  assert(limit >= 1);
  api::SemaphorePage page;
  bool more = false;
  table.list_after(prefix, after, [&](const SemaphoreInfo& info) {
    if (page.rows.size() == limit) {
      more = true;
      return false;
    }
    page.rows.push_back(row_of(info));
    return true;
  });
  if (more) page.next = page.rows.back().name;
  return page;
}

std::optional<api::SemaphoreDetail> semaphore_detail(const SemaphoreTable& table, const Dispatcher& dispatcher,
                                                     std::string_view name, Clock::time_point now, std::int64_t wall_ms,
                                                     std::size_t limit) {
  assert(limit >= 1);
  const SemaphoreInfo info = table.get(name);
  if (info.kind == SemaphoreKind::kAbsent) return std::nullopt;
  api::SemaphoreDetail detail;
  detail.semaphore = row_of(info);
  table.holders_after(name, now, 0, [&](const HolderInfo& h) {
    if (detail.holders.size() == limit) {
      detail.truncated = true;
      return false;
    }
    detail.holders.push_back({h.session, std::string(dispatcher.label_of(h.session)), peer_of(dispatcher, h.session),
                              h.count, h.fence, h.held_ms, wall_ms - h.held_ms});
    return true;
  });
  table.waiters_after(name, now, 0, [&](const WaiterInfo& w) {
    if (detail.waiters.size() == limit) {
      detail.truncated = true;
      return false;
    }
    api::WaiterRow row{w.session,
                       std::string(dispatcher.label_of(w.session)),
                       peer_of(dispatcher, w.session),
                       w.mode == TakeMode::kWait ? "wait" : "acquire",
                       w.count,
                       w.waited_ms,
                       std::nullopt};
    if (w.timeout_ms_left >= 0) row.timeout_left_ms = w.timeout_ms_left;
    detail.waiters.push_back(std::move(row));
    return true;
  });
  return detail;
}

api::SessionPage session_page(const SemaphoreTable& table, const Dispatcher& dispatcher, std::uint64_t after,
                              std::size_t limit, Clock::time_point now) {
  assert(limit >= 1);
  api::SessionPage page;
  const auto& by_id = dispatcher.sessions_by_id();
  for (auto it = by_id.upper_bound(after); it != by_id.end(); ++it) {
    if (page.rows.size() == limit) {
      page.next = page.rows.back().id;
      break;
    }
    const SessionState& s = *it->second;
    const SessionLoad load = table.session_load(s.id);
    page.rows.push_back({s.id, s.peer, std::string(dialect_name(s)), std::string(dispatcher.label_of(s.id)),
                         load.permits_held, load.pending, ms_between(s.began, now), ms_between(s.last_activity, now)});
  }
  return page;
}

}  // namespace netsem::server
