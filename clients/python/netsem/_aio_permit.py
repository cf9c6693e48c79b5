"""The asyncio client's Permit and the AcquireRequest that ``Client.acquire`` returns.

A Permit holds permits of one semaphore, on the server (``fence`` set) or in
a host-wide local semaphore (``is_local``). The Client (netsem.aio) does the
giving back, through the small interface ``PermitOwner``; the connection
marks a remote permit lost (``mark_lost``) when the session that granted it
ends. Everything here runs on the client's event loop, except ``__del__``,
which only hands work to the loop.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Protocol

from netsem.errors import NetsemError, Unavailable

log = logging.getLogger("netsem")


class PermitOwner(Protocol):
    """What a Permit asks of its client."""

    async def _release(self, permit: Permit) -> None: ...

    def _give_back(self, permit: Permit) -> None: ...

    def _mark_lost(self, mark: Any) -> None: ...

    def _unmark(self, mark: Any) -> None: ...


class Permit:
    """Permits of one semaphore held by this client, given back by ``await release()``.

    ``async with permit:`` releases at the end of the block. Remote permits
    carry the server's ``fence``; local ones (``$`` names and fallback) have
    ``fence`` None and ``is_local`` True and are never lost. A remote permit is
    *lost* when its session ends (connection dropped, server shut down, lease
    lapsed): ``lost``, ``loss_reason``, ``stop_by`` (a time.monotonic() value
    by which the work under it must have stopped, for a lapsed lease or a
    SHUTDOWN; else None) and ``on_lost(callback)`` tell, as in libnetsem.

    A Permit garbage-collected while it holds something is given back without
    waiting for an answer, with a ResourceWarning (like an unclosed file).
    """

    def __init__(
        self,
        client: PermitOwner,
        name: str,
        count: int,
        *,
        fence: int | None = None,
        session: int = 0,
        local_grant: Any = None,
        mark: Any = None,
    ) -> None:
        self._client = client
        self.name = name
        self.count = count
        self.fence = fence
        self.session = session
        self._local_grant = local_grant
        self._mark = mark
        self._released = False
        self._loss: NetsemError | None = None
        self._stop_by: float | None = None
        self._on_lost: Callable[[NetsemError], None] | None = None

    @property
    def is_local(self) -> bool:
        """True when held in a host-wide local semaphore rather than on the server."""
        return self.fence is None

    @property
    def released(self) -> bool:
        return self._released

    @property
    def lost(self) -> bool:
        """True once the permit was lost (a local permit never is)."""
        return self._loss is not None

    @property
    def loss_reason(self) -> NetsemError | None:
        """Why it was lost (Unavailable: connection lost; Shutdown: the server is shutting down), or None."""
        return self._loss

    @property
    def stop_by(self) -> float | None:
        """Once lost through the lease or a SHUTDOWN: when (time.monotonic()) the work
        under the permit must have stopped; None otherwise (the server let go at once)."""
        return self._stop_by

    def on_lost(self, callback: Callable[[NetsemError], None]) -> None:
        """Calls ``callback(reason)`` once when the permit is lost; at once if it already is.
        Replaces an earlier callback. It runs on the event loop: keep it short."""
        if self._loss is not None:
            callback(self._loss)
            return
        self._on_lost = callback

    def mark_lost(self, reason: NetsemError, stop_by: float | None) -> None:
        """The connection's side: the session that granted it ended. Never blocks."""
        if self._released or self._loss is not None:
            return
        self._loss = reason
        self._stop_by = stop_by
        # Its work may still run: a grant on this host waits for it from now on.
        if self._mark is not None:
            self._client._mark_lost(self._mark)
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            try:
                callback(reason)
            except Exception:  # a callback's bug must not end the session's bookkeeping
                log.exception("a permit's loss callback raised")

    async def release(self) -> None:
        """Gives the permits back.

        Raises Unavailable when the permit had been lost (nothing was held any
        more), IoError when the RELEASE got no answer (the server releases with
        the session), NotHeld for a local permit whose semaphore was removed.
        A second release() does nothing.
        """
        if self._released:
            return
        self._released = True
        try:
            await self._client._release(self)
        finally:
            # Last, whatever happened: the work under the permit has stopped.
            self._unmark()

    def _unmark(self) -> None:
        mark, self._mark = self._mark, None
        if mark is not None:
            self._client._unmark(mark)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._released:
            return
        try:
            await self.release()
        except Unavailable:
            pass  # lost: nothing to give back, and on_lost told
        except NetsemError as failure:
            log.warning("releasing a permit of %s failed: %s", self.name, failure)

    def __del__(self) -> None:
        if getattr(self, "_released", True):
            return
        self._released = True
        warnings.warn(
            f"unreleased netsem permit of {self.name!r} given back by the garbage collector",
            ResourceWarning,
            source=self,
            stacklevel=1,
        )
        with contextlib.suppress(Exception):
            self._client._give_back(self)
        with contextlib.suppress(Exception):
            self._unmark()

    def __repr__(self) -> str:
        where = "local" if self.is_local else f"fence={self.fence}"
        state = " released" if self._released else " lost" if self.lost else ""
        return f"<netsem.aio.Permit {self.name!r} count={self.count} {where}{state}>"


class AcquireRequest(Coroutine[Any, Any, "Permit"]):
    """What ``Client.acquire`` returns: a coroutine (``await`` it, or hand it to
    ``asyncio.create_task`` or ``gather``) whose result is the Permit, and an
    async context manager that holds the permits for the block (aiohttp's
    pattern for ``session.get``)."""

    __slots__ = ("_coroutine", "_permit")

    def __init__(self, coroutine: Coroutine[Any, Any, Permit]) -> None:
        self._coroutine = coroutine
        self._permit: Permit | None = None

    def send(self, value: Any) -> Any:
        return self._coroutine.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coroutine.throw(*args)

    def close(self) -> None:
        self._coroutine.close()

    def __await__(self) -> Generator[Any, None, Permit]:
        return self._coroutine.__await__()

    async def __aenter__(self) -> Permit:
        self._permit = await self._coroutine
        return self._permit

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._permit is not None
        await self._permit.__aexit__(kind, error, traceback)


# --- the client ---
