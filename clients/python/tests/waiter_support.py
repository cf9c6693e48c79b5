"""A bare protocol v1 session queued on the server, for the tests of the lease
(test_client_loss.py, test_aio_loss.py): it stands for a client of another
host, with no lease of its own, and records when the server grants it."""

from __future__ import annotations

import socket
import threading
import time


def raw_waiter(port: int, name: str, granted: list[float], stop: threading.Event) -> threading.Thread:
    """A session queued for ``name`` on 127.0.0.1:``port``: its ACQUIRE is sent
    before this returns; a thread pings so that the server keeps the session,
    and appends to ``granted`` the ``time.monotonic()`` of the grant."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"w1 ACQUIRE " + name.encode() + b"\n")

    def run() -> None:
        with sock:
            sock.settimeout(0.2)
            data = b""
            while not stop.is_set():
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    sock.sendall(b"p PING\n")
                    continue
                if not chunk:
                    return
                data += chunk
                if b"w1 OK" in data:
                    granted.append(time.monotonic())
                    return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
