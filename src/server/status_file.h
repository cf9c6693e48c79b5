// The status file: `<stats_dir>/semaphore.status`, a snapshot of every
// semaphore for operators and monitoring scripts, replaced atomically
// (temp file + rename) so a reader never sees half a file. Its format is
// documented in docs/status-file.md. Its header carries the server's
// figures as of the writing, the STATS JSON (stats/render.h): in a cluster
// STATS's object there, without the journal's fields and with `cluster`.
#pragma once

#include <filesystem>
#include <string>

#include "netsem/status.h"
#include "stats/cluster_figures.h"
#include "stats/stats.h"
#include "table/semaphore_table.h"

namespace netsem::server {

inline constexpr const char* kStatusFileName = "semaphore.status";

// The file's text: a comment line naming the columns, a comment line
// `# stats <JSON>` with `figures` as STATS writes them (a server in a
// cluster passes its `cluster` figures: no journal_* fields, a `cluster`
// object last), then one row per semaphore: `name kind value max holders
// waiters`, names percent-encoded.
std::string render_status(const SemaphoreTable& table, const stats::Snapshot& figures,
                          const stats::ClusterFigures* cluster = nullptr);

// Writes render_status() to `<dir>/semaphore.status` atomically.
Status write_status_file(const std::filesystem::path& dir, const SemaphoreTable& table, const stats::Snapshot& figures,
                         const stats::ClusterFigures* cluster = nullptr);

}  // namespace netsem::server
