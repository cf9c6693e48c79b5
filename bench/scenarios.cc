// What the scenario drivers share: their naming and their timing (see
// scenarios.h).
#include "scenarios.h"

#include <algorithm>

namespace netsem::bench {

namespace {

// The longest a single poll may sleep, so deadlines are met to within it.
constexpr auto kPollSlice = std::chrono::milliseconds(20);

std::chrono::milliseconds until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return std::clamp(left, std::chrono::milliseconds(0), std::chrono::milliseconds(kPollSlice));
}

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

std::string client_name(const Options& options, std::uint64_t index) {
  return options.prefix + "." + std::string(scenario_name(options.scenario)) + "." + std::to_string(index);
}

void poll_until(EventLoop& loop, Clock::time_point deadline, const std::function<bool()>& done) {
  while (!done() && Clock::now() < deadline) loop.poll(until(deadline));
}

void run_warmup_and_window(EventLoop& loop, const RunContext& context, Measurement& m,
                           const std::function<void()>& on_measure, const std::function<bool()>& done) {
  const auto warm_end = Clock::now() + seconds(context.options.warmup);
  poll_until(loop, warm_end, done);
  on_measure();
  MeasureWindow window(context.server_pid, context.more_server_pids);
  window.start();
  const std::uint64_t ops = context.options.ops;
  poll_until(loop, Clock::now() + seconds(context.options.seconds),
             [&] { return done() || (ops != 0 && m.ops >= ops); });
  window.finish(m);
}

}  // namespace netsem::bench
