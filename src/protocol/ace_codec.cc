// The ACE dialect: telling it from protocol v1 by a connection's first bytes,
// and splitting what an ACE client sends into `|`-terminated tokens. ACE's
// own server is looser in places (it reads one recv() at a time and accepts
// `release` anywhere in a read); netsem follows the contract instead: whole
// tokens, reassembled across reads, and anything unexpected closes.
#include "protocol/ace_codec.h"

#include "protocol/names.h"

namespace netsem::protocol {
namespace {

constexpr std::string_view kWaitWord = "wait";
constexpr std::string_view kReleaseWord = "release";

bool is_ace_name_byte(char c) {
  return c >= 0x20 && c <= 0x7e && c != '|';
}

// Whether a name (or the start of one still arriving) breaks no rule a
// longer or complete name would also break.
bool is_ace_name_prefix(std::string_view name) {
  if (name.size() > kMaxNameBytes) return false;
  if (!name.empty() && name.front() == '$') return false;
  for (const char c : name) {
    if (!is_ace_name_byte(c)) return false;
  }
  return true;
}

// Whether `partial` (no `|` in it) can still grow into a valid token.
bool is_token_prefix(std::string_view partial) {
  if (kWaitWord.starts_with(partial) || kReleaseWord.starts_with(partial)) return true;
  if (partial.size() < kAcePrefix.size()) return kAcePrefix.starts_with(partial);
  return partial.starts_with(kAcePrefix) && is_ace_name_prefix(partial.substr(kAcePrefix.size()));
}

}  // namespace

Dialect detect_dialect(std::string_view first_bytes) {
  if (first_bytes.starts_with(kAcePrefix)) return Dialect::kAce;
  if (kAcePrefix.starts_with(first_bytes)) return Dialect::kUndecided;
  return Dialect::kV1;
}

AceParser::Token AceParser::next() {
  if (bad_) return Token::kBad;
  std::string_view pending = std::string_view(buffer_).substr(consumed_);
  if (after_acquire_ && !pending.empty()) {
    after_acquire_ = false;
    if (pending.front() == '\n') {
      ++consumed_;
      pending.remove_prefix(1);
    }
  }

  const std::size_t bar = pending.find('|');
  if (bar == std::string_view::npos) {
    if (!is_token_prefix(pending)) {
      bad_ = true;
      return Token::kBad;
    }
    // Only a partial token is left: drop what was consumed so the buffer
    // never holds more than one token's worth.
    if (consumed_ == buffer_.size()) {
      buffer_.clear();
    } else {
      buffer_.erase(0, consumed_);
    }
    consumed_ = 0;
    return Token::kNeedMore;
  }

  const std::string_view token = pending.substr(0, bar);
  consumed_ += bar + 1;
  if (token == kWaitWord) return Token::kWait;
  if (token == kReleaseWord) return Token::kRelease;
  if (token.starts_with(kAcePrefix)) {
    const std::string_view name = token.substr(kAcePrefix.size());
    if (!name.empty() && is_ace_name_prefix(name)) {
      name_.assign(name);
      after_acquire_ = true;
      return Token::kAcquire;
    }
  }
  bad_ = true;
  return Token::kBad;
}

}  // namespace netsem::protocol
