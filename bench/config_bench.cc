// Micro-benchmarks of what netsemd does with its configuration before it
// listens, and again on SIGHUP: reading the file (src/config/config.h, both
// formats) and making its names the table's defined semaphores
// (SemaphoreTable::configure_defined). Each is run from 10,000 to 1,000,000
// names and fitted by Google Benchmark's complexity report, which must say
// O(N): start-up and reload were quadratic once (issue 10, item 14). Items
// are names; items/s is the figure to compare.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "journal/journal.h"
#include "table/semaphore_table.h"

namespace {

using namespace netsem::server;

constexpr std::int64_t kMinNames = 10'000;
constexpr std::int64_t kMaxNames = 1'000'000;

std::string name_of(std::int64_t i) {
  return "host:10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250) + "/job";
}

// netsem's own format: [server] raising max_semaphores, then one
// [semaphores] line per name (`:` written %3A, as a file must).
std::string netsem_file(std::int64_t names) {
  std::string text = "[server]\nmax_semaphores = 100000000\n\n[semaphores]\n";
  for (std::int64_t i = 0; i < names; ++i) {
    std::string name = name_of(i);
    text += "host%3A" + name.substr(5) + " = " + std::to_string(1 + i % 7) + "\n";
  }
  return text;
}

// ACE's format: one semaphore_<name> key per name in
// [service_network_semaphore], and a [DEFAULT] section with as many keys
// again, which every key of the section is checked against.
std::string ace_file(std::int64_t names) {
  std::string text = "[DEFAULT]\n";
  for (std::int64_t i = 0; i < names; ++i) text += "inherited_" + std::to_string(i) + " = x\n";
  text += "[service_network_semaphore]\nbind_port = 53559\n";
  for (std::int64_t i = 0; i < names; ++i) text += "semaphore_job" + std::to_string(i) + " = 2\n";
  return text;
}

std::vector<std::pair<std::string, std::int64_t>> limits_of(std::int64_t names, std::int64_t first = 0) {
  std::vector<std::pair<std::string, std::int64_t>> limits;
  limits.reserve(static_cast<std::size_t>(names));
  for (std::int64_t i = first; i < first + names; ++i) limits.emplace_back(name_of(i), 1 + i % 7);
  return limits;
}

void finish(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetComplexityN(state.range(0));
}

// Item: one [semaphores] line read and checked (`netsemd --check-config`).
void BM_ParseNetsemConfig(benchmark::State& state) {
  const std::string text = netsem_file(state.range(0));
  for (auto _ : state) {
    auto config = parse_server_config(text, "bench.ini");
    if (!config || config->semaphores.size() != static_cast<std::size_t>(state.range(0))) {
      state.SkipWithError("the file did not load");
      break;
    }
    benchmark::DoNotOptimize(config->semaphores.data());
  }
  finish(state);
}
BENCHMARK(BM_ParseNetsemConfig)
    ->RangeMultiplier(10)
    ->Range(kMinNames, kMaxNames)
    ->Unit(benchmark::kMillisecond)
    ->Complexity(benchmark::oN);

// Item: one semaphore_<name> key of an ACE file read, folded and checked
// against the [DEFAULT] keys.
void BM_ParseAceConfig(benchmark::State& state) {
  const std::string text = ace_file(state.range(0));
  for (auto _ : state) {
    auto config = parse_server_config(text, "ace.conf");
    if (!config || config->semaphores.size() != static_cast<std::size_t>(state.range(0))) {
      state.SkipWithError("the file did not load");
      break;
    }
    benchmark::DoNotOptimize(config->semaphores.data());
  }
  finish(state);
}
BENCHMARK(BM_ParseAceConfig)
    ->RangeMultiplier(10)
    ->Range(kMinNames, kMaxNames)
    ->Unit(benchmark::kMillisecond)
    ->Complexity(benchmark::oN);

// Item: one defined semaphore made in an empty table, as at start (the
// table's destruction is outside the timing).
void BM_ConfigureDefinedStart(benchmark::State& state) {
  const auto limits = limits_of(state.range(0));
  MemoryJournal journal;
  for (auto _ : state) {
    state.PauseTiming();
    {
      auto table = std::make_unique<SemaphoreTable>(journal, TableLimits{100'000'000, 1024});
      Completions out;
      state.ResumeTiming();
      benchmark::DoNotOptimize(table->configure_defined(limits, out));
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  finish(state);
}
BENCHMARK(BM_ConfigureDefinedStart)
    ->RangeMultiplier(10)
    ->Range(kMinNames, kMaxNames)
    ->Unit(benchmark::kMillisecond)
    ->Complexity(benchmark::oN);

// Item: one listed name of a reload, over a table of as many defined names:
// each reload keeps three quarters of the names (half of those with a new
// limit), drops a quarter and adds a quarter; the next reload goes back.
void BM_ConfigureDefinedReload(benchmark::State& state) {
  const std::int64_t names = state.range(0);
  auto before = limits_of(names);
  auto after = limits_of(names, names / 4);
  for (std::size_t i = 0; i < after.size(); i += 2) ++after[i].second;
  MemoryJournal journal;
  SemaphoreTable table(journal, TableLimits{100'000'000, 1024});
  Completions out;
  table.configure_defined(before, out);
  bool forth = true;
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.configure_defined(forth ? after : before, out));
    forth = !forth;
  }
  if (!out.empty() || table.stats().semaphores != static_cast<std::uint64_t>(names)) {
    state.SkipWithError("unexpected table state");
  }
  finish(state);
}
BENCHMARK(BM_ConfigureDefinedReload)
    ->RangeMultiplier(10)
    ->Range(kMinNames, kMaxNames)
    ->Unit(benchmark::kMillisecond)
    ->Complexity(benchmark::oN);

}  // namespace
