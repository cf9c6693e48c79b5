// libraft's error codes as Statuses (raft_status.h).
#include "raft/raft_status.h"

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
}

#include <string>
#include <utility>

namespace netsem::raft {

namespace {

StatusCode code_of(int rv) {
  switch (rv) {
    case RAFT_NOTFOUND:
      return StatusCode::kNotFound;
    case RAFT_CORRUPT:
    case RAFT_MALFORMED:
      return StatusCode::kCorruption;
    case RAFT_INVALID:
    case RAFT_BADID:
    case RAFT_BADROLE:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
    case RAFT_NAMETOOLONG:
      return StatusCode::kInvalidArgument;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
    case RAFT_NOCONNECTION:
      return StatusCode::kUnavailable;
    case RAFT_SHUTDOWN:
      return StatusCode::kShutdown;
    case RAFT_CANTCHANGE:
    case RAFT_BUSY:
      return StatusCode::kBusy;
    case RAFT_TOOBIG:
    case RAFT_TOOMANY:
      return StatusCode::kLimit;
    case RAFT_NOMEM:
      return StatusCode::kInternal;
    default:
      return StatusCode::kIoError;
  }
}

}  // namespace

Status stopped() {
  return Status(StatusCode::kShutdown, "the raft node stopped");
}

Status raft_status(int rv, std::string_view what, std::string_view detail) {
  std::string message(what);
  message += ": ";
  message += detail.empty() ? raft_strerror(rv) : detail;
  return Status(code_of(rv), std::move(message));
}

}  // namespace netsem::raft
