// read_private_file: reads a file that holds secrets (the server's
// tokens_file, the client's token_file) and refuses it when anyone but its
// owner may read or write it, as ssh does with private keys. In common
// because both the server and libnetsem read such files.
//
// Thread safety: a pure function over the file system.
#pragma once

#include <filesystem>
#include <string>

#include "netsem/status.h"

namespace netsem {

// The content of the regular file at `path` (at most 16 MiB). kDenied
// "path: holds secrets but is readable or writable by group or others (mode
// 644; chmod 600 it)" when its mode has any group or other read or write
// bit; kIoError "path: cannot read: <reason>" when it cannot be read.
Result<std::string> read_private_file(const std::filesystem::path& path);

}  // namespace netsem
