// Permit and client::PermitState: giving permits back and reporting their
// loss. A remote permit is released by a RELEASE round trip on the session
// that granted it; a local one by its LocalSemaphores. The connection marks
// remote permits lost when their session ends (connection_rounds.cc), and a
// permit released first is never reported lost.
#include "netsem/permit.h"

#include "client/client_log.h"
#include "client/connection.h"
#include "client/local_semaphores.h"
#include "client/permit_state.h"
#include "protocol/requests.h"

namespace netsem {

Status Permit::State::release() {
  // Last, whatever happens below: the work under the permit has stopped.
  // (mark_lost changes `mark` under the mutex, never once released is set.)
  struct Unmark {
    State& state;
    ~Unmark() {
      if (state.mark.valid()) state.marks->unmark(state.mark);
    }
  } unmark{*this};
  {
    std::lock_guard lock(mutex);
    assert(!released && "permit released twice");
    released = true;
    if (!loss.is_ok()) {
      return Status(StatusCode::kUnavailable, "the permit of " + name + " was lost: " + loss.message());
    }
  }
  if (is_local()) return local->release(key, count, {.id = local_id, .ctime = local_ctime});

  const std::shared_ptr<client::Connection> connection_now = connection.lock();
  if (!connection_now) return Status(StatusCode::kUnavailable, "the client of " + name + " is closed");
  connection_now->unregister_permit(this);
  const auto call = connection_now->send(
      [this](std::string& line, std::string_view tag) { protocol::encode_release(line, tag, name, count); }, session);
  // The session ended between the check above and the send: the server has
  // released the permit with it.
  if (!call) return Status(StatusCode::kUnavailable, "the permit of " + name + " was lost with its session");
  // On the I/O thread (a loss callback dropping another permit) waiting would
  // deadlock; the RELEASE goes out all the same.
  if (connection_now->on_io_thread()) return Status();
  const client::Reply reply = client::Connection::wait(*call);
  if (!reply.failure.is_ok()) {
    return Status(StatusCode::kIoError,
                  "RELEASE " + name + ": " + reply.failure.message() + " (the server releases it with the session)");
  }
  if (reply.type == protocol::AnswerType::kError) {
    const StatusCode code = reply.error == protocol::ErrorCode::kNotHeld ? StatusCode::kNotHeld : StatusCode::kInternal;
    return Status(code, "RELEASE " + name + ": " + reply.rest);
  }
  return Status();
}

void Permit::State::mark_lost(const Status& reason, std::optional<std::chrono::steady_clock::time_point> stop_by_in) {
  assert(!reason.is_ok());
  std::function<void(const Status&)> callback;
  {
    std::lock_guard lock(mutex);
    if (released || !loss.is_ok()) return;
    loss = reason;
    stop_by = stop_by_in;
    // Its work may still run: a grant on this host waits for it from now on.
    if (mark.valid()) marks->mark_lost(mark);
    callback = std::move(on_lost);
    on_lost = nullptr;
  }
  if (callback) callback(reason);
}

Permit::~Permit() {
  if (!state_) return;
  const Status status = release();
  if (!status.is_ok() && status.code() != StatusCode::kUnavailable) {
    client::log_warning("releasing a permit failed: {}", status.to_string());
  }
}

Permit& Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    if (state_) {
      const Status status = release();
      if (!status.is_ok() && status.code() != StatusCode::kUnavailable) {
        client::log_warning("releasing a permit failed: {}", status.to_string());
      }
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

Status Permit::release() {
  assert(valid());
  const std::shared_ptr<client::PermitState> state = std::move(state_);
  return state->release();
}

const std::string& Permit::name() const {
  assert(valid());
  return state_->name;
}

std::int64_t Permit::count() const {
  assert(valid());
  return state_->count;
}

std::optional<std::uint64_t> Permit::fence() const {
  assert(valid());
  if (state_->is_local()) return std::nullopt;
  return state_->fence;
}

bool Permit::is_local() const {
  assert(valid());
  return state_->is_local();
}

bool Permit::lost() const {
  assert(valid());
  std::lock_guard lock(state_->mutex);
  return !state_->loss.is_ok();
}

Status Permit::loss_reason() const {
  assert(valid());
  std::lock_guard lock(state_->mutex);
  return state_->loss;
}

std::optional<std::chrono::steady_clock::time_point> Permit::stop_by() const {
  assert(valid());
  std::lock_guard lock(state_->mutex);
  assert(!state_->loss.is_ok() && "stop_by() of a permit that is not lost");
  return state_->stop_by;
}

void Permit::on_lost(std::function<void(const Status& reason)> callback) {
  assert(valid());
  Status reason;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->loss.is_ok()) {
      state_->on_lost = std::move(callback);
      return;
    }
    reason = state_->loss;
  }
  if (callback) callback(reason);
}

}  // namespace netsem
