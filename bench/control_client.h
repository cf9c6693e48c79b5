// ControlClient: a blocking protocol v1 connection with a deadline on every
// exchange, for the few requests a scenario makes outside its measurement
// (contended looks up its semaphore, creates it when absent and deletes it
// afterwards). Never used while measuring.
//
// Thread safety: none; one object per user.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "connection.h"

namespace netsem::bench {

class ControlClient {
 public:
  // nullptr when no connection was made within `timeout`.
  static std::unique_ptr<ControlClient> connect(const Endpoint& endpoint, std::chrono::milliseconds timeout);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends `line` + "\n" and returns the answer line (without "\n"); nullopt
  // on timeout or a broken connection.
  std::optional<std::string> request(std::string_view line, std::chrono::milliseconds timeout);

 private:
  explicit ControlClient(int fd) : fd_(fd) {}
  int fd_;
  std::string buffer_;
};

}  // namespace netsem::bench
