// eventually(): polls a condition until it holds or a timeout passes, for
// tests that wait on another thread or process (a client's I/O thread, a
// server's log). One copy for every test that had its own.
#pragma once

#include <chrono>
#include <thread>

namespace netsem::test_support {

// True as soon as `predicate()` is; false when `timeout` passed first.
// Checks every `poll`.
template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = std::chrono::seconds(3),
                std::chrono::milliseconds poll = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

}  // namespace netsem::test_support
