// The unwritable-journal fault (issue 10, item 2): for a moment netsemd's
// journal cannot be written, as on a full disk. The driver lowers the
// server's RLIMIT_FSIZE to the journal's present size (netsemd ignores
// SIGXFSZ, so its writes fail with EFBIG) and sends a POST of a created
// semaphore on a connection of its own. The workers go on meanwhile: their
// names make no journal record, so their answers must keep flowing (the
// checker still judges every hold), while the POST must not be answered
// before its record is written. Then the limit is lifted and the POST's
// answer must come.
#include <sys/resource.h>

#include <fmt/format.h>

#include <filesystem>

#include "driver.h"
#include "protocol/requests.h"
#include "soak_names.h"

namespace netsem::soak {

namespace {

constexpr Nanos kSecond = 1'000'000'000;

}  // namespace

void Driver::unwritable_phase() {
  if (!server_->running()) return;
  std::error_code error;
  const auto size = std::filesystem::file_size(dir_ / "data" / "journal", error);
  if (error) return;
  LineConnection connection;
  if (!connection.connect("127.0.0.1", options_.port, now() + kSecond)) return;
  const pid_t pid = server_->pid();
  rlimit old{};
  if (::prlimit(pid, RLIMIT_FSIZE, nullptr, &old) != 0) return;
  rlimit full = old;
  full.rlim_cur = static_cast<rlim_t>(size);
  if (::prlimit(pid, RLIMIT_FSIZE, &full, nullptr) != 0) return;
  ++counters_.unwritable_phases;
  const std::uint64_t grants_before = counters_.grants;

  PendingRequest op;
  op.created = std::uniform_int_distribution<std::size_t>(0, created_.size() - 1)(random_);
  op.post = true;
  op.count = 1;
  op.tag = "u";
  const std::string name(created_names()[op.created].name);
  std::string post;
  protocol::encode_post(post, "u", name, 1);
  const bool sent = connection.write(post, now() + kSecond);
  idle_until(now() + static_cast<Nanos>(options_.unwritable_for * 1e9));
  std::string line;
  const auto early = sent ? connection.read_line(line, now()) : LineConnection::ReadStatus::kClosed;
  ::prlimit(pid, RLIMIT_FSIZE, &old, nullptr);
  counters_.unwritable_grants += counters_.grants - grants_before;
  note(fmt::format("journal unwritable for {:.1f} s: {} grants meanwhile", options_.unwritable_for,
                   counters_.grants - grants_before));
  if (!sent) return;
  if (early == LineConnection::ReadStatus::kLine && line.starts_with("u OK")) {
    violation({Violation::Kind::kCreatedValue, now(), name,
               "POST answered '" + line + "' while its journal record could not be written"});
  }
  if (early != LineConnection::ReadStatus::kLine &&
      connection.read_line(line, now() + 5 * kSecond) != LineConnection::ReadStatus::kLine) {
    finish_created_op(op, std::nullopt);  // the server went away meanwhile (watch_server sees it)
    return;
  }
  finish_created_op(op, line.starts_with("u ") ? std::optional<std::string>(line.substr(2)) : std::nullopt);
}

}  // namespace netsem::soak
