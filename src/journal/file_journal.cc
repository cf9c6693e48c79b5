// FileJournal: the fsync policies, the file-descriptor helpers, then
// recovery, batching, fsync and compaction. The bytes it writes and replays
// come from journal_format.cc; docs/durability.md describes the format and
// the crash cases these steps are ordered for.
#include "journal/file_journal.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>

#include "common/dir_lock.h"

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
constexpr const char* kRunFile = "run";

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

// Locks the data directory itself (an flock on its O_DIRECTORY descriptor,
// so deleting `lock` lets no second server in), then `dir/lock` too (what
// the build before did, so an older netsemd is kept out as well), and writes
// our pid there for humans. flock (not fcntl) locks belong to the open file
// description, so a second open in this same process is refused too.
Result<UniqueFd> lock_directory(int dir_fd, const fs::path& dir) {
  auto busy = [&](int held_fd, int lock_fd) {
    long pid = lock_holder(held_fd);
    if (pid <= 0 && lock_fd >= 0) {
      char text[32] = {};
      const ssize_t n = ::pread(lock_fd, text, sizeof text - 1, 0);
      pid = n > 0 ? std::strtol(text, nullptr, 10) : 0;
    }
    const std::string holder = pid > 0 ? fmt::format("pid {}", pid) : std::string("pid unknown");
    return Status(StatusCode::kBusy,
                  fmt::format("data directory {} is in use by another netsemd ({})", dir.string(), holder));
  };
  // A killed server's lock is waited for until its exit released it (dir_lock.h).
  auto try_lock = [](int fd) { return lock_exclusive(fd); };
  auto lock = open_at(dir_fd, dir, kLockFile, O_RDWR | O_CREAT);
  if (const int err = try_lock(dir_fd); err != 0) {
    if (err != EWOULDBLOCK) return io_error("cannot lock", dir, err);
    return busy(dir_fd, lock ? lock->get() : -1);
  }
  if (!lock) return lock.status();
  if (const int err = try_lock(lock->get()); err != 0) {
    if (err != EWOULDBLOCK) return io_error("cannot lock", dir / kLockFile, err);
    return busy(lock->get(), lock->get());
  }
  // The pid is only a hint: failing to write it is harmless.
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

// What the snapshot and the journal were: for the checks across files.
struct FileFacts {
  bool exists = false;
  std::uint32_t version = 0;
  std::uint64_t generation = 0;
  std::uint64_t sequence = 0;  // the header's
};

constexpr const char* kRepairHint = "start netsemd once with --repair to accept the loss";

// A fence floor above every fence this data directory can have handed out
// when its fences file is lost: the wall clock in milliseconds times 65536,
// i.e. assuming fewer than 65,536 grants per millisecond on average since
// 1970 (about 2^57 today, far from the 2^64 limit).
std::uint64_t repair_fence_floor() {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  return static_cast<std::uint64_t>(ms > 0 ? ms : 0) << 16;
}

// The fences file, nullopt if there is none.
Result<std::optional<jf::FencesFile>> recover_fences(int dir_fd, const fs::path& dir) {
  auto bytes = read_file(dir_fd, dir, kFencesFile);
  if (!bytes) return bytes.status();
  if (!*bytes) return std::optional<jf::FencesFile>();
  auto file = jf::parse_fences(**bytes);
  if (!file) {
    return Status(StatusCode::kCorruption,
                  fmt::format("fences file {}: {}", (dir / kFencesFile).string(), file.status().message()));
  }
  return std::optional<jf::FencesFile>(*file);
}

// Reads the snapshot into `state`.
Result<FileFacts> recover_snapshot(int dir_fd, const fs::path& dir, std::map<std::string, CreatedState>& state) {
  auto bytes = read_file(dir_fd, dir, kSnapshotFile);
  if (!bytes) return bytes.status();
  FileFacts facts;
  if (!*bytes) return facts;
  const ReplayResult r = replay_snapshot(**bytes, state);
  if (r.stop != ReplayStop::kCleanEnd) {
    const std::string why = r.stop == ReplayStop::kBadHeader
                                ? jf::parse_header(**bytes, jf::FileKind::kSnapshot).status().message()
                                : fmt::format("{} at offset {}", replay_stop_name(r.stop), r.good_bytes);
    return Status(StatusCode::kCorruption, fmt::format("snapshot {}: {}; it is written atomically, so this is not "
                                                       "a crash: move it away to start without it",
                                                       (dir / kSnapshotFile).string(), why));
  }
  facts.exists = true;
  facts.version = jf::parse_header_full(**bytes, jf::FileKind::kSnapshot)->version;
  facts.generation = r.generation;
  facts.sequence = r.sequence;
  return facts;
}

// A name for a copy of a damaged file beside it that no earlier copy has.
std::string damaged_name(int dir_fd, const char* name) {
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string candidate = fmt::format("{}.damaged-{}", name, now);
  for (int i = 1; ::faccessat(dir_fd, candidate.c_str(), F_OK, 0) == 0; ++i) {
    candidate = fmt::format("{}.damaged-{}.{}", name, now, i);
  }
  return candidate;
}

// Replays the journal onto `state` when it continues the snapshot. A torn
// tail is cut with a warning; damage followed by valid records is refused
// (kCorruption) unless `repair`, which cuts it there and says what was lost.
// `end_sequence` receives the sequence after the last record recovered.
Status recover_journal(int dir_fd, const fs::path& dir, const FileFacts& snapshot, bool repair,
                       std::map<std::string, CreatedState>& state, RecoveredState& report, FileFacts& journal,
                       std::uint64_t& end_sequence) {
  end_sequence = snapshot.sequence;
  auto file = read_file(dir_fd, dir, kJournalFile);
  if (!file) return file.status();
  const fs::path path = dir / kJournalFile;
  if (!*file) {
    if (snapshot.exists) report.warnings.push_back("journal: missing; recovered from the snapshot alone");
    return Status::ok();
  }
  const std::string& bytes = **file;
  auto header = jf::parse_header_full(bytes, jf::FileKind::kJournal);
  if (!header)
    return Status(StatusCode::kCorruption, fmt::format("journal {}: {}", path.string(), header.status().message()));
  journal.exists = true;
  journal.version = header->version;
  journal.generation = header->word;
  journal.sequence = header->sequence;
  const std::uint64_t expected = snapshot.exists ? snapshot.generation : 0;
  if (header->word > expected) {
    return Status(StatusCode::kCorruption,
                  fmt::format("journal {} is of generation {} but the snapshot of {}: the snapshot it follows is "
                              "missing",
                              path.string(), header->word, expected));
  }
  if (header->word < expected) {
    // A crash between the snapshot's rename and the new journal's: the snapshot already holds it.
    report.warnings.push_back(
        fmt::format("journal: generation {} is older than the snapshot ({}); skipped", header->word, expected));
    return Status::ok();
  }
  if (header->version >= 2 && snapshot.version >= 2 && header->sequence != snapshot.sequence) {
    return Status(StatusCode::kCorruption,
                  fmt::format("journal {} starts after record {} but the snapshot covers {}: they are not a pair",
                              path.string(), header->sequence, snapshot.sequence));
  }
  const ReplayResult r = replay_journal(bytes, state);
  end_sequence = r.sequence + r.records;
  if (r.stop == ReplayStop::kCleanEnd) return Status::ok();

  // A write that crashed midway leaves an incomplete record and then
  // nothing valid; valid records after the bad bytes mean damage in the
  // middle, and cutting there would silently drop acknowledged changes.
  std::size_t records_after = 0;
  const auto resync = r.stop == ReplayStop::kTornTail && r.good_bytes + jf::kRecordPrefixSize > bytes.size()
                          ? std::nullopt
                          : find_record_after(bytes, r.good_bytes + 1, &records_after);
  const bool mid_journal = resync.has_value();
  const std::size_t cut = bytes.size() - r.good_bytes;
  std::string what = fmt::format("journal {}: {} at offset {}", path.string(), replay_stop_name(r.stop), r.good_bytes);
  if (resync) {
    what += fmt::format(", followed by {} valid records from offset {}", records_after, *resync);
  }
  if (mid_journal && !repair) {
    return Status(StatusCode::kCorruption,
                  fmt::format("{}: damage in the middle of the journal, not a torn tail; cutting it there would lose "
                              "the {} bytes after it; {} (the journal is cut at offset {} and the damaged file kept "
                              "beside it)",
                              what, cut, kRepairHint, r.good_bytes));
  }
  std::string message = fmt::format("{} ({} bytes cut", what, cut);
  message += mid_journal ? fmt::format(", {} records after the damage lost: accepted by --repair)", records_after)
                         : std::string(", a torn tail: the last write did not complete)");
  // The cut bytes may be worth a look; keep them under another name.
  const std::string kept = damaged_name(dir_fd, kJournalFile);
  if (::linkat(dir_fd, kJournalFile, dir_fd, kept.c_str(), 0) == 0) {
    message += fmt::format("; the damaged journal is kept as {}", (dir / kept).string());
  }
  (mid_journal ? report.losses : report.warnings).push_back(std::move(message));
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
  for (const char* temp : {"snapshot.tmp", "fences.tmp", "run.tmp", kJournalTemp}) ::unlinkat(dir_fd.get(), temp, 0);

  std::unique_ptr<FileJournal> journal(new FileJournal(dir, options, std::move(dir_fd), std::move(*lock)));
  const int dfd = journal->dir_fd_.get();
  // Filled locally and handed over only on success: on error `recovered` stays empty.
  RecoveredState report;
  std::map<std::string, CreatedState> state;
  auto fences = recover_fences(dfd, dir);
  if (!fences && (fences.status().code() != StatusCode::kCorruption || !options.repair)) {
    if (fences.status().code() != StatusCode::kCorruption) return fences.status();
    return Status(StatusCode::kCorruption,
                  fmt::format("{}; without it fences could repeat; {} (fences then restart above {})",
                              fences.status().message(), kRepairHint, repair_fence_floor()));
  }
  auto snapshot = recover_snapshot(dfd, dir, state);
  if (!snapshot) return snapshot.status();
  FileFacts journal_facts;
  std::uint64_t end_sequence = 0;
  if (Status s = recover_journal(dfd, dir, *snapshot, options.repair, state, report, journal_facts, end_sequence); !s) {
    return s;
  }

  const fs::path fences_path = dir / kFencesFile;
  const bool data = snapshot->exists || journal_facts.exists;
  // Only this version writes a fences file at every open: with files of the
  // version before, a missing one may just never have been written.
  const bool fences_expected = data && std::max(snapshot->version, journal_facts.version) >= 2;
  std::uint64_t floor = 0;
  std::uint64_t proof = 0;
  if (fences && *fences) {
    floor = (*fences)->slot.bound;
    proof = (*fences)->slot.proof;
    journal->fence_counter_ = (*fences)->slot.counter;
    if (!(*fences)->other_valid) {
      // The other slot was being written when a crash tore it (or it is
      // damaged): it held at most one reservation more than this one.
      floor += kMaxFenceReservation;
      report.warnings.push_back(
          fmt::format("fences file {}: one slot is damaged (a torn write); fences restart {} "
                      "above the other one's bound",
                      fences_path.string(), kMaxFenceReservation));
    }
  } else if (!fences || fences_expected) {
    const std::string why =
        !fences ? fences.status().message() : fmt::format("fences file {} is missing", fences_path.string());
    if (!options.repair) {
      return Status(StatusCode::kCorruption,
                    fmt::format("{} while the data directory holds a snapshot or journal: fences could repeat; {} "
                                "(fences then restart above {})",
                                why, kRepairHint, repair_fence_floor()));
    }
    floor = repair_fence_floor();
    report.losses.push_back(
        fmt::format("{}: fences restart above {} (the wall clock in ms times 65536), accepted "
                    "by --repair",
                    why, floor));
  } else if (data) {
    report.warnings.push_back(
        fmt::format("fences file {} is missing beside files of format version 1; fences "
                    "start at 1",
                    fences_path.string()));
  }
  // The fences file proves how many records were durable when it was last
  // written: a journal that ends before that lost records.
  const bool ends_in_v2 = journal_facts.exists && journal_facts.generation == snapshot->generation
                              ? journal_facts.version >= 2
                              : snapshot->version >= 2;
  if (ends_in_v2 && proof > end_sequence) {
    std::string message = fmt::format(
        "journal {} ends after record {} but {} proves {} records were durable: {} records are missing (the "
        "journal was truncated, or snapshot and journal replaced by older copies)",
        (dir / kJournalFile).string(), end_sequence, fences_path.string(), proof, proof - end_sequence);
    if (!options.repair) return Status(StatusCode::kCorruption, fmt::format("{}; {}", message, kRepairHint));
    report.losses.push_back(message + ", accepted by --repair");
  }

  journal->generation_ = snapshot->exists ? snapshot->generation : 0;
  journal->sequence_ = std::max(end_sequence, proof);
  journal->fence_bound_ = floor;
  if (Status s = journal->compact(state); !s) return s;
  if (Status s = journal->rewrite_fences(); !s) return s;
  auto run = read_file(dfd, dir, kRunFile);
  if (!run) return run.status();
  if (*run) {
    auto record = jf::parse_run_record(**run);
    if (record) {
      recovered.previous_run = *record;
    } else {
      recovered.previous_run = {jf::RunRecord::State::kRunning, 0, 0};
      report.warnings.push_back(fmt::format("run file {}: {}; read as a run that did not stop",
                                            (dir / kRunFile).string(), record.status().message()));
    }
  }
  recovered.created = std::move(state);
  recovered.fence_floor = journal->fence_bound_;
  recovered.warnings = std::move(report.warnings);
  recovered.losses = std::move(report.losses);
  return journal;
}

// ---------------------------------------------------------------- records

void FileJournal::record_set(std::string_view name, const CreatedState& state) {
  jf::append_set(batch_, name, state);
  ++sequence_;
  if (compacting_) kept_.insert_or_assign(std::string(name), state);
}

void FileJournal::record_delete(std::string_view name) {
  jf::append_delete(batch_, name);
  ++sequence_;
  if (compacting_) kept_.insert_or_assign(std::string(name), std::nullopt);
}

Status FileJournal::record_run(const jf::RunRecord& record) {
  return replace_file(dir_fd_.get(), dir_, kRunFile, jf::encode_run_record(record));
}

// ---------------------------------------------------------------- fences

Status FileJournal::rewrite_fences() {
  // Both slots valid and the same: the first in-place write after this
  // (counter + 1) goes to the slot of the older counter.
  fences_fd_.reset();
  // A slot's place is its counter's parity.
  std::string slots[2];
  for (std::uint64_t counter : {fence_counter_ + 1, fence_counter_ + 2}) {
    slots[counter % 2] = jf::encode_fence_slot({counter, fence_bound_, durable_sequence_});
  }
  std::string bytes = slots[0];
  bytes.resize(jf::kFenceSlotStride, '\0');
  bytes += slots[1];
  if (Status s = replace_file(dir_fd_.get(), dir_, kFencesFile, bytes); !s) return s;
  fence_counter_ += 2;
  proof_ = durable_sequence_;
  // Kept open for the life of the journal: a reservation must never need a
  // new descriptor (the process may have none left by then).
  auto fd = open_at(dir_fd_.get(), dir_, kFencesFile, O_RDWR);
  if (!fd) return fd.status();
  fences_fd_ = std::move(*fd);
  return Status::ok();
}

Status FileJournal::write_fence_slot(std::uint64_t bound, std::uint64_t proof) {
  if (!fences_fd_.valid()) return Status(StatusCode::kIoError, "the fences file is not open");
  const std::uint64_t counter = fence_counter_ + 1;
  const std::string slot = jf::encode_fence_slot({counter, bound, proof});
  // The slot of the older counter: the newer one stays valid whatever
  // happens to this write (a torn one included).
  const auto offset = static_cast<off_t>((counter % 2) * jf::kFenceSlotStride);
  const fs::path path = dir_ / kFencesFile;
  for (std::size_t done = 0; done < slot.size();) {
    const ssize_t n =
        ::pwrite(fences_fd_.get(), slot.data() + done, slot.size() - done, offset + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot write", path, errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (const int err = sync_fd(fences_fd_.get(), true)) return io_error("cannot fsync", path, err);
  fence_counter_ = counter;
  proof_ = proof;
  return Status::ok();
}

std::uint64_t FileJournal::reserve_fences(std::uint64_t needed) {
  if (needed <= fence_bound_) return fence_bound_;
  assert(needed - fence_bound_ <= kMaxFenceReservation);
  needed = std::min(needed, fence_bound_ + kMaxFenceReservation);
  if (Status s = write_fence_slot(needed, durable_sequence_); !s) {
    // The caller keeps handing out fences below the old bound, and asks
    // again; only a table that reaches it refuses grants until one works.
    if (!fences_failing_) {
      spdlog::error("cannot reserve fences up to {}: {}; grants go on up to {}, then fail until a reservation works",
                    needed, s.message(), fence_bound_);
    }
    fences_failing_ = true;
    return fence_bound_;
  }
  if (fences_failing_) spdlog::info("fences reserved up to {} again", needed);
  fences_failing_ = false;
  fence_bound_ = needed;
  return fence_bound_;
}

Status FileJournal::write_proof() {
  if (durable_sequence_ <= proof_) return Status::ok();
  return write_fence_slot(fence_bound_, durable_sequence_);
}

// ---------------------------------------------------------------- writing

Status FileJournal::flush() {
  if (!batch_.empty()) {
    if (!journal_fd_.valid()) {
      return Status(StatusCode::kIoError,
                    fmt::format("journal {} is unusable after a failed compaction; compact() again",
                                (dir_ / kJournalFile).string()));
    }
    std::size_t written = 0;
    Status status = write_all(journal_fd_.get(), batch_, written, counters_.writes);
    // What reached the file leaves the batch, so a retry appends exactly the rest.
    batch_.erase(0, written);
    journal_bytes_ += written;
    dirty_ = dirty_ || written > 0;
    if (!status) {
      return Status(StatusCode::kIoError, fmt::format("cannot write journal {}: {} ({} bytes still batched)",
                                                      (dir_ / kJournalFile).string(), status.message(), batch_.size()));
    }
  }
  written_sequence_ = sequence_;
  // Under kAlways this also retries the fsync a previous flush() failed.
  if (options_.fsync == FsyncPolicy::kAlways) return sync();
  return Status::ok();
}

Status FileJournal::sync() {
  if (!journal_fd_.valid()) return Status::ok();
  if (!dirty_) {
    durable_sequence_ = std::max(durable_sequence_, written_sequence_);
    return Status::ok();
  }
  const auto began = std::chrono::steady_clock::now();
  const int err = sync_fd(journal_fd_.get(), true);
  counters_.fsync_us.observe(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count()));
  if (err != 0) {
    needs_rewrite_ = true;
    return io_error("cannot fsync journal", dir_ / kJournalFile, err);
  }
  dirty_ = false;
  durable_sequence_ = written_sequence_;
  ++syncs_;
  return Status::ok();
}

std::uint64_t FileJournal::answerable_sequence() const {
  return options_.fsync == FsyncPolicy::kAlways ? durable_sequence_ : written_sequence_;
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
  s.writes = counters_.writes;
  s.syncs = syncs_;
  s.compactions = compactions_;
  s.sequence = sequence_;
  s.pending_records = sequence_ - answerable_sequence();
  return s;
}

// ---------------------------------------------------------------- compaction

namespace {

constexpr const char* kSnapshotTemp = "snapshot.tmp";

// journal.tmp of `generation`: its header written and fsynced. It is renamed
// into place once the snapshot of `generation` is.
Result<UniqueFd> prepare_next_journal(int dir_fd, const fs::path& dir, std::uint64_t generation, std::uint64_t sequence,
                                      std::uint64_t& header_size) {
  auto next = open_at(dir_fd, dir, kJournalTemp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
  if (!next) return next.status();
  const std::string header = jf::encode_header(jf::FileKind::kJournal, generation, sequence);
  header_size = header.size();
  if (Status status = write_and_sync(next->get(), dir / kJournalTemp, header); !status) {
    ::unlinkat(dir_fd, kJournalTemp, 0);
    return status;
  }
  return next;
}

}  // namespace

Status FileJournal::compact(const std::map<std::string, CreatedState>& state) {
  const int dfd = dir_fd_.get();
  const std::uint64_t generation = generation_ + 1;

  // The new journal is made durable under a temporary name first, so that
  // once the snapshot is in place only a rename is left to do.
  std::uint64_t header_size = 0;
  auto next = prepare_next_journal(dfd, dir_, generation, sequence_, header_size);
  if (!next) return next.status();
  const std::string snapshot = jf::encode_snapshot(generation, state, sequence_);
  if (Status status = replace_file(dfd, dir_, kSnapshotFile, snapshot); !status) {
    ::unlinkat(dfd, kJournalTemp, 0);
    return status;
  }
  return switch_to_generation(generation, snapshot.size(), std::move(*next), header_size);
}

Status FileJournal::switch_to_generation(std::uint64_t generation, std::uint64_t snapshot_size, UniqueFd next,
                                         std::uint64_t header_size) {
  const int dfd = dir_fd_.get();
  // The snapshot of `generation` is durable: every older journal, and the
  // batch, are in it. From here a crash recovers the new state.
  generation_ = generation;
  snapshot_bytes_ = snapshot_size;
  batch_.clear();
  written_sequence_ = sequence_;
  durable_sequence_ = sequence_;
  journal_fd_.reset();
  journal_bytes_ = 0;
  dirty_ = false;
  needs_rewrite_ = false;

  Status status;
  if (::renameat(dfd, kJournalTemp, dfd, kJournalFile) != 0) {
    status = io_error("cannot rename into place (journal must be compacted again)", dir_ / kJournalFile, errno);
  } else {
    // Until the rename is durable a crash would bring back the old journal
    // (skipped, being older) while records went to the new one: not usable yet.
    status = sync_dir(dfd, dir_);
    if (!status) status = Status(StatusCode::kIoError, status.message() + " (journal must be compacted again)");
  }
  if (!status) return status;
  journal_fd_ = std::move(next);
  journal_bytes_ = header_size;
  ++compactions_;
  return Status::ok();
}

std::uint64_t FileJournal::begin_compaction() {
  assert(!compacting_);
  compacting_ = true;
  compaction_generation_ = generation_ + 1;
  kept_.clear();
  return compaction_generation_;
}

Status FileJournal::write_snapshot_body(std::uint64_t generation, const CreatedSource& source,
                                        std::uint64_t& records) const {
  records = 0;
  const int raw_dir = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw_dir < 0) return io_error("cannot open data directory", dir_, errno);
  const UniqueFd dir_fd(raw_dir);
  auto file = open_at(dir_fd.get(), dir_, kSnapshotTemp, O_WRONLY | O_CREAT | O_TRUNC);
  if (!file) return file.status();
  // Written in pieces of about this much: the child's memory stays small
  // whatever the table's size.
  constexpr std::size_t kPiece = 1 << 20;
  // The header's sequence is written again by finish_compaction(), when it
  // is known what the snapshot covers.
  std::string piece = jf::encode_header(jf::FileKind::kSnapshot, generation, 0);
  piece.reserve(kPiece + jf::kRecordPrefixSize + jf::kMaxRecordBody);
  Status status;
  std::uint64_t calls = 0;
  auto write_piece = [&] {
    std::size_t written = 0;
    if (Status s = write_all(file->get(), piece, written, calls); !s && status) {
      status = Status(StatusCode::kIoError,
                      fmt::format("cannot write {}: {}", (dir_ / kSnapshotTemp).string(), s.message()));
    }
    piece.clear();
  };
  source([&](std::string_view name, const CreatedState& state) {
    if (!status) return;
    jf::append_set(piece, name, state);
    ++records;
    if (piece.size() >= kPiece) write_piece();
  });
  write_piece();
  if (status) {
    if (const int err = sync_fd(file->get(), false)) status = io_error("cannot fsync", dir_ / kSnapshotTemp, err);
  }
  return status;
}

Status FileJournal::finish_compaction(std::uint64_t body_records) {
  assert(compacting_);
  const int dfd = dir_fd_.get();
  const std::uint64_t generation = compaction_generation_;
  std::string tail;
  for (const auto& [name, state] : kept_) {
    if (state) {
      jf::append_set(tail, name, *state);
    } else {
      jf::append_delete(tail, name);
    }
  }
  jf::append_end(tail, body_records + kept_.size());
  compacting_ = false;
  kept_ = {};

  std::uint64_t header_size = 0;
  auto next = prepare_next_journal(dfd, dir_, generation, sequence_, header_size);
  Status status = next.status();
  std::uint64_t snapshot_size = 0;
  if (status) {
    // Only the tail is new: the child fsynced the body, so this fsync is short.
    auto file = open_at(dfd, dir_, kSnapshotTemp, O_WRONLY);  // not O_APPEND: pwrite would append
    status = file.status();
    // The snapshot covers every record made so far: its header says so, as
    // the new journal's does (recovery checks that they agree).
    const std::string header = jf::encode_header(jf::FileKind::kSnapshot, generation, sequence_);
    if (status && ::pwrite(file->get(), header.data(), header.size(), 0) != static_cast<ssize_t>(header.size())) {
      status = io_error("cannot write", dir_ / kSnapshotTemp, errno);
    }
    if (status && ::lseek(file->get(), 0, SEEK_END) < 0) status = io_error("cannot seek", dir_ / kSnapshotTemp, errno);
    if (status) status = write_and_sync(file->get(), dir_ / kSnapshotTemp, tail);
    struct stat st {};
    if (status && ::fstat(file->get(), &st) == 0) snapshot_size = static_cast<std::uint64_t>(st.st_size);
  }
  if (status && ::renameat(dfd, kSnapshotTemp, dfd, kSnapshotFile) != 0) {
    status = io_error("cannot rename into place", dir_ / kSnapshotFile, errno);
  }
  if (status) status = sync_dir(dfd, dir_);
  if (!status) {
    ::unlinkat(dfd, kSnapshotTemp, 0);
    ::unlinkat(dfd, kJournalTemp, 0);
    return status;
  }
  return switch_to_generation(generation, snapshot_size, std::move(*next), header_size);
}

void FileJournal::abort_compaction() {
  compacting_ = false;
  kept_ = {};
  ::unlinkat(dir_fd_.get(), kSnapshotTemp, 0);
}

}  // namespace netsem::server
