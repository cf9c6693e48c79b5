// Zero-filled Raft segments: libraft's appends on ext4 and xfs without a
// detour through libuv's thread pool.
//
// libraft 0.15 (raft_uv) creates each open segment (open-N, 8 MiB) with
// posix_fallocate, which on ext4 and xfs leaves *unwritten* extents. Its
// appends are O_DIRECT writes submitted through kernel AIO with RWF_NOWAIT,
// and each append rewrites the block its previous append ended in: a write
// that spans a written and an unwritten extent needs the file system's
// journal to convert the extent, so the kernel refuses it with EAGAIN, and
// raft_uv hands the write to libuv's thread pool, which writes again and
// blocks. On this project's machine 68 % of such writes were refused (a
// probe like raft_uv's: 1,000 appends of 16 KiB rewriting their last block),
// and under the cluster benchmark nearly every append of the leader and the
// followers took the detour: an event-loop turn to see the EAGAIN, a thread
// pool wake-up, a second submit, and the extent conversion's journal commit
// before the write's own flush (docs/benchmarks.md, "The cluster's seventh
// run").
//
// netsemd therefore defines posix_fallocate itself: the executable's
// definition comes before the C library's for libraft.so (ELF symbol
// interposition). For a new, empty file in a directory that a
// ZeroFilledSegments registered (RaftNode registers its data directory), it
// allocates the range with the C library's posix_fallocate (so a full disk
// is still ENOSPC, before anything is written) and then writes zeros over it
// and syncs them: the extents are written, and every append that follows is
// a plain overwrite that the kernel takes without waiting. The content is
// what posix_fallocate gives (zeros), so nothing that reads a segment
// (libraft's load, check_open_segments) sees a difference. Any other call
// (another directory, a file that has data, an offset other than 0) is the C
// library's, unchanged, and so is every call on tmpfs (no unwritten extents
// there, and raft_uv writes through the thread pool anyway). The cost: each
// segment's 8 MiB written once more, in the thread pool, while the segment
// before it is in use.
//
// A full disk: libraft 0.15 prepares the next segment ahead and, when that
// fails with no append waiting for it, says nothing (uv_prepare.c); it tries
// again when the segment in use is full, and if that fails too the append
// fails and netsemd stops (RaftOptions::exit_on_write_failure). The
// allocation's ENOSPC in a registered directory (tmpfs too) is therefore
// logged here (warning, naming the directory, at most once per directory in
// 10 s with a count of the others) and counted (no_space(): the metric
// netsem_cluster_segment_no_space_total).
#pragma once

#include <string>

namespace netsem::raft {

// While one lives, posix_fallocate zero-fills the new files of `directory`
// (see above). Registrations nest: two for one directory (two nodes of a
// test in one process) keep it filled until both are gone.
class ZeroFilledSegments {
 public:
  explicit ZeroFilledSegments(const std::string& directory);
  ~ZeroFilledSegments();
  ZeroFilledSegments(const ZeroFilledSegments&) = delete;
  ZeroFilledSegments& operator=(const ZeroFilledSegments&) = delete;

  // How many files this process has zero-filled so far (for tests).
  static unsigned long files_filled();
  // How many allocations in a registered directory the C library refused
  // with ENOSPC (libraft could not prepare a segment: a warning is logged,
  // naming the directory, at most once per directory in 10 s), so far.
  static unsigned long no_space();
  // Whether libraft.so's posix_fallocate is this file's (false when the
  // executable does not export it, or libraft is linked statically): the
  // fill does not happen then, and RaftNode warns.
  static bool interposed();

 private:
  std::string directory_;  // as registered: absolute, without a trailing slash
};

}  // namespace netsem::raft
