// Tests of the soak's checker (bench/soak/checker.h) as pure functions over
// hand-made histories: it must report what the server did wrong (holds over
// a limit, fences out of order, permits not back, a created semaphore's
// value off), and must not report what only looks wrong from one side (a
// hold ended by a kill or a stop, an old instance's grant read late).
// Times are in milliseconds; instance 0 starts at 0 with no fences before it.
#include "checker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace netsem::soak {
namespace {

constexpr std::uint16_t kOne = 0;    // limit 1
constexpr std::uint16_t kThree = 1;  // limit 3
constexpr std::uint16_t kTen = 2;    // limit 10
constexpr std::uint64_t kNewFloor = 65536;

Nanos ms(double m) {
  return static_cast<Nanos>(m * 1e6);
}

Event grant(std::uint32_t worker, std::uint16_t name, double at, std::uint64_t fence, std::int32_t count = 1,
            std::uint32_t connection = 1, double requested = -1) {
  return {.type = EventType::kGrant,
          .time = ms(at),
          .worker = worker,
          .connection = connection,
          .name = name,
          .count = count,
          .fence = fence,
          .request_time = ms(requested < 0 ? at - 0.5 : requested)};
}
Event release(std::uint32_t worker, std::uint16_t name, double at) {
  return {.type = EventType::kRelease, .time = ms(at), .worker = worker, .name = name};
}
Event on_connection(EventType type, std::uint32_t worker, std::uint32_t connection, double at) {
  return {.type = type, .time = ms(at), .worker = worker, .connection = connection};
}
Event worker_kill(std::uint32_t worker, double at) {
  return {.type = EventType::kWorkerKill, .time = ms(at), .worker = worker};
}
Event server(EventType type, std::uint32_t instance, double at, std::uint64_t floor = 0) {
  return {.type = type, .time = ms(at), .instance = instance, .fence = floor};
}

// Instance 0 from 0 ms (floor 0), stopped at 20 ms and reaped at 25 ms;
// instance 1 started at 30 ms, whose first STATS (at `ready_at`) said
// `floor`.
std::vector<Event> restart_at_20(double ready_at = 31, std::uint64_t floor = kNewFloor) {
  return {server(EventType::kServerStart, 0, 0),  server(EventType::kServerReady, 0, 1, 0),
          server(EventType::kServerStop, 0, 20),  server(EventType::kServerExit, 0, 25),
          server(EventType::kServerStart, 1, 30), server(EventType::kServerReady, 1, ready_at, floor)};
}
std::vector<Event> one_instance() {
  return {server(EventType::kServerStart, 0, 0), server(EventType::kServerReady, 0, 1, 0)};
}

std::vector<Event> join(std::vector<Event> a, const std::vector<Event>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

HoldCheckResult check(const std::vector<Event>& events, FenceCarry* carry = nullptr) {
  HoldCheckInput input;
  input.names = {"one", "three", "ten"};
  input.limits = {1, 3, 10};
  input.events = events;
  return check_holds(input, carry);
}

int count_of(const HoldCheckResult& result, Violation::Kind kind) {
  int n = 0;
  for (const Violation& v : result.violations) n += v.kind == kind ? 1 : 0;
  return n;
}

struct HoldCase {
  const char* id;  // the test's name
  const char* what;
  std::vector<Event> events;
  int over_limit = 0;
  int fence_order = 0;
  int fence_above_floor = 0;
};

class SoakCheckerHolds : public ::testing::TestWithParam<HoldCase> {};

TEST_P(SoakCheckerHolds, ReportsExactlyTheViolations) {
  const HoldCase& c = GetParam();
  const HoldCheckResult result = check(c.events);
  std::string all;
  for (const Violation& v : result.violations) all += std::string(kind_name(v.kind)) + ": " + v.what + "\n";
  EXPECT_EQ(count_of(result, Violation::Kind::kOverLimit), c.over_limit) << c.what << "\n" << all;
  EXPECT_EQ(count_of(result, Violation::Kind::kFenceOrder), c.fence_order) << c.what << "\n" << all;
  EXPECT_EQ(count_of(result, Violation::Kind::kFenceAboveFloor), c.fence_above_floor) << c.what << "\n" << all;
}

INSTANTIATE_TEST_SUITE_P(
    Table, SoakCheckerHolds,
    ::testing::Values(
        HoldCase{"TwoHoldersOfLimitOne", "two holders of a limit-1 name at once",
                 join(one_instance(),
                      {grant(1, kOne, 10, 5), grant(2, kOne, 15, 6), release(1, kOne, 20), release(2, kOne, 25)}),
                 1},
        HoldCase{"BackToBack", "back to back on a limit-1 name: a release sent at the instant the next OK is read",
                 join(one_instance(),
                      {grant(1, kOne, 10, 5), release(1, kOne, 20), grant(2, kOne, 20, 6), release(2, kOne, 30)})},
        HoldCase{"ThreeOfThree", "three holders of a limit-3 name",
                 join(one_instance(), {grant(1, kThree, 10, 5), grant(2, kThree, 11, 6), grant(3, kThree, 12, 7),
                                       release(1, kThree, 20), release(2, kThree, 20), release(3, kThree, 20)})},
        HoldCase{"CountsAddUp", "counts add up past the limit: 4 + 4 + 3 of 10",
                 join(one_instance(), {grant(1, kTen, 10, 5, 4), grant(2, kTen, 11, 6, 4), grant(3, kTen, 12, 7, 3),
                                       release(1, kTen, 20), release(2, kTen, 20), release(3, kTen, 20)}),
                 1},
        HoldCase{"KillEndsHold", "a hold ended by the worker's kill, then another grant",
                 join(one_instance(),
                      {grant(1, kOne, 10, 5), worker_kill(1, 20), grant(2, kOne, 21, 6), release(2, kOne, 30)})},
        HoldCase{"KillAfterOverlap", "a kill after the overlap began does not hide it",
                 join(one_instance(),
                      {grant(1, kOne, 10, 5), grant(2, kOne, 15, 6), worker_kill(1, 20), release(2, kOne, 30)}),
                 1},
        HoldCase{"OwnDropEndsHold", "a hold ended by the worker's own drop, then another grant",
                 join(one_instance(), {grant(1, kOne, 10, 5, 1, 3), on_connection(EventType::kDrop, 1, 3, 20),
                                       grant(2, kOne, 21, 6), release(2, kOne, 30), release(1, kOne, 40)})},
        HoldCase{"ServerStopEndsHold", "a hold ended by its server's stop, then the new instance grants",
                 join(restart_at_20(), {grant(1, kOne, 10, 5), grant(2, kOne, 40, kNewFloor + 1), release(1, kOne, 100),
                                        release(2, kOne, 90)})},
        HoldCase{"OldGrantReadLate", "an old instance's grant read after the restart is not charged to the new one",
                 join(restart_at_20(), {grant(1, kOne, 35, 7, 1, 1, 15), grant(2, kOne, 40, kNewFloor + 1),
                                        release(1, kOne, 100), release(2, kOne, 90)})},
        HoldCase{"LateGrantWithNewFence",
                 "a grant read after the restart with a fence above the new floor is the new instance's",
                 join(restart_at_20(),
                      {grant(1, kOne, 35, kNewFloor + 4, 1, 1, 34), grant(2, kOne, 40, kNewFloor + 5, 1, 1, 39),
                       release(1, kOne, 100), release(2, kOne, 90)}),
                 1},
        HoldCase{"RawConnectionAfterExit",
                 "a raw connection opened after the old instance exited belongs to the new one",
                 join(restart_at_20(/*ready_at=*/33, kNewFloor + 4),
                      {on_connection(EventType::kConnect, 1, 2, 28), grant(1, kOne, 32, kNewFloor + 1, 1, 2, 31),
                       grant(2, kOne, 40, kNewFloor + 5, 1, 1, 39), release(1, kOne, 100), release(2, kOne, 90)}),
                 1},
        HoldCase{"EarlyGrantWithoutConnection",
                 "without the connection's evidence the same early grant is charged to the old instance",
                 join(restart_at_20(/*ready_at=*/33, kNewFloor + 4),
                      {grant(1, kOne, 32, kNewFloor + 1, 1, 2, 31), grant(2, kOne, 40, kNewFloor + 5, 1, 1, 39),
                       release(1, kOne, 100), release(2, kOne, 90)})},
        HoldCase{"UnexplainedLossSkipped", "a connection the server ended with no stop to explain it is skipped",
                 join(one_instance(), {grant(1, kOne, 10, 5, 1, 1), on_connection(EventType::kLost, 1, 1, 50),
                                       grant(2, kOne, 20, 6), release(2, kOne, 30)})},
        HoldCase{"CrashedInstanceSkipped",
                 "the holds of an instance that crashed are skipped",
                 {server(EventType::kServerStart, 0, 0), server(EventType::kServerReady, 0, 1, 0),
                  server(EventType::kServerExit, 0, 50), grant(1, kOne, 10, 5), grant(2, kOne, 20, 6),
                  release(1, kOne, 60), release(2, kOne, 60)}},
        HoldCase{"FenceGoesBack", "a later request of the same name got a smaller fence",
                 join(one_instance(), {grant(1, kThree, 10, 9, 1, 1, 9), release(1, kThree, 12),
                                       grant(2, kThree, 15, 8, 1, 1, 14), release(2, kThree, 20)}),
                 0, 1},
        HoldCase{"ConcurrentRequestsAnyOrder", "concurrent requests may be granted in either order",
                 join(one_instance(), {grant(1, kThree, 10, 9, 1, 1, 5), grant(2, kThree, 11, 8, 1, 1, 6),
                                       release(1, kThree, 20), release(2, kThree, 20)})},
        HoldCase{"FenceAboveNewFloor", "a grant read before a restart with a fence above the new instance's floor",
                 join(restart_at_20(), {grant(1, kTen, 10, kNewFloor + 10, 1, 1, 9), release(1, kTen, 15)}), 0, 0, 1}),
    [](const auto& p) { return std::string(p.param.id); });

TEST(SoakChecker, HoldWithoutEndIsSkippedNotCounted) {
  const auto result = check(join(one_instance(), {grant(1, kOne, 10, 5), grant(2, kOne, 20, 6)}));
  EXPECT_EQ(result.skipped_unterminated, 2u);
  EXPECT_EQ(result.checked, 0u);
  EXPECT_TRUE(result.violations.empty());
}

TEST(SoakChecker, CountsHoldsAndPeaks) {
  const auto result =
      check(join(restart_at_20(),
                 {grant(1, kThree, 10, 5), grant(2, kThree, 11, 6), grant(3, kThree, 12, 7), release(1, kThree, 15),
                  release(2, kThree, 15), grant(4, kOne, 40, kNewFloor + 1), release(4, kOne, 50)}));
  EXPECT_EQ(result.grants, 4u);
  EXPECT_EQ(result.checked, 4u);
  EXPECT_EQ(result.cut_by_server_stop, 1u);  // worker 3 never released: its hold ends at the stop
  EXPECT_EQ(result.peak[kThree], 3);
  EXPECT_EQ(result.peak[kOne], 1);
  EXPECT_TRUE(result.violations.empty());
}

TEST(SoakChecker, FenceOrderHoldsAcrossStretches) {
  FenceCarry carry;
  EXPECT_TRUE(check(join(one_instance(), {grant(1, kOne, 10, 100), release(1, kOne, 12)}), &carry).violations.empty());
  const auto later = check(join(one_instance(), {grant(2, kOne, 30, 50, 1, 1, 20), release(2, kOne, 35)}), &carry);
  EXPECT_EQ(count_of(later, Violation::Kind::kFenceOrder), 1);
}

TEST(SoakChecker, OverLimitNamesTheIntervals) {
  const auto result = check(
      join(one_instance(), {grant(7, kOne, 10, 5), grant(8, kOne, 15, 6), release(7, kOne, 20), release(8, kOne, 25)}));
  ASSERT_EQ(result.violations.size(), 1u);
  const Violation& v = result.violations[0];
  EXPECT_EQ(v.name, "one");
  EXPECT_EQ(v.time, ms(15));
  EXPECT_NE(v.what.find("2 permits held at once, limit 1"), std::string::npos) << v.what;
  EXPECT_NE(v.what.find("worker 7"), std::string::npos) << v.what;
  EXPECT_NE(v.what.find("worker 8"), std::string::npos) << v.what;
}

struct PermitsCase {
  const char* id;
  const char* what;
  std::int64_t limit;
  bool defined;
  SemaphoreReading reading;
  bool violation;
};

class SoakCheckerPermitsBack : public ::testing::TestWithParam<PermitsCase> {};

TEST_P(SoakCheckerPermitsBack, ReportsPermitsNotBack) {
  const PermitsCase& c = GetParam();
  EXPECT_EQ(check_permits_back("n", c.limit, c.defined, c.reading, 0).has_value(), c.violation) << c.what;
}

INSTANTIATE_TEST_SUITE_P(
    Table, SoakCheckerPermitsBack,
    ::testing::Values(
        PermitsCase{"DefinedFree", "defined, all free", 3, true, {3, 3, 0, 0, "defined"}, false},
        PermitsCase{"DefinedHolderLeft", "defined, a holder left", 3, true, {2, 3, 1, 0, "defined"}, true},
        PermitsCase{"DefinedWaiterLeft", "defined, a waiter left", 3, true, {3, 3, 0, 1, "defined"}, true},
        PermitsCase{
            "DefinedPermitMissing", "defined, a permit missing without holder", 3, true, {2, 3, 0, 0, "defined"}, true},
        PermitsCase{"DefinedLimitChanged", "defined, limit changed", 3, true, {4, 4, 0, 0, "defined"}, true},
        PermitsCase{"UndefinedGone", "undefined, gone when idle", 1, false, {1, 1, 0, 0, "absent"}, false},
        PermitsCase{"UndefinedStillHeld", "undefined, still held", 1, false, {0, 1, 1, 0, "undefined"}, true}),
    [](const auto& p) { return std::string(p.param.id); });

TEST(SoakCheckerCreated, ValueOffIsAViolation) {
  CreatedExpectation expected(5, 10);
  EXPECT_FALSE(expected.post(2, CreatedExpectation::Outcome::kDone));
  EXPECT_TRUE(expected.observe(6).has_value());
  EXPECT_FALSE(expected.observe(6).has_value()) << "one mismatch is reported once";
}

TEST(SoakCheckerCreated, AnsweredOperationsAreExact) {
  CreatedExpectation expected(5, 10);
  EXPECT_FALSE(expected.post(2, CreatedExpectation::Outcome::kDone));
  EXPECT_FALSE(expected.try_wait(3, CreatedExpectation::Outcome::kDone));
  EXPECT_EQ(expected.possible(), (std::set<std::int64_t>{4}));
  EXPECT_FALSE(expected.observe(4));
}

TEST(SoakCheckerCreated, UnknownOutcomeAllowsBoth) {
  for (const std::int64_t seen : {5, 7}) {
    CreatedExpectation expected(5, 10);
    EXPECT_FALSE(expected.post(2, CreatedExpectation::Outcome::kUnknown));
    EXPECT_FALSE(expected.observe(seen)) << seen;
  }
  CreatedExpectation expected(5, 10);
  EXPECT_FALSE(expected.post(2, CreatedExpectation::Outcome::kUnknown));
  EXPECT_TRUE(expected.observe(6));
  CreatedExpectation waited(2, 3);
  EXPECT_FALSE(waited.try_wait(2, CreatedExpectation::Outcome::kUnknown));
  EXPECT_EQ(waited.possible(), (std::set<std::int64_t>{0, 2}));
}

TEST(SoakCheckerCreated, RefusalsMustFitTheValue) {
  CreatedExpectation full(9, 10);
  EXPECT_FALSE(full.post(2, CreatedExpectation::Outcome::kRefused)) << "9 + 2 > 10: OVERFLOW is right";
  CreatedExpectation roomy(5, 10);
  EXPECT_TRUE(roomy.post(2, CreatedExpectation::Outcome::kRefused)) << "5 + 2 fits: OVERFLOW is wrong";
  CreatedExpectation empty(0, 3);
  EXPECT_FALSE(empty.try_wait(1, CreatedExpectation::Outcome::kRefused));
  EXPECT_TRUE(empty.try_wait(1, CreatedExpectation::Outcome::kDone)) << "WAIT granted from 0";
  EXPECT_FALSE(empty.observe(2)) << "after a contradiction anything goes until the next observation";
}

TEST(SoakCheckerSessionTimeout, AWorkerWithoutALeaseHoldsAtMostTAfterItsRequest) {
  // A raw worker does not ping: the server may end its session T after it
  // read the request, and grant again, before the worker reads the end.
  const std::vector<Event> events = join(one_instance(), {grant(1, kOne, 10, 5, 1, 1, 5), release(1, kOne, 2100),
                                                          grant(2, kOne, 2050, 6), release(2, kOne, 2060)});
  HoldCheckInput input;
  input.names = {"one", "three", "ten"};
  input.limits = {1, 3, 10};
  input.events = events;
  input.session_timeout = ms(2000);
  EXPECT_EQ(count_of(check_holds(input), Violation::Kind::kOverLimit), 1) << "worker 1 not listed: it kept a lease";
  input.without_lease = {1};
  const HoldCheckResult cut = check_holds(input);
  EXPECT_EQ(count_of(cut, Violation::Kind::kOverLimit), 0);
  EXPECT_EQ(cut.checked, 2u);
}

HoldCheckResult check_host(const std::vector<Event>& events) {
  HoldCheckInput input;
  input.names = {"one", "three", "ten"};
  input.limits = {1, 3, 10};
  input.events = events;
  return check_host_holds(input);
}

TEST(SoakCheckerHostHolds, AGraceAfterAServerStopStillHolds) {
  // Worker 1 works on for a grace after netsemd was killed at 20 ms; worker
  // 2's fallback (fence 0) or a restarted server's grant must wait for it.
  const std::vector<Event> overlap = join(
      restart_at_20(), {grant(1, kOne, 10, 5), release(1, kOne, 300), grant(2, kOne, 100, 0), release(2, kOne, 400)});
  EXPECT_EQ(count_of(check_host(overlap), Violation::Kind::kOverLimit), 1);
  EXPECT_EQ(count_of(check(overlap), Violation::Kind::kOverLimit), 0) << "check_holds cuts at the server stop";
  const std::vector<Event> after = join(
      restart_at_20(), {grant(1, kOne, 10, 5), release(1, kOne, 300), grant(2, kOne, 300, 0), release(2, kOne, 400)});
  const HoldCheckResult fine = check_host(after);
  EXPECT_EQ(count_of(fine, Violation::Kind::kOverLimit), 0);
  EXPECT_EQ(fine.checked, 2u);
  EXPECT_EQ(fine.peak[kOne], 1);
}

TEST(SoakCheckerHostHolds, ADropOrAKillEndsAHold) {
  const std::vector<Event> events =
      join(one_instance(), {grant(1, kOne, 10, 5, 1, 7), on_connection(EventType::kDrop, 1, 7, 50),
                            grant(2, kOne, 60, 6), worker_kill(2, 70), grant(3, kOne, 80, 7), release(3, kOne, 90)});
  const HoldCheckResult result = check_host(events);
  EXPECT_EQ(count_of(result, Violation::Kind::kOverLimit), 0);
  EXPECT_EQ(result.checked, 3u);
  // A frozen holder (ended by a drop) cannot learn of a server kill, but
  // the restarted server waits out its lease: it is not cut at the stop
  // either, so a grant of the restarted server within it is a violation.
  const HoldCheckResult frozen =
      check_host(join(restart_at_20(), {grant(1, kOne, 10, 5, 1, 7), on_connection(EventType::kDrop, 1, 7, 300),
                                        grant(2, kOne, 100, kNewFloor + 1), release(2, kOne, 200)}));
  EXPECT_EQ(count_of(frozen, Violation::Kind::kOverLimit), 1);
  const HoldCheckResult waited =
      check_host(join(restart_at_20(), {grant(1, kOne, 10, 5, 1, 7), on_connection(EventType::kDrop, 1, 7, 300),
                                        grant(2, kOne, 310, kNewFloor + 1), release(2, kOne, 400)}));
  EXPECT_EQ(count_of(waited, Violation::Kind::kOverLimit), 0);
}

}  // namespace
}  // namespace netsem::soak
