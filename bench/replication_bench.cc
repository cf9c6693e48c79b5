// Micro-benchmarks of the replicated state machine (src/replication) alone:
// the cost of applying an entry (decode, apply to the table, encode the
// results) per command as batches grow, and of a snapshot and a restore as
// the state grows. items/s is the figure to compare with table_bench's: the
// difference is what the log's framing adds on every replica.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <vector>

#include "replication/state_machine.h"

namespace {

namespace rep = netsem::replication;

// Every session is hosted by server 1; each request carries its session's
// next seq (a seq already applied would be a duplicate, which changes
// nothing and costs less).
rep::SessionRequest request(rep::SessionId session, std::uint64_t seq, rep::RequestVerb verb, std::string name) {
  rep::SessionRequest r;
  r.session = session;
  r.origin = 1;
  r.seq = seq;
  r.verb = verb;
  r.tag = "t";
  r.name = std::move(name);
  return r;
}

// Opens `sessions` sessions (ids 1..sessions) in one entry at index 1.
void open_sessions(rep::StateMachine& sm, std::size_t sessions, benchmark::State& state) {
  rep::Entry entry;
  entry.commands.resize(sessions, rep::OpenSession{"", "127.0.0.1:1", "v1", 1, 0, "00112233445566778899aabbccddeeff"});
  if (!sm.apply(1, rep::encode_entry(entry))) state.SkipWithError("open failed");
}

// One item: one command of a batch of range(0) commands, each an ACQUIRE or
// a RELEASE of one contended name (limit 4) by 64 sessions, so most acquires
// queue and most releases grant the next in line.
void BM_ApplyContendedBatch(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  rep::StateMachine sm;
  open_sessions(sm, 64, state);
  rep::Entry limits;
  rep::Reconfigure pool;
  pool.limits.emplace_back("pool", 4);
  limits.commands.emplace_back(std::move(pool));
  (void)sm.apply(2, rep::encode_entry(limits));
  // Every session acquires then releases: a batch is a run of that cycle.
  // Step k is session (k / 2) % 64 + 1's request number (k / 128) * 2 + k % 2
  // + 1, so seqs rise forever; entries are made outside the timing, a chunk
  // at a time.
  const std::size_t chunk = std::max<std::size_t>(64, 4096 / batch);
  std::vector<std::string> entries;
  std::size_t step = 0;
  std::int64_t time = 0;
  const auto make_chunk = [&] {
    entries.clear();
    for (std::size_t e = 0; e < chunk; ++e) {
      rep::Entry entry;
      entry.time_ms = time++;
      for (std::size_t i = 0; i < batch; ++i, ++step) {
        const rep::SessionId session = (step / 2) % 64 + 1;
        const std::uint64_t seq = (step / 128) * 2 + step % 2 + 1;
        entry.commands.push_back(
            request(session, seq, step % 2 == 0 ? rep::RequestVerb::kAcquire : rep::RequestVerb::kRelease, "pool"));
      }
      entries.push_back(rep::encode_entry(entry));
    }
  };
  make_chunk();
  std::uint64_t index = 3;
  std::size_t next = 0;
  for (auto _ : state) {
    if (next == entries.size()) {
      state.PauseTiming();
      make_chunk();
      next = 0;
      state.ResumeTiming();
    }
    auto results = sm.apply(index++, entries[next++]);
    benchmark::DoNotOptimize(results);
  }
  // The requests were applied, not refused as duplicates.
  if (next < entries.size()) {
    auto results = sm.apply(index, entries[next]);
    auto decoded = results ? rep::decode_results(*results) : netsem::Result<rep::EntryResults>(results.status());
    for (const rep::CommandResult& c : decoded ? decoded->commands : std::vector<rep::CommandResult>{}) {
      if (c.answer.type == rep::Answer::Type::kDuplicate || c.answer.type == rep::Answer::Type::kNotHost) {
        state.SkipWithError("a request was refused as a duplicate");
        break;
      }
    }
    if (!decoded) state.SkipWithError("apply failed");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_ApplyContendedBatch)->Arg(1)->Arg(16)->Arg(256);

// A state of range(0) sessions, each holding a name of its own and queued
// on a shared one.
void fill(rep::StateMachine& sm, std::size_t sessions, benchmark::State& state) {
  open_sessions(sm, sessions, state);
  rep::Entry entry;
  for (std::size_t i = 1; i <= sessions; ++i) {
    entry.commands.push_back(request(i, 1, rep::RequestVerb::kAcquire, "own." + std::to_string(i)));
    rep::SessionRequest queued = request(i, 2, rep::RequestVerb::kAcquire, "shared");
    queued.tag = "q";
    entry.commands.push_back(queued);
  }
  if (!sm.apply(2, rep::encode_entry(entry))) state.SkipWithError("fill failed");
}

// One item: one session (with its hold and its queued request).
void BM_Snapshot(benchmark::State& state) {
  rep::StateMachine sm;
  fill(sm, static_cast<std::size_t>(state.range(0)), state);
  for (auto _ : state) benchmark::DoNotOptimize(sm.snapshot());
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["bytes"] = static_cast<double>(sm.snapshot().size());
}
BENCHMARK(BM_Snapshot)->Arg(1000)->Arg(100000);

void BM_Restore(benchmark::State& state) {
  rep::StateMachine source;
  fill(source, static_cast<std::size_t>(state.range(0)), state);
  const std::string bytes = source.snapshot();
  rep::StateMachine sm;
  for (auto _ : state) {
    if (!sm.restore(bytes).is_ok()) state.SkipWithError("restore failed");
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Restore)->Arg(1000)->Arg(100000);

}  // namespace
