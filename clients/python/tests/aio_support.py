"""Helpers of the netsem.aio tests (test_aio*.py): running a bounded coroutine,
client options for a test server, and awaiting a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from netsem._options import ClientOptions

BOUND = 30.0  # seconds: no test coroutine may take longer


def run(coroutine: Awaitable[Any], bound: float = BOUND) -> Any:
    """asyncio.run, failing the test with TimeoutError past ``bound`` seconds."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, bound)

    return asyncio.run(bounded())


def options(server: Any, local_dir: Path | None = None, **overrides: Any) -> ClientOptions:
    """Options for a test client: this server only, quick reconnects, a private registry."""
    fields: dict[str, Any] = {
        "servers": [server.address] if not isinstance(server, str) else [server],
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
    }
    if local_dir is not None:
        fields["local_dir"] = str(local_dir)
    fields.update(overrides)
    return dataclasses.replace(ClientOptions(), **fields)


async def until(condition: Callable[[], Awaitable[Any] | Any], timeout: float = 10.0) -> None:
    """Awaits ``condition()`` until true (polled every 10 ms), or fails the test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def waiters_of(client: Any, name: str) -> int:
    return (await client.get(name)).waiters
