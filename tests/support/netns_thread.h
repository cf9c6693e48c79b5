// NetnsThread: a thread of the test process in a network namespace of its
// own (unshare(CLONE_NEWNET) on that thread only: the rest of the process
// stays where it was), which runs what it is given there. Sockets it makes,
// commands it starts (system(), popen()) and threads it starts (a Client's
// I/O thread) belong to that namespace, so a test can build a small network
// (a veth pair between two such threads, `ip` run by each) and take a host
// away from it, with no address or interface that another test could
// collide with, and nothing left behind: the namespace goes with its last
// thread, process and socket, and its interfaces with it.
//
// Needs CAP_SYS_ADMIN (root, as in CI): ok() is false otherwise, and why()
// says so, for a GTEST_SKIP.
//
// Thread safety: run() from any thread but its own; one call at a time runs.
#pragma once

#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace netsem::test_support {

class NetnsThread {
 public:
  NetnsThread() {
    thread_ = std::thread([this] { loop(); });
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return started_; });
  }
  ~NetnsThread() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  NetnsThread(const NetnsThread&) = delete;
  NetnsThread& operator=(const NetnsThread&) = delete;

  // Whether the thread has a namespace of its own; why() says why not.
  bool ok() const { return error_.empty(); }
  const std::string& why() const { return error_; }
  // The thread's id, as `ip link set ... netns <tid>` takes it.
  pid_t tid() const { return tid_; }

  // Runs `work` on the thread, in its namespace, and returns what it returns.
  template <typename Work>
  auto run(Work work) -> decltype(work()) {
    using Out = decltype(work());
    if constexpr (std::is_void_v<Out>) {
      post([&] { work(); });
    } else {
      Out out{};
      post([&] { out = work(); });
      return out;
    }
  }

  // `command` run by sh in the namespace, its output (stderr too) in
  // `output`; its exit status (-1 when it could not run).
  int shell(const std::string& command, std::string* output = nullptr) {
    return run([&] {
      FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
      if (pipe == nullptr) return -1;
      std::string said;
      char chunk[512];
      while (const std::size_t n = std::fread(chunk, 1, sizeof chunk, pipe)) said.append(chunk, n);
      const int status = ::pclose(pipe);
      if (output != nullptr) *output = std::move(said);
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    });
  }

 private:
  void post(std::function<void()> work) {
    std::unique_lock lock(mutex_);
    work_ = std::move(work);
    done_ = false;
    cv_.notify_all();
    cv_.wait(lock, [&] { return done_; });
  }

  void loop() {
    std::unique_lock lock(mutex_);
    tid_ = static_cast<pid_t>(::syscall(SYS_gettid));
    if (::unshare(CLONE_NEWNET) != 0) {
      error_ = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno) + " (needs CAP_SYS_ADMIN)";
    }
    started_ = true;
    cv_.notify_all();
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || work_; });
      if (stop_) return;
      std::function<void()> work = std::move(work_);
      work_ = nullptr;
      lock.unlock();
      work();
      lock.lock();
      done_ = true;
      cv_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  bool started_ = false;        // guarded by mutex_
  bool stop_ = false;           // guarded by mutex_
  bool done_ = false;           // guarded by mutex_
  std::function<void()> work_;  // guarded by mutex_
  std::string error_;           // set before started_
  pid_t tid_ = 0;               // set before started_
  std::thread thread_;
};

}  // namespace netsem::test_support
