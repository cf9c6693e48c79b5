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
#include <string>
#include <string_view>

#include "netsem/status.h"
#include "server/journal.h"

namespace netsem::server {

namespace journal_format {

// Every file starts with: magic (8 bytes), version (u32), word (u64), crc32 of
// the 20 bytes before it (u32). The word is the generation for a journal or
// a snapshot, the reserved fence bound for the fences file.
inline constexpr std::size_t kHeaderSize = 24;
inline constexpr std::uint32_t kVersion = 1;
// Every record: body length (u32), crc32 of the body (u32), body (type u8,
// payload).
inline constexpr std::size_t kRecordPrefixSize = 8;
inline constexpr std::size_t kMaxNameSize = 65535;  // the name length is a u16
// SET: type, name length (u16), name, value (i64), max (i64).
inline constexpr std::size_t kMaxRecordBody = 1 + 2 + kMaxNameSize + 8 + 8;

enum class FileKind : std::uint8_t { kJournal, kSnapshot, kFences };
enum class RecordType : std::uint8_t { kSet = 1, kDelete = 2, kEnd = 3 };

// The 24-byte header of a file of `kind`.
std::string encode_header(FileKind kind, std::uint64_t word);
// The header's word. kCorruption when `bytes` is shorter than a header or its
// magic, version or checksum is wrong; the message says which.
Result<std::uint64_t> parse_header(std::string_view bytes, FileKind kind);

// Append one record to `out`. REQUIRES as FileJournal::record_set.
void append_set(std::string& out, std::string_view name, const CreatedState& state);
void append_delete(std::string& out, std::string_view name);
// The last record of a snapshot: the number of SET records before it.
void append_end(std::string& out, std::uint64_t records);
// A whole snapshot file: header, one SET per entry, END.
std::string encode_snapshot(std::uint64_t generation, const std::map<std::string, CreatedState>& state);

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
  std::size_t good_bytes = 0;    // the good prefix: the header and every record applied
  std::size_t records = 0;       // records applied (a snapshot's END not counted)
};

// Applies the good records of a journal file (header included) to `state`,
// in order, and stops at the first bad byte. Never reads outside `bytes`.
// Replaying bytes[0, good_bytes) gives the same state and kCleanEnd.
ReplayResult replay_journal(std::string_view bytes, std::map<std::string, CreatedState>& state);
// Likewise for a snapshot file: SET records then END with their count. A
// snapshot without its END, or with bytes after it, is not kCleanEnd.
ReplayResult replay_snapshot(std::string_view bytes, std::map<std::string, CreatedState>& state);

}  // namespace netsem::server
