// Exclusive flock(2) locks on a data directory, as netsemd takes them (the
// single server's journal directory, a cluster node's Raft directory): the
// lock held, waited for a moment while its holder is still exiting, and the
// pid that holds it, for the message that refuses a second server.
//
// Why wait: a netsemd killed with SIGKILL holds its locks until its exit has
// closed its descriptors, and `kill -9` returns before that; a restart typed
// (or scripted) right after the kill found its directory "in use" for a
// moment (a hostile audit; no child process holds the lock: ForkedJob's
// children close every inherited descriptor first, and the descriptors are
// O_CLOEXEC). A second server that runs holds the lock for longer than the
// wait and is refused as before.
//
// Thread safety: pure functions over the file system (lock_exclusive sleeps).
#pragma once

#include <chrono>

namespace netsem {

// How long lock_exclusive waits for a holder to let go, by default.
inline constexpr std::chrono::milliseconds kLockPatience{2000};

// Takes an exclusive flock on `fd` (LOCK_NB attempts every 10 ms for at most
// `patience`). 0 when taken; otherwise the errno of the last attempt
// (EWOULDBLOCK: still held by another open file description).
int lock_exclusive(int fd, std::chrono::milliseconds patience = kLockPatience);

// The pid holding an flock on the file or directory `fd`, from /proc/locks
// (which names it even when the file was deleted); 0 when unknown.
long lock_holder(int fd);

}  // namespace netsem
