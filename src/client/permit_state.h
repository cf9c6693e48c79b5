// What lies behind a netsem::Permit (include/netsem/permit.h): the permits it
// holds, where (a local semaphore or a server session), its host-wide mark
// and its loss. Private to the client library, which names it PermitState
// and makes permits through PermitAccess. The connection marks remote
// permits lost when their session ends (connection.h); permit.cc implements
// releasing and losing.
//
// Thread safety: the immutable fields are set before the Permit is handed
// out; the rest is guarded by `mutex`.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "client/local_semaphores.h"
#include "netsem/permit.h"
#include "netsem/status.h"

namespace netsem {

namespace client {
class Connection;
class LocalSemaphores;
}  // namespace client

// What a Permit holds. Immutable fields are set before the Permit is handed
// out; the rest is guarded by `mutex`.
struct Permit::State {
  std::string name;  // as the caller spelled it
  std::int64_t count = 1;
  std::uint64_t fence = 0;  // 0 for a local permit
  // Local permits: the semaphores that hold them, the key used there, and
  // the System V semaphore of the grant (LocalSemaphores::Grant), so that a
  // permit lost with a removed semaphore never frees one of its successor.
  std::shared_ptr<client::LocalSemaphores> local;
  std::string key;
  int local_id = -1;
  std::time_t local_ctime = 0;
  // Remote permits: the connection and the session that hold them.
  std::weak_ptr<client::Connection> connection;
  std::uint64_t session = 0;
  // The permit's mark in the host-wide table of holders (as a server, lost
  // or fallback holder of `name`), dropped by release() whether or not the
  // permit was lost: until then, processes of this host count as running
  // under it (LocalSemaphores, "Server permits and fallback"). Set before
  // the permit is registered or handed out; mark_lost() changes it under
  // `mutex`.
  std::shared_ptr<client::LocalSemaphores> marks;
  client::LocalSemaphores::Mark mark;

  std::mutex mutex;
  bool released = false;                                         // guarded by mutex
  Status loss;                                                   // guarded by mutex: OK until lost
  std::optional<std::chrono::steady_clock::time_point> stop_by;  // guarded by mutex: set with loss
  std::function<void(const Status&)> on_lost;                    // guarded by mutex

  bool is_local() const { return local != nullptr; }
  // Gives the permits back (a RELEASE round trip, or the local semaphore),
  // then drops the mark. REQUIRES: not released before.
  Status release();
  // Marks the permit lost for `reason`, the work under it to be stopped by
  // `stop_by` (Permit::stop_by), and runs its callback, unless it was
  // released first. Called on the I/O thread.
  void mark_lost(const Status& reason, std::optional<std::chrono::steady_clock::time_point> stop_by);
};

namespace client {

// The library's way to make permits and name their state.
class PermitAccess {
 public:
  using State = Permit::State;
  static Permit make(std::shared_ptr<State> state) { return Permit(std::move(state)); }
};

using PermitState = PermitAccess::State;

}  // namespace client
}  // namespace netsem
