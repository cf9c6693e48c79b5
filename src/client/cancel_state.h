// What lies behind a CancelToken (include/netsem/cancel_token.h): the flag and
// the waits cancel() must wake. Private to the client library, which reaches
// it through CancelTokenAccess.
//
// Thread safety: `cancelled` is atomic; the rest is guarded by `mutex`.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "netsem/cancel_token.h"

namespace netsem {

struct CancelToken::State {
  std::atomic<bool> cancelled{false};
  std::mutex mutex;
  std::uint64_t last_id = 0;                              // guarded by mutex
  std::map<std::uint64_t, std::function<void()>> wakers;  // guarded by mutex: waits to wake on cancel
};

namespace client {

// The library's way to a token's state.
class CancelTokenAccess {
 public:
  using State = CancelToken::State;
  static const std::shared_ptr<State>& state(const CancelToken& token) { return token.state_; }
};

}  // namespace client
}  // namespace netsem
