// netsemd's log as an operator reads it, from the real server: session start
// and end at info (peer, label, dialect, cause, what was still held and
// waited for), slow waits, the two formats (every JSON line parsed; text
// lines with a UTC time and key=value fields), and the level from the
// command line over the file's.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "netsemd_harness.h"
#include "ops_support.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

// A label with what JSON must escape and text must keep on one word: quotes,
// a backslash, spaces, UTF-8 (a name may hold any of them).
const std::string kHostileLabel = "say \"hi\" \\ caf\xc3\xa9 \xe2\x98\x83";

std::uint64_t hello(Client& client, std::string_view label) {
  const std::string answer = client.request(req::hello("h", label));
  const std::string prefix = "h OK netsem 1.1 ";
  EXPECT_TRUE(answer.starts_with(prefix)) << answer;
  return answer.starts_with(prefix) ? std::stoull(answer.substr(prefix.size())) : 0;
}

// The one "session ended" event of session `id` (a test failure otherwise).
nlohmann::json ended(const std::vector<nlohmann::json>& log, std::uint64_t id) {
  std::vector<nlohmann::json> found;
  for (const auto& event : events(log, "session ended")) {
    if (event.value("session", std::uint64_t{0}) == id) found.push_back(event);
  }
  EXPECT_EQ(found.size(), 1u) << "session " << id;
  return found.empty() ? nlohmann::json::object() : found.front();
}

std::unique_ptr<Netsemd> start_json(std::string server_options = {}) {
  Netsemd::Options options;
  options.semaphores = "x = 1\n";
  options.server_options = std::move(server_options);
  // The harness's file says debug: the command line wins.
  options.extra_args = {"--log-format", "json", "--log-level", "info"};
  return start_server(options);
}

TEST(OpsLog, JsonSessionLinesSayWhoWhyAndWhatWasLeft) {
  auto server = start_json();
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  auto waiter = Client::connect(server->port());
  auto kicked = Client::connect(server->port());
  auto stays = Client::connect(server->port());
  auto silent = Client::connect(server->port());  // sends nothing: no dialect
  ASSERT_TRUE(holder && waiter && kicked && stays && silent);
  const auto holder_id = hello(*holder, kHostileLabel);
  const auto waiter_id = hello(*waiter, "waiter");
  const auto kicked_id = hello(*kicked, "");
  const auto stays_id = hello(*stays, "stays");
  EXPECT_EQ(holder->request(req::acquire("a", "x")).substr(0, 5), "a OK ");
  EXPECT_EQ(waiter->request(req::acquire("b", "x")), "b QUEUED 1");
  EXPECT_EQ(kicked->request(req::create("c", "mine", 2, 2)), "c OK");
  EXPECT_EQ(kicked->request(req::acquire("d", "mine", 2)).substr(0, 5), "d OK ");
  EXPECT_EQ(stays->request(req::acquire("e", "mine", 1, 60000)), "e QUEUED 1");

  waiter->reset();  // closes while it waits: held 0, waiting 1
  EXPECT_EQ(holder->request(req::kick("k", kicked_id)), "k OK");
  EXPECT_TRUE(holder->request(req::quit("q")) == "q OK");
  EXPECT_TRUE(server->wait_for_log("\"session\":" + std::to_string(holder_id) + ",\"peer\"", 5s));
  ASSERT_TRUE(server->wait_for_log("\"cause\":\"quit\""));
  server->send_signal(SIGTERM);
  ASSERT_TRUE(server->wait_exit().has_value());

  const auto log = json_log(server->log());
  ASSERT_FALSE(log.empty());
  for (const auto& event : events(log, "session began")) {
    EXPECT_EQ(event["level"], "info");
    EXPECT_TRUE(std::regex_match(event["peer"].get<std::string>(), std::regex(R"(127\.0\.0\.1:\d+)")));
  }
  EXPECT_EQ(events(log, "session began").size(), 5u);
  // The label line, decoded: JSON carries it exactly.
  bool labelled = false;
  for (const auto& event : events(log, "session label")) {
    if (event["session"] == holder_id) labelled = event["label"] == kHostileLabel;
  }
  EXPECT_TRUE(labelled);

  const auto h = ended(log, holder_id);
  EXPECT_EQ(h["cause"], "quit");
  EXPECT_EQ(h["label"], kHostileLabel);
  EXPECT_EQ(h["dialect"], "v1");
  EXPECT_EQ(h["held"], 1);  // QUIT with a permit: released by the end
  EXPECT_EQ(h["waiting"], 0);
  EXPECT_EQ(h["peer"], holder->local_peer());
  EXPECT_GE(h["duration_ms"].get<std::int64_t>(), 0);
  EXPECT_FALSE(h.contains("name"));  // only an ACE session names its semaphore

  const auto w = ended(log, waiter_id);
  EXPECT_EQ(w["cause"], "close");
  EXPECT_EQ(w["label"], "waiter");
  EXPECT_EQ(w["held"], 0);
  EXPECT_EQ(w["waiting"], 1);

  const auto k = ended(log, kicked_id);
  EXPECT_EQ(k["cause"], "kicked");
  EXPECT_EQ(k["held"], 2);
  EXPECT_EQ(k["label"], "");

  const auto s = ended(log, stays_id);
  EXPECT_EQ(s["cause"], "shutdown");
  EXPECT_EQ(s["label"], "stays");

  // The silent one: no dialect yet, ended by the shutdown.
  std::size_t undecided = 0;
  for (const auto& event : events(log, "session ended")) undecided += event["dialect"] == "none" ? 1 : 0;
  EXPECT_EQ(undecided, 1u);
  EXPECT_EQ(events(log, "session ended").size(), 5u);
}

TEST(OpsLog, AceSessionNamesItsSemaphore) {
  auto server = start_json();
  ASSERT_TRUE(server);
  auto ace = Client::connect(server->port());
  ASSERT_TRUE(ace);
  ace->send("acquire:x|");
  EXPECT_EQ(ace->read_some(), "locked|");
  ace->send("release|");
  EXPECT_TRUE(ace->wait_closed());
  ASSERT_TRUE(server->wait_for_log("\"dialect\":\"ace\""));
  const auto log = json_log(server->log());
  const auto end = events(log, "session ended");
  ASSERT_EQ(end.size(), 1u);
  EXPECT_EQ(end[0]["name"], "x");
  EXPECT_EQ(end[0]["label"], "ace");
  EXPECT_EQ(end[0]["cause"], "quit");
}

TEST(OpsLog, SessionTimeoutIsTheCause) {
  auto server = start_json("session_timeout_ms = 200");
  ASSERT_TRUE(server);
  auto idle = Client::connect(server->port());
  ASSERT_TRUE(idle);
  const auto id = hello(*idle, "idle");
  EXPECT_TRUE(idle->wait_closed(5s));
  ASSERT_TRUE(server->wait_for_log("\"cause\":\"timeout\""));
  EXPECT_EQ(ended(json_log(server->log()), id)["label"], "idle");
}

// A grant after a wait of at least slow_wait_ms is logged with who waited
// and how long; slow_wait_ms = 0 (taken over by a reload) logs none.
TEST(OpsLog, SlowWaitIsLoggedUntilAReloadTurnsItOff) {
  Netsemd::Options options;
  options.semaphores = "x = 1\n";
  options.server_options = "slow_wait_ms = 100";
  options.extra_args = {"--log-format", "json"};
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  auto waiter = Client::connect(server->port());
  ASSERT_TRUE(holder && waiter);
  const auto waiter_id = hello(*waiter, "slow one");
  // Granted at once: never a slow wait.
  EXPECT_EQ(holder->request(req::acquire("a", "x")).substr(0, 5), "a OK ");
  EXPECT_EQ(waiter->request(req::acquire("b", "x")), "b QUEUED 1");
  // The wait being measured (not a synchronisation): past the threshold.
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(holder->request(req::release("r", "x")), "r OK 0");
  const auto granted = waiter->read_line();
  ASSERT_TRUE(granted && granted->starts_with("b OK ")) << granted.value_or("(nothing)");
  ASSERT_TRUE(server->wait_for_log("\"message\":\"slow wait\""));
  auto slow = events(json_log(server->log()), "slow wait");
  ASSERT_EQ(slow.size(), 1u);
  EXPECT_EQ(slow[0]["name"], "x");
  EXPECT_EQ(slow[0]["session"], waiter_id);
  EXPECT_EQ(slow[0]["label"], "slow one");
  EXPECT_EQ(slow[0]["peer"], waiter->local_peer());
  EXPECT_EQ(slow[0]["count"], 1);
  EXPECT_EQ(slow[0]["fence"].get<std::uint64_t>(), std::stoull(granted->substr(5)));
  EXPECT_GE(slow[0]["waited_ms"].get<std::int64_t>(), 150);

  options.server_options = "slow_wait_ms = 0";
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  ASSERT_TRUE(server->wait_for_log("SIGHUP: reloaded"));
  EXPECT_EQ(holder->request(req::acquire("c", "x")), "c QUEUED 1");
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(waiter->request(req::release("s", "x")), "s OK 0");
  ASSERT_TRUE(holder->read_line().value_or("").starts_with("c OK "));
  // The end of the session comes after the grant in the log: once it is
  // there, a slow-wait line for the grant would be too.
  holder->reset();
  ASSERT_TRUE(server->wait_for_log("\"cause\":\"close\""));
  EXPECT_EQ(events(json_log(server->log()), "slow wait").size(), 1u);
}

TEST(OpsLog, TextLinesHaveAUtcTimeAndOneWordPerField) {
  Netsemd::Options options;
  options.extra_args = {"--log-level", "info"};  // text: the default format
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  // A label posing as more fields, with what a key=value reader splits by.
  const std::string label = kHostileLabel + " cause=kicked a==\"b\" 100%";
  const auto id = hello(*client, label);
  EXPECT_EQ(client->request(req::quit("q")), "q OK");
  ASSERT_TRUE(server->wait_for_log("session ended"));
  const std::regex kLine(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|warning|error|critical) .+$)");
  const auto lines = log_lines(server->log());
  ASSERT_FALSE(lines.empty());
  std::string end_line;
  for (const auto& line : lines) {
    EXPECT_TRUE(std::regex_match(line, kLine)) << line;
    EXPECT_EQ(line.find(" debug "), std::string::npos) << "--log-level info: " << line;
    if (line.find(" info session ended ") != std::string::npos) end_line = line;
  }
  const std::string peer = client->local_peer();
  EXPECT_NE(
      end_line.find(" session ended session=" + std::to_string(id) + " peer=" + peer +
                    " dialect=v1 label=say%20%22hi%22%20\\%20caf%C3%A9%20%E2%98%83%20cause%3Dkicked%20a%3D%3D%22b%22"
                    "%20100%25 cause=quit held=0 waiting=0 duration_ms="),
      std::string::npos)
      << end_line;
  // Read back as a log parser reads key=value words: each word split at its
  // first `=`, the value percent-decoded. The label is what the peer sent,
  // and there is one cause, the real one.
  std::map<std::string, std::vector<std::string>> fields;
  std::istringstream words(end_line.substr(end_line.find(" session ended ") + 15));
  for (std::string word; std::getline(words, word, ' ');) {
    const auto equals = word.find('=');
    ASSERT_NE(equals, std::string::npos) << word;
    std::string value;
    for (std::size_t i = equals + 1; i < word.size(); ++i) {
      if (word[i] == '%' && i + 2 < word.size()) {
        value.push_back(static_cast<char>(std::stoi(word.substr(i + 1, 2), nullptr, 16)));
        i += 2;
      } else {
        value.push_back(word[i]);
      }
    }
    fields[word.substr(0, equals)].push_back(value);
  }
  EXPECT_EQ(fields["label"], std::vector<std::string>{label});
  EXPECT_EQ(fields["cause"], std::vector<std::string>{"quit"});
  EXPECT_EQ(fields["held"], std::vector<std::string>{"0"});
}

// Started without the harness: with the log at warn or off there is no
// "listening" line to learn the port from, so the server says it to a
// notify socket of the test's own.
class OpsLogLevel : public ::testing::Test {
 protected:
  // Runs netsemd with `config_text` and `args` through one session and a
  // SIGTERM; returns its log.
  std::string run(const std::string& config_text, std::vector<std::string> args) {
    const auto config = dir_.path() / "netsem.ini";
    {
      std::ofstream out(config);
      out << config_text;
    }
    NotifySocket notify(dir_.path());
    // A data directory per run: a run that failed must not make the next
    // one wait for its leases.
    const auto data = dir_.path() / ("data" + std::to_string(++runs_));
    std::vector<std::string> all = {"--config", config.string(), "--port", "0", "--data-dir", data.string()};
    all.insert(all.end(), args.begin(), args.end());
    Spawned server(all, dir_.path() / "log", notify);
    const auto ready = notify.wait_for("READY=1");
    EXPECT_TRUE(ready) << server.log();
    if (!ready) return server.log();
    auto client = Client::connect(port_of_status(*ready));
    EXPECT_TRUE(client);
    if (client) {
      EXPECT_EQ(client->request(req::quit("q")), "q OK");
    }
    ::kill(server.pid(), SIGTERM);
    EXPECT_TRUE(notify.wait_for("STOPPING=1"));
    const auto status = server.wait_exit();
    EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
    return server.log();
  }

  TempDir dir_;
  int runs_ = 0;
};

TEST_F(OpsLogLevel, CommandLineOverridesTheFile) {
  // warn on the command line over debug in the file: no info or debug line.
  const std::string warn = run("[server]\nlog_level = debug\n", {"--log-level", "warn"});
  EXPECT_EQ(warn.find(" info "), std::string::npos) << warn;
  EXPECT_EQ(warn.find(" debug "), std::string::npos) << warn;
  // off writes nothing at all.
  EXPECT_EQ(run("[server]\nlog_level = info\n", {"--log-level", "off"}), "");
  // info on the command line over off in the file.
  const std::string info = run("[server]\nlog_level = off\nlog_format = json\n", {"--log-level", "info"});
  EXPECT_NE(info.find("\"message\":\"session ended\""), std::string::npos) << info;
  // text on the command line over json in the file.
  const std::string text = run("[server]\nlog_format = json\n", {"--log-format", "text"});
  EXPECT_NE(text.find(" info session ended session="), std::string::npos) << text;
}

TEST_F(OpsLogLevel, BadNamesAreRefusedWithTheAcceptedOnes) {
  NotifySocket notify(dir_.path());
  for (const auto& [flag, value, expected] :
       {std::tuple{"--log-level", "loud", "one of trace, debug, info, warn, warning, error, off"},
        std::tuple{"--log-format", "xml", "one of text, json"}}) {
    Spawned server({flag, value, "--port", "0"}, dir_.path() / "log", notify);
    const auto status = server.wait_exit();
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2);
    EXPECT_NE(server.log().find(expected), std::string::npos) << server.log();
    EXPECT_NE(server.log().find(std::string("netsemd: ") + flag + ": "), std::string::npos) << server.log();
  }
}

}  // namespace
}  // namespace netsem::testing
