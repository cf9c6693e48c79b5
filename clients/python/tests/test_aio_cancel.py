"""netsem.aio: cancelling a task blocked in acquire or wait sends CANCEL (the
server drops the queued request at once), and a grant that raced the cancel
is given back, never leaked; the same with a CancelToken from another thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from aio_support import options, run, until, waiters_of

import netsem
import netsem.aio


def test_cancelling_a_queued_acquire_sends_cancel(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as holder, netsem.aio.Client(
            options=options(netsemd, local_dir)
        ) as client:
            permit = await holder.acquire("one")
            task = asyncio.create_task(client.acquire("one"))
            await until(lambda: waiters_of(holder, "one"))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The session is still up: only a CANCEL takes the request out of the queue.
            info = await holder.get("one")
            assert (info.waiters, info.holders) == (1 - 1, 1)
            assert client.connected and client.stats().connects == 1
            [row] = await client.holders("one")
            assert (row.session_id, row.fence) == (holder.stats().session_id, permit.fence)
            await permit.release()
            # Nothing was left behind for the cancelled task.
            assert (await holder.get("one")).value == 1

            # asyncio.timeout and wait_for cancel the same way.
            permit = await holder.acquire("one")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.acquire("one")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.wait("one"), 0.2)
            assert (await holder.get("one")).waiters == 0
            await permit.release()

    run(main())


def test_cancelling_a_queued_wait(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            await client.create("items", 0, 5)
            task = asyncio.create_task(client.wait("items", 2))
            await until(lambda: waiters_of(client, "items"))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await client.get("items")).waiters == 0
            await client.post("items", 2)
            assert await client.value("items") == 2

    run(main())


def test_grants_that_race_a_cancel_are_given_back(netsemd: Any, local_dir: Path) -> None:
    # Each round: the holder releases and, in the same turn of the loop, the
    # queued task is cancelled, so the CANCEL and the grant cross on the wire.
    # Whichever wins, nothing may stay held or consumed.
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as holder, netsem.aio.Client(
            options=options(netsemd, local_dir)
        ) as client:
            await holder.create("items", 0, 1)
            outcomes = {"granted": 0, "cancelled": 0}
            for round_ in range(40):
                permit = await holder.acquire("one")
                acquiring = asyncio.create_task(client.acquire("one"))
                waiting = asyncio.create_task(client.wait("items"))
                await until(lambda: waiters_of(holder, "one"))
                await until(lambda: waiters_of(holder, "items"))
                await asyncio.sleep(0.001 * (round_ % 4))
                release = asyncio.create_task(permit.release())
                post = asyncio.create_task(holder.post("items"))
                await asyncio.sleep(0)
                acquiring.cancel()
                waiting.cancel()
                for task in (acquiring, waiting):
                    try:
                        got = await task
                        outcomes["granted"] += 1
                        if got is not None:
                            await got.release()
                        else:
                            await client.post("items")
                    except asyncio.CancelledError:
                        outcomes["cancelled"] += 1
                await release
                await post

                async def settled() -> bool:
                    one, items = await holder.get("one"), await holder.get("items")
                    return (one.value, one.holders, one.waiters, items.value, items.waiters) == (1, 0, 0, 1, 0)

                await until(settled, 5)
                assert await client.try_wait("items")  # and drain it for the next round
            assert outcomes["cancelled"] > 0

    run(main(), 60)


def test_cancel_token_from_another_thread(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as holder, netsem.aio.Client(
            options=options(netsemd, local_dir)
        ) as client:
            permit = await holder.acquire("one")
            token = netsem.CancelToken()
            task = asyncio.create_task(client.acquire("one", cancel=token))
            await until(lambda: waiters_of(holder, "one"))
            threading.Thread(target=token.cancel).start()
            with pytest.raises(netsem.Cancelled):
                await task
            assert (await holder.get("one")).waiters == 0
            with pytest.raises(netsem.Cancelled):
                await client.acquire("one", cancel=token)  # a fired token: at once
            with pytest.raises(netsem.Cancelled):
                await client.wait("one", cancel=token)
            await permit.release()

    run(main())


def test_closing_the_client_ends_its_pending_calls(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as holder:
            permit = await holder.acquire("one")
            client = netsem.aio.Client(options=options(netsemd, local_dir))
            await client.connect()
            task = asyncio.create_task(client.acquire("one"))
            await until(lambda: waiters_of(holder, "one"))
            await client.close()
            # Not served by fallback: the client is closed, not the server gone.
            with pytest.raises(netsem.Unavailable, match="closed"):
                await task

            async def no_waiters() -> bool:
                return (await holder.get("one")).waiters == 0

            # close() returns before the server read the end of the connection.
            await until(no_waiters, 5)
            await permit.release()

    run(main())
