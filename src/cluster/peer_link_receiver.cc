// The leader's side of the peer link (peer_link.h: PeerLinkReceiver): one
// accepted link, over Asio, after the listener read and checked its hello.
// It answers with its own nonce and proof, reads the follower's proof within
// kPeerLinkSetUpTimeout, then opens each frame and hands its entry on; a
// frame that does not open, or any failure, ends the link.
#include "cluster/peer_link.h"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace netsem::cluster {

PeerLinkReceiver::PeerLinkReceiver(asio::ip::tcp::socket socket, ServerId peer, EntryHandler on_entry,
                                   CloseHandler on_close, LinkedHandler on_linked)
    : socket_(std::move(socket)),
      set_up_timer_(socket_.get_executor()),
      peer_(peer),
      on_entry_(std::move(on_entry)),
      on_close_(std::move(on_close)),
      on_linked_(std::move(on_linked)) {}

std::shared_ptr<PeerLinkReceiver> PeerLinkReceiver::start(asio::ip::tcp::socket socket, const LinkHello& hello,
                                                          ServerId self, std::string_view secret,
                                                          std::string already_read, EntryHandler on_entry,
                                                          CloseHandler on_close, LinkedHandler on_linked) {
  auto receiver = std::make_shared<PeerLinkReceiver>(std::move(socket), hello.from, std::move(on_entry),
                                                     std::move(on_close), std::move(on_linked));
  receiver->proof_line_ = std::move(already_read);
  Result<std::string> nonce = new_peer_nonce();
  if (nonce) {
    const std::string ours = std::move(*nonce);
    receiver->answer_ = peer_link_answer(
        self, ours, peer_link_proof(secret, LinkSide::kReceiving, hello.from, self, hello.nonce, ours));
    receiver->check_proof_ = [secret = std::string(secret), from = hello.from, self, theirs = hello.nonce,
                              ours](std::string_view line) {
      return verify_link_proof(line, secret, from, self, theirs, ours);
    };
    receiver->opener_ = std::make_unique<PeerFrameCipher>(
        PeerFrameCipher::Mode::kOpen, peer_link_key(secret, LinkSide::kLinking, hello.from, self, hello.nonce, ours));
  }
  // Not from inside start(): the caller's own state may not be ready for
  // the handlers yet.
  asio::post(receiver->socket_.get_executor(), [receiver, failed = nonce ? Status::ok() : nonce.status()] {
    if (receiver->closed_) return;
    if (!failed) return receiver->finish(failed);
    receiver->answer();
  });
  return receiver;
}

void PeerLinkReceiver::answer() {
  set_up_timer_.expires_after(kPeerLinkSetUpTimeout);
  set_up_timer_.async_wait([self = shared_from_this()](const asio::error_code& c) {
    if (c || self->closed_ || self->linked_) return;
    self->finish(Status(StatusCode::kTimeout, "no proof of the cluster secret within " +
                                                  std::to_string(kPeerLinkSetUpTimeout.count() / 1000) +
                                                  " s of its hello"));
  });
  asio::async_write(socket_, asio::buffer(answer_),
                    [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                      if (self->closed_) return;
                      if (ec) return self->finish(Status(StatusCode::kIoError, "answering its hello: " + ec.message()));
                      if (self->take_proof()) self->read_proof();
                    });
}

void PeerLinkReceiver::read_proof() {
  socket_.async_read_some(
      asio::buffer(buffer_), [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
        if (self->closed_) return;
        if (ec == asio::error::eof || ec == asio::error::connection_reset) {
          return self->finish(Status(StatusCode::kIoError,
                                     "it closed the connection without proving the cluster secret (it holds another "
                                     "secret and found this server's answer wrong, or it stopped: see its log)"));
        }
        if (ec) return self->finish(Status(StatusCode::kIoError, "reading its proof: " + ec.message()));
        self->proof_line_.append(self->buffer_.data(), n);
        if (self->take_proof()) self->read_proof();
      });
}

bool PeerLinkReceiver::take_proof() {
  const std::size_t newline = proof_line_.find('\n');
  if (newline == std::string::npos) {
    if (proof_line_.size() <= kMaxPeerHelloBytes) return true;
    finish(Status(StatusCode::kProtocol,
                  "a line over " + std::to_string(kMaxPeerHelloBytes) + " bytes where its proof was expected"));
    return false;
  }
  if (Status proven = check_proof_(std::string_view(proof_line_).substr(0, newline)); !proven) {
    finish(std::move(proven));
    return false;
  }
  set_up_timer_.cancel();
  linked_ = true;
  decoder_.feed(std::string_view(proof_line_).substr(newline + 1));
  proof_line_ = std::string();
  if (on_linked_) on_linked_(peer_);
  if (closed_) return false;
  if (drain()) read();
  return false;
}

void PeerLinkReceiver::read() {
  socket_.async_read_some(asio::buffer(buffer_),
                          [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
                            if (self->closed_) return;
                            if (ec == asio::error::eof) return self->finish(Status());
                            if (ec) return self->finish(Status(StatusCode::kIoError, "peer link: " + ec.message()));
                            self->decoder_.feed(std::string_view(self->buffer_.data(), n));
                            if (self->drain()) self->read();
                          });
}

bool PeerLinkReceiver::drain() {
  for (;;) {
    auto next = decoder_.next();
    if (!next) {
      finish(next.status());
      return false;
    }
    if (!next->has_value()) return true;
    Result<std::string> entry = opener_->open(**next);
    if (!entry) {
      finish(entry.status());
      return false;
    }
    ++entries_;
    if (on_entry_) on_entry_(peer_, std::move(*entry));
    if (closed_) return false;
  }
}

void PeerLinkReceiver::finish(Status why) {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  set_up_timer_.cancel();
  socket_.close(ignored);
  if (on_close_) on_close_(peer_, std::move(why));
}

void PeerLinkReceiver::close() {
  finish(Status(StatusCode::kCancelled, "peer link closed"));
}

}  // namespace netsem::cluster
