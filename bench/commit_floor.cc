// netsem-commit-floor: the disk's floor under a cluster's commit, with no
// CPU, network or client in it. A grant of a replicated netsemd is answered
// only once its entry is on the disks of a majority (docs/replication.md),
// and a permit can turn at most once per commit (its holder's release and
// the next holder's grant travel in one entry, and the next release can only
// follow that grant's answer). So `contended` on a cluster can never run
// more cycles a second than limit / (the time a majority of the servers
// takes to make one append durable), whatever the code does.
//
// This probe measures that time on the directory given, the way raft_uv
// writes its log: each of --replicas files is a zero-filled segment (as
// netsemd's posix_fallocate fills new ones, src/raft/segment_fill.h), opened
// with O_DIRECT, and every round submits one 4 KiB append to each at once
// through Linux AIO with RWF_DSYNC, then times how long until --quorum of
// them completed. (raft_uv opens its segments with O_DSYNC and submits with
// RWF_NOWAIT; a write with RWF_DSYNC is synced the same way. raft_uv keeps
// one write in flight per server, of a whole batch; one block a round here
// is the least a commit can write.) It does the same with one file
// alone (a single server's synced append). Where O_DIRECT is refused (tmpfs)
// it writes with pwrite and fdatasync from one thread per file instead.
//
// It prints one JSON object: the quorum's and the lone append's latency
// (p50, p90, p99 in µs) and `ceiling_cycles_per_s`, limit / the quorum's
// p50. bench/compare.sh --cluster runs it on the cluster's file system and
// sets that ceiling beside the cluster's measured figure
// (docs/benchmarks.md, "The cluster's ceiling on this disk").
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kBlock = 4096;
constexpr std::size_t kSegment = 8 << 20;  // raft_uv's segment size

struct Options {
  std::string dir;
  int replicas = 3;
  int quorum = 2;
  int rounds = 2000;
  int limit = 10;  // bench.contended's limit in compare.sh
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "netsem-commit-floor: %s\n", what.c_str());
  std::exit(1);
}

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr,
               "netsem-commit-floor: %s\nusage: netsem-commit-floor [--dir DIR] [--replicas N] [--quorum Q] "
               "[--rounds N] [--limit L]\n",
               what.c_str());
  std::exit(2);
}

int to_int(std::string_view flag, const char* text, int low, int high) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < low || value > high) {
    usage_error(std::string(flag) + " wants a whole number from " + std::to_string(low) + " to " +
                std::to_string(high) + ", not '" + text + "'");
  }
  return static_cast<int>(value);
}

Options parse(int argc, char** argv) {
  Options options;
  const char* tmp = std::getenv("TMPDIR");
  options.dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf(
          "netsem-commit-floor [--dir DIR] [--replicas 3] [--quorum 2] [--rounds 2000] [--limit 10]\n"
          "The disk's floor under a cluster's commit: see bench/commit_floor.cc.\n");
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error(std::string(flag) + " wants a value");
    const char* value = argv[++i];
    if (flag == "--dir") {
      options.dir = value;
    } else if (flag == "--replicas") {
      options.replicas = to_int(flag, value, 1, 9);
    } else if (flag == "--quorum") {
      options.quorum = to_int(flag, value, 1, 9);
    } else if (flag == "--rounds") {
      options.rounds = to_int(flag, value, 10, 1'000'000);
    } else if (flag == "--limit") {
      options.limit = to_int(flag, value, 1, 1'000'000);
    } else {
      usage_error("unknown option " + std::string(flag));
    }
  }
  if (options.quorum > options.replicas) usage_error("--quorum cannot exceed --replicas");
  return options;
}

// One segment file, zero-filled and synced, removed on destruction.
class Segment {
 public:
  explicit Segment(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) fail("cannot create " + path + ": " + std::strerror(errno));
    const std::vector<char> zeros(1 << 20, 0);
    for (std::size_t done = 0; done < kSegment; done += zeros.size()) {
      if (::write(fd, zeros.data(), zeros.size()) != static_cast<ssize_t>(zeros.size())) {
        const int error = errno;
        ::close(fd);
        ::unlink(path.c_str());
        fail("cannot fill " + path + ": " + std::strerror(error));
      }
    }
    ::fsync(fd);
    ::close(fd);
    fd_ = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    direct_ = fd_ >= 0;
    if (!direct_) fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) fail("cannot open " + path + ": " + std::strerror(errno));
  }
  ~Segment() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  int fd() const { return fd_; }
  bool direct() const { return direct_; }

 private:
  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
};

// Linux AIO through its system calls (glibc has no wrappers), as raft_uv uses it.
class Aio {
 public:
  explicit Aio(unsigned events) {
    if (::syscall(SYS_io_setup, events, &context_) != 0) fail(std::string("io_setup: ") + std::strerror(errno));
  }
  ~Aio() { ::syscall(SYS_io_destroy, context_); }
  Aio(const Aio&) = delete;
  Aio& operator=(const Aio&) = delete;

  void submit(std::vector<iocb*>& blocks) {
    const long done = ::syscall(SYS_io_submit, context_, static_cast<long>(blocks.size()), blocks.data());
    if (done != static_cast<long>(blocks.size())) fail(std::string("io_submit: ") + std::strerror(errno));
  }
  // Waits for `count` completions; fails on a write that did not write a block.
  void reap(long count) {
    io_event events[16];
    while (count > 0) {
      const long got = ::syscall(SYS_io_getevents, context_, 1L, std::min(count, 16L), events, nullptr);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) fail(std::string("io_getevents: ") + std::strerror(errno));
      for (long i = 0; i < got; ++i) {
        if (events[i].res != static_cast<long long>(kBlock)) {
          fail("an append failed: " + std::string(std::strerror(static_cast<int>(-events[i].res))));
        }
      }
      count -= got;
    }
  }

 private:
  aio_context_t context_ = 0;
};

// Microseconds for each round: `writers` appends submitted at once, timed
// until `quorum` completed; the rest are reaped before the next round.
std::vector<double> rounds_aio(const std::vector<std::unique_ptr<Segment>>& files, int writers, int quorum, int rounds,
                               const char* block) {
  Aio aio(static_cast<unsigned>(writers) * 2);
  std::vector<iocb> blocks(static_cast<std::size_t>(writers));
  std::vector<iocb*> pointers;
  std::vector<double> took;
  took.reserve(static_cast<std::size_t>(rounds));
  for (int round = 0; round < rounds; ++round) {
    const auto offset = static_cast<long long>((static_cast<std::size_t>(round) * kBlock) % kSegment);
    pointers.clear();
    for (int w = 0; w < writers; ++w) {
      iocb& b = blocks[static_cast<std::size_t>(w)];
      std::memset(&b, 0, sizeof b);
      b.aio_fildes = static_cast<std::uint32_t>(files[static_cast<std::size_t>(w)]->fd());
      b.aio_lio_opcode = IOCB_CMD_PWRITE;
      b.aio_buf = reinterpret_cast<std::uint64_t>(block);
      b.aio_nbytes = kBlock;
      b.aio_offset = offset;
      b.aio_rw_flags = RWF_DSYNC;
      pointers.push_back(&b);
    }
    const auto start = Clock::now();
    aio.submit(pointers);
    aio.reap(quorum);
    took.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    aio.reap(writers - quorum);
  }
  return took;
}

// The same without O_DIRECT (tmpfs): one thread per file, pwrite and
// fdatasync, the round timed until `quorum` threads finished.
std::vector<double> rounds_threads(const std::vector<std::unique_ptr<Segment>>& files, int writers, int quorum,
                                   int rounds, const char* block) {
  std::vector<double> took;
  for (int round = 0; round < rounds; ++round) {
    const auto offset = static_cast<off_t>((static_cast<std::size_t>(round) * kBlock) % kSegment);
    std::vector<Clock::time_point> ends(static_cast<std::size_t>(writers));
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        const int fd = files[static_cast<std::size_t>(w)]->fd();
        if (::pwrite(fd, block, kBlock, offset) != static_cast<ssize_t>(kBlock) || ::fdatasync(fd) != 0) {
          fail(std::string("an append failed: ") + std::strerror(errno));
        }
        ends[static_cast<std::size_t>(w)] = Clock::now();
      });
    }
    for (auto& thread : threads) thread.join();
    std::sort(ends.begin(), ends.end());
    took.push_back(
        std::chrono::duration<double, std::micro>(ends[static_cast<std::size_t>(quorum) - 1] - start).count());
  }
  return took;
}

nlohmann::json percentiles(std::vector<double> took) {
  std::sort(took.begin(), took.end());
  const auto at = [&](double q) { return took[static_cast<std::size_t>(q * static_cast<double>(took.size() - 1))]; };
  return {{"p50", at(0.50)}, {"p90", at(0.90)}, {"p99", at(0.99)}};
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  std::vector<std::unique_ptr<Segment>> files;
  const std::string stem = options.dir + "/netsem-commit-floor." + std::to_string(::getpid()) + ".";
  for (int i = 0; i < options.replicas; ++i) files.push_back(std::make_unique<Segment>(stem + std::to_string(i)));
  const bool direct = files.front()->direct();

  void* memory = nullptr;
  if (::posix_memalign(&memory, kBlock, kBlock) != 0) fail("out of memory");
  std::unique_ptr<void, decltype(&std::free)> block(memory, &std::free);
  std::memset(memory, 0x5a, kBlock);
  const auto* bytes = static_cast<const char*>(memory);

  const auto run = direct ? rounds_aio : rounds_threads;
  run(files, options.replicas, options.quorum, options.rounds / 10, bytes);  // warm-up
  const auto quorum = run(files, options.replicas, options.quorum, options.rounds, bytes);
  const auto alone = run(files, 1, 1, options.rounds, bytes);

  const nlohmann::json q = percentiles(quorum);
  const double p50 = q.at("p50").get<double>();
  const nlohmann::json report = {
      {"dir", options.dir},
      {"method", direct ? "O_DIRECT, Linux AIO with RWF_DSYNC" : "pwrite and fdatasync (no O_DIRECT here)"},
      {"replicas", options.replicas},
      {"quorum", options.quorum},
      {"rounds", options.rounds},
      {"quorum_append_us", q},
      {"lone_append_us", percentiles(alone)},
      {"limit", options.limit},
      {"ceiling_cycles_per_s", p50 > 0 ? options.limit * 1e6 / p50 : 0.0},
  };
  std::printf("%s\n", report.dump().c_str());
  return 0;
}
