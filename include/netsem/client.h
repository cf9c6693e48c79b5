// Client: the C++ client of netsem. Acquire permits of named semaphores
// shared by every process of every host that talks to the same netsemd.
//
//   auto client = netsem::Client::create(netsem::ClientOptions::from_environment().value());
//   auto permit = client->acquire("search-cluster", {.timeout = std::chrono::seconds(5)});
//   if (!permit) return permit.status();     // kTimeout, kUnavailable, ...
//   run_query();                             // at most N of these at once, fleet-wide
//   // the permit goes back when `permit` goes out of scope
//
// One Client multiplexes the calls of all threads on one connection (each
// request carries its own tag). It connects to the first reachable server of
// its list, says HELLO with a label (host/pid/program), pings at a third of
// the server's session timeout, and reconnects with backoff when the
// connection drops. Names are plain: the library percent-encodes them for the
// wire and checks them as the server does (1-255 bytes of UTF-8, no control
// characters).
//
// Local names and fallback: a name starting with `$` never touches the
// network; it is a host-wide semaphore shared by every process of this user
// on this host, and a process that dies (SIGKILL included) gives its permits
// back. While no server can be reached, other names are served the same way,
// per the name's FallbackPolicy (see client_options.h and docs/client.md).
//
// Refusals: a server that answers but refuses the session is not an outage.
// While the last round of connection attempts found no server to serve the
// client and at least one that refused it, every call that needs a server
// (or would fall back) fails with the refusal: kDenied (the server's
// allowed_networks exclude this host, or it requires authentication), kLimit
// (the server is at its max_connections), kProtocol (it does not speak
// protocol v1). The client keeps retrying with backoff, so a fixed
// allow-list or a freed connection slot is picked up without a restart.
//
// Timeouts: `timeout` absent waits for ever; zero only tries (never queues);
// a positive duration waits at most that long. A negative duration is a zero
// one.
//
// Logging: the library never writes to stdout; see log.h for where its lines
// go and how a host program takes them.
//
// Thread safety: every method may be called from any thread at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/cancel_token.h"
#include "netsem/client_options.h"
#include "netsem/log.h"
#include "netsem/permit.h"
#include "netsem/status.h"

namespace netsem {

struct AcquireOptions {
  std::int64_t count = 1;  // 1 .. 2^31-1
  // Absent: wait for ever; zero: only try; positive: wait at most that long.
  std::optional<std::chrono::milliseconds> timeout{};
  const CancelToken* cancel = nullptr;  // optional
};

// One semaphore as GET and LIST show it.
struct SemaphoreInfo {
  std::string name;
  std::int64_t value = 0;
  std::int64_t max = 0;
  // For kind "local" the kernel's counts: permits held on this host (by any
  // number of processes) and processes waiting.
  std::uint64_t holders = 0;  // sessions holding permits
  std::uint64_t waiters = 0;  // queued requests
  std::string kind;           // "defined", "created", "undefined", "absent", or "local"
};

// The 1.1 listings (Client::holders, waiters, sessions). A label is the
// session's HELLO label as it sent it (the library sends
// "<host>/<pid>/<program>" unless ClientOptions::label says otherwise);
// empty for a session that sent none, "ace" for a client of the ACE dialect.
// Times are whole milliseconds, rounded down, as the server measured them
// when it made the row.

// One session holding permits of a name through acquire, as HOLDERS shows it.
struct HolderInfo {
  std::uint64_t session_id = 0;       // the id HELLO gave it, as in sessions() and kick()
  std::int64_t count = 0;             // permits of the name it holds now
  std::uint64_t fence = 0;            // the fence of its latest grant of the name
  std::chrono::milliseconds held{0};  // since the grant that made it a holder
  std::string label;
};

// One queued request of a name, as WAITERS shows it.
struct WaiterInfo {
  std::uint64_t session_id = 0;
  std::int64_t count = 0;               // permits it asks for
  std::chrono::milliseconds waited{0};  // since it queued
  // What is left of its timeout (zero once it ran out); nullopt for a request
  // that waits for ever.
  std::optional<std::chrono::milliseconds> timeout_left;
  std::string label;
};

// One live session of the server, as SESSIONS shows it.
struct SessionInfo {
  std::uint64_t session_id = 0;
  std::string peer;                   // "10.0.0.7:40112", "[fd00::7]:40112"
  std::string dialect;                // "v1", "v1+tls" (the TLS port) or "ace"
  std::int64_t permits_held = 0;      // through acquire, all names together
  std::int64_t pending = 0;           // queued requests
  std::chrono::milliseconds age{0};   // since it connected
  std::chrono::milliseconds idle{0};  // since its last request (the session timeout's sense)
  std::string label;
};

// What the client counts (for logs and `netsem status`).
struct ClientStats {
  bool connected = false;
  std::string server;                   // "host:port" when connected
  std::uint64_t connects = 0;           // successful connections, reconnects included
  std::uint64_t connection_losses = 0;  // connections that dropped
  std::uint64_t fallback_entries = 0;   // times the client started serving names locally
  std::uint64_t fallback_exits = 0;     // times a server came back
  // Sessions carried on over a new connection after theirs broke (protocol
  // 1.2's RESUME; docs/client.md, "Resuming the session"): not counted in
  // connects or connection_losses.
  std::uint64_t resumes = 0;
  std::uint64_t local_grants = 0;  // permits granted by local semaphores ($ names and fallback)
  std::uint64_t remote_grants = 0;
  // While not connected: why, server by server, from the last round of
  // attempts ("10.0.0.5:53559: Connection refused; 10.0.0.6:53559: server
  // 10.0.0.6:53559 refused this host: ..."). Empty once connected.
  std::string unreachable;
  // While not connected: the last round of connection attempts reached
  // servers that accepted the connection and did not answer in time (busy,
  // electing a leader, syncing a disk), none that refused the session, and
  // this process lacked nothing to try them: not an outage, so calls wait
  // for a round that decides instead of falling back, and a call with no
  // timeout of its own fails kUnavailable after request_timeout
  // (docs/client.md, "A server that accepts and does not answer"). False
  // once a session began, or after a round that decided otherwise (no server
  // reachable, a refusal).
  bool silent = false;
  // While connected, from the server's HELLO answer: the protocol it speaks
  // ("1.0" or "1.1"; holders, waiters, sessions and kick need 1.1) and this
  // client's session id (what the others see in sessions() and kick).
  // Empty and 0 while not connected.
  std::string protocol;
  std::uint64_t session_id = 0;
};

class Client {
 public:
  // Starts the client's I/O thread and a first round of connection attempts,
  // waiting until a server answers or every server failed (each attempt is
  // bounded by options.connect_timeout). Never fails because no server is
  // reachable: calls then follow the fallback policy. kInvalidArgument for
  // bad options (a server address that does not parse, ...).
  static Result<std::unique_ptr<Client>> create(ClientOptions options);
  // Closes the connection; the server then releases every remote permit
  // still held, which are marked lost. Local permits stay held until their
  // Permit objects release them.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // --- permits (ACQUIRE / RELEASE) ---

  // Acquires options.count permits of `name`, in strict FIFO order with
  // every other client of the server. Errors: kTimeout, kCancelled,
  // kTooMany (count above the semaphore's max), kInvalidArgument (bad name
  // or count), kLimit (a server limit), kUnavailable (no server and the
  // name's fallback policy is `fail`), kDenied or kProtocol (a refusal, above).
  Result<Permit> acquire(std::string_view name, const AcquireOptions& options = {});
  // acquire with a zero timeout: never waits.
  Result<Permit> try_acquire(std::string_view name, std::int64_t count = 1);

  // --- POSIX-style counting (WAIT / POST): permits are consumed, not held ---

  // Adds `count` permits (sem_post). kOverflow past max; kNotFound for a
  // name that is not a created or defined semaphore (an undefined one that
  // another session holds included: it has nothing consumed to give back).
  Status post(std::string_view name, std::int64_t count = 1);
  // Takes `count` permits for good (sem_wait); they come back only by post.
  // Timeouts and cancellation as for acquire. kNotFound for a name that is
  // not a created or defined semaphore, as for post.
  // Unlike acquire, a wait (or post) already sent when the connection drops
  // returns kUnavailable instead of falling back: the server may have applied
  // it, and consumed permits do not come back with the session.
  Status wait(std::string_view name, const AcquireOptions& options = {});
  Status try_wait(std::string_view name, std::int64_t count = 1);
  Status timed_wait(std::string_view name, std::chrono::milliseconds timeout, std::int64_t count = 1);
  // The number of free permits (sem_getvalue).
  Result<std::int64_t> value(std::string_view name);

  // --- inspection and management ---

  // kind "absent" for a name that is not a semaphore.
  Result<SemaphoreInfo> get(std::string_view name);
  // Every semaphore of the server whose name starts with `prefix`.
  Result<std::vector<SemaphoreInfo>> list(std::string_view prefix = {});
  // Makes a durable semaphore with `value` free permits and a maximum `max`
  // (>= 1, >= value). Without `exclusive`, an existing created semaphore is
  // left as it is and OK returned (O_CREAT); with it, kAlreadyExists.
  Status create(std::string_view name, std::int64_t value, std::int64_t max, bool exclusive = false);
  // Deletes a created semaphore. kBusy while held or waited on; kNotFound.
  Status remove(std::string_view name);
  // Round trip to the server; returns the echoed payload.
  Result<std::string> ping(std::string_view payload = {});
  // The server's STATS: one line of JSON, as the server wrote it (fields in
  // docs/protocol.md, "STATS fields").
  Result<std::string> server_stats();

  // --- protocol 1.1: who holds, who waits, who is connected, and KICK ---
  //
  // These ask the server (no fallback) and need a server that speaks
  // protocol 1.1: against a 1.0 server they fail with kProtocol ("server
  // ... speaks protocol 1.0; HOLDERS needs 1.1"); with no server, kUnavailable
  // or the servers' refusal (kDenied, kLimit, kProtocol) as for every call.
  // A listing is the server's view as it streamed it: each row as it was
  // when the server made it (a row of a holder gone meanwhile is left out).

  // The sessions that hold permits of `name`, the oldest holder first.
  // kNotFound when `name` is no semaphore (get would say "absent");
  // kInvalidArgument for a bad name or a `$` name (host-local: no server).
  Result<std::vector<HolderInfo>> holders(std::string_view name);
  // The queued requests of `name`, in the order they will be granted.
  // Errors as for holders.
  Result<std::vector<WaiterInfo>> waiters(std::string_view name);
  // Every live session of the server, this one included, by rising id.
  Result<std::vector<SessionInfo>> sessions();
  // Ends the session `session_id` as if its connection had closed: its
  // permits go back at once (to the next waiters), its queued requests are
  // dropped, and its client sees its permits lost (kUnavailable). The
  // session may be this client's own (ClientStats::session_id): its permits
  // are then lost, and the client reconnects. kDenied without the admin right
  // (the server's admin_networks); kNotFound when no live session has that
  // id (ids are never reused while the server runs).
  Status kick(std::uint64_t session_id);

  // --- proposed 1.2: a cluster's membership (CLUSTER, admin) ---
  //
  // The server's answer to CLUSTER STATUS: one line of JSON (docs/protocol.md,
  // "CLUSTER": role, leader and its client address, indexes, members).
  // kInvalidArgument from a single server ("not in a cluster"), kDenied
  // without the admin right, kProtocol from a server that does not know
  // CLUSTER (UNKNOWN_VERB).
  Result<std::string> cluster_status();
  // CLUSTER ADD / REMOVE, on the leader: OK once done (ADD: once the new
  // server is a voter, which can take longer than request_timeout for a
  // large log: waited for up to half the session timeout, docs/client.md). kBusy from a
  // follower (the message names the leader), during an election or while
  // another change runs; kInvalidArgument for a bad address, kAlreadyExists
  // or kNotFound for the id.
  Status cluster_add(std::uint64_t id, std::string_view raft_address, std::string_view client_address);
  Status cluster_remove(std::uint64_t id);
  // CLUSTER FENCES, on the leader: raises the cluster's fences by `by`
  // (1 .. 2^53) and returns the new last fence: every fence handed out
  // after it is above it (after a restore from a backup copy,
  // docs/replication.md). kBusy from a follower (the message names the
  // leader) or during an election; kLimit past 2^62; kInvalidArgument from a
  // single server; kDenied without the admin right.
  Result<std::uint64_t> cluster_raise_fences(std::uint64_t by);

  // --- 4D-style test-and-set flags on limit-1 names ---

  // Sets the flag `name` for this process (4D `Semaphore`): OK when set,
  // kTimeout when another process holds it and `wait` ran out (zero: do not
  // wait). Setting a flag this process already set succeeds at once.
  Status set_flag(std::string_view name, std::chrono::milliseconds wait = std::chrono::milliseconds(0));
  // Clears a flag this process set (4D `CLEAR SEMAPHORE`); kNotHeld for one
  // it did not set, whoever set it.
  Status clear_flag(std::string_view name);
  // Whether anyone holds the flag, without setting it (4D `Test semaphore`).
  Result<bool> test_flag(std::string_view name);

  // --- state ---
  bool connected() const;
  ClientStats stats() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace netsem
