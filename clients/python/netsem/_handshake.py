"""The session handshake of both Python clients, sans I/O: the requests a new
connection opens with (HELLO, AUTH, LEASE, LEADER, STATS, OPTION queued off,
RESUMABLE, pipelined as libnetsem sends them) and what their answers say.

``Handshake`` holds the whole handshake's state (the bytes still to send, the
partial line, which requests are answered), so that an attempt whose server
accepted the connection and said nothing within connect_timeout can be kept
open ("parked") and waited on again by the next round, exactly as if the
handshake had had more time (rule 9, docs/client.md "A server that accepts and
does not answer"). netsem.client (``_connection.py``) and netsem.aio
(``_aio_connection.py``) do the I/O; ``Parked`` is what either keeps of such
an attempt besides its socket.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from netsem import _protocol as proto
from netsem import _resume
from netsem import _tls
from netsem.errors import NetsemError, ProtocolError

log = logging.getLogger("netsem")


class Handshake:
    """One connection's handshake. ``out``: the bytes still to send (the
    caller removes what the socket took); ``feed`` the bytes read; ``done``
    once HELLO, LEASE, LEADER and STATS are answered (RESUMABLE is not waited
    for: in a cluster it waits for a commit, and its answer may come while
    the session is served: ``late``). ``lease_from``: when HELLO was first
    handed to the socket (the caller sets it): the server reads HELLO after
    it, so once it answers it cannot end the session before T after it
    (on a kept connection, ``lease`` counts from the handshake's end)."""

    def __init__(self, tags: proto.Tags, label: str, token: str, queue_positions: bool) -> None:
        self.buffer = proto.LineBuffer()
        self.hello_tag, self.lease_tag, self.stats_tag = tags.next(), tags.next(), tags.next()
        out = proto.hello_request(self.hello_tag, label)
        # AUTH before everything else the session asks: the server answers
        # the requests behind it once the token is checked.
        self.auth_tag = ""
        if token:
            self.auth_tag = tags.next()
            out += proto.auth_request(self.auth_tag, token)
        # The session timeout T from LEASE (every session may ask), else from
        # STATS (a 1.0/1.1 server answers LEASE UNKNOWN_VERB; STATS needs an
        # unlimited read right). STATS also tells a client without a token
        # that the server requires one (ERR AUTH), before the session begins.
        # RESUMABLE (the session outlives its connection: it can be resumed)
        # and LEADER (the cluster's leader, the first to resume on): proposed
        # 1.2, a 1.0/1.1 server answers UNKNOWN_VERB, which is no refusal.
        self.resumable_tag, self.leader_tag = tags.next(), tags.next()
        out += proto.request(self.lease_tag, "LEASE") + proto.request(self.leader_tag, "LEADER")
        out += proto.request(self.stats_tag, "STATS")
        # Pipelined and not waited for: a 1.0 server answers UNKNOWN_VERB,
        # which is no refusal.
        self.option_tag = ""
        if not queue_positions:
            self.option_tag = tags.next()
            out += proto.option_queued_request(self.option_tag, False)
        out += proto.request(self.resumable_tag, "RESUMABLE")
        self.out = bytearray(out)
        self.lease_from = 0.0
        self.hello: proto.Hello | None = None
        self.stats_done = self.lease_done = self.leader_done = self.resumable_done = self.auth_done = False
        self.session_timeout = 0.0  # from STATS
        self.lease_timeout: float | None = None  # from LEASE
        self.resumable: _resume.Resumable | None = None
        self.leader: tuple[str, int] | None = None

    @property
    def done(self) -> bool:
        return self.hello is not None and self.stats_done and self.lease_done and self.leader_done

    def feed(self, data: bytes, server: str) -> NetsemError | str | None:
        """The answers in ``data``: None while the handshake goes on (or is
        done), a NetsemError when the server refused (ERR, LIMIT, AUTH, a line
        that is no netsem), a str when it answered something no refusal
        describes (the caller's "refused the session: <str>")."""
        try:
            lines = self.buffer.feed(data)
        except ProtocolError:
            return ProtocolError(f"server {server} does not speak netsem protocol v1: it sent an over-long or "
                                 "binary line")
        for line in lines:
            raw = line.decode("utf-8", "replace")
            text = proto.printable(raw)
            try:
                reply = proto.parse_line(line)
            except ProtocolError:
                return ProtocolError(f'server {server} does not speak netsem protocol v1: it answered "{text}"')
            if self.option_tag and reply.tag == self.option_tag:
                if reply.kind == "OK":
                    continue
                if reply.kind == "ERR" and reply.code in ("UNKNOWN_VERB", "BAD_ARG"):
                    log.debug("server %s keeps telling queue positions: %s", server, text)
                    continue
            if self.auth_tag and reply.tag == self.auth_tag:
                if proto.auth_accepted(reply):
                    log.debug("server %s: AUTH answered %s", server, text)
                    self.auth_done = True
                    continue
                token_refusal = proto.auth_refusal(server, reply)
                if token_refusal is not None:
                    return token_refusal
            if reply.tag == self.lease_tag:
                self.lease_done = True
                self.lease_timeout = proto.lease_timeout(reply)
                if self.lease_timeout is None:
                    log.debug("server %s has no LEASE: %s", server, text)
                continue
            if reply.tag == self.resumable_tag:
                self.resumable_done = True
                self.resumable = _resume.parse_resumable(reply)
                if self.resumable is None:
                    log.debug("server %s has no RESUMABLE: %s", server, text)
                continue
            if reply.tag == self.leader_tag:
                self.leader_done = True
                self.leader = _resume.parse_leader(reply)
                continue
            if reply.tag == self.stats_tag and reply.kind == "ERR" and reply.code == "DENIED":
                # Rights without an unlimited read (a token's, a certificate
                # subject's): no refusal; T comes from LEASE, or stays unknown
                # against a 1.1 server, as from a server without one.
                log.debug("server %s keeps its STATS from this session: %s", server, text)
                self.stats_done = True
                continue
            if reply.kind != "OK":
                refusal = proto.refusal(server, reply, raw)
                return text if refusal is None else refusal
            if reply.tag == self.hello_tag:
                try:
                    self.hello = proto.parse_hello(reply)
                except ProtocolError:
                    return ProtocolError(f'server {server} does not speak netsem protocol v1: it answered '
                                         f'HELLO with "{text}"')
            elif reply.tag == self.stats_tag:
                self.stats_done = True
                self.session_timeout = proto.session_timeout(reply)
        return None

    def stage(self) -> tuple[str, str]:
        """(the first request if answered, else "", the first request still
        unanswered), in the order sent, for the silent texts (``silence``)."""
        if self.hello is None:
            return "", "HELLO"
        waited = [("AUTH", self.auth_done or not self.auth_tag), ("LEASE", self.lease_done),
                  ("LEADER", self.leader_done), ("STATS", self.stats_done)]
        return "HELLO", next((verb for verb, done in waited if not done), "STATS")

    def lease(self, request_timeout: float, kept: bool = False) -> proto.Lease:
        """The session's lease once done: T from LEASE, else from STATS, from
        ``lease_from``. ``kept`` (rule 9b): the session begins on a connection
        kept open from an earlier round, and its lease counts from now, when
        the handshake ended: it holds nothing yet, and a permit is granted
        only in answer to a request sent after this, whose send time then
        counts (Lease.answered). From the first HELLO, a server that answered
        more than T/2 after it was judged silent the moment the session began."""
        if kept:
            self.lease_from = time.monotonic()
        timeout = self.lease_timeout if self.lease_timeout is not None else self.session_timeout
        return proto.Lease(timeout, request_timeout, self.lease_from)

    def late(self) -> dict[str, str]:
        """The handshake requests still unanswered once done (RESUMABLE)."""
        return {} if self.resumable_done else {self.resumable_tag: "RESUMABLE"}

    def farewell(self, tags: proto.Tags) -> bytes:
        """Rule 9c: what to write on a kept attempt before it is closed (a
        session began elsewhere, the client stops, rule 8's bound): what is
        left of the handshake and QUIT behind it, so that the server, once
        it reads them, ends that session at once instead of keeping it
        resumable for T (it holds nothing: nothing was asked but the
        handshake). Best effort: written as far as the socket takes it now."""
        return bytes(self.out) + proto.request(tags.next(), "QUIT")

    def session_resumable(self) -> _resume.Resumable | None:
        """Resumed only with a session timeout told by LEASE: without one the
        server ends the session with its connection anyway."""
        return self.resumable if self.lease_timeout else None


@dataclass
class Parked:
    """Rule 9: what a client keeps of a silent attempt besides its socket:
    when it connected (``connected_at``, monotonic), and its ``handshake``
    (None while the TLS handshake has not finished). Rule 10 (a silent
    RESUME attempt kept within one resume): its ``resume`` instead (None
    while the TLS handshake has not finished)."""

    connected_at: float
    handshake: Handshake | None = None
    resume: _resume.ResumeAttempt | None = None

    def stage(self) -> tuple[str, str]:
        """What the server answered of the handshake kept: (answered, missing)
        as Handshake.stage; the TLS handshake while it has not finished."""
        if self.handshake is not None:
            return self.handshake.stage()
        if self.resume is not None:
            return self.resume.answers.stage()
        return "", "the TLS handshake"

    def resume_attempt(self, tags: proto.Tags, resumable: _resume.Resumable, label: str, token: str,
                       session_timeout: float, leader: tuple[str, int] | None) -> _resume.ResumeAttempt:
        """Rule 10: this connection's RESUME attempt, begun on first use
        (its lines handed to the socket from now: the lease counts from
        ``sent_at``, now) and the same one, time included, when the
        connection is waited on again (earlier is safe)."""
        if self.resume is None:
            self.resume = _resume.ResumeAttempt(tags, resumable, label, token, session_timeout, leader)
            self.resume.sent_at = time.monotonic()
        return self.resume


def still_silent(stage: tuple[str, str], connected_at: float, now: float) -> str:
    """A kept attempt's entry in stats().unreachable (after "<server>: ")
    when the server is still silent; ``stage``: (the first request if
    answered, else "", the first one unanswered: "HELLO", "RESUME", "the
    TLS handshake", ...), as Handshake.stage."""
    answered, missing = stage
    said = f"has answered {answered} but not {missing}" if answered else f"has not answered {missing}"
    return (f"accepted the connection {round((now - connected_at) * 1000)} ms ago and {said} "
            "(the same connection, kept open)")


def closed_early(stage: tuple[str, str], detail: str = "") -> str:
    """An attempt's entry (after "<server>: ") when the server closed or reset
    the connection before the handshake's end: no answer, so no refusal
    (unreachable, as a closed port); ``detail``: the failed call and its
    error ("read failed: Connection reset by peer")."""
    answered, missing = stage
    return f"closed the connection before answering{f' {missing}' if answered else ''}" + (
        f" ({detail})" if detail else "")


# The errors by which a connection to the server's host fails, or a kept one
# ends, with no reply from that host (libnetsem's no_reply): a timeout, and
# what the kernel reports once the host's ARP (neighbour) entry failed (about
# 3 s of unanswered requests on the client's own segment) or a router could
# not reach it (ICMP host or network unreachable). A host that does not
# answer ARP cannot be told from one whose netsemd froze and then whose link
# went down, or that was cut off or powered off after it accepted: it may
# still hold sessions with permits. Within a server's silent streak each is
# taken as a connect timeout (rule 8, _resume.StickySilence); outside one,
# as any failure, an outage (no route at all on a first try: fallback).
NO_REPLY = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH})


def ended_early(stage: tuple[str, str], error: OSError) -> str:
    """An attempt's entry (after "<server>: ") when the connection died under
    the handshake with no word from the server (``error`` in NO_REPLY: a
    kept attempt's keepalive or TCP_USER_TIMEOUT ran out, or its host's ARP
    entry failed): the server closed nothing, so the words say that the
    connection ended, and why."""
    answered, missing = stage
    why = os.strerror(error.errno) if error.errno else str(error)
    to = f" to {missing}" if answered else ""
    return f"the connection ended before an answer{to} ({why}: no reply from that host)"


# Rule 9a: a kept connection's keepalive probes; this many unanswered end it.
KEEPALIVE_PROBES = 3


def keep_alive(sock: Any, connect_timeout: float, server: str) -> None:
    """Rule 9a (audit22 finding A): TCP keepalive on a kept attempt's socket
    (a socket, or asyncio's TransportSocket), probes connect_timeout apart
    (whole seconds, at least one), ended after KEEPALIVE_PROBES unanswered
    ones, and TCP_USER_TIMEOUT bounding the same way what is sent and not
    yet acknowledged, where keepalive does not probe. Nothing else is sent
    on a kept connection: without them a server host that forgot it (a
    reboot, a dropped flow) left it open for ever. A frozen netsemd's
    kernel answers the probes (still silent); a host that forgot the
    connection resets it (unreachable: the next round connects anew); one
    that is gone answers nothing: ETIMEDOUT (``timed_out``). An option the
    system lacks or refuses is no error (debug)."""
    every = max(1, math.ceil(connect_timeout))
    options = [(socket.SOL_SOCKET, "SO_KEEPALIVE", 1), (socket.IPPROTO_TCP, "TCP_KEEPIDLE", every),
               (socket.IPPROTO_TCP, "TCP_KEEPINTVL", every), (socket.IPPROTO_TCP, "TCP_KEEPCNT", KEEPALIVE_PROBES),
               (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", every * 1000 * (1 + KEEPALIVE_PROBES))]
    for level, name, value in options:
        option = getattr(socket, name, None)
        try:
            if option is None:
                raise OSError(f"{name} is not known here")
            sock.setsockopt(level, option, value)
        except OSError as error:
            log.debug("server %s: no keepalive on the kept connection: %s: %s", server, name, error)
            return


def keep_alive_off(sock: Any, server: str) -> None:
    """Undoes keep_alive when a session begins on a kept attempt's socket:
    it then has what a fresh connection has (TCP_NODELAY alone: no
    keepalive, no TCP_USER_TIMEOUT; the session's pings and its lease watch
    it), as every other session. The probe intervals stay, unused without
    SO_KEEPALIVE (Linux cannot set them back to "the system's"). A failure
    is no error (debug)."""
    for level, name in ((socket.SOL_SOCKET, "SO_KEEPALIVE"), (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT")):
        option = getattr(socket, name, None)
        if option is None:
            continue
        try:
            sock.setsockopt(level, option, 0)
        except OSError as error:
            log.debug("server %s: the kept connection's %s stays on: %s", server, name, error)


def no_reply(error: OSError) -> bool:
    """Whether the socket's own error behind ``error`` (_tls.socket_errno:
    not a TLS error's kind) is one of NO_REPLY."""
    return _tls.socket_errno(error) in NO_REPLY


def timed_out(error: OSError, kept: bool) -> bool:
    """Rule 9a: ``error`` on a kept attempt's socket is its keepalive's (or
    TCP_USER_TIMEOUT's) end, or its host's failed ARP entry under bytes not
    yet acknowledged (NO_REPLY): the server's host answered nothing, counted
    as a connect timeout is (rule 8), not as a reset."""
    return kept and no_reply(error)
