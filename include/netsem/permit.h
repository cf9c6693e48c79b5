// Permit: permits of one semaphore held by this process, given back when the
// Permit is destroyed (RAII), or earlier by release().
//
// A Permit comes from Client::acquire and friends. It is held either on the
// server (remote: it carries the server's fence token) or in a host-wide
// local semaphore (local: `$` names, or fallback while the server is
// unreachable). A remote permit can be *lost* without being released: the
// connection dropped, the server shut down, or the session expired. The
// server has then given it to someone else, so whoever works under it must
// stop; lost() tells, and on_lost() calls back the moment it happens.
//
// Thread safety: a Permit is move-only and owned by one thread at a time;
// lost() and on_lost() may be called from any thread, and the loss callback
// runs on the client's I/O thread (keep it short, never call the Client
// from it).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "netsem/status.h"

namespace netsem {

namespace client {
class PermitAccess;
}  // namespace client

class [[nodiscard]] Permit {
 public:
  // An empty permit: holds nothing, valid() is false.
  Permit() = default;
  // Releases what it still holds (errors are logged, not reported).
  ~Permit();
  Permit(Permit&& other) noexcept = default;
  Permit& operator=(Permit&& other) noexcept;
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;

  // True while the permit holds something (not released, not moved from).
  bool valid() const { return state_ != nullptr; }
  explicit operator bool() const { return valid(); }

  // Gives the permits back. Afterwards valid() is false.
  // Returns OK, or kUnavailable when the permit had been lost (nothing was
  // held any more), or an I/O error from the server round trip (the server
  // releases anyway when the connection ends). For a local permit, kNotHeld
  // when its semaphore was removed meanwhile (ipcrm): nothing is given back,
  // so a successor semaphore is never credited.
  // REQUIRES: valid()
  Status release();

  // The semaphore's name, as the caller passed it. REQUIRES: valid()
  const std::string& name() const;
  // How many permits it holds. REQUIRES: valid()
  std::int64_t count() const;
  // The server's fence token for this grant; nullopt for a local permit (a
  // `$` name, or a name served by fallback while no server was reachable),
  // which has none: no server numbered the grant, so a resource that checks
  // fences cannot tell it apart from a stale holder's. It has a value exactly
  // when !is_local(). REQUIRES: valid()
  std::optional<std::uint64_t> fence() const;
  // True when held in a host-wide local semaphore rather than on the server.
  // REQUIRES: valid()
  bool is_local() const;

  // True once the permit was lost (see the file comment). A local permit is
  // never lost. REQUIRES: valid()
  bool lost() const;
  // Why it was lost (kUnavailable: connection lost; kShutdown: the server is
  // shutting down), or OK while it is not. REQUIRES: valid()
  Status loss_reason() const;
  // Once lost through the lease (the server stopped answering, and has a
  // session timeout): when the work under the permit must have stopped,
  // since the server may grant it to someone else from then on. That is up
  // to 0.4 of the session timeout after the loss (docs/client.md, "The
  // lease"), or already past when the loss was noticed late. The lease's
  // end too after `* ERR SHUTDOWN`, and when the only server of a resumable
  // session refused the new connection (its process is gone; its next
  // start waits out the lease). nullopt for any other loss: the server let
  // go at once (connection closed, session ended) or gives no bound (no
  // session timeout), so the permit may be granted again now.
  // REQUIRES: lost()
  std::optional<std::chrono::steady_clock::time_point> stop_by() const;
  // Calls `callback(reason)` once when the permit is lost; at once (on the
  // calling thread) if it already is. Replaces an earlier callback.
  // REQUIRES: valid()
  void on_lost(std::function<void(const Status& reason)> callback);

  // The state behind a permit (what it holds, where, its loss) is the client
  // library's business (src/client/permit_state.h); only the library makes
  // non-empty permits.
  struct State;
  friend class client::PermitAccess;
  explicit Permit(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace netsem
