// web::find over the table that embed_assets.cmake generates (web_assets.cc
// in the build directory). A handful of entries: a linear search is enough.
#include "web/web.h"

#include "web/web_assets.h"

namespace netsem::web {

std::span<const Asset> all() {
  return {detail::kAssets, detail::kAssetCount};
}

const Asset* find(std::string_view path) {
  for (const Asset& asset : all()) {
    if (asset.path == path) return &asset;
  }
  return nullptr;
}

}  // namespace netsem::web
