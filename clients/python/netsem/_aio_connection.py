"""The asyncio client's connection: one protocol v1 session at a time, served by one task.

API: ``Connection.start()`` launches the connection task, which connects to
the first reachable server of the list (each attempt, name lookup included,
bounded by ``connect_timeout``), with ``tls`` runs the TLS handshake
(``StreamWriter.start_tls``, also bounded by ``connect_timeout``; a failed one
is a refusal, Denied: netsem._tls), says HELLO, AUTH with the token when there
is one (pipelined, as libnetsem), learns the session timeout T once (LEASE,
proposed 1.2, whatever the session's rights; else STATS of a 1.0/1.1 server)
and then serves the session: it hands each answer line to the Call
whose tag it carries, pings when the line has been quiet for T/6, and ends the
session when a request stays unanswered for ``request_timeout`` or the lease
lapses. ``send()`` writes a request at once from the caller's coroutine (one
event loop: a line is written whole) and returns its Call, whose ``future``
gets the final answer; ``None`` when there is no session to send it on.

The lease is libnetsem's (docs/client.md, "The lease"; netsem._protocol.Lease
does the arithmetic): the server cannot end the session before T after the
client *sent* the last request that was answered (``lease_from``); when nothing
sent since has been answered T/2 after it, the session ends and its permits
are lost with ``stop_by`` = lease_from + 0.9 T - margin; the lapsed session's
socket stays open, silent, until then (``_linger``), so that a server that was
only frozen reads no close before it.

When the session ends (EOF, a socket error, a ``*`` line, a timeout, or
``stop()``) every pending Call gets the reason as its answer's ``failure``,
every permit registered on that session is marked lost, and the task
reconnects with exponential backoff (``reconnect_min`` to ``reconnect_max``).
While it has no session, either no server could be reached (the client is "in
fallback"), or a server answered but refused (``refused`` says why, and the
client fails its calls with that instead of falling back), or a server
accepted the connection and said nothing within connect_timeout (``silence``:
no outage, calls wait for a round that decides; the silent attempt is kept
open, ``_parked``, and the next rounds wait on it again: rule 9; a resume's
silent RESUME attempt likewise, within that resume, its pending read ending
the resume's sleep between rounds too: rule 10; a silence move's for its
next try, ``_move_kept``, a backoff later as a resume's next round
(_resume.MovePace), which an answer or EOF on it starts at once, and
which the resume takes over when the connection drops). A session is
numbered: a request tied to an old session is refused rather than sent to a
new one that never heard of it. All of this mirrors src/client/connection.*.

Timers are one ``loop.call_later`` handle re-armed from deadlines, so reading
costs no task per line. Everything here runs on the client's event loop; no
method is thread-safe (``call_soon_threadsafe`` is the way in from a thread).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from netsem import _handshake
from netsem import _protocol as proto
from netsem import _resume
from netsem import _tls
from netsem.errors import IoError, NetsemError, ProtocolError, Shutdown, Unavailable

if TYPE_CHECKING:
    from netsem._options import ClientOptions

log = logging.getLogger("netsem")

_READ_CHUNK = 65536


class LossListener(Protocol):
    """What the connection tells when a session that granted it ends (a remote permit)."""

    session: int

    def mark_lost(self, reason: NetsemError, stop_by: float | None) -> None: ...


@dataclass
class Answer:
    """The final answer to a request, or why there is none.

    ``failure`` is set (Unavailable, Shutdown) when the session ended first;
    else ``reply`` is the final line and ``items`` the ITEM lines before it.
    """

    failure: NetsemError | None = None
    reply: proto.Reply | None = None
    items: list[proto.Reply] = field(default_factory=list)


class Call:
    """One request in flight; the connection completes ``future`` exactly once."""

    __slots__ = ("tag", "session", "seq", "may_wait", "holds_line", "future", "sent_at", "readable_at", "answered",
                 "items", "line")

    def __init__(
        self, tag: str, session: int, seq: int, may_wait: bool, future: asyncio.Future[Answer], sent_at: float,
        line: bytes = b"",
    ) -> None:
        self.tag = tag
        self.line = line  # the request, to settle it after a resume
        self.session = session
        self.seq = seq  # its place in the session's send order
        self.may_wait = may_wait  # an ACQUIRE or WAIT that the server may queue
        # A CLUSTER ADD, REMOVE or FENCES: the server reads nothing of the
        # session behind it, PINGs included, until it answers it.
        self.holds_line = proto.holds_the_line(line)
        self.future = future
        self.sent_at = sent_at
        # Since when the server can read it (its request_timeout and silence
        # count from then): its send, or the answer to a CLUSTER request sent
        # before it (_resume.read_behind).
        self.readable_at = sent_at
        self.answered = False  # some line answered it (QUEUED counts)
        self.items: list[proto.Reply] = []


def printable(line: bytes) -> str:
    """At most 100 characters of a peer's line, control characters shown as '?'."""
    return proto.printable(line.decode("utf-8", errors="replace"))


def _os_error_text(error: OSError) -> str:
    # asyncio's own words ("Connect call failed (...)") hide the errno's. A
    # TLS error's errno is its kind, no errno (_tls.socket_errno).
    if code := _tls.socket_errno(error):
        return os.strerror(code)
    return error.strerror or str(error) or type(error).__name__


def _linger(transport: asyncio.BaseTransport, until: float) -> None:
    """Keeps the transport's connection open, unread and silent, until
    ``until`` (``time.monotonic()``), whatever becomes of the transport: a
    duplicate of its socket, closed by a timer thread of its own (the event
    loop may be closed before then)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        kept = sock.dup()
    except OSError:
        return  # no descriptor left: it closes with the transport
    timer = threading.Timer(max(0.0, until - time.monotonic()), kept.close)
    timer.daemon = True
    timer.start()


class Connection:
    """The one connection an aio Client shares between all its tasks."""

    def __init__(
        self, options: ClientOptions, endpoints: list[tuple[str, int]], label: str, tls: ssl.SSLContext | None = None
    ) -> None:
        self._options = options
        self._tls = tls  # read-only: the context of every TLS session
        self._endpoints = endpoints
        self._label = label
        self._tags = proto.Tags()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._first_round = asyncio.Event()

        # What the client reads (connected, refused, counters).
        self.connected = False
        self.session = 0  # the current or last session's number
        self.refused: NetsemError | None = None
        # The last round was silent: no server gave a session or refused, and
        # some accepted the connection and said nothing; calls wait for a
        # round that decides (await_session).
        self.silence: _resume.Silence | None = None
        self.in_fallback = False
        self.last_loss: NetsemError = Unavailable("not connected")
        self.last_stop_by: float | None = None
        self.server = ""
        self.connects = 0
        self.losses = 0
        self.fallback_entries = 0
        self.fallback_exits = 0
        # Sessions carried on over a new connection after theirs broke or fell
        # silent (RESUME, rules 5 and 11 included): not counted in connects or
        # losses (libnetsem's ClientStats::resumes).
        self.resumes = 0
        self.unreachable = ""
        self.protocol = ""  # "1.0" or "1.1" while connected
        self.session_id = 0
        # Rule 9 (await_session): rounds of connection attempts that ended with
        # no session, their number when the last session ended, and who waits.
        self._empty_rounds = 0
        self._empty_rounds_at_end = 0
        self._watchers: list[asyncio.Future[None]] = []

        # The session's own state.
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = proto.LineBuffer()
        self._pending: dict[str, Call] = {}
        # Requests in send order, for request_timeout, until answered or known
        # read. The server reads a session's lines in order, so an answer to
        # one shows that it read every one sent before it (``_read_upto``). A
        # request it may queue (ACQUIRE, WAIT), which OPTION queued off leaves
        # unanswered until its grant, is done with once known read: a wait
        # longer than request_timeout is no dead server. Any other request is
        # answered at once, and stays until it is.
        self._unread: collections.deque[Call] = collections.deque()
        self._seq = 0
        self._read_upto = 0
        self._permits: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lease: proto.Lease | None = None
        self._last_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._ended: NetsemError | None = None  # set by the timer: why it cut the session
        self._fell_silent = False
        # Rule 8: a server found silent stays silent when its connects time out.
        self._sticky = _resume.StickySilence()
        # Rule 9: per server (as configured), its silent attempt kept open
        # across rounds and waited on again.
        self._parked: dict[str, _Kept] = {}
        # Resuming (docs/client.md, "Sessions that outlive their connection"):
        # the session's id and secret (RESUMABLE), the leader's address
        # (LEADER), what the session holds by its answers, whether the
        # connection ended without a word (EOF, reset, * ERR SHUTDOWN), and
        # the requests sent while a resume runs (written once it succeeded).
        self._resumable: _resume.Resumable | None = None
        self._leader: tuple[str, int] | None = None
        self._held = _resume.HeldCounts()
        self._may_resume = False
        self._outbox: list[Call] = []
        self._resumed_mine = _resume.Mine()
        self._resumed_extra: list[bytes] = []
        self._late: dict[str, str] = {}  # handshake requests answered later (RESUMABLE)
        self._lease_told = False
        # Moving on silence (rule 5): the server this connection is to, the
        # connection a move resumed the session on, the move's task, when to
        # try a move next.
        self._current: tuple[str, int] | None = None
        self._moved: tuple[asyncio.StreamReader, asyncio.StreamWriter, proto.LineBuffer] | None = None
        self._move_task: asyncio.Task[None] | None = None
        self._move_pace = _resume.MovePace(options.reconnect_min, options.reconnect_max)
        # Rule 10 on the move too (as _resume's ``kept``): each candidate's
        # silent RESUME attempt of this stall, waited on again by the move's
        # next pass (a backoff later, or at once when one answers or closes:
        # _move_kept_woke) instead of a new connection; the resume's own
        # when the connection drops (_resume), else closed, without QUIT,
        # once the stall ends or the session moves or ends (_close_move_kept).
        self._move_kept: dict[str, _Kept] = {}

    # --- lifecycle ---

    def start(self) -> None:
        """Launches the connection task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="netsem.aio connection")

    async def wait_first_round(self, timeout: float) -> None:
        """Waits until the first round of connection attempts succeeded or failed, at most ``timeout``."""
        try:
            await asyncio.wait_for(self._first_round.wait(), timeout)
        except TimeoutError:
            pass

    async def stop(self) -> None:
        """Ends the session (its permits are lost, its calls fail) and the task. Idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Our own cancel of the task; a cancel of the caller's task
            # propagates once the connection is down.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    @property
    def stopping(self) -> bool:
        return self._stopping

    # --- requests ---

    def send(self, build: Callable[[str], bytes], session: int = 0, *, may_wait: bool = False) -> Call | None:
        """Writes the line ``build(tag)`` on the current session, or on ``session``
        only while it is still the current one; None when there is no such session.
        ``may_wait``: a request the server may queue (ACQUIRE or WAIT with a timeout)."""
        if not self.connected or (session and session != self.session):
            return None
        assert self._loop is not None
        tag = self._tags.next()
        line = build(tag)
        now = time.monotonic()
        if self._writer is None:
            # A resume runs: sent once the session is back (or failed with it).
            call = Call(tag, self.session, 0, may_wait, self._loop.create_future(), now, line)
            self._pending[tag] = call
            self._outbox.append(call)
            return call
        self._seq += 1
        call = Call(tag, self.session, self._seq, may_wait, self._loop.create_future(), now, line)
        self._pending[tag] = call
        self._unread.append(call)
        self._writer.write(line)
        self._last_sent = now
        # The timer must look at this request within half request_timeout (a
        # ping behind it, or its expiry); it is further away only while the
        # session was idle with pings rarer than that.
        due = now + self._options.request_timeout / 2
        if self._timer is not None and self._timer_at > due:
            self._arm(due)
        return call

    def between(self) -> _resume.Unsent:
        """After send() found no session: the ``after`` to pass to
        await_session (``_resume.after_of``: between two sessions, or after a
        silent round), None when the caller decides now (also once closing):
        it falls back as today (review19 item 8), or raises the last round's
        refusal, read with that decision."""
        after = None
        if not (self._stopping or self._task is None or self._task.done()):
            after = _resume.after_of(self.connected, self.session, self.silence,
                                     self._empty_rounds > self._empty_rounds_at_end)
        return _resume.Unsent(after, self.refused if after is None else None)

    async def await_session(self, after: int, deadline: float | None, cancelled: Callable[[], bool],
                            silent_until: float | None = None) -> _resume.NextSession:
        """Rule 9: waits, after session ``after`` ended, for the next round of
        connection attempts that decides: the new session's number once one
        began, 0 when a round ended with no session (no server reachable, or
        a refusal: with it) or the task ended, CLOSING when the client
        closes, -1 when ``deadline`` passed or ``cancelled()`` (wake it with
        ``wake_waiters``) first. A silent round decides nothing: the wait
        goes on across such rounds, until ``silent_until`` at most (then
        SILENT). With the answer, the last round's Silence when it was
        silent."""
        assert self._loop is not None
        while True:
            if self.connected and self.session > after:
                return _resume.NextSession(self.session)
            if self._stopping and self.refused is None:
                return _resume.NextSession(self.CLOSING)
            silence = None if self.connected else self.silence
            if self._stopping or self._task is None or self._task.done() or (
                    silence is None and not self.connected and self._empty_rounds > self._empty_rounds_at_end):
                return _resume.NextSession(0, refusal=self.refused)
            left = _resume.wait_bound(silence, cancelled(), time.monotonic(), deadline, silent_until)
            if isinstance(left, _resume.NextSession):
                return left
            watcher: asyncio.Future[None] = self._loop.create_future()
            self._watchers.append(watcher)
            try:
                await asyncio.wait([watcher], timeout=left)
            finally:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

    CLOSING = _resume.NextSession.CLOSING  # await_session: the client closes
    SILENT = _resume.NextSession.SILENT  # await_session: request_timeout across silent rounds

    @property
    def request_timeout(self) -> float:
        return self._options.request_timeout

    def wake_waiters(self) -> None:
        """Wakes every await_session (the session began or ended, a round
        ended, a cancel)."""
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)

    def register_permit(self, permit: LossListener) -> None:
        """Remembers a remote permit of its session, to mark it lost when that ends;
        a permit whose session has already ended is marked lost at once."""
        if self.connected and permit.session == self.session:
            self._permits.add(permit)
        else:
            permit.mark_lost(self.last_loss, self.last_stop_by)

    def unregister_permit(self, permit: LossListener) -> None:
        self._permits.discard(permit)

    # --- the task ---

    async def _run(self) -> None:
        backoff = self._options.reconnect_min
        try:
            while not self._stopping:
                served = False
                lived = 0.0  # how long the round's session lasted
                failures: list[str] = []
                refusal: NetsemError | None = None  # the round's first: a server answered no
                # The round's first attempt that failed for want of this
                # process's own descriptors or memory: no word on the servers.
                local: IoError | None = None
                silent: list[str] = []  # the servers that accepted the connection and said nothing
                for host, port in self._endpoints:
                    server = proto.endpoint_text(host, port)
                    opened = await self._attempt(host, port, server, park=True)
                    if isinstance(opened, _Failure):
                        outcome = ("silent" if opened.silent else "timeout" if opened.timed_out
                                   else "local" if opened.local is not None else "other")
                        now = time.monotonic()
                        still = self._sticky.failed(server, opened.why, outcome, now, self._session_timeout())
                        if opened.kept is not None:
                            # Rule 9: kept open and waited on by the next
                            # rounds, until rule 8's bound ends.
                            opened.kept.again = True
                            _handshake.keep_alive(opened.kept.writer.get_extra_info("socket"),
                                                  self._options.connect_timeout, server)
                            self._parked[server] = opened.kept
                        failures.append(f"{server}: {still or opened.why}")
                        if refusal is None:
                            refusal = opened.refusal
                        if local is None:
                            local = opened.local
                        if opened.silent or still:
                            silent.append(server)
                        continue
                    self._sticky.session()
                    self._close_parked()
                    reader, writer, hello = opened
                    followed = await self._follow_leader(writer, host, port)
                    if followed is not None:
                        (reader, writer, hello), (host, port) = followed
                        server = proto.endpoint_text(host, port)
                    self._session_began(server, writer, hello)
                    began_at = time.monotonic()
                    self._current = (host, port)
                    ended: tuple[NetsemError, float | None] | None = None
                    try:
                        reason = await self._serve(reader)
                        while not self._stopping:
                            # The connection is done with (what is sent meanwhile
                            # waits in _outbox); so is a move's try under way,
                            # its attempt kept (_try_resume).
                            self._close_writer()
                            await self._end_move()
                            if self._moved is not None:
                                # The session moved off a silent server: its
                                # connection is closed without QUIT, and so are
                                # the move's other kept attempts, as a resume's.
                                self._close_move_kept()
                                reader, self._writer, self._buffer = self._moved
                                self._moved = None
                                reason = await self._serve(reader, resumed=self._resumed_mine, moved=True)
                                continue
                            if not (self._may_resume and self._resumable is not None and self._lease is not None
                                    and self._lease.session_timeout > 0):
                                break
                            # The connection ended without a word: the session
                            # (its permits, its queued requests) may be resumed,
                            # on the move's kept attempts too (_resume takes them).
                            resumed = await self._resume(reason)
                            if not isinstance(resumed, asyncio.StreamReader):
                                ended = resumed
                                break
                            reason = await self._serve(resumed, resumed=self._resumed_mine)
                        # Not resumed (lapsed, KICKed, closing): a move's kept attempts close.
                        self._close_move_kept()
                    except asyncio.CancelledError:
                        self._stop_move()
                        self._quit()
                        self._close_writer()
                        self._session_ended(Unavailable("the client closed the connection"), None)
                        raise
                    self._close_writer()
                    # A server that closed or refused the session has let go of
                    # its permits; one that fell silent holds them until the
                    # lease's end; one that said SHUTDOWN grants nothing more, and
                    # its next start nothing before the lease's end either.
                    assert self._lease is not None
                    lease = self._fell_silent or isinstance(reason, Shutdown)
                    if ended is not None:
                        self._session_ended(*ended)
                    else:
                        self._session_ended(reason, self._lease.stop_by() if lease else None)
                    served = True
                    lived = time.monotonic() - began_at
                    break
                # Back to reconnect_min only after a session that lasted: one
                # that ends at once (a server that drops every request, which
                # rule 9 sends again) is retried with the growing backoff.
                long_lived = served and lived >= self._options.reconnect_max
                if long_lived:
                    backoff = self._options.reconnect_min
                if not served:
                    self.unreachable = "; ".join(failures)
                    was_local = isinstance(self.refused, IoError)  # the last round said it already
                    was_silent = self.silence is not None
                    # A refusal is an answer: no fallback, whatever the others did.
                    self.refused = refusal
                    # Precedence: refusal > local failure > silent > unreachable.
                    self.silence = (_resume.Silence(tuple(silent), self._options.connect_timeout)
                                    if silent and refusal is None and local is None else None)
                    if refusal is None and local is not None:
                        # Nor is a round this process could not make for want of
                        # its own descriptors or memory: the servers may be up
                        # and holding; calls fail with that until one gets through.
                        self.refused = IoError(f"{local}; not an outage, so no fallback: the client tries the "
                                               "servers again")
                        log.log(logging.DEBUG if was_local else logging.WARNING,
                                "%s; no fallback, the client tries again", local)
                    elif self.silence is not None:
                        # Nor a server that accepted the connection and said
                        # nothing: it may be holding permits; calls wait.
                        log.log(logging.DEBUG if was_silent else logging.WARNING, "%s", self.silence.warning())
                    elif refusal is None and not self.in_fallback:
                        # Only a round that reached no server enters fallback.
                        self.in_fallback = True
                        self.fallback_entries += 1
                        log.warning("%s", _resume.entering_fallback(self.unreachable))
                    self._empty_rounds += 1
                    self.wake_waiters()
                self._first_round.set()
                await self._sleep(backoff)
                if not long_lived:
                    backoff = min(backoff * 2, self._options.reconnect_max)
        except Exception as error:  # a bug here must not leave callers waiting for ever
            self._failed(error)
        finally:
            self._close_parked()
            self._stop_move()
            self._first_round.set()
            self.wake_waiters()

    def _failed(self, error: Exception) -> None:
        """The task failed (a bug): every pending and later call fails with a
        ProtocolError, which is no outage (no fallback), as in the blocking client."""
        log.error("the netsem.aio connection task failed", exc_info=error)
        failure = ProtocolError(f"the client's connection failed: {type(error).__name__}: {error}")
        self.refused = failure
        self._stopping = True  # nothing more is sent, and no fallback is entered
        self._close_writer()
        if self.connected:
            self._session_ended(failure, None)

    async def _attempt(self, host: str, port: int, server: str, park: bool = False) -> _Opened | _Failure:
        """A connection and a handshake with one server, each bounded by
        connect_timeout. ``park`` (a round's attempt, rule 9): the server's
        silent attempt of an earlier round is waited on again instead of a
        new connection (until rule 8's bound), and a silent one is left in
        the failure (``kept``) for the round to keep."""
        kept = self._parked.pop(server, None) if park else None
        if park and self._sticky.lapsed(server, time.monotonic(), self._session_timeout()) and kept is not None:
            log.debug("server %s: closing the connection kept open since %d ms ago: silent for the session "
                      "timeout", server, round((time.monotonic() - kept.parked.connected_at) * 1000))
            kept.close(self._tags)
            kept = None
        if kept is None:
            connect_timeout = self._options.connect_timeout
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=proto.MAX_LINE * 4), connect_timeout
                )
            except TimeoutError:
                why = f"no connection within {round(connect_timeout * 1000)} ms"
                log.debug("connect to %s failed: %s", server, why)
                return _Failure(why, timed_out=True)
            except OSError as error:
                # asyncio tries every address and raises the first one's error
                # only when all said the same (an EADDRNOTAVAIL, immediate, names
                # no address): so EADDRNOTAVAIL is this host's shortage only when
                # every address gave it, as in netsem.client and libnetsem.
                why = _os_error_text(error)
                if isinstance(error, socket.gaierror):
                    why = f"cannot resolve: {why}"
                log.debug("connect to %s failed: %s", server, why)
                # No reply from the host (EHOSTUNREACH: its ARP failed, or a
                # router's word; ENETUNREACH): as a connect timeout for rule 8.
                return _local_failure(server, error, "socket" if error.errno in (errno.EMFILE, errno.ENFILE) else
                                      "connect") or _Failure(why, timed_out=error.errno in _handshake.NO_REPLY)
            kept = _Kept(reader, writer, _handshake.Parked(time.monotonic()))
        try:
            if self._tls is not None and kept.parked.handshake is None:
                failure = await self._tls_handshake(kept.writer, host, server, kept)
                if failure is not None:
                    return self._keep_or_close(kept, failure, park)
            hello = await self._handshake(kept, server)
        except BaseException:  # cancelled (the client closes): nothing kept
            kept.close()
            raise
        if isinstance(hello, _Failure):
            return self._keep_or_close(kept, hello, park)
        if kept.again:  # a session on a kept attempt's socket has a fresh one's options
            _handshake.keep_alive_off(kept.writer.get_extra_info("socket"), server)
        return kept.reader, kept.writer, hello

    @staticmethod
    def _keep_or_close(kept: _Kept, failure: _Failure, park: bool) -> _Failure:
        if park and failure.silent:
            failure.kept = kept
        else:
            kept.close()
        return failure

    def _session_timeout(self) -> float:
        return self._lease.session_timeout if self._lease is not None else 0.0

    def _close_parked(self) -> None:
        """Closes every silent attempt kept open (rule 9), with QUIT (rule 9c,
        _Kept.close): a session began, or the client stops."""
        parked, self._parked = self._parked, {}
        for kept in parked.values():
            kept.close(self._tags)

    async def _sleep(self, seconds: float, kept: dict[str, _Kept] | None = None) -> None:
        """The backoff between rounds, ended early when a kept silent attempt's
        pending read (or TLS handshake) completes: an answer or EOF, which
        the next round reads at once (rule 9); ``kept``: a resume's RESUME
        attempts (rule 10), between its rounds, as libnetsem's sleep."""
        attempts = [*self._parked.values(), *(kept or {}).values()]
        pending = [attempt.pending for attempt in attempts if attempt.pending is not None]
        if pending:
            await asyncio.wait(pending, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(seconds)

    async def _tls_handshake(self, writer: asyncio.StreamWriter, host: str, server: str,
                             kept: _Kept | None = None) -> _Failure | None:
        """TLS on the connected stream, bounded by connect_timeout; None once
        it runs, else why not (a refusal when the server said no: a
        certificate refused either way, an alert, no TLS there). With
        ``kept`` (a round's attempt, rule 9) the handshake is a task that
        stays pending in ``kept`` when the server is silent, and goes on in
        the next round; asyncio's own bound on it is then the kept attempt's
        (closed at rule 8's bound at the latest), not connect_timeout."""
        assert self._tls is not None
        connect_timeout = self._options.connect_timeout
        name = _tls.server_name(self._options, host)
        try:
            if kept is None:
                await asyncio.wait_for(
                    writer.start_tls(self._tls, server_hostname=name, ssl_handshake_timeout=connect_timeout),
                    connect_timeout,
                )
            else:
                task = kept.pending = kept.pending or asyncio.ensure_future(
                    writer.start_tls(self._tls, server_hostname=name, ssl_handshake_timeout=_KEPT_TLS_TIMEOUT))
                if not (await asyncio.wait({task}, timeout=connect_timeout))[0]:
                    return self._silent(server, (
                        _handshake.still_silent(("", "the TLS handshake"), kept.parked.connected_at, time.monotonic())
                        if kept.again else _resume.silent_attempt(("", "the TLS handshake"), connect_timeout)))
                kept.pending = None
                task.result()
        except (OSError, ValueError) as error:
            if isinstance(error, TimeoutError) and not _tls.socket_errno(error):
                # wait_for's bound: connected, open, no end of the handshake.
                # A socket's ETIMEDOUT is a TimeoutError too (a kept attempt's
                # keepalive ran out): the connection ended, below. Taken for
                # silence, the dead socket was kept and waited on for ever.
                return self._silent(server, _resume.silent_attempt(("", "the TLS handshake"), connect_timeout))
            if _tls.is_refusal(error):
                return self._refused(_tls.refusal(server, error))
            if isinstance(error, OSError) and (failure := _local_failure(server, error, "TLS handshake")):
                return failure
            why = f"TLS handshake: {_tls.broken(error)}"
            log.debug("server %s: %s", server, why)
            return _Failure(why, timed_out=_handshake.timed_out(error, kept is not None and kept.again)
                            if isinstance(error, OSError) else False)
        return None

    def _refused(self, error: NetsemError) -> _Failure:
        """The server answered, and the answer is no."""
        log.log(logging.DEBUG if self._quiet() else logging.WARNING, "%s", error.message)
        return _Failure(error.message, error)

    def _silent(self, server: str, why: str) -> _Failure:
        """Connected, and no answer within connect_timeout, the connection
        still open: silent, no outage (the round decides and says so)."""
        log.debug("server %s: %s", server, why)
        return _Failure(why, silent=True)

    def _quiet(self) -> bool:
        # Once in fallback or refused, every retry says the same: debug only.
        return self.in_fallback or self.refused is not None

    async def _handshake(self, kept: _Kept, server: str) -> proto.Hello | _Failure:
        """HELLO, AUTH with the token, LEASE, STATS and ``OPTION queued off``
        (not waited for), pipelined as libnetsem sends them
        (netsem._handshake), on ``kept``'s connection: the server's version
        and this session's id, or why not (a refusal when the server answered
        no). A silent attempt kept from an earlier round (rule 9) goes on with
        its handshake's state and its pending read; a silent one leaves them
        in ``kept``."""
        shake = kept.parked.handshake
        if shake is None:
            shake = kept.parked.handshake = _handshake.Handshake(self._tags, self._label, self._options.token,
                                                                 self._options.queue_positions)
            # The server reads HELLO after this: once it answers, it cannot
            # end the session before T after this.
            shake.lease_from = time.monotonic()
        self._leader = None
        deadline = time.monotonic() + self._options.connect_timeout

        def refuse(why: str) -> _Failure:  # no answer to go by: as good as unreachable
            log.log(logging.DEBUG if self._quiet() else logging.WARNING, "server %s refused the session: %s", server, why)
            return _Failure(f"refused the session: {why}")

        def closed(detail: str = "") -> _Failure:  # no answer: no refusal (unreachable, as a closed port)
            why = _handshake.closed_early(shake.stage(), detail)
            log.log(logging.DEBUG if self._quiet() else logging.WARNING, "server %s %s", server, why)
            return _Failure(why)

        try:
            if shake.out:
                kept.writer.write(bytes(shake.out))  # the transport buffers what the socket does not take
                shake.out.clear()
            while not shake.done:
                now = time.monotonic()
                left = deadline - now
                # The read stays pending across rounds while the attempt is
                # kept: nothing read is lost, and the sleep between rounds
                # ends when it completes.
                read = kept.pending = kept.pending or asyncio.ensure_future(kept.reader.read(_READ_CHUNK))
                if left <= 0 or not (await asyncio.wait({read}, timeout=left))[0]:
                    return self._silent(server, (
                        _handshake.still_silent(shake.stage(), kept.parked.connected_at, time.monotonic())
                        if kept.again else _resume.silent_attempt(shake.stage(), self._options.connect_timeout)))
                kept.pending = None
                data = read.result()
                if not data:
                    return closed()
                verdict = shake.feed(data, server)
                if isinstance(verdict, str):
                    return refuse(verdict)
                if verdict is not None:
                    return self._refused(verdict)
        except OSError as error:
            # TLS 1.3 tells of a client certificate refused only now, by an alert.
            if _tls.is_refusal(error):
                return self._refused(_tls.refusal(server, error))
            if _handshake.no_reply(error):
                # The connection died with no word from the server: its host
                # replied to nothing more; the server closed nothing.
                why = _handshake.ended_early(shake.stage(), error)
                log.log(logging.DEBUG if self._quiet() else logging.WARNING, "server %s: %s", server, why)
                failure = _Failure(why)
            else:
                failure = closed(f"read failed: {_os_error_text(error)}")
            failure.timed_out = _handshake.timed_out(error, kept.again)
            return failure
        self._buffer = shake.buffer
        # Pings at a sixth of the session timeout keep the session alive;
        # without one, they still tell a dead server from an idle one.
        self._lease = shake.lease(self._options.request_timeout, kept=kept.again)
        self._leader = shake.leader
        self._resumable = shake.session_resumable()
        self._lease_told = bool(shake.lease_timeout)
        self._late = shake.late()
        assert shake.hello is not None
        return shake.hello

    def _session_began(self, server: str, writer: asyncio.StreamWriter, hello: proto.Hello) -> None:
        self._writer = writer
        self.connected = True
        self.session += 1
        self.server = server
        self.protocol = hello.version
        self.session_id = hello.session_id
        self.unreachable = ""
        self.refused = None
        self.silence = None
        self.connects += 1
        if self.in_fallback:
            self.in_fallback = False
            self.fallback_exits += 1
            log.warning("connected to %s: leaving fallback, names go to the server again", server)
        else:
            log.info("connected to %s", server)
        self._first_round.set()
        self.wake_waiters()

    async def _serve(self, reader: asyncio.StreamReader, resumed: _resume.Mine | None = None,
                     moved: bool = False) -> NetsemError:
        """Reads and dispatches answers until the session ends; returns why it
        ended. ``resumed``: the session was resumed on this connection and
        MINE answered that: what was sent before and not answered is settled
        first; ``moved``: by a move off a silent server, not after the
        connection broke."""
        # A resumed session's RESUME counts as its last ping (Lease.resumed).
        assert self._lease is not None
        self._last_sent = self._lease.lease_from if resumed is not None else time.monotonic()
        self._fell_silent = self._may_resume = False
        self._ended = None
        if resumed is None:
            self._held.clear()
            assert self._loop is not None
            for tag in self._late:  # answered while served; nobody waits for it
                self._pending[tag] = Call(tag, self.session, 0, False, self._loop.create_future(), time.monotonic())
        else:
            ended = self._settle(resumed, moved)
            if ended is not None:
                return ended
        self._on_timer()
        try:
            while True:
                try:
                    data = await reader.read(_READ_CHUNK)
                except OSError as error:
                    if self._ended is None:
                        self._may_resume = True
                    return self._ended or Unavailable(f"read failed: {_os_error_text(error)}")
                if self._ended is not None:
                    return self._ended
                if not data:
                    self._may_resume = True
                    return Unavailable("the server closed the connection")
                try:
                    lines = self._buffer.feed(data)
                except ProtocolError:
                    return _resume.Broken("the server sent an over-long or binary line")
                for line in lines:
                    ended = self._dispatch(line)
                    if ended is not None:
                        if isinstance(ended, (_resume.Kicked, _resume.Moved)) and self._move_task is not None:
                            # A move is under way (rule 5): the server that took
                            # the session kicks this connection before the
                            # RESUME's answers reach us. The move decides.
                            await asyncio.wait([self._move_task])
                            if self._ended is not None:  # moved, kicked, or the lease lapsed meanwhile
                                self._may_resume = False
                                return self._ended
                        return ended
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_timer(self) -> None:
        """Pings, request_timeout and the lease; re-arms itself, or cuts the session."""
        self._timer = None
        if self._ended is not None:
            # The read loop ends (a move took the session, with a lease of its
            # own): the old loop must not touch the new lease at all.
            return
        lease = self._lease
        assert lease is not None
        now = time.monotonic()
        unread = self._unread
        while unread and (unread[0].answered or (unread[0].may_wait and unread[0].seq <= self._read_upto)):
            unread.popleft()
        # Only the pings behind a queued request tell a long wait from a silent
        # server, so while one is unanswered they go at least every half
        # request_timeout (Lease.ping_at; libnetsem does the same).
        # Behind an unanswered CLUSTER request nothing is read: the lease
        # bounds it instead (_resume.expiry_since).
        oldest = _resume.expiry_since(unread, lease.session_timeout)
        if now >= lease.ping_at(self._last_sent, oldest):
            self._send_ping()
            oldest = _resume.expiry_since(unread, lease.session_timeout)
        # A request unanswered for request_timeout, or half the lease gone with
        # no answer: the server may be unreachable while it holds our permits;
        # the other half is for stopping the work.
        why = lease.check(now, oldest)
        if why is not None:
            self._cut(Unavailable(why))
            return
        quiet = _resume.quiet_since(unread)  # rule 5's stall: not a queued request
        if self._move_task is None and not lease.stalled(quiet, now):
            self._move_pace.calm()  # no stall (or it ended): the next move starts afresh
            if self._move_kept:
                self._close_move_kept()  # the stall ended: no move now
        move_at = self._move_at(quiet)
        if move_at is not None and now >= move_at:
            assert self._loop is not None
            self._move_task = self._loop.create_task(self._move())
            move_at = None
        self._arm(min([lease.wake_at(self._last_sent, oldest)] + ([move_at] if move_at is not None else [])))

    def _arm(self, at: float) -> None:
        """Runs _on_timer at ``at`` (time.monotonic(), as the loop's clock)."""
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_later(max(0.001, at - time.monotonic()), self._on_timer)

    def _cut(self, reason: NetsemError) -> None:
        # The server fell silent: end the read loop (it sees EOF) with this reason.
        self._fell_silent = True
        self._ended = reason
        if self._writer is not None:
            assert self._lease is not None
            if self._lease.session_timeout > 0:
                # The server may only be frozen or cut off for a moment: if it
                # read our close when it comes back, it would hand the permits
                # on at once, while the work under them may run until stop_by.
                # A duplicate of the socket keeps it open (and silent) until
                # then, past the transport and the loop; the client meanwhile
                # reconnects on a new one.
                _linger(self._writer.transport, self._lease.stop_by())
            self._writer.transport.abort()

    def _send_ping(self) -> None:
        assert self._loop is not None and self._writer is not None
        tag = self._tags.next()
        now = time.monotonic()
        self._seq += 1
        line = proto.ping_request(tag)
        call = Call(tag, self.session, self._seq, False, self._loop.create_future(), now, line)
        self._pending[tag] = call
        self._unread.append(call)
        self._writer.write(line)
        self._last_sent = now

    def _dispatch(self, line: bytes) -> NetsemError | None:
        """Handles one answer line; an error ends the session."""
        try:
            reply = proto.parse_line(line)
        except ProtocolError:
            return _resume.Broken(f"not a netsem answer: {printable(line)}")
        if reply.tag == "*":
            if reply.kind != "ERR":
                return None
            if reply.code == "SHUTDOWN":
                self._may_resume = True
                return Shutdown("the server is shutting down")
            if reply.code == "KICKED":
                # An administrator's KICK: the server has let go of the permits;
                # a waiting ACQUIRE fails (not sent again: rule 9). But
                # "resumed on another connection" (rule 11) is a RESUME of
                # ours that a server read late: the session lives on, and is
                # resumed as after a dropped connection (closed, no QUIT).
                ended = _resume.kicked(reply.message)
                self._may_resume = isinstance(ended, _resume.Moved)
                return ended
            return Unavailable(f"the server ended the session: {proto.printable(reply.text)}")
        call = self._pending.get(reply.tag)
        if call is None:
            log.debug("answer to no pending request: %s", printable(line))
            return None
        # The server read it, and every request sent before it, so it cannot
        # end the session before T after that.
        call.answered = True
        self._read_upto = max(self._read_upto, call.seq)
        assert self._lease is not None
        self._lease.answered(call.sent_at)
        _resume.read_behind(self._unread, call, time.monotonic())
        if reply.kind == "QUEUED":
            if self._options.queue_positions:
                log.info("request %s is queued at position %s", call.tag, proto.printable(reply.text))
            return None
        if reply.kind == "ITEM":
            call.items.append(reply)
            return None
        del self._pending[reply.tag]
        if self._late.pop(reply.tag, None) is not None:
            self._resumable = _resume.parse_resumable(reply) if self._lease_told else None
            return None
        self._held.answered(call.line, reply)
        if not call.future.done():
            call.future.set_result(Answer(reply=reply, items=call.items))
        return None

    def _quit(self) -> None:
        """QUIT, written with what is buffered, before the connection closes:
        the session ends at once (a resumable one would otherwise wait for its
        timeout)."""
        if self._writer is None or self._resumable is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.write(proto.request(self._tags.next(), "QUIT"))
            writer.transport.close()  # flushes what the socket takes, unlike abort
        except Exception:
            writer.transport.abort()

    async def _resume(self, reason: NetsemError) -> asyncio.StreamReader | tuple[NetsemError, float | None]:
        """RESUME on the candidates (the leader, then the servers in order)
        until one takes the session or the lease lapses: the new reader (MINE
        in _resumed_mine), or the loss (reason, stop_by)."""
        assert self._resumable is not None and self._lease is not None
        began = time.monotonic()
        deadline = self._lease.half_at() or began
        session_id, old_server = self.session_id, self.server
        log.info("session %d: the connection to %s ended (%s); resuming it", session_id, old_server, reason.message)
        # Rule 10: each candidate's silent RESUME attempt, kept open for its
        # next attempt of this resume (closed when the resume ends, below);
        # from the start those a move off the silent server kept (a RESUME
        # of this session sent on each: waited on, not abandoned to be read
        # late, rule 11, as libnetsem's move is one resume).
        kept, self._move_kept = self._move_kept, {}
        try:
            return await self._resume_on(reason, session_id, began, deadline, kept)
        finally:
            # Resumed on one candidate, lapsed, or the client closes: every
            # other RESUME kept open is closed, without QUIT, as today's
            # abandoned attempts are. A candidate that read its RESUME before
            # the close may still take the session from the one it resumed
            # on; that cannot be known here, and is today's risk with every
            # abandoned RESUME too: no new one. After a lapse the server
            # keeps such a session until T after the RESUME it read, later
            # than the loss's stop_by: nothing is granted before the work
            # under the permits has stopped.
            for attempt in kept.values():
                attempt.close()

    async def _resume_on(self, reason: NetsemError, session_id: int, began: float, deadline: float,
                         kept: dict[str, _Kept]) -> asyncio.StreamReader | tuple[NetsemError, float | None]:
        """_resume's rounds over the candidates, with ``kept``."""
        assert self._lease is not None
        candidates = self._resume_candidates()
        backoff = self._options.reconnect_min
        failures: list[str] = []
        while not self._stopping and time.monotonic() < deadline:
            for host, port in candidates:
                server = proto.endpoint_text(host, port)
                outcome: Any = None
                while not self._stopping and time.monotonic() < deadline:
                    outcome = await self._try_resume(host, port, server, deadline, kept)
                    if outcome != "busy":
                        break
                    await self._sleep(min(0.05, max(0.0, deadline - time.monotonic())), kept)
                else:
                    break
                if isinstance(outcome, tuple):
                    reader, self._writer, self._buffer = outcome
                    outcome = reader
                    self._current = (host, port)
                    self.server = server
                    self.resumes += 1
                    log.info("resumed session %d on %s after %d ms, %d permits kept", session_id, server,
                             round((time.monotonic() - began) * 1000), self._resumed_mine.permits())
                    return outcome
                if isinstance(outcome, str) and outcome.startswith("kicked:"):
                    # An administrator's KICK, read among RESUME's first answers:
                    # the session is gone at every server (no other is asked),
                    # its permits with it, and a waiting ACQUIRE fails (rule 9).
                    log.warning("session %d was ended by KICK on %s: %s", session_id, server, outcome[7:])
                    return _resume.ended_by_kick(outcome), None
                if outcome == "moved":
                    # Another RESUME of ours read after this one took it: an
                    # attempt of this resume kept open (rule 10), which answers
                    # when waited on next, or one given up on earlier and read
                    # late (rule 11; only this client holds the secret). The
                    # resume goes on, within the lease.
                    failures.append(f"{server}: the session was resumed on another connection")
                    continue
                if isinstance(outcome, str) and outcome.startswith("gone:"):
                    why = outcome[5:]
                    log.warning("session %d could not be resumed on %s: %s", session_id, server, why)
                    # The server has let go of the permits; after a SHUTDOWN
                    # its next start grants nothing before the lease's end.
                    # A loss after SHUTDOWN keeps its reason.
                    stop_by = self._lease.stop_by() if isinstance(reason, Shutdown) else None
                    kind = Shutdown if isinstance(reason, Shutdown) else Unavailable
                    return kind(f"the session ended after its connection did ({reason.message}): {why}"), stop_by
                failures.append(f"{server}: {outcome.why if isinstance(outcome, _Failure) else 'no answer'}")
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping:
                break
            # A kept attempt that becomes readable ends the sleep (rule 10, as rule 9).
            await self._sleep(min(backoff, left), kept)
            backoff = min(backoff * 2, self._options.reconnect_max)
        log.warning("session %d could not be resumed within its lease: %s", session_id,
                    "; ".join(failures[-len(candidates):]) or "no server answered")
        return (
            type(reason)(f"{reason.message}; no server resumed the session within half its session timeout of "
                         f"{round(self._lease.session_timeout * 1000)} ms: the lease on the session's permits ran out"),
            self._lease.stop_by(),
        )

    def _resume_candidates(self) -> list[tuple[str, int]]:
        """Where to RESUME: the last known leader, then the servers in order."""
        leader = self._leader
        if leader is not None and self._tls is not None:
            # LEADER names the plain port: under TLS only a configured server
            # on the leader's host (with its TLS port) is the leader.
            leader = next((server for server in self._endpoints if server[0] == leader[0]), None)
        candidates: list[tuple[str, int]] = [leader] if leader is not None else []
        return candidates + [server for server in self._endpoints if server not in candidates]

    async def _try_resume(self, host: str, port: int, server: str, deadline: float,
                          kept: dict[str, _Kept] | None = None) -> Any:
        """One RESUME (with HELLO, AUTH, LEASE, LEADER, MINE pipelined) on
        ``server``: the reader once resumed (the writer in _writer), "busy" to
        retry, "gone:<why>" when the session ended, "moved" when another
        RESUME took it back (the resume goes on), "kicked:<message>" when a
        KICK ended it, a _Failure when unreachable. ``kept`` (rule 10,
        _resume's): the candidates' silent attempts of this resume;
        ``server``'s is waited on again (for another connect_timeout, not past
        ``deadline``) instead of a new connection, and a silent one goes
        there, open."""
        assert self._resumable is not None and self._lease is not None
        started = time.monotonic()
        limit = min(deadline, started + self._options.connect_timeout)
        attempt = kept.pop(server, None) if kept is not None else None
        if attempt is None:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=proto.MAX_LINE * 4),
                    max(0.001, limit - time.monotonic())
                )
            except TimeoutError:
                return _Failure("no connection in time")
            except OSError as error:
                if isinstance(error, ConnectionRefusedError) and len(self._resume_candidates()) == 1:
                    # The only server's process is gone, and its sessions with it
                    # (a restarted one would answer NOT_FOUND anyway).
                    return "gone:the server refused the connection: its sessions ended with its process"
                return _Failure(_os_error_text(error))
            attempt = _Kept(reader, writer, _handshake.Parked(time.monotonic()))
        else:
            attempt.again = True
        reader, writer, parked = attempt.reader, attempt.writer, attempt.parked

        def silent() -> _Failure:
            now = time.monotonic()
            why = (_handshake.still_silent(parked.stage(), parked.connected_at, now) if attempt.again
                   else _resume.silent_attempt(parked.stage(), now - started))
            if kept is None:
                attempt.close()
            else:
                kept[server] = attempt  # connected, open, unanswered: kept (rule 10)
                # Rule 9a's keepalive, as on a round's kept attempt.
                _handshake.keep_alive(writer.get_extra_info("socket"), self._options.connect_timeout, server)
            log.debug("server %s: %s", server, why)
            return _Failure(why, silent=True)

        outcome: Any = None
        try:
            if self._tls is not None and parked.resume is None:
                try:  # a resume's: not past the lease
                    failure = await asyncio.wait_for(self._tls_handshake(writer, host, server, attempt),
                                                     max(0.001, limit - time.monotonic()))
                except TimeoutError:
                    failure = _Failure("", silent=True)
                if failure is not None:
                    if failure.silent:
                        outcome = attempt
                        return silent()
                    return failure
            resume = parked.resume_attempt(self._tags, self._resumable, self._label, self._options.token,
                                           self._lease.session_timeout, self._leader)
            answers = resume.answers
            if resume.out:
                writer.write(bytes(resume.out))  # the transport buffers what the socket does not take
                resume.out.clear()
            while True:
                left = limit - time.monotonic()
                # The read stays pending while the attempt is kept: nothing
                # read is lost.
                read = attempt.pending = attempt.pending or asyncio.ensure_future(reader.read(_READ_CHUNK))
                if left <= 0 or not (await asyncio.wait({read}, timeout=left))[0]:
                    outcome = attempt
                    return silent()
                attempt.pending = None
                data = read.result()
                if not data:
                    return _Failure(_handshake.closed_early(answers.stage()))
                verdict = resume.feed(data)
                self._leader = answers.leader
                if verdict == "done":
                    self._resumed_extra = answers.extra
                    break
                if verdict is not None:
                    return verdict
            outcome = reader
        except OSError as error:
            return _Failure(_handshake.closed_early(parked.stage(), f"read failed: {_os_error_text(error)}"))
        except asyncio.CancelledError:
            if kept is not None and not self._stopping:
                # A move's try cut short by its connection's end (_end_move):
                # the RESUME sent, unanswered so far, is kept as a silent one
                # for the resume that may follow, not abandoned.
                kept[server] = attempt
                _handshake.keep_alive(writer.get_extra_info("socket"), self._options.connect_timeout, server)
                outcome = attempt
            raise
        finally:
            if outcome is None:
                attempt.close()
        if attempt.again:  # a session on a kept attempt's socket has a fresh one's options
            _handshake.keep_alive_off(writer.get_extra_info("socket"), server)
        # The server read RESUME after it was first sent: the lease starts
        # again there (earlier than its reading, on a kept connection: safe),
        # renewed at once by a ping when answered late (Lease.resumed; _serve).
        self._lease = proto.Lease.resumed(answers.session_timeout, self._options.request_timeout, resume.sent_at,
                                          time.monotonic())
        self._resumed_mine = _resume.parse_mine(answers.mine_items, answers.early_tags)
        return reader, writer, resume.buffer

    async def _follow_leader(self, writer: asyncio.StreamWriter, host: str, port: int) -> Any:
        """Right after a fresh handshake (rule 3): when LEADER named another of
        the configured servers (_resume.follow_target: exact host:port over
        plain TCP, the configured server on its host under TLS; a server's own
        address behind a proxy or NAT is not followed), a new session there,
        ((reader, writer, hello), (host, port)); the one on ``writer`` is QUIT.
        None (stay) when there is no such leader or it cannot be reached in time."""
        leader = _resume.follow_target(self._leader, (host, port), self._endpoints, self._tls is not None)
        if leader is None or len(self._endpoints) < 2:
            return None
        saved = (self._lease, self._resumable, self._leader, self._buffer)
        server = proto.endpoint_text(*leader)
        opened = await self._attempt(leader[0], leader[1], server)
        if isinstance(opened, _Failure):
            self._lease, self._resumable, self._leader, self._buffer = saved
            log.info("staying on %s: its leader %s cannot be reached (%s)", proto.endpoint_text(host, port), server,
                     opened.why)
            return None
        try:
            writer.write(proto.request(self._tags.next(), "QUIT"))
            writer.transport.close()
        except Exception:
            writer.transport.abort()
        log.info("following the leader: %s instead of %s", server, proto.endpoint_text(host, port))
        return opened, leader

    def _move_at(self, quiet_since: float | None) -> float | None:
        """When a silent server makes the session move (rule 5: a request
        other than a queued one unanswered for T/6, _resume.quiet_since,
        other candidates to resume on), or None."""
        lease = self._lease
        if (quiet_since is None or self._resumable is None or lease is None
                or lease.session_timeout <= 0 or self._move_task is not None
                or not [c for c in self._resume_candidates() if c != self._current]):
            return None
        return self._move_pace.at(lease.stall_at(quiet_since))

    async def _move(self) -> None:
        """RESUME on the other candidates while this connection's server is
        silent; once one took the session, this connection's read loop ends
        (the new connection in _moved); so it does when one answered with a
        KICK (the session ended). Tried again a backoff later otherwise
        (_resume.MovePace), on the silent attempts this pass kept
        (_move_kept)."""
        assert self._resumable is not None and self._lease is not None
        began = time.monotonic()
        deadline = self._lease.half_at() or began
        silent = proto.endpoint_text(*self._current) if self._current else "?"
        try:
            for host, port in [c for c in self._resume_candidates() if c != self._current]:
                if self._stopping or time.monotonic() >= deadline or self._ended is not None:
                    return
                server = proto.endpoint_text(host, port)
                outcome = await self._try_resume(host, port, server, deadline, self._move_kept)
                if isinstance(outcome, tuple):
                    if self._ended is not None or self._writer is None:
                        outcome[1].transport.abort()  # the old connection ended meanwhile
                        return
                    self._moved, self._current, self.server = outcome, (host, port), server
                    self.resumes += 1
                    log.info("resumed session %d on %s after %d ms (%s was silent), %d permits kept",
                             self._resumable.session_id, server, round((time.monotonic() - began) * 1000), silent,
                             self._resumed_mine.permits())
                    self._ended = Unavailable(f"the session moved to {server}: {silent} was silent")
                    self._writer.transport.abort()
                    return
                if isinstance(outcome, str) and outcome.startswith("kicked:"):
                    # An administrator's KICK, read among RESUME's first
                    # answers: the session is gone at every server, as on
                    # _resume's path: it ends now (permits lost with no
                    # stop-by, a waiting ACQUIRE fails, rule 9), not resumed,
                    # and no other server is asked.
                    log.warning("session %d was ended by KICK on %s while it moved off %s: %s",
                                self._resumable.session_id, server, silent, outcome[7:])
                    if self._ended is None and self._writer is not None:
                        self._may_resume = False
                        self._ended = _resume.ended_by_kick(outcome)
                        self._writer.transport.abort()
                    return
                why = ((outcome.partition(":")[2] or outcome) if isinstance(outcome, str)
                       else getattr(outcome, "why", ""))
                log.debug("moving session %d to %s failed: %s", self._resumable.session_id, server, why or "no answer")
        finally:
            self._move_task = None
            self._move_pace.tried(time.monotonic())
            # Watched until the next try (_move_kept_woke; a callback added
            # again to the same read is harmless).
            for attempt in self._move_kept.values():
                if attempt.pending is not None:
                    attempt.pending.add_done_callback(functools.partial(self._move_kept_woke, attempt))
            if self._ended is None and self._writer is not None:
                if self._timer is None:
                    self._on_timer()
                elif self._move_pace.next_try < self._timer_at:
                    # The next try comes before what the timer was armed for
                    # while this one ran (a ping, the lapse).
                    self._arm(self._move_pace.next_try)

    def _stop_move(self) -> None:
        """The client closes: the move stops, and its kept attempts close."""
        task, self._move_task = self._move_task, None
        if task is not None and not task.done():
            task.cancel()
        self._close_move_kept()

    async def _end_move(self) -> None:
        """The connection ended: a move's try under way stops, its attempt
        kept with the others (_try_resume), for the resume that may follow
        (which takes them: _resume) or to be closed (_close_move_kept)."""
        task, self._move_task = self._move_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def _close_move_kept(self) -> None:
        """Closes the move's kept RESUME attempts (the stall ended, or the
        session moved or ended), without QUIT, as _resume closes its own:
        the same risk as every abandoned RESUME, no new one. Emptied in
        place: an attempt a move still under way keeps later lands in it,
        closed next time."""
        kept = list(self._move_kept.values())
        self._move_kept.clear()
        for attempt in kept:
            attempt.close()

    def _move_kept_woke(self, attempt: _Kept, _: asyncio.Future[Any]) -> None:
        """The pending read (or TLS handshake) of a move's kept attempt
        completed between two tries: an answer or EOF, which the next try
        reads now, not a backoff later (rule 10, as it ends a resume's sleep)."""
        if (self._move_task is None and self._ended is None and self._writer is not None
                and self._timer is not None and any(kept is attempt for kept in self._move_kept.values())):
            self._move_pace.woke()
            self._arm(time.monotonic())

    def _settle(self, mine: _resume.Mine, moved: bool) -> NetsemError | None:
        """On the resumed connection: what became of each request sent on the
        old one and not answered there (MINE tells), of the permits MINE no
        longer shows, and of the requests sent meanwhile (written now).
        ``moved``: the session moved off a silent server (_move), which the
        words of an outcome left unknown say."""
        assert self._writer is not None
        outbox, self._outbox = self._outbox, []
        waiting = set(id(call) for call in outbox)
        calls = sorted((call for call in self._pending.values() if id(call) not in waiting), key=lambda c: c.seq)
        settled = _resume.settle([(call.line, call.sent_at) for call in calls], self._held.counts, mine,
                                 time.monotonic(), moved)
        self._unread.clear()
        self._seq = self._read_upto = 0
        extra, self._resumed_extra = self._resumed_extra, []
        now = time.monotonic()
        for call in calls:
            call.seq = 0
            if call.tag in settled.answer:
                self._dispatch(settled.answer[call.tag].rstrip(b"\n"))
            elif call.tag in settled.resend:
                self._write_again(call, settled.resend[call.tag], now)
            elif call.tag in settled.fail:
                del self._pending[call.tag]
                if not call.future.done():
                    call.future.set_result(Answer(failure=Unavailable(settled.fail[call.tag])))
        for call in outbox:
            self._write_again(call, call.line, now)
        lost = []
        for name, count in settled.lost.items():
            for permit in list(self._permits):
                if count <= 0:
                    break
                if getattr(permit, "name", None) == name:
                    self._permits.discard(permit)
                    lost.append(permit)
                    count -= getattr(permit, "count", 1)
            self._held.counts[name] = max(0, self._held.counts.get(name, 0) - settled.lost[name])
        reason = Unavailable("the server no longer holds this permit for the resumed session")
        for permit in lost:
            log.warning("%s: %s", getattr(permit, "name", "?"), reason.message)
            permit.mark_lost(reason, None)
        for line in extra:
            ended = self._dispatch(line)
            if ended is not None:
                return ended
        return None

    def _write_again(self, call: Call, line: bytes, now: float) -> None:
        assert self._writer is not None
        self._seq += 1
        call.seq, call.line, call.sent_at, call.readable_at, call.answered = self._seq, line, now, now, False
        call.holds_line = proto.holds_the_line(line)
        self._pending[call.tag] = call
        self._unread.append(call)
        self._writer.write(line)
        self._last_sent = now

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
            self._writer = None

    def _session_ended(self, reason: NetsemError, stop_by: float | None) -> None:
        """Fails the calls and loses the permits of the session."""
        self.connected = False
        server, self.server = self.server, ""
        self.protocol = ""
        self.session_id = 0
        self.losses += 1
        self.last_loss = reason
        self.last_stop_by = stop_by
        self._empty_rounds_at_end = self._empty_rounds
        self.wake_waiters()
        if self._stopping:
            log.debug("closed the connection to %s", server)
        else:
            # No fallback yet: the calls wait for the next round (rule 9), and
            # only a round that reaches no server enters it.
            log.warning("lost the connection to %s: %s: %s", server, reason.code, reason.message)
        calls, self._pending = list(self._pending.values()), {}
        self._outbox = []
        self._held.clear()
        self._unread.clear()
        self._read_upto = self._seq
        self._buffer = proto.LineBuffer()
        for call in calls:
            if not call.future.done():
                call.future.set_result(Answer(failure=reason))
        permits, self._permits = list(self._permits), weakref.WeakSet()
        for permit in permits:
            permit.mark_lost(reason, stop_by)



@dataclass
class _Failure:
    why: str
    refusal: NetsemError | None = None
    local: IoError | None = None  # failed for want of this process's descriptors or memory
    silent: bool = False  # connected, and no handshake answer within connect_timeout, still open
    # No connection within connect_timeout, or no reply from the host (_handshake.NO_REPLY: a connect
    # that failed so, or a kept one whose keepalive ended, rule 9a): a connect timeout for rule 8.
    timed_out: bool = False
    kept: _Kept | None = None  # a round's silent attempt, for the round to keep (rule 9)


# asyncio's own bound on a kept attempt's TLS handshake (rule 9): none that
# matters; the attempt is closed by the client (rule 8's bound, a session,
# the client's close).
_KEPT_TLS_TIMEOUT = 7 * 24 * 3600.0


@dataclass
class _Kept:
    """A connection under handshake: its streams, what was connected and said
    on it (``parked``), the read or TLS handshake pending on it, and whether
    it is a silent attempt of an earlier round (``again``, rule 9)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parked: _handshake.Parked
    pending: asyncio.Future[Any] | None = None
    again: bool = False

    def close(self, tags: proto.Tags | None = None) -> None:
        """Closes the connection at once. ``tags``: a kept attempt given up
        (rule 9c): QUIT behind its handshake first when it began one
        (Handshake.farewell), as far as the socket takes it now (the abort
        drops the rest)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            if pending.done() and not pending.cancelled():
                pending.exception()  # retrieved: no "never retrieved" log
            pending.cancel()
        if tags is not None and self.parked.handshake is not None and not self.writer.transport.is_closing():
            self.writer.write(self.parked.handshake.farewell(tags))
        self.writer.transport.abort()


def _local_failure(server: str, error: OSError, call: str) -> _Failure | None:
    """The attempt's failure when ``error`` is this process's shortage of
    descriptors or memory (no word on the server), else None."""
    shortage = proto.local_shortage(error, call)
    if shortage is None:
        return None
    return _Failure(shortage, local=IoError(f"cannot connect to server {server}: {shortage}"))


_Opened = tuple[asyncio.StreamReader, asyncio.StreamWriter, proto.Hello]
