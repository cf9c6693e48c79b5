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
rounds.
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aio_support import release
from conftest import client_factory, wait_until
from fake_server import FakeServer, Peer
from tls_support import Pki

from netsem import FallbackPolicy
from netsem.errors import Timeout, Unavailable

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
    earlier than ``timeout``, and nothing is served locally."""
    started = time.monotonic()
    with pytest.raises(Timeout, match=f"{SILENT} within 500 ms: not an outage, so no fallback"):
        client.acquire(name, timeout=timeout)
    assert time.monotonic() - started >= timeout - 0.05
    stats = client.stats()
    assert stats.fallback_entries == 0 and stats.local_grants == 0, stats


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


def test_a_stopped_netsemd_is_no_outage_and_grants_once_continued(make: Callable[..., Any],
                                                                   start_netsemd: Any) -> None:
    server = start_netsemd(semaphores="one = 1")
    server.signal(signal.SIGSTOP)
    try:
        client = make([server.address])
        times_out_silent(client, "one", 2.0)
    finally:
        server.signal(signal.SIGCONT)
    permit = client.acquire("one", timeout=10)
    assert not permit.is_local and permit.fence is not None
    release(client, permit)
    assert client.stats().fallback_entries == 0


def test_a_silent_server_outranks_a_closed_port_until_it_goes(make: Callable[..., Any],
                                                              silent_port: socket.socket) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        client = make([address(closed), address(silent_port)])
        times_out_silent(client, "one", 1.5)
        silent_port.close()  # the next round reaches no server: fallback as before
        assert wait_until(lambda: client.stats().fallback_entries == 1, 10), client.stats()
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
    connections_total; it counts every connection accepted)."""
    server = start_netsemd(semaphores="one = 1")
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
