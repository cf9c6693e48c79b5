"""``cluster_raise_fences`` of both clients (the blocking Client and
netsem.aio, one body each through aio_support.AioInThread), libnetsem's
``cluster_raise_fences`` in Python (`netsem cluster raise-fences`):

- against three real netsemd (cluster_support): on the leader it returns the
  new last fence, every server's next grant is above it; a follower answers
  Busy naming the leader; a leader that loses its majority mid-raise (both
  followers frozen) answers TIMEOUT: Timeout, the outcome unknown, and a
  second raise on the next leader works (the last fence 1000 or 2000 above);
- against a fake server: the bounds checked before anything is sent, each
  answer's exception with libnetsem's words, and the wait bounded by the
  lease, not request_timeout: the server reads nothing behind a CLUSTER
  request until it answers it, PINGs included (proto.holds_the_line).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aio_support import release
from cluster_support import Cluster, running_cluster
from conftest import client_factory
from fake_server import RESUMABLE_42, FakeServer, Peer

from netsem import FallbackPolicy
from netsem.errors import Busy, Denied, InvalidArgument, LimitReached, ProtocolError, Timeout, Unavailable


@pytest.fixture(params=["blocking", "aio"])
def either(request: pytest.FixtureRequest, local_dir: Path) -> Iterator[Callable[..., Any]]:
    """Clients of either kind, closed at the test's end."""
    yield from client_factory(local_dir, request.param, reconnect_min=0.05, reconnect_max=0.2,
                              fallback=FallbackPolicy("fail"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path / "cluster", semaphores="one = 1", session_timeout_ms=6000)


def _granted_on_the_leader(cluster: Cluster, either: Callable[..., Any]) -> tuple[int, Any, int]:
    """The leader's index, a client of it, and the fence of a permit of "one"
    it was granted (then released: no permit is left)."""
    lead = cluster.leader()
    assert lead >= 0, cluster.logs()
    client = either(cluster.addresses[lead])
    permit = client.acquire("one", timeout=5)
    fence = permit.fence
    assert fence is not None
    release(client, permit)
    return lead, client, fence


def test_a_raise_on_the_leader_puts_every_servers_next_grant_above_it(cluster, either) -> None:
    lead, client, fence = _granted_on_the_leader(cluster, either)
    last = client.cluster_raise_fences(1000)
    assert last == fence + 1000
    # A follower (its only server: the client stays there) refuses, naming the leader.
    follower = (lead + 1) % 3
    with pytest.raises(Busy, match=f"CLUSTER FENCES 5: BUSY not the leader; the leader is server {lead + 1}"):
        either(cluster.addresses[follower]).cluster_raise_fences(5)
    highest = last
    for i in range(3):
        other = either(cluster.addresses[i])
        granted = other.acquire(f"after{i}", timeout=5)
        assert granted.fence is not None and granted.fence > last, (i, granted.fence, last)
        highest = max(highest, granted.fence)
    # The largest raise there is.
    assert client.cluster_raise_fences(2**53) == highest + 2**53


def test_a_raise_whose_leader_lost_its_majority_times_out_and_can_be_repeated(cluster, either) -> None:
    lead, client, fence = _granted_on_the_leader(cluster, either)
    followers = [cluster.servers[(lead + 1) % 3], cluster.servers[(lead + 2) % 3]]
    for server in followers:
        server.process.send_signal(signal.SIGSTOP)
    try:
        for server in followers:  # stopped before the raise is sent: none of them may take its entry
            assert _stopped(server.process.pid), server.address
        started = time.monotonic()
        # The leader steps down after an election timeout (500 ms) without a
        # majority: the raise's outcome is unknown.
        with pytest.raises(Timeout, match="^CLUSTER FENCES 1000: timed out$"):
            client.cluster_raise_fences(1000)
        took = time.monotonic() - started
    finally:
        for server in followers:
            server.process.send_signal(signal.SIGCONT)
    assert took < 3.0, took  # within the lease (T/2 = 3 s), not past it
    # Once a leader is elected again the raise is in the log or not: raising
    # again is safe.
    deadline = time.monotonic() + 15
    while True:
        try:
            again = either(cluster.addresses[cluster.leader()]).cluster_raise_fences(1000)
            break
        except (Busy, Unavailable):  # an election under way, or a stale reading of the logs
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.1)
    assert again in (fence + 1000, fence + 2000), (again, fence)


def _stopped(pid: int, within: float = 5.0) -> bool:
    """Whether process ``pid`` is stopped (state T in /proc) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] in "Tt":
            return True
        time.sleep(0.005)
    return False


# --- against a fake server: bounds, answers and the lease ---


def _serve(answer: str, delay: float = 0.0, resumable: bool = False) -> Callable[[Peer], None]:
    """A 1.1 server with a session timeout of 3 s (``resumable``: a 1.2 one of
    12 s whose session 42 is resumable, as fake_server.RESUMABLE_42) that answers
    CLUSTER FENCES with ``answer`` after ``delay`` seconds, reading nothing of
    the session meanwhile (as netsemd), and the rest as netsemd does."""

    def script(peer: Peer) -> None:
        if not resumable and not peer.handshake(session_timeout_ms=3000):
            return
        answers = {"OPTION": "OK", "RESUMABLE": "ERR UNKNOWN_VERB RESUMABLE",
                   "LEADER": "ERR UNKNOWN_VERB LEADER", "LEASE": "ERR UNKNOWN_VERB LEASE"}
        if resumable:  # T = 12 s: T/6 2 s, T/2 6 s
            answers.update(RESUMABLE_42, LEASE="OK 12000", STATS='OK {"session_timeout_ms":12000}')
        while (line := peer.read_line(timeout=30)) is not None:
            tag, _, rest = line.partition(" ")
            if rest.startswith("CLUSTER FENCES "):
                time.sleep(delay)
                reply = answer
            elif rest.startswith("PING"):
                reply = f"PONG {rest[5:]}".rstrip()
            else:
                reply = answers.get(rest.split(" ", 1)[0], "OK")
            if not peer.send(f"{tag} {reply}\n".encode()):
                return

    return script


def _cluster_lines(server: FakeServer) -> list[str]:
    """The CLUSTER requests the server read, without their tags."""
    with server.lock:
        lines = list(server.lines)
    return [rest for _, _, rest in (line.partition(" ") for line in lines) if rest.startswith("CLUSTER")]


@pytest.mark.parametrize("by", [0, -1, 2**53 + 1, True, 1.0, "5", None])
def test_a_raise_out_of_bounds_is_refused_before_anything_is_sent(either, by: Any) -> None:
    with FakeServer(_serve("OK 1")) as server:
        client = either(server.address)
        with pytest.raises(InvalidArgument) as raised:
            client.cluster_raise_fences(by)
        assert str(raised.value) == "CLUSTER FENCES: the fences rise by 1..9007199254740992 (2^53)"
        assert _cluster_lines(server) == []


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        ("TIMEOUT", Timeout, "CLUSTER FENCES 1000: timed out"),
        ("ERR BUSY not the leader; the leader is server 2 (10.0.0.2:53559)", Busy,
         "CLUSTER FENCES 1000: BUSY not the leader; the leader is server 2 (10.0.0.2:53559)"),
        ("ERR LIMIT the last fence would pass 2^62 (3); nothing changed", LimitReached,
         "CLUSTER FENCES 1000: LIMIT the last fence would pass 2^62 (3); nothing changed"),
        ("ERR BAD_ARG not in a cluster", InvalidArgument, "CLUSTER FENCES 1000: BAD_ARG not in a cluster"),
        ("ERR DENIED CLUSTER needs the admin right", Denied,
         "CLUSTER FENCES 1000: DENIED CLUSTER needs the admin right"),
        ("ERR UNKNOWN_VERB CLUSTER", ProtocolError,
         "CLUSTER FENCES 1000: the server does not know CLUSTER (protocol 1.2)"),
        ("OK twelve", ProtocolError, "CLUSTER FENCES 1000: unexpected answer OK twelve"),
    ],
)
def test_each_answer_is_its_exception_with_libnetsems_words(either, answer: str, error: type, words: str) -> None:
    with FakeServer(_serve(answer)) as server:
        client = either(server.address)
        with pytest.raises(error) as raised:
            client.cluster_raise_fences(1000)
        assert str(raised.value) == words
        assert _cluster_lines(server) == ["CLUSTER FENCES 1000"]
        assert client.ping("after") == "after"  # the session goes on


def test_the_wait_is_bounded_by_the_lease_not_request_timeout(either) -> None:
    """The server reads nothing behind a CLUSTER request until it answers it
    (seconds for an ADD): the pings sent meanwhile wait too. An answer after
    request_timeout (0.4 s) and T/6 (0.5 s) but within T/2 (1.5 s) is taken,
    and the session goes on (it failed "no answer from the server within
    400 ms"); one past T/2 ends the session with its lease."""
    with FakeServer(_serve("OK 4242", delay=1.0)) as server:
        client = either(server.address, request_timeout=0.4)
        assert client.cluster_raise_fences(7) == 4242
        assert client.ping("after") == "after"
        assert server.accepted == 1
    with FakeServer(_serve("OK 4242", delay=2.5)) as server:
        client = either(server.address, request_timeout=0.4)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="half its session timeout of 3000 ms"):
            client.cluster_raise_fences(7)
        assert 1.2 < time.monotonic() - started < 2.4


def test_a_raise_longer_than_a_sixth_of_the_session_timeout_does_not_move_the_session(either) -> None:
    """Rule 5 moves a session off a server that leaves a request unanswered
    for T/6, to another configured server: not behind a CLUSTER request,
    whose answer the pings wait for (libnetsem's newuser25 finding: an ADD
    that took 5 s moved the session and lost its answer). A (T = 12 s,
    resumable) answers the raise after 5 s: past the first ping behind it
    (T/6, 2 s) and T/6 after that, and past request_timeout (1 s), within
    T/2; B, a listener, is never tried."""
    with (FakeServer(_serve("OK 4242", delay=5.0, resumable=True)) as a, FakeServer(lambda peer: None) as b):
        client = either([a.address, b.address], request_timeout=1.0)
        assert client.stats().server == a.address
        assert client.cluster_raise_fences(7) == 4242
        assert client.ping("after") == "after"
        assert b.connections() == 0 and client.stats().resumes == 0, (b.connections(), client.stats())
        assert client.stats().connection_losses == 0, client.stats()
