"""netsem.ace against the real netsemd: ACE's call sites (acquire/release,
the NetworkSemaphore context, cancel_request and cancel_request_callback,
the failsafe monitor, fallback while the server is down) behave as ACE's
client does, speaking protocol v1 with the timeout on the server.

What the server sees is read over a raw socket in protocol v1 (``Observer``),
and an ACE-dialect peer (``ace_dialect_hold``) shows that both reach the
same semaphore.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PYTHON_DIR, wait_until
from fake_server import FakeServer, Peer
from netsem import ace
from netsem._options import ClientOptions, FallbackPolicy
from netsem.client import Client


class Observer:
    """A raw protocol v1 connection that asks the server what it holds."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")
        self.tag = 0

    def ask(self, line: str) -> list[str]:
        """Sends one request; returns its answer lines (through END for listings)."""
        self.tag += 1
        tag = f"o{self.tag}"
        self.sock.sendall(f"{tag} {line}\n".encode())
        lines = []
        while True:
            answer = self.reader.readline().decode().rstrip("\n")
            assert answer, "the server closed the observer's connection"
            if not answer.startswith(tag + " "):
                continue
            lines.append(answer[len(tag) + 1 :])
            if not answer.split(" ")[1] == "ITEM":
                return lines

    def value(self, name: str) -> int:
        answer = self.ask(f"GET {name}")[0].split(" ")
        assert answer[0] == "OK", answer
        return int(answer[1])

    def waiters(self, name: str) -> int:
        return len(self.ask(f"WAITERS {name}")) - 1

    def holders(self, name: str) -> int:
        return len(self.ask(f"HOLDERS {name}")) - 1

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@pytest.fixture
def observer(netsemd) -> Iterator[Observer]:  # type: ignore[no-untyped-def]
    watcher = Observer(netsemd.port)
    yield watcher
    watcher.close()


@pytest.fixture
def configured(netsemd, local_dir: Path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """netsem.ace's shared Client pointed at the test's server (as an ACE
    installation does at start-up), fallback `fail` so that nothing is
    served locally by accident; closed at the end."""
    options = ClientOptions(servers=[netsemd.address], local_dir=local_dir, fallback=FallbackPolicy.parse("fail"))
    ace.configure(options=options)
    yield
    ace.close()


def queue_behind(waiter: ace.NetworkSemaphoreClient, observer: Observer,
                 **acquire: object) -> tuple[threading.Thread, list[bool]]:
    """``waiter``'s acquire of "one" (``acquire`` its keywords), in a thread of
    its own, until ``observer`` sees it queued: the thread, and the list its
    answer goes to."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(waiter.acquire("one", **acquire)))
    thread.start()
    assert wait_until(lambda: observer.waiters("one") == 1)
    return thread, result


def test_acquire_and_release_hold_one_permit_on_the_server(configured, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    first = ace.NetworkSemaphoreClient()
    assert first.acquire("one") is True
    assert first.semaphore_acquired and first.semaphore_name == "one"
    assert first.fallback_semaphore is None and first.socket is None
    assert first.permit is not None and first.permit.fence is not None
    assert observer.value("one") == 0 and observer.holders("one") == 1
    assert first.acquire("one") is True  # ACE: already acquired, a warning, True
    assert observer.value("one") == 0

    second = ace.NetworkSemaphoreClient()
    started = time.monotonic()
    assert second.acquire("one", timeout=0.3) is False
    assert 0.25 <= time.monotonic() - started < 5
    assert not second.semaphore_acquired
    # The timeout ran on the server: the request has left its queue.
    assert observer.waiters("one") == 0

    first.release()
    assert not first.semaphore_acquired and first.permit is None
    assert observer.value("one") == 1
    first.release()  # ACE: a warning, nothing else
    assert second.acquire("one", timeout=5) is True
    second.release()
    assert observer.value("one") == 1


def test_timeout_zero_only_tries(configured, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    holder = ace.NetworkSemaphoreClient()
    assert holder.acquire("one", timeout=0)
    started = time.monotonic()
    assert ace.NetworkSemaphoreClient().acquire("one", timeout=0) is False
    assert time.monotonic() - started < 2
    holder.release()


def test_a_waiter_is_granted_in_turn_when_the_holder_releases(configured, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    holder = ace.NetworkSemaphoreClient()
    assert holder.acquire("one")
    waiter = ace.NetworkSemaphoreClient()
    thread, result = queue_behind(waiter, observer)
    holder.release()
    thread.join(10)
    assert result == [True]
    assert observer.holders("one") == 1
    waiter.release()
    assert observer.value("one") == 1


def test_a_wait_longer_than_the_request_timeout_stays_on_the_server(netsemd, local_dir: Path, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    # The server says nothing to a queued request until its grant: the
    # client must not take that for a dead server (libnetsem did, and fell
    # back beside the server's holder of the name).
    options = ClientOptions(
        servers=[netsemd.address], local_dir=local_dir, fallback=FallbackPolicy.parse("fail"), request_timeout=0.3
    )
    with Client(options=options) as netsem_client:
        holder = ace.NetworkSemaphoreClient(client=netsem_client)
        assert holder.acquire("one")
        waiter = ace.NetworkSemaphoreClient(client=netsem_client)
        thread, result = queue_behind(waiter, observer, timeout=10)
        time.sleep(1.2)  # four request timeouts of waiting in the queue
        assert observer.waiters("one") == 1 and result == []
        holder.release()
        thread.join(10)
        assert result == [True] and waiter.fallback_semaphore is None
        assert observer.holders("one") == 1
        waiter.release()


def test_cancel_request_from_another_thread_ends_a_pending_acquire(configured, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    holder = ace.NetworkSemaphoreClient()
    assert holder.acquire("one")
    waiter = ace.NetworkSemaphoreClient()
    thread, result = queue_behind(waiter, observer)
    started = time.monotonic()
    waiter.cancel_request()
    thread.join(10)
    assert result == [False]
    assert time.monotonic() - started < 2
    assert observer.waiters("one") == 0
    # ACE: once cancelled, the instance's later acquires give up at once.
    holder.release()
    assert waiter.acquire("one", timeout=5) is False
    assert observer.value("one") == 1


def test_cancel_request_callback_is_polled_while_waiting(configured, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    holder = ace.NetworkSemaphoreClient()
    assert holder.acquire("one")
    stop = threading.Event()
    asked: list[float] = []

    def engine_is_stopping() -> bool:
        asked.append(time.monotonic())
        return stop.is_set()

    waiter = ace.NetworkSemaphoreClient(cancel_request_callback=engine_is_stopping)
    thread, result = queue_behind(waiter, observer)
    assert wait_until(lambda: len(asked) >= 3)
    assert result == []
    stopped_at = time.monotonic()
    stop.set()
    thread.join(10)
    assert result == [False]
    assert time.monotonic() - stopped_at < 1.5
    assert observer.waiters("one") == 0
    assert waiter.request_is_cancelled
    holder.release()
    assert observer.value("one") == 1


def test_a_callback_that_already_cancels_queues_nothing(configured, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    client = ace.NetworkSemaphoreClient(cancel_request_callback=lambda: True)
    assert client.acquire("one") is False
    assert observer.value("one") == 1 and observer.waiters("one") == 0


def test_the_failsafe_keeps_the_permit_past_the_session_timeout(start_netsemd, local_dir: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_netsemd(semaphores="one = 1", server_options="session_timeout_ms = 600")
    threads_before = set(threading.enumerate())
    options = ClientOptions(servers=[server.address], local_dir=local_dir, fallback=FallbackPolicy.parse("fail"))
    with Client(options=options) as netsem_client:
        holder = ace.NetworkSemaphoreClient(client=netsem_client)
        assert holder.acquire("one")
        assert holder.failsafe_thread is not None and holder.failsafe_thread.is_alive()
        assert holder.failsafe_thread.name == "Failsafe one"
        held_at = time.monotonic()
        # Three session timeouts of holding without a call: the Client's
        # pings keep the session, so the server still counts this holder
        # and nobody else gets the permit.
        while time.monotonic() - held_at < 1.8:
            assert ace.NetworkSemaphoreClient(client=netsem_client).acquire("one", timeout=0) is False
            time.sleep(0.2)
        watcher = Observer(server.port)  # now: a raw session that says nothing would time out too
        assert watcher.holders("one") == 1 and watcher.value("one") == 0
        assert holder.permit is not None and not holder.permit.lost
        failsafe = holder.failsafe_thread
        holder.release()
        assert not failsafe.is_alive()
        assert watcher.value("one") == 1
    watcher.close()
    # Nothing left running: the failsafe, the cancel watchers and the Client's threads.
    assert wait_until(lambda: set(threading.enumerate()) <= threads_before)


def test_network_semaphore_context_holds_for_the_block(configured, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    with ace.NetworkSemaphore("pool") as held:
        assert held.semaphore.semaphore_acquired
        assert observer.value("pool") == 2
        with ace.NetworkSemaphore("pool"), ace.NetworkSemaphore("pool"):
            assert observer.value("pool") == 0
    assert observer.value("pool") == 3
    ace.set_semaphores_enabled(False)
    try:
        with ace.NetworkSemaphore("one") as off:
            assert not off.semaphore.semaphore_acquired
            assert observer.value("one") == 1
    finally:
        ace.set_semaphores_enabled(True)


def test_ace_dialect_and_drop_in_share_the_semaphore(configured, netsemd, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    # ACE's own client (the ACE dialect, on the same port) holds `one`...
    with socket.create_connection(("127.0.0.1", netsemd.port), timeout=10) as ace_peer:
        ace_peer.sendall(b"acquire:one|")
        assert ace_peer.recv(64) == b"locked|"
        assert ace.NetworkSemaphoreClient().acquire("one", timeout=0.2) is False
        ace_peer.sendall(b"release|")
        assert ace_peer.recv(64) == b"ok|"
    # ... and a name with a space and a colon, as ACE writes them, is the
    # same semaphore for both (v1 percent-encodes it on the wire).
    client = ace.NetworkSemaphoreClient()
    assert client.acquire("host:10.0.0.1 web", timeout=5)
    with socket.create_connection(("127.0.0.1", netsemd.port), timeout=10) as ace_peer:
        ace_peer.sendall(b"acquire:host:10.0.0.1 web|")
        assert wait_until(lambda: observer.waiters("host:10.0.0.1%20web") == 1)  # queued behind the drop-in
        client.release()
        answer = b""
        while not answer.endswith(b"locked|"):
            chunk = ace_peer.recv(64)
            assert chunk, answer
            answer += chunk
        ace_peer.sendall(b"release|")


def ace_file(path: Path, port: int, local_dir: Path, extra: str = "") -> Path:
    """An ACE configuration file as ACE ships it, naming the server and the
    semaphores; [client] local_dir keeps the test's local semaphores apart."""
    path.write_text(
        "[global]\ninstance_name = test\n\n"
        f"[{ace.ACE_SECTION}]\n"
        "module = saq.network_semaphore\nclass = NetworkSemaphoreServer\nenabled = yes\n"
        "bind_address = 127.0.0.1\nbind_port = 53559\n"
        f"remote_address = 127.0.0.1\nremote_port = {port}\n"
        "allowed_ipv4 = 127.0.0.1/32\n"
        "Semaphore_Pool = 2\nsemaphore_zero = 0\n\n"
        f"[client]\nlocal_dir = {local_dir}\nconnect_timeout_ms = 300\n{extra}"
    )
    return path


def test_the_server_comes_from_an_ace_file(netsemd, local_dir: Path, tmp_path: Path, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    ace.configure(ace_file(tmp_path / "saq.ini", netsemd.port, local_dir, "fallback = fail\n"))
    try:
        client = ace.NetworkSemaphoreClient()
        assert client.acquire("pool", timeout=5)
        assert client.fallback_semaphore is None
        assert observer.value("pool") == 2
        client.release()
    finally:
        ace.close()


def test_fallback_when_the_server_is_down_uses_the_ace_file_limits(start_netsemd, local_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_netsemd(semaphores="pool = 2")
    port = server.port
    server.kill()
    ace.configure(ace_file(tmp_path / "saq.ini", port, local_dir))
    try:
        assert ace.shared_client().options.limits["pool"] == 2  # type: ignore[attr-defined]
        first, second, third = (ace.NetworkSemaphoreClient() for _ in range(3))
        assert first.acquire("pool", timeout=5) and second.acquire("pool", timeout=5)
        assert first.fallback_semaphore is first.permit and first.permit is not None and first.permit.is_local
        assert first.permit.fence is None
        started = time.monotonic()
        assert third.acquire("pool", timeout=0.3) is False  # the ACE file's limit, 2, on this host
        assert 0.25 <= time.monotonic() - started < 5
        first.release()
        assert third.acquire("pool", timeout=5)
        # semaphore_zero = 0 falls back with limit 1, as in ACE.
        zero = ace.NetworkSemaphoreClient()
        assert zero.acquire("zero", timeout=5)
        assert ace.NetworkSemaphoreClient().acquire("zero", timeout=0) is False
        for client in (second, third, zero):
            client.release()
            assert client.fallback_semaphore is None
    finally:
        ace.close()


def test_fallback_fail_makes_the_context_raise_as_ace_does(start_netsemd, local_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_netsemd()
    port = server.port
    server.kill()
    ace.configure(ace_file(tmp_path / "saq.ini", port, local_dir, "fallback = fail\n"))
    try:
        assert ace.NetworkSemaphoreClient().acquire("pool", timeout=1) is False
        with pytest.raises(RuntimeError, match="failed to acquire network semaphore: pool"):
            with ace.NetworkSemaphore("pool"):
                pass
    finally:
        ace.close()


def test_changing_the_import_is_all_an_ace_process_needs(netsemd, local_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A fresh process that only imports netsem.ace instead of ACE's module,
    # with NETSEM_CONFIG naming ACE's own file: no configure() call.
    config = ace_file(tmp_path / "saq.ini", netsemd.port, local_dir, "fallback = fail\n")
    script = (
        "from netsem.ace import NetworkSemaphore, NetworkSemaphoreClient\n"
        "client = NetworkSemaphoreClient()\n"
        "assert client.acquire('pool', timeout=5)\n"
        "assert client.fallback_semaphore is None and client.permit.fence is not None\n"
        "with NetworkSemaphore('pool') as held:\n"
        "    assert held.semaphore.permit.fence > client.permit.fence\n"
        "client.release()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NETSEM_CONFIG": str(config), "PYTHONPATH": str(PYTHON_DIR)}
    env.pop("NETSEM_SERVER", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "ok"


def _garbage(peer: Peer) -> None:
    peer.read_line()
    peer.send(b"\x00\xff not netsem\n")


def _silent(peer: Peer) -> None:
    while peer.read_line(timeout=0.2) is not None or not peer.server.closing.is_set():
        pass


# A silent server is no outage (test_silent.py): the acquire waits for a round
# that decides, so until its own timeout, and a NetworkSemaphore (no timeout)
# would wait for as long; garbage is a refusal, answered at once.
@pytest.mark.parametrize(("script", "timeout"), [(_garbage, 30), (_silent, 1)], ids=["garbage", "silent"])
def test_a_hostile_server_makes_acquire_answer_false_never_hang(script, timeout: float,  # type: ignore[no-untyped-def]
                                                                local_dir: Path) -> None:
    with FakeServer(script) as server:
        options = ClientOptions(
            servers=[server.address],
            local_dir=local_dir,
            fallback=FallbackPolicy.parse("fail"),
            connect_timeout=0.3,
            request_timeout=0.5,
        )
        ace.configure(options=options)
        try:
            client = ace.NetworkSemaphoreClient()
            started = time.monotonic()
            assert client.acquire("pool", timeout=timeout) is False
            assert time.monotonic() - started < 5
            assert not client.semaphore_acquired
            client.release()  # a warning, nothing else
            if script is _garbage:
                with pytest.raises(RuntimeError):
                    with ace.NetworkSemaphore("pool"):
                        pass
        finally:
            ace.close()


def test_a_bad_ace_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "saq.ini"
    bad.write_text(f"[{ace.ACE_SECTION}]\nremote_address = 127.0.0.1\nremote_port = 1\nsemaphore_x = many\n")
    with pytest.raises(ace.errors.InvalidArgument, match=r"saq.ini:4: semaphore_x: `many` is not a whole number"):
        ace.configure(bad)


def test_ace_fallback_limits_reads_as_every_client_does(tmp_path: Path) -> None:
    """The public helper and ClientOptions.from_file are one reader."""
    path = tmp_path / "saq.ini"
    path.write_text(f"[DEFAULT]\nsemaphore_inherited = 4\n[{ace.ACE_SECTION}]\nSemaphore_Pool = 3\nsemaphore_zero = 0\n")
    assert ace.ace_fallback_limits(path) == {"inherited": 4, "pool": 3, "zero": 1}
    assert ace.ace_fallback_limits(path) == ClientOptions.from_file(path).limits
    other = tmp_path / "netsem.ini"
    other.write_text("[semaphores]\npool = 2\n")
    assert ace.ace_fallback_limits(other) == {}
