// The 4D-style flag calls of Client (set_flag, clear_flag, test_flag): a
// flag is a limit-1 name, set while this process holds a permit of it. They
// are built on the semaphore calls of client.cc (acquire, get, value) and
// keep the permits of the flags this process set in Client::Impl::flags
// (client_impl.h), so that clearing one gives its permit back and a flag lost
// with its session is set anew.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <utility>

#include "client/client_impl.h"
#include "netsem/client.h"

namespace netsem {

using client::check_api_name;
using client::Deadline;
using client::is_connection_failure;
using client::is_local_name;
using std::chrono::milliseconds;

Status Client::set_flag(std::string_view name, milliseconds wait) {
  if (Status status = check_api_name(name); !status.is_ok()) return status;
  const Deadline deadline(std::max(wait, milliseconds(0)));
  std::unique_lock lock(impl_->flags_mutex);
  for (;;) {
    if (auto held = impl_->flags.find(name); held != impl_->flags.end()) {
      if (!held->second.lost()) return {};
      impl_->flags.erase(held);  // lost with its session: set it anew
    }
    if (!impl_->flags_being_set.contains(name)) break;
    // Another thread of this process is setting it: its outcome decides.
    const bool finished =
        impl_->flags_cv.wait_for(lock, *deadline.remaining(), [&] { return !impl_->flags_being_set.contains(name); });
    if (!finished) return Status(StatusCode::kTimeout, fmt::format("the flag \"{}\" is being set", name));
  }
  impl_->flags_being_set.emplace(name);
  lock.unlock();
  Result<Permit> permit = acquire(name, {.count = 1, .timeout = deadline.remaining()});
  lock.lock();
  impl_->flags_being_set.erase(impl_->flags_being_set.find(name));
  impl_->flags_cv.notify_all();
  if (!permit) return permit.status();
  impl_->flags.emplace(std::string(name), std::move(*permit));
  return {};
}

Status Client::clear_flag(std::string_view name) {
  if (Status status = check_api_name(name); !status.is_ok()) return status;
  Permit permit;
  {
    std::lock_guard lock(impl_->flags_mutex);
    const auto held = impl_->flags.find(name);
    if (held == impl_->flags.end()) {
      return Status(StatusCode::kNotHeld, fmt::format("the flag \"{}\" was not set by this process", name));
    }
    permit = std::move(held->second);
    impl_->flags.erase(held);
  }
  return permit.release();
}

Result<bool> Client::test_flag(std::string_view name) {
  if (!is_local_name(name)) {
    Result<SemaphoreInfo> info = get(name);
    if (info) return info->holders > 0 || info->value == 0;
    // Silent servers are no outage: no local reading either.
    if (!is_connection_failure(info.status()) || impl_->connection->silent()) return info.status();
  }
  Result<std::int64_t> value = this->value(name);
  if (!value) return value.status();
  return *value == 0;
}

}  // namespace netsem
