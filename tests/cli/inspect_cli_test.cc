// End-to-end tests of netsem's stats, holders, waiters, sessions and kick,
// and of --label: the built binary against the real netsemd on a loopback
// port, with raw protocol sessions of the harness as the holders and
// waiters it shows. Also checks that docs/cli.md documents the JSON fields
// of the listings.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "netsemd_harness.h"
#include "protocol/answers.h"
#include "support/doc_tables.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

// A raw protocol v1 session that said HELLO with a label.
struct RawSession {
  std::unique_ptr<Client> client;
  std::uint64_t id = 0;
};

class CliInspect : public ::testing::Test {
 protected:
  void start(std::string server_options = {}) {
    std::string error;
    server_ = Netsemd::start(with_server_options(std::move(server_options)), &error);
    ASSERT_TRUE(server_) << error;
  }

  std::string server_env() const { return "NETSEM_SERVER=127.0.0.1:" + std::to_string(server_->port()); }
  NetsemRun netsem(const std::vector<std::string>& args, std::vector<std::string> env = {}) {
    env.push_back(server_env());
    return run_netsem(args, env);
  }

  RawSession session(std::string_view label) {
    RawSession raw;
    raw.client = Client::connect(server_->port());
    EXPECT_TRUE(raw.client);
    if (!raw.client) return raw;
    const std::string answer = raw.client->request(req::hello("h", label));
    protocol::Answer parsed;
    protocol::HelloAnswer hello;
    EXPECT_TRUE(protocol::parse_answer(answer, parsed) && protocol::parse_hello(parsed.rest, hello)) << answer;
    raw.id = hello.session_id;
    return raw;
  }

  std::unique_ptr<Netsemd> server_;
};

std::string id_text(std::uint64_t id) {
  return std::to_string(id);
}

TEST_F(CliInspect, HoldersWaitersAndSessionsShowTheOtherSessions) {
  start();
  RawSession holder = session("build-7");
  RawSession waiter = session("nightly job");  // a space travels encoded and shows as %20
  EXPECT_EQ(holder.client->request(req::acquire("a", "db")), "a OK 1");
  EXPECT_EQ(waiter.client->request(req::acquire("b", "db", 1, 60000)), "b QUEUED 1");

  NetsemRun holders = netsem({"holders", "db"});
  ASSERT_EQ(holders.exit_code, 0) << holders;
  EXPECT_TRUE(std::regex_search(holders.out, std::regex("^db: 1 holder\nSESSION +COUNT +FENCE +HELD +LABEL\n" +
                                                        id_text(holder.id) + " +1 +1 +[0-9.]+ m?s +build-7\n$")))
      << holders;
  holders = netsem({"holders", "--json", "db"});
  ASSERT_EQ(holders.exit_code, 0) << holders;
  EXPECT_TRUE(
      std::regex_search(holders.out, std::regex(R"(^\[\n \{"session_id":)" + id_text(holder.id) +
                                                R"(,"count":1,"fence":1,"held_ms":[0-9]+,"label":"build-7"\}\n\]\n$)")))
      << holders;

  NetsemRun waiters = netsem({"waiters", "db", "--json"});
  ASSERT_EQ(waiters.exit_code, 0) << waiters;
  EXPECT_TRUE(std::regex_search(
      waiters.out,
      std::regex(R"(^\[\n \{"session_id":)" + id_text(waiter.id) +
                 R"(,"count":1,"waited_ms":[0-9]+,"timeout_ms_left":[0-9]+,"label":"nightly job"\}\n\]\n$)")))
      << waiters;
  waiters = netsem({"waiters", "db"});
  ASSERT_EQ(waiters.exit_code, 0) << waiters;
  EXPECT_NE(waiters.out.find("db: 1 waiter\n"), std::string::npos) << waiters;
  EXPECT_NE(waiters.out.find(" nightly job\n"), std::string::npos) << waiters;

  // The command's own session is listed too, under the label it was given.
  NetsemRun sessions = netsem({"sessions", "--label", "inspector"});
  ASSERT_EQ(sessions.exit_code, 0) << sessions;
  std::smatch self;
  ASSERT_TRUE(std::regex_search(sessions.out, self,
                                std::regex("^server 127\\.0\\.0\\.1:[0-9]+: 3 sessions \\(this one is ([0-9]+)\\)\n")))
      << sessions;
  EXPECT_TRUE(std::regex_search(sessions.out, std::regex("\n" + self[1].str() +
                                                         " +127\\.0\\.0\\.1:[0-9]+ +v1 +0 +0 "
                                                         ".* inspector\n")))
      << sessions;
  EXPECT_TRUE(std::regex_search(
      sessions.out, std::regex("\n" + id_text(holder.id) + " +127\\.0\\.0\\.1:[0-9]+ +v1 +1 +0 .* build-7\n")))
      << sessions;
  EXPECT_TRUE(std::regex_search(
      sessions.out, std::regex("\n" + id_text(waiter.id) + " +127\\.0\\.0\\.1:[0-9]+ +v1 +0 +1 .* nightly job\n")))
      << sessions;

  // NETSEM_LABEL names the session too, and --label wins over it.
  sessions = netsem({"sessions", "--json"}, {"NETSEM_LABEL=from-env"});
  ASSERT_EQ(sessions.exit_code, 0) << sessions;
  EXPECT_NE(sessions.out.find(R"("dialect":"v1","permits_held":0,"pending":0,)"), std::string::npos) << sessions;
  EXPECT_NE(sessions.out.find(R"("label":"from-env"})"), std::string::npos) << sessions;
  sessions = netsem({"--label", "from-flag", "sessions", "--json"}, {"NETSEM_LABEL=from-env"});
  EXPECT_NE(sessions.out.find(R"("label":"from-flag"})"), std::string::npos) << sessions;
  EXPECT_EQ(sessions.out.find("from-env"), std::string::npos) << sessions;
}

// netsem cluster against a single server: CLUSTER says it is in no
// cluster (BAD_ARG: exit 2), raise-fences too; bad arguments are refused
// before connecting.
// The cluster itself is tests/cluster/netsemd_cluster_test.cc's.
TEST_F(CliInspect, ClusterOfASingleServerSaysItIsNotInACluster) {
  start();
  const NetsemRun status = netsem({"cluster", "status"});
  EXPECT_EQ(status.exit_code, 2) << status;
  EXPECT_NE(status.err.find("not in a cluster"), std::string::npos) << status;
  const NetsemRun remove = netsem({"cluster", "remove", "2"});
  EXPECT_EQ(remove.exit_code, 2) << remove;
  EXPECT_NE(remove.err.find("not in a cluster"), std::string::npos) << remove;
  const NetsemRun bad = netsem({"cluster", "remove", "two"});
  EXPECT_EQ(bad.exit_code, 2) << bad;
  EXPECT_NE(bad.err.find("cluster remove: ID must be a server id"), std::string::npos) << bad;
  // raise-fences: a single server's fences are its journal's; refused.
  const NetsemRun raise = netsem({"cluster", "raise-fences", "1000"});
  EXPECT_EQ(raise.exit_code, 2) << raise;
  EXPECT_NE(raise.err.find("not in a cluster"), std::string::npos) << raise;
  const NetsemRun zero = netsem({"cluster", "raise-fences", "0"});
  EXPECT_EQ(zero.exit_code, 2) << zero;
  EXPECT_NE(zero.err.find("cluster raise-fences: N must be a whole number from 1 to 9007199254740992"),
            std::string::npos)
      << zero;
  EXPECT_EQ(netsem({"cluster", "add", "4", "10.0.0.4:7001"}).exit_code, 2);
  const NetsemRun none = netsem({"cluster"});
  EXPECT_EQ(none.exit_code, 2) << none;
}

TEST_F(CliInspect, KickEndsAnotherSessionAndItsPermitGoesToTheWaiter) {
  start();
  RawSession holder = session("victim");
  RawSession waiter = session("next");
  EXPECT_EQ(holder.client->request(req::acquire("a", "db")), "a OK 1");
  EXPECT_EQ(waiter.client->request(req::acquire("b", "db")), "b QUEUED 1");

  const NetsemRun kicked = netsem({"kick", id_text(holder.id)});
  ASSERT_EQ(kicked.exit_code, 0) << kicked;
  EXPECT_EQ(kicked.out, "");
  const auto told = holder.client->read_line();
  ASSERT_TRUE(told);
  EXPECT_EQ(told->rfind("* ERR KICKED ", 0), 0u) << *told;
  EXPECT_TRUE(holder.client->wait_closed());
  EXPECT_EQ(waiter.client->read_line().value_or("nothing"), "b OK 2");

  const NetsemRun again = netsem({"kick", id_text(holder.id)});
  EXPECT_EQ(again.exit_code, 1) << again;
  EXPECT_NE(again.err.find("NOT_FOUND"), std::string::npos) << again;
  for (const char* bad : {"abc", "0", "-3", "18446744073709551616"}) {
    const NetsemRun usage = netsem({"kick", bad});
    EXPECT_EQ(usage.exit_code, 2) << bad << ": " << usage;
    EXPECT_NE(usage.err.find("kick: ID must be a session id"), std::string::npos) << usage;
  }
  // The largest id is an id: no live session has it.
  EXPECT_EQ(netsem({"kick", "18446744073709551615"}).exit_code, 1);
}

TEST_F(CliInspect, KickWithoutTheAdminRightExits77) {
  start("admin_networks = 10.0.0.0/8");
  RawSession other = session("other");
  const NetsemRun denied = netsem({"kick", id_text(other.id)});
  EXPECT_EQ(denied.exit_code, 77) << denied;
  EXPECT_NE(denied.err.find("DENIED"), std::string::npos) << denied;
  EXPECT_EQ(other.client->request(req::ping("p")), "p PONG");
}

TEST_F(CliInspect, StatsPrintsATableOrTheServersJson) {
  start();
  const NetsemRun table = netsem({"stats"});
  ASSERT_EQ(table.exit_code, 0) << table;
  EXPECT_TRUE(std::regex_search(table.out, std::regex(R"(^server 127\.0\.0\.1:[0-9]+: netsem [0-9.]+, protocol 1\.1
FIELD +VALUE
sessions +1
)"))) << table;
  EXPECT_TRUE(std::regex_search(table.out, std::regex("\nsession_timeout_ms +[0-9]+\n"))) << table;
  EXPECT_TRUE(std::regex_search(table.out, std::regex("\nwait_us +no samples\n"))) << table;

  // A request that waited shows in wait_us.
  RawSession holder = session("h");
  RawSession waiter = session("w");
  EXPECT_EQ(holder.client->request(req::acquire("a", "db")), "a OK 1");
  EXPECT_EQ(waiter.client->request(req::acquire("b", "db")), "b QUEUED 1");
  EXPECT_EQ(holder.client->request(req::release("r", "db")), "r OK 0");
  EXPECT_EQ(waiter.client->read_line().value_or("nothing"), "b OK 2");
  const NetsemRun after = netsem({"stats"});
  EXPECT_TRUE(std::regex_search(after.out, std::regex("\nwait_us +1 sample, mean [0-9]+ us, 99 % at most [0-9]+ us\n")))
      << after;

  const NetsemRun json = netsem({"stats", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json;
  EXPECT_TRUE(std::regex_search(json.out, std::regex(R"(^\{"sessions":[0-9]+,.*"wait_us":\{"count":1,.*\}\n$)")))
      << json;
  EXPECT_EQ(std::count(json.out.begin(), json.out.end(), '\n'), 1);
}

TEST_F(CliInspect, ErrorsExitWithTheirCodes) {
  start();
  NetsemRun absent = netsem({"holders", "nothing"});
  EXPECT_EQ(absent.exit_code, 1) << absent;
  EXPECT_NE(absent.err.find("NOT_FOUND"), std::string::npos) << absent;
  EXPECT_EQ(netsem({"waiters", "nothing"}).exit_code, 1);
  EXPECT_EQ(netsem({"holders", "$local"}).exit_code, 2);
  EXPECT_EQ(netsem({"holders"}).exit_code, 2);
  const NetsemRun label = netsem({"--label", "two words", "sessions"});
  EXPECT_EQ(label.exit_code, 2) << label;
  EXPECT_NE(label.err.find("--label"), std::string::npos) << label;
  EXPECT_EQ(netsem({"sessions"}, {"NETSEM_LABEL=two words"}).exit_code, 2);

  // Without a server: 69, whatever the fallback policy.
  const std::string nowhere = "--server=127.0.0.1:1";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"holders", "db"}, {"waiters", "db"}, {"sessions"}, {"kick", "3"}, {"stats"}}) {
    std::vector<std::string> with = args;
    with.push_back(nowhere);
    const NetsemRun run = run_netsem(with);
    EXPECT_EQ(run.exit_code, 69) << args[0] << ": " << run;
    EXPECT_NE(run.err.find("netsem: " + args[0] + ": no server reachable ("), std::string::npos) << run;
    EXPECT_EQ(run.out, "");
  }
}

TEST_F(CliInspect, GetOfAnAbsentNameExits3AndPingShowsTheServersVersion) {
  start();
  const NetsemRun absent = netsem({"get", "nothing"});
  EXPECT_EQ(absent.exit_code, 3) << absent;
  EXPECT_NE(absent.out.find("nothing  absent"), std::string::npos) << absent;
  EXPECT_EQ(absent.err, "");
  RawSession holder = session("h");
  EXPECT_EQ(holder.client->request(req::acquire("a", "db")), "a OK 1");
  EXPECT_EQ(netsem({"get", "db"}).exit_code, 0);
  EXPECT_EQ(holder.client->request(req::release("r", "db")), "r OK 1");
  // An undefined semaphore goes when idle: absent again.
  EXPECT_EQ(netsem({"get", "--json", "db"}).exit_code, 3);

  const NetsemRun ping = netsem({"ping"});
  ASSERT_EQ(ping.exit_code, 0) << ping;
  EXPECT_TRUE(std::regex_search(
      ping.out,
      std::regex(
          R"(^PONG from 127\.0\.0\.1:[0-9]+ in [0-9]+\.[0-9]{2} ms \(netsem [0-9]+\.[0-9]+\.[0-9]+[^ ]*, protocol 1\.1\)\n$)")))
      << ping;
}

TEST_F(CliInspect, DocsDescribeTheJsonFieldsOfTheListings) {
  start();
  std::ifstream in(std::filesystem::path(NETSEM_SOURCE_DIR) / "docs/cli.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  RawSession holder = session("h");
  RawSession waiter = session("w");
  EXPECT_EQ(holder.client->request(req::acquire("a", "db")), "a OK 1");
  EXPECT_EQ(waiter.client->request(req::acquire("b", "db")), "b QUEUED 1");
  using test_support::json_keys;
  using test_support::table_first_column;
  EXPECT_EQ(json_keys(netsem({"holders", "--json", "db"}).out), table_first_column(doc, "### holders JSON fields"));
  EXPECT_EQ(json_keys(netsem({"waiters", "--json", "db"}).out), table_first_column(doc, "### waiters JSON fields"));
  EXPECT_EQ(json_keys(netsem({"sessions", "--json"}).out), table_first_column(doc, "### sessions JSON fields"));
}

}  // namespace
}  // namespace netsem::testing
