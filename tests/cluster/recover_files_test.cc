// The record netsemd --recover leaves in the Raft directory
// (src/server/recover_files.h): it reads back as written, and it decides a
// later --recover: force without a record or when the recorded force never
// reached the log, nothing while the configuration is the one recorded,
// refused (naming the record and what to do) once it changed; a record
// that does not parse refuses too.
#include "server/recover_files.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace netsem::server {
namespace {

class RecoverFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/netsem-recover-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

const std::vector<raft::ServerInfo> kThree = {
    {1, "127.0.0.1:7001", raft::ServerRole::kVoter},
    {2, "127.0.0.2:7001", raft::ServerRole::kVoter},
    {3, "127.0.0.3:7001", raft::ServerRole::kStandby},
};
const std::vector<raft::ServerInfo> kAlone = {{1, "127.0.0.1:7001", raft::ServerRole::kVoter}};

TEST_F(RecoverFiles, ARecordReadsBackAsWritten) {
  auto none = read_record(dir_);
  ASSERT_TRUE(none) << none.status().to_string();
  EXPECT_FALSE(none->has_value());
  const RecoveryRecord written = record_of(raft::RecoverPlan{kThree, 9, kAlone, 12, 5}, 1, 1000);
  ASSERT_TRUE(write_record(dir_, written));
  auto read = read_record(dir_);
  ASSERT_TRUE(read && read->has_value()) << read.status().to_string();
  const RecoveryRecord& back = **read;
  EXPECT_EQ(back.time, written.time);
  EXPECT_EQ(back.time.size(), 20u) << back.time;  // 2026-12-06T01:02:03Z
  EXPECT_EQ(back.server, 1u);
  EXPECT_EQ(back.index, 12u);
  EXPECT_EQ(back.term, 5u);
  EXPECT_EQ(back.forced, kAlone);
  ASSERT_EQ(back.replaced.size(), 3u);
  EXPECT_EQ(back.replaced[2].address, "127.0.0.3:7001");
  EXPECT_EQ(back.raise, 1000u);
  EXPECT_FALSE(std::filesystem::exists(dir_ / (std::string(kRecordFile) + ".tmp")));
}

TEST_F(RecoverFiles, ARecordDecidesALaterRecover) {
  const RecoveryRecord record = record_of(raft::RecoverPlan{kThree, 9, kAlone, 12, 5}, 1, 1000);
  // No record: force.
  auto force = decide_recover(dir_, std::nullopt, raft::RecoverPlan{kThree, 9, kAlone, 12, 5});
  ASSERT_TRUE(force);
  EXPECT_TRUE(*force);
  // The recorded force never reached the log: force.
  force = decide_recover(dir_, record, raft::RecoverPlan{kThree, 9, kAlone, 12, 5});
  ASSERT_TRUE(force);
  EXPECT_TRUE(*force);
  // The configuration is the one recorded: nothing.
  force = decide_recover(dir_, record, raft::RecoverPlan{kAlone, 12, kAlone, 40, 7});
  ASSERT_TRUE(force);
  EXPECT_FALSE(*force);
  // Servers added since: refused.
  const std::vector<raft::ServerInfo> two = {kAlone[0], {4, "127.0.0.4:7001", raft::ServerRole::kVoter}};
  force = decide_recover(dir_, record, raft::RecoverPlan{two, 30, kAlone, 40, 7});
  ASSERT_FALSE(force);
  EXPECT_EQ(force.status().code(), StatusCode::kAlreadyExists);
  const std::string path = (dir_ / kRecordFile).string();
  EXPECT_NE(force.status().message().find("--recover: this Raft directory was recovered before (" + path + ": at " +
                                          record.time + ", 1@127.0.0.1:7001 alone at index 12, term 5)"),
            std::string::npos)
      << force.status().message();
  EXPECT_NE(force.status().message().find("it is now 1@127.0.0.1:7001,4@127.0.0.4:7001 (index 30)"), std::string::npos)
      << force.status().message();
  EXPECT_NE(force.status().message().find("remove " + path + " by hand and run --recover again. Nothing was changed"),
            std::string::npos)
      << force.status().message();
  // Added and removed again: a later configuration of the same servers is a change.
  force = decide_recover(dir_, record, raft::RecoverPlan{kAlone, 31, kAlone, 40, 7});
  ASSERT_FALSE(force);
}

TEST_F(RecoverFiles, ARecordThatDoesNotParseRefuses) {
  std::ofstream(dir_ / kRecordFile) << "# a record\nindex twelve\nforced 1@127.0.0.1:7001\n";
  auto read = read_record(dir_);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.status().code(), StatusCode::kCorruption);
  EXPECT_NE(read.status().message().find("its line 'index twelve' does not parse. Nothing was changed; remove it by "
                                         "hand to recover anyway"),
            std::string::npos)
      << read.status().message();
  std::ofstream(dir_ / kRecordFile, std::ios::trunc) << "time now\n";
  read = read_record(dir_);
  ASSERT_FALSE(read);
  EXPECT_NE(read.status().message().find("it has no 'index' or no 'forced' line"), std::string::npos)
      << read.status().message();
}

}  // namespace
}  // namespace netsem::server
