// LocalRegistry: the directory that maps each local semaphore's name to its
// System V semaphore, for LocalSemaphores (local_semaphores.h), which counts
// and blocks on the ids it finds here.
//
// System V keys are small integers, so every name has a registry file, named
// after a hash of the name, recording the id of the semaphore made for it
// (the file format is in local_registry.cc; docs/local-semaphores.md, "The
// format both clients follow", states what this code and the Python client's
// clients/python/netsem/_local_registry.py must agree on). A
// file is only read or written under its flock, so every process of the user
// agrees on one semaphore per name. An entry is stale when its id is gone or
// has been reused for another semaphore (ids are reused after IPC_RMID and
// from zero after a reboot); is_live() tells, and find_or_make() replaces a
// stale entry with a fresh semaphore.
//
// Thread safety: the static functions from any thread. The other methods
// record that the directory was checked, so one object is used under one
// lock held by its owner (LocalSemaphores::mutex_); other objects and other
// processes are kept in step by the file locks.
#pragma once

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "netsem/status.h"

namespace netsem::client {

namespace local_detail {

// kIoError "<what>: <strerror(err)>".
Status io_error(std::string_view what, int err);

// io_error for the errno a failed system call just left. The arguments must
// not allocate (pass path.native(), not path.string()), so errno is intact.
template <typename... Args>
Status errno_error(fmt::format_string<Args...> format, Args&&... args) {
  const int err = errno;
  return io_error(fmt::format(format, std::forward<Args>(args)...), err);
}

}  // namespace local_detail

class LocalRegistry {
 public:
  // The largest value a System V semaphore holds (SEMVMX): no entry records
  // a larger limit.
  static constexpr std::int64_t kMaxLimit = 32767;

  // Where one name's semaphore is, as its registry file records it.
  struct Entry {
    int id = -1;
    std::time_t ctime = 0;       // sem_ctime when recorded: tells a reused id apart
    std::int64_t limit = 0;      // the semaphore's recorded limit
    std::filesystem::path file;  // its registry file
  };

  // A registry file, open and flocked until this object is destroyed.
  class LockedFile {
   public:
    explicit LockedFile(int fd) : fd_(fd) {}
    LockedFile(LockedFile&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    LockedFile& operator=(LockedFile&&) = delete;
    ~LockedFile();
    int get() const { return fd_; }

   private:
    int fd_;
  };

  // The registry in `dir`, which is created (mode 0700) on first use when
  // missing. A directory that is not owned by this user, or that others may
  // write, is refused: every method but the static ones then fails with
  // kIoError.
  explicit LocalRegistry(std::filesystem::path dir);

  const std::filesystem::path& dir() const { return dir_; }

  // The registry file of `key`: 16 hex digits of its 64-bit FNV-1a hash
  // (a colliding key gets "-1", "-2", ... appended).
  static std::string entry_file_name(std::string_view key);

  // True when `id` is still the semaphore an entry recorded with sem_ctime
  // `ctime`: a two-semaphore set (free permits, held permits) of this user
  // with that sem_ctime.
  static bool is_live(int id, std::time_t ctime);

  // The semaphore of `key`, made with `limit` free permits when its entry is
  // missing, torn or stale. A live semaphore recorded with another limit is
  // replaced by one with `limit` free permits only while it is idle (all
  // permits free, nobody waiting); otherwise it keeps its limit, which the
  // entry returned says. REQUIRES: !key.empty(), 1 <= limit <= kMaxLimit.
  // Errors: kIoError (directory, file or kernel), kInternal (too many keys
  // share the hash of `key`).
  Result<Entry> find_or_make(std::string_view key, std::int64_t limit);

  // The host-wide table of holders (docs/local-semaphores.md, "Server
  // permits and fallback"): one System V set of kPerSlot * slots
  // semaphores, all 0 when made, recorded in the file kHoldersFile. A name
  // hashes to a slot; semaphore 3 * slot counts the server permits of its
  // names held on this host, 3 * slot + 1 the fallback permits, 3 * slot + 2
  // the server permits that were lost but not yet given up. `slots` is the size to make it
  // with; a live table keeps the size it was made with, which the entry
  // returned says. Errors: kIoError (directory, file or kernel).
  struct Table {
    int id = -1;
    std::time_t ctime = 0;
    int slots = 0;
  };
  static constexpr std::string_view kHoldersFile = "holders";
  static constexpr int kPerSlot = 3;
  Result<Table> find_or_make_table(int slots);
  // True when `table` is still the set that was recorded.
  static bool is_live(const Table& table);
  // The slot of `key` in a table of `slots` slots.
  static int slot_of(std::string_view key, int slots);

  // Opens and locks the registry file `file` of an entry, for a caller that
  // must keep other processes off that entry for a while (posters check the
  // value and add to it under this lock). kIoError when it cannot.
  static Result<LockedFile> lock_entry(const std::filesystem::path& file);

  // One name of the registry as list() found it: its record and what the
  // kernel says of its semaphore now (netsem local list).
  struct Listed {
    std::string key;
    std::filesystem::path file;
    int id = -1;
    std::int64_t limit = 0;
    std::int64_t value = 0;    // free permits (GETVAL of semaphore 0)
    std::int64_t held = 0;     // permits acquired, not released, host-wide (GETVAL of semaphore 1)
    std::int64_t waiting = 0;  // processes blocked for permits (GETNCNT of semaphore 0)
  };
  // Every name whose record names a live semaphore, sorted by name; a stale
  // or torn record is left out. Reads each file under its lock; never
  // creates anything (a missing directory lists nothing). Errors: kIoError.
  Result<std::vector<Listed>> list();

  // What clean() did, or would do, with one registry file.
  struct Cleaned {
    Listed entry;          // key empty for a torn record
    bool stale = false;    // its semaphore was already gone: only the file went
    bool removed = false;  // removed (or, dry run, would be)
    std::string reason;    // why it was kept, when it was
  };
  // Removes the semaphores no process holds or waits on, and the stale
  // records, with their files (netsem local clean). A live semaphore is
  // removed only when it has all its permits free, none held and nobody
  // waiting; the check and the removal cannot race a process taking one,
  // since under the entry's lock (which keeps posters and makers off) clean
  // first takes every permit in one semop with IPC_NOWAIT (and SEM_UNDO, so a
  // crash gives them back), which succeeds only when all are free and leaves
  // none for a newcomer, who blocks and then finds the semaphore gone
  // (EIDRM) and makes a fresh one. A semaphore with permits consumed by
  // wait() is kept: removing it would give them back. With `dry_run` nothing
  // is taken nor removed: what the counts say now decides. A try (IPC_NOWAIT)
  // racing a real clean may find the semaphore busy for that moment. The table of holders is
  // not touched (it is shared by every server name). Errors: kIoError.
  Result<std::vector<Cleaned>> clean(bool dry_run);

  // Removes `key`'s semaphore, keeping its (now stale) entry. OK when there
  // is none.
  Status remove(std::string_view key);
  // Removes every semaphore of the registry, the table of holders, and
  // every registry file (the directory stays). Goes on after an error and returns the first one.
  Status remove_all();

 private:
  // Creates the registry directory or checks the existing one.
  Status check_dir();

  std::filesystem::path dir_;
  bool dir_checked_ = false;
};

}  // namespace netsem::client
