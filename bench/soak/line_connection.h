// LineConnection: a minimal protocol v1 connection over a raw TCP socket,
// for the soak's raw workers and its driver. It sends request lines and reads
// answer lines, never waiting past a deadline, and can drop itself
// (shutdown + close) at any moment: something libnetsem's Client, which owns
// its socket, cannot be asked to do. It knows no verbs: callers write the
// lines and split the answers (split_fields).
//
// Thread safety: one owner; move-only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace netsem::soak {

class LineConnection {
 public:
  enum class ReadStatus { kLine, kTimeout, kClosed };

  LineConnection() = default;
  ~LineConnection() { close(); }
  LineConnection(LineConnection&& other) noexcept;
  LineConnection& operator=(LineConnection&& other) noexcept;
  LineConnection(const LineConnection&) = delete;
  LineConnection& operator=(const LineConnection&) = delete;

  // Connects to `address`:`port` (IPv4 literal) unless `deadline_ns`
  // (monotonic_ns) passes first. False when refused, timed out or failed.
  bool connect(const std::string& address, std::uint16_t port, std::int64_t deadline_ns);
  bool is_open() const { return fd_ >= 0; }

  // Writes `line` and a "\n". False (and closed) when the connection broke
  // or would not take the line before `deadline_ns`.
  bool send(std::string_view line, std::int64_t deadline_ns);
  // Writes `bytes` as they are (whole lines from the codec's encoders,
  // protocol/requests.h), with send()'s deadline and result.
  bool write(std::string_view bytes, std::int64_t deadline_ns);
  // The next line without its "\n" (kLine), nothing before `deadline_ns`
  // (kTimeout), or end of input / an error (kClosed: the connection is
  // closed). A deadline in the past only looks at what has arrived.
  ReadStatus read_line(std::string& line, std::int64_t deadline_ns);
  // Whether the server ended the connection (EOF or an error is readable),
  // without consuming a line; used while holding a permit.
  bool peer_closed();

  // The drop the soak injects: shutdown(SHUT_RDWR) then close.
  void drop();
  void close();

 private:
  void close_socket();

  int fd_ = -1;
  std::string buffer_;  // read but not yet returned
};

// Splits an answer line on single spaces.
std::vector<std::string_view> split_fields(std::string_view line);

}  // namespace netsem::soak
