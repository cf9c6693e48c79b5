// Uses libnetsem as an installed package would be used: with no server to
// reach and the `fail` fallback policy, an acquire must report kUnavailable
// (proving the library links, starts its I/O, and applies its options), and
// its fallback warning must reach the installed log handler.
#include <netsem/cancel_token.h>
#include <netsem/client.h>
#include <netsem/log.h>
#include <netsem/version.h>

#include <atomic>
#include <cstdio>

int main() {
  static std::atomic<int> warnings{0};
  netsem::set_log_handler([](netsem::LogLevel level, std::string_view) {
    if (level == netsem::LogLevel::kWarning) ++warnings;
  });
  netsem::ClientOptions options;
  options.servers = {"127.0.0.1:1"};  // nothing listens on port 1
  options.connect_timeout = std::chrono::milliseconds(200);
  options.fallback.mode = netsem::FallbackPolicy::Mode::kFail;
  auto client = netsem::Client::create(options);
  if (!client) {
    std::fprintf(stderr, "create: %s\n", client.status().to_string().c_str());
    return 1;
  }
  // The token's own header is installed and usable on its own.
  netsem::CancelToken token;
  token.cancel();
  auto cancelled = (*client)->acquire("package-test", {.cancel = &token});
  if (cancelled || cancelled.status().code() != netsem::StatusCode::kCancelled) {
    std::fprintf(stderr, "expected CANCELLED, got %s\n", cancelled.status().to_string().c_str());
    return 1;
  }
  auto permit = (*client)->try_acquire("package-test");
  if (permit || permit.status().code() != netsem::StatusCode::kUnavailable) {
    std::fprintf(stderr, "expected UNAVAILABLE, got %s\n", permit.status().to_string().c_str());
    return 1;
  }
  if (warnings.load() == 0) {
    std::fprintf(stderr, "expected the fallback warning in the log handler\n");
    return 1;
  }
  std::printf("netsem %s consumer OK: %s\n", netsem::kVersion, permit.status().to_string().c_str());
  return 0;
}
