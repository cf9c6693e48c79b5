// Tests of the Dispatcher's cluster mode (src/core/dispatcher.h) with real
// parts and no consensus: TestLog is the CommandSink, and each of its
// entries (the commands submitted since the last) is encoded, applied to
// every server's own replication::StateMachine (its loop replica), and the
// decoded results handed to that server's dispatcher (apply_results). The
// same request sequences run on a single-server Dispatcher must read byte
// for byte alike (ACQUIRE queue, grant and timeout, RELEASE, POST/WAIT,
// CREATE/DELETE, CANCEL, KICK, QUIT, ACE), pipelined lines are answered in
// order, and a session hosted by another server gets its completions there
// only.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/dispatcher.h"
#include "core/test_session.h"
#include "journal/journal.h"
#include "replication/entry.h"
#include "replication/results.h"
#include "replication/state_machine.h"
#include "support/request_lines.h"

namespace netsem::server {
namespace {

using namespace std::chrono_literals;
using protocol::AceParser;
namespace req = netsem::testing::req;

constexpr std::array<std::uint8_t, 16> kLoopback = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
const TableLimits kLimits{1000, 4};

// One session of a cluster-mode dispatcher as the network layer carries
// it: lines read while its input is held wait (as behind an AUTH) and are
// handed on by pump(); the output is read as the peer would.
class ClusterSession final : public SessionEvents {
  Dispatcher& dispatcher_;

 public:
  ClusterSession(Dispatcher& dispatcher, int number, protocol::Dialect dialect)
      : dispatcher_(dispatcher), state(0, "127.0.0.1:" + std::to_string(40000 + number), *this) {
    state.dialect = dialect;
    dispatcher_.begin_session(state);
  }
  ~ClusterSession() override { dispatcher_.end_session(state, stats::EndCause::kClose); }

  void completion_added() override { ++completions; }
  void end(stats::EndCause cause, std::string_view reason) override {
    ends.emplace_back(reason);
    causes.push_back(cause);
    dispatcher_.end_session(state, cause);
  }
  void timer_changed() override {}
  void input_resumable() override { ++resumed; }

  void send(std::string_view line) {
    input.emplace_back(line);
    pump();
  }
  // Hands on the lines that may go now; true if any did.
  bool pump() {
    bool any = false;
    while (!input.empty() && state.open && !state.quit && !state.input_held()) {
      const std::string line = std::move(input.front());
      input.pop_front();
      dispatcher_.handle_line(state, line);
      any = true;
    }
    return any;
  }
  std::string read() {
    std::string text = state.out.substr(state.out_sent);
    state.out.clear();
    state.out_sent = 0;
    return text;
  }

  SessionState state;
  std::deque<std::string> input;
  int completions = 0;
  int resumed = 0;
  std::vector<std::string> ends;
  std::vector<stats::EndCause> causes;
};

// The log without consensus: flush() makes an entry of what was submitted,
// applies it to every member's replica (bytes in, bytes out, as a server
// would) and hands the results to the member's dispatcher.
class TestLog final : public CommandSink {
 public:
  void submit(replication::Command command) override { pending_.push_back(std::move(command)); }

  void add_member(replication::StateMachine& replica, Dispatcher& dispatcher) {
    members_.push_back({&replica, &dispatcher, false});
  }
  bool idle() const { return pending_.empty(); }
  // One entry of everything submitted so far (nothing when none was).
  void flush() {
    if (pending_.empty()) return;
    replication::Entry entry{time_ms, std::move(pending_)};
    pending_.clear();
    append(entry);
  }
  void append(const replication::Entry& entry) {
    const std::string bytes = replication::encode_entry(entry);
    ++index_;
    ++entries;
    logged += bytes;
    for (const Member& member : members_) {
      if (member.paused) continue;  // a follower far behind: it will get a snapshot
      auto applied = member.replica->apply(index_, bytes);
      ASSERT_TRUE(applied.has_value()) << applied.status().message();
      auto results = replication::decode_results(*applied);
      ASSERT_TRUE(results.has_value()) << results.status().message();
      member.dispatcher->apply_results(entry, *results);
    }
  }

  // Member i applies no entry until resumed from a snapshot.
  void pause(std::size_t i) { members_[i].paused = true; }
  // Member i gets member `from`'s snapshot (as libraft installs one on a
  // follower far behind), with its dispatcher told before and after.
  void restore_from(std::size_t i, std::size_t from) {
    Member& member = members_[i];
    const Dispatcher::HostedLoads before = member.dispatcher->hosted_loads();
    ASSERT_TRUE(member.replica->restore(members_[from].replica->snapshot()));
    member.paused = false;
    member.dispatcher->reconcile_restored(before);
  }

  std::int64_t time_ms = 1000;
  int entries = 0;
  std::string logged;  // every entry's bytes, in order

 private:
  struct Member {
    replication::StateMachine* replica;
    Dispatcher* dispatcher;
    bool paused = false;
  };
  std::vector<replication::Command> pending_;
  std::vector<Member> members_;
  std::uint64_t index_ = 0;
};

// What a script does, step by step; both modes run it.
struct Step {
  enum class Kind { kLines, kAdvance, kAce, kEnd } kind = Kind::kLines;
  int session = 0;
  std::vector<std::string> lines;  // kLines: sent in one read (pipelined)
  std::int64_t ms = 0;             // kAdvance
  AceParser::Token token = AceParser::Token::kWait;
  std::string name;  // kAce acquire
};
Step lines(int session, std::vector<std::string> sent) {
  Step step;
  step.session = session;
  step.lines = std::move(sent);
  return step;
}
Step line(int session, std::string sent) {
  return lines(session, {std::move(sent)});
}
Step advance(std::int64_t ms) {
  Step step;
  step.kind = Step::Kind::kAdvance;
  step.ms = ms;
  return step;
}
Step ace(int session, AceParser::Token token, std::string name = {}) {
  Step step;
  step.kind = Step::Kind::kAce;
  step.session = session;
  step.token = token;
  step.name = std::move(name);
  return step;
}
Step end(int session) {
  Step step;
  step.kind = Step::Kind::kEnd;
  step.session = session;
  return step;
}

// Per step, what each session read, and how the sessions ended.
struct Transcript {
  std::vector<std::vector<std::string>> reads;  // [step][session]
  std::vector<std::vector<std::string>> ends;   // [session]
};

ServerConfig test_config() {
  ServerConfig config;
  config.semaphores = {{"splunk", 1}, {"pool", 3}};
  config.session_timeout_ms = 0;
  return config;
}

// The single server: a table, a journal in memory, a Dispatcher.
class SingleRun {
 public:
  explicit SingleRun(const std::vector<protocol::Dialect>& dialects) {
    table_ = std::make_unique<SemaphoreTable>(memory_, kLimits);
    dispatcher_ = std::make_unique<Dispatcher>(*table_, journal_, config_, counters_, logs_, &SingleRun::clock, this);
    dispatcher_->reconfigure(config_.semaphores);
    for (std::size_t i = 0; i < dialects.size(); ++i) {
      sessions_.push_back(std::make_unique<TestSession>(*dispatcher_, i + 1, dialects[i]));
      sessions_.back()->state.address = kLoopback;
    }
  }
  Transcript run(const std::vector<Step>& script) {
    Transcript transcript;
    for (const Step& step : script) {
      dispatcher_->begin_turn();
      TestSession& s = *sessions_[step.session];
      switch (step.kind) {
        case Step::Kind::kLines:
          for (const std::string& text : step.lines) {
            if (!s.state.quit) dispatcher_->handle_line(s.state, text);
          }
          break;
        case Step::Kind::kAdvance:
          now_ += std::chrono::milliseconds(step.ms);
          dispatcher_->expire();
          break;
        case Step::Kind::kAce:
          s.ace(step.token, step.name);
          break;
        case Step::Kind::kEnd:
          dispatcher_->end_session(s.state, stats::EndCause::kClose);
          break;
      }
      std::vector<std::string> reads;
      for (auto& session : sessions_) reads.push_back(session->read());
      transcript.reads.push_back(std::move(reads));
    }
    for (auto& session : sessions_) transcript.ends.push_back(session->ends);
    return transcript;
  }

 private:
  static Clock::time_point clock(const void* self) { return static_cast<const SingleRun*>(self)->now_; }

  ServerConfig config_ = test_config();
  MemoryJournal memory_;
  TestJournal journal_{memory_};
  ServerCounters counters_;
  PeerLogs logs_;
  Clock::time_point now_ = Clock::time_point{} + 1000h;
  std::unique_ptr<SemaphoreTable> table_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::vector<std::unique_ptr<TestSession>> sessions_;
};

// A cluster of `servers` servers on one TestLog; session i is hosted by
// server hosts[i] (0-based; all by server 0 when `hosts` is empty).
class ClusterRun {
 public:
  ClusterRun(const std::vector<protocol::Dialect>& dialects, const std::vector<int>& hosts = {}, int servers = 1) {
    for (int i = 0; i < servers; ++i) {
      replicas.push_back(std::make_unique<replication::StateMachine>(kLimits));
      dispatchers.push_back(std::make_unique<Dispatcher>(*replicas.back(), log, static_cast<std::uint64_t>(i + 1),
                                                         config, counters, logs, &ClusterRun::clock, this));
      log.add_member(*replicas.back(), *dispatchers.back());
    }
    // What a leader proposes first: the configured limits.
    log.submit(replication::Reconfigure{config.semaphores, config.session_timeout_ms});
    log.flush();
    for (std::size_t i = 0; i < dialects.size(); ++i) {
      const int host = hosts.empty() ? 0 : hosts[i];
      host_of.push_back(host);
      sessions.push_back(std::make_unique<ClusterSession>(*dispatchers[host], static_cast<int>(i + 1), dialects[i]));
      sessions.back()->state.address = kLoopback;
    }
  }
  // Until nothing moves: held lines go on, submitted commands are applied.
  void settle() {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (auto& session : sessions) moved = session->pump() || moved;
      if (!log.idle()) {
        log.flush();
        moved = true;
      }
      if (!moved) return;
    }
    FAIL() << "the log never settled";
  }
  void advance(std::int64_t ms) {
    now += std::chrono::milliseconds(ms);
    for (auto& dispatcher : dispatchers) dispatcher->begin_turn();  // a new turn reads the clock
    log.time_ms += ms;
    log.submit(replication::AdvanceTime{});  // the leader's, once its clock reaches a deadline
    settle();
  }
  Transcript run(const std::vector<Step>& script) {
    Transcript transcript;
    for (const Step& step : script) {
      ClusterSession& s = *sessions[step.session];
      Dispatcher& d = *dispatchers[host_of[step.session]];
      d.begin_turn();
      switch (step.kind) {
        case Step::Kind::kLines:
          for (const std::string& text : step.lines) s.input.push_back(text);
          break;
        case Step::Kind::kAdvance:
          advance(step.ms);
          break;
        case Step::Kind::kAce:
          d.handle_ace(s.state, step.token, step.name);
          break;
        case Step::Kind::kEnd:
          d.end_session(s.state, stats::EndCause::kClose);
          break;
      }
      settle();
      std::vector<std::string> reads;
      for (auto& session : sessions) reads.push_back(session->read());
      transcript.reads.push_back(std::move(reads));
    }
    for (auto& session : sessions) transcript.ends.push_back(session->ends);
    return transcript;
  }

  static Clock::time_point clock(const void* self) { return static_cast<const ClusterRun*>(self)->now; }

  // In this order: sessions end (submitting their closes) before the rest goes.
  TestLog log;
  ServerConfig config = test_config();
  ServerCounters counters;
  PeerLogs logs;
  Clock::time_point now = Clock::time_point{} + 1000h;
  std::vector<std::unique_ptr<replication::StateMachine>> replicas;
  std::vector<std::unique_ptr<Dispatcher>> dispatchers;
  std::vector<int> host_of;
  std::vector<std::unique_ptr<ClusterSession>> sessions;
};

// Runs `script` on a single server and on a cluster (all sessions on one
// server, or on `hosts`), expects the same reads step by step and the same
// ends, and returns the single server's transcript.
Transcript expect_same(const std::vector<protocol::Dialect>& dialects, const std::vector<Step>& script,
                       const std::vector<int>& hosts = {}, int servers = 1) {
  SingleRun single(dialects);
  const Transcript expected = single.run(script);
  ClusterRun cluster(dialects, hosts, servers);
  const Transcript got = cluster.run(script);
  EXPECT_EQ(got.reads.size(), expected.reads.size());
  for (std::size_t step = 0; step < std::min(got.reads.size(), expected.reads.size()); ++step) {
    for (std::size_t s = 0; s < dialects.size(); ++s) {
      EXPECT_EQ(got.reads[step][s], expected.reads[step][s]) << "step " << step << ", session " << s + 1;
    }
  }
  EXPECT_EQ(got.ends, expected.ends);
  return expected;
}

const std::vector<protocol::Dialect> kThreeV1(3, protocol::Dialect::kV1);

TEST(ClusterDispatcher, AcquireQueuesGrantsTimesOutAndReleasesAsASingleServer) {
  const Transcript t = expect_same(kThreeV1, {
                                                 line(0, req::hello("h0", "first")),
                                                 line(1, req::hello("h1")),
                                                 line(2, req::hello("h2")),
                                                 line(0, req::acquire("a1", "splunk")),
                                                 line(1, req::acquire("b1", "splunk", 1, 5000)),
                                                 line(2, req::acquire("c1", "splunk")),
                                                 line(0, req::acquire("t", "splunk", 1, 0)),
                                                 advance(4999),
                                                 advance(1),
                                                 line(0, req::release("r1", "splunk")),
                                                 line(2, req::release("r2", "splunk", 2)),
                                                 line(2, req::get("g", "splunk")),
                                                 line(1, req::acquire("b2", "pool", 4)),
                                                 line(1, req::release("r3", "nosuch")),
                                             });
  // The script means something: the answers a single server gives.
  EXPECT_EQ(t.reads[0][0], "h0 OK netsem 1.1 1\n");
  EXPECT_EQ(t.reads[4][1], "b1 QUEUED 1\n");
  EXPECT_EQ(t.reads[6][0], "t TIMEOUT\n");
  EXPECT_EQ(t.reads[7][1], "");
  EXPECT_EQ(t.reads[8][1], "b1 TIMEOUT\n");
  EXPECT_EQ(t.reads[9][0], "r1 OK 0\n");
  EXPECT_EQ(t.reads[9][2], "c1 OK 2\n");
  EXPECT_EQ(t.reads[11][2], "g OK 0 1 1 0 defined\n");
  EXPECT_EQ(t.reads[12][1].rfind("b2 ERR TOO_MANY ", 0), 0u);
}

TEST(ClusterDispatcher, PostWaitCreateDeleteCancelAndErrorsAsASingleServer) {
  const Transcript t = expect_same(kThreeV1, {
                                                 line(0, req::hello("h0")),
                                                 line(1, req::hello("h1")),
                                                 line(0, req::create("c", "jobs", 0, 5)),
                                                 line(0, req::create("c2", "jobs", 0, 5)),
                                                 line(1, req::wait("w1", "jobs", 2)),
                                                 line(0, req::post("p1", "jobs")),
                                                 line(0, req::post("p2", "jobs")),
                                                 line(0, req::get("g", "jobs")),
                                                 line(1, req::cancel("x", "nosuch")),
                                                 line(1, req::wait("w2", "jobs")),
                                                 line(1, req::post("w2", "jobs")),
                                                 line(1, req::cancel("x2", "w2")),
                                                 line(0, req::del("d", "jobs")),
                                                 line(0, req::del("d2", "jobs")),
                                                 line(0, req::del("d3", "splunk")),
                                                 line(0, req::post("p3", "pool", 3)),
                                             });
  EXPECT_EQ(t.reads[4][1], "w1 QUEUED 1\n");
  EXPECT_EQ(t.reads[6][1], "w1 OK 1\n");
  EXPECT_EQ(t.reads[8][1], "x ERR NOT_FOUND no pending request with that tag\n");
  EXPECT_EQ(t.reads[10][1].rfind("w2 ERR DUPLICATE_TAG ", 0), 0u);
  EXPECT_EQ(t.reads[11][1], "x2 OK\nw2 CANCELLED\n");
}

// A pipelined read: each line's answer is written before the next line is
// read (the session's input waits for the log), in order.
TEST(ClusterDispatcher, PipelinedLinesAreAnsweredInOrder) {
  const Transcript t = expect_same(
      kThreeV1,
      {
          lines(0, {req::hello("h"), req::acquire("a", "pool", 2), req::get("g", "pool"), req::ping("p"),
                    req::acquire("b", "pool", 2), req::option_queued("o", false), req::release("r", "pool", 2),
                    req::get("g2", "pool")}),
          lines(1, {req::acquire("c", "pool"), req::acquire("d", "pool", 1, 0), req::quit("q"), req::ping("never")}),
          line(0, req::release("r2", "pool", 2)),
      });
  EXPECT_EQ(t.reads[0][0],
            "h OK netsem 1.1 1\na OK 1\ng OK 1 3 1 0 defined\np PONG\nb QUEUED 1\no OK\nr OK 1\nb OK 2\n"
            "g2 OK 1 3 1 0 defined\n");
  EXPECT_EQ(t.reads[1][1], "c OK 3\nd TIMEOUT\nq OK\n");
}

TEST(ClusterDispatcher, KickEndsTheTargetWithTheSingleServersLine) {
  const Transcript t = expect_same(kThreeV1, {
                                                 line(0, req::hello("h0")),
                                                 line(1, req::hello("h1")),
                                                 line(2, req::hello("h2")),
                                                 line(1, req::acquire("a", "splunk")),
                                                 line(0, req::acquire("f", "pool", 3)),
                                                 line(1, req::acquire("q", "pool")),
                                                 line(2, req::acquire("b", "splunk")),
                                                 line(2, req::acquire("c", "pool")),
                                                 line(0, req::kick("k", 2)),
                                                 line(0, req::release("r", "pool")),
                                                 line(0, req::kick("k2", 2)),
                                                 line(0, req::kick("k3", 1)),
                                             });
  EXPECT_EQ(t.reads[8][0], "k OK\n");
  EXPECT_EQ(t.reads[8][1], "* ERR KICKED kicked by session 1 (127.0.0.1:40001)\n");
  EXPECT_EQ(t.reads[8][2], "b OK 3\n");
  EXPECT_EQ(t.reads[9][2], "c OK 4\n");
  EXPECT_EQ(t.reads[10][0], "k2 ERR NOT_FOUND no such session\n");
  EXPECT_EQ(t.reads[11][0], "k3 OK\n* ERR KICKED kicked by session 1 (127.0.0.1:40001)\n");
}

TEST(ClusterDispatcher, QuitAndAClosedConnectionGiveThePermitsBack) {
  const Transcript t = expect_same(kThreeV1, {
                                                 line(0, req::hello("h0")),
                                                 line(1, req::hello("h1")),
                                                 line(2, req::hello("h2")),
                                                 line(0, req::acquire("a", "splunk")),
                                                 line(1, req::acquire("b", "splunk")),
                                                 line(2, req::acquire("c", "splunk")),
                                                 line(0, req::quit("q")),
                                                 end(1),
                                                 line(2, req::get("g", "splunk")),
                                             });
  EXPECT_EQ(t.reads[6][0], "q OK\n");
  EXPECT_EQ(t.reads[6][1], "b OK 2\n");
  EXPECT_EQ(t.reads[7][2], "c OK 3\n");
}

TEST(ClusterDispatcher, AceAcquireQueueGrantAndReleaseAsASingleServer) {
  const std::vector<protocol::Dialect> dialects = {protocol::Dialect::kAce, protocol::Dialect::kAce,
                                                   protocol::Dialect::kV1};
  const Transcript t = expect_same(dialects, {
                                                 ace(0, AceParser::Token::kAcquire, "splunk"),
                                                 ace(1, AceParser::Token::kAcquire, "splunk"),
                                                 line(2, req::get("g", "splunk")),
                                                 ace(0, AceParser::Token::kWait),
                                                 ace(0, AceParser::Token::kRelease),
                                                 line(2, req::get("g2", "splunk")),
                                                 ace(1, AceParser::Token::kRelease),
                                                 line(2, req::get("g3", "splunk")),
                                             });
  EXPECT_EQ(t.reads[0][0], "locked|");
  EXPECT_EQ(t.reads[1][1], "");
  EXPECT_EQ(t.reads[2][2], "g OK 0 1 1 1 defined\n");
  EXPECT_EQ(t.reads[4][0], "ok|");
  EXPECT_EQ(t.reads[4][1], "locked|");
  EXPECT_EQ(t.reads[6][1], "ok|");
  EXPECT_EQ(t.ends[0], std::vector<std::string>{"ACE: released"});
}

// Two servers: a session's answers and completions are written by its host
// only, however the entry that caused them was proposed.
TEST(ClusterDispatcher, ASessionOnAnotherServerGetsItsCompletionsThereOnly) {
  ClusterRun cluster(kThreeV1, {0, 1, 1}, 2);
  ClusterSession& a = *cluster.sessions[0];  // on server 1
  ClusterSession& b = *cluster.sessions[1];  // on server 2
  ClusterSession& c = *cluster.sessions[2];  // on server 2
  a.send(req::acquire("a1", "splunk"));
  EXPECT_TRUE(a.state.input_held());  // until the log answers
  cluster.settle();
  EXPECT_FALSE(a.state.input_held());
  EXPECT_EQ(a.read(), "a1 OK 1\n");
  b.send(req::hello("h"));
  b.send(req::acquire("b1", "splunk"));
  cluster.settle();
  EXPECT_EQ(b.read(), "h OK netsem 1.1 2\nb1 QUEUED 1\n");
  a.send(req::release("r", "splunk"));
  cluster.settle();
  EXPECT_EQ(a.read(), "r OK 0\n");
  EXPECT_EQ(b.read(), "b1 OK 2\n");
  EXPECT_EQ(a.completions, 0);
  EXPECT_EQ(b.completions, 1);
  // Server 1 hosts a only; server 2 hosts b (and c, which has not used the log yet).
  EXPECT_EQ(cluster.dispatchers[0]->sessions().size(), 1u);
  EXPECT_EQ(cluster.dispatchers[1]->sessions().size(), 1u);
  // Both replicas hold the same state; reads on either see every server's sessions.
  EXPECT_EQ(cluster.replicas[0]->snapshot(), cluster.replicas[1]->snapshot());
  // A read is answered once a Sync of its session is applied (so c opens
  // in the log, and lists itself).
  c.send(req::sessions("s"));
  EXPECT_EQ(c.read(), "");
  cluster.settle();
  EXPECT_EQ(c.read(),
            "s ITEM 1 127.0.0.1:40001 v1 0 0 0 0 -\n"
            "s ITEM 2 127.0.0.1:40002 v1 1 0 0 0 -\n"
            "s ITEM 3 127.0.0.1:40003 v1 0 0 0 0 -\n"
            "s END 3\n");
  // A KICK across servers: its host tells the target why.
  a.state.address = kLoopback;
  a.send(req::kick("k", 2));
  cluster.settle();
  EXPECT_EQ(a.read(), "k OK\n");
  EXPECT_EQ(b.read(), "* ERR KICKED kicked by session 1 (127.0.0.1:40001)\n");
  EXPECT_EQ(b.causes, std::vector<stats::EndCause>{stats::EndCause::kKicked});
  EXPECT_EQ(cluster.replicas[1]->sessions().size(), 2u);  // a and c
}

// The log carries a session's resume secret as its SHA-256 digest only:
// RESUMABLE answers the secret made on the host, a RESUME on another server
// with it takes the session over (the log compares digests), and RESUMABLE
// there answers the same secret, which the new host took from the RESUME
// line, not from the entry. No entry and no snapshot holds the secret.
TEST(ClusterDispatcher, TheLogCarriesTheResumeSecretsDigestNotTheSecret) {
  ClusterRun cluster(kThreeV1, {0, 1, 1}, 2);
  ClusterSession& a = *cluster.sessions[0];  // on server 1
  ClusterSession& b = *cluster.sessions[1];  // on server 2
  a.send("r RESUMABLE");
  cluster.settle();
  const std::string answer = a.read();
  ASSERT_EQ(answer.rfind("r OK 1 ", 0), 0u) << answer;
  const std::string secret = answer.substr(7, answer.size() - 8);
  ASSERT_EQ(secret.size(), 32u) << answer;
  a.send(req::acquire("a1", "splunk"));
  cluster.settle();
  EXPECT_EQ(a.read(), "a1 OK 1\n");
  const std::string wrong(32, secret[0] == '0' ? '1' : '0');
  b.send("x RESUME 1 " + wrong);
  cluster.settle();
  EXPECT_EQ(b.read().rfind("x ERR DENIED", 0), 0u);
  ClusterSession& c = *cluster.sessions[2];  // on server 2
  c.send("x RESUME 1 " + secret);
  cluster.settle();
  EXPECT_EQ(c.read(), "x OK 1 0\n");
  c.send("r2 RESUMABLE");
  cluster.settle();
  EXPECT_EQ(c.read(), "r2 OK 1 " + secret + "\n");
  EXPECT_EQ(cluster.replicas[0]->sessions().at(1).host, 2u);
  EXPECT_EQ(cluster.replicas[1]->sessions().at(1).secret_digest, replication::secret_digest(secret));

  EXPECT_EQ(cluster.log.logged.find(secret), std::string::npos) << "the secret in clear in an entry";
  EXPECT_EQ(cluster.log.logged.find(wrong), std::string::npos) << "a shown secret in clear in an entry";
  EXPECT_NE(cluster.log.logged.find(replication::secret_digest(secret)), std::string::npos);
  for (const auto& replica : cluster.replicas) EXPECT_EQ(replica->snapshot().find(secret), std::string::npos);
}

// A server far behind gets a snapshot instead of the entries it missed:
// its hosted sessions that those entries changed unseen (a grant, a lost
// answer) are closed, a pending read is answered from the snapshot, and a
// session nothing happened to goes on.
TEST(ClusterDispatcher, ASnapshotRestoreClosesTheSessionsItChangedUnseen) {
  ClusterRun cluster(kThreeV1, {0, 1, 1}, 2);
  ClusterSession& a = *cluster.sessions[0];  // on server 1
  ClusterSession& b = *cluster.sessions[1];  // on server 2
  ClusterSession& c = *cluster.sessions[2];  // on server 2
  a.send(req::acquire("a1", "splunk"));
  b.send(req::acquire("b1", "splunk"));
  c.send(req::hello("c0"));  // c is in the log
  cluster.settle();
  EXPECT_EQ(a.read(), "a1 OK 1\n");
  EXPECT_EQ(b.read(), "b1 QUEUED 1\n");
  EXPECT_EQ(c.read(), "c0 OK netsem 1.1 3\n");
  // Server 2 falls behind: a's RELEASE grants b in entries it never sees,
  // and c's GET is applied there unseen too.
  cluster.log.pause(1);
  c.send(req::get("g", "splunk"));
  a.send(req::release("r", "splunk"));
  cluster.settle();
  EXPECT_EQ(a.read(), "r OK 0\n");
  EXPECT_EQ(b.read(), "");  // its grant was in the entries skipped
  EXPECT_EQ(c.read(), "");
  cluster.log.restore_from(1, 0);
  // b's grant was never written: its session is closed (the log ends it).
  EXPECT_EQ(b.causes, std::vector<stats::EndCause>{stats::EndCause::kError});
  // c's read is answered from the snapshot, and c goes on.
  EXPECT_EQ(c.read(), "g OK 0 1 1 0 defined\n");
  EXPECT_TRUE(c.causes.empty());
  cluster.settle();
  c.send(req::ping("c1"));
  cluster.settle();
  EXPECT_EQ(c.read(), "c1 PONG\n");
  // b's CloseSession gave its permit back.
  EXPECT_EQ(cluster.replicas[1]->sessions().size(), 2u);  // a and c
  a.send(req::acquire("a2", "splunk"));
  cluster.settle();
  EXPECT_EQ(a.read().rfind("a2 OK ", 0), 0u);
}

// A session that ends while its OpenSession is in flight is closed in the
// log as soon as its id is known; one the log expires closes as on a
// single server's session timeout.
TEST(ClusterDispatcher, SessionsEndedBeforeTheirOpenOrByTheLog) {
  ClusterRun cluster(kThreeV1);
  ClusterSession& a = *cluster.sessions[0];
  a.send(req::acquire("a1", "splunk"));
  cluster.dispatchers[0]->end_session(a.state, stats::EndCause::kClose);
  cluster.settle();
  EXPECT_EQ(cluster.replicas[0]->sessions().size(), 0u);
  EXPECT_EQ(cluster.replicas[0]->table().get("splunk").value, 1);  // its ACQUIRE was never submitted
  // Silence past the session timeout, as the log counts it.
  cluster.log.submit(replication::Reconfigure{cluster.config.semaphores, 3000});
  ClusterSession& b = *cluster.sessions[1];
  b.send(req::acquire("b1", "splunk"));
  cluster.settle();
  EXPECT_EQ(b.read(), "b1 OK 1\n");
  cluster.advance(3000);
  EXPECT_EQ(b.read(), "");
  EXPECT_EQ(b.causes, std::vector<stats::EndCause>{stats::EndCause::kTimeout});
  EXPECT_EQ(cluster.replicas[0]->table().get("splunk").value, 1);
}

// What a single server counts as activity but the log would not see (a
// line answered at once: LEASE) is told it by a TouchSession, at most one
// per tenth of the session timeout; a PING or a read is itself activity in
// the log (a SYNC), answered once applied.
TEST(ClusterDispatcher, ReadsPingsAndLocalLinesKeepTheSessionAliveInTheLog) {
  ClusterRun cluster(kThreeV1);
  cluster.log.submit(replication::Reconfigure{cluster.config.semaphores, 3000});
  ClusterSession& b = *cluster.sessions[1];
  b.send(req::acquire("b1", "splunk"));
  cluster.settle();
  EXPECT_EQ(b.read(), "b1 OK 1\n");
  cluster.advance(2000);
  const int entries = cluster.log.entries;
  // A PING and a read are answered once their Sync is applied: each is the
  // session's activity in the log, and reads the replica as of then.
  b.send(req::ping("p", "xy"));
  b.send(req::get("g", "splunk"));
  EXPECT_EQ(b.read(), "");
  cluster.settle();
  EXPECT_EQ(b.read(), "p PONG xy\ng OK 0 1 1 0 defined\n");
  EXPECT_EQ(cluster.log.entries, entries + 2);
  // A line answered here (LEASE: the replicated timeout) submits one
  // TouchSession, at most one per tenth of the timeout.
  cluster.advance(400);
  const int before_lease = cluster.log.entries;
  b.send("l LEASE");
  b.send("l2 LEASE");
  EXPECT_EQ(b.read(), "l OK 3000\nl2 OK 3000\n");
  cluster.settle();
  EXPECT_EQ(cluster.log.entries, before_lease + 1);
  cluster.advance(2000);  // 2 s after the touch: still there
  EXPECT_TRUE(b.causes.empty());
  EXPECT_EQ(cluster.replicas[0]->sessions().size(), 1u);
  cluster.advance(1000);  // 3 s after it
  EXPECT_EQ(b.causes, std::vector<stats::EndCause>{stats::EndCause::kTimeout});
}
}  // namespace
}  // namespace netsem::server
