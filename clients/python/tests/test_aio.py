"""netsem.aio against the real netsemd: every call of the asyncio Client.

Each test runs its coroutine with ``asyncio.run`` (no pytest plugin), bounded
by a timeout (aio_support.run) so that a hang fails instead of stalling.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aio_support import options, run, until, waiters_of

import netsem
import netsem.aio


def test_acquire_in_both_forms_holds_and_gives_back(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            assert client.connected
            async with client.acquire("pool", count=2, timeout=5) as permit:
                assert permit.name == "pool" and permit.count == 2
                assert isinstance(permit.fence, int) and permit.fence > 0
                assert not permit.is_local and not permit.lost and permit.loss_reason is None
                info = await client.get("pool")
                assert (info.value, info.max, info.holders, info.waiters, info.kind) == (1, 3, 1, 0, "defined")
            assert (await client.get("pool")).value == 3

            permit = await client.acquire("pool")
            assert await client.value("pool") == 2
            await permit.release()
            assert await client.value("pool") == 3
            await permit.release()  # a second release does nothing
            assert await client.value("pool") == 3

            async with await client.acquire("pool", 3) as permit:
                assert await client.value("pool") == 0
            assert await client.value("pool") == 3

            # Fences rise per name.
            first = await client.acquire("one")
            await first.release()
            second = await client.acquire("one")
            await second.release()
            assert second.fence > first.fence
            assert client.stats().remote_grants == 5

    run(main())


def test_try_acquire_and_timeout(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as holder, netsem.aio.Client(
            options=options(netsemd, local_dir)
        ) as other:
            permit = await holder.try_acquire("one")
            assert permit is not None
            assert await other.try_acquire("one") is None
            started = time.monotonic()
            with pytest.raises(netsem.Timeout) as raised:
                await other.acquire("one", timeout=0.3)
            assert 0.25 <= time.monotonic() - started < 5
            assert isinstance(raised.value, TimeoutError)
            assert 'ACQUIRE "one"' in str(raised.value)
            with pytest.raises(netsem.TooMany):
                await other.acquire("pool", count=4)
            with pytest.raises(netsem.TooMany):
                await other.acquire("fresh-name", count=2)  # an undefined name has max 1
            await permit.release()
            again = await other.try_acquire("one")
            assert again is not None
            await again.release()

    run(main())


def test_post_and_the_wait_family(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            await client.create("jobs", 0, 10)
            assert not await client.try_wait("jobs")
            await client.post("jobs", 2)
            assert await client.value("jobs") == 2
            await client.wait("jobs")
            assert await client.timed_wait("jobs", 1.0)
            assert await client.value("jobs") == 0
            started = time.monotonic()
            assert not await client.timed_wait("jobs", 0.2, count=2)
            assert time.monotonic() - started >= 0.15
            with pytest.raises(netsem.Timeout):
                await client.wait("jobs", timeout=0)

            # A waiter woken by a post from another task.
            waiter = asyncio.create_task(client.wait("jobs", 3, timeout=10))
            await until(lambda: waiters_of(client, "jobs"), 5)
            await client.post("jobs", 3)
            await waiter
            assert await client.value("jobs") == 0

            with pytest.raises(netsem.Overflow):
                await client.post("jobs", 11)
            with pytest.raises(netsem.NotFound):
                await client.post("no-such-jobs")
            with pytest.raises(netsem.NotFound):
                await client.wait("no-such-jobs", timeout=0)

    run(main())


def test_get_list_create_delete(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            absent = await client.get("nothing here")
            assert (absent.name, absent.value, absent.max, absent.kind) == ("nothing here", 1, 1, "absent")
            await client.create("made one", 2, 5)
            await client.create("made one", 1, 1)  # O_CREAT: left as it is
            with pytest.raises(netsem.AlreadyExists):
                await client.create("made one", 1, 1, exclusive=True)
            with pytest.raises(netsem.AlreadyExists):
                await client.create("pool", 1)  # a defined name
            made = await client.get("made one")
            assert (made.value, made.max, made.kind) == (2, 5, "created")
            await client.create("made two", 3)
            assert (await client.get("made two")).max == 3

            names = {info.name: info for info in await client.list()}
            assert {"pool", "one", "made one", "made two"} <= set(names)
            assert names["made one"].kind == "created" and names["pool"].max == 3
            assert [info.name for info in await client.list("made")] == ["made one", "made two"]
            assert await client.list("zzz") == []

            async with client.acquire("made one"):
                with pytest.raises(netsem.Busy):
                    await client.delete("made one")
            await client.delete("made one")
            with pytest.raises(netsem.NotFound):
                await client.delete("made one")
            with pytest.raises(netsem.Busy):
                await client.delete("pool")
            for bad in [(1, 0), (-1, 3), (4, 3)]:
                with pytest.raises(netsem.InvalidArgument):
                    await client.create("x", *bad)

    run(main())


def test_ping_stats_and_client_stats(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir, label="aio-test")) as client:
            assert await client.ping() == ""
            assert await client.ping("hello-42") == "hello-42"
            for bad in ["two words", "a\nb", "x" * 4001]:
                with pytest.raises(netsem.InvalidArgument):
                    await client.ping(bad)
            stats = await client.server_stats()
            assert stats["session_timeout_ms"] > 0 and stats["sessions"] >= 1
            mine = client.stats()
            assert mine.connected and mine.server == netsemd.address
            assert mine.protocol == "1.1" and mine.session_id > 0
            assert mine.connects == 1 and mine.connection_losses == 0 and mine.unreachable == ""
            sessions = await client.sessions()
            assert [s.label for s in sessions if s.session_id == mine.session_id] == ["aio-test"]

    run(main())


def test_holders_waiters_sessions_kick(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir, label="holder")) as holder, netsem.aio.Client(
            options=options(netsemd, local_dir, label="queued")
        ) as queued:
            permit = await holder.acquire("one")
            lost: list[netsem.NetsemError] = []
            permit.on_lost(lost.append)
            waiting = asyncio.create_task(queued.acquire("one", timeout=60))
            await until(lambda: waiters_of(holder, "one"))

            [row] = await holder.holders("one")
            assert (row.session_id, row.count, row.fence, row.label) == (
                holder.stats().session_id,
                1,
                permit.fence,
                "holder",
            )
            assert row.held >= 0
            [waiter] = await holder.waiters("one")
            assert (waiter.session_id, waiter.count, waiter.label) == (queued.stats().session_id, 1, "queued")
            assert waiter.timeout_left is not None and 0 < waiter.timeout_left <= 60
            ids = [s.session_id for s in await holder.sessions()]
            assert holder.stats().session_id in ids and queued.stats().session_id in ids
            with pytest.raises(netsem.NotFound):
                await holder.holders("nothing here")
            with pytest.raises(netsem.InvalidArgument):
                await holder.waiters("$local")

            # KICK the holder's session: its permit is lost at once and the
            # server grants the queued acquire. On this host (one local_dir)
            # that grant waits for the lost permit to be given up only when
            # the holder's client read its KICK first: the server grants
            # before the holder can read it, so either order may come here
            # (test_aio_loss checks the wait where the order is fixed).
            await queued.kick(holder.stats().session_id)
            await until(lambda: bool(lost))
            assert permit.lost and isinstance(lost[0], netsem.Unavailable) and "KICK" in str(lost[0])
            assert permit.stop_by is None

            async def granted_by_server() -> bool:
                info = await queued.get("one")
                return (info.holders, info.waiters) == (1, 0)

            await until(granted_by_server)
            with pytest.raises(netsem.Unavailable):
                await permit.release()
            granted = await waiting
            await until(lambda: holder.connected)
            assert holder.stats().connects == 2
            # Its next round connected: no fallback entered (nor left).
            assert (holder.stats().fallback_entries, holder.stats().fallback_exits) == (0, 0)
            await granted.release()
            with pytest.raises(netsem.NotFound):
                await holder.kick(10**9)
            with pytest.raises(netsem.InvalidArgument):
                await holder.kick(0)

    run(main())


def test_flags(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as one, netsem.aio.Client(
            options=options(netsemd, local_dir)
        ) as two:
            assert not await one.test_flag("export")
            await one.set_flag("export")
            await one.set_flag("export")  # already set by this client: at once
            assert await two.test_flag("export")
            with pytest.raises(netsem.Timeout):
                await two.set_flag("export", 0.1)
            with pytest.raises(netsem.NotHeld):
                await two.clear_flag("export")
            setter = asyncio.create_task(two.set_flag("export", 10))
            await until(lambda: waiters_of(one, "export"))
            await one.clear_flag("export")
            await setter
            assert await one.test_flag("export")
            await two.clear_flag("export")
            assert not await one.test_flag("export")

            # Two tasks of one client setting one flag: both succeed, one permit.
            await asyncio.gather(one.set_flag("both", 5), one.set_flag("both", 5))
            assert (await one.get("both")).holders == 1
            await one.clear_flag("both")

    run(main())


def test_bad_arguments_are_invalid_argument(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            for name in ["", "x" * 256, "a\nb", "\x7f", "$", 7]:
                with pytest.raises(netsem.InvalidArgument):
                    await client.acquire(name)  # type: ignore[arg-type]
                with pytest.raises(netsem.InvalidArgument):
                    await client.get(name)  # type: ignore[arg-type]
            for count in [0, -1, 2**31, 1.5, True]:
                with pytest.raises(netsem.InvalidArgument):
                    await client.acquire("pool", count)  # type: ignore[arg-type]
                with pytest.raises(netsem.InvalidArgument):
                    await client.post("pool", count)  # type: ignore[arg-type]
            for call in [client.create("$x", 1), client.delete("$x"), client.list("$x")]:
                with pytest.raises(netsem.InvalidArgument):
                    await call
            with pytest.raises(netsem.InvalidArgument):
                await client.acquire("pool", timeout="soon")  # type: ignore[arg-type]
            # Names with spaces and percent signs travel encoded and come back as given.
            async with client.acquire("100% a name") as permit:
                [row] = [i for i in await client.list("100%") if i.name == "100% a name"]
                assert row.holders == 1 and permit.fence

    run(main())


def test_many_calls_share_one_connection(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            results = await asyncio.gather(*(client.ping(f"p{i}") for i in range(200)))
            assert results == [f"p{i}" for i in range(200)]
            mine = client.stats().session_id
            v1 = [s for s in await client.sessions() if s.dialect == "v1"]
            assert [s.session_id for s in v1] == [mine]

    run(main())


def test_calls_without_connect_start_the_client(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        client = netsem.aio.Client(options=options(netsemd, local_dir))
        try:
            assert not client.connected
            assert await client.ping("x") == "x"
            assert client.connected
        finally:
            await client.close()
        await client.close()  # idempotent
        with pytest.raises(netsem.Unavailable):
            await client.ping()

    run(main())

    async def started() -> netsem.aio.Client:
        client = netsem.aio.Client(options=options(netsemd, local_dir))
        await client.connect()
        return client

    async def other_loop(client: netsem.aio.Client) -> None:
        with pytest.raises(netsem.InvalidArgument, match="event loop"):
            await client.ping()

    client = run(started())
    run(other_loop(client))


def test_a_dropped_permit_is_given_back_with_a_resource_warning(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            remote = await client.acquire("one")
            local = await client.acquire("$one")
            with pytest.warns(ResourceWarning, match="unreleased netsem permit"):
                del remote, local
                gc.collect()

            async def both_free() -> bool:
                return await client.value("one") == 1 and await client.value("$one") == 1

            await until(both_free)
            assert (await client.get("one")).holders == 0

    run(main())


def test_options_as_the_blocking_client_takes_them(
    netsemd: Any, local_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in [{"servers": ["a:b:c"]}, {"reconnect_min": 2.0, "reconnect_max": 1.0}, {"connect_timeout": 0}]:
        with pytest.raises(netsem.InvalidArgument):
            netsem.aio.Client(options=options(netsemd, local_dir, **bad))
    monkeypatch.setenv("NETSEM_SERVER", netsemd.address)
    monkeypatch.setenv("NETSEM_LABEL", "from-env")
    config = tmp_path / "client.ini"
    config.write_text(f"[client]\nservers = {netsemd.address}\nlabel = from-file\n")

    async def label_of(client: netsem.aio.Client) -> str:
        async with client:
            mine = client.stats().session_id
            return [s.label for s in await client.sessions() if s.session_id == mine][0]

    async def main() -> None:
        assert await label_of(netsem.aio.Client()) == "from-env"
        assert await label_of(netsem.aio.Client(label="given")) == "given"
        assert await label_of(netsem.aio.Client(config=config)) == "from-file"
        assert await label_of(netsem.aio.Client(netsemd.address, "positional")) == "positional"
        assert await label_of(netsem.aio.Client(f"127.0.0.1:1,{netsemd.address}", "listed")) == "listed"

    run(main())


def test_import_netsem_loads_asyncio_only_when_aio_is_used() -> None:
    code = (
        "import sys, netsem\n"
        "assert 'asyncio' not in sys.modules\n"
        "assert netsem.aio.Client is sys.modules['netsem.aio'].Client\n"
        "assert 'asyncio' in sys.modules\n"
    )
    package_dir = str(Path(netsem.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=package_dir)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_guides_asyncio_example_runs(start_netsemd: Any, tmp_path: Path) -> None:
    guide = Path(__file__).resolve().parents[3] / "docs" / "python.md"
    [code] = re.findall(r"```python\n(# Example \(asyncio\): .*?)```", guide.read_text(), re.S)
    server = start_netsemd(semaphores="workers = 3")
    env = dict(
        os.environ,
        NETSEM_SERVER=server.address,
        NETSEM_CONFIG="",
        NETSEM_FALLBACK="fail",
        XDG_RUNTIME_DIR=str(tmp_path),
        PYTHONPATH=str(Path(netsem.__file__).resolve().parent.parent),
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"ran 12 jobs, at most [123] at once; 0 left waiting", line), line


def test_a_dropped_client_ends_its_session(netsemd: Any, local_dir: Path) -> None:
    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as observer:
            client = netsem.aio.Client(options=options(netsemd, local_dir))
            await client.connect()
            mine = client.stats().session_id
            assert client.options.servers == [netsemd.address]
            del client
            gc.collect()

            async def gone() -> bool:
                return mine not in [s.session_id for s in await observer.sessions()]

            await until(gone)

    run(main())
