// The peer link's wire format (protocol/peer_frames.h): the hello line
// round-trips and anything else is refused; frames come out whole whatever
// the reads cut them into, and a zero or oversized length is refused before
// anything is buffered for it.
#include "protocol/peer_frames.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace netsem::protocol {
namespace {

TEST(PeerFrames, HelloRoundTrips) {
  const std::string line = encode_peer_hello(3, "0123456789abcdef");
  EXPECT_EQ(line, "PEER 3 0123456789abcdef\n");
  auto hello = parse_peer_hello(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(hello) << hello.status().to_string();
  EXPECT_EQ(hello->id, 3u);
  EXPECT_EQ(hello->secret, "0123456789abcdef");
}

TEST(PeerFrames, RefusesEveryOtherHello) {
  for (const std::string_view line :
       {"PEER", "PEER ", "PEER 3", "PEER 3 ", "PEER 0 s", "PEER 03 s", "PEER x s", "PEER 3 two words", "peer 3 s",
        "PEERS 3 s", "a ACQUIRE x", "PEER 9007199254740993 s", "PEER 3 s\x01"}) {
    auto hello = parse_peer_hello(line);
    ASSERT_FALSE(hello) << line;
    EXPECT_EQ(hello.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(PeerFrames, FramesComeOutWholeWhateverTheReads) {
  const std::vector<std::string> payloads = {"NSRE-one", std::string(70000, 'x'), "3"};
  std::string stream;
  for (const auto& p : payloads) append_peer_frame(stream, p);
  for (const std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{4096}, stream.size()}) {
    PeerFrameReader reader;
    std::vector<std::string> out;
    for (std::size_t at = 0; at < stream.size(); at += chunk) {
      reader.add(std::string_view(stream).substr(at, chunk));
      std::string_view frame;
      PeerFrameReader::Status status;
      while ((status = reader.next(frame)) == PeerFrameReader::Status::kFrame) out.emplace_back(frame);
      ASSERT_EQ(status, PeerFrameReader::Status::kNeedMore);
    }
    EXPECT_EQ(out, payloads) << "reads of " << chunk;
    EXPECT_EQ(reader.buffered(), 0u);
  }
}

TEST(PeerFrames, RefusesAZeroOrOversizedLength) {
  PeerFrameReader zero;
  zero.add(std::string("\0\0\0\0", 4));
  std::string_view frame;
  EXPECT_EQ(zero.next(frame), PeerFrameReader::Status::kBadFrame);
  PeerFrameReader huge;
  const std::uint32_t size = kMaxPeerFrameBytes + 1;
  std::string bytes;
  for (int i = 0; i < 4; ++i) bytes += static_cast<char>((size >> (8 * i)) & 0xff);
  huge.add(bytes);
  EXPECT_EQ(huge.next(frame), PeerFrameReader::Status::kBadFrame);  // refused at the length, before its bytes
}

}  // namespace
}  // namespace netsem::protocol
