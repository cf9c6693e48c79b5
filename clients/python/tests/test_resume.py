"""Sessions that outlive their connection (issue 16; docs/client.md's resume
rules, docs/python.md): the blocking Client marks its session RESUMABLE and,
when the connection ends without a word, RESUMEs it on a new one and settles
what it did not hear from MINE. Against the real netsemd: a single server
behind a TCP proxy the test resets (proxy_support; SIGSTOPped too, for a
RESUME answered late in the lease), a single server killed
and restarted, and a three-server cluster (cluster_support) whose holder's
server is killed -9, or whose leader is, under a queued WAIT (both clients).
Every wait is bounded; every process is killed by pid.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aio_support import release
from cluster_support import Cluster
from conftest import acquire_in_thread, client_factory, wait_until
from fake_server import FakeServer, MovingPair
from proxy_support import restart
from tls_support import Pki, tls_port

from netsem import Client, FallbackPolicy, Permit
from netsem.errors import NetsemError, Unavailable

TIMEOUT_MS = 3000  # the servers' session timeout: the lease lapses 1.5 s after the last answer


@pytest.fixture
def clients(local_dir: Path) -> Iterator[Callable[..., Client]]:
    yield from client_factory(local_dir, reconnect_min=0.05, reconnect_max=0.2, fallback=FallbackPolicy("fail"))


@pytest.fixture(params=["blocking", "aio"])
def either(request: pytest.FixtureRequest, local_dir: Path) -> Iterator[Callable[..., Any]]:
    """As ``clients``, of either kind: the blocking Client, or netsem.aio
    driven from the test's thread (aio_support.AioInThread)."""
    yield from client_factory(local_dir, request.param, reconnect_min=0.05, reconnect_max=0.2,
                              fallback=FallbackPolicy("fail"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "cluster", semaphores="one = 1", session_timeout_ms=TIMEOUT_MS)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def long_lease_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """As ``cluster``, with a lease (T/2) of 4 s instead of 1.5: for tests
    that kill the leader and need the session to outlive the election. The
    election takes 0.5 to 1 s on a quiet machine, but a split vote under a
    loaded CI run took 1.67 s, longer than the 1.5 s lease, and the client
    then rightly declared its session lost."""
    made = Cluster(tmp_path / "cluster", semaphores="one = 1", session_timeout_ms=8000)
    try:
        yield made
    finally:
        made.close()


class Losses:
    def __init__(self) -> None:
        self.seen: list[tuple[NetsemError, float]] = []
        self.event = threading.Event()

    def __call__(self, reason: NetsemError) -> None:
        self.seen.append((reason, time.monotonic()))
        self.event.set()


def _held_elsewhere(address: str, clients: Callable[..., Client]) -> bool:
    """A fresh session's try of "one" would block: someone holds it."""
    other = clients([address])
    permit = other.try_acquire("one")
    if permit is not None:
        permit.release()
    other.close()
    return permit is None


def test_a_reset_connection_keeps_the_permit(start_netsemd, clients, proxies, caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")
    proxy = proxies(server.port)
    client = clients([proxy.address])
    permit = client.acquire("one")
    fence = permit.fence
    losses = Losses()
    permit.on_lost(losses)
    session = client.stats().session_id
    proxy.cut()
    # A request after the reset waits for the resume, then is answered on the same session.
    assert client.get("one").value == 0
    assert wait_until(lambda: "resumed session" in caplog.text, 5), caplog.text
    assert client.stats().session_id == session
    assert not permit.lost and not losses.seen and permit.fence == fence
    assert _held_elsewhere(server.address, clients)
    permit.release()
    assert not _held_elsewhere(server.address, clients)
    assert not losses.seen


def test_a_resumed_session_counts_in_resumes_not_in_losses(start_netsemd, either, proxies) -> None:
    """ClientStats.resumes (libnetsem's ClientStats::resumes), one body for
    both clients: a session resumed after its connection was reset counts
    1 there, and neither a connect nor a connection loss."""
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")
    proxy = proxies(server.port)
    client = either([proxy.address])
    permit = client.acquire("one")
    stats = client.stats()
    assert stats.resumes == 0 and stats.connects == 1, stats
    session = stats.session_id
    proxy.cut()
    assert client.get("one").value == 0  # answered once resumed
    stats = client.stats()
    assert stats.connected and stats.session_id == session, stats
    assert stats.resumes == 1 and stats.connects == 1 and stats.connection_losses == 0, stats
    assert not permit.lost
    release(client, permit)


def test_the_resume_log_counts_the_permits_held_not_the_grants(start_netsemd, either, proxies, caplog) -> None:
    """Both clients: "N permits kept" counts what the session holds (MINE's
    counts): an ACQUIRE of 2 of "pool" and one of "one" are 3 (before: 2,
    one per grant)."""
    caplog.set_level(logging.INFO, logger="netsem")
    server = start_netsemd(semaphores="pool = 3\none = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")
    proxy = proxies(server.port)
    client = either([proxy.address])
    two = client.acquire("pool", count=2)
    one = client.acquire("one")
    proxy.cut()
    assert client.get("one").value == 0  # answered once resumed
    assert wait_until(lambda: "resumed session" in caplog.text, 5), caplog.text
    assert ", 3 permits kept" in caplog.text, caplog.text
    assert not two.lost and not one.lost
    release(client, two)
    release(client, one)


def test_a_resume_answered_late_renews_the_lease_instead_of_dropping_the_session(start_netsemd, either, clients,
                                                                               proxies) -> None:
    """A RESUME answered late in the lease is a resumed session whose lease is
    renewed, not one dropped at once (pyJ24's finding; docs/python.md, "The
    lease"). The real netsemd (T = 9 s) behind a proxy is SIGSTOPped right
    after a ping of the holder's is answered, and the proxy resets the
    connection: the client's RESUME goes to the leader LEADER named, the
    stopped server's own address (its kernel accepts), and waits there
    (connect_timeout 5 s) until SIGCONT lets the server read it 3.75 s
    later, more than T/3 after the RESUME was sent and before T/2 after the
    ping. The resumed lease counts from the
    RESUME's send, so the next ping, T/6 after the resume, would come after
    T/2: the session would be dropped and the permit lost at T/2 after the
    RESUME was sent ("the lease ... ran out"), though the server had just
    resumed it. Now the client pings at once and the answer renews the
    lease: the permit is still held (the server says so) 5.5 s after the
    reset. SIGSTOP and SIGCONT choose when the real server answers, so no
    scripted server is needed."""
    timeout = 9.0
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {round(timeout * 1000)}")
    proxy = proxies(server.port)
    client = either([proxy.address], connect_timeout=5.0)
    permit = client.acquire("one")
    session = client.stats().session_id
    client.ping()
    server.signal(signal.SIGSTOP)
    cut_at = time.monotonic()
    try:
        proxy.cut()
        time.sleep(max(0.0, cut_at + timeout * 5 / 12 - time.monotonic()))
    finally:
        server.signal(signal.SIGCONT)
    assert wait_until(lambda: client.stats().resumes == 1, 2), client.stats()
    time.sleep(max(0.0, cut_at + timeout * 11 / 18 - time.monotonic()))  # past T/2 after the RESUME was sent
    stats = client.stats()
    assert not permit.lost, permit.loss_reason
    assert stats.connected and stats.session_id == session and stats.connection_losses == 0, stats
    assert _held_elsewhere(server.address, clients)
    release(client, permit)


def test_a_queued_acquire_is_granted_after_a_reset(start_netsemd, clients, proxies) -> None:
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")
    proxy = proxies(server.port)
    holder = clients([server.address])
    held = holder.acquire("one")
    waiter = clients([proxy.address])
    thread, got = acquire_in_thread(waiter, "one", 15)
    assert wait_until(lambda: holder.get("one").waiters == 1)
    proxy.cut()
    time.sleep(0.3)  # the waiter resumes meanwhile; its ACQUIRE stays queued at the server
    held.release()
    thread.join(15)
    assert got and isinstance(got[0], Permit), got
    permit = got[0]
    assert not permit.is_local and not permit.lost and permit.fence is not None
    assert _held_elsewhere(server.address, clients)
    permit.release()
    assert not _held_elsewhere(server.address, clients)


def test_resume_after_the_servers_restart_is_refused_and_the_permit_lost(start_netsemd, clients, proxies,
                                                                          caplog) -> None:
    """Through a proxy (two candidates: the proxy and the server's own
    address from LEADER), so that a refused connection does not end the
    resume at once: it is tried until the restarted server says NOT_FOUND."""
    caplog.set_level(logging.INFO, logger="netsem")
    server = start_netsemd(semaphores="one = 1",
                           server_options="session_timeout_ms = 6000\nrestart_lease_wait = off")
    proxy = proxies(server.port)
    client = clients([proxy.address])
    permit = client.acquire("one")
    losses = Losses()
    permit.on_lost(losses)
    server.kill()
    restart(server)
    assert losses.event.wait(10)
    reason, _ = losses.seen[0]
    assert isinstance(reason, Unavailable) and "NOT_FOUND" in str(reason), reason
    assert permit.lost and permit.stop_by is None
    assert "could not be resumed" in caplog.text
    with pytest.raises(Unavailable):
        permit.release()  # lost: gives up this host's mark only
    # A new session then.
    assert wait_until(lambda: client.connected, 10)
    with client.acquire("one", timeout=5) as again:
        assert not again.is_local


def test_close_ends_a_resumable_session_at_once(start_netsemd, clients) -> None:
    """QUIT on close: a resumable session would otherwise keep its permits
    for the session timeout after its connection closed."""
    server = start_netsemd(semaphores="one = 1", server_options="session_timeout_ms = 30000")
    client = clients([server.address])
    client.acquire("one")
    client.close()
    assert wait_until(lambda: not _held_elsewhere(server.address, clients), 2)


def test_kill_9_of_the_holders_server_keeps_the_permit_in_a_cluster(cluster, clients, caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower = (lead + 1) % 3
    third = (lead + 2) % 3
    # The holder talks to a follower: the only server it is given (so it does
    # not follow the leader); LEADER told it the leader, where it resumes.
    holder = clients([cluster.addresses[follower]])
    assert holder.stats().server == cluster.addresses[follower]
    permit = holder.acquire("one")
    losses = Losses()
    permit.on_lost(losses)
    cluster.servers[follower].kill()
    assert holder.get("one").value == 0  # answered once the session is resumed elsewhere
    assert wait_until(lambda: "resumed session" in caplog.text, 5), caplog.text
    assert holder.stats().server != cluster.addresses[follower]
    assert not permit.lost and not losses.seen
    assert _held_elsewhere(cluster.addresses[third], clients)
    permit.release()
    assert wait_until(lambda: not _held_elsewhere(cluster.addresses[third], clients), 5)
    assert not losses.seen


def test_a_queued_acquire_is_granted_after_its_server_died_in_a_cluster(cluster, clients) -> None:
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower = (lead + 1) % 3
    holder = clients([cluster.addresses[lead]])
    held = holder.acquire("one")
    waiter = clients([cluster.addresses[follower]])  # stays there; resumes on the leader
    assert waiter.stats().server == cluster.addresses[follower]
    thread, got = acquire_in_thread(waiter, "one", 20)
    assert wait_until(lambda: holder.get("one").waiters == 1, 10)
    cluster.servers[follower].kill()
    assert wait_until(lambda: waiter.stats().server == cluster.addresses[lead], 10)
    held.release()
    thread.join(20)
    assert got and isinstance(got[0], Permit), got
    assert not got[0].is_local and not got[0].lost
    got[0].release()


def test_settling_from_mine() -> None:
    """What MINE says became of the requests whose answers the broken
    connection lost (docs/client.md's resume rule 6), without a server."""
    from netsem import _protocol as p
    from netsem import _resume as r

    mine = r.parse_mine(["held one 2 41", "held pool 1 40", "queued 9 slow 1", "held %25x 1 42"])
    assert mine.held == {"one": (2, 41), "pool": (1, 40), "%x": (1, 42)} and mine.queued == {"9"}
    held = {"one": 1, "pool": 2, "gone": 1}
    calls = [
        (p.acquire_request("5", "one"), 100.0),             # one went 1 -> 2: granted, fence 41
        (p.acquire_request("6", "two", 1, 5000), 100.0),   # not held: re-sent with what is left
        (p.acquire_request("7", "two", 1, 500), 100.0),    # not held, its time is up: TIMEOUT
        (p.release_request("8", "pool"), 100.0),            # pool went 2 -> 1: it took effect
        (p.acquire_request("9", "slow", 1, 9000), 100.0),  # still queued: kept
        (p.request("10", "GET", "one"), 100.0),             # a read: re-sent
        (p.post_request("11", "sem"), 100.0),               # a change: outcome unknown
        (p.acquire_request("12", "%x"), 100.0),             # names compare decoded
        (p.wait_request("13", "jobs", 1, 9000), 100.0),    # a WAIT still queued: kept
        (p.wait_request("14", "jobs"), 100.0),              # a WAIT no longer queued: may have been granted
    ]
    mine = r.parse_mine(["held one 2 41", "held pool 1 40", "queued 9 slow 1", "held %25x 1 42", "queued 13 jobs 1"])
    settled = r.settle(calls, held, mine, now=101.0)
    assert settled.answer == {"5": b"5 OK 41\n", "7": b"7 TIMEOUT\n", "8": b"8 OK\n", "12": b"12 OK 42\n"}
    assert settled.resend == {"6": p.acquire_request("6", "two", 1, 4000), "10": p.request("10", "GET", "one")}
    assert settled.keep == ["9", "13"]
    assert settled.fail == {"11": r.OUTCOME_UNKNOWN, "14": r.WAIT_UNKNOWN}
    # After a move off a silent server, the words say the client moved it.
    moved = r.settle(calls, held, mine, now=101.0, moved=True)
    assert moved.fail == {"11": r.MOVED_OUTCOME_UNKNOWN, "14": r.MOVED_WAIT_UNKNOWN}
    assert moved.answer == settled.answer and moved.resend == settled.resend and moved.keep == settled.keep
    assert settled.lost == {"gone": 1}  # held before, not in MINE, no RELEASE pending
    # A RELEASE that did not take effect is sent again.
    again = r.settle([(p.release_request("3", "pool", 2), 0.0)], {"pool": 2}, r.parse_mine(["held pool 2 7"]), 0.0)
    assert again.resend == {"3": p.release_request("3", "pool", 2)} and not again.lost


def test_a_wait_answered_before_mines_end_is_kept_for_that_answer() -> None:
    """A queued WAIT granted between RESUME and MINE (a cluster's POST can
    land there, not at will: no server here): its answer comes before MINE's
    END, and MINE no longer lists it. ResumeAnswers hands that answer on
    (``extra``, dispatched after settle; ``early_tags``) and settle keeps the
    WAIT for it. Before, the line was dropped and the WAIT failed "outcome
    unknown"."""
    from netsem import _protocol as p
    from netsem import _resume as r

    tag_of = {"RESUME": "r", "HELLO": "h", "LEASE": "l", "LEADER": "d", "MINE": "m"}
    answers = r.ResumeAnswers(tag_of, 7, 3.0, None)
    lines = [b"r OK 7 1", b"w9 OK 0", b"h OK netsem 1.2 7", b"l OK 3000", b"d ERR BUSY no leader", b"m END 0",
             b"w8 OK 3"]
    assert answers.feed(lines) == "done"
    assert answers.extra == [b"w9 OK 0", b"w8 OK 3"] and answers.early_tags == {"w9"}
    mine = r.parse_mine(answers.mine_items, answers.early_tags)
    settled = r.settle([(p.wait_request("w9", "jobs", 1, 9000), 100.0)], {}, mine, now=101.0)
    assert settled.keep == ["w9"] and not settled.fail


def test_a_queued_wait_is_granted_after_the_leader_is_killed_in_a_cluster(long_lease_cluster, either,
                                                                         clients) -> None:
    """newuser25 §9, both clients: a WAIT queued at the leader when the
    leader is killed -9 is still queued in the resumed session (MINE lists
    its tag), so it keeps waiting there, and a POST made after the resume
    grants it, once. Before, it failed "outcome unknown" at each failover."""
    cluster = long_lease_cluster
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    survivor = (lead + 1) % 3
    waiter = either([cluster.addresses[lead]] + [a for i, a in enumerate(cluster.addresses) if i != lead])
    assert waiter.stats().server == cluster.addresses[lead]
    waiter.create("jobs", 0, 10)
    outcome: list[NetsemError | None] = []

    def wait() -> None:
        try:
            waiter.wait("jobs", timeout=20)
            outcome.append(None)
        except NetsemError as error:
            outcome.append(error)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    other = clients([cluster.addresses[survivor]])
    assert wait_until(lambda: other.get("jobs").waiters == 1, 10), cluster.logs()
    cluster.servers[lead].kill()
    assert wait_until(lambda: waiter.stats().resumes == 1, 10), cluster.logs()
    thread.join(0.3)
    assert not outcome, outcome  # still waiting
    other.post("jobs")
    thread.join(20)
    assert outcome == [None], outcome
    info = other.get("jobs")
    assert info.value == 0 and info.waiters == 0, info
    assert waiter.stats().connection_losses == 0


def test_a_frozen_server_moves_the_session_within_its_lease_in_a_cluster(cluster, clients, caplog) -> None:
    """SIGSTOP of the holder's server: a ping unanswered for T/6 makes the
    client RESUME on another server, well within its lease (T/2); the permit
    is kept and works there."""
    caplog.set_level(logging.INFO, logger="netsem")
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower, third = (lead + 1) % 3, (lead + 2) % 3
    holder = clients([cluster.addresses[follower]])  # stays there; the leader is the other candidate
    assert holder.stats().server == cluster.addresses[follower]
    permit = holder.acquire("one")
    losses = Losses()
    permit.on_lost(losses)
    frozen = cluster.servers[follower]
    frozen.signal(signal.SIGSTOP)
    try:
        assert wait_until(lambda: "was silent" in caplog.text, 5), caplog.text
        assert holder.stats().server != cluster.addresses[follower]
        assert holder.get("one").value == 0
        assert not permit.lost and not losses.seen
        assert _held_elsewhere(cluster.addresses[third], clients)
        permit.release()
        assert wait_until(lambda: not _held_elsewhere(cluster.addresses[third], clients), 5)
    finally:
        frozen.signal(signal.SIGCONT)
    time.sleep(0.5)  # the woken server reads the kick of the old connection: nothing is lost
    assert not losses.seen


MOVED_WORDS = ("the client moved the session to another server (the server did not answer for a sixth of its "
               "session timeout) before the answer")


def test_requests_unanswered_when_the_session_moves_say_the_client_moved_it_in_a_cluster(cluster, either,
                                                                                        clients) -> None:
    """Both clients, as libnetsem (45e47cb): a CREATE and a WAIT sent to a
    server that then fell silent (SIGSTOP) are of unknown outcome once the
    session moves to another server T/6 later (docs/client.md, "Resuming",
    rule 6), and the words say that the client moved the session, not that
    "the connection broke" (newuser25: an operator read it as a network
    fault, while the client had closed the connection itself)."""
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower = (lead + 1) % 3
    client = either([cluster.addresses[follower]])  # stays there; the leader is the other candidate
    assert client.stats().server == cluster.addresses[follower]
    client.create("jobs", 0, 10)
    frozen = cluster.servers[follower]
    frozen.signal(signal.SIGSTOP)
    waited: list[NetsemError | None] = []

    def wait() -> None:
        try:
            client.wait("jobs", timeout=20)
            waited.append(None)
        except NetsemError as error:
            waited.append(error)

    thread = threading.Thread(target=wait, daemon=True)
    try:
        thread.start()
        time.sleep(0.1)  # the WAIT is sent first, then the CREATE
        with pytest.raises(Unavailable) as created:
            client.create("made", 1, 1)
        assert str(created.value).endswith("outcome unknown: " + MOVED_WORDS), created.value
        thread.join(5)
        assert len(waited) == 1 and isinstance(waited[0], Unavailable), waited
        assert str(waited[0]).endswith(MOVED_WORDS + ", and the resumed session no longer waits for it (it may "
                                       "have been granted)"), waited[0]
        assert client.stats().resumes == 1
        assert client.stats().server != cluster.addresses[follower]
    finally:
        frozen.signal(signal.SIGCONT)


def test_a_fresh_session_follows_the_leader(cluster, clients) -> None:
    """Rule 3: a client whose first server is a follower moves to the leader
    LEADER names (once, right after its handshake); the session it left is
    ended by QUIT (its server lists it no more)."""
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower = (lead + 1) % 3
    client = clients([cluster.addresses[follower], cluster.addresses[lead]])  # the leader: a configured server
    assert client.stats().server == cluster.addresses[lead]
    with client.acquire("one", timeout=5) as permit:
        assert not permit.is_local
    # Only this session: the one on the follower was QUIT.
    assert wait_until(lambda: len(client.sessions()) == 1, 5), client.sessions()


def test_a_fresh_session_follows_the_leader_over_tls(tmp_path: Path, either, pki: Pki) -> None:
    """Rule 3 under TLS, as libnetsem (leader_to_reach): LEADER names the
    leader's plain port, so the client moves to the configured server on the
    leader's host, with that server's TLS port. Both clients stayed on the
    follower before."""
    cluster = Cluster(tmp_path / "cluster", semaphores="one = 1", session_timeout_ms=TIMEOUT_MS,
                      server_options=pki.server_options())
    try:
        lead = cluster.leader()
        assert lead >= 0, cluster.logs()
        follower = (lead + 1) % 3
        tls_addresses = [f"{server.host}:{tls_port(server)}" for server in cluster.servers]
        # The server certificate names localhost and 127.0.0.1 only.
        client = either([tls_addresses[follower], tls_addresses[lead]], tls_server_name="localhost",
                        **pki.client_options())
        assert client.stats().server == tls_addresses[lead], cluster.logs()
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local
        release(client, permit)
        # Only this session: the one on the follower was QUIT.
        assert wait_until(lambda: len(client.sessions()) == 1, 5), client.sessions()
    finally:
        cluster.close()


def test_the_lease_still_lapses_when_no_server_answers_in_a_cluster(cluster, clients, caplog) -> None:
    """All three servers SIGSTOPped: the moves to the other candidates get no
    answer, and the permit is lost at the lease's lapse (T/2 after the last
    answer) with stop_by before any server could grant it again."""
    caplog.set_level(logging.DEBUG, logger="netsem")
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower = (lead + 1) % 3
    holder = clients([cluster.addresses[follower]])
    permit = holder.acquire("one")
    losses = Losses()
    permit.on_lost(losses)
    holder.ping()
    frozen_at = time.monotonic()
    for server in cluster.servers:
        server.signal(signal.SIGSTOP)
    try:
        assert losses.event.wait(10)
    finally:
        for server in cluster.servers:
            server.signal(signal.SIGCONT)
    reason, lost_at = losses.seen[0]
    assert isinstance(reason, Unavailable) and "lease" in str(reason), reason
    timeout = TIMEOUT_MS / 1000
    assert lost_at - frozen_at <= timeout / 6 + timeout / 2 + 0.5
    assert permit.stop_by is not None and lost_at < permit.stop_by <= frozen_at + timeout * 0.9
    assert "moving session" in caplog.text  # a move was tried, and failed


def test_a_kick_read_while_the_session_moves_is_the_move_not_a_loss(clients) -> None:
    """The blocking client's side of test_aio_resume's test of the same name:
    its move does not read the old connection, so the KICK there is never
    taken for the session's end."""
    pair = MovingPair()
    with FakeServer(pair.server_a) as a, FakeServer(pair.server_b) as b:
        pair.a_address, pair.b_address = a.address, b.address
        client = clients([a.address, b.address])
        assert client.stats().server == a.address
        permit = client.acquire("db", timeout=5)
        assert permit.fence == 9
        losses = Losses()
        permit.on_lost(losses)
        assert wait_until(lambda: client.stats().server == b.address, 10)
        assert client.ping("after") == "after"
        assert not losses.seen and not permit.lost
        assert client.stats().resumes == 1 and client.stats().connection_losses == 0, client.stats()
        permit.release()
        client.close()
