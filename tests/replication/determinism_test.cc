// Determinism of the replicated state machine over random entries
// (EntryGenerator, seeded and bounded): two machines applying the same
// entries produce the same results, byte for byte, and end with equal
// snapshots; a machine restored from a snapshot taken at index k that
// applies the rest produces the same results and ends equal; through every
// entry, permits in use never exceed a limit that was never lowered, and
// every queue is granted in FIFO order. The entries include resent requests
// (kDuplicate), requests from servers that do not host the session
// (kNotHost), resumes (some with a wrong secret) and member changes.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "replication/entry_generator.h"
#include "replication/state_machine.h"

namespace netsem::replication {
namespace {

constexpr int kEntries = 400;
constexpr std::uint64_t kSeeds = 12;

struct Recorded {
  std::vector<std::string> entries;
  std::vector<std::string> results;
  std::map<std::uint64_t, std::string> snapshots;  // after index k
  std::string final_snapshot;
};

// Applies kEntries random entries to `machine`, keeping the entries, their
// results and snapshots at `snapshot_at`.
Recorded record(StateMachine& machine, std::uint64_t seed, bool lower_limits,
                const std::vector<std::uint64_t>& snapshot_at) {
  generated::EntryGenerator generator(seed, lower_limits);
  Recorded out;
  for (std::uint64_t index = 1; index <= kEntries; ++index) {
    const Entry next = generator.next();
    const std::string entry = encode_entry(next);
    auto applied = machine.apply(index, entry);
    EXPECT_TRUE(applied) << applied.status().to_string();
    if (!applied) break;
    generator.observe(next, *decode_results(*applied));
    out.entries.push_back(entry);
    out.results.push_back(*applied);
    if (std::find(snapshot_at.begin(), snapshot_at.end(), index) != snapshot_at.end()) {
      out.snapshots[index] = machine.snapshot();
    }
  }
  out.final_snapshot = machine.snapshot();
  return out;
}

TEST(Determinism, TwoMachinesApplyingTheSameEntriesAgree) {
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    for (const bool lower : {false, true}) {
      StateMachine a;
      StateMachine b;
      const Recorded ra = record(a, seed, lower, {});
      for (std::size_t i = 0; i < ra.entries.size(); ++i) {
        auto rb = b.apply(i + 1, ra.entries[i]);
        ASSERT_TRUE(rb);
        ASSERT_EQ(*rb, ra.results[i]) << "seed " << seed << " entry " << i + 1;
      }
      EXPECT_EQ(b.snapshot(), ra.final_snapshot) << "seed " << seed;
      // Something happened: grants, queues, ends; resent requests, requests
      // from a server that does not host the session, resumes that moved a
      // session and resumes refused.
      EXPECT_GT(a.table().stats().last_fence, 20u) << "seed " << seed;
      std::map<std::string, int> seen;
      for (const std::string& bytes : ra.results) {
        for (const CommandResult& c : decode_results(bytes)->commands) {
          seen["duplicate"] += c.answer.type == Answer::Type::kDuplicate;
          seen["not host"] += c.answer.type == Answer::Type::kNotHost;
          seen["denied"] += c.answer.error == protocol::ErrorCode::kDenied;
        }
      }
      for (const std::string& entry : ra.entries) {
        for (const Command& c : decode_entry(entry)->commands) {
          seen["resume"] += std::holds_alternative<ResumeSession>(c);
          seen["member"] += std::holds_alternative<SetMember>(c) || std::holds_alternative<RemoveMember>(c);
        }
      }
      for (const auto& [what, count] : seen) EXPECT_GT(count, 0) << "seed " << seed << ": no " << what;
      EXPECT_EQ(seen.size(), 5u);
    }
  }
}

TEST(Determinism, RestoredFromASnapshotThenApplyingTheRestEqualsApplyingEverything) {
  const std::vector<std::uint64_t> points = {1, 2, 17, 60, 123, 250, kEntries - 1};
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    StateMachine a;
    const Recorded ra = record(a, seed, seed % 2 == 0, points);
    for (const auto& [k, bytes] : ra.snapshots) {
      StateMachine c;
      ASSERT_TRUE(c.restore(bytes).is_ok()) << "seed " << seed << " k " << k;
      EXPECT_EQ(c.last_index(), k);
      EXPECT_EQ(c.snapshot(), bytes) << "a restored state snapshots to the same bytes";
      for (std::uint64_t i = k; i < ra.entries.size(); ++i) {
        auto rc = c.apply(i + 1, ra.entries[i]);
        ASSERT_TRUE(rc);
        ASSERT_EQ(*rc, ra.results[i]) << "seed " << seed << " restored at " << k << ", entry " << i + 1;
      }
      EXPECT_EQ(c.snapshot(), ra.final_snapshot) << "seed " << seed << " k " << k;
    }
  }
}

// Follows every queue by name from the answers and completions, and fails
// when a request is granted while an earlier one of its queue still waits.
class FifoChecker {
 public:
  void command(const Command& command, const CommandResult& result) {
    const auto* request = std::get_if<SessionRequest>(&command);
    std::size_t delivered = 0;
    for (const Ended& e : result.ended) {
      for (; delivered < e.after_completions; ++delivered) completion(result.completions[delivered]);
      for (auto& [name, queue] : queues_) {
        std::erase_if(queue, [&](const Key& k) { return k.first == e.session; });
      }
    }
    // A take's own answer comes before the completions it caused (none).
    if (request != nullptr && (request->verb == RequestVerb::kAcquire || request->verb == RequestVerb::kWait)) {
      auto& queue = queues_[request->name];
      if (result.answer.type == Answer::Type::kGranted) {
        EXPECT_TRUE(queue.empty()) << "granted at once past a queue of " << request->name;
      } else if (result.answer.type == Answer::Type::kQueued) {
        queue.emplace_back(request->session, request->tag);
        EXPECT_EQ(result.answer.number, queue.size()) << "position in the queue of " << request->name;
      }
    }
    for (; delivered < result.completions.size(); ++delivered) completion(result.completions[delivered]);
  }

 private:
  using Key = std::pair<SessionId, std::string>;
  void completion(const server::Completion& c) {
    for (auto& [name, queue] : queues_) {
      const auto it = std::find(queue.begin(), queue.end(), Key{c.session, c.tag});
      if (it == queue.end()) continue;
      if (c.type == server::Completion::Type::kGranted) {
        EXPECT_EQ(it, queue.begin()) << "session " << c.session << " tag " << c.tag << " granted out of FIFO order on "
                                     << name;
      }
      queue.erase(it);
      return;
    }
    ADD_FAILURE() << "a completion of a request never queued: session " << c.session << " tag " << c.tag;
  }
  std::map<std::string, std::deque<Key>> queues_;
};

TEST(Determinism, LimitsAndFifoHoldThroughApply) {
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    StateMachine machine;
    generated::EntryGenerator generator(seed, false);
    FifoChecker fifo;
    std::uint64_t queued_grants = 0;
    for (std::uint64_t index = 1; index <= kEntries; ++index) {
      const Entry entry = generator.next();
      auto results = machine.apply_entry(index, entry);
      ASSERT_TRUE(results);
      generator.observe(entry, *results);
      for (std::size_t i = 0; i < entry.commands.size(); ++i) {
        fifo.command(entry.commands[i], results->commands[i]);
        for (const auto& c : results->commands[i].completions) {
          queued_grants += c.type == server::Completion::Type::kGranted;
        }
      }
      // Permits in use (held, and consumed by WAIT) never exceed the limit.
      for (const auto& s : machine.table().export_image().semaphores) {
        std::int64_t held = 0;
        for (const auto& h : s.holders) held += h.count;
        ASSERT_GE(s.value, 0) << "seed " << seed << " entry " << index << ": " << s.name << " over its limit";
        ASSERT_LE(held, s.max) << "seed " << seed << " entry " << index << ": " << s.name;
      }
    }
    EXPECT_GT(queued_grants, 5u) << "seed " << seed << ": queues were exercised";
  }
}

}  // namespace
}  // namespace netsem::replication
