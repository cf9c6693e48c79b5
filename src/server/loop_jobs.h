// LoopJobs: work another thread (an HTTP thread) asks the event loop to do,
// and waits for with a bound. The HTTP threads never touch the table, the
// dispatcher or the sessions; for per-name and per-session data they ask
// the loop for a copy of one page of plain values (no pointer into the
// table), and serialise it themselves.
//
// Why not asio::post: netsemd's io_context runs with
// ASIO_CONCURRENCY_HINT_UNSAFE (no locking in its scheduler or reactor), so
// no other thread may touch it. Instead a job goes into a queue under a
// mutex and an eventfd is written; the loop watches the eventfd (registered
// from the loop thread) and runs every queued job in one turn, then calls
// `after_jobs` (the server's end_turn, which writes any answers a job made,
// as a KICK's).
//
// Bounds: at most `max_queued` jobs queued at once (a further call is
// kBusy at once), each caller waits at most its timeout (then kBusy; the job
// still runs later, on values it owns). A job's loop cost is its own to bound
// (a page of rows).
//
// API: start() and close() on the loop thread; call() from any other thread
// (never from the loop thread: it would wait for itself); post() from any
// other thread, for work whose caller does not wait (the token verifier's
// answers, the TLS listener's established connections). close() cancels
// queued jobs (their callers get kShutdown at once) and refuses new ones.
//
// Thread safety: as above; the queue is guarded by an internal mutex.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "netsem/status.h"

namespace netsem::server {

class LoopJobs {
 public:
  LoopJobs(asio::io_context& io, std::size_t max_queued, std::function<void()> after_jobs);
  ~LoopJobs();
  LoopJobs(const LoopJobs&) = delete;
  LoopJobs& operator=(const LoopJobs&) = delete;

  // Opens the eventfd and starts watching it. kIoError when it cannot.
  Status start();
  // Refuses new jobs and cancels the queued ones; stops watching, so the
  // io_context can run out. Idempotent.
  void close();

  // Runs `fn` on the loop and returns its value, waiting at most `timeout`.
  // kBusy when max_queued jobs are queued, or when the timeout passes first
  // (`fn` still runs later: it must own everything it uses, captured by
  // value); kShutdown when closed (or closed while waiting).
  template <class T>
  Result<T> call(std::function<T()> fn, std::chrono::milliseconds timeout) {
    auto job = std::make_shared<CallJob<T>>(std::move(fn));
    if (auto status = submit(job); !status) return status;
    return job->wait(timeout);
  }

  // Runs `fn` on the loop, later; returns at once. kBusy when max_queued
  // jobs are queued, kShutdown when closed: `fn` will not run (it is
  // destroyed on this thread or the loop's).
  Status post(std::function<void()> fn) { return submit(std::make_shared<PostJob>(std::move(fn))); }

 private:
  struct Job {
    virtual ~Job() = default;
    virtual void run() = 0;     // on the loop thread
    virtual void cancel() = 0;  // any thread: it will never run
  };
  template <class T>
  struct CallJob final : Job {
    explicit CallJob(std::function<T()> f) : fn(std::move(f)) {}
    void run() override {
      T result = fn();
      std::lock_guard lock(mutex);
      value.emplace(std::move(result));
      done.notify_all();
    }
    void cancel() override {
      std::lock_guard lock(mutex);
      cancelled = true;
      done.notify_all();
    }
    Result<T> wait(std::chrono::milliseconds timeout) {
      std::unique_lock lock(mutex);
      if (!done.wait_for(lock, timeout, [&] { return value.has_value() || cancelled; })) {
        return Status(StatusCode::kBusy, "the server's event loop did not answer in time");
      }
      if (cancelled) return Status(StatusCode::kShutdown, "the server is stopping");
      return std::move(*value);
    }
    std::function<T()> fn;
    std::mutex mutex;
    std::condition_variable done;
    std::optional<T> value;  // guarded by mutex
    bool cancelled = false;  // guarded by mutex
  };

  struct PostJob final : Job {
    explicit PostJob(std::function<void()> f) : fn(std::move(f)) {}
    void run() override { fn(); }
    void cancel() override {}
    std::function<void()> fn;
  };

  Status submit(std::shared_ptr<Job> job);
  void watch();
  void run_queued();

  asio::io_context& io_;
  const std::size_t max_queued_;
  std::function<void()> after_jobs_;
  // The eventfd, owned by the watcher (one descriptor: a process near its
  // RLIMIT_NOFILE must still get as far as the descriptor plan). Other
  // threads write it through event_fd_ under mutex_ while !closed_; close()
  // sets closed_ under mutex_ before it closes the watcher, so no write
  // reaches a closed (or reused) descriptor.
  std::optional<asio::posix::stream_descriptor> watcher_;  // loop thread only
  std::mutex mutex_;
  int event_fd_ = -1;                       // guarded by mutex_
  std::deque<std::shared_ptr<Job>> queue_;  // guarded by mutex_
  bool closed_ = false;                     // guarded by mutex_
};

}  // namespace netsem::server
