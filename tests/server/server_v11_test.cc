// Integration: protocol 1.1 against the real netsemd, over real sockets:
// HELLO's version and decoded label, OPTION queued, HOLDERS, WAITERS and
// SESSIONS (peers as the client sees its own end, IPv6 in brackets, an ACE
// session and one that has sent nothing), and KICK: the admin right from
// admin_networks (reloaded by SIGHUP, applied to open sessions), the permits
// of the kicked session going to the next waiter at once, its queued
// requests dropped unanswered, a v1 peer told `* ERR KICKED` and closed, an
// ACE peer closed without a word, and a session kicked while its answers
// wait for the journal; a dual-stack listener's IPv4 peer shown as IPv4.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "netsemd_harness.h"
#include "support/request_lines.h"

namespace netsem::testing {
namespace {

// The lines of a listing (ITEM ... then END, or one error line), `request`
// sent first. Stops at the line that ends it, or when no line comes.
std::vector<std::string> listing(Client& client, std::string_view request) {
  const std::string tag(request.substr(0, request.find(' ')));
  client.send_line(request);
  std::vector<std::string> lines;
  while (auto line = client.read_line()) {
    lines.push_back(*line);
    if (!line->starts_with(tag + " ITEM ")) break;
  }
  return lines;
}

// The session id HELLO answers ("<tag> OK netsem 1.1 <id>"); `label` as
// the session means it (the encoder percent-encodes it).
std::uint64_t hello(Client& client, std::string_view label = {}) {
  const std::string answer = client.request(req::hello("h", label));
  const std::string prefix = "h OK netsem 1.1 ";
  EXPECT_TRUE(answer.starts_with(prefix)) << answer;
  return answer.starts_with(prefix) ? std::stoull(answer.substr(prefix.size())) : 0;
}

std::int64_t number(const std::string& field) {
  return std::stoll(field);
}

class ServerV11 : public ::testing::Test {
 protected:
  void start(std::string server_options = {}) {
    Netsemd::Options options;
    options.semaphores = "splunk = 1\npool = 3\n";
    options.server_options = std::move(server_options);
    server_ = start_server(options);
  }
  std::unique_ptr<Client> connect(const char* host = "127.0.0.1") {
    auto client = Client::connect(server_->port(), host);
    EXPECT_TRUE(client);
    return client;
  }
  std::unique_ptr<Netsemd> server_;
};

TEST_F(ServerV11, HelloAnswersVersion11AndChecksTheLabelLikeAName) {
  start();
  ASSERT_TRUE(server_);
  auto a = connect();
  const std::uint64_t id = hello(*a, "nightly build");
  EXPECT_GT(id, 0u);
  // Raw on purpose: a label that is no valid percent-encoding.
  EXPECT_TRUE(a->request("h2 HELLO 1 50%off").starts_with("h2 ERR BAD_ARG "));
  EXPECT_TRUE(a->request(req::hello("h3", "$me")).starts_with("h3 ERR BAD_ARG "));
  const auto rows = listing(*a, req::sessions("s"));
  ASSERT_EQ(rows.size(), 2u);
  const auto row = fields(rows[0]);
  ASSERT_EQ(row.size(), 10u) << rows[0];
  EXPECT_EQ(row[9], "nightly%20build");  // the refused labels left it as it was
}

TEST_F(ServerV11, OptionQueuedOffSilencesQueuedForLaterRequestsOnly) {
  start();
  ASSERT_TRUE(server_);
  auto holder = connect();
  auto quiet = connect();
  EXPECT_EQ(holder->request(req::acquire("a", "splunk")).substr(0, 5), "a OK ");
  EXPECT_EQ(quiet->request(req::acquire("q1", "splunk")), "q1 QUEUED 1");
  EXPECT_EQ(quiet->request(req::option_queued("o", false)), "o OK");
  // The PING behind the ACQUIRE is answered next: no QUEUED line between.
  quiet->send_line(req::acquire("q2", "splunk"));
  EXPECT_EQ(quiet->request(req::ping("p")), "p PONG");
  // Raw on purpose: the case of OPTION's words, and malformed OPTIONs.
  EXPECT_EQ(quiet->request("o2 OPTION QUEUED On"), "o2 OK");
  EXPECT_EQ(quiet->request(req::acquire("q3", "splunk")), "q3 QUEUED 3");
  EXPECT_TRUE(quiet->request("o3 OPTION queued maybe").starts_with("o3 ERR BAD_ARG "));
  EXPECT_TRUE(quiet->request("o4 OPTION nagle off").starts_with("o4 ERR BAD_ARG "));
  EXPECT_TRUE(quiet->request("o5 OPTION queued").starts_with("o5 ERR BAD_REQUEST "));
  // Every queued request still gets its final answer.
  EXPECT_EQ(holder->request(req::release("r", "splunk")), "r OK 0");
  EXPECT_EQ(quiet->read_line().value_or("").substr(0, 6), "q1 OK ");
  EXPECT_EQ(quiet->request(req::cancel("x", "q2")), "x OK");
  EXPECT_EQ(quiet->read_line(), "q2 CANCELLED");
}

TEST_F(ServerV11, HoldersAndWaitersShowRowsInOrderWithLabels) {
  start();
  ASSERT_TRUE(server_);
  auto a = connect();
  auto b = connect();
  auto c = connect();
  auto d = connect();
  const std::uint64_t ida = hello(*a, "job-a");
  const std::uint64_t idb = hello(*b);
  const std::uint64_t idc = hello(*c, "100%");
  const std::uint64_t fa = fence_of(a->request(req::acquire("a", "pool", 2)));
  const std::uint64_t fb = fence_of(b->request(req::acquire("b", "pool")));
  EXPECT_EQ(c->request(req::acquire("c", "pool", 1, 5000)), "c QUEUED 1");
  EXPECT_EQ(c->request(req::wait("c2", "pool", 2)), "c2 QUEUED 2");

  const auto holders = listing(*d, req::holders("h", "pool"));
  ASSERT_EQ(holders.size(), 3u);
  auto row = fields(holders[0]);
  ASSERT_EQ(row.size(), 7u) << holders[0];
  EXPECT_EQ(row[2], std::to_string(ida));
  EXPECT_EQ(row[3], "2");
  EXPECT_EQ(row[4], std::to_string(fa));
  EXPECT_GE(number(row[5]), 0);
  EXPECT_EQ(row[6], "job-a");
  row = fields(holders[1]);
  ASSERT_EQ(row.size(), 7u) << holders[1];
  EXPECT_EQ(row[2] + " " + row[3] + " " + row[4] + " " + row[6],
            std::to_string(idb) + " 1 " + std::to_string(fb) + " -");
  EXPECT_LE(number(row[5]), number(fields(holders[0])[5]));  // the later holder has held no longer
  EXPECT_EQ(holders[2], "h END 2");

  const auto waiters = listing(*d, req::waiters("w", "pool"));
  ASSERT_EQ(waiters.size(), 3u);
  row = fields(waiters[0]);
  ASSERT_EQ(row.size(), 7u) << waiters[0];
  EXPECT_EQ(row[2] + " " + row[3] + " " + row[6], std::to_string(idc) + " 1 100%25");
  EXPECT_EQ(number(row[4]) + number(row[5]), 5000);  // waited + left = timeout
  row = fields(waiters[1]);
  ASSERT_EQ(row.size(), 7u) << waiters[1];
  EXPECT_EQ(row[2] + " " + row[3] + " " + row[5] + " " + row[6], std::to_string(idc) + " 2 -1 100%25");
  EXPECT_EQ(waiters[2], "w END 2");

  EXPECT_EQ(listing(*d, req::holders("h2", "splunk")), std::vector<std::string>{"h2 END 0"});
  EXPECT_EQ(listing(*d, req::holders("h3", "nothing")),
            std::vector<std::string>{"h3 ERR NOT_FOUND no such semaphore: nothing"});
  EXPECT_EQ(listing(*d, req::waiters("w2", "nothing")),
            std::vector<std::string>{"w2 ERR NOT_FOUND no such semaphore: nothing"});
  // Raw on purpose: a name that is no valid percent-encoding.
  EXPECT_TRUE(d->request("h4 HOLDERS bad%zz").starts_with("h4 ERR BAD_NAME "));
}

TEST_F(ServerV11, SessionsListsEverySessionWithItsPeerDialectAndLoad) {
  start();
  ASSERT_TRUE(server_);
  auto a = connect();
  const std::uint64_t ida = hello(*a, "cli");
  auto silent = connect();  // sends nothing: v1, no label
  auto ace = connect();
  EXPECT_EQ(a->request(req::acquire("a", "pool", 2)).substr(0, 4), "a OK");
  EXPECT_EQ(a->request(req::acquire("a2", "splunk")).substr(0, 5), "a2 OK");
  ace->send("acquire:splunk|");  // queued behind a
  // The ACE session shows once its request is queued.
  EXPECT_EQ(await_answer(*a, req::get("g", "splunk"), "g OK 0 1 1 1 defined"), "g OK 0 1 1 1 defined");
  const auto rows = listing(*a, req::sessions("s"));
  ASSERT_EQ(rows.size(), 4u);
  const std::vector<std::string> expected[] = {
      {std::to_string(ida), a->local_peer(), "v1", "3", "0", "cli"},
      {std::to_string(ida + 1), silent->local_peer(), "v1", "0", "0", "-"},
      {std::to_string(ida + 2), ace->local_peer(), "ace", "0", "1", "ace"},
  };
  for (std::size_t i = 0; i < 3; ++i) {
    const auto row = fields(rows[i]);
    ASSERT_EQ(row.size(), 10u) << rows[i];
    EXPECT_EQ(row[1], "ITEM");
    EXPECT_EQ((std::vector<std::string>{row[2], row[3], row[4], row[5], row[6], row[9]}), expected[i]) << rows[i];
    EXPECT_GE(number(row[7]), number(row[8])) << "idle longer than the session's age: " << rows[i];
    EXPECT_GE(number(row[8]), 0);
  }
  EXPECT_EQ(rows[3], "s END 3");
}

// A SESSIONS answer larger than a chunk (and than a socket buffer) reaches
// the peer whole, streamed as LIST is; the requests behind it come after.
TEST_F(ServerV11, SessionsStreamsAListingLargerThanAChunk) {
  start();
  ASSERT_TRUE(server_);
  const std::string label(240, 'x');
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 200; ++i) {
    clients.push_back(connect());
    ASSERT_TRUE(clients.back());
    clients.back()->send_line(req::hello("h", label));
  }
  for (auto& client : clients) EXPECT_TRUE(client->read_line().value_or("").starts_with("h OK netsem 1.1 "));
  auto asker = connect();
  asker->send_line(req::sessions("s"));
  asker->send_line(req::ping("p"));  // behind the listing: answered after its END
  std::vector<std::string> rows;
  while (auto line = asker->read_line()) {
    rows.push_back(*line);
    if (*line == "p PONG" || rows.size() > 300) break;
  }
  ASSERT_EQ(rows.size(), 203u);
  for (std::size_t i = 0; i < 200; ++i) EXPECT_TRUE(rows[i].ends_with(" " + label)) << rows[i];
  EXPECT_EQ(rows[201], "s END 201");
  EXPECT_EQ(rows[202], "p PONG");
}

TEST_F(ServerV11, SessionsShowsAnIpv6PeerInBrackets) {
  Netsemd::Options options;
  options.raw_config =
      "[server]\nbind_address = ::1\nbind_port = @PORT@\nstats_dir = @DIR@\ndata_dir = @DIR@\n"
      "[semaphores]\nsplunk = 1\n";
  server_ = start_server(options);
  ASSERT_TRUE(server_);
  auto a = connect("::1");
  ASSERT_TRUE(a);
  const std::uint64_t id = hello(*a);
  const auto rows = listing(*a, req::sessions("s"));
  ASSERT_EQ(rows.size(), 2u);
  const auto row = fields(rows[0]);
  ASSERT_EQ(row.size(), 10u) << rows[0];
  EXPECT_EQ(row[2], std::to_string(id));
  EXPECT_TRUE(row[3].starts_with("[::1]:")) << rows[0];
  EXPECT_EQ(row[3], a->local_peer());
  // ::1 is in the default admin_networks.
  EXPECT_EQ(a->request(req::kick("k", 999999)), "k ERR NOT_FOUND no such session");
}

TEST_F(ServerV11, KickReleasesToTheNextWaiterAtOnceAndClosesTheKickedSession) {
  start();
  ASSERT_TRUE(server_);
  auto victim = connect();
  auto next = connect();
  auto filler = connect();
  auto admin = connect();
  const std::uint64_t idv = hello(*victim);
  const std::uint64_t idk = hello(*admin);
  const std::uint64_t held = fence_of(victim->request(req::acquire("a", "splunk")));
  EXPECT_EQ(filler->request(req::acquire("f", "pool", 3)).substr(0, 5), "f OK ");
  EXPECT_EQ(victim->request(req::acquire("q", "pool")), "q QUEUED 1");
  EXPECT_EQ(next->request(req::acquire("b", "splunk")), "b QUEUED 1");
  EXPECT_EQ(admin->request(req::kick("k", idv)), "k OK");
  // The next waiter has the permit at once (no timeout, no close to wait for).
  EXPECT_GT(fence_of(next->read_line().value_or("")), held);
  // The kicked session reads why, then the close: nothing for its queued request.
  EXPECT_EQ(victim->read_line(),
            "* ERR KICKED kicked by session " + std::to_string(idk) + " (" + admin->local_peer() + ")");
  std::string rest;
  EXPECT_TRUE(victim->wait_closed(3s, &rest));
  EXPECT_EQ(rest, "");
  EXPECT_EQ(listing(*admin, req::waiters("w", "pool")), std::vector<std::string>{"w END 0"});
  EXPECT_EQ(admin->request(req::kick("k2", idv)), "k2 ERR NOT_FOUND no such session");
  EXPECT_TRUE(server_->wait_for_log("kicked session " + std::to_string(idv)));
}

// A session kicked while its answers wait for an unwritten journal record
// (a WAIT granted by a POST, and an ACQUIRE behind it): its permit goes to
// the next waiter at once; its held answers and the KICKED line, which
// would follow them, never go out while the journal cannot write, and the
// connection is closed after the last-words time all the same; once the
// journal writes again, the acknowledged POST and the kicked session's
// granted WAIT are in it, durably.
TEST_F(ServerV11, KickOfASessionWhoseAnswersWaitForTheJournal) {
  Netsemd::Options options;
  options.semaphores = "d = 1\n";
  server_ = start_server(options);
  ASSERT_TRUE(server_);
  auto admin = connect();
  auto poster = connect();
  auto victim = connect();
  auto next = connect();
  const std::uint64_t idv = hello(*victim);
  ASSERT_EQ(poster->request(req::create("c", "c", 0, 5)), "c OK");
  fence_of(admin->request(req::acquire("a", "d")));  // fences reserved for a while
  ASSERT_EQ(admin->request(req::release("r", "d")), "r OK 1");
  ASSERT_EQ(victim->request(req::wait("w", "c")), "w QUEUED 1");
  // A full disk for the journal: every write past its present size fails.
  const auto journal = server_->data_dir() / "journal";
  ASSERT_TRUE(set_limit(server_->pid(), RLIMIT_FSIZE, std::filesystem::file_size(journal)));

  poster->send_line(req::post("p", "c", 2));  // grants the victim's WAIT: both answers wait for the record
  // Served before the victim's ACQUIRE: two connections' requests are not
  // ordered by when they were sent (the server serves ready sockets in the
  // kernel's order), so the test waits for the POST's effect.
  ASSERT_EQ(await_answer(*admin, req::get("g", "c"), "g OK 1 5 0 0 created"), "g OK 1 5 0 0 created");
  victim->send_line(req::acquire("a", "d"));  // granted at once, answered behind the WAIT's answer
  EXPECT_EQ(next->request(req::acquire("b", "d")), "b QUEUED 1");
  EXPECT_EQ(listing(*admin, req::holders("h", "d")).size(), 2u);  // the victim's row, END
  EXPECT_TRUE(victim->quiet_for(200ms));
  EXPECT_TRUE(poster->quiet_for(1ms));

  EXPECT_EQ(admin->request(req::kick("k", idv)), "k OK");
  EXPECT_EQ(next->read_line().value_or("(none)").substr(0, 5), "b OK ");  // at once: no journal record needed
  // The kicked peer is told KICKED at once; the answers that waited for the
  // journal (its WAIT's grant, and the ACQUIRE behind it) are dropped: they
  // would acknowledge what the journal has not written.
  EXPECT_EQ(victim->read_line().value_or("(none)").rfind("* ERR KICKED ", 0), 0u);
  std::string rest;
  EXPECT_TRUE(victim->wait_closed(6s, &rest));
  EXPECT_EQ(rest, "");
  const auto sessions = listing(*admin, req::sessions("s"));
  EXPECT_EQ(sessions.back(), "s END 3") << "the kicked session is not listed";
  const std::string stats = admin->request(req::stats("st"));
  EXPECT_NE(stats.find("\"session_ends_kicked_total\":1,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"journal_ok\":0"), std::string::npos) << stats;

  // The journal writes again: the POST is answered, and its record and that
  // of the kicked session's grant are written (c: 0 + 2 - 1).
  ASSERT_TRUE(set_limit(server_->pid(), RLIMIT_FSIZE, RLIM_INFINITY));
  EXPECT_EQ(poster->read_line(5s).value_or("(none)"), "p OK 1");
  EXPECT_EQ(poster->request(req::get("g", "c")), "g OK 1 5 0 0 created");
  server_->send_signal(SIGTERM);
  ASSERT_TRUE(server_->wait_exit());
  options.data_dir = server_->data_dir();
  auto again = start_server(options);
  ASSERT_TRUE(again);
  auto c = Client::connect(again->port());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->request(req::get("g", "c")), "g OK 1 5 0 0 created");
}

// A dual-stack listener bound to the IPv4-mapped loopback address: an IPv4
// peer arrives as ::ffff:127.0.0.1 and shows as 127.0.0.1:port, as the peer
// sees its own end, in SESSIONS and in the logs.
TEST_F(ServerV11, AnIpv4MappedPeerShowsAsIpv4) {
  Netsemd::Options options;
  options.raw_config =
      "[server]\nbind_address = ::ffff:127.0.0.1\nbind_port = @PORT@\nstats_dir = @DIR@\ndata_dir = @DIR@\n"
      "[semaphores]\nsplunk = 1\n";
  server_ = start_server(options);
  ASSERT_TRUE(server_);
  auto a = connect();
  auto b = connect();
  ASSERT_TRUE(a && b);
  const std::uint64_t ida = hello(*a);
  const std::uint64_t idb = hello(*b);
  const auto rows = listing(*a, req::sessions("s"));
  ASSERT_EQ(rows.size(), 3u);
  const auto row = fields(rows[0]);
  ASSERT_EQ(row.size(), 10u) << rows[0];
  EXPECT_EQ(row[2], std::to_string(ida));
  EXPECT_TRUE(row[3].starts_with("127.0.0.1:")) << rows[0];
  EXPECT_EQ(row[3], a->local_peer());
  EXPECT_EQ(fields(rows[1])[3], b->local_peer());
  // The peer is in the default admin_networks (127.0.0.0/8) as an IPv4 one,
  // and the log names both ends as IPv4.
  EXPECT_EQ(a->request(req::kick("k", idb)), "k OK");
  EXPECT_TRUE(server_->wait_for_log("session " + std::to_string(ida) + " (" + a->local_peer() + ") kicked session " +
                                    std::to_string(idb) + " (" + b->local_peer() + ")"))
      << server_->log();
  EXPECT_EQ(server_->log().find("ffff"), std::string::npos) << server_->log();
}

TEST_F(ServerV11, KickClosesAnAceSessionWithoutAWord) {
  start();
  ASSERT_TRUE(server_);
  auto ace = connect();
  auto next = connect();
  auto admin = connect();
  ace->send("acquire:splunk|");
  EXPECT_EQ(ace->read_some(), "locked|");
  EXPECT_EQ(next->request(req::acquire("b", "splunk")), "b QUEUED 1");
  std::string ace_id;
  for (const auto& line : listing(*admin, req::sessions("s"))) {
    const auto row = fields(line);
    if (row.size() == 10 && row[4] == "ace") ace_id = row[2];
  }
  ASSERT_FALSE(ace_id.empty());
  EXPECT_EQ(admin->request(req::kick("k", std::stoull(ace_id))), "k OK");
  EXPECT_EQ(next->read_line().value_or("").substr(0, 5), "b OK ");
  std::string rest;
  EXPECT_TRUE(ace->wait_closed(3s, &rest));
  EXPECT_EQ(rest, "");  // never a `*` line to ACE
}

TEST_F(ServerV11, KickNeedsTheAdminRightWhichSighupReloadsForOpenSessions) {
  Netsemd::Options options;
  options.semaphores = "splunk = 1\n";
  options.server_options = "admin_networks = 127.0.0.2\n";  // not the tests' 127.0.0.1
  server_ = start_server(options);
  ASSERT_TRUE(server_);
  auto victim = connect();
  auto admin = connect();
  const std::uint64_t idv = hello(*victim);
  const std::string denied = "ERR DENIED KICK needs the admin right (admin_networks)";
  EXPECT_EQ(admin->request(req::kick("k", idv)), "k " + denied);
  EXPECT_EQ(admin->request(req::kick("k2", 999999)), "k2 " + denied);  // nothing learnt about ids
  // Raw on purpose: KICK of what is no session id.
  EXPECT_EQ(admin->request("k3 KICK abc"), "k3 " + denied);
  EXPECT_EQ(admin->request(req::ping("p")), "p PONG");  // DENIED here keeps the connection

  options.server_options.clear();  // back to the default, the loopback networks
  server_->rewrite_config(options);
  server_->send_signal(SIGHUP);
  ASSERT_TRUE(server_->wait_for_log("SIGHUP: reloaded")) << server_->log();
  EXPECT_TRUE(admin->request("k4 KICK abc").starts_with("k4 ERR BAD_ARG "));
  EXPECT_EQ(admin->request(req::kick("k5", 999999)), "k5 ERR NOT_FOUND no such session");
  EXPECT_EQ(admin->request(req::kick("k6", idv)), "k6 OK");
  EXPECT_TRUE(victim->read_line().value_or("").starts_with("* ERR KICKED "));
  EXPECT_TRUE(victim->wait_closed());
}

TEST_F(ServerV11, ASessionMayKickItself) {
  start();
  ASSERT_TRUE(server_);
  auto a = connect();
  auto next = connect();
  const std::uint64_t id = hello(*a);
  EXPECT_EQ(a->request(req::acquire("a", "splunk")).substr(0, 5), "a OK ");
  EXPECT_EQ(next->request(req::acquire("b", "splunk")), "b QUEUED 1");
  EXPECT_EQ(a->request(req::kick("k", id)), "k OK");
  EXPECT_TRUE(a->read_line().value_or("").starts_with("* ERR KICKED kicked by session " + std::to_string(id)));
  EXPECT_TRUE(a->wait_closed());
  EXPECT_EQ(next->read_line().value_or("").substr(0, 5), "b OK ");
}

}  // namespace
}  // namespace netsem::testing
