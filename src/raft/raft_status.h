// libraft's error codes (RAFT_NOTFOUND, RAFT_CORRUPT, RAFT_NOTLEADER, ...)
// as Statuses of the matching code, with libraft's words.
#pragma once

#include <string_view>

#include "netsem/status.h"

namespace netsem::raft {

// "the raft node stopped" (kShutdown): a request the node cannot run any more.
Status stopped();

// A Status for libraft's error `rv`: `what`, then what libraft said
// (`detail`; raft_strerror(rv) when empty).
Status raft_status(int rv, std::string_view what, std::string_view detail);

}  // namespace netsem::raft
