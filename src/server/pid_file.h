// PidFile: netsemd --pidfile FILE. The file holds netsemd's pid and a
// flock(2) for the life of the process, so that a second netsemd given the
// same file refuses to start while the first one lives, whatever the file
// says (a pid alone can be stale or reused). The lock is taken before the
// server starts; the pid is written once it listens (a supervisor that
// waits for the file finds a server that serves); the file is removed when
// the object goes (a clean exit). After a crash the file stays, unlocked:
// the next start takes it over.
//
// Thread safety: one object, one thread.
#pragma once

#include <filesystem>

#include "common/unique_fd.h"
#include "netsem/status.h"

namespace netsem::server {

class PidFile {
 public:
  // Opens (or makes) `path` and locks it. kBusy "pidfile FILE is held by a
  // running netsemd (pid N)" when another process holds the lock; kIoError
  // when the file cannot be made or locked.
  static Result<PidFile> lock(const std::filesystem::path& path);
  PidFile(PidFile&&) noexcept = default;
  PidFile& operator=(PidFile&&) = delete;
  // Removes the file (still locked, so no other netsemd can have taken it).
  ~PidFile();

  // Writes this process's pid ("<pid>\n") in place of what the file held.
  Status write_pid();

 private:
  PidFile(std::filesystem::path path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

  std::filesystem::path path_;
  UniqueFd fd_;
};

}  // namespace netsem::server
