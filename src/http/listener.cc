// The HTTP listener over libmicrohttpd (listener.h): the daemon's options,
// and its C callbacks turned into api::Request and back.
#include "http/listener.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string_view>

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

struct Listener::Callbacks {
  static MHD_Result accept(void* cls, const sockaddr* address, socklen_t) {
    auto* self = static_cast<Listener*>(cls);
    const auto peer = address_bytes(address);
    if (!self->admit_(peer)) return MHD_NO;
    std::lock_guard lock(self->count_mutex_);
    if (self->open_ >= self->limits_.connections) return MHD_NO;
    const auto found = self->open_by_address_.find(peer);
    if (found != self->open_by_address_.end() && found->second >= self->limits_.connections_per_address) return MHD_NO;
    return MHD_YES;
  }

  // Counts open connections (accept() checks the counts); the peer's
  // address is kept as the socket's context until it closes.
  static void connection(void* cls, MHD_Connection* connection, void** socket_context,
                         MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<Listener*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
      auto* peer = new std::array<std::uint8_t, 16>(address_bytes(info != nullptr ? info->client_addr : nullptr));
      *socket_context = peer;
      std::lock_guard lock(self->count_mutex_);
      ++self->open_;
      ++self->open_by_address_[*peer];
      return;
    }
    auto* peer = static_cast<std::array<std::uint8_t, 16>*>(*socket_context);
    if (peer == nullptr) return;
    {
      std::lock_guard lock(self->count_mutex_);
      --self->open_;
      const auto found = self->open_by_address_.find(*peer);
      if (found != self->open_by_address_.end() && --found->second == 0) self->open_by_address_.erase(found);
    }
    delete peer;
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

Result<std::unique_ptr<Listener>> Listener::start(const std::string& address, std::uint16_t port, const Limits& limits,
                                                  Handler handler, Admit admit) {
  sockaddr_storage storage{};
  // A thread per connection (poll(), not select(): netsemd's descriptors
  // go past FD_SETSIZE): a handler waiting for a busy event loop holds up
  // only its own connection, never /healthz on another one.
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
  } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    flags |= MHD_USE_IPv6;
  } else {
    return Status(StatusCode::kInvalidArgument, "bad http_address '" + address + "'");
  }
  std::unique_ptr<Listener> listener(new Listener());
  listener->handler_ = std::move(handler);
  listener->admit_ = std::move(admit);
  listener->limits_ = limits;
  {
    std::lock_guard lock(last_message_mutex);
    last_message.clear();
  }
  listener->daemon_ =
      MHD_start_daemon(flags, port, &Callbacks::accept, listener.get(), &Callbacks::request, listener.get(),
                       MHD_OPTION_EXTERNAL_LOGGER, &log_message, nullptr,            //
                       MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&storage),  //
                       MHD_OPTION_THREAD_STACK_SIZE, limits.thread_stack_bytes,      //
                       MHD_OPTION_CONNECTION_LIMIT, limits.connections * 2,          // a backstop: accept() counts
                       MHD_OPTION_NOTIFY_CONNECTION, &Callbacks::connection, listener.get(),  //
                       MHD_OPTION_CONNECTION_MEMORY_LIMIT, limits.memory_per_connection,      //
                       MHD_OPTION_CONNECTION_TIMEOUT, limits.idle_timeout_s,                  //
                       MHD_OPTION_URI_LOG_CALLBACK, &Callbacks::uri, nullptr,                 //
                       MHD_OPTION_UNESCAPE_CALLBACK, &Callbacks::unescape, nullptr,           //
                       MHD_OPTION_NOTIFY_COMPLETED, &Callbacks::completed, nullptr,           //
                       MHD_OPTION_END);
  if (listener->daemon_ == nullptr) {
    std::lock_guard lock(last_message_mutex);
    return Status(StatusCode::kIoError, "cannot listen for HTTP on " + address + ":" + std::to_string(port) +
                                            (last_message.empty() ? "" : ": " + last_message));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(listener->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  listener->port_ = info != nullptr ? info->port : port;
  return listener;
}

Listener::~Listener() {
  stop();
}

void Listener::stop() {
  if (daemon_ == nullptr) return;
  MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

}  // namespace netsem::http
