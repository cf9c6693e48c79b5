// The [tokens] and [tls_subjects] lines, token hashes, and the private-file
// check of tokens_file and token_file.
#include "auth/auth_tables.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "auth/token_hash.h"
#include "common/private_file.h"

namespace netsem::auth {
namespace {

TEST(TokenHash, RoundTripAndSalted) {
  auto first = hash_token("s3cret-token", HashCost::kMinimum);
  auto second = hash_token("s3cret-token", HashCost::kMinimum);
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_TRUE(first->starts_with("$argon2id$")) << *first;
  EXPECT_NE(*first, *second);  // salted
  EXPECT_TRUE(verify_token(*first, "s3cret-token"));
  EXPECT_TRUE(verify_token(*second, "s3cret-token"));
  EXPECT_FALSE(verify_token(*first, "s3cret-tokem"));
  EXPECT_TRUE(is_token_hash(*first));
  EXPECT_FALSE(is_token_hash("s3cret-token"));
  EXPECT_FALSE(is_token_hash("$argon2id$garbage"));
}

TEST(TokenHash, InteractiveCostIsWhatHashTokenMakes) {
  auto hash = hash_token("abc");
  ASSERT_TRUE(hash.has_value());
  EXPECT_NE(hash->find("m=65536"), std::string::npos) << *hash;
  EXPECT_TRUE(verify_token(*hash, "abc"));
}

TEST(TokenHash, InvalidTokensAreRefused) {
  EXPECT_FALSE(check_token(""));
  EXPECT_FALSE(check_token("a b"));
  EXPECT_FALSE(check_token("tab\t"));
  EXPECT_FALSE(check_token(std::string(257, 'x')));
  EXPECT_TRUE(check_token(std::string(256, 'x')));
  EXPECT_FALSE(hash_token("a b", HashCost::kMinimum).has_value());
}

TEST(AuthTables, TokenLine) {
  const std::string hash = hash_token("t", HashCost::kMinimum).value();
  auto entry = parse_token_line("ci-runner", hash + " acquire,read jobs/");
  ASSERT_TRUE(entry.has_value()) << entry.status().message();
  EXPECT_EQ(entry->name, "ci-runner");
  EXPECT_EQ(entry->hash, hash);
  EXPECT_TRUE(entry->rights.allows(Right::kAcquire, "jobs/1"));
  EXPECT_FALSE(entry->rights.allows(Right::kAcquire, "prod"));

  EXPECT_FALSE(parse_token_line("bad name", hash + " read").has_value());
  EXPECT_FALSE(parse_token_line("x", hash).has_value());
  auto plain = parse_token_line("x", "hunter2 read");
  ASSERT_FALSE(plain.has_value());
  EXPECT_NE(plain.status().message().find("netsemd --hash-token"), std::string::npos);
  EXPECT_FALSE(parse_token_line("x", hash + " rd").has_value());
}

TEST(AuthTables, SubjectLineIsPercentDecoded) {
  auto entry = parse_subject_line("CN%3Dworker-1,O%3DAcme", "acquire jobs/");
  ASSERT_TRUE(entry.has_value()) << entry.status().message();
  EXPECT_EQ(entry->subject, "CN=worker-1,O=Acme");
  AuthTables tables;
  EXPECT_FALSE(tables.required());
  tables.subjects.push_back(*entry);
  EXPECT_TRUE(tables.required());
  ASSERT_NE(tables.find_subject("CN=worker-1,O=Acme"), nullptr);
  EXPECT_EQ(tables.find_subject("CN=worker-2,O=Acme"), nullptr);
  EXPECT_FALSE(parse_subject_line("worker", "acquire").has_value());  // no `=`: not a subject
}

class PrivateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/netsem-private-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/secret";
    std::ofstream(path_) << "content\n";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
  std::string path_;
};

TEST_F(PrivateFileTest, OwnerOnlyIsRead) {
  ASSERT_EQ(::chmod(path_.c_str(), 0600), 0);
  auto content = read_private_file(path_);
  ASSERT_TRUE(content.has_value()) << content.status().message();
  EXPECT_EQ(*content, "content\n");
  ASSERT_EQ(::chmod(path_.c_str(), 0400), 0);
  EXPECT_TRUE(read_private_file(path_).has_value());
}

TEST_F(PrivateFileTest, ReadableOrWritableByOthersIsRefused) {
  for (mode_t mode : {0644, 0640, 0604, 0620, 0602}) {
    ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
    auto content = read_private_file(path_);
    ASSERT_FALSE(content.has_value()) << std::oct << mode;
    EXPECT_EQ(content.status().code(), StatusCode::kDenied);
    EXPECT_NE(content.status().message().find("chmod 600"), std::string::npos) << content.status().message();
  }
}

TEST_F(PrivateFileTest, MissingFileAndDirectoryAreIoErrors) {
  EXPECT_EQ(read_private_file(dir_ + "/absent").status().code(), StatusCode::kIoError);
  EXPECT_EQ(read_private_file(dir_).status().code(), StatusCode::kIoError);
}

}  // namespace
}  // namespace netsem::auth
