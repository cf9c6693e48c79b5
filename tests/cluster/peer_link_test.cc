// The peer link (src/cluster/peer_link.h): the hello line's checks, the
// framing cut at every byte, and three ClusterNodes in one process whose
// followers forward over real TCP links (PeerLinkClient) to listeners on
// 127.0.0.1-3 that check the hello line and hand the socket to a
// PeerLinkReceiver feeding the leader node's accept_forwarded, as netsemd's
// client listener will. The test thread polls the io_context as a loop.
#include "cluster/peer_link.h"

#include <gtest/gtest.h>

#include <spdlog/spdlog.h>

#include <asio.hpp>
#include <functional>
#include <sstream>

#include "cluster/cluster_harness.h"
#include "support/captured_log.h"

namespace netsem::cluster::testing {
namespace {

using replication::Answer;
using replication::OpenSession;
using replication::SessionRequest;
using server::SessionId;

constexpr char kClusterSecret[] = "cluster-secret-0123456789";
constexpr char kResumeSecret[] = "00112233445566778899aabbccddeeff";

TEST(PeerLink, TheHelloLineIsCheckedWhole) {
  const std::map<ServerId, std::string> members = {{1, "127.0.0.1:5000"}, {2, "127.0.0.2:5000"}, {3, "127.0.0.3:5000"}};
  struct Case {
    std::string line;
    std::string from;
    StatusCode code;  // kOk: accepted as server 2
  };
  const Case cases[] = {
      {"PEER 2 s3cret", "127.0.0.2", StatusCode::kOk},
      {"PEER 2 s3cret\r", "127.0.0.2", StatusCode::kOk},
      {"PEER 2 s3creT", "127.0.0.2", StatusCode::kDenied},    // wrong secret
      {"PEER 2 s3cret ", "127.0.0.2", StatusCode::kDenied},   // wrong secret (a trailing space)
      {"PEER 2 s3cre", "127.0.0.2", StatusCode::kDenied},     // shorter
      {"PEER 2 s3cret", "127.0.0.3", StatusCode::kDenied},    // not from server 2's host
      {"PEER 4 s3cret", "127.0.0.2", StatusCode::kDenied},    // not a member
      {"PEER 1 s3cret", "127.0.0.1", StatusCode::kDenied},    // this server itself
      {"PEER 0 s3cret", "127.0.0.2", StatusCode::kProtocol},  // no such id
      {"PEER x s3cret", "127.0.0.2", StatusCode::kProtocol},  // not a number
      {"PEER 2", "127.0.0.2", StatusCode::kProtocol},         // no secret
      {"ACQUIRE t x", "127.0.0.2", StatusCode::kProtocol},    // a client's line
      {"PEER 2 " + std::string(600, 's'), "127.0.0.2", StatusCode::kProtocol},
  };
  for (const Case& c : cases) {
    auto id = check_peer_hello(c.line, c.from, 1, members, "s3cret");
    EXPECT_EQ(id.status().code(), c.code) << c.line << " from " << c.from << ": " << id.status().to_string();
    if (id) {
      EXPECT_EQ(*id, 2u);
    }
  }
  EXPECT_EQ(check_peer_hello("PEER 2 ", "127.0.0.2", 1, members, "").status().code(), StatusCode::kDenied);
  EXPECT_EQ(peer_hello(2, "s3cret"), "PEER 2 s3cret\n");
}

// The leader's word to a server it removed: its PEER part is checked as a
// hello is, the rest must be two numbers; a hello is no notice (nullopt),
// and a notice is no hello (its secret would not match).
TEST(PeerLink, ARemovalNoticeIsCheckedAsAHelloIsAndIsNoHello) {
  const std::map<ServerId, std::string> members = {{1, "127.0.0.1:5000"}, {2, "127.0.0.2:5000"}, {3, "127.0.0.3:5000"}};
  const std::string line = peer_removal_notice(2, "s3cret", 3, 57);
  EXPECT_EQ(line, "PEER 2 s3cret REMOVED 3 57\n");
  const std::string_view bare(line.data(), line.size() - 1);
  auto notice = check_removal_notice(bare, "127.0.0.2", 3, members, "s3cret");
  ASSERT_TRUE(notice.has_value());
  ASSERT_TRUE(*notice) << notice->status().to_string();
  EXPECT_EQ((*notice)->from, 2u);
  EXPECT_EQ((*notice)->removed, 3u);
  EXPECT_EQ((*notice)->index, 57u);
  EXPECT_FALSE(check_peer_hello(bare, "127.0.0.2", 3, members, "s3cret"));
  EXPECT_FALSE(check_removal_notice("PEER 2 s3cret", "127.0.0.2", 3, members, "s3cret").has_value());
  EXPECT_FALSE(check_removal_notice("ACQUIRE t REMOVED 1", "127.0.0.2", 3, members, "s3cret").has_value());
  struct Case {
    std::string line;
    std::string from;
    StatusCode code;
  };
  const Case refused[] = {
      {"PEER 2 wrong REMOVED 3 57", "127.0.0.2", StatusCode::kDenied},
      {"PEER 2 s3cret REMOVED 3 57", "127.0.0.1", StatusCode::kDenied},  // not from server 2's host
      {"PEER 2 s3cret REMOVED 3", "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 s3cret REMOVED x 57", "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 s3cret REMOVED 3 0", "127.0.0.2", StatusCode::kProtocol},
  };
  for (const Case& c : refused) {
    auto checked = check_removal_notice(c.line, c.from, 3, members, "s3cret");
    ASSERT_TRUE(checked.has_value()) << c.line;
    EXPECT_EQ(checked->status().code(), c.code) << c.line << ": " << checked->status().to_string();
  }
}

// The leader's secret check before an ADD: a challenge carrying a nonce,
// answered by an HMAC proof; no secret on the wire either way.
constexpr char kKatSecret[] = "a-cluster-secret-of-the-test-0123456789";
constexpr char kKatNonce[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

// Known answer: computed outside netsem (Python's hmac, and
// `openssl dgst -sha256 -hmac <secret>` over the message), so a change of
// the message, the key or the MAC breaks it (and interoperation with it).
TEST(PeerLink, ASecretCheckProofIsTheHmacOfItsDomainSeparatedMessage) {
  EXPECT_EQ(secret_check_message(1, 4, 4, kKatNonce),
            "netsem peer secret check v1\nproof: added server to leader\nleader 1\nasked 4\nserver 4\nnonce "
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
  EXPECT_EQ(secret_check_proof(kKatSecret, 1, 4, 4, kKatNonce),
            "311d28f67bd6dad9637e2019f96be6f93e92e96938129ccdd74fce12bc8147a8");
  EXPECT_EQ(peer_secret_challenge(1, 4, kKatNonce), std::string("PEER 1 CHALLENGE 4 ") + kKatNonce + "\n");
  EXPECT_EQ(peer_secret_proof(4, "ab"), "PEER 4 PROOF ab\n");
  // Fresh nonces: 64 lowercase hex digits, never the same twice.
  const Result<std::string> a = new_secret_check_nonce();
  const Result<std::string> b = new_secret_check_nonce();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->size(), 64u);
  EXPECT_EQ(a->find_first_not_of("0123456789abcdef"), std::string::npos) << *a;
  EXPECT_NE(*a, *b);
}

TEST(PeerLink, AProofHoldsOnlyForTheSecretTheNonceAndTheIdsItWasMadeFor) {
  const auto answer = [](std::string_view secret, ServerId leader, ServerId asked, ServerId answering,
                         std::string_view nonce) {
    std::string line = peer_secret_proof(answering, secret_check_proof(secret, leader, asked, answering, nonce));
    line.pop_back();
    return line;
  };
  const std::string right = answer(kKatSecret, 1, 4, 4, kKatNonce);
  const Result<ServerId> proven = verify_secret_proof(right, kKatSecret, 1, 4, kKatNonce);
  ASSERT_TRUE(proven) << proven.status().to_string();
  EXPECT_EQ(*proven, 4u);
  EXPECT_TRUE(verify_secret_proof(right + "\r", kKatSecret, 1, 4, kKatNonce));
  // Another server's own proof names it: the caller tells "server 5, not 4".
  const Result<ServerId> other =
      verify_secret_proof(answer(kKatSecret, 1, 4, 5, kKatNonce), kKatSecret, 1, 4, kKatNonce);
  ASSERT_TRUE(other);
  EXPECT_EQ(*other, 5u);

  std::string other_nonce = kKatNonce;
  other_nonce.back() = '0';
  const std::string tampered_id = "PEER 5" + right.substr(6);  // server 4's proof, claimed by server 5
  std::string flipped = right;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  struct Case {
    std::string what;
    std::string line;
    ServerId leader;
    ServerId asked;
    std::string nonce;
  };
  const Case denied[] = {
      {"wrong secret", answer("another-secret-of-16+chars", 1, 4, 4, kKatNonce), 1, 4, kKatNonce},
      {"another nonce (a replayed answer)", right, 1, 4, other_nonce},
      {"made for another leader", answer(kKatSecret, 2, 4, 4, kKatNonce), 1, 4, kKatNonce},
      {"made for another asked id", answer(kKatSecret, 1, 5, 4, kKatNonce), 1, 4, kKatNonce},
      {"its id tampered with", tampered_id, 1, 4, kKatNonce},
      {"a bit of the proof flipped", flipped, 1, 4, kKatNonce},
  };
  for (const Case& c : denied) {
    const Result<ServerId> got = verify_secret_proof(c.line, kKatSecret, c.leader, c.asked, c.nonce);
    EXPECT_EQ(got.status().code(), StatusCode::kDenied) << c.what << ": " << c.line;
  }
  // No secret on this side proves nothing.
  EXPECT_EQ(verify_secret_proof(right, "", 1, 4, kKatNonce).status().code(), StatusCode::kDenied);

  const std::string proof = secret_check_proof(kKatSecret, 1, 4, 4, kKatNonce);
  std::string upper = proof;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string malformed[] = {
      "",
      "PEER 4 OK",  // the first form's answer
      "PEER 4 PROOF",
      "PEER 4 PROOF ",
      "PEER 4 PROOF " + proof.substr(1),
      "PEER 4 PROOF " + proof + "0",
      "PEER 4 PROOF " + proof + " x",
      "PEER 4 PROOF " + upper,
      "PEER 4 PROOF " + proof.substr(0, 63) + "g",
      "PEER 0 PROOF " + proof,
      "PEER x PROOF " + proof,
      "PEER  PROOF " + proof,
      "PEER PROOF " + proof,
      "PEERS 4 PROOF " + proof,
      "peer 4 PROOF " + proof,
      "PEER 4 proof " + proof,
      "PEER 99999999999999999999999 PROOF " + proof,
  };
  for (const std::string& line : malformed) {
    EXPECT_EQ(verify_secret_proof(line, kKatSecret, 1, 4, kKatNonce).status().code(), StatusCode::kProtocol)
        << "'" << line << "'";
  }
}

// What the answering server checks of a challenge: who asks (a server it
// knows, from that server's host; no secret is there to check), and the
// form. The first form, with the secret in clear, is refused unanswered.
TEST(PeerLink, AChallengeIsCheckedForItsSenderAndFormAndTheOldFormIsRefused) {
  const std::map<ServerId, std::string> members = {{1, "127.0.0.1:5000"}, {2, "127.0.0.2:5000"}, {4, "127.0.0.4:5000"}};
  const std::string line = peer_secret_challenge(2, 4, kKatNonce);
  const std::string_view bare(line.data(), line.size() - 1);
  auto challenge = check_secret_challenge(bare, "127.0.0.2", 4, members);
  ASSERT_TRUE(challenge.has_value());
  ASSERT_TRUE(*challenge) << challenge->status().to_string();
  EXPECT_EQ((*challenge)->from, 2u);
  EXPECT_EQ((*challenge)->added, 4u);
  EXPECT_EQ((*challenge)->nonce, kKatNonce);
  EXPECT_TRUE(check_secret_challenge(std::string(bare) + "\r", "127.0.0.2", 4, members).value());
  // Neither a hello nor a removal notice, and they are no challenge.
  EXPECT_FALSE(check_peer_hello(bare, "127.0.0.2", 4, members, "s3cret"));
  EXPECT_FALSE(check_removal_notice(bare, "127.0.0.2", 4, members, "s3cret").has_value());
  EXPECT_FALSE(check_secret_challenge("PEER 2 s3cret", "127.0.0.2", 4, members).has_value());
  EXPECT_FALSE(check_secret_challenge("PEER 2 s3cret REMOVED 4 7", "127.0.0.2", 4, members).has_value());
  EXPECT_FALSE(check_secret_challenge("PEER 2", "127.0.0.2", 4, members).has_value());
  EXPECT_FALSE(check_secret_challenge("HELLO 1.2", "127.0.0.2", 4, members).has_value());

  struct Case {
    std::string line;
    std::string from;
    StatusCode code;
  };
  const std::string nonce = kKatNonce;
  const Case refused[] = {
      {"PEER 2 CHALLENGE 4 " + nonce, "127.0.0.1", StatusCode::kDenied},  // not from server 2's host
      {"PEER 3 CHALLENGE 4 " + nonce, "127.0.0.3", StatusCode::kDenied},  // no server it knows
      {"PEER 4 CHALLENGE 4 " + nonce, "127.0.0.4", StatusCode::kDenied},  // itself
      {"PEER 0 CHALLENGE 4 " + nonce, "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE 0 " + nonce, "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE 4", "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE 4 ", "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE x " + nonce, "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE 4 " + nonce.substr(2), "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE 4 " + nonce + "00", "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE 4 " + nonce + " 5", "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE 4 " + nonce.substr(0, 63) + "A", "127.0.0.2", StatusCode::kProtocol},
      {"PEER 2 CHALLENGE 4 " + std::string(600, 'a'), "127.0.0.2", StatusCode::kProtocol},
      // The first form: the secret in clear. Refused whatever its secret.
      {"PEER 2 s3cret CHECK 4", "127.0.0.2", StatusCode::kDenied},
      {"PEER 2 wrong CHECK 4", "127.0.0.2", StatusCode::kDenied},
      {"PEER 2 s3cret CHECK 4", "127.0.0.9", StatusCode::kDenied},
  };
  for (const Case& c : refused) {
    auto checked = check_secret_challenge(c.line, c.from, 4, members);
    if (c.line.size() > kMaxPeerHelloBytes) {
      EXPECT_FALSE(checked.has_value()) << "a line of " << c.line.size() << " bytes";
      continue;
    }
    ASSERT_TRUE(checked.has_value()) << c.line;
    EXPECT_EQ(checked->status().code(), c.code) << c.line << ": " << checked->status().to_string();
  }
  const auto old = check_secret_challenge("PEER 2 s3cret CHECK 4", "127.0.0.2", 4, members);
  ASSERT_TRUE(old.has_value());
  EXPECT_NE(old->status().message().find("in clear"), std::string::npos) << old->status().to_string();
  EXPECT_EQ(old->status().message().find("s3cret"), std::string::npos) << old->status().to_string();
  EXPECT_NE(old->status().message().find("PEER 2 <secret> CHECK"), std::string::npos) << old->status().to_string();
  // Its claimed id goes to the log only as digits (audit27 2f: escape
  // sequences and a carriage return reached the log).
  for (const std::string line : {"PEER \x1b[2J\x1b[1;31mFAKE\b\b s CHECK 2", "PEER 1\rFORGED:info s CHECK 2"}) {
    const auto forged = check_secret_challenge(line, "127.0.0.2", 4, members);
    ASSERT_TRUE(forged.has_value()) << line;
    const std::string said(forged->status().message());
    EXPECT_NE(said.find("PEER <not a number> <secret> CHECK"), std::string::npos) << said;
    EXPECT_EQ(said.find_first_of("\x1b\b\r"), std::string::npos) << said;
  }
}

// ask_peer_line over TCP: the line answered, a connection closed without a
// word (kIoError: what a server with another secret does), nothing
// listening (kUnavailable).
TEST(PeerLink, AskPeerLineTellsAnAnswerASilentCloseAndNoServerApart) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.4"), 0));
  const std::string address = "127.0.0.4:" + std::to_string(acceptor.local_endpoint().port());
  const auto ask = [&](bool answer) {
    std::optional<Result<std::string>> got;
    std::string heard;
    asio::ip::tcp::socket peer(io);
    asio::streambuf buffer;
    acceptor.async_accept(peer, [&](const asio::error_code& accepted) {
      ASSERT_FALSE(accepted) << accepted.message();
      asio::async_read_until(peer, buffer, '\n', [&](const asio::error_code& read, std::size_t n) {
        ASSERT_FALSE(read) << read.message();
        heard.assign(asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + static_cast<long>(n));
        if (answer) asio::write(peer, asio::buffer(peer_secret_proof(4, "ab")));
        peer.close();
      });
    });
    ask_peer_line(io, "127.0.0.1", address, peer_secret_challenge(1, 4, kKatNonce),
                  [&](Result<std::string> outcome) { got = std::move(outcome); });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!got && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(milliseconds(20));
    }
    EXPECT_EQ(heard, std::string("PEER 1 CHALLENGE 4 ") + kKatNonce + "\n");
    return got;
  };
  const auto answered = ask(true);
  ASSERT_TRUE(answered.has_value());
  ASSERT_TRUE(*answered) << answered->status().to_string();
  EXPECT_EQ(**answered, "PEER 4 PROOF ab");
  const auto silent = ask(false);
  ASSERT_TRUE(silent.has_value());
  EXPECT_EQ(silent->status().code(), StatusCode::kIoError) << silent->status().to_string();
  EXPECT_NE(silent->status().message().find("without a word"), std::string::npos) << silent->status().to_string();

  acceptor.close();
  std::optional<Result<std::string>> none;
  ask_peer_line(io, "127.0.0.1", address, peer_secret_challenge(1, 4, kKatNonce),
                [&](Result<std::string> outcome) { none = std::move(outcome); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!none && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(milliseconds(20));
  }
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->status().code(), StatusCode::kUnavailable) << none->status().to_string();
}

TEST(PeerLink, FramesAreCutWhereverTheBytesSplit) {
  const std::vector<std::string> entries = {"a", std::string(70000, 'b'), "ccc"};
  std::string stream;
  for (const std::string& e : entries) stream += frame_entry(e);
  EXPECT_EQ(stream.substr(0, 5), std::string("\x01\x00\x00\x00"
                                             "a",
                                             5));
  for (std::size_t step : {std::size_t{1}, std::size_t{3}, std::size_t{4096}, stream.size()}) {
    PeerFrameDecoder decoder;
    std::vector<std::string> got;
    for (std::size_t at = 0; at < stream.size(); at += step) {
      decoder.feed(std::string_view(stream).substr(at, step));
      for (;;) {
        auto next = decoder.next();
        ASSERT_TRUE(next) << next.status().to_string();
        if (!next->has_value()) break;
        got.push_back(**next);
      }
    }
    EXPECT_EQ(got, entries) << "step " << step;
    EXPECT_EQ(decoder.buffered(), 0u);
  }
  PeerFrameDecoder zero;
  zero.feed(std::string("\0\0\0\0", 4));
  EXPECT_EQ(zero.next().status().code(), StatusCode::kProtocol);
  PeerFrameDecoder huge;
  huge.feed(std::string("\x01\x00\x00\x01", 4));  // 16 MiB + 1
  EXPECT_EQ(huge.next().status().code(), StatusCode::kProtocol);
}

// What netsemd's client listener does with a PEER line, for node `self`:
// accept, read the hello line, check it, hand the socket to a receiver.
class PeerListener {
 public:
  PeerListener(asio::io_context& io, ServerId self, const std::map<ServerId, std::string>& members,
               PeerLinkReceiver::EntryHandler on_entry)
      : acceptor_(io), self_(self), members_(members), on_entry_(std::move(on_entry)) {
    const auto where = split_host_port(members.at(self));
    const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(where->first),
                                           static_cast<std::uint16_t>(std::stoi(where->second)));
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    accept();
  }
  ~PeerListener() {
    asio::error_code ignored;
    acceptor_.close(ignored);
    for (auto& r : receivers_) r->close();
  }
  // The leader ends every link it took (as when it stops).
  void close_links() {
    for (auto& r : receivers_) r->close();
  }
  int refused = 0;
  int accepted = 0;
  std::uint64_t entries() const {
    std::uint64_t n = 0;
    for (const auto& r : receivers_) n += r->entries();
    return n;
  }

 private:
  struct Pending {
    explicit Pending(asio::ip::tcp::socket s) : socket(std::move(s)) {}
    asio::ip::tcp::socket socket;
    asio::streambuf buffer;
  };
  void accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec) return;
      auto pending = std::make_shared<Pending>(std::move(socket));
      asio::async_read_until(
          pending->socket, pending->buffer, '\n', [this, pending](const asio::error_code& e, std::size_t n) {
            if (e) return;
            std::string data(asio::buffers_begin(pending->buffer.data()), asio::buffers_end(pending->buffer.data()));
            const std::string line = data.substr(0, n - 1);
            asio::error_code ignored;
            const std::string from = pending->socket.remote_endpoint(ignored).address().to_string();
            auto peer = check_peer_hello(line, from, self_, members_, kClusterSecret);
            if (!peer) {
              ++refused;
              pending->socket.close(ignored);
              return;
            }
            ++accepted;
            receivers_.push_back(
                PeerLinkReceiver::start(std::move(pending->socket), *peer, data.substr(n), on_entry_, {}));
          });
      accept();
    });
  }

  asio::ip::tcp::acceptor acceptor_;
  ServerId self_;
  std::map<ServerId, std::string> members_;
  PeerLinkReceiver::EntryHandler on_entry_;
  std::vector<std::shared_ptr<PeerLinkReceiver>> receivers_;
};

// A follower whose PEER line the leader refuses (here: a wrong secret)
// says so in its own log, once, not at every retry: an operator who gave a
// server the wrong secret file found nothing in that server's log before.
TEST(PeerLink, ARefusedLinkIsLoggedOnTheFollowerOnce) {
  auto log = std::make_unique<::test_support::CapturedLog>();
  asio::io_context io;
  const std::uint16_t port = test_support::free_port_below_ephemeral();
  const std::map<ServerId, std::string> members = {{1, "127.0.0.1:" + std::to_string(port)},
                                                   {2, "127.0.0.2:" + std::to_string(port)}};
  PeerListener leader(io, 1, members, [](ServerId, std::string) {});
  PeerLinkClient follower(io, 2, "another-secret-0123456789", members, milliseconds(10));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (follower.stats().failures < 3 && std::chrono::steady_clock::now() < deadline) {
    follower.forward(1, "entry");
    io.restart();
    io.run_for(milliseconds(20));
  }
  const std::string text = log->text();
  log.reset();
  EXPECT_GE(leader.refused, 3);
  EXPECT_GE(follower.stats().failures, 3u);
  const std::string expected =
      "the peer link to server 1 (127.0.0.1:" + std::to_string(port) + ") failed: closed by that server (";
  const std::string hint = "ms after it connected: it refused this server's PEER line";
  EXPECT_NE(text.find(expected), std::string::npos) << text;
  EXPECT_NE(text.find(hint), std::string::npos) << text;
  EXPECT_EQ(text.find(expected), text.rfind(expected)) << "logged more than once:\n" << text;
}

// A link that worked and is then closed by its leader (it stopped) is not
// blamed on the PEER line: every follower said "it refused this server's
// PEER line, a wrong secret ..." after each leader's death (newuser23
// finding 7).
TEST(PeerLink, ALinkThatWorkedAndEndsIsNotCalledRefused) {
  auto log = std::make_unique<::test_support::CapturedLog>();
  asio::io_context io;
  const std::uint16_t port = test_support::free_port_below_ephemeral();
  const std::map<ServerId, std::string> members = {{1, "127.0.0.1:" + std::to_string(port)},
                                                   {2, "127.0.0.2:" + std::to_string(port)}};
  PeerListener leader(io, 1, members, [](ServerId, std::string) {});
  PeerLinkClient follower(io, 2, std::string(kClusterSecret), members, milliseconds(10));
  follower.forward(1, "entry");
  const auto until = [&io](const std::function<bool()>& done, std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(milliseconds(20));
    }
    return done();
  };
  ASSERT_TRUE(until([&] { return leader.entries() == 1; }, milliseconds(5000)));
  until([] { return false; }, milliseconds(1200));  // the link works on
  leader.close_links();
  ASSERT_TRUE(until([&] { return follower.stats().failures == 1; }, milliseconds(5000)));
  const std::string text = log->text();
  log.reset();
  EXPECT_EQ(leader.refused, 0);
  EXPECT_NE(text.find("the peer link to server 1 (127.0.0.1:" + std::to_string(port) +
                      ") failed: closed by that server (End of file) after the link worked for 1 s: it stopped, "
                      "restarted or closed the link"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("PEER line"), std::string::npos) << text;
}

TEST(PeerLink, FollowersForwardOverTcpAndFollowANewLeader) {
  TestCluster cluster;
  asio::io_context io;
  cluster.on_pump = [&io] {
    io.restart();
    io.poll();
  };
  const std::uint16_t port = test_support::free_port_below_ephemeral();
  std::map<ServerId, std::string> members;
  for (int i : {1, 2, 3})
    members[static_cast<ServerId>(i)] = "127.0.0." + std::to_string(i) + ":" + std::to_string(port);
  std::map<int, std::unique_ptr<PeerLinkClient>> clients;
  std::map<int, std::unique_ptr<PeerListener>> listeners;
  for (int i : {1, 2, 3}) {
    clients[i] = std::make_unique<PeerLinkClient>(io, static_cast<ServerId>(i), kClusterSecret, members);
    listeners[i] = std::make_unique<PeerListener>(io, static_cast<ServerId>(i), members,
                                                  [&cluster, i](ServerId, std::string entry) {
                                                    if (cluster.running(i))
                                                      (void)cluster.node(i).accept_forwarded(entry);
                                                  });
    ASSERT_TRUE(cluster.start(i, [&](ClusterOptions& o) {
      o.client_addresses = members;
      o.forwarder = clients[i].get();
    }));
  }
  const int leader = cluster.wait_leader();
  ASSERT_NE(leader, 0);
  const int follower = cluster.other_than(leader);
  const OpenSession open{"", "10.0.0.2:1", "v1", static_cast<ServerId>(follower), 1, kResumeSecret};
  ASSERT_TRUE(cluster.node(follower).submit(open));
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(follower, open) != nullptr; }));
  const SessionId a = cluster.result_of(follower, open)->answer.number;
  SessionRequest req;
  req.session = a;
  req.origin = static_cast<ServerId>(follower);
  req.seq = 1;
  req.tag = "t";
  req.name = "x";
  ASSERT_TRUE(cluster.node(follower).submit(req));
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(follower, req) != nullptr; }));
  EXPECT_EQ(cluster.result_of(follower, req)->answer.type, Answer::Type::kGranted);
  EXPECT_EQ(clients[follower]->stats().connects, 1u);
  EXPECT_EQ(clients[follower]->stats().frames, 2u);
  EXPECT_EQ(clients[follower]->linked_to(), static_cast<ServerId>(leader));
  EXPECT_EQ(listeners[leader]->accepted, 1);
  EXPECT_EQ(listeners[leader]->entries(), 2u);
  EXPECT_EQ(cluster.node(leader).status().accepted, 2u);

  // A link with the wrong secret is refused, and what it sends is not applied.
  {
    asio::ip::tcp::socket raw(io);
    raw.open(asio::ip::tcp::v4());
    raw.bind(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0." + std::to_string(follower)), 0));
    const auto where = split_host_port(members[static_cast<ServerId>(leader)]);
    raw.connect(asio::ip::tcp::endpoint(asio::ip::make_address(where->first), port));
    SessionRequest forged = req;
    forged.seq = 2;
    forged.tag = "forged";
    const std::string bytes =
        "PEER " + std::to_string(follower) + " wrong-secret\n" + frame_entry(replication::encode_entry({0, {forged}}));
    asio::write(raw, asio::buffer(bytes));
    ASSERT_TRUE(cluster.pump_until([&] { return listeners[leader]->refused == 1; }));
    cluster.pump_until([] { return false; }, milliseconds(300));
    EXPECT_EQ(cluster.result_of(follower, forged), nullptr);
  }

  // The leader goes: the follower's next command goes over a new link to the next one.
  cluster.stop(leader);
  listeners.erase(leader);
  const int next = cluster.wait_leader();
  ASSERT_NE(next, 0);
  SessionRequest again = req;
  again.seq = 2;
  again.tag = "t2";
  again.name = "y";
  ASSERT_TRUE(cluster.node(follower).submit(again));
  ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(follower, again) != nullptr; }));
  EXPECT_EQ(cluster.result_of(follower, again)->answer.type, Answer::Type::kGranted);
  if (next != follower) {
    EXPECT_EQ(clients[follower]->linked_to(), static_cast<ServerId>(next));
    EXPECT_EQ(clients[follower]->stats().connects, 2u);
  }
  for (int i = 1; i <= 3; ++i) {
    if (cluster.running(i)) {
      ASSERT_TRUE(cluster.pump_until([&] { return cluster.result_of(i, again) != nullptr; })) << i;
      EXPECT_EQ(cluster.server(i).replica->table().get("y").held, 1) << i;
    }
  }
  clients.clear();  // closing links with handlers in flight
  io.restart();
  io.poll();
}

}  // namespace
}  // namespace netsem::cluster::testing
