"""The examples of docs/python.md run as they are.

Each ```python block of the guide that starts with ``# Example:`` runs in a
fresh interpreter against a real netsemd that defines ``workers = 3``, with
fallback off (NETSEM_FALLBACK=fail) so that an example cannot pass on local
semaphores while its server calls fail; its last line says what it did.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PYTHON_DIR, SOURCE_DIR

GUIDE = SOURCE_DIR / "docs" / "python.md"


def examples() -> dict[str, str]:
    blocks = re.findall(r"```python\n(# Example: ([^\n]+)\n.*?)```", GUIDE.read_text(), re.S)
    return {title: code for code, title in blocks}


def run(code: str, server: str, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "NETSEM_SERVER": server,
        "NETSEM_CONFIG": "",
        "NETSEM_FALLBACK": "fail",
        "XDG_RUNTIME_DIR": str(tmp_path),  # a registry of its own for local semaphores
        "PYTHONPATH": os.pathsep.join(p for p in [str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")] if p),
    }
    if os.environ.get("NETSEM_PYTHON_INSTALLED") == "1":
        env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr  # no thread died either
    return result.stdout.strip().splitlines()[-1]


def test_the_guide_has_its_examples() -> None:
    assert set(examples()) == {"worker pool", "producer and consumers"}


def test_worker_pool(start_netsemd, tmp_path: Path) -> None:
    server = start_netsemd(semaphores="workers = 3")
    line = run(examples()["worker pool"], server.address, tmp_path)
    match = re.fullmatch(r"served 12 connections, at most (\d) at once", line)
    assert match and 1 <= int(match.group(1)) <= 3, line


def test_producer_and_consumers(start_netsemd, tmp_path: Path) -> None:
    server = start_netsemd(semaphores="workers = 3")
    line = run(examples()["producer and consumers"], server.address, tmp_path)
    assert line == "consumed 20 messages, 20 different, 0 left"
