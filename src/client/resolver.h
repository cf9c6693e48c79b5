// Host-name resolution for the client's I/O thread, bounded by a deadline
// and interruptible by stop().
//
// getaddrinfo() cannot be cancelled and may block for as long as the
// resolver's retries take (tens of seconds against a dead DNS server). The
// I/O thread therefore resolves numeric addresses in place and hands names to
// a detached helper thread, waiting for its answer only until the connect
// deadline or a stop; an abandoned lookup finishes on its own and frees what
// it found. A slow DNS so costs one connect attempt its deadline, never the
// Client's reconnects, its fallback or its destructor.
//
// Thread safety: resolve() may be called from any thread; each call stands
// alone.
#pragma once

#include <netdb.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace netsem::client {

// getaddrinfo()'s shape, so that tests can stand in for a slow DNS.
using LookupFunction = std::function<int(const char* host, const char* service, const addrinfo* hints, addrinfo** out)>;
LookupFunction system_lookup();

using AddressList = std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)>;

struct Resolution {
  AddressList addresses{nullptr, &::freeaddrinfo};  // empty on failure
  std::string error;                                // why there are none
  // The failure was this process's own (out of descriptors, memory or
  // threads), not the name's: it says nothing about the server.
  bool local = false;
  // The lookup was cut at the deadline: no address in time, as a connect
  // that times out has no connection in time.
  bool timed_out = false;
};

// Resolves `host` and `port` into stream-socket addresses. A numeric address
// never calls `lookup`; a name is looked up on a helper thread. Gives up
// (with an error) at `deadline`, or when `wake_fd` becomes readable and
// `stopping()` holds; a wake-up without a stop is drained and waited past.
Resolution resolve(const std::string& host, std::uint16_t port, std::chrono::steady_clock::time_point deadline,
                   int wake_fd, const std::function<bool()>& stopping, const LookupFunction& lookup);

}  // namespace netsem::client
