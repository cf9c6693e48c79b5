"""CancelToken: cancels blocked calls from another thread.

    token = netsem.CancelToken()
    threading.Thread(target=lambda: client.acquire("db", cancel=token)).start()
    token.cancel()          # the acquire raises netsem.Cancelled

A token is cancelled once and stays so; a call given an already cancelled
token raises Cancelled at once. Calls watch it through ``add_callback``: the
blocking client sends CANCEL for its queued request the moment the token is
cancelled; local semaphores, whose kernel wait cannot be woken, look at
``cancelled`` between slices of at most 50 ms. (asyncio code cancels the task
instead.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class CancelToken:
    """A one-shot cancellation flag that calls back whoever waits on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next_id = 0

    def cancel(self) -> None:
        """Cancels every call using this token, now and later. Idempotent."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            callback()

    @property
    def cancelled(self) -> bool:
        with self._lock:
            return self._cancelled

    def add_callback(self, callback: Callable[[], None]) -> int | None:
        """Calls ``callback()`` (on the cancelling thread) when the token is cancelled.

        Returns an id for remove_callback, or None when the token is already
        cancelled: the callback is then not called, and the caller must act
        as cancelled itself.
        """
        with self._lock:
            if self._cancelled:
                return None
            self._next_id += 1
            self._callbacks[self._next_id] = callback
            return self._next_id

    def remove_callback(self, callback_id: int | None) -> None:
        """Forgets a callback (after the call ended); safe to call twice or with None."""
        if callback_id is None:
            return
        with self._lock:
            self._callbacks.pop(callback_id, None)
