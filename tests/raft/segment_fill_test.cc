// ZeroFilledSegments (src/raft/segment_fill.h): posix_fallocate in a
// registered directory leaves written extents (no unwritten ones, as FIEMAP
// reports them) and zeros; elsewhere, on a file that has data, or once the
// registration is gone, it is the C library's; a RaftNode's open segments
// are written extents; tmpfs is not filled; the executable's definition is
// the one found. On a file system without unwritten extents (tmpfs)
// the cases skip: there is nothing to tell apart.
#include "raft/segment_fill.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "raft/log_machine.h"
#include "raft/raft_node.h"
#include "support/captured_log.h"
#include "support/free_port.h"

namespace netsem::raft {
namespace {

constexpr off_t kSize = 1 << 20;

// The unwritten extents of the file at `path` (FIEMAP), or -1 when the file
// system does not map its extents.
int unwritten_extents(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  constexpr unsigned kMax = 256;
  std::vector<char> buffer(sizeof(fiemap) + kMax * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buffer.data());
  map->fm_start = 0;
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kMax;
  const int rv = ::ioctl(fd, FS_IOC_FIEMAP, map);
  ::close(fd);
  if (rv != 0) return -1;
  int unwritten = 0;
  for (unsigned i = 0; i < map->fm_mapped_extents; ++i) {
    unwritten += (map->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) != 0;
  }
  return unwritten;
}

// Creates `path` as libraft creates a segment (O_EXCL, O_DSYNC) and
// allocates kSize bytes of it; the call's result.
int allocate_new(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DSYNC, 0600);
  if (fd < 0) return errno;
  const int rv = ::posix_fallocate(fd, 0, kSize);
  ::close(fd);
  return rv;
}

class ZeroFilledSegmentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (std::string* dir : {&registered_, &other_}) {
      char tmpl[] = "/tmp/netsem-segfill-XXXXXX";
      ASSERT_NE(::mkdtemp(tmpl), nullptr);
      *dir = tmpl;
    }
    // The control: a plain posix_fallocate here leaves unwritten extents,
    // or this file system has none to avoid.
    ASSERT_EQ(allocate_new(other_ + "/control"), 0);
    const int unwritten = unwritten_extents(other_ + "/control");
    if (unwritten <= 0) GTEST_SKIP() << "the file system of /tmp leaves no unwritten extents: nothing to tell apart";
  }
  void TearDown() override {
    std::filesystem::remove_all(registered_);
    std::filesystem::remove_all(other_);
  }
  std::string registered_, other_;
};

// The executable's posix_fallocate is the one libraft.so calls (what
// RaftNode checks before it warns).
TEST(ZeroFilledSegments, ThisExecutablesPosixFallocateIsTheOneFound) {
  EXPECT_TRUE(ZeroFilledSegments::interposed());
}

// On tmpfs the fill is skipped (nothing to convert there).
TEST(ZeroFilledSegments, ATmpfsDirectoryIsNotFilled) {
  struct statfs fs {};
  if (::statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994) GTEST_SKIP() << "/dev/shm is no tmpfs here";
  char tmpl[] = "/dev/shm/netsem-segfill-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const unsigned long before = ZeroFilledSegments::files_filled();
  {
    ZeroFilledSegments filled(dir);
    EXPECT_EQ(allocate_new(dir + "/open-1"), 0);
  }
  EXPECT_EQ(ZeroFilledSegments::files_filled(), before);
  EXPECT_EQ(std::filesystem::file_size(dir + "/open-1"), static_cast<std::uintmax_t>(kSize));
  std::filesystem::remove_all(dir);
}

// A segment that cannot be allocated for lack of space (a 256 KiB tmpfs;
// mounting needs root: skipped, saying so, without it) is counted and
// logged: a warning naming the directory and what it means, once per
// window (a second refusal in it is counted, not logged), and nothing for
// a directory not registered. libraft 0.15 says nothing when it fails to
// prepare a segment ahead (audit27 1e).
TEST(ZeroFilledSegments, AnAllocationRefusedForLackOfSpaceIsLoggedOnceAWindowAndCounted) {
  char tmpl[] = "/tmp/netsem-segfill-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  if (::geteuid() != 0 || ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=256k") != 0) {
    const int error = errno;
    std::filesystem::remove_all(dir);
    GTEST_SKIP() << "cannot mount a tmpfs of 256 KiB (needs root): " << std::strerror(error);
  }
  const std::string registered = dir + "/raft";
  const std::string other = dir + "/other";
  std::filesystem::create_directories(registered);
  std::filesystem::create_directories(other);
  const unsigned long before = ZeroFilledSegments::no_space();
  std::string said;
  {
    ::test_support::CapturedLog log;
    ZeroFilledSegments filled(registered);
    EXPECT_EQ(allocate_new(other + "/open-1"), ENOSPC);
    EXPECT_EQ(ZeroFilledSegments::no_space(), before) << "another directory's";
    EXPECT_EQ(allocate_new(registered + "/open-1"), ENOSPC);
    EXPECT_EQ(allocate_new(registered + "/open-2"), ENOSPC);
    said = log.text();
  }
  ::umount2(dir.c_str(), MNT_DETACH);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(ZeroFilledSegments::no_space(), before + 2);
  const std::string line = "warning raft: no space left in " + registered +
                           " for the next segment of the Raft log (open-1, " + std::to_string(kSize) + " bytes): ";
  EXPECT_NE(said.find(line), std::string::npos) << said;
  EXPECT_NE(said.find("this server stops (exit 3), taking no more entries. Free space on that disk"), std::string::npos)
      << said;
  EXPECT_EQ(said.find("open-2"), std::string::npos) << "logged twice in a window\n" << said;
  EXPECT_EQ(said.find(other), std::string::npos) << said;
}

TEST_F(ZeroFilledSegmentsTest, ANewFileInARegisteredDirectoryIsWrittenWithZeros) {
  const unsigned long before = ZeroFilledSegments::files_filled();
  {
    ZeroFilledSegments filled(registered_ + "/");  // a trailing slash is the same directory
    ASSERT_EQ(allocate_new(registered_ + "/open-1"), 0);
    ASSERT_EQ(allocate_new(other_ + "/open-1"), 0);
  }
  EXPECT_EQ(unwritten_extents(registered_ + "/open-1"), 0);
  EXPECT_GT(unwritten_extents(other_ + "/open-1"), 0) << "another directory's file is the C library's";
  EXPECT_EQ(ZeroFilledSegments::files_filled(), before + 1);
  EXPECT_EQ(std::filesystem::file_size(registered_ + "/open-1"), static_cast<std::uintmax_t>(kSize));
  const int fd = ::open((registered_ + "/open-1").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::vector<char> bytes(kSize, 'x');
  EXPECT_EQ(::pread(fd, bytes.data(), bytes.size(), 0), kSize);
  ::close(fd);
  EXPECT_EQ(std::count(bytes.begin(), bytes.end(), '\0'), kSize);
}

TEST_F(ZeroFilledSegmentsTest, AFileWithDataAndAnOffsetAreTheCLibrarys) {
  ZeroFilledSegments filled(registered_);
  const std::string path = registered_ + "/has-data";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "data", 4), 4);
  EXPECT_EQ(::posix_fallocate(fd, 0, kSize), 0);
  char head[4] = {};
  EXPECT_EQ(::pread(fd, head, 4, 0), 4);
  EXPECT_EQ(std::string(head, 4), "data");
  ::close(fd);
  EXPECT_GT(unwritten_extents(path), 0);

  const std::string offset = registered_ + "/offset";
  const int fd2 = ::open(offset.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd2, 0);
  EXPECT_EQ(::posix_fallocate(fd2, 4096, kSize), 0);
  ::close(fd2);
  EXPECT_GT(unwritten_extents(offset), 0);
}

TEST_F(ZeroFilledSegmentsTest, RegistrationsNestAndEnd) {
  auto outer = std::make_unique<ZeroFilledSegments>(registered_);
  { ZeroFilledSegments inner(registered_); }
  ASSERT_EQ(allocate_new(registered_ + "/still"), 0);
  EXPECT_EQ(unwritten_extents(registered_ + "/still"), 0) << "one registration is left";
  outer.reset();
  ASSERT_EQ(allocate_new(registered_ + "/after"), 0);
  EXPECT_GT(unwritten_extents(registered_ + "/after"), 0) << "no registration is left";
}

TEST_F(ZeroFilledSegmentsTest, ARaftNodesOpenSegmentsAreWrittenExtents) {
  testing::LogMachine machine;
  RaftOptions o;
  o.id = 1;
  o.address = "127.0.0.1:" + std::to_string(test_support::free_port_below_ephemeral());
  o.data_dir = registered_;
  o.bootstrap = {{1, o.address, ServerRole::kVoter}};
  o.election_timeout = std::chrono::milliseconds(200);
  o.heartbeat_timeout = std::chrono::milliseconds(20);
  auto node = RaftNode::start(o, machine);
  ASSERT_TRUE(node) << node.status().to_string();
  bool led = false;
  for (int i = 0; i < 250 && !led; ++i) {
    led = (*node)->status().role == Role::kLeader;
    if (!led) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(led);
  std::promise<Result<std::string>> done;
  (*node)->propose("p:one", [&done](Result<std::string> r) { done.set_value(std::move(r)); });
  auto answered = done.get_future();
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(answered.get());
  // libraft prepares the next segments ahead, in its thread pool: each is
  // written with zeros right after its allocation; wait for the last.
  std::vector<std::string> unwritten;
  std::size_t segments = 0;
  for (int i = 0; i < 100; ++i) {
    unwritten.clear();
    segments = 0;
    for (const auto& entry : std::filesystem::directory_iterator(registered_)) {
      if (!entry.path().filename().string().starts_with("open-")) continue;
      ++segments;
      if (unwritten_extents(entry.path().string()) != 0) unwritten.push_back(entry.path().string());
    }
    if (segments > 0 && unwritten.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(segments, 0u);
  EXPECT_EQ(unwritten, std::vector<std::string>{}) << "open segments with unwritten extents after 5 s";
  (*node)->stop();
}

}  // namespace
}  // namespace netsem::raft
