// check_open_segments: the check of a Raft data directory's open segments
// that libraft 0.15 does not make. When libraft loads an open segment (the
// one entries were being appended to: `open-N`), a batch that fails its
// checksum is taken for a write torn by a crash, and that batch and
// everything after it in the file are dropped, even with auto-recovery off
// (uvSegmentLoadOpen: "has non-zero trail" is only traced). But an entry
// this node wrote and acknowledged may be one a majority needed to commit:
// dropping it in silence can lose a committed entry when another server
// fails too. So the first batch that does not decode is judged:
// - followed by a batch that does decode (or, when its own header is sound,
//   by any written byte past its end): damage in the middle of the log,
//   always refused;
// - the last thing written: a write torn by a power loss (a kill -9 tears
//   nothing: the bytes were in the kernel already), or damage to the last
//   batch; the two cannot be told apart, so it is refused too, unless the
//   operator says the node lost power (`accept_torn_tail`: netsemd --repair),
//   which lets libraft drop it. Safe when the other servers hold the log;
//   otherwise wipe the node and add it back.
// - the file ends inside a batch (its header or its data): cut short.
//   libraft sizes an open segment before it writes to it and truncates one
//   only at the end of a batch (just before renaming it closed), so no crash
//   leaves this; libraft 0.15 would read past its buffer. Always refused,
//   with or without `accept_torn_tail`.
// A segment that ends where its zeros begin (the usual end of what was
// written), or at the end of a batch, is fine. A file cut at the end of a
// batch cannot be told from one a crash left between libraft's truncate and
// its rename, so the entries cut off that way are lost in silence: a
// server's Raft log is only as safe as its disk (docs/replication.md).
//
// The segment layout (libraft 0.15, uv_segment.c and uv_encoding.c): the
// format version (u64, 1), then batches: CRC-32 of the header and of the
// data (u32 each; libraft's CRC: polynomial 0x04C11DB7, MSB first, from 0),
// the header (entry count n u64, then per entry its term u64, type u8, 3
// unused bytes, data size u32), then the entries' data; batches start at
// multiples of 8. All little-endian.
//
// Thread safety: a pure function over the files it reads.
#pragma once

#include <string>

#include "netsem/status.h"

namespace netsem::raft {

// OK when every `open-*` file of `data_dir` is what libraft may load
// without dropping written data (with `accept_torn_tail`, a last batch that
// does not decode is let go); kCorruption naming the file, the byte offset
// of the failing batch and what to do otherwise; kIoError when a file
// cannot be read. Segments in a format other than 1 are left to libraft
// (which refuses them itself).
Status check_open_segments(const std::string& data_dir, bool accept_torn_tail = false);

}  // namespace netsem::raft
