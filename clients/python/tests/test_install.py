"""The package installs with pip into a clean virtual environment, offline,
and the installed copy works against a real netsemd.

The venv is made by Debian's python3 (python3-venv) without system site
packages; pip gets nothing from an index (``--no-index``) and no settings
from the environment or config files (``--isolated``). setuptools comes with
the venv; ``wheel``, which setuptools before 70.1 needs to build a wheel,
comes from Debian's python3-wheel-whl (/usr/share/python-wheels), both
installed by scripts/install-deps.sh. The sources are copied first, since
setuptools writes ``build/`` and ``*.egg-info`` beside them. The script then
runs from another directory with a clean environment, so that it can only
import the installed package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import PYTHON_DIR, _remove_local_semaphores

SYSTEM_WHEELS = Path("/usr/share/python-wheels")
VENV_PYTHON = "/usr/bin/python3"


def _run(command: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # A clean environment: no PYTHONPATH, no PIP_* settings, no pyenv.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with netsem installed from a copy of clients/python."""
    if not list(SYSTEM_WHEELS.glob("wheel-*.whl")):
        pytest.fail(f"no wheel-*.whl in {SYSTEM_WHEELS}: run scripts/install-deps.sh (python3-wheel-whl)")
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PYTHON_DIR / name, source / name)
    shutil.copytree(PYTHON_DIR / "netsem", source / "netsem", ignore=shutil.ignore_patterns("__pycache__"))
    directory = base / "venv"
    _run([VENV_PYTHON, "-m", "venv", str(directory)], cwd=base)
    pip = [str(directory / "bin/python"), "-m", "pip", "--isolated", "--no-input"]
    _run([*pip, "install", "--no-index", "--find-links", str(SYSTEM_WHEELS), "wheel"], cwd=base)
    _run([*pip, "install", "--no-index", "--no-build-isolation", str(source)], cwd=base)
    return directory


def test_pip_installs_the_package_with_its_type_marker(venv: Path) -> None:
    site = venv / f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    installed = {path.name for path in (site / "netsem").iterdir()}
    expected = {path.name for path in (PYTHON_DIR / "netsem").glob("*.py")} | {"py.typed"}
    assert expected <= installed
    listing = _run([str(venv / "bin/python"), "-m", "pip", "--isolated", "show", "-f", "netsem"], cwd=venv).stdout
    assert "Version: 0.1.0" in listing
    assert "netsem/py.typed" in listing


def test_the_installed_package_is_the_one_imported_and_it_works(venv: Path, netsemd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Its own registry of local semaphores: the host's default one is shared
    # with every other process of this user.
    config = elsewhere / "netsem.ini"
    config.write_text(f"[client]\nservers = {netsemd.address}\nlocal_dir = {elsewhere / 'local'}\n")
    script = elsewhere / "use_netsem.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import netsem
            import netsem.errors

            print(netsem.__file__)
            assert not any("clients/python" in entry for entry in sys.path), sys.path
            error = netsem.errors.from_server("NOT_FOUND", "no such semaphore")
            assert isinstance(error, netsem.NotFound) and isinstance(error, LookupError)
            with netsem.Client(config={str(config)!r}, label="install-test") as client:
                assert client.stats().server == {netsemd.address!r}, client.stats()
                with client.acquire("pool", count=2, timeout=5) as permit:
                    assert permit.fence is not None and not permit.is_local
                    assert client.value("pool") == 1
                assert client.value("pool") == 3
            print("ok")
            """
        )
    )
    try:
        output = _run([str(venv / "bin/python"), str(script)], cwd=elsewhere).stdout.split()
    finally:
        if (elsewhere / "local").exists():
            _remove_local_semaphores(elsewhere / "local")
    assert output[-1] == "ok"
    imported = Path(output[0]).resolve()
    assert imported.is_relative_to(venv.resolve()), imported
    assert "site-packages" in imported.parts
