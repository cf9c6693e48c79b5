// Integration tests of the client's protocol 1.1 calls (holders, waiters,
// sessions, kick) and of what it reads from HELLO: Clients against the real
// netsemd (started by the harness on a loopback port), and against a fake
// server that speaks 1.0 or answers HELLO badly. Every wait is bounded.
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <thread>

#include "client/local_semaphores.h"
#include "netsem/client.h"
#include "netsemd_harness.h"
#include "support/eventually.h"
#include "support/free_port.h"
#include "support/line_server.h"

namespace netsem {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using netsem::testing::Netsemd;

using test_support::eventually;

class ClientListingsTest : public ::testing::Test {
 protected:
  void TearDown() override { (void)client::LocalSemaphores(scratch_.path() / "local").remove_all(); }

  void start_server(std::string server_options = {}) {
    std::string error;
    server_ = Netsemd::start(netsem::testing::with_server_options(std::move(server_options)), &error);
    ASSERT_TRUE(server_) << error;
  }

  ClientOptions options_for(std::uint16_t port, std::string label) const {
    ClientOptions options;
    options.servers = {"127.0.0.1:" + std::to_string(port)};
    options.local_dir = scratch_.path() / "local";
    options.label = std::move(label);
    options.connect_timeout = 1s;
    options.reconnect_min = 20ms;
    options.reconnect_max = 100ms;
    options.request_timeout = 5s;
    return options;
  }

  std::unique_ptr<Client> make_client(std::string label) {
    Result<std::unique_ptr<Client>> client = Client::create(options_for(server_->port(), std::move(label)));
    EXPECT_TRUE(client) << client.status().to_string();
    if (!client) return nullptr;
    EXPECT_TRUE((*client)->connected()) << (*client)->stats().unreachable;
    return std::move(*client);
  }

  netsem::testing::TempDir scratch_;
  std::unique_ptr<Netsemd> server_;
};

// A permit of db, and another client's ACQUIRE of db (20 s) queued behind it.
struct HeldAndQueued {
  Permit held;
  std::future<Result<Permit>> queued;
};

// `holder` takes db, then `waiter` asks for it and waits, until `observer`
// lists that one waiter. `stage` must outlive neither client.
void hold_and_queue(Client& holder, Client& waiter, Client& observer, HeldAndQueued& stage) {
  Result<Permit> held = holder.acquire("db");
  ASSERT_TRUE(held) << held.status().to_string();
  stage.held = std::move(*held);
  stage.queued = std::async(std::launch::async, [&waiter] { return waiter.acquire("db", {.timeout = 20s}); });
  ASSERT_TRUE(eventually([&] {
    auto rows = observer.waiters("db");
    return rows && rows->size() == 1;
  }));
}

// Whether `client` is connected again within 3 s, as a session other than
// `old_id` (after a KICK ended that one).
bool reconnected_as_a_new_session(const Client& client, std::uint64_t old_id) {
  return eventually([&] {
    const std::uint64_t id = client.stats().session_id;
    return client.connected() && id != 0 && id != old_id;
  });
}

const SessionInfo* find_session(const std::vector<SessionInfo>& sessions, std::uint64_t id) {
  const auto it = std::find_if(sessions.begin(), sessions.end(), [id](const auto& s) { return s.session_id == id; });
  return it == sessions.end() ? nullptr : &*it;
}

TEST_F(ClientListingsTest, HoldersWaitersAndSessionsShowTheOtherClients) {
  start_server();
  auto holder = make_client("holder");
  auto waiter = make_client("the%20waiter");  // a `%` label comes back as it was set
  auto observer = make_client("observer");
  ASSERT_TRUE(holder && waiter && observer);
  EXPECT_EQ(observer->stats().protocol, "1.1");
  const std::uint64_t holder_id = holder->stats().session_id;
  const std::uint64_t waiter_id = waiter->stats().session_id;
  ASSERT_NE(holder_id, 0u);
  ASSERT_NE(waiter_id, 0u);
  ASSERT_NE(holder_id, waiter_id);

  HeldAndQueued db;
  ASSERT_NO_FATAL_FAILURE(hold_and_queue(*holder, *waiter, *observer, db));

  Result<std::vector<HolderInfo>> holders = observer->holders("db");
  ASSERT_TRUE(holders) << holders.status().to_string();
  ASSERT_EQ(holders->size(), 1u);
  EXPECT_EQ((*holders)[0].session_id, holder_id);
  EXPECT_EQ((*holders)[0].count, 1);
  EXPECT_EQ((*holders)[0].fence, db.held.fence().value_or(0));
  EXPECT_EQ((*holders)[0].label, "holder");
  EXPECT_GE((*holders)[0].held.count(), 0);

  Result<std::vector<WaiterInfo>> waiters = observer->waiters("db");
  ASSERT_TRUE(waiters) << waiters.status().to_string();
  ASSERT_EQ(waiters->size(), 1u);
  EXPECT_EQ((*waiters)[0].session_id, waiter_id);
  EXPECT_EQ((*waiters)[0].count, 1);
  EXPECT_EQ((*waiters)[0].label, "the%20waiter");
  ASSERT_TRUE((*waiters)[0].timeout_left.has_value());
  EXPECT_LE(*(*waiters)[0].timeout_left, 20s);
  EXPECT_GT(*(*waiters)[0].timeout_left, 10s);

  Result<std::vector<SessionInfo>> sessions = observer->sessions();
  ASSERT_TRUE(sessions) << sessions.status().to_string();
  ASSERT_EQ(sessions->size(), 3u);
  EXPECT_TRUE(std::is_sorted(sessions->begin(), sessions->end(),
                             [](const auto& a, const auto& b) { return a.session_id < b.session_id; }));
  const SessionInfo* h = find_session(*sessions, holder_id);
  const SessionInfo* w = find_session(*sessions, waiter_id);
  const SessionInfo* o = find_session(*sessions, observer->stats().session_id);
  ASSERT_TRUE(h && w && o);
  EXPECT_EQ(h->label, "holder");
  EXPECT_EQ(h->dialect, "v1");
  EXPECT_EQ(h->permits_held, 1);
  EXPECT_EQ(h->pending, 0);
  EXPECT_EQ(h->peer.rfind("127.0.0.1:", 0), 0u) << h->peer;
  EXPECT_EQ(w->permits_held, 0);
  EXPECT_EQ(w->pending, 1);
  EXPECT_EQ(o->label, "observer");

  // A waiter without a timeout has no time left to show.
  ASSERT_TRUE(db.held.release().is_ok());
  Result<Permit> granted = db.queued.get();
  ASSERT_TRUE(granted) << granted.status().to_string();
  auto forever = std::async(std::launch::async, [&] { return holder->acquire("db"); });
  ASSERT_TRUE(eventually([&] {
    auto rows = observer->waiters("db");
    return rows && rows->size() == 1 && !(*rows)[0].timeout_left.has_value();
  }));
  ASSERT_TRUE(granted->release().is_ok());
  Result<Permit> last = forever.get();
  ASSERT_TRUE(last) << last.status().to_string();
  holders = observer->holders("db");
  ASSERT_TRUE(holders);
  ASSERT_EQ(holders->size(), 1u);
  EXPECT_EQ((*holders)[0].session_id, holder_id);
  EXPECT_EQ((*holders)[0].fence, last->fence().value_or(0));
}

TEST_F(ClientListingsTest, KickGivesTheKickedSessionsPermitToTheWaiter) {
  start_server();
  auto victim = make_client("victim");
  auto waiter = make_client("waiter");
  auto admin = make_client("admin");
  ASSERT_TRUE(victim && waiter && admin);
  const std::uint64_t victim_id = victim->stats().session_id;

  HeldAndQueued db;
  ASSERT_NO_FATAL_FAILURE(hold_and_queue(*victim, *waiter, *admin, db));
  std::promise<Status> lost;
  db.held.on_lost([&lost](const Status& reason) { lost.set_value(reason); });

  const std::uint64_t victim_fence = db.held.fence().value_or(0);
  EXPECT_GT(victim_fence, 0u);
  const Status kicked = admin->kick(victim_id);
  ASSERT_TRUE(kicked.is_ok()) << kicked.to_string();
  // The kicked client is told it lost its permit ...
  auto reason = lost.get_future();
  ASSERT_EQ(reason.wait_for(5s), std::future_status::ready);
  const Status why = reason.get();
  EXPECT_EQ(why.code(), StatusCode::kUnavailable);
  EXPECT_NE(why.message().find("KICK"), std::string::npos) << why.to_string();
  EXPECT_TRUE(db.held.lost());
  // ... and stops its work: only then does this host (both clients run in
  // this process) take the name again from the server, which has already
  // granted it to the waiter with a later fence.
  EXPECT_EQ(db.held.release().code(), StatusCode::kUnavailable);
  Result<Permit> granted = db.queued.get();
  ASSERT_TRUE(granted) << granted.status().to_string();
  EXPECT_FALSE(granted->is_local());
  EXPECT_GT(granted->fence().value_or(0), victim_fence);

  // The kicked client reconnects as a new session; the old id names none.
  ASSERT_TRUE(reconnected_as_a_new_session(*victim, victim_id));
  EXPECT_EQ(victim->stats().connection_losses, 1u);
  const Status again = admin->kick(victim_id);
  EXPECT_EQ(again.code(), StatusCode::kNotFound) << again.to_string();
  Result<std::vector<HolderInfo>> holders = admin->holders("db");
  ASSERT_TRUE(holders);
  ASSERT_EQ(holders->size(), 1u);
  EXPECT_EQ((*holders)[0].session_id, waiter->stats().session_id);
}

// A KICK the client hears (`* ERR KICKED` on its live connection) is an
// operator's decision: the queued ACQUIRE fails with it, neither sent again
// on the client's next session (rule 9 of docs/client.md is for sessions
// that ended without a word) nor served by a host-local semaphore.
TEST_F(ClientListingsTest, AKickedWaitersAcquireFailsAndIsNotSentAgain) {
  start_server();
  auto holder = make_client("holder");
  auto waiter = make_client("waiter");
  auto admin = make_client("admin");
  ASSERT_TRUE(holder && waiter && admin);
  const std::uint64_t waiter_id = waiter->stats().session_id;
  HeldAndQueued db;
  ASSERT_NO_FATAL_FAILURE(hold_and_queue(*holder, *waiter, *admin, db));
  ASSERT_TRUE(admin->kick(waiter_id).is_ok());
  ASSERT_EQ(db.queued.wait_for(5s), std::future_status::ready) << "the kicked ACQUIRE still waits";
  Result<Permit> outcome = db.queued.get();
  ASSERT_FALSE(outcome) << (outcome->is_local() ? "served by a host-local semaphore" : "granted by the server");
  EXPECT_EQ(outcome.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(outcome.status().message().find("KICK"), std::string::npos) << outcome.status().to_string();
  // The client reconnects as a new session, which waits for nothing.
  ASSERT_TRUE(reconnected_as_a_new_session(*waiter, waiter_id));
  std::this_thread::sleep_for(200ms);
  Result<std::vector<WaiterInfo>> waiters = admin->waiters("db");
  ASSERT_TRUE(waiters) << waiters.status().to_string();
  EXPECT_TRUE(waiters->empty());
  EXPECT_EQ(waiter->stats().local_grants, 0u);
}

TEST_F(ClientListingsTest, AClientCanKickItsOwnSession) {
  start_server();
  auto self = make_client("self");
  ASSERT_TRUE(self);
  const std::uint64_t id = self->stats().session_id;
  Result<Permit> held = self->acquire("db");
  ASSERT_TRUE(held);
  const Status kicked = self->kick(id);
  EXPECT_TRUE(kicked.is_ok()) << kicked.to_string();
  ASSERT_TRUE(eventually([&] { return held->lost(); }));
  ASSERT_TRUE(reconnected_as_a_new_session(*self, id));
}

TEST_F(ClientListingsTest, KickWithoutTheAdminRightIsDeniedAndTheSessionStays) {
  start_server("admin_networks = 10.0.0.0/8");
  auto victim = make_client("victim");
  auto other = make_client("other");
  ASSERT_TRUE(victim && other);
  const Status denied = other->kick(victim->stats().session_id);
  EXPECT_EQ(denied.code(), StatusCode::kDenied) << denied.to_string();
  EXPECT_NE(denied.message().find("admin"), std::string::npos) << denied.to_string();
  // Only the KICK was refused: both sessions go on, the asking one too.
  EXPECT_EQ(other->stats().connects, 1u);
  Result<std::vector<SessionInfo>> sessions = other->sessions();
  ASSERT_TRUE(sessions) << sessions.status().to_string();
  EXPECT_EQ(sessions->size(), 2u);
  EXPECT_EQ(other->stats().connection_losses, 0u);
}

TEST_F(ClientListingsTest, BadArgumentsAndAbsentNamesAreRefused) {
  start_server();
  auto client = make_client("c");
  ASSERT_TRUE(client);
  EXPECT_EQ(client->holders("nothing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client->waiters("nothing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client->holders("$local").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->waiters("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->holders("a\nb").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->kick(0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->kick(~std::uint64_t{0}).code(), StatusCode::kNotFound);
  // A semaphore nobody holds or waits on: empty listings, not errors.
  ASSERT_TRUE(client->create("idle", 2, 2).is_ok());
  auto holders = client->holders("idle");
  ASSERT_TRUE(holders) << holders.status().to_string();
  EXPECT_TRUE(holders->empty());
  auto waiters = client->waiters("idle");
  ASSERT_TRUE(waiters) << waiters.status().to_string();
  EXPECT_TRUE(waiters->empty());
  Result<std::string> stats = client->server_stats();
  ASSERT_TRUE(stats) << stats.status().to_string();
  EXPECT_EQ(stats->front(), '{');
  EXPECT_NE(stats->find("\"session_timeout_ms\":"), std::string::npos) << *stats;
}

TEST_F(ClientListingsTest, WithoutAServerTheCallsFailAsUnavailable) {
  const std::uint16_t port = test_support::free_port_below_ephemeral();
  ASSERT_NE(port, 0);
  ClientOptions options = options_for(port, "x");
  options.connect_timeout = 200ms;
  auto client = Client::create(options);
  ASSERT_TRUE(client);
  EXPECT_EQ((*client)->stats().protocol, "");
  EXPECT_EQ((*client)->holders("db").status().code(), StatusCode::kUnavailable);
  EXPECT_EQ((*client)->sessions().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ((*client)->kick(3).code(), StatusCode::kUnavailable);
  EXPECT_EQ((*client)->server_stats().status().code(), StatusCode::kUnavailable);
}

// A fake server's answers (test_support::LineServer): HELLO with `hello`
// ("netsem 1 7" for a 1.0 server), STATS with a session timeout of 0, and
// every other request ERR UNKNOWN_VERB (as a 1.0 server answers OPTION and
// the 1.1 verbs).
test_support::LineServer::Answer version(std::string hello) {
  return [hello](int, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (f[1] == "HELLO") return "OK " + hello;
    if (f[1] == "STATS") return "OK {\"session_timeout_ms\":0}";
    return "ERR UNKNOWN_VERB unknown verb";
  };
}

TEST_F(ClientListingsTest, AServerOfProtocol10GetsAClearErrorAndNoRequest) {
  test_support::LineServer fake(version("netsem 1 7"));
  auto client = Client::create(options_for(fake.port(), "x"));
  ASSERT_TRUE(client);
  ASSERT_TRUE((*client)->connected()) << (*client)->stats().unreachable;
  EXPECT_EQ((*client)->stats().protocol, "1.0");
  EXPECT_EQ((*client)->stats().session_id, 7u);
  const std::string expected = "server 127.0.0.1:" + std::to_string(fake.port()) + " speaks protocol 1.0; ";
  const struct {
    Status status;
    const char* verb;
  } cases[] = {
      {(*client)->holders("db").status(), "HOLDERS"},
      {(*client)->waiters("db").status(), "WAITERS"},
      {(*client)->sessions().status(), "SESSIONS"},
      {(*client)->kick(3), "KICK"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(c.status.code(), StatusCode::kProtocol) << c.status.to_string();
    EXPECT_EQ(c.status.message(), expected + c.verb + " needs 1.1");
  }
  // Told before anything was sent; the session goes on (a 1.0 server still
  // serves everything of 1.0).
  for (const std::string& line : fake.lines()) {
    const auto fields = test_support::LineServer::split(line);
    const std::string verb = fields.size() > 1 ? fields[1] : "";
    EXPECT_TRUE(verb == "HELLO" || verb == "LEASE" || verb == "STATS" || verb == "OPTION" || verb == "PING" ||
                verb == "RESUMABLE" || verb == "LEADER")
        << verb;
  }
  EXPECT_TRUE((*client)->connected());
}

TEST_F(ClientListingsTest, AServerThatAnswersUnknownVerbToA11VerbIsReadAs10) {
  // A server that says 1.1 but does not know HOLDERS (a build in between):
  // its UNKNOWN_VERB is the same clear error, not a library bug.
  test_support::LineServer fake(version("netsem 1.1 9"));
  auto client = Client::create(options_for(fake.port(), "x"));
  ASSERT_TRUE(client);
  ASSERT_TRUE((*client)->connected());
  const Status status = (*client)->holders("db").status();
  EXPECT_EQ(status.code(), StatusCode::kProtocol) << status.to_string();
  EXPECT_NE(status.message().find("HOLDERS needs 1.1"), std::string::npos) << status.to_string();
}

TEST_F(ClientListingsTest, AHelloAnswerThatIsNotProtocolV1IsARefusal) {
  for (const char* hello : {"welcome", "netsem 2.0 7", "netsem 1.1", "netsem 1.1 0"}) {
    test_support::LineServer fake(version(hello));
    ClientOptions options = options_for(fake.port(), "x");
    options.connect_timeout = 500ms;
    auto client = Client::create(options);
    ASSERT_TRUE(client);
    EXPECT_FALSE((*client)->connected()) << hello;
    Result<Permit> permit = (*client)->acquire("db", {.timeout = 0ms});
    ASSERT_FALSE(permit) << hello;
    EXPECT_EQ(permit.status().code(), StatusCode::kProtocol) << hello << ": " << permit.status().to_string();
    EXPECT_NE(permit.status().message().find("answered HELLO with"), std::string::npos) << permit.status().message();
  }
}

}  // namespace
}  // namespace netsem
