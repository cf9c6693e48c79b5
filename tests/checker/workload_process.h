// netsem-workload (workload.cc) run as a child process by the failure tests
// of the single server (tests/checker) and of the cluster
// (tests/cluster/cluster_failure_test.cc): its libnetsem clients write the
// history the checker reads. Header-only; the test defines NETSEM_WORKLOAD,
// the path of the built program.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifndef NETSEM_WORKLOAD
#error "NETSEM_WORKLOAD must name the netsem-workload binary"
#endif

namespace netsem::checker {

// netsem-workload with `args`, started at construction; killed (SIGKILL)
// and reaped by the destructor if it still runs then.
class Workload {
 public:
  explicit Workload(std::vector<std::string> args) : args_(std::move(args)) {
    args_.insert(args_.begin(), NETSEM_WORKLOAD);
    std::vector<char*> argv;  // made before fork: the child only execs
    for (std::string& a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Workload() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  // Ends the clients' run now (they write the history and exit).
  void stop() { ::kill(pid_, SIGTERM); }

  // Its exit status (128+N when signal N ended it), or -1 when it did not
  // exit within `limit`.
  int wait(std::chrono::seconds limit) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < give_up) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a child's exit, bounded
    }
    return -1;
  }

 private:
  std::vector<std::string> args_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

}  // namespace netsem::checker
