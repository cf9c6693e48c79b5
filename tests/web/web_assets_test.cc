// The page's files as built into the binary (netsem::web): each file of
// src/web/assets is found at its path with its type and exactly its bytes,
// nothing else is found, and the page refers only to files that exist and
// to nothing outside the server.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "web/web.h"

namespace netsem::web {
namespace {

std::string source_file(const std::string& name) {
  std::ifstream in(std::filesystem::path(NETSEM_SOURCE_DIR) / "src/web/assets" / name, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Expected {
  const char* path;
  const char* file;
  const char* type;
};

constexpr Expected kExpected[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/assets/style.css", "style.css", "text/css; charset=utf-8"},
    {"/assets/app.js", "app.js", "text/javascript; charset=utf-8"},
    {"/assets/favicon.svg", "favicon.svg", "image/svg+xml"},
};

TEST(WebAssets, EveryFileIsFoundWithItsTypeAndExactlyItsBytes) {
  for (const Expected& expected : kExpected) {
    SCOPED_TRACE(expected.path);
    const Asset* asset = find(expected.path);
    ASSERT_NE(asset, nullptr);
    EXPECT_EQ(asset->path, expected.path);
    EXPECT_EQ(asset->content_type, expected.type);
    const std::string bytes = source_file(expected.file);
    ASSERT_FALSE(bytes.empty());
    EXPECT_EQ(asset->bytes(), bytes);
    EXPECT_EQ(asset->data[asset->size], 0);
    EXPECT_TRUE(std::regex_match(std::string(asset->etag), std::regex("\"[0-9a-f]{16}\"")));
  }
}

TEST(WebAssets, AllListsEachFileOnceWithTheIndexFirstAndDistinctValidators) {
  ASSERT_EQ(all().size(), std::size(kExpected));
  EXPECT_EQ(all().front().path, "/");
  std::set<std::string_view> paths, etags;
  for (const Asset& asset : all()) {
    EXPECT_TRUE(paths.insert(asset.path).second) << asset.path;
    EXPECT_TRUE(etags.insert(asset.etag).second) << asset.path;
    EXPECT_EQ(find(asset.path), &asset);
  }
}

TEST(WebAssets, NothingElseIsFound) {
  for (const char* path :
       {"", "/index.html", "/assets", "/assets/", "/assets/app.js/", "/assets/APP.JS", "/assets/../assets/app.js", "//",
        "/app.js", "/assets/index.html", "/assets/app.js?x=1", "/api/v1/stats", "/metrics"}) {
    EXPECT_EQ(find(path), nullptr) << path;
  }
}

// Every src= and href= of the page and every url( of its style names a file
// that is served, or a path of the server's own API: the page works with no
// network beyond netsemd.
TEST(WebAssets, ThePageRefersOnlyToItsOwnFilesAndTheServersApi) {
  const std::regex reference(R"((?:src|href)="([^"]*)\"|url\(([^)]*)\))");
  for (const Asset& asset : all()) {
    if (asset.content_type.find("text/") != 0) continue;
    const std::string text(asset.bytes());
    for (std::sregex_iterator it(text.begin(), text.end(), reference), end; it != end; ++it) {
      const std::string target = (*it)[1].matched ? (*it)[1].str() : (*it)[2].str();
      SCOPED_TRACE(std::string(asset.path) + " refers to " + target);
      if (target.starts_with("#")) continue;
      const bool api = target.starts_with("/api/v1/") || target == "/metrics";
      EXPECT_TRUE(api || find(target) != nullptr);
      EXPECT_EQ(target.find("//"), std::string::npos);
    }
  }
}

// The page may not build markup from strings (a name is arbitrary text) nor
// run code from strings; the Content-Security-Policy forbids the latter and
// inline script anyway, and the page has none.
TEST(WebAssets, TheScriptNeverParsesTextAsMarkupAndThePageHasNoInlineScript) {
  const std::string script(find("/assets/app.js")->bytes());
  for (const char* sink : {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                           "setTimeout('", "setTimeout(\""}) {
    EXPECT_EQ(script.find(sink), std::string::npos) << sink;
  }
  const std::string page(find("/")->bytes());
  EXPECT_EQ(std::regex_search(page, std::regex("<script(?![^>]*\\bsrc=)")), false);
  EXPECT_EQ(page.find(" style="), std::string::npos);
  EXPECT_EQ(page.find(" on"), std::string::npos);
  EXPECT_NE(kContentSecurityPolicy.find("script-src 'self'"), std::string_view::npos);
  EXPECT_EQ(kContentSecurityPolicy.find("unsafe"), std::string_view::npos);
}

}  // namespace
}  // namespace netsem::web
