"""Rule 9 (issue 16; docs/client.md, "Fallback"): an ACQUIRE whose session
ends while it waits, and cannot be resumed, is sent again on a new session
with what is left of its timeout; it falls back only when no server of the
list can be reached, and a KICK the client sees fails it. Both clients,
against the real netsemd; every wait bounded, every process killed by pid.

The cluster recipe (the same as libnetsem's test, no race): three servers,
T = 6 s; a holder takes ``db`` (limit 2) to the limit on the leader; the
waiter is given S3 (a follower), S1 and S2, each through a TCP proxy: the
leader's own address is not one it was given, so it stays on S3 (rule 3).
S3 is SIGSTOPped (the waiter's connection stays open and silent), the
leader KICKs the waiter's session, S3 is killed -9: the connection resets,
RESUME answers NOT_FOUND, and the ACQUIRE goes to S1/S2 again. It must not
be granted (not even locally: fallback ``local``) while the holder holds,
and then be granted by the cluster with a fence above the holder's.
Without rule 9 it was granted by a host-local semaphore at once.

The same stage, with reconnect_min 2 s, opens a gap between the waiter's
session's end and its next round of connection attempts: every call made
in it (an acquire, a try, a wait, a post, and every other request: GET,
LIST, CREATE, DELETE, value()) waits for that round and is served by the
cluster; only a round that reaches no server makes it fall back or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aio_support import options as aio_options
from aio_support import run
from cluster_support import Cluster
from conftest import acquire_in_thread, wait_until
from fake_server import FakeServer, Peer
from proxy_support import TcpProxy

import netsem
import netsem.aio
from netsem import Client, ClientOptions, FallbackPolicy, Permit
from netsem import _resume
from netsem.errors import Timeout, Unavailable

SENT_AGAIN = "sent again on a new session"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "cluster", semaphores="db = 2", session_timeout_ms=6000)
    try:
        yield made
    finally:
        made.close()


class Setup:
    """The recipe's servers: the leader, S3 (a follower) behind a proxy, and the
    waiter's server list."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.lead = cluster.leader()
        assert self.lead >= 0, cluster.logs()
        self.s3 = (self.lead + 1) % 3
        # Each server through a proxy, S3 first: LEADER names the leader's own
        # address, which is not one of the waiter's servers (rule 3: it stays).
        order = [self.s3] + [i for i in range(3) if i != self.s3]
        self.proxies = [TcpProxy(cluster.servers[i].port, cluster.servers[i].host) for i in order]
        self.proxy = self.proxies[0]
        self.waiter_servers = [proxy.address for proxy in self.proxies]

    def break_the_session(self, kick: object) -> None:
        """SIGSTOP S3, KICK the waiter's session at the leader (``kick()``),
        kill -9 S3."""
        s3 = self.cluster.servers[self.s3]
        s3.signal(signal.SIGSTOP)
        kick()  # type: ignore[operator]
        s3.kill()

    async def aio_break_the_session(self, kick: object) -> None:
        """break_the_session, with ``kick()`` awaited."""
        s3 = self.cluster.servers[self.s3]
        s3.signal(signal.SIGSTOP)
        await kick()  # type: ignore[operator]
        s3.kill()

    def clients(self, tmp_path: Path, local_dir: Path, **waiter: object) -> tuple[Client, Client]:
        """The holder (at the leader, no fallback) and the waiter (the proxies,
        S3 first; local fallback; ``waiter``'s options), blocking clients."""
        return (Client(options=ClientOptions(servers=[self.cluster.addresses[self.lead]],
                                             local_dir=str(_holder_dir(tmp_path)), fallback=FallbackPolicy("fail"))),
                Client(options=ClientOptions(servers=self.waiter_servers, local_dir=str(local_dir),
                                             fallback=FallbackPolicy("local"), **waiter)))  # type: ignore[arg-type]

    def aio_options(self, tmp_path: Path, local_dir: Path, **waiter: object) -> tuple[ClientOptions, ClientOptions]:
        """The options of clients() for netsem.aio clients."""
        return (aio_options(self.cluster.addresses[self.lead], _holder_dir(tmp_path), fallback=FallbackPolicy("fail")),
                aio_options(self.waiter_servers[0], local_dir, servers=self.waiter_servers,
                            fallback=FallbackPolicy("local"), **waiter))

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()


def _holder_dir(tmp_path: Path) -> Path:
    made = tmp_path / "holder-local"
    made.mkdir(exist_ok=True)
    return made


def _hold_db(setup: Setup, holder: Client, waiter: Client) -> Permit:
    """Once both clients are connected (a loaded machine may take the cluster
    longer than the first round's wait), the holder takes ``db`` to its limit;
    the waiter stayed on S3 (rule 3)."""
    assert wait_until(lambda: holder.connected and waiter.connected, 10)
    held = holder.acquire("db", count=2)
    assert waiter.stats().server == setup.proxy.address
    return held


async def _aio_hold_db(setup: Setup, holder: netsem.aio.Client, waiter: netsem.aio.Client) -> netsem.aio.Permit:
    """_hold_db for netsem.aio clients."""
    deadline = time.monotonic() + 10
    while not (holder.stats().connected and waiter.stats().connected):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    held = await holder.acquire("db", count=2)
    assert waiter.stats().server == setup.proxy.address
    return held


def _check_cluster_grant(permit: object, held: object, waiter: object) -> None:
    """The waiter's permit came from the cluster, after the holder's: a fence
    above the holder's, and never a local grant."""
    assert not permit.is_local and permit.fence is not None and held.fence is not None  # type: ignore[attr-defined]
    assert permit.fence > held.fence  # type: ignore[attr-defined]
    assert waiter.stats().local_grants == 0  # type: ignore[attr-defined]


def _waiter_session(holder: Client) -> int:
    waiters = holder.waiters("db")
    assert len(waiters) == 1, waiters
    return waiters[0].session_id


def test_a_queued_acquire_whose_session_was_kicked_meanwhile_is_sent_again(cluster, tmp_path, local_dir,
                                                                            caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    setup = Setup(cluster)
    holder, waiter = setup.clients(tmp_path, local_dir, reconnect_min=0.05, reconnect_max=0.2)
    try:
        held = _hold_db(setup, holder, waiter)
        thread, got = acquire_in_thread(waiter, "db", 20)
        assert wait_until(lambda: holder.get("db").waiters == 1, 10)
        session = _waiter_session(holder)
        sent_at = time.monotonic()
        setup.break_the_session(lambda: holder.kick(session))
        assert wait_until(lambda: SENT_AGAIN in caplog.text or bool(got), 10), caplog.text
        assert not got, got  # neither a local grant nor an error
        line = next(r.getMessage() for r in caplog.records if SENT_AGAIN in r.getMessage())
        assert "NOT_FOUND" in line and "ms left" in line, line
        # Queued again at the cluster, under a new session, while the holder holds.
        assert wait_until(lambda: holder.get("db").waiters == 1, 5)
        assert _waiter_session(holder) != session
        time.sleep(0.5)
        assert not got and waiter.stats().local_grants == 0, got
        held.release()
        thread.join(20)
        assert got and isinstance(got[0], Permit), got
        permit = got[0]
        _check_cluster_grant(permit, held, waiter)
        assert time.monotonic() - sent_at < 20
        permit.release()
    finally:
        waiter.close()
        holder.close()
        setup.close()


def test_aio_a_queued_acquire_whose_session_was_kicked_meanwhile_is_sent_again(cluster, tmp_path, local_dir,
                                                                                caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    setup = Setup(cluster)

    async def main() -> None:
        holder_options, waiter_options = setup.aio_options(tmp_path, local_dir)
        async with netsem.aio.Client(options=holder_options) as holder, \
                netsem.aio.Client(options=waiter_options) as waiter:
            held = await _aio_hold_db(setup, holder, waiter)
            task = asyncio.ensure_future(waiter.acquire("db", timeout=20))
            deadline = time.monotonic() + 10
            while (await holder.get("db")).waiters != 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            session = (await holder.waiters("db"))[0].session_id
            await setup.aio_break_the_session(lambda: holder.kick(session))
            deadline = time.monotonic() + 10
            while SENT_AGAIN not in caplog.text and not task.done():
                assert time.monotonic() < deadline, caplog.text
                await asyncio.sleep(0.01)
            assert not task.done(), task.result() if not task.exception() else task.exception()
            await asyncio.sleep(0.5)
            waiters = await holder.waiters("db")
            assert len(waiters) == 1 and waiters[0].session_id != session, waiters
            assert not task.done() and waiter.stats().local_grants == 0
            await held.release()
            permit = await asyncio.wait_for(task, 20)
            _check_cluster_grant(permit, held, waiter)
            await permit.release()

    try:
        run(main(), bound=60)
    finally:
        setup.close()


def test_a_kick_the_client_sees_fails_the_queued_acquire(start_netsemd, local_dir) -> None:
    """`* ERR KICKED` on the live connection: an operator's decision, not sent
    again and not served locally (until rule 9 it fell back)."""
    server = start_netsemd(semaphores="db = 1", server_options="session_timeout_ms = 6000")
    (local_dir / "h").mkdir(exist_ok=True)
    holder = Client(options=ClientOptions(servers=[server.address], local_dir=str(local_dir / "h"),
                                          fallback=FallbackPolicy("fail")))
    waiter = Client(options=ClientOptions(servers=[server.address], local_dir=str(local_dir),
                                          fallback=FallbackPolicy("local"), reconnect_min=0.05))
    try:
        held = holder.acquire("db")
        thread, got = acquire_in_thread(waiter, "db", 10)
        assert wait_until(lambda: holder.get("db").waiters == 1, 10)
        holder.kick(holder.waiters("db")[0].session_id)
        thread.join(10)
        assert got and isinstance(got[0], Unavailable) and "KICK" in str(got[0]), got
        assert waiter.stats().local_grants == 0
        held.release()
    finally:
        waiter.close()
        holder.close()


def test_aio_a_kick_the_client_sees_fails_the_queued_acquire(start_netsemd, local_dir) -> None:
    server = start_netsemd(semaphores="db = 1", server_options="session_timeout_ms = 6000")
    (local_dir / "h").mkdir(exist_ok=True)

    async def main() -> None:
        async with netsem.aio.Client(options=aio_options(server, local_dir / "h",
                                                         fallback=FallbackPolicy("fail"))) as holder, \
                netsem.aio.Client(options=aio_options(server, local_dir, fallback=FallbackPolicy("local"))) as waiter:
            held = await holder.acquire("db")
            task = asyncio.ensure_future(waiter.acquire("db", timeout=10))
            deadline = time.monotonic() + 10
            while (await holder.get("db")).waiters != 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await holder.kick((await holder.waiters("db"))[0].session_id)
            with pytest.raises(Unavailable, match="KICK"):
                await asyncio.wait_for(task, 10)
            assert waiter.stats().local_grants == 0
            await held.release()

    run(main())


class KickedOnResume:
    """A fake 1.2 server (T = 3 s). The first connection makes the session
    resumable, grants ``held`` (fence 3), reads the ACQUIRE of ``db`` and
    breaks without a word. A RESUME is answered OK and at once ``* ERR
    KICKED`` (an administrator's KICK among RESUME's first answers, before
    MINE's END), then the connection closes, as netsemd's does for a kicked
    session. Any later connection is a fresh session that grants every
    ACQUIRE (fence 5). Keeps the ACQUIREs and counts the RESUMEs. ``silent``:
    the first connection does not break but falls silent (socket open, no
    answer, not even to PING), so that a client given a second server MOVES
    the session there (rule 5) and reads the KICK on that path."""

    SECRET = "0123456789abcdef0123456789abcdef"

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.lock = threading.Lock()
        self.connections = 0
        self.resumes = 0
        self.acquires: list[str] = []

    def __call__(self, peer: Peer) -> None:
        with self.lock:
            index = self.connections
            self.connections += 1
        session = 42 + index
        answers = {"HELLO": f"OK netsem 1.2 {session}", "LEASE": "OK 3000", "RESUMABLE": f"OK {session} {self.SECRET}",
                   "LEADER": "ERR UNKNOWN_VERB LEADER", "STATS": 'OK {"session_timeout_ms":3000}', "OPTION": "OK"}
        quiet = False
        while (line := peer.read_line(timeout=10)) is not None:
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0]
            if quiet:
                continue
            if verb == "RESUME":
                with self.lock:
                    self.resumes += 1
                peer.send(f"{tag} OK 42 1\n* ERR KICKED kicked by session 1 (127.0.0.1:9)\n".encode())
                time.sleep(0.1)
                return
            if verb == "ACQUIRE":
                with self.lock:
                    self.acquires.append(line)
                if index == 0 and " db " in line:
                    if self.silent:
                        quiet = True  # queued; then the server says nothing more
                        continue
                    time.sleep(0.3)  # queued; then the connection breaks without a word
                    return
                peer.send(f"{tag} OK {3 if index == 0 else 5}\n".encode())
            elif verb == "PING":
                peer.send(f"{tag} PONG {rest[5:]}".rstrip().encode() + b"\n")
            else:
                peer.send(f"{tag} {answers.get(verb, 'OK')}\n".encode())


def _kicked_options(server: FakeServer, local_dir: Path, other: FakeServer | None = None) -> ClientOptions:
    servers = [server.address] + ([other.address] if other is not None else [])
    return ClientOptions(servers=servers, local_dir=str(local_dir), fallback=FallbackPolicy("local"),
                         connect_timeout=0.5, reconnect_min=0.05, reconnect_max=0.2)


def _check_kicked_on_resume(script: KickedOnResume, got: object, held: object, took: float) -> None:
    """The KICK read among RESUME's answers ended the session: the waiting
    ACQUIRE failed (not sent again, not served locally) well before the lease
    (1.5 s) could lapse, and the held permit is lost without a stop-by time."""
    assert isinstance(got, Unavailable) and "KICK" in str(got) and "not sent again" in str(got), got
    assert took < 1.2, took
    assert script.resumes == 1, script.resumes  # no other RESUME after the KICK
    assert [line.split(" ")[2] for line in script.acquires] == ["held", "db"], script.acquires
    assert held.lost and "KICK" in str(held.loss_reason) and held.stop_by is None  # type: ignore[attr-defined]


def _kicked_run(script: KickedOnResume, options: ClientOptions) -> None:
    """netsem.client holds "held", then waits for "db" while the script's
    KICK ends its session: _check_kicked_on_resume, nothing granted locally,
    and a release of the lost permit says so again."""
    with Client(options=options) as client:
        held = client.acquire("held", timeout=5)
        started = time.monotonic()
        got = _catch(lambda: client.acquire("db", timeout=10))
        _check_kicked_on_resume(script, got, held, time.monotonic() - started)
        assert client.stats().local_grants == 0
        with pytest.raises(Unavailable, match="was lost"):
            held.release()  # given up: its loss is said again


async def _aio_kicked_run(script: KickedOnResume, options: ClientOptions) -> None:
    """_kicked_run through netsem.aio."""
    async with netsem.aio.Client(options=options) as client:
        held = await client.acquire("held", timeout=5)
        started = time.monotonic()
        try:
            got: object = await client.acquire("db", timeout=10)
        except Unavailable as error:
            got = error
        _check_kicked_on_resume(script, got, held, time.monotonic() - started)
        assert client.stats().local_grants == 0
        with pytest.raises(Unavailable, match="was lost"):
            await held.release()  # given up: its loss is said again


def test_a_kick_read_among_the_resumes_answers_fails_the_queued_acquire(local_dir) -> None:
    """Until then ResumeAnswers ignored a ``*`` line before MINE's END: the
    client tried RESUME again until its lease lapsed, and then sent the
    ACQUIRE again on a new session (libnetsem fixed the same, client20)."""
    script = KickedOnResume()
    with FakeServer(script) as server:
        _kicked_run(script, _kicked_options(server, local_dir))


def test_aio_a_kick_read_among_the_resumes_answers_fails_the_queued_acquire(local_dir) -> None:
    script = KickedOnResume()
    with FakeServer(script) as server:
        run(_aio_kicked_run(script, _kicked_options(server, local_dir)))


def _moved(a: FakeServer, b: FakeServer) -> bool:
    """The RESUME went to B only: the session moved off A, which never broke."""
    with a.lock, b.lock:
        return (not any(" RESUME " in line for line in a.lines)
                and any(" RESUME " in line for line in b.lines))


def test_a_kick_read_while_the_session_moves_fails_the_queued_acquire(local_dir) -> None:
    """The same KICK, read on the move off a silent server (rule 5; the first
    server falls silent under the ACQUIRE, the second answers the RESUME with
    OK and the KICK). Until then _move took it for a failed move: the held
    permit stayed held until the lease ran out (with a stop-by time), other
    moves were tried, and the ACQUIRE was then sent again on a new session
    (review20, finding 1)."""
    script = KickedOnResume(silent=True)
    with FakeServer(script) as a, FakeServer(script) as b:
        _kicked_run(script, _kicked_options(a, local_dir, b))
        assert _moved(a, b)


def test_aio_a_kick_read_while_the_session_moves_fails_the_queued_acquire(local_dir) -> None:
    script = KickedOnResume(silent=True)
    with FakeServer(script) as a, FakeServer(script) as b:
        run(_aio_kicked_run(script, _kicked_options(a, local_dir, b)))
        assert _moved(a, b)


def test_a_waiter_whose_only_server_died_still_falls_back(start_netsemd, local_dir) -> None:
    """The other side of rule 9: the next round reaches no server (the only
    one was killed -9): the ACQUIRE falls back, with what is left of its
    timeout (fallback `local`), or fails "no server reachable" (`fail`)."""
    server = start_netsemd(semaphores="db = 1", server_options="session_timeout_ms = 6000")
    (local_dir / "h").mkdir(exist_ok=True)
    holder = Client(options=ClientOptions(servers=[server.address], local_dir=str(local_dir / "h"),
                                          fallback=FallbackPolicy("fail")))
    local = Client(options=ClientOptions(servers=[server.address], local_dir=str(local_dir),
                                         fallback=FallbackPolicy("local"), reconnect_min=0.05))
    failing = Client(options=ClientOptions(servers=[server.address], local_dir=str(local_dir),
                                           fallback=FallbackPolicy("fail"), reconnect_min=0.05))
    try:
        held = holder.acquire("db")  # kept: a dropped Permit is given back
        runs = [acquire_in_thread(c, "db", 10) for c in (local, failing)]
        assert wait_until(lambda: holder.get("db").waiters == 2, 10)
        server.kill()
        for thread, _ in runs:
            thread.join(10)
        got = [outcome for _, outcomes in runs for outcome in outcomes]
        assert len(got) == 2, got
        permits = [g for g in got if isinstance(g, Permit)]
        errors = [g for g in got if isinstance(g, BaseException)]
        assert len(permits) == 1 and permits[0].is_local, got
        assert len(errors) == 1 and isinstance(errors[0], Unavailable) and "no server reachable" in str(errors[0])
        permits[0].release()
        del held
    finally:
        for client in (failing, local, holder):
            client.close()


def _catch(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except BaseException as error:
        return error


def test_requeue_rules_without_a_server() -> None:
    """_resume.Requeue, the part both clients share."""
    blocking = _resume.Requeue('ACQUIRE "db"', 5.0, 100.0)
    assert blocking.refusal(Unavailable("the session ended after its connection did: NOT_FOUND")) is None
    assert blocking.timeout(97.5) == 2.5
    with pytest.raises(Timeout):
        blocking.timeout(100.0)
    line = blocking.sent_again("127.0.0.2:5", 2.5)
    assert line == ('ACQUIRE "db": the session ended while it waited (the session ended after its connection '
                    'did: NOT_FOUND); sent again on a new session to 127.0.0.2:5, 2500 ms left')
    kicked = blocking.refusal(_resume.Kicked("the server ended the session by KICK: by admin"))
    assert isinstance(kicked, Unavailable) and "KICK" in str(kicked)
    bug = netsem.errors.ProtocolError("the I/O thread failed")
    assert blocking.refusal(bug) is bug
    forever = _resume.Requeue('ACQUIRE "db"', None, None)
    assert forever.timeout(1e9) is None
    assert "no timeout" in forever.sent_again("h:1", None)
    trying = _resume.Requeue('ACQUIRE "db"', 0.0, 100.0)
    assert trying.timeout(200.0) == 0.0  # a try stays a try
    # A request without a timeout of its own, made between two sessions: the
    # round alone bounds its wait, and it is sent as it was (no timeout to cut).
    gap = _resume.made_between('GET "db"')
    assert gap.unsent and gap.wait_until() is None and gap.timeout(1e9) == 0.0
    assert gap.sent_again("127.0.0.2:5", 0.0) == ('GET "db": made between two sessions; sent on the new session '
                                                  'to 127.0.0.2:5')
    NextSession = _resume.NextSession
    assert gap.next_session(NextSession(3), 10.0) and not gap.next_session(NextSession(0), 10.0)
    with pytest.raises(Unavailable, match="closed"):
        gap.next_session(NextSession(NextSession.CLOSING), 10.0)
    refusal = netsem.errors.Denied("server 127.0.0.1:7 refused the session: address 127.0.0.1 is not allowed")
    with pytest.raises(netsem.errors.Denied) as refused:  # the round's, read with its decision
        gap.next_session(NextSession(0, refusal=refusal), 10.0)
    assert refused.value is refusal
    # A silent round decides nothing: a try or an untimed request waits
    # request_timeout from its first wait, then raises Silent (no fallback).
    silence = _resume.Silence(("127.0.0.1:7", "127.0.0.2:7"), 1.0)
    assert silence.warning() == ("servers 127.0.0.1:7, 127.0.0.2:7 accepted the connection but did not answer within "
                                 "1000 ms (busy, electing a leader or syncing its disk): not an outage, so no "
                                 "fallback; the client keeps trying")
    assert gap.silent_until(50.0, 10.0) == 60.0 and gap.silent_until(55.0, 10.0) == 60.0
    assert blocking.silent_until(50.0, 10.0) is None and forever.silent_until(50.0, 10.0) is None
    with pytest.raises(_resume.Silent) as silent:
        gap.next_session(NextSession(NextSession.SILENT, silence), 10.0)
    assert str(silent.value) == ('GET "db": servers 127.0.0.1:7, 127.0.0.2:7 accepted the connection but has not '
                                 "answered within 10000 ms: not an outage, so no fallback")
    assert isinstance(silent.value, Unavailable)
    one = _resume.Silence(("127.0.0.1:7",), 0.5)
    with pytest.raises(Timeout) as timed_out:
        blocking.next_session(NextSession(-1, one), 10.0)
    assert str(timed_out.value) == ('ACQUIRE "db": timed out (server 127.0.0.1:7 accepted the connection but did not '
                                    "answer within 500 ms: not an outage, so no fallback)")
    # Rule 3: only a configured leader is followed; under TLS (LEADER names
    # the plain port) the configured server on the leader's host.
    servers = [("127.0.0.1", 1), ("127.0.0.2", 2)]
    assert _resume.follow_target(("127.0.0.2", 2), ("127.0.0.1", 1), servers, tls=False) == ("127.0.0.2", 2)
    assert _resume.follow_target(("127.0.0.3", 3), ("127.0.0.1", 1), servers, tls=False) is None
    assert _resume.follow_target(("127.0.0.2", 9), ("127.0.0.1", 1), servers, tls=False) is None
    assert _resume.follow_target(("127.0.0.2", 9), ("127.0.0.1", 1), servers, tls=True) == ("127.0.0.2", 2)
    assert _resume.follow_target(("127.0.0.1", 9), ("127.0.0.1", 1), servers, tls=True) is None
    assert _resume.follow_target(("0.0.0.0", 2), ("127.0.0.1", 1), servers, tls=True) is None
    assert _resume.follow_target(None, ("127.0.0.1", 1), servers, tls=False) is None


def test_sticky_silence_keeps_a_silent_server_silent_for_the_session_timeout() -> None:
    """Rule 8's decisions (StickySilence, no I/O): from the end of a
    server's first silent attempt, its connect timeouts count as silent for T
    (the last session timeout; the whole streak with none known); another outcome forgets it, this
    process's shortage keeps it, and a session ends the streak."""
    sticky, a, b = _resume.StickySilence(), "127.0.0.1:7", "127.0.0.2:7"
    late = "no connection within 1000 ms"
    assert sticky.failed(a, late, "timeout", 1.0, 3.0) is None  # never silent: an outage
    assert sticky.failed(a, "silent", "silent", 11.0, 3.0) is None
    assert sticky.failed(a, "silent", "silent", 12.5, 3.0) is None  # the first one counts
    assert sticky.failed(a, late, "timeout", 13.766, 3.0) == (
        "no connection within 1000 ms, after it accepted and did not answer: still taken as silent for 234 ms")
    assert sticky.failed(b, late, "timeout", 13.0, 3.0) is None  # per server
    assert sticky.failed(a, "out of descriptors", "local", 13.1, 3.0) is None
    assert sticky.failed(a, late, "timeout", 13.9, 3.0) is not None  # kept by a shortage
    assert sticky.failed(a, late, "timeout", 14.0, 3.0) is None  # T passed: an outage, forgotten
    assert sticky.failed(a, late, "timeout", 14.0, 0.0) is None
    sticky.failed(a, "silent", "silent", 21.0, 0.0)
    # T unknown: no time is safe, silent for the whole streak.
    assert (sticky.failed(a, late, "timeout", 21.0 + 86400, 0.0) or "").endswith("no session timeout known")
    assert sticky.failed(a, "connection refused", "other", 21.0 + 86401, 0.0) is None  # the process is gone
    assert sticky.failed(a, late, "timeout", 21.0 + 86402, 0.0) is None
    sticky.failed(a, "silent", "silent", 31.0, 0.0)
    sticky.session()  # a session with any server
    assert sticky.failed(a, late, "timeout", 32.0, 0.0) is None


def test_sticky_silence_tells_when_a_kept_attempt_is_closed() -> None:
    """Rule 9's bound (StickySilence.lapsed): a server's silent attempt is
    kept open until T after the end of its first silent attempt (T known);
    then the server is forgotten (a new streak: a connect timeout is an
    outage, a silent attempt starts a new bound). With no T, or never
    silent, or after a session, nothing lapses."""
    sticky, a, b = _resume.StickySilence(), "127.0.0.1:7", "127.0.0.2:7"
    late = "no connection within 1000 ms"
    assert not sticky.lapsed(a, 100.0, 3.0)  # never silent
    sticky.failed(a, "silent", "silent", 10.0, 3.0)
    sticky.failed(a, "silent", "silent", 12.0, 3.0)  # the first one counts
    assert not sticky.lapsed(a, 12.999, 3.0) and not sticky.lapsed(b, 13.0, 3.0)  # per server
    assert not sticky.lapsed(a, 10.0 + 86400, 0.0)  # no T known: no bound
    assert sticky.lapsed(a, 13.0, 3.0)
    assert not sticky.lapsed(a, 13.0, 3.0)  # forgotten: once
    assert sticky.failed(a, late, "timeout", 13.1, 3.0) is None  # an outage
    sticky.failed(a, "silent", "silent", 14.0, 3.0)  # a new streak, a new bound
    assert not sticky.lapsed(a, 16.9, 3.0) and sticky.lapsed(a, 17.0, 3.0)
    sticky.failed(a, "silent", "silent", 20.0, 3.0)
    sticky.session()
    assert not sticky.lapsed(a, 23.0, 3.0)


class OneOneServer:
    """A fake 1.1 server (UNKNOWN_VERB to LEASE, RESUMABLE, LEADER; T by STATS):
    the first connection queues the ACQUIRE and then breaks; the second
    grants it (fence 5). Keeps each connection's first line and the ACQUIREs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.first_lines: list[str] = []
        self.acquires: list[str] = []

    def __call__(self, peer: Peer) -> None:
        with self.lock:
            index = self.connections
            self.connections += 1
        first = peer.read_line()
        if first is None:
            return
        with self.lock:
            self.first_lines.append(first)
        peer.buffer = first.encode() + b"\n" + peer.buffer  # handshake() reads it again
        if not peer.handshake(version="1.1", session_id=7 + index, session_timeout_ms=6000):
            return
        request = peer.read_request()
        if request is None:
            return
        with self.lock:
            self.acquires.append(request)
        if index == 0:
            time.sleep(0.2)  # queued; then the connection breaks (the script returns: closed)
            return
        tag = request.split(" ", 1)[0]
        peer.send(f"{tag} OK 5\n".encode())
        peer.serve_honestly(fence=5)


def _one_one_options(server: FakeServer, local_dir: Path) -> ClientOptions:
    return ClientOptions(servers=[server.address], local_dir=str(local_dir), fallback=FallbackPolicy("local"),
                         connect_timeout=0.5, reconnect_min=0.05, reconnect_max=0.2)


def _check_one_one(script: OneOneServer) -> None:
    # A 1.1 server never gets RESUME: the second connection starts afresh.
    assert len(script.first_lines) == 2 and all(" HELLO " in line for line in script.first_lines), script.first_lines
    assert len(script.acquires) == 2, script.acquires
    first, again = (line.split(" ") for line in script.acquires)
    assert first[1:4] == again[1:4] == ["ACQUIRE", "db", "1"], script.acquires
    assert first[4] == "10000" and 0 < int(again[4]) < 10000, script.acquires  # what was left of it


def test_a_1_1_servers_broken_connection_sends_the_acquire_again_not_resume(local_dir, caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    script = OneOneServer()
    with FakeServer(script) as server:
        with Client(options=_one_one_options(server, local_dir)) as client:
            permit = client.acquire("db", timeout=10)
            assert not permit.is_local and permit.fence == 5
            assert client.stats().local_grants == 0
            permit.release()
    _check_one_one(script)
    assert SENT_AGAIN in caplog.text


def test_aio_a_1_1_servers_broken_connection_sends_the_acquire_again_not_resume(local_dir) -> None:
    script = OneOneServer()

    async def main() -> None:
        with FakeServer(script) as server:
            async with netsem.aio.Client(options=_one_one_options(server, local_dir)) as client:
                permit = await client.acquire("db", timeout=10)
                assert not permit.is_local and permit.fence == 5
                assert client.stats().local_grants == 0
                await permit.release()

    run(main())
    _check_one_one(script)


class CancelOnSecond(OneOneServer):
    """As OneOneServer, but the second connection does not grant: it answers
    the client's CANCEL (``CANCELLED`` to the ACQUIRE, ``OK`` to CANCEL)."""

    def __init__(self) -> None:
        super().__init__()
        self.cancels: list[str] = []

    def __call__(self, peer: Peer) -> None:
        with self.lock:
            index = self.connections
            self.connections += 1
        if not peer.handshake(version="1.1", session_id=7 + index, session_timeout_ms=6000):
            return
        request = peer.read_request()
        if request is None:
            return
        with self.lock:
            self.acquires.append(request)
        if index == 0:
            time.sleep(0.2)
            return
        tag = request.split(" ", 1)[0]
        line = peer.read_request(timeout=10)
        if line is None:
            return
        with self.lock:
            self.cancels.append(line)
        cancel_tag, _, rest = line.partition(" ")
        if rest == f"CANCEL {tag}":
            peer.send(f"{tag} CANCELLED\n{cancel_tag} OK\n".encode())
        peer.serve_honestly()


def test_a_cancel_token_cancels_the_acquire_sent_again(local_dir, caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    script = CancelOnSecond()
    token = netsem.CancelToken()
    with FakeServer(script) as server:
        with Client(options=_one_one_options(server, local_dir)) as client:
            thread, got = acquire_in_thread(client, "db", 10, cancel=token)
            assert wait_until(lambda: len(script.acquires) == 2, 5), script.acquires
            token.cancel()
            thread.join(5)
            assert got and isinstance(got[0], netsem.Cancelled), got
            assert client.stats().local_grants == 0
    tag = script.acquires[1].split(" ", 1)[0]
    assert len(script.cancels) == 1 and script.cancels[0].endswith(f" CANCEL {tag}"), script.cancels


def test_aio_a_cancelled_task_cancels_the_acquire_sent_again(local_dir) -> None:
    script = CancelOnSecond()

    async def main() -> None:
        with FakeServer(script) as server:
            async with netsem.aio.Client(options=_one_one_options(server, local_dir)) as client:
                task = asyncio.ensure_future(client.acquire("db", timeout=10))
                deadline = time.monotonic() + 5
                while len(script.acquires) < 2:
                    assert time.monotonic() < deadline, script.acquires
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                deadline = time.monotonic() + 5
                while not script.cancels:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.01)
                assert client.stats().local_grants == 0

    run(main())
    tag = script.acquires[1].split(" ", 1)[0]
    assert len(script.cancels) == 1 and script.cancels[0].endswith(f" CANCEL {tag}"), script.cancels


def _try_options(server: FakeServer, local_dir: Path) -> ClientOptions:
    # reconnect_min 0.5 s: a wait for the next round that spun would burn it all.
    return ClientOptions(servers=[server.address], local_dir=str(local_dir), fallback=FallbackPolicy("local"),
                         connect_timeout=0.5, reconnect_min=0.5, reconnect_max=1.0)


def _check_try(script: OneOneServer) -> None:
    assert len(script.acquires) == 2, script.acquires
    assert all(line.split(" ")[1:] == ["ACQUIRE", "db", "1", "0"] for line in script.acquires), script.acquires


def test_a_try_whose_session_ended_is_tried_again_on_the_next_session_without_spinning(local_dir) -> None:
    """A try has no time left to wait with: it waits for the next round (not
    on a deadline already passed, which spun on the CPU until then) and is
    sent again as a try."""
    script = OneOneServer()
    with FakeServer(script) as server:
        with Client(options=_try_options(server, local_dir)) as client:
            wall, cpu = time.monotonic(), time.process_time()
            permit = client.try_acquire("db")
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            assert permit is not None and not permit.is_local and permit.fence == 5
            assert wall >= 0.4 and cpu < 0.25 * wall, (wall, cpu)  # waited reconnect_min, without spinning
            permit.release()
    _check_try(script)


def test_aio_a_try_whose_session_ended_is_tried_again_on_the_next_session(local_dir) -> None:
    """In netsem.aio the spin never awaited: the event loop froze for good
    (wait_for could not fire either), so the loop runs in a thread the test
    can give up on."""
    script = OneOneServer()
    outcome: list[object] = []

    async def main() -> None:
        async with netsem.aio.Client(options=_try_options(server, local_dir)) as client:
            permit = await client.try_acquire("db")
            assert permit is not None and not permit.is_local and permit.fence == 5
            await permit.release()

    with FakeServer(script) as server:
        thread = threading.Thread(target=lambda: outcome.append(_catch(lambda: run(main()))), daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "the event loop is stuck"
    assert outcome == [None], outcome
    _check_try(script)


def test_a_client_closed_while_the_acquire_waits_for_the_next_session_raises(local_dir) -> None:
    """close() during rule 9's wait: Unavailable "the client is closed", no
    local permit."""
    def script(peer: Peer) -> None:  # every session ends at its first ACQUIRE
        if peer.handshake(version="1.1", session_timeout_ms=6000):
            peer.read_request()

    with FakeServer(script) as server:
        options = ClientOptions(servers=[server.address], local_dir=str(local_dir), fallback=FallbackPolicy("local"),
                                connect_timeout=0.5, reconnect_min=2.0, reconnect_max=2.0)
        client = Client(options=options)
        thread, got = acquire_in_thread(client, "db", 10)
        assert wait_until(lambda: not client.connected, 5)
        time.sleep(0.2)
        client.close()
        thread.join(5)
        assert got and isinstance(got[0], Unavailable) and "closed" in str(got[0]), got


def test_aio_a_client_closed_while_the_acquire_waits_for_the_next_session_raises(local_dir) -> None:
    def script(peer: Peer) -> None:  # every session ends at its first ACQUIRE
        if peer.handshake(version="1.1", session_timeout_ms=6000):
            peer.read_request()

    async def main() -> None:
        options = ClientOptions(servers=[server.address], local_dir=str(local_dir), fallback=FallbackPolicy("local"),
                                connect_timeout=0.5, reconnect_min=2.0, reconnect_max=2.0)
        client = netsem.aio.Client(options=options)
        await client.connect()
        task = asyncio.ensure_future(client.acquire("db", timeout=10))
        deadline = time.monotonic() + 5
        while client.connected:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        await client.close()
        with pytest.raises(Unavailable, match="closed"):
            await asyncio.wait_for(task, 5)

    with FakeServer(script) as server:
        run(main())


# review19 item 8: a NEW call made between a session's end (not resumed) and
# the end of the next round of connection attempts waits for that round, as
# rule 9's re-send does. reconnect_min = 2 s holds the gap open. Without the
# change an acquire was served by a host-local semaphore at once.
MADE_BETWEEN = "made between two sessions"
GAP = {"reconnect_min": 2.0, "reconnect_max": 4.0}
# A call made in the gap right after the loss waits for the round, at least
# reconnect_min (2 s) later; fallback would answer at once.
WAITED = 1.0


def _into_the_gap(setup: Setup, holder: Client, waiter: Client) -> tuple[Permit, int]:
    """The gap tests' stage: the holder takes ``db`` to its limit, the
    waiter's session (on S3) ends unresumed; returns the holder's permit and
    the waiter's old session once the waiter is between two sessions."""
    held = _hold_db(setup, holder, waiter)
    session = waiter.stats().session_id
    setup.break_the_session(lambda: holder.kick(session))
    # The session ended (RESUME answered NOT_FOUND); the next round is
    # reconnect_min (2 s) away.
    assert wait_until(lambda: waiter.stats().connection_losses >= 1, 10)
    assert not waiter.connected
    return held, session


async def _aio_into_the_gap(setup: Setup, holder: netsem.aio.Client,
                            waiter: netsem.aio.Client) -> tuple[netsem.aio.Permit, int]:
    """_into_the_gap for netsem.aio clients."""
    held = await _aio_hold_db(setup, holder, waiter)
    session = waiter.stats().session_id
    await setup.aio_break_the_session(lambda: holder.kick(session))
    deadline = time.monotonic() + 10
    while waiter.stats().connection_losses < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert not waiter.stats().connected
    return held, session


def _in_threads(calls: dict[str, object], bound: float = 15) -> dict[str, tuple[object, float]]:
    """Runs each call on a thread of its own, all at once: by name, what it
    returned (or raised) and how long it took."""
    got: dict[str, tuple[object, float]] = {}

    def run_one(name: str, call: object) -> None:
        started = time.monotonic()
        outcome = _catch(call)
        got[name] = (outcome, time.monotonic() - started)

    threads = [threading.Thread(target=run_one, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(bound)
    assert set(got) == set(calls), got
    return got


async def _in_tasks(calls: dict[str, object], bound: float = 15) -> dict[str, tuple[object, float]]:
    """_in_threads for coroutines: each ``calls`` value makes one."""

    async def run_one(call: object) -> tuple[object, float]:
        started = time.monotonic()
        try:
            outcome = await call()  # type: ignore[operator]
        except Exception as error:
            outcome = error
        return outcome, time.monotonic() - started

    outcomes = await asyncio.wait_for(asyncio.gather(*(run_one(call) for call in calls.values())), bound)
    return dict(zip(calls, outcomes))


def _check_waited(got: dict[str, tuple[object, float]], caplog: pytest.LogCaptureFixture,
                  said: dict[str, str]) -> None:
    """Each call made in the gap succeeded, after waiting for the round (not
    at once), and was logged as sent on the new session (``said``: by call,
    what the log names it)."""
    early = {name: (outcome, took) for name, (outcome, took) in got.items()
             if isinstance(outcome, BaseException) or took < WAITED}
    assert not early, early  # failed, or answered without waiting for the round
    for name, what in said.items():
        assert f"{what}: {MADE_BETWEEN}; sent on the new session to " in caplog.text, (name, caplog.text)


@contextlib.contextmanager
def _gap_clients(cluster: Cluster, tmp_path: Path, local_dir: Path,
                 **waiter: object) -> Iterator[tuple[Setup, Client, Client]]:
    """The gap tests' stage and blocking clients (Setup.clients, GAP and
    ``waiter``'s options for the waiter), all closed at the end."""
    setup = Setup(cluster)
    holder, waiting = setup.clients(tmp_path, local_dir, **GAP, **waiter)
    try:
        yield setup, holder, waiting
    finally:
        waiting.close()
        holder.close()
        setup.close()


def _run_aio_gap(cluster: Cluster, tmp_path: Path, local_dir: Path, body: object, **waiter: object) -> None:
    """_gap_clients for netsem.aio: runs ``await body(setup, holder, waiter)``
    with the two clients open, bounded by 60 s."""
    setup = Setup(cluster)

    async def main() -> None:
        holder_options, waiter_options = setup.aio_options(tmp_path, local_dir, **GAP, **waiter)
        async with netsem.aio.Client(options=holder_options) as holder, \
                netsem.aio.Client(options=waiter_options) as waiting:
            await body(setup, holder, waiting)  # type: ignore[operator]

    try:
        run(main(), bound=60)
    finally:
        setup.close()


def test_an_acquire_made_between_two_sessions_waits_for_the_next_round(cluster, tmp_path, local_dir,
                                                                         caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    with _gap_clients(cluster, tmp_path, local_dir) as (setup, holder, waiter):
        held, session = _into_the_gap(setup, holder, waiter)
        made_at = time.monotonic()
        thread, got = acquire_in_thread(waiter, "db", 20)
        # Queued at the cluster under a new session, not served locally.
        assert wait_until(lambda: holder.get("db").waiters == 1 or bool(got), 15), caplog.text
        assert not got and waiter.stats().local_grants == 0, got
        assert _waiter_session(holder) != session
        assert any(MADE_BETWEEN in r.getMessage() for r in caplog.records), caplog.text
        time.sleep(0.3)
        assert not got, got
        held.release()
        thread.join(20)
        assert got and isinstance(got[0], Permit), got
        permit = got[0]
        _check_cluster_grant(permit, held, waiter)
        assert time.monotonic() - made_at < 20
        permit.release()


def test_aio_an_acquire_made_between_two_sessions_waits_for_the_next_round(cluster, tmp_path, local_dir,
                                                                             caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")

    async def body(setup: Setup, holder: netsem.aio.Client, waiter: netsem.aio.Client) -> None:
        held, session = await _aio_into_the_gap(setup, holder, waiter)
        task = asyncio.ensure_future(waiter.acquire("db", timeout=20))
        deadline = time.monotonic() + 15
        while (await holder.get("db")).waiters != 1 and not task.done():
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.01)
        assert not task.done(), task.result() if not task.exception() else task.exception()
        assert waiter.stats().local_grants == 0
        waiters = await holder.waiters("db")
        assert len(waiters) == 1 and waiters[0].session_id != session, waiters
        assert MADE_BETWEEN in caplog.text, caplog.text
        await held.release()
        permit = await asyncio.wait_for(task, 20)
        _check_cluster_grant(permit, held, waiter)
        await permit.release()

    _run_aio_gap(cluster, tmp_path, local_dir, body)


# The other calls that may fall back (a try, a WAIT, a POST; left untested by
# session 19), made in one gap: a try of "db" (held to its limit) answers
# None from the cluster, where a host-local semaphore would grant it; a WAIT
# and a POST of the created "ctr", listed in the waiter's [semaphores] so that
# fallback would serve them locally, are done by the cluster: its value goes
# back to 0. Without the change (between() answering None: checked) the try
# was a local grant and the WAIT a local one, at once.
TRY_WAIT_POST = {"try": 'ACQUIRE "db"', "wait": 'WAIT "ctr"', "post": 'POST "ctr"'}


def _check_try_wait_post(got: dict[str, tuple[object, float]], caplog: pytest.LogCaptureFixture) -> None:
    assert got["try"][0] is None, got  # TIMEOUT from the cluster: "db" is held to its limit
    _check_waited(got, caplog, TRY_WAIT_POST)


def test_a_try_a_wait_and_a_post_made_between_two_sessions_wait_for_the_next_round(cluster, tmp_path, local_dir,
                                                                                    caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    with _gap_clients(cluster, tmp_path, local_dir, limits={"ctr": 5}) as (setup, holder, waiter):
        assert wait_until(lambda: holder.connected, 10)
        holder.create("ctr", 0, max=5)
        held, session = _into_the_gap(setup, holder, waiter)
        got = _in_threads({"try": lambda: waiter.try_acquire("db"), "wait": lambda: waiter.wait("ctr", timeout=20),
                           "post": lambda: waiter.post("ctr")})
        _check_try_wait_post(got, caplog)
        assert waiter.stats().local_grants == 0
        assert holder.get("ctr").value == 0
        assert waiter.connected and waiter.stats().session_id != session
        held.release()


def test_aio_a_try_a_wait_and_a_post_made_between_two_sessions_wait_for_the_next_round(cluster, tmp_path,
                                                                                        local_dir, caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")

    async def body(setup: Setup, holder: netsem.aio.Client, waiter: netsem.aio.Client) -> None:
        await holder.create("ctr", 0, max=5)
        held, session = await _aio_into_the_gap(setup, holder, waiter)
        got = await _in_tasks({"try": lambda: waiter.try_acquire("db"),
                               "wait": lambda: waiter.wait("ctr", timeout=20), "post": lambda: waiter.post("ctr")})
        _check_try_wait_post(got, caplog)
        assert waiter.stats().local_grants == 0
        assert (await holder.get("ctr")).value == 0
        assert waiter.stats().connected and waiter.stats().session_id != session
        await held.release()

    _run_aio_gap(cluster, tmp_path, local_dir, body, limits={"ctr": 5})


# Every other request (issue 16, review19's libnetsem list; docs/client.md):
# GET, LIST, CREATE, DELETE and value() made in one gap wait for the round and
# are answered by the cluster: the new semaphore is created there and the old
# one deleted; value("db") is the cluster's 0 (the holder holds both
# permits), where the host-local stand-in would say 1. Without the change
# (checked) each raised Unavailable "no server reachable" at once, and value()
# read the local semaphore.
READS = {"get": 'GET "db"', "list": "LIST", "create": 'CREATE "new"', "delete": 'DELETE "old"',
         "value": 'GET "db"'}


def _check_reads(got: dict[str, tuple[object, float]], caplog: pytest.LogCaptureFixture) -> None:
    _check_waited(got, caplog, READS)
    info = got["get"][0]
    assert info.kind == "defined" and info.value == 0 and info.holders == 1, info  # type: ignore[attr-defined]
    assert "db" in [row.name for row in got["list"][0]], got["list"]  # type: ignore[attr-defined]
    assert got["value"][0] == 0, got["value"]


def _check_created_and_deleted(new: object, old: object) -> None:
    assert new.kind == "created" and new.value == 3 and new.max == 3, new  # type: ignore[attr-defined]
    assert old.kind == "absent", old  # type: ignore[attr-defined]


def test_reads_and_changes_made_between_two_sessions_wait_for_the_next_round(cluster, tmp_path, local_dir,
                                                                            caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    with _gap_clients(cluster, tmp_path, local_dir) as (setup, holder, waiter):
        assert wait_until(lambda: holder.connected, 10)
        holder.create("old", 1)
        held, session = _into_the_gap(setup, holder, waiter)
        got = _in_threads({"get": lambda: waiter.get("db"), "list": lambda: waiter.list(),
                           "create": lambda: waiter.create("new", 3), "delete": lambda: waiter.delete("old"),
                           "value": lambda: waiter.value("db")})
        _check_reads(got, caplog)
        _check_created_and_deleted(holder.get("new"), holder.get("old"))
        assert waiter.connected and waiter.stats().session_id != session
        held.release()


def test_aio_reads_and_changes_made_between_two_sessions_wait_for_the_next_round(cluster, tmp_path, local_dir,
                                                                                caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")

    async def body(setup: Setup, holder: netsem.aio.Client, waiter: netsem.aio.Client) -> None:
        await holder.create("old", 1)
        held, session = await _aio_into_the_gap(setup, holder, waiter)
        got = await _in_tasks({"get": lambda: waiter.get("db"), "list": lambda: waiter.list(),
                               "create": lambda: waiter.create("new", 3), "delete": lambda: waiter.delete("old"),
                               "value": lambda: waiter.value("db")})
        _check_reads(got, caplog)
        _check_created_and_deleted(await holder.get("new"), await holder.get("old"))
        assert waiter.stats().connected and waiter.stats().session_id != session
        await held.release()

    _run_aio_gap(cluster, tmp_path, local_dir, body)


# The other side: a GET made in the gap fails "no server reachable" only once
# the round under way reached no server (the only one was killed -9), and at
# once after that round (steady fallback: the client reconnects in the
# background). reconnect_min 1 s: the round comes at least 1 s after the loss.
def _lone_options(server: object, local_dir: Path) -> ClientOptions:
    return ClientOptions(servers=[server.address], local_dir=str(local_dir),  # type: ignore[attr-defined]
                         fallback=FallbackPolicy("fail"), connect_timeout=0.5, reconnect_min=1.0,
                         reconnect_max=4.0)


def test_a_read_made_between_two_sessions_fails_only_when_the_round_reaches_no_server(start_netsemd,
                                                                                      local_dir) -> None:
    server = start_netsemd(semaphores="db = 1", server_options="session_timeout_ms = 6000")
    with Client(options=_lone_options(server, local_dir)) as client:
        assert client.connected
        server.kill()
        assert wait_until(lambda: client.stats().connection_losses >= 1, 10)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no server reachable"):
            client.get("db")
        assert time.monotonic() - started >= 0.5  # it waited for the round
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no server reachable"):
            client.get("db")
        assert time.monotonic() - started < 0.5  # steady fallback: at once


def test_aio_a_read_made_between_two_sessions_fails_only_when_the_round_reaches_no_server(start_netsemd,
                                                                                          local_dir) -> None:
    server = start_netsemd(semaphores="db = 1", server_options="session_timeout_ms = 6000")

    async def main() -> None:
        async with netsem.aio.Client(options=_lone_options(server, local_dir)) as client:
            assert client.connected
            server.kill()
            deadline = time.monotonic() + 10
            while client.stats().connection_losses < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            started = time.monotonic()
            with pytest.raises(Unavailable, match="no server reachable"):
                await client.get("db")
            assert time.monotonic() - started >= 0.5  # it waited for the round
            started = time.monotonic()
            with pytest.raises(Unavailable, match="no server reachable"):
                await client.get("db")
            assert time.monotonic() - started < 0.5  # steady fallback: at once

    run(main())


# review19 item 7: the reconnect backoff goes back to reconnect_min only after
# a session that lived at least reconnect_max.
def _drops_every_acquire(peer: Peer) -> None:
    if peer.handshake(version="1.1", session_timeout_ms=6000):
        peer.read_request()  # the ACQUIRE; then the session ends without an answer


def _backoff_options(server: FakeServer, local_dir: Path) -> ClientOptions:
    return ClientOptions(servers=[server.address], local_dir=str(local_dir), fallback=FallbackPolicy("local"),
                         connect_timeout=0.5, reconnect_min=0.05, reconnect_max=0.4)


# 2.5 s of sessions that end at once: with the backoff reset after each, about
# one connection per 50 ms (30 or more); growing to 0.4 s, about 9.
_AT_MOST = 14


def test_a_server_that_drops_every_acquire_gets_it_with_a_growing_backoff(local_dir) -> None:
    """Rule 9 sends the ACQUIRE again on each new session: a session that
    ended at once must not put the reconnect backoff back to reconnect_min."""
    with FakeServer(_drops_every_acquire) as server:
        with Client(options=_backoff_options(server, local_dir)) as client:
            with pytest.raises(Timeout):
                client.acquire("db", timeout=2.5)
            assert client.stats().local_grants == 0
        assert 3 <= server.connections() <= _AT_MOST, server.connections()


def test_aio_a_server_that_drops_every_acquire_gets_it_with_a_growing_backoff(local_dir) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=_backoff_options(server, local_dir)) as client:
            with pytest.raises(Timeout):
                await client.acquire("db", timeout=2.5)
            assert client.stats().local_grants == 0

    with FakeServer(_drops_every_acquire) as server:
        run(main())
        assert 3 <= server.connections() <= _AT_MOST, server.connections()
