// The live web page of netsemd (GET / and GET /assets/...): its HTML, CSS and
// JavaScript, built into the binary at compile time (embed_assets.cmake turns
// each file of src/web/assets into a byte array), so the page works with no
// network beyond the server itself: no CDN, nothing fetched from elsewhere.
// The page reads only the JSON API (/api/v1/...); the HTTP router serves these
// bytes as they are.
//
// Thread safety: the assets are constant data; every function is safe from
// any thread, including before main (no dynamic initialisation).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace netsem::web {

// One file of the page.
struct Asset {
  std::string_view path;          // the URL path it is served at: "/" or "/assets/<file>"
  std::string_view content_type;  // e.g. "text/html; charset=utf-8"
  std::string_view etag;          // a strong validator, quoted: "\"<16 hex digits of SHA-256>\""
  const unsigned char* data;      // `size` bytes (and a 0 after them)
  std::size_t size;

  std::string_view bytes() const { return {reinterpret_cast<const char*>(data), size}; }
};

// The asset served at `path` (a decoded URL path without its query: "/" is
// the page itself, index.html), or nullptr when there is none, e.g. for
// "/index.html", "/assets/" or anything outside "/assets/".
const Asset* find(std::string_view path);

// Every asset, "/" first.
std::span<const Asset> all();

// The Content-Security-Policy the router sends with every asset: the page
// loads and talks only to its own origin, runs no inline script and no eval,
// so a name or label that got into the DOM as markup still could not run.
inline constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace netsem::web
