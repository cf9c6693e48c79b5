// StateMachine: netsem's replicated state, changed only by applying
// committed log entries (entry.h) in log order: the semaphore table
// (server::SemaphoreTable: semaphores, holders, FIFO queues, created
// semaphores, fences), the sessions (their labels, peers, dialects, last
// activity, hosts, last seqs and resume secrets' digests) and the cluster's members
// (id -> client address), with the log time and the session timeout. Replicas that
// apply the same entries hold the same state and produce the same results,
// byte for byte: nothing inside apply reads a clock (the entry carries the
// leader's log time), nothing depends on a container's iteration order, and
// fences come from the log, so they increase across leader changes. Pure
// logic: no socket, no file, no consensus library.
//
// API (the shape of src/raft/state_machine.h, so a thin adapter joins them):
// apply(index, bytes) -> bytes of results (results.h); snapshot() -> bytes
// of the whole state; restore(bytes). A malformed entry or snapshot is
// refused with a Status and changes nothing. The leader also reads
// next_expiry_ms() to know when to propose AdvanceTime.
//
// The table's limits (TableLimits) are configuration, not state: every
// replica must be built with the same ones.
//
// Thread safety: none; one thread applies, snapshots and restores.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "netsem/status.h"
#include "replication/entry.h"
#include "replication/results.h"
#include "table/semaphore_table.h"

namespace netsem::replication {

inline constexpr std::string_view kSnapshotMagic = "NSRS";
// Version 2 added the sessions' host, last seq and secret, and the members;
// version 1 bytes are refused. Version 3 holds each session's secret digest
// (secret_digest, 32 raw bytes) instead of its secret; version 2 bytes are
// still restored, their secrets hashed. Snapshots are written as version 3.
inline constexpr std::uint8_t kSnapshotVersion = 3;
inline constexpr std::uint8_t kOldestSnapshotVersion = 2;

// A replicated session.
struct SessionRecord {
  SessionId id = 0;
  std::string label;
  std::string peer;
  std::string dialect;
  std::int64_t opened_ms = 0;         // log time of its OpenSession
  std::int64_t last_activity_ms = 0;  // log time of its last request, touch, resume or TouchAll
  ServerId host = 0;                  // >= 1: the server that drives it (OpenSession's or ResumeSession's origin)
  std::uint64_t last_seq = 0;         // the seq of its last request applied (0: none yet)
  std::string secret_digest;          // what a ResumeSession's digest must equal (kSecretDigestBytes)
  friend bool operator==(const SessionRecord&, const SessionRecord&) = default;
};

class StateMachine {
 public:
  explicit StateMachine(server::TableLimits limits = {});
  ~StateMachine();
  StateMachine(const StateMachine&) = delete;
  StateMachine& operator=(const StateMachine&) = delete;

  // Applies the entry at log `index`: decodes it whole (decode_entry), then
  // applies each command in order at the entry's log time, and returns
  // encode_results(...). kCorruption for a malformed entry, kInvalidArgument
  // for an index below last_index(); either changes nothing. An index equal
  // to last_index() is applied: the consensus layer may carry several
  // entries in one log entry (src/raft/state_machine.h: "commands of one
  // entry share it").
  Result<std::string> apply(std::uint64_t index, std::string_view entry);
  // The same, handing the decoded entry and what it did to `seen` before
  // they are encoded (not called when the entry is refused): for a caller
  // that acts on an entry's effects (cluster::ReplicaAdapter).
  using Seen = std::function<void(const Entry& entry, const EntryResults& results)>;
  Result<std::string> apply(std::uint64_t index, std::string_view entry, const Seen& seen);
  // The same for a decoded entry. REQUIRES: check_command() is OK for each
  // command and the time is in 0 .. kMaxLogTimeMs (what decode_entry
  // guarantees).
  Result<EntryResults> apply_entry(std::uint64_t index, const Entry& entry);

  // The whole state (docs/replication.md has the layout): a replica that
  // restores it and applies the entries after last_index() ends in the
  // same state, with the same results, as one that applied them all.
  std::string snapshot() const;
  // Replaces the whole state with a snapshot's. kCorruption, changing
  // nothing, for bytes that fail the frame's checks or describe a state
  // that breaks an invariant (the message says which).
  Status restore(std::string_view bytes);

  // --- observation ---

  // The index of the last entry applied (or restored), 0 before any.
  std::uint64_t last_index() const { return last_index_; }
  // The log time: the highest entry time applied.
  std::int64_t log_time_ms() const { return log_time_ms_; }
  std::int64_t session_timeout_ms() const { return session_timeout_ms_; }
  // The open sessions by id.
  const std::map<SessionId, SessionRecord>& sessions() const { return sessions_; }
  // The cluster's members: server id -> client address ("host:port"), as
  // SetMember and RemoveMember left them.
  const std::map<ServerId, std::string>& members() const { return members_; }
  const server::SemaphoreTable& table() const { return *table_; }
  // The earliest log time at which AdvanceTime would change something: a
  // queued request's deadline, or a silent session's expiry; nullopt when
  // none is due. The leader proposes AdvanceTime once its clock reaches it.
  std::optional<std::int64_t> next_expiry_ms() const;

  // Log time to the table's time, and back (whole milliseconds, rounded up).
  static server::TimePoint to_time_point(std::int64_t ms) {
    return server::TimePoint{} + std::chrono::milliseconds(ms);
  }
  static std::int64_t to_log_ms(server::TimePoint t) {
    return std::chrono::ceil<std::chrono::milliseconds>(t - server::TimePoint{}).count();
  }

 private:
  class LogJournal;

  // A new, empty table over journal_ with limits_.
  std::unique_ptr<server::SemaphoreTable> make_table() const;

  void apply_command(const Command& command, CommandResult& result);
  void apply_request(const SessionRequest& request, CommandResult& result);
  void apply_resume(const ResumeSession& resume, CommandResult& result);
  void touch(SessionRecord& session);
  void close(SessionId id, CloseCause cause, CommandResult& result);
  void expire_sessions(CommandResult& result);

  server::TableLimits limits_;
  std::unique_ptr<LogJournal> journal_;  // outlives table_
  std::unique_ptr<server::SemaphoreTable> table_;
  std::map<SessionId, SessionRecord> sessions_;
  std::map<ServerId, std::string> members_;
  // (last activity, id) of every session: the silent ones first.
  std::set<std::pair<std::int64_t, SessionId>> activity_;
  SessionId last_session_ = 0;  // the last id assigned
  std::int64_t session_timeout_ms_ = 0;
  std::int64_t log_time_ms_ = 0;
  std::uint64_t last_index_ = 0;
};

}  // namespace netsem::replication
