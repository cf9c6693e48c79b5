// Example: a 4D-style flag guarding a job that must never run twice at once
// anywhere in the fleet (a nightly export, say). set_flag succeeds for one
// process; the others learn at once that the job is running and skip it.
// Use a `$` name instead to guard per host without any server.
//
//   example_one_at_a_time [FLAG]
#include <netsem/client.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  const std::string flag = argc > 1 ? argv[1] : "nightly-export";
  auto options = netsem::ClientOptions::from_environment();
  if (!options) return 2;
  auto client = netsem::Client::create(*options);
  if (!client) return 1;

  if (auto status = (*client)->set_flag(flag); !status) {
    if (status.code() == netsem::StatusCode::kTimeout) {
      std::printf("%s is already running elsewhere; skipping\n", flag.c_str());
      return 0;
    }
    std::fprintf(stderr, "set_flag: %s\n", status.to_string().c_str());
    return 1;
  }
  std::printf("running %s\n", flag.c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the job
  if (auto status = (*client)->clear_flag(flag); !status) {
    std::fprintf(stderr, "clear_flag: %s\n", status.to_string().c_str());
    return 1;
  }
  return 0;
}
