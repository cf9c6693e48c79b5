// read_private_file (see private_file.h): the mode is checked on the open
// descriptor (fstat), so the file checked is the file read.
#include "common/private_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"

namespace netsem {

Result<std::string> read_private_file(const std::filesystem::path& path) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid())
    return Status(StatusCode::kIoError, fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return Status(StatusCode::kIoError, fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) {
    return Status(StatusCode::kIoError, fmt::format("{}: cannot read: not a regular file", path.string()));
  }
  if ((info.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) != 0) {
    return Status(StatusCode::kDenied,
                  fmt::format("{}: holds secrets but is readable or writable by group or others (mode {:03o}; chmod "
                              "600 it)",
                              path.string(), info.st_mode & 0777));
  }
  std::string content;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status(StatusCode::kIoError, fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<std::size_t>(n));
    if (content.size() > (16 << 20)) {
      return Status(StatusCode::kIoError, fmt::format("{}: cannot read: larger than 16 MiB", path.string()));
    }
  }
  return content;
}

}  // namespace netsem
