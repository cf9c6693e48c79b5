// The ACE network-semaphore wire protocol, which netsemd speaks on the same
// port for ACE's unmodified Python client (see docs/protocol.md, "ACE").
//
// The client sends `acquire:<name>|`, later `wait|` keep-alives and finally
// `release|`; the server sends `wait|` while the request is queued, `locked|`
// on grant and `ok|` after a release. Tokens end with `|` and may arrive
// several per read or split across reads. This file only splits and checks
// tokens; the session decides what they mean. No I/O, no state shared.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace netsem::protocol {

// What a connection must start with to speak ACE.
inline constexpr std::string_view kAcePrefix = "acquire:";
inline constexpr std::string_view kAceWait = "wait|";
inline constexpr std::string_view kAceLocked = "locked|";
inline constexpr std::string_view kAceOk = "ok|";

// Tells, from the first bytes of a connection, which protocol it speaks.
enum class Dialect : std::uint8_t { kUndecided, kV1, kAce };
Dialect detect_dialect(std::string_view first_bytes);

class AceParser {
 public:
  enum class Token : std::uint8_t {
    kNeedMore,  // no complete token buffered
    kAcquire,   // `acquire:<name>|`; name() holds the name
    kWait,      // `wait|`
    kRelease,   // `release|`
    kBad,       // anything else, or a name that is not 1-255 bytes of printable ASCII
                // or starts with `$` (host-local names, BAD_NAME in v1): close silently
  };

  // The buffer to append read bytes to.
  std::string& buffer() { return buffer_; }
  // The next complete token. After kBad the parser stays bad. kBad comes as
  // soon as the buffered bytes cannot begin a valid token (a name past 255
  // bytes included), without waiting for a `|`. One "\n" right after an
  // acquire token is skipped, as ACE's own server does (`nc` sends one).
  Token next();
  // The name of the last kAcquire token (valid until the next call to next()).
  std::string_view name() const { return name_; }

 private:
  std::string buffer_;
  std::size_t consumed_ = 0;
  std::string name_;
  bool bad_ = false;
  bool after_acquire_ = false;  // the next byte, if "\n", is skipped
};

}  // namespace netsem::protocol
