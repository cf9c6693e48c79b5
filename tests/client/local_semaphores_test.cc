// Tests of LocalSemaphores against the real kernel: the limit across
// processes and threads, permits coming back from a SIGKILLed holder,
// timeouts and cancellation, WAIT/POST, limits, and the registry (stale
// entries, hash collisions, a private directory). Each test uses a fresh
// registry directory and removes its semaphores at the end (remove_all), so
// `ipcs -s` shows nothing left behind.
#include "client/local_semaphores.h"

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace netsem::client {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr std::optional<milliseconds> kForever = std::nullopt;
constexpr milliseconds kTry{0};
// How long a test waits for something that should happen at once.
constexpr milliseconds kPatience{10000};

bool semaphore_exists(int id) {
  return ::semctl(id, 0, GETVAL) >= 0;
}

// glibc leaves the fourth semctl argument's type to the caller.
union semun {
  int val;
  struct semid_ds* buf;
};

// A System V semaphore made behind LocalSemaphores' back, removed at scope end.
class Decoy {
 public:
  explicit Decoy(int value) : id_(::semget(IPC_PRIVATE, 1, IPC_CREAT | 0600)) {
    semun arg{};
    arg.val = value;
    ::semctl(id_, 0, SETVAL, arg);
  }
  ~Decoy() { ::semctl(id_, 0, IPC_RMID); }
  int id() const { return id_; }

 private:
  int id_;
};

// Runs `body` in a child process; its return value is the exit status.
pid_t spawn(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

int exit_status(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class LocalSemaphoresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "netsem-local-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    sems_ = std::make_unique<LocalSemaphores>(dir_ / "registry");
  }
  void TearDown() override {
    EXPECT_TRUE(sems_->remove_all().is_ok());
    std::filesystem::remove_all(dir_);
  }

  Status try_acquire(std::string_view key, std::int64_t limit, std::int64_t count = 1) {
    return sems_->acquire(key, limit, count, kTry, nullptr);
  }
  std::int64_t value(std::string_view key, std::int64_t limit) {
    auto v = sems_->value(key, limit);
    EXPECT_TRUE(v) << v.status().to_string();
    return v ? *v : -1;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalSemaphores> sems_;
};

TEST_F(LocalSemaphoresTest, LimitHoldsAcrossProcesses) {
  // Shared between the children: holders now, and the most seen at once.
  struct Shared {
    std::atomic<int> holders;
    std::atomic<int> most;
  };
  void* memory = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(memory, MAP_FAILED);
  auto* shared = new (memory) Shared{};
  const auto registry = sems_->dir();

  std::vector<pid_t> children;
  for (int i = 0; i < 6; ++i) {
    children.push_back(spawn([&] {
      LocalSemaphores sems(registry);  // a process of its own, sharing only the registry
      for (int round = 0; round < 4; ++round) {
        // Bounded, so that a broken semaphore fails the test instead of hanging it.
        if (!sems.acquire("$pool", 2, 1, kPatience, nullptr).is_ok()) return 1;
        const int now = ++shared->holders;
        int most = shared->most.load();
        while (now > most && !shared->most.compare_exchange_weak(most, now)) {
        }
        // The first holder waits for a second one, which the limit of 2
        // must let in; the hold overlaps with the others' attempts.
        const auto give_up = Clock::now() + std::chrono::seconds(10);
        while (shared->most.load() < 2 && Clock::now() < give_up) std::this_thread::sleep_for(milliseconds(1));
        std::this_thread::sleep_for(milliseconds(15));
        --shared->holders;
        if (!sems.release("$pool", 1, sems.current("$pool")).is_ok()) return 2;
      }
      return 0;
    }));
  }
  for (const pid_t pid : children) EXPECT_EQ(exit_status(pid), 0);
  EXPECT_EQ(shared->most.load(), 2);
  EXPECT_EQ(value("$pool", 2), 2);
  ::munmap(memory, sizeof(Shared));
}

TEST_F(LocalSemaphoresTest, LimitHoldsAcrossThreads) {
  std::atomic<int> holders{0};
  std::atomic<int> most{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      for (int round = 0; round < 5; ++round) {
        if (!sems_->acquire("$threads", 2, 1, kPatience, nullptr).is_ok()) {
          ++failures;
          return;
        }
        const int now = ++holders;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(milliseconds(5));
        --holders;
        if (!sems_->release("$threads", 1, sems_->current("$threads")).is_ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(most.load(), 2);
  EXPECT_EQ(value("$threads", 2), 2);
}

TEST_F(LocalSemaphoresTest, PermitsOfAKilledProcessComeBack) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const auto registry = sems_->dir();
  const pid_t child = spawn([&] {
    LocalSemaphores sems(registry);
    if (!sems.acquire("$held", 1, 1, kForever, nullptr).is_ok()) return 1;
    const char byte = 'x';
    if (::write(ready[1], &byte, 1) != 1) return 2;
    for (;;) ::pause();
  });
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  EXPECT_EQ(try_acquire("$held", 1).code(), StatusCode::kTimeout);  // the child holds it

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  EXPECT_EQ(exit_status(child), 128 + SIGKILL);
  EXPECT_TRUE(try_acquire("$held", 1).is_ok());
  EXPECT_TRUE(sems_->release("$held", 1, sems_->current("$held")).is_ok());
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_F(LocalSemaphoresTest, TryFailsAtOnce) {
  ASSERT_TRUE(try_acquire("$one", 1).is_ok());
  for (const auto timeout : {milliseconds(0), milliseconds(-5)}) {  // negative is zero
    const auto start = Clock::now();
    EXPECT_EQ(sems_->acquire("$one", 1, 1, timeout, nullptr).code(), StatusCode::kTimeout);
    EXPECT_LT(Clock::now() - start, milliseconds(50));
  }
  EXPECT_TRUE(sems_->release("$one", 1, sems_->current("$one")).is_ok());
  EXPECT_TRUE(try_acquire("$one", 1).is_ok());
  EXPECT_TRUE(sems_->release("$one", 1, sems_->current("$one")).is_ok());
}

TEST_F(LocalSemaphoresTest, TimedAcquireWaitsItsTimeout) {
  ASSERT_TRUE(try_acquire("$one", 1).is_ok());
  const auto start = Clock::now();
  const Status status = sems_->acquire("$one", 1, 1, milliseconds(200), nullptr);
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(status.code(), StatusCode::kTimeout);
  EXPECT_GE(elapsed, milliseconds(195));
  EXPECT_LT(elapsed, milliseconds(1000));
  EXPECT_TRUE(sems_->release("$one", 1, sems_->current("$one")).is_ok());
}

TEST_F(LocalSemaphoresTest, TimedAcquireGetsAPermitReleasedMeanwhile) {
  ASSERT_TRUE(try_acquire("$one", 1).is_ok());
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_TRUE(sems_->release("$one", 1, sems_->current("$one")).is_ok());
  });
  const auto start = Clock::now();
  EXPECT_TRUE(sems_->acquire("$one", 1, 1, milliseconds(5000), nullptr).is_ok());
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  releaser.join();
  EXPECT_TRUE(sems_->release("$one", 1, sems_->current("$one")).is_ok());
}

TEST_F(LocalSemaphoresTest, CancelFromAnotherThread) {
  ASSERT_TRUE(try_acquire("$one", 1).is_ok());
  for (const auto timeout : {kForever, std::optional<milliseconds>(milliseconds(60000))}) {
    CancelToken token;
    std::atomic<bool> returned{false};
    std::thread canceller([&] {
      std::this_thread::sleep_for(milliseconds(100));
      token.cancel();
      // Should the cancel go unseen, free the permit so that the acquire
      // returns (and the test fails) rather than hangs.
      const auto give_up = Clock::now() + kPatience;
      while (!returned && Clock::now() < give_up) std::this_thread::sleep_for(milliseconds(10));
      if (!returned) {
        EXPECT_TRUE(sems_->release("$one", 1, sems_->current("$one")).is_ok());
      }
    });
    const auto start = Clock::now();
    EXPECT_EQ(sems_->acquire("$one", 1, 1, timeout, &token).code(), StatusCode::kCancelled);
    returned = true;
    const auto elapsed = Clock::now() - start;
    EXPECT_GE(elapsed, milliseconds(95));
    EXPECT_LT(elapsed, milliseconds(1000));  // seen within a slice, not at the timeout
    canceller.join();
    EXPECT_EQ(sems_->wait("$one", 1, 1, timeout, &token).code(), StatusCode::kCancelled);
  }
  EXPECT_TRUE(sems_->release("$one", 1, sems_->current("$one")).is_ok());
}

TEST_F(LocalSemaphoresTest, AnAlreadyCancelledTokenTakesNothing) {
  CancelToken token;
  token.cancel();
  EXPECT_EQ(sems_->acquire("$free", 1, 1, kForever, &token).code(), StatusCode::kCancelled);
  EXPECT_EQ(value("$free", 1), 1);
}

TEST_F(LocalSemaphoresTest, BadArguments) {
  EXPECT_EQ(try_acquire("$two", 2, 3).code(), StatusCode::kTooMany);
  EXPECT_EQ(sems_->wait("$two", 2, 3, kForever, nullptr).code(), StatusCode::kTooMany);
  EXPECT_EQ(try_acquire("$two", 2, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(try_acquire("$two", 2, -1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(try_acquire("$two", 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(try_acquire("", 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sems_->post("$two", 2, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sems_->release("$two", 0, sems_->current("$two")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(value("$two", 2), 2);  // nothing was taken
}

TEST_F(LocalSemaphoresTest, ReleaseOnlyWhatThisProcessHolds) {
  EXPECT_EQ(sems_->release("$r", 1, sems_->current("$r")).code(), StatusCode::kNotHeld);
  ASSERT_TRUE(try_acquire("$r", 3, 2).is_ok());
  EXPECT_EQ(sems_->release("$r", 3, sems_->current("$r")).code(), StatusCode::kNotHeld);
  EXPECT_TRUE(sems_->release("$r", 1, sems_->current("$r")).is_ok());
  EXPECT_TRUE(sems_->release("$r", 1, sems_->current("$r")).is_ok());
  EXPECT_EQ(sems_->release("$r", 1, sems_->current("$r")).code(), StatusCode::kNotHeld);
  EXPECT_EQ(value("$r", 3), 3);
}

TEST_F(LocalSemaphoresTest, ConsumedPermitsStayConsumedAfterExit) {
  const auto registry = sems_->dir();
  // A held permit comes back when its process exits without releasing...
  EXPECT_EQ(exit_status(spawn([&] {
              LocalSemaphores sems(registry);
              return sems.acquire("$q", 2, 1, kTry, nullptr).is_ok() ? 0 : 1;
            })),
            0);
  EXPECT_EQ(value("$q", 2), 2);
  // ...a consumed one does not.
  EXPECT_EQ(exit_status(spawn([&] {
              LocalSemaphores sems(registry);
              return sems.wait("$q", 2, 1, kTry, nullptr).is_ok() ? 0 : 1;
            })),
            0);
  EXPECT_EQ(value("$q", 2), 1);

  EXPECT_TRUE(sems_->post("$q", 2, 1).is_ok());
  EXPECT_EQ(value("$q", 2), 2);
  EXPECT_EQ(sems_->post("$q", 2, 1).code(), StatusCode::kOverflow);
  EXPECT_TRUE(sems_->wait("$q", 2, 2, kTry, nullptr).is_ok());
  EXPECT_EQ(sems_->wait("$q", 2, 1, kTry, nullptr).code(), StatusCode::kTimeout);
  EXPECT_EQ(sems_->post("$q", 2, 3).code(), StatusCode::kOverflow);
  EXPECT_TRUE(sems_->post("$q", 2, 2).is_ok());
  EXPECT_EQ(value("$q", 2), 2);
}

TEST_F(LocalSemaphoresTest, PostCountsHeldPermits) {
  ASSERT_TRUE(try_acquire("$held-post", 2).is_ok());
  // One free, one held: the limit is reached, though the value is 1.
  EXPECT_EQ(sems_->post("$held-post", 2, 1).code(), StatusCode::kOverflow);
  ASSERT_TRUE(sems_->release("$held-post", 1, sems_->current("$held-post")).is_ok());
  EXPECT_EQ(value("$held-post", 2), 2);
  // Held by another process: counted too, until it dies and the kernel
  // gives back the permit and its count together.
  const auto registry = sems_->dir();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t holder = spawn([&] {
    LocalSemaphores sems(registry);
    if (!sems.acquire("$held-post", 2, 1, kTry, nullptr).is_ok()) return 1;
    const char byte = 'x';
    if (::write(ready[1], &byte, 1) != 1) return 2;
    for (;;) ::pause();
  });
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  EXPECT_EQ(value("$held-post", 2), 1);
  EXPECT_EQ(sems_->post("$held-post", 2, 1).code(), StatusCode::kOverflow);
  ASSERT_EQ(::kill(holder, SIGKILL), 0);
  EXPECT_EQ(exit_status(holder), 128 + SIGKILL);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_EQ(value("$held-post", 2), 2);
  EXPECT_EQ(sems_->post("$held-post", 2, 1).code(), StatusCode::kOverflow);
  ASSERT_TRUE(sems_->wait("$held-post", 2, 1, kTry, nullptr).is_ok());  // consumed: a post may return it
  EXPECT_TRUE(sems_->post("$held-post", 2, 1).is_ok());
  EXPECT_EQ(value("$held-post", 2), 2);
}

TEST_F(LocalSemaphoresTest, InfoCountsFreeHeldAndWaiting) {
  const auto info = [&] {
    auto now = sems_->info("$info", 3);
    EXPECT_TRUE(now) << now.status().to_string();
    return now ? *now : LocalSemaphores::Info{.value = -1, .held = -1, .waiting = -1};
  };
  EXPECT_EQ(info().value, 3);
  EXPECT_EQ(info().held, 0);
  ASSERT_TRUE(try_acquire("$info", 3, 2).is_ok());
  ASSERT_TRUE(sems_->wait("$info", 3, 1, kTry, nullptr).is_ok());  // consumed: neither free nor held
  EXPECT_EQ(info().value, 0);
  EXPECT_EQ(info().held, 2);
  EXPECT_EQ(info().waiting, 0);
  auto waiter = std::async(std::launch::async,
                           [&] { return sems_->wait("$info", 3, 1, std::chrono::milliseconds(5000), nullptr); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (info().waiting != 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(info().waiting, 1);
  EXPECT_TRUE(sems_->post("$info", 3, 1).is_ok());
  EXPECT_TRUE(waiter.get().is_ok());
  EXPECT_EQ(info().waiting, 0);
  ASSERT_TRUE(sems_->release("$info", 2, sems_->current("$info")).is_ok());
  EXPECT_EQ(info().value, 2);
  EXPECT_EQ(info().held, 0);
}

TEST_F(LocalSemaphoresTest, ConcurrentPostsNeverOvershoot) {
  ASSERT_TRUE(sems_->wait("$posts", 4, 4, kTry, nullptr).is_ok());  // value 0 of 4
  std::atomic<int> ready{0};
  std::atomic<int> posted{0};
  std::atomic<int> overflowed{0};
  std::vector<std::thread> posters;
  for (int i = 0; i < 8; ++i) {
    posters.emplace_back([&] {
      LocalSemaphores own(sems_->dir());  // its own file descriptors, as another process would have
      ASSERT_TRUE(own.value("$posts", 4));
      ++ready;
      while (ready.load() < 8) {
      }
      const Status status = own.post("$posts", 4, 1);
      ++(status.is_ok() ? posted : overflowed);
      EXPECT_TRUE(status.is_ok() || status.code() == StatusCode::kOverflow) << status.to_string();
    });
  }
  for (auto& poster : posters) poster.join();
  EXPECT_EQ(posted.load(), 4);
  EXPECT_EQ(overflowed.load(), 4);
  EXPECT_EQ(value("$posts", 4), 4);
}

TEST_F(LocalSemaphoresTest, RemovedSemaphoreIsDetectedAndRecreated) {
  ASSERT_TRUE(try_acquire("$s", 3).is_ok());
  auto first = sems_->system_v_id("$s", 3);
  ASSERT_TRUE(first);
  ASSERT_EQ(::semctl(*first, 0, IPC_RMID), 0);  // `ipcrm`, or a reboot

  EXPECT_EQ(value("$s", 3), 3);  // a fresh semaphore, all permits free
  auto second = sems_->system_v_id("$s", 3);
  ASSERT_TRUE(second);
  EXPECT_NE(*second, *first);
  EXPECT_TRUE(semaphore_exists(*second));
  // The permit went with the old semaphore: releasing it must not add one.
  EXPECT_EQ(sems_->release("$s", 1, sems_->current("$s")).code(), StatusCode::kNotHeld);
  EXPECT_EQ(value("$s", 3), 3);
  // Another process (no cache) finds the new one through the registry.
  LocalSemaphores other(sems_->dir());
  auto seen = other.system_v_id("$s", 3);
  ASSERT_TRUE(seen);
  EXPECT_EQ(*seen, *second);
}

TEST_F(LocalSemaphoresTest, WaiterMovesToTheRecreatedSemaphore) {
  ASSERT_TRUE(try_acquire("$w", 1).is_ok());
  auto id = sems_->system_v_id("$w", 1);
  ASSERT_TRUE(id);
  std::thread remover([&] {
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_TRUE(sems_->remove("$w").is_ok());
  });
  EXPECT_TRUE(sems_->acquire("$w", 1, 1, milliseconds(5000), nullptr).is_ok());
  remover.join();
  EXPECT_FALSE(semaphore_exists(*id));
  auto fresh = sems_->system_v_id("$w", 1);
  ASSERT_TRUE(fresh);
  EXPECT_NE(*fresh, *id);
  EXPECT_EQ(value("$w", 1), 0);  // the waiter holds the fresh one's permit
  EXPECT_TRUE(sems_->release("$w", 1, sems_->current("$w")).is_ok());
}

TEST_F(LocalSemaphoresTest, AGrantLostWithItsSemaphoreNeverFreesItsSuccessor) {
  const std::function<void(int id)> removers[] = {
      [&](int) { ASSERT_TRUE(sems_->remove("$j").is_ok()); },
      [&](int id) { ASSERT_EQ(::semctl(id, 0, IPC_RMID), 0); },  // `ipcrm`
  };
  for (const auto& remove : removers) {
    LocalSemaphores::Grant first;
    ASSERT_TRUE(sems_->acquire("$j", 1, 1, kTry, nullptr, &first).is_ok());
    remove(first.id);
    LocalSemaphores::Grant second;
    ASSERT_TRUE(sems_->acquire("$j", 1, 1, kTry, nullptr, &second).is_ok());
    EXPECT_NE(second.id, first.id);
    // The first grant went with its semaphore: releasing it changes nothing.
    EXPECT_EQ(sems_->release("$j", 1, first).code(), StatusCode::kNotHeld);
    EXPECT_EQ(value("$j", 1), 0);
    EXPECT_EQ(try_acquire("$j", 1).code(), StatusCode::kTimeout);  // still one holder under limit 1
    EXPECT_TRUE(sems_->release("$j", 1, second).is_ok());
    EXPECT_EQ(value("$j", 1), 1);
  }
}

TEST_F(LocalSemaphoresTest, AHugeTimeoutWaitsForEver) {
  ASSERT_TRUE(try_acquire("$huge", 1).is_ok());
  for (const milliseconds timeout : {milliseconds::max(), LocalSemaphores::kForeverAfter + milliseconds(1)}) {
    CancelToken token;
    std::thread canceller([&] {
      std::this_thread::sleep_for(milliseconds(100));
      token.cancel();
    });
    const auto start = Clock::now();
    EXPECT_EQ(sems_->acquire("$huge", 1, 1, timeout, &token).code(), StatusCode::kCancelled);
    EXPECT_GE(Clock::now() - start, milliseconds(90));
    canceller.join();
  }
  EXPECT_TRUE(sems_->release("$huge", 1, sems_->current("$huge")).is_ok());
}

// The registry record format of docs/local-semaphores.md.
void write_record(const std::filesystem::path& file, int id, long ctime, int limit, std::string_view key) {
  std::ofstream(file) << fmt::format("netsem-local 2\nid {}\nctime {}\nlimit {}\nkey {}\n", id, ctime, limit, key);
}

TEST_F(LocalSemaphoresTest, ReusedIdIsNotTakenForOurs) {
  // The record names a live semaphore of ours, but with another creation
  // time: what an id reused after a reboot looks like.
  const Decoy decoy(7);
  ASSERT_TRUE(sems_->value("$r", 2));  // creates the directory
  write_record(sems_->dir() / LocalSemaphores::entry_file_name("$reused"), decoy.id(), 1, 2, "$reused");
  auto id = sems_->system_v_id("$reused", 2);
  ASSERT_TRUE(id);
  EXPECT_NE(*id, decoy.id());
  EXPECT_EQ(value("$reused", 2), 2);
  EXPECT_EQ(::semctl(decoy.id(), 0, GETVAL), 7);  // untouched
}

TEST_F(LocalSemaphoresTest, DifferentNamesNeverShare) {
  ASSERT_TRUE(try_acquire("$a", 1).is_ok());
  EXPECT_TRUE(try_acquire("$b", 1).is_ok());
  EXPECT_TRUE(try_acquire("a", 1).is_ok());  // a fallback name is not its `$` twin
  std::set<int> ids;
  for (int i = 0; i < 100; ++i) {
    auto id = sems_->system_v_id(fmt::format("$n{}", i), 1);
    ASSERT_TRUE(id) << id.status().to_string();
    ids.insert(*id);
  }
  EXPECT_EQ(ids.size(), 100u);
  for (const auto* key : {"$a", "$b", "a"}) EXPECT_TRUE(sems_->release(key, 1, sems_->current(key)).is_ok());
}

TEST_F(LocalSemaphoresTest, HashCollisionTakesTheNextSlot) {
  // Pretend `$other` hashed like `$x` and took its file first.
  const Decoy decoy(1);
  ASSERT_TRUE(sems_->value("$r", 1));  // creates the directory
  struct semid_ds ds {};
  semun arg{};
  arg.buf = &ds;
  ASSERT_EQ(::semctl(decoy.id(), 0, IPC_STAT, arg), 0);
  const auto base = sems_->dir() / LocalSemaphores::entry_file_name("$x");
  write_record(base, decoy.id(), static_cast<long>(ds.sem_ctime), 1, "$other");

  auto id = sems_->system_v_id("$x", 1);
  ASSERT_TRUE(id) << id.status().to_string();
  EXPECT_NE(*id, decoy.id());
  EXPECT_TRUE(std::filesystem::exists(base.string() + "-1"));
  LocalSemaphores other(sems_->dir());
  auto again = other.system_v_id("$x", 1);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *id);
  // remove_all() removes what the record names, the decoy included; Decoy's
  // own IPC_RMID then finds nothing, which is fine.
}

TEST_F(LocalSemaphoresTest, LimitChangesOnlyWhileIdle) {
  ASSERT_TRUE(try_acquire("$l", 2).is_ok());
  LocalSemaphores other(sems_->dir());
  // In use: the semaphore keeps its limit of 2 whatever `other` asks.
  auto busy = other.value("$l", 5);
  ASSERT_TRUE(busy);
  EXPECT_EQ(*busy, 1);
  EXPECT_EQ(other.acquire("$l", 5, 3, kTry, nullptr).code(), StatusCode::kTooMany);
  EXPECT_EQ(other.post("$l", 5, 2).code(), StatusCode::kOverflow);  // 1 + 2 > 2

  ASSERT_TRUE(sems_->release("$l", 1, sems_->current("$l")).is_ok());
  auto idle = other.value("$l", 5);
  ASSERT_TRUE(idle);
  EXPECT_EQ(*idle, 5);
  EXPECT_TRUE(other.acquire("$l", 5, 5, kTry, nullptr).is_ok());
  EXPECT_EQ(sems_->value("$l", 2).value(), 0);  // busy again: the old limit does not come back
  EXPECT_TRUE(other.release("$l", 5, other.current("$l")).is_ok());
  EXPECT_EQ(value("$l", 5), 5);
}

TEST_F(LocalSemaphoresTest, LimitIsCappedAtSemvmx) {
  EXPECT_EQ(value("$big", 2147483647), LocalSemaphores::kMaxLimit);
  EXPECT_TRUE(try_acquire("$big", 2147483647, LocalSemaphores::kMaxLimit).is_ok());
  EXPECT_EQ(try_acquire("$big", 2147483647, LocalSemaphores::kMaxLimit + 1).code(), StatusCode::kTooMany);
  EXPECT_TRUE(sems_->release("$big", LocalSemaphores::kMaxLimit, sems_->current("$big")).is_ok());
}

TEST_F(LocalSemaphoresTest, RegistryDirectoryIsPrivate) {
  ASSERT_TRUE(sems_->value("$p", 1));
  struct stat st {};
  ASSERT_EQ(::stat(sems_->dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  const auto open_dir = dir_ / "open";
  std::filesystem::create_directory(open_dir);
  ::chmod(open_dir.c_str(), 0777);
  EXPECT_EQ(LocalSemaphores(open_dir).value("$p", 1).status().code(), StatusCode::kIoError);

  const auto link = dir_ / "link";
  std::filesystem::create_directory_symlink(sems_->dir(), link);
  EXPECT_EQ(LocalSemaphores(link).value("$p", 1).status().code(), StatusCode::kIoError);

  const auto file = dir_ / "file";
  std::ofstream(file) << "x";
  EXPECT_EQ(LocalSemaphores(file).value("$p", 1).status().code(), StatusCode::kIoError);

  const auto foreign = dir_ / "foreign";
  std::filesystem::create_directory(foreign);
  ::chmod(foreign.c_str(), 0700);
  if (::geteuid() == 0 && ::chown(foreign.c_str(), 65534, 65534) == 0) {  // only root can give a directory away
    EXPECT_EQ(LocalSemaphores(foreign).value("$p", 1).status().code(), StatusCode::kIoError);
  }
  // Missing parents are made.
  EXPECT_TRUE(LocalSemaphores(dir_ / "deep" / "er").value("$p", 1));
  EXPECT_TRUE(LocalSemaphores(dir_ / "deep" / "er").remove_all().is_ok());
}

TEST_F(LocalSemaphoresTest, RemoveAllLeavesNothing) {
  std::vector<int> ids;
  for (const auto* key : {"$x", "$y", "plain"}) {
    auto id = sems_->system_v_id(key, 2);
    ASSERT_TRUE(id);
    ids.push_back(*id);
  }
  ASSERT_TRUE(sems_->remove_all().is_ok());
  for (const int id : ids) EXPECT_FALSE(semaphore_exists(id)) << id;
  EXPECT_TRUE(std::filesystem::is_empty(sems_->dir()));
  EXPECT_TRUE(sems_->remove("$x").is_ok());  // nothing to remove is fine
}

TEST(LocalSemaphoresDir, DefaultFollowsXdgRuntimeDir) {
  const char* saved = std::getenv("XDG_RUNTIME_DIR");
  const std::optional<std::string> old = saved ? std::optional<std::string>(saved) : std::nullopt;
  ::setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
  EXPECT_EQ(LocalSemaphores::default_dir(), std::filesystem::path("/run/user/4242/netsem"));
  EXPECT_EQ(LocalSemaphores(std::filesystem::path()).dir(), std::filesystem::path("/run/user/4242/netsem"));
  ::unsetenv("XDG_RUNTIME_DIR");
  EXPECT_EQ(LocalSemaphores::default_dir(), std::filesystem::path(fmt::format("/tmp/netsem-{}", ::geteuid())));
  if (old) ::setenv("XDG_RUNTIME_DIR", old->c_str(), 1);
}

}  // namespace
}  // namespace netsem::client
