"""Rule 11 (docs/python.md, "Sessions that outlive their connection"): a
served session that a server moves to another connection, for a RESUME of
it read there (``* ERR KICKED resumed on another connection``), is resumed
as after a dropped connection, not lost as after an administrator's KICK.
Such a RESUME is one this client gave up on and a stalled server read late;
the test plays it on a connection of its own to the real netsemd, with the
session's id and secret taken from the client (no netsemd can be made to
read one of the client's own abandoned RESUMEs on cue). And the real KICK
is still a KICK. Within a resume, the same words after RESUME's OK mean
that another RESUME of ours took the session (libnetsem's
Resumed::kMoved): an attempt of that resume kept open (rule 10), or one
given up on earlier; the resume goes on. Scripted servers there, since no
netsemd can be made to hold one RESUME unread while it answers another on
cue. Each test runs one body for the blocking Client and for netsem.aio
(aio_support.AioInThread).
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aio_support import AioInThread, release
from conftest import acquire_in_thread, client_factory, wait_until
from fake_server import RESUMABLE_42, RESUMES_42, FakeServer, Peer

from netsem import FallbackPolicy
from netsem._resume import Resumable
from netsem.errors import NetsemError, Unavailable


@pytest.fixture(params=["blocking", "aio"])
def make(request: pytest.FixtureRequest, local_dir: Path) -> Iterator[Callable[..., Any]]:
    yield from client_factory(local_dir, request.param, reconnect_min=0.05, reconnect_max=0.2,
                              fallback=FallbackPolicy("fail"))


def resumable(client: Any) -> Resumable:
    """The session's id and secret (RESUMABLE), as the client keeps them."""
    inner = client._client if isinstance(client, AioInThread) else client
    found = inner._connection._resumable
    assert found is not None
    return found


def resume_and_close(port: int, session: Resumable) -> None:
    """A RESUME of ``session`` read on another connection, which then
    closes: what a server does with a RESUME the client gave up on."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"r1 RESUME {session.session_id} {session.secret}\n".encode())
        answer = sock.makefile("rb").readline()
    assert answer.startswith(f"r1 OK {session.session_id} ".encode()), answer


@dataclass
class Holding:
    """A client that holds "one" (its losses recorded) and waits queued for
    "two" in a thread (``got``: the permit or the error), which ``other``
    holds (``blocker``), on ``server``."""

    server: Any
    other: Any
    blocker: Any
    client: Any
    permit: Any
    losses: list[NetsemError]
    thread: threading.Thread
    got: list[Any]


@pytest.fixture
def holding(make: Callable[..., Any], start_netsemd: Any) -> Iterator[Holding]:
    server = start_netsemd(semaphores="one = 1\ntwo = 1", server_options="session_timeout_ms = 6000")
    other = make(server.address)
    blocker = other.acquire("two")
    client = make(server.address)
    permit = client.acquire("one")
    losses: list[NetsemError] = []
    permit.on_lost(losses.append)
    thread, got = acquire_in_thread(client, "two")
    try:
        assert wait_until(lambda: other.get("two").waiters == 1), other.get("two")
        yield Holding(server, other, blocker, client, permit, losses, thread, got)
    finally:
        thread.join(15)


def test_a_session_moved_by_a_late_resume_is_resumed_not_lost(holding: Holding,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The client holds "one" and waits queued for "two" (another holds it);
    its session is taken by a RESUME on another connection, which closes.
    Without rule 11 the client read that as a KICK: the permit lost, the
    queued acquire failed, a new session. With it: the session is resumed
    (same id, no loss), "one" is still held by it, and "two" is granted by
    the server once its holder lets go."""
    caplog.set_level(logging.INFO, logger="netsem")
    server, other, client, permit, losses = (holding.server, holding.other, holding.client, holding.permit,
                                             holding.losses)
    session = client.stats().session_id
    resume_and_close(server.port, resumable(client))
    assert wait_until(lambda: f"resumed session {session} on {server.address}" in caplog.text, 5), caplog.text
    assert wait_until(lambda: client.stats().connected, 5), client.stats()
    assert not losses and not permit.lost, losses
    assert [holder.session_id for holder in other.holders("one")] == [session]
    assert other.try_acquire("one") is None
    release(other, holding.blocker)
    holding.thread.join(15)
    got = holding.got
    assert got and not isinstance(got[0], BaseException), got
    assert not got[0].is_local and got[0].fence is not None
    stats = client.stats()
    assert stats.session_id == session and stats.connection_losses == 0 and stats.connects == 1, stats
    assert stats.resumes == 1, stats  # the move is a resume, as libnetsem counts it
    release(client, got[0])
    release(client, permit)
    assert not losses


def test_an_administrators_kick_is_still_a_kick(holding: Holding) -> None:
    """Any other ``* ERR KICKED`` (KICK's "kicked by session N (...)"): the
    session ends, the permit is lost, a queued acquire fails rather than
    being sent again, and the next session is a new one."""
    other, client, permit, losses = holding.other, holding.client, holding.permit, holding.losses
    session = client.stats().session_id
    other.kick(session)
    holding.thread.join(15)
    got = holding.got
    assert isinstance(got[0], Unavailable) and "not sent again" in str(got[0]), got
    assert wait_until(lambda: bool(losses), 5) and "KICK: kicked by session" in str(losses[0]), losses
    assert permit.lost
    assert wait_until(lambda: client.stats().connected, 5)
    stats = client.stats()
    assert stats.session_id != session and stats.connection_losses == 1 and stats.resumes == 0, stats
    assert other.holders("one") == []  # the server let go of it (this host still counts it until released)
    release(other, holding.blocker)


def test_a_resume_attempt_whose_session_a_kept_attempt_took_goes_on_to_that_one(make: Callable[..., Any]) -> None:
    """A grants a resumable session's permit, then its process goes. The
    client resumes on A, B, C in turn: B accepts nothing (its attempt is
    kept, rule 10), C answers RESUME OK and then ``* ERR KICKED resumed on
    another connection`` (as if B had read its RESUME after C's). That is
    not a KICK (without the change: the permit lost): the resume goes on,
    and once B accepts, the session is resumed there, its permit kept."""
    def takes_back(peer: Peer) -> None:
        line = peer.read_line()
        if line is not None and " RESUME 42 " in line:
            peer.send(f"{line.split(' ')[0]} OK 42 0\n* ERR KICKED resumed on another connection\n".encode())

    with (FakeServer(lambda peer: peer.answer_all(RESUMABLE_42)) as a,
          FakeServer(lambda peer: peer.answer_all(RESUMES_42, mine="held one 1 5"), accepts=0) as b,
          FakeServer(takes_back) as c):
        client = make([a.address, b.address, c.address], reconnect_max=0.1)
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and permit.fence == 5
        a.close()
        assert wait_until(lambda: any(" RESUME 42 " in line for line in c.lines), 5), c.lines
        b.accepts = None  # B wakes: it reads the RESUME kept on its one connection
        assert wait_until(lambda: client.connected and client.stats().server == b.address, 5), client.stats()
        assert not permit.lost and b.connections() == 1
        assert client.stats().connection_losses == 0
        release(client, permit)


def test_a_resume_attempt_whose_session_was_taken_with_nothing_kept_goes_on_resuming(
        make: Callable[..., Any]) -> None:
    """The same words with no other attempt of the resume kept (a RESUME
    given up on earlier, read late, as on a served session): A grants a
    resumable session's permit, then its process goes; C answers the first
    RESUME OK and then ``* ERR KICKED resumed on another connection``, and
    the next one as a server that resumes the session. The resume goes on
    and the session is resumed on C, its permit kept (the lead's decision,
    moved.md; without it: a KICK, the permit lost)."""
    attempts: list[Peer] = []

    def takes_back_once(peer: Peer) -> None:
        attempts.append(peer)
        if len(attempts) > 1:
            peer.answer_all(RESUMES_42, mine="held one 1 5")
            return
        line = peer.read_line()
        if line is not None and " RESUME 42 " in line:
            peer.send(f"{line.split(' ')[0]} OK 42 0\n* ERR KICKED resumed on another connection\n".encode())

    with FakeServer(lambda peer: peer.answer_all(RESUMABLE_42)) as a, FakeServer(takes_back_once) as c:
        client = make([a.address, c.address], reconnect_max=0.1)
        permit = client.acquire("one", timeout=5)
        assert not permit.is_local and permit.fence == 5
        a.close()
        assert wait_until(lambda: client.connected and client.stats().server == c.address, 5), client.stats()
        assert not permit.lost and len(attempts) >= 2
        assert client.stats().connection_losses == 0
        release(client, permit)
