// ClientOptions: where a Client finds its servers, how it behaves while none
// can be reached (the fallback policy, per name), and the limits its local
// semaphores use. Read from the `[client]` and `[semaphores]` sections of a
// netsem configuration file (the server's file works as is), from the
// environment, or set in code.
//
//   [client]
//   servers = 10.0.0.5:53559, 10.0.0.6:53559   ; tried in order
//   fallback = local                           ; local | fail | share:K
//   fallback.licences = fail                   ; per-name override
//   connect_timeout_ms = 1000
//   tls = on                                   ; TLS, see docs/client.md
//   tls_ca = /etc/netsem/ca.pem
//
//   [semaphores]
//   search = 10                                ; the limit fallback uses for `search`
//
// Thread safety: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "netsem/status.h"

namespace netsem {

// What a name does while no server can be reached.
struct FallbackPolicy {
  enum class Mode : unsigned char {
    kLocal,  // a host-wide local semaphore with the name's limit
    kFail,   // calls fail with kUnavailable
    kShare,  // a local semaphore with the limit divided by `share` (rounded up)
  };
  Mode mode = Mode::kLocal;
  std::int64_t share = 1;  // kShare: the number of hosts sharing the limit, >= 1

  // "local", "fail" or "share:K" (K >= 1); kInvalidArgument otherwise.
  static Result<FallbackPolicy> parse(std::string_view text);
  std::string to_string() const;
  // The local limit for a semaphore whose server limit is `limit`.
  std::int64_t local_limit(std::int64_t limit) const;
  friend bool operator==(const FallbackPolicy&, const FallbackPolicy&) = default;
};

struct ClientOptions {
  // netsemd's default port, and the server a client tries when none is
  // configured.
  static constexpr std::int64_t kDefaultPort = 53559;
  static constexpr std::string_view kDefaultServer = "127.0.0.1:53559";

  // "host:port" (IPv6 as "[addr]:port"; without ":port", kDefaultPort),
  // tried in order. Empty means kDefaultServer.
  std::vector<std::string> servers;
  // HELLO label: how this client shows in the server's logs and in the
  // protocol 1.1 listings (holders, waiters, sessions); at most 255 bytes,
  // no spaces or control characters. Empty means "<host>/<pid>/<program>".
  std::string label;
  // Whether the server tells queue positions: a request that must wait is
  // first answered QUEUED <position>, which the library logs at info level.
  // Off by default: the client asks a protocol 1.1 server for `OPTION queued
  // off`, which saves the server a line per contended request (a 1.0 server
  // sends QUEUED regardless; the library ignores it).
  bool queue_positions = false;
  // A connect attempt to one server gives up after this long (a black-holed
  // address must not take the kernel's two minutes).
  std::chrono::milliseconds connect_timeout{1000};
  // Reconnect backoff: doubles from min to max between failed attempts.
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
  // A request unanswered this long means a broken connection (a queued one: until a later one is answered).
  std::chrono::milliseconds request_timeout{10000};
  FallbackPolicy fallback;                             // for names without an override
  std::map<std::string, FallbackPolicy> fallback_for;  // per-name overrides
  std::map<std::string, std::int64_t> limits;          // [semaphores]: local limits; unknown names 1
  // TLS (docs/client.md, "TLS"): the session to each server runs inside
  // TLS, whose server certificate must verify against `tls_ca` and name
  // the server. A failed handshake (a certificate that does not verify, a
  // wrong name, a server that wants a client certificate we lack or does
  // not take ours) is a refusal, kDenied: never an outage, never fallback.
  // The servers' addresses then name their TLS port (tls_port, 53561 by
  // default): an address without a port still means 53559.
  bool tls = false;
  // CA certificates (PEM) the server's certificate must verify against;
  // empty means the system's trust store.
  std::filesystem::path tls_ca;
  // A client certificate chain and its key (PEM), for a server with
  // tls_client_ca; both or neither.
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
  // The name the server's certificate must carry; empty means the host part
  // of each server address (an IP address is checked against the
  // certificate's IP addresses).
  std::string tls_server_name;
  // Where host-wide local semaphores keep their registry; empty means
  // "$XDG_RUNTIME_DIR/netsem", else "/tmp/netsem-<uid>".
  std::filesystem::path local_dir;
  // The token sent with AUTH after HELLO on every (re)connect, for a server
  // that requires authentication (docs/security.md); empty: none. A server
  // that answers the AUTH with ERR AUTH refuses the client (kDenied, never
  // fallback). Set from `[client] token` or `token_file`, NETSEM_TOKEN or
  // NETSEM_TOKEN_FILE, or load_token_file(); never from a command line,
  // where `ps` would show it.
  std::string token;
  // For administration: the connection says no HELLO and asks nothing that
  // needs a session (no STATS, RESUMABLE or LEADER: only a LEASE first,
  // which tells the server answers, then AUTH and OPTION). A server of a
  // cluster then answers CLUSTER STATUS from its own Raft state, and
  // CLUSTER ADD or REMOVE, at once, even when it knows no leader (a removed
  // or cut-off server), where HELLO opens the session in the log and waits
  // for a leader (`netsem cluster` sets it; docs/protocol.md, "CLUSTER"). No
  // resume, no move to the leader; a request that needs the log still opens
  // the session there. Set in code only (no file or variable sets it).
  bool sessionless = false;

  // The policy for `name`.
  const FallbackPolicy& fallback_policy(std::string_view name) const;
  // The limit for `name` from `limits`, 1 when not listed.
  std::int64_t limit(std::string_view name) const;

  // Sets `token` from the first line of `file` (its line end and
  // surrounding blanks dropped). kDenied when the file is readable or
  // writable by group or others (chmod 600 it, as ssh asks of keys);
  // kIoError when it cannot be read; kInvalidArgument when the token is not
  // 1..256 visible ASCII characters.
  Status load_token_file(const std::filesystem::path& file);

  // Reads `[client]` and `[semaphores]` of an INI file. Without `servers`
  // in `[client]`, the server is the one the file configures: `[server]`'s
  // bind_address:bind_port (127.0.0.1 for 0.0.0.0, ::1 for ::; defaults
  // 127.0.0.1 and 53559), or in an ACE file `[service_network_semaphore]`'s
  // remote_address:remote_port. An ACE file's `semaphore_<name> = N` lines
  // are the fallback limits of the names `[semaphores]` does not list (keys
  // folded to lower case, [DEFAULT]'s too, below 1 made 1), as netsem.ace
  // and the Python client read them. Other sections are ignored. Errors name
  // file:line.
  static Result<ClientOptions> from_file(const std::filesystem::path& file);
  // from_file($NETSEM_CONFIG) when set (else defaults), then NETSEM_SERVER
  // ("host:port[,host:port...]"), NETSEM_FALLBACK and NETSEM_LABEL override;
  // NETSEM_TOKEN_FILE, then NETSEM_TOKEN, override the file's token;
  // NETSEM_TLS (on or off), NETSEM_TLS_CA, NETSEM_TLS_CERT, NETSEM_TLS_KEY and
  // NETSEM_TLS_SERVER_NAME override the tls options.
  static Result<ClientOptions> from_environment();
};

}  // namespace netsem
