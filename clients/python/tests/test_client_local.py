"""Tests of the Client's host-local side (issue 14 item 4): ``$`` names, and
fallback while no server is reachable, on the host-wide semaphores of
netsem._local (shared with libnetsem), with server permits marked in the
host's table of holders so that fallback and the server never both run a
name on one host.

Each test has its own registry directory (the ``local_dir`` fixture), whose
kernel semaphores are removed at its end.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import client_factory

from netsem import Client, FallbackPolicy
from netsem.errors import InvalidArgument, Overflow, Timeout, TooMany, Unavailable


def unused_address() -> str:
    """A loopback address where nothing listens."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"127.0.0.1:{port}"


@pytest.fixture
def clients(local_dir: Path) -> Iterator[Callable[..., Client]]:
    yield from client_factory(local_dir, connect_timeout=0.5)


def test_dollar_names_are_host_local(clients) -> None:
    client = clients(unused_address(), limits={"$build": 2, "$queue": 3}, fallback=FallbackPolicy("fail"))
    with client.acquire("$build", 2, timeout=1) as permit:
        assert permit.is_local and permit.fence is None and not permit.lost
        assert client.try_acquire("$build") is None
        info = client.get("$build")
        assert (info.value, info.max, info.holders, info.kind) == (0, 2, 2, "local")
        assert client.test_flag("$build")
    assert client.value("$build") == 2
    with pytest.raises(TooMany):
        client.acquire("$build", 3)
    client.wait("$queue", 3, timeout=1)
    assert not client.try_wait("$queue")
    client.post("$queue", 2)
    assert client.value("$queue") == 2 and client.timed_wait("$queue", 0.5, count=2)
    client.post("$queue", 3)
    with pytest.raises(Overflow):
        client.post("$queue")
    with pytest.raises(InvalidArgument):
        client.acquire("$")
    assert client.stats().local_grants == 3


def test_dollar_names_never_reach_the_server(netsemd, clients) -> None:
    client = clients(netsemd.address)
    with client.acquire("$x"):
        assert not any(info.name.startswith("$") for info in client.list())
        assert client.server_stats()["held"] == 0
        (me,) = [s for s in client.sessions() if s.session_id == client.stats().session_id]
        assert me.permits_held == 0
    assert client.stats().remote_grants == 0 and client.stats().local_grants == 1


def test_fallback_serves_names_by_their_policy(clients) -> None:
    client = clients(
        unused_address(),
        limits={"pool": 10, "jobs": 2},
        fallback=FallbackPolicy("share", 3),
        fallback_for={"licences": FallbackPolicy("fail")},
    )
    permits = [client.acquire("pool", 4, timeout=1)]  # 10 shared by 3 hosts: 4 here
    assert permits[0].is_local and permits[0].fence is None
    with pytest.raises(Timeout):
        client.acquire("pool", timeout=0.1)
    with pytest.raises(Unavailable, match="more than its host-local stand-in's limit of 4"):
        client.acquire("pool", 5)
    with pytest.raises(Unavailable, match='fallback policy of "licences" is fail'):
        client.acquire("licences")
    permits[0].release()
    # wait and post fall back only for names listed in [semaphores].
    client.wait("jobs", timeout=1)
    client.post("jobs")
    with pytest.raises(Unavailable, match="not listed in \\[semaphores\\]"):
        client.wait("unlisted", timeout=0)
    assert client.value("pool") == 4


def test_server_permits_and_fallback_exclude_each_other_on_one_host(netsemd, clients) -> None:
    """A process of this host holding a name from the server keeps fallback
    on this host from granting it, and the other way round (docs/client.md,
    "Server permits and fallback on one host")."""
    online = clients(netsemd.address)
    offline = clients(unused_address(), limits={"pool": 3})
    held = online.acquire("pool")
    with pytest.raises(Timeout):
        offline.acquire("pool", timeout=0.2)
    granted: list[object] = []
    thread = threading.Thread(target=lambda: granted.append(offline.acquire("pool", timeout=10)))
    thread.start()
    time.sleep(0.1)
    assert not granted
    held.release()
    thread.join(10)
    (local,) = granted
    assert local.is_local  # type: ignore[attr-defined]
    # Now the fallback holder keeps the server's grant of the name waiting here.
    with pytest.raises(Timeout, match="was granted by the server, but"):
        online.acquire("pool", timeout=0.2)
    assert online.get("pool").holders == 0  # it went back to the server
    local.release()  # type: ignore[attr-defined]
    with online.acquire("pool", timeout=5) as permit:
        assert not permit.is_local
