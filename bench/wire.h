// Wire: what the scenarios' abstract steps (acquire, release, create,
// remove a semaphore) are on the wire of one target, and what its replies
// mean. The scenarios drive every target the same way, so that netsem, the
// floor and Redis are measured with the same generator, the same
// connections and the same request pattern.
//
// Targets:
//  - netsem: protocol v1 (docs/protocol.md).
//  - floor: the built-in echo server (floor_server.h). The requests are the
//    very same netsem lines; every line is answered by one fixed-size line,
//    so a floor "acquire" is one plain round trip of the same shape. It is
//    the physical limit of the loopback and the kernel for this traffic.
//  - redis: the usual Lua counting-semaphore recipe (redis_wire.h), a
//    multi-step one: it fits this interface because next() may write
//    follow-up requests.
//
// One Wire per connection (a wire may keep per-connection state, such as
// which replies it still expects). Thread safety: none.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace netsem::bench {

enum class Target : std::uint8_t { kNetsem, kFloor, kRedis };
std::optional<Target> parse_target(std::string_view text);
std::string_view target_name(Target target);

// What a reply means to the scenario. Replies to a connection's requests
// come in the order the requests were sent, except that a queued acquire is
// answered kQueued first and kGranted later.
enum class Reply : std::uint8_t {
  kGranted,   // the acquire holds its permit
  kQueued,    // the acquire waits; kGranted follows
  kReleased,  // the release is done
  kDone,      // a create or remove succeeded
  kError,     // refused: last_error() says why
};

class Wire {
 public:
  virtual ~Wire() = default;

  // Append one request to `out`, built by the codec (protocol/requests.h);
  // the scenarios' names are plain printable ASCII, which it sends as they are.
  virtual void acquire(std::string& out, std::string_view name) = 0;
  virtual void release(std::string& out, std::string_view name) = 0;
  virtual void create(std::string& out, std::string_view name, std::int64_t limit) = 0;
  virtual void remove(std::string& out, std::string_view name) = 0;
  // Appends what a connection sends before its first request (nothing by
  // default); next() takes the replies to it off the input itself.
  virtual void open(std::string& /*out*/) {}

  // Takes the first complete reply off `input` (advancing it past it) and
  // says what it means; nullopt when no complete reply is buffered. A
  // multi-step recipe may append follow-up requests to `out`, and takes the
  // replies to its intermediate steps off `input` without returning them
  // (so nullopt may come with `input` advanced); a partial reply is left
  // on `input`.
  virtual std::optional<Reply> next(std::string_view& input, std::string& out) = 0;

  // The last reply that meant kError, for the report.
  const std::string& last_error() const { return last_error_; }

 protected:
  std::string last_error_;
};

// What a wire is told beyond its target. netsem and the floor need none of
// it (the server knows its semaphores); the Redis recipe runs in scripts the
// client invokes, so the client supplies the limit and the scripts' SHA1s.
struct WireSettings {
  std::int64_t limit = 1;   // Redis: of every name the wire acquires
  std::string acquire_sha;  // Redis: of the loaded scripts; empty: EVAL them
  std::string release_sha;
  bool queued_off = false;  // netsem: open() sends `OPTION queued off` (protocol 1.1)
  bool consume = false;     // netsem: acquire is WAIT and release is POST (the durable scenario)
};

std::unique_ptr<Wire> make_wire(Target target, const WireSettings& settings = {});

}  // namespace netsem::bench
