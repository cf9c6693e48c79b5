// The line framer of protocol v1: a byte stream to lines ended by "\n", with
// the contract's limits (4096 bytes, no NUL) enforced on sight. The server
// frames requests with it, the client answers.
//
// One framer per connection; not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/fields.h"

namespace netsem::protocol {

// Splits a byte stream into lines ended by "\n" (a "\r" before it dropped).
// The caller appends what it read to `buffer()`, then calls next() until it
// returns kNeedMore, then compact().
class LineFramer {
 public:
  enum class Status : std::uint8_t {
    kLine,         // `line` holds one line without its terminator
    kNeedMore,     // no complete line buffered
    kLineTooLong,  // more than kMaxLineBytes before a "\n": close the session
                   // (reported once the bytes buffered show it, without the "\n";
                   // a line of exactly kMaxLineBytes may still end in "\r\n")
    kNul,          // a NUL byte in a line: close the session (reported on sight)
  };

  // The buffer to append read bytes to.
  std::string& buffer() { return buffer_; }
  // REQUIRES: the previous line returned by next() is no longer used.
  Status next(std::string_view& line);
  // The same framing straight from a read buffer the caller owns: a line
  // wholly inside `input` is returned as a view into it, copying nothing;
  // only a line that spans reads is gathered in the framer. Consumes from
  // `input` what it returns (and, on kNeedMore, all of it). Do not mix with
  // buffer()/next() on the same framer.
  // REQUIRES: the previous line returned is no longer used.
  Status next_from(std::string_view& input, std::string_view& line);
  // Drops the lines consumed so far; call after next() returned kNeedMore.
  void compact();
  // Bytes buffered but not yet returned as lines.
  std::size_t pending_bytes() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  std::size_t consumed_ = 0;
  std::size_t scanned_ = 0;  // bytes after consumed_ known to hold no "\n"
};

}  // namespace netsem::protocol
