"""A client process out of file descriptors while its server is up and the
name is held elsewhere (audit 20, C), in netsem.client and netsem.aio: the
round that cannot make a socket (or a selector) is no outage, so the client
neither falls back (a second holder) nor calls the server unreachable, and
its I/O does not die; its calls fail with IoError, and it reconnects once
descriptors are free. The client runs in a subprocess that lowers its own
RLIMIT_NOFILE and fills it; the holder and netsemd are unaffected.

And EADDRNOTAVAIL from connect() (no local port or source address left) is
this host's shortage only when every address of the server gave it: one
address that cannot be reached from here beside a refused one is an outage.
No host gives EADDRNOTAVAIL at will (the ephemeral range is host-wide), so
socket.getaddrinfo and socket.socket.connect are patched for one name."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aio_support import options, release
from conftest import PYTHON_DIR, ServerFactory, client_factory

import netsem

# The client's side: prints one JSON line of what it saw.
_CLIENT = r"""
import asyncio, json, os, resource, sys, time
import netsem, netsem.aio
from netsem._options import ClientOptions
import dataclasses

server, local_dir, mode = sys.argv[1:4]
opts = dataclasses.replace(ClientOptions(), servers=[server], local_dir=local_dir, limits={"db": 1},
                           connect_timeout=0.5, reconnect_min=1.0, reconnect_max=1.0)
seen = {}

def exhaust():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    return held

def outcome(call):
    try:
        permit = call()
        return "granted local" if permit is not None and permit.is_local else (
            "granted" if permit is not None else "none")
    except netsem.NetsemError as error:
        return f"{type(error).__name__}: {error}"

def until(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.002)
    return condition()

if mode == "sync":
    kicker = netsem.Client(options=opts)
    client = netsem.Client(options=opts)
    client.ping()  # the session is served (its selector made) before the table fills
    held = exhaust()
    kicker.kick(client.stats().session_id)
    # The session's socket (and selector) closed: take them too; the next
    # round comes a second later.
    until(lambda: not client.connected, 3)
    held += exhaust()
    seen["round"] = until(lambda: client.stats().unreachable != "", 3)
    for fd in held:  # the peak passes before the next round
        os.close(fd)
    seen["at_emfile"] = outcome(lambda: client.acquire("db", timeout=0))
    seen["local_grants"] = client.stats().local_grants
    seen["reconnected"] = until(lambda: client.connected, 3)
    seen["after"] = outcome(lambda: client.try_acquire("db"))
else:
    async def main():
        kicker = netsem.aio.Client(options=opts)
        client = netsem.aio.Client(options=opts)
        await kicker.connect()
        await client.connect()
        await client.ping()
        held = exhaust()
        await kicker.kick(client.stats().session_id)
        deadline = time.monotonic() + 3
        while client.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.05)  # the transport's socket closes on a later turn of the loop
        held += exhaust()
        deadline = time.monotonic() + 3
        while client.stats().unreachable == "" and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        seen["round"] = client.stats().unreachable != ""
        for fd in held:
            os.close(fd)
        try:
            permit = await client.acquire("db", timeout=0)
            seen["at_emfile"] = "granted local" if permit.is_local else "granted"
        except netsem.NetsemError as error:
            seen["at_emfile"] = f"{type(error).__name__}: {error}"
        seen["local_grants"] = client.stats().local_grants
        deadline = time.monotonic() + 3
        while not client.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        seen["reconnected"] = client.connected
        seen["after"] = "none" if await client.try_acquire("db") is None else "granted"
        await client.close()
        await kicker.close()
    asyncio.run(main())
print(json.dumps(seen), flush=True)
"""


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_a_client_out_of_descriptors_neither_falls_back_nor_dies(
        mode: str, start_netsemd: ServerFactory, local_dir: Path) -> None:
    netsemd = start_netsemd(semaphores="db = 1")
    # The holder is as on another host: a registry of its own, so no host-wide
    # mark keeps the client's fallback from granting db beside it.
    elsewhere = local_dir / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    holder = netsem.Client(options=options(netsemd, elsewhere))
    try:
        permit = holder.acquire("db", timeout=5)
        assert permit is not None and not permit.is_local
        env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
        env.pop("NETSEM_CONFIG", None)
        done = subprocess.run([sys.executable, "-c", _CLIENT, netsemd.address, str(local_dir), mode],
                              capture_output=True, text=True, timeout=30, env=env, check=False)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["round"], seen
        # db is held elsewhere: no local grant, no "no server reachable".
        assert seen["at_emfile"].startswith("IoError: "), seen
        assert "this process is out of file descriptors (socket: Too many open files)" in seen["at_emfile"], seen
        assert "no server reachable" not in seen["at_emfile"], seen
        assert seen["local_grants"] == 0, seen
        # The next round gets through: the server's answer (db is held).
        assert seen["reconnected"], (seen, done.stderr)
        assert seen["after"] == "none", seen
        permit.release()
    finally:
        holder.close()


# A name whose addresses (patched getaddrinfo) give EADDRNOTAVAIL on connect
# (patched socket.connect) when they are in NO_PORT_LEFT.
NAME = "two.netsem.invalid"
NO_PORT_LEFT = {"127.0.0.2", "127.0.0.3"}


@pytest.fixture
def two_addresses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """``NAME`` resolves to the addresses the test puts in the yielded list."""
    addresses: list[str] = []
    lookup, connect = socket.getaddrinfo, socket.socket.connect

    def fake_lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return lookup(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port))) for a in addresses]

    def fake_connect(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] in NO_PORT_LEFT:
            raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", fake_lookup)
    monkeypatch.setattr(socket.socket, "connect", fake_connect)
    yield addresses


@pytest.fixture(params=["blocking", "aio"])
def make(request: pytest.FixtureRequest, local_dir: Path) -> Iterator[Any]:
    yield from client_factory(local_dir, request.param, fallback=netsem.FallbackPolicy("local"),
                              connect_timeout=0.5, reconnect_min=0.05, reconnect_max=0.2)


def test_no_local_address_for_one_address_beside_a_refused_one_is_an_outage(two_addresses: list[str],
                                                                           make: Any) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
        two_addresses[:] = ["127.0.0.2", "127.0.0.1"]
        client = make(f"{NAME}:{closed.getsockname()[1]}")
        permit = client.acquire("db", timeout=2)
        assert permit.is_local and client.stats().fallback_entries == 1, client.stats()
        release(client, permit)


def test_no_local_address_for_every_address_is_this_hosts_shortage(two_addresses: list[str], make: Any) -> None:
    two_addresses[:] = ["127.0.0.2", "127.0.0.3"]
    client = make(f"{NAME}:7")
    with pytest.raises(netsem.IoError, match="this host has no local address or port left to connect from"):
        client.acquire("db", timeout=2)
    assert client.stats().fallback_entries == 0 and client.stats().local_grants == 0
