// LocalSemaphores: host-wide counting semaphores shared by every process of
// one user on this host, for `$` names and for fallback while no server can
// be reached.
//
// Each name is one System V semaphore set: its semaphore 0 counts the free
// permits, its semaphore 1 the permits held host-wide. Permits held through
// acquire() move from the first to the second in one semop with SEM_UNDO, so the kernel gives them back when the
// process dies, SIGKILL included: no lock file to clean up, no permit leaked by a crash. System V keys are small
// integers, so names map to semaphore ids through a registry directory (LocalRegistry, local_registry.h; see also
// docs/local-semaphores.md); the kernel does the counting and blocking.
//
// WAIT/POST semantics (consume, give back) use the same semaphore without
// SEM_UNDO: a consumed permit does not come back when the process exits.
//
// Limits: a semaphore is made with the limit of the first call that needs it
// on this host, lowered to kMaxLimit (the kernel's SEMVMX). A later call with
// another limit changes it only while the semaphore is idle (all permits
// free, nobody waiting); otherwise the semaphore keeps the limit it has, since
// resetting the value under holders would break the count. "The semaphore's
// limit" below is that recorded limit.
//
// Server permits and fallback: so that fallback never grants a name while a
// process of this host still holds it from the server (and a server grant
// never starts while fallback holders of the name still run), both kinds of
// permit are marked in a host-wide table of holders (LocalRegistry::Table):
// mark_server_holder() waits until the name has no fallback holder and no
// lost server permit on the host and counts the server permit, atomically;
// mark_lost() moves the mark of a lost server permit to the lost ones, so
// that a restarted server's grant on this host waits for the work under it
// to stop; acquire() with a Mark to fill (fallback) takes its permits, then
// counts itself as a fallback holder only if the name has no server holder,
// lost or not, or gives them back and waits. Marks are taken with SEM_UNDO,
// so a process that dies drops its own.
//
// The Python client (clients/python/netsem/_local.py) makes the same kernel
// calls on the same semaphores, so C++ and Python processes of one host share
// every name; docs/local-semaphores.md, "The format both clients follow", is
// the contract between the two.
//
// Unlike the server, waiters are not served in FIFO order (the kernel wakes
// whoever fits), and a try may take permits while others wait for more.
//
// Thread safety: all methods from any thread. After fork() the child must use
// its own LocalSemaphores: permits held through SEM_UNDO are not inherited.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "client/local_registry.h"
#include "netsem/client.h"
#include "netsem/status.h"

namespace netsem::client {

class LocalSemaphores {
 public:
  // The largest value a System V semaphore holds (SEMVMX); larger limits are
  // lowered to it.
  static constexpr std::int64_t kMaxLimit = LocalRegistry::kMaxLimit;
  // A timeout longer than this (about 100 years) waits for ever: adding it to
  // a clock reading could overflow.
  static constexpr std::chrono::milliseconds kForeverAfter = std::chrono::hours(24 * 365 * 100);

  // The semaphore a grant of acquire() was taken on. release() gives permits
  // back only there, so a grant lost with a removed semaphore can never free
  // a permit of the fresh one that replaced it.
  struct Grant {
    int id = -1;
    std::time_t ctime = 0;  // sem_ctime: tells a reused id apart
  };

  // A permit counted in the table of holders, for unmark(). Each permit
  // counts once, whatever its count: what matters is whether there is one.
  struct Mark {
    LocalRegistry::Table table;  // table.id -1: no mark
    int index = -1;              // the semaphore of the table it added to
    bool valid() const { return table.id >= 0; }
  };
  // Slots of the table of holders: names share a slot by hash, so a server
  // holder of one name delays the fallback of another one time in this many.
  static constexpr int kHolderSlots = 4096;

  // `dir` holds the registry; created (mode 0700) on first use when missing.
  // Empty means default_dir(). A directory that is not owned by this user, or
  // that others may write, is refused (every call then fails with kIoError).
  explicit LocalSemaphores(std::filesystem::path dir);

  // $XDG_RUNTIME_DIR/netsem when XDG_RUNTIME_DIR is set, else
  // /tmp/netsem-<uid>.
  static std::filesystem::path default_dir();

  // Takes `count` permits of the local semaphore `key` whose limit is
  // `limit` (the semaphore is made with that many free permits on first use
  // on this host). Waits up to `timeout` (nullopt, or more than
  // kForeverAfter: for ever; zero or negative: try), returning early with
  // kCancelled when `cancel` is cancelled (checked at least every 50 ms; a
  // grant that raced the cancel is given back). On OK, `*grant` (when not
  // null) says which semaphore holds the permits, for release(). Returns OK,
  // kTimeout, kCancelled, kTooMany (count > the semaphore's limit),
  // kInvalidArgument (empty key, count or limit < 1), kIoError (registry or
  // kernel failure).
  //
  // With `fallback_mark` (fallback for a server name): the permits are
  // granted only while no process of the host holds `key` from the server
  // (mark_server_holder); until then the call waits, within `timeout`, and
  // on OK `*fallback_mark` counts this permit as a fallback holder of `key`
  // (give it back with unmark() after release()).
  Status acquire(std::string_view key, std::int64_t limit, std::int64_t count,
                 std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel, Grant* grant = nullptr,
                 Mark* fallback_mark = nullptr);
  // Counts a permit of `key` granted by the server to this process in the
  // host-wide table, waiting (up to `timeout`, like acquire) until no
  // fallback permit and no lost server permit of `key` is held on the host.
  // Returns OK (with `*mark`), kTimeout, kCancelled or kIoError.
  Status mark_server_holder(std::string_view key, std::optional<std::chrono::milliseconds> timeout,
                            const CancelToken* cancel, Mark* mark);
  // Turns the mark of a server permit into the mark of a lost one (never
  // blocks: for the I/O thread).
  void mark_lost(Mark& mark);
  // Drops a mark of this process. A mark on a table that was removed
  // meanwhile (remove_all, ipcrm) went with it.
  void unmark(const Mark& mark);
  // Gives back `count` permits that acquire() granted as `grant` in this
  // process. kNotHeld when this process holds fewer there (through this
  // object), or when `grant`'s semaphore is no longer `key`'s (removed by
  // remove() or ipcrm: its permits were lost with it); nothing is changed
  // then.
  Status release(std::string_view key, std::int64_t count, const Grant& grant);
  // Like acquire(), but the permits are consumed (no SEM_UNDO). A grant that
  // raced a cancel is posted back.
  Status wait(std::string_view key, std::int64_t limit, std::int64_t count,
              std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel);
  // Adds `count` permits; kOverflow when value + held + count would exceed
  // the semaphore's limit (held: permits acquired, not released, host-wide). Posts are serialized host-wide, so two
  // cannot overshoot together.
  Status post(std::string_view key, std::int64_t limit, std::int64_t count);
  // Free permits now.
  Result<std::int64_t> value(std::string_view key, std::int64_t limit);
  // What `key`'s semaphore holds now. The kernel counts permits and blocked
  // processes, not holders: `held` is permits acquired and not released,
  // host-wide, however many processes hold them.
  struct Info {
    std::int64_t value = 0;    // free permits
    std::int64_t held = 0;     // permits acquired, not released, on this host
    std::int64_t waiting = 0;  // processes blocked waiting for permits
  };
  Result<Info> info(std::string_view key, std::int64_t limit);
  // `key`'s semaphore as this object last saw it, as a Grant for release():
  // for callers (tests) that know their permits are on it. A default Grant,
  // which release() refuses, when this object has not used `key`.
  Grant current(std::string_view key);

  // The System V id of `key`'s semaphore (made as by acquire when missing),
  // as `ipcs -s` shows it.
  Result<int> system_v_id(std::string_view key, std::int64_t limit);
  // Removes `key`'s semaphore. Its holders lose their permits (release()
  // answers kNotHeld) and its waiters move to a fresh semaphore, which the
  // next use makes with all permits free. OK when there was none.
  Status remove(std::string_view key);
  // Removes every semaphore of the registry and the registry files (the
  // directory stays). Meant for clean-up when nothing uses them; concurrent
  // users fare as with remove().
  Status remove_all();

  // The registry file of `key` (LocalRegistry::entry_file_name).
  static std::string entry_file_name(std::string_view key) { return LocalRegistry::entry_file_name(key); }

  const std::filesystem::path& dir() const { return registry_.dir(); }

 private:
  // What this process knows of one name's semaphore: its registry entry and
  // what this process holds of it.
  struct Entry : LocalRegistry::Entry {
    std::int64_t held = 0;  // permits this process took with SEM_UNDO
  };

  // The semaphore for `key`, creating it with `limit` free permits if this
  // host has none yet. Checks a cached entry is still the live semaphore.
  Result<Entry> semaphore(std::string_view key, std::int64_t limit);
  // Drops the cached entry of `key` if it still names `id`.
  void forget(std::string_view key, int id);
  // acquire() and wait(): take `count` permits, with SEM_UNDO when `undo`;
  // with `fallback_mark`, as acquire() says.
  Status take(std::string_view key, std::int64_t limit, std::int64_t count,
              std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel, bool undo, Grant* grant,
              Mark* fallback_mark = nullptr);
  // The table of holders, made on first use; checked live like semaphore().
  Result<LocalRegistry::Table> table();

  std::mutex mutex_;
  LocalRegistry registry_;                          // guarded by mutex_ (its dir() is immutable)
  std::unordered_map<std::string, Entry> entries_;  // guarded by mutex_: cache of registry lookups
  LocalRegistry::Table table_;                      // guarded by mutex_: cache of the table of holders
};

}  // namespace netsem::client
