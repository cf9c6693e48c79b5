// Journal: where the semaphore table records what must survive a restart.
//
// The table reports every change to a created semaphore (its value net of
// session holds, and its max) and asks for fence ranges before handing out
// fences above what was reserved. FileJournal (file_journal.h) makes that
// durable in the data directory; MemoryJournal keeps it in memory for tests,
// fuzzers and benchmarks of the table alone.
//
// Records are absolute states, never deltas, so replaying a record twice, or
// replaying a journal on top of a snapshot that already contains it, is
// harmless.
//
// Thread safety: none; the server calls it from its event-loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace netsem::server {

// When the durable journal calls fsync, as Redis's appendfsync: after every
// batch of records (kAlways), once a second (kEverySec), or never (kNo:
// the kernel decides; a power loss can lose recent changes).
enum class FsyncPolicy : std::uint8_t { kAlways, kEverySec, kNo };

// A created semaphore as the journal stores it.
struct CreatedState {
  std::int64_t value = 0;  // free permits, counting permits held through ACQUIRE as free
  std::int64_t max = 0;
  friend bool operator==(const CreatedState&, const CreatedState&) = default;
};

class Journal {
 public:
  virtual ~Journal() = default;

  // Records that created semaphore `name` now has `state` (made or changed).
  virtual void record_set(std::string_view name, const CreatedState& state) = 0;
  // Records that created semaphore `name` was deleted.
  virtual void record_delete(std::string_view name) = 0;
  // Makes every fence up to `needed` safe to hand out: a later run of the
  // server starts its fences above the bound returned, even after a crash.
  // Returns that bound: >= needed, or the bound before the call when the
  // reservation failed (a failing disk), in which case the caller must not
  // hand out fences above it. Called rarely: the caller reserves in large
  // steps.
  virtual std::uint64_t reserve_fences(std::uint64_t needed) = 0;
};

// A journal that remembers in memory: the state a restart would recover.
class MemoryJournal final : public Journal {
 public:
  void record_set(std::string_view name, const CreatedState& state) override {
    created_[std::string(name)] = state;
    ++records_;
  }
  void record_delete(std::string_view name) override {
    created_.erase(std::string(name));
    ++records_;
  }
  std::uint64_t reserve_fences(std::uint64_t needed) override {
    if (fail_fences_) return reserved_;
    if (needed > reserved_) reserved_ = needed;
    return reserved_;
  }
  // While set, reservations fail as a failing disk makes them: the bound
  // stays where it is.
  void fail_fence_reservations(bool fail) { fail_fences_ = fail; }

  const std::map<std::string, CreatedState>& created() const { return created_; }
  std::uint64_t reserved_fences() const { return reserved_; }
  std::uint64_t records() const { return records_; }
  // records() as a counter a reader may keep a reference to.
  const std::uint64_t& records_counter() const { return records_; }

 private:
  std::map<std::string, CreatedState> created_;
  std::uint64_t reserved_ = 0;
  std::uint64_t records_ = 0;
  bool fail_fences_ = false;
};

}  // namespace netsem::server
