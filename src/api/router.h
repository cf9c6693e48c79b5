// The HTTP API of netsemd without sockets: a request (method, raw target,
// peer) in, a Response (status, content type, body, headers) out. The HTTP
// listener (http/listener.h) only carries bytes to route() and back; every
// rule of the API lives here and is unit-tested without a server
// (tests/api). The endpoints and their JSON are docs/operations.md's.
//
// Targets are parsed here, not by the HTTP library: the path is split on
// `/` first and each segment then percent-decoded, so a name holding `/`
// (sent as %2F) stays one segment; in the query, `+` is a space (form
// encoding) and `%2B` a plus. A `%` not followed by two hex digits is a
// 400. A name (in a path or `prefix`) is checked by the protocol's rules
// (protocol/names.h): 400 BAD_NAME.
//
// GET / and GET /assets/... serve the web page's files (netsem::web, built
// into the binary) with their ETag (a matching If-None-Match is 304), the
// page's Content-Security-Policy and `Cache-Control: no-cache`.
//
// Browsers: the listener answers only to the hosts it is known by (an IP
// literal, or a name of http_hosts), so that a web site cannot read it
// through a DNS name of its own pointed at 127.0.0.1 (DNS rebinding):
// another Host is 403 BAD_HOST, except on /healthz and /readyz, which a load
// balancer may probe by any name and which tell nothing. A kick from a page
// of another origin (Sec-Fetch-Site other than same-origin or none, or an
// Origin that is not this host) is 403 CROSS_SITE: a loopback peer is an
// admin by default, and any page open in a browser on the server's host
// could otherwise post one.
//
// Errors are JSON {"error":"<CODE>","message":"<text>"}: 400 BAD_REQUEST or
// BAD_NAME, 403 FORBIDDEN, 404 NOT_FOUND, 405 METHOD_NOT_ALLOWED (with an
// Allow header), 413 PAYLOAD_TOO_LARGE (any request body), 503 BUSY (the
// event loop did not answer in time), STARTING (the journal is being
// recovered: everything but /healthz, /readyz and the web page) or STOPPING.
//
// Thread safety: route() is reentrant; it calls the Backend, which must
// allow concurrent calls.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/backend.h"

namespace netsem::api {

struct Request {
  std::string_view method;              // "GET", "POST", ... as sent
  std::string_view target;              // the raw request target: "/api/v1/semaphores?prefix=a%20b"
  std::array<std::uint8_t, 16> peer{};  // IPv6 or IPv4-mapped, as AllowList takes it
  std::string peer_text;                // "127.0.0.1:40112", for the kick reason
  bool has_body = false;                // a Content-Length above 0 or a Transfer-Encoding
  std::string_view if_none_match;       // the If-None-Match header, "" when absent
  std::string_view host;                // the Host header, "" when absent (HTTP/1.0)
  std::string_view origin;              // the Origin header, "" when absent
  std::string_view sec_fetch_site;      // the Sec-Fetch-Site header, "" when absent
  std::string_view authorization;       // the Authorization header, "" when absent (bearer tokens)
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // beyond Content-Type
};

// Answers one request.
Response route(const Request& request, Backend& backend);

// The JSON error response.
Response error_response(int status, std::string_view code, std::string_view message);

// Percent-decodes `text`; nullopt for a `%` not followed by two hex digits.
// With `plus_is_space`, `+` decodes to a space (query strings).
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

// `ms` since the Unix epoch as ISO 8601 UTC with milliseconds:
// "2026-12-03T15:20:01.123Z".
std::string format_time(std::int64_t ms);

}  // namespace netsem::api
