// resolve(): numeric addresses in place, names on a detached helper thread
// whose answer arrives through an eventfd (see resolver.h for why).
#include "client/resolver.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

namespace netsem::client {

namespace {

using Clock = std::chrono::steady_clock;

// What the helper thread and the waiting caller share. The last of the two
// to let go frees it, and with it the addresses nobody took.
struct Lookup {
  Lookup() : done_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~Lookup() {
    if (done_fd >= 0) ::close(done_fd);
  }
  Lookup(const Lookup&) = delete;
  Lookup& operator=(const Lookup&) = delete;

  const int done_fd;
  std::mutex mutex;
  bool done = false;                                // guarded by mutex
  int rc = 0;                                       // guarded by mutex
  int error = 0;                                    // guarded by mutex: errno of the lookup, for EAI_SYSTEM
  AddressList addresses{nullptr, &::freeaddrinfo};  // guarded by mutex
};

// `error` is the errno of the thread that ran the lookup.
std::string lookup_error(int rc, int error) {
  if (rc == EAI_SYSTEM) return std::string("cannot resolve: ") + std::strerror(error);
  return std::string("cannot resolve: ") + ::gai_strerror(rc);
}

// A lookup that failed for want of this process's own resources.
bool local_failure(int rc, int error) {
  return rc == EAI_MEMORY || (rc == EAI_SYSTEM && (error == EMFILE || error == ENFILE || error == ENOBUFS ||
                                                   error == ENOMEM || error == EAGAIN));
}

}  // namespace

LookupFunction system_lookup() {
  return &::getaddrinfo;
}

Resolution resolve(const std::string& host, std::uint16_t port, Clock::time_point deadline, int wake_fd,
                   const std::function<bool()>& stopping, const LookupFunction& lookup) {
  Resolution resolution;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
  const std::string service = std::to_string(port);
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (rc == 0) {
    resolution.addresses.reset(found);
    return resolution;
  }
  if (rc != EAI_NONAME) {
    resolution.error = lookup_error(rc, errno);
    resolution.local = local_failure(rc, errno);
    return resolution;
  }

  hints.ai_flags = AI_NUMERICSERV;
  auto shared = std::make_shared<Lookup>();
  if (shared->done_fd < 0) {
    resolution.error = std::string("cannot resolve: eventfd: ") + std::strerror(errno);
    resolution.local = true;  // EMFILE, ENFILE, ENOMEM: eventfd fails for nothing else here
    return resolution;
  }
  try {
    std::thread([shared, lookup, host, service, hints] {
      addrinfo* result = nullptr;
      const int lookup_rc = lookup(host.c_str(), service.c_str(), &hints, &result);
      const int lookup_errno = errno;
      {
        std::lock_guard lock(shared->mutex);
        shared->done = true;
        shared->rc = lookup_rc;
        shared->error = lookup_errno;
        shared->addresses.reset(lookup_rc == 0 ? result : nullptr);
      }
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = ::write(shared->done_fd, &one, sizeof one);
    }).detach();
  } catch (const std::system_error& error) {
    resolution.error = std::string("cannot resolve: no thread for the lookup: ") + error.what();
    resolution.local = true;
    return resolution;
  }

  for (;;) {
    {
      std::lock_guard lock(shared->mutex);
      if (shared->done) {
        if (shared->rc == 0) {
          resolution.addresses = std::move(shared->addresses);
        } else {
          resolution.error = lookup_error(shared->rc, shared->error);
          resolution.local = local_failure(shared->rc, shared->error);
        }
        return resolution;
      }
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      resolution.error = "cannot resolve: the name lookup took longer than the connect timeout";
      resolution.timed_out = true;
      return resolution;
    }
    pollfd fds[2] = {{shared->done_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(std::min<std::int64_t>(left, 24 * 3600 * 1000)));
    if (ready < 0 && errno != EINTR) {
      resolution.error = std::string("cannot resolve: poll: ") + std::strerror(errno);
      return resolution;
    }
    if (stopping()) {
      resolution.error = "cannot resolve: stopping";
      return resolution;
    }
    if (ready > 0 && (fds[1].revents & POLLIN) != 0) {
      std::uint64_t drained = 0;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd, &drained, sizeof drained);
    }
  }
}

}  // namespace netsem::client
