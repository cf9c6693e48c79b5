// The HTTP listener over libmicrohttpd (listener.h): the daemon's options,
// and its C callbacks turned into api::Request and back.
#include "http/listener.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>

namespace netsem::http {

namespace {

// The raw request target, kept from MHD's URI callback (called once per
// request, before the headers are parsed) until the request completes.
struct RequestState {
  std::string target;
  bool headers_seen = false;  // the access handler was called once
};

// MHD's messages: at debug level (most are about clients: resets, bad
// requests); the last one is kept for the error of a failed start.
std::mutex last_message_mutex;
std::string last_message;  // guarded by last_message_mutex

void log_message(void*, const char* format, va_list ap) {
  char buffer[512];
  std::vsnprintf(buffer, sizeof buffer, format, ap);
  std::string_view text(buffer);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  spdlog::debug("http: {}", text);
  std::lock_guard lock(last_message_mutex);
  last_message.assign(text);
}

std::array<std::uint8_t, 16> address_bytes(const sockaddr* address) {
  std::array<std::uint8_t, 16> bytes{};
  if (address == nullptr) return bytes;
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    std::memcpy(bytes.data(), &v6->sin6_addr, 16);
  } else if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    std::memcpy(bytes.data() + 12, &v4->sin_addr, 4);
  }
  return bytes;
}

// "127.0.0.1:40112", "[::1]:40112"; a mapped IPv4 address as IPv4.
std::string describe(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (address == nullptr) return "?";
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      ::inet_ntop(AF_INET, reinterpret_cast<const std::uint8_t*>(&v6->sin6_addr) + 12, text, sizeof text);
      return std::string(text) + ":" + std::to_string(ntohs(v6->sin6_port));
    }
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  return "?";
}

}  // namespace

void Listener::limit_connections(unsigned n) {
  std::lock_guard lock(count_mutex_);
  limits_.connections = std::min(limits_.connections, n);
  limits_.connections_per_address = std::min(limits_.connections_per_address, n);
}

bool Listener::take(int fd, const std::array<std::uint8_t, 16>& peer) {
  std::lock_guard lock(count_mutex_);
  // A descriptor of ours still on record was closed by MHD without a word
  // (a connection it dropped before NOTIFY_STARTED): accept() could not
  // have returned its number otherwise.
  release_locked(fd);
  if (held_.size() >= limits_.connections) return false;
  const auto found = held_by_address_.find(peer);
  if (found != held_by_address_.end() && found->second >= limits_.connections_per_address) return false;
  held_.emplace(fd, peer);
  ++held_by_address_[peer];
  return true;
}

void Listener::release_locked(int fd) {
  const auto held = held_.find(fd);
  if (held == held_.end()) return;
  const auto found = held_by_address_.find(held->second);
  if (found != held_by_address_.end() && --found->second == 0) held_by_address_.erase(found);
  held_.erase(held);
}

void Listener::release(int fd) {
  std::lock_guard lock(count_mutex_);
  release_locked(fd);
}

struct Listener::Callbacks {
  // The socket's context is its descriptor (plus one: nullptr is "none"),
  // the key of its place in held_ from NOTIFY_STARTED until it closes.
  static void connection(void* cls, MHD_Connection* connection, void** socket_context,
                         MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<Listener*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
      if (info == nullptr) return;
      *socket_context = reinterpret_cast<void*>(static_cast<std::intptr_t>(info->connect_fd) + 1);
      return;
    }
    // NOTIFY_CLOSED comes before MHD closes the descriptor, so no other
    // connection has its number yet.
    if (*socket_context == nullptr) return;
    self->release(static_cast<int>(reinterpret_cast<std::intptr_t>(*socket_context) - 1));
    *socket_context = nullptr;
  }

  static void* uri(void*, const char* target, MHD_Connection*) {
    return new RequestState{target != nullptr ? target : ""};
  }

  // Keeps the target as sent: api::route decodes it.
  static size_t unescape(void*, MHD_Connection*, char* text) { return std::strlen(text); }

  static void completed(void*, MHD_Connection*, void** state, MHD_RequestTerminationCode) {
    delete static_cast<RequestState*>(*state);
    *state = nullptr;
  }

  static MHD_Result request(void* cls, MHD_Connection* connection, const char*, const char* method, const char*,
                            const char*, size_t* upload_size, void** state) {
    auto* self = static_cast<Listener*>(cls);
    auto* request_state = static_cast<RequestState*>(*state);
    // A body the request announced is refused without being read (it is
    // answered on the first call, before MHD reads it).
    const char* length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char* encoding = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    api::Request request;
    request.method = method;
    request.target = request_state != nullptr ? std::string_view(request_state->target) : std::string_view("/");
    request.has_body = encoding != nullptr || (length != nullptr && std::string_view(length) != "0") ||
                       (upload_size != nullptr && *upload_size > 0);
    // The first call only sees the headers: a request without a body is
    // answered at the second, so that MHD keeps the connection alive (an
    // answer queued before the request is complete closes it). One with a
    // body is answered at once, its body unread, and the connection closed.
    if (request_state != nullptr && !request_state->headers_seen && !request.has_body) {
      request_state->headers_seen = true;
      return MHD_YES;
    }
    const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const sockaddr* peer = info != nullptr ? info->client_addr : nullptr;
    request.peer = address_bytes(peer);
    request.peer_text = describe(peer);
    const char* if_none_match = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "If-None-Match");
    if (if_none_match != nullptr) request.if_none_match = if_none_match;
    const auto header = [&](const char* name) {
      const char* value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
      return value != nullptr ? std::string_view(value) : std::string_view();
    };
    request.host = header(MHD_HTTP_HEADER_HOST);
    request.origin = header("Origin");
    request.sec_fetch_site = header("Sec-Fetch-Site");
    request.authorization = header(MHD_HTTP_HEADER_AUTHORIZATION);

    const api::Response answer = self->handler_(request);
    MHD_Response* response = MHD_create_response_from_buffer(answer.body.size(), const_cast<char*>(answer.body.data()),
                                                             MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;  // out of memory: MHD closes the connection
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, answer.content_type.c_str());
    for (const auto& [name, value] : answer.headers) MHD_add_response_header(response, name.c_str(), value.c_str());
    if (request.has_body) MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
    const MHD_Result queued = MHD_queue_response(connection, static_cast<unsigned>(answer.status), response);
    MHD_destroy_response(response);
    return queued;
  }
};

namespace {

// How long the accepting thread waits before it tries again when accept()
// found the process (or the system) out of descriptors or memory.
constexpr int kShortageRetryMs = 100;

bool is_shortage(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

}  // namespace

Result<std::unique_ptr<Listener>> Listener::start(const std::string& address, std::uint16_t port, const Limits& limits,
                                                  Handler handler, Admit admit) {
  sockaddr_storage storage{};
  socklen_t storage_size = 0;
  // A thread per connection (poll(), not select(): netsemd's descriptors
  // go past FD_SETSIZE): a handler waiting for a busy event loop holds up
  // only its own connection, never /healthz on another one. No listening
  // socket: the listener's own thread accepts (accept_loop).
  const unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
                         MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    storage_size = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    storage_size = sizeof(sockaddr_in6);
  } else {
    return Status(StatusCode::kInvalidArgument, "bad http_address '" + address + "'");
  }
  const auto cannot_listen = [&](std::string_view why) {
    return Status(StatusCode::kIoError,
                  "cannot listen for HTTP on " + address + ":" + std::to_string(port) + ": " + std::string(why));
  };
  std::unique_ptr<Listener> listener(new Listener());
  // As MHD did: the address reusable at once after a restart, an IPv6
  // address for IPv6 only.
  // Non-blocking: poll may find it readable and accept4 nothing (a peer
  // that reset in between).
  listener->listen_fd_.reset(::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener->listen_fd_.valid()) return cannot_listen(std::strerror(errno));
  const int fd = listener->listen_fd_.get();
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (storage.ss_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), storage_size) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    return cannot_listen(std::strerror(errno));
  }
  sockaddr_storage bound{};
  socklen_t bound_size = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_size) != 0) {
    return cannot_listen(std::strerror(errno));
  }
  listener->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                      : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  listener->wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!listener->wake_fd_.valid()) return cannot_listen(std::strerror(errno));
  listener->handler_ = std::move(handler);
  listener->admit_ = std::move(admit);
  listener->limits_ = limits;
  {
    std::lock_guard lock(last_message_mutex);
    last_message.clear();
  }
  listener->daemon_ =
      MHD_start_daemon(flags, 0, nullptr, nullptr, &Callbacks::request, listener.get(),  // no accept policy: take()
                       MHD_OPTION_EXTERNAL_LOGGER, &log_message, nullptr,                //
                       MHD_OPTION_THREAD_STACK_SIZE, limits.thread_stack_bytes,          //
                       MHD_OPTION_CONNECTION_LIMIT, limits.connections * 2,              // a backstop: take() counts
                       MHD_OPTION_NOTIFY_CONNECTION, &Callbacks::connection, listener.get(),  //
                       MHD_OPTION_CONNECTION_MEMORY_LIMIT, limits.memory_per_connection,      //
                       MHD_OPTION_CONNECTION_TIMEOUT, limits.idle_timeout_s,                  //
                       MHD_OPTION_URI_LOG_CALLBACK, &Callbacks::uri, nullptr,                 //
                       MHD_OPTION_UNESCAPE_CALLBACK, &Callbacks::unescape, nullptr,           //
                       MHD_OPTION_NOTIFY_COMPLETED, &Callbacks::completed, nullptr,           //
                       MHD_OPTION_END);
  if (listener->daemon_ == nullptr) {
    std::lock_guard lock(last_message_mutex);
    return cannot_listen(last_message.empty() ? "libmicrohttpd did not start" : last_message);
  }
  listener->accept_thread_ = std::thread([self = listener.get()] { self->accept_loop(); });
  return listener;
}

void Listener::accept_loop() {
  pthread_setname_np(pthread_self(), "http-accept");
  bool short_of_descriptors = false;
  auto short_since = std::chrono::steady_clock::now();
  const auto recovered = [&] {
    if (!short_of_descriptors) return;
    short_of_descriptors = false;
    spdlog::info(
        "http: accepting again after {} ms",
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - short_since).count());
  };
  bool poll_failing = false;
  for (;;) {
    // Out of descriptors, accept() fails at once while a peer waits:
    // only the wake descriptor is watched then, for the retry's time.
    pollfd fds[2] = {{wake_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    const int ready = ::poll(fds, short_of_descriptors ? 1 : 2, short_of_descriptors ? kShortageRetryMs : -1);
    if (ready < 0) {
      const int error = errno;
      if (error == EINTR) continue;
      // Never the end of HTTP: once logged, tried again every 100 ms.
      if (!poll_failing) {
        spdlog::error("http: poll: {}; trying again every {} ms", std::strerror(error), kShortageRetryMs);
      }
      poll_failing = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(kShortageRetryMs));
      continue;
    }
    poll_failing = false;
    if (fds[0].revents != 0) return;  // stop()
    if (ready == 0 && !short_of_descriptors) continue;
    sockaddr_storage peer{};
    socklen_t peer_size = sizeof peer;
    const int client =
        ::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&peer), &peer_size, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (client < 0) {
      const int error = errno;
      if (is_shortage(error)) {
        if (!short_of_descriptors) {
          spdlog::warn("http: cannot accept a connection: {}; trying again every {} ms", std::strerror(error),
                       kShortageRetryMs);
          short_since = std::chrono::steady_clock::now();
        }
        short_of_descriptors = true;
      } else if (error == EAGAIN || error == EWOULDBLOCK) {
        recovered();  // a descriptor is free, and nobody waits
      } else if (error != EINTR) {
        spdlog::debug("http: accept: {}", std::strerror(error));  // a peer gone before it was accepted
      }
      continue;
    }
    recovered();
    const auto* address = reinterpret_cast<const sockaddr*>(&peer);
    const auto bytes = address_bytes(address);
    // Counted before MHD has it (see listener.h).
    if (!admit_(bytes) || !take(client, bytes)) {
      ::close(client);
      continue;
    }
    // MHD closes the socket when it cannot take it.
    if (MHD_add_connection(daemon_, client, address, peer_size) != MHD_YES) release(client);
  }
}

Listener::~Listener() {
  stop();
}

void Listener::stop() {
  if (accept_thread_.joinable()) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
    accept_thread_.join();
  }
  listen_fd_.reset();
  if (daemon_ == nullptr) return;
  MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

}  // namespace netsem::http
