"""Python and C++ on one host share every local semaphore: the real C++ CLI
(``$NETSEM_CLI``, libnetsem inside) and netsem._local, on one private
registry (the ``local_dir`` fixture, given to the CLI as ``[client]
local_dir``). ``netsem run '$x'`` holds and Python's try fails, and the
reverse; a SIGKILLed Python holder gives its permit back to the CLI; one
entry file per name whoever made it; WAIT/POST counts agree; and the same in
fallback, with the table of holders between a C++ server permit and a Python
fallback permit, and the reverse (docs/local-semaphores.md, "The format both
clients follow").
"""

from __future__ import annotations

import json
import sys
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NETSEM_CLI, Netsemd
from local_helpers import PythonHolder, python_env

import netsem
from netsem._local import LocalInfo, LocalSemaphores

# The CLI's exit status when the permits were not granted in time.
EXIT_TIMEOUT = 75


class Cli:
    """The C++ CLI with a client configuration pointing at one registry."""

    def __init__(self, directory: Path, registry: Path, servers: str) -> None:
        self.config = directory / "client.ini"
        self.config.write_text(
            "[client]\n"
            f"servers = {servers}\n"
            "connect_timeout_ms = 500\n"
            f"local_dir = {registry}\n"
            "[semaphores]\n"
            "$pair = 2\n"
            "$queue = 3\n"
        )

    def argv(self, *args: str) -> list[str]:
        return [str(NETSEM_CLI), "--config", str(self.config), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Runs ``netsem ARGS`` to its end (bounded)."""
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=30, check=False)

    def hold(self, name: str, *options: str) -> CliHolder:
        """``netsem run NAME -- sh -c 'echo held; read line'``, once it holds."""
        command = 'echo "held $NETSEM_LOCAL"; read line || true'
        return CliHolder(self.argv("run", *options, name, "--", "sh", "-c", command))


class CliHolder:
    """A ``netsem run`` whose command holds until its stdin closes."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.line = self.process.stdout.readline().strip()
        if not self.line.startswith("held"):
            self.stop()
            raise AssertionError(f"netsem run did not hold: {self.line!r} {self.stderr}")

    @property
    def local(self) -> bool:
        """True when the CLI said its permits are host-local (NETSEM_LOCAL=1)."""
        return self.line == "held 1"

    def release(self) -> int:
        """Ends the command: netsem releases and exits with its status."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # SIGKILL: the kernel drops its marks and permits
        self.process.wait(30)
        self.stderr = self.process.stderr.read() if self.process.stderr else ""
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> CliHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def registry(local_dir: Path) -> Iterator[Path]:
    yield local_dir / "registry"
    LocalSemaphores(local_dir / "registry").remove_all()


@pytest.fixture
def sems(registry: Path) -> LocalSemaphores:
    return LocalSemaphores(registry)


@pytest.fixture
def offline_cli(tmp_path: Path, registry: Path) -> Cli:
    """The CLI with no server to reach (port 1 refuses): `$` names and fallback."""
    if not NETSEM_CLI.exists():
        pytest.fail(f"no netsem CLI at {NETSEM_CLI}: build it first, or set NETSEM_CLI")
    return Cli(tmp_path, registry, "127.0.0.1:1")


def test_cli_holder_excludes_python(offline_cli: Cli, sems: LocalSemaphores) -> None:
    with offline_cli.hold("$pair", "-n", "2") as holder:
        assert holder.local
        assert sems.info("$pair", 2) == LocalInfo(value=0, held=2, waiting=0)
        with pytest.raises(netsem.Timeout):
            sems.acquire("$pair", 2, 1, 0)
        assert holder.release() == 0
    grant = sems.acquire("$pair", 2, 2, 0)
    sems.release("$pair", 2, grant)


def test_python_holder_excludes_cli(offline_cli: Cli, sems: LocalSemaphores) -> None:
    with PythonHolder(sems.dir, "$pair", limit=2, count=1) as holder:
        tried = offline_cli.run("run", "--nonblock", "-n", "2", "$pair", "--", "true")
        assert tried.returncode == EXIT_TIMEOUT, tried.stderr
        assert "1 of 2 free, 1 permit held on this host" in tried.stderr
        assert offline_cli.run("run", "--nonblock", "$pair", "--", "true").returncode == 0
        holder.release()
    assert offline_cli.run("run", "--nonblock", "-n", "2", "$pair", "--", "true").returncode == 0


def test_sigkilled_python_holder_gives_its_permit_to_the_cli(offline_cli: Cli, sems: LocalSemaphores) -> None:
    holder = PythonHolder(sems.dir, "$solo")
    assert offline_cli.run("run", "--nonblock", "$solo", "--", "true").returncode == EXIT_TIMEOUT
    holder.kill()
    assert offline_cli.run("run", "--nonblock", "$solo", "--", "true").returncode == 0


def test_sigkilled_cli_gives_its_permit_to_python(offline_cli: Cli, sems: LocalSemaphores) -> None:
    holder = offline_cli.hold("$solo")
    with pytest.raises(netsem.Timeout):
        sems.acquire("$solo", 1, 1, 0)
    holder.stop()  # SIGKILL of netsem itself
    sems.release("$solo", 1, sems.acquire("$solo", 1, 1, 0))


def test_one_entry_file_per_name_whoever_made_it(offline_cli: Cli, sems: LocalSemaphores) -> None:
    made_by_python = sems.system_v_id("$queue", 3)
    assert offline_cli.run("run", "$pair", "--", "true").returncode == 0  # made by C++
    listed = offline_cli.run("local", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["$queue"]["semid"] == made_by_python and rows["$queue"]["limit"] == 3
    assert sems.system_v_id("$pair", 2) == rows["$pair"]["semid"]
    names = sorted(p.name for p in sems.dir.iterdir())
    assert names == sorted([LocalSemaphores.entry_file_name("$queue"), LocalSemaphores.entry_file_name("$pair")])


def test_wait_and_post_counts_agree(offline_cli: Cli, sems: LocalSemaphores) -> None:
    sems.wait("$queue", 3, 2, 0)  # consumed by Python
    got = offline_cli.run("get", "--json", "$queue")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["value"] == 1
    assert offline_cli.run("post", "-n", "2", "$queue").returncode == 0  # given back by C++
    assert sems.value("$queue", 3) == 3
    over = offline_cli.run("post", "$queue")
    assert over.returncode == 1 and "above its limit 3" in over.stderr
    with pytest.raises(netsem.Overflow):
        sems.post("$queue", 3, 1)


# -- fallback: the C++ client without a server, and with one --------------


def test_cli_fallback_holder_excludes_python_fallback(offline_cli: Cli, sems: LocalSemaphores) -> None:
    with offline_cli.hold("jobs") as holder:
        assert holder.local  # served by the host-local stand-in: no server
        with pytest.raises(netsem.Timeout):
            sems.acquire("jobs", 1, 1, 0, fallback=True)
        with pytest.raises(netsem.Timeout):
            sems.mark_server_holder("jobs", 0)  # a fallback holder runs on this host
        assert holder.release() == 0
    grant = sems.acquire("jobs", 1, 1, 0, fallback=True)
    sems.release("jobs", 1, grant)
    sems.unmark(grant.mark)


def test_python_fallback_holder_excludes_cli_fallback(offline_cli: Cli, sems: LocalSemaphores) -> None:
    with PythonHolder(sems.dir, "jobs", mode="fallback") as holder:
        assert offline_cli.run("run", "--nonblock", "jobs", "--", "true").returncode == EXIT_TIMEOUT
        holder.release()
    assert offline_cli.run("run", "--nonblock", "jobs", "--", "true").returncode == 0


def test_cli_server_permit_blocks_python_fallback(
    netsemd: Netsemd, tmp_path: Path, registry: Path, sems: LocalSemaphores
) -> None:
    cli = Cli(tmp_path, registry, netsemd.address)
    with cli.hold("pool") as holder:
        assert not holder.local  # a server permit, marked in the table of holders
        with pytest.raises(netsem.Timeout) as caught:
            sems.acquire("pool", 3, 1, 0.05, fallback=True)
        assert "still hold it from the server" in str(caught.value)
        assert sems.value("pool", 3) == 3  # the fallback gave back what it took
        assert holder.release() == 0
    grant = sems.acquire("pool", 3, 1, 0, fallback=True)
    sems.release("pool", 1, grant)
    sems.unmark(grant.mark)


def test_python_fallback_permit_holds_off_a_cli_server_grant(
    netsemd: Netsemd, tmp_path: Path, registry: Path, sems: LocalSemaphores
) -> None:
    # A Python process still runs under a fallback permit of `one` (the
    # server was down for it): the C++ client's server grant waits for it.
    cli = Cli(tmp_path, registry, netsemd.address)
    for mode in ("fallback", "lost"):
        with PythonHolder(sems.dir, "one", mode=mode) as holder:
            tried = cli.run("run", "--timeout", "300ms", "one", "--", "true")
            assert tried.returncode == EXIT_TIMEOUT, (mode, tried.stderr)
            holder.release()
        assert cli.run("run", "--nonblock", "one", "--", "true").returncode == 0


def test_python_server_mark_and_cli_server_permit_coexist(
    netsemd: Netsemd, tmp_path: Path, registry: Path, sems: LocalSemaphores
) -> None:
    # Server marks never exclude each other (the server counts permits);
    # both keep the CLI's offline fallback out.
    cli = Cli(tmp_path, registry, netsemd.address)
    mark = sems.mark_server_holder("pool", 0)
    assert cli.run("run", "--nonblock", "pool", "--", "true").returncode == 0
    assert offline_cli_for(tmp_path, registry).run("run", "--nonblock", "pool", "--", "true").returncode == (
        EXIT_TIMEOUT
    )
    sems.unmark(mark)
    assert offline_cli_for(tmp_path, registry).run("run", "--nonblock", "pool", "--", "true").returncode == 0


def offline_cli_for(tmp_path: Path, registry: Path) -> Cli:
    directory = tmp_path / "offline"
    directory.mkdir(exist_ok=True)
    return Cli(directory, registry, "127.0.0.1:1")


@pytest.mark.parametrize("name", ["$naïve", "$with space", "$日本", "$" + "x" * 200])
def test_names_map_to_the_same_file_in_both(offline_cli: Cli, sems: LocalSemaphores, name: str) -> None:
    ran = offline_cli.run("run", name, "--", "true")
    assert ran.returncode == 0, ran.stderr
    assert [p.name for p in sems.dir.iterdir()] == [LocalSemaphores.entry_file_name(name)]
    listed = json.loads(offline_cli.run("local", "list", "--json").stdout)
    assert [(row["name"], row["semid"]) for row in listed] == [(name, sems.system_v_id(name, 1))]


def test_limit_holds_across_cpp_and_python_processes(offline_cli: Cli, sems: LocalSemaphores, tmp_path: Path) -> None:
    # Three C++ and three Python processes take `$pair` (limit 2) in turns;
    # each holder marks itself in a directory while it holds and records how
    # many marks it saw. Never more than 2, whoever holds.
    holding = tmp_path / "holding"
    holding.mkdir()
    seen = tmp_path / "seen"
    count = f"ls {holding} | wc -l >> {seen}"
    record = f"f={holding}/c$$; touch $f; {count}; sleep 0.01; {count}; rm $f"
    loop = 'for i in 1 2 3 4 5; do "$@" || exit 1; done'
    cpp = [
        subprocess.Popen(["sh", "-c", loop, "loop", *offline_cli.argv("run", "$pair", "-c", record)])
        for _ in range(3)
    ]
    code = r"""
import os, sys, time
from pathlib import Path
from netsem._local import LocalSemaphores
directory, holding, seen = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
sems = LocalSemaphores(directory)
for _ in range(5):
    grant = sems.acquire("$pair", 2, 1, 30)
    mine = holding / f"p{os.getpid()}"
    mine.touch()
    with seen.open("a") as out:
        out.write(f"{len(list(holding.iterdir()))}\n")
    time.sleep(0.01)
    with seen.open("a") as out:
        out.write(f"{len(list(holding.iterdir()))}\n")
    mine.unlink()
    sems.release("$pair", 1, grant)
"""
    python = [
        subprocess.Popen([sys.executable, "-c", code, str(sems.dir), str(holding), str(seen)], env=python_env())
        for _ in range(3)
    ]
    for process in cpp + python:
        assert process.wait(120) == 0
    counts = [int(line) for line in seen.read_text().split()]
    assert len(counts) == 2 * 5 * 6
    assert 1 <= max(counts) <= 2
    assert sems.info("$pair", 2) == LocalInfo(value=2, held=0, waiting=0)


@pytest.mark.parametrize("setting", ["local_dir =", "local_dir = {dir}"])
def test_the_same_configuration_means_the_same_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    # One [client] file read by the C++ CLI and by ClientOptions.from_file
    # must name one registry, or the two would not exclude each other: an
    # empty local_dir is the default directory in both, not the current one.
    from netsem._options import ClientOptions

    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    chosen = tmp_path / "chosen"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "client.ini"
    config.write_text(f"[client]\nservers = 127.0.0.1:1\n{setting.format(dir=chosen)}\n")
    expected = chosen if "{dir}" in setting else runtime / "netsem"
    python = LocalSemaphores(ClientOptions.from_file(config).local_dir)
    try:
        assert python.dir == expected
        ran = subprocess.run(
            [str(NETSEM_CLI), "--config", str(config), "run", "$where", "--", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        assert [p.name for p in expected.iterdir()] == [LocalSemaphores.entry_file_name("$where")]
        assert python.system_v_id("$where", 1) == int(
            (expected / LocalSemaphores.entry_file_name("$where")).read_text().split("\n")[1].split()[1]
        )
    finally:
        python.remove_all()


def test_different_limits_take_turns_and_still_exclude(offline_cli: Cli, sems: LocalSemaphores) -> None:
    # The CLI's file says `$pair = 2`, Python asks for 5: whoever finds the
    # semaphore idle sets its limit, and a busy one keeps the limit it has.
    with offline_cli.hold("$pair") as holder:
        assert sems.info("$pair", 5) == LocalInfo(value=1, held=1, waiting=0)  # in use: still 2
        with pytest.raises(netsem.TooMany):
            sems.acquire("$pair", 5, 3, 0)
        assert holder.release() == 0
    grant = sems.acquire("$pair", 5, 5, 0)  # idle: now a limit of 5, all taken by Python
    tried = offline_cli.run("run", "--nonblock", "$pair", "--", "true")
    assert tried.returncode == EXIT_TIMEOUT, tried.stderr  # busy: the CLI keeps to Python's 5
    sems.release("$pair", 5, grant)
    assert offline_cli.run("run", "--nonblock", "-n", "2", "$pair", "--", "true").returncode == 0
    listed = json.loads(offline_cli.run("local", "list", "--json").stdout)
    assert [(row["limit"], row["free"]) for row in listed] == [(2, 2)]  # idle again: the CLI set its 2


def test_a_collision_chain_is_walked_alike(offline_cli: Cli, sems: LocalSemaphores) -> None:
    # Another key's record in `$solo`'s file (a forged collision): Python
    # takes `<hash>-1`, and the CLI finds `$solo` there, not a second one.
    sems.dir.mkdir(mode=0o700, exist_ok=True)
    base = LocalSemaphores.entry_file_name("$solo")
    (sems.dir / base).write_text("netsem-local 2\nid 0\nctime 0\nlimit 1\nkey $someone-else\n")
    grant = sems.acquire("$solo", 1, 1, 0)
    assert "key $solo\n" in (sems.dir / f"{base}-1").read_text()
    assert offline_cli.run("run", "--nonblock", "$solo", "--", "true").returncode == EXIT_TIMEOUT
    sems.release("$solo", 1, grant)
    assert offline_cli.run("run", "--nonblock", "$solo", "--", "true").returncode == 0
    assert sorted(p.name for p in sems.dir.iterdir()) == [base, f"{base}-1"]
    (sems.dir / base).unlink()  # its id is no semaphore of ours: no clean-up may act on it
