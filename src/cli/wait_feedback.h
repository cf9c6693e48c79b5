// Feedback while `netsem run` and `netsem wait` wait for permits (issue 12
// item 7): who is in the way and for how long, so that a wait that seems hung
// explains itself.
//
// On a terminal (stderr is a tty) one line, rewritten in place with \r about
// once a second and erased when the wait ends: the time waited, this
// request's position in the queue and the labels of the sessions that hold
// the name. Off a terminal nothing, unless -v: then a plain line now and
// then (no \r, for logs). Nothing at all for a wait shorter than a second.
//
// The position and the holders come from protocol 1.1's WAITERS and HOLDERS,
// made at most once a second in all (the two alternate), and never against
// a 1.0 server, a host-local name or while served by the fallback: the line
// then shows the time waited alone.
//
// Thread safety: WaitFeedback runs one thread of its own, started by the
// constructor and joined by stop() (or the destructor); that thread only
// calls the thread-safe Client and writes stderr. Create it after the
// signals netsem handles are blocked, so that its thread inherits the mask.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "netsem/client.h"

namespace netsem::cli {

class WaitFeedback {
 public:
  // Starts watching the wait for `count` permits of `name`; `verbosity` is
  // the -v count.
  WaitFeedback(Client& client, std::string name, std::int64_t count, int verbosity);
  ~WaitFeedback();
  WaitFeedback(const WaitFeedback&) = delete;
  WaitFeedback& operator=(const WaitFeedback&) = delete;

  // Ends the feedback (the wait is over): erases the terminal line. Returns
  // once the thread is joined; idempotent.
  void stop();

 private:
  void loop();
  std::string text(std::chrono::seconds waited) const;

  Client& client_;
  const std::string name_;
  const std::int64_t count_;
  const bool terminal_;  // stderr is a tty: the updating line
  const bool plain_;     // off a terminal with -v: plain lines
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  // Known from the last listings (the thread's alone).
  std::string position_;  // "2nd of 3 in the queue", or empty
  std::string holders_;   // "held by a/1/x, b/2/y", or empty
  bool drawn_ = false;    // a terminal line is showing
  std::thread thread_;
};

}  // namespace netsem::cli
