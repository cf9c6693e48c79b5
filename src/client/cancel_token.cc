// CancelToken (include/netsem/cancel_token.h): cancel() sets the flag and
// wakes every wait registered on the token (client.cc registers a Call's
// wait for as long as it lasts; LocalSemaphores looks at the flag itself).
#include "netsem/cancel_token.h"

#include "client/cancel_state.h"

namespace netsem {

CancelToken::CancelToken() : state_(std::make_shared<State>()) {}

void CancelToken::cancel() {
  std::lock_guard lock(state_->mutex);
  state_->cancelled = true;
  for (const auto& [id, wake] : state_->wakers) wake();
}

bool CancelToken::cancelled() const {
  return state_->cancelled.load();
}

}  // namespace netsem
