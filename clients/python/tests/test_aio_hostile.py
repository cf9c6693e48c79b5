"""netsem.aio against hostile or broken servers (fake ones on 127.0.0.1, run
by asyncio in the test's own loop): the client raises or falls back within
its timeouts, and never hangs or crashes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aio_support import options, run, until

import netsem
import netsem.aio

Behaviour = Callable[[str, str, asyncio.StreamWriter], Awaitable[None]]


async def fake_server(
    behaviour: Behaviour | None, greeting: bytes = b"", session_timeout_ms: int = 0
) -> tuple[asyncio.Server, str]:
    """A server that writes ``greeting`` on connect, then answers HELLO, LEASE,
    RESUMABLE and LEADER (UNKNOWN_VERB, as a 1.1 server), STATS
    (with ``session_timeout_ms``), OPTION and PING as netsemd would and hands
    every other request line to ``behaviour(tag, verb, writer)``; with no
    behaviour it never answers anything."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if greeting:
                writer.write(greeting)
            while line := await reader.readline():
                if behaviour is None:
                    continue
                tag, verb = (line.decode().split() + [""])[:2]
                if verb == "HELLO":
                    writer.write(f"{tag} OK netsem 1.1 7\n".encode())
                elif verb == "STATS":
                    writer.write(f'{tag} OK {{"session_timeout_ms":{session_timeout_ms}}}\n'.encode())
                elif verb in ("LEASE", "RESUMABLE", "LEADER"):  # a 1.1 server: T from STATS, no resume
                    writer.write(f"{tag} ERR UNKNOWN_VERB {verb}\n".encode())
                elif verb in ("OPTION", "PING"):
                    writer.write(f"{tag} {'PONG' if verb == 'PING' else 'OK'}\n".encode())
                else:
                    await behaviour(tag, verb, writer)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def client_options(address: str, local_dir: Path) -> Any:
    return options(address, local_dir, connect_timeout=0.3, request_timeout=1.0, reconnect_min=0.05)


def test_a_server_that_speaks_another_protocol_is_refused(local_dir: Path) -> None:
    async def main() -> None:
        server, address = await fake_server(None, b"HTTP/1.1 400 Bad Request\r\n\r\n")
        async with server, netsem.aio.Client(options=client_options(address, local_dir)) as client:
            with pytest.raises(netsem.ProtocolError) as raised:
                await client.acquire("x", timeout=1)
            assert "does not speak netsem protocol v1" in str(raised.value)
            assert client.stats().fallback_entries == 0

    run(main())


def test_a_silent_server_is_no_outage(local_dir: Path) -> None:
    async def main() -> None:
        server, address = await fake_server(None)
        async with server:
            started = asyncio.get_running_loop().time()
            async with netsem.aio.Client(options=client_options(address, local_dir)) as client:
                assert asyncio.get_running_loop().time() - started < 2
                assert not client.connected
                assert "accepted the connection but did not answer HELLO" in client.stats().unreachable
                with pytest.raises(netsem.Timeout, match="accepted the connection but did not answer within"):
                    await client.acquire("x", timeout=1)
                assert client.stats().fallback_entries == 0 and client.stats().local_grants == 0

    run(main())


@pytest.mark.parametrize(
    "answer",
    [
        b"x" * 10000,  # an endless line
        b"nonsense\n",  # not an answer
        b"%s OK 1",  # cut mid-line by the close below
        b"* ERR SHUTDOWN going away\n",
        b"\0\n",
    ],
)
def test_a_broken_answer_ends_the_session_and_the_call(local_dir: Path, answer: bytes) -> None:
    async def behaviour(tag: str, verb: str, writer: asyncio.StreamWriter) -> None:
        writer.write(answer.replace(b"%s", tag.encode()) if b"%s" in answer else answer)
        if answer.startswith(b"%s"):
            writer.transport.abort()

    async def main() -> None:
        server, address = await fake_server(behaviour)
        async with server, netsem.aio.Client(options=client_options(address, local_dir)) as client:
            assert client.connected
            with pytest.raises(netsem.Unavailable):
                await client.get("x")
            # An acquire whose session ends while a server answers never falls
            # back (rule 9): a server that broke the protocol fails it; one
            # that closed or shut down gets it again on each new session, until
            # its timeout.
            await until(lambda: client.connected)
            expected = netsem.Timeout if answer.startswith((b"%s", b"*")) else netsem.Unavailable
            with pytest.raises(expected):
                await client.acquire("x", timeout=2)
            assert client.stats().local_grants == 0
            assert client.stats().connection_losses >= 2

    run(main())


# 6000: pings every 2 s on an idle session; the unanswered request is still
# seen at its request_timeout.
@pytest.mark.parametrize("session_timeout_ms", [0, 6000])
def test_a_request_left_unanswered_ends_the_session_after_request_timeout(
    local_dir: Path, session_timeout_ms: int
) -> None:
    async def behaviour(tag: str, verb: str, writer: asyncio.StreamWriter) -> None:
        pass  # reads the request and never answers it, though it answers pings

    async def main() -> None:
        server, address = await fake_server(behaviour, session_timeout_ms=session_timeout_ms)
        async with server, netsem.aio.Client(options=client_options(address, local_dir)) as client:
            await asyncio.sleep(0.1)  # the session's first timer is armed for later
            started = asyncio.get_running_loop().time()
            with pytest.raises(netsem.Unavailable) as raised:
                await client.get("x")
            assert 0.9 <= asyncio.get_running_loop().time() - started < 1.8
            assert "no answer from the server within 1000 ms" in str(raised.value)

    run(main())


def test_a_failure_of_the_connection_task_fails_the_calls(
    netsemd: Any, local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug in the connection task (here: dispatching a PONG "boom" raises)
    # fails the pending and later calls with ProtocolError, never leaves them
    # waiting, and is no outage: nothing falls back.
    from netsem import _aio_connection

    dispatch = _aio_connection.Connection._dispatch

    def broken(self: Any, line: bytes) -> Any:
        if line.endswith(b" PONG boom"):
            raise RuntimeError("a bug")
        return dispatch(self, line)

    monkeypatch.setattr(_aio_connection.Connection, "_dispatch", broken)

    async def main() -> None:
        async with netsem.aio.Client(options=options(netsemd, local_dir)) as client:
            permit = await client.acquire("one")
            pending = asyncio.create_task(client.ping("after-boom"))
            with pytest.raises(netsem.ProtocolError, match="a bug"):
                await client.ping("boom")
            with pytest.raises(netsem.ProtocolError, match="a bug"):
                await pending
            with pytest.raises(netsem.ProtocolError):
                await client.acquire("one", timeout=1)
            with pytest.raises(netsem.ProtocolError):
                await client.get("one")
            assert permit.lost and isinstance(permit.loss_reason, netsem.ProtocolError)
            assert client.stats().fallback_entries == 0

    run(main())
