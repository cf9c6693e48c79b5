// The bytes RaftNode puts into libraft's log entries and snapshots around the
// StateMachine's own bytes (docs/replication.md, "What a node stores"). Pure
// functions, no I/O: raft_node_proposals.cc frames and unframes with them,
// the tests and fuzzing feed them anything.
//
// A batch entry (one libraft RAFT_COMMAND entry holding the commands proposed
// together, in their proposal order), all integers little-endian:
//   [4] "nsrb"  [4] CRC-32 of everything after it  [4] n
//   n x ([4] length, length bytes)
//   zero bytes up to a multiple of 8 (libraft 0.15's TCP transport pads
//   every entry to 8 bytes on the receiving side but not on the sending one:
//   an entry of another length arrives shifted, so every entry must be one)
// A snapshot:
//   [4] "nsrs"  [4] CRC-32 of the payload  [8] payload length  payload
// Anything that does not parse exactly (wrong magic, checksum, lengths,
// trailing bytes) is kCorruption, never a partial result.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"

namespace netsem::raft {

// The largest command, and the most commands in one batch, that a batch may carry.
inline constexpr std::size_t kMaxCommandBytes = 16u << 20;
inline constexpr std::size_t kMaxBatchCommands = 1u << 16;

// Appends the framing of `commands` to `out` (which is cleared first).
// REQUIRES: 1 <= commands.size() <= kMaxBatchCommands, each <= kMaxCommandBytes.
void encode_batch(const std::vector<std::string>& commands, std::string& out);
// The size encode_batch writes for `commands`.
std::size_t batch_size(const std::vector<std::string>& commands);

// The commands of a batch, as views into `entry`; kCorruption when it is not one.
Result<std::vector<std::string_view>> decode_batch(std::string_view entry);

// The framed snapshot of `payload`.
std::string encode_snapshot(std::string_view payload);
// The payload of a framed snapshot (a view into `framed`); kCorruption when it is not one.
Result<std::string_view> decode_snapshot(std::string_view framed);

}  // namespace netsem::raft
