"""netsem.aio with TLS and tokens against the real netsemd: the cases of
test_tls_auth.py for the asyncio client (TLS through StreamWriter.start_tls).

TLS serves the client (v1+tls); every failed handshake is Denied and never
fallback; a right token gives its rights, a wrong one is Denied, a name
outside its prefix is Denied; the reconnect after a KICK authenticates again;
ERR LIMIT to AUTH is a retryable LimitReached; the lease holds over TLS (the
lapsed session's socket stays open and silent until stop_by).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aio_support import options, run, until
from fake_server import FakeServer, Peer
from tls_support import REFUSALS, TOKENS, Pki, security_for, tls_port
from waiter_support import check_the_lease_over_a_freeze_aio

import netsem
import netsem.aio


def client_of(server: Any, local_dir: Path, security: dict[str, Any], **overrides: Any) -> netsem.aio.Client:
    """A client with a local fallback that would grant `one` and `jobs/a`
    (a refusal taken for an outage shows), and a connect timeout that holds
    the server's slow token hashes."""
    overrides.setdefault("limits", {"one": 1, "jobs/a": 1})
    overrides.setdefault("connect_timeout", 10.0)
    return netsem.aio.Client(options=options(server, local_dir, **overrides), **security)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_serves_the_client(start_netsemd: Any, pki: Pki, local_dir: Path, host: str) -> None:
    server = start_netsemd(semaphores="one = 1", server_options=pki.server_options())

    async def main() -> None:
        async with client_of(f"{host}:{tls_port(server)}", local_dir, pki.client_options()) as client:
            async with await client.acquire("one", timeout=5) as permit:
                assert not permit.is_local
                assert await client.value("one") == 0
            mine = [s for s in await client.sessions() if s.session_id == client.stats().session_id]
            assert mine and mine[0].dialect == "v1+tls"
            assert client.stats().fallback_entries == 0

    run(main())


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_failed_handshake_is_a_refusal_never_fallback(start_netsemd: Any, pki: Pki, local_dir: Path,
                                                       case: str) -> None:
    overrides, expired, words = REFUSALS[case]
    server = start_netsemd(semaphores="one = 1", server_options=pki.server_options(expired=expired))

    async def main() -> None:
        async with client_of(f"127.0.0.1:{tls_port(server)}", local_dir, security_for(pki, overrides),
                             fallback=netsem.FallbackPolicy("local")) as client:
            with pytest.raises(netsem.Denied) as raised:
                await client.acquire("one", timeout=1)
            assert "TLS handshake with server" in str(raised.value) and words in str(raised.value), raised.value
            stats = client.stats()
            assert not stats.connected and stats.fallback_entries == 0 and stats.local_grants == 0

    run(main())


def test_tls_to_the_plain_port_is_a_refusal(start_netsemd: Any, pki: Pki, local_dir: Path) -> None:
    server = start_netsemd(semaphores="one = 1", server_options=pki.server_options())

    async def main() -> None:
        async with client_of(server, local_dir, pki.client_options()) as client:
            with pytest.raises(netsem.Denied, match="TLS handshake with server"):
                await client.acquire("one", timeout=1)
            assert client.stats().fallback_entries == 0

    run(main())


def test_the_lease_holds_over_tls(start_netsemd: Any, pki: Pki, local_dir: Path) -> None:
    """SIGSTOP: the permit is lost at half the lease, and the TLS session's
    socket stays open and silent until stop_by, so the resumed server grants
    the waiter on the plain port no earlier."""
    timeout_ms = 2000
    server = start_netsemd(semaphores="one = 1",
                           server_options=pki.server_options() + f"session_timeout_ms = {timeout_ms}\n")

    async def main() -> None:
        client = client_of(f"127.0.0.1:{tls_port(server)}", local_dir, pki.client_options(),
                           fallback=netsem.FallbackPolicy("fail"))
        await check_the_lease_over_a_freeze_aio(client, server, timeout_ms / 1000)

    run(main())


def token_server(start_netsemd: Any, tokens_file: Path, extra: str = "") -> Any:
    return start_netsemd(semaphores="one = 1\njobs/a = 1", server_options=f"tokens_file = {tokens_file}\n{extra}")


def test_a_right_token_gives_its_rights_and_no_more(start_netsemd: Any, tokens_file: Path, local_dir: Path) -> None:
    server = token_server(start_netsemd, tokens_file)

    async def main() -> None:
        async with client_of(server, local_dir, {"token": TOKENS["worker"][0]}) as client:
            await (await client.acquire("jobs/a", timeout=5)).release()
            with pytest.raises(netsem.Denied):
                await client.acquire("one", timeout=1)
            assert client.connected and client.stats().local_grants == 0

    run(main())


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_a_wrong_or_missing_token_is_a_refusal_never_fallback(start_netsemd: Any, tokens_file: Path,
                                                              local_dir: Path, token: str | None) -> None:
    server = token_server(start_netsemd, tokens_file)

    async def main() -> None:
        async with client_of(server, local_dir, {"token": token}) as client:
            words = "refused this client's token" if token else "requires authentication"
            with pytest.raises(netsem.Denied, match=words):
                await client.acquire("jobs/a", timeout=1)
            stats = client.stats()
            assert not stats.connected and stats.fallback_entries == 0 and stats.local_grants == 0

    run(main())


def test_the_reconnect_after_a_kick_authenticates_again(start_netsemd: Any, pki: Pki, tokens_file: Path,
                                                         local_dir: Path) -> None:
    """Over TLS too: a new TLS handshake, then AUTH again."""
    server = token_server(start_netsemd, tokens_file, pki.server_options())
    address = f"127.0.0.1:{tls_port(server)}"

    async def main() -> None:
        async with client_of(address, local_dir, {**pki.client_options(), "token": TOKENS["worker"][0]},
                             fallback=netsem.FallbackPolicy("fail")) as worker, \
                client_of(address, local_dir, {**pki.client_options(), "token": TOKENS["boss"][0]}) as boss:
            permit = await worker.acquire("jobs/a", timeout=5)
            first = worker.stats().session_id
            await boss.kick(first)
            await until(lambda: permit.lost, 10)
            with pytest.raises(netsem.Unavailable):
                await permit.release()
            await until(lambda: worker.connected and worker.stats().session_id != first, 20)
            assert worker.stats().connects == 2
            again = await worker.acquire("jobs/a", timeout=5)
            assert not again.is_local
            await again.release()

    run(main(), bound=60)


def test_limit_to_auth_is_retryable_not_a_refusal(local_dir: Path) -> None:
    auths: list[str] = []

    def script(peer: Peer) -> None:
        limited = not auths
        for _ in range(4):
            line = peer.read_line()
            if line is None:
                return
            tag, verb = line.split(" ")[:2]
            if verb == "AUTH":
                auths.append(line)
                answer = "ERR LIMIT too many token checks waiting" if limited else "OK acquire"
            elif verb == "HELLO":
                answer = f"OK netsem 1.1 {len(auths) + 1}"
            elif verb == "STATS":
                answer = 'OK {"session_timeout_ms":0}'
            else:
                answer = "OK"
            peer.send(f"{tag} {answer}\n".encode())
        if not limited:
            peer.serve_honestly()

    async def main() -> None:
        with FakeServer(script) as server:
            async with client_of(server.address, local_dir, {"token": "some-token"}, reconnect_min=0.3,
                                 reconnect_max=0.3) as client:
                with pytest.raises(netsem.LimitReached, match="too many token checks"):
                    await client.acquire("one", timeout=0)
                assert client.stats().fallback_entries == 0
                await until(lambda: client.connected, 5)
                assert len(auths) == 2 and all(line.endswith(" AUTH some-token") for line in auths)

    run(main())


def test_a_silent_tls_port_is_no_outage(pki: Pki, local_dir: Path) -> None:
    """test_tls_auth's test of the name, through netsem.aio (test_silent.py checks the rest)."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes the connection; nobody reads it
        address = f"127.0.0.1:{listener.getsockname()[1]}"

        async def main() -> None:
            started = time.monotonic()
            async with client_of(address, local_dir, pki.client_options(), connect_timeout=0.5,
                                 fallback=netsem.FallbackPolicy("local")) as client:
                assert time.monotonic() - started < 3
                assert ("accepted the connection but did not answer the TLS handshake within 500 ms"
                        in client.stats().unreachable)
                with pytest.raises(netsem.Timeout, match="accepted the connection but did not answer within 500 ms"):
                    await client.acquire("one", timeout=1)
                assert client.stats().fallback_entries == 0 and client.stats().local_grants == 0

        run(main())


def test_a_token_without_read_learns_the_session_timeout(start_netsemd: Any, tokens_file: Path,
                                                         local_dir: Path) -> None:
    """T from LEASE (STATS is denied to the worker token): a frozen server
    makes the permit lost at half the lease, with a stop_by, not only at
    request_timeout (20 s)."""
    timeout_ms = 4500
    server = token_server(start_netsemd, tokens_file, f"session_timeout_ms = {timeout_ms}\n")

    async def main() -> None:
        # As test_tls_auth's twin: a first session with the token fills the
        # server's verifier cache, so that the first AUTH's slow hash, which
        # the lease counts from HELLO, does not lapse the session under test
        # on a loaded machine.
        async with client_of(server, local_dir, {"token": TOKENS["worker"][0]}) as first:
            await until(lambda: first.stats().connected, 60)
        async with client_of(server, local_dir, {"token": TOKENS["worker"][0]}, request_timeout=20.0,
                             fallback=netsem.FallbackPolicy("fail")) as client:
            permit = await client.acquire("jobs/a", timeout=5)
            await asyncio.sleep(timeout_ms / 1000)  # pings at T/6 keep the session alive past T
            assert not permit.lost and client.stats().connects == 1
            frozen_at = time.monotonic()
            server.signal(signal.SIGSTOP)
            try:
                # Lost by T/2 after the freeze; 5 s for a loaded machine, well before request_timeout.
                await until(lambda: permit.lost, timeout_ms / 2000 + 5.0)
            finally:
                server.signal(signal.SIGCONT)
            assert "lease" in str(permit.loss_reason)
            assert permit.stop_by is not None and permit.stop_by <= frozen_at + timeout_ms * 0.9 / 1000

    run(main())
