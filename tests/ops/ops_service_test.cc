// netsemd as a service, from the real server: the notifications a service
// manager gets on its notify socket (here the test's own: READY=1 once it
// serves, RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1, WATCHDOG=1
// pings when asked), --pidfile (written once listening, locked against a
// second server, removed at exit, taken over after a crash) and --data-dir.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <csignal>
#include <fstream>
#include <string>

#include "netsemd_harness.h"
#include "ops_support.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

TEST(OpsNotify, ReadyOnceServingReloadingStoppingAndWatchdog) {
  TempDir dir;
  NotifySocket notify(dir.path());
  // A watchdog of 400 ms: pings every 200 ms.
  ScopedEnv env({{"NOTIFY_SOCKET", notify.path().string()}, {"WATCHDOG_USEC", "400000"}});
  auto server = start_server(with_semaphores("x = 1\n"));
  ASSERT_TRUE(server);
  const auto ready = notify.wait_for("READY=1");
  ASSERT_TRUE(ready);
  // The first thing said, once the server listens: its address is in STATUS.
  EXPECT_EQ(notify.seen().size(), 1u);
  EXPECT_EQ(port_of_status(*ready), server->port()) << *ready;
  EXPECT_NE(NotifySocket::value_of(*ready, "STATUS").find("1 defined semaphores"), std::string::npos);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request(req::acquire("a", "x")).substr(0, 5), "a OK ");

  // Pings from the loop while it runs.
  ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 3s));
  ASSERT_TRUE(notify.wait_for("WATCHDOG=1", 3s));

  server->send_signal(SIGHUP);
  const auto reloading = notify.wait_for("RELOADING=1");
  ASSERT_TRUE(reloading);
  // systemd 253's Type=notify-reload wants the time of the reload.
  const std::string usec = NotifySocket::value_of(*reloading, "MONOTONIC_USEC");
  EXPECT_FALSE(usec.empty());
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  EXPECT_LE(std::stoull(usec), static_cast<std::uint64_t>(now.tv_sec) * 1000000 + now.tv_nsec / 1000);
  const auto reloaded = notify.wait_for("READY=1");
  ASSERT_TRUE(reloaded);
  EXPECT_EQ(port_of_status(*reloaded), server->port());
  EXPECT_TRUE(server->wait_for_log("SIGHUP: reloaded"));

  server->send_signal(SIGTERM);
  const auto stopping = notify.wait_for("STOPPING=1");
  ASSERT_TRUE(stopping);
  EXPECT_NE(NotifySocket::value_of(*stopping, "STATUS").find("closing 1 sessions"), std::string::npos);
  const auto status = server->wait_exit();
  ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  // Nothing after STOPPING=1: no ping from a stopping server.
  EXPECT_FALSE(notify.next(300ms));
}

TEST(OpsNotify, NoPingsUnlessTheWatchdogIsForThisProcess) {
  TempDir dir;
  NotifySocket notify(dir.path());
  // WATCHDOG_PID names another process (pid 1): the pings are not ours to send.
  ScopedEnv env({{"NOTIFY_SOCKET", notify.path().string()}, {"WATCHDOG_USEC", "100000"}, {"WATCHDOG_PID", "1"}});
  auto server = start_server();
  ASSERT_TRUE(server);
  ASSERT_TRUE(notify.wait_for("READY=1"));
  EXPECT_FALSE(notify.next(500ms)) << "five intervals without a ping";
}

TEST(OpsNotify, NothingIsSentWithoutANotifySocket) {
  // Not under systemd: netsemd starts, serves and stops as before, and warns
  // of nothing.
  auto server = start_server();
  ASSERT_TRUE(server);
  server->send_signal(SIGTERM);
  ASSERT_TRUE(server->wait_exit());
  EXPECT_EQ(server->log().find("notify"), std::string::npos) << server->log();
}

// The pid file's content once it is written ("" until then).
std::string read_pid(const std::filesystem::path& path) {
  std::string text = read_text(path);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

bool wait_for_pid(const std::filesystem::path& path, pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_pid(path) == std::to_string(pid)) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

TEST(OpsPidFile, WrittenOnceListeningLockedAgainstASecondServerRemovedAtExit) {
  TempDir dir;
  const auto pid_path = dir.path() / "netsemd.pid";
  Netsemd::Options options;
  options.extra_args = {"--pidfile", pid_path.string()};
  auto first = start_server(options);
  ASSERT_TRUE(first);
  ASSERT_TRUE(wait_for_pid(pid_path, first->pid())) << read_text(pid_path);

  // A second server on another data directory and port, same pid file.
  std::string error;
  auto second = Netsemd::start(options, &error);
  EXPECT_FALSE(second);
  EXPECT_NE(error.find("exit status 1"), std::string::npos) << error;
  EXPECT_NE(error.find("pidfile " + pid_path.string() + " is held by a running netsemd (pid " +
                       std::to_string(first->pid()) + ")"),
            std::string::npos)
      << error;
  // The refusal left the first server's file as it was.
  EXPECT_EQ(read_pid(pid_path), std::to_string(first->pid()));

  first->send_signal(SIGTERM);
  ASSERT_TRUE(first->wait_exit());
  EXPECT_FALSE(std::filesystem::exists(pid_path));
}

TEST(OpsPidFile, ALeftoverFileIsTakenOver) {
  TempDir dir;
  const auto pid_path = dir.path() / "netsemd.pid";
  Netsemd::Options options;
  options.extra_args = {"--pidfile", pid_path.string()};
  // A file no process holds, naming a pid that may be anyone's.
  {
    std::ofstream out(pid_path);
    out << "1\n";
  }
  auto server = start_server(options);
  ASSERT_TRUE(server);
  ASSERT_TRUE(wait_for_pid(pid_path, server->pid()));
  // Killed: the file stays, its lock goes with the process.
  server->send_signal(SIGKILL);
  ASSERT_TRUE(server->wait_exit());
  EXPECT_TRUE(std::filesystem::exists(pid_path));
  auto next = start_server(options);
  ASSERT_TRUE(next);
  EXPECT_TRUE(wait_for_pid(pid_path, next->pid()));
}

TEST(OpsPidFile, AnEmptyNameOrAnUnwritablePlaceIsRefused) {
  TempDir dir;
  Netsemd::Options options;
  options.extra_args = {"--pidfile", ""};
  std::string error;
  EXPECT_FALSE(Netsemd::start(options, &error));
  EXPECT_NE(error.find("exit status 2"), std::string::npos) << error;
  EXPECT_NE(error.find("--pidfile: a file name is required"), std::string::npos) << error;
  options.extra_args = {"--pidfile", (dir.path() / "no" / "such" / "dir" / "x.pid").string()};
  EXPECT_FALSE(Netsemd::start(options, &error));
  EXPECT_NE(error.find("exit status 1"), std::string::npos) << error;
  EXPECT_NE(error.find("cannot open"), std::string::npos) << error;
}

TEST(OpsDataDir, HoldsTheJournalRunAndStatusFilesWhateverTheFileSays) {
  TempDir dir;
  const auto data = dir.path() / "state";
  Netsemd::Options options;  // the harness's file names its own data_dir and stats_dir
  options.extra_args = {"--data-dir", data.string()};
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request(req::create("c", "kept", 3, 3)), "c OK");
  server->send_signal(SIGTERM);
  ASSERT_TRUE(server->wait_exit());
  for (const char* file : {"journal", "run", "fences", "semaphore.status", "lock"}) {
    EXPECT_TRUE(std::filesystem::exists(data / file)) << file;
    EXPECT_FALSE(std::filesystem::exists(server->data_dir() / file)) << file << " in the file's data_dir";
  }
  EXPECT_NE(read_text(data / "semaphore.status").find("\nkept created 3 3 0 0"), std::string::npos);

  // Started again on it: the created semaphore is there.
  auto again = start_server(options);
  ASSERT_TRUE(again);
  auto reader = Client::connect(again->port());
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->request(req::get("g", "kept")).substr(0, 5), "g OK ");
  EXPECT_NE(reader->request(req::get("g2", "kept")).find("created"), std::string::npos);
}

// The unit runs netsemd with --data-dir, so every `systemctl reload` warned
// "data_dir changed; it takes effect after a restart" (seen under a real
// systemd, tests/package/systemd_test.sh): a reload re-read the file without
// the command line's flags. They stay over the file, and only what the file
// really changed is named.
TEST(OpsDataDir, AReloadKeepsTheFlagsAndNamesOnlyWhatTheFileChanged) {
  TempDir dir;
  const auto data = dir.path() / "state";
  Netsemd::Options options;
  options.extra_args = {"--data-dir", data.string(), "--log-level", "info", "--log-format", "text"};
  auto server = start_server(options);
  ASSERT_TRUE(server);
  options.semaphores = "r = 2\n";
  options.server_options = "max_semaphores = 5000\n";
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  ASSERT_TRUE(server->wait_for_log("SIGHUP: reloaded 1 defined semaphores"));
  const std::string log = server->log();
  EXPECT_NE(log.find("SIGHUP: max_semaphores changed; it takes effect after a restart"), std::string::npos) << log;
  for (const char* option : {"data_dir", "stats_dir", "log_level", "log_format"}) {
    EXPECT_EQ(log.find(std::string("SIGHUP: ") + option + " changed"), std::string::npos) << option << "\n" << log;
  }
  // The reload took [semaphores] over, and the server still writes to --data-dir.
  auto client = Client::connect(server->port());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->request(req::get("g", "r")), "g OK 2 2 0 0 defined");
  EXPECT_EQ(client->request(req::create("c", "kept", 1, 1)), "c OK");
  server->send_signal(SIGTERM);
  ASSERT_TRUE(server->wait_exit());
  EXPECT_NE(read_text(data / "semaphore.status").find("\nkept created 1 1 0 0"), std::string::npos);
}

// Under systemd, stderr is journald's stream, named by JOURNAL_STREAM
// (DEVICE:INODE): each line then carries its syslog priority ("<4>" for a
// warning), which journald strips and files, so that `journalctl -p
// warning` finds the warnings (without, every line was filed as info). A
// file of the test's own stands for the stream.
TEST(OpsJournal, LinesCarryTheirPriorityWhenStderrIsTheJournalsStream) {
  TempDir dir;
  const auto config = dir.path() / "netsem.ini";
  for (const bool journal : {true, false}) {
    std::ofstream(config) << "[server]\nhttp_enabled = off\nlog_level = info\n";
    const auto log = dir.path() / (journal ? "journal.log" : "plain.log");
    std::ofstream{log};
    struct stat status {};
    ASSERT_EQ(::stat(log.c_str(), &status), 0);
    const std::string stream = journal ? std::to_string(status.st_dev) + ":" + std::to_string(status.st_ino)
                                       : std::to_string(status.st_dev) + ":" + std::to_string(status.st_ino + 1);
    ScopedEnv env({{"JOURNAL_STREAM", stream}});
    NotifySocket notify(dir.path());
    Spawned server({"--config", config.string(), "--port", "0", "--data-dir", (dir.path() / "data").string()}, log,
                   notify);
    const auto ready = notify.wait_for("READY=1");
    ASSERT_TRUE(ready) << server.log();
    // A reload of a file that changed an option a reload cannot take: a
    // warning among the info lines.
    std::ofstream(config) << "[server]\nhttp_enabled = off\nlog_level = info\nmax_semaphores = 5000\n";
    ::kill(server.pid(), SIGHUP);
    ASSERT_TRUE(notify.wait_for("READY=1"));
    ::kill(server.pid(), SIGTERM);
    const auto exit = server.wait_exit();
    ASSERT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0);
    const auto lines = log_lines(server.log());
    ASSERT_GT(lines.size(), 3u);
    int warnings = 0;
    for (const auto& line : lines) {
      const bool warning = line.find(" warning SIGHUP: max_semaphores changed") != std::string::npos;
      warnings += warning ? 1 : 0;
      if (!journal) {
        EXPECT_TRUE(line.starts_with("20")) << "JOURNAL_STREAM names another file: " << line;
      } else if (warning) {
        EXPECT_TRUE(line.starts_with("<4>20")) << line;
      } else {
        EXPECT_TRUE(line.starts_with("<6>20")) << line;  // the others are at info
      }
    }
    EXPECT_EQ(warnings, 1) << server.log();
  }
}

}  // namespace
}  // namespace netsem::testing
