// LineFramer (line_framer.h): memchr over a bounded window, so a peer that
// streams megabytes without a "\n" costs one window, not a rescan per read.
#include "protocol/line_framer.h"

#include <algorithm>
#include <cstring>

namespace netsem::protocol {

LineFramer::Status LineFramer::next(std::string_view& line) {
  const char* const begin = buffer_.data() + consumed_;
  const std::size_t pending = buffer_.size() - consumed_;
  // A line may hold kMaxLineBytes plus "\r\n"; looking further for the "\n"
  // is pointless, so a peer streaming megabytes without one costs one window.
  const std::size_t window = std::min(pending, kMaxLineBytes + 2);
  const char* const from = begin + scanned_;
  const std::size_t unscanned = window > scanned_ ? window - scanned_ : 0;
  const auto* newline = static_cast<const char*>(std::memchr(from, '\n', unscanned));
  const std::size_t searched = newline != nullptr ? static_cast<std::size_t>(newline - from) : unscanned;
  if (std::memchr(from, '\0', searched) != nullptr) return Status::kNul;

  if (newline == nullptr) {
    scanned_ = window;
    // The last byte may be the "\r" of a "\r\n" that completes a line of
    // exactly kMaxLineBytes, so it only counts once the next byte is known.
    if (pending > kMaxLineBytes + 1 || (pending == kMaxLineBytes + 1 && begin[kMaxLineBytes] != '\r')) {
      return Status::kLineTooLong;
    }
    return Status::kNeedMore;
  }

  std::size_t length = static_cast<std::size_t>(newline - begin);
  const std::size_t next_line = consumed_ + length + 1;
  if (length > 0 && begin[length - 1] == '\r') --length;
  if (length > kMaxLineBytes) return Status::kLineTooLong;
  line = std::string_view(begin, length);
  consumed_ = next_line;
  scanned_ = 0;
  return Status::kLine;
}

LineFramer::Status LineFramer::next_from(std::string_view& input, std::string_view& line) {
  if (pending_bytes() == 0) {
    compact();
    const std::size_t window = std::min(input.size(), kMaxLineBytes + 2);
    const auto* newline = static_cast<const char*>(std::memchr(input.data(), '\n', window));
    if (newline != nullptr) {
      const auto length = static_cast<std::size_t>(newline - input.data());
      if (std::memchr(input.data(), '\0', length) != nullptr) return Status::kNul;
      line = input.substr(0, length);
      input.remove_prefix(length + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      return line.size() > kMaxLineBytes ? Status::kLineTooLong : Status::kLine;
    }
  }
  // A line that spans reads is gathered here, up to its "\n" only, so the
  // lines after it are again taken straight from `input`.
  const auto* newline = static_cast<const char*>(std::memchr(input.data(), '\n', input.size()));
  const std::size_t take = newline != nullptr ? static_cast<std::size_t>(newline - input.data()) + 1 : input.size();
  buffer_.append(input.data(), take);
  input.remove_prefix(take);
  return next(line);
}

void LineFramer::compact() {
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
  } else if (consumed_ > 0) {
    buffer_.erase(0, consumed_);
  }
  consumed_ = 0;
}

}  // namespace netsem::protocol
