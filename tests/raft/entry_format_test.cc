// The framing of batch entries and snapshots (src/raft/entry_format.h):
// round trips, and every kind of damage refused as kCorruption.
#include "raft/entry_format.h"

#include <gtest/gtest.h>

namespace netsem::raft {
namespace {

TEST(EntryFormat, BatchRoundTrip) {
  const std::vector<std::string> commands = {"a", "", std::string(1000, 'z'), std::string("\0\xff", 2)};
  std::string entry;
  encode_batch(commands, entry);
  EXPECT_EQ(entry.size(), batch_size(commands));
  EXPECT_EQ(entry.size() % 8, 0u);  // libraft's transport needs it
  auto decoded = decode_batch(entry);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  ASSERT_EQ(decoded->size(), commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) EXPECT_EQ((*decoded)[i], commands[i]);
}

TEST(EntryFormat, DamagedBatchIsRefused) {
  std::string entry;
  encode_batch({"p:one", "p:two"}, entry);
  // Every single flipped byte and every truncation is refused.
  for (std::size_t i = 0; i < entry.size(); ++i) {
    std::string bad = entry;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    auto decoded = decode_batch(bad);
    ASSERT_FALSE(decoded) << "flipped byte " << i;
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  }
  for (std::size_t n = 0; n < entry.size(); ++n) EXPECT_FALSE(decode_batch(entry.substr(0, n))) << n;
  EXPECT_FALSE(decode_batch(entry + "x"));
  EXPECT_FALSE(decode_batch(entry + std::string(8, '\0')));
}

TEST(EntryFormat, SnapshotRoundTripAndDamage) {
  for (const std::string& payload : {std::string(), std::string("state"), std::string(100000, 's')}) {
    const std::string framed = encode_snapshot(payload);
    auto decoded = decode_snapshot(framed);
    ASSERT_TRUE(decoded) << decoded.status().to_string();
    EXPECT_EQ(*decoded, payload);
  }
  const std::string framed = encode_snapshot("some state");
  for (std::size_t i = 0; i < framed.size(); ++i) {
    std::string bad = framed;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    auto decoded = decode_snapshot(bad);
    ASSERT_FALSE(decoded) << "flipped byte " << i;
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  }
  EXPECT_FALSE(decode_snapshot(framed.substr(0, framed.size() - 1)));
}

}  // namespace
}  // namespace netsem::raft
