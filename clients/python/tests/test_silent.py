"""A server that accepted the connection and then says nothing is not an
outage (docs/client.md, "A server that accepts and does not answer"; issue
16, audit B): no fallback, no local permit; calls wait for a round of
connection attempts that decides, bounded by their own timeout (Timeout)
or, without one, by request_timeout (Unavailable, "not an outage").

Each test runs one body for the blocking Client and for netsem.aio (an
AioInThread drives it from the test's thread). The stages: a bare listening
socket (the kernel completes the connection, nobody reads it: no netsemd
can be made to accept and say nothing deterministically but by SIGSTOP,
which the second test uses), the real netsemd SIGSTOPped, and a round that
mixes a closed port with a silent one. Rule 8 (a server found silent whose
accept queue then fills stays silent for the session timeout) needs a
scripted server: no netsemd gives a session and then freezes with a full
queue on cue. Rule 9 (a silent attempt is kept open, and the next rounds
wait on it instead of connecting anew): a scripted server that accepts
nothing until the test lets it, then answers on the one connection queued,
and the real netsemd SIGSTOPped, counting the connections it accepted; over
TLS (the handshake kept mid-way); and an answer that ends the sleep between
rounds. Rule 10 (a holder's silent RESUME attempt is kept open within one
resume): two scripted 1.2 servers, the session's, which goes, and one that
accepts nothing until the test lets it (no netsemd can be made to read no
RESUME on cue while another gives the session up). Rule 9's amendments: a
kept connection has TCP keepalive on (9a: read on the client's socket; no
loopback emulation of a server host that forgot the connection or vanished
exists without network namespaces), a resume's kept RESUME attempt too,
off again once a session begins or is resumed on it (a fresh
connection's options), an answer on a kept RESUME attempt ends the
resume's sleep between rounds as a round's does, a session begun on it counts its lease
from the handshake's end (9b: the SIGSTOPped netsemd, for longer than T/2),
and one given up is QUIT (9c: a scripted server that reads everything once
it accepts). Rule 5's stall is a request other than a queued one left unanswered (a
queued ACQUIRE on the real netsemd moves nothing), and its pace (a move's
tries a backoff apart, as a resume's rounds): the
real netsemd SIGSTOPped, and a bare listener that closes each connection
counting the tries. Rule 10 on the move off a silent server: its kept RESUME
attempt is waited on again at its next try (scripted servers, as for
rule 10), handed to the resume when the silent connection then drops (two
real netsemd SIGSTOPped, the session's killed: B's kernel counts the
connections), and an answer on it between two tries starts the next at
once (a scripted B: no netsemd answers a RESUME at a chosen moment).
Rule 8 with no route (EHOSTUNREACH, ENETUNREACH) within a silent streak:
a network namespace of the test's own whose loopback loses its addresses,
the real netsemd SIGSTOPped in it, over plain TCP and over TLS (a kept TLS
handshake whose socket times out).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aio_support import release
from conftest import acquire_in_thread, client_factory, wait_until
from fake_server import RESUMABLE_42, RESUMES_42, FakeServer, Peer
from tls_support import Pki, tls_port

from netsem import FallbackPolicy
from netsem.errors import NetsemError, Timeout, Unavailable

CONNECT_TIMEOUT = 0.5
REQUEST_TIMEOUT = 1.0
SILENT = "accepted the connection but did not answer"
# Rule 9: a silent attempt kept open, still silent in a later round.
KEPT = r"accepted the connection \d+ ms ago and has not answered HELLO \(the same connection, kept open\)"


@pytest.fixture(params=["blocking", "aio"])
def make(request: pytest.FixtureRequest, local_dir: Path) -> Iterator[Callable[..., Any]]:
    """``make(servers)``: a client of either kind (fallback local, short
    timeouts), closed at the test's end."""
    yield from client_factory(local_dir, request.param, fallback=FallbackPolicy.parse("local"),
                              connect_timeout=CONNECT_TIMEOUT, request_timeout=REQUEST_TIMEOUT,
                              reconnect_min=0.05, reconnect_max=0.2)


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    """A listening socket nobody accepts on (a backlog long enough for every
    attempt of a test: a full one would drop the SYN, a connect timeout)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        yield listener


def address(sock: socket.socket) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


def times_out_silent(client: Any, name: str, timeout: float) -> None:
    """acquire(name, timeout) raises Timeout naming the silent server, no
    earlier than ``timeout``, nothing is served locally, and stats().silent
    says the last round was silent."""
    started = time.monotonic()
    with pytest.raises(Timeout, match=f"{SILENT} within 500 ms: not an outage, so no fallback"):
        client.acquire(name, timeout=timeout)
    assert time.monotonic() - started >= timeout - 0.05
    stats = client.stats()
    assert stats.fallback_entries == 0 and stats.local_grants == 0 and stats.silent, stats


def test_a_port_that_accepts_and_never_answers_is_no_outage(make: Callable[..., Any],
                                                               silent_port: socket.socket) -> None:
    client = make([address(silent_port)])
    assert not client.connected
    times_out_silent(client, "one", 1.5)
    # The first round's attempt is kept open (rule 9): later rounds wait on it.
    assert re.search(rf"{address(silent_port)}: {KEPT}", client.stats().unreachable), client.stats()
    # Calls with no timeout of their own fail at request_timeout, never locally.
    for call in (lambda: client.try_acquire("one"), lambda: client.get("one"), lambda: client.value("one"),
                 lambda: client.post("one")):
        started = time.monotonic()
        with pytest.raises(Unavailable, match="has not answered within 1000 ms: not an outage, so no fallback"):
            call()
        assert time.monotonic() - started < REQUEST_TIMEOUT + 2 * CONNECT_TIMEOUT + 1
    assert client.stats().fallback_entries == 0 and client.stats().local_grants == 0


def silent_while_stopped(make: Callable[..., Any], server: Any, timeout: float) -> Any:
    """A client of ``server``, made while the server is SIGSTOPped, whose
    acquire("one", timeout) times out silent (times_out_silent); the
    server is continued before it returns."""
    server.signal(signal.SIGSTOP)
    try:
        client = make([server.address])
        times_out_silent(client, "one", timeout)
    finally:
        server.signal(signal.SIGCONT)
    return client


def test_a_stopped_netsemd_is_no_outage_and_grants_once_continued(make: Callable[..., Any],
                                                                   start_netsemd: Any) -> None:
    server = start_netsemd(semaphores="one = 1")
    client = silent_while_stopped(make, server, 2.0)
    permit = client.acquire("one", timeout=10)
    assert not permit.is_local and permit.fence is not None
    assert not client.stats().silent  # a session began
    release(client, permit)
    assert client.stats().fallback_entries == 0


def test_a_server_that_wakes_and_refuses_ends_the_silence(make: Callable[..., Any], start_netsemd: Any) -> None:
    """stats().silent (libnetsem's ClientStats::silent) is true while the
    last round was silent, and false after a round that decided otherwise:
    netsemd, full (max_connections 1, the test's own connection has the
    slot) and SIGSTOPped, leaves the client's attempt unanswered; once
    continued it refuses it (``* ERR LIMIT``): a refusal, no longer silent."""
    server = start_netsemd(semaphores="one = 1", server_options="max_connections = 1")
    with socket.create_connection(("127.0.0.1", server.port)):  # the one slot
        assert server.wait_for_log("session began session=1", 5)
        client = silent_while_stopped(make, server, 1.0)
        assert wait_until(lambda: "is full" in client.stats().unreachable, 5), client.stats()
        assert not client.stats().silent and not client.connected, client.stats()


def test_a_silent_server_outranks_a_closed_port_until_it_goes(make: Callable[..., Any],
                                                              silent_port: socket.socket) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        client = make([address(closed), address(silent_port)])
        times_out_silent(client, "one", 1.5)
        silent_port.close()  # the next round reaches no server: fallback as before
        assert wait_until(lambda: client.stats().fallback_entries == 1, 10), client.stats()
        assert not client.stats().silent
        permit = client.acquire("one", timeout=5)
        assert permit.is_local
        release(client, permit)


def test_a_client_in_fallback_whose_next_round_is_silent_stops_serving_locally(make: Callable[..., Any]) -> None:
    """Rule 4: in steady fallback (the only server's port refused), a port that
    starts to accept and say nothing makes new calls wait, not be served
    locally; the permit taken locally before stays held."""
    with socket.socket() as port:
        port.bind(("127.0.0.1", 0))  # bound, not listening yet: refused
        client = make([address(port)])
        held = client.acquire("one", timeout=5)
        assert held.is_local and client.stats().fallback_entries == 1
        port.listen(256)  # the same port now accepts, and nobody reads
        assert wait_until(lambda: SILENT in client.stats().unreachable, 10), client.stats()
        with pytest.raises(Timeout, match=f"{SILENT} within 500 ms: not an outage, so no fallback"):
            client.acquire("two", timeout=1.5)
        assert client.stats().local_grants == 1 and not held.released
        release(client, held)


def test_a_silent_server_whose_queue_fills_stays_silent_for_the_session_timeout(make: Callable[..., Any]) -> None:
    """Rules 8 and 9: a server gives a session (T = 3 s by LEASE), hangs up
    and freezes: it accepts no more, the client's next attempt waits in its
    accept queue (silent), and the test's own connection fills the queue
    (backlog 1: two entries), so that a new connect would time out. The
    client keeps its silent attempt open and waits on it (rule 9) until T
    after the end of the first silent attempt: no fallback, calls wait; then
    it closes it, connects anew, the connect times out, an outage again, and
    the client falls back."""
    def session_then_freeze(peer: Peer) -> None:
        peer.handshake(session_timeout_ms=3000, lease_ms=3000)  # then hangs up

    with FakeServer(session_then_freeze, accepts=1, backlog=1) as server:
        client = make(server.address)
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):  # never accepted
            assert wait_until(lambda: SILENT in client.stats().unreachable, 5), client.stats()
            seen = time.monotonic()  # at least connect_timeout after the first silent attempt began
            times_out_silent(client, "one", 1.5)
            assert re.search(KEPT, client.stats().unreachable), client.stats()
            assert wait_until(lambda: client.stats().fallback_entries == 1, 5), client.stats()
            # Not before T after that attempt (it began before ``seen``
            # minus connect_timeout, and after it minus connect_timeout).
            assert time.monotonic() - seen >= 3.0 - CONNECT_TIMEOUT - 0.2
            assert "no connection within 500 ms" in client.stats().unreachable, client.stats()
            permit = client.acquire("one", timeout=2)
            assert permit.is_local
            release(client, permit)


def grants(peer: Peer) -> None:
    """A FakeServer script: the handshake, then every ACQUIRE granted with fence 5."""
    if peer.handshake():
        peer.serve_honestly(fence=5)


def test_a_silent_attempt_is_kept_open_and_the_session_begins_on_it(make: Callable[..., Any]) -> None:
    """Rule 9: a server that accepts nothing (its kernel queues the
    connections, a frozen process) sees ONE connection from a client that
    waits across rounds: the client keeps its silent attempt open instead of
    connecting anew each round (which filled a frozen server's accept queue,
    and a stalled cluster's max_connections). Once the server accepts, it
    reads the HELLO sent rounds ago on that connection, answers, and the
    session begins there: an acquire is granted by the server."""
    with FakeServer(grants, accepts=0) as server:
        client = make(server.address)
        times_out_silent(client, "one", 1.5)
        assert re.search(KEPT, client.stats().unreachable), client.stats()
        server.accepts = None  # the server wakes: it accepts what its kernel queued
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and permit.fence == 5
        assert server.connections() == 1 and client.stats().connects == 1, (server.connections(), client.stats())
        release(client, permit)


def test_a_stopped_netsemd_sees_one_connection_from_a_waiting_client(make: Callable[..., Any],
                                                                      start_netsemd: Any) -> None:
    """Rule 9 with the real netsemd: SIGSTOPped for 3 s while a new client's
    acquire waits (a round every ~0.6 s), then SIGCONT: granted by the server,
    which accepted at most 2 connections from the client (STATS
    connections_total; it counts every connection accepted). Rule 9b: the
    stall is longer than half the session timeout (T = 2 s), and the session
    that begins on the kept connection is not dropped at once as a lapsed
    lease (its lease counts from the handshake's end, not from HELLO): one
    session, no connection lost."""
    server = start_netsemd(semaphores="one = 1", server_options="session_timeout_ms = 2000")
    server.signal(signal.SIGSTOP)
    wake = threading.Timer(3.0, server.signal, (signal.SIGCONT,))
    try:
        client = make([server.address])
        wake.start()
        permit = client.acquire("one", timeout=10)
    finally:
        wake.cancel()
        server.signal(signal.SIGCONT)
    assert not permit.is_local and permit.fence is not None
    assert client.server_stats()["connections_total"] <= 2, client.server_stats()
    stats = client.stats()
    assert stats.connects == 1 and stats.connection_losses == 0, stats
    release(client, permit)


def test_a_silent_tls_attempt_is_kept_open_mid_handshake(make: Callable[..., Any], pki: Pki) -> None:
    """Rule 9 over TLS: a server that accepts nothing leaves the client's
    TLS handshake unanswered (its ClientHello queued); the client keeps that
    attempt, TLS state and all, and once the server accepts, the handshake
    goes on on the one connection, then HELLO, and the session begins."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)

    def serve(peer: Peer) -> None:
        peer.sock.settimeout(5)
        peer.sock = context.wrap_socket(peer.sock, server_side=True)
        grants(peer)

    with FakeServer(serve, accepts=0) as server:
        client = make(server.address, **pki.client_options())
        times_out_silent(client, "one", 1.5)
        assert re.search(KEPT.replace("HELLO", "the TLS handshake"), client.stats().unreachable), client.stats()
        server.accepts = None
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and permit.fence == 5
        assert server.connections() == 1 and client.stats().connects == 1, (server.connections(), client.stats())
        release(client, permit)


def test_an_answer_on_a_kept_attempt_ends_the_sleep_between_rounds(make: Callable[..., Any]) -> None:
    """Rule 9: while the client sleeps between rounds (3 s here), the server
    that wakes and answers on the kept connection ends the sleep: a waiting
    call gets its session at once, not at the next round."""
    with FakeServer(grants, accepts=0) as server:
        client = make(server.address, reconnect_min=3.0, reconnect_max=3.0)  # after its first round: asleep
        assert re.search(f"{SILENT} HELLO", client.stats().unreachable), client.stats()
        started = time.monotonic()
        server.accepts = None
        permit = client.acquire("one", timeout=5)
        assert time.monotonic() - started < 1.5
        assert not permit.is_local and server.connections() == 1
        release(client, permit)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_silent_resume_candidate_is_kept_open_and_the_session_resumed_on_it(make: Callable[..., Any], pki: Pki,
                                                                              tls: bool) -> None:
    """Rule 10: A, a 1.2 server (T = 6 s), grants a resumable session's
    permit, then its process goes (the connection ends, the port refuses).
    The client resumes on the candidates A, B in turn for ~1.5 s while B
    accepts nothing (a stalled server: its kernel queues the connections):
    B sees ONE connection from the whole resume (without rule 10, one per
    attempt, >= 2). Once B accepts, it reads the RESUME sent attempts ago
    on it (over TLS: the handshake kept mid-way goes on first), answers,
    and the session goes on there, its permit kept."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)

    def secured(peer: Peer) -> None:
        if tls:
            peer.sock.settimeout(5)
            peer.sock = context.wrap_socket(peer.sock, server_side=True)

    def session(peer: Peer) -> None:
        secured(peer)
        peer.answer_all(RESUMABLE_42)

    def resumes(peer: Peer) -> None:
        secured(peer)
        peer.answer_all(RESUMES_42, mine="held one 1 5")

    with FakeServer(session) as a, FakeServer(resumes, accepts=0) as b:
        client = make([a.address, b.address], reconnect_max=0.1, **(pki.client_options() if tls else {}))
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and permit.fence == 5 and client.stats().server == a.address
        a.close()
        time.sleep(1.5)
        b.accepts = None  # B wakes: it accepts what its kernel queued
        assert wait_until(lambda: client.connected and client.stats().server == b.address, 5), client.stats()
        assert b.connections() == 1, b.connections()
        assert not permit.lost and any(" RESUME 42 " in line for line in b.lines)
        release(client, permit)


def test_a_move_off_a_silent_server_keeps_its_silent_resume_attempt(make: Callable[..., Any]) -> None:
    """Rule 10 on the move (rule 5; audit23 finding 2): A, a 1.2 server
    (T = 6 s), grants a resumable session's permit, then falls silent, its
    connection open: the ping behind the ACQUIRE sent next, unanswered for
    T/6, makes the client move: a RESUME on B, tried again a
    backoff after each try until the lease lapses (T/2 after the answered
    one), while B accepts and never answers. Each later pass waits again on
    the attempt the first kept: B reads ONE RESUME (abandoning them, one
    per pass: 2 or more).
    Scripted servers: no netsemd can be made to freeze with its connection
    answered up to a chosen request, nor to accept and never answer."""
    def session(peer: Peer) -> None:
        peer.answer_all(RESUMABLE_42)

    def never_answers(peer: Peer) -> None:
        while peer.read_line(timeout=30) is not None:
            pass

    with FakeServer(session) as a, FakeServer(never_answers) as b:
        client = make([a.address, b.address], request_timeout=10.0)
        permit = client.acquire("one", timeout=5)
        lost = threading.Event()
        permit.on_lost(lambda reason: lost.set())
        assert not permit.is_local and client.stats().server == a.address
        a.frozen.set()
        waiting, got = acquire_in_thread(client, "two", 5.0)
        assert lost.wait(10), "the lease did not lapse"
        assert "lease" in str(permit.loss_reason), permit.loss_reason
        waiting.join(10)
        assert len(got) == 1 and isinstance(got[0], NetsemError), got
        with b.lock:
            resumes = [line for line in b.lines if " RESUME 42 " in line]
        assert len(resumes) == 1, resumes


def test_a_move_off_a_silent_server_tries_again_as_a_resume_backs_off(make: Callable[..., Any],
                                                                       start_netsemd: Any) -> None:
    """Rule 5's pace, as libnetsem (whose move is its resume): A, the real
    netsemd (T = 12 s), grants a resumable session's permit and is
    SIGSTOPped; the ping behind the ACQUIRE sent next (T/6 after it),
    unanswered for T/6, makes the client move, and each try finds B
    closing the connection at once. The next try goes a backoff after the
    last (reconnect_min 50 ms, doubling to reconnect_max 200 ms), so in the
    2 s from the stall to the lease's lapse B sees about ten; without the
    change a try went T/6 after the last began: 2. B is a bare listener
    that closes each connection (no netsemd closes a connection before
    answering on cue; a standalone one answers RESUME NOT_FOUND, which ends
    the session)."""
    a = start_netsemd(semaphores="one = 1\ntwo = 1", server_options="session_timeout_ms = 12000")
    with FakeServer(lambda peer: None) as b:
        try:
            client = make([a.address, b.address], request_timeout=10.0)
            permit = client.acquire("one", timeout=5)
            assert not permit.is_local and client.stats().server == a.address and b.connections() == 0
            tries: list[int] = []
            permit.on_lost(lambda reason: tries.append(b.connections()))
            a.signal(signal.SIGSTOP)
            waiting, got = acquire_in_thread(client, "two", 5.0)
            assert wait_until(lambda: bool(tries), 10), "the lease did not lapse"
            assert tries[0] >= 6, tries
            assert "lease" in str(permit.loss_reason), permit.loss_reason
            waiting.join(10)
            assert len(got) == 1 and isinstance(got[0], NetsemError), got
        finally:
            a.signal(signal.SIGCONT)


def test_a_queued_acquire_on_a_healthy_server_does_not_move_the_session(make: Callable[..., Any],
                                                                         start_netsemd: Any) -> None:
    """Rule 5 counts only a request the server answers at once: an ACQUIRE
    it queues rightly waits with no answer (`OPTION queued off`), and the
    pings behind it show the server alive. A, the real netsemd (T = 3 s),
    queues a second client's ACQUIRE behind a holder for 2.5 s (five T/6):
    the client never tries B (a listener that counts the connections), and
    the ACQUIRE times out on A. Without the change both clients counted the
    queued ACQUIRE as the stall: T/6 after its send, the moment its first
    ping went, they sent RESUME to B (in a cluster, a follower would have
    taken the healthy session)."""
    a = start_netsemd(semaphores="one = 1", server_options="session_timeout_ms = 3000")
    with FakeServer(lambda peer: None) as b:
        holder = make(a.address)
        held = holder.acquire("one", timeout=5)
        assert not held.is_local
        client = make([a.address, b.address])
        assert client.stats().server == a.address
        with pytest.raises(Timeout, match='ACQUIRE "one": timed out'):
            client.acquire("one", timeout=2.5)
        assert b.connections() == 0 and client.stats().resumes == 0, (b.connections(), client.stats())
        assert client.stats().server == a.address and client.stats().connection_losses == 0, client.stats()
        release(holder, held)


def connections_at(port: int) -> int:
    """The connections the kernel holds at 127.0.0.1:``port`` on the
    server's side (not its listener): a SIGSTOPped server's, which its
    kernel accepted and it did not, those the client closed since
    (CLOSE_WAIT) included."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        rows = [row.split() for row in table.readlines()[1:]]
    return sum(1 for row in rows if row[1] == local and row[3] != "0A")


@pytest.mark.parametrize("dropped", ["mid_try", "between_tries"])
def test_a_moves_kept_resume_attempt_is_handed_to_the_resume_when_the_connection_drops(
        make: Callable[..., Any], start_netsemd: Any, dropped: str) -> None:
    """Rule 10 on the move, then a dropped connection (pyI23's leftover): A,
    the real netsemd (T = 6 s), grants a resumable session's permit and is
    SIGSTOPped; the ping behind the ACQUIRE sent next, unanswered for T/6,
    makes the client move: a RESUME on B, a second netsemd, SIGSTOPped too (its kernel
    accepts the connection: silent), kept open. Then A is killed (-9): the
    connection is reset, and the resume that follows waits on the RESUME
    attempt the move kept (as libnetsem, whose move is one resume) until
    the lease lapses: when the permit is lost, B's kernel holds ONE
    connection from the client (without the hand-over: 2, the move's
    closed, a RESUME a woken B would read late, and the resume's own). A
    dies during the move's try on B (``mid_try``: netsem.aio stops that
    try and keeps its attempt) or after it (``between_tries``: the attempt
    kept, keepalive on)."""
    a = start_netsemd(semaphores="one = 1\ntwo = 1", server_options="session_timeout_ms = 6000")
    b = start_netsemd(semaphores="one = 1")
    b.signal(signal.SIGSTOP)
    try:
        client = make([a.address, b.address], request_timeout=10.0)
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and client.stats().server == a.address
        counted: list[int] = []
        permit.on_lost(lambda reason: counted.append(connections_at(b.port)))
        a.signal(signal.SIGSTOP)
        waiting, got = acquire_in_thread(client, "two", 5.0)
        if dropped == "mid_try":
            assert wait_until(lambda: connections_at(b.port) == 1, 5)
        else:
            assert wait_until(lambda: options_of_client_sockets(b.port, KEEPALIVE) == [KEPT_OPTIONS], 5), \
                options_of_client_sockets(b.port, KEEPALIVE)
        a.kill()
        waiting.join(15)
        assert wait_until(lambda: bool(counted), 5), "the lease did not lapse"
        assert counted == [1], counted
        assert "lease" in str(permit.loss_reason), permit.loss_reason
        assert len(got) == 1 and isinstance(got[0], NetsemError), got
    finally:
        b.signal(signal.SIGCONT)


def test_an_answer_on_a_moves_kept_resume_attempt_starts_its_next_try_at_once(make: Callable[..., Any]) -> None:
    """Rule 10 on the move, between two tries (libnetsem's move backs off as
    a resume, which an answer ends): A, a 1.2 server (T = 12 s), grants a
    resumable session's permit and falls silent; the ping behind the
    ACQUIRE sent next (2 s, T/6, after it), unanswered for T/6, makes the
    client move 4 s after the grant: a RESUME on B, which
    accepts nothing (its kernel queues the connection), kept; the next try
    would come a backoff (5 s here) after that try's end, after the lease
    lapses (T/2 after the answered ACQUIRE). B wakes 5 s after the grant
    and answers on the kept connection: the client reads it at once, and
    the session goes on at B, its permit kept, the ACQUIRE sent again there
    (without it: read at the next try, after the lapse, the permit lost).
    Scripted servers: no netsemd can be made to answer a RESUME at a chosen
    moment between two tries (a standalone one answers NOT_FOUND for
    another server's session; a cluster's answer waits for an election
    whose end the test cannot choose)."""
    slow = {"LEASE": "OK 12000", "STATS": 'OK {"session_timeout_ms":12000}'}
    with (FakeServer(lambda peer: peer.answer_all({**RESUMABLE_42, **slow})) as a,
          FakeServer(lambda peer: peer.answer_all({**RESUMES_42, **slow, "ACQUIRE": "OK 6"}, mine="held one 1 5"),
                     accepts=0) as b):
        client = make([a.address, b.address], request_timeout=20.0, reconnect_min=5.0, reconnect_max=5.0)
        permit = client.acquire("one", timeout=5)
        granted = time.monotonic()
        assert not permit.is_local and client.stats().server == a.address
        a.frozen.set()
        waiting, got = acquire_in_thread(client, "two", 10.0)
        assert wait_until(lambda: connections_at(b.port) == 1, 5)  # the move's first try
        time.sleep(max(0.0, granted + 5.0 - time.monotonic()))
        b.accepts = None  # B wakes: it accepts what its kernel queued, and answers
        assert wait_until(lambda: client.connected and client.stats().server == b.address, 3), client.stats()
        assert not permit.lost, permit.loss_reason
        waiting.join(10)
        assert len(got) == 1 and not isinstance(got[0], BaseException) and got[0].fence == 6, got
        assert b.connections() == 1 and client.stats().resumes == 1, client.stats()
        release(client, got[0])
        release(client, permit)


def in_own_network(body: Callable[[Callable[..., None]], None]) -> None:
    """Runs ``body(ip)`` on a thread of its own in a network namespace of its
    own (unshare(CLONE_NEWNET) acts on the calling thread only: it and the
    threads and processes it starts, a client's I/O thread or event loop, a
    netsemd, live there; its loopback down), ``ip(*args)`` running the ip command in it. Skips the
    test where namespaces cannot be made (not root, no ip or nsenter)."""
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.skip("no ip or nsenter to set up a network namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            if libc.unshare(CLONE_NEWNET) != 0:
                outcome.append(f"no network namespace: {os.strerror(ctypes.get_errno())}")
                return
            namespace = f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"
            body(lambda *args: subprocess.run(["nsenter", f"--net={namespace}", "ip", *args], check=True,
                                              timeout=10))
        except BaseException as error:  # reported by the test thread
            outcome.append(error)

    thread = threading.Thread(target=run, name="own-network")
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the test's body did not end within 60 s"
    if outcome and isinstance(outcome[0], str):
        pytest.skip(outcome[0])
    if outcome:
        raise outcome[0]


CLONE_NEWNET = 0x40000000


def test_no_route_to_a_server_found_silent_is_still_silent(make: Callable[..., Any], start_netsemd: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Rule 8 with EHOSTUNREACH and ENETUNREACH (clientG24, as libnetsem):
    within a server's silent streak, a kept connection that ends with no
    reply from its host, or a connect that fails with "No route to host" or
    "Network is unreachable", counts as a connect timeout does: a host
    whose ARP fails, or whose route is gone, cannot be told from a frozen
    or cut-off one that may still serve its holders (here, with no session
    timeout known, for ever: no fallback). Outside a streak such a connect
    is an outage as before: the first try of a client in a network with no
    route falls back at once. In a network namespace of the test's own:
    loopback down (no route), then up, the real netsemd started there and
    SIGSTOPped (its kernel accepts the connection: silent, kept), then
    loopback's addresses flushed: the kept connection times out ("the connection ended before an
    answer", not "closed": the server closed nothing), and the next rounds'
    connects fail "Network is unreachable", still silent (without the
    change: an outage, and the client fell back)."""
    caplog.set_level(logging.DEBUG, logger="netsem")

    def body(ip: Callable[..., None]) -> None:
        first = make("127.0.0.1:9")  # loopback down: no route on its first try
        assert wait_until(lambda: first.stats().fallback_entries == 1, 5), first.stats()
        assert "Network is unreachable" in first.stats().unreachable, first.stats()
        ip("link", "set", "lo", "up")
        server = start_netsemd(semaphores="one = 1")  # started from this thread: in its namespace
        server.signal(signal.SIGSTOP)
        try:
            client = make(server.address)
            assert wait_until(lambda: re.search(KEPT, client.stats().unreachable) is not None, 5), client.stats()
            ip("addr", "flush", "dev", "lo")
            # The kept connection's keepalive ends it (TCP_USER_TIMEOUT 4 s).
            assert wait_until(lambda: "Network is unreachable" in client.stats().unreachable, 10), client.stats()
            assert ("the connection ended before an answer to HELLO (Connection timed out: no reply from that host)"
                    in caplog.text or "the connection ended before an answer (Connection timed out: no reply from "
                    "that host)" in caplog.text), caplog.text
            assert "closed the connection before answering" not in caplog.text, caplog.text
            assert wait_until(lambda: "Network is unreachable, after it accepted and did not answer: still taken as "
                              "silent: no session timeout known" in client.stats().unreachable, 5), client.stats()
            times_out_silent(client, "one", 1.5)
        finally:
            server.signal(signal.SIGCONT)

    in_own_network(body)


def test_a_kept_tls_attempt_whose_host_stops_answering_ends_and_stays_silent(
        make: Callable[..., Any], start_netsemd: Any, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """Rule 8 over TLS, classified by the socket's own error (as libnetsem's
    tls_errno): the real netsemd with TLS, in a network namespace of the
    test's own, SIGSTOPped: the client's TLS handshake is left unanswered
    and its connection kept. Loopback's addresses flushed: the kept
    connection's keepalive ends it with ETIMEDOUT, no reply from the host
    ("TLS handshake: Connection timed out"), and the next rounds' connects
    fail "Network is unreachable", still silent, no fallback. Without the
    change netsem.aio took that ETIMEDOUT (a TimeoutError, as asyncio's own
    bound is) for its wait's end: silent, the dead connection kept and
    waited on again, round after round, for ever."""
    caplog.set_level(logging.DEBUG, logger="netsem")

    def body(ip: Callable[..., None]) -> None:
        ip("link", "set", "lo", "up")
        server = start_netsemd(semaphores="one = 1", server_options=pki.server_options())
        address = f"127.0.0.1:{tls_port(server)}"
        server.signal(signal.SIGSTOP)
        try:
            client = make(address, **pki.client_options())
            kept = KEPT.replace("HELLO", "the TLS handshake")
            assert wait_until(lambda: re.search(kept, client.stats().unreachable) is not None, 5), client.stats()
            ip("addr", "flush", "dev", "lo")
            # The kept connection's keepalive ends it (TCP_USER_TIMEOUT 4 s).
            assert wait_until(lambda: "Network is unreachable, after it accepted and did not answer: still taken as "
                              "silent: no session timeout known" in client.stats().unreachable, 10), client.stats()
            assert "TLS handshake: Connection timed out" in caplog.text, caplog.text
            times_out_silent(client, "one", 1.5)
            assert re.search(kept, client.stats().unreachable) is None, client.stats()
        finally:
            server.signal(signal.SIGCONT)

    in_own_network(body)


def test_a_tls_port_that_closes_mid_handshake_is_an_outage_said_as_libnetsem_says_it(make: Callable[..., Any],
                                                                                      pki: Pki) -> None:
    """A connection closed during the TLS handshake is an outage (fallback),
    as a closed port is, and is said as libnetsem says it: "TLS handshake:
    the server closed the connection" (netsem.client said "TLS/SSL
    connection has been closed (EOF) (_ssl.c:...)": a TLS error, whose
    errno is OpenSSL's error kind, read as a socket's). A scripted server
    that reads the ClientHello and closes: netsemd closes a TLS handshake
    only at its tls_handshake_timeout_ms, which a client that answers at
    once never reaches."""
    def closes(peer: Peer) -> None:
        peer.sock.settimeout(5)
        peer.sock.recv(65536)  # the ClientHello; then the script's end closes the connection

    with FakeServer(closes) as server:
        client = make(server.address, **pki.client_options())
        permit = client.acquire("one", timeout=5)
        assert permit.is_local and client.stats().fallback_entries == 1, client.stats()
        assert "TLS handshake: the server closed the connection" in client.stats().unreachable, client.stats()
        release(client, permit)


def test_the_silent_and_closed_texts_name_the_first_request_unanswered(make: Callable[..., Any]) -> None:
    """audit22's wording: a server that answers HELLO and then nothing is
    said to have "answered HELLO but not LEASE" (not "did not answer
    HELLO"), and one that resets the connection before any answer "closed
    the connection before answering", an outage (fallback), not "refused
    the session" (a refusal's word: no fallback)."""
    def hello_only(peer: Peer) -> None:
        while (line := peer.read_line(timeout=10)) is not None:
            if " HELLO " in line:
                peer.send(f"{line.split(' ')[0]} OK netsem 1.2 7\n".encode())

    with FakeServer(hello_only, accepts=1) as server:
        client = make(server.address)  # after its first round
        assert "accepted the connection and answered HELLO but not LEASE within 500 ms" in client.stats().unreachable
        assert wait_until(lambda: "has answered HELLO but not LEASE (the same connection, kept open)"
                          in client.stats().unreachable, 5), client.stats()

    def reset(peer: Peer) -> None:
        peer.read_line()
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.sock.close()

    with FakeServer(reset) as server:
        client = make(server.address)
        permit = client.acquire("one", timeout=5)
        assert permit.is_local and client.stats().fallback_entries == 1, client.stats()
        unreachable = client.stats().unreachable
        assert "closed the connection before answering" in unreachable and "refused" not in unreachable, unreachable
        release(client, permit)


def client_sockets(port: int) -> list[socket.socket]:
    """Duplicates (the caller closes them) of this process's sockets
    connected to 127.0.0.1:``port``: the client's, whose I/O runs here."""
    found = []
    # The duplicates made here take numbers the listing may hold (its own
    # directory's, or one closed since): skipped when reached.
    ours: set[int] = set()
    for name in os.listdir("/proc/self/fd"):
        if int(name) in ours:
            continue
        try:
            fd = os.dup(int(name))
        except OSError:
            continue  # gone
        ours.add(fd)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)  # not a socket
            continue
        try:
            if sock.family == socket.AF_INET and sock.getpeername() == ("127.0.0.1", port):
                found.append(sock)
                continue
        except OSError:
            pass  # not connected
        sock.close()
    return found


# Rule 9a's options on a kept attempt's socket (connect_timeout 0.5 s: probes
# 1 s apart, 3 of them, TCP_USER_TIMEOUT 4 s), and a fresh connection's.
KEEPALIVE = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE), (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
             (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
             (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)]
KEPT_OPTIONS = [1, 1, 1, 3, 4000]
FRESH = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE), (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
         (socket.IPPROTO_TCP, socket.TCP_NODELAY)]
FRESH_OPTIONS = [0, 0, 1]


def options_of_client_sockets(port: int, options: list[tuple[int, int]]) -> list[list[int]]:
    """``options`` of each of the client's sockets connected to ``port``."""
    found = client_sockets(port)
    try:
        return [[sock.getsockopt(level, option) for level, option in options] for sock in found]
    finally:
        for sock in found:
            sock.close()


def test_a_kept_attempt_has_tcp_keepalive_and_a_session_on_it_has_not(make: Callable[..., Any]) -> None:
    """Rule 9a: a silent attempt kept open probes its server with TCP
    keepalive, connect_timeout apart in whole seconds (at least 1), 3 probes,
    and TCP_USER_TIMEOUT 1 + 3 of them: a host that forgot the connection
    resets it and one gone times it out, instead of the client waiting on
    it for ever. Once the server answers and the session begins on that
    socket, it has what a fresh connection has: TCP_NODELAY, no keepalive,
    no TCP_USER_TIMEOUT (the session's pings and lease watch it)."""
    with FakeServer(grants, accepts=0) as server:
        client = make(server.address)
        assert wait_until(lambda: re.search(KEPT, client.stats().unreachable) is not None, 5), client.stats()
        assert options_of_client_sockets(server.port, KEEPALIVE) == [KEPT_OPTIONS]
        server.accepts = None  # the session begins on the kept connection
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and server.connections() == 1
        assert options_of_client_sockets(server.port, FRESH) == [FRESH_OPTIONS]
        release(client, permit)


def test_a_kept_resume_attempt_has_tcp_keepalive_and_the_session_resumed_on_it_has_not(
        make: Callable[..., Any]) -> None:
    """Rule 10 with rule 9a, as libnetsem: A grants a resumable session's
    permit, then its process goes; B accepts nothing, and the resume's
    silent RESUME attempt to it is kept open with keepalive on (without it:
    SO_KEEPALIVE 0, and a B host that forgot the connection left the
    attempt waited on until the lease's end). Once B answers on it and the
    session is resumed there, the socket has a fresh connection's options."""
    with (FakeServer(lambda peer: peer.answer_all(RESUMABLE_42)) as a,
          FakeServer(lambda peer: peer.answer_all(RESUMES_42, mine="held one 1 5"), accepts=0) as b):
        client = make([a.address, b.address], reconnect_max=0.1)
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and client.stats().server == a.address
        a.close()
        # Within the resume (it lapses 3 s after the last answer, T/2; a later
        # round's kept attempt has keepalive on too, rule 9a).
        assert wait_until(lambda: options_of_client_sockets(b.port, KEEPALIVE) == [KEPT_OPTIONS], 2), \
            options_of_client_sockets(b.port, KEEPALIVE)
        assert not permit.lost
        b.accepts = None  # B wakes: the session is resumed on the kept connection
        assert wait_until(lambda: client.connected and client.stats().server == b.address, 5), client.stats()
        assert b.connections() == 1 and not permit.lost
        assert options_of_client_sockets(b.port, FRESH) == [FRESH_OPTIONS]
        release(client, permit)


def test_an_answer_on_a_kept_resume_attempt_ends_the_sleep_between_rounds(make: Callable[..., Any]) -> None:
    """Rule 10, as libnetsem's sleep: A grants a resumable session's permit
    (T = 6 s) and goes; the resume's first round finds A refusing and B
    silent (its attempt kept), then sleeps its backoff (3 s here, longer
    than the 3 s left of the lease). B wakes and answers on the kept
    connection: that ends the sleep, and the session is resumed there at
    once (without it: the client slept on to the lease's end, the permit
    lost)."""
    with (FakeServer(lambda peer: peer.answer_all(RESUMABLE_42)) as a,
          FakeServer(lambda peer: peer.answer_all(RESUMES_42, mine="held one 1 5"), accepts=0) as b):
        client = make([a.address, b.address], reconnect_min=3.0, reconnect_max=3.0)
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and client.stats().server == a.address
        a.close()
        assert wait_until(lambda: options_of_client_sockets(b.port, KEEPALIVE) == [KEPT_OPTIONS], 2), \
            options_of_client_sockets(b.port, KEEPALIVE)  # kept: the resume's first round is over
        started = time.monotonic()
        b.accepts = None
        assert wait_until(lambda: client.connected and client.stats().server == b.address, 5), client.stats()
        assert time.monotonic() - started < 1.5
        assert b.connections() == 1 and not permit.lost
        release(client, permit)


def test_a_kept_attempt_given_up_is_quit(make: Callable[..., Any]) -> None:
    """Rule 9c: the first server accepts nothing (its attempt is kept), the
    second gives the session: the kept attempt is closed with QUIT behind
    its handshake, so that the first server, once it reads them, ends that
    session at once instead of keeping it resumable for T."""
    def reads(peer: Peer) -> None:
        while peer.read_line() is not None:
            pass

    with FakeServer(reads, accepts=0) as silent, FakeServer(grants) as server:
        client = make([silent.address, server.address])
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and permit.fence == 5
        silent.accepts = None  # wakes: reads what its kernel kept of the closed connection
        assert wait_until(lambda: any(line.endswith(" QUIT") for line in silent.lines), 5), silent.lines
        assert " HELLO " in silent.lines[0], silent.lines
        release(client, permit)
