// CancelToken: cancels a pending Client::acquire or Client::wait from another
// thread.
//
//   netsem::CancelToken token;
//   std::thread waiter([&] { auto permit = client->acquire("db", {.cancel = &token}); ... });
//   token.cancel();  // the acquire returns kCancelled
//
// Share one token between the waiting thread and the canceller; a token may
// serve any number of calls, before and after it fires. cancel() makes every
// call waiting with the token return kCancelled, and every later call with it
// return kCancelled at once. A grant that raced ahead of the cancel is given
// back (an acquire's permit released, a wait's permits posted), never leaked.
//
// Thread safety: every method from any thread at once. Copies share the same
// state: cancelling one cancels all.
#pragma once

#include <memory>

namespace netsem {

namespace client {
class CancelTokenAccess;
}  // namespace client

class CancelToken {
 public:
  CancelToken();

  // Fires the token: calls waiting with it return kCancelled. Idempotent.
  void cancel();
  // Whether cancel() was called.
  bool cancelled() const;

 private:
  // The shared flag and the waits to wake, the client library's business
  // (src/client/cancel_state.h).
  struct State;
  friend class client::CancelTokenAccess;
  std::shared_ptr<State> state_;
};

}  // namespace netsem
