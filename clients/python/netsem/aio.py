"""netsem.aio: the netsem client for asyncio, with the blocking Client's calls as coroutines.

    async with netsem.aio.Client("10.0.0.5:53559") as client:
        async with client.acquire("search", count=2, timeout=5) as permit:
            await run_query(fence=permit.fence)       # at most N at once, fleet-wide

``client.acquire(...)`` works both ways: ``async with client.acquire(...) as
permit`` acquires and releases around the block, and ``permit = await
client.acquire(...)`` hands out the Permit (``await permit.release()``, or
``async with permit``). Every other call is a plain coroutine with the
blocking Client's name, arguments, results and exceptions (netsem.client;
docs/python.md), and libnetsem's rules (docs/client.md): the same handshake,
pings at a sixth of the session timeout, lease and permit loss, reconnection
with backoff, fallback policies and refusals.

One connection per Client (asyncio streams) carries every task's requests,
tagged and pipelined; its task is netsem._aio_connection. A Client belongs to
the event loop that first used it (``async with``, ``connect()`` or the first
call); it is not thread-safe, as nothing in asyncio is.

Cancellation: cancelling a task blocked in ``acquire`` or ``wait`` sends
CANCEL for its queued request and re-raises CancelledError once the server
answered it; a grant that raced ahead of the cancel is given back (RELEASE, or
POST for a wait's consumed permits). A ``cancel=CancelToken`` works too, from
any thread, and raises netsem.Cancelled as in the blocking client.

``$`` names and fallback use netsem._local's host-wide System V semaphores,
shared with libnetsem and the blocking client. Their waits block in the
kernel, so they run on the client's own worker threads (never the loop's
default executor, whose few threads also resolve host names for reconnecting),
with a CancelToken fired by the task's cancellation.

Loss callbacks (``Permit.on_lost``) run on the event loop, in the connection
task: keep them short and never await the Client from them (schedule a task).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from netsem import _protocol as proto
from netsem import _resume
from netsem._aio_connection import Answer, Call, Connection
from netsem._aio_local import LocalSide, uncancellable
from netsem._aio_permit import AcquireRequest, Permit
from netsem._cancel import CancelToken
from netsem._options import ClientOptions, client_options
from netsem._tls import make_context as make_tls_context
from netsem._protocol import HolderInfo, SemaphoreInfo, SessionInfo, WaiterInfo
from netsem.client import ClientStats
from netsem.errors import (
    Cancelled,
    InvalidArgument,
    IoError,
    NetsemError,
    NotHeld,
    ProtocolError,
    Timeout,
    TooMany,
    Unavailable,
)

__all__ = ["AcquireRequest", "Client", "Permit"]

log = logging.getLogger("netsem")

T = TypeVar("T")

# --- checks and small helpers (the same rules and messages as libnetsem) ---


_is_local_name = proto.is_local_name
_check_name = proto.check_name
_check_count = proto.check_count


def _normalize(timeout: float | None) -> float | None:
    """None waits for ever; zero or negative only tries; a huge one waits for ever."""
    proto.timeout_ms(timeout)  # InvalidArgument for what is not a timeout
    if timeout is None or timeout > proto.FOREVER_AFTER:
        return None
    return max(0.0, float(timeout))


class _Deadline:
    """When a call with ``timeout`` (None: none) must give up."""

    def __init__(self, timeout: float | None) -> None:
        self._at = None if timeout is None else time.monotonic() + max(timeout, 0.0)

    @property
    def at(self) -> float | None:
        return self._at

    def remaining(self) -> float | None:
        if self._at is None:
            return None
        return max(0.0, self._at - time.monotonic())


def _cancelled(name: str) -> Cancelled:
    return Cancelled(f'waiting for "{name}" was cancelled')


def _not_server_state(name: str) -> InvalidArgument:
    return InvalidArgument(f'"{name}" is host-local: it has no server state')


def _is_connection_failure(error: NetsemError) -> bool:
    # Shutdown is one; a server that accepted and did not answer is none.
    return isinstance(error, Unavailable) and not isinstance(error, _resume.Silent)


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    # From a CancelToken's thread; a loop closed meanwhile has nothing to cancel.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _grant_fence(reply: proto.Reply, what: str) -> int:
    # A grant without a readable fence is still a grant (the server holds it
    # for this session): kept, with fence 0, and said.
    try:
        return proto.parse_fence(reply)
    except ProtocolError:
        log.warning("%s: the server's grant carries no fence: %r", what, proto.printable(reply.text))
        return 0


# --- the client ---


class Client:
    """The asyncio netsem client: one connection, the blocking Client's calls as coroutines.

    ``Client(servers, label, config, *, options)`` takes its options as the
    blocking Client does (ClientOptions.from_environment() unless ``options``
    or ``config`` say otherwise; ``servers``, ``label`` and the TLS and token
    keywords override) and raises InvalidArgument for bad ones (IoError,
    Denied for a token file as there); it does no I/O. ``async with`` (or
    ``await client.connect()``, or the first call) starts the connection and
    waits for the first round of attempts (each bounded by connect_timeout):
    it never fails for an unreachable server, whose names then fall back.
    """

    def __init__(
        self,
        servers: str | Sequence[str] | None = None,
        label: str | None = None,
        config: Any = None,
        *,
        options: ClientOptions | None = None,
        tls: bool | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_server_name: str | None = None,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._options = client_options(
            servers, label, config, options, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            tls_server_name=tls_server_name, token=token, token_file=token_file,
        )
        opts = self._options
        tls_context = make_tls_context(opts)
        endpoints = [proto.parse_endpoint(server) for server in opts.servers]
        label = proto.sanitize_label(opts.label or proto.default_label())
        self._connection = Connection(opts, endpoints, label, tls_context)
        self._started = False
        self._closed = False
        self._local_side = LocalSide(opts.local_dir)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local_grants = 0
        self._remote_grants = 0
        self._flags: dict[str, Permit] = {}
        self._flags_being_set: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # --- lifecycle ---

    async def connect(self) -> None:
        """Starts the connection and waits for its first round of attempts. Idempotent."""
        if self._closed:
            raise Unavailable("the client is closed")
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._connection.start()
        # Each server gets a connect and a handshake, each bounded by
        # connect_timeout; waiting means no call falls back while a later
        # server could still answer.
        servers = max(1, len(self._options.servers))
        await self._connection.wait_first_round(2 * servers * self._options.connect_timeout)

    async def close(self) -> None:
        """Closes the connection: the server releases every remote permit, which are
        marked lost. Local permits stay held until released. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._connection.stop()
        flags, self._flags = self._flags, {}
        for permit in flags.values():
            with contextlib.suppress(NetsemError):
                await permit.__aexit__(None, None, None)
        self._local_side.close()

    def __del__(self) -> None:
        # Dropped without close() (as the blocking client does then): the
        # connection task stops, so the session does not outlive the client.
        connection = getattr(self, "_connection", None)
        loop = getattr(self, "_loop", None)
        if connection is None or loop is None or self._closed or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lambda: loop.create_task(connection.stop()))

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def _ready(self) -> None:
        if not self._started or self._closed:
            await self.connect()
        elif asyncio.get_running_loop() is not self._loop:
            raise InvalidArgument("a netsem.aio.Client belongs to the event loop that started it")

    # --- permits (ACQUIRE / RELEASE) ---

    def acquire(
        self, name: str, count: int = 1, timeout: float | None = None, cancel: CancelToken | None = None
    ) -> AcquireRequest:
        """Acquires ``count`` permits of ``name`` in strict FIFO order with every other client.

        ``timeout``: None waits for ever, 0 (or negative) only tries, else
        seconds. Raises Timeout, Cancelled (the token), TooMany, InvalidArgument,
        LimitReached, Unavailable (no server and fallback ``fail``), Denied or
        ProtocolError (a server refused the session). Task cancellation sends
        CANCEL and re-raises CancelledError.
        """
        return AcquireRequest(self._acquire(name, count, timeout, cancel))

    async def try_acquire(self, name: str, count: int = 1) -> Permit | None:
        """acquire with a zero timeout: the Permit, or None when not free now."""
        try:
            return await self._acquire(name, count, 0, None)
        except Timeout:
            return None

    async def _acquire(self, name: str, count: int, timeout: float | None, cancel: CancelToken | None) -> Permit:
        _check_name(name)
        _check_count(count)
        timeout = _normalize(timeout)
        if cancel is not None and cancel.cancelled:
            raise _cancelled(name)
        await self._ready()
        if _is_local_name(name):
            return await self._local_acquire(name, self._options.limit(name), count, timeout, cancel, fallback=False)
        deadline = _Deadline(timeout)
        taken = await self._take_remote("ACQUIRE", name, count, timeout, cancel, fall_back_after_send=True)
        if taken is not None:
            fence, session = taken
            permit = Permit(self, name, count, fence=fence, session=session)
            # Within the acquire's timeout, as any wait for the permit; marked
            # before it is registered, so that a loss meanwhile marks it lost.
            try:
                await self._mark_server_holder(permit, deadline.remaining(), cancel)
            except BaseException as error:
                await self._release_quietly(permit)
                if isinstance(error, Cancelled):
                    raise _cancelled(name) from None
                if isinstance(error, Timeout):
                    raise Timeout(
                        f'"{name}" was granted by the server, but {error.message}; it went back to the server '
                        "so that this host does not run more than its local limit"
                    ) from None
                raise
            self._connection.register_permit(permit)
            if cancel is not None and cancel.cancelled:
                await self._release_quietly(permit)  # the grant raced ahead of the cancel
                raise _cancelled(name)
            return permit
        if cancel is not None and cancel.cancelled:
            raise _cancelled(name)
        limit = self._fallback_limit(name)
        try:
            return await self._local_acquire(name, limit, count, deadline.remaining(), cancel, fallback=True)
        except NetsemError as error:
            raise self._fallback_outcome(error, name, limit, count) from None

    async def _take_remote(
        self,
        verb: str,
        name: str,
        count: int,
        timeout: float | None,
        cancel: CancelToken | None,
        *,
        fall_back_after_send: bool,
    ) -> tuple[int, int] | None:
        """ACQUIRE or WAIT on the server: (fence, session) of its grant, or None when
        the caller may fall back: no session, or (``fall_back_after_send``, an
        ACQUIRE) its session ended before the answer and the next round of
        connection attempts reached no server (rule 9: on a new session it is
        sent again with what is left of its timeout); raises the server's
        refusal, Unavailable when the outcome is unknown (WAIT) or a KICK ended
        the session, Timeout when no time was left to send it again."""
        timeout_ms = proto.timeout_ms(timeout)
        encode = proto.acquire_request if verb == "ACQUIRE" else proto.wait_request

        def build(tag: str, ms: int) -> bytes:
            return encode(tag, name, count, ms)

        what = f'{verb} "{name}"'
        requeue = _resume.Requeue(what, timeout, _Deadline(timeout).at) if fall_back_after_send else None
        call = self._connection.send(lambda tag: build(tag, timeout_ms), may_wait=timeout_ms != 0)
        if call is None:
            gap = requeue or _resume.Requeue(what, timeout, _Deadline(timeout).at)
            gap.unsent = True
            call = await self._send_made_between(gap, build, name, cancel)
            if call is None:
                return None
        while True:
            answer = await self._await_take(call, cancel, verb, name, count)
            if answer.failure is None:
                break
            if requeue is None:
                raise Unavailable(
                    f"{what}: no answer came, so its outcome is unknown: {answer.failure.message}"
                )
            refusal = requeue.refusal(answer.failure)
            if refusal is not None:
                raise refusal
            again = await self._send_again(requeue, call.session, build, name, cancel)
            if again is None:
                return None  # no server reachable: the caller falls back
            call = again
        error = proto.final_error(answer, what)
        if error is not None:
            raise error
        self._remote_grants += 1
        assert answer.reply is not None
        return _grant_fence(answer.reply, what), call.session

    async def _send_made_between(
        self, gap: _resume.Requeue, build: Callable[[str, int], bytes], name: str = "",
        cancel: CancelToken | None = None,
    ) -> Call | None:
        """A request that found no session: made between two sessions (the last
        one ended, unresumed, and no round of connection attempts has failed
        since), it waits for the round under way and is sent on the session
        that round finds (review19 item 8, issue 16), as _send_again does;
        None when the client is not between two sessions (no server was ever
        reached, or the last round reached none: the caller falls back or
        fails at once) or when that round reaches no server. Raises the
        refusal of the round that decided (read with the decision)."""
        unsent = self._connection.between()
        if unsent.after is None:
            if unsent.refusal is not None:
                raise unsent.refusal
            return None
        return await self._send_again(gap, unsent.after, build, name, cancel)

    async def _send_again(
        self, requeue: _resume.Requeue, ended: int, build: Callable[[str, int], bytes], name: str,
        cancel: CancelToken | None,
    ) -> Call | None:
        """Rule 9: the request of a session that ended (``ended``), sent again on
        the next session with what is left of its timeout (``build(tag,
        timeout_ms)``); None when the next round of connection attempts found
        no server (the caller falls back); raises that round's refusal."""
        connection = self._connection
        loop = asyncio.get_running_loop()
        cancelled = (lambda: cancel.cancelled) if cancel is not None else (lambda: False)
        link = None
        if cancel is not None:
            link = cancel.add_callback(lambda: _call_soon_threadsafe(loop, connection.wake_waiters))
        try:
            while True:
                waited = await connection.await_session(
                    ended, requeue.wait_until(), cancelled,
                    requeue.silent_until(time.monotonic(), connection.request_timeout))
                if cancelled():
                    raise _cancelled(name)
                if not requeue.next_session(waited, connection.request_timeout):
                    return None
                session = waited.session
                timeout = requeue.timeout(time.monotonic())  # Timeout when none is left
                timeout_ms = proto.timeout_ms(timeout)
                call = connection.send(lambda tag: build(tag, timeout_ms), session, may_wait=timeout_ms != 0)
                if call is None:
                    ended = session  # that one ended too: the next round decides
                    continue
                log.info("%s", requeue.sent_again(connection.server, timeout))
                return call
        finally:
            if cancel is not None:
                cancel.remove_callback(link)

    async def _await_take(
        self, call: Call, cancel: CancelToken | None, verb: str, name: str, count: int
    ) -> Answer:
        """The final answer of a queued ACQUIRE or WAIT; CANCEL on the token or
        the task's cancellation, and a grant that raced the cancel given back."""
        loop = asyncio.get_running_loop()
        link = None
        if cancel is not None:
            link = cancel.add_callback(lambda: _call_soon_threadsafe(loop, self._send_cancel, call))
            if link is None:
                self._send_cancel(call)
        try:
            return await asyncio.shield(call.future)
        except asyncio.CancelledError:
            self._send_cancel(call)
            answer = await uncancellable(call.future)
            if answer.failure is None and answer.reply is not None and answer.reply.kind == "OK":
                # The grant raced ahead of the cancel: give it back, without
                # keeping the cancelled task waiting for the answer.
                give_back = "RELEASE" if verb == "ACQUIRE" else "POST"
                self._send_in_background(give_back, name, count, call.session)
            raise
        finally:
            if cancel is not None:
                cancel.remove_callback(link)

    def _send_cancel(self, call: Call) -> None:
        if call.future.done():
            return
        # Its answer does not matter: the call itself answers CANCELLED, or its
        # grant raced ahead and the caller gives it back.
        self._connection.send(lambda tag: proto.cancel_request(tag, call.tag), call.session)

    def _send_in_background(self, verb: str, name: str, count: int, session: int) -> None:
        encode = proto.release_request if verb == "RELEASE" else proto.post_request
        call = self._connection.send(lambda tag: encode(tag, name, count), session)
        if call is None:
            return  # the session ended: the server released (ACQUIRE) with it

        async def report() -> None:
            answer = await call.future
            error = proto.final_error(answer, f'{verb} "{name}"')
            if error is not None:
                log.warning("giving back a grant that raced a cancel failed: %s", error)

        task = asyncio.get_running_loop().create_task(report())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, permit: Permit) -> None:
        if permit.lost:
            assert permit.loss_reason is not None
            raise Unavailable(f"the permit of {permit.name} was lost: {permit.loss_reason.message}")
        if permit.is_local:
            self._local().release(permit.name, permit.count, permit._local_grant)
            return
        self._connection.unregister_permit(permit)
        call = self._connection.send(
            lambda tag: proto.release_request(tag, permit.name, permit.count), permit.session
        )
        if call is None:
            # The session ended between the check and the send: the server
            # released the permit with it.
            raise Unavailable(f"the permit of {permit.name} was lost with its session")
        answer = await call.future
        if answer.failure is not None:
            raise IoError(
                f"RELEASE {permit.name}: {answer.failure.message} (the server releases it with the session)"
            )
        assert answer.reply is not None
        if answer.reply.kind == "ERR":
            kind = NotHeld if answer.reply.code == "NOT_HELD" else ProtocolError
            raise kind(f"RELEASE {permit.name}: {answer.reply.text}")

    async def _release_quietly(self, permit: Permit) -> None:
        with contextlib.suppress(NetsemError):
            await permit.release()

    def _give_back(self, permit: Permit) -> None:
        """A garbage-collected permit: given back without waiting for an answer."""
        if permit.lost:
            return
        if permit.is_local:
            self._local().release(permit.name, permit.count, permit._local_grant)
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        name, count, session = permit.name, permit.count, permit.session

        def send() -> None:
            self._connection.send(lambda tag: proto.release_request(tag, name, count), session)

        loop.call_soon_threadsafe(send)

    # --- POSIX-style counting (WAIT / POST) ---

    async def post(self, name: str, count: int = 1) -> None:
        """Adds ``count`` permits (sem_post). Overflow past max; NotFound for a name
        that is not a created or defined semaphore."""
        _check_name(name)
        _check_count(count)
        await self._ready()
        if _is_local_name(name):
            limit = self._options.limit(name)
            await self._in_thread(self._local().post, name, limit, count)
            return
        call = self._connection.send(lambda tag: proto.post_request(tag, name, count))
        if call is None:
            call = await self._send_made_between(_resume.made_between(f'POST "{name}"'),
                                                 lambda tag, _ms: proto.post_request(tag, name, count))
        if call is not None:
            error = proto.final_error(await call.future, f'POST "{name}"')
            if error is not None:
                raise error
            return
        limit = self._counter_fallback_limit(name)
        try:
            await self._in_thread(self._local().post, name, limit, count)
        except NetsemError as error:
            raise self._fallback_outcome(error, name, limit, count) from None

    async def wait(
        self, name: str, count: int = 1, timeout: float | None = None, cancel: CancelToken | None = None
    ) -> None:
        """Takes ``count`` permits for good (sem_wait); raises Timeout, Cancelled, NotFound, ...

        A wait already sent when the connection drops raises Unavailable
        instead of falling back: the server may have consumed the permits.
        """
        _check_name(name)
        _check_count(count)
        timeout = _normalize(timeout)
        if cancel is not None and cancel.cancelled:
            raise _cancelled(name)
        await self._ready()
        if _is_local_name(name):
            await self._local_wait(name, self._options.limit(name), count, timeout, cancel)
            return
        deadline = _Deadline(timeout)
        taken = await self._take_remote("WAIT", name, count, timeout, cancel, fall_back_after_send=False)
        if taken is not None:
            if cancel is not None and cancel.cancelled:
                # The grant raced ahead of the cancel: the consumed permits go back.
                try:
                    await self.post(name, count)
                except NetsemError as error:
                    log.warning(
                        'a cancelled WAIT "%s" was granted %d permits and giving them back failed: %s',
                        name,
                        count,
                        error,
                    )
                    raise Cancelled(
                        f'waiting for "{name}" was cancelled, but its {count} permits were consumed and giving '
                        f"them back failed: {error}"
                    ) from None
                raise _cancelled(name)
            return
        if cancel is not None and cancel.cancelled:
            raise _cancelled(name)
        limit = self._counter_fallback_limit(name)
        try:
            await self._local_wait(name, limit, count, deadline.remaining(), cancel)
        except NetsemError as error:
            raise self._fallback_outcome(error, name, limit, count) from None

    async def try_wait(self, name: str, count: int = 1) -> bool:
        """wait with a zero timeout: True when the permits were taken, False when not free now."""
        try:
            await self.wait(name, count, 0)
        except Timeout:
            return False
        return True

    async def timed_wait(self, name: str, timeout: float, count: int = 1) -> bool:
        """wait at most ``timeout`` seconds: True when taken, False when it ran out."""
        try:
            await self.wait(name, count, timeout)
        except Timeout:
            return False
        return True

    async def value(self, name: str) -> int:
        """The number of free permits (sem_getvalue); the local semaphore's while no server answers."""
        if isinstance(name, str) and not _is_local_name(name):
            try:
                return (await self.get(name)).value
            except NetsemError as error:
                if not _is_connection_failure(error):
                    raise
        _check_name(name)
        limit = self._local_limit(name)
        return int(await self._in_thread(self._local().value, name, limit))

    # --- inspection and management ---

    async def get(self, name: str) -> SemaphoreInfo:
        """One semaphore (kind "absent" for a name that is none; "local" for a ``$`` name)."""
        _check_name(name)
        await self._ready()
        if _is_local_name(name):
            limit = self._options.limit(name)
            local = await self._in_thread(self._local().info, name, limit)
            return SemaphoreInfo(
                name=name, value=local.value, max=limit, holders=local.held, waiters=local.waiting, kind="local"
            )
        what = f'GET "{name}"'
        answer = await self._round_trip(lambda tag: proto.name_request(tag, "GET", name), what)
        assert answer.reply is not None
        try:
            return proto.parse_get(answer.reply, name)
        except ProtocolError:
            raise ProtocolError(f"{what}: bad answer {answer.reply.text}") from None

    async def list(self, prefix: str = "") -> list[SemaphoreInfo]:
        """Every semaphore of the server whose name starts with ``prefix``."""
        if prefix:
            if isinstance(prefix, str) and _is_local_name(prefix):
                raise _not_server_state(prefix)
            _check_name(prefix)
        answer = await self._round_trip(lambda tag: proto.list_request(tag, prefix), "LIST")
        return self._rows(answer, "LIST", proto.parse_list_item)

    async def create(self, name: str, value: int, max: int | None = None, exclusive: bool = False) -> None:
        """Makes a durable semaphore with ``value`` free permits and maximum ``max``
        (default ``value``). Without ``exclusive`` an existing created one is left as
        it is; with it, AlreadyExists."""
        _check_name(name)
        if _is_local_name(name):
            raise _not_server_state(name)
        if max is None:
            max = value
        for number in (value, max):
            if isinstance(number, bool) or not isinstance(number, int):
                raise InvalidArgument(f"CREATE needs whole numbers, not {number!r}")
        if value < 0 or max < 1 or value > max or max > proto.MAX_COUNT:
            raise InvalidArgument(f"CREATE needs 0 <= value <= max, 1 <= max <= {proto.MAX_COUNT}")
        await self._round_trip(
            lambda tag: proto.create_request(tag, name, value, max, exclusive), f'CREATE "{name}"'
        )

    async def delete(self, name: str) -> None:
        """Deletes a created semaphore. Busy while held or waited on; NotFound."""
        _check_name(name)
        if _is_local_name(name):
            raise _not_server_state(name)
        await self._round_trip(lambda tag: proto.name_request(tag, "DELETE", name), f'DELETE "{name}"')

    async def ping(self, payload: str = "") -> str:
        """Round trip to the server; returns the echoed payload."""
        proto.check_ping_payload(payload)
        answer = await self._round_trip(lambda tag: proto.ping_request(tag, payload), "PING")
        assert answer.reply is not None
        if answer.reply.kind != "PONG":
            raise ProtocolError(f"PING: unexpected answer {answer.reply.text}")
        return answer.reply.text

    async def server_stats(self) -> dict[str, Any]:
        """The server's STATS, parsed (fields in docs/protocol.md, "STATS fields")."""
        answer = await self._round_trip(lambda tag: proto.request(tag, "STATS"), "STATS")
        assert answer.reply is not None
        try:
            return proto.parse_stats(answer.reply)
        except ProtocolError:
            raise ProtocolError(f"STATS: unexpected answer {proto.printable(answer.reply.text)}") from None

    # --- protocol 1.1: holders, waiters, sessions, KICK ---

    async def holders(self, name: str) -> list[HolderInfo]:
        """The sessions holding permits of ``name``, the oldest holder first (1.1)."""
        self._check_server_name(name, "HOLDERS")
        answer = await self._round_trip_v11(
            lambda tag: proto.name_request(tag, "HOLDERS", name), "HOLDERS", f'HOLDERS "{name}"'
        )
        return self._rows(answer, f'HOLDERS "{name}"', proto.parse_holder_item)

    async def waiters(self, name: str) -> list[WaiterInfo]:
        """The queued requests of ``name``, in the order they will be granted (1.1)."""
        self._check_server_name(name, "WAITERS")
        answer = await self._round_trip_v11(
            lambda tag: proto.name_request(tag, "WAITERS", name), "WAITERS", f'WAITERS "{name}"'
        )
        return self._rows(answer, f'WAITERS "{name}"', proto.parse_waiter_item)

    async def sessions(self) -> list[SessionInfo]:
        """Every live session of the server, this one included, by rising id (1.1)."""
        answer = await self._round_trip_v11(lambda tag: proto.request(tag, "SESSIONS"), "SESSIONS", "SESSIONS")
        return self._rows(answer, "SESSIONS", proto.parse_session_item)

    async def kick(self, session_id: int) -> None:
        """Ends the session ``session_id`` as if its connection had closed (1.1; admin right)."""
        if isinstance(session_id, bool) or not isinstance(session_id, int) or session_id < 1:
            raise InvalidArgument("KICK: session ids start at 1")
        await self._round_trip_v11(lambda tag: proto.kick_request(tag, session_id), "KICK", f"KICK {session_id}")

    # --- proposed 1.2: a cluster's fences (CLUSTER FENCES, admin) ---

    async def cluster_raise_fences(self, by: int) -> int:
        """Raises a cluster's fences by ``by`` (1 .. 2**53) on its leader and
        returns the new last fence, once committed; the same errors as the
        blocking Client's cluster_raise_fences (Timeout: the leader lost its
        leadership first, the outcome unknown)."""
        proto.check_fence_raise(by)
        what = f"CLUSTER FENCES {by}"
        answer = await self._round_trip(
            lambda tag: proto.cluster_fences_request(tag, by), what, may_wait=True, error_of=proto.cluster_error
        )
        assert answer.reply is not None
        return proto.parse_last_fence(answer.reply, what)

    def _check_server_name(self, name: str, verb: str) -> None:
        _check_name(name)
        if _is_local_name(name):
            raise InvalidArgument(f'{verb} "{name}": a `$` name is host-local: the server knows nothing of it')

    def _needs_v11(self, verb: str) -> ProtocolError:
        connection = self._connection
        server = f"server {connection.server}" if connection.server else "the server"
        version = connection.protocol if connection.connected else "1.0"
        return ProtocolError(f"{server} speaks protocol {version}; {verb} needs 1.1")

    async def _round_trip_v11(self, build: Callable[[str], bytes], verb: str, what: str) -> Answer:
        await self._ready()
        connection = self._connection
        if connection.connected and connection.protocol == "1.0":
            raise self._needs_v11(verb)
        try:
            return await self._round_trip(build, what)
        except ProtocolError as error:
            if "UNKNOWN_VERB" in error.message:
                raise self._needs_v11(verb) from None
            raise

    @staticmethod
    def _rows(answer: Answer, what: str, parse: Callable[[str], T]) -> list[T]:
        """The ITEM rows of a listing; ProtocolError for a row that does not parse
        (a server bug: no half-read listing is returned)."""
        rows = []
        for item in answer.items:
            try:
                rows.append(parse(item.text))
            except ProtocolError:
                raise ProtocolError(f'{what}: bad ITEM "{proto.printable(item.text)}"') from None
        return rows

    # --- 4D-style flags ---

    async def set_flag(self, name: str, wait: float = 0) -> None:
        """Sets the flag ``name`` for this client (4D ``Semaphore``); Timeout when another
        holds it and ``wait`` seconds ran out. Setting a flag already set succeeds at once."""
        _check_name(name)
        deadline = _Deadline(max(0.0, _normalize(wait) or 0.0) if wait is not None else None)
        while True:
            held = self._flags.get(name)
            if held is not None:
                if not held.lost:
                    return
                del self._flags[name]  # lost with its session: set it anew
            being_set = self._flags_being_set.get(name)
            if being_set is None:
                break
            # Another task is setting it: its outcome decides.
            try:
                await asyncio.wait_for(being_set.wait(), deadline.remaining())
            except TimeoutError:
                raise Timeout(f'the flag "{name}" is being set') from None
        event = asyncio.Event()
        self._flags_being_set[name] = event
        try:
            permit = await self._acquire(name, 1, deadline.remaining(), None)
        finally:
            del self._flags_being_set[name]
            event.set()
        self._flags[name] = permit

    async def clear_flag(self, name: str) -> None:
        """Clears a flag this client set (4D ``CLEAR SEMAPHORE``); NotHeld otherwise."""
        _check_name(name)
        permit = self._flags.pop(name, None)
        if permit is None:
            raise NotHeld(f'the flag "{name}" was not set by this process')
        await permit.release()

    async def test_flag(self, name: str) -> bool:
        """Whether anyone holds the flag, without setting it (4D ``Test semaphore``)."""
        if isinstance(name, str) and not _is_local_name(name):
            try:
                info = await self.get(name)
                return info.holders > 0 or info.value == 0
            except NetsemError as error:
                if not _is_connection_failure(error):
                    raise
        return await self.value(name) == 0

    # --- state ---

    @property
    def options(self) -> ClientOptions:
        """The options the client runs with (a copy)."""
        return self._options.copy()

    @property
    def connected(self) -> bool:
        """True while a session with a server is up."""
        return self._connection.connected

    def stats(self) -> ClientStats:
        """What the client counts (for logs and status pages)."""
        c = self._connection
        return ClientStats(
            connected=c.connected,
            server=c.server,
            connects=c.connects,
            connection_losses=c.losses,
            fallback_entries=c.fallback_entries,
            fallback_exits=c.fallback_exits,
            resumes=c.resumes,
            local_grants=self._local_grants,
            remote_grants=self._remote_grants,
            unreachable=c.unreachable,
            silent=c.silence is not None and not c.connected,
            protocol=c.protocol if c.connected else "",
            session_id=c.session_id if c.connected else 0,
        )

    # --- the server round trip ---

    async def _round_trip(
        self, build: Callable[[str], bytes], what: str, may_wait: bool = False,
        error_of: Callable[[Answer, str], NetsemError | None] = proto.final_error,
    ) -> Answer:
        """One request and its final answer; raises the refusal, Unavailable, or the
        answer's error (``error_of``). Made between two sessions, it waits for the round of
        connection attempts under way and is sent on the session it finds;
        Unavailable "no server reachable" when none was ever reached or that
        round reached none. ``may_wait``: a request the server may not answer at once."""
        await self._ready()
        call = self._connection.send(build, may_wait=may_wait)
        if call is None:
            call = await self._send_made_between(_resume.made_between(what), lambda tag, _ms: build(tag))
            if call is None:
                raise Unavailable("no server reachable")
        answer = await call.future
        error = error_of(answer, what)
        if error is not None:
            raise error
        return answer

    # --- fallback ---

    def _fallback_limit(self, name: str) -> int:
        """The local limit of a server name once the round that decided reached
        no server (a refusal was raised with that decision); raises under the
        policy ``fail`` (and Unavailable once the client is closed: a call it
        cut short does not fall back)."""
        if self._closed:
            raise Unavailable("the client is closed")
        policy = self._options.fallback_policy(name)
        if policy.mode == "fail":
            raise Unavailable(f'no server reachable, and the fallback policy of "{name}" is fail')
        return int(policy.local_limit(self._options.limit(name)))

    def _counter_fallback_limit(self, name: str) -> int:
        """wait and post fall back only for names listed in [semaphores]."""
        if self._closed:
            raise Unavailable("the client is closed")
        if name not in self._options.limits:
            raise Unavailable(
                f'no server reachable, and "{name}" is not listed in [semaphores]: a created '
                "semaphore's value is known only to the server, so it cannot be served locally"
            )
        return self._fallback_limit(name)

    def _local_limit(self, name: str) -> int:
        if _is_local_name(name):
            return int(self._options.limit(name))
        return self._fallback_limit(name)

    def _fallback_outcome(self, error: NetsemError, name: str, limit: int, count: int) -> NetsemError:
        """A local call made in fallback as the caller sees it (libnetsem's fallback_outcome)."""
        if isinstance(error, (Timeout, Cancelled)):
            return error
        if isinstance(error, TooMany):
            listed = "from" if name in self._options.limits else "not listed in"
            policy = self._options.fallback_policy(name)
            return Unavailable(
                f'no server reachable, and {count} permits of "{name}" are more than its host-local '
                f"stand-in's limit of {limit} ({listed} [semaphores]; fallback {policy})"
            )
        return type(error)(f'no server reachable, so "{name}" was served by a host-local semaphore: {error.message}')

    # --- local semaphores (netsem._aio_local) ---

    def _local(self) -> Any:
        return self._local_side.semaphores

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await self._local_side.run(function, *args)

    async def _local_acquire(
        self, name: str, limit: int, count: int, timeout: float | None, cancel: CancelToken | None, *, fallback: bool
    ) -> Permit:
        grant = await self._local_side.acquire(name, limit, count, timeout, cancel, fallback=fallback)
        self._local_grants += 1
        return Permit(self, name, count, local_grant=grant, mark=grant.mark)

    async def _local_wait(
        self, name: str, limit: int, count: int, timeout: float | None, cancel: CancelToken | None
    ) -> None:
        await self._local_side.wait(name, limit, count, timeout, cancel)
        self._local_grants += 1

    async def _mark_server_holder(self, permit: Permit, timeout: float | None, cancel: CancelToken | None) -> None:
        """Marks a server grant as held from the server on this host (LocalSide.mark_server_holder)."""
        permit._mark = await self._local_side.mark_server_holder(permit.name, timeout, cancel)

    def _mark_lost(self, mark: Any) -> None:
        self._local().mark_lost(mark)

    def _unmark(self, mark: Any) -> None:
        self._local().unmark(mark)
