// Example: a producer/consumer queue across processes on POST/WAIT. The
// dispatcher writes each message as a file into a spool directory, then
// POSTs once; each worker WAITs (consuming one permit), then claims one file
// by renaming it. The semaphore's value is the number of unclaimed messages,
// durable on the server across restarts.
//
//   example_spool_queue DIR dispatch MESSAGE...
//   example_spool_queue DIR work [TIMEOUT_SECONDS]
#include <netsem/client.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {

constexpr const char* kQueue = "spool-queue";
constexpr std::int64_t kMaxBacklog = 1000000;

int dispatch(netsem::Client& client, const fs::path& dir, int argc, char** argv) {
  if (auto status = client.create(kQueue, 0, kMaxBacklog); !status) {
    std::fprintf(stderr, "create: %s\n", status.to_string().c_str());
    return 1;
  }
  for (int i = 0; i < argc; ++i) {
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    const fs::path file = dir / ("msg-" + std::to_string(stamp) + "-" + std::to_string(i));
    std::ofstream(file) << argv[i] << '\n';
    if (auto status = client.post(kQueue); !status) {
      std::fprintf(stderr, "post: %s\n", status.to_string().c_str());
      return 1;
    }
  }
  return 0;
}

int work(netsem::Client& client, const fs::path& dir, std::chrono::seconds timeout) {
  for (;;) {
    if (auto status = client.timed_wait(kQueue, timeout); !status) {
      if (status.code() == netsem::StatusCode::kTimeout) return 0;  // queue drained
      std::fprintf(stderr, "wait: %s\n", status.to_string().c_str());
      return 1;
    }
    // One permit consumed means one message is ours to claim.
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.path().filename().string().rfind("msg-", 0) != 0) continue;
      const fs::path claimed = entry.path().string() + ".claimed";
      std::error_code error;
      fs::rename(entry.path(), claimed, error);
      if (error) continue;  // another worker won this one
      std::ifstream in(claimed);
      std::string message;
      std::getline(in, message);
      std::printf("handled: %s\n", message.c_str());
      fs::remove(claimed, error);
      break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s DIR dispatch MESSAGE... | DIR work [TIMEOUT_SECONDS]\n", argv[0]);
    return 2;
  }
  auto options = netsem::ClientOptions::from_environment();
  if (!options) return 2;
  auto client = netsem::Client::create(*options);
  if (!client) return 1;
  const fs::path dir = argv[1];
  fs::create_directories(dir);
  const std::string mode = argv[2];
  if (mode == "dispatch") return dispatch(**client, dir, argc - 3, argv + 3);
  if (mode == "work") return work(**client, dir, std::chrono::seconds(argc > 3 ? std::atoi(argv[3]) : 5));
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
