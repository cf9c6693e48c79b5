"""Tests of permit loss, the lease and reconnection, against the real netsemd:
kill -9 while permits are held, a frozen server (SIGSTOP), shutdown, restart,
refusals that are no outage, an unreachable server, and a caller interrupted
while it waits.

Fallback grants themselves need netsem._local (pylocal's); the tests that
use them are skipped while it is missing. Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import client_factory, wait_until
from waiter_support import check_the_lease_over_a_freeze

from netsem import Client, FallbackPolicy
from netsem.errors import Denied, NetsemError, Shutdown, Unavailable

HAVE_LOCAL = importlib.util.find_spec("netsem._local") is not None


@pytest.fixture
def clients(local_dir) -> Iterator[Callable[..., Client]]:
    """Clients closed at the test's end, with the test's own registry of
    local semaphores."""
    yield from client_factory(local_dir)


class Losses:
    """Records the loss callbacks of permits: (reason, monotonic time)."""

    def __init__(self) -> None:
        self.seen: list[tuple[NetsemError, float]] = []
        self.event = threading.Event()

    def __call__(self, reason: NetsemError) -> None:
        self.seen.append((reason, time.monotonic()))
        self.event.set()


def test_a_queued_acquire_outlives_request_timeout(start_netsemd, clients) -> None:
    """With `OPTION queued off` a queued ACQUIRE has no answer until it is
    granted; the pings answered meanwhile show that the server read it, so
    request_timeout must not end the session (libnetsem did, and then fell
    back while the server still held the name for someone else)."""
    server = start_netsemd(semaphores="one = 1", server_options="session_timeout_ms = 900")
    holder = clients(server.address)
    waiter = clients(server.address, request_timeout=0.4)
    held = holder.acquire("one")
    released = threading.Timer(1.2, held.release)
    released.start()
    start = time.monotonic()
    with waiter.acquire("one", timeout=10) as permit:
        assert time.monotonic() - start >= 1.1
        assert not permit.is_local and permit.fence is not None
    released.join()
    assert waiter.stats().connects == 1 and waiter.stats().connection_losses == 0


def test_kill_9_loses_permits_then_the_client_reconnects(start_netsemd, clients) -> None:
    server = start_netsemd(semaphores="pool = 3\none = 1",
                           server_options="session_timeout_ms = 1000\nrestart_lease_wait = off")
    client = clients(server.address, fallback=FallbackPolicy("fail"), reconnect_max=0.2)
    permits = [client.acquire("pool", 2), client.acquire("one")]
    losses = Losses()
    for permit in permits:
        permit.on_lost(losses)
    server.kill()
    assert wait_until(lambda: len(losses.seen) == 2)
    for permit in permits:
        assert permit.lost and isinstance(permit.loss_reason, Unavailable)
        assert permit.stop_by is None  # the server let go at once (it is gone)
    late = Losses()
    permits[0].on_lost(late)  # already lost: called at once, here
    assert len(late.seen) == 1
    with pytest.raises(Unavailable, match='fallback policy of "one" is fail'):
        client.acquire("one", timeout=1)
    assert not client.connected and client.stats().fallback_entries == 1
    # A lost permit counts on this host until it is given up (its work may
    # still run): until then the server's grants of its name wait here.
    for permit in permits:
        with pytest.raises(Unavailable, match="was lost"):
            permit.release()
    server.start()
    assert wait_until(lambda: client.connected)
    with client.acquire("one", timeout=5) as permit:
        assert not permit.is_local and permit.fence is not None and permit.fence > (permits[1].fence or 0)
    stats = client.stats()
    assert (stats.connects, stats.connection_losses, stats.fallback_exits) == (2, 1, 1)


@pytest.mark.skipif(not HAVE_LOCAL, reason="netsem._local (pylocal) has not landed")
def test_kill_9_then_fallback_grants_locally(start_netsemd, clients, local_dir) -> None:
    server = start_netsemd(semaphores="pool = 3", server_options="session_timeout_ms = 1000")
    client = clients(server.address, local_dir=local_dir, limits={"pool": 3})
    held = client.acquire("pool")
    losses = Losses()
    held.on_lost(losses)
    server.kill()
    assert losses.event.wait(10)
    with pytest.raises(Unavailable):
        held.release()
    with client.acquire("pool", 3, timeout=5) as local:
        assert local.is_local and local.fence is None and not local.lost
        assert client.try_acquire("pool") is None
    assert client.stats().local_grants == 1


def test_shutdown_loses_permits_with_the_leases_end(start_netsemd, clients) -> None:
    server = start_netsemd(semaphores="one = 1", server_options="session_timeout_ms = 2000")
    client = clients(server.address, fallback=FallbackPolicy("fail"))
    permit = client.acquire("one")
    losses = Losses()
    permit.on_lost(losses)
    before = time.monotonic()
    server.stop()
    assert losses.event.wait(10)
    assert isinstance(permit.loss_reason, Shutdown)
    stop_by = permit.stop_by
    # 0.9 T - margin after the lease began, which is before the shutdown.
    assert stop_by is not None and stop_by <= before + 2.0 * 0.9 - 0.1


@pytest.mark.parametrize("close_at_loss", [False, True])
def test_a_frozen_server_loses_the_permit_before_it_can_grant_it_again(start_netsemd, clients, close_at_loss) -> None:
    """SIGSTOP the server while a permit is held and another session waits for
    it: the client declares the permit lost half a session timeout after its
    last answered request, with stop_by before the server can hand the permit
    on. Resumed at once (the freeze ends before the lease would), the server
    must still not grant it to the waiter before stop_by: the client keeps the
    dead session's socket open until then, so the server sees no close; also
    when the Client is closed at the loss (``close_at_loss``)."""
    timeout = 1.5
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {int(timeout * 1000)}")
    client = clients(server.address, fallback=FallbackPolicy("fail"))
    check_the_lease_over_a_freeze(client, server, timeout, close_at_loss)


def test_a_refusal_is_no_outage(start_netsemd, clients) -> None:
    server = start_netsemd(semaphores="one = 1", server_options="allowed_networks = 10.99.0.0/16")
    client = clients(server.address)
    with pytest.raises(Denied, match="refused this host"):
        client.acquire("one", timeout=1)
    with pytest.raises(Denied):
        client.value("one")
    stats = client.stats()
    assert not stats.connected and stats.fallback_entries == 0 and "refused" in stats.unreachable


def test_an_unreachable_server_is_fallback_within_the_connect_timeout(clients) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    start = time.monotonic()
    client = clients(f"127.0.0.1:{port}", fallback=FallbackPolicy("fail"), connect_timeout=0.5)
    assert time.monotonic() - start < 2
    stats = client.stats()
    assert not stats.connected and stats.fallback_entries == 1 and "Connection refused" in stats.unreachable
    with pytest.raises(Unavailable, match="is fail"):
        client.acquire("x")
    with pytest.raises(Unavailable, match="no server reachable"):
        client.get("x")
    with pytest.raises(Unavailable, match="not listed in \\[semaphores\\]"):
        client.post("x")


class Interrupted(Exception):
    pass


def test_an_interrupted_acquire_leaves_nothing_queued_or_held(netsemd, clients) -> None:
    holder = clients(netsemd.address)
    waiter = clients(netsemd.address)
    held = holder.acquire("one")

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            waiter.acquire("one")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert wait_until(lambda: holder.get("one").waiters == 0)  # CANCEL went out
    held.release()
    assert holder.get("one").holders == 0
    assert waiter.connected and waiter.try_acquire("one") is not None


def test_a_loss_callback_cannot_deadlock_on_the_client(netsemd, clients) -> None:
    admin = clients(netsemd.address)
    client = clients(netsemd.address)
    permit = client.acquire("one")
    seen: list[BaseException] = []
    done = threading.Event()

    def callback(reason: NetsemError) -> None:
        try:
            client.ping()  # runs on the I/O thread, which would wait for itself
        except BaseException as error:
            seen.append(error)
        done.set()

    permit.on_lost(callback)
    admin.kick(client.stats().session_id)
    assert done.wait(10)
    assert isinstance(seen[0], RuntimeError) and "loss callback" in str(seen[0])
    assert wait_until(lambda: client.connected)  # the I/O thread lives on
    assert client.ping("ok") == "ok"


def test_a_failure_of_the_io_thread_fails_calls_instead_of_hanging(netsemd, clients, monkeypatch) -> None:
    from netsem import _protocol
    from netsem.errors import ProtocolError

    client = clients(netsemd.address)

    def broken(line: bytes) -> object:
        raise RuntimeError("a bug in the client")

    monkeypatch.setattr(_protocol, "parse_line", broken)
    outcome: list[BaseException] = []
    thread = threading.Thread(target=lambda: outcome.extend(_raised(client.ping)))
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the call hangs"
    assert isinstance(outcome[0], ProtocolError) and "I/O thread failed" in str(outcome[0])
    monkeypatch.undo()
    with pytest.raises(ProtocolError):  # not served by fallback: it is no outage
        client.acquire("one", timeout=1)


def _raised(call: Callable[[], object]) -> list[BaseException]:
    try:
        call()
    except BaseException as error:
        return [error]
    return []
