// The sealing of the peer link's frames (peer_link.h: peer_link_key,
// PeerFrameCipher), with no I/O: each direction of a link has a key of its
// own, derived from the cluster secret and both sides' nonces, and every
// frame after the set-up is AES-256-GCM under it, its nonce the frame's
// number on the link and its length field authenticated.
#include "cluster/peer_link.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

namespace netsem::cluster {

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

}  // namespace netsem::cluster
