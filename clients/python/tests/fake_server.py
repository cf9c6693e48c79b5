"""A fake netsem server on 127.0.0.1 that answers what a test scripts, to see
how a client copes with a server that misbehaves.

    def garbage(peer: Peer) -> None:
        peer.read_line()                  # the client's first request (HELLO)
        peer.send(b"\\x00\\xff not netsem\\n")

    with FakeServer(garbage) as server:   # listens on 127.0.0.1:<port>
        ... Client(server.address) ...

Each accepted connection runs the script on its own thread with a Peer
(line reads bounded by a timeout, sends that never raise). ``handshake``
answers HELLO, STATS and OPTION as a real server does, so that a script can
misbehave only after it. Everything is bounded: reads time out, the
scripts' sends stop when the server closes, and ``close`` shuts every
connection down and joins every thread it started (a test fails if one is
left). Connections are counted (``accepted``) so a test can see that a
client reconnected, and every request line is kept (``lines``);
``frozen`` makes every connection silent from then on.
``MovingPair`` scripts two 1.2 servers between which a session moves.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

Script = Callable[["Peer"], None]


class Peer:
    """The server's side of one connection."""

    def __init__(self, sock: socket.socket, server: FakeServer) -> None:
        self.sock = sock
        self.server = server
        self.buffer = b""

    def read_line(self, timeout: float = 5.0) -> str | None:
        """The next request line without its "\\n"; None at the end of the
        stream, on timeout, or once the server closes."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.server.closing.is_set():
                return None
            try:
                self.sock.settimeout(min(left, 0.1))
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        text = line.decode(errors="replace")
        with self.server.lock:
            self.server.lines.append(text)
        return text

    def send(self, data: bytes) -> bool:
        """Sends all of ``data``; False when the client has gone or the server
        closes. Nothing while the server is ``frozen`` (True: the script goes on)."""
        if self.server.closing.is_set():
            return False
        if self.server.frozen.is_set():
            return True
        try:
            self.sock.settimeout(2.0)
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def handshake(self, version: str = "1.1", session_id: int = 7, session_timeout_ms: int = 0,
                  lease_ms: int | None = None) -> bool:
        """Answers the client's opening requests as netsemd does (HELLO with
        ``netsem <version> <id>``, STATS with the session timeout, LEASE,
        RESUMABLE and LEADER with UNKNOWN_VERB as a 1.1 server, anything else OK) until HELLO and STATS are answered; False if the client went.
        ``lease_ms``: LEASE answers ``OK <lease_ms>`` (the session timeout, as a 1.2 server)."""
        answered: set[str] = set()
        while not {"HELLO", "STATS"} <= answered:
            line = self.read_line()
            if line is None:
                return False
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0]
            if verb == "HELLO":
                reply = f"OK netsem {version} {session_id}"
            elif verb == "STATS":
                reply = f'OK {{"session_timeout_ms":{session_timeout_ms}}}'
            elif verb == "LEASE" and lease_ms is not None:
                reply = f"OK {lease_ms}"
            elif verb in ("LEASE", "RESUMABLE", "LEADER"):  # proposed 1.2: a 1.1 server tells T by STATS only
                reply = f"ERR UNKNOWN_VERB {verb}"
            else:
                reply = "OK"
            answered.add(verb)
            if not self.send(f"{tag} {reply}\n".encode()):
                return False
        return True

    def read_request(self, timeout: float = 5.0) -> str | None:
        """The next request line other than PING, OPTION and RESUMABLE, which
        it answers as netsemd 1.1 does (PONG, OK, UNKNOWN_VERB) on the way;
        None as read_line."""
        deadline = time.monotonic() + timeout
        answers = {"PING": "PONG", "OPTION": "OK", "RESUMABLE": "ERR UNKNOWN_VERB RESUMABLE"}
        while (line := self.read_line(max(0.0, deadline - time.monotonic()))) is not None:
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0]
            if verb not in answers:
                return line
            if not self.send(f"{tag} {answers[verb]}\n".encode()):
                return None
        return None

    def serve_honestly(self, fence: int = 1) -> None:
        """After the handshake: grants every ACQUIRE (fence ``fence``), answers
        RELEASE, PING, GET and the rest OK, until the client goes."""
        while (line := self.read_line(timeout=30)) is not None:
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0]
            reply = {"ACQUIRE": f"OK {fence}", "PING": "PONG", "GET": "OK 1 1 0 0 defined"}.get(verb, "OK")
            if not self.send(f"{tag} {reply}\n".encode()):
                return

    def answer_all(self, answers: dict[str, str], mine: str = "") -> None:
        """Answers every request by its verb from ``answers`` (else OK; PING
        with PONG and its payload; MINE with the ITEM rows ``mine``, one per
        line, and END) until the client goes or the server closes."""
        while (line := self.read_line(timeout=30)) is not None:
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0]
            if verb == "PING":
                reply = f"{tag} PONG {rest[5:]}".rstrip() + "\n"
            elif verb == "MINE":
                rows = [row for row in mine.split("\n") if row]
                reply = "".join(f"{tag} ITEM {row}\n" for row in rows) + f"{tag} END {len(rows)}\n"
            else:
                reply = f"{tag} {answers.get(verb, 'OK')}\n"
            if not self.send(reply.encode()):
                return

    def shutdown(self) -> None:
        """Ends the connection both ways; the socket stays open (no EBADF for
        a script still using it) until its thread closes it."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.shutdown()
        self.sock.close()


class FakeServer:
    """Listens on 127.0.0.1 (a free port) and runs ``script(peer)`` per
    connection. ``accepts``: after that many connections it goes on listening
    and accepts no more (a frozen server: the kernel queues the next ones,
    ``backlog`` + 1 of them on Linux, then drops the SYN)."""

    def __init__(self, script: Script, max_connections: int = 50, *, accepts: int | None = None,
                 backlog: int | None = None) -> None:
        self.script = script
        self.max_connections = max_connections
        self.accepts = accepts
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.closing = threading.Event()
        # Set: every connection stays open and reads on, and nothing is sent
        # (a server frozen mid-session, as a SIGSTOPped one seen by its clients).
        self.frozen = threading.Event()
        self.lock = threading.Lock()
        self.accepted = 0  # guarded by lock
        self.lines: list[str] = []  # guarded by lock: every request line read
        self.errors: list[BaseException] = []  # guarded by lock: scripts that raised
        self.peers: list[Peer] = []  # guarded by lock
        self.threads: list[threading.Thread] = []  # guarded by lock
        self.acceptor = threading.Thread(target=self._accept, name="fake-server accept", daemon=True)
        self.acceptor.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closing.is_set():
            if self.accepts is not None and self.connections() >= self.accepts:
                self.closing.wait(0.05)
                continue
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peer = Peer(sock, self)
            thread = threading.Thread(target=self._run, args=(peer,), name="fake-server peer", daemon=True)
            with self.lock:
                self.accepted += 1
                over = self.accepted > self.max_connections
                if not over:
                    self.peers.append(peer)
                    self.threads.append(thread)
            if over:
                peer.close()  # a client reconnecting in a loop: refuse the excess
                continue
            thread.start()

    def _run(self, peer: Peer) -> None:
        try:
            self.script(peer)
        except BaseException as error:  # reported by close(): a script must not fail silently
            with self.lock:
                self.errors.append(error)
        finally:
            peer.close()

    def connections(self) -> int:
        with self.lock:
            return self.accepted

    def close(self) -> None:
        """Stops accepting, closes every connection, joins every thread (at most 5 s)."""
        self.closing.set()
        self.listener.close()
        self.acceptor.join(5)
        with self.lock:
            peers, threads = list(self.peers), list(self.threads)
        for peer in peers:
            peer.shutdown()
        for thread in threads:
            thread.join(5)
        assert not self.acceptor.is_alive() and not any(thread.is_alive() for thread in threads)
        with self.lock:
            assert not self.errors, f"a fake server script failed: {self.errors!r}"

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


class MovingPair:
    """Two fake 1.2 server scripts for the resume rule 5 (test_resume.py,
    test_aio_resume.py):
    A grants ``db`` (fence 9) and then answers no PING; when the client's
    RESUME reaches B, B has A kick the old connection (``* ERR KICKED resumed
    on another connection``, as netsemd does once the RESUME took the session)
    and answers the RESUME only 0.3 s later: the client reads the KICK while its
    move is under way."""

    SECRET = "0123456789abcdef0123456789abcdef"

    def __init__(self) -> None:
        self.kick = threading.Event()
        self.resumed = threading.Event()
        self.a_address = ""
        self.b_address = ""

    def server_a(self, peer: Peer) -> None:
        answers = {"HELLO": "OK netsem 1.2 42", "LEASE": "OK 3000", "LEADER": f"OK {self.a_address}",
                   "STATS": 'OK {"session_timeout_ms":3000}', "RESUMABLE": f"OK 42 {self.SECRET}",
                   "ACQUIRE": "OK 9"}
        deadline = time.monotonic() + 10
        while not self.kick.is_set() and time.monotonic() < deadline:
            line = peer.read_line(timeout=0.02)
            if line is None:
                continue
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0]
            if verb in answers:
                peer.send(f"{tag} {answers[verb]}\n".encode())
            elif verb == "OPTION":
                peer.send(f"{tag} OK\n".encode())
            # PING: silence
        peer.send(b"* ERR KICKED resumed on another connection\n")
        self.resumed.wait(5)
        time.sleep(0.5)

    def server_b(self, peer: Peer) -> None:
        line = peer.read_line()
        if line is None or f" RESUME 42 {self.SECRET}" not in line:
            return
        self.kick.set()
        time.sleep(0.3)
        answers = {"RESUME": "OK 42 0", "HELLO": "OK netsem 1.2 42", "LEASE": "OK 3000",
                   "LEADER": f"OK {self.a_address}"}
        while line is not None:
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0]
            if verb == "MINE":
                peer.send(f"{tag} ITEM held db 1 9\n{tag} END 1\n".encode())
                self.resumed.set()
            elif verb == "PING":
                peer.send(f"{tag} PONG {rest[5:]}".rstrip().encode() + b"\n")
            else:
                peer.send(f"{tag} {answers.get(verb, 'OK')}\n".encode())
            line = peer.read_line(timeout=10)


# Peer.answer_all's answers of a 1.2 server (T = 6 s) whose session 42 is
# resumable (MovingPair.SECRET) and grants every ACQUIRE with fence 5, and of
# one that resumes that session (with ``mine="held one 1 5"``).
RESUMABLE_42 = {"HELLO": "OK netsem 1.2 42", "LEASE": "OK 6000", "LEADER": "ERR UNKNOWN_VERB LEADER",
                "STATS": 'OK {"session_timeout_ms":6000}',
                "RESUMABLE": f"OK 42 {MovingPair.SECRET}", "ACQUIRE": "OK 5"}
RESUMES_42 = {"RESUME": "OK 42 0", "HELLO": "OK netsem 1.2 42", "LEASE": "OK 6000",
              "LEADER": "ERR UNKNOWN_VERB LEADER"}
