"""A TCP proxy the test controls (tests/client/tcp_proxy.h in Python): it
listens on 127.0.0.1, forwards each connection to the target port, and
``cut()`` resets every connection it carries (both sides, SO_LINGER 0), as a
broken network would; new connections are forwarded again afterwards.
Threads only; ``close()`` stops it (also at the test's end by the fixture)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self.closed = False
        self.reset: set[socket.socket] = set()  # cut: their pumps write no FIN
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                if self.closed:
                    client.close()
                    server.close()
                    return
                self.pairs.append((client, server))
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), name="proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with self.lock:
            if source in self.reset:
                return  # woken by cut(): the reset is the end, no FIN before it
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Resets every connection carried now (both ends). A close alone
        reset nothing while a pump was blocked in recv() on the socket (the
        pending recv() holds it): a peer that sent nothing more saw no end
        at all. shutdown(SHUT_RD) wakes that recv() and sends nothing; the
        close with SO_LINGER 0 then sends the RST."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
            self.reset.update(sock for pair in pairs for sock in pair)
        for pair in pairs:
            for sock in pair:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
        self.listener.close()
        self.cut()


def restart(server: Any, attempts: int = 20) -> None:
    """Starts a server killed -9 a moment ago again, on its port and data: a
    start that finds its data directory still locked (the dead process's
    descriptors not all closed yet) is tried again, bounded."""
    for attempt in range(attempts):
        try:
            server.start()
            return
        except RuntimeError as error:
            if "in use by another netsemd" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
