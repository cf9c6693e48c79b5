// Micro-benchmarks of the protocol v1 codec (src/protocol/codec.h): what a
// request line costs to parse and to encode, an answer line to format, and a
// pipelined read to split into lines. Items/s counts lines; allocs/line
// counts the heap allocations per line (operator new is counted here). The server's steady state
// must not allocate here: the Request and the output buffer are reused, as
// a session reuses them.
#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

#include "protocol/codec.h"

namespace {
std::atomic<std::uint64_t> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

using namespace netsem::protocol;

void parse_line(benchmark::State& state, std::string_view line) {
  Request request;
  ParseError error;
  for (auto _ : state) {
    const auto status = parse_request(line, request, error);
    benchmark::DoNotOptimize(status);
    benchmark::DoNotOptimize(request.name.data());
  }
  if (parse_request(line, request, error) != ParseStatus::kRequest) state.SkipWithError("line did not parse");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_ParseAcquire(benchmark::State& state) {
  parse_line(state, "a1 ACQUIRE splunk");
}
void BM_ParseAcquireCountTimeout(benchmark::State& state) {
  parse_line(state, "a1 ACQUIRE splunk 1 5000");
}
void BM_ParseRelease(benchmark::State& state) {
  parse_line(state, "r1 RELEASE splunk");
}
void BM_ParseEncodedName(benchmark::State& state) {
  parse_line(state, "a1 ACQUIRE host%3A10.0.0.1%20web 2 5000");
}
void BM_ParseLongName(benchmark::State& state) {
  parse_line(state, "a1 ACQUIRE " + std::string(200, 'n') + " 1 -1");
}
BENCHMARK(BM_ParseAcquire);
BENCHMARK(BM_ParseAcquireCountTimeout);
BENCHMARK(BM_ParseRelease);
BENCHMARK(BM_ParseEncodedName);
BENCHMARK(BM_ParseLongName);

// Formats into a buffer that is cleared every 64 lines, as a session's
// output buffer is after each write.
template <class Append>
void append_lines(benchmark::State& state, Append append) {
  std::string out;
  out.reserve(4096);
  std::size_t lines = 0;
  for (auto _ : state) {
    append(out);
    if (++lines % 64 == 0) out.clear();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_AppendOkFence(benchmark::State& state) {
  append_lines(state, [](std::string& out) { append_ok_number(out, "a1", 123456789); });
}
void BM_AppendQueued(benchmark::State& state) {
  append_lines(state, [](std::string& out) { append_queued(out, "a1", 3); });
}
void BM_AppendError(benchmark::State& state) {
  append_lines(state, [](std::string& out) {
    append_error(out, "r1", ErrorCode::kNotHeld, "this session holds fewer permits than that: splunk");
  });
}
void BM_AppendGet(benchmark::State& state) {
  const SemaphoreView view{"host:10.0.0.1 web", 3, 4, 1, 0, "defined"};
  append_lines(state, [&](std::string& out) { append_get(out, "g1", view); });
}
BENCHMARK(BM_AppendOkFence);
BENCHMARK(BM_AppendQueued);
BENCHMARK(BM_AppendError);
BENCHMARK(BM_AppendGet);

// Allocations per iteration of what runs between start and the end of the loop.
void count_allocations(benchmark::State& state, std::uint64_t before) {
  const auto iterations = static_cast<double>(state.iterations());
  state.counters["allocs/line"] = static_cast<double>(g_allocations.load() - before) / iterations;
}

// netsem-bench's requests: appended to the connection's reused buffer.
void BM_EncodeAcquireIntoBuffer(benchmark::State& state) {
  const std::uint64_t before = g_allocations.load();
  append_lines(state, [](std::string& out) { encode_acquire(out, "a", "splunk"); });
  count_allocations(state, before);
}
BENCHMARK(BM_EncodeAcquireIntoBuffer);

// libnetsem's requests: one line buffer per call (Connection::send).
void BM_EncodeAcquireClient(benchmark::State& state) {
  const std::uint64_t before = g_allocations.load();
  for (auto _ : state) {
    const std::string tag = "17";
    std::string line;
    line.reserve(96);
    encode_acquire(line, tag, "host:10.0.0.1 web", 2, 5000);
    benchmark::DoNotOptimize(line.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  count_allocations(state, before);
}
BENCHMARK(BM_EncodeAcquireClient);

// What libnetsem did before the encoders, for comparison: fmt::format of the
// request, the encoded name, and the join with the tag.
void BM_FormatAcquireClientBefore(benchmark::State& state) {
  const std::uint64_t before = g_allocations.load();
  for (auto _ : state) {
    const std::string tag = "17";
    const std::string request =
        fmt::format("{} {} {} {}", "ACQUIRE", encode_name_for_request("host:10.0.0.1 web"), 2, 5000);
    std::string line;
    line.reserve(tag.size() + request.size() + 2);
    line.append(tag).append(1, ' ').append(request).append(1, '\n');
    benchmark::DoNotOptimize(line.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  count_allocations(state, before);
}
BENCHMARK(BM_FormatAcquireClientBefore);

// A client splitting answers (what netsem-bench and the client library do).
void BM_ParseAnswer(benchmark::State& state) {
  Answer answer;
  for (auto _ : state) {
    const bool ok = parse_answer("a1 OK 123456789", answer);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(answer.rest.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseAnswer);

// One read holding range(0) pipelined requests, split and parsed.
void BM_FramerPipelined(benchmark::State& state) {
  const auto lines = static_cast<std::size_t>(state.range(0));
  std::string read;
  for (std::size_t i = 0; i < lines; ++i) read += i % 2 == 0 ? "a ACQUIRE splunk\n" : "r RELEASE splunk\r\n";
  LineFramer framer;
  Request request;
  ParseError error;
  for (auto _ : state) {
    framer.buffer().append(read);
    std::string_view line;
    while (framer.next(line) == LineFramer::Status::kLine) {
      benchmark::DoNotOptimize(parse_request(line, request, error));
    }
    framer.compact();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * lines));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * read.size()));
}
BENCHMARK(BM_FramerPipelined)->Arg(1)->Arg(64)->Arg(1024);

}  // namespace
