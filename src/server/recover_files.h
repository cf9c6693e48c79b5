// The two files netsemd --recover leaves in the Raft directory
// (docs/replication.md, "A majority lost for good"):
//
//  - kRaiseFile, "<by> <nonce>\n": the fence raise the recovery owes, written
//    before the configuration is forced and removed once the raise is applied
//    (ClusterRuntime), so that a start that stopped before it still makes it.
//  - kRecordFile: what the recovery forced, in `key value` lines under a
//    comment that says what the file is for: the time (UTC), this server, the
//    index and term of the forced configuration, the configuration it replaced
//    and the raise. It stays. A later --recover reads it (decide_recover): on a
//    directory whose latest configuration is still the one it records, the
//    force is not made again (a no-op, logged); on one whose configuration
//    changed since (servers added), it is refused, so that a --recover left in
//    a unit file cannot drop them. An operator who means a second recovery
//    (the new configuration lost its majority too) removes the file by hand:
//    as Consul's peers.json, the permission is a file that cannot be left
//    behind in a command line, and no flag can be (a second flag left in the
//    unit file would defeat the guard; etcd's --force-new-cluster has none and
//    forces again at every start it is given).
//
// Both are written whole: a temporary file, synced, renamed, the directory
// synced.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "netsem/status.h"
#include "raft/raft_node.h"

namespace netsem::server {

inline constexpr const char* kRaiseFile = "netsem-recover-raise-fences";
inline constexpr const char* kRecordFile = "netsem-recovered";

Status write_raise_file(const std::filesystem::path& dir, std::uint64_t by, std::uint64_t nonce);
// kRaiseFile's raise and nonce; nullopt when there is none (or it does not
// parse: logged).
std::optional<std::pair<std::uint64_t, std::uint64_t>> read_raise_file(const std::filesystem::path& dir);

struct RecoveryRecord {
  std::string time;  // UTC, "2026-12-06T01:02:03Z"
  std::uint64_t server = 0;
  std::uint64_t index = 0;  // of the forced configuration
  std::uint64_t term = 0;   // the term the recovered server started in
  std::vector<raft::ServerInfo> forced;
  std::vector<raft::ServerInfo> replaced;
  std::uint64_t raise = 0;  // --raise-fences
};

// The record of a recovery about to make `plan` (now, by `server`, raising
// the fences by `raise`).
RecoveryRecord record_of(const raft::RecoverPlan& plan, std::uint64_t server, std::uint64_t raise);
std::string format_record(const RecoveryRecord& record);
// kCorruption naming what is wrong when `text` is no record.
Result<RecoveryRecord> parse_record(const std::string& text);
Status write_record(const std::filesystem::path& dir, const RecoveryRecord& record);
// nullopt when there is none; kCorruption or kIoError when it cannot be read.
Result<std::optional<RecoveryRecord>> read_record(const std::filesystem::path& dir);

// Whether a --recover about to make `plan` forces it (true), given the
// record an earlier one left in `dir` (`found`, if any): true without a
// record, or when the recorded force never reached the log (its index is
// past the latest configuration's); false when the latest configuration is
// the one recorded (nothing changed since: a no-op); kAlreadyExists naming
// the record, the change and what to do when the configuration changed
// since.
Result<bool> decide_recover(const std::filesystem::path& dir, const std::optional<RecoveryRecord>& found,
                            const raft::RecoverPlan& plan);

}  // namespace netsem::server
