// The data directory's checks before libraft opens it, and the words of its
// failures to load one (data_dir_checks.h).
#include "raft/data_dir_checks.h"

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
}

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <utility>

#include "raft/raft_status.h"

namespace netsem::raft {

namespace {

// Whether libraft's message names a file of the data directory: a closed
// segment (FIRST-LAST, 16 digits each), an open one, a snapshot or a
// metadata file.
bool names_a_file(std::string_view detail) {
  static const std::regex kFile("[0-9]{16}-[0-9]{16}|open-[0-9]+|snapshot-[0-9]+-[0-9]+-[0-9]+|metadata[12]");
  return std::regex_search(detail.begin(), detail.end(), kFile);
}

}  // namespace

// raft_init's or raft_start's failure (`what`) to load a data directory,
// with what libraft does not say. When libraft names the file it stops at,
// that stays the message: a log that does not start where it should ("first
// index should have been", a segment "past last snapshot") has lost the
// segment or snapshot before that file. libraft 0.15 names no file for a
// short read or a snapshot that does not decompress ("short read: 0 bytes
// instead of 32", "io: LZ4F_decompress ERROR_frameSize_wrong"), and calls
// both I/O errors: it loads the newest snapshot (a `.meta` and its data
// file) and the metadata files, so that failure names those. Either is
// damage (kCorruption), refused like any other (segments are checked
// before, open_segments.h; a log without metadata too,
// check_metadata).
Status load_failure(int rv, std::string_view what, const std::string& data_dir, std::string_view detail) {
  Status status = raft_status(rv, std::string(what) + " (" + data_dir + ")", detail);
  const bool undecodable = detail.find("short read") != std::string_view::npos ||
                           detail.find("LZ4F") != std::string_view::npos ||
                           detail.find("decode") != std::string_view::npos;
  if (status.code() != StatusCode::kCorruption && !undecodable) return status;
  std::string message(status.message());
  if (names_a_file(detail)) {
    if (detail.find("first index should have been") != std::string_view::npos ||
        detail.find("past last snapshot") != std::string_view::npos) {
      message += ": the log has a gap before that segment (a segment or snapshot before it is missing)";
    }
    return Status(StatusCode::kCorruption, message + ". " + std::string(kDamageAdvice));
  }
  // snapshot-TERM-INDEX-TIMESTAMP.meta: libraft loads the last in (term,
  // index, timestamp) order (uvSnapshotCompare) of those whose data file
  // is there too.
  std::string newest;
  std::array<unsigned long long, 3> newest_key{};
  std::error_code ec;
  for (std::filesystem::directory_iterator it(data_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::array<unsigned long long, 3> key{};
    if (std::sscanf(name.c_str(), "snapshot-%llu-%llu-%llu.meta", &key[0], &key[1], &key[2]) == 3 &&
        (newest.empty() || key > newest_key) &&
        std::filesystem::exists(it->path().parent_path() / name.substr(0, name.size() - 5), ec)) {
      newest = name.substr(0, name.size() - 5);
      newest_key = key;
    }
  }
  message += ": a file libraft reads at start does not decode (it loads ";
  message += newest.empty()
                 ? std::string("metadata1 and metadata2")
                 : "the newest snapshot, " + newest + " and " + newest + ".meta, and metadata1 and metadata2";
  message += "; libraft does not say which). ";
  message += kDamageAdvice;
  return Status(StatusCode::kCorruption, std::move(message));
}

namespace {

// One of libraft 0.15's two metadata files (uv_metadata.c): format,
// version, term and vote, 8 bytes each, little-endian. libraft writes the
// term and vote in place, 32 bytes at offset 0, odd versions to metadata1
// and even ones to metadata2, one version more each time; it writes nothing
// at start (only a new term or vote does), loads the file with the higher
// version, takes one shorter than 32 bytes for a creation torn by a crash
// (it deletes it and goes on without it) and refuses one longer.
struct MetadataFile {
  static constexpr std::uintmax_t kSize = 32;
  std::string name;
  bool exists = false;
  std::uintmax_t size = 0;
  std::uint64_t format = 0;   // when whole(): libraft's is 1
  std::uint64_t version = 0;  // when whole()

  bool whole() const { return exists && size == kSize; }
  // What is wrong with it, when it is not whole.
  std::string fault() const {
    if (!exists) return name + " is missing";
    if (size < kSize) return name + " is cut short (" + std::to_string(size) + " of 32 bytes)";
    return name + " is " + std::to_string(size) + " bytes long (libraft writes 32)";
  }
};

MetadataFile read_metadata(const std::string& data_dir, const char* name) {
  MetadataFile file;
  file.name = name;
  const auto path = std::filesystem::path(data_dir) / name;
  std::error_code ec;
  file.size = std::filesystem::file_size(path, ec);
  file.exists = !ec;
  if (!file.whole()) return file;
  std::array<unsigned char, MetadataFile::kSize> bytes{};
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), bytes.size())) return file;
  for (int i = 7; i >= 0; --i) {
    file.format = (file.format << 8) | bytes[i];
    file.version = (file.version << 8) | bytes[8 + i];
  }
  return file;
}

}  // namespace

// The data directory's term and vote, checked before libraft opens it for
// what libraft 0.15 would not see (it is left as it is, and the start
// fails):
// - A log (a closed segment, a written open segment, a snapshot) with
//   neither metadata file whole: libraft would take the directory for a
//   pristine one. raft_bootstrap writes a first configuration and term 1
//   over the log (or fails with a bare "I/O error" when the log's first
//   segment is there), and a start without bootstrap keeps the log and
//   forgets the vote. A pristine directory has neither; libraft writes the
//   term (metadata1, version 1) before any segment, whether it bootstraps or
//   joins.
// - One file whole and the other missing or cut short when both must be
//   there: libraft would load the one left, which may hold an older term and
//   vote, and the server could vote twice in one term. metadata2 is first
//   written at version 2, after version 1 was written whole (each write is
//   synced before libraft goes on, and a failed one stops the node), so with
//   metadata2 there metadata1 must be whole; and metadata1 at a version past
//   1 means metadata2 was written whole before it. A file libraft
//   overwrites never shrinks (the write is in place), so only a first write
//   can be torn short: metadata1 when there is nothing else, metadata2 when
//   metadata1 is at version 1. Those are what libraft itself recovers from,
//   and they start (as metadata2 missing beside metadata1 at version 1 does:
//   the node wrote its term and vote only once; deleted, it cannot be told
//   from that).
// - A file longer than 32 bytes, which libraft refuses in its own words.
// - Both whole at versions that are not one apart, or with metadata1 at an
//   even version or metadata2 at an odd one: every write (a term or a vote;
//   a bootstrap writes term 1, a server added at run time its first term)
//   is the loaded version plus one, to the file of its parity, over the
//   older file, so whole files are at v and v+1. A version changed on disk
//   makes libraft load the file with the higher one, which may hold the
//   older term and vote (audit22: a follower forgot its vote). Another
//   format or a version 0 libraft refuses naming the file.
Status check_metadata(const std::string& data_dir) {
  const MetadataFile one = read_metadata(data_dir, "metadata1");
  const MetadataFile two = read_metadata(data_dir, "metadata2");
  const std::string prefix = "raft data directory " + data_dir + ": ";
  const std::string advice(kDamageAdvice);
  if (one.whole() && two.whole()) {
    if (one.format != 1 || two.format != 1 || one.version == 0 || two.version == 0) return Status::ok();
    const bool parity = one.version % 2 == 1 && two.version % 2 == 0;
    const std::uint64_t apart = one.version > two.version ? one.version - two.version : two.version - one.version;
    if (parity && apart == 1) return Status::ok();
    return Status(StatusCode::kCorruption,
                  prefix + "metadata1 is at version " + std::to_string(one.version) + " and metadata2 at version " +
                      std::to_string(two.version) +
                      ": libraft writes odd versions to metadata1 and even ones to metadata2, one more each time, "
                      "so whole files are one version apart. A version was changed: libraft would start on the "
                      "file with the higher one, whose term and vote may be the older ones, and the server could "
                      "vote twice in one term. " +
                      advice);
  }
  for (const MetadataFile* file : {&one, &two}) {
    if (file->exists && file->size > MetadataFile::kSize) {
      return Status(StatusCode::kCorruption, prefix + file->fault() + ". " + advice);
    }
  }
  static constexpr std::string_view kVoteTwice =
      "libraft would start on the file left, whose term and vote may be older than the lost one's, and the server "
      "could vote "
      "twice in one term. ";
  if (one.whole()) {
    if (one.version <= 1) return Status::ok();  // metadata2 not written yet, or its first write torn
    return Status(StatusCode::kCorruption,
                  prefix + two.fault() + ", but metadata1 is at version " + std::to_string(one.version) +
                      ": libraft writes the term and vote to metadata1 and metadata2 in turn, so metadata2 was "
                      "written whole before metadata1 got a version past 1. " +
                      std::string(kVoteTwice) + advice);
  }
  if (two.whole()) {
    return Status(StatusCode::kCorruption,
                  prefix + one.fault() + ", but metadata2 is at version " + std::to_string(two.version) +
                      ": libraft writes metadata1 whole (version 1) before it first writes metadata2. " +
                      std::string(kVoteTwice) + advice);
  }
  // Neither is whole.
  static const std::regex kClosed("[0-9]+-[0-9]+");
  std::string log;  // the first file that shows a log
  std::size_t log_files = 0;
  std::vector<std::string> names;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(data_dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    bool shows_log = std::regex_match(name, kClosed) || name.starts_with("snapshot-");
    if (!shows_log && name.starts_with("open-")) {
      // A preallocated open segment is zeros until its first write, which
      // starts with the format's 8 bytes.
      std::array<char, 8> format{};
      std::ifstream in(std::filesystem::path(data_dir) / name, std::ios::binary);
      shows_log = in.read(format.data(), format.size()) &&
                  std::any_of(format.begin(), format.end(), [](char c) { return c != 0; });
    }
    if (!shows_log) continue;
    if (log.empty()) log = name;
    ++log_files;
  }
  if (!log.empty()) {
    return Status(
        StatusCode::kCorruption,
        "raft data directory " + data_dir + " holds a log (" + log +
            (log_files > 1 ? " and " + std::to_string(log_files - 1) + " more segment or snapshot files" : "") +
            ") but not its term and vote: " + one.fault() + " and " + two.fault() +
            ". A pristine directory has neither; libraft would take this one for pristine and the server "
            "would forget its vote (and bootstrap over its log). " +
            advice);
  }
  if (two.exists) {
    return Status(StatusCode::kCorruption,
                  prefix + one.fault() + ", but metadata2 is there (" + std::to_string(two.size) +
                      " bytes): libraft writes metadata1 whole (version 1) before it first writes metadata2. " +
                      std::string(kVoteTwice) + advice);
  }
  return Status::ok();  // pristine, or metadata1's first write torn
}

}  // namespace netsem::raft
