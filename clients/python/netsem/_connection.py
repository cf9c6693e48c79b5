"""Connection: the one protocol v1 connection a blocking Client shares between
all its threads, driven by an I/O thread of its own (libnetsem's
src/client/connection.cc, in Python).

API: ``Connection.start()`` launches the I/O thread, which connects to the
first reachable server of the list (each attempt, name lookup included,
bounded by connect_timeout), with ``tls`` runs the TLS handshake (netsem._tls:
a failed one is a refusal, Denied), says HELLO with the label, AUTH with the
token when there is one, asks a 1.1 server for ``OPTION queued off``, learns
the session timeout once (LEASE, proposed 1.2, whatever the session's rights;
else STATS of a 1.0/1.1 server), and then
serves the session: it writes what callers queued with ``send()``, pings
when the line has been quiet for a sixth of the session timeout, and hands
each answer to the Call whose tag it carries. A caller waits on its own Call
(``Call.wait``), so no call ever blocks another.

The lease (``_protocol.Lease``): when nothing sent since the last answered
request has been answered half a session timeout after it, the session is
given up and its permits are lost with a stop-by time, before the server
can grant them again. When the session ends (EOF, a socket error, a ``*``
line, a request unanswered for request_timeout, or ``stop()``) every pending
Call fails with Unavailable or Shutdown, every remote permit registered on
that session is marked lost, and the thread reconnects with exponential
backoff. While it has no session ``send()`` returns None, and then either no
server could be reached (the client is "in fallback") or a server answered
but refused the session (DENIED, AUTH, LIMIT, a protocol it does not speak):
``between()`` and ``await_session()`` hand the call that round's refusal,
read with their decision, and the Client raises it instead of falling back,
since a server that answers is not an outage; nor is a round this process
could not make for want of its own descriptors or memory (IoError); nor a
silent one, in which a server accepted the connection and did not finish
its TLS or session handshake within connect_timeout (_resume.Silence): then
calls wait for a round that decides (``between``, ``await_session``). Such a
silent attempt is kept open (``_parked``, rule 9), and the next rounds wait
on it again instead of connecting anew, until a session begins, the client
stops or rule 8's bound ends (_resume.StickySilence); an answer or EOF on it
ends the sleep between rounds. Likewise a resume's silent RESUME attempt is
kept for that resume's next attempt to the same candidate (rule 10,
``_resume``'s ``kept``; keepalive on, and an answer or EOF on it ends the
resume's sleep between rounds), and closed when the resume ends; and so
is a silence move's (rule 5, ``_move_kept``) for its next try, a backoff
later as a resume's next round (_resume.MovePace; an answer or EOF on it
starts that try at once), closed when the stall
ends or the session moves or ends, and handed to the resume when the
connection drops (as libnetsem's move is its resume: each is a RESUME sent).

A session is numbered: a Call and a remote permit belong to the session that
sent or granted them, and a request tied to an old session is refused rather
than sent to a new one that never heard of it.

Thread safety: every public method from any thread; the I/O thread's own
state is marked "loop only". Loss callbacks run on the I/O thread.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from netsem import _handshake
from netsem import _protocol as proto
from netsem import _resume
from netsem import _tls
from netsem._options import ClientOptions
from netsem.errors import IoError, NetsemError, ProtocolError, Shutdown, Unavailable

log = logging.getLogger("netsem")

Builder = Callable[[str], bytes]  # a request line for a tag


class LosablePermit(Protocol):
    """What the connection needs of a remote permit: to be marked lost."""

    def mark_lost(self, reason: NetsemError, stop_by: float | None) -> None: ...


class Call:
    """One request in flight. The I/O thread completes it exactly once."""

    __slots__ = ("tag", "session", "line", "may_wait", "holds_line", "_done", "reply", "failure", "items",
                 "answered", "sent_at", "readable_at", "seq", "undo", "_lock")

    def __init__(self, tag: str, session: int, line: bytes, may_wait: bool = False) -> None:
        self.tag = tag
        self.session = session
        self.line = line
        # A request the server may queue, whose answer may come at any time
        # later: an ACQUIRE or WAIT with a timeout other than 0.
        self.may_wait = may_wait
        # A CLUSTER ADD, REMOVE or FENCES: the server reads nothing of the
        # session behind it, PINGs included, until it answers it
        # (proto.holds_the_line).
        self.holds_line = proto.holds_the_line(line)
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.reply: proto.Reply | None = None  # final once done, unless failure
        self.failure: NetsemError | None = None  # the session ended first
        self.items: list[str] = []  # loop only until done: ITEM rows
        self.answered = False  # loop only: some line answered it (QUEUED counts)
        self.sent_at = 0.0  # loop only
        # Loop only: since when the server can read it (its request_timeout
        # and silence count from then): its send, or the answer to a
        # CLUSTER request sent before it (_resume.read_behind).
        self.readable_at = 0.0
        self.seq = 0  # loop only: its place in the session's send order
        # Set by a caller that gave up waiting (an exception, KeyboardInterrupt
        # included): the request that undoes a grant still to come, so that
        # nothing stays held or consumed for a caller who is gone.
        self.undo: Builder | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the final answer; False when ``timeout`` ran out first."""
        return self._done.wait(timeout)

    def complete(self, reply: proto.Reply | None, failure: NetsemError | None) -> Builder | None:
        """Records the answer; returns the undo request when a caller gave up
        on a request that was granted."""
        with self._lock:
            self.reply, self.failure = reply, failure
            self._done.set()
            if reply is not None and reply.kind == "OK" and self.undo is not None:
                return self.undo
        return None

    def abandon(self, undo: Builder) -> bool:
        """Its caller gives up: a grant still to come is undone by ``undo``.
        True when the call is done already (the caller undoes a grant itself)."""
        with self._lock:
            if self._done.is_set():
                return True
            self.undo = undo
            return False


@dataclass
class Counters:
    """What the connection counts, for Client.stats()."""

    connected: bool = False
    server: str = ""
    connects: int = 0
    losses: int = 0
    fallback_entries: int = 0
    fallback_exits: int = 0
    # Sessions carried on over a new connection after theirs broke or fell
    # silent (RESUME, rules 5 and 11 included): not counted in connects or
    # losses (libnetsem's ClientStats::resumes).
    resumes: int = 0
    unreachable: str = ""  # why the last round of attempts failed, server by server
    silent: bool = False  # the last round was silent (Silence), and no session since
    protocol: str = ""  # "1.0" or "1.1" while connected
    session_id: int = 0


class _Ended(Exception):
    """The session ends, for ``reason``."""

    def __init__(self, reason: NetsemError) -> None:
        super().__init__(str(reason))
        self.reason = reason


class Connection:
    """The shared connection; see the module docstring."""

    def __init__(
        self, options: ClientOptions, servers: list[tuple[str, int]], label: str, tls: ssl.SSLContext | None = None
    ) -> None:
        self._options = options
        self._tls = tls  # read-only: the context of every TLS session
        self._servers = servers
        self._label = label
        self._tags = proto.Tags()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_lock = threading.Lock()

        self._lock = threading.Lock()
        self._first_round = threading.Condition(self._lock)
        self._first_round_done = False  # guarded by _lock
        self._connected = False  # guarded by _lock
        self._session = 0  # guarded by _lock: the current or last session
        self._last_loss: NetsemError = Unavailable("not connected")  # guarded by _lock
        self._last_stop_by: float | None = None  # guarded by _lock
        self._outbox: list[Call] = []  # guarded by _lock
        self._permits: dict[int, LosablePermit] = {}  # guarded by _lock
        self._in_fallback = False  # guarded by _lock
        self._refused: NetsemError | None = None  # guarded by _lock
        # The last round was silent: no server gave a session or refused, and
        # some accepted the connection and said nothing (rule 1 of a silent
        # server); calls wait for a round that decides (await_session).
        self._silence: _resume.Silence | None = None  # guarded by _lock
        self._counters = Counters()  # guarded by _lock
        # Rule 9 (await_session): rounds of connection attempts that ended with
        # no session, and their number when the last session ended.
        self._empty_rounds = 0  # guarded by _lock
        self._empty_rounds_at_end = 0  # guarded by _lock
        self._io_done = False  # guarded by _lock: the I/O thread has ended

        # Loop only.
        self._sock: socket.socket | None = None
        self._out = bytearray()
        self._pending: dict[str, Call] = {}
        self._unanswered: collections.deque[Call] = collections.deque()
        self._lease = proto.Lease(0, options.request_timeout, 0.0)
        self._last_sent = 0.0
        self._sent_seq = 0  # requests sent on the session
        self._read_seq = 0  # the server has read every request up to this one
        self._fell_silent = False
        self._attempt_failure = ""
        self._attempt_refusal: NetsemError | None = None
        self._attempt_refused = False  # the last connect was refused (ECONNREFUSED)
        # The attempt's server accepted the connection and did not finish the
        # TLS or session handshake within connect_timeout, still connected.
        self._attempt_silent = False
        # connect() did not connect within connect_timeout, or got no reply from the host (NO_REPLY).
        self._attempt_timed_out = False
        self._attempt_short = False  # the attempt failed for want of this process's resources
        # Rule 8: a server found silent stays silent when its connects time out.
        self._sticky = _resume.StickySilence()
        # Rule 9: per server (as configured), its silent attempt kept open
        # across rounds (the socket, and what was connected and said on it),
        # and what the attempt under way keeps when its server is silent.
        self._parked: dict[str, tuple[socket.socket, _handshake.Parked]] = {}
        self._attempt_kept: tuple[socket.socket, _handshake.Handshake | None] | None = None
        # The round's first attempt that failed for want of this process's own
        # descriptors or memory: no word on the servers, so no fallback.
        self._attempt_local: IoError | None = None
        # Resuming (docs/client.md, "Sessions that outlive their connection"):
        # the session's id and secret (RESUMABLE), the leader's address
        # (LEADER), what the session holds by its answers, and whether the
        # connection ended without a word (EOF, reset, * ERR SHUTDOWN).
        self._resumable: _resume.Resumable | None = None
        self._leader: tuple[str, int] | None = None
        self._held = _resume.HeldCounts()
        self._may_resume = False
        self._resumed_mine = _resume.Mine()
        self._resumed_extra: list[bytes] = []
        self._late: dict[str, str] = {}  # handshake requests answered later (RESUMABLE)
        self._lease_told = False
        # Moving on silence (rule 5): the server this connection is to, the
        # socket a move resumed the session on, when to try a move next.
        self._current: tuple[str, int] | None = None
        self._moved_to: socket.socket | None = None
        self._move_pace = _resume.MovePace(options.reconnect_min, options.reconnect_max)
        # Rule 10 on the move too (as _resume's ``kept``): each candidate's
        # silent RESUME attempt of this stall, watched by _serve and waited
        # on again by the move's next pass (a backoff later, or at once when
        # one answers or closes) instead of a new connection; the resume's own
        # when the connection drops (_resume), else closed, without QUIT,
        # once the stall ends or the session moves or ends (_close_move_kept).
        self._move_kept: dict[str, tuple[socket.socket, _handshake.Parked]] = {}
        # Sockets of sessions whose lease lapsed, each kept open (and unread)
        # until the stop-by time of its permits: see _run.
        self._lingering: list[tuple[float, socket.socket]] = []

    # --- the callers' side ---------------------------------------------------

    @classmethod
    def start(
        cls, options: ClientOptions, servers: list[tuple[str, int]], label: str, tls: ssl.SSLContext | None = None
    ) -> Connection:
        connection = cls(options, servers, label, tls)
        connection._thread = threading.Thread(target=connection._run, name="netsem-io", daemon=True)
        connection._thread.start()
        return connection

    def stop(self) -> None:
        """Ends the session (its permits are marked lost, its calls fail) and
        joins the I/O thread; afterwards send() returns None. Idempotent."""
        with self._stop_lock:
            if self._thread is None:
                return
            if self.on_io_thread():
                raise RuntimeError("a netsem Client cannot be closed from its own loss callback")
            self._stopping.set()
            self._wake()
            self._thread.join()
            self._thread = None
            with self._lock:
                fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
            for fd in fds:
                os.close(fd)

    def wait_first_round(self, timeout: float) -> None:
        """Waits until the first round of connection attempts ended, at most ``timeout``."""
        with self._first_round:
            self._first_round.wait_for(lambda: self._first_round_done, timeout)

    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def await_session(self, after: int, deadline: float | None, cancelled: Callable[[], bool],
                      silent_until: float | None = None) -> _resume.NextSession:
        """Rule 9: waits, after session ``after`` ended, for the next round of
        connection attempts that decides: the new session's number once one
        began, 0 when a round ended with no session (no server reachable, or
        a refusal: with it) or the I/O thread ended, CLOSING when the
        client closes, -1 when ``deadline`` passed or ``cancelled()`` (wake
        it with ``wake_waiters``) first. A silent round decides nothing: the
        wait goes on across such rounds, until ``silent_until`` at most
        (then SILENT). With the answer, the last round's Silence when it
        was silent, read under the same lock."""
        with self._first_round:
            while True:
                if self._connected and self._session > after:
                    return _resume.NextSession(self._session)
                if self._stopping.is_set():
                    return _resume.NextSession(self.CLOSING)
                silence = None if self._connected else self._silence
                if self._io_done or (silence is None and not self._connected
                                     and self._empty_rounds > self._empty_rounds_at_end):
                    return _resume.NextSession(0, refusal=self._refused)
                bound = _resume.wait_bound(silence, cancelled(), time.monotonic(), deadline, silent_until)
                if isinstance(bound, _resume.NextSession):
                    return bound
                self._first_round.wait(1.0 if bound is None else min(bound, 1.0))

    CLOSING = _resume.NextSession.CLOSING  # await_session: the client closes
    SILENT = _resume.NextSession.SILENT  # await_session: request_timeout across silent rounds

    @property
    def request_timeout(self) -> float:
        return self._options.request_timeout

    def between(self) -> _resume.Unsent:
        """After send() found no session, an Unsent: its ``after`` is the one
        to pass to await_session when the connection is between two sessions
        (the last one ended and no round of connection attempts has failed
        since, so the round under way may still reach a server; a session
        that began meanwhile is returned by await_session at once) or when the last
        round was silent (a server accepted the connection and said nothing:
        no outage, so the call waits for a round that decides); None
        otherwise (the last round reached no server or was refused, never
        connected, or closing): the caller falls back as today (review19
        item 8), or raises the refusal read with that decision (the last
        round's: a server that answered no is not an outage)."""
        with self._lock:
            after = None
            if not (self._stopping.is_set() or self._io_done):
                after = _resume.after_of(self._connected, self._session, self._silence,
                                         self._empty_rounds > self._empty_rounds_at_end)
            return _resume.Unsent(after, self._refused if after is None else None)

    def wake_waiters(self) -> None:
        """Wakes await_session (a cancel)."""
        with self._first_round:
            self._first_round.notify_all()

    def counters(self) -> Counters:
        with self._lock:
            return Counters(**vars(self._counters))

    def on_io_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def send(self, build: Builder, session: int = 0, *, may_wait: bool = False) -> Call | None:
        """Queues the request ``build(tag)`` on the current session, or on
        ``session`` only while that is still the current one; None when there
        is no such session. ``may_wait``: see ``Call.may_wait``."""
        tag = self._tags.next()
        line = build(tag)
        with self._lock:
            if not self._connected or (session != 0 and session != self._session):
                return None
            call = Call(tag, self._session, line, may_wait)
            self._outbox.append(call)
            self._wake()  # under the lock: stop() closes the pipe under it
        return call

    def register_permit(self, permit: LosablePermit, session: int) -> None:
        """A remote permit held on ``session``, marked lost when it ends (at
        once when it has ended already)."""
        with self._lock:
            if self._connected and session == self._session:
                self._permits[id(permit)] = permit
                return
            reason, stop_by = self._last_loss, self._last_stop_by
        permit.mark_lost(reason, stop_by)

    def unregister_permit(self, permit: LosablePermit) -> None:
        with self._lock:
            self._permits.pop(id(permit), None)

    def _wake(self) -> None:
        if self._wake_w < 0:
            return  # stopped
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full (a wake-up is pending anyway) or closed (stopped)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # --- the I/O thread ----------------------------------------------------------

    def _sleep(self, seconds: float,
               kept: dict[str, tuple[socket.socket, _handshake.Parked]] | None = None) -> bool:
        """Waits up to ``seconds`` (woken early by a stop, and by an answer or
        EOF on a silent attempt kept open: rule 9's between rounds, and
        ``kept``, a resume's RESUME attempts (rule 10) between its rounds, as
        libnetsem's sleep: the next round reads it at once); False once
        stopping."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            now = time.monotonic()
            self._close_lingering(now)
            left = deadline - now
            if left <= 0:
                return True
            left = min([left] + [at - now for at, _ in self._lingering])
            socks = [sock for sock, _ in self._parked.values()] + [sock for sock, _ in (kept or {}).values()]
            if not socks:
                self._stopping.wait(left)
                continue
            poll = select.poll()  # no descriptor of its own, unlike epoll
            poll.register(self._wake_r, select.POLLIN)
            for sock in socks:
                poll.register(sock, select.POLLIN)
            ready = poll.poll(max(1, round(left * 1000)))
            if any(fd != self._wake_r for fd, _ in ready):
                return not self._stopping.is_set()
            if ready:
                self._drain_wake()
        return False

    def _close_parked(self) -> None:
        """Loop only: closes every silent attempt kept open (rule 9): a session
        began, or the client stops."""
        parked, self._parked = self._parked, {}
        for sock, kept in parked.values():
            self._close_kept(sock, kept)

    def _close_kept(self, sock: socket.socket, parked: _handshake.Parked) -> None:
        """Loop only: closes a silent attempt kept open (a session began, the
        client stops, rule 8's bound), with QUIT behind its handshake when it
        began one (rule 9c, Handshake.farewell): written as far as the socket
        takes it now, never waited for."""
        if parked.handshake is not None:
            try:
                _send(sock, bytearray(parked.handshake.farewell(self._tags)))
            except OSError:
                pass
        sock.close()

    def _close_lingering(self, now: float, at_exit: bool = False) -> None:
        """Loop only: closes the lingering sockets whose stop-by time has come;
        ``at_exit``, leaves the others to timers (a closed Client must not
        close them early either)."""
        keep = []
        for at, sock in self._lingering:
            if at <= now:
                sock.close()
            elif at_exit:
                timer = threading.Timer(at - now, sock.close)
                timer.daemon = True
                timer.start()
            else:
                keep.append((at, sock))
        self._lingering = keep

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as error:  # a bug here must not leave callers waiting for ever
            log.exception("the netsem client's I/O thread failed")
            failure = ProtocolError(f"the netsem client's I/O thread failed: {error!r}")
            with self._lock:
                # Not an outage: calls raise this instead of falling back.
                self._refused = failure
            if self._connected:
                self._session_ended(failure, None)
            with self._lock:
                calls, self._outbox = self._outbox, []
            for call in calls:
                call.complete(None, failure)
        finally:
            self._close_parked()
            self._close_move_kept()
            with self._first_round:
                self._first_round_done = True
                self._io_done = True
                self._first_round.notify_all()

    def _loop(self) -> None:
        backoff = self._options.reconnect_min
        while not self._stopping.is_set():
            served = False
            lived = 0.0  # how long the round's session lasted
            failures: list[str] = []
            refusal: NetsemError | None = None  # the round's first refusal: a server answered no
            silent: list[str] = []  # the servers that accepted the connection and said nothing
            self._attempt_local = None
            for host, port in self._servers:
                if self._stopping.is_set():
                    break
                server = proto.endpoint_text(host, port)
                self._attempt_failure, self._attempt_refusal, self._attempt_silent = "", None, False
                self._attempt_timed_out = self._attempt_short = False
                self._attempt_kept = None
                # Rule 9: a silent attempt of an earlier round is waited on
                # again, not replaced by a new connection, until rule 8's
                # bound for that server ends.
                kept = self._parked.pop(server, None)
                if self._sticky.lapsed(server, time.monotonic(), self._lease.session_timeout) and kept is not None:
                    log.debug("server %s: closing the connection kept open since %d ms ago: silent for the "
                              "session timeout", server, round((time.monotonic() - kept[1].connected_at) * 1000))
                    self._close_kept(*kept)
                    kept = None
                parked = kept[1] if kept is not None else None
                sock = kept[0] if kept is not None else self._connect(host, port)
                connected_at = parked.connected_at if parked is not None else time.monotonic()
                if sock is not None and self._tls is not None and (parked is None or parked.handshake is None):
                    sock = self._tls_handshake(sock, host, server, parked=parked, keep=True)
                hello = self._handshake(sock, server, parked) if sock is not None else None
                if sock is None or hello is None:
                    why = self._attempt_failure or "no answer"
                    outcome = ("silent" if self._attempt_silent else "timeout" if self._attempt_timed_out
                               else "local" if self._attempt_short else "other")
                    now = time.monotonic()
                    still = self._sticky.failed(server, why, outcome, now, self._lease.session_timeout)
                    if self._attempt_silent and self._attempt_kept is not None:
                        _handshake.keep_alive(self._attempt_kept[0], self._options.connect_timeout, server)
                        self._parked[server] = (self._attempt_kept[0],
                                                _handshake.Parked(connected_at, self._attempt_kept[1]))
                    elif self._attempt_kept is not None:
                        self._attempt_kept[0].close()
                    elif sock is not None:
                        sock.close()
                    self._attempt_kept = None
                    failures.append(f"{server}: {still or why}")
                    refusal = refusal or self._attempt_refusal
                    if self._attempt_silent or still:
                        silent.append(server)
                    continue
                if parked is not None:  # a session on a kept attempt's socket has a fresh one's options
                    _handshake.keep_alive_off(sock, server)
                self._sticky.session()
                self._close_parked()
                followed = self._follow_leader(sock, host, port)
                if followed is not None:
                    sock, host, port, hello = followed
                    server = proto.endpoint_text(host, port)
                self._session_began(server, hello)
                began_at = time.monotonic()
                self._current = (host, port)
                reason = self._serve(sock)
                ended: tuple[NetsemError, float | None] | None = None
                while not self._stopping.is_set():
                    if self._moved_to is not None:
                        # The session moved off a silent server: its socket is
                        # closed without QUIT (the server kicks it anyway), and
                        # so are the move's other kept attempts, as a resume's.
                        self._close_move_kept()
                        sock.close()
                        sock, self._moved_to = self._moved_to, None
                        reason = self._serve(sock, resumed=self._resumed_mine, moved=True)
                        continue
                    if not (self._may_resume and self._resumable is not None and self._lease.session_timeout > 0):
                        break
                    # The connection ended without a word: the session (its
                    # permits, its queued requests) may still be resumed,
                    # on the move's kept attempts too (_resume takes them).
                    sock.close()
                    resumed = self._resume(reason)
                    if not isinstance(resumed, socket.socket):
                        ended = resumed
                        break
                    sock = resumed
                    reason = self._serve(sock, resumed=self._resumed_mine)
                # Not resumed (lapsed, KICKed, closing): a move's kept attempts close.
                self._close_move_kept()
                # A server that closed or refused the session has let go of its
                # permits already; one that fell silent holds them until the
                # lease's end. One that said SHUTDOWN has let go too, but its
                # next start grants nothing before the lease's end either.
                lease = (self._fell_silent or isinstance(reason, Shutdown)) and self._lease.session_timeout > 0
                stop_by = self._lease.stop_by() if lease else None
                if ended is not None:
                    reason, stop_by = ended
                elif stop_by is not None and self._fell_silent:
                    # The server may only be frozen or cut off for a moment: if
                    # it read our close when it comes back, it would hand the
                    # permits on at once, while the work under them may run
                    # until stop_by. Open (and silent), the socket leaves it
                    # nothing to act on before then but its session timeout.
                    self._lingering.append((stop_by, sock))
                else:
                    sock.close()
                self._session_ended(reason, stop_by)
                served = True
                lived = time.monotonic() - began_at
                break
            if self._stopping.is_set():
                break
            if not served:
                local = self._attempt_local if refusal is None else None
                # Precedence: refusal > local failure > silent > unreachable.
                silence = (_resume.Silence(tuple(silent), self._options.connect_timeout)
                           if silent and refusal is None and local is None else None)
                with self._lock:
                    was_local = isinstance(self._refused, IoError)  # the last round said it already
                    was_silent = self._silence is not None
                    self._counters.unreachable = "; ".join(failures)
                    # A refusal is an answer: no fallback, whatever the other servers did.
                    # Nor when this process could not try a server for want of its
                    # own descriptors or memory: the servers may be up and holding,
                    # and its calls fail with that until a round gets through.
                    # Nor when a server accepted the connection and said nothing:
                    # it may be holding permits and answer soon; calls wait.
                    self._refused = refusal
                    self._silence = silence
                    self._counters.silent = silence is not None
                    if local is not None:
                        self._refused = IoError(f"{local}; not an outage, so no fallback: the client tries the "
                                                "servers again")
                    # Only a round that reached no server enters fallback,
                    # counted with the round, so that a caller it wakes sees it.
                    entering = refusal is None and local is None and silence is None and not self._in_fallback
                    if entering:
                        self._in_fallback = True
                        self._counters.fallback_entries += 1
                    self._empty_rounds += 1
                if local is not None:
                    log.log(logging.DEBUG if was_local else logging.WARNING, "%s; no fallback, the client tries again",
                            local)
                elif silence is not None:
                    log.log(logging.DEBUG if was_silent else logging.WARNING, "%s", silence.warning())
                elif entering:
                    log.warning("%s", _resume.entering_fallback("; ".join(failures)))
            with self._first_round:
                self._first_round_done = True
                self._first_round.notify_all()
            # Back to reconnect_min only after a session that lasted: one that
            # ends at once (a server that drops every request, which rule 9
            # sends again) is retried with the growing backoff, as no answer is.
            long_lived = served and lived >= self._options.reconnect_max
            if long_lived:
                backoff = self._options.reconnect_min
            self._sleep(backoff)
            if not long_lived:
                backoff = min(backoff * 2, self._options.reconnect_max)
        self._close_lingering(time.monotonic(), at_exit=True)
        self._close_parked()
        with self._first_round:
            self._first_round_done = True
            self._first_round.notify_all()

    def _connect(self, host: str, port: int, timeout: float | None = None) -> socket.socket | None:
        """A connected socket, or None with the reason in _attempt_failure.
        The whole attempt, name lookup included, is bounded by connect_timeout
        (a lookup cannot be interrupted: a slow one is cut by the wait below),
        or by ``timeout`` when given."""
        timeout = self._options.connect_timeout if timeout is None else max(0.001, timeout)
        deadline = time.monotonic() + timeout
        server = proto.endpoint_text(host, port)
        try:
            addresses = _lookup(host, port, timeout)
        except OSError as error:
            self._attempt_failure = error.strerror or str(error)
            # A lookup cut at connect_timeout is no connection in time, as
            # netsem.aio's (its wait_for bounds lookup and connect as one).
            self._attempt_timed_out = error.errno == errno.ETIMEDOUT
            if (shortage := proto.local_shortage(error, "getaddrinfo")) is not None:
                self._local_failure(server, shortage)
            return None
        # EADDRNOTAVAIL (no local port or source address left) is this host's
        # shortage only when every address of the server gave it: one family
        # this host cannot reach from (a "localhost" whose ::1 a container's
        # loopback lacks) beside a refused address is an outage.
        no_local_address = ""
        answered = False  # an address failed otherwise: refused, timed out, not tried
        for family, kind, protocol, _, address in addresses:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                answered = True
                break
            try:
                sock = socket.socket(family, kind, protocol)
            except OSError as error:
                # Out of descriptors or memory is this process's state, not the
                # server's (an address family this host lacks is skipped).
                if (shortage := proto.local_shortage(error, "socket")) is not None:
                    self._local_failure(server, shortage)
                continue
            try:
                sock.settimeout(left)
                sock.connect(address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                return sock
            except TimeoutError:
                self._attempt_failure = f"no connection within {round(timeout * 1000)} ms"
                self._attempt_timed_out = answered = True
            except OSError as error:
                self._attempt_failure = error.strerror or str(error)
                # No reply from the host (EHOSTUNREACH: its ARP failed, or a
                # router's word; ENETUNREACH): as a connect timeout for rule 8.
                self._attempt_timed_out = error.errno in _handshake.NO_REPLY
                self._attempt_refused = error.errno == errno.ECONNREFUSED
                shortage = proto.local_shortage(error, "connect")
                if error.errno == errno.EADDRNOTAVAIL:
                    no_local_address = shortage or ""
                elif shortage is not None:
                    self._local_failure(server, shortage)
                else:
                    answered = True
            sock.close()
            log.debug("connect to %s failed: %s", proto.endpoint_text(host, port), self._attempt_failure)
        if no_local_address and not answered:
            self._local_failure(server, no_local_address)
        if not self._attempt_failure:
            self._attempt_failure = f"no connection within {round(timeout * 1000)} ms"
            self._attempt_timed_out = True
        return None

    def _tls_handshake(self, sock: socket.socket, host: str, server: str, limit: float | None = None,
                       parked: _handshake.Parked | None = None, keep: bool = False) -> ssl.SSLSocket | None:
        """The TLS session on the connected ``sock``, bounded by connect_timeout;
        None with the reason in _attempt_failure, and in _attempt_refusal when
        the server refused (a certificate refused either way, an alert, no
        TLS there). A connection closed or reset during it is as a closed port.
        ``parked`` (rule 9): ``sock`` is the TLS socket of a silent attempt of
        an earlier round, whose handshake goes on. ``keep``: when the server
        is silent, the socket goes to _attempt_kept instead of being closed."""
        assert self._tls is not None
        if isinstance(sock, ssl.SSLSocket):
            tls_sock = sock
        else:
            try:
                tls_sock = self._tls.wrap_socket(
                    sock, server_hostname=_tls.server_name(self._options, host), do_handshake_on_connect=False
                )
            except (OSError, ValueError) as error:
                sock.close()
                self._attempt_failure = f"TLS: {error}"
                if isinstance(error, OSError) and (shortage := proto.local_shortage(error, "TLS")) is not None:
                    self._local_failure(server, shortage)
                return None
        started = time.monotonic()
        deadline = started + self._options.connect_timeout
        if limit is not None:
            deadline = min(deadline, limit)  # a resume's: not past the lease
        selector = self._selector(server)
        if selector is None:
            tls_sock.close()
            return None
        try:
            selector.register(tls_sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                try:
                    tls_sock.do_handshake()
                    return tls_sock
                except ssl.SSLWantReadError:
                    selector.modify(tls_sock, selectors.EVENT_READ)
                except ssl.SSLWantWriteError:
                    selector.modify(tls_sock, selectors.EVENT_WRITE)
                except OSError as error:
                    self._attempt_timed_out = _handshake.timed_out(error, parked is not None)
                    if _tls.is_refusal(error):
                        self._tls_refused(_tls.refusal(server, error))
                    elif _tls.socket_errno(error) and (
                            shortage := proto.local_shortage(error, "TLS handshake")) is not None:
                        # This host's shortage (ENOMEM, ENOBUFS in a send or
                        # recv of the handshake), as netsem.aio and libnetsem
                        # say it: no word on the server, so no fallback.
                        self._local_failure(server, shortage)
                    else:
                        # The socket's error, not a TLS error's kind: a clean
                        # close mid-handshake (SSLZeroReturnError) was worded
                        # "TLS/SSL connection has been closed (EOF) (_ssl.c:...)".
                        self._attempt_failure = f"TLS handshake: {_tls.broken(error)}"
                        log.debug("server %s: %s", server, self._attempt_failure)
                    break
                now = time.monotonic()
                left = deadline - now
                if left <= 0:
                    # Connected and still open: silent, no outage.
                    self._attempt_failure = (
                        _handshake.still_silent(("", "the TLS handshake"), parked.connected_at, now)
                        if parked is not None
                        else _resume.silent_attempt(("", "the TLS handshake"), deadline - started))
                    self._attempt_silent = True
                    log.debug("server %s: %s", server, self._attempt_failure)
                    if keep:
                        self._attempt_kept = (tls_sock, None)
                        return None
                    break
                for key, _ in selector.select(left):
                    if key.fd == self._wake_r:
                        self._drain_wake()
                if self._stopping.is_set():
                    break
        finally:
            selector.close()
        tls_sock.close()
        return None

    def _local_failure(self, server: str, shortage: str) -> None:
        """Loop only: an attempt failed on this process's resources, not the
        server's: ``shortage`` into _attempt_failure, and into _attempt_local
        if the round has none yet."""
        log.debug("%s: %s", server, shortage)
        self._attempt_failure = shortage
        self._attempt_short = True
        if self._attempt_local is None:
            self._attempt_local = IoError(f"cannot connect to server {server}: {shortage}")

    def _selector(self, server: str) -> selectors.BaseSelector | None:
        """Loop only: a selector for one attempt (epoll needs a descriptor),
        or None with the reason in _attempt_failure."""
        try:
            return selectors.DefaultSelector()
        except OSError as error:
            self._attempt_failure = f"selector: {error.strerror or error}"
            if (shortage := proto.local_shortage(error, "epoll_create")) is not None:
                self._local_failure(server, shortage)
            return None

    def _tls_refused(self, refusal: NetsemError) -> None:
        with self._lock:
            quiet = self._in_fallback or self._refused is not None  # every retry would say the same
        log.log(logging.DEBUG if quiet else logging.WARNING, "%s", refusal)
        self._attempt_failure = str(refusal)
        self._attempt_refusal = refusal

    def _handshake(self, sock: socket.socket, server: str,
                   parked: _handshake.Parked | None = None) -> proto.Hello | None:
        """HELLO, AUTH, LEASE, STATS and OPTION queued off, pipelined as
        libnetsem sends them (one round trip; netsem._handshake); None when
        the server refuses or does not answer in time, with the reason in
        _attempt_failure, and in _attempt_refusal when it answered no.
        ``parked`` (rule 9): the connection is a silent attempt of an
        earlier round, whose handshake (if it began) goes on for another
        connect_timeout. When the server is silent, the socket and the
        handshake's state go to _attempt_kept, so that the round can keep
        the connection."""
        shake = parked.handshake if parked is not None else None
        if shake is None:
            shake = _handshake.Handshake(self._tags, self._label, self._options.token,
                                         self._options.queue_positions)
            # The server reads HELLO after this: once it answers, it cannot
            # end the session before T after this.
            shake.lease_from = time.monotonic()
        self._leader = None
        deadline = time.monotonic() + self._options.connect_timeout
        with self._lock:
            quiet = self._in_fallback or self._refused is not None
        level = logging.DEBUG if quiet else logging.WARNING

        def refuse(why: str) -> None:
            log.log(level, "server %s refused the session: %s", server, why)
            self._attempt_failure = f"refused the session: {why}"

        def closed(detail: str = "") -> None:
            # No answer: no refusal (unreachable, as a closed port).
            self._attempt_failure = _handshake.closed_early(shake.stage(), detail)
            log.log(level, "server %s %s", server, self._attempt_failure)

        def ended(error: OSError) -> None:
            # The connection died with no word from the server: its host
            # replied to nothing more (NO_REPLY); the server closed nothing.
            self._attempt_failure = _handshake.ended_early(shake.stage(), error)
            log.log(level, "server %s: %s", server, self._attempt_failure)

        def refused(error: NetsemError) -> None:
            log.log(level, "%s", error)
            self._attempt_failure = str(error)
            self._attempt_refusal = error

        selector = self._selector(server)
        if selector is None:
            return None
        out = shake.out
        try:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not shake.done:
                now = time.monotonic()
                left = deadline - now
                if left <= 0:
                    # Connected, no EOF, no reset: silent, no outage (the
                    # round decides; no "refused" warning per attempt).
                    self._attempt_failure = (
                        _handshake.still_silent(shake.stage(), parked.connected_at, now) if parked is not None else
                        _resume.silent_attempt(shake.stage(), self._options.connect_timeout))
                    self._attempt_silent = True
                    self._attempt_kept = (sock, shake)
                    log.debug("server %s: %s", server, self._attempt_failure)
                    return None
                selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
                events = selector.select(left)
                if self._stopping.is_set():
                    return None
                ready = 0
                for key, mask in events:
                    if key.fd == self._wake_r:
                        self._drain_wake()
                    else:
                        ready |= mask
                if ready & selectors.EVENT_WRITE and out:
                    try:
                        sent = _send(sock, out)
                    except OSError as error:
                        self._attempt_timed_out = _handshake.timed_out(error, parked is not None)
                        # A TLS server that refused our certificate has said
                        # why in an alert before it closed: read it.
                        try:
                            _recv(sock)
                        except OSError as alert:
                            if _tls.is_refusal(alert):
                                refused(_tls.refusal(server, alert))
                                return None
                        if _handshake.no_reply(error):
                            ended(error)
                        else:
                            closed(f"write failed: {_tls.broken(error)}")
                        return None
                    del out[:sent]
                if not ready & selectors.EVENT_READ:
                    continue
                try:
                    data = _recv(sock)
                except OSError as error:
                    self._attempt_timed_out = _handshake.timed_out(error, parked is not None)
                    # TLS 1.3 tells of a client certificate refused only now, by an alert.
                    if _tls.is_refusal(error):
                        refused(_tls.refusal(server, error))
                    elif _handshake.no_reply(error):
                        ended(error)
                    else:
                        closed(f"read failed: {_tls.broken(error)}")
                    return None
                if data is None:
                    continue
                verdict = shake.feed(data, server)
                if isinstance(verdict, str):
                    refuse(verdict)
                    return None
                if verdict is not None:
                    refused(verdict)
                    return None
                if not data:
                    closed()
                    return None
        finally:
            selector.close()
        self._lease = shake.lease(self._options.request_timeout, kept=parked is not None)
        self._leader = shake.leader
        self._resumable = shake.session_resumable()
        self._lease_told = bool(shake.lease_timeout)
        self._late = shake.late()
        return shake.hello

    def _session_began(self, server: str, hello: proto.Hello) -> None:
        with self._first_round:
            self._connected = True
            self._session += 1
            counters = self._counters
            counters.connected, counters.server = True, server
            counters.protocol, counters.session_id = hello.version, hello.session_id
            counters.unreachable = ""
            counters.connects += 1
            self._refused = None
            self._silence = None
            counters.silent = False
            if self._in_fallback:
                self._in_fallback = False
                counters.fallback_exits += 1
                log.warning("connected to %s: leaving fallback, names go to the server again", server)
            else:
                log.info("connected to %s", server)
            self._first_round_done = True
            self._first_round.notify_all()

    def _serve(self, sock: socket.socket, resumed: _resume.Mine | None = None, moved: bool = False) -> NetsemError:
        """Serves the session until it ends; returns why it ended. ``resumed``:
        the session was resumed on ``sock`` and MINE answered that: the
        requests sent before and not answered are settled first; ``moved``:
        by a move off a silent server, not after the connection broke."""
        self._sock = sock
        self._out = bytearray()
        self._unanswered = collections.deque()
        # A resumed session's RESUME counts as its last ping (Lease.resumed).
        self._last_sent = self._lease.lease_from if resumed is not None else time.monotonic()
        self._sent_seq = self._read_seq = 0
        self._fell_silent = self._may_resume = False
        if resumed is None:
            self._pending = {}
            self._held.clear()
            for tag in self._late:  # answered while served; nobody waits for it
                self._pending[tag] = Call(tag, 0, b"")
        buffer = proto.LineBuffer()
        with self._lock:
            session = self._session
        try:
            selector = selectors.DefaultSelector()
        except OSError as error:
            # No descriptor left for it (the handshake's was closed a moment
            # ago): the session ends as a broken connection would, and the
            # client connects again.
            self._sock = None
            return Unavailable("the session could not be served: "
                               f"{proto.local_shortage(error, 'epoll_create') or error}")
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        writing = False
        try:
            if resumed is not None:
                self._settle(resumed, moved)
            while True:
                if self._stopping.is_set():
                    self._quit(sock)
                    return Unavailable("the client closed the connection")
                now = time.monotonic()
                with self._lock:
                    outbox, self._outbox = self._outbox, []
                for call in outbox:
                    self._put(call, now)
                # request_timeout is for a request the server has not answered
                # (docs/client.md, "When is a request read"): done with are
                # those it answered (QUEUED counts), and those it may queue
                # (Call.may_wait) sent before one it answered: it reads a
                # session's requests in order, so it read it, and it waits
                # with no answer until its grant under `OPTION queued off`.
                # While one is unanswered the pings go often enough to show
                # that (ping_at). Any other request is answered at once and in
                # order: a later answer without its own is a broken server,
                # and the call fails at request_timeout instead of waiting.
                while self._unanswered and (
                    self._unanswered[0].answered
                    or (self._unanswered[0].may_wait and self._unanswered[0].seq <= self._read_seq)
                ):
                    self._unanswered.popleft()
                # Behind an unanswered CLUSTER request nothing is read: the
                # lease bounds it instead (_resume.expiry_since).
                oldest = _resume.expiry_since(self._unanswered, self._lease.session_timeout)
                if now >= self._lease.ping_at(self._last_sent, oldest):
                    tag = self._tags.next()
                    self._put(Call(tag, session, proto.ping_request(tag)), now)
                    oldest = _resume.expiry_since(self._unanswered, self._lease.session_timeout)
                why = self._lease.check(now, oldest)
                if why is not None:
                    self._fell_silent = True
                    return Unavailable(why)
                quiet = _resume.quiet_since(self._unanswered)  # rule 5's stall: not a queued request
                if not self._lease.stalled(quiet, now):
                    self._move_pace.calm()  # no stall (or it ended): the next move starts afresh
                    if self._move_kept:
                        self._close_move_kept()  # the stall ended: no move now
                move_at = self._move_at(quiet)
                if move_at is not None and now >= move_at:
                    moved = self._move()
                    if moved is not None:
                        return moved
                    continue
                if self._out:
                    self._flush(sock)
                if bool(self._out) != writing:
                    writing = bool(self._out)
                    selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0))
                if self._lingering:
                    self._close_lingering(now)
                move_at = self._move_at(quiet)
                wake_at = min([self._lease.wake_at(self._last_sent, oldest)] + [at for at, _ in self._lingering]
                              + ([move_at] if move_at is not None else []))
                timeout = max(0.001, wake_at - time.monotonic())
                # Between two tries of a move, its kept attempts are watched
                # too (registered for this wait only: the move closes and
                # replaces them): an answer or EOF on one starts the next
                # try at once, as it ends a resume's sleep (rule 10).
                kept = [kept_sock for kept_sock, _ in self._move_kept.values()]
                for kept_sock in kept:
                    selector.register(kept_sock, selectors.EVENT_READ)
                try:
                    events = selector.select(timeout)
                finally:
                    for kept_sock in kept:
                        selector.unregister(kept_sock)
                for key, mask in events:
                    if key.fd == self._wake_r:
                        self._drain_wake()
                    elif key.fileobj is sock:
                        if mask & selectors.EVENT_READ:
                            self._read(sock, buffer)
                    else:
                        self._move_pace.woke()  # a kept attempt answered or closed
        except _Ended as ended:
            return ended.reason
        finally:
            selector.close()
            self._sock = None

    def _put(self, call: Call, now: float) -> None:
        """Loop only: sends ``call`` (buffers its line) and tracks it."""
        self._out += call.line
        call.sent_at = call.readable_at = now
        self._sent_seq += 1
        call.seq = self._sent_seq
        self._unanswered.append(call)
        self._pending[call.tag] = call
        self._last_sent = now

    def _flush(self, sock: socket.socket) -> None:
        try:
            sent = _send(sock, self._out)
        except OSError as error:
            self._may_resume = True
            raise _Ended(Unavailable(f"write failed: {error.strerror or error}")) from None
        del self._out[:sent]

    def _read(self, sock: socket.socket, buffer: proto.LineBuffer) -> None:
        try:
            data = _recv(sock)
        except OSError as error:
            if error.errno == errno.EINTR:
                return
            self._may_resume = True
            raise _Ended(Unavailable(f"read failed: {error.strerror or error}")) from None
        if data is None:
            return
        try:
            lines = buffer.feed(data)
        except ProtocolError:
            raise _Ended(_resume.Broken("the server sent an over-long or binary line")) from None
        # Lines that arrived before the end are still handed out.
        for line in lines:
            self._dispatch(line)
        if not data:
            self._may_resume = True
            raise _Ended(Unavailable("the server closed the connection"))

    def _dispatch(self, line: bytes) -> None:
        """Loop only: hands one answer line to its Call."""
        try:
            reply = proto.parse_line(line)
        except ProtocolError:
            text = line.decode("utf-8", "surrogateescape")
            raise _Ended(_resume.Broken(f"not a netsem answer: {proto.printable(text)}")) from None
        if reply.tag == "*":
            if reply.kind != "ERR":
                return
            if reply.code == "SHUTDOWN":
                self._may_resume = True
                raise _Ended(Shutdown("the server is shutting down"))
            if reply.code == "KICKED":
                # An administrator's KICK: the server has let go of the permits
                # already, as for a closed connection; the client reconnects,
                # and a waiting ACQUIRE fails (not sent again: rule 9). But
                # "resumed on another connection" (rule 11) is a RESUME of
                # ours that a server read late: the session lives on, and is
                # resumed as after a dropped connection (closed, no QUIT).
                ended = _resume.kicked(reply.message)
                self._may_resume = isinstance(ended, _resume.Moved)
                raise _Ended(ended)
            raise _Ended(Unavailable(f"the server ended the session: {proto.printable(reply.text)}"))
        call = self._pending.get(reply.tag)
        if call is None:
            log.debug("answer to no pending request: %s", proto.printable(line.decode("utf-8", "replace")))
            return
        call.answered = True
        self._read_seq = max(self._read_seq, call.seq)
        # The server read it, so it cannot end the session before T after that.
        self._lease.answered(call.sent_at)
        _resume.read_behind(self._unanswered, call, time.monotonic())
        if reply.kind == "QUEUED":
            if self._options.queue_positions:
                log.info('"%s" is queued at position %s', proto.printable(call.line.decode("utf-8", "replace")),
                         reply.text)
            return
        if reply.kind == "ITEM":
            call.items.append(reply.text)
            return
        del self._pending[reply.tag]
        if self._late.pop(reply.tag, None) is not None:
            self._resumable = _resume.parse_resumable(reply) if self._lease_told else None
            return
        self._held.answered(call.line, reply)
        undo = call.complete(reply, None)
        if undo is not None:
            # Its caller is gone: what it was granted goes back at once.
            tag = self._tags.next()
            self._put(Call(tag, call.session, undo(tag)), time.monotonic())

    def _session_ended(self, reason: NetsemError, stop_by: float | None) -> None:
        with self._first_round:
            self._connected = False
            self._empty_rounds_at_end = self._empty_rounds
            self._first_round.notify_all()
            server = self._counters.server
            counters = self._counters
            counters.connected, counters.server, counters.protocol, counters.session_id = False, "", "", 0
            counters.losses += 1
            self._last_loss, self._last_stop_by = reason, stop_by
            calls, self._outbox = self._outbox, []
            permits, self._permits = self._permits, {}
        if self._stopping.is_set():
            log.debug("closed the connection to %s", server)
        else:
            # No fallback yet: the calls wait for the next round (rule 9), and
            # only a round that reaches no server enters it.
            log.warning("lost the connection to %s: %s", server, reason)
        calls.extend(self._pending.values())
        self._pending.clear()
        self._unanswered.clear()
        self._out = bytearray()
        self._held.clear()
        for call in calls:
            call.complete(None, reason)
        for permit in permits.values():
            try:
                permit.mark_lost(reason, stop_by)
            except Exception:  # a loss callback's failure must not stop the I/O thread
                log.exception("a netsem loss callback raised")

    def _quit(self, sock: socket.socket) -> None:
        """Loop only: QUIT, as far as the socket takes it now: the session ends
        at once (a resumable one would otherwise wait for its timeout)."""
        if self._resumable is None:
            return
        try:
            _send(sock, self._out + proto.request(self._tags.next(), "QUIT"))
        except OSError:
            pass

    def _resume(self, reason: NetsemError) -> socket.socket | tuple[NetsemError, float | None]:
        """Loop only: RESUME on the candidates (the leader, then the servers in
        order) until one takes the session or the lease lapses; the connected
        socket (MINE's answer in _resumed_mine), or the loss (reason, stop_by)."""
        assert self._resumable is not None
        began = time.monotonic()
        deadline = self._lease.half_at() or began
        with self._lock:
            self._counters.connected = False
            session_id, old_server = self._counters.session_id, self._counters.server
        log.info("session %d: the connection to %s ended (%s); resuming it", session_id, old_server, reason)
        # Rule 10: each candidate's silent RESUME attempt, kept open for its
        # next attempt of this resume (closed when the resume ends, below);
        # from the start those a move off the silent server kept (a RESUME
        # of this session sent on each: waited on, not abandoned to be read
        # late, rule 11, as libnetsem's move is one resume).
        kept, self._move_kept = self._move_kept, {}
        try:
            return self._resume_on(reason, session_id, began, deadline, kept)
        finally:
            # Resumed on one candidate, lapsed, or the client closes: every
            # other RESUME kept open is closed, without QUIT, as today's
            # abandoned attempts are. A candidate that read its RESUME before
            # the close may still take the session from the one it resumed
            # on; that cannot be known here, and is today's risk with every
            # abandoned RESUME too: no new one. After a lapse the server
            # keeps such a session until T after the RESUME it read, later
            # than the loss's stop_by (_try_resume's "No QUIT"): nothing is
            # granted before the work under the permits has stopped.
            for sock, _ in kept.values():
                sock.close()

    def _resume_on(self, reason: NetsemError, session_id: int, began: float, deadline: float,
                   kept: dict[str, tuple[socket.socket, _handshake.Parked]]
                   ) -> socket.socket | tuple[NetsemError, float | None]:
        """Loop only: _resume's rounds over the candidates, with ``kept``."""
        candidates = self._resume_candidates()
        backoff = self._options.reconnect_min
        failures: list[str] = []
        while not self._stopping.is_set() and time.monotonic() < deadline:
            for host, port in candidates:
                server = proto.endpoint_text(host, port)
                while not self._stopping.is_set() and time.monotonic() < deadline:
                    outcome = self._try_resume(host, port, server, deadline, kept)
                    if outcome != "busy":
                        break
                    self._sleep(min(0.05, max(0.0, deadline - time.monotonic())), kept)
                else:
                    break
                if isinstance(outcome, socket.socket):
                    self._current = (host, port)
                    with self._lock:
                        self._counters.connected, self._counters.server = True, server
                        self._counters.resumes += 1
                        permits = self._resumed_mine.permits()
                    log.info("resumed session %d on %s after %d ms, %d permits kept", session_id, server,
                             round((time.monotonic() - began) * 1000), permits)
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
                    # The server has let go of the permits; after a SHUTDOWN its
                    # next start grants nothing before the lease's end.
                    # A loss after SHUTDOWN keeps its reason.
                    stop_by = self._lease.stop_by() if isinstance(reason, Shutdown) else None
                    kind = Shutdown if isinstance(reason, Shutdown) else Unavailable
                    return kind(f"the session ended after its connection did ({reason}): {why}"), stop_by
                failures.append(f"{server}: {self._attempt_failure or 'no answer'}")
            left = deadline - time.monotonic()
            # A kept attempt that becomes readable ends the sleep (rule 10, as rule 9).
            if left <= 0 or not self._sleep(min(backoff, left), kept):
                break
            backoff = min(backoff * 2, self._options.reconnect_max)
        if self._stopping.is_set():
            return Unavailable("the client closed the connection"), None
        log.warning("session %d could not be resumed within its lease: %s", session_id,
                    "; ".join(failures[-len(candidates):]) or "no server answered")
        return (
            type(reason)(f"{reason}; no server resumed the session within half its session timeout of "
                        f"{round(self._lease.session_timeout * 1000)} ms: the lease on the session's permits ran out"),
            self._lease.stop_by(),
        )

    def _follow_leader(self, sock: socket.socket, host: str, port: int
                       ) -> tuple[socket.socket, str, int, proto.Hello] | None:
        """Loop only, right after a fresh handshake (rule 3): when LEADER named
        another of the configured servers (_resume.follow_target: exact
        host:port over plain TCP, the configured server on its host under
        TLS; a server's own address behind a proxy or NAT is not followed), a
        new session there; the one on ``sock`` is QUIT. None (stay) when there
        is no such leader or it cannot be reached in time."""
        leader = _resume.follow_target(self._leader, (host, port), self._servers, self._tls is not None)
        if leader is None or len(self._servers) < 2:
            return None
        saved = (self._lease, self._resumable, self._leader)
        server = proto.endpoint_text(*leader)
        self._attempt_failure, self._attempt_refusal = "", None
        leader_sock: socket.socket | None = self._connect(*leader)
        if leader_sock is not None and self._tls is not None:
            leader_sock = self._tls_handshake(leader_sock, leader[0], server)
        hello = self._handshake(leader_sock, server) if leader_sock is not None else None
        if leader_sock is None or hello is None:
            if leader_sock is not None:
                leader_sock.close()
            self._lease, self._resumable, self._leader = saved
            log.info("staying on %s: its leader %s cannot be reached (%s)", proto.endpoint_text(host, port), server,
                     self._attempt_failure or "no answer")
            return None
        try:
            _send(sock, bytearray(proto.request(self._tags.next(), "QUIT")))
        except OSError:
            pass
        sock.close()
        log.info("following the leader: %s instead of %s", server, proto.endpoint_text(host, port))
        return leader_sock, leader[0], leader[1], hello

    def _move_at(self, quiet_since: float | None) -> float | None:
        """Loop only: when a silent server makes the session move (rule 5: a
        request other than a queued one unanswered for T/6, _resume.quiet_since,
        other candidates to resume on), or None."""
        if (quiet_since is None or self._resumable is None or self._lease.session_timeout <= 0
                or not [c for c in self._resume_candidates() if c != self._current]):
            return None
        return self._move_pace.at(self._lease.stall_at(quiet_since))

    def _move(self) -> NetsemError | None:
        """Loop only: RESUME on the other candidates while this connection's
        server is silent; once one took the session, why this connection ends
        (the new socket in _moved_to), or the KICK one answered (the session
        ended), else None (tried again a backoff later, _resume.MovePace, on
        the silent attempts this pass kept: _move_kept)."""
        assert self._resumable is not None
        began = time.monotonic()
        deadline = self._lease.half_at() or began
        silent = proto.endpoint_text(*self._current) if self._current else "?"
        for host, port in [c for c in self._resume_candidates() if c != self._current]:
            if self._stopping.is_set() or time.monotonic() >= deadline:
                break
            server = proto.endpoint_text(host, port)
            outcome = self._try_resume(host, port, server, deadline, self._move_kept)
            if isinstance(outcome, socket.socket):
                with self._lock:
                    self._counters.server = server
                    self._counters.resumes += 1
                    permits = self._resumed_mine.permits()
                log.info("resumed session %d on %s after %d ms (%s was silent), %d permits kept",
                         self._resumable.session_id, server, round((time.monotonic() - began) * 1000), silent,
                         permits)
                self._moved_to, self._current = outcome, (host, port)
                return Unavailable(f"the session moved to {server}: {silent} was silent")
            if isinstance(outcome, str) and outcome.startswith("kicked:"):
                # An administrator's KICK, read among RESUME's first answers:
                # the session is gone at every server, as on _resume's path:
                # it ends now (permits lost with no stop-by, a waiting ACQUIRE
                # fails, rule 9), not resumed, and no other server is asked.
                log.warning("session %d was ended by KICK on %s while it moved off %s: %s",
                            self._resumable.session_id, server, silent, outcome[7:])
                self._may_resume = False
                return _resume.ended_by_kick(outcome)
            why = (outcome.partition(":")[2] or outcome) if isinstance(outcome, str) else self._attempt_failure
            log.debug("moving session %d to %s failed: %s", self._resumable.session_id, server, why or "no answer")
        self._move_pace.tried(time.monotonic())
        return None

    def _close_move_kept(self) -> None:
        """Loop only: closes the move's kept RESUME attempts (the stall or the
        connection ended, or the session moved), without QUIT, as _resume
        closes its own: the same risk as every abandoned RESUME, no new one."""
        kept, self._move_kept = self._move_kept, {}
        for sock, _ in kept.values():
            sock.close()

    def _resume_candidates(self) -> list[tuple[str, int]]:
        """Where to RESUME: the last known leader, then the servers in order."""
        leader = self._leader
        if leader is not None and self._tls is not None:
            # LEADER names the plain port: under TLS only a configured server
            # on the leader's host (with its TLS port) is the leader.
            leader = next((server for server in self._servers if server[0] == leader[0]), None)
        candidates: list[tuple[str, int]] = [leader] if leader is not None else []
        return candidates + [server for server in self._servers if server not in candidates]

    def _try_resume(self, host: str, port: int, server: str, deadline: float,
                    kept: dict[str, tuple[socket.socket, _handshake.Parked]] | None = None
                    ) -> socket.socket | str | None:
        """Loop only: one RESUME (with HELLO, AUTH, LEASE, LEADER, MINE
        pipelined) on ``server``: its socket once resumed, "busy" to retry,
        "gone:<why>" when the session ended, "moved" when another RESUME
        took it back (the resume goes on), "kicked:<message>" when a KICK
        ended it, None when unreachable. ``kept`` (rule 10, _resume's): the
        candidates' silent attempts of this resume; ``server``'s is waited on
        again (for another connect_timeout, not past ``deadline``) instead of
        a new connection, and a silent one goes there, open."""
        assert self._resumable is not None
        self._attempt_failure, self._attempt_refusal, self._attempt_refused = "", None, False
        started = time.monotonic()
        limit = min(deadline, started + self._options.connect_timeout)
        sock, parked = kept.pop(server) if kept is not None and server in kept else (None, None)
        again = sock is not None  # this resume's silent attempt, waited on again
        if sock is None:
            sock = self._connect(host, port, limit - time.monotonic())
            parked = _handshake.Parked(time.monotonic())
        assert parked is not None
        if sock is not None and self._tls is not None and parked.resume is None:
            sock = self._tls_handshake(sock, host, server, limit, parked=parked if again else None,
                                       keep=kept is not None)
            if sock is None and self._attempt_kept is not None and kept is not None:
                _handshake.keep_alive(self._attempt_kept[0], self._options.connect_timeout, server)
                kept[server] = (self._attempt_kept[0], parked)  # silent mid-handshake
            self._attempt_kept = None
        if sock is None:
            if self._attempt_refused and len(self._resume_candidates()) == 1:
                # The only server's process is gone, and its sessions with it
                # (a restarted one would answer NOT_FOUND anyway).
                return "gone:the server refused the connection: its sessions ended with its process"
            return None
        attempt = parked.resume_attempt(self._tags, self._resumable, self._label, self._options.token,
                                        self._lease.session_timeout, self._leader)
        out, answers = attempt.out, attempt.answers
        outcome: socket.socket | str | None = None
        selector = self._selector(server)
        if selector is None:
            sock.close()
            return None
        try:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while outcome is None:
                now = time.monotonic()
                left = limit - now
                if left <= 0 or self._stopping.is_set():
                    # Connected, open, unanswered: silent; kept for this
                    # resume's next attempt to this candidate (rule 10).
                    self._attempt_failure = (
                        _handshake.still_silent(answers.stage(), parked.connected_at, now) if again
                        else _resume.silent_attempt(answers.stage(), now - started))
                    if kept is not None and not self._stopping.is_set():
                        # Rule 9a's keepalive, as on a round's kept attempt.
                        _handshake.keep_alive(sock, self._options.connect_timeout, server)
                        kept[server] = (sock, parked)
                        outcome = sock  # not closed below
                    log.debug("server %s: %s", server, self._attempt_failure)
                    return None
                selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
                ready = 0
                for key, mask in selector.select(left):
                    if key.fd == self._wake_r:
                        self._drain_wake()
                    else:
                        ready |= mask
                call = "write"
                try:
                    if ready & selectors.EVENT_WRITE and out:
                        del out[:_send(sock, out)]
                    call = "read"
                    data = _recv(sock) if ready & selectors.EVENT_READ else None
                except OSError as error:
                    self._attempt_failure = _handshake.closed_early(answers.stage(),
                                                                    f"{call} failed: {error.strerror or error}")
                    return None
                if data is None:
                    continue
                if not data:
                    self._attempt_failure = _handshake.closed_early(answers.stage())
                    return None
                verdict = attempt.feed(data)
                self._leader = answers.leader
                if verdict == "done":
                    self._resumed_extra = answers.extra
                    outcome = sock
                elif verdict is not None:
                    return verdict
        finally:
            selector.close()
            if outcome is not sock:
                sock.close()
        if again:  # a session on a kept attempt's socket has a fresh one's options
            _handshake.keep_alive_off(sock, server)
        # The server read RESUME after it was first sent: the lease starts
        # again there (earlier than its reading, on a kept connection: safe),
        # renewed at once by a ping when answered late (Lease.resumed; _serve).
        self._lease = proto.Lease.resumed(answers.session_timeout, self._options.request_timeout, attempt.sent_at,
                                          time.monotonic())
        self._resumed_mine = _resume.parse_mine(answers.mine_items, answers.early_tags)
        return sock

    def _settle(self, mine: _resume.Mine, moved: bool) -> None:
        """Loop only, on the resumed connection: what became of each request
        sent on the old one and not answered there (MINE tells), and of the
        permits MINE no longer shows. ``moved``: the session moved off a
        silent server (_move), which the words of an outcome left unknown say."""
        calls = sorted(self._pending.values(), key=lambda call: call.seq)
        for call in calls:
            call.seq = 0  # the old connection's order; a re-sent one is numbered anew
        settled = _resume.settle([(call.line, call.sent_at) for call in calls], self._held.counts, mine,
                                 time.monotonic(), moved)
        now = time.monotonic()
        for call in calls:
            if call.tag in settled.answer:
                self._dispatch(settled.answer[call.tag].rstrip(b"\n"))
            elif call.tag in settled.resend:
                call.line = settled.resend[call.tag]
                call.answered = False
                self._put(call, now)
            elif call.tag in settled.fail:
                del self._pending[call.tag]
                call.complete(None, Unavailable(settled.fail[call.tag]))
        lost: list[LosablePermit] = []
        with self._lock:
            for name, count in settled.lost.items():
                for key, permit in list(self._permits.items()):
                    if count <= 0:
                        break
                    if getattr(permit, "name", None) == name:
                        del self._permits[key]
                        lost.append(permit)
                        count -= getattr(permit, "count", 1)
        for name, count in settled.lost.items():
            self._held.counts[name] = max(0, self._held.counts.get(name, 0) - count)
        reason = Unavailable("the server no longer holds this permit for the resumed session")
        for permit in lost:
            log.warning("%s: %s", getattr(permit, "name", "?"), reason)
            try:
                permit.mark_lost(reason, None)
            except Exception:
                log.exception("a netsem loss callback raised")
        extra, self._resumed_extra = self._resumed_extra, []
        for line in extra:
            self._dispatch(line)


# TLS records carry at most 16 KiB: a write of at most that much is one
# record, written whole or retried whole (Python's ssl takes no partial writes).
_TLS_CHUNK = 16384


def _send(sock: socket.socket, data: bytearray) -> int:
    """Writes what the socket takes now of ``data``; 0 when it takes nothing
    (a TLS socket that wants to read or write first: retried with the same
    bytes at the front, as OpenSSL requires). OSError when the connection broke."""
    try:
        if isinstance(sock, ssl.SSLSocket):
            return sock.send(data[:_TLS_CHUNK])
        return sock.send(data)
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return 0


def _recv(sock: socket.socket) -> bytes | None:
    """What has arrived: b"" at the end of the connection, None when nothing
    has yet (a TLS record not complete). A TLS socket's decrypted bytes are
    drained whole, since its buffer is invisible to the selector."""
    try:
        data = sock.recv(65536)
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    if isinstance(sock, ssl.SSLSocket):
        while data and sock.pending():
            data += sock.recv(sock.pending())
    return data


def _lookup(host: str, port: int, timeout: float) -> list[tuple]:  # type: ignore[type-arg]
    """getaddrinfo bounded by ``timeout``: a numeric address at once, a name
    in a helper thread that is abandoned when it is slow (getaddrinfo cannot
    be interrupted)."""
    flags = socket.AI_NUMERICHOST
    try:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, flags)
    except socket.gaierror:
        pass
    result: list[object] = []

    def resolve() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as error:
            result.append(error)

    thread = threading.Thread(target=resolve, name="netsem-lookup", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        raise OSError(errno.ETIMEDOUT, f"no address for {host} within {round(timeout * 1000)} ms")
    if isinstance(result[0], OSError):
        error = result[0]
        raise OSError(error.errno, f"{host}: {error.strerror or error}")
    return result[0]  # type: ignore[return-value]
