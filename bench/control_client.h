// ControlClient: a blocking protocol v1 connection with a deadline on every
// exchange, for the few requests a scenario makes outside its measurement
// (contended looks up its semaphore, creates it when absent and deletes it
// afterwards). Never used while measuring. BlockingSocket, the socket part
// with deadlines, is shared with the Redis target's RedisControl.
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

// A connected socket used in blocking style, every call bounded by a deadline.
class BlockingSocket {
 public:
  // nullptr when no connection was made within `timeout`.
  static std::unique_ptr<BlockingSocket> connect(const Endpoint& endpoint, std::chrono::milliseconds timeout);
  ~BlockingSocket();
  BlockingSocket(const BlockingSocket&) = delete;
  BlockingSocket& operator=(const BlockingSocket&) = delete;

  // Sends all of `bytes`; false on timeout or a broken connection.
  bool send_all(std::string_view bytes, Clock::time_point deadline);
  // Waits for input and appends it to `buffer`; false on timeout, end of
  // input or a broken connection.
  bool read_more(std::string& buffer, Clock::time_point deadline);

 private:
  explicit BlockingSocket(int fd) : fd_(fd) {}
  int fd_;
};

class ControlClient {
 public:
  // nullptr when no connection was made within `timeout`.
  static std::unique_ptr<ControlClient> connect(const Endpoint& endpoint, std::chrono::milliseconds timeout);

  // Sends `line` + "\n" and returns the answer line (without "\n"); nullopt
  // on timeout or a broken connection.
  // `request_line` is one whole line built by the codec (protocol/requests.h),
  // "\n" included.
  std::optional<std::string> request(std::string_view request_line, std::chrono::milliseconds timeout);

 private:
  explicit ControlClient(std::unique_ptr<BlockingSocket> socket) : socket_(std::move(socket)) {}
  std::unique_ptr<BlockingSocket> socket_;
  std::string buffer_;
};

}  // namespace netsem::bench
