// Resuming a session on a single server (issue 16; docs/client.md, "Resuming
// the session"): a Client behind a TcpProxy the test controls, against the
// real netsemd. A connection reset keeps the permit, a queued ACQUIRE and a
// queued WAIT (the session is resumed on a new connection, RESUME + MINE;
// scripted: a WAIT granted between RESUME and MINE); a RESUME after the
// server's restart is answered NOT_FOUND and the permit is lost then; a
// Client closed cleanly ends its resumable session at once (QUIT). A grant
// read before its caller has the permit in hand is not handed again to
// another ACQUIRE by the settling. A fake 1.2 server that says `* ERR
// SHUTDOWN`, then answers RESUME but refuses MINE: the client closes
// without QUIT (the session keeps its timeout, as the loss's stop_by says).
// The real netsemd frozen during a resume: the silent RESUME attempt's
// connection is kept and the session resumed on it (rule 10). A late RESUME
// of the client's own session (the secret read through the proxy) moves it:
// resumed as after a dropped connection, while an administrator's KICK is
// still a KICK (rule 11); a kept RESUME attempt given up is closed without
// QUIT, which would end the session it takes when read late (rule 9c).
// A scripted fake server: a Client closed during its resume, after RESUME's
// OK, QUITs the resumed session; a `* ERR KICKED` right after RESUME's OK
// ends the session as kicked, unless it says another RESUME of ours took
// it (the resume goes on); a 1.1 server never gets RESUME; a GET made
// between two sessions answers the next round's refusal; rule 9's
// edges (a try is tried again; a server that broke the protocol is not
// asked again; a cancel ends the wait for the next session at once).
// Every wait is bounded; each test takes a few seconds.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/local_semaphores.h"
#include "netsem/cancel_token.h"
#include "netsem/client.h"
#include "netsem/log.h"
#include "netsemd_harness.h"
#include "support/eventually.h"
#include "support/free_port.h"
#include "support/line_server.h"
#include "support/own_sockets.h"
#include "support/request_lines.h"
#include "tcp_proxy.h"

namespace netsem {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using netsem::testing::Frozen;
using netsem::testing::Netsemd;
namespace req = netsem::testing::req;

using test_support::eventually;
using test_support::LineServer;

class ClientResumeTest : public ::testing::Test {
 protected:
  void TearDown() override { EXPECT_TRUE(client::LocalSemaphores(local_dir()).remove_all().is_ok()); }

  std::filesystem::path local_dir() const { return scratch_.path() / "local"; }

  void start_server(std::uint16_t port = 0) {
    Netsemd::Options options;
    options.server_options = "session_timeout_ms = 6000";
    options.semaphores = "lic = 1\ndb = 2";
    options.port = port;
    if (!data_dir_.empty()) options.data_dir = data_dir_;
    std::string error;
    server_ = Netsemd::start(options, &error);
    ASSERT_TRUE(server_) << error;
    data_dir_ = server_->data_dir();
  }

  std::unique_ptr<Client> client_through(std::uint16_t port, std::chrono::milliseconds reconnect_min = 20ms,
                                         std::chrono::milliseconds reconnect_max = 100ms) {
    ClientOptions options;
    options.servers = {"127.0.0.1:" + std::to_string(port)};
    options.local_dir = local_dir();
    options.connect_timeout = 500ms;
    options.reconnect_min = reconnect_min;
    options.reconnect_max = reconnect_max;
    options.request_timeout = 3s;
    options.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kFail};
    Result<std::unique_ptr<Client>> client = Client::create(std::move(options));
    EXPECT_TRUE(client) << client.status().to_string();
    return client ? std::move(*client) : nullptr;
  }

  // The server, a TcpProxy in front of it (proxy_), and a client through
  // the proxy; nullptr (the test failed) unless it is connected.
  std::unique_ptr<Client> start_behind_proxy() {
    start_server();
    if (!server_) return nullptr;
    proxy_ = std::make_unique<testing::TcpProxy>(server_->port());
    EXPECT_NE(proxy_->port(), 0);
    auto client = client_through(proxy_->port());
    EXPECT_TRUE(client && client->connected());
    return client && client->connected() ? std::move(client) : nullptr;
  }

  // True when the server shows one request queued on `name`.
  bool one_waiter(std::string_view name) {
    auto look = netsem::testing::Client::connect(server_->port());
    if (!look) return false;
    const auto fields = netsem::testing::fields(look->request(req::get("g", name)));
    return fields.size() > 5 && fields[5] == "1";
  }

  // A try-ACQUIRE of `name` by another session, straight to the server.
  std::string try_acquire(const std::string& name) {
    auto other = netsem::testing::Client::connect(server_->port());
    return other ? other->request(req::acquire("t", name, 1, 0)) : "<no connection>";
  }

  // `holder` holds lic (`lic`, its losses counted in lic_lost_), and its
  // ACQUIRE of db (8 s, `db`) waits behind owner_, which holds both of db's
  // permits, until the server lists it as db's one waiter.
  void hold_and_queue(Client& holder, std::optional<Permit>& lic, std::future<Result<Permit>>& db) {
    Result<Permit> held = holder.acquire("lic");
    ASSERT_TRUE(held) << held.status().to_string();
    ASSERT_FALSE(held->is_local());
    held->on_lost([this](const Status& reason) {
      std::lock_guard lock(lost_mutex_);
      lic_lost_.push_back(reason);
    });
    lic = std::move(*held);
    owner_ = netsem::testing::Client::connect(server_->port());
    ASSERT_TRUE(owner_);
    ASSERT_EQ(netsem::testing::fields(owner_->request(req::acquire("a", "db", 2)))[1], "OK");
    db = std::async(std::launch::async, [&holder] { return holder.acquire("db", {.timeout = 8s}); });
    ASSERT_TRUE(eventually([&] { return one_waiter("db"); })) << server_->log();
  }
  std::vector<Status> lic_lost() {
    std::lock_guard lock(lost_mutex_);
    return lic_lost_;
  }

  netsem::testing::TempDir scratch_;
  std::filesystem::path data_dir_;
  std::unique_ptr<Netsemd> server_;
  std::unique_ptr<testing::TcpProxy> proxy_;        // start_behind_proxy's
  std::unique_ptr<netsem::testing::Client> owner_;  // hold_and_queue's holder of db
  std::mutex lost_mutex_;
  std::vector<Status> lic_lost_;  // guarded by lost_mutex_
};

// RESUMABLE's secret for `session`, from what the server said through
// `proxy` ("<tag> OK <id> <secret>": no other answer of a handshake or of an
// ACQUIRE has that shape); empty until it passed.
std::string secret_of(testing::TcpProxy& proxy, std::uint64_t session) {
  const std::string said = proxy.from_target();
  std::size_t from = 0;
  for (std::size_t end; (end = said.find('\n', from)) != std::string::npos; from = end + 1) {
    const auto fields = netsem::testing::fields(std::string_view(said).substr(from, end - from));
    if (fields.size() == 4 && fields[1] == "OK" && fields[2] == std::to_string(session)) return fields[3];
  }
  return {};
}

TEST_F(ClientResumeTest, AConnectionResetKeepsThePermit) {
  auto holder = start_behind_proxy();
  ASSERT_TRUE(holder);
  Result<Permit> permit = holder->acquire("lic");
  ASSERT_TRUE(permit) << permit.status().to_string();
  ASSERT_FALSE(permit->is_local());
  const std::uint64_t fence = permit->fence().value_or(0);
  std::atomic<bool> lost{false};
  permit->on_lost([&](const Status&) { lost = true; });
  const std::uint64_t session = holder->stats().session_id;

  const auto reset_at = Clock::now();
  proxy_->reset();
  ASSERT_TRUE(eventually([&] { return holder->stats().resumes == 1; })) << server_->log();
  std::printf("resumed %lld ms after the reset\n", static_cast<long long>((Clock::now() - reset_at) / 1ms));
  EXPECT_FALSE(lost.load());
  EXPECT_FALSE(permit->lost());
  EXPECT_EQ(holder->stats().session_id, session);
  EXPECT_EQ(holder->stats().connects, 1u);
  EXPECT_EQ(holder->stats().connection_losses, 0u);
  EXPECT_EQ(try_acquire("lic"), "t TIMEOUT");

  // The session goes on: the release reaches the server, which lets the next in.
  ASSERT_TRUE(permit->release().is_ok());
  EXPECT_EQ(netsem::testing::fields(try_acquire("lic"))[1], "OK");
  Result<Permit> again = holder->acquire("lic", {.timeout = 2s});
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_GT(again->fence().value_or(0), fence);
}

// The resume's log line counts the permits the session holds, not its
// grants: an ACQUIRE of 2 of "db" and one of "lic" are "3 permits kept"
// (before: 2, one per grant).
TEST_F(ClientResumeTest, TheResumeLogCountsThePermitsHeldNotTheGrants) {
  std::mutex mutex;
  std::vector<std::string> lines;  // guarded by mutex
  set_log_level(LogLevel::kInfo);
  set_log_handler([&](LogLevel, std::string_view message) {
    std::lock_guard lock(mutex);
    lines.emplace_back(message);
  });
  struct Restore {
    ~Restore() {
      set_log_handler({});
      set_log_level(LogLevel::kWarning);
    }
  } restore;
  const auto resumed_line = [&] {
    std::lock_guard lock(mutex);
    for (const std::string& line : lines) {
      if (line.starts_with("resumed session")) return line;
    }
    return std::string();
  };
  auto holder = start_behind_proxy();
  ASSERT_TRUE(holder);
  Result<Permit> two = holder->acquire("db", {.count = 2});
  ASSERT_TRUE(two) << two.status().to_string();
  Result<Permit> one = holder->acquire("lic");
  ASSERT_TRUE(one) << one.status().to_string();
  proxy_->reset();
  ASSERT_TRUE(eventually([&] { return !resumed_line().empty(); })) << server_->log();
  EXPECT_NE(resumed_line().find(", 3 permits kept"), std::string::npos) << resumed_line();
  EXPECT_FALSE(two->lost());
  EXPECT_FALSE(one->lost());
}

TEST_F(ClientResumeTest, AQueuedAcquireIsGrantedAfterAReset) {
  start_server();
  testing::TcpProxy proxy(server_->port());
  ASSERT_NE(proxy.port(), 0);
  auto owner = netsem::testing::Client::connect(server_->port());
  ASSERT_TRUE(owner);
  ASSERT_EQ(netsem::testing::fields(owner->request(req::acquire("a", "lic")))[1], "OK");
  auto waiter = client_through(proxy.port());
  ASSERT_TRUE(waiter && waiter->connected());
  auto granted = std::async(std::launch::async, [&] { return waiter->acquire("lic", {.timeout = 8s}); });
  ASSERT_TRUE(eventually([&] { return one_waiter("lic"); }));
  proxy.reset();
  ASSERT_TRUE(eventually([&] { return waiter->stats().resumes == 1; })) << server_->log();
  EXPECT_EQ(granted.wait_for(300ms), std::future_status::timeout) << "the acquire ended before the grant";
  ASSERT_EQ(netsem::testing::fields(owner->request(req::release("r", "lic")))[1], "OK");
  ASSERT_EQ(granted.wait_for(3s), std::future_status::ready);
  Result<Permit> permit = granted.get();
  ASSERT_TRUE(permit) << permit.status().to_string();
  EXPECT_FALSE(permit->is_local());
  EXPECT_FALSE(permit->lost());
  EXPECT_EQ(try_acquire("lic"), "t TIMEOUT");
  EXPECT_EQ(waiter->stats().connection_losses, 0u);
}

// A WAIT queued when the connection breaks (newuser25 §9): MINE lists its
// tag as queued, so it keeps waiting on the resumed connection, and a POST
// made after the resume grants it. Before, it failed "outcome unknown".
TEST_F(ClientResumeTest, AQueuedWaitIsGrantedAfterAReset) {
  auto waiter = start_behind_proxy();
  ASSERT_TRUE(waiter);
  ASSERT_TRUE(waiter->create("jobs", 0, 10).is_ok());
  auto waited = std::async(std::launch::async, [&] { return waiter->wait("jobs", {.timeout = 8s}); });
  ASSERT_TRUE(eventually([&] { return one_waiter("jobs"); }));
  proxy_->reset();
  ASSERT_TRUE(eventually([&] { return waiter->stats().resumes == 1; })) << server_->log();
  if (waited.wait_for(300ms) == std::future_status::ready) {
    FAIL() << "the WAIT ended before the POST: " << waited.get().to_string();
  }
  auto poster = netsem::testing::Client::connect(server_->port());
  ASSERT_TRUE(poster);
  ASSERT_EQ(netsem::testing::fields(poster->request(req::post("p", "jobs")))[1], "OK");
  ASSERT_EQ(waited.wait_for(3s), std::future_status::ready);
  const Status status = waited.get();
  EXPECT_TRUE(status.is_ok()) << status.to_string();
  EXPECT_EQ(poster->request(req::get("g", "jobs")), "g OK 0 10 0 0 created");
  EXPECT_EQ(waiter->stats().connection_losses, 0u);
}

// Rule 11 (docs/client.md, "Resuming the session"): a RESUME of its own
// session that the client gave up on (here played by the test, which reads
// the secret the server gave the client) is read after the session went on
// elsewhere, and takes it: the connection that served it hears `* ERR
// KICKED resumed on another connection`. That is a dropped connection, not
// an administrator's KICK: the client resumes the session, which the server
// kept with its permit and its queued ACQUIRE. Before rule 11 the permit
// was lost and the queued ACQUIRE failed "ended the session by KICK".
TEST_F(ClientResumeTest, ALateResumeOfItsOwnMovesTheSessionWhichTheClientResumesNotAKick) {
  auto holder = start_behind_proxy();
  ASSERT_TRUE(holder);
  std::optional<Permit> lic;
  std::future<Result<Permit>> db;
  ASSERT_NO_FATAL_FAILURE(hold_and_queue(*holder, lic, db));
  const std::uint64_t id = holder->stats().session_id;
  std::string secret;
  ASSERT_TRUE(eventually([&] { return !(secret = secret_of(*proxy_, id)).empty(); })) << proxy_->from_target();

  // The abandoned attempt, read late: it takes the session, then its
  // connection closes (the session waits, resumable, at the server).
  {
    auto late = netsem::testing::Client::connect(server_->port());
    ASSERT_TRUE(late);
    ASSERT_EQ(netsem::testing::fields(late->request(req::resume("r", id, secret)))[1], "OK");
  }
  ASSERT_TRUE(eventually([&] { return holder->stats().resumes == 1; })) << server_->log();
  EXPECT_TRUE(lic_lost().empty()) << lic_lost().front().to_string();
  EXPECT_FALSE(lic->lost());
  const ClientStats stats = holder->stats();
  EXPECT_EQ(stats.session_id, id);
  EXPECT_EQ(stats.connects, 1u);
  EXPECT_EQ(stats.connection_losses, 0u);
  // The session holds lic at the server, and db's ACQUIRE still waits there.
  EXPECT_EQ(try_acquire("lic"), "t TIMEOUT");
  Result<std::vector<HolderInfo>> holders = holder->holders("lic");
  ASSERT_TRUE(holders) << holders.status().to_string();
  ASSERT_EQ(holders->size(), 1u);
  EXPECT_EQ((*holders)[0].session_id, id);
  EXPECT_EQ(db.wait_for(200ms), std::future_status::timeout) << "the queued ACQUIRE ended with the move";
  ASSERT_EQ(netsem::testing::fields(owner_->request(req::release("r", "db", 2)))[1], "OK");
  ASSERT_EQ(db.wait_for(3s), std::future_status::ready);
  Result<Permit> granted = db.get();
  ASSERT_TRUE(granted) << granted.status().to_string();
  EXPECT_FALSE(granted->is_local());
  EXPECT_FALSE(granted->lost());
  EXPECT_TRUE(lic->release().is_ok());
  EXPECT_TRUE(lic_lost().empty());
}

// Rule 9c's other half: a kept RESUME attempt given up is closed plainly,
// never with QUIT, which after a RESUME the server reads late would end the
// session it took, permits and all. The proxy frozen (its kernel still
// accepts: a server frozen behind it) as it resets the session's
// connection: the resume's attempt through it is silent and kept (rule
// 10), and the server itself (as LEADER names it) resumes the session,
// which gives that attempt up. When the proxy thaws it forwards what the
// client wrote there: a RESUME that takes the session (rule 11: the client
// resumes it again), then the close. A QUIT there would end the session:
// the permit lost, and the server counting a QUIT.
TEST_F(ClientResumeTest, AKeptResumeAttemptGivenUpIsClosedWithoutQuit) {
  auto holder = start_behind_proxy();
  ASSERT_TRUE(holder);
  Result<Permit> permit = holder->acquire("lic");
  ASSERT_TRUE(permit) << permit.status().to_string();
  std::atomic<bool> lost{false};
  permit->on_lost([&](const Status&) { lost = true; });
  proxy_->freeze();
  proxy_->reset();
  ASSERT_TRUE(eventually([&] { return holder->stats().resumes == 1; })) << server_->log();
  EXPECT_EQ(holder->stats().server, "127.0.0.1:" + std::to_string(server_->port()));
  proxy_->thaw();
  ASSERT_TRUE(eventually([&] { return holder->stats().resumes == 2 || lost; })) << server_->log();
  EXPECT_FALSE(lost.load());
  EXPECT_FALSE(permit->lost());
  EXPECT_EQ(holder->stats().connection_losses, 0u);
  EXPECT_EQ(try_acquire("lic"), "t TIMEOUT");
  auto look = netsem::testing::Client::connect(server_->port());
  ASSERT_TRUE(look);
  const std::string stats = look->request(req::stats("s"));
  EXPECT_NE(stats.find("\"session_ends_quit_total\":0,"), std::string::npos) << stats;
  ASSERT_TRUE(permit->release().is_ok());
}

// Rule 11 reads only the move's words: an administrator's KICK of a
// resumable session (the real KICK) still ends it, permits lost at once, the
// queued ACQUIRE failed and not sent again, no RESUME.
TEST_F(ClientResumeTest, AnAdministratorsKickOfAResumableSessionIsStillAKick) {
  start_server();
  auto holder = client_through(server_->port());
  ASSERT_TRUE(holder && holder->connected());
  std::optional<Permit> lic;
  std::future<Result<Permit>> db;
  ASSERT_NO_FATAL_FAILURE(hold_and_queue(*holder, lic, db));
  const std::uint64_t id = holder->stats().session_id;
  auto admin = netsem::testing::Client::connect(server_->port());
  ASSERT_TRUE(admin);
  ASSERT_EQ(admin->request(req::kick("k", id)), "k OK");
  ASSERT_TRUE(eventually([&] { return !lic_lost().empty(); })) << server_->log();
  EXPECT_NE(lic_lost().front().message().find("KICK"), std::string::npos) << lic_lost().front().to_string();
  EXPECT_FALSE(lic->stop_by().has_value());
  ASSERT_EQ(db.wait_for(3s), std::future_status::ready);
  Result<Permit> outcome = db.get();
  ASSERT_FALSE(outcome) << (outcome->is_local() ? "served locally" : "granted by the server");
  EXPECT_NE(outcome.status().message().find("KICK"), std::string::npos) << outcome.status().to_string();
  ASSERT_TRUE(eventually([&] { return holder->connected() && holder->stats().session_id != id; }));
  EXPECT_EQ(holder->stats().resumes, 0u);
  EXPECT_EQ(holder->stats().connection_losses, 1u);
}

TEST_F(ClientResumeTest, AResumeAfterTheServersRestartFindsNoSessionAndLosesThePermit) {
  // Restarted on the same port: one below the ephemeral range, which no
  // outgoing connection (the proxy's among them) takes while it is down.
  const std::uint16_t port = test_support::free_port_below_ephemeral();
  start_server(port);
  testing::TcpProxy proxy(port);
  ASSERT_NE(proxy.port(), 0);
  auto holder = client_through(proxy.port());
  ASSERT_TRUE(holder && holder->connected());
  Result<Permit> permit = holder->acquire("lic");
  ASSERT_TRUE(permit) << permit.status().to_string();
  std::promise<Status> lost;
  permit->on_lost([&](const Status& reason) { lost.set_value(reason); });
  auto reported = lost.get_future();

  server_->send_signal(SIGKILL);
  server_->wait_exit();
  // Behind the proxy the client cannot tell a dead server from a broken
  // connection: it tries to resume, within its lease (T/2 = 3 s).
  EXPECT_EQ(reported.wait_for(500ms), std::future_status::timeout) << "lost before any RESUME was answered";
  start_server(port);
  ASSERT_EQ(reported.wait_for(4s), std::future_status::ready);
  const Status reason = reported.get();
  EXPECT_EQ(reason.code(), StatusCode::kUnavailable) << reason.to_string();
  // The restarted server let go of the permit with the session: no lease.
  EXPECT_FALSE(permit->stop_by().has_value());
  EXPECT_EQ(holder->stats().resumes, 0u);
  // And the client carries on with a new session.
  ASSERT_TRUE(eventually([&] { return holder->connected(); }));
}

TEST_F(ClientResumeTest, AClosedClientEndsItsResumableSessionAtOnce) {
  // Without QUIT a resumable session would keep its permits for its
  // timeout (6 s) after the client is gone.
  start_server();
  auto holder = client_through(server_->port());
  ASSERT_TRUE(holder && holder->connected());
  Result<Permit> permit = holder->acquire("lic");
  ASSERT_TRUE(permit) << permit.status().to_string();
  holder.reset();  // the permit is lost with its client, not released
  auto other = netsem::testing::Client::connect(server_->port());
  ASSERT_TRUE(other);
  EXPECT_EQ(netsem::testing::fields(other->request(req::acquire("w", "lic", 1, 1000)))[1], "OK");
}

// The settling counted what the client held from its registered permits:
// a grant whose OK was read, but whose caller still waited for the host-wide
// mark (here: a fallback holder of the name on this host), was not among
// them, so MINE's count looked one higher than the client knew and an
// unanswered ACQUIRE of the same name was taken as granted: two permits in
// the client for one in the session, and a third holder at the server.
TEST_F(ClientResumeTest, AGrantReadBeforeItsCallerHasItIsNotGivenToAnotherAcquire) {
  start_server();
  testing::TcpProxy proxy(server_->port());
  ASSERT_NE(proxy.port(), 0);
  // A fallback holder of "db" on this host: a server grant of "db" waits
  // for it to go before its caller gets the permit.
  client::LocalSemaphores local(local_dir());
  client::LocalSemaphores::Grant grant;
  client::LocalSemaphores::Mark mark;
  ASSERT_TRUE(local.acquire("db", 2, 1, 0ms, nullptr, &grant, &mark).is_ok());
  auto holder = client_through(proxy.port());
  ASSERT_TRUE(holder && holder->connected());
  const auto holders = [&] {
    auto look = netsem::testing::Client::connect(server_->port());
    if (!look) return std::string();
    const auto fields = netsem::testing::fields(look->request(req::get("g", "db")));
    return fields.size() > 4 ? fields[4] : std::string();
  };
  auto first = std::async(std::launch::async, [&] { return holder->acquire("db", {.timeout = 10s}); });
  ASSERT_TRUE(eventually([&] { return holders() == "1"; })) << server_->log();
  std::this_thread::sleep_for(200ms);  // the OK is read; the caller waits for the mark
  ASSERT_EQ(first.wait_for(0ms), std::future_status::timeout);
  // A second ACQUIRE of "db" is written, never forwarded, then the
  // connection breaks: unanswered, and never read by the server.
  proxy.freeze();
  auto second = std::async(std::launch::async, [&] { return holder->acquire("db", {.timeout = 10s}); });
  std::this_thread::sleep_for(200ms);
  proxy.reset();
  proxy.thaw();
  ASSERT_TRUE(eventually([&] { return holder->stats().resumes == 1; })) << server_->log();
  // The fallback holder goes: both callers get their permits.
  ASSERT_TRUE(local.release("db", 1, grant).is_ok());
  local.unmark(mark);
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  ASSERT_EQ(second.wait_for(5s), std::future_status::ready);
  Result<Permit> a = first.get();
  Result<Permit> b = second.get();
  ASSERT_TRUE(a) << a.status().to_string();
  ASSERT_TRUE(b) << b.status().to_string();
  EXPECT_FALSE(a->lost());
  EXPECT_FALSE(b->lost());
  // Two permits in the client, two held at the server: none left for a third.
  EXPECT_EQ(try_acquire("db"), "t TIMEOUT");
  EXPECT_EQ(holder->stats().connection_losses, 0u);
}

// Rule 10 (parked-attempt.md): the real netsemd frozen (SIGSTOP: its kernel
// still accepts) as the proxy resets the session's connection, so the
// holder's RESUME attempts reach a server that accepts and does not answer.
// Two candidates: the proxy, and the server itself as LEADER names it. The
// first attempt's connection to each is kept open and the next attempts
// wait on it: the server counts one connection per candidate for the resume
// (one more if it answers a RESUME BUSY, before it read the old connection's
// reset), not one per attempt (five or so in the 2.5 s here without rule 10,
// with connect_timeout 500 ms). Once the server wakes it answers both kept
// RESUMEs, the later taking the session from the earlier (`* ERR KICKED
// resumed on another connection`, which the client follows): resumed, the
// permit kept, on a socket with a fresh connection's options.
TEST_F(ClientResumeTest, ASilentResumeAttemptIsKeptOpenAndTheSessionIsResumedOnItOnceTheServerWakes) {
  const auto stats = [&] {
    auto raw = netsem::testing::Client::connect(server_->port());
    return raw ? raw->request("s STATS") : "<no connection>";
  };
  auto holder = start_behind_proxy();
  ASSERT_TRUE(holder);
  Result<Permit> permit = holder->acquire("lic");
  ASSERT_TRUE(permit) << permit.status().to_string();
  ASSERT_FALSE(permit->is_local());
  const std::int64_t before = netsem::testing::connections_total(stats());
  ASSERT_GE(before, 2);
  // The lease (T/2 = 3 s) counts from here: room for the 2.5 s below.
  ASSERT_TRUE(holder->ping());
  const Frozen frozen(*server_);
  const auto reset_at = Clock::now();
  proxy_->reset();
  std::this_thread::sleep_for(2500ms);
  EXPECT_EQ(holder->stats().resumes, 0u);
  server_->send_signal(SIGCONT);
  ASSERT_TRUE(eventually([&] { return holder->stats().resumes == 1; }, 3s)) << server_->log();
  // Answered 2.5 s after its send, more than T/3: the lease, counted from
  // the RESUME's send, lapsed at T/2 (3 s), before the first PING, sent T/6
  // after the resume, and the permit was lost just after the resume
  // (pyK24's finding). The RESUME counts as the last ping: one goes at once,
  // and the session lives on.
  std::this_thread::sleep_until(reset_at + 4s);
  EXPECT_FALSE(permit->lost());
  EXPECT_EQ(holder->stats().connection_losses, 0u);
  EXPECT_EQ(try_acquire("lic"), "t TIMEOUT");
  // This raw connection is one more, and the one before.
  const std::int64_t resumes = netsem::testing::connections_total(stats()) - before - 1;
  EXPECT_GE(resumes, 1);
  EXPECT_LE(resumes, 3) << "connections of the resume: " << resumes;
  // The session resumed on a kept attempt's socket has a fresh connection's
  // options: no keepalive, no TCP_USER_TIMEOUT (before: rule 9a's probes
  // and 4 s). Every socket of this process to the server or the proxy: the
  // client's, and the proxy's own, which sets neither.
  std::vector<int> own = test_support::sockets_connected_to(server_->port());
  for (const int fd : test_support::sockets_connected_to(proxy_->port())) own.push_back(fd);
  ASSERT_FALSE(own.empty());
  for (const int fd : own) {
    const test_support::KeepAlive options = test_support::keep_alive_of(fd);
    EXPECT_EQ(options.on, 0) << "fd " << fd;
    EXPECT_EQ(options.user_timeout_ms, 0) << "fd " << fd;
  }
  ASSERT_TRUE(permit->release().is_ok());
}

// A 1.2 server's answers to a fresh connection: the handshake of resumable
// session 7 (T = 6 s; LEADER busy, so no leader to move to); an ACQUIRE is
// granted with fence 5, except one of `queued`, which waits (no answer).
std::optional<std::string> version_12(const std::vector<std::string>& f, std::string_view queued = {}) {
  if (f[1] == "HELLO") return "OK netsem 1.2 7";
  if (f[1] == "LEASE") return "OK 6000";
  if (f[1] == "STATS") return "OK {\"session_timeout_ms\":6000}";
  if (f[1] == "OPTION" || f[1] == "PING") return "OK";
  if (f[1] == "RESUMABLE") return "OK 7 s3cret";
  if (f[1] == "LEADER") return "ERR BUSY no leader";
  if (f[1] == "ACQUIRE") return f.size() > 2 && f[2] == queued ? std::nullopt : std::optional<std::string>("OK 5");
  return "ERR UNKNOWN_VERB unknown verb";
}

// QUIT there would end the session at once, its permits handed on, while
// the loss says the work may run until the lease's end (stop_by). A fake
// 1.2 server (session 7, T = 6 s): grants ACQUIREs, then says `* ERR
// SHUTDOWN` and closes; on the next connection it answers RESUME OK, then
// refuses MINE.
TEST_F(ClientResumeTest, AResumeRefusedAfterShutdownLeavesTheSessionToItsTimeout) {
  std::promise<void> granted;
  LineServer server([&granted, told = false](int connection,
                                             const std::vector<std::string>& f) mutable -> std::optional<std::string> {
    if (connection > 0) {
      if (f[1] == "RESUME") return "OK 7 0";
      if (f[1] == "HELLO") return "OK netsem 1.2 7";
      if (f[1] == "LEASE") return "OK 6000";
      if (f[1] == "MINE") return "ERR DENIED not for you";
      return "ERR UNKNOWN_VERB unknown verb";
    }
    if (f[1] == "ACQUIRE") {
      if (!told) granted.set_value();
      told = true;
    }
    return version_12(f);
  });
  ASSERT_NE(server.port(), 0);
  {
    auto holder = client_through(server.port());
    ASSERT_TRUE(holder && holder->connected());
    Result<Permit> permit = holder->acquire("db", {.timeout = 2s});
    ASSERT_TRUE(permit) << permit.status().to_string();
    ASSERT_FALSE(permit->is_local());
    ASSERT_EQ(granted.get_future().wait_for(1s), std::future_status::ready);
    std::promise<Status> lost;
    permit->on_lost([&](const Status& reason) { lost.set_value(reason); });
    auto reported = lost.get_future();
    server.send(0, "* ERR SHUTDOWN the server is stopping\n");
    server.hang_up();
    ASSERT_EQ(reported.wait_for(4s), std::future_status::ready);
    EXPECT_EQ(reported.get().code(), StatusCode::kShutdown);
    // The work may run until the lease's end: the session must outlive it.
    EXPECT_TRUE(permit->stop_by().has_value());
    // The second connection, until the client closes it (at most 8 s).
    ASSERT_TRUE(eventually([&] { return server.connections() > 1; }, 4s));
    eventually([&] { return server.closed(1); }, 8s);
  }
  const std::vector<std::string> lines = server.lines(1);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(netsem::testing::fields(lines.front())[1], "RESUME");
  for (const std::string& line : lines) {
    EXPECT_NE(netsem::testing::fields(line)[1], "QUIT") << "the refused resume ended the session at once";
  }
}

// Rule 7: a Client destroyed while its resume is under way, once RESUME was
// answered OK (the session is ours again), sends QUIT there: otherwise the
// session would keep its permits at the server for its timeout. The fake 1.2
// server grants, hangs up, then answers RESUME OK and nothing after it.
TEST_F(ClientResumeTest, AClientClosedDuringItsResumeQuitsTheResumedSession) {
  LineServer server([](int connection, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (connection > 0) {
      if (f[1] == "RESUME") return "OK 7 0";
      return std::nullopt;  // HELLO, LEASE, LEADER, MINE: never answered
    }
    return version_12(f);
  });
  ASSERT_NE(server.port(), 0);
  // Outlives the client (then lost): released first, it would wait for its
  // RELEASE's answer until the resume gave up.
  std::optional<Permit> kept;
  {
    auto holder = client_through(server.port());
    ASSERT_TRUE(holder && holder->connected());
    Result<Permit> permit = holder->acquire("db", {.timeout = 2s});
    ASSERT_TRUE(permit) << permit.status().to_string();
    kept = std::move(*permit);
    // RESUMABLE's answer comes after the handshake: wait for it to be read.
    std::this_thread::sleep_for(200ms);
    server.hang_up();
    ASSERT_TRUE(eventually([&] { return server.saw(1, "RESUME"); })) << "no RESUME after the hang-up";
    // RESUME's OK is read by the client's I/O thread within a poll.
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(eventually([&] { return server.saw(1, "QUIT"); }, 2s)) << "the resumed session was left to its timeout";
}

// Rule 11 within a resume (the lead's decision, moved.md): `* ERR KICKED
// resumed on another connection` right after a RESUME's OK, with no other
// attempt of this resume kept, is another RESUME of ours read late (given
// up earlier), not a KICK: the resume goes on, and the next attempt takes
// the session back with its permit. A scripted server, as no netsemd can be
// made to read an abandoned RESUME just between another's OK and its MINE.
// Before: a KICK, the permit lost.
TEST_F(ClientResumeTest, AResumeWhoseSessionAnotherOfOursTookGoesOnResuming) {
  LineServer server([](int connection, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (connection == 1) {
      if (f[1] == "RESUME") return "OK 7 0\n* ERR KICKED resumed on another connection";
      return std::nullopt;
    }
    if (connection > 1) {
      if (f[1] == "RESUME") return "OK 7 0";
      if (f[1] == "MINE") return "ITEM held db 1 5\n" + f[0] + " END 1";
    }
    return version_12(f);
  });
  ASSERT_NE(server.port(), 0);
  auto client = client_through(server.port());
  ASSERT_TRUE(client && client->connected());
  Result<Permit> permit = client->acquire("db", {.timeout = 2s});
  ASSERT_TRUE(permit) << permit.status().to_string();
  std::atomic<bool> lost{false};
  permit->on_lost([&](const Status&) { lost = true; });
  // RESUMABLE's answer comes after the handshake: wait for it to be read.
  std::this_thread::sleep_for(200ms);
  server.hang_up();
  ASSERT_TRUE(eventually([&] { return client->stats().resumes == 1 || lost; }));
  EXPECT_FALSE(lost.load());
  EXPECT_FALSE(permit->lost());
  EXPECT_EQ(server.connections(), 3);
  EXPECT_TRUE(server.saw(2, "MINE"));
  EXPECT_EQ(client->stats().connection_losses, 0u);
  EXPECT_EQ(client->stats().session_id, 7u);
}

// A queued WAIT granted between the resumed connection's RESUME and its
// MINE: the grant's answer comes on the new connection before MINE's END,
// and MINE no longer lists the WAIT. It is the WAIT's answer: OK. A
// scripted server, as a real netsemd answers RESUME to MINE in one go (a
// cluster's POST can land between them, but not at will). Before, the WAIT
// failed "outcome unknown" and its answer went to no request.
TEST_F(ClientResumeTest, AWaitGrantedBetweenResumeAndMineIsAnsweredByItsGrant) {
  std::mutex mutex;
  std::string wait_tag;  // guarded by mutex
  LineServer server([&](int connection, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (f[1] == "WAIT") {
      std::lock_guard lock(mutex);
      wait_tag = f[0];
      return std::nullopt;  // queued
    }
    if (connection > 0) {
      std::lock_guard lock(mutex);
      if (f[1] == "RESUME") return "OK 7 1\n" + wait_tag + " OK 0";
      if (f[1] == "MINE") return "END 0";
    }
    return version_12(f);
  });
  ASSERT_NE(server.port(), 0);
  auto client = client_through(server.port());
  ASSERT_TRUE(client && client->connected());
  auto waited = std::async(std::launch::async, [&] { return client->wait("jobs", {.timeout = 5s}); });
  ASSERT_TRUE(eventually([&] { return server.saw(0, "WAIT"); }));
  // RESUMABLE's answer comes after the handshake: read by now.
  std::this_thread::sleep_for(200ms);
  server.hang_up();
  ASSERT_TRUE(eventually([&] { return client->stats().resumes == 1; }));
  ASSERT_EQ(waited.wait_for(3s), std::future_status::ready);
  const Status status = waited.get();
  EXPECT_TRUE(status.is_ok()) << status.to_string();
  EXPECT_FALSE(server.saw(1, "WAIT")) << "the WAIT was sent again";
  EXPECT_EQ(client->stats().connection_losses, 0u);
}

// A `* ERR KICKED` among a resumed connection's first lines (right after
// RESUME's OK, before MINE's END) ends the session as a KICK heard on a
// served connection does: the waiting ACQUIRE fails and is not sent again,
// the held permit is lost at once (no stop_by), and the client neither asks
// for the session again nor falls back. A scripted server, because a real
// netsemd answers RESUME, HELLO, LEASE, LEADER and MINE in one go: an
// operator's KICK cannot be placed among them at will. Before the fix the
// line read as a server going away: the client sent RESUME again, heard
// NOT_FOUND, and sent the ACQUIRE again on a new session (rule 9), where it
// was granted.
TEST_F(ClientResumeTest, AKickAmongAResumedConnectionsFirstLinesEndsTheSessionAsKicked) {
  LineServer server([](int connection, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (connection == 1) {
      if (f[1] == "RESUME") return "OK 7 1\n* ERR KICKED kicked by session 9 (127.0.0.1:40000)";
      return std::nullopt;
    }
    if (f[1] == "RESUME") return "ERR NOT_FOUND no such session";
    if (connection > 1 && f[1] == "ACQUIRE") return "OK 9";
    return version_12(f, "lic");
  });
  ASSERT_NE(server.port(), 0);
  auto client = client_through(server.port());
  ASSERT_TRUE(client && client->connected());
  Result<Permit> permit = client->acquire("db", {.timeout = 2s});
  ASSERT_TRUE(permit) << permit.status().to_string();
  std::promise<Status> lost;
  permit->on_lost([&](const Status& reason) { lost.set_value(reason); });
  auto waiting = std::async(std::launch::async, [&] { return client->acquire("lic", {.timeout = 5s}); });
  ASSERT_TRUE(eventually([&] {
    for (const std::string& line : server.lines(0)) {
      const auto fields = netsem::testing::fields(line);
      if (fields.size() > 2 && fields[1] == "ACQUIRE" && fields[2] == "lic") return true;
    }
    return false;
  }));
  server.hang_up();
  ASSERT_EQ(waiting.wait_for(3s), std::future_status::ready);
  Result<Permit> second = waiting.get();
  ASSERT_FALSE(second) << (second->is_local() ? "served locally" : "granted on a new session");
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("KICK"), std::string::npos) << second.status().to_string();
  auto reported = lost.get_future();
  ASSERT_EQ(reported.wait_for(1s), std::future_status::ready);
  const Status reason = reported.get();
  EXPECT_NE(reason.message().find("KICK"), std::string::npos) << reason.to_string();
  EXPECT_FALSE(permit->stop_by().has_value());
  // The next session starts afresh, and nothing is sent again on it.
  ASSERT_TRUE(eventually([&] { return server.saw(2, "HELLO"); })) << "no new session";
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(server.saw(2, "RESUME"));
  for (int n = 1; n < server.connections(); ++n) EXPECT_FALSE(server.saw(n, "ACQUIRE")) << "connection " << n;
  EXPECT_EQ(client->stats().resumes, 0u);
  EXPECT_EQ(client->stats().local_grants, 0u);
}

// A 1.1 server (RESUMABLE, LEASE and LEADER answered UNKNOWN_VERB; T = 6 s
// from STATS) never gets RESUME: after its connection breaks, the client
// starts afresh with HELLO, and the permit is lost.
TEST_F(ClientResumeTest, AVersion11ServerNeverGetsResume) {
  LineServer server([](int, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (f[1] == "HELLO") return "OK netsem 1.1 7";
    if (f[1] == "STATS") return "OK {\"session_timeout_ms\":6000}";
    if (f[1] == "OPTION" || f[1] == "PING") return "OK";
    if (f[1] == "ACQUIRE") return "OK 5";
    return "ERR UNKNOWN_VERB unknown verb";
  });
  ASSERT_NE(server.port(), 0);
  auto holder = client_through(server.port());
  ASSERT_TRUE(holder && holder->connected());
  Result<Permit> permit = holder->acquire("db", {.timeout = 2s});
  ASSERT_TRUE(permit) << permit.status().to_string();
  ASSERT_FALSE(permit->is_local());
  std::this_thread::sleep_for(200ms);
  server.hang_up();
  ASSERT_TRUE(eventually([&] { return !server.lines(1).empty(); })) << "no new connection";
  EXPECT_TRUE(eventually([&] { return permit->lost(); }));
  const std::vector<std::string> lines = server.lines(1);
  EXPECT_EQ(netsem::testing::fields(lines.front())[1], "HELLO") << lines.front();
  EXPECT_FALSE(server.saw(1, "RESUME"));
  EXPECT_EQ(holder->stats().resumes, 0u);
}

// A 1.1 server (no resume) for rule 9's edges: connection 0 answers the
// handshake and leaves ACQUIRE unanswered (the test hangs up then), or
// answers it with `acquire_answer`; later connections grant with fence 9.
LineServer::Answer version_11(std::optional<std::string> acquire_answer = std::nullopt) {
  return [acquire_answer](int connection, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (f[1] == "HELLO") return "OK netsem 1.1 7";
    if (f[1] == "STATS") return "OK {\"session_timeout_ms\":6000}";
    if (f[1] == "OPTION" || f[1] == "PING") return "OK";
    if (f[1] == "ACQUIRE") {
      if (connection > 0) return "OK 9";
      return acquire_answer;
    }
    return "ERR UNKNOWN_VERB unknown verb";
  };
}

// Rule 9 for a try: one whose session ended before its answer is tried
// again on the next session (still a try), not reported as TIMEOUT (it
// never had an answer) nor served locally while a server answers.
TEST_F(ClientResumeTest, ATryWhoseSessionEndedBeforeItsAnswerIsTriedAgain) {
  LineServer server(version_11());
  ASSERT_NE(server.port(), 0);
  auto client = client_through(server.port());
  ASSERT_TRUE(client && client->connected());
  auto tried = std::async(std::launch::async, [&] { return client->try_acquire("db"); });
  ASSERT_TRUE(eventually([&] { return server.saw(0, "ACQUIRE"); }));
  server.hang_up();
  ASSERT_EQ(tried.wait_for(3s), std::future_status::ready);
  Result<Permit> permit = tried.get();
  ASSERT_TRUE(permit) << permit.status().to_string();
  EXPECT_FALSE(permit->is_local());
  EXPECT_EQ(permit->fence(), std::optional<std::uint64_t>(9));
  EXPECT_TRUE(server.saw(1, "ACQUIRE"));
}

// A session the client ended because the server broke the protocol (an
// answer that is no netsem answer) fails the waiting ACQUIRE: sending it
// again would meet the same server, and falling back would not be right
// either (a server answered).
TEST_F(ClientResumeTest, AnAcquireWhoseServerBrokeTheProtocolIsNotSentAgain) {
  LineServer server(version_11("WHAT is this"));
  ASSERT_NE(server.port(), 0);
  auto client = client_through(server.port());
  ASSERT_TRUE(client && client->connected());
  const auto started = Clock::now();
  Result<Permit> permit = client->acquire("db", {.timeout = 5s});
  ASSERT_FALSE(permit) << (permit->is_local() ? "served locally" : "granted");
  EXPECT_LT(Clock::now() - started, 2s);
  EXPECT_EQ(permit.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(permit.status().message().find("not a netsem answer"), std::string::npos) << permit.status().to_string();
  EXPECT_NE(permit.status().message().find("not sent again"), std::string::npos) << permit.status().to_string();
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(server.saw(1, "ACQUIRE"));
  EXPECT_EQ(client->stats().local_grants, 0u);
}

// A call that never falls back (GET here), made between two sessions,
// waits for the next round of connection attempts (1 s of backoff away) and
// answers what that round found: the server's refusal (`ERR LIMIT`, full),
// read with the round's outcome, not "no server reachable" at once as
// before. Once that round has failed, the next call answers the refusal at
// once.
TEST_F(ClientResumeTest, AGetMadeBetweenSessionsAnswersTheRoundItWaitedFor) {
  LineServer server([](int connection, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (connection > 0) return "ERR LIMIT too many connections";
    return version_11()(connection, f);
  });
  ASSERT_NE(server.port(), 0);
  auto client = client_through(server.port(), 1s, 2s);
  ASSERT_TRUE(client && client->connected());
  server.hang_up();
  ASSERT_TRUE(eventually([&] { return client->stats().connection_losses == 1; }));
  ASSERT_EQ(server.connections(), 1);
  const auto gap_at = Clock::now();
  Result<SemaphoreInfo> info = client->get("db");
  const auto took = Clock::now() - gap_at;
  ASSERT_FALSE(info) << "answered by a server";
  EXPECT_EQ(info.status().code(), StatusCode::kLimit) << info.status().to_string();
  EXPECT_GE(server.connections(), 2) << "answered before the next round";
  EXPECT_GT(took, 300ms);
  const auto again_at = Clock::now();
  Result<SemaphoreInfo> again = client->get("db");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.status().code(), StatusCode::kLimit) << again.status().to_string();
  EXPECT_LT(Clock::now() - again_at, 300ms);
}

// The reconnect backoff goes back to reconnect_min only after a session that
// lived reconnect_max or more: a server that ends every session at once (it
// hangs up on each ACQUIRE, which rule 9 sends again on each new session) is
// reconnected to with the growing backoff (20, 40, ... 400 ms: about 9
// connections in 2.5 s), not every reconnect_min (about 50 before).
TEST_F(ClientResumeTest, AServerThatEndsEverySessionAtOnceIsReconnectedToWithTheGrowingBackoff) {
  LineServer* self = nullptr;
  LineServer server([&self](int, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (f[1] == "ACQUIRE") {
      self->hang_up();
      return std::nullopt;
    }
    return version_11()(0, f);
  });
  self = &server;
  ASSERT_NE(server.port(), 0);
  ClientOptions options;
  options.servers = {"127.0.0.1:" + std::to_string(server.port())};
  options.local_dir = local_dir();
  options.connect_timeout = 500ms;
  options.reconnect_min = 20ms;
  options.reconnect_max = 400ms;
  options.request_timeout = 3s;
  options.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kFail};
  Result<std::unique_ptr<Client>> client = Client::create(std::move(options));
  ASSERT_TRUE(client) << client.status().to_string();
  Result<Permit> permit = (*client)->acquire("db", {.timeout = 2500ms});
  ASSERT_FALSE(permit) << (permit->is_local() ? "served locally" : "granted");
  EXPECT_EQ(permit.status().code(), StatusCode::kTimeout) << permit.status().to_string();
  EXPECT_LE(server.connections(), 15) << "reconnected every reconnect_min";
  EXPECT_GE(server.connections(), 4);
}

// Rule 9 and cancel: a CancelToken ends the wait for the next session at
// once (here a server that accepts but never answers HELLO, with a
// connect_timeout of 5 s), not at the end of that round of attempts.
TEST_F(ClientResumeTest, ACancelEndsTheWaitForTheNextSessionAtOnce) {
  LineServer server([](int connection, const std::vector<std::string>& f) -> std::optional<std::string> {
    if (connection > 0) return std::nullopt;
    return version_11()(connection, f);
  });
  ASSERT_NE(server.port(), 0);
  ClientOptions options;
  options.servers = {"127.0.0.1:" + std::to_string(server.port())};
  options.local_dir = local_dir();
  options.connect_timeout = 5s;
  options.reconnect_min = 20ms;
  options.reconnect_max = 100ms;
  options.request_timeout = 3s;
  options.fallback = FallbackPolicy{.mode = FallbackPolicy::Mode::kFail};
  Result<std::unique_ptr<Client>> client = Client::create(std::move(options));
  ASSERT_TRUE(client && (*client)->connected());
  CancelToken token;
  auto waited =
      std::async(std::launch::async, [&] { return (*client)->acquire("db", {.timeout = 20s, .cancel = &token}); });
  ASSERT_TRUE(eventually([&] { return server.saw(0, "ACQUIRE"); }));
  server.hang_up();
  ASSERT_TRUE(eventually([&] { return server.saw(1, "HELLO"); })) << "no new connection";
  const auto cancelled_at = Clock::now();
  token.cancel();
  ASSERT_EQ(waited.wait_for(8s), std::future_status::ready);
  const auto took = Clock::now() - cancelled_at;
  Result<Permit> permit = waited.get();
  ASSERT_FALSE(permit);
  EXPECT_EQ(permit.status().code(), StatusCode::kCancelled) << permit.status().to_string();
  EXPECT_LT(took, 1s);
}

}  // namespace
}  // namespace netsem
