// Integration: the server's life — clean shutdown on SIGTERM, reload on
// SIGHUP (raised and lowered limits, a bad file), durability of created
// semaphores and fences across kill -9 (and of names an older build stored
// that this one refuses), the data-directory lock, the status file.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "journal/file_journal.h"
#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

TEST(ServerLifecycle, SigtermTellsSessionsWritesStatusAndExitsZero) {
  Netsemd::Options options;
  options.semaphores = "db = 2\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  fence_of(holder->request(req::acquire("a", "db")));
  auto idle = Client::connect(server->port());
  EXPECT_EQ(idle->request(req::ping("p")), "p PONG");
  server->send_signal(SIGTERM);
  for (auto* client : {holder.get(), idle.get()}) {
    const auto line = client->read_line();
    ASSERT_TRUE(line);
    EXPECT_EQ(line->rfind("* ERR SHUTDOWN", 0), 0u) << *line;
    EXPECT_TRUE(client->wait_closed());
  }
  const auto status = server->wait_exit();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  const std::string text = read_text(server->data_dir() / "semaphore.status");
  EXPECT_NE(text.find("db defined 2 2 0 0"), std::string::npos) << text;
}

// A shutdown grants nothing: were the permits of the sessions it ends given
// to the sessions still queued, a waiter would read OK and start while the
// holder before it still works, not yet having read its SHUTDOWN line (the
// soak saw two holders of a limit-1 name this way). Several names and
// waiters older and younger than the holders, so that whatever order the
// sessions are ended in, some holder ends before a waiter of its name.
TEST(ServerLifecycle, SigtermGrantsNothingToTheQueuedSessions) {
  Netsemd::Options options;
  options.semaphores = "n0 = 1\nn1 = 1\nn2 = 1\nn3 = 1\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  // Waiters connect before holders and after them, so that sessions older
  // and younger than a holder wait behind it.
  std::vector<std::unique_ptr<Client>> waiters;
  std::vector<std::unique_ptr<Client>> holders;
  for (int i = 0; i < 8; ++i) waiters.push_back(Client::connect(server->port()));
  for (int i = 0; i < 4; ++i) holders.push_back(Client::connect(server->port()));
  for (int i = 0; i < 8; ++i) waiters.push_back(Client::connect(server->port()));
  for (int i = 0; i < 4; ++i) fence_of(holders[i]->request(req::acquire("a", "n" + std::to_string(i))));
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(waiters[i]->request(req::acquire("w", "n" + std::to_string(i % 4))),
              "w QUEUED " + std::to_string(i / 4 + 1));
  }
  server->send_signal(SIGTERM);
  for (auto& waiter : waiters) {
    const auto line = waiter->read_line();
    ASSERT_TRUE(line);
    EXPECT_EQ(line->rfind("* ERR SHUTDOWN", 0), 0u) << "a queued session read: " << *line;
    EXPECT_TRUE(waiter->wait_closed());
  }
  const auto status = server->wait_exit();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
}

TEST(ServerLifecycle, SigtermExitsEvenWhenAPeerNeverReads) {
  auto server = start_server();
  ASSERT_TRUE(server);
  auto silent = Client::connect(server->port(), "127.0.0.1", 4096);
  ASSERT_TRUE(silent);
  // Fill the server's output to this peer until it would block, then never read.
  const std::string one = req::ping("p", std::string(3000, 'x')) + "\n";
  std::string lines;
  for (int i = 0; i < 1000; ++i) lines += one;
  std::thread writer([&] { silent->send(lines); });
  std::this_thread::sleep_for(300ms);
  server->send_signal(SIGTERM);
  const auto status = server->wait_exit(8s);
  ASSERT_TRUE(status) << "netsemd still runs 8 s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  silent->reset();
  writer.join();
}

TEST(ServerLifecycle, StatusFileListsDefinedAndInUseSemaphores) {
  Netsemd::Options options;
  options.semaphores = "db = 2\nidle = 1\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto holder = Client::connect(server->port());
  fence_of(holder->request(req::acquire("a", "db")));
  fence_of(holder->request(req::acquire("b", "web host")));
  auto waiter = Client::connect(server->port());
  EXPECT_EQ(waiter->request(req::acquire("w", "web host")), "w QUEUED 1");
  const auto path = server->data_dir() / "semaphore.status";
  std::string text;
  for (int i = 0; i < 100 && text.find("web%20host") == std::string::npos; ++i) {
    std::this_thread::sleep_for(20ms);
    text = read_text(path);
  }
  EXPECT_NE(text.find("db defined 1 2 1 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("idle defined 1 1 0 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("web%20host undefined 0 1 1 1\n"), std::string::npos) << text;
}

TEST(ServerLifecycle, SighupRaisesAndLowersLimitsWithoutDroppingSessions) {
  Netsemd::Options options;
  options.semaphores = "db = 1\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto a = Client::connect(server->port());
  auto b = Client::connect(server->port());
  auto c = Client::connect(server->port());
  fence_of(a->request(req::acquire("a", "db")));
  EXPECT_EQ(b->request(req::acquire("b", "db")), "b QUEUED 1");

  // Raised: the waiter is granted at once.
  options.semaphores = "db = 3\n";
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  fence_of(b->read_line().value_or(""));
  EXPECT_EQ(c->request(req::get("g", "db")), "g OK 1 3 2 0 defined");

  // Lowered below use: nothing is revoked; new grants wait until use fits.
  options.semaphores = "db = 1\n";
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  ASSERT_EQ(await_answer(*c, req::get("g2", "db"), "g2 OK 0 1 2 0 defined"), "g2 OK 0 1 2 0 defined");
  EXPECT_EQ(c->request(req::acquire("c", "db")), "c QUEUED 1");
  EXPECT_EQ(a->request(req::release("r", "db")), "r OK 0");
  EXPECT_TRUE(c->quiet_for(100ms));  // b still holds the one permit
  EXPECT_EQ(b->request(req::release("r", "db")), "r OK 0");
  fence_of(c->read_line().value_or(""));
  // Sessions survived both reloads.
  EXPECT_EQ(a->request(req::ping("p")), "p PONG");
}

TEST(ServerLifecycle, SighupWithABadFileKeepsTheRunningConfiguration) {
  Netsemd::Options options;
  options.semaphores = "db = 2\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  Netsemd::Options broken = options;
  broken.semaphores = "db = not-a-number\n";
  server->rewrite_config(broken);
  server->send_signal(SIGHUP);
  ASSERT_TRUE(server->wait_for_log("keeping the running configuration"));
  auto c = Client::connect(server->port());
  EXPECT_EQ(c->request(req::get("g", "db")), "g OK 2 2 0 0 defined");
}

TEST(ServerLifecycle, SighupRemovedNameBecomesUndefinedAndOversizedWaiterIsRefused) {
  Netsemd::Options options;
  options.semaphores = "db = 3\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto a = Client::connect(server->port());
  auto b = Client::connect(server->port());
  fence_of(a->request(req::acquire("a", "db", 2)));
  EXPECT_EQ(b->request(req::acquire("b", "db", 2)), "b QUEUED 1");
  options.semaphores = "";
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  const auto refused = b->read_line().value_or("");
  EXPECT_EQ(refused.rfind("b ERR TOO_MANY", 0), 0u) << refused;
  EXPECT_EQ(a->request(req::get("g", "db")).rfind("g OK 0 1 1 0 undefined", 0), 0u);
  EXPECT_EQ(a->request(req::release("r", "db", 2)).rfind("r OK", 0), 0u);
  EXPECT_EQ(a->request(req::get("g2", "db")), "g2 OK 1 1 0 0 absent");
}

// Issue 10 item 6 by reload: a permit WAIT consumed kept a dropped name
// `undefined` for good. Now the dropped name forgets consumed permits, a
// queued WAIT of it is answered NOT_FOUND, and it goes once idle.
TEST(ServerLifecycle, SighupDroppingNamesWithConsumedPermitsOrQueuedWaitsLeavesNothingStuck) {
  Netsemd::Options options;
  options.semaphores = "db = 1\nq = 1\n";
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto a = Client::connect(server->port());
  auto b = Client::connect(server->port());
  fence_of(a->request(req::wait("w", "db")));
  fence_of(a->request(req::acquire("h", "q")));
  EXPECT_EQ(b->request(req::acquire("w", "db", 1, 0)), "w TIMEOUT");
  EXPECT_EQ(b->request(req::wait("w2", "q")), "w2 QUEUED 1");
  options.semaphores = "";
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  const auto refused = b->read_line().value_or("");
  EXPECT_EQ(refused.rfind("w2 ERR NOT_FOUND", 0), 0u) << refused;
  EXPECT_EQ(b->request(req::get("g", "db")), "g OK 1 1 0 0 absent");
  EXPECT_EQ(b->request(req::get("g2", "q")), "g2 OK 0 1 1 0 undefined");
  EXPECT_EQ(a->request(req::release("r", "q")), "r OK 1");
  a.reset();
  b.reset();
  auto c = Client::connect(server->port());
  for (const char* name : {"db", "q"}) {
    const std::string absent = std::string("g OK 1 1 0 0 absent");
    EXPECT_EQ(await_answer(*c, req::get("g", name), absent), absent) << name;
    fence_of(c->request(req::acquire("a", name, 1, 0)));
    EXPECT_EQ(c->request(req::release("r", name)), "r OK 1");
    EXPECT_EQ(c->request(req::create("c", name, 1)), "c OK") << name;
  }
}

// Issue 10 item 14: start-up was quadratic in the number of defined names
// (40,000 took seconds, 500,000 never started). 100,000 start within the
// harness's 10 s when linear (about a second on a loaded machine) and would
// take minutes otherwise; a reload to 100,000 partly different names
// likewise.
TEST(ServerLifecycle, StartsAndReloadsWithAHundredThousandDefinedNames) {
  const auto names = [](int from, int to) {
    std::string body;
    for (int i = from; i < to; ++i) body += "n" + std::to_string(i) + " = " + std::to_string(1 + i % 3) + "\n";
    return body;
  };
  Netsemd::Options options = with_server_options("max_semaphores = 1000000\n");
  options.semaphores = names(0, 100'000);
  auto server = start_server(options);
  ASSERT_TRUE(server);
  auto c = Client::connect(server->port());
  EXPECT_EQ(c->request(req::get("g", "n99999")), "g OK 1 1 0 0 defined");
  options.semaphores = names(50'000, 150'000);
  server->rewrite_config(options);
  server->send_signal(SIGHUP);
  ASSERT_TRUE(server->wait_for_log("SIGHUP: reloaded 100000 defined semaphores", 30s));
  EXPECT_EQ(c->request(req::get("g", "n0")), "g OK 1 1 0 0 absent");
  EXPECT_EQ(c->request(req::get("g", "n50000")), "g OK 3 3 0 0 defined");
  EXPECT_EQ(c->request(req::get("g", "n149999")), "g OK 3 3 0 0 defined");
}

TEST(ServerLifecycle, CreatedSemaphoresAndFencesSurviveKill9) {
  auto first = start_server({});
  ASSERT_TRUE(first);
  const auto data_dir = first->data_dir();
  std::uint64_t last_fence = 0;
  {
    auto c = Client::connect(first->port());
    EXPECT_EQ(c->request(req::create("c", "jobs", 3, 10)), "c OK");
    EXPECT_EQ(c->request(req::create("c2", "gone", 1)), "c2 OK");
    EXPECT_EQ(c->request(req::post("p", "jobs", 4)), "p OK 7");
    fence_of(c->request(req::wait("w", "jobs", 2)));
    // Held permits count as free in what survives: the holder dies with the server.
    fence_of(c->request(req::acquire("a", "jobs")));
    EXPECT_EQ(c->request(req::del("d", "gone")), "d OK");
    for (int i = 0; i < 5; ++i) {
      last_fence = fence_of(c->request(req::acquire("a" + std::to_string(i), "x")));
      EXPECT_EQ(c->request(req::release("r" + std::to_string(i), "x")), "r" + std::to_string(i) + " OK 1");
    }
    first->send_signal(SIGKILL);
    ASSERT_TRUE(first->wait_exit());
  }
  // Its client is gone with it: no lease to wait for (server_restart_test
  // tests the wait).
  Netsemd::Options options = with_server_options("restart_lease_wait = off");
  options.data_dir = data_dir;
  auto second = start_server(options);
  ASSERT_TRUE(second);
  auto c = Client::connect(second->port());
  EXPECT_EQ(c->request(req::get("g", "jobs")), "g OK 5 10 0 0 created");
  EXPECT_EQ(c->request(req::get("g2", "gone")), "g2 OK 1 1 0 0 absent");
  EXPECT_GT(fence_of(c->request(req::acquire("a", "x"))), last_fence);
}

TEST(ServerLifecycle, CreatedSemaphoreWhoseNameIsNowRefusedKeepsItsValue) {
  // What an older build accepted and journalled: a name with U+0085, a C1
  // control that requests may no longer carry.
  const std::string legacy = "old\xc2\x85name";
  TempDir dir;
  const auto data_dir = dir.path() / "data";
  {
    server::RecoveredState recovered;
    auto journal = server::FileJournal::open(data_dir, {}, recovered);
    ASSERT_TRUE(journal) << journal.status().to_string();
    (*journal)->record_set(legacy, {2, 5});
    (*journal)->record_set("fine", {1, 1});
    ASSERT_TRUE((*journal)->flush());
    ASSERT_TRUE((*journal)->sync());
  }
  Netsemd::Options options;
  options.data_dir = data_dir;
  for (int run = 0; run < 2; ++run) {  // and again after the snapshot the first start wrote
    auto server = start_server(options);
    ASSERT_TRUE(server);
    EXPECT_TRUE(server->wait_for_log("created semaphore old%C2%85name has a name this version refuses"))
        << server->log();
    auto c = Client::connect(server->port());
    ASSERT_TRUE(c);
    c->send_line(req::list("l", "old"));
    EXPECT_EQ(c->read_line().value_or(""), "l ITEM " + legacy + " 2 5 0 0 created");
    EXPECT_EQ(c->read_line().value_or(""), "l END 1");
    // Raw on purpose: the name as an older build wrote it, which this one refuses.
    EXPECT_EQ(c->request("g GET old%C2%85name").rfind("g ERR BAD_NAME ", 0), 0u);
    EXPECT_EQ(c->request(req::get("g2", "fine")), "g2 OK 1 1 0 0 created");
    server->send_signal(SIGTERM);
    ASSERT_TRUE(server->wait_exit());
  }
}

TEST(ServerLifecycle, SecondServerOnTheSameDataDirectoryIsRefused) {
  auto first = start_server({});
  ASSERT_TRUE(first);
  Netsemd::Options options;
  options.data_dir = first->data_dir();
  std::string error;
  auto second = Netsemd::start(options, &error);
  EXPECT_FALSE(second);
  EXPECT_NE(error.find("cannot start"), std::string::npos) << error;
  auto c = Client::connect(first->port());
  EXPECT_EQ(c->request(req::ping("p")), "p PONG");
}

TEST(ServerLifecycle, DeletingTheLockFileLetsNoSecondServerIn) {
  auto first = start_server({});
  ASSERT_TRUE(first);
  ASSERT_TRUE(std::filesystem::remove(first->data_dir() / "lock"));
  Netsemd::Options options;
  options.data_dir = first->data_dir();
  std::string error;
  auto second = Netsemd::start(options, &error);
  EXPECT_FALSE(second);
  EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << error;
  EXPECT_NE(error.find("is in use by another netsemd (pid " + std::to_string(first->pid()) + ")"), std::string::npos)
      << error;
  auto c = Client::connect(first->port());
  EXPECT_EQ(c->request(req::ping("p")), "p PONG");
}

// The journal of a server killed after three changes, each its own record.
std::filesystem::path journal_of_three_creates(std::unique_ptr<Netsemd>& server, std::vector<std::size_t>& starts) {
  auto c = Client::connect(server->port());
  const auto journal = server->data_dir() / "journal";
  for (const char* name : {"one", "two", "three"}) {
    starts.push_back(std::filesystem::file_size(journal));
    EXPECT_EQ(c->request(req::create("c", name, 1)), "c OK");
  }
  server->send_signal(SIGKILL);
  EXPECT_TRUE(server->wait_exit());
  return journal;
}

TEST(ServerLifecycle, MidJournalDamageRefusesToStartUntilRepair) {
  auto first = start_server({});
  ASSERT_TRUE(first);
  std::vector<std::size_t> starts;
  const auto journal = journal_of_three_creates(first, starts);
  std::string bytes = read_text(journal);
  bytes[starts[1] + 10] ^= 0x01;  // inside the record of "two"
  std::ofstream(journal, std::ios::binary | std::ios::trunc) << bytes;

  Netsemd::Options options;
  options.data_dir = first->data_dir();
  std::string error;
  EXPECT_FALSE(Netsemd::start(options, &error));
  EXPECT_NE(error.find("(exit status 1)"), std::string::npos) << error;
  EXPECT_NE(error.find(journal.string() + ": checksum mismatch at offset " + std::to_string(starts[1])),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("--repair"), std::string::npos) << error;
  EXPECT_EQ(read_text(journal), bytes);  // untouched

  options.extra_args = {"--repair"};
  auto repaired = start_server(options);
  ASSERT_TRUE(repaired);
  EXPECT_TRUE(repaired->wait_for_log("--repair: journal")) << repaired->log();
  auto c = Client::connect(repaired->port());
  EXPECT_EQ(c->request(req::get("g", "one")), "g OK 1 1 0 0 created");
  EXPECT_EQ(c->request(req::get("g", "three")), "g OK 1 1 0 0 absent");
  bool kept = false;
  for (const auto& entry : std::filesystem::directory_iterator(options.data_dir)) {
    kept = kept || (entry.path().filename().string().rfind("journal.damaged-", 0) == 0 && read_text(entry) == bytes);
  }
  EXPECT_TRUE(kept);
}

TEST(ServerLifecycle, TornTailStartsWithAWarning) {
  auto first = start_server({});
  ASSERT_TRUE(first);
  std::vector<std::size_t> starts;
  const auto journal = journal_of_three_creates(first, starts);
  std::filesystem::resize_file(journal, std::filesystem::file_size(journal) - 3);
  Netsemd::Options options;
  options.data_dir = first->data_dir();
  auto second = start_server(options);
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->wait_for_log("a torn tail")) << second->log();
  auto c = Client::connect(second->port());
  EXPECT_EQ(c->request(req::get("g", "two")), "g OK 1 1 0 0 created");
}

TEST(ServerLifecycle, MissingFencesFileRefusesToStart) {
  auto first = start_server({});
  ASSERT_TRUE(first);
  std::vector<std::size_t> starts;
  journal_of_three_creates(first, starts);
  ASSERT_TRUE(std::filesystem::remove(first->data_dir() / "fences"));
  Netsemd::Options options;
  options.data_dir = first->data_dir();
  std::string error;
  EXPECT_FALSE(Netsemd::start(options, &error));
  EXPECT_NE(error.find("fences is missing"), std::string::npos) << error;
  EXPECT_NE(error.find("--repair"), std::string::npos) << error;
}

TEST(ServerLifecycle, JournalCutShortAfterACleanStopRefusesToStart) {
  auto first = start_server({});
  ASSERT_TRUE(first);
  const auto journal = first->data_dir() / "journal";
  std::size_t before_last = 0;
  {
    auto c = Client::connect(first->port());
    EXPECT_EQ(c->request(req::create("c", "one", 1)), "c OK");
    before_last = std::filesystem::file_size(journal);
    EXPECT_EQ(c->request(req::create("c", "two", 1)), "c OK");
  }
  first->send_signal(SIGTERM);  // a clean stop writes the proof
  ASSERT_TRUE(first->wait_exit());
  std::filesystem::resize_file(journal, before_last);  // at a record boundary
  Netsemd::Options options;
  options.data_dir = first->data_dir();
  std::string error;
  EXPECT_FALSE(Netsemd::start(options, &error));
  EXPECT_NE(error.find("1 records are missing"), std::string::npos) << error;
}

TEST(ServerLifecycle, FenceReservationThatFailsIsAnErrorAnswerNotACrash) {
  auto server = start_server({});
  ASSERT_TRUE(server);
  auto c = Client::connect(server->port());
  ASSERT_EQ(c->request(req::ping("p")), "p PONG");
  // Every write past the first byte of any file now fails (EFBIG), as on a
  // failing disk; the first grant must reserve fences.
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_FSIZE, 1));
  const std::string refused = c->request(req::acquire("a", "x"));
  EXPECT_EQ(refused.rfind("a ERR LIMIT the server cannot reserve fences", 0), 0u) << refused;
  EXPECT_EQ(c->request(req::ping("p")), "p PONG");
  EXPECT_EQ(c->request(req::get("g", "x")), "g OK 1 1 0 0 absent");
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_FSIZE, RLIM_INFINITY));
  const std::uint64_t fence = fence_of(c->request(req::acquire("a", "x")));
  EXPECT_GE(fence, 1u);
  EXPECT_TRUE(server->wait_for_log("fences reserved up to")) << server->log();
}

TEST(ServerLifecycle, FencesAreReservedWithNoDescriptorLeft) {
  auto server = start_server({});
  ASSERT_TRUE(server);
  auto c = Client::connect(server->port());
  ASSERT_EQ(c->request(req::ping("p")), "p PONG");
  std::size_t open_fds = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(server->pid()) + "/fd")) {
    ++open_fds;
  }
  // No descriptor left for a new file: the reservation must not need one.
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_NOFILE, open_fds));
  for (int i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i);
    fence_of(c->request(req::acquire("a" + n, "x")));
    EXPECT_EQ(c->request(req::release("r" + n, "x")), "r" + n + " OK 1");
  }
  EXPECT_EQ(c->request(req::ping("p")), "p PONG");
}

TEST(ServerLifecycle, AnUnwritableJournalHoldsOnlyTheAnswersThatDependOnIt) {
  auto server = start_server(with_semaphores("d = 1\n"));
  ASSERT_TRUE(server);
  auto poster = Client::connect(server->port());
  auto waiter = Client::connect(server->port());
  auto other = Client::connect(server->port());
  ASSERT_EQ(poster->request(req::create("c", "c", 0, 5)), "c OK");
  ASSERT_EQ(waiter->request(req::wait("w1", "c")).rfind("w1 QUEUED", 0), 0u);
  fence_of(other->request(req::acquire("a", "d")));  // fences reserved for a while
  ASSERT_EQ(other->request(req::release("r", "d")), "r OK 1");
  // A full disk, as far as netsemd can tell: every write past the journal's
  // present size fails (EFBIG).
  const auto journal = server->data_dir() / "journal";
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_FSIZE, std::filesystem::file_size(journal)));

  poster->send_line(req::post("p", "c", 2));
  poster->send_line(req::ping("q"));
  // The POST waits for its record, and so does what follows it on its
  // session, and the WAIT it granted on another one (and what follows that).
  EXPECT_TRUE(poster->quiet_for(300ms));
  waiter->send_line(req::ping("w2"));
  EXPECT_TRUE(waiter->quiet_for(100ms));
  // Everything that depends on no unwritten record goes on, at once.
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(other->request(req::ping("p2")), "p2 PONG");
  EXPECT_EQ(other->request(req::get("g", "d")), "g OK 1 1 0 0 defined");
  fence_of(other->request(req::acquire("a2", "d")));
  EXPECT_EQ(other->request(req::release("r2", "d")), "r2 OK 1");
  auto fresh = Client::connect(server->port());
  const std::string hello = fresh->request(req::hello("h", "test"));
  EXPECT_EQ(hello.rfind("h OK netsem ", 0), 0u) << hello;
  const std::string stats = fresh->request(req::stats("s"));
  EXPECT_NE(stats.find("\"journal_ok\":0"), std::string::npos) << stats;
  EXPECT_EQ(stats.find("\"journal_pending_records\":0"), std::string::npos) << stats;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  // (The failure's log line is lost: the log file cannot grow either.)

  // The disk takes writes again: the held answers go out, in order.
  ASSERT_TRUE(set_limit(server->pid(), RLIMIT_FSIZE, RLIM_INFINITY));
  EXPECT_EQ(poster->read_line(3s).value_or("(none)"), "p OK 1");
  EXPECT_EQ(poster->read_line(3s).value_or("(none)"), "q PONG");
  const std::string granted = waiter->read_line(3s).value_or("(none)");
  EXPECT_EQ(granted.rfind("w1 OK ", 0), 0u) << granted;
  EXPECT_EQ(waiter->read_line(3s).value_or("(none)"), "w2 PONG");
  EXPECT_TRUE(server->wait_for_log("journal: written again after")) << server->log();
  EXPECT_NE(fresh->request(req::stats("s")).find("\"journal_ok\":1"), std::string::npos);

  // And it is durable.
  server->send_signal(SIGTERM);
  ASSERT_TRUE(server->wait_exit());
  Netsemd::Options options = with_semaphores("d = 1\n");
  options.data_dir = server->data_dir();
  auto again = start_server(options);
  ASSERT_TRUE(again);
  auto c = Client::connect(again->port());
  EXPECT_EQ(c->request(req::get("g", "c")), "g OK 1 5 0 0 created");
}

}  // namespace
}  // namespace netsem::testing
