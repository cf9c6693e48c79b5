// Micro-benchmarks of SemaphoreTable (src/table/semaphore_table.h), the
// server's core, alone: no sockets, a MemoryJournal, time passed in. Each
// says what one item is; items/s is the figure to compare. The parameterised
// ones show how a cost grows (or, as it should, does not) with queue length,
// number of deadlines and holds per session.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <vector>

#include "journal/journal.h"
#include "table/semaphore_table.h"

namespace {

using namespace netsem::server;
using namespace std::chrono_literals;

const TimePoint kNow = TimePoint{} + 1h;
constexpr TableLimits kRoomy{100'000'000, 1'000'000};

std::string name_of(std::size_t i) {
  return "name." + std::to_string(i);
}

TakeRequest acquire(SessionId session, std::string_view name, std::int64_t timeout_ms = -1) {
  TakeRequest request;
  request.session = session;
  request.tag = "t";
  request.name = name;
  request.timeout_ms = timeout_ms;
  request.now = kNow;
  return request;
}

void must(bool ok, benchmark::State& state, const char* what) {
  if (!ok) state.SkipWithError(what);
}

// Item: one cycle (ACQUIRE granted at once, then RELEASE) on a defined name:
// the grant path every uncontended client takes.
void BM_CycleOneName(benchmark::State& state) {
  MemoryJournal journal;
  SemaphoreTable table(journal, kRoomy);
  Completions out;
  table.configure_defined({{"splunk", 1}}, out);
  table.open_session(1);
  std::int64_t value = 0;
  for (auto _ : state) {
    const auto taken = table.take(acquire(1, "splunk"), out);
    benchmark::DoNotOptimize(taken.fence);
    benchmark::DoNotOptimize(table.release(1, "splunk", 1, value, out));
  }
  must(out.empty() && table.stats().held == 0, state, "unexpected completions");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_CycleOneName);

// Item: one cycle on the next of range(0) defined names: lookups in a large
// table (cache misses) rather than a hot one.
void BM_CycleManyNames(benchmark::State& state) {
  const auto names = static_cast<std::size_t>(state.range(0));
  MemoryJournal journal;
  SemaphoreTable table(journal, kRoomy);
  Completions out;
  std::vector<std::pair<std::string, std::int64_t>> limits;
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < names; ++i) {
    keys.push_back(name_of(i * 7919));  // not in hash order
    limits.emplace_back(keys.back(), 1);
  }
  table.configure_defined(limits, out);
  table.open_session(1);
  std::int64_t value = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    const auto taken = table.take(acquire(1, keys[i]), out);
    benchmark::DoNotOptimize(taken.fence);
    benchmark::DoNotOptimize(table.release(1, keys[i], 1, value, out));
    if (++i == names) i = 0;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_CycleManyNames)->Arg(64)->Arg(65536)->Arg(1 << 20);

// Item: one cycle on a name nobody defined: the ACQUIRE creates the
// undefined semaphore, the RELEASE removes it again.
void BM_CycleUndefinedName(benchmark::State& state) {
  MemoryJournal journal;
  SemaphoreTable table(journal, kRoomy);
  Completions out;
  table.open_session(1);
  std::int64_t value = 0;
  for (auto _ : state) {
    const auto taken = table.take(acquire(1, "undefined.name"), out);
    benchmark::DoNotOptimize(taken.fence);
    benchmark::DoNotOptimize(table.release(1, "undefined.name", 1, value, out));
  }
  must(table.stats().semaphores == 0, state, "undefined semaphore left behind");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_CycleUndefinedName);

// Item: one waiter, queued behind a holder and later granted. range(0)
// sessions queue on a limit-1 name, then the permit passes down the queue
// (each grantee releases, granting the next): the whole FIFO life of a
// waiter. Flat items/s across queue lengths means O(1) per waiter.
void BM_QueueThenDrain(benchmark::State& state) {
  const auto waiters = static_cast<SessionId>(state.range(0));
  MemoryJournal journal;
  SemaphoreTable table(journal, kRoomy);
  Completions out;
  table.configure_defined({{"busy", 1}}, out);
  for (SessionId s = 0; s <= waiters; ++s) table.open_session(s);
  std::int64_t value = 0;
  for (auto _ : state) {
    (void)table.take(acquire(0, "busy"), out);
    for (SessionId s = 1; s <= waiters; ++s) (void)table.take(acquire(s, "busy"), out);
    for (SessionId s = 0; s <= waiters; ++s) {
      (void)table.release(s, "busy", 1, value, out);
      out.clear();
    }
  }
  must(table.stats().waiters == 0 && table.stats().held == 0, state, "queue not drained");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * waiters));
}
BENCHMARK(BM_QueueThenDrain)->Arg(1)->Arg(64)->Arg(4096);

// Item: one queued request timing out. range(0) requests with distinct
// deadlines wait (untimed), then one expire() finishes them all.
void BM_ExpireMany(benchmark::State& state) {
  const auto waiters = static_cast<SessionId>(state.range(0));
  MemoryJournal journal;
  SemaphoreTable table(journal, kRoomy);
  Completions out;
  table.configure_defined({{"busy", 1}}, out);
  for (SessionId s = 0; s <= waiters; ++s) table.open_session(s);
  (void)table.take(acquire(0, "busy"), out);
  for (auto _ : state) {
    state.PauseTiming();
    for (SessionId s = 1; s <= waiters; ++s) {
      (void)table.take(acquire(s, "busy", static_cast<std::int64_t>(1000 + (s * 7919) % waiters)), out);
    }
    out.clear();
    state.ResumeTiming();
    table.expire(kNow + 24h, out);
    benchmark::DoNotOptimize(out.data());
  }
  must(out.size() == waiters && table.stats().waiters == 0, state, "not all timed out");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * waiters));
}
BENCHMARK(BM_ExpireMany)->Arg(64)->Arg(4096);

// Item: one permit given back by close_session. Sessions holding range(0)
// undefined names each are set up (untimed), then closed, which releases
// and removes every name.
void BM_CloseSessionHolding(benchmark::State& state) {
  const auto holds = static_cast<std::size_t>(state.range(0));
  const std::size_t sessions = std::max<std::size_t>(1, 4096 / holds);
  MemoryJournal journal;
  SemaphoreTable table(journal, kRoomy);
  Completions out;
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < sessions * holds; ++i) keys.push_back(name_of(i));
  SessionId next = 1;
  for (auto _ : state) {
    state.PauseTiming();
    const SessionId first = next;
    for (std::size_t s = 0; s < sessions; ++s, ++next) {
      table.open_session(next);
      for (std::size_t h = 0; h < holds; ++h) (void)table.take(acquire(next, keys[s * holds + h]), out);
    }
    state.ResumeTiming();
    for (SessionId s = first; s < next; ++s) table.close_session(s, out);
  }
  must(table.stats().semaphores == 0, state, "names left behind");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * sessions * holds));
}
BENCHMARK(BM_CloseSessionHolding)->Arg(1)->Arg(16)->Arg(256);

}  // namespace
