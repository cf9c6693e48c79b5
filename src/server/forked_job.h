// ForkedJob: work over the whole table done in a child process, off the
// event loop (Redis's BGSAVE). fork() gives the child a copy-on-write image
// of the server's memory as it is at that instant, so the child can walk and
// sort a table of any size while the parent goes on answering requests; the
// parent pays for fork() itself (copying page tables, a few milliseconds per
// GiB) and for the pages it writes while the child lives.
//
// The child closes every descriptor it inherited but its report pipe, so a
// session the parent closes is closed at once for its peer, and the child
// cannot touch a socket, the journal or the data directory's lock. It runs
// the work, writes its report or error message to the pipe and _exits: no
// atexit handlers, no stdio flush, no logging. The parent learns that the
// child has ended through a pidfd watched by Asio (never a blocking wait),
// reaps it, and calls `done` on the event loop with the outcome.
//
// Thread safety: event-loop thread only. netsemd runs one thread, which is
// what makes fork() safe here (no other thread can hold a lock the child
// would need).
#pragma once

#include <sys/types.h>

#include <asio.hpp>
#include <functional>
#include <memory>
#include <string>

#include "netsem/status.h"

namespace netsem::server {

class ForkedJob {
 public:
  // Runs in the child; its Status is what `done` receives, and on success
  // `report` (at most 4096 bytes) is handed to `done` too.
  using Work = std::function<Status(std::string& report)>;
  // Runs in the parent, on the event loop, once the child has been reaped:
  // OK and the child's report, or the child's error, or how the child died.
  using Done = std::function<void(const Status& status, const std::string& report)>;

  // Forks a child named `name` (at most 15 bytes, shown by ps) that runs
  // `work`. kIoError when the pipe, fork() or pidfd_open() fail; nothing
  // runs then. `done` is not called after the ForkedJob is destroyed.
  static Result<std::unique_ptr<ForkedJob>> start(asio::io_context& io, const std::string& name, Work work, Done done);

  // Kills a child still running (SIGKILL) and reaps it: a server that stops
  // does not leave a writer behind.
  ~ForkedJob();
  ForkedJob(const ForkedJob&) = delete;
  ForkedJob& operator=(const ForkedJob&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return !reaped_; }

 private:
  ForkedJob(asio::io_context& io, pid_t pid, int pidfd, int report_fd, Done done);
  void wait_exit();
  void on_exit();

  pid_t pid_;
  asio::posix::stream_descriptor pidfd_;
  int report_fd_;  // read end of the child's report pipe, non-blocking
  Done done_;
  bool reaped_ = false;
  // Cleared by the destructor: a completion already queued must not call
  // back into a destroyed job.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace netsem::server
