"""A bare protocol v1 session queued on the server, for the tests of the lease
(test_client_loss.py, test_aio_loss.py, test_tls_auth.py,
test_aio_tls_auth.py): it stands for a client of another host, with no lease
of its own, and records when the server grants it. And the check those tests
make with it over a frozen server, for the blocking and the asyncio Client."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from typing import Any

from aio_support import until, waiters_of
from conftest import wait_until

from netsem.errors import NetsemError, Unavailable


def raw_waiter(port: int, name: str, granted: list[float], stop: threading.Event) -> threading.Thread:
    """A session queued for ``name`` on 127.0.0.1:``port``: its ACQUIRE is sent
    before this returns; a thread pings so that the server keeps the session,
    and appends to ``granted`` the ``time.monotonic()`` of the grant."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"w1 ACQUIRE " + name.encode() + b"\n")

    def run() -> None:
        with sock:
            sock.settimeout(0.2)
            data = b""
            while not stop.is_set():
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    sock.sendall(b"p PING\n")
                    continue
                if not chunk:
                    return
                data += chunk
                if b"w1 OK" in data:
                    granted.append(time.monotonic())
                    return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# The lease over a frozen server: ``client`` (fallback "fail") holds "one" of
# ``server`` (``one = 1``, session timeout ``timeout`` seconds) and a raw_waiter
# queues for it; the server is stopped (SIGSTOP) until the client declares the
# permit lost, then continued at once. The loss must be the lease's, its
# stop_by at most 0.9 T after the freeze and after the loss, and the server,
# which saw no close (the client keeps the dead session's socket open and
# silent until stop_by), must grant the waiter no earlier than stop_by; also
# when the client is closed at the loss (``close_at_loss``).


def check_the_lease_over_a_freeze(client: Any, server: Any, timeout: float, close_at_loss: bool = False) -> None:
    """The check above with a blocking Client, which also declares the loss
    within T/2 of its last answered request (it pings every T/6)."""
    permit = client.acquire("one")
    lost = threading.Event()
    seen: list[tuple[NetsemError, float]] = []
    permit.on_lost(lambda reason: (seen.append((reason, time.monotonic())), lost.set()))
    granted: list[float] = []
    stop = threading.Event()
    waiter = raw_waiter(server.port, "one", granted, stop)
    try:
        assert wait_until(lambda: client.get("one").waiters == 1)
        frozen_at = time.monotonic()
        server.signal(signal.SIGSTOP)
        try:
            assert lost.wait(10)
            if close_at_loss:
                client.close()
        finally:
            server.signal(signal.SIGCONT)
        reason, lost_at = seen[0]
        assert isinstance(reason, Unavailable) and "lease" in str(reason)
        assert lost_at - frozen_at <= timeout / 6 + timeout / 2 + 0.3
        stop_by = permit.stop_by
        assert stop_by is not None and lost_at < stop_by <= frozen_at + timeout * 0.9
        waiter.join(10)
        assert granted, "the waiter was never granted"
        assert granted[0] >= stop_by, f"granted {stop_by - granted[0]:.3f} s before stop_by"
    finally:
        stop.set()


async def check_the_lease_over_a_freeze_aio(client: Any, server: Any, timeout: float,
                                            close_at_loss: bool = False) -> None:
    """The check above with a netsem.aio Client, closed at the end."""
    granted: list[float] = []
    stop = threading.Event()
    try:
        permit = await client.acquire("one")
        lost_at: list[float] = []
        permit.on_lost(lambda reason: lost_at.append(time.monotonic()))
        waiter = raw_waiter(server.port, "one", granted, stop)
        await until(lambda: waiters_of(client, "one"), 10)
        frozen_at = time.monotonic()
        server.signal(signal.SIGSTOP)
        try:
            await until(lambda: bool(lost_at), 10)
            if close_at_loss:
                await client.close()
        finally:
            server.signal(signal.SIGCONT)
        assert isinstance(permit.loss_reason, Unavailable) and "lease" in str(permit.loss_reason)
        assert permit.stop_by is not None
        assert lost_at[0] < permit.stop_by <= frozen_at + timeout * 0.9
        await asyncio.to_thread(waiter.join, 10)
        assert granted, "the waiter was never granted"
        assert granted[0] >= permit.stop_by, f"granted {permit.stop_by - granted[0]:.3f} s before stop_by"
    finally:
        stop.set()
        await client.close()
