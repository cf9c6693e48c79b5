// Example: a pool of worker threads capping their queries to a shared
// service at the fleet-wide limit of the semaphore "search-cluster". Every
// process on every host using the same netsemd shares that limit; when the
// server cannot be reached, the fallback policy (local by default) keeps the
// cap per host so the workers carry on.
//
//   example_worker_pool [--server HOST:PORT] [THREADS] [QUERIES]
#include <netsem/client.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

void run_query(int worker, int query) {
  // Stand-in for the real call to the shared service.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::printf("worker %d: query %d done\n", worker, query);
}

}  // namespace

int main(int argc, char** argv) {
  auto options = netsem::ClientOptions::from_environment();
  if (!options) {
    std::fprintf(stderr, "%s\n", options.status().to_string().c_str());
    return 2;
  }
  int arg = 1;
  if (argc > arg + 1 && std::strcmp(argv[arg], "--server") == 0) {
    options->servers = {argv[arg + 1]};
    arg += 2;
  }
  const int threads = argc > arg ? std::atoi(argv[arg]) : 4;
  const int queries = argc > arg + 1 ? std::atoi(argv[arg + 1]) : 3;

  auto client = netsem::Client::create(*options);
  if (!client) {
    std::fprintf(stderr, "%s\n", client.status().to_string().c_str());
    return 1;
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int worker = 0; worker < threads; ++worker) {
    workers.emplace_back([&, worker] {
      for (int query = 0; query < queries; ++query) {
        auto permit = (*client)->acquire("search-cluster", {.timeout = std::chrono::seconds(30)});
        if (!permit) {
          std::fprintf(stderr, "worker %d: %s\n", worker, permit.status().to_string().c_str());
          ++failures;
          continue;
        }
        run_query(worker, query);
      }  // the permit goes back here, even if run_query throws
    });
  }
  for (auto& worker : workers) worker.join();
  const auto stats = (*client)->stats();
  std::printf("remote grants %llu, local grants %llu\n", static_cast<unsigned long long>(stats.remote_grants),
              static_cast<unsigned long long>(stats.local_grants));
  return failures == 0 ? 0 : 1;
}
