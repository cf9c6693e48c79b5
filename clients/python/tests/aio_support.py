"""Helpers of the netsem.aio tests (test_aio*.py): running a bounded coroutine,
client options for a test server, and awaiting a condition instead of sleeping.
``AioInThread`` drives a netsem.aio Client from a blocking test body, so that
one body checks both clients (``both_clients``)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import netsem.aio
from netsem import Client
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


class AioInThread:
    """A netsem.aio Client on an event loop of its own thread, with the
    blocking Client's methods: ``client.acquire(...)`` runs the coroutine
    there and returns its result (or raises its exception); ``connected``
    likewise, and ``run(function, ...)`` for anything else (a permit's
    release). Only for tests that check both clients with
    one body."""

    def __init__(self, options: ClientOptions) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aio-in-thread", daemon=True)
        self._thread.start()
        self._client = netsem.aio.Client(options=options)
        self.run(self._client.connect)

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            result = function(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(BOUND)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        return lambda *args, **kwargs: self.run(method, *args, **kwargs)

    @property
    def connected(self) -> bool:
        return bool(self.run(lambda: self._client.connected))

    def close(self) -> None:
        try:
            self.run(self._client.close)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(BOUND)
            self._loop.close()


def release(client: Any, permit: Any) -> None:
    """Releases a permit of ``client``, a blocking Client or an AioInThread."""
    if isinstance(client, AioInThread):
        client.run(permit.release)
    else:
        permit.release()


def make_either(kind: str, options: ClientOptions) -> Any:
    """A blocking Client (``kind`` "blocking") or an AioInThread ("aio") of ``options``."""
    return Client(options=options) if kind == "blocking" else AioInThread(options)
