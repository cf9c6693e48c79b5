// Host-wide local semaphores (see local_semaphores.h): one System V semaphore
// per name, found through the registry directory (local_registry.h).
//
// API: every call goes through semaphore(), which answers from the in-process
// cache after one IPC_STAT proves the cached id is still the semaphore it
// recorded, and otherwise asks the registry (LocalRegistry::find_or_make),
// which reads the name's registry file under an flock and makes the semaphore
// when the entry is missing or stale. take() then waits in the kernel
// (semop/semtimedop); release() and post() add permits back. A semaphore
// removed under a waiter (EIDRM) sends it back to semaphore(), which makes a
// fresh one.
#include "client/local_semaphores.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include <sys/sem.h>
#include <unistd.h>

#include <fmt/format.h>

namespace netsem::client {

using local_detail::errno_error;

namespace {

// How often a cancellable wait looks at its CancelToken: the kernel cannot
// wake a semop for us, so a cancel is seen within this long.
constexpr auto kCancelSlice = std::chrono::milliseconds(50);

// The two semaphores of a set (local_registry.cc).
constexpr unsigned short kFree = 0;  // free permits
constexpr unsigned short kHeld = 1;  // permits held (acquired, not consumed) host-wide

Result<int> get_value(int id, unsigned short which = kFree) {
  const int value = ::semctl(id, which, GETVAL);
  if (value < 0) return errno_error("semctl(GETVAL) of semaphore {}", id);
  return value;
}

// The operations that take (`sign` -1) or give back (+1) `count` permits: the
// free count, and for held permits (`undo`) the held count the other way, in
// one semop so that a crash (SEM_UNDO) or a racing post never sees them apart.
struct Ops {
  sembuf op[3];
  std::size_t size;
};
Ops permit_ops(int sign, std::int64_t count, bool undo) {
  const auto delta = static_cast<short>(sign * count);
  if (!undo) return {{{kFree, delta, 0}, {}, {}}, 1};
  return {{{kFree, delta, SEM_UNDO}, {kHeld, static_cast<short>(-delta), SEM_UNDO}, {}}, 2};
}

// Applies `ops` at once (they cannot block), retrying on EINTR.
int semop_now(int id, Ops ops) {
  for (std::size_t i = 0; i < ops.size; ++i) ops.op[i].sem_flg = static_cast<short>(ops.op[i].sem_flg | IPC_NOWAIT);
  int rc = 0;
  while ((rc = ::semop(id, ops.op, ops.size)) != 0 && errno == EINTR) {
  }
  return rc;
}

enum class Outcome { kDone, kTimedOut, kCancelled, kRemoved, kError };

// One semop of `ops` on `id`, waiting until `deadline` (none: for ever),
// and looking at `cancel` every kCancelSlice. On kError, errno tells why.
Outcome semop_until(int id, const Ops& ops, std::optional<std::chrono::steady_clock::time_point> deadline,
                    const CancelToken* cancel) {
  using Clock = std::chrono::steady_clock;
  for (;;) {
    if (cancel != nullptr && cancel->cancelled()) return Outcome::kCancelled;
    Ops now = ops;
    int rc = 0;
    bool nowait = false;
    if (!deadline && cancel == nullptr) {
      rc = ::semop(id, now.op, now.size);
    } else {
      auto wait = deadline ? *deadline - Clock::now() : Clock::duration::max();
      if (wait <= Clock::duration::zero()) {
        nowait = true;
        for (std::size_t i = 0; i < now.size; ++i) {
          now.op[i].sem_flg = static_cast<short>(now.op[i].sem_flg | IPC_NOWAIT);
        }
        rc = ::semop(id, now.op, now.size);
      } else {
        if (cancel != nullptr) wait = std::min<Clock::duration>(wait, kCancelSlice);
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
        const timespec ts{.tv_sec = static_cast<time_t>(ns / 1'000'000'000),
                          .tv_nsec = static_cast<long>(ns % 1'000'000'000)};
        rc = ::semtimedop(id, now.op, now.size, &ts);
      }
    }
    if (rc == 0) return Outcome::kDone;
    switch (errno) {
      case EINTR:
        continue;
      case EAGAIN:
        if (nowait) return Outcome::kTimedOut;
        continue;  // a slice ended: look at the token and the deadline again
      case EIDRM:
      case EINVAL:
        return Outcome::kRemoved;
      default:
        return Outcome::kError;
    }
  }
}

// The table of holders' three semaphores for a slot (local_registry.h).
unsigned short server_holders(int slot) {
  return static_cast<unsigned short>(LocalRegistry::kPerSlot * slot);
}
unsigned short fallback_holders(int slot) {
  return static_cast<unsigned short>(LocalRegistry::kPerSlot * slot + 1);
}
unsigned short lost_holders(int slot) {
  return static_cast<unsigned short>(LocalRegistry::kPerSlot * slot + 2);
}

std::optional<std::chrono::steady_clock::time_point> deadline_of(std::optional<std::chrono::milliseconds> timeout) {
  if (!timeout || *timeout > LocalSemaphores::kForeverAfter) return std::nullopt;
  return std::chrono::steady_clock::now() + std::max(*timeout, std::chrono::milliseconds(0));
}

std::int64_t effective_limit(std::int64_t limit) {
  return std::min(limit, LocalSemaphores::kMaxLimit);
}

}  // namespace

LocalSemaphores::LocalSemaphores(std::filesystem::path dir) : registry_(dir.empty() ? default_dir() : std::move(dir)) {}

std::filesystem::path LocalSemaphores::default_dir() {
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime != nullptr && runtime[0] != '\0') {
    return std::filesystem::path(runtime) / "netsem";
  }
  return fmt::format("/tmp/netsem-{}", ::geteuid());
}

Result<LocalSemaphores::Entry> LocalSemaphores::semaphore(std::string_view key, std::int64_t limit) {
  if (key.empty()) return Status(StatusCode::kInvalidArgument, "a local semaphore needs a name");
  if (limit < 1) return Status(StatusCode::kInvalidArgument, fmt::format("limit {} of `{}` is below 1", limit, key));
  limit = effective_limit(limit);
  const std::lock_guard lock(mutex_);
  auto it = entries_.find(std::string(key));
  if (it != entries_.end() && it->second.limit == limit && LocalRegistry::is_live(it->second.id, it->second.ctime)) {
    return it->second;
  }
  auto found = registry_.find_or_make(key, limit);
  if (!found) return found.status();
  if (it == entries_.end()) {
    it = entries_.emplace(std::string(key), Entry{*found, 0}).first;
  } else {
    // Permits held on a semaphore that is gone went with it.
    const bool same = it->second.id == found->id && it->second.ctime == found->ctime;
    const std::int64_t held = same ? it->second.held : 0;
    it->second = Entry{*found, held};
  }
  return it->second;
}

Result<LocalRegistry::Table> LocalSemaphores::table() {
  const std::lock_guard lock(mutex_);
  if (table_.id >= 0 && LocalRegistry::is_live(table_)) return table_;
  auto found = registry_.find_or_make_table(kHolderSlots);
  if (!found) return found.status();
  table_ = *found;
  return table_;
}

Status LocalSemaphores::mark_server_holder(std::string_view key, std::optional<std::chrono::milliseconds> timeout,
                                           const CancelToken* cancel, Mark* mark) {
  const auto deadline = deadline_of(timeout);
  for (;;) {
    auto found = table();
    if (!found) return found.status();
    const int slot = LocalRegistry::slot_of(key, found->slots);
    // No fallback holder and no lost server permit still held, and then one
    // more server holder, in one step.
    const Ops ops{{{fallback_holders(slot), 0, 0}, {lost_holders(slot), 0, 0}, {server_holders(slot), 1, SEM_UNDO}}, 3};
    switch (semop_until(found->id, ops, deadline, cancel)) {
      case Outcome::kDone:
        *mark = Mark{.table = *found, .index = server_holders(slot)};
        return Status::ok();
      case Outcome::kTimedOut:
        return Status(StatusCode::kTimeout,
                      fmt::format("processes of this host still hold `{}` from a fallback (a host-local semaphore "
                                  "while no server was reachable) or under a lost server permit",
                                  key));
      case Outcome::kCancelled:
        return Status(StatusCode::kCancelled, fmt::format("waiting for `{}` was cancelled", key));
      case Outcome::kRemoved:
        continue;  // table() makes a fresh one
      case Outcome::kError:
        return errno_error("semop on the table of holders (id {})", found->id);
    }
  }
}

void LocalSemaphores::mark_lost(Mark& mark) {
  if (!mark.valid() || mark.index % LocalRegistry::kPerSlot != 0 || !LocalRegistry::is_live(mark.table)) return;
  const int slot = mark.index / LocalRegistry::kPerSlot;
  if (semop_now(mark.table.id, Ops{{{server_holders(slot), -1, SEM_UNDO}, {lost_holders(slot), 1, SEM_UNDO}}, 2}) ==
      0) {
    mark.index = lost_holders(slot);
  }
}

void LocalSemaphores::unmark(const Mark& mark) {
  if (!mark.valid() || !LocalRegistry::is_live(mark.table)) return;  // removed: the mark went with it
  (void)semop_now(mark.table.id, Ops{{{static_cast<unsigned short>(mark.index), -1, SEM_UNDO}, {}, {}}, 1});
}

void LocalSemaphores::forget(std::string_view key, int id) {
  const std::lock_guard lock(mutex_);
  const auto it = entries_.find(std::string(key));
  if (it != entries_.end() && it->second.id == id) entries_.erase(it);
}

Status LocalSemaphores::take(std::string_view key, std::int64_t limit, std::int64_t count,
                             std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel, bool undo,
                             Grant* grant, Mark* fallback_mark) {
  if (count < 1) return Status(StatusCode::kInvalidArgument, fmt::format("count {} is below 1", count));
  const auto deadline = deadline_of(timeout);
  for (;;) {
    auto entry = semaphore(key, limit);
    if (!entry) return entry.status();
    if (count > entry->limit) {
      return Status(StatusCode::kTooMany,
                    fmt::format("{} permits of `{}` asked, its limit is {}", count, key, entry->limit));
    }
    switch (semop_until(entry->id, permit_ops(-1, count, undo), deadline, cancel)) {
      case Outcome::kDone:
        if (cancel != nullptr && cancel->cancelled()) {
          // The grant raced the cancel: give it back (SEM_UNDO again cancels
          // the adjustment the take made). Removed meanwhile: nothing to give.
          (void)semop_now(entry->id, permit_ops(+1, count, undo));
          return Status(StatusCode::kCancelled, fmt::format("waiting for `{}` was cancelled", key));
        }
        if (fallback_mark != nullptr) {
          // Taken first, then counted as a fallback holder only while no
          // server holder exists: mark_server_holder() does the converse in
          // one step, so the two never both go ahead.
          auto found = table();
          if (!found) {
            (void)semop_now(entry->id, permit_ops(+1, count, undo));
            return found.status();
          }
          const int slot = LocalRegistry::slot_of(key, found->slots);
          if (semop_now(
                  found->id,
                  Ops{{{server_holders(slot), 0, 0}, {lost_holders(slot), 0, 0}, {fallback_holders(slot), 1, SEM_UNDO}},
                      3}) != 0) {
            const int err = errno;
            (void)semop_now(entry->id, permit_ops(+1, count, undo));
            if (err != EAGAIN && err != EIDRM && err != EINVAL) {
              return local_detail::io_error(fmt::format("semop on the table of holders (id {})", found->id), err);
            }
            if (err == EAGAIN) {
              // A process of this host still runs under a server permit of
              // `key`: wait until none does, then start again.
              const Ops none{{{server_holders(slot), 0, 0}, {lost_holders(slot), 0, 0}, {}}, 2};
              switch (semop_until(found->id, none, deadline, cancel)) {
                case Outcome::kDone:
                case Outcome::kRemoved:
                  continue;
                case Outcome::kTimedOut:
                  return Status(StatusCode::kTimeout,
                                fmt::format("timed out waiting for {} permits of `{}`: processes of this host still "
                                            "hold it from the server",
                                            count, key));
                case Outcome::kCancelled:
                  return Status(StatusCode::kCancelled, fmt::format("waiting for `{}` was cancelled", key));
                case Outcome::kError:
                  return errno_error("semop on the table of holders (id {})", found->id);
              }
            }
            continue;  // the table was removed: table() makes a fresh one
          }
          *fallback_mark = Mark{.table = *found, .index = fallback_holders(slot)};
        }
        if (undo) {
          const std::lock_guard lock(mutex_);
          const auto it = entries_.find(std::string(key));
          if (it != entries_.end() && it->second.id == entry->id && it->second.ctime == entry->ctime) {
            it->second.held += count;
          }
        }
        if (grant != nullptr) *grant = Grant{.id = entry->id, .ctime = entry->ctime};
        return Status::ok();
      case Outcome::kTimedOut:
        return Status(StatusCode::kTimeout, fmt::format("timed out waiting for {} permits of `{}`", count, key));
      case Outcome::kCancelled:
        return Status(StatusCode::kCancelled, fmt::format("waiting for `{}` was cancelled", key));
      case Outcome::kRemoved:
        forget(key, entry->id);  // removed under us: wait on the fresh one
        continue;
      case Outcome::kError:
        return errno_error("semop on local semaphore `{}` (id {})", key, entry->id);
    }
  }
}

Status LocalSemaphores::acquire(std::string_view key, std::int64_t limit, std::int64_t count,
                                std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel,
                                Grant* grant, Mark* fallback_mark) {
  return take(key, limit, count, timeout, cancel, /*undo=*/true, grant, fallback_mark);
}

Status LocalSemaphores::wait(std::string_view key, std::int64_t limit, std::int64_t count,
                             std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel) {
  return take(key, limit, count, timeout, cancel, /*undo=*/false, nullptr);
}

Status LocalSemaphores::release(std::string_view key, std::int64_t count, const Grant& grant) {
  if (count < 1) return Status(StatusCode::kInvalidArgument, fmt::format("count {} is below 1", count));
  int id = -1;
  {
    const std::lock_guard lock(mutex_);
    const auto it = entries_.find(std::string(key));
    if (it == entries_.end() || it->second.id != grant.id || it->second.ctime != grant.ctime) {
      // Another semaphore is `key`'s now: adding to it would hand out a
      // permit that someone else's grant already counts.
      return Status(StatusCode::kNotHeld,
                    fmt::format("the permits of `{}` were lost: its semaphore (id {}) was removed", key, grant.id));
    }
    const std::int64_t held = it->second.held;
    if (held < count) {
      return Status(StatusCode::kNotHeld,
                    fmt::format("releasing {} permits of `{}`, this process holds {}", count, key, held));
    }
    if (!LocalRegistry::is_live(grant.id, grant.ctime)) {
      return Status(StatusCode::kNotHeld,
                    fmt::format("the permits of `{}` were lost: its semaphore (id {}) was removed", key, grant.id));
    }
    it->second.held -= count;
    id = it->second.id;
  }
  // SEM_UNDO on the way back too: it cancels the adjustment the acquire made,
  // so exiting later gives nothing back twice.
  if (semop_now(id, permit_ops(+1, count, /*undo=*/true)) != 0) {
    if (errno == EIDRM || errno == EINVAL) {
      return Status(StatusCode::kNotHeld, fmt::format("the permits of `{}` were lost: its semaphore was removed", key));
    }
    return errno_error("semop on local semaphore `{}` (id {})", key, id);
  }
  return Status::ok();
}

Status LocalSemaphores::post(std::string_view key, std::int64_t limit, std::int64_t count) {
  if (count < 1) return Status(StatusCode::kInvalidArgument, fmt::format("count {} is below 1", count));
  for (;;) {
    auto entry = semaphore(key, limit);
    if (!entry) return entry.status();
    {
      // The registry file's lock serializes posters, so that two posts cannot
      // both pass the check below and overshoot the limit together.
      const auto guard = LocalRegistry::lock_entry(entry->file);
      // A file gone since semaphore() looked was removed with its semaphore
      // (netsem local clean, remove_all): look again below.
      if (!guard && ::access(entry->file.c_str(), F_OK) == 0) return guard.status();
      if (guard && LocalRegistry::is_live(entry->id, entry->ctime)) {
        // Free plus held stays put under acquires, releases and crashes (they
        // move permits between the two in one semop); only waits lower it.
        auto value = get_value(entry->id);
        if (!value) return value.status();
        auto held = get_value(entry->id, kHeld);
        if (!held) return held.status();
        if (*value + *held + count > entry->limit) {
          return Status(StatusCode::kOverflow,
                        fmt::format("posting {} permits of `{}` would make {} free and {} held, above its limit {}",
                                    count, key, *value + count, *held, entry->limit));
        }
        if (semop_now(entry->id, permit_ops(+1, count, /*undo=*/false)) != 0) {
          return errno_error("semop on local semaphore `{}` (id {})", key, entry->id);
        }
        return Status::ok();
      }
    }
    // Removed or replaced since semaphore() looked. Forgotten only once the
    // file lock is gone: semaphore() takes mutex_ first, then file locks.
    forget(key, entry->id);
  }
}

Result<std::int64_t> LocalSemaphores::value(std::string_view key, std::int64_t limit) {
  auto entry = semaphore(key, limit);
  if (!entry) return entry.status();
  auto value = get_value(entry->id);
  if (!value) return value.status();
  return std::int64_t{*value};
}

Result<LocalSemaphores::Info> LocalSemaphores::info(std::string_view key, std::int64_t limit) {
  auto entry = semaphore(key, limit);
  if (!entry) return entry.status();
  auto value = get_value(entry->id);
  if (!value) return value.status();
  auto held = get_value(entry->id, kHeld);
  if (!held) return held.status();
  const int waiting = ::semctl(entry->id, kFree, GETNCNT);
  if (waiting < 0) return errno_error("semctl(GETNCNT) of semaphore {}", entry->id);
  return Info{.value = *value, .held = *held, .waiting = waiting};
}

LocalSemaphores::Grant LocalSemaphores::current(std::string_view key) {
  const std::lock_guard lock(mutex_);
  const auto it = entries_.find(std::string(key));
  if (it == entries_.end()) return {};
  return Grant{.id = it->second.id, .ctime = it->second.ctime};
}

Result<int> LocalSemaphores::system_v_id(std::string_view key, std::int64_t limit) {
  auto entry = semaphore(key, limit);
  if (!entry) return entry.status();
  return entry->id;
}

Status LocalSemaphores::remove(std::string_view key) {
  const std::lock_guard lock(mutex_);
  entries_.erase(std::string(key));
  return registry_.remove(key);
}

Status LocalSemaphores::remove_all() {
  const std::lock_guard lock(mutex_);
  entries_.clear();
  table_ = {};
  return registry_.remove_all();
}

}  // namespace netsem::client
