"""netsem.Client with TLS and tokens against the real netsemd (issue 15, as
tests/tls/tls_client_test.cc and tests/auth/client_auth_test.cc test libnetsem).

Certificates are made at test time by openssl (tls_support.Pki). TLS serves
the client on the server's TLS port (its session shows as v1+tls); a wrong
CA, an expired server or client certificate, a missing client certificate, a
stranger's, a wrong server name and the plain port are refusals: Denied, and
never fallback (the names have a local fallback limit that would grant them).
Tokens: AUTH after HELLO gives the token's rights, a wrong or missing token
is Denied, a name outside the token's prefix is Denied, a token file others
may read is refused, and the reconnect after a KICK authenticates again.
A fake server shows ERR LIMIT to AUTH as a retryable LimitReached and a 1.0
server's UNKNOWN_VERB as no refusal. The lease holds over TLS: the lapsed
session's socket stays open, silent, until the permit's stop_by.
"""

from __future__ import annotations

import errno
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from fake_server import FakeServer, Peer
from tls_support import REFUSALS, TOKENS, Pki, security_for, tls_port
from waiter_support import check_the_lease_over_a_freeze

from netsem import Client, ClientOptions, FallbackPolicy
from netsem.errors import Denied, InvalidArgument, IoError, LimitReached, Timeout, Unavailable


SECURITY = ("tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "token", "token_file")


def make_client(servers: str, local_dir: Path, **kwargs: Any) -> Client:
    """A Client of ``servers`` with quick reconnects, a local fallback that
    would grant `one` and `jobs/a`, and the TLS and token keywords given."""
    security = {key: kwargs.pop(key) for key in list(kwargs) if key in SECURITY}
    fields: dict[str, Any] = {"servers": [servers], "local_dir": local_dir, "connect_timeout": 10.0,
                              "reconnect_min": 0.05, "reconnect_max": 0.2, "limits": {"one": 1, "jobs/a": 1}}
    options = ClientOptions(**{**fields, **kwargs})
    return Client(options=options, **security)


@pytest.fixture
def make(local_dir: Path) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def build(servers: str, **kwargs: Any) -> Client:
        client = make_client(servers, local_dir, **kwargs)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


# --- TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_serves_the_client(start_netsemd: Any, pki: Pki, make: Callable[..., Client], host: str) -> None:
    """By address (the certificate's IP address) and by name (its DNS name, with SNI)."""
    server = start_netsemd(semaphores="one = 1", server_options=pki.server_options())
    client = make(f"{host}:{tls_port(server)}", **pki.client_options())
    with client.acquire("one", timeout=5) as permit:
        assert not permit.is_local and permit.fence is not None
        assert client.value("one") == 0
    assert client.stats().connected and client.stats().fallback_entries == 0
    mine = [s for s in client.sessions() if s.session_id == client.stats().session_id]
    assert mine and mine[0].dialect == "v1+tls"


def test_a_shared_client_file_with_tls_on_means_tls(start_netsemd: Any, pki: Pki, tmp_path: Path,
                                                     local_dir: Path) -> None:
    server = start_netsemd(semaphores="one = 1", server_options=pki.server_options())
    config = tmp_path / "client.ini"
    config.write_text(f"[client]\nservers = 127.0.0.1:{tls_port(server)}\ntls = on\ntls_ca = {pki.ca}\n"
                      f"tls_cert = {pki.client_cert}\ntls_key = {pki.client_key}\nlocal_dir = {local_dir}\n"
                      "connect_timeout_ms = 3000\n")
    with Client(config=config) as client:
        assert client.value("one") == 1
        assert client.stats().connected


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_failed_handshake_is_a_refusal_never_fallback(start_netsemd: Any, pki: Pki, make: Callable[..., Client],
                                                       case: str) -> None:
    overrides, expired, words = REFUSALS[case]
    server = start_netsemd(semaphores="one = 1", server_options=pki.server_options(expired=expired))
    client = make(f"127.0.0.1:{tls_port(server)}", fallback=FallbackPolicy("local"), **security_for(pki, overrides))
    with pytest.raises(Denied) as raised:
        client.acquire("one", timeout=1)
    assert "TLS handshake with server" in str(raised.value) and words in str(raised.value), raised.value
    with pytest.raises(Denied):
        client.value("one")
    stats = client.stats()
    assert not stats.connected and stats.fallback_entries == 0 and stats.local_grants == 0


def test_a_handshake_out_of_memory_is_this_hosts_shortage_never_fallback(start_netsemd: Any, pki: Pki,
                                                                         make: Callable[..., Client],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A TLS handshake whose send or recv fails for want of memory (ENOMEM)
    says nothing of the server: the client's own shortage, as libnetsem and
    netsem.aio classify it (IoError, no fallback, though `one` has a local
    limit that would grant it). netsem.client called it a broken handshake,
    the server unreachable, and fell back."""
    server = start_netsemd(semaphores="one = 1", server_options=pki.server_options())

    def no_memory(self: ssl.SSLSocket) -> None:
        raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

    monkeypatch.setattr(ssl.SSLSocket, "do_handshake", no_memory)
    client = make(f"127.0.0.1:{tls_port(server)}", **pki.client_options())
    assert wait_until(lambda: client.stats().unreachable != "", 10), client.stats()
    with pytest.raises(IoError, match=r"this host is out of memory for sockets \(TLS handshake: "):
        client.acquire("one", timeout=0)
    assert client.stats().local_grants == 0


def test_tls_to_the_plain_port_is_a_refusal(start_netsemd: Any, pki: Pki, make: Callable[..., Client]) -> None:
    server = start_netsemd(semaphores="one = 1", server_options=pki.server_options())
    client = make(server.address, **pki.client_options())
    with pytest.raises(Denied, match="TLS handshake with server"):
        client.acquire("one", timeout=1)
    assert client.stats().fallback_entries == 0


def test_unusable_tls_files_are_invalid_arguments(pki: Pki, local_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="^tls_ca .*missing.pem"):
        make_client("127.0.0.1:1", local_dir, tls=True, tls_ca=tmp_path / "missing.pem")
    with pytest.raises(InvalidArgument, match="tls_key .* is not the key of tls_cert"):
        make_client("127.0.0.1:1", local_dir, tls=True, tls_ca=pki.ca, tls_cert=pki.client_cert,
                    tls_key=pki.stranger_key)


def test_the_lease_holds_over_tls(start_netsemd: Any, pki: Pki, make: Callable[..., Client]) -> None:
    """A frozen server (SIGSTOP): the permit is lost half a session timeout
    after the last answer, and the TLS session's socket stays open and silent
    until stop_by, so that the server, resumed at once, grants the waiter on
    the plain port no earlier than that."""
    timeout = 1.5
    server = start_netsemd(semaphores="one = 1",
                           server_options=pki.server_options() + f"session_timeout_ms = {int(timeout * 1000)}\n")
    client = make(f"127.0.0.1:{tls_port(server)}", fallback=FallbackPolicy("fail"), **pki.client_options())
    check_the_lease_over_a_freeze(client, server, timeout)


# --- tokens ------------------------------------------------------------------------


def token_server(start_netsemd: Any, tokens_file: Path, extra: str = "") -> Any:
    return start_netsemd(semaphores="one = 1\njobs/a = 1", server_options=f"tokens_file = {tokens_file}\n{extra}")


def test_a_right_token_gives_its_rights(start_netsemd: Any, tokens_file: Path, make: Callable[..., Client]) -> None:
    server = token_server(start_netsemd, tokens_file)
    client = make(server.address, token=TOKENS["worker"][0])
    with client.acquire("jobs/a", timeout=5) as permit:
        assert not permit.is_local
    assert client.stats().connected and client.stats().fallback_entries == 0


def test_a_name_outside_the_tokens_prefix_is_denied(start_netsemd: Any, tokens_file: Path,
                                                   make: Callable[..., Client]) -> None:
    server = token_server(start_netsemd, tokens_file)
    client = make(server.address, token=TOKENS["worker"][0], fallback=FallbackPolicy("local"))
    with pytest.raises(Denied):
        client.acquire("one", timeout=1)
    assert client.stats().connected and client.stats().local_grants == 0
    client.acquire("jobs/a", timeout=5).release()


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_a_wrong_or_missing_token_is_a_refusal_never_fallback(start_netsemd: Any, tokens_file: Path,
                                                              make: Callable[..., Client], token: str | None) -> None:
    server = token_server(start_netsemd, tokens_file)
    client = make(server.address, fallback=FallbackPolicy("local"), **({"token": token} if token else {}))
    words = "refused this client's token" if token else "requires authentication"
    with pytest.raises(Denied, match=words):
        client.acquire("jobs/a", timeout=1)
    stats = client.stats()
    assert not stats.connected and stats.fallback_entries == 0 and stats.local_grants == 0


def test_a_token_file_is_read_and_one_others_may_read_refused(start_netsemd: Any, tokens_file: Path,
                                                               make: Callable[..., Client], tmp_path: Path) -> None:
    server = token_server(start_netsemd, tokens_file)
    path = tmp_path / "worker.token"
    path.write_text(TOKENS["worker"][0] + "\n")
    path.chmod(0o644)
    with pytest.raises(Denied, match=r"holds secrets .*\(mode 644; chmod 600 it\)"):
        make(server.address, token_file=path)
    path.chmod(0o600)
    client = make(server.address, token_file=path)
    client.acquire("jobs/a", timeout=5).release()


def test_the_reconnect_after_a_kick_authenticates_again(start_netsemd: Any, tokens_file: Path,
                                                         make: Callable[..., Client]) -> None:
    server = token_server(start_netsemd, tokens_file)
    worker = make(server.address, token=TOKENS["worker"][0], fallback=FallbackPolicy("fail"))
    boss = make(server.address, token=TOKENS["boss"][0])
    permit = worker.acquire("jobs/a", timeout=5)
    first = worker.stats().session_id
    boss.kick(first)
    assert wait_until(lambda: permit.lost)
    with pytest.raises(Unavailable):
        permit.release()  # lost: given up, so that this host holds it no more
    assert wait_until(lambda: worker.stats().connected and worker.stats().session_id != first)
    assert worker.stats().connects == 2
    # Without AUTH the new session would have no right at all.
    with worker.acquire("jobs/a", timeout=5) as again:
        assert not again.is_local
    assert worker.stats().local_grants == 0


def test_tls_and_a_token_together(start_netsemd: Any, pki: Pki, tokens_file: Path,
                                  make: Callable[..., Client]) -> None:
    server = token_server(start_netsemd, tokens_file, pki.server_options())
    client = make(f"127.0.0.1:{tls_port(server)}", token=TOKENS["worker"][0], **pki.client_options())
    client.acquire("jobs/a", timeout=5).release()
    with pytest.raises(Denied):
        client.acquire("one", timeout=1)


# --- AUTH answers a real server cannot be made to give here --------------------------


def test_limit_to_auth_is_retryable_not_a_refusal(local_dir: Path) -> None:
    """ERR LIMIT to AUTH (the server's token checks are all busy): the call
    raises LimitReached (never Denied, never fallback), and the client tries
    again, authenticating on a later connection."""
    auths: list[str] = []

    def script(peer: Peer) -> None:
        limited = len(auths) == 0
        for _ in range(4):
            line = peer.read_line()
            if line is None:
                return
            tag, verb = line.split(" ")[:2]
            if verb == "AUTH":
                auths.append(line)
                peer.send(f"{tag} ERR LIMIT too many token checks waiting\n".encode() if limited else
                          f"{tag} OK acquire\n".encode())
            elif verb == "HELLO":
                peer.send(f"{tag} OK netsem 1.1 {len(auths) + 1}\n".encode())
            elif verb == "STATS":
                peer.send(f'{tag} OK {{"session_timeout_ms":0}}\n'.encode())
            else:
                peer.send(f"{tag} OK\n".encode())
        if not limited:
            peer.serve_honestly()

    with FakeServer(script) as server:
        client = make_client(server.address, local_dir, token="some-token", fallback=FallbackPolicy("local"),
                             reconnect_min=0.3, reconnect_max=0.3)
        try:
            with pytest.raises(LimitReached, match="too many token checks"):
                client.acquire("one", timeout=0)
            assert client.stats().fallback_entries == 0
            assert wait_until(lambda: client.connected, 5)
            assert len(auths) == 2
            assert all(line.endswith(" AUTH some-token") for line in auths)
        finally:
            client.close()


def test_a_1_0_servers_unknown_verb_to_auth_is_no_refusal(local_dir: Path) -> None:
    def script(peer: Peer) -> None:
        for _ in range(4):
            line = peer.read_line()
            if line is None:
                return
            tag, verb = line.split(" ")[:2]
            if verb == "HELLO":
                peer.send(f"{tag} OK netsem 1.0 3\n".encode())
            elif verb == "STATS":
                peer.send(f'{tag} OK {{"session_timeout_ms":0}}\n'.encode())
            else:
                peer.send(f"{tag} ERR UNKNOWN_VERB {verb}\n".encode())
        peer.serve_honestly()

    with FakeServer(script) as server:
        client = make_client(server.address, local_dir, token="some-token")
        try:
            assert client.connected and client.stats().protocol == "1.0"
        finally:
            client.close()


# --- netsem.ace reads the same [client] file ----------------------------------------


def test_netsem_ace_takes_tls_and_the_token_from_its_file(start_netsemd: Any, pki: Pki, tokens_file: Path,
                                                          tmp_path: Path, local_dir: Path) -> None:
    """An ACE installation's file with a [client] section: TLS and the token
    apply to netsem.ace's shared client as to every client; a wrong token is
    a refusal (acquire answers False, nothing is granted locally)."""
    from netsem import ace

    server = token_server(start_netsemd, tokens_file, pki.server_options())
    token_file = tmp_path / "worker.token"

    def configure(token: str) -> None:
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        config = tmp_path / "saq.ini"
        config.write_text(
            f"[service_network_semaphore]\nremote_address = 127.0.0.1\nremote_port = {tls_port(server)}\n"
            "semaphore_jobs/a = 1\n"
            f"[client]\ntls = on\ntls_ca = {pki.ca}\ntls_cert = {pki.client_cert}\ntls_key = {pki.client_key}\n"
            f"token_file = {token_file}\nlocal_dir = {local_dir}\nconnect_timeout_ms = 10000\n")
        ace.configure(config)

    try:
        configure(TOKENS["worker"][0])
        client = ace.NetworkSemaphoreClient()
        assert client.acquire("jobs/a", timeout=5)
        assert client.permit is not None and not client.permit.is_local
        client.release()
        configure("wrong-token")
        client = ace.NetworkSemaphoreClient()
        assert not client.acquire("jobs/a", timeout=1)
        assert ace.shared_client().stats().local_grants == 0
    finally:
        ace.close()


def test_a_silent_tls_port_is_no_outage(pki: Pki, local_dir: Path) -> None:
    """A port that takes the connection but never answers the ClientHello: the
    handshake gives up at connect_timeout, and that is no outage (the server
    accepted, and may be holding): no fallback; an acquire waits for a round
    that decides, until its timeout (test_silent.py checks the rest)."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes the connection; nobody reads it
        port = listener.getsockname()[1]
        started = time.monotonic()
        client = make_client(f"127.0.0.1:{port}", local_dir, connect_timeout=0.5, fallback=FallbackPolicy("local"),
                             **pki.client_options())
        try:
            assert time.monotonic() - started < 3
            assert ("accepted the connection but did not answer the TLS handshake within 500 ms"
                    in client.stats().unreachable)
            with pytest.raises(Timeout, match="accepted the connection but did not answer within 500 ms"):
                client.acquire("one", timeout=1)
            assert client.stats().fallback_entries == 0 and client.stats().local_grants == 0
        finally:
            client.close()


# --- the lease for a token without read (LEASE, proposed 1.2) -------------------------


def test_a_token_without_read_learns_the_session_timeout(start_netsemd: Any, tokens_file: Path,
                                                         make: Callable[..., Client]) -> None:
    """STATS needs an unlimited read right, which the worker token lacks: T
    comes from LEASE, so a frozen server (SIGSTOP) makes the permit lost at
    half the lease with a stop_by, not only at request_timeout (20 s)."""
    timeout = 4.5
    server = token_server(start_netsemd, tokens_file, f"session_timeout_ms = {int(timeout * 1000)}\n")
    # The lease counts from HELLO, so the first AUTH's slow hash (argon2id,
    # 64 MiB, for each token tried) counts in it: under load it took more
    # than T/2 and the session lapsed before ACQUIRE's answer (connects 2).
    # A first session with the token fills the server's verifier cache, so
    # the session under test costs no hash (under load the server may close
    # the first attempts before their check ends; the client tries again).
    first = make(server.address, token=TOKENS["worker"][0])
    assert wait_until(lambda: first.stats().connected, 60)
    first.close()
    client = make(server.address, token=TOKENS["worker"][0], fallback=FallbackPolicy("fail"), request_timeout=20.0)
    permit = client.acquire("jobs/a", timeout=5)
    lost = threading.Event()
    permit.on_lost(lambda reason: lost.set())
    time.sleep(timeout)  # pings at T/6 keep the session alive past T
    assert not permit.lost and client.stats().connects == 1
    frozen_at = time.monotonic()
    server.signal(signal.SIGSTOP)
    try:
        # Lost by T/2 after the freeze; 5 s for a loaded machine, well before request_timeout.
        assert lost.wait(timeout / 2 + 5.0), "no lease: the permit outlived the session timeout"
    finally:
        server.signal(signal.SIGCONT)
    assert "lease" in str(permit.loss_reason)
    assert permit.stop_by is not None and permit.stop_by <= frozen_at + timeout * 0.9
