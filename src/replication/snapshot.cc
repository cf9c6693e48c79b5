// StateMachine's snapshot and restore (state_machine.h): the whole state in
// one frame (wire.h), checked whole before anything is replaced. The layout
// is in docs/replication.md ("Byte formats").
#include <fmt/format.h>

#include "protocol/fields.h"
#include "protocol/names.h"
#include "replication/state_machine.h"
#include "replication/wire.h"

namespace netsem::replication {
namespace {

std::int64_t to_ns(server::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t - server::TimePoint{}).count();
}

server::TimePoint from_ns(std::int64_t ns) {
  return server::TimePoint{} + std::chrono::duration_cast<server::TimePoint::duration>(std::chrono::nanoseconds(ns));
}

// The table's times come from log times: 0 .. kMaxLogTimeMs, in nanoseconds
// (so that no difference of two of them overflows).
bool time_in_range(std::int64_t ns) {
  return ns >= 0 && ns <= kMaxLogTimeMs * 1'000'000;
}

// The smallest encoding of a session, a semaphore, a holder and a waiter:
// a count beyond what the bytes left could hold is refused before anything
// is allocated for it.
// (A version 2 session's secret is at least its u16 length.)
constexpr std::size_t kMinSessionBytes = 8 + 3 * 2 + 2 * 8 + 2 * 8 + 2;
constexpr std::size_t kMinMemberBytes = 8 + 2;
constexpr std::size_t kMinSemaphoreBytes = 2 + 1 + 3 * 8 + 2 * 4;
constexpr std::size_t kMinHolderBytes = 5 * 8;
constexpr std::size_t kMinWaiterBytes = 8 + 2 + 1 + 4 * 8;

}  // namespace

std::string StateMachine::snapshot() const {
  wire::Writer w = wire::begin_frame(kSnapshotMagic, kSnapshotVersion);
  w.u64(last_index_);
  w.i64(log_time_ms_);
  w.u64(last_session_);
  w.i64(session_timeout_ms_);
  w.u32(static_cast<std::uint32_t>(sessions_.size()));
  for (const auto& [id, s] : sessions_) {
    w.u64(id);
    w.str(s.label);
    w.str(s.peer);
    w.str(s.dialect);
    w.i64(s.opened_ms);
    w.i64(s.last_activity_ms);
    w.u64(s.host);
    w.u64(s.last_seq);
    w.raw(s.secret_digest);
  }
  w.u32(static_cast<std::uint32_t>(members_.size()));
  for (const auto& [id, address] : members_) {
    w.u64(id);
    w.str(address);
  }
  const server::TableImage image = table_->export_image();
  w.u64(image.last_fence);
  w.u64(image.last_order);
  w.i64(to_ns(image.time));
  w.u8(image.grants_held ? 1 : 0);
  w.u32(static_cast<std::uint32_t>(image.semaphores.size()));
  for (const server::TableImage::Semaphore& s : image.semaphores) {
    w.str(s.name);
    w.u8(static_cast<std::uint8_t>(s.kind));
    w.i64(s.value);
    w.i64(s.max);
    w.u64(s.grants);
    w.u32(static_cast<std::uint32_t>(s.holders.size()));
    for (const auto& h : s.holders) {
      w.u64(h.session);
      w.i64(h.count);
      w.u64(h.fence);
      w.i64(to_ns(h.since));
      w.u64(h.order);
    }
    w.u32(static_cast<std::uint32_t>(s.queue.size()));
    for (const auto& q : s.queue) {
      w.u64(q.session);
      w.str(q.tag);
      w.u8(static_cast<std::uint8_t>(q.mode));
      w.i64(q.count);
      w.i64(q.timeout_ms);
      w.i64(to_ns(q.queued_at));
      w.u64(q.order);
    }
  }
  return wire::end_frame(w);
}

Status StateMachine::restore(std::string_view bytes) {
  std::uint8_t version = 0;
  auto body = wire::open_frame(bytes, kSnapshotMagic, kOldestSnapshotVersion, kSnapshotVersion, version, "snapshot");
  if (!body) return body.status();
  const auto corrupt = [](std::string_view why) {
    return Status(StatusCode::kCorruption, "snapshot: " + std::string(why));
  };
  wire::Reader r(*body);
  const std::uint64_t last_index = r.u64();
  const std::int64_t log_time = r.i64();
  const SessionId last_session = r.u64();
  const std::int64_t session_timeout = r.i64();
  if (!r.ok()) return corrupt("truncated");
  if (log_time < 0 || log_time > kMaxLogTimeMs) return corrupt("log time out of range");
  if (session_timeout < 0 || session_timeout > kMaxLogTimeMs) return corrupt("session timeout out of range");

  std::map<SessionId, SessionRecord> sessions;
  std::set<std::pair<std::int64_t, SessionId>> activity;
  server::TableImage image;
  const std::uint32_t session_count = r.u32();
  if (session_count > r.remaining() / kMinSessionBytes) return corrupt("more sessions than bytes");
  for (std::uint32_t i = 0; i < session_count; ++i) {
    SessionRecord s;
    s.id = r.u64();
    s.label = r.str(protocol::kMaxNameBytes);
    s.peer = r.str(kMaxPeerBytes);
    s.dialect = r.str(kMaxDialectBytes);
    s.opened_ms = r.i64();
    s.last_activity_ms = r.i64();
    s.host = r.u64();
    s.last_seq = r.u64();
    bool valid_secret = true;
    if (version >= 3) {
      s.secret_digest = r.raw(kSecretDigestBytes);
    } else {
      // Version 2 held the secret in clear: only its digest is kept.
      const std::string_view secret = r.str(kMaxSecretBytes);
      valid_secret = is_valid_secret(secret);
      if (valid_secret) s.secret_digest = secret_digest(secret);
    }
    if (!r.ok()) return corrupt("truncated session");
    if (s.id == 0 || s.id > last_session || (!image.sessions.empty() && s.id <= image.sessions.back())) {
      return corrupt(fmt::format("session {}: id out of order or above the last assigned", s.id));
    }
    if (!s.label.empty() && protocol::check_name(s.label) != protocol::ErrorCode::kNone) {
      return corrupt(fmt::format("session {}: invalid label", s.id));
    }
    if (s.opened_ms < 0 || s.opened_ms > s.last_activity_ms || s.last_activity_ms > log_time) {
      return corrupt(fmt::format("session {}: times out of range", s.id));
    }
    if (s.host == 0) return corrupt(fmt::format("session {}: host 0", s.id));
    if (!valid_secret) return corrupt(fmt::format("session {}: invalid secret", s.id));
    image.sessions.push_back(s.id);
    activity.emplace(s.last_activity_ms, s.id);
    sessions.emplace(s.id, std::move(s));
  }

  std::map<ServerId, std::string> members;
  const std::uint32_t member_count = r.u32();
  if (!r.ok() || member_count > r.remaining() / kMinMemberBytes) return corrupt("more members than bytes");
  for (std::uint32_t i = 0; i < member_count; ++i) {
    const ServerId id = r.u64();
    std::string address(r.str(kMaxPeerBytes));
    if (!r.ok()) return corrupt("truncated member");
    if (id == 0 || (!members.empty() && id <= members.rbegin()->first)) {
      return corrupt(fmt::format("member {}: id 0 or out of order", id));
    }
    if (!is_valid_member_address(address)) return corrupt(fmt::format("member {}: invalid client address", id));
    members.emplace(id, std::move(address));
  }

  image.last_fence = r.u64();
  image.last_order = r.u64();
  const std::int64_t table_time = r.i64();
  if (!time_in_range(table_time)) return corrupt("table time out of range");
  image.time = from_ns(table_time);
  const std::uint8_t grants_held = r.u8();
  if (grants_held > 1) return corrupt("grants_held is not a boolean");
  image.grants_held = grants_held == 1;
  const std::uint32_t semaphore_count = r.u32();
  if (!r.ok() || semaphore_count > r.remaining() / kMinSemaphoreBytes) return corrupt("more semaphores than bytes");
  image.semaphores.reserve(semaphore_count);
  for (std::uint32_t i = 0; i < semaphore_count && r.ok(); ++i) {
    server::TableImage::Semaphore& s = image.semaphores.emplace_back();
    s.name = r.str(protocol::kMaxNameBytes);
    s.kind = static_cast<server::SemaphoreKind>(r.u8());
    s.value = r.i64();
    s.max = r.i64();
    s.grants = r.u64();
    const std::uint32_t holders = r.u32();
    if (holders > r.remaining() / kMinHolderBytes) return corrupt("more holders than bytes");
    for (std::uint32_t k = 0; k < holders; ++k) {
      server::TableImage::Holder& h = s.holders.emplace_back();
      h.session = r.u64();
      h.count = r.i64();
      h.fence = r.u64();
      const std::int64_t since = r.i64();
      h.order = r.u64();
      if (!time_in_range(since)) return corrupt("holder time out of range");
      h.since = from_ns(since);
    }
    const std::uint32_t waiters = r.u32();
    if (waiters > r.remaining() / kMinWaiterBytes) return corrupt("more waiters than bytes");
    for (std::uint32_t k = 0; k < waiters && r.ok(); ++k) {
      server::TableImage::Waiter& q = s.queue.emplace_back();
      q.session = r.u64();
      q.tag = r.str(protocol::kMaxTagBytes);
      q.mode = static_cast<server::TakeMode>(r.u8());
      q.count = r.i64();
      q.timeout_ms = r.i64();
      const std::int64_t queued_at = r.i64();
      q.order = r.u64();
      if (!time_in_range(queued_at)) return corrupt("waiter time out of range");
      q.queued_at = from_ns(queued_at);
    }
  }
  if (!r.done()) return corrupt("malformed");

  auto table = make_table();
  if (Status imported = table->import_image(image); !imported) return corrupt(imported.message());
  table_ = std::move(table);
  sessions_ = std::move(sessions);
  members_ = std::move(members);
  activity_ = std::move(activity);
  last_session_ = last_session;
  session_timeout_ms_ = session_timeout;
  log_time_ms_ = log_time;
  last_index_ = last_index;
  return Status::ok();
}

}  // namespace netsem::replication
