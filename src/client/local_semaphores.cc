// Host-wide local semaphores (see local_semaphores.h): one System V semaphore
// per name, found through a registry directory.
//
// API: every call goes through semaphore(), which answers from the in-process
// cache after one IPC_STAT proves the cached id is still the semaphore it
// recorded, and otherwise reads the name's registry file under an flock
// (lookup_registry), making the semaphore when the entry is missing or stale.
// take() then waits in the kernel (semop/semtimedop); release() and post()
// add permits back. A semaphore removed under a waiter (EIDRM) sends it back
// to semaphore(), which makes a fresh one.
//
// Registry file, one per name (the key goes last so it may hold any byte):
//   netsem-local 1
//   id 32769
//   ctime 1712345678
//   limit 2
//   key $build-slots
// `ctime` is the semaphore's sem_ctime when recorded. System V ids are reused
// (after IPC_RMID, and from zero after a reboot); an id whose owner, size or
// sem_ctime differs is someone else's semaphore, so the entry is stale.
#include "client/local_semaphores.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace netsem::client {
namespace {

constexpr std::string_view kMagic = "netsem-local 1";
// How often a cancellable wait looks at its CancelToken: the kernel cannot
// wake a semop for us, so a cancel is seen within this long.
constexpr auto kCancelSlice = std::chrono::milliseconds(50);
// Keys sharing a 64-bit hash are vanishingly rare; this only bounds the scan.
constexpr int kMaxCollisions = 64;
constexpr std::size_t kMaxRecordBytes = 4096;

// glibc leaves the fourth semctl argument's type to the caller.
union semun {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

Status io_error(std::string_view what, int err) {
  return Status(StatusCode::kIoError, fmt::format("{}: {}", what, std::strerror(err)));
}

// io_error for the errno a failed system call just left. The arguments must
// not allocate (pass path.native(), not path.string()), so errno is intact.
template <typename... Args>
Status errno_error(fmt::format_string<Args...> format, Args&&... args) {
  const int err = errno;
  return io_error(fmt::format(format, std::forward<Args>(args)...), err);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

struct Record {
  int id = -1;
  std::time_t ctime = 0;
  std::int64_t limit = 0;
  std::string key;
};

std::string format_record(const Record& record) {
  return fmt::format("{}\nid {}\nctime {}\nlimit {}\nkey {}\n", kMagic, record.id, record.ctime, record.limit,
                     record.key);
}

// One "<word> <integer>\n" line of a record; advances `text` past it.
template <typename Int>
bool parse_field(std::string_view& text, std::string_view word, Int& out) {
  const auto eol = text.find('\n');
  if (eol == std::string_view::npos) return false;
  const auto line = text.substr(0, eol);
  if (line.size() <= word.size() + 1 || line.substr(0, word.size()) != word || line[word.size()] != ' ') return false;
  const auto digits = line.substr(word.size() + 1);
  const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
  text.remove_prefix(eol + 1);
  return ec == std::errc() && ptr == digits.data() + digits.size();
}

// nullopt for anything but a whole record: an empty file (a creator died
// before writing) or a torn write is treated as no entry.
std::optional<Record> parse_record(std::string_view text) {
  Record record;
  if (text.substr(0, kMagic.size() + 1) != fmt::format("{}\n", kMagic)) return std::nullopt;
  text.remove_prefix(kMagic.size() + 1);
  std::int64_t ctime = 0;
  if (!parse_field(text, "id", record.id) || !parse_field(text, "ctime", ctime) ||
      !parse_field(text, "limit", record.limit)) {
    return std::nullopt;
  }
  if (record.id < 0 || record.limit < 1 || record.limit > LocalSemaphores::kMaxLimit) return std::nullopt;
  record.ctime = static_cast<std::time_t>(ctime);
  if (text.substr(0, 4) != "key " || text.size() < 6 || text.back() != '\n') return std::nullopt;
  record.key = std::string(text.substr(4, text.size() - 5));
  return record;
}

// sem_ctime of `id` when it is a one-semaphore set of this user; nullopt when
// the id is gone or is not such a set.
std::optional<std::time_t> own_semaphore_ctime(int id) {
  struct semid_ds ds {};
  semun arg{};
  arg.buf = &ds;
  if (::semctl(id, 0, IPC_STAT, arg) != 0) return std::nullopt;
  if (ds.sem_perm.uid != ::geteuid() || ds.sem_perm.cuid != ::geteuid() || ds.sem_nsems != 1) return std::nullopt;
  return ds.sem_ctime;
}

bool is_live(int id, std::time_t ctime) {
  return own_semaphore_ctime(id) == ctime;
}

Result<std::string> read_all(int fd, const std::filesystem::path& file) {
  std::string text(kMaxRecordBytes, '\0');
  std::size_t size = 0;
  while (size < text.size()) {
    const auto n = ::pread(fd, text.data() + size, text.size() - size, static_cast<off_t>(size));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("{}: cannot read", file.native());
    if (n == 0) break;
    size += static_cast<std::size_t>(n);
  }
  text.resize(size);
  return text;
}

Status write_all(int fd, const std::filesystem::path& file, std::string_view text) {
  if (::ftruncate(fd, 0) != 0) return errno_error("{}: cannot truncate", file.native());
  std::size_t done = 0;
  while (done < text.size()) {
    const auto n = ::pwrite(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("{}: cannot write", file.native());
    done += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

Status lock_file(int fd, const std::filesystem::path& file) {
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) return errno_error("{}: cannot lock", file.native());
  }
  return Status::ok();
}

// Opens and locks `file` (created when `create`), retrying when remove_all()
// unlinked it between our open and our lock: a record written to an
// unlinked file would be lost to every other process.
Result<int> open_locked(const std::filesystem::path& file, bool create) {
  for (;;) {
    const int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0) return errno_error("{}: cannot open", file.native());
    if (auto status = lock_file(fd, file); !status) {
      ::close(fd);
      return status;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return io_error(fmt::format("{}: cannot stat", file.native()), err);
    }
    if (st.st_nlink > 0) return fd;
    ::close(fd);
  }
}

Result<int> get_value(int id) {
  const int value = ::semctl(id, 0, GETVAL);
  if (value < 0) return errno_error("semctl(GETVAL) of semaphore {}", id);
  return value;
}

// Sets `id` to `limit` free permits and returns its new sem_ctime.
Result<std::time_t> set_value(int id, std::int64_t limit) {
  semun arg{};
  arg.val = static_cast<int>(limit);
  if (::semctl(id, 0, SETVAL, arg) != 0) return errno_error("semctl(SETVAL) of semaphore {}", id);
  const auto ctime = own_semaphore_ctime(id);
  if (!ctime) return errno_error("semctl(IPC_STAT) of semaphore {}", id);
  return *ctime;
}

// Makes a new semaphore with `limit` free permits.
Result<Record> make_semaphore(std::string_view key, std::int64_t limit) {
  const int id = ::semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
  if (id < 0) {
    return errno_error("semget for local semaphore `{}` (see `ipcs -s` and docs/local-semaphores.md)", key);
  }
  auto ctime = set_value(id, limit);
  if (!ctime) {
    ::semctl(id, 0, IPC_RMID);
    return ctime.status();
  }
  return Record{.id = id, .ctime = *ctime, .limit = limit, .key = std::string(key)};
}

// Replaces an idle semaphore by one with `limit` free permits and records it
// in `file`, so that every process notices through its cached id going away
// (SETVAL in place could leave sem_ctime unchanged within the same second).
// Taking every permit at once proves nobody holds one and keeps late
// arrivals out; SEM_UNDO gives them back if we die before the switch. False,
// leaving everything as it was, while the semaphore is in use.
bool replace_if_idle(Record& record, std::int64_t limit, int fd, const std::filesystem::path& file) {
  if (::semctl(record.id, 0, GETNCNT) != 0) return false;
  sembuf take_all{0, static_cast<short>(-record.limit), IPC_NOWAIT | SEM_UNDO};
  if (::semop(record.id, &take_all, 1) != 0) return false;
  auto made = make_semaphore(record.key, limit);
  if (!made || ::semctl(record.id, 0, GETVAL) != 0 || !write_all(fd, file, format_record(*made)).is_ok()) {
    if (made) ::semctl(made->id, 0, IPC_RMID);
    sembuf give_back{0, static_cast<short>(record.limit), SEM_UNDO};
    ::semop(record.id, &give_back, 1);
    // A failed write may have cut the file: put the old record back.
    (void)write_all(fd, file, format_record(record));
    return false;
  }
  ::semctl(record.id, 0, IPC_RMID);  // late arrivals wake with EIDRM and look again
  record = std::move(*made);
  return true;
}

enum class Outcome { kDone, kTimedOut, kCancelled, kRemoved, kError };

// One semop of `delta` on `id`, waiting until `deadline` (none: for ever),
// and looking at `cancel` every kCancelSlice. On kError, errno tells why.
Outcome semop_until(int id, std::int64_t delta, short flags,
                    std::optional<std::chrono::steady_clock::time_point> deadline, const CancelToken* cancel) {
  using Clock = std::chrono::steady_clock;
  for (;;) {
    if (cancel != nullptr && cancel->cancelled()) return Outcome::kCancelled;
    sembuf op{0, static_cast<short>(delta), flags};
    int rc = 0;
    bool nowait = false;
    if (!deadline && cancel == nullptr) {
      rc = ::semop(id, &op, 1);
    } else {
      auto wait = deadline ? *deadline - Clock::now() : Clock::duration::max();
      if (wait <= Clock::duration::zero()) {
        nowait = true;
        op.sem_flg = static_cast<short>(op.sem_flg | IPC_NOWAIT);
        rc = ::semop(id, &op, 1);
      } else {
        if (cancel != nullptr) wait = std::min<Clock::duration>(wait, kCancelSlice);
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
        const timespec ts{.tv_sec = static_cast<time_t>(ns / 1'000'000'000),
                          .tv_nsec = static_cast<long>(ns % 1'000'000'000)};
        rc = ::semtimedop(id, &op, 1, &ts);
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

std::int64_t effective_limit(std::int64_t limit) {
  return std::min(limit, LocalSemaphores::kMaxLimit);
}

bool is_entry_file_name(const std::string& name) {
  if (name.size() < 16 || !std::all_of(name.begin(), name.begin() + 16,
                                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
    return false;
  }
  if (name.size() == 16) return true;
  return name[16] == '-' && name.size() > 17 &&
         std::all_of(name.begin() + 17, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

LocalSemaphores::LocalSemaphores(std::filesystem::path dir) : dir_(dir.empty() ? default_dir() : std::move(dir)) {}

std::filesystem::path LocalSemaphores::default_dir() {
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime != nullptr && runtime[0] != '\0') {
    return std::filesystem::path(runtime) / "netsem";
  }
  return fmt::format("/tmp/netsem-{}", ::geteuid());
}

std::string LocalSemaphores::entry_file_name(std::string_view key) {
  return fmt::format("{:016x}", fnv1a64(key));
}

Status LocalSemaphores::check_dir() {
  if (dir_checked_) return Status::ok();
  int rc = ::mkdir(dir_.c_str(), 0700);
  if (rc != 0 && errno == ENOENT) {
    std::error_code ignored;  // the mkdir below reports the failure
    std::filesystem::create_directories(dir_.parent_path(), ignored);
    rc = ::mkdir(dir_.c_str(), 0700);
  }
  if (rc != 0 && errno != EEXIST) return errno_error("{}: cannot create", dir_.native());
  // lstat, not stat: in a shared /tmp, someone else's symlink must not
  // redirect our registry.
  struct stat st {};
  if (::lstat(dir_.c_str(), &st) != 0) return errno_error("{}: cannot stat", dir_.native());
  if (!S_ISDIR(st.st_mode)) {
    return Status(StatusCode::kIoError, fmt::format("{}: not a directory", dir_.native()));
  }
  if (st.st_uid != ::geteuid()) {
    return Status(StatusCode::kIoError,
                  fmt::format("{}: owned by uid {}, not by this user ({}); refusing it as the local semaphore "
                              "registry",
                              dir_.native(), st.st_uid, ::geteuid()));
  }
  if ((st.st_mode & 022) != 0) {
    return Status(StatusCode::kIoError, fmt::format("{}: others may write it (mode {:o}); refusing it as the local "
                                                    "semaphore registry (chmod 700 it)",
                                                    dir_.native(), st.st_mode & 07777));
  }
  dir_checked_ = true;
  return Status::ok();
}

Result<LocalSemaphores::Entry> LocalSemaphores::lookup_registry(std::string_view key, std::int64_t limit) {
  if (auto status = check_dir(); !status) return status;
  const std::string base = entry_file_name(key);
  for (int slot = 0; slot < kMaxCollisions; ++slot) {
    const auto file = dir_ / (slot == 0 ? base : fmt::format("{}-{}", base, slot));
    auto fd = open_locked(file, /*create=*/true);
    if (!fd) return fd.status();
    const Fd guard(*fd);  // closing releases the flock
    auto text = read_all(guard.get(), file);
    if (!text) return text.status();
    auto record = parse_record(*text);
    if (record && record->key != key) continue;  // another key with the same hash
    if (record && is_live(record->id, record->ctime)) {
      if (record->limit != limit) replace_if_idle(*record, limit, guard.get(), file);
      return Entry{.id = record->id, .ctime = record->ctime, .limit = record->limit, .file = file};
    }
    // Missing, torn or stale: the old id, if any, is gone or someone else's.
    auto made = make_semaphore(key, limit);
    if (!made) return made.status();
    if (auto status = write_all(guard.get(), file, format_record(*made)); !status) {
      ::semctl(made->id, 0, IPC_RMID);
      return status;
    }
    return Entry{.id = made->id, .ctime = made->ctime, .limit = made->limit, .file = file};
  }
  return Status(StatusCode::kInternal,
                fmt::format("{}: {} registry entries share the hash of `{}`", dir_.native(), kMaxCollisions, key));
}

Result<LocalSemaphores::Entry> LocalSemaphores::semaphore(std::string_view key, std::int64_t limit) {
  if (key.empty()) return Status(StatusCode::kInvalidArgument, "a local semaphore needs a name");
  if (limit < 1) return Status(StatusCode::kInvalidArgument, fmt::format("limit {} of `{}` is below 1", limit, key));
  limit = effective_limit(limit);
  const std::lock_guard lock(mutex_);
  auto it = entries_.find(std::string(key));
  if (it != entries_.end() && it->second.limit == limit && is_live(it->second.id, it->second.ctime)) return it->second;
  auto found = lookup_registry(key, limit);
  if (!found) return found.status();
  if (it == entries_.end()) {
    it = entries_.emplace(std::string(key), *found).first;
  } else {
    // Permits held on a semaphore that is gone went with it.
    const std::int64_t held = it->second.id == found->id ? it->second.held : 0;
    it->second = *found;
    it->second.held = held;
  }
  return it->second;
}

void LocalSemaphores::forget(std::string_view key, int id) {
  const std::lock_guard lock(mutex_);
  const auto it = entries_.find(std::string(key));
  if (it != entries_.end() && it->second.id == id) entries_.erase(it);
}

Status LocalSemaphores::take(std::string_view key, std::int64_t limit, std::int64_t count,
                             std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel, bool undo) {
  if (count < 1) return Status(StatusCode::kInvalidArgument, fmt::format("count {} is below 1", count));
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout) deadline = std::chrono::steady_clock::now() + std::max(*timeout, std::chrono::milliseconds(0));
  for (;;) {
    auto entry = semaphore(key, limit);
    if (!entry) return entry.status();
    if (count > entry->limit) {
      return Status(StatusCode::kTooMany,
                    fmt::format("{} permits of `{}` asked, its limit is {}", count, key, entry->limit));
    }
    switch (semop_until(entry->id, -count, undo ? SEM_UNDO : 0, deadline, cancel)) {
      case Outcome::kDone:
        if (undo) {
          const std::lock_guard lock(mutex_);
          const auto it = entries_.find(std::string(key));
          if (it != entries_.end() && it->second.id == entry->id) it->second.held += count;
        }
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
                                std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel) {
  return take(key, limit, count, timeout, cancel, /*undo=*/true);
}

Status LocalSemaphores::wait(std::string_view key, std::int64_t limit, std::int64_t count,
                             std::optional<std::chrono::milliseconds> timeout, const CancelToken* cancel) {
  return take(key, limit, count, timeout, cancel, /*undo=*/false);
}

Status LocalSemaphores::release(std::string_view key, std::int64_t count) {
  if (count < 1) return Status(StatusCode::kInvalidArgument, fmt::format("count {} is below 1", count));
  int id = -1;
  {
    const std::lock_guard lock(mutex_);
    const auto it = entries_.find(std::string(key));
    const std::int64_t held = it == entries_.end() ? 0 : it->second.held;
    if (held < count) {
      return Status(StatusCode::kNotHeld,
                    fmt::format("releasing {} permits of `{}`, this process holds {}", count, key, held));
    }
    it->second.held -= count;
    id = it->second.id;
  }
  // SEM_UNDO on the way back too: it cancels the adjustment the acquire made,
  // so exiting later gives nothing back twice.
  sembuf op{0, static_cast<short>(count), SEM_UNDO};
  while (::semop(id, &op, 1) != 0) {
    if (errno == EINTR) continue;
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
      auto fd = open_locked(entry->file, /*create=*/false);
      if (!fd) return fd.status();
      const Fd guard(*fd);
      if (is_live(entry->id, entry->ctime)) {
        auto value = get_value(entry->id);
        if (!value) return value.status();
        if (*value + count > entry->limit) {
          return Status(StatusCode::kOverflow,
                        fmt::format("posting {} permits of `{}` would make {}, above its limit {}", count, key,
                                    *value + count, entry->limit));
        }
        sembuf op{0, static_cast<short>(count), 0};
        while (::semop(entry->id, &op, 1) != 0) {
          if (errno != EINTR) return errno_error("semop on local semaphore `{}` (id {})", key, entry->id);
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

Result<int> LocalSemaphores::system_v_id(std::string_view key, std::int64_t limit) {
  auto entry = semaphore(key, limit);
  if (!entry) return entry.status();
  return entry->id;
}

Status LocalSemaphores::remove(std::string_view key) {
  const std::lock_guard lock(mutex_);
  entries_.erase(std::string(key));
  if (auto status = check_dir(); !status) return status;
  const std::string base = entry_file_name(key);
  for (int slot = 0; slot < kMaxCollisions; ++slot) {
    const auto file = dir_ / (slot == 0 ? base : fmt::format("{}-{}", base, slot));
    if (::access(file.c_str(), F_OK) != 0) return Status::ok();
    auto fd = open_locked(file, /*create=*/false);
    if (!fd) return fd.status();
    const Fd guard(*fd);
    auto text = read_all(guard.get(), file);
    if (!text) return text.status();
    const auto record = parse_record(*text);
    if (!record || record->key != key) continue;
    // The record stays: a stale entry is what the next use recreates from,
    // and deleting the file could reorder a chain of colliding keys.
    if (is_live(record->id, record->ctime) && ::semctl(record->id, 0, IPC_RMID) != 0) {
      return errno_error("semctl(IPC_RMID) of semaphore {}", record->id);
    }
    return Status::ok();
  }
  return Status::ok();
}

Status LocalSemaphores::remove_all() {
  const std::lock_guard lock(mutex_);
  entries_.clear();
  if (auto status = check_dir(); !status) return status;
  // Listed first: unlinking while iterating may skip entries.
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& item : std::filesystem::directory_iterator(dir_, ec)) {
    if (is_entry_file_name(item.path().filename().string())) files.push_back(item.path());
  }
  if (ec) return io_error(fmt::format("{}: cannot list", dir_.native()), ec.value());
  Status first_error;
  for (const auto& file : files) {
    auto fd = open_locked(file, /*create=*/false);
    if (!fd) {
      if (first_error.is_ok()) first_error = fd.status();
      continue;
    }
    const Fd guard(*fd);
    auto text = read_all(guard.get(), file);
    const auto record = text ? parse_record(*text) : std::nullopt;
    if (record && is_live(record->id, record->ctime) && ::semctl(record->id, 0, IPC_RMID) != 0 && first_error.is_ok()) {
      first_error = errno_error("semctl(IPC_RMID) of semaphore {}", record->id);
    }
    // Unlinked while locked: open_locked() sends anyone queued on this lock
    // back to a fresh file.
    if (::unlink(file.c_str()) != 0 && first_error.is_ok()) {
      first_error = errno_error("{}: cannot remove", file.native());
    }
  }
  return first_error;
}

}  // namespace netsem::client
