"""netsem.aio: sessions that outlive their connection, as test_resume.py
checks them for the blocking Client (issue 16; docs/client.md's resume
rules): a reset connection (a TCP proxy the test controls) keeps the permit
and a queued ACQUIRE; RESUME after the server's restart is refused and the
permit lost; close ends a resumable session at once (QUIT); in a
three-server cluster, kill -9 of the holder's server keeps its permit and
its queued ACQUIRE. Real netsemd only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aio_support import options, run, until, waiters_of
from cluster_support import Cluster
from fake_server import FakeServer, MovingPair
from proxy_support import restart

import netsem
import netsem.aio

TIMEOUT_MS = 3000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "cluster", semaphores="one = 1", session_timeout_ms=TIMEOUT_MS)
    try:
        yield made
    finally:
        made.close()


def opts(servers: list[str], local_dir: Path) -> netsem.ClientOptions:
    return options(servers[0], local_dir, servers=servers, fallback=netsem.FallbackPolicy("fail"))


async def held_elsewhere(address: str, local_dir: Path) -> bool:
    """A fresh session's try of "one" would block: someone holds it."""
    async with netsem.aio.Client(options=opts([address], local_dir)) as other:
        permit = await other.try_acquire("one")
        if permit is not None:
            await permit.release()
        return permit is None


def test_a_reset_connection_keeps_the_permit(start_netsemd: Any, proxies: Any, local_dir: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")
    proxy = proxies(server.port)

    async def main() -> None:
        async with netsem.aio.Client(options=opts([proxy.address], local_dir)) as client:
            permit = await client.acquire("one")
            fence = permit.fence
            lost: list[netsem.NetsemError] = []
            permit.on_lost(lost.append)
            session = client.stats().session_id
            proxy.cut()
            assert (await client.get("one")).value == 0  # answered once resumed
            await until(lambda: "resumed session" in caplog.text, 5)
            assert client.stats().session_id == session
            assert not permit.lost and not lost and permit.fence == fence
            assert await held_elsewhere(server.address, local_dir)
            await permit.release()
            assert not await held_elsewhere(server.address, local_dir)
            assert not lost

    run(main())


def test_a_queued_acquire_is_granted_after_a_reset(start_netsemd: Any, proxies: Any, local_dir: Path) -> None:
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {TIMEOUT_MS}")
    proxy = proxies(server.port)

    async def main() -> None:
        async with netsem.aio.Client(options=opts([server.address], local_dir)) as holder, \
                netsem.aio.Client(options=opts([proxy.address], local_dir)) as waiter:
            held = await holder.acquire("one")
            task = asyncio.ensure_future(waiter.acquire("one", timeout=15))
            await until(lambda: waiters_of(holder, "one"), 10)
            proxy.cut()
            await asyncio.sleep(0.3)
            await held.release()
            permit = await asyncio.wait_for(task, 15)
            assert not permit.is_local and not permit.lost and permit.fence is not None
            assert await held_elsewhere(server.address, local_dir)
            await permit.release()
            assert not await held_elsewhere(server.address, local_dir)

    run(main())


def test_resume_after_the_servers_restart_is_refused_and_the_permit_lost(start_netsemd: Any, proxies: Any,
                                                                          local_dir: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    server = start_netsemd(semaphores="one = 1", server_options="session_timeout_ms = 6000\nrestart_lease_wait = off")
    proxy = proxies(server.port)  # two candidates: a refused connection is tried again

    async def main() -> None:
        async with netsem.aio.Client(options=opts([proxy.address], local_dir)) as client:
            permit = await client.acquire("one")
            lost: list[netsem.NetsemError] = []
            permit.on_lost(lost.append)
            server.kill()
            restart(server)
            await until(lambda: bool(lost), 10)
            assert isinstance(lost[0], netsem.Unavailable) and "NOT_FOUND" in str(lost[0]), lost
            assert permit.lost and permit.stop_by is None
            assert "could not be resumed" in caplog.text
            with pytest.raises(netsem.Unavailable):
                await permit.release()
            await until(lambda: client.connected, 10)
            again = await client.acquire("one", timeout=5)
            assert not again.is_local
            await again.release()

    run(main())


def test_close_ends_a_resumable_session_at_once(start_netsemd: Any, local_dir: Path) -> None:
    server = start_netsemd(semaphores="one = 1", server_options="session_timeout_ms = 30000")

    async def main() -> None:
        client = netsem.aio.Client(options=opts([server.address], local_dir))
        await client.__aenter__()
        await client.acquire("one")
        await client.__aexit__(None, None, None)
        await until(free, 3)

    async def free() -> bool:
        return not await held_elsewhere(server.address, local_dir)

    run(main())


def test_kill_9_of_the_holders_server_keeps_the_permit_in_a_cluster(cluster: Cluster, local_dir: Path,
                                                                     caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower, third = (lead + 1) % 3, (lead + 2) % 3
    order = [cluster.addresses[follower]]  # the only server given: it does not follow the leader

    async def main() -> None:
        async with netsem.aio.Client(options=opts(order, local_dir)) as holder:
            assert holder.stats().server == cluster.addresses[follower]
            permit = await holder.acquire("one")
            lost: list[netsem.NetsemError] = []
            permit.on_lost(lost.append)
            cluster.servers[follower].kill()
            assert (await holder.get("one")).value == 0
            await until(lambda: "resumed session" in caplog.text, 5)
            assert holder.stats().server != cluster.addresses[follower]
            assert not permit.lost and not lost
            assert await held_elsewhere(cluster.addresses[third], local_dir)
            await permit.release()
            assert not await held_elsewhere(cluster.addresses[third], local_dir)
            assert not lost

    run(main())


def test_a_queued_acquire_is_granted_after_its_server_died_in_a_cluster(cluster: Cluster, local_dir: Path) -> None:
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower = (lead + 1) % 3

    async def main() -> None:
        async with netsem.aio.Client(options=opts([cluster.addresses[lead]], local_dir)) as holder, \
                netsem.aio.Client(options=opts([cluster.addresses[follower]], local_dir)) as waiter:
            held = await holder.acquire("one")
            task = asyncio.ensure_future(waiter.acquire("one", timeout=20))
            await until(lambda: waiters_of(holder, "one"), 10)
            cluster.servers[follower].kill()
            await until(lambda: waiter.stats().server == cluster.addresses[lead], 10)
            await held.release()
            permit = await asyncio.wait_for(task, 20)
            assert not permit.is_local and not permit.lost
            await permit.release()

    run(main())


def test_a_frozen_server_moves_the_session_within_its_lease_in_a_cluster(cluster: Cluster, local_dir: Path,
                                                                          caplog) -> None:
    caplog.set_level(logging.INFO, logger="netsem")
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower, third = (lead + 1) % 3, (lead + 2) % 3
    order = [cluster.addresses[follower]]  # stays there; the leader is the other candidate

    async def main() -> None:
        async with netsem.aio.Client(options=opts(order, local_dir)) as holder:
            assert holder.stats().server == cluster.addresses[follower]
            permit = await holder.acquire("one")
            lost: list[netsem.NetsemError] = []
            permit.on_lost(lost.append)
            frozen = cluster.servers[follower]
            frozen.signal(signal.SIGSTOP)
            try:
                await until(lambda: "was silent" in caplog.text, 5)
                assert holder.stats().server != cluster.addresses[follower]
                assert (await holder.get("one")).value == 0
                assert not permit.lost and not lost
                assert await held_elsewhere(cluster.addresses[third], local_dir)
                await permit.release()
                assert not await held_elsewhere(cluster.addresses[third], local_dir)
            finally:
                frozen.signal(signal.SIGCONT)
            await asyncio.sleep(0.5)
            assert not lost

    run(main())


def test_a_fresh_session_follows_the_leader(cluster: Cluster, local_dir: Path) -> None:
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    follower = (lead + 1) % 3

    async def main() -> None:
        order = [cluster.addresses[follower], cluster.addresses[lead]]  # the leader: a configured server
        async with netsem.aio.Client(options=opts(order, local_dir)) as client:
            assert client.stats().server == cluster.addresses[lead]
            permit = await client.acquire("one", timeout=5)
            assert not permit.is_local
            await permit.release()

    run(main())


def test_a_kick_read_while_the_session_moves_is_the_move_not_a_loss(local_dir: Path) -> None:
    """Rule 5 in netsem.aio: the old connection stays read during a move, so
    the KICK that the RESUME on the new one causes may come first; it must
    not end the session (it did: the permit was lost, and the resumed
    connection thrown away)."""
    pair = MovingPair()
    with FakeServer(pair.server_a) as a, FakeServer(pair.server_b) as b:
        pair.a_address, pair.b_address = a.address, b.address

        async def main() -> None:
            async with netsem.aio.Client(options=opts([a.address, b.address], local_dir)) as client:
                assert client.stats().server == a.address
                permit = await client.acquire("db", timeout=5)
                assert permit.fence == 9
                lost: list[netsem.NetsemError] = []
                permit.on_lost(lost.append)
                await until(lambda: client.stats().server == b.address, 10)
                assert not lost and not permit.lost
                assert await client.ping("after") == "after"
                assert not lost and not permit.lost
                assert client.stats().resumes == 1 and client.stats().connection_losses == 0, client.stats()
                await permit.release()

        run(main())
