// The peer link (peer_link.h): the hello line, the framing, and both ends
// over Asio. A link's state lives in a shared Link that its handlers hold,
// so a client closed (or destroyed) while an operation is in flight leaves
// handlers that find the link dead and do nothing.
#include "cluster/peer_link.h"

#include "common/text.h"

#include <spdlog/spdlog.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
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

// --- the sealing of the frames ---

std::string peer_link_key_message(LinkSide sender, ServerId linking, ServerId receiving, std::string_view linking_nonce,
                                  std::string_view receiving_nonce) {
  return std::string("netsem peer link key v1\nframes: ") +
         (sender == LinkSide::kLinking ? "linking server to receiving server" : "receiving server to linking server") +
         "\nlinking server " + std::to_string(linking) + "\nreceiving server " + std::to_string(receiving) +
         "\nlinking nonce " + std::string(linking_nonce) + "\nreceiving nonce " + std::string(receiving_nonce) + "\n";
}

PeerLinkKey peer_link_key(std::string_view secret, LinkSide sender, ServerId linking, ServerId receiving,
                          std::string_view linking_nonce, std::string_view receiving_nonce) {
  PeerLinkKey key{};
  const std::string message = peer_link_key_message(sender, linking, receiving, linking_nonce, receiving_nonce);
  unsigned int size = 0;
  if (secret.empty() ||
      HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), key.data(), &size) == nullptr ||
      size != key.size()) {
    key.fill(0);
  }
  return key;
}

namespace {

constexpr std::size_t kGcmNonceBytes = 12;

EVP_CIPHER_CTX* cipher_context(void* context) {
  return static_cast<EVP_CIPHER_CTX*>(context);
}

// The frame's length field (u32, little-endian) for a body of `n` bytes.
std::array<unsigned char, 4> length_field(std::size_t n) {
  std::array<unsigned char, 4> field{};
  for (std::size_t i = 0; i < 4; ++i) field[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
  return field;
}

}  // namespace

PeerFrameCipher::PeerFrameCipher(Mode mode, const PeerLinkKey& key) : mode_(mode) {
  EVP_CIPHER_CTX* context = EVP_CIPHER_CTX_new();
  context_ = context;
  const bool keyed = std::any_of(key.begin(), key.end(), [](unsigned char b) { return b != 0; });
  // The key is set once; each frame sets only its nonce (set_nonce).
  const int ok = context == nullptr || !keyed ? 0
                 : mode == Mode::kSeal ? EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nullptr, key.data(), nullptr)
                                       : EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nullptr, key.data(), nullptr);
  broken_ = ok != 1 || EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, kGcmNonceBytes, nullptr) != 1;
}

PeerFrameCipher::~PeerFrameCipher() {
  EVP_CIPHER_CTX_free(cipher_context(context_));
}

void PeerFrameCipher::set_nonce(std::uint64_t sequence) {
  std::array<unsigned char, kGcmNonceBytes> nonce{};
  for (std::size_t i = 0; i < 8; ++i) nonce[4 + i] = static_cast<unsigned char>((sequence >> (8 * (7 - i))) & 0xff);
  EVP_CIPHER_CTX* context = cipher_context(context_);
  const int ok = mode_ == Mode::kSeal ? EVP_EncryptInit_ex(context, nullptr, nullptr, nullptr, nonce.data())
                                      : EVP_DecryptInit_ex(context, nullptr, nullptr, nullptr, nonce.data());
  if (ok != 1) broken_ = true;
}

Result<std::string> PeerFrameCipher::seal(std::string_view entry) {
  if (mode_ != Mode::kSeal || entry.empty() || entry.size() > kMaxPeerFrameBytes) {
    return Status(StatusCode::kInternal, "peer link: no frame of " + std::to_string(entry.size()) + " bytes");
  }
  // The counter never wraps: a nonce would repeat under this key.
  if (next_ == std::numeric_limits<std::uint64_t>::max()) broken_ = true;
  if (!broken_) set_nonce(next_);
  if (broken_) return Status(StatusCode::kInternal, "peer link: the frames cannot be sealed (OpenSSL)");
  EVP_CIPHER_CTX* context = cipher_context(context_);
  const std::size_t body = entry.size() + kPeerTagBytes;
  const std::array<unsigned char, 4> field = length_field(body);
  std::string frame(4 + body, '\0');
  std::memcpy(frame.data(), field.data(), field.size());
  auto* out = reinterpret_cast<unsigned char*>(frame.data() + 4);
  int n = 0;
  int last = 0;
  const bool sealed = EVP_EncryptUpdate(context, nullptr, &n, field.data(), static_cast<int>(field.size())) == 1 &&
                      EVP_EncryptUpdate(context, out, &n, reinterpret_cast<const unsigned char*>(entry.data()),
                                        static_cast<int>(entry.size())) == 1 &&
                      static_cast<std::size_t>(n) == entry.size() &&
                      EVP_EncryptFinal_ex(context, out + n, &last) == 1 && last == 0 &&
                      EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, kPeerTagBytes, out + entry.size()) == 1;
  if (!sealed) {
    broken_ = true;
    return Status(StatusCode::kInternal, "peer link: a frame could not be sealed (OpenSSL)");
  }
  ++next_;
  return frame;
}

Result<std::string> PeerFrameCipher::open(std::string_view body) {
  if (mode_ != Mode::kOpen || broken_) {
    return Status(StatusCode::kInternal, "peer link: no more frames are opened on this link");
  }
  if (body.size() <= kPeerTagBytes || body.size() > kMaxSealedPeerFrameBytes) {
    broken_ = true;
    return Status(StatusCode::kProtocol, "peer link: a sealed frame of " + std::to_string(body.size()) + " bytes");
  }
  const std::uint64_t sequence = next_;
  set_nonce(sequence);
  EVP_CIPHER_CTX* context = cipher_context(context_);
  const std::size_t size = body.size() - kPeerTagBytes;
  const std::array<unsigned char, 4> field = length_field(body.size());
  std::string entry(size, '\0');
  std::array<unsigned char, kPeerTagBytes> tag{};
  std::memcpy(tag.data(), body.data() + size, tag.size());
  auto* out = reinterpret_cast<unsigned char*>(entry.data());
  int n = 0;
  int last = 0;
  const bool opened = !broken_ &&
                      EVP_DecryptUpdate(context, nullptr, &n, field.data(), static_cast<int>(field.size())) == 1 &&
                      EVP_DecryptUpdate(context, out, &n, reinterpret_cast<const unsigned char*>(body.data()),
                                        static_cast<int>(size)) == 1 &&
                      static_cast<std::size_t>(n) == size &&
                      EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, kPeerTagBytes, tag.data()) == 1 &&
                      EVP_DecryptFinal_ex(context, out + n, &last) == 1 && last == 0;
  if (!opened) {
    broken_ = true;
    return Status(StatusCode::kDenied, "peer link: frame " + std::to_string(sequence) +
                                           " does not open (altered, replayed, reordered or after a lost frame on "
                                           "the way, or sealed under another key)");
  }
  ++next_;
  return entry;
}

// --- the follower's side ---

// How long a link may take to connect before it counts as failed.
constexpr std::chrono::milliseconds kConnectTimeout{1000};
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

// --- one line alone ---

namespace {

// Opens `socket` for `address` (a numeric host:port) and binds it to this
// server's own client host `local_host`, where a peer link's hello must
// come from (the receiver checks it): the endpoint to connect to, or why
// not (send_peer_line and ask_peer_line).
Result<asio::ip::tcp::endpoint> open_from_own_host(asio::ip::tcp::socket& socket, const std::string& local_host,
                                                   const std::string& address) {
  const auto where = split_host_port(address);
  asio::error_code e;
  const asio::ip::address host = where ? asio::ip::make_address(where->first, e) : asio::ip::address();
  unsigned long port = 0;
  if (!where || e ||
      std::from_chars(where->second.data(), where->second.data() + where->second.size(), port).ec != std::errc() ||
      port < 1 || port > 65535) {
    return Status(StatusCode::kInvalidArgument, "not a numeric host:port");
  }
  const asio::ip::tcp::endpoint endpoint(host, static_cast<unsigned short>(port));
  socket.open(endpoint.protocol(), e);
  if (e) return Status(StatusCode::kIoError, e.message());
  const asio::ip::address local = asio::ip::make_address(local_host, e);
  if (!e && local.is_v4() == endpoint.address().is_v4()) {
    socket.bind(asio::ip::tcp::endpoint(local, 0), e);
    if (e) return Status(StatusCode::kIoError, "cannot bind to " + local_host + ": " + e.message());
  }
  return endpoint;
}

// How long ask_peer_line waits for the answer once connected.
constexpr std::chrono::milliseconds kAnswerTimeout{2000};

// One line sent alone on a connection of its own and, when `wants_answer`,
// one line read back: send_peer_line's and ask_peer_line's exchange.
// Failures to connect are kUnavailable, later ones kIoError.
struct LineExchange : std::enable_shared_from_this<LineExchange> {
  LineExchange(asio::io_context& io, std::string text, bool answer_wanted,
               std::function<void(Result<std::string>)> callback)
      : socket(io), timer(io), line(std::move(text)), wants_answer(answer_wanted), done(std::move(callback)) {}

  void start(const std::string& local_host, const std::string& address) {
    auto self = shared_from_this();
    const Result<asio::ip::tcp::endpoint> opened = open_from_own_host(socket, local_host, address);
    if (!opened) {
      return asio::post(socket.get_executor(), [self, why = opened.status().message()] {
        self->finish(Status(StatusCode::kUnavailable, why));
      });
    }
    timer.expires_after(kConnectTimeout);
    timer.async_wait([self](const asio::error_code& c) {
      if (c || self->connected) return;  // the answer's wait replaced it
      self->finish(Status(StatusCode::kUnavailable, "no answer to the connect within 1 s"));
    });
    socket.async_connect(*opened, [self](const asio::error_code& c) {
      if (!self->done) return;
      if (c) return self->finish(Status(StatusCode::kUnavailable, "cannot connect: " + c.message()));
      self->connected = true;
      self->timer.cancel();
      if (self->wants_answer) {
        self->timer.expires_after(kAnswerTimeout);
        self->timer.async_wait([self](const asio::error_code& t) {
          if (!t) self->finish(Status(StatusCode::kIoError, "no answer within 2 s"));
        });
      }
      asio::async_write(self->socket, asio::buffer(self->line), [self](const asio::error_code& w, std::size_t) {
        if (!self->done) return;
        if (w) return self->finish(Status(StatusCode::kIoError, "cannot write: " + w.message()));
        if (!self->wants_answer) return self->finish(std::string());
        self->read();
      });
    });
  }

  void read() {
    asio::async_read_until(
        socket, asio::dynamic_buffer(answer, kMaxPeerHelloBytes), '\n',
        [self = shared_from_this()](const asio::error_code& r, std::size_t n) {
          if (!self->done) return;
          if (r) {
            const bool closed = r == asio::error::eof || r == asio::error::connection_reset;
            return self->finish(Status(StatusCode::kIoError, closed ? "it closed the connection without a word"
                                                                    : "no answer: " + r.message()));
          }
          std::string got = self->answer.substr(0, n - 1);
          if (!got.empty() && got.back() == '\r') got.pop_back();
          self->finish(std::move(got));
        });
  }

  void finish(Result<std::string> outcome) {
    if (!done) return;
    asio::error_code ignored;
    timer.cancel();
    socket.close(ignored);
    auto callback = std::move(done);
    done = nullptr;
    callback(std::move(outcome));
  }

  asio::ip::tcp::socket socket;
  asio::steady_timer timer;
  std::string line;
  std::string answer;
  const bool wants_answer;
  std::function<void(Result<std::string>)> done;
  bool connected = false;
};

}  // namespace

void send_peer_line(asio::io_context& io, const std::string& local_host, const std::string& address, std::string line,
                    std::function<void(Status)> done) {
  std::make_shared<LineExchange>(
      io, std::move(line), false,
      [address, done = std::move(done)](Result<std::string> sent) {
        done(sent ? Status::ok()
                  : Status(StatusCode::kIoError, "to " + address + ": " + std::string(sent.status().message())));
      })
      ->start(local_host, address);
}

void ask_peer_line(asio::io_context& io, const std::string& local_host, const std::string& address, std::string line,
                   std::function<void(Result<std::string>)> done) {
  std::make_shared<LineExchange>(io, std::move(line), true, std::move(done))->start(local_host, address);
}

// --- the leader's side ---

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
