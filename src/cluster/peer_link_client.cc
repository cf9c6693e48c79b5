// The follower's side of the peer link (peer_link.h: PeerLinkClient): one
// link at a time to the leader, over Asio. A link's state lives in a shared
// Link that its handlers hold, so a client closed (or destroyed) while an
// operation is in flight leaves handlers that find the link dead and do
// nothing. A link connects from this server's own client host, sends its
// hello, checks the leader's answer, sends its proof, then seals and writes
// the entries queued; it fails (logged at most once in kWarnEvery) when the
// leader closes it or any step fails, and forward() links again later.
#include "cluster/peer_link.h"

#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "cluster/peer_connect.h"

namespace netsem::cluster {

// A link that keeps failing is logged once in this long, not at every retry.
constexpr std::chrono::seconds kWarnEvery{30};
// A link closed by the leader sooner than this after its set-up may be a
// refusal of this server's proof (Link::why_ended).
constexpr std::chrono::milliseconds kRefusedWithin{1000};

struct PeerLinkClient::Link : std::enable_shared_from_this<PeerLinkClient::Link> {
  Link(asio::io_context& io, ServerId self_id, ServerId target, std::string cluster_secret, std::string fresh_nonce,
       std::shared_ptr<PeerLinkStats> link_stats,
       std::shared_ptr<std::map<ServerId, std::chrono::steady_clock::time_point>> failures,
       std::shared_ptr<std::map<ServerId, PeerLinkWarning>> warnings)
      : socket(io),
        timer(io),
        from(self_id),
        to(target),
        secret(std::move(cluster_secret)),
        nonce(std::move(fresh_nonce)),
        hello(peer_link_hello(self_id, target, nonce)),
        stats(std::move(link_stats)),
        failed_at(std::move(failures)),
        warned_at(std::move(warnings)) {}

  void connect(const std::string& local_host, const std::string& host, const std::string& port) {
    target_address = host + ":" + port;
    // Numeric addresses only ([cluster] refuses host names): Asio's
    // async_resolve would complete from a thread of its own, and netsemd's
    // io_context (run with ASIO_CONCURRENCY_HINT_UNSAFE) must not be
    // touched from another thread.
    asio::error_code numeric;
    const asio::ip::address address = asio::ip::make_address(host, numeric);
    unsigned long port_number = 0;
    const auto [end, parsed] = std::from_chars(port.data(), port.data() + port.size(), port_number);
    if (numeric || parsed != std::errc() || end != port.data() + port.size() || port_number < 1 ||
        port_number > 65535) {
      asio::post(socket.get_executor(), [self = shared_from_this()] { self->fail("not a numeric address"); });
      return;
    }
    const asio::ip::tcp::endpoint endpoint(address, static_cast<unsigned short>(port_number));
    asio::post(socket.get_executor(), [self = shared_from_this(), local_host, endpoint] {
      if (!self->dead) self->connect_to(local_host, endpoint);
    });
  }

  void connect_to(const std::string& local_host, const asio::ip::tcp::endpoint& endpoint) {
    asio::error_code e;
    socket.open(endpoint.protocol(), e);
    if (e) return fail(e.message());
    // From this server's own client host: the leader checks it.
    const asio::ip::address local = asio::ip::make_address(local_host, e);
    if (!e && local.is_v4() == endpoint.address().is_v4()) {
      socket.bind(asio::ip::tcp::endpoint(local, 0), e);
      if (e) return fail("cannot bind to this server's own address " + local_host + ": " + e.message());
    }
    // A leader cut off by a partition answers no SYN: the link fails after
    // kConnectTimeout rather than keep forwards queued behind the kernel's
    // SYN retries (about two minutes); forward() connects again later.
    timer.expires_after(kConnectTimeout);
    timer.async_wait([self = shared_from_this()](const asio::error_code& c) {
      if (!c && !self->dead && !self->connected) self->fail("no answer to the connect within 1 s");
    });
    socket.async_connect(endpoint, [self = shared_from_this()](const asio::error_code& c) {
      if (self->dead) return;
      self->timer.cancel();
      if (c) return self->fail("cannot connect: " + c.message());
      asio::error_code ignored;
      self->socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      self->connected = true;
      self->connected_at = std::chrono::steady_clock::now();
      ++self->stats->connects;
      self->set_up();
    });
  }

  // The hello, then the leader's answer, which must prove the secret
  // before anything of this server's clients goes to it; all within
  // kPeerLinkSetUpTimeout.
  void set_up() {
    timer.expires_after(kPeerLinkSetUpTimeout);
    timer.async_wait([self = shared_from_this()](const asio::error_code& c) {
      if (!c && !self->dead && !self->linked) {
        self->fail("no answer to its hello within " + std::to_string(kPeerLinkSetUpTimeout.count() / 1000) +
                   " s (it is no netsemd, or hangs)");
      }
    });
    asio::async_write(socket, asio::buffer(hello),
                      [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                        if (self->dead) return;
                        if (ec) return self->fail(self->why_ended(ec));
                        self->read_answer();
                      });
  }

  void read_answer() {
    asio::async_read_until(
        socket, asio::dynamic_buffer(answer, kMaxPeerHelloBytes + 1), '\n',
        [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
          if (self->dead) return;
          if (ec == asio::error::not_found) return self->fail("its answer to this server's hello is no PEER line");
          if (ec) return self->fail(self->why_ended(ec));
          const Result<std::string> theirs = verify_link_answer(std::string_view(self->answer).substr(0, n - 1),
                                                                self->secret, self->from, self->to, self->nonce);
          if (!theirs) {
            return self->fail("its answer to this server's hello does not prove the cluster secret (" +
                                  theirs.status().to_string() +
                                  "): it holds another secret than this server (one of the two secret_files is "
                                  "wrong), or it is not that server; nothing was sent to it",
                              true);
          }
          self->timer.cancel();
          self->linked = true;
          self->linked_at = std::chrono::steady_clock::now();
          ++self->stats->linked;
          const std::string proof =
              peer_link_proof(self->secret, LinkSide::kLinking, self->from, self->to, self->nonce, *theirs);
          // Every frame from here on is sealed under this link's own key
          // (PeerFrameCipher: the proof line, sent first, is the last line
          // in clear).
          self->sealer = std::make_unique<PeerFrameCipher>(
              PeerFrameCipher::Mode::kSeal,
              peer_link_key(self->secret, LinkSide::kLinking, self->from, self->to, self->nonce, *theirs));
          self->queue.push_front(Chunk{peer_link_proof_line(self->from, proof), true});
          self->watch();
          self->write_next();
        });
  }

  // Queues an entry (sealed as it is written: the key is known only once
  // the leader answered).
  void push(std::string entry, std::size_t max_bytes) {
    if (queued_bytes + entry.size() > max_bytes) {
      ++stats->dropped;
      return;
    }
    queued_bytes += entry.size();
    queue.push_back(Chunk{std::move(entry), false});
    if (linked && !writing) write_next();
  }

  void write_next() {
    if (dead || queue.empty()) {
      writing = false;
      return;
    }
    writing = true;
    Chunk& next = queue.front();
    if (!next.proof && !next.sealed) {
      // Sealed in the order written: the sequence numbers are the leader's.
      Result<std::string> sealed = sealer->seal(next.bytes);
      if (!sealed) return fail(sealed.status().message());
      queued_bytes -= next.bytes.size();
      next.bytes = std::move(*sealed);
      next.sealed = true;
    }
    asio::async_write(socket, asio::buffer(queue.front().bytes),
                      [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                        if (self->dead) return;
                        if (ec) return self->fail(self->why_ended(ec));
                        if (!self->queue.front().proof) ++self->stats->frames;
                        self->queue.pop_front();
                        self->write_next();
                      });
  }

  // Ends the link; entries still queued are dropped.
  void shut() {
    if (dead) return;
    dead = true;
    for (const Chunk& c : queue) stats->dropped += c.proof ? 0 : 1;
    queue.clear();
    queued_bytes = 0;
    asio::error_code ignored;
    timer.cancel();
    socket.close(ignored);
  }
  // Once set up, the leader never writes on a link: a read that ends is
  // the leader closing it, at once when it refused this server's proof.
  void watch() {
    socket.async_read_some(asio::buffer(sink), [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
      if (self->dead) return;
      if (!ec) return self->watch();
      self->fail(self->why_ended(ec));
    });
  }
  // A link the leader closes ends in EOF, or in a reset when our frames were
  // still unread. Before its answer, the leader refused the hello (it checks
  // it as it reads it), or runs a netsemd older than the link's set-up
  // (which takes the hello for a wrong secret). After it, only a link that
  // ended within kRefusedWithin of its set-up may have been refused (its
  // proof); one that lived longer worked: its server stopped, restarted or
  // closed it (a leader's death is no secret problem: newuser23 finding 7).
  std::string why_ended(const asio::error_code& ec) const {
    if (ec != asio::error::eof && ec != asio::error::connection_reset && ec != asio::error::broken_pipe) {
      return ec.message();
    }
    const auto now = std::chrono::steady_clock::now();
    if (!linked) {
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - connected_at);
      return "closed by that server (" + ec.message() + ", " + std::to_string(waited.count()) +
             " ms after it connected) without answering this server's hello: it refused it (an address it does not "
             "know for this server, or another id: see its log), it runs a netsemd older than the peer link's "
             "challenge (which logs 'wrong secret': upgrade it) or than its sealed frames (which logs 'PEER <id> "
             "LINK <id> <64 lowercase hex digits> expected'), or it stopped";
    }
    const auto lived = std::chrono::duration_cast<std::chrono::milliseconds>(now - linked_at);
    if (lived < kRefusedWithin) {
      return "closed by that server (" + ec.message() + ", " + std::to_string(lived.count()) +
             " ms after its answer): it refused this server's proof of the cluster secret, or a frame that did not "
             "open there (altered on the way), or it stopped: see its log";
    }
    return "closed by that server (" + ec.message() + ") after the link worked for " +
           std::to_string(lived.count() / 1000) +
           " s: it stopped, restarted or closed the link (also when a frame did not open there: altered on the way, "
           "see its log)";
  }
  void fail(std::string_view why, bool unproven = false) {
    if (dead) return;
    ++stats->failures;
    const auto now = std::chrono::steady_clock::now();
    (*failed_at)[to] = now;
    const auto warned = warned_at->find(to);
    // An answer that does not prove the secret (an impostor, or another
    // secret) is logged even when the link failed otherwise just before.
    if (warned == warned_at->end() || now - warned->second.at >= kWarnEvery || warned->second.unproven != unproven) {
      (*warned_at)[to] = PeerLinkWarning{.at = now, .unproven = unproven};
      spdlog::warn(
          "cluster: the peer link to server {} ({}) failed: {}; the requests this server forwards to it are sent "
          "again until a link works (logged once in {} s while it fails)",
          to, target_address, why, kWarnEvery.count());
    }
    shut();
  }

  struct Chunk {
    std::string bytes;    // an entry, until it is sealed as it is written
    bool proof = false;   // the set-up's last line, not a frame
    bool sealed = false;  // bytes is its sealed frame (being written)
  };

  asio::ip::tcp::socket socket;
  asio::steady_timer timer;  // the connect's, then the set-up's
  ServerId from;             // this server
  ServerId to;
  std::string secret;
  std::string nonce;  // this server's, in its hello
  std::string hello;
  std::string answer;  // the leader's answer, as it is read
  std::shared_ptr<PeerLinkStats> stats;
  std::shared_ptr<std::map<ServerId, std::chrono::steady_clock::time_point>> failed_at;
  std::shared_ptr<std::map<ServerId, PeerLinkWarning>> warned_at;
  std::string target_address;  // host:port, for the log
  std::array<char, 64> sink{};
  std::deque<Chunk> queue;
  std::size_t queued_bytes = 0;             // of the entries not yet sealed
  std::unique_ptr<PeerFrameCipher> sealer;  // once linked
  bool connected = false;
  bool linked = false;  // the leader's answer proved the secret
  std::chrono::steady_clock::time_point connected_at;
  std::chrono::steady_clock::time_point linked_at;
  bool writing = false;
  bool dead = false;
};

PeerLinkClient::PeerLinkClient(asio::io_context& io, ServerId self, std::string secret,
                               std::map<ServerId, std::string> client_addresses, std::chrono::milliseconds retry,
                               std::size_t max_queue_bytes)
    : io_(io),
      self_(self),
      secret_(std::move(secret)),
      addresses_(std::move(client_addresses)),
      retry_(retry),
      max_queue_bytes_(max_queue_bytes),
      stats_(std::make_shared<PeerLinkStats>()),
      failed_at_(std::make_shared<std::map<ServerId, std::chrono::steady_clock::time_point>>()),
      warned_at_(std::make_shared<std::map<ServerId, PeerLinkWarning>>()) {}

PeerLinkClient::~PeerLinkClient() {
  close();
}

void PeerLinkClient::close() {
  if (link_) link_->shut();
  link_.reset();
}

ServerId PeerLinkClient::linked_to() const {
  return link_ && !link_->dead ? link_->to : 0;
}

void PeerLinkClient::set_address(ServerId id, std::string client_address) {
  if (client_address.empty()) {
    addresses_.erase(id);
  } else {
    addresses_[id] = std::move(client_address);
  }
  if (link_ && (link_->to == id || id == self_)) close();
}

void PeerLinkClient::forward(ServerId leader_id, std::string entry) {
  if (entry.empty() || entry.size() > kMaxPeerFrameBytes) {
    ++stats_->dropped;
    return;
  }
  if (link_ && (link_->dead || link_->to != leader_id)) close();
  if (!link_) {
    const auto target = addresses_.find(leader_id);
    const auto own = addresses_.find(self_);
    const auto where = target == addresses_.end() ? std::nullopt : split_host_port(target->second);
    const auto local = own == addresses_.end() ? std::nullopt : split_host_port(own->second);
    const auto failed = failed_at_->find(leader_id);
    if (leader_id == self_ || !where ||
        (failed != failed_at_->end() && std::chrono::steady_clock::now() - failed->second < retry_)) {
      ++stats_->dropped;
      return;
    }
    Result<std::string> nonce = new_peer_nonce();
    if (!nonce) {
      ++stats_->dropped;
      spdlog::warn("cluster: no peer link to server {}: {}", leader_id, nonce.status().to_string());
      return;
    }
    link_ = std::make_shared<Link>(io_, self_, leader_id, secret_, std::move(*nonce), stats_, failed_at_, warned_at_);
    link_->connect(local ? local->first : std::string(), where->first, where->second);
  }
  link_->push(std::move(entry), max_queue_bytes_);
}

}  // namespace netsem::cluster
