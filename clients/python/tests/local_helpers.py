"""Helpers of the local-semaphore tests (test_local*.py): Python holder
processes, started by pid and stopped by pid.

``PythonHolder`` runs a child Python that takes something of a registry
(permits, a fallback permit, a server or lost mark), says ``held`` on its
stdout, and keeps it until its stdin closes (then releases and exits) or it
is SIGKILLed (then the kernel's SEM_UNDO gives everything back).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import PYTHON_DIR

_HOLDER = r"""
import sys
from netsem._local import LocalSemaphores

directory, key, limit, count, mode = sys.argv[1:6]
sems = LocalSemaphores(directory)
try:
    if mode in ("acquire", "fallback"):
        grant = sems.acquire(key, int(limit), int(count), 10, fallback=mode == "fallback")
    elif mode == "wait":
        sems.wait(key, int(limit), int(count), 10)
    else:
        mark = sems.mark_server_holder(key, 10)
        if mode == "lost":
            sems.mark_lost(mark)
except Exception as error:
    print(f"failed {type(error).__name__}: {error}", flush=True)
    sys.exit(3)
print("held", flush=True)
sys.stdin.readline()
if mode in ("acquire", "fallback"):
    sems.release(key, int(count), grant)
    sems.unmark(grant.mark)
elif mode != "wait":
    sems.unmark(mark)
print("released", flush=True)
"""


def python_env() -> dict[str, str]:
    """The environment of a child Python that imports the package under test."""
    env = dict(os.environ)
    if env.get("NETSEM_PYTHON_INSTALLED") != "1":
        env["PYTHONPATH"] = str(PYTHON_DIR)
    return env


class PythonHolder:
    """A child Python holding ``count`` permits of ``key`` (mode "acquire",
    "fallback", "wait") or a mark of ``key`` (mode "server", "lost")."""

    def __init__(self, directory: Path, key: str, limit: int = 1, count: int = 1, mode: str = "acquire") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(directory), key, str(limit), str(count), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "held":
            self.kill()
            raise AssertionError(f"the Python holder did not get {key!r}: {line!r}")

    def release(self) -> None:
        """Closes its stdin: it releases, says so, and exits 0."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        assert self.process.stdout.readline().strip() == "released"
        assert self.process.wait(10) == 0

    def kill(self) -> None:
        """SIGKILL, and reaps it: the kernel has then applied its undo adjustments."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def __enter__(self) -> PythonHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
