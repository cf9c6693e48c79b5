// The router (router.h): target parsing, the endpoint table, and the JSON of
// each answer, built with nlohmann-json.
#include "api/router.h"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <variant>

#include "common/text.h"
#include "netsem/version.h"
#include "protocol/names.h"
#include "stats/render.h"
#include "web/web.h"

namespace netsem::api {

namespace {

// Keys in the order written (the documented order), not sorted.
using json = nlohmann::ordered_json;

// Names and labels are valid UTF-8 by the protocol's rules; a created
// semaphore of an older build may not be: replaced, never an exception.
std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

Response json_response(int status, const json& value) {
  Response response;
  response.status = status;
  response.body = dump(value);
  response.headers.emplace_back("Cache-Control", "no-store");
  return response;
}

Response method_not_allowed(std::string_view allow) {
  Response response = error_response(405, "METHOD_NOT_ALLOWED", "use " + std::string(allow));
  response.headers.emplace_back("Allow", std::string(allow));
  return response;
}

Response from_status(const Status& status) {
  if (status.code() == StatusCode::kShutdown) return error_response(503, "STOPPING", status.message());
  if (status.code() == StatusCode::kUnavailable) return error_response(503, "STARTING", status.message());
  return error_response(503, "BUSY", status.message());
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The query's parameters, decoded; an error response for a bad one.
struct Query {
  std::map<std::string, std::string, std::less<>> values;
  std::optional<Response> error;

  const std::string* find(std::string_view key) const {
    const auto found = values.find(key);
    return found == values.end() ? nullptr : &found->second;
  }
};

Query parse_query(std::string_view text, std::initializer_list<std::string_view> known) {
  Query query;
  while (!text.empty()) {
    const auto amp = text.find('&');
    const std::string_view piece = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (piece.empty()) continue;
    const auto eq = piece.find('=');
    auto key = percent_decode(piece.substr(0, eq), true);
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1), true);
    if (!key || !value) {
      query.error = error_response(400, "BAD_REQUEST", "bad percent-encoding in the query string");
      return query;
    }
    if (std::find(known.begin(), known.end(), *key) == known.end()) {
      std::string list;
      for (const auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      query.error = error_response(400, "BAD_REQUEST",
                                   "unknown query parameter '" + protocol::encode_name_for_request(*key) + "'" +
                                       (list.empty() ? " (this endpoint takes none)" : " (known: " + list + ")"));
      return query;
    }
    if (!query.values.emplace(std::move(*key), std::move(*value)).second) {
      query.error = error_response(400, "BAD_REQUEST", "a query parameter is given twice");
      return query;
    }
  }
  return query;
}

// A decimal integer in [min, max]; nullopt otherwise.
std::optional<std::uint64_t> parse_number(std::string_view text, std::uint64_t min, std::uint64_t max) {
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n < min || n > max) return {};
  return n;
}

std::optional<Response> bad_limit(const Query& query, std::size_t& limit) {
  limit = kDefaultPage;
  if (const auto* text = query.find("limit")) {
    const auto n = parse_number(*text, 1, kMaxPage);
    if (!n) return error_response(400, "BAD_REQUEST", "limit is a whole number from 1 to " + std::to_string(kMaxPage));
    limit = static_cast<std::size_t>(*n);
  }
  return std::nullopt;
}

std::optional<Response> bad_name(std::string_view what, const std::string& name) {
  if (protocol::check_name(name) == protocol::ErrorCode::kNone) return std::nullopt;
  return error_response(400, "BAD_NAME",
                        std::string(what) +
                            " is not a valid semaphore name (1-255 bytes of UTF-8, no control character, no leading "
                            "$): " +
                            protocol::encode_name_for_request(name));
}

json semaphore_json(const SemaphoreRow& row) {
  return {{"name", row.name}, {"kind", row.kind},       {"value", row.value},
          {"max", row.max},   {"holders", row.holders}, {"waiters", row.waiters}};
}

// --- endpoints ---

Response healthz() {
  return json_response(200, {{"status", "ok"}});
}

Response readyz(Backend& backend) {
  switch (backend.readiness()) {
    case Readiness::kReady:
      if (std::string why = backend.unready_reason(); !why.empty()) {
        return json_response(503, {{"status", "unready"}, {"reason", std::move(why)}});
      }
      return json_response(200, {{"status", "ready"}, {"lease_wait_ms", backend.snapshot().gauges.lease_wait_ms}});
    case Readiness::kStarting:
      return json_response(503, {{"status", "starting"}});
    case Readiness::kStopping:
      break;
  }
  return json_response(503, {{"status", "stopping"}});
}

// The published figures are zeros until the server has started.
std::optional<Response> not_ready(Backend& backend) {
  switch (backend.readiness()) {
    case Readiness::kStarting:
      return error_response(503, "STARTING", "the server is starting (recovering its journal)");
    case Readiness::kReady:
    case Readiness::kStopping:
      break;
  }
  return std::nullopt;
}

Response stats(Backend& backend) {
  if (auto refused = not_ready(backend)) return *refused;
  // The STATS object as the protocol writes it, embedded as is: in a
  // cluster without the journal's fields and with the `cluster` object.
  json head = {{"version", kVersion}, {"protocol", "1.1"}, {"started_at", format_time(backend.started_at_ms())}};
  std::string body = dump(head);
  body.pop_back();  // the closing brace
  const std::optional<stats::ClusterFigures> cluster = backend.cluster_figures();
  body += ",\"stats\":" + stats::to_json(backend.snapshot(), cluster ? &*cluster : nullptr) + "}";
  Response response = json_response(200, json::object());
  response.body = std::move(body);
  return response;
}

Response history(Backend& backend) {
  if (auto refused = not_ready(backend)) return *refused;
  json samples = json::array();
  for (const auto& s : backend.history()) {
    samples.push_back({{"at", format_time(s.at_ms)},
                       {"grants", s.grants},
                       {"timeouts", s.timeouts},
                       {"cancellations", s.cancellations},
                       {"requests", s.requests},
                       {"connections", s.connections},
                       {"waiting", s.waiting},
                       {"held", s.held},
                       {"sessions", s.sessions},
                       {"semaphores", s.semaphores}});
  }
  return json_response(200, {{"interval_ms", stats::History::kInterval.count()}, {"samples", std::move(samples)}});
}

Response semaphores(Backend& backend, const Query& query) {
  std::size_t limit = 0;
  if (auto bad = bad_limit(query, limit)) return *bad;
  std::string prefix;
  if (const auto* text = query.find("prefix"); text && !text->empty()) {
    // A prefix is the start of a name: the same rules, but it may end
    // inside a multi-byte character only by not being valid, so it is
    // checked whole.
    if (auto bad = bad_name("prefix", *text)) return *bad;
    prefix = *text;
  }
  std::string after;
  if (const auto* text = query.find("after"); text && !text->empty()) {
    if (auto bad = bad_name("after", *text)) return *bad;
    after = *text;
  }
  auto page = backend.semaphores(std::move(prefix), std::move(after), limit);
  if (!page) return from_status(page.status());
  json rows = json::array();
  for (const auto& row : page->rows) rows.push_back(semaphore_json(row));
  return json_response(200,
                       {{"semaphores", std::move(rows)}, {"next", page->next ? json(*page->next) : json(nullptr)}});
}

Response semaphore(Backend& backend, const std::string& name) {
  if (auto bad = bad_name("the name", name)) return *bad;
  auto found = backend.semaphore(name);
  if (!found) return from_status(found.status());
  if (!found->has_value()) {
    return error_response(404, "NOT_FOUND", "no semaphore " + protocol::encode_name_for_request(name));
  }
  const SemaphoreDetail& detail = **found;
  json value = semaphore_json(detail.semaphore);
  json holders = json::array();
  for (const auto& h : detail.holders) {
    holders.push_back({{"session", h.session},
                       {"label", h.label},
                       {"peer", h.peer},
                       {"count", h.count},
                       {"fence", h.fence},
                       {"held_ms", h.held_ms},
                       {"since_at", format_time(h.since_ms)}});
  }
  json waiters = json::array();
  for (const auto& w : detail.waiters) {
    waiters.push_back({{"session", w.session},
                       {"label", w.label},
                       {"peer", w.peer},
                       {"mode", w.mode},
                       {"count", w.count},
                       {"waited_ms", w.waited_ms},
                       {"timeout_left_ms", w.timeout_left_ms ? json(*w.timeout_left_ms) : json(nullptr)}});
  }
  value["holders"] = std::move(holders);
  value["waiters"] = std::move(waiters);
  value["truncated"] = detail.truncated;
  return json_response(200, value);
}

Response sessions(Backend& backend, const Query& query) {
  std::size_t limit = 0;
  if (auto bad = bad_limit(query, limit)) return *bad;
  std::uint64_t after = 0;
  if (const auto* text = query.find("after")) {
    const auto n = parse_number(*text, 0, ~std::uint64_t{0});
    if (!n) return error_response(400, "BAD_REQUEST", "after is a session id (a whole number)");
    after = *n;
  }
  auto page = backend.sessions(after, limit);
  if (!page) return from_status(page.status());
  json rows = json::array();
  for (const auto& s : page->rows) {
    rows.push_back({{"id", s.id},
                    {"peer", s.peer},
                    {"dialect", s.dialect},
                    {"label", s.label},
                    {"permits_held", s.permits_held},
                    {"pending", s.pending},
                    {"age_ms", s.age_ms},
                    {"idle_ms", s.idle_ms}});
  }
  return json_response(200, {{"sessions", std::move(rows)}, {"next", page->next ? json(*page->next) : json(nullptr)}});
}

// Lower-cases ASCII.
std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Whether the Host header names a host this listener answers to (router.h).
bool answers_to_host(const Request& request, const Backend& backend) {
  const std::string_view host = request.host;
  if (host.empty()) return true;  // HTTP/1.0: no name to check, no browser sends it
  std::string name;
  if (host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return false;
    const std::string literal(host.substr(1, close - 1));
    in6_addr address{};
    return ::inet_pton(AF_INET6, literal.c_str(), &address) == 1;
  }
  name = lower(host.substr(0, host.rfind(':')));
  in_addr address{};
  if (::inet_pton(AF_INET, name.c_str(), &address) == 1) return true;
  return !name.empty() && backend.answers_to(name);
}

// Whether a browser sent the request from a page of another origin.
bool cross_site(const Request& request) {
  const std::string fetch_site = lower(request.sec_fetch_site);
  if (!fetch_site.empty() && fetch_site != "same-origin" && fetch_site != "none") return true;
  if (request.origin.empty()) return false;  // not from a browser's page (curl, scripts)
  const auto scheme = request.origin.find("://");
  if (scheme == std::string_view::npos) return true;  // "null" (a sandboxed page, a file) or garbage
  return lower(request.origin.substr(scheme + 3)) != lower(request.host);
}

// The rights of the request's bearer token when tokens are configured, or
// the 401 to answer (no token, not a Bearer one, or one that matches none).
std::variant<auth::Rights, Response> bearer_rights(const Request& request, Backend& backend) {
  constexpr std::string_view kScheme = "bearer ";
  const std::string_view header = request.authorization;
  std::optional<auth::Rights> rights;
  if (header.size() > kScheme.size() && lower(header.substr(0, kScheme.size())) == kScheme) {
    rights = backend.bearer_rights(trim(header.substr(kScheme.size())));
  }
  if (rights) return *rights;
  Response response = error_response(
      401, "UNAUTHORIZED",
      header.empty() ? "this server requires a token: Authorization: Bearer <token>" : "the token is not valid");
  response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"netsem\"");
  return response;
}

Response denied(std::string_view what) {
  return error_response(403, "DENIED", what);
}

Response kick(Backend& backend, const Request& request, std::string_view id_text,
              const std::optional<auth::Rights>& rights) {
  // The right comes before anything about the id, as with KICK: a peer
  // without it learns nothing of which ids exist.
  if (rights) {
    if (!rights->allows_everywhere(auth::Right::kAdmin)) return denied("kicking a session needs the admin right");
  } else if (!backend.is_admin(request.peer)) {
    return error_response(403, "FORBIDDEN", "kicking a session needs the admin right (admin_networks)");
  }
  if (cross_site(request)) {
    return error_response(403, "CROSS_SITE", "a kick from a page of another web site is refused");
  }
  const auto id = parse_number(id_text, 1, ~std::uint64_t{0});
  if (!id) return error_response(400, "BAD_REQUEST", "a session id is a whole number from 1");
  auto kicked = backend.kick(*id, "kicked over HTTP by " + request.peer_text);
  if (!kicked) return from_status(kicked.status());
  if (!kicked->elsewhere.empty()) {
    // A cluster's session hosted by another server: only its host can end
    // it outside the protocol (protocol KICK goes through the log).
    return error_response(421, "ELSEWHERE",
                          "session " + std::to_string(*id) + " is hosted by " + kicked->elsewhere +
                              ": kick it through that server's HTTP API, or with KICK (protocol 1.1) on any server");
  }
  if (!kicked->kicked) return error_response(404, "NOT_FOUND", "no session " + std::to_string(*id));
  return json_response(200, {{"kicked", *id}});
}

Response metrics(Backend& backend) {
  auto text = backend.metrics();
  if (!text) return from_status(text.status());
  Response response;
  response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  response.body = std::move(*text);
  response.headers.emplace_back("Cache-Control", "no-store");
  return response;
}

// A file of the web page; nullptr when `path` names none.
std::optional<Response> web_asset(const Request& request, std::string_view raw_path) {
  const auto path = percent_decode(raw_path, false);
  const web::Asset* asset = path ? web::find(*path) : nullptr;
  if (asset == nullptr) return std::nullopt;
  Response response;
  response.content_type = std::string(asset->content_type);
  response.headers.emplace_back("ETag", std::string(asset->etag));
  // Revalidated each time (a new netsemd may serve a new page), cheaply: 304.
  response.headers.emplace_back("Cache-Control", "no-cache");
  response.headers.emplace_back("Content-Security-Policy", std::string(web::kContentSecurityPolicy));
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  response.headers.emplace_back("Referrer-Policy", "no-referrer");
  if (!request.if_none_match.empty() && request.if_none_match == asset->etag) {
    response.status = 304;
    return response;
  }
  response.body = std::string(asset->bytes());
  return response;
}

}  // namespace

Response error_response(int status, std::string_view code, std::string_view message) {
  Response response;
  response.status = status;
  response.body = dump({{"error", code}, {"message", message}});
  response.headers.emplace_back("Cache-Control", "no-store");
  return response;
}

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_time(std::int64_t ms) {
  const std::time_t seconds = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const auto millis = static_cast<int>(ms - static_cast<std::int64_t>(seconds) * 1000);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  char buffer[80];  // room for any year the format could print
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buffer;
}

Response route(const Request& request, Backend& backend) {
  if (request.has_body) return error_response(413, "PAYLOAD_TOO_LARGE", "no endpoint takes a request body");
  const std::string_view target = request.target;
  const auto question = target.find('?');
  const std::string_view raw_path = target.substr(0, question);
  const std::string_view raw_query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  if (raw_path.empty() || raw_path.front() != '/') {
    return error_response(400, "BAD_REQUEST", "the request target is not an absolute path");
  }
  // Segments, each decoded on its own (a `/` inside a name is %2F).
  std::vector<std::string> segments;
  for (std::size_t start = 1; start <= raw_path.size();) {
    const auto slash = raw_path.find('/', start);
    const std::string_view raw =
        raw_path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    auto decoded = percent_decode(raw, false);
    if (!decoded) return error_response(400, "BAD_REQUEST", "bad percent-encoding in the path");
    segments.push_back(std::move(*decoded));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  const bool get = request.method == "GET" || request.method == "HEAD";
  const auto is = [&](std::initializer_list<std::string_view> path) {
    return segments.size() == path.size() && std::equal(path.begin(), path.end(), segments.begin());
  };
  const auto only_get = [&](auto&& answer, std::initializer_list<std::string_view> known) -> Response {
    if (!get) return method_not_allowed("GET, HEAD");
    Query query = parse_query(raw_query, known);
    if (query.error) return *query.error;
    return answer(query);
  };

  if (is({"healthz"})) return only_get([&](const Query&) { return healthz(); }, {});
  if (is({"readyz"})) return only_get([&](const Query&) { return readyz(backend); }, {});
  if (!answers_to_host(request, backend)) {
    return error_response(403, "BAD_HOST",
                          "this listener does not answer to the host name of this request (see http_hosts)");
  }
  // The page and its assets hold no data: they stay open, and the page asks
  // for a token when the API answers 401 (docs/security.md).
  if (raw_path == "/" || raw_path.starts_with("/assets/")) {
    if (auto asset = web_asset(request, raw_path)) {
      if (!get) return method_not_allowed("GET, HEAD");
      return *asset;
    }
  }
  // With tokens, everything else needs a bearer token with the right:
  // `read` on every name for the figures and the sessions, on the names a
  // listing or a detail shows; `admin` for a kick.
  std::optional<auth::Rights> rights;
  if (backend.auth_required()) {
    auto checked = bearer_rights(request, backend);
    if (auto* refusal = std::get_if<Response>(&checked)) return std::move(*refusal);
    rights = std::get<auth::Rights>(std::move(checked));
  }
  const auto reads_everything = [&] { return !rights || rights->allows_everywhere(auth::Right::kRead); };
  const auto reads = [&](std::string_view name) { return !rights || rights->allows(auth::Right::kRead, name); };
  constexpr std::string_view kReadAll = "this needs the read right on every name (no prefix)";
  if (is({"metrics"})) {
    if (!reads_everything()) return denied(kReadAll);
    return only_get([&](const Query&) { return metrics(backend); }, {});
  }
  if (is({"api", "v1", "stats"}) || is({"api", "v1", "history"})) {
    if (!reads_everything()) return denied(kReadAll);
    if (segments[2] == "stats") return only_get([&](const Query&) { return stats(backend); }, {});
    return only_get([&](const Query&) { return history(backend); }, {});
  }
  if (is({"api", "v1", "semaphores"})) {
    return only_get(
        [&](const Query& q) {
          // As LIST: allowed when every name the prefix covers may be read.
          const std::string* prefix = q.find("prefix");
          if (rights && !rights->allows_prefix(auth::Right::kRead, prefix != nullptr ? *prefix : std::string())) {
            return denied("listing needs the read right on every name the prefix covers (give ?prefix=)");
          }
          return semaphores(backend, q);
        },
        {"prefix", "after", "limit"});
  }
  if (segments.size() == 4 && segments[0] == "api" && segments[1] == "v1" && segments[2] == "semaphores") {
    if (!reads(segments[3])) return denied("this needs the read right on the name");
    return only_get([&](const Query&) { return semaphore(backend, segments[3]); }, {});
  }
  // The same, with the name in the query: the form for any name, `.` and
  // `..` included, which clients and browsers fold out of a path.
  if (is({"api", "v1", "semaphore"})) {
    return only_get(
        [&](const Query& q) {
          const std::string* name = q.find("name");
          if (name == nullptr) return error_response(400, "BAD_REQUEST", "the query needs name=NAME");
          if (!reads(*name)) return denied("this needs the read right on the name");
          return semaphore(backend, *name);
        },
        {"name"});
  }
  if (is({"api", "v1", "sessions"})) {
    if (!reads_everything()) return denied(kReadAll);
    return only_get([&](const Query& q) { return sessions(backend, q); }, {"after", "limit"});
  }
  if (segments.size() == 5 && segments[0] == "api" && segments[1] == "v1" && segments[2] == "sessions" &&
      segments[4] == "kick") {
    if (request.method != "POST") return method_not_allowed("POST");
    Query query = parse_query(raw_query, {});
    if (query.error) return *query.error;
    return kick(backend, request, segments[3], rights);
  }
  return error_response(404, "NOT_FOUND", "no such endpoint (see docs/operations.md)");
}

}  // namespace netsem::api
