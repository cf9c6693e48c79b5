// The checker (history.h) on histories written by hand: one that keeps the
// promise passes, and each way of breaking it (one holder too many, a fence
// that goes back or repeats, a lost POST, WAIT, CREATE or DELETE) is found
// and named; a permit counts until its release is sent or its loss declared,
// and a change of unknown outcome may or may not have happened.
#include "checker/history.h"

#include <gtest/gtest.h>

#include <string>

namespace netsem::checker {
namespace {

Report check(const std::string& text) {
  auto events = parse_history(text);
  EXPECT_TRUE(events) << events.status().to_string();
  if (!events) return Report{{"unparsed"}, {}};
  return check_history(*events);
}

std::string acquire(const std::string& client, const std::string& name, long invoke, long complete, long fence,
                    const std::string& outcome = "ok", long count = 1) {
  return R"({"op":"acquire","client":")" + client + R"(","name":")" + name + R"(","count":)" + std::to_string(count) +
         R"(,"invoke_ns":)" + std::to_string(invoke) + R"(,"complete_ns":)" + std::to_string(complete) +
         R"(,"outcome":")" + outcome + (outcome == "ok" ? R"(","fence":)" + std::to_string(fence) : "\"") + "}\n";
}
std::string release(const std::string& client, const std::string& name, long invoke, long fence) {
  return R"({"op":"release","client":")" + client + R"(","name":")" + name + R"(","invoke_ns":)" +
         std::to_string(invoke) + R"(,"complete_ns":)" + std::to_string(invoke + 5) + R"(,"outcome":"ok","fence":)" +
         std::to_string(fence) + "}\n";
}
std::string lost(const std::string& client, const std::string& name, long at, long fence) {
  return R"({"op":"lost","client":")" + client + R"(","name":")" + name + R"(","at_ns":)" + std::to_string(at) +
         R"(,"fence":)" + std::to_string(fence) + "}\n";
}
std::string change(const std::string& op, const std::string& name, long invoke, long complete,
                   const std::string& outcome, long count = 1) {
  return R"({"op":")" + op + R"(","client":"c","name":")" + name + R"(","count":)" + std::to_string(count) +
         R"(,"invoke_ns":)" + std::to_string(invoke) + R"(,"complete_ns":)" + std::to_string(complete) +
         R"(,"outcome":")" + outcome +
         (op == "wait" && outcome == "ok" ? R"(","fence":)" + std::to_string(invoke) : "\"") + "}\n";
}
std::string create(const std::string& name, long invoke, long value, long max, const std::string& outcome = "ok") {
  return R"({"op":"create","client":"c","name":")" + name + R"(","value":)" + std::to_string(value) + R"(,"max":)" +
         std::to_string(max) + R"(,"invoke_ns":)" + std::to_string(invoke) + R"(,"complete_ns":)" +
         std::to_string(invoke + 10) + R"(,"outcome":")" + outcome + "\"}\n";
}
std::string final_state(const std::string& name, bool exists, long value = 0, long max = 0) {
  return R"({"op":"final","name":")" + name + R"(","exists":)" + (exists ? "true" : "false") + R"(,"value":)" +
         std::to_string(value) + R"(,"max":)" + std::to_string(max) + "}\n";
}
const std::string kLimit2 = R"({"op":"limit","name":"db","max":2})"
                            "\n";

TEST(HistoryChecker, AHistoryThatKeepsThePromisePasses) {
  const std::string history = kLimit2 + acquire("a", "db", 0, 10, 1) + acquire("b", "db", 5, 20, 2) +
                              acquire("c", "db", 15, 40, 3) +  // queued until a released
                              release("a", "db", 30, 1) + release("b", "db", 50, 2) + release("c", "db", 60, 3) +
                              acquire("d", "db", 70, 80, 0, "fail") + acquire("e", "db", 70, 500, 0, "unknown");
  const Report report = check(history);
  EXPECT_TRUE(report.ok()) << report.violations.front();
  EXPECT_EQ(report.names.at("db").most_in_use, 2);
  EXPECT_EQ(report.names.at("db").grants, 3u);
  EXPECT_EQ(report.names.at("db").unknown, 1u);
}

TEST(HistoryChecker, FindsOneHolderTooMany) {
  // c's grant arrives at 25, before a sends its release at 30: three at once.
  const Report report = check(kLimit2 + acquire("a", "db", 0, 10, 1) + acquire("b", "db", 5, 20, 2) +
                              acquire("c", "db", 15, 25, 3) + release("a", "db", 30, 1));
  ASSERT_EQ(report.violations.size(), 1u);
  EXPECT_NE(report.violations[0].find("3 permits in use at 25 ns, over its limit of 2"), std::string::npos)
      << report.violations[0];
  EXPECT_NE(report.violations[0].find("c(fence 3, line 4 (c))"), std::string::npos) << report.violations[0];
}

TEST(HistoryChecker, CountsAPermitUntilItsLossIsDeclared) {
  // a declared its permit lost at 30 (its server froze); c got it at 25: a
  // double grant, whatever the server thought. Declared at 24: none.
  EXPECT_FALSE(check(kLimit2 + acquire("a", "db", 0, 10, 1) + acquire("b", "db", 5, 20, 2) +
                     acquire("c", "db", 15, 25, 3) + lost("a", "db", 30, 1))
                   .ok());
  EXPECT_TRUE(check(kLimit2 + acquire("a", "db", 0, 10, 1) + acquire("b", "db", 5, 20, 2) +
                    acquire("c", "db", 15, 25, 3) + lost("a", "db", 24, 1))
                  .ok());
  // A permit never released counts to the end.
  EXPECT_FALSE(
      check(kLimit2 + acquire("a", "db", 0, 10, 1) + acquire("b", "db", 5, 20, 2) + acquire("c", "db", 1000, 1010, 3))
          .ok());
  // Counts weigh: one holder of 2 and another of 1 is 3.
  EXPECT_FALSE(check(kLimit2 + acquire("a", "db", 0, 10, 1, "ok", 2) + acquire("b", "db", 5, 20, 2)).ok());
}

TEST(HistoryChecker, FindsFencesThatGoBackOrRepeat) {
  // b asked at 50, after a's grant (fence 7) arrived at 10: b's must be higher.
  Report report = check(acquire("a", "x", 0, 10, 7) + release("a", "x", 20, 7) + acquire("b", "x", 50, 60, 5));
  ASSERT_EQ(report.violations.size(), 1u);
  EXPECT_NE(report.violations[0].find("fences went back"), std::string::npos) << report.violations[0];
  // Overlapping requests may be granted in either order.
  EXPECT_TRUE(check(acquire("a", "x", 0, 100, 7) + acquire("b", "x", 10, 60, 5)).ok());
  report = check(acquire("a", "x", 0, 100, 7) + acquire("b", "y", 10, 60, 3) + acquire("c", "x", 10, 60, 7));
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.violations[0].find("fence 7 granted twice"), std::string::npos) << report.violations[0];
}

TEST(HistoryChecker, FindsALostPostOrWait) {
  const std::string created = create("q", 0, 1, 10);
  // 1 + 3 posts - 1 wait = 3.
  const std::string changes = change("post", "q", 20, 30, "ok") + change("post", "q", 40, 50, "ok", 2) +
                              change("wait", "q", 60, 70, "ok") + change("post", "q", 80, 90, "fail", 5);
  EXPECT_TRUE(check(created + changes + final_state("q", true, 3, 10)).ok());
  Report report = check(created + changes + final_state("q", true, 1, 10));
  ASSERT_EQ(report.violations.size(), 1u);
  EXPECT_NE(report.violations[0].find("make it 3 of 10"), std::string::npos) << report.violations[0];
  EXPECT_FALSE(check(created + changes + final_state("q", true, 4, 10)).ok());
  // A POST of unknown outcome may or may not have happened: 3 or 5.
  const std::string unknown = change("post", "q", 100, 200, "unknown", 2);
  EXPECT_TRUE(check(created + changes + unknown + final_state("q", true, 3, 10)).ok());
  EXPECT_TRUE(check(created + changes + unknown + final_state("q", true, 5, 10)).ok());
  EXPECT_FALSE(check(created + changes + unknown + final_state("q", true, 6, 10)).ok());
}

TEST(HistoryChecker, FindsALostCreateOrDelete) {
  EXPECT_TRUE(check(create("q", 0, 1, 10) + final_state("q", true, 1, 10)).ok());
  Report report = check(create("q", 0, 1, 10) + final_state("q", false));
  ASSERT_EQ(report.violations.size(), 1u);
  EXPECT_NE(report.violations[0].find("is gone at the end"), std::string::npos) << report.violations[0];
  // A max other than the CREATE's is a lost CREATE too.
  EXPECT_FALSE(check(create("q", 0, 1, 10) + final_state("q", true, 1, 9)).ok());
  const std::string deleted = create("q", 0, 1, 10) + change("delete", "q", 20, 30, "ok");
  EXPECT_TRUE(check(deleted + final_state("q", false)).ok());
  EXPECT_FALSE(check(deleted + final_state("q", true, 1, 10)).ok());
  // A DELETE of unknown outcome: either is fine.
  const std::string maybe = create("q", 0, 1, 10) + change("delete", "q", 20, 30, "unknown");
  EXPECT_TRUE(check(maybe + final_state("q", false)).ok());
  EXPECT_TRUE(check(maybe + final_state("q", true, 1, 10)).ok());
}

// A change of unknown outcome may still take effect after the client gave
// up, and acknowledged changes that overlap may be applied in either order:
// neither is reported as a loss.
TEST(HistoryChecker, AChangeOfUnknownOutcomeMayLandLateAndOverlapsInEitherOrder) {
  // A DELETE given up on before the CREATE was even sent, applied after it.
  EXPECT_TRUE(check(change("delete", "q", 0, 5, "unknown") + create("q", 100, 1, 10) + final_state("q", false)).ok());
  // A POST of unknown outcome sent before the CREATE, applied after it.
  EXPECT_TRUE(
      check(change("post", "q", 0, 5, "unknown", 2) + create("q", 100, 1, 10) + final_state("q", true, 3, 10)).ok());
  // Two acknowledged, overlapping: CREATE (100..110) and DELETE (105..108).
  const std::string overlapping = create("q", 100, 1, 10) + change("delete", "q", 105, 108, "ok");
  EXPECT_TRUE(check(overlapping + final_state("q", true, 1, 10)).ok());
  EXPECT_TRUE(check(overlapping + final_state("q", false)).ok());
  // Not overlapping: the later one decides.
  EXPECT_FALSE(
      check(create("q", 100, 1, 10) + change("delete", "q", 200, 210, "ok") + final_state("q", true, 1, 10)).ok());
}

TEST(HistoryChecker, NamesTheFileOfAViolation) {
  auto events = parse_history(
      kLimit2 + acquire("a", "db", 0, 10, 1) + acquire("b", "db", 5, 20, 2) + acquire("c", "db", 15, 25, 3),
      "run-1.jsonl");
  ASSERT_TRUE(events);
  const Report report = check_history(*events);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.violations[0].find("c(fence 3, run-1.jsonl:line 4 (c))"), std::string::npos) << report.violations[0];
  auto bad = parse_history("{}\n", "run-2.jsonl");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("run-2.jsonl:line 1: "), std::string::npos) << bad.status().message();
}

TEST(HistoryChecker, RefusesAMalformedHistoryNamingTheLine) {
  const struct {
    std::string text;
    std::string message;
  } cases[] = {
      {"{\"op\":\"limit\",\"name\":\"a\",\"max\":1}\nnot json\n", "line 2: not a JSON object"},
      {R"({"op":"grab","name":"a"})", "unknown op \"grab\""},
      {R"({"op":"acquire","name":"a","invoke_ns":5,"complete_ns":1,"outcome":"ok","fence":1})",
       "complete_ns is before invoke_ns"},
      {R"({"op":"acquire","name":"a","invoke_ns":0,"complete_ns":1,"outcome":"ok"})",
       "a granted request without its fence"},
      {R"({"op":"acquire","name":"a","invoke_ns":0,"complete_ns":1,"outcome":"maybe"})", "unknown outcome"},
      {R"({"op":"release","name":"a","invoke_ns":0,"complete_ns":1,"outcome":"ok"})", "without the fence"},
      {R"({"op":"acquire","name":"a","invoke_ns":0,"outcome":"ok","fence":1})", "line 1: "},
  };
  for (const auto& c : cases) {
    auto events = parse_history(c.text);
    ASSERT_FALSE(events) << c.text;
    EXPECT_EQ(events.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(events.status().message().find(c.message), std::string::npos) << events.status().message();
  }
}

}  // namespace
}  // namespace netsem::checker
