// Tests of ClientOptions and FallbackPolicy: the policy words and limits, the
// [client] and [semaphores] sections of a file (values, overrides, every error
// with its file:line), and the environment overrides.
#include "netsem/client_options.h"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

namespace netsem {
namespace {

using Mode = FallbackPolicy::Mode;

TEST(FallbackPolicy, ParsesAndPrintsEachForm) {
  const struct {
    std::string_view text;
    Mode mode;
    std::int64_t share;
  } cases[] = {
      {"local", Mode::kLocal, 1},
      {"fail", Mode::kFail, 1},
      {"share:1", Mode::kShare, 1},
      {"share:3", Mode::kShare, 3},
      {"share:2147483647", Mode::kShare, 2147483647},
  };
  for (const auto& c : cases) {
    auto policy = FallbackPolicy::parse(c.text);
    ASSERT_TRUE(policy) << c.text << ": " << policy.status().to_string();
    EXPECT_EQ(policy->mode, c.mode) << c.text;
    EXPECT_EQ(policy->share, c.share) << c.text;
    EXPECT_EQ(policy->to_string(), c.text);
  }
}

TEST(FallbackPolicy, RejectsAnythingElse) {
  for (const std::string_view text :
       {"", "Local", "FAIL", "local ", " fail", "share", "share:", "share:0", "share:-1", "share:+2", "share:x",
        "share:3 ", "share: 3", "shared:2", "share:2147483648", "share:99999999999999999999"}) {
    auto policy = FallbackPolicy::parse(text);
    ASSERT_FALSE(policy) << "`" << text << "` parsed";
    EXPECT_EQ(policy.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(policy.status().message().find("fallback policy"), std::string::npos) << policy.status().message();
  }
}

TEST(FallbackPolicy, LocalLimitDividesRoundingUp) {
  const struct {
    std::string_view policy;
    std::int64_t limit;
    std::int64_t local;
  } cases[] = {
      {"local", 10, 10},    {"fail", 10, 10},
      {"share:1", 7, 7},    {"share:2", 10, 5},
      {"share:3", 10, 4},   {"share:3", 9, 3},
      {"share:10", 10, 1},  {"share:4", 1, 1},                          // never below 1: each host can still work
      {"share:1000", 3, 1}, {"share:2", INT64_MAX, INT64_MAX / 2 + 1},  // no overflow on the way
  };
  for (const auto& c : cases) {
    auto policy = FallbackPolicy::parse(c.policy);
    ASSERT_TRUE(policy);
    EXPECT_EQ(policy->local_limit(c.limit), c.local) << c.policy << " of " << c.limit;
  }
}

// Writes files into a fresh temporary directory, removed afterwards.
class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "netsem-options-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path;
  }
  Result<ClientOptions> parse(const std::string& text) { return ClientOptions::from_file(write("c.ini", text)); }

  std::filesystem::path dir_;
};

TEST_F(ConfigFiles, DefaultsWithoutAFile) {
  const ClientOptions options;
  EXPECT_TRUE(options.servers.empty());
  EXPECT_EQ(options.fallback_policy("anything").mode, Mode::kLocal);
  EXPECT_EQ(options.limit("anything"), 1);
  EXPECT_EQ(options.limit("$anything"), 1);
}

TEST_F(ConfigFiles, ReadsEveryClientKeyAndTheLimits) {
  auto options = parse(
      "[client]\n"
      "servers = 10.0.0.5:53559, sem.example.com:1, [::1]:53559\n"
      "fallback = share:4\n"
      "fallback.licences = fail\n"
      "fallback.$build = local\n"
      "fallback.a%3Db%20c = share:2\n"
      "connect_timeout_ms = 250\n"
      "reconnect_min_ms = 20\n"
      "reconnect_max_ms = 800\n"
      "request_timeout_ms = 3000\n"
      "label = batch/7\n"
      "local_dir = /run/user/1000/sems\n"
      "\n"
      "[semaphores]\n"
      "search = 10\n"
      "$build = 3\n"
      "host%3A10.0.0.1%20web = 2\n"
      "big = 2147483647\n");
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_EQ(options->servers, (std::vector<std::string>{"10.0.0.5:53559", "sem.example.com:1", "[::1]:53559"}));
  EXPECT_EQ(options->fallback.to_string(), "share:4");
  EXPECT_EQ(options->fallback_policy("licences").to_string(), "fail");
  EXPECT_EQ(options->fallback_policy("$build").to_string(), "local");
  EXPECT_EQ(options->fallback_policy("a=b c").to_string(), "share:2");
  EXPECT_EQ(options->fallback_policy("search").to_string(), "share:4");  // no override: the default
  EXPECT_EQ(options->connect_timeout.count(), 250);
  EXPECT_EQ(options->reconnect_min.count(), 20);
  EXPECT_EQ(options->reconnect_max.count(), 800);
  EXPECT_EQ(options->request_timeout.count(), 3000);
  EXPECT_EQ(options->label, "batch/7");
  EXPECT_EQ(options->local_dir, std::filesystem::path("/run/user/1000/sems"));
  EXPECT_EQ(options->limit("search"), 10);
  EXPECT_EQ(options->limit("$build"), 3);
  EXPECT_EQ(options->limit("host:10.0.0.1 web"), 2);
  EXPECT_EQ(options->limit("big"), 2147483647);
  EXPECT_EQ(options->limit("unlisted"), 1);
}

TEST_F(ConfigFiles, ServerListForms) {
  const struct {
    std::string value;
    std::vector<std::string> servers;  // empty: an error
  } cases[] = {
      {"127.0.0.1:53559", {"127.0.0.1:53559"}},
      {"a:1,b:65535", {"a:1", "b:65535"}},
      {"localhost:80 ,  [fe80::1]:9", {"localhost:80", "[fe80::1]:9"}},
      {"a:1,\n  b:2", {"a:1", "b:2"}},  // a continued value
      {"a:1\n  b:2", {"a:1", "b:2"}},
      {"my_host-1.lan:7", {"my_host-1.lan:7"}},
      {"a:0", {}},
      {"a:65536", {}},
      {"a:", {}},
      {"a", {"a:53559"}},  // without a port: the default port (issue 12 item 11)
      {"[::1]", {"[::1]:53559"}},
      {"a, [::1]:2,b", {"a:53559", "[::1]:2", "b:53559"}},
      {"[::1", {}},
      {"::1", {}},
      {":53559", {}},
      {"a:1,", {}},
      {"a:1,,b:2", {}},
      {"::1:53559", {}},  // IPv6 without brackets
      {"[::1]53559", {}},
      {"[::1:53559", {}},
      {"[nothost]:1", {}},
      {"a b:1", {}},
      {"a:1x", {}},
      {"a:+1", {}},
  };
  for (const auto& c : cases) {
    auto options = parse("[client]\nservers = " + c.value + "\n");
    if (c.servers.empty()) {
      ASSERT_FALSE(options) << "`" << c.value << "` was accepted";
      EXPECT_NE(options.status().message().find("c.ini:2: servers:"), std::string::npos) << options.status().message();
    } else {
      ASSERT_TRUE(options) << c.value << ": " << options.status().to_string();
      EXPECT_EQ(options->servers, c.servers) << c.value;
    }
  }
}

TEST_F(ConfigFiles, TheServersFileWorksAsIs) {
  // [server] keys, ACE's no-value keys and unknown sections are not ours.
  auto options = parse(
      "[server]\n"
      "bind_port = 53559\n"
      "no_such_server_option = 1\n"
      "[service_network_semaphore]\n"
      "bare_key_without_value\n"
      "[semaphores]\n"
      "pcap = 1\n"
      "[client]\n"
      "servers = 10.1.1.1:53559\n");
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_EQ(options->servers, std::vector<std::string>{"10.1.1.1:53559"});
  EXPECT_EQ(options->limit("pcap"), 1);
}

TEST_F(ConfigFiles, AnAceFilesSemaphoreLimitsAreFallbackLimits) {
  // As netsem.ace and netsemd read them: keys folded to lower case, [DEFAULT]
  // overridden by the section, below 1 is 1; [semaphores] of the file wins.
  auto options = parse(
      "[DEFAULT]\n"
      "semaphore_inherited = 4\n"
      "semaphore_pool = 9\n"
      "[service_network_semaphore]\n"
      "remote_address = 127.0.0.1\n"
      "remote_port = 53559\n"
      "Semaphore_Pool = 3\n"
      "semaphore_zero = 0\n"
      "semaphore_search = 5\n"
      "semaphore_\n"
      "enabled\n"
      "[semaphores]\n"
      "search = 2\n");
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_EQ(options->limit("pool"), 3);
  EXPECT_EQ(options->limit("inherited"), 4);
  EXPECT_EQ(options->limit("zero"), 1);
  EXPECT_EQ(options->limit("search"), 2);
  EXPECT_EQ(options->limits.size(), 4u);
  // Only in an ACE file: elsewhere such a key means nothing to the client.
  options = parse("[other]\nsemaphore_pool = 3\n");
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_TRUE(options->limits.empty());
  options = parse("[service_network_semaphore]\nsemaphore_pool = many\n");
  ASSERT_FALSE(options);
  EXPECT_NE(options.status().message().find("c.ini:2: semaphore_pool: `many` is not a whole number"), std::string::npos)
      << options.status().message();
}

TEST_F(ConfigFiles, WithoutClientServersTheFileNamesItsOwnServer) {
  const struct {
    std::string text;
    std::vector<std::string> servers;
  } cases[] = {
      {"[server]\nbind_address = 0.0.0.0\nbind_port = 47311\n", {"127.0.0.1:47311"}},
      {"[server]\nbind_address = ::\nbind_port = 47311\n", {"[::1]:47311"}},
      {"[server]\nbind_address = 10.2.3.4\n", {"10.2.3.4:53559"}},
      {"[server]\nbind_address = fd00::5\nbind_port = 7\n", {"[fd00::5]:7"}},
      {"[server]\nbind_port = 6000\n", {"127.0.0.1:6000"}},
      {"[server]\nstats_dir = /tmp\n", {"127.0.0.1:53559"}},
      // Port 0 is picked by the system when the server starts: not in the file.
      {"[server]\nbind_port = 0\n", {}},
      {"[semaphores]\npcap = 2\n", {}},
      // An ACE file: its clients' remote_address and remote_port.
      {"[service_network_semaphore]\nbind_address = 0.0.0.0\nbind_port = 53559\n"
       "remote_address = ace-sem.example\nremote_port = 53560\n",
       {"ace-sem.example:53560"}},
      {"[service_network_semaphore]\nremote_address = ace-sem.example\n", {}},
      // [client] servers wins.
      {"[server]\nbind_port = 6000\n[client]\nservers = 10.1.1.1:1\n", {"10.1.1.1:1"}},
  };
  for (const auto& c : cases) {
    auto options = parse(c.text);
    ASSERT_TRUE(options) << c.text << options.status().to_string();
    EXPECT_EQ(options->servers, c.servers) << c.text;
  }
  for (const std::string text : {"[server]\nbind_port = 70000\n", "[server]\nbind_address = bad host\n",
                                 "[service_network_semaphore]\nremote_address = x\nremote_port = http\n"}) {
    auto options = parse(text);
    ASSERT_FALSE(options) << text;
    EXPECT_EQ(options.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(options.status().message().find("c.ini:"), std::string::npos) << options.status().message();
  }
}

TEST_F(ConfigFiles, ErrorsNameFileAndLine) {
  struct Case {
    std::string text;
    std::string where;  // "c.ini:<line>"
    std::string what;   // a part of the message
  };
  const std::string too_long(256, 'n');
  const std::string local_too_long = "$" + std::string(255, 'n');
  const std::vector<Case> cases = {
      {"[client]\nserver = a:1\n", "c.ini:2", "unknown option `server` in [client]"},
      {"[client]\nServers = a:1\n", "c.ini:2", "case-sensitive"},
      {"[client]\n\nfallback = maybe\n", "c.ini:3", "`maybe` is not a fallback policy"},
      {"[client]\nfallback.x = share:0\n", "c.ini:2", "share:K"},
      {"[client]\nfallback. = fail\n", "c.ini:2", "not a valid semaphore name"},
      {"[client]\nfallback.$ = fail\n", "c.ini:2", "not a valid semaphore name"},
      {"[client]\nfallback.a%zz = fail\n", "c.ini:2", "not a valid semaphore name"},
      {"[client]\nfallback.x = fail\nfallback.%78 = local\n", "c.ini:3", "set twice (first at line 2)"},
      {"[client]\nconnect_timeout_ms = 0\n", "c.ini:2", "out of range 1..3600000"},
      {"[client]\nconnect_timeout_ms = 1s\n", "c.ini:2", "not a whole number"},
      {"[client]\nrequest_timeout_ms = -5\n", "c.ini:2", "out of range"},
      {"[client]\nreconnect_min_ms = 900\nreconnect_max_ms = 800\n", "c.ini:3", "above reconnect_max_ms"},
      {"[client]\nlabel = two words\n", "c.ini:2", "not a label"},
      {"[client]\nfallback\n", "c.ini:2", "has no value"},
      {"[semaphores]\nsearch = 0\n", "c.ini:2", "out of range 1..2147483647"},
      {"[semaphores]\nsearch = 2147483648\n", "c.ini:2", "out of range"},
      {"[semaphores]\nsearch = ten\n", "c.ini:2", "not a whole number"},
      {"[semaphores]\n$ = 2\n", "c.ini:2", "not a valid semaphore name"},
      {"[semaphores]\n$$x = 2\n", "c.ini:2", "not a valid semaphore name"},
      {"[semaphores]\nbad%2 = 2\n", "c.ini:2", "not a valid semaphore name"},
      {"[semaphores]\n" + too_long + " = 2\n", "c.ini:2", "not a valid semaphore name"},
      {"[semaphores]\n" + local_too_long + " = 2\n", "c.ini:2", "not a valid semaphore name"},
      {"[semaphores]\na = 1\n%61 = 2\n", "c.ini:3", "defined twice (first at line 2 as `a`)"},
      {"[semaphores]\nsolo\n", "c.ini:2", "has no limit"},
      {"[Client]\nservers = a:1\n", "c.ini:1", "case-sensitive: [client]?"},
      {"[client]\nservers = a:1\n[client]\n", "c.ini:3", "duplicate section"},  // the INI reader's own check
  };
  for (const auto& c : cases) {
    auto options = parse(c.text);
    ASSERT_FALSE(options) << c.text;
    EXPECT_EQ(options.status().code(), StatusCode::kInvalidArgument) << c.text;
    const std::string message = options.status().message();
    EXPECT_NE(message.find(c.where + ":"), std::string::npos) << c.text << " -> " << message;
    EXPECT_NE(message.find(c.what), std::string::npos) << c.text << " -> " << message;
  }
}

TEST_F(ConfigFiles, LongestLocalNameIsAccepted) {
  const std::string name = "$" + std::string(254, 'n');  // 255 bytes in all
  auto options = parse("[semaphores]\n" + name + " = 4\n");
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_EQ(options->limit(name), 4);
}

TEST_F(ConfigFiles, UnreadableFileIsAnIoError) {
  auto options = ClientOptions::from_file(dir_ / "missing.ini");
  ASSERT_FALSE(options);
  EXPECT_EQ(options.status().code(), StatusCode::kIoError);
  EXPECT_NE(options.status().message().find("missing.ini"), std::string::npos);
}

// Sets environment variables for one test and puts the old values back.
class Environment : public ConfigFiles {
 protected:
  void SetUp() override {
    ConfigFiles::SetUp();
    for (const char* name : {"NETSEM_CONFIG", "NETSEM_SERVER", "NETSEM_FALLBACK", "NETSEM_LABEL"}) {
      const char* value = std::getenv(name);
      saved_.emplace_back(name, value ? std::optional<std::string>(value) : std::nullopt);
      ::unsetenv(name);
    }
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
    ConfigFiles::TearDown();
  }

  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST_F(Environment, NothingSetGivesDefaults) {
  auto options = ClientOptions::from_environment();
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_TRUE(options->servers.empty());
  EXPECT_EQ(options->fallback.mode, Mode::kLocal);
  EXPECT_TRUE(options->limits.empty());
}

TEST_F(Environment, ConfigThenServerAndFallbackOverride) {
  const auto file = write("env.ini",
                          "[client]\nservers = 10.0.0.1:1\nfallback = fail\nfallback.keep = share:3\n"
                          "[semaphores]\nsearch = 6\n");
  ::setenv("NETSEM_CONFIG", file.c_str(), 1);
  auto from_file = ClientOptions::from_environment();
  ASSERT_TRUE(from_file) << from_file.status().to_string();
  EXPECT_EQ(from_file->servers, std::vector<std::string>{"10.0.0.1:1"});
  EXPECT_EQ(from_file->fallback.mode, Mode::kFail);

  ::setenv("NETSEM_SERVER", "a:1,[::1]:2", 1);
  ::setenv("NETSEM_FALLBACK", "share:2", 1);
  auto options = ClientOptions::from_environment();
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_EQ(options->servers, (std::vector<std::string>{"a:1", "[::1]:2"}));
  EXPECT_EQ(options->fallback.to_string(), "share:2");
  // The variable replaces the default policy; the file's per-name overrides
  // and limits still apply.
  EXPECT_EQ(options->fallback_policy("keep").to_string(), "share:3");
  EXPECT_EQ(options->limit("search"), 6);
}

TEST_F(Environment, LabelOverridesTheFilesLabel) {
  const auto file = write("label.ini", "[client]\nlabel = from-file\n");
  ::setenv("NETSEM_CONFIG", file.c_str(), 1);
  auto from_file = ClientOptions::from_environment();
  ASSERT_TRUE(from_file) << from_file.status().to_string();
  EXPECT_EQ(from_file->label, "from-file");
  ::setenv("NETSEM_LABEL", "nightly/build-7", 1);
  auto options = ClientOptions::from_environment();
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_EQ(options->label, "nightly/build-7");
}

TEST_F(Environment, EmptyVariablesCountAsUnset) {
  ::setenv("NETSEM_CONFIG", "", 1);
  ::setenv("NETSEM_SERVER", "", 1);
  ::setenv("NETSEM_FALLBACK", "", 1);
  auto options = ClientOptions::from_environment();
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_TRUE(options->servers.empty());
  EXPECT_EQ(options->fallback.mode, Mode::kLocal);
}

TEST_F(Environment, BadValuesNameTheVariable) {
  const struct {
    const char* name;
    std::string value;
    StatusCode code;
  } cases[] = {
      {"NETSEM_SERVER", "no host:1", StatusCode::kInvalidArgument},
      {"NETSEM_SERVER", "a:1,b:99999", StatusCode::kInvalidArgument},
      {"NETSEM_FALLBACK", "sometimes", StatusCode::kInvalidArgument},
      {"NETSEM_LABEL", "two words", StatusCode::kInvalidArgument},
      {"NETSEM_LABEL", std::string(256, 'x'), StatusCode::kInvalidArgument},
      {"NETSEM_CONFIG", "/nonexistent/netsem.ini", StatusCode::kIoError},
  };
  for (const auto& c : cases) {
    ::setenv(c.name, c.value.c_str(), 1);
    auto options = ClientOptions::from_environment();
    ::unsetenv(c.name);
    ASSERT_FALSE(options) << c.name << "=" << c.value;
    EXPECT_EQ(options.status().code(), c.code) << c.name;
    EXPECT_EQ(options.status().message().rfind(std::string(c.name) + ": ", 0), 0u) << options.status().message();
  }
}

TEST_F(Environment, AServerWithoutAPortTakesTheDefaultPort) {
  ::setenv("NETSEM_SERVER", "10.0.0.5, [::1],host", 1);
  auto options = ClientOptions::from_environment();
  ::unsetenv("NETSEM_SERVER");
  ASSERT_TRUE(options) << options.status().to_string();
  EXPECT_EQ(options->servers, (std::vector<std::string>{"10.0.0.5:53559", "[::1]:53559", "host:53559"}));
}

TEST_F(Environment, ABadConfigFileIsReportedWithItsLine) {
  const auto file = write("bad.ini", "[client]\n\nservers = nope:port\n");
  ::setenv("NETSEM_CONFIG", file.c_str(), 1);
  auto options = ClientOptions::from_environment();
  ASSERT_FALSE(options);
  EXPECT_NE(options.status().message().find("bad.ini:3: servers:"), std::string::npos) << options.status().message();
}

}  // namespace
}  // namespace netsem
