// [cluster] (config/config.h ClusterConfig, cluster_config.cc): a good
// section is read whole, each kind of mistake is refused with its file, line
// and key, the section is checked as a whole (this server listed, ids and
// addresses unique, heartbeat at most half the election timeout, a secret
// for several servers), and the secret file must be private and well formed;
// its read errors, and a tokens_file's, name the key and where it is set.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "config/config.h"

namespace netsem::server {
namespace {

const std::string kGood =
    "[cluster]\n"
    "id = 2\n"
    "secret_file = /etc/netsem/cluster.secret\n"
    "server.3 = 127.0.0.3:7001 127.0.0.3:53559\n"
    "server.1 = 127.0.0.1:7001 127.0.0.1:53559\n"
    "server.2 = 127.0.0.2:7001 [::1]:53559\n"
    "election_timeout_ms = 800\n"
    "heartbeat_timeout_ms = 80\n"
    "group_commit_us = 0\n"
    "raft_bind_address = 127.0.1.2\n"
    "raft_allowed_networks = 10.0.0.0/8, 192.168.1.7\n";

TEST(ClusterConfig, ReadsAWholeSection) {
  auto config = parse_server_config(kGood, "n.ini");
  ASSERT_TRUE(config) << config.status().to_string();
  const ClusterConfig& c = config->cluster;
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.id, 2u);
  ASSERT_EQ(c.servers.size(), 3u);
  EXPECT_EQ(c.servers[0], (ClusterMember{1, "127.0.0.1:7001", "127.0.0.1:53559"}));  // in id order
  EXPECT_EQ(c.servers[2].id, 3u);
  ASSERT_NE(c.self(), nullptr);
  EXPECT_EQ(c.self()->client_address, "[::1]:53559");
  EXPECT_EQ(c.election_timeout_ms, 800);
  EXPECT_EQ(c.heartbeat_timeout_ms, 80);
  EXPECT_EQ(c.group_commit_us, 0);
  EXPECT_EQ(c.raft_bind_address, "127.0.1.2");
  EXPECT_TRUE(c.raft_allowed_networks.allows_v4(0x0a010203));   // 10.1.2.3
  EXPECT_TRUE(c.raft_allowed_networks.allows_v4(0xc0a80107));   // 192.168.1.7
  EXPECT_FALSE(c.raft_allowed_networks.allows_v4(0xc0a80108));  // 192.168.1.8
  EXPECT_EQ(c.secret_file, "/etc/netsem/cluster.secret");
  EXPECT_TRUE(c.secret.empty());  // read by load_server_config, not by the parser
}

// The server must listen where its own server.<id> line says: a server on
// another port than its line's was found serving nobody, in silence.
TEST(ClusterConfig, ThisServerMustListenWhereItsLineSays) {
  const std::string section = "[cluster]\nid = 1\nserver.1 = 127.0.0.1:7001 127.0.0.1:27531\n";
  auto config = parse_server_config("[server]\nbind_address = 127.0.0.1\nbind_port = 27531\n" + section, "n.ini");
  ASSERT_TRUE(config) << config.status().to_string();
  EXPECT_TRUE(check_cluster_listening(*config));
  config->bind_address = "0.0.0.0";  // any address, on the line's port
  EXPECT_TRUE(check_cluster_listening(*config));
  config->bind_port = 27599;  // --port 27599
  Status wrong = check_cluster_listening(*config);
  EXPECT_EQ(wrong.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("server.1 names this server's client address 127.0.0.1:27531, but it listens on "
                                 "0.0.0.0:27599"),
            std::string::npos)
      << wrong.message();
  config->bind_port = 27531;
  config->bind_address = "127.0.0.2";  // another address
  EXPECT_FALSE(check_cluster_listening(*config));
  // The default port (53559) against a line that names another.
  config = parse_server_config(section, "n.ini");
  ASSERT_TRUE(config);
  EXPECT_FALSE(check_cluster_listening(*config));
  // IPv6, and no [cluster] at all.
  config = parse_server_config(
      "[server]\nbind_address = ::1\nbind_port = 27531\n[cluster]\nid = 1\nserver.1 = 127.0.0.1:7001 [::1]:27531\n",
      "n.ini");
  ASSERT_TRUE(config) << config.status().to_string();
  EXPECT_TRUE(check_cluster_listening(*config));
  config = parse_server_config("[server]\nbind_port = 1\n", "n.ini");
  ASSERT_TRUE(config);
  EXPECT_TRUE(check_cluster_listening(*config));
}

TEST(ClusterConfig, IsOffWithoutTheSection) {
  auto config = parse_server_config("[semaphores]\ndb = 2\n", "n.ini");
  ASSERT_TRUE(config);
  EXPECT_FALSE(config->cluster.enabled);
  EXPECT_EQ(config->cluster.self(), nullptr);
  // One server alone needs no secret (no peer links), and takes the defaults.
  config = parse_server_config("[cluster]\nid = 1\nserver.1 = 127.0.0.1:7001 127.0.0.1:53559\n", "n.ini");
  ASSERT_TRUE(config) << config.status().to_string();
  EXPECT_EQ(config->cluster.election_timeout_ms, 500);
  EXPECT_EQ(config->cluster.heartbeat_timeout_ms, 50);
  EXPECT_EQ(config->cluster.group_commit_us, 300);
  EXPECT_EQ(config->cluster.raft_bind_address, "");  // the Raft address's own host
  config = parse_server_config(
      "[cluster]\nid = 1\nraft_bind_address = 0.0.0.0\nserver.1 = 10.0.0.1:7001 10.0.0.1:53559\n", "n.ini");
  ASSERT_TRUE(config) << config.status().to_string();
  EXPECT_EQ(config->cluster.raft_bind_address, "0.0.0.0");  // every interface
}

// cluster_keys() (what --help and docs/configuration.md list) names the keys
// the section reads, with the defaults it takes.
TEST(ClusterConfig, ReadsEveryKeyOfItsTable) {
  const std::string head = "[cluster]\nid = 1\nserver.1 = 127.0.0.1:7001 127.0.0.1:53559\n";
  auto unknown = parse_server_config(head + "peers = 1\n", "n.ini");
  ASSERT_FALSE(unknown);
  std::map<std::string, std::string> defaults;
  for (const auto& key : cluster_keys()) {
    SCOPED_TRACE(key.name);
    std::string name(key.name);
    if (name == "server.<id>") name = "server.9";
    auto config = parse_server_config("[cluster]\n" + name + " = x\n", "n.ini");
    ASSERT_FALSE(config);
    EXPECT_EQ(config.status().message().find("unknown key"), std::string::npos) << config.status().message();
    EXPECT_NE(unknown.status().message().find(std::string(key.name)), std::string::npos)
        << "the unknown key's message should list it: " << unknown.status().message();
    defaults[std::string(key.name)] = key.default_text;
  }
  auto config = parse_server_config(head, "n.ini");
  ASSERT_TRUE(config) << config.status().to_string();
  const ClusterConfig& c = config->cluster;
  EXPECT_EQ(defaults["join"], c.join ? "`on`" : "`off`");
  EXPECT_EQ(defaults["election_timeout_ms"], "`" + std::to_string(c.election_timeout_ms) + "`");
  EXPECT_EQ(defaults["heartbeat_timeout_ms"], "`" + std::to_string(c.heartbeat_timeout_ms) + "`");
  EXPECT_EQ(defaults["group_commit_us"], "`" + std::to_string(c.group_commit_us) + "`");
}

TEST(ClusterConfig, RefusesEachMistakeWithItsLine) {
  const std::string head = "[cluster]\nid = 1\nsecret_file = s\nserver.1 = 127.0.0.1:7001 127.0.0.1:53559\n";
  const struct {
    std::string line;  // the fifth line of the file
    std::string message;
  } cases[] = {
      {"server.2 = 127.0.0.2:7001", "n.ini:5: server.2: needs two addresses"},
      {"server.2 = 127.0.0.2:7001 127.0.0.2:53559 x", "takes two addresses"},
      {"server.2 = localhost:7001 127.0.0.2:53559", "`localhost:7001` is not an IPv4 address with its port"},
      {"server.2 = 127.0.0.256:7001 127.0.0.2:53559", "is not an IPv4 address"},
      {"server.2 = 127.0.0.2:70001 127.0.0.2:53559", "is not an IPv4 address"},
      {"server.2 = 127.0.0.2:7001 127.0.0.2", "`127.0.0.2` is not an address with its port"},
      {"server.x = 127.0.0.2:7001 127.0.0.2:53559", "n.ini:5: server.x: the id after `server.`"},
      {"server.0 = 127.0.0.2:7001 127.0.0.2:53559", "the id after `server.`"},
      {"server.1 = 127.0.0.2:7001 127.0.0.2:53559", "n.ini:5: duplicate key `server.1`"},
      {"server.01 = 127.0.0.2:7001 127.0.0.2:53559", "server 1 is listed twice"},
      {"server.2 = 127.0.0.1:7001 127.0.0.2:53559", "Raft address 127.0.0.1:7001 is another server's too"},
      {"server.2 = 127.0.0.2:7001 127.0.0.1:53559", "client address 127.0.0.1:53559 is another server's too"},
      {"election_timeout_ms = 50", "n.ini:5: election_timeout_ms:"},
      {"heartbeat_timeout_ms = fast", "n.ini:5: heartbeat_timeout_ms:"},
      {"group_commit_us = 100001", "n.ini:5: group_commit_us:"},
      {"group_commit_us = -1", "n.ini:5: group_commit_us:"},
      {"peers = 1,2,3", "n.ini:5: peers: unknown key in [cluster]"},
      {"heartbeat_timeout_ms = 300",
       "n.ini:5: heartbeat_timeout_ms (300) must be at most half of election_timeout_ms (500)"},
      {"server.2 = 127.0.0.2:7001 ::1:53559", "`::1:53559` is not an address with its port"},
      {"server.2 = 127.0.0.2:7001 db2.example:53559", "`db2.example:53559`: the client address must be a numeric IP"},
      {"server.2 = 127.0.0.2:7001 [db2]:53559", "must be a numeric IP address"},
      {"server.2 = 0.0.0.0:7001 127.0.0.2:53559", "not 0.0.0.0"},
      {"raft_bind_address = 127.0.1.1:7001", "n.ini:5: raft_bind_address: `127.0.1.1:7001` is not an IPv4 address"},
      {"raft_bind_address = localhost", "n.ini:5: raft_bind_address: `localhost` is not an IPv4 address"},
      {"raft_bind_address = 127.0.1", "is not an IPv4 address (a.b.c.d; the port is the Raft address's)"},
      {"raft_allowed_networks = 10.0.0.1/8", "n.ini:5: raft_allowed_networks:"},
      {"raft_allowed_networks =", "n.ini:5: raft_allowed_networks:"},
  };
  for (const auto& c : cases) {
    auto config = parse_server_config(head + c.line + "\n", "n.ini");
    ASSERT_FALSE(config) << c.line;
    EXPECT_NE(config.status().message().find(c.message), std::string::npos) << c.line << "\n"
                                                                            << config.status().message();
  }
  auto config =
      parse_server_config("[cluster]\nid = 4\nsecret_file = s\nserver.1 = 127.0.0.1:7001 127.0.0.1:1\n", "n.ini");
  ASSERT_FALSE(config);
  EXPECT_NE(config.status().message().find("n.ini:2: id: this server (4) has no `server.4 = "), std::string::npos)
      << config.status().message();
  // Without a session timeout a dead server's sessions (and permits) would never end.
  config = parse_server_config("[server]\nsession_timeout_ms = 0\n" + head, "n.ini");
  ASSERT_FALSE(config);
  EXPECT_NE(config.status().message().find("n.ini:3: [cluster] needs a session timeout"), std::string::npos)
      << config.status().message();
  config = parse_server_config("[cluster]\nserver.1 = 127.0.0.1:7001 127.0.0.1:1\n", "n.ini");
  ASSERT_FALSE(config);
  EXPECT_NE(config.status().message().find("n.ini:1: [cluster] needs `id = "), std::string::npos);
  config = parse_server_config(
      "[cluster]\nid = 1\nserver.1 = 127.0.0.1:7001 127.0.0.1:1\nserver.2 = 127.0.0.2:7001 127.0.0.2:1\n", "n.ini");
  ASSERT_FALSE(config);
  EXPECT_NE(config.status().message().find("needs `secret_file`"), std::string::npos);
}

class ClusterSecret : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("netsem-cluster-secret-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path write(const std::string& name, const std::string& text, mode_t mode) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }
  Result<ServerConfig> load(const std::filesystem::path& secret) {
    const auto file = write("n.ini",
                            "[cluster]\nid = 1\nsecret_file = " + secret.string() +
                                "\nserver.1 = 127.0.0.1:7001 127.0.0.1:53559\nserver.2 = 127.0.0.2:7001 "
                                "127.0.0.2:53559\n",
                            0644);
    return load_server_config(file);
  }
  std::filesystem::path dir_;
};

TEST_F(ClusterSecret, IsReadFromAPrivateFile) {
  auto config = load(write("good", "0123456789abcdef0123456789abcdef\n", 0600));
  ASSERT_TRUE(config) << config.status().to_string();
  EXPECT_EQ(config->cluster.secret, "0123456789abcdef0123456789abcdef");

  config = load(write("open", "0123456789abcdef0123456789abcdef\n", 0644));
  ASSERT_FALSE(config);
  EXPECT_EQ(config.status().code(), StatusCode::kDenied);
  EXPECT_NE(config.status().message().find("chmod 600"), std::string::npos);

  config = load(write("short", "tooshort\n", 0600));
  ASSERT_FALSE(config);
  EXPECT_NE(config.status().message().find("16 to 256 visible ASCII characters"), std::string::npos);
  config = load(write("two-words", "0123456789abcdef 0123456789abcdef\n", 0600));
  ASSERT_FALSE(config);

  config = load(dir_ / "missing");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.status().code(), StatusCode::kIoError);
}

// An error in reading the secret names the key, the file and line that set
// it, and for a relative path the working directory it was looked for in
// (newuser23: "netsemd: cluster.secret: cannot read: No such file or
// directory" said neither).
TEST_F(ClusterSecret, AnErrorNamesTheKeyItsFileAndLineAndTheWorkingDirectory) {
  const std::string ini = (dir_ / "n.ini").string();
  auto config = load("cluster.secret");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.status().code(), StatusCode::kIoError);
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(config.status().message(), ini + ":3: secret_file: cluster.secret (relative to the working directory " +
                                           cwd + "): cannot read: No such file or directory");

  config = load(write("short", "tooshort\n", 0600));
  ASSERT_FALSE(config);
  EXPECT_EQ(config.status().message().rfind(ini + ":3: secret_file: " + (dir_ / "short").string() + ": the cluster", 0),
            0u)
      << config.status().message();
}

// A tokens_file is read by the same helper (one wording for both keys of
// private files): its errors name the key, the file and line that set it,
// and for a relative path the working directory (they named only the path:
// "no-such-tokens: cannot read: No such file or directory").
TEST_F(ClusterSecret, ATokensFileErrorNamesTheKeyItsFileAndLineAsTheSecretDoes) {
  const auto ini = write("t.ini", "[server]\nbind_port = 0\ntokens_file = no-such-tokens\n", 0644);
  auto config = load_server_config(ini);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.status().code(), StatusCode::kIoError);
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(config.status().message(), ini.string() +
                                           ":3: tokens_file: no-such-tokens (relative to the working directory " + cwd +
                                           "): cannot read: No such file or directory");

  const auto open = write("open-tokens", "[tokens]\n", 0644);
  write("t.ini", "[server]\ntokens_file = " + open.string() + "\n", 0644);
  config = load_server_config(ini);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.status().code(), StatusCode::kDenied);
  EXPECT_EQ(config.status().message().rfind(ini.string() + ":2: tokens_file: " + open.string() + ": holds secrets", 0),
            0u)
      << config.status().message();
}

}  // namespace
}  // namespace netsem::server
