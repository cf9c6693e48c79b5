// EventLoop: the benchmark's single-threaded epoll loop, shared by the load
// generator and the floor server. Level-triggered readiness is dispatched to
// Handlers; after each batch of events the loop runs the tasks deferred
// during it, then the end-of-batch hooks (a connection writes everything a
// batch queued with one write), so a pipelined burst costs one syscall.
//
// Lifetime rule: a handler must not be destroyed while a batch is being
// dispatched, since later events of the same batch may still name it. Close
// the descriptor at once (stale events for a handler whose descriptor is
// closed are the handler's to ignore) and defer the destruction or the
// reuse of the handler with defer().
//
// Thread safety: none; one loop per thread.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

namespace netsem::bench {

class EventLoop {
 public:
  class Handler {
   public:
    // `events` is the epoll mask (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP).
    virtual void on_ready(std::uint32_t events) = 0;
    // Called once after the batch in which the handler asked for it with
    // EventLoop::at_end_of_batch().
    virtual void on_end_of_batch() {}

   protected:
    ~Handler() = default;
  };

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers, changes or forgets `fd`. Failures are programming errors or
  // exhaustion, reported by abort() with a message: the benchmark cannot
  // carry on without its loop.
  void add(int fd, std::uint32_t events, Handler* handler);
  void modify(int fd, std::uint32_t events, Handler* handler);
  void remove(int fd);

  // Runs `task` after the current batch (after the next one when called
  // from a deferred task or an end-of-batch hook).
  void defer(std::function<void()> task) { deferred_.push_back(std::move(task)); }
  // Calls handler->on_end_of_batch() after the current batch's deferred
  // tasks. The handler avoids asking twice in one batch.
  void at_end_of_batch(Handler* handler) { end_of_batch_.push_back(handler); }

  // Waits at most `timeout` for events, dispatches them, then runs deferred
  // tasks and end-of-batch hooks. Returns the number of events dispatched.
  int poll(std::chrono::milliseconds timeout);

 private:
  void finish_batch();

  int epoll_fd_ = -1;
  std::array<epoll_event, 512> events_{};
  std::vector<std::function<void()>> deferred_;
  std::vector<Handler*> end_of_batch_;
  std::vector<std::function<void()>> running_;  // the deferred tasks being run
  std::vector<Handler*> ending_;                // the hooks being run
};

}  // namespace netsem::bench
