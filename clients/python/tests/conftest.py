"""pytest fixtures: the real netsemd on loopback, for every Python test.

``netsemd`` starts a fresh server per test (``Netsemd.start``): a generated
configuration in a temporary directory, port 0 (the port it chose is read
from its log), HTTP on a free port, data under the temporary directory. The
test may stop, kill -9, restart (on the same port, same data) or read the log
of it; whatever it started is killed by process id at the end of the test.

Binaries: ``$NETSEMD`` and ``$NETSEM_CLI`` (CTest sets both to the build's),
else ``build/src/server/netsemd`` and ``build/src/cli/netsem`` of the source
tree. The package is imported from this source tree (``clients/python``)
unless ``NETSEM_PYTHON_INSTALLED=1`` asks for the installed one.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
SOURCE_DIR = PYTHON_DIR.parent.parent
if os.environ.get("NETSEM_PYTHON_INSTALLED") != "1":
    sys.path.insert(0, str(PYTHON_DIR))

NETSEMD = Path(os.environ.get("NETSEMD", SOURCE_DIR / "build/src/server/netsemd"))
NETSEM_CLI = Path(os.environ.get("NETSEM_CLI", SOURCE_DIR / "build/src/cli/netsem"))

_PR_SET_PDEATHSIG = 1
_LISTENING = re.compile(r"listening on [^ ]*:(\d+)")


def _die_with_parent() -> None:
    """In a child before exec: SIGKILL it when the test process dies, so that
    a crashed or killed test never leaves a server holding a port."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Netsemd:
    """One real netsemd process with its own configuration and data."""

    def __init__(self, directory: Path, semaphores: str, server_options: str) -> None:
        self.dir = directory
        self.data_dir = directory / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.config_path = directory / "netsem.ini"
        self.log_path = directory / "netsemd.log"
        self.semaphores = semaphores
        self.server_options = server_options
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def render_config(self) -> str:
        text = (
            "[server]\nbind_address = 127.0.0.1\n"
            f"bind_port = {self.port}\n"
            f"stats_dir = {self.data_dir}\ndata_dir = {self.data_dir}\n"
            "log_level = debug\nstatus_interval_ms = 50\n"
            f"{self.server_options}\n"
        )
        if "http_port" not in self.server_options:
            text += "http_port = 0\n"
        return text + f"[semaphores]\n{self.semaphores}\n"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as Client(servers=...) takes it."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Starts the server (on its former port after a stop) and waits until it listens."""
        self.config_path.write_text(self.render_config())
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(NETSEMD), "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log())
            if match:
                self.port = int(match.group(1))
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"netsemd exited at start ({self.process.returncode}): {self.log()}")
            time.sleep(0.01)
        raise RuntimeError(f"netsemd did not listen within {timeout} s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            time.sleep(0.01)
        return False

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        """kill -9, and reaps it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (a clean shutdown), waits for the exit; returns its status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode

    def restart(self) -> None:
        """Stops it if it runs (SIGTERM) and starts it again on the same port and data."""
        if self.process is not None and self.process.poll() is None:
            self.stop()
        self.start()


class ServerFactory:
    """Starts servers for one test and kills them all at its end."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.servers: list[Netsemd] = []

    def __call__(self, semaphores: str = "", server_options: str = "") -> Netsemd:
        directory = Path(tempfile.mkdtemp(prefix="netsemd-", dir=self.base))
        server = Netsemd(directory, semaphores, server_options)
        server.start()
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.kill()


@pytest.fixture
def start_netsemd(tmp_path: Path) -> Iterator[ServerFactory]:
    """``start_netsemd(semaphores="search = 3", server_options="session_timeout_ms = 3000")``"""
    if not NETSEMD.exists():
        pytest.fail(f"no netsemd at {NETSEMD}: build it first, or set NETSEMD")
    factory = ServerFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def netsemd(start_netsemd: ServerFactory) -> Netsemd:
    """A netsemd with the defined semaphores ``pool = 3`` and ``one = 1``."""
    return start_netsemd(semaphores="pool = 3\none = 1")


@pytest.fixture
def local_dir(tmp_path: Path) -> Iterator[Path]:
    """A private registry directory for local semaphores; every semaphore made
    there is removed at the end (``netsem local clean --all`` would do the same)."""
    directory = tmp_path / "local"
    directory.mkdir(mode=0o700)
    yield directory
    _remove_local_semaphores(directory)


def _remove_local_semaphores(directory: Path) -> None:
    # The registry files name their System V ids; remove them so that tests
    # never leak kernel semaphores (they outlive processes). Registries in
    # subdirectories too. Only a set that is still the one recorded (this
    # user's, with the recorded size and creation time) is removed: a stale
    # or forged record's id may by now be another process's semaphore.
    from netsem import _local_registry, _sysv

    for entry in sorted(directory.rglob("*")):
        if entry.is_symlink() or not entry.is_file():
            continue
        try:
            text = entry.read_bytes()[:4096]
        except OSError:
            continue
        record = _local_registry._parse_record(text)
        table = _local_registry._parse_table(text)
        live = (record is not None and _local_registry.is_live(record.id, record.ctime)) or (
            table is not None and _local_registry.is_live_table(table)
        )
        if live:
            try:
                _sysv.rmid(record.id if record is not None else table.id)  # type: ignore[union-attr]
            except OSError:
                pass


def client_factory(local_dir: Path, kind: str = "blocking", **defaults: object) -> Iterator[Callable[..., Any]]:
    """What a module's ``clients`` fixture yields from: ``make(servers,
    **options)`` makes a blocking Client of ``servers`` (an address, or a list
    of them) with the test's own registry of local semaphores and `defaults`
    for the options not given (``kind`` "aio": a netsem.aio Client driven
    from the test's thread, aio_support.AioInThread); every Client made is
    closed at the end."""
    from aio_support import make_either

    from netsem import ClientOptions

    made: list[Any] = []

    def make(servers: str | list[str], **given: object) -> Any:
        chosen = {"local_dir": local_dir, **defaults, **given}
        addresses = [servers] if isinstance(servers, str) else servers
        client = make_either(kind, ClientOptions(servers=addresses, **chosen))  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def proxies() -> Iterator[Callable[[int], Any]]:
    """``proxies(port)``: a TcpProxy (proxy_support) to a server's port,
    closed at the test's end."""
    from proxy_support import TcpProxy

    made: list[TcpProxy] = []

    def make(port: int) -> TcpProxy:
        proxy = TcpProxy(port)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def acquire_in_thread(client: Any, name: str, timeout: float = 15.0, **options: Any
                      ) -> tuple[threading.Thread, list[Any]]:
    """``client.acquire(name, timeout, **options)`` on a thread of its own,
    started: the thread, and ``got``, where its permit or error goes
    (reported by the test thread)."""
    got: list[Any] = []

    def wait() -> None:
        try:
            got.append(client.acquire(name, timeout=timeout, **options))
        except BaseException as error:  # reported by the test thread
            got.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, got


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Polls `condition` every 5 ms until it holds or `timeout` seconds pass;
    its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> "Pki":
    """A CA with server and client certificates made by openssl (tls_support)."""
    from tls_support import Pki

    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokens_file of tls_support.TOKENS, hashed by netsemd --hash-token."""
    from tls_support import write_tokens_file

    return write_tokens_file(tmp_path_factory.mktemp("tokens"))
