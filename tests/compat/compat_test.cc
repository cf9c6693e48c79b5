// Compatibility: this build's netsemd started on data directories an older
// netsemd wrote, as etcd, CockroachDB and PostgreSQL test theirs. The
// fixtures in tests/compat/data (README.md there) were made by
// scripts/make-compat-fixtures.sh from 270b4b4^, the last build that wrote
// entries and snapshots of version 2 (resume secrets in clear): a cluster of
// three on 127.0.29.1-3 (a Raft snapshot, entries after it, two resumable
// sessions holding a permit), a single server's snapshot and journal, and the
// same killed -9. Each NAME.expect beside its NAME.tar.gz says what the
// state held when the old build stopped. The tests check, through the
// protocol, that every value and fence is there, that the old sessions
// resume with their clear secrets, that new writes (version 3) and a restart
// after them work; and that one byte flipped in a snapshot, a closed segment
// or a journal is refused at start (exit 1, the file named), not rolled back.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

namespace fs = std::filesystem;

const fs::path kData = NETSEM_COMPAT_DATA;
// The cluster fixture's secret and addresses (scripts/make-compat-fixtures.sh):
// the Raft configuration in its log names them.
constexpr const char* kClusterSecret = "compat-fixture-cluster-secret-0123456789";
constexpr std::uint16_t kClientPort = 29559;
constexpr int kServers = 3;

// NAME.expect: `key value...` lines.
std::map<std::string, std::string> read_expect(const std::string& name) {
  std::map<std::string, std::string> out;
  std::ifstream in(kData / (name + ".expect"));
  std::string line;
  while (std::getline(in, line)) {
    const auto space = line.find(' ');
    if (space != std::string::npos) out[line.substr(0, space)] = line.substr(space + 1);
  }
  return out;
}

// The `get NAME VALUES` lines of an expect file: name -> "value max holders waiters kind".
std::map<std::string, std::string> expected_gets(const std::string& name) {
  std::map<std::string, std::string> out;
  std::ifstream in(kData / (name + ".expect"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("get ", 0) != 0) continue;
    const auto space = line.find(' ', 4);
    out[line.substr(4, space - 4)] = line.substr(space + 1);
  }
  return out;
}

::testing::AssertionResult extract(const std::string& name, const fs::path& into) {
  const std::string command = "tar -xzf '" + (kData / (name + ".tar.gz")).string() + "' -C '" + into.string() + "'";
  if (std::system(command.c_str()) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << command << " failed";
}

// Flips the low bit of the byte in the middle of `file`; returns its new bytes.
std::string flip_middle_byte(const fs::path& file) {
  std::string bytes = read_text(file);
  EXPECT_FALSE(bytes.empty()) << file;
  if (bytes.empty()) return bytes;
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  return bytes;
}

// Damage on disk refused loudly: `server` did not start (exit 1, CORRUPTION
// and `named` in `error`, its log) and left the damaged `file` as it was.
void expect_refused(const std::unique_ptr<Netsemd>& server, const std::string& error, const std::string& named,
                    const fs::path& file, const std::string& damaged) {
  EXPECT_FALSE(server) << "netsemd started on a damaged " << file;
  EXPECT_NE(error.find("exit status 1"), std::string::npos) << error;
  EXPECT_NE(error.find("CORRUPTION"), std::string::npos) << error;
  EXPECT_NE(error.find(named), std::string::npos) << error;
  EXPECT_EQ(read_text(file), damaged);
}

std::uint64_t number(const std::string& text) {
  return std::stoull(text);
}

// A clean stop: SIGTERM, exit status 0.
::testing::AssertionResult stops_cleanly(Netsemd& server) {
  server.send_signal(SIGTERM);
  const auto status = server.wait_exit(20s);
  if (status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "netsemd " << server.pid() << " did not stop cleanly: " << server.log();
}

// Every `get` line of `expect_name` answered the same by `client` (plus `more`).
void expect_values(Client& client, const std::string& expect_name,
                   const std::map<std::string, std::string>& more = {}) {
  auto gets = expected_gets(expect_name);
  ASSERT_FALSE(gets.empty()) << "no get lines in " << expect_name << ".expect";
  for (const auto& [name, values] : more) gets[name] = values;
  for (const auto& [name, values] : gets) {
    EXPECT_EQ(client.request(req::get("g", name), 10s), "g OK " + values) << name;
  }
}

// A grant of `lock` and its release; the grant's fence (0 on failure).
std::uint64_t fence_of_lock(Client& client) {
  const std::string answer = client.request(req::acquire("a", "lock", 1, 5000), 10s);
  EXPECT_EQ(answer.rfind("a OK ", 0), 0u) << answer;
  if (answer.rfind("a OK ", 0) != 0) return 0;
  EXPECT_EQ(client.request(req::release("r", "lock"), 10s), "r OK 1");
  return number(answer.substr(5));
}

// ---------------------------------------------------------------------------
// The cluster: three servers on 127.0.29.1-3, their directories s1 s2 s3.

class CompatCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    // The fixture's addresses are fixed (its Raft configuration names them):
    // CTest's RESOURCE_LOCK keeps one run's cases apart, this file lock the
    // runs of other build trees on the same machine (bounded: 2 minutes).
    lock_ = UniqueFd(::open("/tmp/netsem-compat-127.0.29.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666));
    ASSERT_TRUE(lock_.valid()) << std::strerror(errno);
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "127.0.29.1-3 stayed taken by another test run";
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(extract("cluster-v2", dir_.path()));
    for (int i = 1; i <= kServers; ++i) {
      const fs::path secret = dir_.path() / ("secret." + std::to_string(i));
      std::ofstream(secret) << kClusterSecret << "\n";
      fs::permissions(secret, fs::perms::owner_read | fs::perms::owner_write);
    }
  }
  void TearDown() override {
    for (auto& server : servers_) server.reset();  // SIGKILL of what still runs
  }

  static std::string host(int i) { return "127.0.29." + std::to_string(i); }
  fs::path data_dir(int i) const { return dir_.path() / ("s" + std::to_string(i)); }
  fs::path raft_dir(int i) const { return data_dir(i) / "raft"; }

  std::string config(int i) const {
    std::string text = "[server]\nbind_address = " + host(i) +
                       "\nbind_port = @PORT@\nstats_dir = @DIR@\ndata_dir = @DIR@\nhttp_enabled = off\n"
                       "session_timeout_ms = 60000\n[semaphores]\nlock = 1\n[cluster]\nid = " +
                       std::to_string(i) +
                       "\nsecret_file = " + (dir_.path() / ("secret." + std::to_string(i))).string() + "\n";
    for (int j = 1; j <= kServers; ++j) {
      text += "server." + std::to_string(j) + " = " + host(j) + ":29701 " + host(j) + ":29559\n";
    }
    return text;
  }
  std::unique_ptr<Netsemd> try_start(int i, std::string* error) const {
    Netsemd::Options options;
    options.raw_config = config(i);
    options.port = kClientPort;
    options.data_dir = data_dir(i);
    return Netsemd::start(options, error);
  }
  ::testing::AssertionResult start_all() {
    for (int i = 1; i <= kServers; ++i) {
      std::string error;
      servers_[i - 1] = try_start(i, &error);
      if (!servers_[i - 1]) return ::testing::AssertionFailure() << "server " << i << ": " << error;
    }
    return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult stop_all() {
    for (auto& server : servers_) {
      if (!server) return ::testing::AssertionFailure() << "a server is not running";
      if (auto stopped = stops_cleanly(*server); !stopped) return stopped;
      server.reset();
    }
    return ::testing::AssertionSuccess();
  }
  std::unique_ptr<Client> connect(int i) const {
    auto client = Client::connect(kClientPort, host(i).c_str());
    EXPECT_TRUE(client) << "cannot connect to " << host(i);
    return client;
  }
  // The leader's server number once one is elected (0 after 15 s).
  int leader() const {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto client = Client::connect(kClientPort, host(1).c_str())) {
        const std::string answer = client->request("l LEADER", 2s);
        for (int i = 1; i <= kServers; ++i) {
          if (answer == "l OK " + host(i) + ":" + std::to_string(kClientPort)) return i;
        }
      }
      std::this_thread::sleep_for(100ms);
    }
    return 0;
  }
  std::string logs() const {
    std::string out;
    for (const auto& server : servers_) {
      if (server) out += "--- netsemd " + std::to_string(server->pid()) + ":\n" + server->log();
    }
    return out;
  }
  // RESUME of `session` ("ID SECRET FENCE") on server i, first request of a
  // new connection; MINE must then show its permit of `held` at FENCE.
  std::unique_ptr<Client> resumes(int i, const std::string& session) {
    const auto f = fields(session);
    EXPECT_EQ(f.size(), 3u) << session;
    if (f.size() != 3) return nullptr;
    auto client = connect(i);
    if (!client) return nullptr;
    EXPECT_EQ(client->request(req::resume("x", number(f[0]), f[1]), 10s), "x OK " + f[0] + " 0") << logs();
    EXPECT_EQ(client->request("m MINE", 10s), "m ITEM held held 1 " + f[2]);
    EXPECT_EQ(client->read_line(10s), "m END 1");
    return client;
  }
  // Whether `text` is in any file under the three Raft directories.
  bool in_raft_files(const std::string& text) const {
    for (int i = 1; i <= kServers; ++i) {
      for (const auto& entry : fs::directory_iterator(raft_dir(i))) {
        if (read_text(entry.path()).find(text) != std::string::npos) return true;
      }
    }
    return false;
  }

  UniqueFd lock_;  // declared first: unlocked (closed) last, after the servers and their directory
  TempDir dir_;
  std::unique_ptr<Netsemd> servers_[kServers];
};

// Everything the old cluster acknowledged is there, its sessions resume with
// their clear (version 2) secrets, fences go on above its own; writes of this
// build and a restart after them work.
TEST_F(CompatCluster, StartsOnAnOlderClustersDirectoriesWithEverythingItAcknowledged) {
  const auto expect = read_expect("cluster-v2");
  ASSERT_TRUE(expect.count("session_early") && expect.count("session_late") && expect.count("last_fence"));
  ASSERT_TRUE(start_all());
  int lead = leader();
  ASSERT_NE(lead, 0) << logs();
  auto client = connect(lead);
  ASSERT_TRUE(client);
  // Values, from the snapshot and from the entries after it; both sessions
  // still hold their permit of `held`.
  expect_values(*client, "cluster-v2");
  // A wrong secret is refused; the right ones (the one in the snapshot, the
  // one in an entry after it) resume, on a server other than their own.
  {
    auto wrong = connect(1);
    ASSERT_TRUE(wrong);
    const auto early = fields(expect.at("session_early"));
    EXPECT_EQ(wrong->request(req::resume("x", number(early[0]), "0123456789abcdef0123456789abcdef"), 10s)
                  .rfind("x ERR DENIED", 0),
              0u);
  }
  auto early = resumes(3, expect.at("session_early"));
  auto late = resumes(1, expect.at("session_late"));
  ASSERT_TRUE(early && late) << logs();
  // Fences go on above every one the old build handed out.
  const std::uint64_t fence = fence_of_lock(*client);
  EXPECT_GT(fence, number(expect.at("last_fence")));
  // New writes, in version 3 entries after the version 2 ones.
  EXPECT_EQ(client->request(req::create("c", "fresh", 4, 6), 10s), "c OK");
  EXPECT_EQ(client->request(req::wait("w", "fresh", 1, 5000), 10s).rfind("w OK ", 0), 0u);
  EXPECT_EQ(early->request(req::release("r", "held"), 10s), "r OK 1");
  auto fresh = connect(2);
  ASSERT_TRUE(fresh);
  const auto opened = fields(fresh->request("s RESUMABLE", 10s));
  ASSERT_EQ(opened.size(), 4u);
  const std::string fresh_answer = fresh->request(req::acquire("a", "held", 1, 5000), 10s);
  ASSERT_EQ(fresh_answer.rfind("a OK ", 0), 0u) << fresh_answer;
  const std::string fresh_session = opened[2] + " " + opened[3] + " " + fresh_answer.substr(5);
  EXPECT_GT(number(fresh_answer.substr(5)), fence);
  client.reset();
  early.reset();
  late.reset();
  fresh.reset();  // no QUIT: the two resumable sessions stay
  std::this_thread::sleep_for(300ms);

  // The restart: the old entries and snapshot, then this build's.
  ASSERT_TRUE(stop_all());
  // This build wrote the digest, not the secret; the old fixture's clear
  // secret is still in its snapshot (version 2 read, not rewritten).
  EXPECT_FALSE(in_raft_files(opened[3]));
  EXPECT_TRUE(in_raft_files(fields(expect.at("session_early"))[1]));
  ASSERT_TRUE(start_all());
  lead = leader();
  ASSERT_NE(lead, 0) << logs();
  client = connect(lead);
  ASSERT_TRUE(client);
  expect_values(*client, "cluster-v2", {{"fresh", "3 6 0 0 created"}, {"held", "0 2 2 0 created"}});
  late = resumes(2, expect.at("session_late"));
  fresh = resumes(3, fresh_session);
  EXPECT_GT(fence_of_lock(*client), number(fields(fresh_session)[2]));
  client.reset();
  late.reset();
  fresh.reset();
  ASSERT_TRUE(stop_all());
}

// Damage on disk is refused loudly: the server does not start (exit 1) and
// names the damaged file, which it leaves as it was.
TEST_F(CompatCluster, AByteFlippedInTheSnapshotIsRefusedNamingTheFile) {
  fs::path snapshot;
  for (const auto& entry : fs::directory_iterator(raft_dir(1))) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("snapshot-", 0) == 0 && entry.path().extension() != ".meta") snapshot = entry.path();
  }
  ASSERT_FALSE(snapshot.empty()) << "no snapshot in the fixture";
  const std::string damaged = flip_middle_byte(snapshot);
  std::string error;
  const auto server = try_start(1, &error);
  expect_refused(server, error, snapshot.filename().string(), snapshot, damaged);
}

TEST_F(CompatCluster, AByteFlippedInAClosedSegmentIsRefusedNamingTheFile) {
  // The last closed segment: the entries after the snapshot.
  fs::path segment;
  for (const auto& entry : fs::directory_iterator(raft_dir(1))) {
    const std::string name = entry.path().filename().string();
    if (name.size() == 33 && name[16] == '-' && (segment.empty() || name > segment.filename().string())) {
      segment = entry.path();
    }
  }
  ASSERT_FALSE(segment.empty()) << "no closed segment in the fixture";
  const std::string damaged = flip_middle_byte(segment);
  std::string error;
  const auto server = try_start(1, &error);
  expect_refused(server, error, "closed segment " + segment.filename().string(), segment, damaged);
}

// ---------------------------------------------------------------------------
// One server: its snapshot and journal (stopped cleanly, and killed -9).

class CompatSingle : public ::testing::TestWithParam<const char*> {
 protected:
  Netsemd::Options options() const {
    Netsemd::Options o;
    // A run killed -9 makes the next one wait a session timeout before it
    // grants (restart_lease_wait): no client of that run is left here.
    o.raw_config =
        "[server]\nbind_address = 127.0.0.1\nbind_port = @PORT@\nstats_dir = @DIR@\ndata_dir = @DIR@\n"
        "http_enabled = off\nfsync = always\nrestart_lease_wait = off\n[semaphores]\nlock = 1\n";
    o.data_dir = dir_.path() / "single";
    return o;
  }
  TempDir dir_;
};

TEST_P(CompatSingle, StartsOnAnOlderServersDirectoryWithEverythingItAcknowledged) {
  const std::string name = GetParam();
  const auto expect = read_expect(name);
  ASSERT_TRUE(expect.count("last_fence"));
  ASSERT_TRUE(extract(name, dir_.path()));
  std::string error;
  auto server = Netsemd::start(options(), &error);
  ASSERT_TRUE(server) << error;
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  expect_values(*client, name);
  const std::uint64_t fence = fence_of_lock(*client);
  EXPECT_GT(fence, number(expect.at("last_fence")));
  EXPECT_EQ(client->request(req::create("c", "fresh", 4, 6), 10s), "c OK");
  EXPECT_EQ(client->request(req::wait("w", "fresh", 1, 5000), 10s).rfind("w OK ", 0), 0u);
  client.reset();
  ASSERT_TRUE(stops_cleanly(*server));
  server = Netsemd::start(options(), &error);
  ASSERT_TRUE(server) << error;
  client = Client::connect(server->port());
  ASSERT_TRUE(client);
  expect_values(*client, name, {{"fresh", "3 6 0 0 created"}});
  EXPECT_GT(fence_of_lock(*client), fence);
  client.reset();
  ASSERT_TRUE(stops_cleanly(*server));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CompatSingle, ::testing::Values("single-v2", "single-killed-v2"),
                         [](const auto& fixture) {
                           return std::string(fixture.param) == "single-v2" ? "StoppedCleanly" : "KilledDash9";
                         });

// A byte flipped in the snapshot, or in the middle of the journal (valid
// records after it: damage, not a torn tail), is refused, not rolled back.
TEST(CompatSingleDamage, AByteFlippedInTheSnapshotOrTheJournalIsRefusedNamingTheFile) {
  for (const char* file : {"snapshot", "journal"}) {
    SCOPED_TRACE(file);
    TempDir dir;
    ASSERT_TRUE(extract("single-v2", dir.path()));
    const fs::path damaged_file = dir.path() / "single" / file;
    const std::string damaged = flip_middle_byte(damaged_file);
    Netsemd::Options o;
    o.raw_config =
        "[server]\nbind_address = 127.0.0.1\nbind_port = @PORT@\nstats_dir = @DIR@\ndata_dir = @DIR@\n"
        "http_enabled = off\n[semaphores]\nlock = 1\n";
    o.data_dir = dir.path() / "single";
    std::string error;
    const auto server = Netsemd::start(o, &error);
    expect_refused(server, error, "CORRUPTION: " + std::string(file) + " " + damaged_file.string(), damaged_file,
                   damaged);
  }
}

}  // namespace
}  // namespace netsem::testing
