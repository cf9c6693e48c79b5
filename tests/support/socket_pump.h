// pull() and push(): moving bytes between non-blocking sockets and buffers,
// for the tests' proxies (tests/client/tcp_proxy.cc, tests/raft/
// partition_proxy.cc), which forward what one side sends to the other.
//
// Thread safety: plain functions over the descriptors given.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <string>

namespace netsem::test_support {

// Appends what `from` has to `into`, as much as it has now; false at end of
// stream or on an error.
inline bool pull(int from, std::string& into) {
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::recv(from, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      into.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

// Writes what `to` takes of `bytes` now and drops it from `bytes`; false on
// an error.
inline bool push(int to, std::string& bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(to, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    bytes.erase(0, static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace netsem::test_support
