"""netsem.aio under many tasks: the limit is never exceeded and grants follow
the server's strict FIFO order, all on one connection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aio_support import options, run, until, waiters_of

import netsem
import netsem.aio


def test_many_tasks_never_exceed_the_limit(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            inside = 0
            most = 0
            fences: list[int] = []

            async def worker(count: int) -> None:
                nonlocal inside, most
                for _ in range(5):
                    async with client.acquire("pool", count=count, timeout=20) as permit:
                        inside += count
                        most = max(most, inside)
                        assert inside <= 3
                        fences.append(permit.fence or 0)
                        await asyncio.sleep(0.002)
                        inside -= count

            await asyncio.gather(*(worker(1 + i % 3) for i in range(30)))
            assert most == 3
            assert len(set(fences)) == 150
            info = await client.get("pool")
            assert (info.value, info.holders, info.waiters) == (3, 0, 0)

    run(main())


def test_grants_follow_the_queue_order(netsemd: Any, local_dir: Path) -> None:
    # Tasks queue one by one behind a holder of "pool" (limit 3); a count-3
    # request early in the queue holds back the count-1 requests behind it.
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client, netsem.aio.Client(
            options=options(netsemd, local_dir)
        ) as holder:
            blocker = await holder.acquire("pool", 3)
            order: list[int] = []
            counts = [1, 3, 1, 1, 2, 1, 3, 1]

            async def take(index: int, count: int) -> None:
                async with client.acquire("pool", count, timeout=20):
                    order.append(index)
                    await asyncio.sleep(0.01)

            tasks = []
            for index, count in enumerate(counts):
                tasks.append(asyncio.create_task(take(index, count)))

                async def queued(index: int = index) -> bool:
                    return await waiters_of(holder, "pool") == index + 1

                await until(queued)
            await blocker.release()
            await asyncio.gather(*tasks)
            assert order[:2] == [0, 1]  # count 3 waits for 0 to leave, and 2.. wait for it
            assert sorted(order) == list(range(len(counts)))
            # FIFO: a request is granted only when it is first in the queue, so
            # no one starts before every earlier one has started.
            assert order == sorted(order)

    run(main())


@pytest.mark.parametrize("session_timeout_ms", [600, 6000, 0])
def test_a_wait_longer_than_request_timeout_stays_on_the_server(
    start_netsemd: Any, local_dir: Path, session_timeout_ms: int
) -> None:
    # Without QUEUED lines (OPTION queued off) a queued ACQUIRE is answered
    # only by its grant; the answered pings after it show that the server read
    # it, so request_timeout must not take the wait for a dead server (and
    # fall back to a host-local permit while the server still queues it).
    # Pings go at least every half request_timeout while it waits, also when
    # the session timeout would space them further (6000: every 2 s).
    server = start_netsemd(semaphores="one = 1", server_options=f"session_timeout_ms = {session_timeout_ms}")

    async def main() -> None:
        async with netsem.aio.Client(options=options(server, local_dir)) as holder, netsem.aio.Client(
            options=options(server, local_dir, request_timeout=0.5)
        ) as client:
            permit = await holder.acquire("one")
            waiting = asyncio.create_task(client.acquire("one", timeout=20))
            await until(lambda: waiters_of(holder, "one"))
            await asyncio.sleep(1.5)  # three request timeouts: the wait itself is the test
            assert not waiting.done() and client.connected
            await permit.release()
            granted = await waiting
            assert not granted.is_local and granted.fence is not None
            stats = client.stats()
            assert stats.connects == 1 and stats.connection_losses == 0 and stats.fallback_entries == 0
            await granted.release()

    run(main())
