// FileJournal: the fsync policies, the file-descriptor helpers, then
// recovery, batching, fsync and compaction. The bytes it writes and replays
// come from journal_format.cc; docs/durability.md describes the format and
// the crash cases these steps are ordered for.
#include "server/file_journal.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <system_error>
#include <utility>

namespace netsem::server {

namespace fs = std::filesystem;
using journal_detail::UniqueFd;
namespace jf = journal_format;

// ---------------------------------------------------------------- policies

Result<FsyncPolicy> parse_fsync_policy(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c); });
  if (lower == "always") return FsyncPolicy::kAlways;
  if (lower == "everysec") return FsyncPolicy::kEverySec;
  if (lower == "no") return FsyncPolicy::kNo;
  return Status(StatusCode::kInvalidArgument,
                fmt::format("fsync policy '{}' is not one of always, everysec, no", text));
}

std::string_view fsync_policy_name(FsyncPolicy policy) {
  switch (policy) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kEverySec:
      return "everysec";
    case FsyncPolicy::kNo:
      return "no";
  }
  return "unknown";
}

// ---------------------------------------------------------------- file I/O

namespace {

constexpr const char* kLockFile = "lock";
constexpr const char* kSnapshotFile = "snapshot";
constexpr const char* kJournalFile = "journal";
constexpr const char* kFencesFile = "fences";
constexpr const char* kJournalTemp = "journal.tmp";

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

Status io_error(std::string_view what, const fs::path& path, int err) {
  return Status(StatusCode::kIoError, fmt::format("{} {}: {}", what, path.string(), errno_text(err)));
}

// Opens `name` inside the directory `dir_fd`; `dir` only names it in errors.
Result<UniqueFd> open_at(int dir_fd, const fs::path& dir, const char* name, int flags) {
  for (;;) {
    const int fd = ::openat(dir_fd, name, flags | O_CLOEXEC, 0644);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EINTR) return io_error("cannot open", dir / name, errno);
  }
}

// Writes all of `data`, through short writes and EINTR. `written` counts the
// bytes that reached the file even when an error ends the loop.
Status write_all(int fd, std::string_view data, std::size_t& written, std::uint64_t& calls) {
  written = 0;
  while (written < data.size()) {
    ++calls;
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(StatusCode::kIoError, errno_text(errno));
    }
    written += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

int sync_fd(int fd, bool data_only) {
  for (;;) {
    if ((data_only ? ::fdatasync(fd) : ::fsync(fd)) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// The whole of `name` in `dir_fd`, or nullopt if there is no such file.
Result<std::optional<std::string>> read_file(int dir_fd, const fs::path& dir, const char* name) {
  const int fd = ::openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return io_error("cannot open", dir / name, errno);
  }
  UniqueFd file(fd);
  std::string bytes;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) bytes.reserve(static_cast<std::size_t>(st.st_size));
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot read", dir / name, errno);
    }
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  return std::optional<std::string>(std::move(bytes));
}

Status sync_dir(int dir_fd, const fs::path& dir) {
  if (const int err = sync_fd(dir_fd, false)) return io_error("cannot fsync directory", dir, err);
  return Status::ok();
}

// Writes all of `bytes` to a fresh file and fsyncs it; `path` names it in errors.
Status write_and_sync(int fd, const fs::path& path, std::string_view bytes) {
  std::size_t written = 0;
  std::uint64_t calls = 0;
  if (Status s = write_all(fd, bytes, written, calls); !s) {
    return Status(StatusCode::kIoError, fmt::format("cannot write {}: {}", path.string(), s.message()));
  }
  if (const int err = sync_fd(fd, false)) return io_error("cannot fsync", path, err);
  return Status::ok();
}

// Makes `name` hold exactly `bytes`, atomically and durably: temp file,
// fsync, rename over `name`, fsync of the directory.
Status replace_file(int dir_fd, const fs::path& dir, const char* name, std::string_view bytes) {
  const std::string temp = std::string(name) + ".tmp";
  auto file = open_at(dir_fd, dir, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC);
  if (!file) return file.status();
  Status status = write_and_sync(file->get(), dir / temp, bytes);
  if (status && ::renameat(dir_fd, temp.c_str(), dir_fd, name) != 0) {
    status = io_error("cannot rename into place", dir / name, errno);
  }
  if (!status) {
    ::unlinkat(dir_fd, temp.c_str(), 0);
    return status;
  }
  return sync_dir(dir_fd, dir);
}

// Creates the missing directories of `dir` one by one, fsyncing each parent
// so that a new data directory does not vanish in a crash with its contents.
Status make_directories(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> missing;
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    if (fs::exists(p, ec)) break;
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0755) != 0 && errno != EEXIST) return io_error("cannot create directory", *it, errno);
    const fs::path parent = it->has_parent_path() ? it->parent_path() : fs::path(".");
    const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return io_error("cannot open directory", parent, errno);
    UniqueFd parent_fd(fd);
    if (Status s = sync_dir(parent_fd.get(), parent); !s) return s;
  }
  return Status::ok();
}

// Takes the flock on `dir/lock` and writes our pid there for the next one
// who finds it taken. flock (not fcntl) locks belong to the open file
// description, so a second open in this same process is refused too.
Result<UniqueFd> lock_directory(int dir_fd, const fs::path& dir) {
  auto lock = open_at(dir_fd, dir, kLockFile, O_RDWR | O_CREAT);
  if (!lock) return lock.status();
  while (::flock(lock->get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) return io_error("cannot lock", dir / kLockFile, errno);
    char text[32] = {};
    const ssize_t n = ::pread(lock->get(), text, sizeof text - 1, 0);
    const long pid = n > 0 ? std::strtol(text, nullptr, 10) : 0;
    const std::string holder = pid > 0 ? fmt::format("pid {}", pid) : std::string("pid unknown");
    return Status(StatusCode::kBusy,
                  fmt::format("data directory {} is in use by another netsemd ({})", dir.string(), holder));
  }
  // The pid is only a hint for that message: failing to write it is harmless.
  const std::string pid = fmt::format("{}\n", ::getpid());
  if (::ftruncate(lock->get(), 0) == 0) {
    [[maybe_unused]] const ssize_t n = ::pwrite(lock->get(), pid.data(), pid.size(), 0);
  }
  return lock;
}

}  // namespace

// ---------------------------------------------------------------- recovery

FileJournal::FileJournal(fs::path dir, const JournalOptions& options, UniqueFd dir_fd, UniqueFd lock_fd)
    : dir_(std::move(dir)), options_(options), dir_fd_(std::move(dir_fd)), lock_fd_(std::move(lock_fd)) {}

FileJournal::~FileJournal() = default;

namespace {

// The bound in the fences file, 0 if there is none.
Result<std::uint64_t> recover_fences(int dir_fd, const fs::path& dir) {
  auto bytes = read_file(dir_fd, dir, kFencesFile);
  if (!bytes) return bytes.status();
  if (!*bytes) return std::uint64_t{0};
  auto bound = jf::parse_header(**bytes, jf::FileKind::kFences);
  if (!bound || (*bytes)->size() != jf::kHeaderSize) {
    return Status(StatusCode::kCorruption, fmt::format("fences file {}: {}", (dir / kFencesFile).string(),
                                                       bound ? "trailing bytes" : bound.status().message()));
  }
  return bound;
}

// Reads the snapshot into `state`; its generation, or nullopt if there is none.
Result<std::optional<std::uint64_t>> recover_snapshot(int dir_fd, const fs::path& dir,
                                                      std::map<std::string, CreatedState>& state) {
  auto bytes = read_file(dir_fd, dir, kSnapshotFile);
  if (!bytes) return bytes.status();
  if (!*bytes) return std::optional<std::uint64_t>();
  const ReplayResult r = replay_snapshot(**bytes, state);
  if (r.stop != ReplayStop::kCleanEnd) {
    const std::string why = r.stop == ReplayStop::kBadHeader
                                ? jf::parse_header(**bytes, jf::FileKind::kSnapshot).status().message()
                                : fmt::format("{} at offset {}", replay_stop_name(r.stop), r.good_bytes);
    return Status(StatusCode::kCorruption, fmt::format("snapshot {}: {}; it is written atomically, so this is not "
                                                       "a crash: move it away to start without it",
                                                       (dir / kSnapshotFile).string(), why));
  }
  return std::optional<std::uint64_t>(r.generation);
}

// Replays the journal onto `state` when it continues the snapshot of
// `snapshot_generation`, cutting a bad tail (and reporting it in `warnings`).
Status recover_journal(int dir_fd, const fs::path& dir, std::optional<std::uint64_t> snapshot_generation,
                       std::map<std::string, CreatedState>& state, std::vector<std::string>& warnings) {
  auto file = read_file(dir_fd, dir, kJournalFile);
  if (!file) return file.status();
  if (!*file) {
    if (snapshot_generation) warnings.push_back("journal: missing; recovered from the snapshot alone");
    return Status::ok();
  }
  const std::string& bytes = **file;
  const std::uint64_t expected = snapshot_generation.value_or(0);
  auto generation = jf::parse_header(bytes, jf::FileKind::kJournal);
  if (!generation) {
    return Status(StatusCode::kCorruption,
                  fmt::format("journal {}: {}", (dir / kJournalFile).string(), generation.status().message()));
  }
  if (*generation > expected) {
    return Status(StatusCode::kCorruption,
                  fmt::format("journal {} is of generation {} but the snapshot of {}: the snapshot it follows is "
                              "missing",
                              (dir / kJournalFile).string(), *generation, expected));
  }
  if (*generation < expected) {
    // A crash between the snapshot's rename and the new journal's: the snapshot already holds it.
    warnings.push_back(
        fmt::format("journal: generation {} is older than the snapshot ({}); skipped", *generation, expected));
    return Status::ok();
  }
  const ReplayResult r = replay_journal(bytes, state);
  if (r.stop == ReplayStop::kCleanEnd) return Status::ok();
  std::string warning = fmt::format("journal: {} at offset {} ({} bytes cut)", replay_stop_name(r.stop), r.good_bytes,
                                    bytes.size() - r.good_bytes);
  // The cut bytes may be worth a look; keep them under another name.
  const std::string kept = fmt::format("journal-{}.damaged", r.generation);
  if (::linkat(dir_fd, kJournalFile, dir_fd, kept.c_str(), 0) == 0) {
    warning += fmt::format("; the damaged journal is kept as {}", kept);
  }
  warnings.push_back(std::move(warning));
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<FileJournal>> FileJournal::open(const fs::path& dir, const JournalOptions& options,
                                                       RecoveredState& recovered) {
  recovered = RecoveredState{};
  if (Status s = make_directories(dir); !s) return s;
  const int raw_dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw_dir_fd < 0) return io_error("cannot open data directory", dir, errno);
  UniqueFd dir_fd(raw_dir_fd);
  auto lock = lock_directory(dir_fd.get(), dir);
  if (!lock) return lock.status();
  // Leftovers of an interrupted replace_file or compaction: never renamed in, never read.
  for (const char* temp : {"snapshot.tmp", "fences.tmp", kJournalTemp}) ::unlinkat(dir_fd.get(), temp, 0);

  std::unique_ptr<FileJournal> journal(new FileJournal(dir, options, std::move(dir_fd), std::move(*lock)));
  const int dfd = journal->dir_fd_.get();
  auto fences = recover_fences(dfd, dir);
  if (!fences) return fences.status();
  journal->fence_bound_ = *fences;

  // Filled locally and handed over only on success: on error `recovered` stays empty.
  std::map<std::string, CreatedState> state;
  std::vector<std::string> warnings;
  auto snapshot_generation = recover_snapshot(dfd, dir, state);
  if (!snapshot_generation) return snapshot_generation.status();
  if (Status s = recover_journal(dfd, dir, *snapshot_generation, state, warnings); !s) return s;

  journal->generation_ = snapshot_generation->value_or(0);
  if (Status s = journal->compact(state); !s) return s;
  recovered.created = std::move(state);
  recovered.fence_floor = journal->fence_bound_;
  recovered.warnings = std::move(warnings);
  return journal;
}

// ---------------------------------------------------------------- records

void FileJournal::record_set(std::string_view name, const CreatedState& state) {
  jf::append_set(batch_, name, state);
}

void FileJournal::record_delete(std::string_view name) {
  jf::append_delete(batch_, name);
}

std::uint64_t FileJournal::reserve_fences(std::uint64_t needed) {
  if (needed <= fence_bound_) return fence_bound_;
  Status status = replace_file(dir_fd_.get(), dir_, kFencesFile, jf::encode_header(jf::FileKind::kFences, needed));
  if (!status) {
    const std::string why = fmt::format(
        "cannot reserve fences up to {}: {}; stopping, since a restart could hand out fences already granted", needed,
        status.message());
    // Both: the log is where operators look, stderr is what survives a log
    // set-up that has not flushed by the time of the abort.
    spdlog::critical("{}", why);
    spdlog::shutdown();
    std::fprintf(stderr, "netsemd: fatal: %s\n", why.c_str());
    std::abort();
  }
  fence_bound_ = needed;
  return fence_bound_;
}

Status FileJournal::flush() {
  if (!batch_.empty()) {
    if (!journal_fd_.valid()) {
      return Status(StatusCode::kIoError,
                    fmt::format("journal {} is unusable after a failed compaction; compact() again",
                                (dir_ / kJournalFile).string()));
    }
    std::size_t written = 0;
    Status status = write_all(journal_fd_.get(), batch_, written, writes_);
    // What reached the file leaves the batch, so a retry appends exactly the rest.
    batch_.erase(0, written);
    journal_bytes_ += written;
    dirty_ = dirty_ || written > 0;
    if (!status) {
      return Status(StatusCode::kIoError, fmt::format("cannot write journal {}: {} ({} bytes still batched)",
                                                      (dir_ / kJournalFile).string(), status.message(), batch_.size()));
    }
  }
  // Under kAlways this also retries the fsync a previous flush() failed.
  if (options_.fsync == FsyncPolicy::kAlways) return sync();
  return Status::ok();
}

Status FileJournal::sync() {
  if (!dirty_ || !journal_fd_.valid()) return Status::ok();
  if (const int err = sync_fd(journal_fd_.get(), true)) {
    needs_rewrite_ = true;
    return io_error("cannot fsync journal", dir_ / kJournalFile, err);
  }
  dirty_ = false;
  ++syncs_;
  return Status::ok();
}

bool FileJournal::wants_compaction() const {
  if (needs_rewrite_ || !journal_fd_.valid()) return true;
  return journal_bytes_ > options_.compact_bytes && journal_bytes_ > 2 * snapshot_bytes_;
}

JournalStats FileJournal::stats() const {
  JournalStats s;
  s.journal_bytes = journal_bytes_;
  s.snapshot_bytes = snapshot_bytes_;
  s.pending_bytes = batch_.size();
  s.generation = generation_;
  s.fence_bound = fence_bound_;
  s.writes = writes_;
  s.syncs = syncs_;
  s.compactions = compactions_;
  return s;
}

// ---------------------------------------------------------------- compaction

Status FileJournal::compact(const std::map<std::string, CreatedState>& state) {
  const int dfd = dir_fd_.get();
  const std::uint64_t generation = generation_ + 1;

  // The new journal is made durable under a temporary name first, so that
  // once the snapshot is in place only a rename is left to do.
  auto next = open_at(dfd, dir_, kJournalTemp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
  if (!next) return next.status();
  const std::string header = jf::encode_header(jf::FileKind::kJournal, generation);
  Status status = write_and_sync(next->get(), dir_ / kJournalTemp, header);
  std::string snapshot;
  if (status) {
    snapshot = jf::encode_snapshot(generation, state);
    status = replace_file(dfd, dir_, kSnapshotFile, snapshot);
  }
  if (!status) {
    ::unlinkat(dfd, kJournalTemp, 0);
    return status;
  }

  // The snapshot of `generation` is durable: every older journal, and the
  // batch, are in it. From here a crash recovers the new state.
  generation_ = generation;
  snapshot_bytes_ = snapshot.size();
  batch_.clear();
  journal_fd_.reset();
  journal_bytes_ = 0;
  dirty_ = false;
  needs_rewrite_ = false;

  if (::renameat(dfd, kJournalTemp, dfd, kJournalFile) != 0) {
    status = io_error("cannot rename into place (journal must be compacted again)", dir_ / kJournalFile, errno);
  } else {
    // Until the rename is durable a crash would bring back the old journal
    // (skipped, being older) while records went to the new one: not usable yet.
    status = sync_dir(dfd, dir_);
    if (!status) status = Status(StatusCode::kIoError, status.message() + " (journal must be compacted again)");
  }
  if (!status) return status;
  journal_fd_ = std::move(*next);
  journal_bytes_ = header.size();
  ++compactions_;
  return Status::ok();
}

}  // namespace netsem::server
