// check_open_segments: the check of a Raft data directory's open segments
// that libraft 0.15 does not make. When libraft loads an open segment (the
// one entries were being appended to: `open-N`), a batch that fails its
// checksum is taken for a write torn by a crash, and that batch and
// everything after it in the file are dropped, even with auto-recovery off
// (uvSegmentLoadOpen: "has non-zero trail" is only traced). A torn write
// leaves nothing written after it (the segment is preallocated with zeros
// and written in order); damage (bit rot, a bad sector, another program's
// write) in the middle of the file leaves batches after it. So: a failing
// batch followed only by zeros is what a crash leaves, and libraft may drop
// it (its entries were never acknowledged: the write did not complete); a
// failing batch followed by written bytes is damage, refused before libraft
// could drop acknowledged entries in silence.
//
// The segment layout (libraft 0.15, uv_segment.c and uv_encoding.c): the
// format version (u64, 1), then batches: CRC-32 of the header and of the
// data (u32 each; libraft's CRC: polynomial 0x04C11DB7, MSB first, from 0),
// the header (entry count n u64, then per entry its term u64, type u8, 3
// unused bytes, data size u32), then the entries' data. All little-endian.
//
// Thread safety: a pure function over the files it reads.
#pragma once

#include <string>

#include "netsem/status.h"

namespace netsem::raft {

// OK when every `open-*` file of `data_dir` is what libraft may load
// without dropping written data; kCorruption naming the file and the byte
// offset of the failing batch otherwise; kIoError when a file cannot be
// read. Segments in a format other than 1 are left to libraft (which
// refuses them itself).
Status check_open_segments(const std::string& data_dir);

}  // namespace netsem::raft
