// The calls of Client that only ask the server: GET, LIST, CREATE, DELETE
// and PING, STATS, the listings and KICK of protocol 1.1 (holders, waiters,
// sessions, kick), and CLUSTER (get of a `$` name reads this host's own
// semaphore, which no server knows). None falls back: they report on the
// server or change it (made between two sessions, they wait for the next
// round of connection attempts: Impl::round_trip). The
// 1.1 verbs check the version the server gave in its HELLO answer
// (Connection::Counters) before sending, and read an UNKNOWN_VERB answer
// the same way (the session may have moved to another server between the
// check and the send), so a 1.0 server gets a clear kProtocol, never a
// library bug (kInternal).
#include <fmt/format.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "client/client_impl.h"
#include "netsem/client.h"
#include "protocol/answers.h"
#include "protocol/fields.h"
#include "protocol/requests.h"

namespace netsem {

using client::check_api_name;
using client::is_local_name;
using client::status_of;
using protocol::AnswerType;
using std::chrono::milliseconds;

namespace {

// kProtocol: the server speaks 1.0 and `verb` is of 1.1.
Status needs_v11(const client::Connection& connection, std::string_view verb) {
  const client::Connection::Counters counters = connection.counters();
  const std::string server = counters.server.empty() ? std::string("the server") : "server " + counters.server;
  const std::string version =
      counters.connected ? fmt::format("{}.{}", counters.protocol_major, counters.protocol_minor) : std::string("1.0");
  return Status(StatusCode::kProtocol, fmt::format("{} speaks protocol {}; {} needs 1.1", server, version, verb));
}

// OK when the current session's server speaks 1.1 (or there is no session:
// the call then fails as every call without a server does).
Status check_v11(const client::Connection& connection, std::string_view verb) {
  const client::Connection::Counters counters = connection.counters();
  if (!counters.connected || counters.protocol_major > 1 ||
      (counters.protocol_major == 1 && counters.protocol_minor >= 1)) {
    return {};
  }
  return needs_v11(connection, verb);
}

// The status of a 1.1 request's final answer: status_of, except that
// UNKNOWN_VERB means a 1.0 server.
Status status_of_v11(const client::Connection& connection, const client::Reply& reply, std::string_view verb,
                     std::string_view what) {
  if (reply.failure.is_ok() && reply.type == protocol::AnswerType::kError &&
      reply.error == protocol::ErrorCode::kUnknownVerb) {
    return needs_v11(connection, verb);
  }
  return status_of(reply, what);
}

Status check_server_name(std::string_view name, std::string_view verb) {
  if (Status status = client::check_api_name(name); !status.is_ok()) return status;
  if (client::is_local_name(name)) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{} \"{}\": a `$` name is host-local: the server knows nothing of it", verb, name));
  }
  return {};
}

Status not_server_state(std::string_view name) {
  return Status(StatusCode::kInvalidArgument, fmt::format("\"{}\" is host-local: it has no server state", name));
}

// GET's answer or a LIST ITEM as the API returns it.
SemaphoreInfo info_of(protocol::SemaphoreItem&& item) {
  return SemaphoreInfo{.name = std::move(item.name),
                       .value = item.value,
                       .max = item.max,
                       .holders = item.holders,
                       .waiters = item.waiters,
                       .kind = std::move(item.kind)};
}

// The ITEM rows of a listing's reply, each read by `parse` into T and
// turned into the API's type by `convert`; kInternal for a row that does not
// parse (a server bug: no half-read listing is returned).
template <typename Item, typename Info, typename Parse, typename Convert>
Result<std::vector<Info>> rows_of(const client::Reply& reply, std::string_view what, Parse parse, Convert convert) {
  std::vector<Info> rows;
  rows.reserve(reply.items.size());
  for (const std::string& line : reply.items) {
    Item item;
    if (!parse(line, item)) return Status(StatusCode::kInternal, fmt::format("{}: bad ITEM \"{}\"", what, line));
    rows.push_back(convert(std::move(item)));
  }
  return rows;
}

}  // namespace

Result<SemaphoreInfo> Client::get(std::string_view name) {
  if (Status status = check_api_name(name); !status.is_ok()) return status;
  if (is_local_name(name)) {
    const std::int64_t limit = impl_->options.limit(name);
    auto local = impl_->local->info(name, limit);
    if (!local) return local.status();
    return SemaphoreInfo{.name = std::string(name),
                         .value = local->value,
                         .max = limit,
                         .holders = static_cast<std::uint64_t>(local->held),
                         .waiters = static_cast<std::uint64_t>(local->waiting),
                         .kind = "local"};
  }
  const std::string what = fmt::format("GET \"{}\"", name);
  Result<client::Reply> reply =
      impl_->round_trip(what, [&](std::string& line, std::string_view tag) { protocol::encode_get(line, tag, name); });
  if (!reply) return reply.status();
  if (Status status = status_of(*reply, what); !status.is_ok()) return status;
  protocol::SemaphoreItem item;
  if (!protocol::parse_get(reply->rest, item))
    return Status(StatusCode::kInternal, what + ": bad answer " + reply->rest);
  item.name = std::string(name);
  return info_of(std::move(item));
}

Result<std::vector<SemaphoreInfo>> Client::list(std::string_view prefix) {
  if (!prefix.empty()) {
    if (is_local_name(prefix)) return not_server_state(prefix);
    if (Status status = check_api_name(prefix); !status.is_ok()) return status;
  }
  Result<client::Reply> reply = impl_->round_trip("LIST", [&](std::string& line, std::string_view tag) {
    protocol::encode_list(line, tag, prefix.empty() ? std::nullopt : std::optional<std::string_view>(prefix));
  });
  if (!reply) return reply.status();
  if (Status status = status_of(*reply, "LIST"); !status.is_ok()) return status;
  std::vector<SemaphoreInfo> infos;
  infos.reserve(reply->items.size());
  for (const std::string& line : reply->items) {
    // A name this build refuses (one an older server stored before a rule
    // tightened) is listed as it came, so that one such name does not hide
    // the others.
    protocol::SemaphoreItem item;
    if (!protocol::parse_list_item(line, item)) return Status(StatusCode::kInternal, "LIST: bad ITEM " + line);
    infos.push_back(info_of(std::move(item)));
  }
  return infos;
}

Status Client::create(std::string_view name, std::int64_t value, std::int64_t max, bool exclusive) {
  if (Status status = check_api_name(name); !status.is_ok()) return status;
  if (is_local_name(name)) return not_server_state(name);
  if (value < 0 || max < 1 || value > max || max > protocol::kMaxCount) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("CREATE needs 0 <= value <= max, 1 <= max <= {}", protocol::kMaxCount));
  }
  const std::string what = fmt::format("CREATE \"{}\"", name);
  Result<client::Reply> reply = impl_->round_trip(what, [&](std::string& line, std::string_view tag) {
    protocol::encode_create(line, tag, name, value, max, exclusive);
  });
  if (!reply) return reply.status();
  return status_of(*reply, what);
}

Status Client::remove(std::string_view name) {
  if (Status status = check_api_name(name); !status.is_ok()) return status;
  if (is_local_name(name)) return not_server_state(name);
  const std::string what = fmt::format("DELETE \"{}\"", name);
  Result<client::Reply> reply = impl_->round_trip(
      what, [&](std::string& line, std::string_view tag) { protocol::encode_delete(line, tag, name); });
  if (!reply) return reply.status();
  return status_of(*reply, what);
}

Result<std::string> Client::ping(std::string_view payload) {
  // The payload travels raw in one field of a line.
  if (!protocol::is_valid_ping_payload(payload)) {
    return Status(StatusCode::kInvalidArgument, "a ping payload is at most 4000 bytes without spaces or line ends");
  }
  Result<client::Reply> reply = impl_->round_trip(
      "PING", [&](std::string& line, std::string_view tag) { protocol::encode_ping(line, tag, payload); });
  if (!reply) return reply.status();
  if (reply->type != AnswerType::kPong) {
    return Status(StatusCode::kInternal, fmt::format("PING: unexpected answer {}", reply->rest));
  }
  return std::move(reply->rest);
}

Result<std::string> Client::server_stats() {
  Result<client::Reply> reply =
      impl_->round_trip("STATS", [](std::string& line, std::string_view tag) { protocol::encode_stats(line, tag); });
  if (!reply) return reply.status();
  if (Status status = status_of(*reply, "STATS"); !status.is_ok()) return status;
  if (reply->type != protocol::AnswerType::kOk || reply->rest.empty()) {
    return Status(StatusCode::kInternal, "STATS: unexpected answer " + reply->rest);
  }
  return std::move(reply->rest);
}

Result<std::vector<HolderInfo>> Client::holders(std::string_view name) {
  if (Status status = check_server_name(name, "HOLDERS"); !status.is_ok()) return status;
  if (Status status = check_v11(*impl_->connection, "HOLDERS"); !status.is_ok()) return status;
  const std::string what = fmt::format("HOLDERS \"{}\"", name);
  Result<client::Reply> reply = impl_->round_trip(
      what, [&](std::string& line, std::string_view tag) { protocol::encode_holders(line, tag, name); });
  if (!reply) return reply.status();
  if (Status status = status_of_v11(*impl_->connection, *reply, "HOLDERS", what); !status.is_ok()) return status;
  return rows_of<protocol::HolderItem, HolderInfo>(*reply, what, protocol::parse_holder_item,
                                                   [](protocol::HolderItem&& item) {
                                                     return HolderInfo{.session_id = item.session_id,
                                                                       .count = item.count,
                                                                       .fence = item.fence,
                                                                       .held = milliseconds(item.held_ms),
                                                                       .label = std::move(item.label)};
                                                   });
}

Result<std::vector<WaiterInfo>> Client::waiters(std::string_view name) {
  if (Status status = check_server_name(name, "WAITERS"); !status.is_ok()) return status;
  if (Status status = check_v11(*impl_->connection, "WAITERS"); !status.is_ok()) return status;
  const std::string what = fmt::format("WAITERS \"{}\"", name);
  Result<client::Reply> reply = impl_->round_trip(
      what, [&](std::string& line, std::string_view tag) { protocol::encode_waiters(line, tag, name); });
  if (!reply) return reply.status();
  if (Status status = status_of_v11(*impl_->connection, *reply, "WAITERS", what); !status.is_ok()) return status;
  return rows_of<protocol::WaiterItem, WaiterInfo>(
      *reply, what, protocol::parse_waiter_item, [](protocol::WaiterItem&& item) {
        return WaiterInfo{
            .session_id = item.session_id,
            .count = item.count,
            .waited = milliseconds(item.waited_ms),
            .timeout_left = item.timeout_ms_left < 0 ? std::nullopt : std::optional(milliseconds(item.timeout_ms_left)),
            .label = std::move(item.label)};
      });
}

Result<std::vector<SessionInfo>> Client::sessions() {
  if (Status status = check_v11(*impl_->connection, "SESSIONS"); !status.is_ok()) return status;
  Result<client::Reply> reply = impl_->round_trip(
      "SESSIONS", [](std::string& line, std::string_view tag) { protocol::encode_sessions(line, tag); });
  if (!reply) return reply.status();
  if (Status status = status_of_v11(*impl_->connection, *reply, "SESSIONS", "SESSIONS"); !status.is_ok()) {
    return status;
  }
  return rows_of<protocol::SessionItem, SessionInfo>(*reply, "SESSIONS", protocol::parse_session_item,
                                                     [](protocol::SessionItem&& item) {
                                                       return SessionInfo{.session_id = item.session_id,
                                                                          .peer = std::move(item.peer),
                                                                          .dialect = std::move(item.dialect),
                                                                          .permits_held = item.permits_held,
                                                                          .pending = item.pending,
                                                                          .age = milliseconds(item.age_ms),
                                                                          .idle = milliseconds(item.idle_ms),
                                                                          .label = std::move(item.label)};
                                                     });
}

Status Client::kick(std::uint64_t session_id) {
  if (session_id == 0) return Status(StatusCode::kInvalidArgument, "KICK: session ids start at 1");
  if (Status status = check_v11(*impl_->connection, "KICK"); !status.is_ok()) return status;
  const std::string what = fmt::format("KICK {}", session_id);
  Result<client::Reply> reply = impl_->round_trip(
      what, [&](std::string& line, std::string_view tag) { protocol::encode_kick(line, tag, session_id); });
  if (!reply) return reply.status();
  return status_of_v11(*impl_->connection, *reply, "KICK", what);
}

namespace {

// A CLUSTER answer's status: UNKNOWN_VERB means a server without CLUSTER.
Status cluster_answer(const client::Reply& reply, std::string_view what) {
  if (reply.failure.is_ok() && reply.type == protocol::AnswerType::kError &&
      reply.error == protocol::ErrorCode::kUnknownVerb) {
    return Status(StatusCode::kProtocol, fmt::format("{}: the server does not know CLUSTER (protocol 1.2)", what));
  }
  return status_of(reply, what);
}

}  // namespace

Result<std::string> Client::cluster_status() {
  Result<client::Reply> reply = impl_->round_trip(
      "CLUSTER STATUS", [](std::string& line, std::string_view tag) { protocol::encode_cluster_status(line, tag); });
  if (!reply) return reply.status();
  if (Status status = cluster_answer(*reply, "CLUSTER STATUS"); !status.is_ok()) return status;
  if (reply->type != protocol::AnswerType::kOk || reply->rest.empty()) {
    return Status(StatusCode::kInternal, "CLUSTER STATUS: unexpected answer " + reply->rest);
  }
  return std::move(reply->rest);
}

Status Client::cluster_add(std::uint64_t id, std::string_view raft_address, std::string_view client_address) {
  const auto one_field = [](std::string_view text) {
    return !text.empty() && text.find_first_of(" \r\n") == std::string_view::npos;
  };
  if (id == 0) return Status(StatusCode::kInvalidArgument, "CLUSTER ADD: server ids start at 1");
  if (!one_field(raft_address) || !one_field(client_address)) {
    return Status(StatusCode::kInvalidArgument, "CLUSTER ADD: an address is host:port, with no space");
  }
  // May wait past request_timeout (the new server catching up): the
  // connection pings meanwhile, as for a queued ACQUIRE.
  const std::string what = fmt::format("CLUSTER ADD {}", id);
  Result<client::Reply> reply = impl_->round_trip(
      what,
      [&](std::string& line, std::string_view tag) {
        protocol::encode_cluster_add(line, tag, id, raft_address, client_address);
      },
      /*may_wait=*/true);
  if (!reply) return reply.status();
  return cluster_answer(*reply, what);
}

Status Client::cluster_remove(std::uint64_t id) {
  if (id == 0) return Status(StatusCode::kInvalidArgument, "CLUSTER REMOVE: server ids start at 1");
  const std::string what = fmt::format("CLUSTER REMOVE {}", id);
  Result<client::Reply> reply = impl_->round_trip(
      what, [&](std::string& line, std::string_view tag) { protocol::encode_cluster_remove(line, tag, id); },
      /*may_wait=*/true);
  if (!reply) return reply.status();
  return cluster_answer(*reply, what);
}

Result<std::uint64_t> Client::cluster_raise_fences(std::uint64_t by) {
  if (by == 0 || by > protocol::kMaxFenceRaise) {
    return Status(StatusCode::kInvalidArgument, "CLUSTER FENCES: the fences rise by 1..9007199254740992 (2^53)");
  }
  const std::string what = fmt::format("CLUSTER FENCES {}", by);
  Result<client::Reply> reply = impl_->round_trip(
      what, [&](std::string& line, std::string_view tag) { protocol::encode_cluster_fences(line, tag, by); },
      /*may_wait=*/true);
  if (!reply) return reply.status();
  if (Status status = cluster_answer(*reply, what); !status.is_ok()) return status;
  std::uint64_t last = 0;
  if (reply->type != protocol::AnswerType::kOk || !protocol::parse_fence(reply->rest, last)) {
    return Status(StatusCode::kInternal, what + ": unexpected answer " + reply->rest);
  }
  return last;
}

}  // namespace netsem
