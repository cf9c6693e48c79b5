// The table of assets, defined in the generated web_assets.cc (see
// embed_assets.cmake). Private to netsem::web: use web::find and web::all.
#pragma once

#include <cstddef>

#include "web/web.h"

namespace netsem::web::detail {

extern const Asset kAssets[];
extern const std::size_t kAssetCount;

}  // namespace netsem::web::detail
