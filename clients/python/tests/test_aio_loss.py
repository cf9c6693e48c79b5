"""netsem.aio: permits lost with their session, as libnetsem loses them.

The server killed (-9): the permits are lost at once with Unavailable and no
stop_by, the client falls back, and fallback waits for lost permits of the
same name still held on this host; once the server is back, a server grant
waits for the fallback permits. SIGTERM: lost with Shutdown and a stop_by.
A server that stops answering (SIGSTOP): the lease lapses at half the session
timeout, stop_by at 0.9 T less the margin after the lease began.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aio_support import options, run, until
from waiter_support import check_the_lease_over_a_freeze_aio

import netsem
import netsem.aio

TIMEOUT_MS = 2000  # the servers' session timeout here


def test_kill_9_loses_permits_and_fallback_waits_for_them(start_netsemd: Any, local_dir: Path) -> None:
    server = start_netsemd(semaphores="pool = 3\none = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")

    async def main() -> None:
        opts = options(server, local_dir, limits={"pool": 3, "one": 1})
        async with netsem.aio.Client(options=opts) as client:
            pool = await client.acquire("pool", 2)
            one = await client.acquire("one")
            losses: list[tuple[str, netsem.NetsemError]] = []
            pool.on_lost(lambda reason: losses.append(("pool", reason)))
            one.on_lost(lambda reason: losses.append(("one", reason)))
            killed_at = time.monotonic()
            server.kill()
            await until(lambda: len(losses) == 2, 5)
            assert time.monotonic() - killed_at < 2
            assert {name for name, _ in losses} == {"pool", "one"}
            for _, reason in losses:
                assert isinstance(reason, netsem.Unavailable) and not isinstance(reason, netsem.Shutdown)
            assert pool.lost and one.lost and pool.stop_by is None and one.stop_by is None
            assert not client.connected
            late: list[netsem.NetsemError] = []
            one.on_lost(late.append)  # already lost: called at once
            assert late == [one.loss_reason]

            # Fallback: "one" is still held here under a lost server permit,
            # so its host-local stand-in waits for it to be given up.
            with pytest.raises(netsem.Timeout) as raised:
                await client.acquire("one", timeout=0.3)
            assert "from the server" in str(raised.value)
            with pytest.raises(netsem.Unavailable):
                await one.release()
            local_one = await client.acquire("one", timeout=5)
            assert local_one.is_local and local_one.fence is None and not local_one.lost
            assert await client.try_acquire("one") is None  # its local limit is 1
            await pool.__aexit__(None, None, None)  # a lost permit's exit says nothing
            local_pool = await client.acquire("pool", 3, timeout=5)
            assert local_pool.is_local
            await local_pool.release()
            stats = client.stats()
            assert stats.fallback_entries == 1 and stats.local_grants == 2 and stats.connection_losses == 1

            # The server comes back: its grant of "one" on this host waits for
            # the fallback permit.
            server.start()
            await until(lambda: client.connected, 10)
            remote = asyncio.create_task(client.acquire("one", timeout=20))

            async def granted_by_server() -> bool:
                async with netsem.aio.Client(options=options(server)) as observer:
                    return (await observer.get("one")).holders == 1

            await until(granted_by_server, 10)  # past the restart's lease wait
            assert not remote.done()
            await local_one.release()
            permit = await remote
            assert not permit.is_local and permit.fence is not None
            await permit.release()
            assert client.stats().fallback_exits == 1

    run(main(), 60)


def test_shutdown_loses_permits_with_a_stop_by(start_netsemd: Any, local_dir: Path) -> None:
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")

    async def main() -> None:
        async with netsem.aio.Client(options=options(server, local_dir)) as client:
            permit = await client.acquire("one")
            lost = asyncio.Event()
            permit.on_lost(lambda reason: lost.set())
            before = time.monotonic()
            server.signal(signal.SIGTERM)
            await asyncio.wait_for(lost.wait(), 10)
            assert isinstance(permit.loss_reason, netsem.Shutdown)
            assert permit.stop_by is not None
            # 0.9 T less a margin of min(T/20, 0.25 s) after the lease began,
            # which is at most T/6 (a ping) before the SIGTERM.
            assert before - TIMEOUT_MS / 6000 - 0.05 <= permit.stop_by - 1.7 <= time.monotonic()

    run(main())


def test_a_silent_server_lapses_the_lease(start_netsemd: Any, local_dir: Path) -> None:
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")

    async def main() -> None:
        async with netsem.aio.Client(options=options(server, local_dir)) as client:
            permit = await client.acquire("one")
            await client.ping()
            lost_at: list[float] = []
            permit.on_lost(lambda reason: lost_at.append(time.monotonic()))
            stopped_at = time.monotonic()
            server.signal(signal.SIGSTOP)
            try:
                await until(lambda: bool(lost_at), 10)
            finally:
                server.signal(signal.SIGCONT)
            reason = permit.loss_reason
            assert isinstance(reason, netsem.Unavailable) and "lease" in str(reason)
            # Lost at half the lease (1 s) after the last answered request,
            # which went out at most T/6 before the stop.
            assert 1.0 - TIMEOUT_MS / 6000 - 0.05 <= lost_at[0] - stopped_at <= 1.0 + 1.0
            assert permit.stop_by is not None
            assert 0.0 < permit.stop_by - lost_at[0] <= 0.7 + 0.05
            await until(lambda: client.connected, 10)  # it reconnects once the server answers

    run(main())


@pytest.mark.parametrize("close_at_loss", [False, True])
def test_a_frozen_server_that_wakes_grants_no_lost_permit_before_stop_by(
    start_netsemd: Any, local_dir: Path, close_at_loss: bool
) -> None:
    """SIGSTOP the server while a permit is held and another session waits for
    it; SIGCONT once the lease lapsed, well before the session timeout. Had the
    client closed the dead session's socket at the lapse, the server would read
    the close and grant the waiter at once, before the lost permit's stop_by:
    the socket stays open and silent until stop_by, also when the client is
    closed at the loss (``close_at_loss``)."""
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")

    async def main() -> None:
        client = netsem.aio.Client(options=options(server, local_dir, fallback=netsem.FallbackPolicy("fail")))
        await check_the_lease_over_a_freeze_aio(client, server, TIMEOUT_MS / 1000, close_at_loss)

    run(main())
