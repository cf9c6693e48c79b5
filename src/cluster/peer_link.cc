// The peer link's lines and frames (peer_link.h), with no I/O: the link's
// set-up (hello, answer, proof), the removal notice, the secret check's
// challenge and proof, and the framing of entries. The rest of the peer link
// is in files of its own: the sealing of the frames (peer_frame_cipher.cc),
// the follower's side (peer_link_client.cc), one line alone on a connection
// of its own (peer_line_exchange.cc) and the leader's side
// (peer_link_receiver.cc); peer_connect.h holds what the connecting ones
// share.
#include "cluster/peer_link.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace netsem::cluster {

namespace {

std::string to_hex(const unsigned char* bytes, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

// `text` is exactly 2 * `bytes` lowercase hex digits.
bool is_lower_hex(std::string_view text, std::size_t bytes) {
  return text.size() == 2 * bytes &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// HMAC-SHA256(secret, message) in lowercase hex ("" only if OpenSSL lacks
// SHA-256, which it never does).
std::string hmac_sha256_hex(std::string_view secret, std::string_view message) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int size = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(), &size) == nullptr ||
      size != kPeerProofBytes) {
    return std::string();
  }
  return to_hex(mac.data(), size);
}

// Whether `given` is the MAC `expected`, compared in constant time; never
// for an empty secret or a MAC that could not be made.
bool same_mac(std::string_view secret, std::string_view expected, std::string_view given) {
  return !secret.empty() && !expected.empty() && expected.size() == given.size() &&
         CRYPTO_memcmp(expected.data(), given.data(), given.size()) == 0;
}

// A server id: a decimal number other than 0, the whole of `text`.
std::optional<ServerId> parse_id(std::string_view text) {
  ServerId id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || id == 0) return std::nullopt;
  return id;
}

// `line` cut at single spaces (an empty word for two in a row).
std::vector<std::string_view> words_of(std::string_view line) {
  std::vector<std::string_view> words;
  for (;;) {
    const std::size_t space = line.find(' ');
    words.push_back(line.substr(0, space));
    if (space == std::string_view::npos) return words;
    line.remove_prefix(space + 1);
  }
}

// The claimed id of a refused line, for the log: digits only, since the line
// is anyone's (audit27 2f: escape sequences and carriage returns reached the
// log).
std::string logged_id(std::string_view id_text) {
  const bool digits =
      !id_text.empty() && id_text.size() <= 20 && id_text.find_first_not_of("0123456789") == std::string_view::npos;
  return digits ? std::string(id_text) : std::string("<not a number>");
}

// A PEER line without its trailing "\r", or nullopt when it is not one
// (another first word, or longer than any PEER line).
std::optional<std::string_view> peer_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxPeerHelloBytes || !line.starts_with("PEER ")) return std::nullopt;
  return line;
}

}  // namespace

Result<std::string> new_peer_nonce() {
  std::array<unsigned char, kPeerNonceBytes> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return Status(StatusCode::kInternal, "no random nonce: RAND_bytes failed");
  }
  return to_hex(bytes.data(), bytes.size());
}

std::optional<std::pair<std::string, std::string>> split_host_port(std::string_view address) {
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == address.size()) return std::nullopt;
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::make_pair(std::string(host), std::string(address.substr(colon + 1)));
}

namespace {

// The sender of a PEER line: `id_text` a server id in `client_addresses`,
// not `self`, and `remote_host` that server's configured host.
Result<ServerId> check_peer_sender(std::string_view id_text, std::string_view remote_host, ServerId self,
                                   const std::map<ServerId, std::string>& client_addresses) {
  ServerId id = 0;
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  if (ec != std::errc() || end != id_text.data() + id_text.size() || id == 0) {
    return Status(StatusCode::kProtocol, "PEER: a server id expected");
  }
  const auto member = client_addresses.find(id);
  if (member == client_addresses.end() || id == self) {
    return Status(StatusCode::kDenied, "PEER " + std::to_string(id) + ": not another server of the cluster");
  }
  const auto host = split_host_port(member->second);
  if (!host || host->first != remote_host) {
    return Status(StatusCode::kDenied, "PEER " + std::to_string(id) + ": from " + std::string(remote_host) +
                                           ", not its configured address " + member->second);
  }
  return id;
}

}  // namespace

std::string peer_link_hello(ServerId from, ServerId to, std::string_view nonce) {
  return "PEER " + std::to_string(from) + " LINK " + std::to_string(to) + " " + std::string(nonce) + " SEALED\n";
}

Result<LinkHello> check_peer_hello(std::string_view line, std::string_view remote_host, ServerId self,
                                   const std::map<ServerId, std::string>& client_addresses) {
  const auto peer = peer_line(line);
  if (!peer) return Status(StatusCode::kProtocol, "not a PEER line");
  const std::vector<std::string_view> words = words_of(*peer);
  if (words.size() < 3) return Status(StatusCode::kProtocol, "PEER <id> LINK <id> <nonce> expected");
  if (words[2].starts_with("LINK-")) return Status(StatusCode::kProtocol, "a line of a link's set-up, not a hello");
  if (words[2] != "LINK") {
    // The hello of a netsemd older than the link's challenge, "PEER <id>
    // <secret>": the secret in clear. Refused, its secret never compared.
    return Status(StatusCode::kDenied, "PEER " + logged_id(words[1]) +
                                           " <secret>: the peer link hello of an older netsemd, which sends the "
                                           "cluster secret in clear; refused (upgrade the server that sent it)");
  }
  const Result<ServerId> from = check_peer_sender(words[1], remote_host, self, client_addresses);
  if (!from) return from.status();
  const auto to = words.size() == 5 || words.size() == 6 ? parse_id(words[3]) : std::nullopt;
  if (!to || !is_lower_hex(words[4], kPeerNonceBytes) || (words.size() == 6 && words[5] != "SEALED")) {
    return Status(StatusCode::kProtocol, "PEER <id> LINK <id> <64 lowercase hex digits> SEALED expected");
  }
  if (words.size() == 5) {
    // The hello of a netsemd older than the sealed frames: its frames would
    // come in clear, and this server's would be taken for entries there.
    return Status(StatusCode::kDenied, "PEER " + std::to_string(*from) +
                                           " LINK without SEALED: the peer link hello of an older netsemd, whose "
                                           "frames are not sealed; refused (upgrade the server that sent it)");
  }
  if (*to != self) {
    return Status(StatusCode::kDenied, "PEER " + std::to_string(*from) + ": a link meant for server " +
                                           std::to_string(*to) + ", but this is server " + std::to_string(self));
  }
  return LinkHello{.from = *from, .to = *to, .nonce = std::string(words[4])};
}

std::string peer_link_message(LinkSide by, ServerId linking, ServerId receiving, std::string_view linking_nonce,
                              std::string_view receiving_nonce) {
  return std::string("netsem peer link v1\nproof: ") +
         (by == LinkSide::kLinking ? "linking server to receiving server" : "receiving server to linking server") +
         "\nlinking server " + std::to_string(linking) + "\nreceiving server " + std::to_string(receiving) +
         "\nlinking nonce " + std::string(linking_nonce) + "\nreceiving nonce " + std::string(receiving_nonce) + "\n";
}

std::string peer_link_proof(std::string_view secret, LinkSide by, ServerId linking, ServerId receiving,
                            std::string_view linking_nonce, std::string_view receiving_nonce) {
  return hmac_sha256_hex(secret, peer_link_message(by, linking, receiving, linking_nonce, receiving_nonce));
}

std::string peer_link_answer(ServerId receiving, std::string_view receiving_nonce, std::string_view proof) {
  return "PEER " + std::to_string(receiving) + " LINK-ANSWER " + std::string(receiving_nonce) + " " +
         std::string(proof) + "\n";
}

Result<std::string> verify_link_answer(std::string_view line, std::string_view secret, ServerId linking,
                                       ServerId receiving, std::string_view linking_nonce) {
  const auto peer = peer_line(line);
  const std::vector<std::string_view> words = peer ? words_of(*peer) : std::vector<std::string_view>();
  const auto id = words.size() == 5 ? parse_id(words[1]) : std::nullopt;
  if (!id || words[2] != "LINK-ANSWER" || !is_lower_hex(words[3], kPeerNonceBytes) ||
      !is_lower_hex(words[4], kPeerProofBytes)) {
    return Status(StatusCode::kProtocol, "not PEER <id> LINK-ANSWER <64 hex digits> <64 hex digits>");
  }
  if (*id != receiving) {
    return Status(StatusCode::kDenied,
                  "it answered as server " + std::to_string(*id) + ", not server " + std::to_string(receiving));
  }
  if (words[3] == linking_nonce) {
    return Status(StatusCode::kDenied, "it answered with this server's own nonce");
  }
  const std::string expected =
      peer_link_proof(secret, LinkSide::kReceiving, linking, receiving, linking_nonce, words[3]);
  if (!same_mac(secret, expected, words[4])) {
    return Status(StatusCode::kDenied, "its proof does not match the cluster secret");
  }
  return std::string(words[3]);
}

std::string peer_link_proof_line(ServerId linking, std::string_view proof) {
  return "PEER " + std::to_string(linking) + " LINK-PROOF " + std::string(proof) + "\n";
}

Status verify_link_proof(std::string_view line, std::string_view secret, ServerId linking, ServerId receiving,
                         std::string_view linking_nonce, std::string_view receiving_nonce) {
  const auto peer = peer_line(line);
  const std::vector<std::string_view> words = peer ? words_of(*peer) : std::vector<std::string_view>();
  const auto id = words.size() == 4 ? parse_id(words[1]) : std::nullopt;
  if (!id || words[2] != "LINK-PROOF" || !is_lower_hex(words[3], kPeerProofBytes)) {
    return Status(StatusCode::kProtocol, "not PEER <id> LINK-PROOF <64 hex digits>");
  }
  const std::string expected =
      peer_link_proof(secret, LinkSide::kLinking, linking, receiving, linking_nonce, receiving_nonce);
  if (*id != linking || !same_mac(secret, expected, words[3])) {
    return Status(StatusCode::kDenied, "server " + std::to_string(linking) +
                                           "'s proof does not match the cluster secret (its secret_file is not this "
                                           "server's)");
  }
  return Status::ok();
}

std::string removal_notice_message(ServerId from, ServerId removed, std::uint64_t index) {
  return "netsem peer removal notice v1\nfrom " + std::to_string(from) + "\nremoved " + std::to_string(removed) +
         "\nindex " + std::to_string(index) + "\n";
}

std::string removal_notice_mac(std::string_view secret, ServerId from, ServerId removed, std::uint64_t index) {
  return hmac_sha256_hex(secret, removal_notice_message(from, removed, index));
}

std::string peer_removal_notice(ServerId from, std::string_view secret, ServerId removed, std::uint64_t index) {
  return "PEER " + std::to_string(from) + " REMOVED " + std::to_string(removed) + " " + std::to_string(index) + " " +
         removal_notice_mac(secret, from, removed, index) + "\n";
}

std::optional<Result<RemovalNotice>> check_removal_notice(std::string_view line, std::string_view remote_host,
                                                          ServerId self,
                                                          const std::map<ServerId, std::string>& client_addresses,
                                                          std::string_view secret) {
  const auto peer = peer_line(line);
  if (!peer) return std::nullopt;
  const std::vector<std::string_view> words = words_of(*peer);
  if (words.size() < 3) return std::nullopt;
  if (words[2] != "REMOVED") {
    // The form of a netsemd older than the MAC, "PEER <id> <secret> REMOVED
    // <id> <index>": the secret in clear. Refused, its secret never compared.
    if (words.size() != 6 || words[3] != "REMOVED") return std::nullopt;
    return Result<RemovalNotice>(Status(
        StatusCode::kDenied, "PEER " + logged_id(words[1]) +
                                 " <secret> REMOVED: the removal notice of an older netsemd, which sends the cluster "
                                 "secret in clear; ignored (upgrade the server that sent it)"));
  }
  const Result<ServerId> from = check_peer_sender(words[1], remote_host, self, client_addresses);
  if (!from) return Result<RemovalNotice>(from.status());
  const auto number = [](std::string_view text) -> std::optional<std::uint64_t> {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n == 0) return std::nullopt;
    return n;
  };
  const auto removed = words.size() == 6 ? number(words[3]) : std::nullopt;
  const auto index = words.size() == 6 ? number(words[4]) : std::nullopt;
  if (!removed || !index || !is_lower_hex(words[5], kPeerProofBytes)) {
    return Result<RemovalNotice>(
        Status(StatusCode::kProtocol, "PEER <id> REMOVED <id> <index> <64 lowercase hex digits> expected"));
  }
  if (!same_mac(secret, removal_notice_mac(secret, *from, *removed, *index), words[5])) {
    return Result<RemovalNotice>(Status(StatusCode::kDenied, "PEER " + std::to_string(*from) +
                                                                 " REMOVED: its MAC does not match the cluster "
                                                                 "secret (or what it says was changed)"));
  }
  return Result<RemovalNotice>(RemovalNotice{.from = *from, .removed = *removed, .index = *index});
}

std::string peer_secret_challenge(ServerId leader, ServerId added, std::string_view nonce) {
  return "PEER " + std::to_string(leader) + " CHALLENGE " + std::to_string(added) + " " + std::string(nonce) + "\n";
}

std::string secret_check_message(ServerId leader, ServerId asked, ServerId answering, std::string_view nonce,
                                 std::string_view address) {
  return "netsem peer secret check v2\nproof: added server to leader\nleader " + std::to_string(leader) + "\nasked " +
         std::to_string(asked) + "\nserver " + std::to_string(answering) + "\nnonce " + std::string(nonce) +
         "\naddress " + std::string(address) + "\n";
}

std::string secret_check_proof(std::string_view secret, ServerId leader, ServerId asked, ServerId answering,
                               std::string_view nonce, std::string_view address) {
  return hmac_sha256_hex(secret, secret_check_message(leader, asked, answering, nonce, address));
}

std::string peer_secret_proof(ServerId id, std::string_view proof) {
  return "PEER " + std::to_string(id) + " PROOF " + std::string(proof) + "\n";
}

std::optional<Result<SecretChallenge>> check_secret_challenge(std::string_view line, std::string_view remote_host,
                                                              ServerId self,
                                                              const std::map<ServerId, std::string>& client_addresses) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxPeerHelloBytes || line.substr(0, 5) != "PEER ") return std::nullopt;
  const std::string_view rest = line.substr(5);
  const std::size_t space = rest.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view id_text = rest.substr(0, space);
  const std::string_view after = rest.substr(space + 1);
  if (!after.starts_with("CHALLENGE ")) {
    // The first form of 1.2's proposal, "PEER <id> <secret> CHECK <id>":
    // the secret in clear. Never answered, its secret never compared.
    const std::size_t check = after.find(" CHECK ");
    if (check == std::string_view::npos || after.substr(0, check).find(' ') != std::string_view::npos) {
      return std::nullopt;
    }
    return Result<SecretChallenge>(
        Status(StatusCode::kDenied, "PEER " + logged_id(id_text) +
                                        " <secret> CHECK: the secret check of an older netsemd, which sends the "
                                        "cluster secret in clear; not answered (upgrade the server that sent it)"));
  }
  const Result<ServerId> from = check_peer_sender(id_text, remote_host, self, client_addresses);
  if (!from) return Result<SecretChallenge>(from.status());
  const std::string_view fields = after.substr(10);
  const std::size_t gap = fields.find(' ');
  ServerId added = 0;
  const std::string_view added_text = fields.substr(0, gap);
  const auto [end, ec] = std::from_chars(added_text.data(), added_text.data() + added_text.size(), added);
  const std::string_view nonce = gap == std::string_view::npos ? std::string_view() : fields.substr(gap + 1);
  if (gap == std::string_view::npos || ec != std::errc() || end != added_text.data() + added_text.size() ||
      added == 0 || !is_lower_hex(nonce, kPeerNonceBytes)) {
    return Result<SecretChallenge>(
        Status(StatusCode::kProtocol, "PEER <id> CHALLENGE <id> <64 lowercase hex digits> expected"));
  }
  return Result<SecretChallenge>(SecretChallenge{.from = *from, .added = added, .nonce = std::string(nonce)});
}

Result<ServerId> verify_secret_proof(std::string_view line, std::string_view secret, ServerId leader, ServerId asked,
                                     std::string_view nonce, std::string_view address) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  constexpr std::string_view kWord = " PROOF ";
  const std::size_t word = line.find(kWord);
  ServerId id = 0;
  const std::string_view id_text =
      word == std::string_view::npos || word < 5 ? std::string_view() : line.substr(5, word - 5);
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  const std::string_view given = word == std::string_view::npos ? std::string_view() : line.substr(word + kWord.size());
  if (!line.starts_with("PEER ") || id_text.empty() || ec != std::errc() || end != id_text.data() + id_text.size() ||
      id == 0 || !is_lower_hex(given, kPeerProofBytes)) {
    return Status(StatusCode::kProtocol, "not PEER <id> PROOF <64 lowercase hex digits>");
  }
  if (!same_mac(secret, secret_check_proof(secret, leader, asked, id, nonce, address), given)) {
    return Status(StatusCode::kDenied, "server " + std::to_string(id) + "'s proof does not match the cluster secret");
  }
  return id;
}

std::string frame_entry(std::string_view entry) {
  std::string out(4, '\0');
  const auto n = static_cast<std::uint32_t>(entry.size());
  for (int i = 0; i < 4; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.append(entry);
  return out;
}

Result<std::optional<std::string>> PeerFrameDecoder::next() {
  const std::size_t available = buffer_.size() - consumed_;
  if (available < 4) return std::optional<std::string>();
  std::uint32_t n = 0;
  for (int i = 3; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(buffer_[consumed_ + static_cast<std::size_t>(i)]);
  if (n == 0 || n > max_) {
    return Status(StatusCode::kProtocol, "peer link: a frame of " + std::to_string(n) + " bytes");
  }
  if (available < 4 + std::size_t{n}) return std::optional<std::string>();
  std::string entry = buffer_.substr(consumed_ + 4, n);
  consumed_ += 4 + n;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return std::optional<std::string>(std::move(entry));
}

}  // namespace netsem::cluster
