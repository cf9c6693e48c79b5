// Tests of SemaphoreTable's whole-state export and import (TableImage): a
// table imported from another's image is in the same state and behaves the
// same from then on (grants, fences, completions in the same order); a
// broken image or a table not empty is refused and changes nothing; a closed
// session's permits are settled in name order, whatever the containers'
// history.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "table/semaphore_table.h"

namespace netsem::server {
namespace {

using namespace std::chrono_literals;

TimePoint at(std::int64_t ms) {
  return TimePoint{} + std::chrono::milliseconds(ms);
}

TakeResult take(SemaphoreTable& t, SessionId session, std::string_view tag, std::string_view name, std::int64_t count,
                std::int64_t timeout_ms, TimePoint now, TakeMode mode = TakeMode::kAcquire) {
  Completions out;
  TakeRequest r;
  r.session = session;
  r.tag = tag;
  r.name = name;
  r.mode = mode;
  r.count = count;
  r.timeout_ms = timeout_ms;
  r.now = now;
  return t.take(r, out);
}

// A table with every kind of semaphore, holders, waiters with and without
// deadlines (two with the same deadline), a WAIT, and a lowered limit.
void populate(SemaphoreTable& t) {
  Completions out;
  (void)t.configure_defined({{"def", 3}, {"low", 4}}, out);
  ASSERT_EQ(t.create("made", 2, 5, false), ErrorCode::kNone);
  for (SessionId s = 1; s <= 5; ++s) t.open_session(s);
  EXPECT_EQ(take(t, 1, "a", "def", 2, -1, at(10)).type, TakeResult::Type::kGranted);
  EXPECT_EQ(take(t, 2, "b", "def", 2, 500, at(20)).type, TakeResult::Type::kQueued);
  EXPECT_EQ(take(t, 3, "c", "def", 1, 480, at(40)).type, TakeResult::Type::kQueued);  // same deadline as b
  EXPECT_EQ(take(t, 4, "d", "adhoc", 1, -1, at(50)).type, TakeResult::Type::kGranted);
  EXPECT_EQ(take(t, 5, "e", "adhoc", 1, 1000, at(60)).type, TakeResult::Type::kQueued);
  EXPECT_EQ(take(t, 1, "f", "made", 2, -1, at(70), TakeMode::kWait).type, TakeResult::Type::kGranted);
  EXPECT_EQ(take(t, 2, "g", "made", 1, -1, at(80), TakeMode::kWait).type, TakeResult::Type::kQueued);
  EXPECT_EQ(take(t, 3, "h", "low", 3, -1, at(90)).type, TakeResult::Type::kGranted);
  (void)t.configure_defined({{"def", 3}, {"low", 2}}, out);  // low: value -1
  t.set_time(at(100));
}

// Runs the same steps on a table and reports every answer and completion.
std::vector<std::string> drive(SemaphoreTable& t) {
  std::vector<std::string> log;
  Completions out;
  const auto note = [&](const std::string& what) {
    log.push_back(what);
    for (const Completion& c : out) {
      log.push_back("  " + std::to_string(c.session) + " " + c.tag + " " + std::to_string(static_cast<int>(c.type)) +
                    " " + std::to_string(c.fence));
    }
    out.clear();
  };
  t.expire(at(520), out);  // b and c time out together, in queue order
  note("expire");
  std::int64_t value = 0;
  note("post " + std::to_string(static_cast<int>(t.post("made", 1, value, out))) + " " + std::to_string(value));
  note("release " + std::to_string(static_cast<int>(t.release(3, "low", 3, value, out))));
  t.close_session(4, out);  // e is granted adhoc
  note("close 4");
  const TakeResult r = take(t, 2, "i", "def", 1, 0, at(600));
  note("take " + std::to_string(static_cast<int>(r.type)) + " " + std::to_string(r.fence));
  t.close_session(1, out);
  note("close 1");
  return log;
}

TEST(TableImage, ImportedTableIsInTheSameStateAndBehavesTheSame) {
  MemoryJournal journal_a;
  MemoryJournal journal_b;
  SemaphoreTable a(journal_a, {});
  SemaphoreTable b(journal_b, {});
  populate(a);
  const TableImage image = a.export_image();
  ASSERT_EQ(image.sessions.size(), 5u);
  ASSERT_EQ(image.semaphores.size(), 4u);
  EXPECT_EQ(image.semaphores[0].name, "adhoc");
  EXPECT_EQ(image.semaphores[2].name, "low");
  EXPECT_EQ(image.semaphores[2].value, -1);
  ASSERT_TRUE(b.import_image(image).is_ok());
  EXPECT_EQ(b.export_image(), image);
  EXPECT_EQ(b.stats().held, a.stats().held);
  EXPECT_EQ(b.stats().waiters, a.stats().waiters);
  EXPECT_EQ(b.next_deadline(), a.next_deadline());
  EXPECT_EQ(journal_b.records(), 0u);  // an import writes no record
  const auto log_a = drive(a);
  const auto log_b = drive(b);
  EXPECT_EQ(log_a, log_b);
  EXPECT_EQ(a.export_image(), b.export_image());
  // Fences go on from the image's last fence.
  EXPECT_GT(b.export_image().last_fence, image.last_fence);
}

TEST(TableImage, ImportRefusesATableNotEmpty) {
  MemoryJournal journal;
  SemaphoreTable t(journal, {});
  t.open_session(7);
  const Status status = t.import_image({});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.export_image().sessions, std::vector<SessionId>{7});
}

TEST(TableImage, ImportRefusesBrokenImagesAndChangesNothing) {
  MemoryJournal journal;
  SemaphoreTable source(journal, {});
  populate(source);
  const TableImage good = source.export_image();
  const auto sem = [](TableImage& i, std::string_view name) -> TableImage::Semaphore& {
    for (auto& s : i.semaphores) {
      if (s.name == name) return s;
    }
    throw std::logic_error("no such semaphore in the image");
  };
  const std::vector<std::pair<std::string, std::function<void(TableImage&)>>> cases = {
      {"sessions not in rising order", [](TableImage& i) { std::swap(i.sessions[0], i.sessions[1]); }},
      {"names not in byte order", [](TableImage& i) { std::swap(i.semaphores[0], i.semaphores[1]); }},
      {"invalid name", [&](TableImage& i) { sem(i, "adhoc").name = "$x"; }},
      {"unknown kind", [&](TableImage& i) { sem(i, "made").kind = SemaphoreKind::kAbsent; }},
      {"max out of range", [&](TableImage& i) { sem(i, "made").max = 0; }},
      {"value out of range", [&](TableImage& i) { sem(i, "def").value = 3; }},
      {"holder of a session not open", [&](TableImage& i) { sem(i, "def").holders[0].session = 99; }},
      {"holder fence above last_fence", [&](TableImage& i) { sem(i, "def").holders[0].fence = i.last_fence + 1; }},
      {"a session holds twice",
       [&](TableImage& i) {
         auto& s = sem(i, "def");
         s.holders.push_back(s.holders[0]);
         s.holders.back().order = i.last_order + 1;
         s.holders.back().count = 1;
         ++i.last_order;
       }},
      {"an order used twice", [&](TableImage& i) { sem(i, "made").queue[0].order = sem(i, "def").holders[0].order; }},
      {"waiter count out of range", [&](TableImage& i) { sem(i, "def").queue[0].count = 4; }},
      {"waiter timeout out of range", [&](TableImage& i) { sem(i, "def").queue[0].timeout_ms = 0; }},
      {"invalid waiter tag", [&](TableImage& i) { sem(i, "def").queue[0].tag = "bad tag"; }},
      {"a tag queued twice by one session",
       [&](TableImage& i) {
         auto& q = sem(i, "def").queue;
         q[1].session = q[0].session;
         q[1].tag = q[0].tag;
       }},
      {"the head of the queue fits", [&](TableImage& i) { sem(i, "def").queue[0].count = 1; }},
      {"undefined and idle",
       [&](TableImage& i) {
         sem(i, "adhoc").holders.clear();
         sem(i, "adhoc").queue.clear();
         sem(i, "adhoc").value = 1;
       }},
      {"WAIT of an undefined name", [&](TableImage& i) { sem(i, "adhoc").queue[0].mode = TakeMode::kWait; }},
  };
  for (const auto& [why, breaks] : cases) {
    TableImage bad = good;
    breaks(bad);
    MemoryJournal j;
    SemaphoreTable t(j, {});
    const Status status = t.import_image(bad);
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << why;
    EXPECT_NE(status.message().find(why), std::string::npos) << why << ": " << status.message();
    EXPECT_EQ(t.export_image(), TableImage{}) << why;
  }
  MemoryJournal j;
  SemaphoreTable t(j, {});
  EXPECT_TRUE(t.import_image(good).is_ok());
}

TEST(TableImage, ClosedSessionsPermitsAreSettledInNameOrder) {
  // Whatever order the session took its names in, the waiters they let in
  // are granted in name order.
  for (const bool reversed : {false, true}) {
    MemoryJournal journal;
    SemaphoreTable t(journal, {});
    for (SessionId s = 1; s <= 2; ++s) t.open_session(s);
    std::vector<std::string> names;
    for (char c = 'a'; c <= 'p'; ++c) names.emplace_back(1, c);
    if (reversed) std::reverse(names.begin(), names.end());
    for (const auto& name : names) {
      ASSERT_EQ(take(t, 1, "h" + name, name, 1, -1, at(1)).type, TakeResult::Type::kGranted);
      ASSERT_EQ(take(t, 2, "w" + name, name, 1, -1, at(2)).type, TakeResult::Type::kQueued);
    }
    Completions out;
    t.close_session(1, out);
    ASSERT_EQ(out.size(), names.size());
    for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].tag, "w" + std::string(1, 'a' + i));
  }
}

}  // namespace
}  // namespace netsem::server
