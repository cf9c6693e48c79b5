// Rejection: a connection refused at accept (server_accept.cc). It first
// listens a moment for the dialect: a peer whose first bytes are `acquire:`
// speaks ACE and is closed without a word; any other peer, or one that has
// not decided within kRejectListenTime, gets the one `*` line. Then the sending side is shut and
// input discarded briefly, so the peer reads the line (or the end of the
// stream) instead of a reset. The whole life of a Rejection is bounded by
// kRejectListenTime + kRejectDrainTime, whatever the peer does.
//
// A probe (made with a PeerHandler: a connection over the limit from a
// cluster member's address) is counted, while it may be a peer link, in the
// count of the slots kept for probes or, when those are taken, in the
// refusals' (where it would be held while refused anyway): a first line
// `PEER ...` that arrives within kRejectListenTime is not refused, the
// socket goes to the handler, as a session hands over a peer link below the
// limit (a peer link is no session). It stops being a probe at once when its
// first bytes are not `PEER`, when its listening time ends, or when the
// server makes it give way to a newer probe (give_way: the oldest in a
// slot, when the refusals' room is full too): from then on it is refused
// like every connection over the limit, counted with the refusals, or
// closed at once when they have no room left, and counted in limited_total
// and logged (at that moment, where a connection refused at accept is at
// accept).
//
// An admin probe (made with an AdminHandler: a connection over the limit
// from admin_networks, admin_probe.h) is read, within the same listening
// time, to its first line: when opens_admin_probe takes it and the admin
// probes have room, the socket goes to the handler with everything read,
// to be served as a session of those few verbs; anything else is refused
// as above. A connection may be both (a member's host in admin_networks):
// a PEER line is a peer link's, any other first line is judged as an
// admin's.
//
// Thread safety: the event loop's thread only. Owned by shared_ptr: its
// pending timer and read hold it until it is done.
#pragma once

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/unique_fd.h"

namespace netsem::server {

class Rejection : public std::enable_shared_from_this<Rejection> {
 public:
  using PeerHandler = std::function<void(UniqueFd fd, std::string line, std::string rest)>;
  // An admin probe's: `has_room` asked when its first line is taken, then
  // `begin` given the socket and every byte read from it.
  struct AdminHandler {
    std::function<bool()> has_room;
    std::function<void(UniqueFd fd, std::string read)> begin;
  };

  // A refusal, counted in `live`.
  Rejection(asio::ip::tcp::socket socket, std::string line, std::size_t& live)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), line_(std::move(line)), live_(&live) {
    ++*live_;
  }
  // A probe, counted in `probing` (the slots' count, or `rejecting` itself)
  // until it is one no more, then in `rejecting` while that is below
  // `max_rejecting`; once it shows it is neither a peer link nor an admin
  // probe, it is a connection refused for the limit: `refused` is called,
  // which counts and logs it as those refused at once are. `peer`, `admin`:
  // either may be empty, not both.
  Rejection(asio::ip::tcp::socket socket, std::string line, std::size_t& probing, PeerHandler peer, AdminHandler admin,
            std::size_t& rejecting, std::size_t max_rejecting, std::function<void()> refused)
      : Rejection(std::move(socket), std::move(line), probing) {
    peer_ = std::move(peer);
    admin_ = std::move(admin);
    rejecting_ = &rejecting;
    max_rejecting_ = max_rejecting;
    refused_ = std::move(refused);
  }
  ~Rejection() {
    if (live_ != nullptr) --*live_;
  }
  Rejection(const Rejection&) = delete;
  Rejection& operator=(const Rejection&) = delete;

  // Begins the listening (once): the refusal, or the probe, is under way.
  void start();

  // Whether it is a probe still: it may yet be a peer link or an admin's.
  bool probing() const { return listening_ && (peer_ || admin_.begin) && socket_.is_open(); }
  // A probe gives its place to a newer one: what it sent so far is taken as
  // a client's first bytes, and it listens for the rest of its time.
  void give_way();

 private:
  // Moves the count from the probes' to the refusals', or closes the
  // socket when the refusals have no room; false when closed. Either way
  // it is a refusal for the limit.
  bool stop_probing();
  void decide_dialect();

  // Each arming gets its own phase: a completion that was already queued when
  // the timer was re-armed must not act on the new phase.
  void arm_timer(std::chrono::milliseconds after);
  void wait_readable();
  void on_readable();
  // The first line (or more than any hello: the cluster refuses it) and
  // what came after it go to the peer handler with the socket.
  void hand_over(std::size_t end);
  // An admin's first line: the socket and all that was read go to the
  // admin handler.
  void hand_to_admin();
  // Ends the listening: the `*` line if `tell`, then the sending side shut
  // and input discarded until the drain time is up (a probe's in the
  // refusals' count, or none when they have no room).
  void refuse(bool tell);
  void close();

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  const std::string line_;
  std::size_t* live_;                 // the count it is in; null once closed for want of room
  PeerHandler peer_;                  // while the first bytes may be a peer's hello
  AdminHandler admin_;                // while they may be an admin probe's first line
  std::size_t* rejecting_ = nullptr;  // a probe's count once it is one no more
  std::size_t max_rejecting_ = 0;
  std::function<void()> refused_;  // a probe's, called when it is one no more
  std::string first_bytes_;        // at most the length of `acquire:` (of a hello, a line while probing)
  bool listening_ = true;
  std::uint32_t phase_ = 0;
  std::array<char, 512> sink_{};
};

}  // namespace netsem::server
