// Tests of FileJournal (src/journal/file_journal.h): the pure format reader
// first, then recovery through real files in a temporary directory per test:
// reopen, torn tails at every offset, corrupt records, compaction, fences
// across crashes, the directory lock (also held from another process), fsync
// policies, short writes, names with any bytes.
#include "journal/file_journal.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace netsem::server {
namespace {

namespace fs = std::filesystem;
namespace jf = journal_format;
using State = std::map<std::string, CreatedState>;

// ---------------------------------------------------------------- helpers

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "netsem-journal-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A copy of a data directory as a crash would leave it: the files only.
fs::path copy_dir(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy(from, to, fs::copy_options::recursive, ec);
  EXPECT_FALSE(ec) << ec.message();
  return to;
}

std::string journal_file(std::initializer_list<std::string> records, std::uint64_t generation = 1) {
  std::string out = jf::encode_header(jf::FileKind::kJournal, generation);
  for (const auto& r : records) out += r;
  return out;
}

std::string set_record(std::string_view name, std::int64_t value, std::int64_t max) {
  std::string out;
  jf::append_set(out, name, {value, max});
  return out;
}

std::string delete_record(std::string_view name) {
  std::string out;
  jf::append_delete(out, name);
  return out;
}

// Frames an arbitrary body with a correct length and checksum, so that the
// reader's parsing (not its checksum) is what rejects it.
std::string framed(std::string_view body) {
  std::string out;
  auto put32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put32(static_cast<std::uint32_t>(body.size()));
  put32(static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  out.append(body);
  return out;
}

std::string le(std::uint64_t v, int width) {
  std::string out;
  for (int i = 0; i < width; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

// RLIMIT_FSIZE makes the kernel cut a write short at the limit and fail the
// next with EFBIG: a short write followed by an error, as on a full disk.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &old_);
    rlimit limit = old_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit old_{};
  sighandler_t old_handler_;
};

// A fences file of version 2 with both slots at `bound` and `proof`.
void write_fences(const fs::path& dir, std::uint64_t bound, std::uint64_t proof = 0) {
  std::string bytes = jf::encode_fence_slot({2, bound, proof});
  bytes.resize(jf::kFenceSlotStride, '\0');
  bytes += jf::encode_fence_slot({1, bound, proof});
  write_bytes(dir / "fences", bytes);
}

// The one `journal.damaged-*` copy in `dir` (empty if there is not exactly one).
fs::path damaged_copy(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("journal.damaged-", 0) == 0) found.push_back(entry.path());
  }
  return found.size() == 1 ? found[0] : fs::path();
}

class FileJournalTest : public ::testing::Test {
 protected:
  fs::path data() const { return tmp_.path() / "data"; }

  // Opens `dir`, failing the test on error.
  std::unique_ptr<FileJournal> open(const fs::path& dir, RecoveredState& recovered,
                                    JournalOptions options = JournalOptions{}) {
    auto journal = FileJournal::open(dir, options, recovered);
    EXPECT_TRUE(journal) << journal.status().to_string();
    return journal ? std::move(*journal) : nullptr;
  }

  RecoveredState reopen(const fs::path& dir) {
    RecoveredState recovered;
    auto journal = open(dir, recovered);
    return recovered;
  }

  TempDir tmp_;
};

// ---------------------------------------------------------------- the format

TEST(JournalFormat, HeaderRoundTripsAndRejectsDamage) {
  const std::string header = jf::encode_header(jf::FileKind::kSnapshot, 0x0102030405060708);
  ASSERT_EQ(header.size(), jf::kHeaderSize);
  EXPECT_EQ(header.substr(0, 8), "nsemsnap");
  auto word = jf::parse_header(header, jf::FileKind::kSnapshot);
  ASSERT_TRUE(word);
  EXPECT_EQ(*word, 0x0102030405060708u);

  EXPECT_FALSE(jf::parse_header(header, jf::FileKind::kJournal));  // another kind's magic
  EXPECT_FALSE(jf::parse_header(header.substr(0, 23), jf::FileKind::kSnapshot));
  for (std::size_t i = 0; i < header.size(); ++i) {
    std::string damaged = header;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x10);
    auto parsed = jf::parse_header(damaged, jf::FileKind::kSnapshot);
    EXPECT_FALSE(parsed) << "byte " << i;
    if (!parsed) {
      EXPECT_EQ(parsed.status().code(), StatusCode::kCorruption);
    }
  }
}

TEST(JournalFormat, NewerVersionIsNamed) {
  std::string header = jf::encode_header(jf::FileKind::kJournal, 1);
  header[8] = 3;
  auto parsed = jf::parse_header(header, jf::FileKind::kJournal);
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.status().message().find("version 3"), std::string::npos) << parsed.status().message();
}

TEST(ReplayJournal, AppliesSetAndDeleteInOrder) {
  const std::string bytes = journal_file(
      {set_record("a", 1, 2), set_record("b", 3, 3), delete_record("a"), set_record("c", 0, 5), set_record("b", 2, 3)},
      7);
  State state;
  const ReplayResult r = replay_journal(bytes, state);
  EXPECT_EQ(r.stop, ReplayStop::kCleanEnd);
  EXPECT_EQ(r.generation, 7u);
  EXPECT_EQ(r.records, 5u);
  EXPECT_EQ(r.good_bytes, bytes.size());
  EXPECT_EQ(state, (State{{"b", {2, 3}}, {"c", {0, 5}}}));
}

TEST(ReplayJournal, EmptyJournalIsClean) {
  State state;
  const ReplayResult r = replay_journal(journal_file({}), state);
  EXPECT_EQ(r.stop, ReplayStop::kCleanEnd);
  EXPECT_EQ(r.good_bytes, jf::kHeaderSize);
  EXPECT_TRUE(state.empty());
}

TEST(ReplayJournal, BadHeaderAppliesNothing) {
  State state;
  std::string bytes = journal_file({set_record("a", 1, 1)});
  bytes[0] = 'X';
  const ReplayResult r = replay_journal(bytes, state);
  EXPECT_EQ(r.stop, ReplayStop::kBadHeader);
  EXPECT_EQ(r.good_bytes, 0u);
  EXPECT_TRUE(state.empty());
}

TEST(ReplayJournal, EveryTruncationKeepsTheRecordsBeforeIt) {
  const std::vector<std::string> records = {set_record("a", 1, 2), set_record("bb", 0, 9), delete_record("a")};
  std::string bytes = jf::encode_header(jf::FileKind::kJournal, 1);
  std::vector<std::size_t> ends;  // where each record ends
  for (const auto& r : records) {
    bytes += r;
    ends.push_back(bytes.size());
  }
  for (std::size_t cut = jf::kHeaderSize; cut <= bytes.size(); ++cut) {
    State state;
    const ReplayResult r = replay_journal(std::string_view(bytes).substr(0, cut), state);
    std::size_t whole = 0;
    while (whole < ends.size() && ends[whole] <= cut) ++whole;
    const std::size_t good = whole == 0 ? jf::kHeaderSize : ends[whole - 1];
    EXPECT_EQ(r.records, whole) << "cut " << cut;
    EXPECT_EQ(r.good_bytes, good) << "cut " << cut;
    EXPECT_EQ(r.stop, good == cut ? ReplayStop::kCleanEnd : ReplayStop::kTornTail) << "cut " << cut;
  }
}

TEST(ReplayJournal, FlippedByteIsACutAtItsRecord) {
  const std::string first = set_record("first", 1, 1);
  const std::string middle = set_record("middle", 2, 2);
  const std::string bytes = journal_file({first, middle, set_record("last", 3, 3)});
  const std::size_t at = jf::kHeaderSize + first.size();
  for (std::size_t i = 0; i < middle.size(); ++i) {
    std::string damaged = bytes;
    damaged[at + i] = static_cast<char>(damaged[at + i] ^ 0x01);
    State state;
    const ReplayResult r = replay_journal(damaged, state);
    EXPECT_EQ(r.good_bytes, at) << "byte " << i;
    EXPECT_NE(r.stop, ReplayStop::kCleanEnd) << "byte " << i;
    if (i >= jf::kRecordPrefixSize) {
      EXPECT_EQ(r.stop, ReplayStop::kChecksumMismatch) << "byte " << i;
    }
    EXPECT_EQ(state, (State{{"first", {1, 1}}})) << "byte " << i;
  }
}

TEST(ReplayJournal, ZeroFilledTailIsTorn) {
  // What a crash leaves when the file size reached the disk before the data.
  State state;
  const ReplayResult r = replay_journal(journal_file({set_record("a", 1, 1)}) + std::string(100, '\0'), state);
  EXPECT_EQ(r.stop, ReplayStop::kTornTail);
  EXPECT_EQ(r.records, 1u);
}

TEST(ReplayJournal, RecordsThatDoNotParseAreBad) {
  struct Case {
    const char* what;
    std::string record;
  };
  const std::string set = std::string(1, '\x01');
  const std::string del = std::string(1, '\x02');
  const std::vector<Case> cases = {
      {"zero length", le(0, 4) + le(0, 4)},
      {"length above any record", le(jf::kMaxRecordBody + 1, 4) + le(0, 4) + std::string(100, 'x')},
      {"unknown type", framed(std::string(1, '\x09') + le(1, 2) + "a")},
      {"type zero", framed(std::string(1, '\x00') + le(1, 2) + "a")},
      {"END in a journal", framed(std::string(1, '\x03') + le(0, 8))},
      {"empty name", framed(set + le(0, 2) + le(1, 8) + le(1, 8))},
      {"name longer than the record", framed(set + le(50, 2) + "a" + le(1, 8) + le(1, 8))},
      {"SET with a trailing byte", framed(set + le(1, 2) + "a" + le(1, 8) + le(1, 8) + "z")},
      {"SET too short", framed(set + le(1, 2) + "a" + le(1, 8))},
      {"value above max", framed(set + le(1, 2) + "a" + le(3, 8) + le(2, 8))},
      {"negative value", framed(set + le(1, 2) + "a" + le(static_cast<std::uint64_t>(-1), 8) + le(2, 8))},
      {"DELETE with a trailing byte", framed(del + le(1, 2) + "az")},
      {"type only", framed(set)},
  };
  for (const auto& c : cases) {
    State state;
    const std::string bytes = journal_file({set_record("keep", 1, 1), c.record, set_record("after", 1, 1)});
    const ReplayResult r = replay_journal(bytes, state);
    EXPECT_EQ(r.stop, ReplayStop::kBadRecord) << c.what;
    EXPECT_EQ(r.records, 1u) << c.what;
    EXPECT_EQ(state, (State{{"keep", {1, 1}}})) << c.what;
  }
}

TEST(ReplayJournal, GoodPrefixReplaysToTheSameStateAndIsIdempotent) {
  std::string bytes = journal_file({set_record("a", 1, 2), delete_record("b"), set_record("b", 4, 4)});
  bytes += "garbage after the good records";
  State once;
  const ReplayResult r = replay_journal(bytes, once);
  ASSERT_NE(r.stop, ReplayStop::kCleanEnd);

  State again;
  const ReplayResult prefix = replay_journal(std::string_view(bytes).substr(0, r.good_bytes), again);
  EXPECT_EQ(prefix.stop, ReplayStop::kCleanEnd);
  EXPECT_EQ(prefix.records, r.records);
  EXPECT_EQ(again, once);

  replay_journal(bytes, again);  // on top of a state that already holds it
  EXPECT_EQ(again, once);
}

TEST(ReplaySnapshot, NeedsItsEndRecordAndNothingAfter) {
  const State state{{"x", {1, 2}}, {"y y", {0, 7}}};
  const std::string good = jf::encode_snapshot(3, state);
  State read;
  ReplayResult r = replay_snapshot(good, read);
  EXPECT_EQ(r.stop, ReplayStop::kCleanEnd);
  EXPECT_EQ(r.generation, 3u);
  EXPECT_EQ(r.records, 2u);
  EXPECT_EQ(read, state);

  for (std::size_t cut = jf::kHeaderSize; cut < good.size(); ++cut) {
    State partial;
    EXPECT_EQ(replay_snapshot(std::string_view(good).substr(0, cut), partial).stop, ReplayStop::kTornTail) << cut;
  }
  State s1;
  EXPECT_EQ(replay_snapshot(good + set_record("z", 1, 1), s1).stop, ReplayStop::kBadRecord);

  std::string miscounted = jf::encode_header(jf::FileKind::kSnapshot, 1) + set_record("a", 1, 1);
  jf::append_end(miscounted, 2);
  State s2;
  EXPECT_EQ(replay_snapshot(miscounted, s2).stop, ReplayStop::kBadRecord);

  // A snapshot written while the server ran ends with the records made
  // meanwhile, DELETE among them; END counts them all.
  std::string with_delete = jf::encode_header(jf::FileKind::kSnapshot, 1) + set_record("a", 1, 1) +
                            set_record("b", 1, 1) + delete_record("a") + set_record("c", 0, 2);
  jf::append_end(with_delete, 4);
  State s3;
  EXPECT_EQ(replay_snapshot(with_delete, s3).stop, ReplayStop::kCleanEnd);
  EXPECT_EQ(s3, (State{{"b", {1, 1}}, {"c", {0, 2}}}));
}

TEST(FsyncPolicy, ParsesItsNames) {
  struct Case {
    const char* text;
    FsyncPolicy policy;
  };
  for (const Case& c :
       {Case{"always", FsyncPolicy::kAlways}, Case{"everysec", FsyncPolicy::kEverySec}, Case{"no", FsyncPolicy::kNo},
        Case{"ALWAYS", FsyncPolicy::kAlways}, Case{"EverySec", FsyncPolicy::kEverySec}}) {
    auto parsed = parse_fsync_policy(c.text);
    ASSERT_TRUE(parsed) << c.text;
    EXPECT_EQ(*parsed, c.policy) << c.text;
  }
  for (const char* bad : {"", "sometimes", "always ", "every-sec", "1", "yes"}) {
    auto parsed = parse_fsync_policy(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  }
  for (auto policy : {FsyncPolicy::kAlways, FsyncPolicy::kEverySec, FsyncPolicy::kNo}) {
    auto parsed = parse_fsync_policy(fsync_policy_name(policy));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(*parsed, policy);
  }
}

// ---------------------------------------------------------------- open, reopen

TEST_F(FileJournalTest, CreatesTheDirectoryAndItsParents) {
  const fs::path dir = tmp_.path() / "a" / "b" / "data";
  RecoveredState recovered;
  recovered.warnings.push_back("stale");  // open() clears what it is given
  auto journal = open(dir, recovered);
  ASSERT_TRUE(journal);
  EXPECT_TRUE(recovered.created.empty());
  EXPECT_TRUE(recovered.warnings.empty());
  EXPECT_EQ(recovered.fence_floor, 0u);
  for (const char* name : {"lock", "snapshot", "journal"}) EXPECT_TRUE(fs::exists(dir / name)) << name;
  EXPECT_EQ(journal->journal_bytes(), jf::kHeaderSize);
  EXPECT_EQ(journal->dir(), dir);
}

TEST_F(FileJournalTest, OpenOnARegularFileIsAnIoError) {
  write_bytes(data(), "not a directory");
  RecoveredState recovered;
  auto journal = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.status().code(), StatusCode::kIoError);
}

TEST_F(FileJournalTest, ReplaysAfterReopen) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->record_set("a", {1, 3});
    journal->record_set("b", {0, 1});
    ASSERT_TRUE(journal->flush());
    journal->record_set("a", {2, 3});
    ASSERT_TRUE(journal->flush());
  }
  const RecoveredState recovered = reopen(data());
  EXPECT_TRUE(recovered.warnings.empty());
  EXPECT_EQ(recovered.created, (State{{"a", {2, 3}}, {"b", {0, 1}}}));
  // And once more, now from the snapshot the first reopen wrote.
  EXPECT_EQ(reopen(data()).created, recovered.created);
}

TEST_F(FileJournalTest, RecordsNotFlushedAreLostLikeInACrash) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->record_set("kept", {1, 1});
    ASSERT_TRUE(journal->flush());
    journal->record_set("lost", {1, 1});
    EXPECT_TRUE(journal->has_pending());
  }
  EXPECT_EQ(reopen(data()).created, (State{{"kept", {1, 1}}}));
}

TEST_F(FileJournalTest, RecordDeleteRemoves) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->record_set("a", {1, 1});
    journal->record_set("b", {1, 1});
    journal->record_set("c", {1, 1});
    journal->record_delete("c");  // in the same batch
    ASSERT_TRUE(journal->flush());
  }
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    EXPECT_EQ(recovered.created, (State{{"a", {1, 1}}, {"b", {1, 1}}}));
    journal->record_delete("a");  // one that only the snapshot holds
    ASSERT_TRUE(journal->flush());
  }
  EXPECT_EQ(reopen(data()).created, (State{{"b", {1, 1}}}));
}

// Compaction in steps, as the server does it with a child writing the
// snapshot: records made between the begin and the finish are kept, a
// crash before the finish recovers everything from the old files, and an
// abort changes nothing.
TEST_F(FileJournalTest, CompactionInStepsKeepsTheRecordsMadeWhileTheSnapshotIsWritten) {
  RecoveredState recovered;
  auto journal = open(data(), recovered);
  journal->record_set("a", {1, 1});
  journal->record_set("b", {1, 1});
  journal->record_set("c", {2, 2});
  ASSERT_TRUE(journal->flush());
  const State at_begin = {{"a", {1, 1}}, {"b", {1, 1}}, {"c", {2, 2}}};
  const auto source = [&](const std::function<void(std::string_view, const CreatedState&)>& visit) {
    for (const auto& [name, state] : at_begin) visit(name, state);
  };
  const State after = {{"a", {0, 1}}, {"c", {2, 2}}, {"d", {0, 1}}};
  const auto copy_of_data = [&](const char* name) {
    const fs::path copy = tmp_.path() / name;
    fs::copy(data(), copy, fs::copy_options::recursive);
    return copy;
  };

  // An abort leaves everything as it was.
  std::uint64_t generation = journal->begin_compaction();
  std::uint64_t records = 0;
  ASSERT_TRUE(journal->write_snapshot_body(generation, source, records));
  EXPECT_EQ(records, 3u);
  journal->abort_compaction();
  EXPECT_FALSE(fs::exists(data() / "snapshot.tmp"));
  EXPECT_EQ(journal->stats().generation, generation - 1);

  generation = journal->begin_compaction();
  journal->record_delete("b");  // made while the snapshot is written
  journal->record_set("d", {0, 1});
  journal->record_set("a", {0, 1});
  ASSERT_TRUE(journal->flush());
  ASSERT_TRUE(journal->write_snapshot_body(generation, source, records));
  // A crash now: the half-made snapshot is ignored, the old files hold it all.
  EXPECT_EQ(reopen(copy_of_data("crash-before-finish")).created, after);

  ASSERT_TRUE(journal->finish_compaction(records));
  EXPECT_FALSE(journal->compacting());
  EXPECT_EQ(journal->stats().generation, generation);
  EXPECT_EQ(journal->journal_bytes(), jf::kHeaderSize);
  EXPECT_EQ(reopen(copy_of_data("after-finish")).created, after);
  journal->record_set("e", {1, 1});
  ASSERT_TRUE(journal->flush());
  journal.reset();
  State expected = after;
  expected["e"] = {1, 1};
  EXPECT_EQ(reopen(data()).created, expected);
}

TEST_F(FileJournalTest, NamesWithAnyBytes) {
  const State names = {
      {"with space", {1, 2}},
      {"h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93", {2, 2}},
      {std::string(255, 'n'), {0, 1}},
      {std::string("nul\0inside", 10), {1, 1}},
      {"\n\r\t%20|:", {3, 4}},
      {"\xff\xfe\x80", {0, 9}},
      {std::string(jf::kMaxNameSize, '\x01'), {5, 5}},
  };
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    for (const auto& [name, state] : names) journal->record_set(name, state);
    ASSERT_TRUE(journal->flush());
  }
  EXPECT_EQ(reopen(data()).created, names);  // from the journal
  EXPECT_EQ(reopen(data()).created, names);  // from the snapshot
}

// ---------------------------------------------------------------- damage

// A data directory whose journal ends with three records, each flushed on
// its own; `starts` says where each begins in the journal file.
struct ThreeRecords {
  std::vector<std::size_t> starts;
  std::size_t size = 0;
};

ThreeRecords write_three(const fs::path& dir) {
  ThreeRecords out;
  RecoveredState recovered;
  auto journal = FileJournal::open(dir, {}, recovered);
  EXPECT_TRUE(journal);
  if (!journal) return out;
  const std::vector<std::pair<std::string, CreatedState>> records = {
      {"alpha", {1, 4}}, {"beta", {2, 4}}, {"alpha", {3, 4}}};
  for (const auto& [name, state] : records) {
    out.starts.push_back((*journal)->journal_bytes());
    (*journal)->record_set(name, state);
    EXPECT_TRUE((*journal)->flush());
  }
  out.size = (*journal)->journal_bytes();
  return out;
}

TEST_F(FileJournalTest, TornTailAtEveryOffsetKeepsEarlierRecords) {
  const ThreeRecords three = write_three(data());
  ASSERT_EQ(three.starts.size(), 3u);
  const std::size_t last = three.starts[2];
  for (std::size_t cut = last; cut < three.size; ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const fs::path copy = copy_dir(data(), tmp_.path() / ("cut" + std::to_string(cut)));
    fs::resize_file(copy / "journal", cut);
    RecoveredState recovered;
    auto journal = open(copy, recovered);
    EXPECT_EQ(recovered.created, (State{{"alpha", {1, 4}}, {"beta", {2, 4}}}));
    if (cut == last) {
      EXPECT_TRUE(recovered.warnings.empty());
      continue;
    }
    ASSERT_EQ(recovered.warnings.size(), 1u);
    EXPECT_NE(recovered.warnings[0].find("torn tail at offset " + std::to_string(last) + " (" +
                                         std::to_string(cut - last) + " bytes cut"),
              std::string::npos)
        << recovered.warnings[0];
    // The damaged journal is kept for a post-mortem; the live one starts empty.
    ASSERT_FALSE(damaged_copy(copy).empty());
    EXPECT_EQ(fs::file_size(damaged_copy(copy)), cut);
    EXPECT_EQ(fs::file_size(copy / "journal"), jf::kHeaderSize);
    // The cut is final: a second reopen has nothing left to warn about.
    journal.reset();
    EXPECT_TRUE(reopen(copy).warnings.empty());
  }
}

TEST_F(FileJournalTest, DamageFollowedByValidRecordsIsRefusedNotCut) {
  const ThreeRecords three = write_three(data());
  ASSERT_EQ(three.starts.size(), 3u);
  const std::size_t middle = three.starts[1];
  for (std::size_t at = middle; at < three.starts[2]; ++at) {
    SCOPED_TRACE("byte " + std::to_string(at));
    const fs::path copy = copy_dir(data(), tmp_.path() / ("flip" + std::to_string(at)));
    std::string bytes = read_bytes(copy / "journal");
    bytes[at] = static_cast<char>(bytes[at] ^ 0x40);
    write_bytes(copy / "journal", bytes);
    RecoveredState recovered;
    auto refused = FileJournal::open(copy, {}, recovered);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
    const std::string message = refused.status().message();
    EXPECT_NE(message.find((copy / "journal").string()), std::string::npos) << message;
    EXPECT_NE(message.find("at offset " + std::to_string(middle)), std::string::npos) << message;
    EXPECT_NE(message.find("not a torn tail"), std::string::npos) << message;
    EXPECT_NE(message.find("--repair"), std::string::npos) << message;
    EXPECT_TRUE(recovered.created.empty());
    EXPECT_EQ(read_bytes(copy / "journal"), bytes);  // left as it was
  }
}

TEST_F(FileJournalTest, RepairCutsMidJournalDamageSayingWhatWasLost) {
  const ThreeRecords three = write_three(data());
  ASSERT_EQ(three.starts.size(), 3u);
  std::string bytes = read_bytes(data() / "journal");
  bytes[three.starts[1] + jf::kRecordPrefixSize + 2] ^= 0x01;
  write_bytes(data() / "journal", bytes);
  JournalOptions repair;
  repair.repair = true;
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered, repair);
    EXPECT_EQ(recovered.created, (State{{"alpha", {1, 4}}}));
    ASSERT_EQ(recovered.losses.size(), 1u);
    const std::string& loss = recovered.losses[0];
    EXPECT_NE(loss.find("checksum mismatch at offset " + std::to_string(three.starts[1])), std::string::npos) << loss;
    EXPECT_NE(loss.find("followed by 1 valid records from offset " + std::to_string(three.starts[2])),
              std::string::npos)
        << loss;
    EXPECT_NE(loss.find(std::to_string(three.size - three.starts[1]) + " bytes cut"), std::string::npos) << loss;
    ASSERT_FALSE(damaged_copy(data()).empty());
    EXPECT_EQ(read_bytes(damaged_copy(data())), bytes);
  }
  // Accepted once: the next start is clean.
  const RecoveredState after = reopen(data());
  EXPECT_TRUE(after.warnings.empty());
  EXPECT_EQ(after.created, (State{{"alpha", {1, 4}}}));
}

TEST_F(FileJournalTest, DamagedLastRecordIsATornTail) {
  const ThreeRecords three = write_three(data());
  ASSERT_EQ(three.starts.size(), 3u);
  for (std::size_t at = three.starts[2]; at < three.size; ++at) {
    SCOPED_TRACE("byte " + std::to_string(at));
    const fs::path copy = copy_dir(data(), tmp_.path() / ("flip" + std::to_string(at)));
    std::string bytes = read_bytes(copy / "journal");
    bytes[at] = static_cast<char>(bytes[at] ^ 0x40);
    write_bytes(copy / "journal", bytes);
    RecoveredState recovered;
    auto journal = open(copy, recovered);
    EXPECT_EQ(recovered.created, (State{{"alpha", {1, 4}}, {"beta", {2, 4}}}));
    ASSERT_EQ(recovered.warnings.size(), 1u);
    EXPECT_NE(recovered.warnings[0].find("torn tail: the last write did not complete"), std::string::npos)
        << recovered.warnings[0];
    EXPECT_TRUE(recovered.losses.empty());
  }
}

TEST_F(FileJournalTest, DamagedSnapshotIsAnErrorNotASilentLoss) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->record_set("a", {1, 1});
    ASSERT_TRUE(journal->flush());
  }
  reopen(data());  // "a" is now in the snapshot
  std::string bytes = read_bytes(data() / "snapshot");
  bytes[jf::kHeaderSize + 10] ^= 0x01;
  write_bytes(data() / "snapshot", bytes);
  RecoveredState recovered;
  auto journal = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.status().code(), StatusCode::kCorruption);
  EXPECT_NE(journal.status().message().find("checksum mismatch"), std::string::npos) << journal.status().message();
  EXPECT_TRUE(recovered.created.empty());
}

TEST_F(FileJournalTest, ForeignJournalIsAnError) {
  reopen(data());
  write_bytes(data() / "journal", "this is not a netsem journal at all");
  RecoveredState recovered;
  auto journal = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.status().code(), StatusCode::kCorruption);
  EXPECT_NE(journal.status().message().find("bad magic"), std::string::npos) << journal.status().message();
}

// A crash after the snapshot of generation N is renamed in, before the
// journal of generation N is: the journal left is older and already in it.
TEST_F(FileJournalTest, JournalOlderThanTheSnapshotIsSkipped) {
  fs::create_directories(data());
  write_bytes(data() / "snapshot", jf::encode_snapshot(5, {{"a", {1, 2}}}));
  write_fences(data(), 0);
  write_bytes(data() / "journal", journal_file({set_record("a", 0, 2), set_record("b", 1, 1)}, 4));
  const RecoveredState recovered = reopen(data());
  EXPECT_EQ(recovered.created, (State{{"a", {1, 2}}}));
  ASSERT_EQ(recovered.warnings.size(), 1u);
  EXPECT_NE(recovered.warnings[0].find("older than the snapshot"), std::string::npos) << recovered.warnings[0];
}

TEST_F(FileJournalTest, JournalOfTheSnapshotsGenerationIsReplayedOnIt) {
  fs::create_directories(data());
  write_bytes(data() / "snapshot", jf::encode_snapshot(5, {{"a", {1, 2}}, {"c", {1, 1}}}));
  write_fences(data(), 0);
  write_bytes(data() / "journal", journal_file({set_record("a", 0, 2), delete_record("c")}, 5));
  const RecoveredState recovered = reopen(data());
  EXPECT_TRUE(recovered.warnings.empty());
  EXPECT_EQ(recovered.created, (State{{"a", {0, 2}}}));
}

TEST_F(FileJournalTest, JournalNewerThanTheSnapshotIsAnError) {
  fs::create_directories(data());
  write_bytes(data() / "snapshot", jf::encode_snapshot(2, {}));
  write_fences(data(), 0);
  write_bytes(data() / "journal", journal_file({set_record("a", 0, 2)}, 3));
  RecoveredState recovered;
  auto journal = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.status().code(), StatusCode::kCorruption);
}

TEST_F(FileJournalTest, MissingJournalIsAWarning) {
  reopen(data());
  fs::remove(data() / "journal");
  const RecoveredState recovered = reopen(data());
  ASSERT_EQ(recovered.warnings.size(), 1u);
  EXPECT_NE(recovered.warnings[0].find("missing"), std::string::npos);
}

TEST_F(FileJournalTest, LeftoverTempFilesAreIgnored) {
  reopen(data());
  write_bytes(data() / "snapshot.tmp", "half a snapshot");
  write_bytes(data() / "journal.tmp", "half a journal");
  write_bytes(data() / "fences.tmp", "half");
  const RecoveredState recovered = reopen(data());
  EXPECT_TRUE(recovered.warnings.empty());
  EXPECT_FALSE(fs::exists(data() / "snapshot.tmp"));
  EXPECT_FALSE(fs::exists(data() / "fences.tmp"));
}

// ---------------------------------------------------------------- compaction

TEST_F(FileJournalTest, CompactsAtStart) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    EXPECT_EQ(journal->stats().generation, 1u);
    for (int i = 0; i < 50; ++i) journal->record_set("n" + std::to_string(i % 5), {i % 3, 3});
    ASSERT_TRUE(journal->flush());
    EXPECT_GT(journal->journal_bytes(), 1000u);
  }
  RecoveredState recovered;
  auto journal = open(data(), recovered);
  EXPECT_EQ(recovered.created.size(), 5u);
  EXPECT_EQ(journal->stats().generation, 2u);
  EXPECT_EQ(journal->stats().compactions, 1u);
  EXPECT_EQ(journal->journal_bytes(), jf::kHeaderSize);
  EXPECT_EQ(fs::file_size(data() / "journal"), jf::kHeaderSize);
  State snapshot;
  const ReplayResult r = replay_snapshot(read_bytes(data() / "snapshot"), snapshot);
  EXPECT_EQ(r.stop, ReplayStop::kCleanEnd);
  EXPECT_EQ(r.generation, 2u);
  EXPECT_EQ(snapshot, recovered.created);
}

TEST_F(FileJournalTest, WantsCompactionPastTheSizeAndTwiceTheSnapshot) {
  JournalOptions options;
  options.compact_bytes = 500;
  RecoveredState recovered;
  auto journal = open(data(), recovered, options);
  State state;
  int i = 0;
  while (!journal->wants_compaction()) {
    const std::string name = "name" + std::to_string(i++ % 40);
    state[name] = {1, 2};
    journal->record_set(name, {1, 2});
    ASSERT_TRUE(journal->flush());
    ASSERT_LT(i, 1000);
  }
  EXPECT_GT(journal->journal_bytes(), 500u);
  ASSERT_TRUE(journal->compact(state));
  EXPECT_FALSE(journal->wants_compaction());
  EXPECT_EQ(journal->journal_bytes(), jf::kHeaderSize);
  const std::uint64_t snapshot = journal->stats().snapshot_bytes;
  ASSERT_GT(snapshot, 500u);

  // Past compact_bytes but not past twice the snapshot: not yet.
  while (journal->journal_bytes() <= 2 * snapshot) {
    EXPECT_EQ(journal->wants_compaction(), false);
    journal->record_set("name0", {0, 2});
    ASSERT_TRUE(journal->flush());
  }
  EXPECT_TRUE(journal->wants_compaction());
  state["name0"] = {0, 2};
  ASSERT_TRUE(journal->compact(state));
  journal.reset();
  EXPECT_EQ(reopen(data()).created, state);
}

TEST_F(FileJournalTest, CompactionTakesTheBatchIntoTheSnapshot) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->record_set("a", {1, 1});
    ASSERT_TRUE(journal->flush());
    journal->record_set("b", {1, 1});  // batched, then compacted with the state that includes it
    ASSERT_TRUE(journal->compact({{"a", {1, 1}}, {"b", {1, 1}}}));
    EXPECT_FALSE(journal->has_pending());
  }
  EXPECT_EQ(reopen(data()).created, (State{{"a", {1, 1}}, {"b", {1, 1}}}));
}

TEST_F(FileJournalTest, CompactionThatFailsEarlyChangesNothing) {
  RecoveredState recovered;
  auto journal = open(data(), recovered);
  journal->record_set("a", {1, 1});
  ASSERT_TRUE(journal->flush());
  const auto before = journal->stats();
  fs::create_directories(data() / "snapshot.tmp" / "in-the-way");
  journal->record_set("b", {1, 1});
  Status status = journal->compact({{"a", {1, 1}}, {"b", {1, 1}}});
  ASSERT_FALSE(status);
  EXPECT_EQ(status.code(), StatusCode::kIoError);
  EXPECT_EQ(journal->stats().generation, before.generation);
  EXPECT_TRUE(journal->has_pending());  // still batched: the snapshot did not take it
  ASSERT_TRUE(journal->flush());
  fs::remove_all(data() / "snapshot.tmp");
  journal.reset();
  EXPECT_EQ(reopen(data()).created, (State{{"a", {1, 1}}, {"b", {1, 1}}}));
}

TEST_F(FileJournalTest, CompactionThatFailsLateMustBeRedone) {
  RecoveredState recovered;
  auto journal = open(data(), recovered);
  journal->record_set("a", {1, 1});
  ASSERT_TRUE(journal->flush());
  // The new journal cannot be renamed over a non-empty directory.
  fs::remove(data() / "journal");
  fs::create_directories(data() / "journal" / "in-the-way");
  Status status = journal->compact({{"a", {1, 1}}});
  ASSERT_FALSE(status);
  EXPECT_NE(status.message().find("compacted again"), std::string::npos) << status.message();
  EXPECT_TRUE(journal->wants_compaction());
  journal->record_set("b", {2, 2});
  EXPECT_FALSE(journal->flush());  // nowhere safe to write
  EXPECT_TRUE(journal->has_pending());

  fs::remove_all(data() / "journal");
  ASSERT_TRUE(journal->compact({{"a", {1, 1}}, {"b", {2, 2}}}));
  EXPECT_FALSE(journal->wants_compaction());
  journal->record_set("c", {3, 3});
  ASSERT_TRUE(journal->flush());
  journal.reset();
  const RecoveredState after = reopen(data());
  EXPECT_TRUE(after.warnings.empty());
  EXPECT_EQ(after.created, (State{{"a", {1, 1}}, {"b", {2, 2}}, {"c", {3, 3}}}));
}

// ---------------------------------------------------------------- fences

TEST_F(FileJournalTest, FencesStayAboveEverythingReservedBeforeACrash) {
  constexpr std::uint64_t kStep = 1 << 16;
  std::uint64_t highest_granted = 0;
  for (int run = 0; run < 4; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    EXPECT_GE(recovered.fence_floor, highest_granted);
    // Hand out fences as the table does: above the floor, reserving ahead.
    std::uint64_t bound = recovered.fence_floor;
    std::uint64_t next = recovered.fence_floor + 1;
    for (std::uint64_t i = 0; i < kStep + 100; ++i, ++next) {
      if (next > bound) {
        bound = journal->reserve_fences(next - 1 + kStep);
        ASSERT_GE(bound, next);
      }
      ASSERT_GT(next, highest_granted);
      highest_granted = next;
    }
    if (run % 2 == 0) {
      // Crash by copying the directory while it is open; the copy is what survives.
      const fs::path crashed = copy_dir(data(), tmp_.path() / ("crash" + std::to_string(run)));
      journal.reset();
      fs::remove_all(data());
      fs::rename(crashed, data());
    }
    // Else: destroyed without any flush or sync.
  }
}

TEST_F(FileJournalTest, ReserveBelowTheBoundWritesNothing) {
  RecoveredState recovered;
  auto journal = open(data(), recovered);
  EXPECT_EQ(journal->reserve_fences(100), 100u);
  const auto written = fs::last_write_time(data() / "fences");
  EXPECT_EQ(journal->reserve_fences(50), 100u);
  EXPECT_EQ(journal->reserve_fences(100), 100u);
  EXPECT_EQ(fs::last_write_time(data() / "fences"), written);
  EXPECT_EQ(journal->stats().fence_bound, 100u);
}

TEST_F(FileJournalTest, DamagedFencesFileIsAnErrorUnlessRepaired) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->reserve_fences(1 << 16);
  }
  std::string bytes = read_bytes(data() / "fences");
  bytes[14] ^= 0x01;
  bytes[jf::kFenceSlotStride + 14] ^= 0x01;
  write_bytes(data() / "fences", bytes);
  RecoveredState recovered;
  auto journal = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.status().code(), StatusCode::kCorruption);
  EXPECT_NE(journal.status().message().find("both slots are damaged"), std::string::npos) << journal.status().message();
  EXPECT_NE(journal.status().message().find("--repair"), std::string::npos) << journal.status().message();
  JournalOptions repair;
  repair.repair = true;
  auto repaired = open(data(), recovered, repair);
  // Above the wall clock in ms times 65536: far above 1 << 16.
  EXPECT_GT(recovered.fence_floor, std::uint64_t{1} << 50);
  ASSERT_EQ(recovered.losses.size(), 1u);
}

TEST_F(FileJournalTest, OneTornFenceSlotKeepsFencesAboveEverythingReserved) {
  std::uint64_t bound = 0;
  for (int tear = 0; tear < 2; ++tear) {
    SCOPED_TRACE("tear " + std::to_string(tear));
    {
      RecoveredState recovered;
      auto journal = open(data(), recovered);
      ASSERT_GE(recovered.fence_floor, bound);
      bound = journal->reserve_fences(recovered.fence_floor + (1 << 16));
    }
    // The newest slot damaged, as if its write was torn: the older one is
    // one reservation behind, so the floor must make up for it.
    std::string bytes = read_bytes(data() / "fences");
    const std::size_t newest = jf::parse_fences(bytes)->slot.counter % 2 * jf::kFenceSlotStride;
    bytes[newest + 20] ^= 0x01;
    write_bytes(data() / "fences", bytes);
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    EXPECT_GE(recovered.fence_floor, bound);
    ASSERT_EQ(recovered.warnings.size(), 1u);
    EXPECT_NE(recovered.warnings[0].find("one slot is damaged"), std::string::npos) << recovered.warnings[0];
  }
}

TEST_F(FileJournalTest, MissingFencesFileWithDataIsRefused) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->record_set("a", {1, 1});
    ASSERT_TRUE(journal->flush());
  }
  fs::remove(data() / "fences");
  RecoveredState recovered;
  auto journal = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.status().code(), StatusCode::kCorruption);
  EXPECT_NE(journal.status().message().find("fences is missing"), std::string::npos) << journal.status().message();
  EXPECT_NE(journal.status().message().find("--repair"), std::string::npos) << journal.status().message();
  JournalOptions repair;
  repair.repair = true;
  auto repaired = open(data(), recovered, repair);
  EXPECT_EQ(recovered.created, (State{{"a", {1, 1}}}));
  EXPECT_GT(recovered.fence_floor, std::uint64_t{1} << 50);
}

TEST_F(FileJournalTest, FenceReservationThatFailsKeepsTheOldBoundAndRecovers) {
  RecoveredState recovered;
  auto journal = open(data(), recovered);
  ASSERT_EQ(journal->reserve_fences(100), 100u);
  {
    FileSizeLimit limit(1);  // the slot write fails (EFBIG), the first byte torn or not
    EXPECT_EQ(journal->reserve_fences(1000), 100u);
    EXPECT_EQ(journal->stats().fence_bound, 100u);
  }
  EXPECT_EQ(journal->reserve_fences(1000), 1000u);
  journal.reset();
  EXPECT_GE(reopen(data()).fence_floor, 1000u);
}

TEST_F(FileJournalTest, ReservationNeedsNoNewDescriptor) {
  RecoveredState recovered;
  auto journal = open(data(), recovered);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  // No descriptor left: every open fails with EMFILE.
  std::vector<int> spent;
  for (int fd; (fd = ::dup(0)) >= 0;) spent.push_back(fd);
  const std::uint64_t bound = journal->reserve_fences(1 << 16);
  for (int fd : spent) ::close(fd);
  ::setrlimit(RLIMIT_NOFILE, &old);
  EXPECT_EQ(bound, 1u << 16);
  journal.reset();
  EXPECT_GE(reopen(data()).fence_floor, 1u << 16);
}

// ---------------------------------------------------------------- proofs and old versions

TEST_F(FileJournalTest, JournalShorterThanTheFencesFileProvesIsRefused) {
  std::vector<std::uint64_t> ends;  // journal size after each record
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    for (int i = 0; i < 3; ++i) {
      journal->record_set("n" + std::to_string(i), {i, 5});
      ASSERT_TRUE(journal->flush());
      ends.push_back(journal->journal_bytes());
    }
    ASSERT_TRUE(journal->sync());
    ASSERT_TRUE(journal->write_proof());
    EXPECT_EQ(journal->stats().sequence, 3u);
  }
  // Cut at a record boundary: every record left is whole, so only the proof tells.
  fs::resize_file(data() / "journal", ends[1]);
  const std::string before = read_bytes(data() / "journal");
  RecoveredState recovered;
  auto refused = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(refused);
  const std::string message = refused.status().message();
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(message.find("ends after record 2"), std::string::npos) << message;
  EXPECT_NE(message.find("proves 3 records were durable: 1 records are missing"), std::string::npos) << message;
  EXPECT_NE(message.find("--repair"), std::string::npos) << message;
  EXPECT_EQ(read_bytes(data() / "journal"), before);
  JournalOptions repair;
  repair.repair = true;
  {
    auto repaired = open(data(), recovered, repair);
    EXPECT_EQ(recovered.created, (State{{"n0", {0, 5}}, {"n1", {1, 5}}}));
    ASSERT_EQ(recovered.losses.size(), 1u);
    EXPECT_EQ(repaired->stats().sequence, 3u);  // numbering goes on above the proof
  }
  EXPECT_TRUE(reopen(data()).warnings.empty());
}

TEST_F(FileJournalTest, ProofOnlyCoversWhatWasDurable) {
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->record_set("a", {1, 1});
    ASSERT_TRUE(journal->flush());
    ASSERT_TRUE(journal->sync());
    ASSERT_TRUE(journal->write_proof());
    journal->record_set("b", {1, 1});  // written, not fsynced: a power loss may take it
    ASSERT_TRUE(journal->flush());
    ASSERT_TRUE(journal->write_proof());
  }
  std::string bytes = read_bytes(data() / "journal");
  fs::resize_file(data() / "journal", bytes.size() - 1);  // the unsynced record torn
  const RecoveredState recovered = reopen(data());
  EXPECT_EQ(recovered.created, (State{{"a", {1, 1}}}));
  EXPECT_TRUE(recovered.losses.empty());
}

TEST_F(FileJournalTest, ReadsADataDirectoryOfFormatVersion1) {
  fs::create_directories(data());
  std::string snapshot = jf::encode_header_v1(jf::FileKind::kSnapshot, 3);
  jf::append_set(snapshot, "kept", {2, 3});
  jf::append_set(snapshot, "gone", {1, 1});
  jf::append_end(snapshot, 2);
  write_bytes(data() / "snapshot", snapshot);
  std::string journal = jf::encode_header_v1(jf::FileKind::kJournal, 3);
  jf::append_set(journal, "kept", {0, 3});
  jf::append_delete(journal, "gone");
  jf::append_set(journal, "new", {4, 4});
  write_bytes(data() / "journal", journal);
  write_bytes(data() / "fences", jf::encode_header_v1(jf::FileKind::kFences, 131072));
  {
    RecoveredState recovered;
    auto opened = open(data(), recovered);
    EXPECT_TRUE(recovered.warnings.empty()) << recovered.warnings[0];
    EXPECT_EQ(recovered.created, (State{{"kept", {0, 3}}, {"new", {4, 4}}}));
    EXPECT_EQ(recovered.fence_floor, 131072u);
  }
  // Rewritten in version 2, which the next start reads.
  EXPECT_EQ(jf::parse_header_full(read_bytes(data() / "journal"), jf::FileKind::kJournal)->version, 2u);
  EXPECT_EQ(jf::parse_fences(read_bytes(data() / "fences"))->version, 2u);
  const RecoveredState again = reopen(data());
  EXPECT_EQ(again.created, (State{{"kept", {0, 3}}, {"new", {4, 4}}}));
  EXPECT_EQ(again.fence_floor, 131072u);
}

TEST_F(FileJournalTest, Version1DirectoryWithoutFencesIsAWarning) {
  fs::create_directories(data());
  std::string journal = jf::encode_header_v1(jf::FileKind::kJournal, 0);
  jf::append_set(journal, "a", {1, 1});
  write_bytes(data() / "journal", journal);
  const RecoveredState recovered = reopen(data());
  EXPECT_EQ(recovered.created, (State{{"a", {1, 1}}}));
  ASSERT_EQ(recovered.warnings.size(), 1u);
  EXPECT_NE(recovered.warnings[0].find("format version 1"), std::string::npos) << recovered.warnings[0];
}

// ---------------------------------------------------------------- the lock

TEST_F(FileJournalTest, SecondOpenInTheSameProcessIsBusy) {
  RecoveredState recovered;
  auto first = open(data(), recovered);
  auto second = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), StatusCode::kBusy);
  EXPECT_NE(second.status().message().find("pid " + std::to_string(::getpid())), std::string::npos)
      << second.status().message();
  first.reset();
  EXPECT_TRUE(FileJournal::open(data(), {}, recovered));  // released with the object
}

TEST_F(FileJournalTest, DeletingTheLockFileLetsNoSecondOpenIn) {
  RecoveredState recovered;
  auto first = open(data(), recovered);
  ASSERT_TRUE(fs::remove(data() / "lock"));
  auto second = FileJournal::open(data(), {}, recovered);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), StatusCode::kBusy);
  // Named from /proc/locks: the lock file that held the pid is gone.
  EXPECT_NE(second.status().message().find("pid " + std::to_string(::getpid())), std::string::npos)
      << second.status().message();
}

TEST_F(FileJournalTest, DirectoryHeldByAnotherProcessIsBusy) {
  int to_parent[2];
  int to_child[2];
  ASSERT_EQ(::pipe(to_parent), 0);
  ASSERT_EQ(::pipe(to_child), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    RecoveredState recovered;
    auto journal = FileJournal::open(data(), {}, recovered);
    char c = journal ? 'y' : 'n';
    if (::write(to_parent[1], &c, 1) != 1) ::_exit(2);
    if (::read(to_child[0], &c, 1) != 1) ::_exit(3);  // hold the lock until told
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(to_parent[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  RecoveredState recovered;
  auto busy = FileJournal::open(data(), {}, recovered);
  EXPECT_FALSE(busy);
  if (!busy) {
    EXPECT_EQ(busy.status().code(), StatusCode::kBusy);
    EXPECT_NE(busy.status().message().find("pid " + std::to_string(child)), std::string::npos)
        << busy.status().message();
  }
  ASSERT_EQ(::write(to_child[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) ::close(fd);
  EXPECT_TRUE(FileJournal::open(data(), {}, recovered));  // the lock went with the process
}

// ---------------------------------------------------------------- fsync policies

TEST_F(FileJournalTest, FsyncAlwaysSyncsEveryFlushThatWrote) {
  JournalOptions options;
  options.fsync = FsyncPolicy::kAlways;
  RecoveredState recovered;
  auto journal = open(data(), recovered, options);
  EXPECT_EQ(journal->fsync_policy(), FsyncPolicy::kAlways);
  const auto before = journal->stats();
  journal->record_set("a", {1, 1});
  journal->record_set("b", {1, 1});
  ASSERT_TRUE(journal->flush());
  EXPECT_EQ(journal->stats().writes, before.writes + 1);  // one write(2) for the batch
  EXPECT_EQ(journal->stats().syncs, before.syncs + 1);
  ASSERT_TRUE(journal->flush());  // nothing batched: nothing to do
  EXPECT_EQ(journal->stats().syncs, before.syncs + 1);
  journal->record_delete("a");
  ASSERT_TRUE(journal->flush());
  EXPECT_EQ(journal->stats().syncs, before.syncs + 2);
  // STATS' figures: the same writes, and one fsync latency per fsync.
  EXPECT_EQ(journal->counters().writes, journal->stats().writes);
  EXPECT_EQ(journal->counters().fsync_us.count(), journal->stats().syncs);
}

TEST_F(FileJournalTest, FsyncEverySecSyncsOnlyWhenAsked) {
  RecoveredState recovered;
  auto journal = open(data(), recovered);  // kEverySec is the default
  EXPECT_EQ(journal->fsync_policy(), FsyncPolicy::kEverySec);
  const auto before = journal->stats();
  ASSERT_TRUE(journal->sync());  // nothing written since open
  EXPECT_EQ(journal->stats().syncs, before.syncs);
  journal->record_set("a", {1, 1});
  ASSERT_TRUE(journal->flush());
  EXPECT_EQ(journal->stats().syncs, before.syncs);
  ASSERT_TRUE(journal->sync());
  EXPECT_EQ(journal->stats().syncs, before.syncs + 1);
  ASSERT_TRUE(journal->sync());  // nothing new
  EXPECT_EQ(journal->stats().syncs, before.syncs + 1);
}

TEST_F(FileJournalTest, FsyncNoLeavesItToTheKernel) {
  JournalOptions options;
  options.fsync = FsyncPolicy::kNo;
  RecoveredState recovered;
  auto journal = open(data(), recovered, options);
  const auto before = journal->stats();
  for (int i = 0; i < 10; ++i) {
    journal->record_set("a", {i % 2, 1});
    ASSERT_TRUE(journal->flush());
  }
  EXPECT_EQ(journal->stats().syncs, before.syncs);
  EXPECT_EQ(journal->stats().writes, before.writes + 10);
  journal.reset();
  EXPECT_EQ(reopen(data()).created, (State{{"a", {1, 1}}}));
}

// ---------------------------------------------------------------- write errors

TEST_F(FileJournalTest, FailedWriteKeepsTheRestForTheNextFlush) {
  State expected;
  {
    RecoveredState recovered;
    auto journal = open(data(), recovered);
    journal->record_set("first", {1, 1});
    ASSERT_TRUE(journal->flush());
    expected["first"] = {1, 1};
    const std::uint64_t size = journal->journal_bytes();
    for (int i = 0; i < 10; ++i) {
      journal->record_set("n" + std::to_string(i), {i, 10});
      expected["n" + std::to_string(i)] = {i, 10};
    }
    const std::uint64_t batch = journal->stats().pending_bytes;
    {
      FileSizeLimit limit(size + 13);  // cuts the first record of the batch in the middle
      Status status = journal->flush();
      ASSERT_FALSE(status);
      EXPECT_EQ(status.code(), StatusCode::kIoError);
      EXPECT_NE(status.message().find("still batched"), std::string::npos) << status.message();
    }
    EXPECT_EQ(journal->journal_bytes(), size + 13);
    EXPECT_EQ(journal->stats().pending_bytes, batch - 13);
    EXPECT_TRUE(journal->has_pending());
    ASSERT_TRUE(journal->flush());
    EXPECT_FALSE(journal->has_pending());
    EXPECT_EQ(journal->journal_bytes(), size + batch);
  }
  const RecoveredState recovered = reopen(data());
  EXPECT_TRUE(recovered.warnings.empty()) << recovered.warnings[0];
  EXPECT_EQ(recovered.created, expected);
}

// ---------------------------------------------------------------- run file

TEST(RunRecord, RoundTripsAndRefusesAnythingElse) {
  using RunState = jf::RunRecord::State;
  for (const jf::RunRecord record :
       {jf::RunRecord{RunState::kRunning, 15000, 0}, jf::RunRecord{RunState::kStopped, 0, 0},
        jf::RunRecord{RunState::kStopped, 900, 7}}) {
    const std::string bytes = jf::encode_run_record(record);
    auto parsed = jf::parse_run_record(bytes);
    ASSERT_TRUE(parsed) << bytes << parsed.status().to_string();
    EXPECT_EQ(*parsed, record) << bytes;
  }
  EXPECT_EQ(jf::encode_run_record({RunState::kStopped, 15000, 2}),
            "netsemd-run 1 stopped session_timeout_ms=15000 held=2\n");
  for (const std::string_view bad :
       {"", "netsemd-run 1 running session_timeout_ms=15000", "netsemd-run 2 running session_timeout_ms=1\n",
        "netsemd-run 1 paused session_timeout_ms=1\n", "netsemd-run 1 running session_timeout_ms=-5\n",
        "netsemd-run 1 running session_timeout_ms=\n", "netsemd-run 1 stopped session_timeout_ms=5\n",
        "netsemd-run 1 stopped session_timeout_ms=5 held=x\n", "netsemd-run 1 running session_timeout_ms=5 \n",
        "netsemd-run 1 running session_timeout_ms=99999999999999999999\n"}) {
    auto parsed = jf::parse_run_record(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.status().code(), StatusCode::kCorruption) << bad;
  }
}

TEST(FileJournal, RemembersTheLastRunAndReadsADamagedRunFileAsOneThatDidNotStop) {
  TempDir dir;
  RecoveredState recovered;
  {
    auto journal = FileJournal::open(dir.path(), {}, recovered);
    ASSERT_TRUE(journal) << journal.status().to_string();
    EXPECT_EQ(recovered.previous_run.state, jf::RunRecord::State::kNone);  // a new data directory
    ASSERT_TRUE((*journal)->record_run({jf::RunRecord::State::kRunning, 2000, 0}));
  }
  {
    auto journal = FileJournal::open(dir.path(), {}, recovered);
    ASSERT_TRUE(journal);
    EXPECT_EQ(recovered.previous_run, (jf::RunRecord{jf::RunRecord::State::kRunning, 2000, 0}));
    ASSERT_TRUE((*journal)->record_run({jf::RunRecord::State::kStopped, 2000, 3}));
    EXPECT_FALSE(fs::exists(dir.path() / "run.tmp"));
  }
  {
    auto journal = FileJournal::open(dir.path(), {}, recovered);
    ASSERT_TRUE(journal);
    EXPECT_EQ(recovered.previous_run, (jf::RunRecord{jf::RunRecord::State::kStopped, 2000, 3}));
    EXPECT_TRUE(recovered.warnings.empty());
  }
  write_bytes(dir.path() / "run", "netsemd-run 1 stopped session_timeout_ms=20");  // torn
  auto journal = FileJournal::open(dir.path(), {}, recovered);
  ASSERT_TRUE(journal);
  EXPECT_EQ(recovered.previous_run, (jf::RunRecord{jf::RunRecord::State::kRunning, 0, 0}));
  ASSERT_EQ(recovered.warnings.size(), 1u);
  EXPECT_NE(recovered.warnings[0].find("read as a run that did not stop"), std::string::npos) << recovered.warnings[0];
}

}  // namespace
}  // namespace netsem::server
