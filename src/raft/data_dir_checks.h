// The data directory as libraft 0.15 leaves it: checked before libraft
// opens it (check_metadata, its term and vote files; open_segments.h checks
// the open segments), and the words of a failure to load it (load_failure).
// Every refusal says what an operator can do (kDamageAdvice). Damage is
// refused and the directory left as it is, never repaired.
#pragma once

#include <string>
#include <string_view>

#include "netsem/status.h"

namespace netsem::raft {

// What an operator can do about damage in a data directory, said after
// every refusal of one (docs/replication.md, "What is guaranteed in each
// failure": a server restarted without its data).
inline constexpr std::string_view kDamageAdvice =
    "Damage on disk: refused and left as it is. Restore the directory from a copy, or move it aside and start this "
    "server on an empty one while the other servers are up with their data (safest: remove it from the cluster, "
    "`netsem cluster remove`, and add it back empty with `join = on` and `netsem cluster add`; docs/replication.md)";

// raft_init's, raft_start's or the recovery's failure (`what`: libraft's
// error `rv` and its message `detail`) to load `data_dir`, with what
// libraft does not say (data_dir_checks.cc).
Status load_failure(int rv, std::string_view what, const std::string& data_dir, std::string_view detail);

// OK, or why libraft must not open `data_dir`: its metadata files (term and
// vote) are missing beside a log, one is gone or cut short when both must
// be there, or their versions do not follow (data_dir_checks.cc).
Status check_metadata(const std::string& data_dir);

}  // namespace netsem::raft
