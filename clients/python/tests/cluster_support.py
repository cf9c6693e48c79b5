"""Three real netsemd in a cluster (docs/replication.md, "Running a cluster";
tests/cluster/netsemd_cluster_test.cc does the same in C++): server i on
127.0.0.i with a [cluster] section naming all three (Raft and client ports
chosen free beforehand), a private secret file of mode 600, its own data.
``leader()`` reads which one leads from their logs (``cluster: leader in
term N``, as tests/cluster/cluster_leader.h). Every process is killed by pid
at the test's end (the fixture ``netsemd_cluster`` in conftest), and dies
with the test process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import Netsemd

_LEADS = re.compile(r"cluster: leader in term (\d+)")


def _free_port(host: str, taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


class ClusterServer(Netsemd):
    """One member: the usual Netsemd with a fixed address and a [cluster] section."""

    def __init__(self, directory: Path, host: str, port: int, semaphores: str, server_options: str,
                 cluster: str) -> None:
        super().__init__(directory, semaphores, server_options)
        self.host = host
        self.port = port
        self.cluster = cluster

    def render_config(self) -> str:
        text = super().render_config().replace("bind_address = 127.0.0.1\n", f"bind_address = {self.host}\n")
        return text + self.cluster

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        import subprocess

        from conftest import NETSEMD, _die_with_parent

        self.config_path.write_text(self.render_config())
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(NETSEMD), "--config", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            )
        if not self.wait_for_log(f"listening on {self.host}:{self.port}", timeout):
            raise RuntimeError(f"netsemd {self.address} did not listen within {timeout} s: {self.log()}")


class Cluster:
    """Three ClusterServers; ``servers[i]`` is server i + 1 on 127.0.0.(i + 1),
    each with ``server_options`` (more [server] lines: TLS, say) too."""

    def __init__(self, base: Path, semaphores: str = "one = 1", session_timeout_ms: int = 3000,
                 size: int = 3, server_options: str = "") -> None:
        taken: set[int] = set()
        hosts = [f"127.0.0.{i + 1}" for i in range(size)]
        client_ports = [_free_port(host, taken) for host in hosts]
        raft_ports = [_free_port(host, taken) for host in hosts]
        members = "".join(
            f"server.{i + 1} = {hosts[i]}:{raft_ports[i]} {hosts[i]}:{client_ports[i]}\n" for i in range(size)
        )
        self.servers: list[ClusterServer] = []
        for i in range(size):
            directory = base / f"server{i + 1}"
            directory.mkdir(parents=True)
            secret = directory / "cluster.secret"
            secret.write_text("a-cluster-secret-of-the-python-test-0123456789\n")
            os.chmod(secret, 0o600)
            cluster = (
                f"[cluster]\nid = {i + 1}\nsecret_file = {secret}\nelection_timeout_ms = 500\n"
                f"heartbeat_timeout_ms = 50\n{members}"
            )
            self.servers.append(
                ClusterServer(directory, hosts[i], client_ports[i], semaphores,
                              f"session_timeout_ms = {session_timeout_ms}\nallowed_networks = 127.0.0.0/8\n"
                              f"{server_options}", cluster)
            )
        for server in self.servers:
            server.start()

    @property
    def addresses(self) -> list[str]:
        return [server.address for server in self.servers]

    def leader(self, timeout: float = 15.0, among: list[int] | None = None) -> int:
        """The index of the running server whose log says it leads in the highest term."""
        deadline = time.monotonic() + timeout
        while True:
            best, best_term = -1, -1
            for i, server in enumerate(self.servers):
                if among is not None and i not in among:
                    continue
                if server.process is None or server.process.poll() is not None:
                    continue
                for match in _LEADS.finditer(server.log()):
                    if int(match.group(1)) > best_term:
                        best, best_term = i, int(match.group(1))
            if best >= 0 or time.monotonic() >= deadline:
                return best
            time.sleep(0.02)

    def logs(self) -> str:
        return "".join(f"--- {server.address}:\n{server.log()}" for server in self.servers)

    def close(self) -> None:
        for server in self.servers:
            server.kill()


def running_cluster(base: Path, **options: Any) -> Iterator[Cluster]:
    """A Cluster (``options`` as Cluster's) for a pytest fixture to ``yield from``:
    its servers are killed at the end, whatever the test did."""
    made = Cluster(base, **options)
    try:
        yield made
    finally:
        made.close()
