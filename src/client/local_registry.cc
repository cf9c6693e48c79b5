// LocalRegistry (see local_registry.h): the registry files that map a local
// semaphore's name to its System V semaphore, the flock that serializes
// their readers and writers, and the checks that tell a live entry from a
// stale one. local_semaphores.cc counts and blocks on the ids found here.
// The Python client (clients/python/netsem/_local_registry.py) reads and
// writes the same files: docs/local-semaphores.md, "The format both clients
// follow", is the contract between the two; change both together.
//
// Registry file, one per name (the key goes last so it may hold any byte):
//   netsem-local 2
//   id 32769
//   ctime 1712345678
//   limit 2
//   key $build-slots
// `id` is a set of two semaphores: 0 counts the free permits, 1 the permits
// held (acquired, not consumed) host-wide, so that a post cannot push free
// plus held above the limit. `ctime` is the set's sem_ctime when recorded. System V ids are reused
// (after IPC_RMID, and from zero after a reboot); an id whose owner, size or
// sem_ctime differs is someone else's semaphore, so the entry is stale.
//
// The table of holders (LocalRegistry::Table), in the file "holders":
//   netsem-holders 1
//   id 32770
//   ctime 1712345678
//   slots 4096
#include "client/local_registry.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace netsem::client {

Status local_detail::io_error(std::string_view what, int err) {
  return Status(StatusCode::kIoError, fmt::format("{}: {}", what, std::strerror(err)));
}

using local_detail::errno_error;
using local_detail::io_error;

namespace {

constexpr std::string_view kMagic = "netsem-local 2";
// Keys sharing a 64-bit hash are vanishingly rare; this only bounds the scan.
constexpr int kMaxCollisions = 64;
constexpr std::size_t kMaxRecordBytes = 4096;

// glibc leaves the fourth semctl argument's type to the caller.
union semun {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
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
  if (record.id < 0 || record.limit < 1 || record.limit > LocalRegistry::kMaxLimit) return std::nullopt;
  record.ctime = static_cast<std::time_t>(ctime);
  if (text.substr(0, 4) != "key " || text.size() < 6 || text.back() != '\n') return std::nullopt;
  record.key = std::string(text.substr(4, text.size() - 5));
  return record;
}

// sem_ctime of `id` when it is a set of `nsems` semaphores of this user;
// nullopt when the id is gone or is not such a set.
std::optional<std::time_t> own_semaphore_ctime(int id, unsigned long nsems = 2) {
  struct semid_ds ds {};
  semun arg{};
  arg.buf = &ds;
  if (::semctl(id, 0, IPC_STAT, arg) != 0) return std::nullopt;
  if (ds.sem_perm.uid != ::geteuid() || ds.sem_perm.cuid != ::geteuid() || ds.sem_nsems != nsems) return std::nullopt;
  return ds.sem_ctime;
}

constexpr std::string_view kTableMagic = "netsem-holders 1";

std::string format_table(const LocalRegistry::Table& table) {
  return fmt::format("{}\nid {}\nctime {}\nslots {}\n", kTableMagic, table.id, table.ctime, table.slots);
}

std::optional<LocalRegistry::Table> parse_table(std::string_view text) {
  if (text.substr(0, kTableMagic.size() + 1) != fmt::format("{}\n", kTableMagic)) return std::nullopt;
  text.remove_prefix(kTableMagic.size() + 1);
  LocalRegistry::Table table;
  std::int64_t ctime = 0;
  if (!parse_field(text, "id", table.id) || !parse_field(text, "ctime", ctime) ||
      !parse_field(text, "slots", table.slots) || !text.empty() || table.id < 0 || table.slots < 1) {
    return std::nullopt;
  }
  table.ctime = static_cast<std::time_t>(ctime);
  return table;
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
Result<LocalRegistry::LockedFile> open_locked(const std::filesystem::path& file, bool create) {
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
    if (st.st_nlink > 0) return LocalRegistry::LockedFile(fd);
    ::close(fd);
  }
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
  const int id = ::semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);  // free permits, held permits (0)
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
// Taking every permit at once, with no permit counted as held, proves nobody
// holds one and keeps late arrivals out; SEM_UNDO gives them back if we die before the switch. False,
// leaving everything as it was, while the semaphore is in use.
bool replace_if_idle(Record& record, std::int64_t limit, int fd, const std::filesystem::path& file) {
  if (::semctl(record.id, 0, GETNCNT) != 0) return false;
  sembuf take_all{0, static_cast<short>(-record.limit), IPC_NOWAIT | SEM_UNDO};
  if (::semop(record.id, &take_all, 1) != 0) return false;
  auto made = make_semaphore(record.key, limit);
  if (!made || ::semctl(record.id, 0, GETVAL) != 0 || ::semctl(record.id, 1, GETVAL) != 0 ||
      !write_all(fd, file, format_record(*made)).is_ok()) {
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

LocalRegistry::LocalRegistry(std::filesystem::path dir) : dir_(std::move(dir)) {}

LocalRegistry::LockedFile::~LockedFile() {
  if (fd_ >= 0) ::close(fd_);
}

bool LocalRegistry::is_live(int id, std::time_t ctime) {
  return own_semaphore_ctime(id) == ctime;
}

Result<LocalRegistry::LockedFile> LocalRegistry::lock_entry(const std::filesystem::path& file) {
  return open_locked(file, /*create=*/false);
}

bool LocalRegistry::is_live(const Table& table) {
  return table.slots > 0 &&
         own_semaphore_ctime(table.id, kPerSlot * static_cast<unsigned long>(table.slots)) == table.ctime;
}

int LocalRegistry::slot_of(std::string_view key, int slots) {
  return static_cast<int>(fnv1a64(key) % static_cast<std::uint64_t>(slots));
}

Result<LocalRegistry::Table> LocalRegistry::find_or_make_table(int slots) {
  if (auto status = check_dir(); !status) return status;
  const auto file = dir_ / kHoldersFile;
  const auto guard = open_locked(file, /*create=*/true);
  if (!guard) return guard.status();
  auto text = read_all(guard->get(), file);
  if (!text) return text.status();
  if (auto table = parse_table(*text); table && is_live(*table)) return *table;
  // Missing, torn or stale. A kernel whose SEMMSL is below 3 * slots (250 on
  // old ones) gets the largest table it allows.
  int id = -1;
  for (int size = slots; size >= 1 && id<0; size = size> 125 ? std::max(125, size / 2) : 0) {
    id = ::semget(IPC_PRIVATE, kPerSlot * size, IPC_CREAT | 0600);
    if (id >= 0) slots = size;
    if (id < 0 && errno != EINVAL) break;
  }
  if (id < 0) return errno_error("semget for the table of holders (see `ipcs -s` and docs/local-semaphores.md)");
  const auto ctime = own_semaphore_ctime(id, kPerSlot * static_cast<unsigned long>(slots));
  if (!ctime) {
    const int err = errno;
    ::semctl(id, 0, IPC_RMID);
    return io_error(fmt::format("semctl(IPC_STAT) of semaphore {}", id), err);
  }
  const Table table{.id = id, .ctime = *ctime, .slots = slots};
  if (auto status = write_all(guard->get(), file, format_table(table)); !status) {
    ::semctl(id, 0, IPC_RMID);
    return status;
  }
  return table;
}

std::string LocalRegistry::entry_file_name(std::string_view key) {
  return fmt::format("{:016x}", fnv1a64(key));
}

Status LocalRegistry::check_dir() {
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

Result<LocalRegistry::Entry> LocalRegistry::find_or_make(std::string_view key, std::int64_t limit) {
  if (auto status = check_dir(); !status) return status;
  const std::string base = entry_file_name(key);
  for (int slot = 0; slot < kMaxCollisions; ++slot) {
    const auto file = dir_ / (slot == 0 ? base : fmt::format("{}-{}", base, slot));
    const auto guard = open_locked(file, /*create=*/true);  // closing it releases the flock
    if (!guard) return guard.status();
    auto text = read_all(guard->get(), file);
    if (!text) return text.status();
    auto record = parse_record(*text);
    if (record && record->key != key) continue;  // another key with the same hash
    if (record && is_live(record->id, record->ctime)) {
      if (record->limit != limit) replace_if_idle(*record, limit, guard->get(), file);
      return Entry{.id = record->id, .ctime = record->ctime, .limit = record->limit, .file = file};
    }
    // Missing, torn or stale: the old id, if any, is gone or someone else's.
    auto made = make_semaphore(key, limit);
    if (!made) return made.status();
    if (auto status = write_all(guard->get(), file, format_record(*made)); !status) {
      ::semctl(made->id, 0, IPC_RMID);
      return status;
    }
    return Entry{.id = made->id, .ctime = made->ctime, .limit = made->limit, .file = file};
  }
  return Status(StatusCode::kInternal,
                fmt::format("{}: {} registry entries share the hash of `{}`", dir_.native(), kMaxCollisions, key));
}

Status LocalRegistry::remove(std::string_view key) {
  if (auto status = check_dir(); !status) return status;
  const std::string base = entry_file_name(key);
  for (int slot = 0; slot < kMaxCollisions; ++slot) {
    const auto file = dir_ / (slot == 0 ? base : fmt::format("{}-{}", base, slot));
    if (::access(file.c_str(), F_OK) != 0) return Status::ok();
    const auto guard = open_locked(file, /*create=*/false);
    if (!guard) return guard.status();
    auto text = read_all(guard->get(), file);
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

Status LocalRegistry::remove_all() {
  if (auto status = check_dir(); !status) return status;
  // Listed first: unlinking while iterating may skip entries.
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& item : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = item.path().filename().string();
    if (is_entry_file_name(name) || name == kHoldersFile) files.push_back(item.path());
  }
  if (ec) return io_error(fmt::format("{}: cannot list", dir_.native()), ec.value());
  Status first_error;
  for (const auto& file : files) {
    const auto guard = open_locked(file, /*create=*/false);
    if (!guard) {
      if (first_error.is_ok()) first_error = guard.status();
      continue;
    }
    auto text = read_all(guard->get(), file);
    const auto record = text ? parse_record(*text) : std::nullopt;
    if (record && is_live(record->id, record->ctime) && ::semctl(record->id, 0, IPC_RMID) != 0 && first_error.is_ok()) {
      first_error = errno_error("semctl(IPC_RMID) of semaphore {}", record->id);
    }
    const auto table = text ? parse_table(*text) : std::nullopt;
    if (table && is_live(*table) && ::semctl(table->id, 0, IPC_RMID) != 0 && first_error.is_ok()) {
      first_error = errno_error("semctl(IPC_RMID) of semaphore {}", table->id);
    }
    // Unlinked while locked: open_locked() sends anyone queued on this lock
    // back to a fresh file.
    if (::unlink(file.c_str()) != 0 && first_error.is_ok()) {
      first_error = errno_error("{}: cannot remove", file.native());
    }
  }
  return first_error;
}

namespace {

// The entry files of `dir`, sorted; empty when `dir` does not exist.
Result<std::vector<std::filesystem::path>> entry_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& item : std::filesystem::directory_iterator(dir, ec)) {
    if (is_entry_file_name(item.path().filename().string())) files.push_back(item.path());
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return io_error(fmt::format("{}: cannot list", dir.native()), ec.value());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// GETVAL / GETNCNT of a live record's semaphore.
LocalRegistry::Listed listed(const Record& record, const std::filesystem::path& file) {
  return LocalRegistry::Listed{.key = record.key,
                               .file = file,
                               .id = record.id,
                               .limit = record.limit,
                               .value = std::max(0, ::semctl(record.id, 0, GETVAL)),
                               .held = std::max(0, ::semctl(record.id, 1, GETVAL)),
                               .waiting = std::max(0, ::semctl(record.id, 0, GETNCNT))};
}

// Why a live semaphore must stay, or empty when it looks idle.
std::string busy_reason(const LocalRegistry::Listed& entry) {
  if (entry.waiting > 0) return fmt::format("{} process(es) waiting", entry.waiting);
  if (entry.held > 0) return fmt::format("{} permit(s) held", entry.held);
  if (entry.value < entry.limit) {
    return fmt::format("{} of {} permit(s) consumed by wait (removing it would give them back)",
                       entry.limit - entry.value, entry.limit);
  }
  return {};
}

}  // namespace

Result<std::vector<LocalRegistry::Listed>> LocalRegistry::list() {
  if (::access(dir_.c_str(), F_OK) != 0) return std::vector<Listed>{};
  if (auto status = check_dir(); !status) return status;
  auto files = entry_files(dir_);
  if (!files) return files.status();
  std::vector<Listed> out;
  for (const auto& file : *files) {
    const auto guard = open_locked(file, /*create=*/false);
    if (!guard) {
      if (::access(file.c_str(), F_OK) != 0) continue;  // removed since we listed the directory
      return guard.status();
    }
    auto text = read_all(guard->get(), file);
    if (!text) return text.status();
    const auto record = parse_record(*text);
    if (record && is_live(record->id, record->ctime)) out.push_back(listed(*record, file));
  }
  std::sort(out.begin(), out.end(), [](const Listed& a, const Listed& b) { return a.key < b.key; });
  return out;
}

Result<std::vector<LocalRegistry::Cleaned>> LocalRegistry::clean(bool dry_run) {
  if (::access(dir_.c_str(), F_OK) != 0) return std::vector<Cleaned>{};
  if (auto status = check_dir(); !status) return status;
  auto files = entry_files(dir_);
  if (!files) return files.status();
  // A file shares its hash prefix with others only for colliding keys, whose
  // lookups walk the chain name, name-1, name-2...: a gap would send a later
  // key's lookup to a fresh semaphore beside its live one, so such a file
  // stays (as a stale record) when its semaphore goes.
  std::map<std::string, int> per_hash;
  for (const auto& file : *files) ++per_hash[file.filename().string().substr(0, 16)];
  std::vector<Cleaned> out;
  for (const auto& file : *files) {
    const auto guard = open_locked(file, /*create=*/false);
    if (!guard) {
      if (::access(file.c_str(), F_OK) != 0) continue;
      return guard.status();
    }
    auto text = read_all(guard->get(), file);
    if (!text) return text.status();
    const auto record = parse_record(*text);
    const bool may_unlink = per_hash[file.filename().string().substr(0, 16)] == 1;
    Cleaned cleaned;
    if (!record || !is_live(record->id, record->ctime)) {
      cleaned.entry = Listed{.key = record ? record->key : std::string(), .file = file};
      cleaned.stale = true;
      cleaned.removed = may_unlink;
      if (!may_unlink) cleaned.reason = "stale record kept: another name shares its hash";
      if (may_unlink && !dry_run && ::unlink(file.c_str()) != 0) {
        return errno_error("{}: cannot remove", file.native());
      }
      out.push_back(std::move(cleaned));
      continue;
    }
    cleaned.entry = listed(*record, file);
    cleaned.reason = busy_reason(cleaned.entry);
    if (cleaned.reason.empty() && dry_run) {
      cleaned.removed = true;  // as far as the kernel's counts tell: a dry run takes nothing
    } else if (cleaned.reason.empty()) {
      // All free, none held, nobody waiting, as far as GETVAL could tell:
      // taking them all at once proves it and keeps newcomers out until the
      // IPC_RMID (or the give-back of a dry run).
      sembuf take_all{0, static_cast<short>(-record->limit), IPC_NOWAIT | SEM_UNDO};
      const bool took = ::semop(record->id, &take_all, 1) == 0;
      if (!took) {
        cleaned.reason = "in use: taken while it was being checked";
      } else if (::semctl(record->id, 1, GETVAL) != 0) {
        cleaned.reason = "in use: permits held";
      } else {
        cleaned.removed = true;
      }
      if (cleaned.removed && !dry_run && ::semctl(record->id, 0, IPC_RMID) != 0) {
        const int err = errno;
        sembuf give_back{0, static_cast<short>(record->limit), SEM_UNDO};
        ::semop(record->id, &give_back, 1);
        return io_error(fmt::format("semctl(IPC_RMID) of semaphore {}", record->id), err);
      }
      if (took && (!cleaned.removed || dry_run)) {
        sembuf give_back{0, static_cast<short>(record->limit), SEM_UNDO};
        ::semop(record->id, &give_back, 1);
      }
      // Unlinked while locked: open_locked() sends anyone queued on this
      // lock back to a fresh file.
      if (cleaned.removed && !dry_run && may_unlink && ::unlink(file.c_str()) != 0) {
        return errno_error("{}: cannot remove", file.native());
      }
    }
    out.push_back(std::move(cleaned));
  }
  return out;
}

}  // namespace netsem::client
