// SessionHost: what a Session (session.h) needs of the server that owns
// it: the shared read buffer, the end-of-turn flush, the list of sessions
// waiting for the journal, the registry, and the server-wide output cap.
// Server implements it; the session knows nothing else of the server. What
// a session uses on every read or answer (the read buffer, the output
// total and its cap) is plain data here, not a virtual call.
//
// Thread safety: event-loop thread only.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/unique_fd.h"

#include "table/semaphore_table.h"

namespace netsem::server {

class Session;

// What a session needs of the server that owns it (Server implements it).
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // The shared read buffer (sessions copy out only partial lines).
  std::string& read_buffer() { return read_buffer_; }
  // A session's unwritten answers went from `before` to `after` bytes.
  void account_output(std::size_t before, std::size_t after) { *output_bytes_ = *output_bytes_ - before + after; }
  // All sessions' unwritten answers exceed the cap: shed_output_if_over_cap()
  // has work to do.
  bool over_output_cap() const { return *output_bytes_ > output_cap_; }
  // Schedules `session` to write its answers at the end of this turn.
  virtual void mark_dirty(std::shared_ptr<Session> session) = 0;
  // The end of every event handler: journal flush, then writes, timers.
  virtual void end_turn() = 0;
  // `session` has answers waiting for the journal: flushed again once the
  // journal has written more.
  virtual void hold(std::shared_ptr<Session> session) = 0;
  // The session closed: forget it. `key` is the connection's key (the
  // session's id on a single server; on the replicated log a key of the
  // server's own, as the log's id comes later).
  virtual void forget(SessionId key) = 0;
  // Whether a connection from `address` (IPv6 or IPv4-mapped) whose first
  // line is `PEER ...` is to be handed over as a follower's peer link: on a
  // server of a cluster, from another configured server's host. Otherwise
  // such a line is a client's, as any other.
  virtual bool takes_peer_links_from(const std::array<std::uint8_t, 16>& /*address*/) const { return false; }
  // Hands over a connection whose first line (without its "\n") is `line`,
  // with `rest` read past it, from `address` (IPv6 or IPv4-mapped). The
  // session has closed itself already (and been forgotten).
  virtual void hand_over_peer_link(UniqueFd /*fd*/, const std::array<std::uint8_t, 16>& /*address*/,
                                   std::string_view /*line*/, std::string /*rest*/) {}
  // An admin probe's session (Session::make_admin_probe) was told the limit
  // line: count it and log it as a refusal for the limit.
  virtual void admin_probe_refused(const std::string& /*peer*/) {}
  // Applies the server-wide output cap, which may close any session.
  virtual void shed_output_if_over_cap() = 0;

 protected:
  // REQUIRES: `output_bytes` (the total, STATS output_bytes) outlives the
  // host; `output_cap` is max_output_bytes.
  SessionHost(std::uint64_t& output_bytes, std::uint64_t output_cap)
      : output_bytes_(&output_bytes), output_cap_(output_cap) {}

  std::string read_buffer_;  // sized by the host

 private:
  std::uint64_t* output_bytes_;
  std::uint64_t output_cap_;
};

}  // namespace netsem::server
