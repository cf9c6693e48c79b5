// The pid file's lock, its content and its removal. The lock is taken on
// the file the path names at that moment: a file removed by the netsemd
// that is stopping (between our open and our flock) is opened again.
#include "server/pid_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace netsem::server {

namespace {

Status io_error(const std::filesystem::path& path, std::string_view what) {
  return Status(StatusCode::kIoError,
                "pidfile " + path.string() + ": " + std::string(what) + ": " + std::strerror(errno));
}

// The pid the holder wrote, or "" when it has not written it yet.
std::string read_pid(int fd) {
  char text[32] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  std::string pid = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string();
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid;
}

}  // namespace

Result<PidFile> PidFile::lock(const std::filesystem::path& path) {
  // A few tries: each one that fails this way saw a stopping netsemd
  // remove the file it had opened.
  for (int attempt = 0; attempt < 8; ++attempt) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd.valid()) return io_error(path, "cannot open");
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) return io_error(path, "cannot lock");
      const std::string pid = read_pid(fd.get());
      return Status(StatusCode::kBusy, "pidfile " + path.string() + " is held by a running netsemd" +
                                           (pid.empty() ? std::string(" (starting)") : " (pid " + pid + ")"));
    }
    struct stat opened {};
    struct stat named {};
    if (::fstat(fd.get(), &opened) != 0) return io_error(path, "cannot stat");
    if (::stat(path.c_str(), &named) == 0 && named.st_dev == opened.st_dev && named.st_ino == opened.st_ino) {
      return PidFile(path, std::move(fd));
    }
  }
  return Status(StatusCode::kBusy, "pidfile " + path.string() + " keeps being replaced by another process");
}

PidFile::~PidFile() {
  if (fd_.valid()) ::unlink(path_.c_str());
}

Status PidFile::write_pid() {
  const std::string text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_.get(), 0) != 0) return io_error(path_, "cannot truncate");
  if (::pwrite(fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    return io_error(path_, "cannot write");
  }
  return Status::ok();
}

}  // namespace netsem::server
