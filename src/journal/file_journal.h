// FileJournal: the durable Journal. It keeps created semaphores and the fence
// bound in the server's data directory so that they survive a restart, even a
// kill -9 or (with FsyncPolicy::kAlways) a power loss.
//
// Files in the data directory (docs/durability.md has the byte layout):
//   (the directory itself is flock(2)ed for the life of the object)
//   lock      flock(2)ed too; holds the pid
//   snapshot  every created semaphore at the start of the current journal
//   journal   records appended since: SET(name, value, max), DELETE(name)
//   fences    the highest fence reserved so far and how many records were
//             durable then: two slots rewritten alternately in place
//   run       the server's last run: running, or stopped with how many
//             permits were held (journal_format::RunRecord)
// Records carry absolute states, so replay is idempotent. Each file starts
// with a header (magic, version, a word: the generation, or the fence bound);
// a snapshot covers exactly the journals of older generations, which is how
// recovery tells a stale journal from the current one after a crash in the
// middle of a compaction. Every record has a sequence number (counted, not
// stored: a file's header holds the sequence it starts after), and the
// fences file proves how many were durable when it was last written, so a
// journal cut short below that is refused, not silently rolled back.
//
// API: open() recovers the state and compacts; then the server calls
// record_set/record_delete as the table changes (they only append to an
// in-memory batch), flush() before it sends the answers of the requests that
// made the records (one write(2), and an fsync under kAlways), sync() from its
// once-a-second timer under kEverySec, and compact() when wants_compaction().
// reserve_fences() is synchronous and durable before it returns.
//
// The bytes of those files (the encoders, parse_header, replay_journal and
// replay_snapshot) are in journal_format.h, included here for FileJournal's
// users.
//
// Thread safety: none. The server uses a FileJournal from its event-loop
// thread only; the free functions are reentrant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/unique_fd.h"
#include "journal/journal.h"
#include "journal/journal_format.h"
#include "netsem/status.h"
#include "stats/stats.h"

namespace netsem::server {

// "always", "everysec" or "no" (ASCII case-insensitive), as Redis's
// appendfsync. kInvalidArgument for anything else.
Result<FsyncPolicy> parse_fsync_policy(std::string_view text);
// "always", "everysec", "no".
std::string_view fsync_policy_name(FsyncPolicy policy);

struct JournalOptions {
  FsyncPolicy fsync = FsyncPolicy::kEverySec;
  // wants_compaction() once the journal grows past this many bytes and past
  // twice the size of the last snapshot.
  std::uint64_t compact_bytes = 64 << 20;
  // Accept damage that open() otherwise refuses (damage in the middle of
  // the journal, a journal shorter than the fences file proves, a missing or
  // unreadable fences file): cut, log what was lost, and start.
  bool repair = false;
};

// What open() found in the data directory.
struct RecoveredState {
  std::map<std::string, CreatedState> created;
  std::uint64_t fence_floor = 0;      // every fence handed out before is <= this
  std::vector<std::string> warnings;  // e.g. "journal: torn tail at offset N (M bytes cut)"
  std::vector<std::string> losses;    // what --repair accepted to lose (log them as errors)
  // What the `run` file says of the last run; a damaged one reads as a run
  // that did not stop (session_timeout_ms 0: unknown), with a warning.
  journal_format::RunRecord previous_run;
};

// Counters for STATS and tests.
struct JournalStats {
  std::uint64_t journal_bytes = 0;    // size of the journal file, header included
  std::uint64_t snapshot_bytes = 0;   // size of the last snapshot written
  std::uint64_t pending_bytes = 0;    // batched records not yet written
  std::uint64_t generation = 0;       // of the current snapshot and journal
  std::uint64_t fence_bound = 0;      // highest fence reserved
  std::uint64_t writes = 0;           // write(2) calls on the journal
  std::uint64_t syncs = 0;            // successful fsyncs of the journal
  std::uint64_t compactions = 0;      // successful compactions, the one in open() included
  std::uint64_t sequence = 0;         // records made since the data directory was made
  std::uint64_t pending_records = 0;  // of those, not yet answerable (written; under kAlways, durable)
};

namespace journal_detail {

using netsem::UniqueFd;

}  // namespace journal_detail

class FileJournal final : public Journal {
 public:
  // Opens the data directory `dir`, creating it and its parents if missing.
  // Locks the directory itself (and `dir/lock`) for the life of the object:
  // a directory that another FileJournal holds (in any process, this one
  // included) is kBusy, naming the holder's pid (from /proc/locks, so even
  // with `lock` deleted). Reads the fences file, the snapshot and the
  // journal into `recovered` (cleared first). A torn tail of the journal (an
  // incomplete last write: nothing valid after the bad bytes) is cut and
  // reported in `recovered.warnings`; the damaged file is kept as
  // `journal.damaged-<unix time>`. Then compacts (a fresh snapshot and an
  // empty journal) and rewrites the fences file with the recovered bound.
  //
  // On error `recovered` is left empty. Errors: kBusy (locked), kIoError (a
  // file operation failed, with the path and errno text), kCorruption, whose
  // message names the file, what is wrong and, where it applies, the
  // --repair flag (options.repair) that accepts the loss: a damaged header
  // or snapshot; damage in the middle of the journal (valid records after
  // it); a journal that ends before the record the fences file proves
  // durable; a fences file missing beside a snapshot or journal of this
  // version, or unreadable. Under options.repair those last three are cut or
  // accepted and what was lost is listed in `recovered.losses`.
  static Result<std::unique_ptr<FileJournal>> open(const std::filesystem::path& dir, const JournalOptions& options,
                                                   RecoveredState& recovered);

  // Writes nothing: a destroyed FileJournal behaves as a crash for whatever
  // is batched or unsynced. Call flush() and sync() first to shut down clean.
  ~FileJournal() override;
  FileJournal(const FileJournal&) = delete;
  FileJournal& operator=(const FileJournal&) = delete;

  // Append one record to the in-memory batch; nothing is written until
  // flush(). REQUIRES: 1 <= name.size() <= journal_format::kMaxNameSize;
  // 0 <= state.value <= state.max.
  void record_set(std::string_view name, const CreatedState& state) override;
  void record_delete(std::string_view name) override;

  // A reservation raises the bound by at most this much; a fences file
  // found with one slot damaged restarts fences this far above the other.
  static constexpr std::uint64_t kMaxFenceReservation = 1 << 20;

  // Durably raises the fence bound to `needed` (one pwrite of a slot of the
  // fences file, kept open, and fdatasync: no new descriptor) and returns
  // it; returns the current bound at once when it is already >= needed. On
  // failure logs why (once until a reservation works again) and returns the
  // old bound: the caller must not hand out fences above what is returned.
  // REQUIRES: needed <= the current bound + kMaxFenceReservation.
  std::uint64_t reserve_fences(std::uint64_t needed) override;

  // Writes the number of durable records to the fences file if it grew
  // since the last write (one pwrite and fdatasync): the proof recovery
  // checks the journal's length against. The server calls it once a second
  // and at a clean shutdown (after sync()).
  Status write_proof();

  // Replaces the `run` file with `record`, atomically and durably (temp
  // file, fsync, rename, fsync of the directory). The server records
  // kRunning at start (before it listens: a start that cannot is refused)
  // and kStopped at a clean stop.
  Status record_run(const journal_format::RunRecord& record);

  // Writes the batch with one write(2) (more only after a short write), then
  // fsyncs under kAlways (also when nothing is batched but an earlier fsync
  // failed). Under kEverySec and kNo, OK at once when nothing is batched. On error
  // (kIoError with errno text) whatever was not written stays batched, so a
  // later flush() continues exactly where this one stopped and the file never
  // holds a record twice or a gap. Also kIoError while the journal is
  // unusable after a failed compaction: compact() again.
  Status flush();

  // fsyncs the journal if anything was written since the last successful
  // sync; OK at once otherwise. Called by the server's once-a-second timer
  // under kEverySec; callable under any policy. After a failed fsync the page
  // cache can no longer be trusted (Linux may drop the dirty pages), so
  // wants_compaction() turns true: compaction rewrites everything from memory.
  Status sync();

  // True when the journal outgrew compact_bytes and twice the last snapshot,
  // or a failed fsync or compaction asks for a rewrite.
  bool wants_compaction() const;

  // Replaces snapshot and journal with a snapshot of `state` and an empty
  // journal of the next generation: the new journal is prepared first, the
  // snapshot written to a temp file, fsynced and renamed over the old one,
  // the directory fsynced, then the new journal renamed in place and the
  // directory fsynced again. A crash at any point recovers either the old
  // snapshot + journal or the new snapshot (+ the empty journal). Batched
  // records are dropped on success: the snapshot holds them.
  // REQUIRES: `state` is the state every record so far (batched ones
  // included) leads to, i.e. the table's created semaphores now.
  // On error (kIoError) nothing changed unless the message says the journal
  // must be compacted again, in which case flush() fails until it is.
  Status compact(const std::map<std::string, CreatedState>& state);

  // Records made so far (batched ones included), counted since the data
  // directory was made; and how many of them an answer may depend on now:
  // written by flush(), and under kAlways also fsynced.
  std::uint64_t sequence() const { return sequence_; }
  // sequence() as a counter a reader may keep a reference to (the
  // dispatcher reads it on every request, without a call).
  const std::uint64_t& sequence_counter() const { return sequence_; }
  std::uint64_t answerable_sequence() const;

  // --- compaction with the snapshot written elsewhere ---
  // The same result as compact(), in steps, so that the snapshot of a large
  // table is written by a child process (ForkedJob) and the event loop does
  // only the short last steps:
  //   begin_compaction()     from now on every record is also kept aside;
  //   write_snapshot_body()  (the child) `snapshot.tmp`: the header and one
  //                          SET per created semaphore as the table was at
  //                          begin_compaction(), fsynced, no END yet;
  //   finish_compaction(n)   appends the last record of each name changed
  //                          since the begin and the END, fsyncs, and
  //                          switches to the new generation as compact() does;
  //   abort_compaction()     on any failure before the finish.
  // Why the snapshot is right: the body is the state every record before the
  // begin leads to; records carry absolute states, so a name's last record
  // since the begin is its state now, and a name with none is as it was at
  // the begin: replaying the body then those gives the state every record so
  // far leads to, which is what compact() writes.
  // Until the rename, recovery reads the old snapshot and journal, which
  // hold every record; after it, the new snapshot, which holds them too.
  // (A snapshot may therefore hold DELETE records after its SETs.)

  // REQUIRES: !compacting(). The generation to pass to write_snapshot_body().
  std::uint64_t begin_compaction();
  bool compacting() const { return compacting_; }
  // Every created semaphore, for write_snapshot_body().
  using CreatedSource = std::function<void(const std::function<void(std::string_view, const CreatedState&)>&)>;
  // Writes `snapshot.tmp` of `generation` with the states `source` visits,
  // fsynced; `records` gets their number. Opens the directory by its path,
  // so that it runs in a child that has closed every inherited descriptor;
  // touches nothing of this object but its path.
  Status write_snapshot_body(std::uint64_t generation, const CreatedSource& source, std::uint64_t& records) const;
  // REQUIRES: compacting(); `body_records` as write_snapshot_body() gave.
  // Errors as compact(); on error the compaction is over (abort_compaction()
  // is not needed) and nothing changed unless the message says so.
  Status finish_compaction(std::uint64_t body_records);
  // Forgets the records kept and removes `snapshot.tmp`.
  void abort_compaction();

  // Size of the journal file, header included (batched records are not).
  std::uint64_t journal_bytes() const { return journal_bytes_; }
  // True when records are batched and flush() has something to write.
  bool has_pending() const { return !batch_.empty(); }
  FsyncPolicy fsync_policy() const { return options_.fsync; }
  const std::filesystem::path& dir() const { return dir_; }
  JournalStats stats() const;
  // The figures STATS reports (stats/stats.h): write(2) calls on the
  // journal file and the latency of each fsync of it by sync().
  const stats::JournalCounters& counters() const { return counters_; }

 private:
  FileJournal(std::filesystem::path dir, const JournalOptions& options, journal_detail::UniqueFd dir_fd,
              journal_detail::UniqueFd lock_fd);
  // Replaces the fences file with two slots of the current bound and proof
  // (at open), and keeps it open.
  Status rewrite_fences();
  // Writes the older slot in place, durably.
  Status write_fence_slot(std::uint64_t bound, std::uint64_t proof);

  // The steps of a compaction after the snapshot of `generation` is durable
  // in place (`snapshot_size` bytes): the batch is dropped (the snapshot
  // holds it) and `next` (journal.tmp, its header written and fsynced)
  // becomes the journal.
  Status switch_to_generation(std::uint64_t generation, std::uint64_t snapshot_size, journal_detail::UniqueFd next,
                              std::uint64_t header_size);

  std::filesystem::path dir_;
  JournalOptions options_;
  journal_detail::UniqueFd dir_fd_;      // every file is opened relative to it
  journal_detail::UniqueFd lock_fd_;     // holds the flock on `lock` (dir_fd_ the one on the directory)
  journal_detail::UniqueFd fences_fd_;   // open for the life of the journal
  journal_detail::UniqueFd journal_fd_;  // invalid after a failed compaction
  std::string batch_;                    // encoded records not yet written
  std::uint64_t generation_ = 0;
  std::uint64_t fence_bound_ = 0;
  std::uint64_t fence_counter_ = 0;     // of the newest fences slot
  std::uint64_t sequence_ = 0;          // records made
  std::uint64_t written_sequence_ = 0;  // records written to the journal file
  std::uint64_t durable_sequence_ = 0;  // records fsynced (or in a snapshot)
  std::uint64_t proof_ = 0;             // durable records the fences file proves
  bool fences_failing_ = false;
  std::uint64_t journal_bytes_ = 0;
  std::uint64_t snapshot_bytes_ = 0;
  stats::JournalCounters counters_;
  std::uint64_t syncs_ = 0;
  std::uint64_t compactions_ = 0;
  bool dirty_ = false;          // written since the last successful fsync
  bool needs_rewrite_ = false;  // a failed fsync: only a compaction makes the state durable again
  bool compacting_ = false;     // between begin_compaction() and its finish or abort
  std::uint64_t compaction_generation_ = 0;
  // Since begin_compaction(), the last state recorded for each name changed
  // (nullopt: deleted), for the snapshot's tail. Records carry absolute
  // states, so the last one per name is all the tail needs: it stays as
  // small as the set of names changed while the child writes, however
  // many times each changes.
  std::unordered_map<std::string, std::optional<CreatedState>> kept_;
};

}  // namespace netsem::server
