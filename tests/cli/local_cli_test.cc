// End-to-end tests of `netsem local list` and `netsem local clean`, and of
// the host-local section of `netsem status`: the built binary against real
// System V semaphores that real processes hold and wait on (`netsem run` of
// a `$` name), in a registry directory of the test's own. Also a race of
// LocalRegistry::clean() against a process taking and giving back permits,
// which must never lose a permit to the removal. Each test removes the
// semaphores it made (remove_all) and stops the processes it started by pid.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "client/local_registry.h"
#include "client/local_semaphores.h"
#include "netsemd_harness.h"
#include "support/doc_tables.h"

namespace netsem::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// `netsem ARGS` in the background, its stdout and stderr to `out`; killed
// (SIGKILL) and reaped by the destructor unless finish() reaped it.
class Background {
 public:
  Background(const std::vector<std::string>& args, const std::vector<std::string>& env,
             const std::filesystem::path& out)
      : out_(out) {
    const ChildCommand command(NETSEM_CLI_PATH, args, env);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, STDIN_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::execve(command.argv()[0], command.argv(), command.envp());
      ::_exit(126);
    }
  }
  ~Background() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  std::string output() const { return read_text(out_); }
  // The exit code once it exits within `timeout`, else -1.
  int finish(milliseconds timeout = milliseconds(10000)) {
    const auto deadline = Clock::now() + timeout;
    int status = 0;
    while (Clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    return -1;
  }

 private:
  std::filesystem::path out_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// Polls `condition` every 10 ms until it holds or `timeout` passes.
template <typename Condition>
bool eventually(Condition condition, milliseconds timeout = milliseconds(10000)) {
  const auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

class CliLocal : public ::testing::Test {
 protected:
  void SetUp() override {
    local_dir_ = dir_.path() / "local";
    config_ = dir_.path() / "client.ini";
    // No server: `$` names never need one, and the local commands ask none.
    std::ofstream(config_) << "[client]\nservers = 127.0.0.1:1\nlocal_dir = " << local_dir_.string()
                           << "\n\n[semaphores]\n$pool = 2\n";
  }
  void TearDown() override { EXPECT_TRUE(client::LocalSemaphores(local_dir_).remove_all().is_ok()); }

  NetsemRun netsem(std::vector<std::string> args, std::vector<std::string> env = {}) {
    args.insert(args.begin(), {"--config", config_.string()});
    return run_netsem(args, env);
  }
  std::unique_ptr<Background> background(std::vector<std::string> args, const std::string& out) {
    args.insert(args.begin(), {"--config", config_.string()});
    return std::make_unique<Background>(args, std::vector<std::string>{}, dir_.path() / out);
  }

  TempDir dir_;
  std::filesystem::path local_dir_;
  std::filesystem::path config_;
};

TEST_F(CliLocal, ListShowsWhatTheKernelSaysOfEachSemaphore) {
  NetsemRun list = netsem({"local", "list"});
  ASSERT_EQ(list.exit_code, 0) << list;
  EXPECT_EQ(list.out, local_dir_.string() + ": 0 host-local semaphores\n") << list;
  const NetsemRun bare = netsem({"local"});
  EXPECT_EQ(bare.exit_code, 2) << bare;
  EXPECT_EQ(bare.err, "netsem: local: list or clean is needed (see netsem local --help)\n") << bare;

  // $idle: made and given back. $used: one of $pool's 2 permits consumed by
  // wait. $x: a holder and a waiter, both real processes.
  ASSERT_EQ(netsem({"run", "$idle", "--", "true"}).exit_code, 0);
  ASSERT_EQ(netsem({"wait", "$pool"}).exit_code, 0);
  // deploy: a server name served by its fallback stand-in (no server runs).
  const NetsemRun fallback = netsem({"run", "deploy", "--", "true"});
  ASSERT_EQ(fallback.exit_code, 0) << fallback;
  auto holder = background({"run", "$x", "--", "sh", "-c", "echo ready; exec sleep 30"}, "holder.out");
  ASSERT_TRUE(eventually([&] { return holder->output().find("ready") != std::string::npos; })) << holder->output();
  auto waiter = background({"run", "-t", "30", "$x", "--", "echo", "got it"}, "waiter.out");
  ASSERT_TRUE(eventually([&] {
    return netsem({"local", "list", "--json"})
               .out.find(
                   "\"name\":\"$x\",\"kind\":\"local\",\"limit\":1,\"free\":0,"
                   "\"held\":1,\"waiting\":1") != std::string::npos;
  })) << netsem({"local", "list", "--json"});

  list = netsem({"local", "list"});
  ASSERT_EQ(list.exit_code, 0) << list;
  EXPECT_TRUE(std::regex_match(list.out, std::regex(std::regex_replace(local_dir_.string(), std::regex("[.]"), "\\.") +
                                                    ": 4 host-local semaphores\n"
                                                    "NAME +KIND +LIMIT +FREE +HELD +WAITING +SEMID\n"
                                                    "\\$idle +local +1 +1 +0 +0 +[0-9]+\n"
                                                    "\\$pool +local +2 +1 +0 +0 +[0-9]+\n"
                                                    "\\$x +local +1 +0 +1 +1 +[0-9]+\n"
                                                    "deploy +fallback +1 +1 +0 +0 +[0-9]+\n")))
      << list;

  ::kill(holder->pid(), SIGKILL);  // the kernel gives its permit back (SEM_UNDO): the waiter runs
  EXPECT_EQ(holder->finish(), 128 + SIGKILL);
  EXPECT_EQ(waiter->finish(), 0) << waiter->output();
  EXPECT_NE(waiter->output().find("got it"), std::string::npos) << waiter->output();
  list = netsem({"local", "list", "--json"});
  EXPECT_NE(list.out.find("\"name\":\"$x\",\"kind\":\"local\",\"limit\":1,\"free\":1,\"held\":0,\"waiting\":0"),
            std::string::npos)
      << list;
}

TEST_F(CliLocal, CleanRemovesOnlyWhatNoProcessHoldsOrWaitsOn) {
  ASSERT_EQ(netsem({"run", "$idle", "--", "true"}).exit_code, 0);
  ASSERT_EQ(netsem({"wait", "$pool"}).exit_code, 0);
  auto holder = background({"run", "$held", "--", "sh", "-c", "echo ready; exec sleep 30"}, "holder.out");
  ASSERT_TRUE(eventually([&] { return holder->output().find("ready") != std::string::npos; })) << holder->output();
  auto waiter_holder = background({"run", "$x", "--", "sh", "-c", "echo ready; exec sleep 30"}, "x-holder.out");
  ASSERT_TRUE(eventually([&] { return waiter_holder->output().find("ready") != std::string::npos; }));
  auto waiter = background({"run", "-t", "30", "$x", "--", "echo", "got it"}, "waiter.out");
  ASSERT_TRUE(eventually([&] {
    return netsem({"local", "list", "--json"})
               .out.find(
                   "\"name\":\"$x\",\"kind\":\"local\",\"limit\":1,\"free\":0,"
                   "\"held\":1,\"waiting\":1") != std::string::npos;
  }));
  const auto idle_file = local_dir_ / client::LocalRegistry::entry_file_name("$idle");
  ASSERT_TRUE(std::filesystem::exists(idle_file));

  NetsemRun clean = netsem({"local", "clean", "--dry-run"});
  ASSERT_EQ(clean.exit_code, 0) << clean;
  EXPECT_NE(clean.out.find("would remove $idle (semaphore "), std::string::npos) << clean;
  EXPECT_NE(clean.out.find("kept $held: 1 permit(s) held\n"), std::string::npos) << clean;
  EXPECT_NE(clean.out.find("kept $x: 1 process(es) waiting\n"), std::string::npos) << clean;
  EXPECT_NE(clean.out.find("kept $pool: 1 of 2 permit(s) consumed by wait"), std::string::npos) << clean;
  EXPECT_NE(clean.out.find(": would remove 1, kept 3\n"), std::string::npos) << clean;
  EXPECT_TRUE(std::filesystem::exists(idle_file));
  EXPECT_NE(netsem({"local", "list"}).out.find(": 4 host-local semaphores\n"), std::string::npos);

  clean = netsem({"local", "clean"});
  ASSERT_EQ(clean.exit_code, 0) << clean;
  EXPECT_NE(clean.out.find("removed $idle (semaphore "), std::string::npos) << clean;
  EXPECT_NE(clean.out.find(": removed 1, kept 3\n"), std::string::npos) << clean;
  EXPECT_FALSE(std::filesystem::exists(idle_file));
  NetsemRun list = netsem({"local", "list"});
  EXPECT_NE(list.out.find(": 3 host-local semaphores\n"), std::string::npos) << list;
  EXPECT_EQ(list.out.find("$idle"), std::string::npos) << list;

  // The holders kept theirs: the waiter gets $x once its holder ends, and
  // $held's holder still holds.
  ::kill(waiter_holder->pid(), SIGKILL);
  EXPECT_EQ(waiter->finish(), 0) << waiter->output();
  EXPECT_NE(netsem({"local", "list", "--json"})
                .out.find("\"name\":\"$held\",\"kind\":\"local\",\"limit\":1,"
                          "\"free\":0,\"held\":1,\"waiting\":0"),
            std::string::npos);

  clean = netsem({"local", "clean", "--json"});
  ASSERT_EQ(clean.exit_code, 0) << clean;
  EXPECT_TRUE(std::regex_search(clean.out, std::regex("\"name\":\"\\$x\",\"kind\":\"local\",\"limit\":1,\"free\":1,"
                                                      "\"held\":0,\"waiting\":0,\"semid\":[0-9]+,\"stale\":false,"
                                                      "\"removed\":true,\"reason\":\"\"")))
      << clean;
  EXPECT_NE(clean.out.find("\"name\":\"$held\""), std::string::npos) << clean;
  EXPECT_NE(clean.out.find("\"removed\":false,\"reason\":\"1 permit(s) held\""), std::string::npos) << clean;

  // A stale record (its semaphore removed behind the registry's back) goes.
  ASSERT_EQ(netsem({"run", "$gone", "--", "true"}).exit_code, 0);
  ASSERT_TRUE(client::LocalSemaphores(local_dir_).remove("$gone").is_ok());
  clean = netsem({"local", "clean"});
  EXPECT_NE(clean.out.find("removed $gone (stale record: its semaphore was gone)\n"), std::string::npos) << clean;
  ::kill(holder->pid(), SIGKILL);
  EXPECT_EQ(holder->finish(), 128 + SIGKILL);
}

TEST_F(CliLocal, CleanWhileProcessesHoldAndWaitNeverRemovesASemaphoreInUse) {
  // Issue 12 item 12: `netsem local clean`, run over and over, while two
  // loops of `netsem run '$r'` hold the name and queue for it. A clean that
  // removed the semaphore under a holder, or under a process taking it,
  // would let the next `netsem run` make a fresh one and hold that at the
  // same time: its command's mkdir of a directory only one holder at a time
  // can make would fail (exit 99).
  const std::string held_by = (dir_.path() / "held-by").string();
  const std::string command = "mkdir " + held_by + " || exit 99; sleep 0.005; rmdir " + held_by;
  // The loops run until clean has found $r both in use and idle a few
  // times (each loop pausing now and then, so that both are sometimes
  // between runs at once), and each loop has done some rounds; 30 s at most.
  constexpr int kLoops = 2;
  constexpr int kEnough = 5;
  std::atomic<bool> stop = false;
  std::atomic<int> failures = 0;
  std::atomic<int> rounds[kLoops] = {};
  std::vector<std::thread> loops;
  for (int i = 0; i < kLoops; ++i) {
    loops.emplace_back([&, i] {
      while (!stop) {
        const NetsemRun run = netsem({"run", "$r", "--", "sh", "-c", command});
        if (run.exit_code != 0) {
          ++failures;
          ADD_FAILURE() << "round " << rounds[i] << " of loop " << i << ": " << run;
        }
        if (++rounds[i] % (i + 2) == 0) std::this_thread::sleep_for(milliseconds(10 * (i + 1)));
      }
    });
  }
  int cleans = 0;
  int removed = 0;  // while the loops ran: clean found $r idle between two holders
  int kept = 0;     // clean found it in use
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  const auto fewest_rounds = [&] { return std::min(rounds[0].load(), rounds[1].load()); };
  while (Clock::now() < deadline && (removed < kEnough || kept < kEnough || fewest_rounds() < 30)) {
    const NetsemRun clean = netsem({"local", "clean"});
    EXPECT_EQ(clean.exit_code, 0) << clean;
    ++cleans;
    removed += clean.out.find("removed $r (semaphore ") != std::string::npos;
    kept += clean.out.find("kept $r: ") != std::string::npos;
  }
  stop = true;
  for (auto& loop : loops) loop.join();
  std::printf("%d cleans while %d loops ran $r %d and %d times: removed $r %d times, kept it %d times\n", cleans,
              kLoops, rounds[0].load(), rounds[1].load(), removed, kept);
  EXPECT_EQ(failures, 0);
  EXPECT_FALSE(std::filesystem::exists(held_by));
  // The race was run: clean found $r in use, and idle too.
  EXPECT_GE(kept, kEnough);
  EXPECT_GE(removed, kEnough);
}

TEST_F(CliLocal, StatusShowsTheHostLocalSemaphoresInASectionOfTheirOwn) {
  std::string error;
  auto server = Netsemd::start(with_server_options({}), &error);
  ASSERT_TRUE(server) << error;
  const std::string server_env = "NETSEM_SERVER=127.0.0.1:" + std::to_string(server->port());
  NetsemRun status = netsem({"status"}, {server_env});
  ASSERT_EQ(status.exit_code, 0) << status;
  EXPECT_EQ(status.out.find("host-local"), std::string::npos) << status;  // none yet: no section

  ASSERT_EQ(netsem({"run", "$idle", "--", "true"}).exit_code, 0);
  status = netsem({"status"}, {server_env});
  ASSERT_EQ(status.exit_code, 0) << status;
  EXPECT_TRUE(std::regex_search(status.out, std::regex("\n\nhost-local \\(.*\\): 1 semaphore\n"
                                                       "NAME +KIND +LIMIT +FREE +HELD +WAITING +SEMID\n"
                                                       "\\$idle +local +1 +1 +0 +0 +[0-9]+\n$")))
      << status;
}

TEST_F(CliLocal, DocsDescribeEveryJsonField) {
  ASSERT_EQ(netsem({"run", "$idle", "--", "true"}).exit_code, 0);
  std::set<std::string> emitted;
  for (const auto& args : {std::vector<std::string>{"local", "list", "--json"},
                           std::vector<std::string>{"local", "clean", "--dry-run", "--json"}}) {
    const NetsemRun json = netsem(args);
    ASSERT_EQ(json.exit_code, 0) << json;
    emitted.merge(test_support::json_keys(json.out));
  }
  const std::string doc = read_text(std::filesystem::path(NETSEM_SOURCE_DIR) / "docs/cli.md");
  EXPECT_EQ(test_support::table_first_column(doc, "### local JSON fields"), emitted);
}

TEST(LocalRegistryClean, NeverRemovesASemaphoreUnderAProcessTakingIt) {
  // A holder takes and gives back `$r` in a loop while clean() runs over and
  // over: a clean that removed it between its check and a take would lose
  // the holder's permit (release answers kNotHeld). The loops run until
  // clean has removed `$r` between rounds 20 times and the holder has taken
  // it 3,000 times (at most 20 s): a fixed count of rounds ran out in 7 ms
  // on a fast machine, before any clean came between two rounds (CI), and
  // the race was not run. The holder leaves a short gap every 8 rounds.
  TempDir dir;
  const auto local_dir = dir.path() / "local";
  client::LocalSemaphores holder(local_dir);
  std::atomic<bool> stop = false;
  std::atomic<int> lost = 0;
  std::atomic<int> rounds = 0;
  std::thread taker([&] {
    while (!stop) {
      client::LocalSemaphores::Grant grant;
      if (!holder.acquire("$r", 1, 1, milliseconds(5000), nullptr, &grant).is_ok()) continue;
      if (holder.release("$r", 1, grant).code() == StatusCode::kNotHeld) ++lost;
      if (++rounds % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  client::LocalRegistry registry(local_dir);
  int removed = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((removed < 20 || rounds < 3000) && std::chrono::steady_clock::now() < deadline) {
    auto cleaned = registry.clean(false);
    if (!cleaned) {
      stop = true;
      taker.join();
      FAIL() << cleaned.status().message();
    }
    for (const auto& item : *cleaned) removed += item.removed && !item.stale;
  }
  stop = true;
  taker.join();
  std::printf("%d rounds, %d removals\n", rounds.load(), removed);
  EXPECT_EQ(lost, 0);
  EXPECT_GE(removed, 20);  // the race was run: clean did remove $r between rounds
  EXPECT_GE(rounds, 3000);
  EXPECT_TRUE(client::LocalSemaphores(local_dir).remove_all().is_ok());
}

}  // namespace
}  // namespace netsem::testing
