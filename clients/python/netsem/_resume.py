"""Resuming a session after its connection ended (proposed protocol 1.2:
RESUMABLE, RESUME, MINE; docs/client.md's rules, notes in
docs/python.md, "Sessions that outlive their connection"), the part both
clients share: no I/O, no clock.

API: ``Resumable`` is what RESUMABLE gave (session id and secret);
``resume_requests`` the pipelined lines a new connection sends (RESUME first,
then HELLO, AUTH, LEASE, LEADER, MINE); ``parse_mine`` reads MINE's rows;
``settle`` decides, from MINE, what became of each request sent on the old
connection and not answered there: still queued (its answer comes under the
same tag), answered now (a grant or a release that took effect), re-sent
(with what is left of its timeout), or failed (outcome unknown); and which
held counts MINE no longer shows (those permits are lost). ``HeldCounts``
keeps, from the answers, what the session holds per name, as settle needs it.

``Requeue`` is rule 9 (docs/client.md, "Fallback"): an ACQUIRE whose session
ended while it waited, and was not resumed, is sent again on a new session
with what is left of its timeout; it falls back only when the next round of
connection attempts reaches no server, and a KICK the client saw (``Kicked``)
or a server that broke the protocol (``Broken``) fails it. ``kicked`` tells
that KICK from rule 11's ``Moved`` (a RESUME of ours read late took the
session: it is resumed, as after a dropped connection). A call made
between two sessions (an acquire, a wait, a post, and every other request:
GET, LIST, CREATE, DELETE, ...) waits for that round the same way
(``made_between``) and is sent on the session it finds. Each client waits
for that round its own way (a thread, a task). A silent round (``Silence``:
a server accepted the connection and said nothing) decides nothing: the
wait goes on until the call's timeout (Timeout) or, for a try or a call
without one, request_timeout (``Silent``, an Unavailable); ``NextSession``
is what a wait gave. ``StickySilence`` keeps a server found silent silent
when its connects then time out (its accept queue full), for a bounded time.
``MovePace`` spaces the tries of a move off a silent server (rule 5) as a
resume spaces its rounds, and ``quiet_since`` tells when the stall that
starts one began.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netsem import _protocol as proto
from netsem.errors import NetsemError, ProtocolError, Timeout, Unavailable

# Requests that change nothing: re-sent after a resume when their answer was lost.
_READS = frozenset(
    {"GET", "LIST", "HOLDERS", "WAITERS", "SESSIONS", "STATS", "PING", "LEASE", "MINE", "LEADER", "OPTION",
     "CANCEL", "HELLO", "AUTH"}
)


@dataclass(frozen=True)
class Resumable:
    """The session's id and secret, from RESUMABLE."""

    session_id: int
    secret: str


def parse_resumable(reply: proto.Reply) -> Resumable | None:
    """``OK <session-id> <secret>``; None for anything else (a 1.0/1.1 server's UNKNOWN_VERB)."""
    if reply.kind != "OK" or len(reply.fields) != 2:
        return None
    session_id = proto._uint(reply.fields[0])
    secret = reply.fields[1]
    if not session_id or not 16 <= len(secret) <= 64 or any(c not in "0123456789abcdef" for c in secret):
        return None
    return Resumable(session_id, secret)


def parse_leader(reply: proto.Reply) -> tuple[str, int] | None:
    """``OK <host:port>`` of LEADER; None for an error (BUSY, UNKNOWN_VERB) or a bad address."""
    if reply.kind != "OK" or len(reply.fields) != 1:
        return None
    try:
        return proto.parse_endpoint(reply.fields[0])
    except Exception:
        return None


@dataclass
class Mine:
    """MINE's rows: per name (decoded) the count held and its latest fence; the queued tags;
    and the tags the new connection answered before MINE's END (``answered``: a queued WAIT
    granted between RESUME and MINE, which MINE no longer lists)."""

    held: dict[str, tuple[int, int]] = field(default_factory=dict)
    queued: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)

    def permits(self) -> int:
        """The permits the session holds (an ACQUIRE of 2 counts 2): the resume log's "N permits kept"."""
        return sum(count for count, _fence in self.held.values())


def parse_mine(items: list[str], answered: Iterable[str] = ()) -> Mine:
    """The ITEM texts of MINE (``held <name> <count> <fence>``, ``queued <tag> <name> <count>``),
    with ResumeAnswers.early_tags."""
    mine = Mine(answered=set(answered))
    for text in items:
        fields = text.split(" ")
        if len(fields) == 4 and fields[0] == "held":
            count, fence = proto._uint(fields[2]), proto._uint(fields[3])
            if count is not None and fence is not None:
                mine.held[_name(fields[1])] = (count, fence)
        elif len(fields) == 4 and fields[0] == "queued":
            mine.queued.add(fields[1])
    return mine


def _name(field_text: str) -> str:
    try:
        return proto.decode_name(field_text)
    except Exception:
        return field_text


@dataclass(frozen=True)
class Described:
    """A request line's verb, and for ACQUIRE/WAIT/RELEASE its name, count and timeout (ms, -1: none)."""

    tag: str
    verb: str
    name: str = ""
    count: int = 1
    timeout: int = -1


def describe(line: bytes) -> Described:
    fields = line.decode("utf-8", "surrogateescape").rstrip("\r\n").split(" ")
    tag, verb = fields[0], fields[1] if len(fields) > 1 else ""
    if verb in ("ACQUIRE", "WAIT", "RELEASE") and len(fields) >= 3:
        count = proto._uint(fields[3]) if len(fields) > 3 else 1
        timeout = proto._int(fields[4], -1, 2**62) if len(fields) > 4 else -1
        return Described(tag, verb, _name(fields[2]), count or 1, -1 if timeout is None else timeout)
    return Described(tag, verb)


class HeldCounts:
    """What the session holds per name, as its answers told (ACQUIRE's OK
    adds, RELEASE's OK takes away). Kept by the connection's loop."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def answered(self, line: bytes, reply: proto.Reply) -> None:
        if reply.kind != "OK" or (b" ACQUIRE " not in line and b" RELEASE " not in line):
            return
        request = describe(line)
        if request.verb == "ACQUIRE":
            self.counts[request.name] = self.counts.get(request.name, 0) + request.count
        elif request.verb == "RELEASE":
            left = self.counts.get(request.name, 0) - request.count
            if left > 0:
                self.counts[request.name] = left
            else:
                self.counts.pop(request.name, None)

    def clear(self) -> None:
        self.counts.clear()


@dataclass
class Settled:
    """What to do with each unanswered request (by tag), and the counts lost per name."""

    keep: list[str] = field(default_factory=list)  # still queued: its answer comes under its tag
    answer: dict[str, bytes] = field(default_factory=dict)  # tag -> the answer line it would have had
    resend: dict[str, bytes] = field(default_factory=dict)  # tag -> the line to send again
    fail: dict[str, str] = field(default_factory=dict)  # tag -> why its outcome is unknown
    lost: dict[str, int] = field(default_factory=dict)  # name -> count held no more


# How the old connection ended, in the words of an outcome left unknown (as
# libnetsem's Connection::settle): it broke, or the client moved the session
# off a server that did not answer for T/6 (rule 6), closing it itself.
BROKE = "the connection broke before the answer"
MOVED = ("the client moved the session to another server (the server did not answer for a sixth of its session "
         "timeout) before the answer")
_NO_LONGER_WAITS = ", and the resumed session no longer waits for it (it may have been granted)"
OUTCOME_UNKNOWN = "outcome unknown: " + BROKE
WAIT_UNKNOWN = BROKE + _NO_LONGER_WAITS
MOVED_OUTCOME_UNKNOWN = "outcome unknown: " + MOVED
MOVED_WAIT_UNKNOWN = MOVED + _NO_LONGER_WAITS


def settle(calls: list[tuple[bytes, float]], held: dict[str, int], mine: Mine, now: float,
           moved: bool = False) -> Settled:
    """``calls``: each unanswered request's line and send time, in send
    order; ``held``: what the client knew it held (HeldCounts); ``now`` on
    the same clock as the send times; ``moved``: the client moved the
    session off a silent server (rather than its connection breaking), which
    the words of an outcome left unknown say."""
    out = Settled()
    outcome_unknown = MOVED_OUTCOME_UNKNOWN if moved else OUTCOME_UNKNOWN
    wait_unknown = MOVED_WAIT_UNKNOWN if moved else WAIT_UNKNOWN
    rise = {name: mine.held.get(name, (0, 0))[0] - held.get(name, 0) for name in set(held) | set(mine.held)}
    for line, sent_at in calls:
        request = describe(line)
        tag = request.tag
        if request.verb == "ACQUIRE":
            if tag in mine.queued:
                out.keep.append(tag)
            elif rise.get(request.name, 0) >= request.count:
                rise[request.name] -= request.count
                out.answer[tag] = f"{tag} OK {mine.held[request.name][1]}\n".encode()
            elif request.timeout < 0:
                out.resend[tag] = line
            else:
                left = request.timeout - int((now - sent_at) * 1000)
                if request.timeout > 0 and left <= 0:
                    out.answer[tag] = f"{tag} TIMEOUT\n".encode()
                else:
                    out.resend[tag] = proto.acquire_request(tag, request.name, request.count, max(0, left))
        elif request.verb == "WAIT":
            # Still queued (a grant ends the wait), or answered on the new
            # connection before MINE's END: its answer comes, or came, there.
            # Else it may have been granted unheard (MINE lists no consumed
            # permits).
            if tag in mine.queued or tag in mine.answered:
                out.keep.append(tag)
            else:
                out.fail[tag] = wait_unknown
        elif request.verb == "RELEASE":
            if rise.get(request.name, 0) <= -request.count:
                rise[request.name] += request.count
                out.answer[tag] = f"{tag} OK\n".encode()
            else:
                out.resend[tag] = line
        elif request.verb in _READS:
            out.resend[tag] = line
        else:
            out.fail[tag] = outcome_unknown
    for name, change in rise.items():
        if change < 0:
            out.lost[name] = -change
    return out


def resume_requests(tags: proto.Tags, resumable: Resumable, label: str, token: str) -> tuple[bytes, dict[str, str]]:
    """The lines a new connection sends to resume, and their tags by verb."""
    names = ["RESUME", "HELLO"] + (["AUTH"] if token else []) + ["LEASE", "LEADER", "MINE"]
    tag_of = {name: tags.next() for name in names}
    out = proto.request(tag_of["RESUME"], "RESUME", resumable.session_id, resumable.secret)
    out += proto.hello_request(tag_of["HELLO"], label)
    if token:
        out += proto.auth_request(tag_of["AUTH"], token)
    for verb in ("LEASE", "LEADER", "MINE"):
        out += proto.request(tag_of[verb], verb)
    return out, tag_of


class ResumeAttempt:
    """One RESUME attempt's state, sans I/O: the bytes still to send
    (``out``: the caller removes what the socket took), the partial line
    (``buffer``), the answers read (``answers``) and when RESUME was first
    handed to the socket (``sent_at``, set by _handshake.Parked.resume_attempt:
    the server reads it after, so the lease counts from then). Rule 10: kept with its
    connection when the candidate is silent, and waited on again by the
    resume's next attempt to that candidate."""

    def __init__(self, tags: proto.Tags, resumable: Resumable, label: str, token: str, session_timeout: float,
                 leader: tuple[str, int] | None) -> None:
        out, tag_of = resume_requests(tags, resumable, label, token)
        self.out = bytearray(out)
        self.buffer = proto.LineBuffer()
        self.answers = ResumeAnswers(tag_of, resumable.session_id, session_timeout, leader)
        self.sent_at = 0.0

    def feed(self, data: bytes) -> str | None:
        """ResumeAnswers.feed of what a read brought; "gone:..." for a line
        that is no netsem."""
        try:
            lines = self.buffer.feed(data)
        except ProtocolError:
            return "gone:the server sent an over-long or binary line"
        return self.answers.feed(lines)


class ResumeAnswers:
    """The answers to resume_requests' lines, read as they come, the same for
    netsem.client and netsem.aio (their own code only moves the bytes).
    feed() takes the lines a read brought and returns None while more are
    needed, "done" once MINE's END was read (``extra``: the answers to the
    session's own requests that came after RESUME's OK, before MINE's END or
    after it, to be dispatched after settle; ``early_tags``: the tags of those
    before MINE's END, not QUEUED, for parse_mine), "busy" (RESUME answered BUSY: try again),
    "gone:<why>" (the session cannot be resumed here), "moved" (``* ERR
    KICKED resumed on another connection`` after RESUME's OK: another RESUME
    of the session took it from this one, libnetsem's Resumed::kMoved: one
    of this resume's attempts kept open, which answers when waited on next,
    or one given up on earlier and read late, as rule 11: the resume goes
    on, within the lease), or "kicked:<message>" (any other ``* ERR KICKED`` after
    RESUME's OK and before MINE's END: an administrator ended the session,
    which is not resumed elsewhere and whose waiting ACQUIREs fail, rule 9).
    Before RESUME's OK, other answers are ignored. What was read: ``session_timeout`` (LEASE),
    ``leader`` (LEADER, else as given), ``mine_items`` (MINE's ITEM texts)."""

    def __init__(self, tag_of: dict[str, str], session_id: int, session_timeout: float,
                 leader: tuple[str, int] | None) -> None:
        self._tag_of = tag_of
        self._session_id = session_id
        self._resumed = False
        self.session_timeout = session_timeout
        self.leader = leader
        self.mine_items: list[str] = []
        self.extra: list[bytes] = []
        self.early_tags: set[str] = set()
        self._answered: set[str] = set()  # the verbs answered (MINE: its END)

    def stage(self) -> tuple[str, str]:
        """("RESUME" once answered, else "", the first request still
        unanswered), in the order sent, for the silent texts."""
        if "RESUME" not in self._answered:
            return "", "RESUME"
        missing = next((verb for verb in self._tag_of if verb not in self._answered), "MINE")
        return "RESUME", missing

    def feed(self, lines: list[bytes]) -> str | None:
        tag_of = self._tag_of
        for index, line in enumerate(lines):
            try:
                reply = proto.parse_line(line)
            except ProtocolError:
                return f"gone:not a netsem answer: {proto.printable(line.decode('utf-8', 'replace'))}"
            verb = next((verb for verb, tag in tag_of.items() if tag == reply.tag), "")
            if verb != "MINE" or reply.kind != "ITEM":
                self._answered.add(verb)
            if reply.tag == tag_of["RESUME"]:
                if reply.kind == "OK":
                    self._resumed = True
                    continue
                if reply.code == "BUSY":
                    return "busy"
                return f"gone:RESUME answered {proto.printable(reply.text)}"
            if not self._resumed:
                continue
            if reply.tag == "*":
                if reply.kind == "ERR" and reply.code == "KICKED":
                    if reply.message == RESUMED_ELSEWHERE:
                        return "moved"
                    return f"kicked:{proto.printable(reply.message)}"
                continue  # a SHUTDOWN is followed by the connection's end
            if reply.tag == tag_of["HELLO"]:
                try:
                    hello = proto.parse_hello(reply)
                except ProtocolError:
                    return f"gone:HELLO answered {proto.printable(reply.text)}"
                if hello.session_id != self._session_id:
                    return f"gone:HELLO answered session {hello.session_id}"
            elif reply.tag == tag_of.get("AUTH"):
                if not proto.auth_accepted(reply):
                    return f"gone:AUTH answered {proto.printable(reply.text)}"
            elif reply.tag == tag_of["LEASE"]:
                timeout = proto.lease_timeout(reply)
                if timeout:
                    self.session_timeout = timeout
            elif reply.tag == tag_of["LEADER"]:
                self.leader = parse_leader(reply) or self.leader
            elif reply.tag == tag_of["MINE"]:
                if reply.kind == "ITEM":
                    self.mine_items.append(reply.text)
                elif reply.kind == "END":
                    self.extra += lines[index + 1:]  # a grant already: the session's
                    return "done"
                else:
                    return f"gone:MINE answered {proto.printable(reply.text)}"
            else:
                # An answer to one of the session's requests (a queued one's grant).
                self.extra.append(line)
                if reply.kind != "QUEUED":
                    self.early_tags.add(reply.tag)
        return None


class Kicked(Unavailable):
    """The server ended the session by an administrator's KICK, told on the
    live connection (``* ERR KICKED``): the permits are lost, and a waiting
    ACQUIRE fails rather than being sent again (rule 9)."""


class Moved(Unavailable):
    """Rule 11: the server moved the served session to another connection
    (``* ERR KICKED resumed on another connection``), for a RESUME of it
    read there: one this client gave up on (only it holds the secret), read
    late by a stalled or frozen server. The session lives on at the server:
    this connection is closed without QUIT and the session resumed, as after
    any dropped connection, within the same lease."""


# The message of the `* ERR KICKED` a server sends on the connection whose
# session a RESUME took (netsemd's dispatcher_resume.cc; libnetsem's
# kResumedElsewhere), compared whole.
RESUMED_ELSEWHERE = "resumed on another connection"


def kicked(message: str) -> Kicked | Moved:
    """Why a served session ended on ``* ERR KICKED <message>``: Moved
    (rule 11: resume it) for RESUMED_ELSEWHERE, else an administrator's
    KICK."""
    if message == RESUMED_ELSEWHERE:
        return Moved(f"the server moved the session to another connection ({RESUMED_ELSEWHERE}: a RESUME this "
                     "client gave up on, read late)")
    return Kicked(f"the server ended the session by KICK: {proto.printable(message)}")


class Broken(Unavailable):
    """The client ended the session because the server broke the protocol (a
    line that is no netsem answer, an over-long or binary one): a waiting
    ACQUIRE fails rather than being sent again to a server that will do the
    same (rule 9)."""


class Silent(Unavailable):
    """A call with no timeout of its own that waited request_timeout while
    the servers accepted the connection but did not answer (``Silence``): no
    outage, so it is not served locally either (value() and test_flag() do
    not fall back on it as on "no server reachable")."""


# Why a server may take the connection and say nothing: no outage (the
# servers' holders may hold), so no fallback.
_SILENT_WHY = "busy, electing a leader or syncing its disk"


@dataclass(frozen=True)
class Silence:
    """A round of connection attempts in which no server gave a session,
    none refused, none failed for want of this process's resources, and at
    least one (``servers``) accepted the connection and then did not answer
    its TLS or session handshake within ``within`` (connect_timeout,
    seconds), the connection still open: SILENT, no outage (docs/client.md,
    "A server that accepts and does not answer")."""

    servers: tuple[str, ...]
    within: float

    def _who(self) -> str:
        return f"server {self.servers[0]}" if len(self.servers) == 1 else f"servers {', '.join(self.servers)}"

    def text(self) -> str:
        """``server 127.0.0.1:7411 accepted the connection but did not answer within 1000 ms``."""
        return f"{self._who()} accepted the connection but did not answer within {round(self.within * 1000)} ms"

    def warning(self) -> str:
        """The round's log line (a warning once per streak of silent rounds)."""
        return f"{self.text()} ({_SILENT_WHY}): not an outage, so no fallback; the client keeps trying"

    def timed_out(self, what: str) -> Timeout:
        """An acquire or wait whose own timeout ran out while the last round was silent."""
        return Timeout(f"{what}: timed out ({self.text()}: not an outage, so no fallback)")

    def unavailable(self, what: str, request_timeout: float) -> Silent:
        """A call with no timeout of its own at request_timeout while the last round is silent."""
        return Silent(f"{what}: {self._who()} accepted the connection but has not answered within "
                      f"{round(request_timeout * 1000)} ms: not an outage, so no fallback")


def quiet_since(unanswered: Iterable[Any]) -> float | None:
    """Rule 5 (docs/client.md, "Silence on an open connection"): since when
    the oldest request still unanswered that the server answers at once could
    be read (``readable_at`` of the first of ``unanswered``, in send order,
    neither ``answered`` nor ``may_wait``: its send, or the answer to a
    CLUSTER request before it); None when there is none. An ACQUIRE or
    WAIT the server may queue rightly waits with no answer, read or not:
    only the pings behind it tell a silent server, so it never starts a
    stall (with it, a queued ACQUIRE made both clients move a healthy
    session T/6 after its send, the moment its first ping went). Nor does
    anything behind an unanswered CLUSTER ADD, REMOVE or FENCES
    (``holds_line``), which the server does not read before it answers that
    one (seconds for an ADD): libnetsem's newuser25 finding, an ADD that
    moved the session and lost its answer. The first 64 are looked at, as
    libnetsem does."""
    for call in itertools.islice(unanswered, 64):
        if not call.answered and call.holds_line:
            return None
        if not call.answered and not call.may_wait:
            return float(call.readable_at)
    return None


def expiry_since(unanswered: Iterable[Any], session_timeout: float) -> float | None:
    """Since when request_timeout counts for the first of ``unanswered``
    (its ``readable_at``); None when there is none, or when it is an
    unanswered CLUSTER ADD, REMOVE or FENCES (``holds_line``) on a session
    with a lease (``session_timeout`` > 0): the lease bounds it instead, T/2
    with no answer (an ADD waits for the new server to catch up), as in
    libnetsem (docs/client.md, "When is a request read")."""
    for call in unanswered:
        if call.holds_line and not call.answered and session_timeout > 0:
            return None
        return float(call.readable_at)
    return None


def read_behind(unanswered: Iterable[Any], answered: Any, now: float) -> None:
    """``answered`` was a CLUSTER request the server read nothing behind
    (``holds_line``) until it answered, just now: the requests sent after it
    count their request_timeout and silence from ``now`` (``readable_at``),
    not from their send, seconds ago for an ADD (they would have moved a
    healthy session at once). Their lease still counts from their send."""
    if not answered.holds_line:
        return
    for call in unanswered:
        if call.seq > answered.seq and not call.answered:
            call.readable_at = max(call.readable_at, now)


class MovePace:
    """When the next try of a move off a silent server goes (rule 5,
    docs/client.md, "Silence on an open connection"), sans clock: as
    libnetsem, whose move is its resume, its tries are a resume's rounds.
    The first goes once a request has been unanswered for T/6 (the stall);
    each later one a backoff after the previous one ended, from
    reconnect_min, doubling to reconnect_max, until the lease lapses (the
    move's deadline). An answer or EOF on a kept attempt of the move starts
    the next try at once (``woke``), as it ends a resume's sleep; the
    backoff doubles all the same, as there. A stall that ends (``calm``)
    resets it: the next stall's move starts afresh, as libnetsem's next
    resume does. (Before, both Python clients tried again T/6 after a try
    began: two or three tries in a lease, where libnetsem makes about a
    dozen with the default backoff.)"""

    def __init__(self, reconnect_min: float, reconnect_max: float) -> None:
        self._min, self._max = reconnect_min, reconnect_max
        self._backoff = reconnect_min
        self._next = 0.0  # monotonic; 0: at the stall

    @property
    def next_try(self) -> float:
        """When the next try goes once the stall has begun (0: at once)."""
        return self._next

    def at(self, stall_at: float) -> float:
        """When the next try goes, given when the stall began (``stall_at``)."""
        return max(stall_at, self._next)

    def tried(self, now: float) -> None:
        """A try ended at ``now`` without moving the session."""
        self._next = now + self._backoff
        self._backoff = min(self._backoff * 2, self._max)

    def woke(self) -> None:
        """A kept attempt answered or ended between two tries: the next goes now."""
        self._next = 0.0

    def calm(self) -> None:
        """No stall now: the next move starts at its stall, from reconnect_min."""
        self._backoff, self._next = self._min, 0.0


class StickySilence:
    """Rule 8 (docs/client.md, "A server that accepts and does not answer"):
    a server found silent may be frozen, and each silent attempt leaves one
    connection in its accept queue until it runs again; once the queue is
    full the kernel drops the SYN, and connect() times out. So, per server
    (as configured), from the end of its first silent attempt in a streak
    (the server may have answered others until just before it),
    a connect timeout to it counts as silent too, for T (the session timeout
    last learnt from a session): every holder of a permit that server
    granted before it froze stops before then (its lease). With no T known
    (no session yet, or a server without session timeouts) no time is safe,
    and it counts as silent for the whole streak. A session
    with any server ends the streak (``session``); any other outcome of an
    attempt to that server (refused, reset, closed, an answer) forgets it; a
    failure of this process's own resources says nothing and keeps it."""

    def __init__(self) -> None:
        self._first: dict[str, float] = {}  # server -> end of its first silent attempt (monotonic)

    def session(self) -> None:
        """A round found a session: the streak ends."""
        self._first.clear()

    def lapsed(self, server: str, now: float, session_timeout: float) -> bool:
        """Rule 9: whether the bound of ``server``'s streak has ended (T > 0
        known, and T since the end of its first silent attempt). Then it is
        forgotten: the silent attempt kept open is closed and the round
        connects anew, starting a new streak (a silent attempt is kept again,
        with a bound from its own end, later, so only more conservative; a
        connect timeout is an outage, as after the bound)."""
        first = self._first.get(server)
        if first is None or session_timeout <= 0 or now < first + session_timeout:
            return False
        del self._first[server]
        return True

    def failed(self, server: str, why: str, outcome: str, now: float, session_timeout: float) -> str | None:
        """An attempt to ``server`` failed at ``now`` with ``why``; ``outcome``: "silent", "timeout" (connect()
        timed out, or got no reply from the host: _handshake.NO_REPLY), "local" (this process's resources)
        or "other". Returns
        the stats().unreachable entry (after "<server>: ") when a connect
        timeout counts as silent; else None (the attempt is what it was)."""
        if outcome == "silent":
            self._first.setdefault(server, now)
            return None
        first = self._first.get(server)
        if first is None or outcome == "local":
            return None
        if outcome == "timeout":
            if session_timeout <= 0:
                return f"{why}, after it accepted and did not answer: still taken as silent: no session timeout known"
            left = first + session_timeout - now
            if left > 0:
                return (f"{why}, after it accepted and did not answer: still taken as silent for "
                        f"{round(left * 1000)} ms")
        del self._first[server]
        return None


def entering_fallback(unreachable: str) -> str:
    """The warning of a round that reached no server (the only one that enters
    fallback; ``unreachable``: its failures, server by server, as in
    stats().unreachable), libnetsem's words."""
    return (f"entering fallback: no server reachable ({unreachable}); until a server answers, calls are served by "
            "their names' fallback policy, and the client keeps reconnecting")


def silent_attempt(stage: tuple[str, str], within: float) -> str:
    """One attempt's entry in stats().unreachable (after "<server>: "):
    ``stage``: (the first request if answered, else "", the first one
    unanswered: "HELLO", "RESUME", "the TLS handshake", ...)."""
    answered, missing = stage
    said = f"and answered {answered} but not {missing}" if answered else f"but did not answer {missing}"
    return f"accepted the connection {said} within {round(within * 1000)} ms"


@dataclass(frozen=True)
class NextSession:
    """What Connection.await_session gave, read under the lock that decided
    it: ``session`` is the new session's number (> 0), 0 when a round that
    decided reached no server, -1 when the deadline passed or the caller
    cancelled, SILENT when the caller's request_timeout passed while the
    last round was silent, CLOSING when the client closes; ``silence``, the
    last round's when it was silent; ``refusal``, with 0, that round's
    refusal (or IoError: this process could not try the servers), which the
    call raises instead of falling back (None: no server reachable)."""

    session: int
    silence: Silence | None = None
    refusal: NetsemError | None = None

    CLOSING = -2
    SILENT = -3


@dataclass(frozen=True)
class Unsent:
    """What Connection.between() says when send() found no session, read
    under one lock: ``after``, the after to pass to await_session when the
    call waits for a round (between two sessions, or after a silent round);
    else (None) the last round decided, and ``refusal`` is its refusal (or
    IoError), which the call raises, or None: no server reachable, the call
    falls back (or fails "no server reachable")."""

    after: int | None
    refusal: NetsemError | None = None


def after_of(connected: bool, session: int, silence: Silence | None, failed_since_end: bool) -> int | None:
    """Unsent.after of either client, once it is neither closing nor
    stopped: the ``after`` for await_session while connected (a session began
    since send() found none: it is answered at once), after a silent round,
    or between two sessions (``session`` ended and no round failed since:
    not ``failed_since_end``); None when the caller decides now (no session
    ever, or the last round decided)."""
    if connected:
        return session - 1
    if silence is not None:
        return session
    if session == 0 or failed_since_end:
        return None
    return session


def wait_bound(silence: Silence | None, cancelled: bool, now: float, deadline: float | None,
               silent_until: float | None) -> NextSession | float | None:
    """await_session of either client, when no round has decided yet: the
    NextSession to answer now (cancelled or ``deadline`` passed: -1;
    ``silent_until`` passed while the last round is silent: SILENT), else how
    long to wait at most (None: no bound)."""
    if cancelled or (deadline is not None and deadline <= now):
        return NextSession(-1, silence)
    if silence is not None and silent_until is not None and silent_until <= now:
        return NextSession(NextSession.SILENT, silence)
    ends = [at - now for at in (deadline, silent_until) if at is not None]
    return min(ends) if ends else None


class Requeue:
    """Rule 9 for one ACQUIRE (``what``: 'ACQUIRE "name"'), sans I/O: whether
    the end of its session fails it (``refusal``), the timeout to send it again
    with (``timeout``), and the log line (``sent_again``)."""

    def __init__(self, what: str, timeout: float | None, deadline: float | None, *, untimed: bool = False) -> None:
        self.what = what
        # A request without a timeout of its own (POST, a read, CREATE,
        # DELETE, ...): the round alone bounds its wait, as a try's.
        self.untimed = untimed
        self.is_try = untimed or (timeout is not None and timeout <= 0)
        self.deadline = None if untimed else deadline  # time.monotonic() when it gives up; None: never
        self.why = ""  # why the last session ended
        # Made between two sessions (review19 item 8): not sent yet, it waits
        # for the round of connection attempts under way.
        self.unsent = False
        # The last round it waited on was silent (a Silence), and until when a
        # try or an untimed request waits across silent rounds.
        self.silence: Silence | None = None
        self._silent_until: float | None = None

    def refusal(self, failure: NetsemError) -> NetsemError | None:
        """None when the ACQUIRE may be sent again after ``failure`` ended its
        session; else what the caller raises: a KICK it saw (an operator's
        decision), a server that broke the protocol, or a failure that is no
        end of a session (the client's own I/O failed: no outage, no
        fallback)."""
        if isinstance(failure, (Kicked, Broken)):
            return Unavailable(f"{self.what}: {failure.message}; the request is not sent again")
        if not isinstance(failure, Unavailable):
            return failure
        self.why = failure.message
        self.unsent = False
        return None

    def timeout(self, now: float) -> float | None:
        """The timeout of the request sent again at ``now``: what is left of the
        caller's (a try stays a try, 0, as does an untimed request; None:
        still none). Raises Timeout when nothing is left, as the caller asked."""
        if self.is_try:
            return 0.0
        if self.deadline is None:
            return None
        left = self.deadline - now
        if left <= 0:
            raise self.timed_out()
        return left

    def next_session(self, waited: NextSession, request_timeout: float) -> bool:
        """What the wait for the next session gave (Connection.await_session's
        answer): True to send on ``waited.session``, False to fall back (that
        round reached no server). Raises that round's refusal (a server that
        answered no is not an outage), Unavailable when the client closes,
        Timeout when the deadline passed, and Silent when a try or an
        untimed request waited ``request_timeout`` across silent rounds."""
        self.silence = waited.silence
        if waited.session == 0 and waited.refusal is not None:
            raise waited.refusal
        if waited.session == NextSession.CLOSING:
            raise Unavailable("the client is closed")
        if waited.session == NextSession.SILENT:
            assert waited.silence is not None
            raise waited.silence.unavailable(self.what, request_timeout)
        if waited.session < 0:
            raise self.timed_out()  # the deadline passed
        return waited.session != 0

    def wait_until(self) -> float | None:
        """Until when to wait for the next session: the deadline, but none for
        a try, whose next round decides (it is sent again as a try)."""
        return None if self.is_try else self.deadline

    def silent_until(self, now: float, request_timeout: float) -> float | None:
        """Until when a try or an untimed request waits while the rounds are
        silent (request_timeout from its first wait); None for an acquire or
        wait with a timeout (its deadline bounds it) or without one (it waits
        until a round decides)."""
        if not self.is_try:
            return None
        if self._silent_until is None:
            self._silent_until = now + request_timeout
        return self._silent_until

    def timed_out(self) -> Timeout:
        if self.silence is not None:
            return self.silence.timed_out(self.what)
        if self.unsent:
            return Timeout(f"{self.what}: timed out (made between two sessions; the next round of connection "
                           "attempts had not ended)")
        return Timeout(f"{self.what}: timed out (its session ended while it waited: {self.why})")

    def sent_again(self, server: str, timeout: float | None) -> str:
        """The info line: where it went, with how much time left."""
        left = ("" if self.untimed else ", no timeout" if timeout is None else ", as a try" if self.is_try
                else f", {round(timeout * 1000)} ms left")
        if self.unsent:
            return f"{self.what}: made between two sessions; sent on the new session to {server}{left}"
        return (f"{self.what}: the session ended while it waited ({self.why}); sent again on a new session to "
                f"{server}{left}")


def made_between(what: str) -> Requeue:
    """Rule 9 for a request without a timeout of its own (``what``: 'POST
    "name"', 'GET "name"', 'LIST', ...) that found no session because the
    client is between two sessions (review19 item 8; issue 16): it waits for
    the round of connection attempts under way, however long that round
    takes, and is sent on the session the round finds; only a round that
    reaches no server makes it fall back or fail "no server reachable"."""
    gap = Requeue(what, None, None, untimed=True)
    gap.unsent = True
    return gap


def ended_by_kick(verdict: str) -> Kicked:
    """The session's end for ResumeAnswers' "kicked:<message>"."""
    return Kicked(f"the server ended the session by KICK: {verdict.partition(':')[2]}")


def follow_target(leader: tuple[str, int] | None, current: tuple[str, int], servers: list[tuple[str, int]],
                  tls: bool) -> tuple[str, int] | None:
    """Rule 3: where a fresh session on ``current`` moves when LEADER named
    ``leader``, or None (it stays). Only one of the configured ``servers``:
    over plain TCP the leader's exact host:port (a leader's own address
    behind a proxy or NAT is not one); under TLS, where LEADER names the plain
    port, the configured server on the leader's host (the last, as
    libnetsem's leader_to_reach). Never the current one, nor a wildcard."""
    if leader is None or leader[0] in ("", "0.0.0.0", "::"):
        return None
    target: tuple[str, int] | None = None
    for server in servers:
        if (server[0] == leader[0]) if tls else (server == leader):
            target = server
    return target if target != current else None
