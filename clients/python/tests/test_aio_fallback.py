"""netsem.aio without a server, and with `$` names: host-wide local semaphores
(netsem._local) per the names' fallback policies, blocking calls on the
client's threads, cancellation by the task, and refusals that are no outage."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aio_support import options, run, until
from conftest import NETSEM_CLI

import netsem
import netsem.aio
from netsem._options import FallbackPolicy


def closed_port() -> str:
    """A loopback address where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_no_server_falls_back_per_policy(local_dir: Path) -> None:
    async def main() -> None:
        opts = options(
            closed_port(),
            local_dir,
            limits={"pool": 3, "licence": 2, "shared": 5},
            fallback_for={"licence": FallbackPolicy.parse("fail"), "shared": FallbackPolicy.parse("share:2")},
        )
        async with netsem.aio.Client(options=opts) as client:
            assert not client.connected
            stats = client.stats()
            assert stats.fallback_entries == 1 and "refused" in stats.unreachable.lower()
            async with client.acquire("pool", 2, timeout=5) as permit:
                assert permit.is_local and permit.fence is None
                assert await client.value("pool") == 1
                assert await client.try_acquire("pool", 2) is None
            assert await client.value("pool") == 3
            with pytest.raises(netsem.Unavailable) as raised:
                await client.acquire("licence")
            assert "fail" in str(raised.value)
            # share:2 of 5 is 3 here.
            permit = await client.acquire("shared", 3, timeout=1)
            await permit.release()
            with pytest.raises(netsem.Unavailable) as raised:
                await client.acquire("shared", 4, timeout=1)
            assert "stand-in" in str(raised.value)
            # Counters fall back only when listed in [semaphores].
            with pytest.raises(netsem.Unavailable) as raised:
                await client.post("jobs")
            assert "[semaphores]" in str(raised.value)
            with pytest.raises(netsem.Unavailable):
                await client.get("pool")
            assert not await client.test_flag("export")
            await client.set_flag("export")
            assert await client.test_flag("export")
            await client.clear_flag("export")

    run(main())


def test_local_names_hold_their_limit_under_many_tasks(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir, limits={"$gpu": 2})) as client:
            inside = 0
            most = 0

            async def worker() -> None:
                nonlocal inside, most
                for _ in range(3):
                    async with client.acquire("$gpu", timeout=20) as permit:
                        assert permit.is_local
                        inside += 1
                        most = max(most, inside)
                        assert inside <= 2
                        await asyncio.sleep(0.005)
                        inside -= 1

            await asyncio.gather(*(worker() for _ in range(12)))
            assert most == 2
            info = await client.get("$gpu")
            assert (info.value, info.max, info.kind) == (2, 2, "local")
            # No server state for `$` names; the server never hears of them.
            assert [i for i in await client.list() if i.name.startswith("$")] == []

    run(main())


def test_cancelling_a_local_wait_leaves_nothing_held(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            held = await client.acquire("$one")
            task = asyncio.create_task(client.acquire("$one"))
            await asyncio.sleep(0.1)  # it is blocked in the kernel, on a thread
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await held.release()
            assert await client.value("$one") == 1
            # The loop stayed free meanwhile, and other calls go on.
            assert await client.ping("still") == "still"
            assert await client.try_wait("$items")  # a local semaphore starts full
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.wait("$items"), 0.1)
            await client.post("$items")
            assert await client.try_wait("$items")

    run(main())


def test_a_refusing_server_is_no_outage(start_netsemd: Any, local_dir: Path) -> None:
    server = start_netsemd(semaphores="pool = 3", server_options="allowed_networks = 10.0.0.0/8")

    async def main() -> None:
        async with netsem.aio.Client(options=options(server, local_dir, limits={"pool": 3})) as client:
            assert not client.connected
            with pytest.raises(netsem.Denied) as raised:
                await client.acquire("pool", timeout=1)
            assert "allowed_networks" in str(raised.value)
            with pytest.raises(netsem.Denied):
                await client.value("pool")
            assert client.stats().fallback_entries == 0
            async with client.acquire("$own") as permit:  # `$` names are unaffected
                assert permit.is_local

    run(main())


def test_a_cpp_holder_of_a_local_name_excludes_aio(local_dir: Path, tmp_path: Path) -> None:
    if not NETSEM_CLI.exists():
        pytest.fail(f"no netsem CLI at {NETSEM_CLI}: build it first, or set NETSEM_CLI")
    config = tmp_path / "client.ini"
    config.write_text(f"[client]\nservers = {closed_port()}\nconnect_timeout_ms = 500\nlocal_dir = {local_dir}\n")
    holder = subprocess.Popen(
        [str(NETSEM_CLI), "--config", str(config), "run", "$x", "--", "sh", "-c", "echo held; read line || true"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        async def main() -> None:
            async with netsem.aio.Client(config=config) as client:
                assert await client.try_acquire("$x") is None
                waiting = asyncio.create_task(client.acquire("$x", timeout=20))
                await asyncio.sleep(0.1)
                assert not waiting.done()
                assert holder.stdin is not None
                holder.stdin.close()  # the C++ holder ends and gives its permit back
                permit = await waiting
                assert permit.is_local
                await permit.release()

        run(main())
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(30)
        for stream in (holder.stdin, holder.stdout, holder.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def test_cancelling_a_server_grant_that_waits_for_a_fallback_holder(netsemd: Any, local_dir: Path) -> None:
    # A fallback holder of "one" on this host (a client that reaches no
    # server) keeps the server's grant of "one" from starting here: the grant
    # waits for the host-wide mark on a thread. Cancelling that task gives
    # the server permit back and leaves no mark behind.
    async def main() -> None:
        async with netsem.aio.Client(options=options(closed_port(), local_dir)) as offline, netsem.aio.Client(
            options=options(netsemd, local_dir)
        ) as online:
            local = await offline.acquire("one")
            assert local.is_local
            task = asyncio.create_task(online.acquire("one", timeout=20))

            async def granted_by_server() -> bool:
                return (await online.get("one")).holders == 1

            await until(granted_by_server)
            await asyncio.sleep(0.1)  # it waits for the mark, on a thread
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            info = await online.get("one")
            assert (info.holders, info.value) == (0, 1)
            await local.release()
            # No mark was left behind: the next grant starts at once.
            permit = await online.acquire("one", timeout=2)
            assert not permit.is_local
            await permit.release()

    run(main())


def test_local_grants_that_race_a_cancel_are_given_back(netsemd: Any, local_dir: Path) -> None:
    # As test_aio_cancel's race, on a `$` name: the holder releases while the
    # task blocked on a thread is cancelled; whoever wins, nothing stays held.
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            outcomes = {"granted": 0, "cancelled": 0}
            for round_ in range(30):
                held = await client.acquire("$r")
                task = asyncio.create_task(client.acquire("$r"))
                await asyncio.sleep(0.005 * (round_ % 5))
                await held.release()
                task.cancel()
                try:
                    permit = await task
                    outcomes["granted"] += 1
                    await permit.release()
                except asyncio.CancelledError:
                    outcomes["cancelled"] += 1
                assert await client.value("$r") == 1, outcomes
            assert outcomes["cancelled"] > 0

    run(main())
