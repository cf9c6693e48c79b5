"""The asyncio client's side of the host-wide local semaphores (netsem._local).

Their calls block in the kernel (a semop waits for permits), so ``LocalSide``
runs them on worker threads of its own, never on the event loop and never on
the loop's default executor (whose few threads also resolve host names when
the client reconnects: a fallback that filled them would keep the client
from ever leaving fallback). A task's cancellation fires a CancelToken that
the waiting call watches (it stops within 50 ms), and a result that raced
the cancellation is undone. ``mark_lost`` and ``unmark`` never block and run
on the loop; so does the first, non-blocking try of ``mark_server_holder``,
the one semop a server grant costs outside an outage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from netsem._cancel import CancelToken
from netsem.errors import Cancelled, NetsemError, Timeout

log = logging.getLogger("netsem")

T = TypeVar("T")

# Worker threads for blocking local-semaphore calls, per client: as many
# local waits can block at once.
_THREADS = 64


class LocalSide:
    """One client's local semaphores and the threads their waits block on."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self._directory = directory
        self._semaphores: Any = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._warned_marks = False

    @property
    def semaphores(self) -> Any:
        """The LocalSemaphores (made on first use: the registry is touched only when needed)."""
        if self._semaphores is None:
            from netsem._local import LocalSemaphores

            self._semaphores = LocalSemaphores(self._directory)
        return self._semaphores

    def close(self) -> None:
        """Lets the threads go once their calls end (cancel those first)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def run(
        self,
        function: Callable[..., T],
        *args: Any,
        cancel: CancelToken | None = None,
        undo: Callable[[T], None] | None = None,
        cancellable: bool = False,
    ) -> T:
        """Runs a blocking local-semaphore call on the threads. With
        ``cancellable`` it is passed ``cancel=`` a token that the task's
        cancellation (or ``cancel``) fires; a result that raced the task's
        cancellation is undone with ``undo``, and CancelledError re-raised."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(_THREADS, thread_name_prefix="netsem-local")
        loop = asyncio.get_running_loop()
        token = CancelToken()
        link = None
        if cancel is not None:
            link = cancel.add_callback(token.cancel)
            if link is None:
                token.cancel()
        kwargs = {"cancel": token} if cancellable else {}
        future = loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            token.cancel()
            with contextlib.suppress(BaseException):
                result = await uncancellable(future)
                if undo is not None:
                    undo(result)
            raise
        finally:
            if cancel is not None:
                cancel.remove_callback(link)

    async def acquire(
        self, name: str, limit: int, count: int, timeout: float | None, cancel: CancelToken | None, *, fallback: bool
    ) -> Any:
        """LocalSemaphores.acquire on a thread: the LocalGrant (with its fallback mark)."""
        local = self.semaphores

        def undo(grant: Any) -> None:
            local.release(name, count, grant)
            local.unmark(grant.mark)

        return await self.run(
            lambda cancel: local.acquire(name, limit, count, timeout, cancel, fallback=fallback),
            cancel=cancel,
            undo=undo,
            cancellable=True,
        )

    async def wait(self, name: str, limit: int, count: int, timeout: float | None, cancel: CancelToken | None) -> None:
        """LocalSemaphores.wait on a thread; a wait that raced the task's cancellation is posted back."""
        local = self.semaphores
        await self.run(
            lambda cancel: local.wait(name, limit, count, timeout, cancel),
            cancel=cancel,
            undo=lambda _: local.post(name, limit, count),
            cancellable=True,
        )

    async def mark_server_holder(self, name: str, timeout: float | None, cancel: CancelToken | None) -> Any:
        """Marks a server grant of ``name`` as held from the server on this host,
        waiting up to ``timeout`` while fallback or lost server permits of it are
        held here (Timeout, Cancelled). None, with a warning the first time, when
        the host-wide table cannot be used: the grant goes ahead (fallback, which
        needs the table too, cannot grant either)."""
        try:
            local = self.semaphores
            try:
                return local.mark_server_holder(name, 0)
            except Timeout:
                if timeout == 0:
                    raise
            return await self.run(
                lambda cancel: local.mark_server_holder(name, timeout, cancel),
                cancel=cancel,
                undo=local.unmark,
                cancellable=True,
            )
        except (Timeout, Cancelled):
            raise
        except NetsemError as error:
            if not self._warned_marks:
                self._warned_marks = True
                log.warning(
                    "server permits are not marked host-wide (%s: %s); fallback cannot serve names either "
                    "until the local registry works",
                    error.code,
                    error.message,
                )
            return None


async def uncancellable(future: asyncio.Future[T]) -> T:
    """Waits for ``future`` through further cancellations of the task (each
    bounded: the connection answers every call, or fails it when the session
    ends; a local call sees its token within 50 ms), then returns its result;
    the caller re-raises the cancellation."""
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            continue
    return future.result()
