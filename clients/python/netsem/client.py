"""The blocking netsem client: Client and Permit (libnetsem's client.h and
permit.h, in Python).

    import netsem

    with netsem.Client("10.0.0.5:53559") as client:
        with client.acquire("search", count=2, timeout=5) as permit:
            run_query(fence=permit.fence)        # at most N at once, fleet-wide

One Client multiplexes the calls of all its threads on one connection (each
request carries its own tag; _connection.py): it connects to the first
reachable server of its list, says HELLO with a label (host/pid/program),
pings at a third of the server's session timeout, and reconnects with
backoff when the connection drops. Names are plain str: the client
percent-encodes them for the wire and checks them as the server does.

Local names and fallback: a name starting with ``$`` never touches the
network; it is a host-wide semaphore shared by every process of this user on
this host (C++ ones included), and a process that dies gives its permits
back. While no server can be reached, other names are served the same way,
per the name's FallbackPolicy. A server that answers but refuses the session
(Denied, LimitReached, ProtocolError) is not an outage: calls raise that
refusal instead of falling back. The rules of which call falls back when are
libnetsem's (docs/client.md): acquire falls back when there is no session, or
when the session ends while it waits and the next round of connection
attempts reaches no server (rule 9: otherwise it is sent again on the new
session with what is left of its timeout); wait and post only when they
could not be sent, and only for names listed in ``[semaphores]``; value and
test_flag read the local semaphore; the rest needs the server.

Timeouts are seconds as float: None waits for ever, zero or negative only
tries (never queues), a positive one waits at most that long.

Thread safety: every Client method from any thread at once. A Permit may be
used from any thread; its loss callback runs on the client's I/O thread (keep
it short, never call the Client from it).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from netsem import _protocol as proto
from netsem import _resume
from netsem._cancel import CancelToken
from netsem._connection import Call, Connection
from netsem._options import ClientOptions, client_options
from netsem._tls import make_context as make_tls_context
from netsem._protocol import HolderInfo, SemaphoreInfo, SessionInfo, WaiterInfo
from netsem.errors import (
    Cancelled,
    InvalidArgument,
    IoError,
    NetsemError,
    NotHeld,
    ProtocolError,
    Shutdown,
    Timeout,
    TooMany,
    Unavailable,
)

log = logging.getLogger("netsem")

__all__ = ["Client", "ClientStats", "HolderInfo", "Permit", "SemaphoreInfo", "SessionInfo", "WaiterInfo"]


@dataclass(frozen=True)
class ClientStats:
    """What the client counts (libnetsem's ClientStats)."""

    connected: bool
    server: str  # "host:port" while connected
    connects: int  # successful connections, reconnects included
    connection_losses: int
    fallback_entries: int  # times the client started serving names locally
    fallback_exits: int  # times a server came back
    # Sessions carried on over a new connection after theirs broke (RESUME,
    # docs/python.md "Sessions that outlive their connection"), a session
    # moved off a silent server or taken by a late RESUME of this client's
    # (rule 11) included: not counted in connects or connection_losses.
    # libnetsem's ClientStats::resumes.
    resumes: int
    local_grants: int  # permits granted by local semaphores ($ names and fallback)
    remote_grants: int
    unreachable: str  # while not connected: why, server by server
    # While not connected: the last round of connection attempts reached
    # servers that accepted the connection and did not answer in time, none
    # refused, and this process lacked nothing to try them: not an outage, so
    # calls wait for a round that decides instead of falling back (docs/python.md,
    # "A server that accepts and does not answer"). False once a session
    # began, or after a round that decided otherwise (no server reachable, a
    # refusal). libnetsem's ClientStats::silent.
    silent: bool
    protocol: str  # while connected: "1.0" or "1.1"
    session_id: int  # while connected: this client's session id


class _PermitState:
    """What a Permit holds, where, its host-wide mark and its loss. The
    immutable fields are set before the Permit is handed out; the rest is
    guarded by ``lock``."""

    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self.fence: int | None = None  # remote permits only
        # Local permits: the semaphores and the grant (which semaphore) that hold them.
        self.local: Any = None
        self.grant: Any = None
        # Remote permits: the connection and the session that hold them.
        self.connection: Connection | None = None
        self.session = 0
        # The mark in the host-wide table of holders, dropped by release()
        # whether or not the permit was lost.
        self.marks: Any = None
        self.mark: Any = None
        self.lock = threading.Lock()
        self.released = False  # guarded by lock
        self.loss: NetsemError | None = None  # guarded by lock
        self.stop_by: float | None = None  # guarded by lock
        self.on_lost: Callable[[NetsemError], None] | None = None  # guarded by lock

    @property
    def is_local(self) -> bool:
        return self.local is not None

    def mark_lost(self, reason: NetsemError, stop_by: float | None) -> None:
        """On the I/O thread: the session that held it ended."""
        with self.lock:
            if self.released or self.loss is not None:
                return
            self.loss, self.stop_by = reason, stop_by
            # Its work may still run: a grant on this host waits for it from now on.
            if self.mark is not None:
                self.marks.mark_lost(self.mark)
            callback, self.on_lost = self.on_lost, None
        if callback is not None:
            callback(reason)

    def release(self, wait: bool = True) -> None:
        try:
            with self.lock:
                if self.released:
                    return
                self.released = True
                if self.loss is not None:
                    raise Unavailable(f"the permit of {self.name} was lost: {self.loss}")
            if self.is_local:
                self.local.release(self.name, self.count, self.grant)
                return
            connection = self.connection
            assert connection is not None
            connection.unregister_permit(self)
            call = connection.send(lambda tag: proto.release_request(tag, self.name, self.count), self.session)
            # The session ended between the check above and the send: the
            # server has released the permit with it.
            if call is None:
                raise Unavailable(f"the permit of {self.name} was lost with its session")
            # On the I/O thread (a loss callback dropping another permit), or
            # from the garbage collector, waiting is not an option; the RELEASE
            # goes out all the same.
            if not wait or connection.on_io_thread():
                return
            call.wait()
            if call.failure is not None:
                raise IoError(
                    f"RELEASE {self.name}: {call.failure} (the server releases it with the session)"
                )
            assert call.reply is not None
            if call.reply.kind == "ERR":
                kind = NotHeld if call.reply.code == "NOT_HELD" else ProtocolError
                raise kind(f"RELEASE {self.name}: {call.reply.text}")
        finally:
            # Last, whatever happened: the work under the permit has stopped.
            with self.lock:
                mark, self.mark = self.mark, None
            if mark is not None:
                self.marks.unmark(mark)


class Permit:
    """Permits of one semaphore held by this process, given back by
    ``release()`` or at the end of a ``with`` block.

    A Permit is held either on the server (``fence`` is the server's fence
    token) or in a host-wide local semaphore (``is_local``: ``$`` names, or
    fallback while no server is reachable; ``fence`` is None). A remote permit
    can be *lost* without being released: the connection dropped, the server
    shut down, or the session expired. The server has then given it to
    someone else, so whoever works under it must stop: ``lost`` tells, and
    ``on_lost`` calls back the moment it happens. An unreleased Permit that is
    garbage-collected is given back without waiting for an answer, with a
    ResourceWarning (like an unclosed file).
    """

    __slots__ = ("_state", "__weakref__")

    def __init__(self, state: _PermitState) -> None:
        self._state = state

    def __repr__(self) -> str:
        where = "local" if self.is_local else f"fence={self.fence}"
        status = "released" if self.released else "lost" if self.lost else "held"
        return f"<netsem.Permit {self.name!r} count={self.count} {where} {status}>"

    @property
    def name(self) -> str:
        """The semaphore's name, as the caller passed it."""
        return self._state.name

    @property
    def count(self) -> int:
        """How many permits it holds."""
        return self._state.count

    @property
    def fence(self) -> int | None:
        """The server's fence token for this grant; None for a local permit,
        which no server numbered (a resource that checks fences cannot tell
        it from a stale holder's)."""
        return self._state.fence

    @property
    def is_local(self) -> bool:
        """True when held in a host-wide local semaphore rather than on the server."""
        return self._state.is_local

    @property
    def released(self) -> bool:
        """True once release() was called (or the ``with`` block ended)."""
        with self._state.lock:
            return self._state.released

    @property
    def lost(self) -> bool:
        """True once the permit was lost. A local permit is never lost."""
        with self._state.lock:
            return self._state.loss is not None

    @property
    def loss_reason(self) -> NetsemError | None:
        """Why it was lost (Unavailable: connection lost; Shutdown: the server
        is shutting down), or None while it is not."""
        with self._state.lock:
            return self._state.loss

    @property
    def stop_by(self) -> float | None:
        """Once lost through the lease (the server stopped answering, and has a
        session timeout): the ``time.monotonic()`` time by which the work
        under the permit must have stopped, since the server may grant it to
        someone else from then on (docs/python.md, "Permits and loss"). None
        for any other loss (the server let go at once, or gives no bound: the
        permit may be granted again now) and while not lost."""
        with self._state.lock:
            return self._state.stop_by

    def on_lost(self, callback: Callable[[NetsemError], None]) -> None:
        """Calls ``callback(reason)`` once when the permit is lost: on the
        client's I/O thread, or at once on this thread if it already is.
        Replaces an earlier callback. Keep it short; never call the Client
        from it."""
        state = self._state
        with state.lock:
            if state.loss is None:
                state.on_lost = callback
                return
            reason = state.loss
        callback(reason)

    def release(self) -> None:
        """Gives the permits back. Raises Unavailable when the permit had been
        lost (nothing was held any more), IoError when the RELEASE round trip
        failed (the server releases it with the session anyway), NotHeld for a
        local permit whose semaphore was removed meanwhile. A second release()
        does nothing."""
        self._state.release()

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # As libnetsem's destructor: a lost permit is no error here (on_lost
        # and `lost` tell about it); other failures are logged.
        try:
            self._state.release()
        except Unavailable:
            pass
        except NetsemError as error:
            log.warning("releasing a permit failed: %s", error)

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is None or state.released:
            return
        try:
            warnings.warn(f"unreleased netsem permit of {state.name!r} given back by the garbage collector",
                          ResourceWarning, stacklevel=2)
            # The collector runs whenever an allocation triggers it: maybe on
            # a thread inside this permit's lock (the I/O thread marking it
            # lost), which release() would wait for for ever. Then a thread
            # of its own gives it back, once the lock is free.
            if not state.lock.acquire(blocking=False):
                threading.Thread(target=_release_collected, args=(state,), name="netsem-collected-permit",
                                 daemon=True).start()
                return
            state.lock.release()
            state.release(wait=False)
        except Exception:  # NetsemError, or the interpreter shutting down
            pass


def _release_collected(state: _PermitState) -> None:
    """Permit.__del__'s release when the permit's lock was taken."""
    try:
        state.release(wait=False)
    except Exception:  # NetsemError (lost meanwhile), or the interpreter shutting down
        pass


class _NoLocal:
    """Stands in for netsem._local.LocalSemaphores where it cannot be had:
    every host-local call raises IoError with why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def fail(*args: object, **kwargs: object) -> Any:
            raise IoError(f"host-local semaphores are not available: {self.why}")

        return fail


def _make_local(options: ClientOptions) -> Any:
    try:
        from netsem._local import LocalSemaphores
    except ImportError as error:
        return _NoLocal(f"netsem._local cannot be imported ({error})")
    try:
        return LocalSemaphores(options.local_dir)
    except NetsemError as error:
        return _NoLocal(str(error))


def _deadline(timeout: float | None) -> float | None:
    """The monotonic time a call with ``timeout`` gives up (None: never)."""
    if timeout is None or timeout > proto.FOREVER_AFTER:
        return None
    return time.monotonic() + max(timeout, 0.0)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _check_timeout(timeout: float | None) -> float | None:
    proto.timeout_ms(timeout)  # InvalidArgument for what is no timeout
    if timeout is not None and timeout > proto.FOREVER_AFTER:
        return None
    return timeout


def _cancelled(name: str) -> Cancelled:
    return Cancelled(f'waiting for "{name}" was cancelled')


class Client:
    """A client of netsem; see the module docstring."""

    def __init__(
        self,
        servers: str | Sequence[str] | None = None,
        label: str | None = None,
        config: str | os.PathLike[str] | None = None,
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
        """Starts the client's I/O thread and a first round of connection
        attempts, waiting until a server answers or every server failed (each
        attempt bounded by connect_timeout). Never fails because no server is
        reachable: calls then follow the fallback policy.

        ``options`` gives every setting; without it they come from the file
        ``config``, else from the environment (NETSEM_CONFIG, NETSEM_SERVER,
        NETSEM_FALLBACK, NETSEM_LABEL, NETSEM_TOKEN_FILE, NETSEM_TOKEN,
        NETSEM_TLS*). ``servers`` ("host:port", a comma separated list, or a
        sequence of them), ``label``, and the TLS and token keywords override
        (``tls``, ``tls_ca``, ``tls_cert``, ``tls_key``, ``tls_server_name``;
        ``token``, or ``token_file`` to read it from: never put a token on a
        command line, where ``ps`` shows it). InvalidArgument for bad options
        (a TLS file that cannot be used too), IoError for an unreadable file,
        Denied for a token file that group or others may read or write.
        """
        self._connection: Connection | None = None
        options = client_options(
            servers, label, config, options, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            tls_server_name=tls_server_name, token=token, token_file=token_file,
        )
        tls_context = make_tls_context(options)
        endpoints = [proto.parse_endpoint(server) for server in options.servers]
        self._options = options
        self._local = _make_local(options)
        self._grants_lock = threading.Lock()
        self._local_grants = 0  # guarded by _grants_lock
        self._remote_grants = 0  # guarded by _grants_lock
        self._flags_lock = threading.Condition()
        self._flags: dict[str, Permit] = {}  # guarded by _flags_lock: flags this process set
        self._flags_being_set: set[str] = set()  # guarded by _flags_lock
        self._closed = False
        self._pid = os.getpid()
        label_text = proto.sanitize_label(options.label or proto.default_label())
        self._connection = Connection.start(options, endpoints, label_text, tls_context)
        # The first round tries every server (a connect and a handshake, each
        # bounded by connect_timeout); waiting for it means no call falls back
        # while a later server could still answer.
        self._connection.wait_first_round(2 * len(endpoints) * options.connect_timeout)

    # --- life ------------------------------------------------------------------

    def close(self) -> None:
        """Closes the connection; the server then releases every remote permit
        still held, which are marked lost. Local permits stay held until their
        Permits are released. Idempotent; later calls raise Unavailable."""
        if self._connection is None or self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            return  # a fork's child: the connection and its permits are the parent's
        # Ending the session marks its remote permits lost, so dropping the
        # flags afterwards only gives back local ones.
        self._connection.stop()
        with self._flags_lock:
            flags, self._flags = self._flags, {}
        for permit in flags.values():
            try:
                permit.release()
            except NetsemError:
                pass

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_connection", None) is not None and not self._closed:
            try:
                self.close()
            except Exception:
                pass

    @property
    def options(self) -> ClientOptions:
        """The options the client runs with (a copy)."""
        return self._options.copy()

    @property
    def connected(self) -> bool:
        """True while a session with a server is up."""
        return self._conn().connected()

    def stats(self) -> ClientStats:
        """What the client counts."""
        counters = self._conn().counters()
        with self._grants_lock:
            local, remote = self._local_grants, self._remote_grants
        return ClientStats(
            connected=counters.connected, server=counters.server, connects=counters.connects,
            connection_losses=counters.losses, fallback_entries=counters.fallback_entries,
            fallback_exits=counters.fallback_exits, resumes=counters.resumes, local_grants=local,
            remote_grants=remote,
            unreachable=counters.unreachable, silent=counters.silent, protocol=counters.protocol,
            session_id=counters.session_id,
        )

    def _conn(self) -> Connection:
        if self._closed or self._connection is None:
            raise Unavailable("the client is closed")
        if os.getpid() != self._pid:
            # The child of a fork() has the connection's socket but not its I/O
            # thread: a call would wait for ever, and the session (with its
            # permits) is the parent's.
            raise RuntimeError("a netsem Client cannot be used after fork(): make a new one in the child")
        return self._connection

    def _io_caller(self) -> Connection:
        """_conn() for a call that waits for an answer, which the I/O thread
        would wait for itself: a loss callback must not make one."""
        connection = self._conn()
        if connection.on_io_thread():
            raise RuntimeError("a netsem loss callback must not call the Client (it runs on its I/O thread)")
        return connection

    def _count(self, local: bool) -> None:
        with self._grants_lock:
            if local:
                self._local_grants += 1
            else:
                self._remote_grants += 1

    # --- asking the server ---------------------------------------------------------

    def _round_trip(self, build: Callable[[str], bytes], what: str, may_wait: bool = False) -> Call:
        """One request (``what``: 'GET "name"', 'LIST', ...) and its final
        answer. Made between two sessions, it waits for the round of
        connection attempts under way and is sent on the session it finds.
        Raises the servers' refusal (the one of the round that decided) or
        Unavailable when there is no session (none was ever reached, or that
        round reached none), or when it ends before the answer.
        ``may_wait``: see Call.may_wait."""
        connection = self._io_caller()
        call = connection.send(build, may_wait=may_wait)
        if call is None:
            call = self._send_made_between(connection, _resume.made_between(what), lambda tag, _ms: build(tag))
            if call is None:
                raise Unavailable("no server reachable")
        call.wait()
        if call.failure is not None:
            raise call.failure
        return call

    def _ask(self, build: Callable[[str], bytes], what: str) -> proto.Reply:
        call = self._round_trip(build, what)
        error = proto.final_error(call, what)
        if error is not None:
            raise error
        assert call.reply is not None
        return call.reply

    def _take_remote(self, verb: str, name: str, count: int, timeout: float | None,
                     cancel: CancelToken | None, fall_back_after_send: bool) -> tuple[int, int] | None:
        """ACQUIRE or WAIT on the server: (fence, session) of its grant, or None
        when the caller may fall back: there was no session to send it on, or
        (only with ``fall_back_after_send``, an ACQUIRE) its session ended
        before the answer and the next round of connection attempts reached
        no server (rule 9: on a new session it is sent again, with what is
        left of its timeout). Raises its refusal, Unavailable when a session
        that ended after the send leaves the outcome unknown (WAIT) or a KICK
        ended it, Timeout when no time was left to send it again."""
        ms = proto.timeout_ms(timeout)
        encode = proto.acquire_request if verb == "ACQUIRE" else proto.wait_request

        def build(tag: str, timeout_ms: int) -> bytes:
            return encode(tag, name, count, timeout_ms)

        requeue = _resume.Requeue(f'{verb} "{name}"', timeout, _deadline(timeout)) if fall_back_after_send else None
        connection = self._io_caller()
        call = connection.send(lambda tag: build(tag, ms), may_wait=ms != 0)
        if call is None:
            gap = requeue or _resume.Requeue(f'{verb} "{name}"', timeout, _deadline(timeout))
            gap.unsent = True
            call = self._send_made_between(connection, gap, build, name, cancel)
            if call is None:
                return None
        while True:
            self._await(connection, call, cancel, verb, name, count)
            if call.failure is None:
                break
            if requeue is None:
                raise Unavailable(
                    f'{verb} "{name}": no answer came, so its outcome is unknown: {call.failure}'
                )
            refusal = requeue.refusal(call.failure)
            if refusal is not None:
                raise refusal
            again = self._send_again(connection, requeue, call.session, build, name, cancel)
            if again is None:
                return None  # no server reachable: the caller falls back
            call = again
        error = proto.final_error(call, f'{verb} "{name}"')
        if error is not None:
            raise error
        self._count(local=False)
        assert call.reply is not None
        try:
            fence = proto.parse_fence(call.reply)
        except ProtocolError:
            # A grant without a readable fence is still a grant (the server
            # holds it for this session): kept, with fence 0, and said.
            log.warning('%s "%s": the server\'s grant carries no fence: "%s"', verb, name, call.reply.text)
            fence = 0
        return fence, call.session

    @classmethod
    def _send_made_between(cls, connection: Connection, gap: _resume.Requeue, build: Callable[[str, int], bytes],
                           name: str = "", cancel: CancelToken | None = None) -> Call | None:
        """A request that found no session: made between two sessions (the
        last one ended, unresumed, and no round of connection attempts has
        failed since), it waits for the round under way and is sent on the
        session that round finds (review19 item 8, issue 16), as _send_again
        does; None when the client is not between two sessions (no server
        was ever reached, or the last round reached none: the caller falls
        back or fails at once) or when that round reaches no server. Raises
        the refusal of the round that decided (read with the decision)."""
        unsent = connection.between()
        if unsent.after is None:
            if unsent.refusal is not None:
                raise unsent.refusal
            return None
        return cls._send_again(connection, gap, unsent.after, build, name, cancel)

    @staticmethod
    def _send_again(connection: Connection, requeue: _resume.Requeue, ended: int,
                    build: Callable[[str, int], bytes], name: str, cancel: CancelToken | None) -> Call | None:
        """Rule 9: the request of a session that ended (``ended``), sent again
        on the next session with what is left of its timeout (``build(tag,
        timeout_ms)``); None when the next round of connection attempts found
        no server (the caller falls back); raises that round's refusal."""
        cancelled = (lambda: cancel.cancelled) if cancel is not None else (lambda: False)
        callback_id = cancel.add_callback(connection.wake_waiters) if cancel is not None else None
        try:
            while True:
                waited = connection.await_session(
                    ended, requeue.wait_until(), cancelled,
                    requeue.silent_until(time.monotonic(), connection.request_timeout))
                if cancelled():
                    raise _cancelled(name)
                if not requeue.next_session(waited, connection.request_timeout):
                    return None
                session = waited.session
                timeout = requeue.timeout(time.monotonic())  # Timeout when none is left
                ms = proto.timeout_ms(timeout)
                call = connection.send(lambda tag: build(tag, ms), session, may_wait=ms != 0)
                if call is None:
                    ended = session  # that one ended too: the next round decides
                    continue
                log.info("%s", requeue.sent_again(connection.counters().server, timeout))
                return call
        finally:
            if cancel is not None:
                cancel.remove_callback(callback_id)

    @staticmethod
    def _await(connection: Connection, call: Call, cancel: CancelToken | None, verb: str, name: str,
               count: int) -> None:
        """Waits for the final answer of ``call``, sending CANCEL once
        ``cancel`` fires. A caller interrupted meanwhile (KeyboardInterrupt,
        any exception) cancels the request, and a grant that still comes goes
        back at once."""

        def send_cancel() -> None:
            connection.send(lambda tag: proto.cancel_request(tag, call.tag), call.session)

        callback_id = None
        if cancel is not None:
            callback_id = cancel.add_callback(send_cancel)
            if callback_id is None:
                send_cancel()
        try:
            call.wait()
        except BaseException:
            undo_request = proto.release_request if verb == "ACQUIRE" else proto.post_request

            def undo(tag: str) -> bytes:
                return undo_request(tag, name, count)

            if call.abandon(undo):
                if call.reply is not None and call.reply.kind == "OK":
                    connection.send(undo, call.session)
            else:
                send_cancel()
            raise
        finally:
            if cancel is not None:
                cancel.remove_callback(callback_id)

    # --- fallback ------------------------------------------------------------------

    def _fallback_limit(self, name: str) -> int:
        """The local limit of a server name once the round that decided
        reached no server (a refusal was raised with that decision: a server
        that answered is not an outage); Unavailable under the policy
        `fail`."""
        self._conn()  # Unavailable once closed
        policy = self._options.fallback_policy(name)
        if policy.mode == "fail":
            raise Unavailable(f'no server reachable, and the fallback policy of "{name}" is fail')
        return policy.local_limit(self._options.limit(name))

    def _counter_fallback_limit(self, name: str) -> int:
        """_fallback_limit for wait and post, which count items rather than cap
        holders: only a name listed in [semaphores] falls back (a created
        semaphore's value is known only to the server)."""
        if name not in self._options.limits:
            raise Unavailable(
                f'no server reachable, and "{name}" is not listed in [semaphores]: a created semaphore\'s value '
                "is known only to the server, so it cannot be served locally"
            )
        return self._fallback_limit(name)

    def _local_limit(self, name: str) -> int:
        return self._options.limit(name) if proto.is_local_name(name) else self._fallback_limit(name)

    def _fallback_outcome(self, error: NetsemError, name: str, limit: int, count: int) -> NetsemError:
        """A local call made in fallback, as the caller sees its failure: asking
        more than the stand-in's limit is Unavailable, not TooMany; other
        refusals say the server was not reachable."""
        if isinstance(error, (Timeout, Cancelled)):
            return error
        if isinstance(error, TooMany):
            listed = "from" if name in self._options.limits else "not listed in"
            return Unavailable(
                f'no server reachable, and {count} permits of "{name}" are more than its host-local stand-in\'s '
                f"limit of {limit} ({listed} [semaphores]; fallback {self._options.fallback_policy(name)})"
            )
        return type(error)(f'no server reachable, so "{name}" was served by a host-local semaphore: {error}')

    def _local_acquire(self, name: str, limit: int, count: int, timeout: float | None,
                       cancel: CancelToken | None, fallback: bool) -> Permit:
        grant = self._local.acquire(name, limit, count, timeout, cancel, fallback=fallback)
        self._count(local=True)
        state = _PermitState(name, count)
        state.local = self._local
        state.grant = grant
        mark = getattr(grant, "mark", None)
        if mark is not None:
            state.marks, state.mark = self._local, mark
        return Permit(state)

    def _mark_server_holder(self, state: _PermitState, timeout: float | None, cancel: CancelToken | None) -> None:
        """Marks a server-granted permit as held from the server on this host,
        waiting while fallback permits or lost server permits of its name are
        held here. A host-wide table that cannot be used is logged, not
        raised: fallback, which needs it too, cannot grant then either."""
        try:
            mark = self._local.mark_server_holder(state.name, timeout, cancel)
        except (Timeout, Cancelled):
            raise
        except NetsemError as error:
            if not Client._warned_marks:
                Client._warned_marks = True
                log.warning("server permits are not marked host-wide (%s); fallback cannot serve names either "
                            "until the local registry works", error)
            return
        state.marks, state.mark = self._local, mark

    _warned_marks = False

    # --- permits -----------------------------------------------------------------------

    def acquire(self, name: str, count: int = 1, timeout: float | None = None,
                cancel: CancelToken | None = None) -> Permit:
        """Acquires ``count`` permits of ``name``, in strict FIFO order with every
        other client of the server, as a Permit (a context manager that gives
        them back). Raises Timeout (also a TimeoutError), Cancelled, TooMany
        (count above the semaphore's max), InvalidArgument (bad name or count),
        LimitReached (a server limit), Unavailable (no server and the name's
        fallback policy is `fail`), Denied or ProtocolError (a refusal)."""
        proto.check_name(name)
        proto.check_count(count)
        timeout = _check_timeout(timeout)
        if cancel is not None and cancel.cancelled:
            raise _cancelled(name)
        if proto.is_local_name(name):
            return self._local_acquire(name, self._options.limit(name), count, timeout, cancel, fallback=False)
        deadline = _deadline(timeout)
        taken = self._take_remote("ACQUIRE", name, count, timeout, cancel, fall_back_after_send=True)
        if taken is not None:
            state = _PermitState(name, count)
            state.fence, state.session = taken
            state.connection = self._conn()
            permit = Permit(state)
            # Within the acquire's timeout, as any wait for the permit; marked
            # before it is registered, so that a loss meanwhile marks it lost.
            try:
                self._mark_server_holder(state, _remaining(deadline), cancel)
            except NetsemError as error:
                state.release()
                if isinstance(error, Cancelled):
                    raise _cancelled(name) from None
                raise type(error)(
                    f'"{name}" was granted by the server, but {error}; it went back to the server so that this '
                    "host does not run more than its local limit"
                ) from None
            state.connection.register_permit(state, state.session)
            if cancel is not None and cancel.cancelled:
                state.release()  # the grant raced ahead of the cancel
                raise _cancelled(name)
            return permit
        if cancel is not None and cancel.cancelled:
            raise _cancelled(name)
        limit = self._fallback_limit(name)
        try:
            return self._local_acquire(name, limit, count, _remaining(deadline), cancel, fallback=True)
        except NetsemError as error:
            raise self._fallback_outcome(error, name, limit, count) from None

    def try_acquire(self, name: str, count: int = 1) -> Permit | None:
        """acquire with a zero timeout: a Permit, or None when the permits are
        not free now (other errors raise)."""
        try:
            return self.acquire(name, count, timeout=0)
        except Timeout:
            return None

    # --- POSIX-style counting (WAIT / POST): permits are consumed, not held -------------

    def post(self, name: str, count: int = 1) -> None:
        """Adds ``count`` permits (sem_post). Overflow past max; NotFound for a
        name that is not a created or defined semaphore."""
        proto.check_name(name)
        proto.check_count(count)
        if proto.is_local_name(name):
            self._local.post(name, self._options.limit(name), count)
            return
        connection = self._io_caller()
        call = connection.send(lambda tag: proto.post_request(tag, name, count))
        if call is None:
            call = self._send_made_between(connection, _resume.made_between(f'POST "{name}"'),
                                           lambda tag, _ms: proto.post_request(tag, name, count))
        if call is not None:
            call.wait()
            error = proto.final_error(call, f'POST "{name}"')
            if error is not None:
                raise error
            return
        limit = self._counter_fallback_limit(name)
        try:
            self._local.post(name, limit, count)
        except NetsemError as error:
            raise self._fallback_outcome(error, name, limit, count) from None

    def wait(self, name: str, count: int = 1, timeout: float | None = None,
             cancel: CancelToken | None = None) -> None:
        """Takes ``count`` permits for good (sem_wait); they come back only by
        post. Timeouts and cancellation as for acquire (Timeout when the
        timeout runs out). NotFound for a name that is not a created or
        defined semaphore. A wait already sent when the connection drops
        raises Unavailable instead of falling back: the server may have
        consumed the permits."""
        proto.check_name(name)
        proto.check_count(count)
        timeout = _check_timeout(timeout)
        if cancel is not None and cancel.cancelled:
            raise _cancelled(name)
        if proto.is_local_name(name):
            self._local.wait(name, self._options.limit(name), count, timeout, cancel)
            self._count(local=True)
            return
        deadline = _deadline(timeout)
        if self._take_remote("WAIT", name, count, timeout, cancel, fall_back_after_send=False) is not None:
            if cancel is not None and cancel.cancelled:
                # The grant raced ahead of the cancel: the consumed permits go back.
                try:
                    self._ask(lambda tag: proto.post_request(tag, name, count), f'POST "{name}"')
                except NetsemError as error:
                    log.warning('a cancelled WAIT "%s" was granted %d permits and giving them back failed: %s',
                                name, count, error)
                    raise Cancelled(f'waiting for "{name}" was cancelled, but its {count} permits were consumed '
                                    f"and giving them back failed: {error}") from None
                raise _cancelled(name)
            return
        if cancel is not None and cancel.cancelled:
            raise _cancelled(name)
        limit = self._counter_fallback_limit(name)
        try:
            self._local.wait(name, limit, count, _remaining(deadline), cancel)
            self._count(local=True)
        except NetsemError as error:
            raise self._fallback_outcome(error, name, limit, count) from None

    def try_wait(self, name: str, count: int = 1) -> bool:
        """wait with a zero timeout: True when the permits were taken, False
        when they are not free now."""
        try:
            self.wait(name, count, timeout=0)
        except Timeout:
            return False
        return True

    def timed_wait(self, name: str, timeout: float, count: int = 1) -> bool:
        """wait with ``timeout``: True when the permits were taken, False when
        it ran out."""
        try:
            self.wait(name, count, timeout=timeout)
        except Timeout:
            return False
        return True

    def value(self, name: str) -> int:
        """The number of free permits (sem_getvalue); the local semaphore's
        while no server is reachable."""
        if not proto.is_local_name(name):
            try:
                return self.get(name).value
            except _resume.Silent:
                raise  # the servers accepted and did not answer: no outage
            except Unavailable:  # Shutdown too: no server to ask
                pass
        proto.check_name(name)
        return self._local.value(name, self._local_limit(name))

    # --- inspection and management -----------------------------------------------------

    def get(self, name: str) -> SemaphoreInfo:
        """One semaphore: kind "absent" for a name that is not one; kind
        "local" for a ``$`` name (the kernel's counts on this host)."""
        proto.check_name(name)
        if proto.is_local_name(name):
            limit = self._options.limit(name)
            info = self._local.info(name, limit)
            return SemaphoreInfo(name, info.value, limit, info.held, info.waiting, "local")
        return proto.parse_get(self._ask(lambda tag: proto.name_request(tag, "GET", name), f'GET "{name}"'), name)

    def list(self, prefix: str = "") -> list[SemaphoreInfo]:
        """Every semaphore of the server whose name starts with ``prefix``."""
        if prefix:
            proto.check_server_name(prefix)
        call = self._round_trip(lambda tag: proto.list_request(tag, prefix), "LIST")
        error = proto.final_error(call, "LIST")
        if error is not None:
            raise error
        return [proto.parse_list_item(item) for item in call.items]

    def create(self, name: str, value: int, max: int | None = None, exclusive: bool = False) -> None:
        """Makes a durable semaphore with ``value`` free permits out of ``max``
        (default: value; >= 1). Without ``exclusive``, an existing created
        semaphore is left as it is (O_CREAT); with it, AlreadyExists."""
        proto.check_server_name(name)
        maximum = value if max is None else max
        if (
            not all(isinstance(n, int) and not isinstance(n, bool) for n in (value, maximum))
            or value < 0 or maximum < 1 or value > maximum or maximum > proto.MAX_COUNT
        ):
            raise InvalidArgument(f"CREATE needs 0 <= value <= max, 1 <= max <= {proto.MAX_COUNT}")
        self._ask(lambda tag: proto.create_request(tag, name, value, maximum, exclusive), f'CREATE "{name}"')

    def delete(self, name: str) -> None:
        """Deletes a created semaphore. Busy while held or waited on; NotFound."""
        proto.check_server_name(name)
        self._ask(lambda tag: proto.name_request(tag, "DELETE", name), f'DELETE "{name}"')

    def ping(self, payload: str = "") -> str:
        """Round trip to the server; returns the echoed payload."""
        proto.check_ping_payload(payload)
        reply = self._ask(lambda tag: proto.ping_request(tag, payload), "PING")
        if reply.kind != "PONG":
            raise ProtocolError(f"PING: unexpected answer {reply.kind} {reply.text}")
        return reply.text

    def server_stats(self) -> dict[str, Any]:
        """The server's STATS, parsed (fields in docs/protocol.md, "STATS fields")."""
        return proto.parse_stats(self._ask(lambda tag: proto.request(tag, "STATS"), "STATS"))

    # --- protocol 1.1: who holds, who waits, who is connected, and KICK ---------------

    def _check_v11(self, verb: str) -> None:
        counters = self._conn().counters()
        if counters.connected and counters.protocol == "1.0":
            raise ProtocolError(f"server {counters.server} speaks protocol 1.0; {verb} needs 1.1")

    def _ask_v11(self, build: Callable[[str], bytes], verb: str, what: str) -> Call:
        self._check_v11(verb)
        call = self._round_trip(build, what)
        if call.reply is not None and call.reply.kind == "ERR" and call.reply.code == "UNKNOWN_VERB":
            counters = self._conn().counters()
            server = f"server {counters.server}" if counters.server else "the server"
            raise ProtocolError(f"{server} speaks protocol {counters.protocol or '1.0'}; {verb} needs 1.1")
        error = proto.final_error(call, what)
        if error is not None:
            raise error
        return call

    def _listed_name(self, name: str, verb: str) -> None:
        proto.check_name(name)
        if proto.is_local_name(name):
            raise InvalidArgument(f'{verb} "{name}": a `$` name is host-local: the server knows nothing of it')

    def holders(self, name: str) -> list[HolderInfo]:
        """The sessions holding permits of ``name``, the oldest holder first
        (protocol 1.1). NotFound when ``name`` is no semaphore."""
        self._listed_name(name, "HOLDERS")
        call = self._ask_v11(lambda tag: proto.name_request(tag, "HOLDERS", name), "HOLDERS", f'HOLDERS "{name}"')
        return [proto.parse_holder_item(item) for item in call.items]

    def waiters(self, name: str) -> list[WaiterInfo]:
        """The queued requests of ``name``, in the order they will be granted (1.1)."""
        self._listed_name(name, "WAITERS")
        call = self._ask_v11(lambda tag: proto.name_request(tag, "WAITERS", name), "WAITERS", f'WAITERS "{name}"')
        return [proto.parse_waiter_item(item) for item in call.items]

    def sessions(self) -> list[SessionInfo]:
        """Every live session of the server, this one included, by rising id (1.1)."""
        call = self._ask_v11(lambda tag: proto.request(tag, "SESSIONS"), "SESSIONS", "SESSIONS")
        return [proto.parse_session_item(item) for item in call.items]

    def kick(self, session_id: int) -> None:
        """Ends the session ``session_id`` as if its connection had closed (1.1):
        its permits go back at once, its client sees them lost. Denied without
        the admin right; NotFound when no live session has that id."""
        if isinstance(session_id, bool) or not isinstance(session_id, int) or session_id < 1:
            raise InvalidArgument("KICK: session ids start at 1")
        self._ask_v11(lambda tag: proto.kick_request(tag, session_id), "KICK", f"KICK {session_id}")

    # --- proposed 1.2: a cluster's fences (CLUSTER FENCES, admin) -------------------------

    def cluster_raise_fences(self, by: int) -> int:
        """Raises a cluster's fences by ``by`` (1 .. 2**53) and returns the new
        last fence: every fence handed out after it, on any server, is above
        it (what ends a restore from a backup copy, docs/replication.md). On
        the leader only, once the raise is committed; as libnetsem's
        cluster_raise_fences: InvalidArgument for a ``by`` out of range
        (nothing sent) and from a single server ("not in a cluster"); Busy
        from a follower (the message names the leader) or during an
        election; Timeout when the leader lost its leadership before the
        raise committed (the outcome is unknown: a new leader may commit it;
        raising again is safe); LimitReached when the last fence would pass
        2**62; Denied without the admin right; ProtocolError from a server
        without CLUSTER. The server reads nothing more of the session until
        it answers, so the session's lease (T/2), not request_timeout,
        bounds the wait."""
        proto.check_fence_raise(by)
        what = f"CLUSTER FENCES {by}"
        call = self._round_trip(lambda tag: proto.cluster_fences_request(tag, by), what, may_wait=True)
        error = proto.cluster_error(call, what)
        if error is not None:
            raise error
        assert call.reply is not None
        return proto.parse_last_fence(call.reply, what)

    # --- 4D-style test-and-set flags on limit-1 names ------------------------------------

    def set_flag(self, name: str, wait: float = 0) -> None:
        """Sets the flag ``name`` for this process (4D ``Semaphore``); raises
        Timeout when another process holds it and ``wait`` seconds ran out
        (zero: do not wait). Setting a flag this process already set succeeds
        at once."""
        proto.check_name(name)
        deadline = _deadline(max(wait, 0.0))
        with self._flags_lock:
            while True:
                held = self._flags.get(name)
                if held is not None:
                    if not held.lost:
                        return
                    del self._flags[name]  # lost with its session: set it anew
                if name not in self._flags_being_set:
                    break
                # Another thread of this process is setting it: its outcome decides.
                if not self._flags_lock.wait(_remaining(deadline)) and _remaining(deadline) == 0:
                    raise Timeout(f'the flag "{name}" is being set')
            self._flags_being_set.add(name)
        try:
            permit = self.acquire(name, 1, timeout=_remaining(deadline))
        finally:
            with self._flags_lock:
                self._flags_being_set.discard(name)
                self._flags_lock.notify_all()
        with self._flags_lock:
            self._flags[name] = permit

    def clear_flag(self, name: str) -> None:
        """Clears a flag this process set (4D ``CLEAR SEMAPHORE``); NotHeld for
        one it did not set, whoever set it."""
        proto.check_name(name)
        with self._flags_lock:
            permit = self._flags.pop(name, None)
        if permit is None:
            raise NotHeld(f'the flag "{name}" was not set by this process')
        permit.release()

    def test_flag(self, name: str) -> bool:
        """Whether anyone holds the flag, without setting it (4D ``Test semaphore``)."""
        if not proto.is_local_name(name):
            try:
                info = self.get(name)
                return info.holders > 0 or info.value == 0
            except _resume.Silent:
                raise  # the servers accepted and did not answer: no outage
            except Unavailable:
                pass
        return self.value(name) == 0
