// The on-disk format of FileJournal's data directory (docs/durability.md has
// the byte layout): the header every file starts with, the SET, DELETE and
// END records, the encoders FileJournal (file_journal.h) builds its batch and
// snapshots with, and the readers recovery replays them with. Pure functions
// over bytes, no I/O, so that the tests and the fuzzer drive them directly.
//
// Thread safety: reentrant free functions, no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "journal/journal.h"
#include "netsem/status.h"

namespace netsem::server {

namespace journal_format {

// A journal or snapshot starts with: magic (8 bytes), version (u32), word
// (u64), sequence (u64), crc32 of the bytes before it (u32). The word is the
// generation; the sequence is the number of records made in the data
// directory before the file's first record (a snapshot: the records it
// covers). Version 1 files (written by netsemd before the sequence existed)
// have a 24-byte header without the sequence; they are read as sequence 0.
inline constexpr std::size_t kHeaderSize = 32;
inline constexpr std::size_t kHeaderSizeV1 = 24;
inline constexpr std::uint32_t kVersion = 2;
// The fences file of version 2 is two slots, at offsets 0 and kFenceSlotStride,
// written alternately in place; each slot is magic, version (u32), counter
// (u64, +1 per write), fence bound (u64), proof (u64: the record sequence
// known durable when the slot was written), crc32 of the bytes before it. A
// version 1 fences file is a 24-byte header whose word is the bound.
inline constexpr std::size_t kFenceSlotSize = 40;
inline constexpr std::size_t kFenceSlotStride = 512;
inline constexpr std::size_t kFencesFileSize = kFenceSlotStride + kFenceSlotSize;
// Every record: body length (u32), crc32 of the body (u32), body (type u8,
// payload).
inline constexpr std::size_t kRecordPrefixSize = 8;
inline constexpr std::size_t kMaxNameSize = 65535;  // the name length is a u16
// SET: type, name length (u16), name, value (i64), max (i64).
inline constexpr std::size_t kMaxRecordBody = 1 + 2 + kMaxNameSize + 8 + 8;

enum class FileKind : std::uint8_t { kJournal, kSnapshot, kFences };
enum class RecordType : std::uint8_t { kSet = 1, kDelete = 2, kEnd = 3 };

struct Header {
  std::uint32_t version = kVersion;
  std::uint64_t word = 0;      // the generation
  std::uint64_t sequence = 0;  // 0 in a version 1 header
  std::size_t size = kHeaderSize;
};

// The version 2 header of a journal or snapshot (`kind` not kFences).
std::string encode_header(FileKind kind, std::uint64_t word, std::uint64_t sequence = 0);
// The version 1 header (24 bytes), as the build before version 2 wrote it:
// for tests of reading old data directories, and the old fences file.
std::string encode_header_v1(FileKind kind, std::uint64_t word);
// The header of version 1 or 2. kCorruption when `bytes` is shorter than a
// header or its magic, version or checksum is wrong; the message says which.
Result<Header> parse_header_full(std::string_view bytes, FileKind kind);
// The header's word (parse_header_full(...).word).
Result<std::uint64_t> parse_header(std::string_view bytes, FileKind kind);

// One slot of a version 2 fences file.
struct FenceSlot {
  std::uint64_t counter = 0;
  std::uint64_t bound = 0;
  std::uint64_t proof = 0;
};
std::string encode_fence_slot(const FenceSlot& slot);
// What a fences file says: the slot with the highest counter among the valid
// ones; `other_valid` false when the other slot is damaged (a torn write of
// it, or worse: see FileJournal for the slack it then adds to the bound).
struct FencesFile {
  FenceSlot slot;
  bool other_valid = true;
  std::uint32_t version = kVersion;
};
// A fences file of version 1 (one header) or 2 (two slots). kCorruption when
// no slot is valid, naming why.
Result<FencesFile> parse_fences(std::string_view bytes);

// Append one record to `out`. REQUIRES as FileJournal::record_set.
void append_set(std::string& out, std::string_view name, const CreatedState& state);
void append_delete(std::string& out, std::string_view name);
// The last record of a snapshot: the number of records before it.
void append_end(std::string& out, std::uint64_t records);
// A whole snapshot file: header, one SET per entry, END. `sequence`: the
// records made before it, all of which it covers.
std::string encode_snapshot(std::uint64_t generation, const std::map<std::string, CreatedState>& state,
                            std::uint64_t sequence = 0);

// The `run` file: what the data directory remembers of the server's last
// run, for the lease wait after a restart (docs/durability.md, "Restarts").
// One line of text, rewritten atomically: `netsemd-run 1 running
// session_timeout_ms=<T>` while a server runs, `netsemd-run 1 stopped
// session_timeout_ms=<T> held=<N>` once it stopped cleanly with N permits
// held by sessions when it began to stop.
struct RunRecord {
  enum class State : std::uint8_t {
    kNone,     // no run recorded: a new data directory
    kRunning,  // a run that never recorded its stop: it crashed or was killed
    kStopped,  // a run that stopped cleanly
  };
  State state = State::kNone;
  std::int64_t session_timeout_ms = 0;  // the run's; its clients' leases were computed from it
  std::uint64_t held = 0;               // kStopped: permits held when it began to stop
  friend bool operator==(const RunRecord&, const RunRecord&) = default;
};
// The file's bytes. REQUIRES: state != kNone, session_timeout_ms >= 0.
std::string encode_run_record(const RunRecord& record);
// kCorruption naming what is wrong for anything encode_run_record() does
// not make (the file's name is the caller's to add).
Result<RunRecord> parse_run_record(std::string_view bytes);

}  // namespace journal_format

// Why a replay stopped.
enum class ReplayStop : std::uint8_t {
  kCleanEnd,          // every byte was a good record (a snapshot: ended by its END record)
  kTornTail,          // the last record is incomplete, or the rest of the file is zeros
  kChecksumMismatch,  // a complete record whose crc32 does not match
  kBadRecord,         // a record with a good checksum that does not parse (a length out of range,
                      // an unknown type, value > max, a record where this file allows none)
  kBadHeader,         // the header is missing or wrong: nothing was applied
};
// "clean end", "torn tail", "checksum mismatch", "bad record", "bad header".
std::string_view replay_stop_name(ReplayStop stop);

struct ReplayResult {
  ReplayStop stop = ReplayStop::kBadHeader;
  std::uint64_t generation = 0;  // from the header
  std::uint64_t sequence = 0;    // from the header (0 in version 1)
  std::size_t good_bytes = 0;    // the good prefix: the header and every record applied
  std::size_t records = 0;       // records applied (a snapshot's END not counted)
};

// Applies the good records of a journal file (header included) to `state`,
// in order, and stops at the first bad byte. Never reads outside `bytes`.
// Replaying bytes[0, good_bytes) gives the same state and kCleanEnd.
ReplayResult replay_journal(std::string_view bytes, std::map<std::string, CreatedState>& state);
// The offset of the first complete, checksummed record that parses at or
// after `from` in journal `bytes` (scanning byte by byte), or nullopt. A
// replay that stopped at `from` with such a record after it stopped at
// damage in the middle of the journal, not at a torn tail: a write that
// crashed midway leaves nothing valid after it. `records` receives how many
// valid records follow in a row from there.
std::optional<std::size_t> find_record_after(std::string_view bytes, std::size_t from, std::size_t* records = nullptr);
// Likewise for a snapshot file: SET records (then, in one written while the
// server ran, the SET and DELETE records made meanwhile), then END with
// their count. A snapshot without its END, or with bytes after it, is not
// kCleanEnd.
ReplayResult replay_snapshot(std::string_view bytes, std::map<std::string, CreatedState>& state);

}  // namespace netsem::server
