// Rejection (rejection.h): the listening for the dialect, a probe's first
// bytes (a peer link's hello, an admin's first line), the one `*` line and
// the drain.
#include "server/rejection.h"

#include <algorithm>
#include <string_view>
#include <system_error>

#include "cluster/peer_link.h"
#include "core/admin_probe.h"
#include "protocol/ace_codec.h"
#include "protocol/fields.h"

namespace netsem::server {

namespace {

// How long a refused connection waits for the peer's first bytes before it
// is told why anyway: ACE's client sends `acquire:<name>|` as soon as it is
// connected, and it must never read a `*` line.
constexpr auto kRejectListenTime = std::chrono::milliseconds(250);
constexpr auto kRejectDrainTime = std::chrono::milliseconds(500);
constexpr std::string_view kPeerPrefix = "PEER ";

}  // namespace

void Rejection::start() {
  std::error_code ignored;
  socket_.non_blocking(true, ignored);
  arm_timer(kRejectListenTime);
  wait_readable();
}

void Rejection::give_way() {
  if (!probing() || !stop_probing()) return;
  first_bytes_.resize(std::min(first_bytes_.size(), protocol::kAcePrefix.size()));
  decide_dialect();
}

bool Rejection::stop_probing() {
  peer_ = nullptr;
  admin_ = {};
  refused_();
  --*live_;
  if (*rejecting_ < max_rejecting_) {
    live_ = rejecting_;
    ++*live_;
    return true;
  }
  live_ = nullptr;
  close();
  return false;
}

void Rejection::decide_dialect() {
  const auto dialect = protocol::detect_dialect(first_bytes_);
  if (dialect != protocol::Dialect::kUndecided) refuse(dialect == protocol::Dialect::kV1);
}

void Rejection::arm_timer(std::chrono::milliseconds after) {
  ++phase_;
  timer_.expires_after(after);
  timer_.async_wait([self = shared_from_this(), phase = phase_](const std::error_code& error) {
    if (error || phase != self->phase_ || !self->socket_.is_open()) return;
    if (self->listening_) {
      self->refuse(true);  // no dialect in time: a v1 peer waiting to be told
    } else {
      self->close();
    }
  });
}

void Rejection::wait_readable() {
  socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](const std::error_code& error) {
    if (error || !self->socket_.is_open()) return;
    self->on_readable();
  });
}

void Rejection::on_readable() {
  std::error_code error;
  std::size_t n = socket_.read_some(asio::buffer(sink_), error);
  if (error == asio::error::would_block || error == asio::error::try_again) {
    wait_readable();
    return;
  }
  if (error) {
    // End of input while listening: the peer will say no more, but one
    // that only shut down its sending side still reads. ACE never does
    // that before its `acquire:` is complete.
    if (listening_ && error == asio::error::eof) {
      refuse(true);
    } else if (probing()) {
      stop_probing();  // gone (reset) before it said what it is: no peer link
    }
    close();
    return;
  }
  if (probing()) {
    // Everything is kept while it may still be a peer's hello (at most
    // kMaxPeerHelloBytes and one read more) or an admin's first line (at
    // most kMaxLineBytes and one read more).
    first_bytes_.append(sink_.data(), n);
    const std::size_t known = std::min(first_bytes_.size(), kPeerPrefix.size());
    if (peer_ && first_bytes_.compare(0, known, kPeerPrefix, 0, known) == 0) {
      const std::size_t newline = first_bytes_.find('\n');
      if (newline != std::string::npos || first_bytes_.size() > cluster::kMaxPeerHelloBytes + 1) {
        hand_over(std::min(newline, first_bytes_.size()));
        return;
      }
      wait_readable();
      return;
    }
    if (admin_.begin && protocol::detect_dialect(first_bytes_) != protocol::Dialect::kAce) {
      const std::size_t newline = first_bytes_.find('\n');
      if (newline == std::string::npos && first_bytes_.size() <= protocol::kMaxLineBytes + 1) {
        wait_readable();
        return;
      }
      if (newline != std::string::npos && opens_admin_probe(std::string_view(first_bytes_).substr(0, newline)) &&
          admin_.has_room()) {
        hand_to_admin();
        return;
      }
    }
    // A client's first bytes: the dialect decides below.
    if (!stop_probing()) return;
    first_bytes_.resize(std::min(first_bytes_.size(), protocol::kAcePrefix.size()));
    n = 0;
  }
  if (listening_) {
    const std::size_t wanted = protocol::kAcePrefix.size() - first_bytes_.size();
    first_bytes_.append(sink_.data(), std::min(n, wanted));
    decide_dialect();
    if (!socket_.is_open()) return;
  }
  wait_readable();
}

void Rejection::hand_over(std::size_t end) {
  listening_ = false;
  timer_.cancel();
  std::string line = first_bytes_.substr(0, end);
  std::string rest = end < first_bytes_.size() ? first_bytes_.substr(end + 1) : std::string();
  first_bytes_ = std::string();
  std::error_code error;
  UniqueFd fd(socket_.release(error));
  if (error) return;  // the socket closes with the Rejection
  PeerHandler peer = std::move(peer_);
  peer(std::move(fd), std::move(line), std::move(rest));
}

void Rejection::hand_to_admin() {
  listening_ = false;
  timer_.cancel();
  std::string read = std::move(first_bytes_);
  first_bytes_ = std::string();
  std::error_code error;
  UniqueFd fd(socket_.release(error));
  if (error) return;  // the socket closes with the Rejection
  AdminHandler admin = std::move(admin_);
  peer_ = nullptr;
  admin.begin(std::move(fd), std::move(read));
}

void Rejection::refuse(bool tell) {
  const bool probe = probing();
  listening_ = false;
  std::error_code ignored;
  // A fresh socket's send buffer takes one short line whole.
  if (tell) socket_.write_some(asio::buffer(line_), ignored);
  socket_.shutdown(asio::socket_base::shutdown_send, ignored);
  if (probe && !stop_probing()) return;
  arm_timer(kRejectDrainTime);
}

void Rejection::close() {
  std::error_code ignored;
  timer_.cancel();
  socket_.close(ignored);
}

}  // namespace netsem::server
