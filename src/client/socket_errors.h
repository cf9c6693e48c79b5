// What a socket call's error says of the server: nothing when it is this
// process's or this host's own shortage (local_errno; in words:
// local_shortage), no reply from the server's host (no_reply, for rule 8),
// and the socket's error behind a failed TLS call (tls_errno). Private to the
// Connection's files, shared by its attempts (connection_attempt.cc), its
// silent servers (connection_silent.cc) and its session's reads and writes
// (connection.cc): inline, as they sit on those paths.
//
// Thread safety: functions of their argument (and tls_errno of the calling
// thread's errno).
#pragma once

#include <openssl/ssl.h>

#include <cerrno>
#include <string_view>

namespace netsem::client {

// The errors by which a socket call fails for want of this process's (or
// host's) own descriptors or memory, or (connect()'s EADDRNOTAVAIL) of a
// local port or source address to connect from: the ephemeral port range
// used up (many connections in TIME_WAIT), or the source address gone. They
// say nothing about the server.
inline bool local_errno(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM || error == EADDRNOTAVAIL;
}

// The errors by which a connection to the server's host fails, or a kept
// one ends, with no reply from that host: a timeout, and what the kernel
// reports once the host's ARP (neighbour) entry failed, about 3 s of
// unanswered requests on the client's own segment, or a router could not
// reach it (ICMP host or network unreachable). A host that does not answer
// ARP cannot be told from one whose netsemd froze and then whose link went
// down, or that was cut off or powered off after it accepted: it may still
// hold sessions with permits. Within a server's silent streak each is taken
// as a connect timeout (rule 8, sticky_silence); outside one, as any
// failure, an outage (no route at all on a first try: fallback).
inline bool no_reply(int error) {
  return error == ETIMEDOUT || error == EHOSTUNREACH || error == ENETUNREACH;
}

// The socket's error behind a failed SSL_connect, SSL_read or SSL_write
// whose SSL_get_error is `ssl_error`, 0 for none. errno tells it only under
// SSL_ERROR_SYSCALL, and only if it was cleared before the call: otherwise
// it may be older than the call (a connect() to another server that failed,
// say ENETUNREACH), and rule 8 would take a TLS failure for no reply from the
// host (no_reply). OpenSSL 3's socket BIO clears errno before each read,
// and write_without_signal before each write, but a call that fails before
// any I/O (a connection OpenSSL had already given up) leaves errno as it
// was: each call site clears it first. SO_ERROR cannot stand in: the recv or
// send that failed took the socket's pending error, and SO_ERROR reads 0.
// The other errors (an alert, an end of stream) have no socket error.
inline int tls_errno(int ssl_error) {
  return ssl_error == SSL_ERROR_SYSCALL ? errno : 0;
}

inline std::string_view local_shortage(int error) {
  if (error == EMFILE) return "this process is out of file descriptors";
  if (error == ENFILE) return "this host is out of file descriptors";
  if (error == EADDRNOTAVAIL) return "this host has no local address or port left to connect from";
  return "this host is out of memory for sockets";
}

}  // namespace netsem::client
