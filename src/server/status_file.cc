// Rendering and atomic replacement of the status file.
#include "server/status_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "protocol/names.h"
#include "stats/render.h"

namespace netsem::server {

std::string render_status(const SemaphoreTable& table, const stats::Snapshot& figures,
                          const stats::ClusterFigures* cluster) {
  std::string text = "# netsem status v1: name kind value max holders waiters\n# stats ";
  text += stats::to_json(figures, cluster);
  text += '\n';
  table.list({}, [&](const SemaphoreInfo& info) {
    protocol::append_encoded_name(text, info.name);
    text += ' ';
    text += kind_name(info.kind);
    text += ' ' + std::to_string(info.value) + ' ' + std::to_string(info.max) + ' ' + std::to_string(info.holders) +
            ' ' + std::to_string(info.waiters) + '\n';
  });
  return text;
}

Status write_status_file(const std::filesystem::path& dir, const SemaphoreTable& table, const stats::Snapshot& figures,
                         const stats::ClusterFigures* cluster) {
  const std::string text = render_status(table, figures, cluster);
  const std::filesystem::path final_path = dir / kStatusFileName;
  std::filesystem::path temp_path = final_path;
  temp_path += ".tmp";
  const UniqueFd fd(::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status(StatusCode::kIoError, "open " + temp_path.string() + ": " + std::strerror(errno));
  for (std::size_t written = 0; written < text.size();) {
    const ssize_t n = ::write(fd.get(), text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(StatusCode::kIoError, "write " + temp_path.string() + ": " + std::strerror(errno));
    written += static_cast<std::size_t>(n);
  }
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    return Status(StatusCode::kIoError, "rename to " + final_path.string() + ": " + std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace netsem::server
