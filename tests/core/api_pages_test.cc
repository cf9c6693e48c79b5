// Tests of the HTTP API's pages (src/core/api_pages.h) with no socket and
// no HTTP: a real table and dispatcher, sessions played by TestSession, the
// clock injected. Semaphore pages by prefix and in name order, resumed by
// `next` to the end (`.` and `..` included), at the page bounds; one
// semaphore's holders and queue in order with labels, peers, times and
// timeouts left, truncated at the bound; session pages by id.
#include "core/api_pages.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/test_session.h"
#include "journal/journal.h"
#include "support/request_lines.h"

namespace netsem::server {
namespace {

using namespace std::chrono_literals;
using protocol::AceParser;
namespace req = netsem::testing::req;

// Wall clock handed to the pages, ms since the Unix epoch.
constexpr std::int64_t kWallMs = 1'800'000'000'000;

class ApiPagesTest : public ::testing::Test {
 protected:
  ApiPagesTest() {
    config_.semaphores = {{"splunk", 1}, {"pool", 3}, {".", 1}, {"..", 2}, {"a", 1}, {"a.b", 1}, {"ab", 1}};
    table_ = std::make_unique<SemaphoreTable>(memory_, TableLimits{});
    dispatcher_ =
        std::make_unique<Dispatcher>(*table_, journal_, config_, counters_, logs_, &ApiPagesTest::read_clock, this);
    dispatcher_->reconfigure(config_.semaphores);
  }

  std::unique_ptr<TestSession> session(protocol::Dialect dialect = protocol::Dialect::kV1) {
    return std::make_unique<TestSession>(*dispatcher_, next_id_++, dialect);
  }
  void advance(Clock::duration by) {
    now_ += by;
    dispatcher_->expire();
  }
  static Clock::time_point read_clock(const void* self) { return static_cast<const ApiPagesTest*>(self)->now_; }

  // Every page of semaphore_page from the start, `limit` rows at most each.
  std::vector<api::SemaphorePage> all_pages(std::string_view prefix, std::size_t limit) {
    std::vector<api::SemaphorePage> pages;
    std::string after;
    for (int guard = 0; guard < 10000; ++guard) {
      pages.push_back(semaphore_page(*table_, prefix, after, limit));
      if (!pages.back().next) break;
      after = *pages.back().next;
    }
    return pages;
  }
  static std::vector<std::string> names_of(const std::vector<api::SemaphorePage>& pages) {
    std::vector<std::string> names;
    for (const auto& page : pages) {
      for (const auto& row : page.rows) names.push_back(row.name);
    }
    return names;
  }

  MemoryJournal memory_;
  TestJournal journal_{memory_};
  ServerConfig config_;
  ServerCounters counters_;
  PeerLogs logs_;
  Clock::time_point now_ = Clock::time_point{} + 1000h;
  std::unique_ptr<SemaphoreTable> table_;
  std::unique_ptr<Dispatcher> dispatcher_;
  SessionId next_id_ = 1;
};

TEST_F(ApiPagesTest, SemaphoresInNameOrderByPrefixWithEveryKindAndItsFigures) {
  auto a = session();
  auto b = session();
  EXPECT_EQ(a->request(req::create("c", "made", 2, 5)), "c OK\n");
  EXPECT_EQ(a->request(req::acquire("a", "pool", 2)), "a OK 1\n");
  EXPECT_EQ(a->request(req::acquire("a2", "adhoc")), "a2 OK 2\n");  // undefined: exists while in use
  EXPECT_EQ(b->request(req::acquire("b", "adhoc")), "b QUEUED 1\n");

  const auto page = semaphore_page(*table_, "", "", api::kMaxPage);
  EXPECT_FALSE(page.next);
  std::vector<std::string> names;
  for (const auto& row : page.rows) names.push_back(row.name);
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "a", "a.b", "ab", "adhoc", "made", "pool", "splunk"}));
  const auto row = [&](std::string_view name) {
    for (const auto& r : page.rows) {
      if (r.name == name) return r;
    }
    ADD_FAILURE() << "no row " << name;
    return api::SemaphoreRow{};
  };
  EXPECT_EQ(row("pool").kind, "defined");
  EXPECT_EQ(row("pool").value, 1);
  EXPECT_EQ(row("pool").max, 3);
  EXPECT_EQ(row("pool").holders, 1u);
  EXPECT_EQ(row("made").kind, "created");
  EXPECT_EQ(row("made").value, 2);
  EXPECT_EQ(row("made").max, 5);
  EXPECT_EQ(row("adhoc").kind, "undefined");
  EXPECT_EQ(row("adhoc").value, 0);
  EXPECT_EQ(row("adhoc").holders, 1u);
  EXPECT_EQ(row("adhoc").waiters, 1u);
  EXPECT_EQ(row("..").max, 2);

  EXPECT_EQ(names_of(all_pages("a", 100)), (std::vector<std::string>{"a", "a.b", "ab", "adhoc"}));
  EXPECT_EQ(names_of(all_pages("a.", 100)), (std::vector<std::string>{"a.b"}));
  EXPECT_EQ(names_of(all_pages(".", 100)), (std::vector<std::string>{".", ".."}));
  EXPECT_EQ(names_of(all_pages("..", 100)), (std::vector<std::string>{".."}));
  EXPECT_TRUE(names_of(all_pages("zz", 100)).empty());
  // `after` a name that is gone, or outside the prefix, resumes where it would sort.
  EXPECT_EQ(names_of({semaphore_page(*table_, "", "aa", 2)}), (std::vector<std::string>{"ab", "adhoc"}));
  EXPECT_EQ(names_of({semaphore_page(*table_, "a", ".", 1)}), (std::vector<std::string>{"a"}));
  EXPECT_TRUE(semaphore_page(*table_, "a", "b", 10).rows.empty());
}

// Pages of one row, of a few, and at the bound: each at most `limit` rows,
// `next` the last row's name while more follow, and none on the last page,
// even when it ends exactly at the last name; resumed to the end, every
// name once in order.
TEST_F(ApiPagesTest, SemaphorePagesResumeAfterTheLastRowToTheEnd) {
  const std::vector<std::string> every{".", "..", "a", "a.b", "ab", "pool", "splunk"};  // 7 names
  for (std::size_t limit : {1, 2, 3, 6, 7, 8, 1000}) {
    SCOPED_TRACE(limit);
    const auto pages = all_pages("", limit);
    EXPECT_EQ(names_of(pages), every);
    EXPECT_EQ(pages.size(), (every.size() + limit - 1) / limit);
    for (std::size_t i = 0; i < pages.size(); ++i) {
      EXPECT_LE(pages[i].rows.size(), limit);
      if (i + 1 < pages.size()) {
        EXPECT_EQ(pages[i].rows.size(), limit);
        EXPECT_EQ(pages[i].next, pages[i].rows.back().name);
      } else {
        EXPECT_FALSE(pages[i].next);
      }
    }
  }
}

// A table far larger than a page: a page is api::kMaxPage rows at most and
// the pages reach every name once.
TEST_F(ApiPagesTest, ALargeTableComesInPagesOfAtMostTheBound) {
  std::vector<std::pair<std::string, std::int64_t>> names;
  for (int i = 0; i < 2500; ++i) names.emplace_back("n" + std::to_string(10000 + i), 1);
  dispatcher_->reconfigure(names);
  const auto pages = all_pages("n", api::kMaxPage);
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_EQ(pages[0].rows.size(), api::kMaxPage);
  EXPECT_EQ(pages[0].next, "n10999");
  EXPECT_EQ(pages[1].rows.front().name, "n11000");
  EXPECT_EQ(pages[2].rows.size(), 500u);
  EXPECT_EQ(pages[2].rows.back().name, "n12499");
  EXPECT_FALSE(pages[2].next);
  EXPECT_EQ(names_of(pages).size(), 2500u);
}

TEST_F(ApiPagesTest, OneSemaphoreWithHoldersInOrderAndWaitersInQueueOrder) {
  auto a = session();
  auto b = session();
  auto ace = session(protocol::Dialect::kAce);
  auto c = session();
  auto d = session();
  EXPECT_EQ(a->request(req::hello("h", "job one")), "h OK netsem 1.1 1\n");
  EXPECT_EQ(a->request(req::acquire("a", "pool", 2)), "a OK 1\n");
  advance(250ms);
  ace->ace(AceParser::Token::kAcquire, "pool");
  EXPECT_EQ(ace->read(), "locked|");
  advance(50ms);
  EXPECT_EQ(b->request(req::acquire("b", "pool", 1, 5000)), "b QUEUED 1\n");
  advance(1200ms);
  EXPECT_EQ(c->request(req::wait("c", "pool")), "c QUEUED 2\n");  // for ever
  EXPECT_EQ(d->request(req::hello("h", "late")), "h OK netsem 1.1 5\n");
  EXPECT_EQ(d->request(req::acquire("d", "pool", 1, 300)), "d QUEUED 3\n");
  advance(100ms);

  const auto detail = semaphore_detail(*table_, *dispatcher_, "pool", now_, kWallMs);
  ASSERT_TRUE(detail);
  EXPECT_EQ(detail->semaphore.name, "pool");
  EXPECT_EQ(detail->semaphore.kind, "defined");
  EXPECT_EQ(detail->semaphore.value, 0);
  EXPECT_EQ(detail->semaphore.max, 3);
  EXPECT_EQ(detail->semaphore.holders, 2u);
  EXPECT_EQ(detail->semaphore.waiters, 3u);
  EXPECT_FALSE(detail->truncated);

  ASSERT_EQ(detail->holders.size(), 2u);
  const api::HolderRow& first = detail->holders[0];
  EXPECT_EQ(first.session, 1u);
  EXPECT_EQ(first.label, "job one");
  EXPECT_EQ(first.peer, "127.0.0.1:40001");
  EXPECT_EQ(first.count, 2);
  EXPECT_EQ(first.fence, 1u);
  EXPECT_EQ(first.held_ms, 1600);
  EXPECT_EQ(first.since_ms, kWallMs - 1600);
  const api::HolderRow& second = detail->holders[1];
  EXPECT_EQ(second.session, 3u);
  EXPECT_EQ(second.label, "ace");
  EXPECT_EQ(second.peer, "127.0.0.1:40003");
  EXPECT_EQ(second.count, 1);
  EXPECT_EQ(second.fence, 2u);
  EXPECT_EQ(second.held_ms, 1350);

  ASSERT_EQ(detail->waiters.size(), 3u);
  const api::WaiterRow& w1 = detail->waiters[0];
  EXPECT_EQ(w1.session, 2u);
  EXPECT_EQ(w1.label, "");
  EXPECT_EQ(w1.peer, "127.0.0.1:40002");
  EXPECT_EQ(w1.mode, "acquire");
  EXPECT_EQ(w1.count, 1);
  EXPECT_EQ(w1.waited_ms, 1300);
  EXPECT_EQ(w1.timeout_left_ms, 3700);
  const api::WaiterRow& w2 = detail->waiters[1];
  EXPECT_EQ(w2.session, 4u);
  EXPECT_EQ(w2.mode, "wait");
  EXPECT_EQ(w2.waited_ms, 100);
  EXPECT_EQ(w2.timeout_left_ms, std::nullopt);  // waits for ever
  const api::WaiterRow& w3 = detail->waiters[2];
  EXPECT_EQ(w3.session, 5u);
  EXPECT_EQ(w3.label, "late");
  EXPECT_EQ(w3.timeout_left_ms, 200);

  // Past its deadline but not yet timed out by the loop's timer: 0 left,
  // never negative.
  const auto later = semaphore_detail(*table_, *dispatcher_, "pool", now_ + 450ms, kWallMs);
  ASSERT_TRUE(later);
  ASSERT_EQ(later->waiters.size(), 3u);
  EXPECT_EQ(later->waiters[2].timeout_left_ms, 0);
  EXPECT_EQ(later->waiters[2].waited_ms, 550);

  // The holder that leaves is gone from the page; its 2 permits go to b
  // (a holder now, last) and to c's WAIT (which holds nothing); d waits on.
  a.reset();
  const auto after_leave = semaphore_detail(*table_, *dispatcher_, "pool", now_, kWallMs);
  ASSERT_TRUE(after_leave);
  std::vector<std::uint64_t> holders;
  for (const auto& h : after_leave->holders) holders.push_back(h.session);
  EXPECT_EQ(holders, (std::vector<std::uint64_t>{3, 2}));
  ASSERT_EQ(after_leave->waiters.size(), 1u);
  EXPECT_EQ(after_leave->waiters[0].session, 5u);
}

TEST_F(ApiPagesTest, AbsentDotNamesAndUndefinedNames) {
  EXPECT_FALSE(semaphore_detail(*table_, *dispatcher_, "nothing", now_, kWallMs));
  EXPECT_FALSE(semaphore_detail(*table_, *dispatcher_, "", now_, kWallMs));
  auto a = session();
  EXPECT_EQ(a->request(req::acquire("a", "..", 2)), "a OK 1\n");
  EXPECT_EQ(a->request(req::acquire("a2", "ad-hoc")), "a2 OK 2\n");
  const auto dots = semaphore_detail(*table_, *dispatcher_, "..", now_, kWallMs);
  ASSERT_TRUE(dots);
  EXPECT_EQ(dots->semaphore.name, "..");
  ASSERT_EQ(dots->holders.size(), 1u);
  EXPECT_EQ(dots->holders[0].count, 2);
  const auto dot = semaphore_detail(*table_, *dispatcher_, ".", now_, kWallMs);
  ASSERT_TRUE(dot);
  EXPECT_TRUE(dot->holders.empty());
  const auto undefined = semaphore_detail(*table_, *dispatcher_, "ad-hoc", now_, kWallMs);
  ASSERT_TRUE(undefined);
  EXPECT_EQ(undefined->semaphore.kind, "undefined");
  // Once idle, an undefined name is gone.
  EXPECT_EQ(a->request(req::release("r", "ad-hoc")), "r OK 1\n");
  EXPECT_FALSE(semaphore_detail(*table_, *dispatcher_, "ad-hoc", now_, kWallMs));
}

// At most `limit` holders and `limit` waiters, with `truncated` when more of
// either exist; at the default bound (api::kMaxPage) and below it.
TEST_F(ApiPagesTest, HoldersAndWaitersStopAtTheBoundAndSaySo) {
  auto owner = session();
  EXPECT_EQ(owner->request(req::create("c", "wide", 1000, 1000)), "c OK\n");
  std::vector<std::unique_ptr<TestSession>> sessions;
  for (int i = 0; i < 1000; ++i) {
    sessions.push_back(session());
    ASSERT_EQ(sessions.back()->request(req::acquire("a", "wide")).find(" OK "), 1u);
  }
  auto detail = semaphore_detail(*table_, *dispatcher_, "wide", now_, kWallMs);
  ASSERT_TRUE(detail);
  EXPECT_EQ(detail->holders.size(), api::kMaxPage);
  EXPECT_FALSE(detail->truncated);  // exactly the bound: all shown

  sessions.push_back(session());
  EXPECT_EQ(sessions.back()->request(req::acquire("q", "wide")), "q QUEUED 1\n");
  detail = semaphore_detail(*table_, *dispatcher_, "wide", now_, kWallMs);
  ASSERT_TRUE(detail);
  EXPECT_EQ(detail->holders.size(), api::kMaxPage);
  EXPECT_EQ(detail->waiters.size(), 1u);
  EXPECT_FALSE(detail->truncated);

  sessions.push_back(session());
  EXPECT_EQ(sessions.back()->request(req::acquire("q", "wide")), "q QUEUED 2\n");
  detail = semaphore_detail(*table_, *dispatcher_, "wide", now_, kWallMs, 1);
  ASSERT_TRUE(detail);
  EXPECT_EQ(detail->holders.size(), 1u);
  EXPECT_EQ(detail->holders[0].session, 2u);  // the first holder
  ASSERT_EQ(detail->waiters.size(), 1u);
  EXPECT_EQ(detail->waiters[0].session, 1002u);  // the head of the queue
  EXPECT_TRUE(detail->truncated);
  EXPECT_EQ(detail->semaphore.holders, 1000u);  // the counts are whole
  EXPECT_EQ(detail->semaphore.waiters, 2u);

  // Only the holders too many: 999 holders leave, the 2 queued are granted.
  sessions.erase(sessions.begin() + 1, sessions.begin() + 1000);
  detail = semaphore_detail(*table_, *dispatcher_, "wide", now_, kWallMs, 2);
  ASSERT_TRUE(detail);
  EXPECT_EQ(detail->holders.size(), 2u);
  EXPECT_TRUE(detail->waiters.empty());
  EXPECT_TRUE(detail->truncated);
  detail = semaphore_detail(*table_, *dispatcher_, "wide", now_, kWallMs, 3);
  ASSERT_TRUE(detail);
  EXPECT_FALSE(detail->truncated);

  // Only the queue too long: one holder of splunk, three queued.
  EXPECT_EQ(owner->request(req::acquire("s", "splunk")).find(" OK "), 1u);
  for (int i = 0; i < 3; ++i) {
    sessions.push_back(session());
    EXPECT_EQ(sessions.back()->request(req::acquire("q", "splunk")), "q QUEUED " + std::to_string(i + 1) + "\n");
  }
  detail = semaphore_detail(*table_, *dispatcher_, "splunk", now_, kWallMs, 2);
  ASSERT_TRUE(detail);
  EXPECT_EQ(detail->holders.size(), 1u);
  EXPECT_EQ(detail->waiters.size(), 2u);
  EXPECT_TRUE(detail->truncated);
  detail = semaphore_detail(*table_, *dispatcher_, "splunk", now_, kWallMs, 3);
  ASSERT_TRUE(detail);
  EXPECT_EQ(detail->waiters.size(), 3u);
  EXPECT_FALSE(detail->truncated);
}

TEST_F(ApiPagesTest, SessionsByIdWithWhatEachHoldsResumedAfterAnId) {
  auto c = session();  // id 1
  auto ace = session(protocol::Dialect::kAce);
  auto fresh = session(protocol::Dialect::kUndecided);  // has sent nothing yet
  auto d = session();
  EXPECT_EQ(c->request(req::hello("h", "cli")), "h OK netsem 1.1 1\n");
  EXPECT_EQ(c->request(req::acquire("a", "pool", 2)), "a OK 1\n");
  EXPECT_EQ(c->request(req::acquire("a2", "splunk")), "a2 OK 2\n");
  ace->ace(AceParser::Token::kAcquire, "splunk");  // queued
  advance(2s);
  c->state.last_activity = now_;  // what the network layer does for a complete line
  advance(40ms);

  auto page = session_page(*table_, *dispatcher_, 0, 100, now_);
  EXPECT_FALSE(page.next);
  ASSERT_EQ(page.rows.size(), 4u);
  const api::SessionRow& first = page.rows[0];
  EXPECT_EQ(first.id, 1u);
  EXPECT_EQ(first.peer, "127.0.0.1:40001");
  EXPECT_EQ(first.dialect, "v1");
  EXPECT_EQ(first.label, "cli");
  EXPECT_EQ(first.permits_held, 3);
  EXPECT_EQ(first.pending, 0u);
  EXPECT_EQ(first.age_ms, 2040);
  EXPECT_EQ(first.idle_ms, 40);
  EXPECT_EQ(page.rows[1].dialect, "ace");
  EXPECT_EQ(page.rows[1].label, "ace");
  EXPECT_EQ(page.rows[1].pending, 1u);
  EXPECT_EQ(page.rows[2].dialect, "v1");
  EXPECT_EQ(page.rows[2].label, "");

  page = session_page(*table_, *dispatcher_, 0, 2, now_);
  ASSERT_EQ(page.rows.size(), 2u);
  EXPECT_EQ(page.next, 2u);
  ace.reset();  // ended between pages: left out, nothing shown twice
  page = session_page(*table_, *dispatcher_, *page.next, 2, now_);
  ASSERT_EQ(page.rows.size(), 2u);
  EXPECT_EQ(page.rows[0].id, 3u);
  EXPECT_EQ(page.rows[1].id, 4u);
  EXPECT_FALSE(page.next);  // ends exactly at the last session
  EXPECT_TRUE(session_page(*table_, *dispatcher_, 4, 1, now_).rows.empty());
  page = session_page(*table_, *dispatcher_, 1, 1, now_);
  ASSERT_EQ(page.rows.size(), 1u);
  EXPECT_EQ(page.rows[0].id, 3u);
  EXPECT_EQ(page.next, 3u);
}

}  // namespace
}  // namespace netsem::server
