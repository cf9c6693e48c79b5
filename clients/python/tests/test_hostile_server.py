"""The blocking Client against servers that misbehave (tests/fake_server.py):
garbage, wrong tags, silence, endless and huge lines, a close in mid-line,
another protocol version, `*` lines. Every call raises a clear netsem
error within a bound, the Client never hangs or lets a thread die with an
exception, and closing it leaves no thread behind.

The Client's fallback is `fail` unless a test says otherwise, so that a
server that cannot be used shows as an error rather than a local permit;
timeouts are short (connect 0.5 s, requests 1 s) to keep the file fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_server import FakeServer, Peer
from netsem import errors
from netsem._options import ClientOptions, FallbackPolicy
from netsem.client import Client

CONNECT_TIMEOUT = 0.5
REQUEST_TIMEOUT = 1.0
# Generous for a loaded 2-core machine, far below "hangs".
BOUND = 6.0


@pytest.fixture(autouse=True)
def no_thread_dies() -> Iterator[list[threading.ExceptHookArgs]]:
    """Fails the test when any thread ends with an uncaught exception (a
    reader thread that crashed on a hostile line)."""
    died: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = died.append
    yield died
    threading.excepthook = previous
    assert not died, [f"{args.thread}: {args.exc_type.__name__}: {args.exc_value}" for args in died]


@pytest.fixture
def threads_before() -> Iterator[set[threading.Thread]]:
    """The threads alive before the test; at its end, only those may remain."""
    before = set(threading.enumerate())
    yield before
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    left = set(threading.enumerate()) - before
    assert not left, f"threads left running: {sorted(thread.name for thread in left)}"


def options_for(server: FakeServer, local_dir: Path, fallback: str = "fail") -> ClientOptions:
    return ClientOptions(
        servers=[server.address],
        connect_timeout=CONNECT_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
        reconnect_min=0.05,
        reconnect_max=0.2,
        fallback=FallbackPolicy.parse(fallback),
        local_dir=local_dir,
    )


def fails_within(
    script: Callable[[Peer], None],
    call: Callable[[Client], Any],
    expected: type[errors.NetsemError],
    local_dir: Path,
    bound: float = BOUND,
) -> errors.NetsemError:
    """Starts a Client against ``script``'s server, checks that ``call``
    raises ``expected`` within ``bound`` seconds (construction included),
    and closes both; returns the exception."""
    with FakeServer(script) as server:
        started = time.monotonic()
        client = Client(options=options_for(server, local_dir))
        try:
            with pytest.raises(expected) as caught:
                call(client)
            elapsed = time.monotonic() - started
            assert elapsed < bound, f"took {elapsed:.2f} s"
        finally:
            closing = time.monotonic()
            client.close()
            assert time.monotonic() - closing < bound
    return caught.value


def acquire(client: Client) -> Any:
    return client.acquire("db", timeout=30)


def value(client: Client) -> Any:
    return client.value("db")


# --- before the session: what the server says to HELLO ------------------------


def garbage_answer(peer: Peer) -> None:
    peer.read_line()
    peer.send(b"\x00\xff\xfe garbage \x1b[31m\n")


def http_answer(peer: Peer) -> None:
    peer.read_line()
    peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def wrong_version(peer: Peer) -> None:
    peer.handshake(version="2.0")
    peer.serve_honestly()


def nonsense_version(peer: Peer) -> None:
    peer.handshake(version="one.x")
    peer.serve_honestly()


@pytest.mark.parametrize("script", [garbage_answer, http_answer, wrong_version, nonsense_version])
def test_a_server_that_does_not_speak_v1_is_refused_with_a_protocol_error(
    script: Callable[[Peer], None], local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    error = fails_within(script, acquire, errors.ProtocolError, local_dir)
    assert "protocol" in str(error).lower() and "127.0.0.1:" in str(error)


def test_a_protocol_error_is_not_an_outage_even_with_fallback_local(
    local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    # A server that answers something else is reachable: no local permit.
    with FakeServer(wrong_version) as server:
        with Client(options=options_for(server, local_dir, fallback="local")) as client:
            with pytest.raises(errors.ProtocolError, match="2.0"):
                client.acquire("db", timeout=5)


def test_version_1_0_is_accepted(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    def old_server(peer: Peer) -> None:
        peer.handshake(version="1.0")
        peer.serve_honestly(fence=9)

    with FakeServer(old_server) as server:
        with Client(options=options_for(server, local_dir)) as client:
            with client.acquire("db", timeout=5) as permit:
                assert permit.fence == 9 and not permit.is_local


def star_error(line: bytes) -> Callable[[Peer], None]:
    def script(peer: Peer) -> None:
        peer.send(line)

    return script


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"* ERR DENIED address 127.0.0.1 is not allowed\n", errors.Denied),
        (b"* ERR AUTH authentication required\n", errors.Denied),
        (b"* ERR LIMIT too many connections (max_connections 1)\n", errors.LimitReached),
        # Shutting down: an outage, not a refusal (fallback `fail` answers).
        (b"* ERR SHUTDOWN the server is shutting down\n", errors.Unavailable),
    ],
)
def test_star_errors_at_connect(
    line: bytes, expected: type[errors.NetsemError], local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    fails_within(star_error(line), acquire, expected, local_dir)


# --- silence and lines that never end ----------------------------------------


def silent(peer: Peer) -> None:
    while peer.read_line(timeout=0.2) is not None or not peer.server.closing.is_set():
        pass


def test_a_server_that_never_answers_hello_fails_a_call_within_the_request_timeout(
    local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    started = time.monotonic()
    error = fails_within(silent, value, errors.Unavailable, local_dir)
    assert "has not answered within 1000 ms: not an outage, so no fallback" in str(error)
    assert time.monotonic() - started < BOUND


def test_a_silent_server_is_no_outage_even_with_fallback_local(local_dir: Path,
                                                              threads_before: set[threading.Thread]) -> None:
    with FakeServer(silent) as server:
        started = time.monotonic()
        with Client(options=options_for(server, local_dir, fallback="local")) as client:
            with pytest.raises(errors.Timeout, match="accepted the connection but did not answer within 500 ms"):
                client.acquire("db", timeout=2)
            assert client.stats().local_grants == 0 and client.stats().fallback_entries == 0
        assert time.monotonic() - started < BOUND


def silent_after_handshake(peer: Peer) -> None:
    if peer.handshake():
        silent(peer)


def test_a_server_silent_after_hello_fails_the_call_within_the_request_timeout(
    local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    fails_within(silent_after_handshake, value, errors.Unavailable, local_dir)


def pings_only(peer: Peer) -> None:
    """Answers PING and OPTION, and never any other request."""
    if peer.handshake():
        while peer.read_request(timeout=BOUND) is not None:
            pass


def test_an_unanswered_request_fails_at_the_request_timeout_though_later_ones_are_answered(
    local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    """GET is answered at once by a working server, in order: the pings after
    it, answered, show a broken server, not a read request waiting its turn
    (docs/client.md, "When is a request read"). The call fails at
    request_timeout; it waited until the server went away when any request
    sent before an answered one counted as read."""
    started = time.monotonic()
    error = fails_within(
        pings_only, lambda client: client.get("db"), errors.Unavailable, local_dir, CONNECT_TIMEOUT + 3 * REQUEST_TIMEOUT
    )
    assert f"no answer from the server within {round(REQUEST_TIMEOUT * 1000)} ms" in str(error)
    assert time.monotonic() - started >= REQUEST_TIMEOUT


def wrong_tags(peer: Peer) -> None:
    if not peer.handshake():
        return
    serial = 0
    while (line := peer.read_line(timeout=0.2)) is not None or not peer.server.closing.is_set():
        if line is None:
            continue
        serial += 1
        if not peer.send(f"zz{serial} OK 1 1 0 0 defined\n".encode()):
            return


def test_answers_with_unknown_tags_are_not_taken_for_the_call(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    fails_within(wrong_tags, value, errors.Unavailable, local_dir)


def wrong_tag_to_hello(peer: Peer) -> None:
    peer.read_line()
    peer.send(b"nottheirs OK netsem 1.1 7\n")
    silent(peer)


def test_a_hello_answer_with_another_tag_is_no_answer(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    fails_within(wrong_tag_to_hello, value, errors.Unavailable, local_dir)


def endless(after_handshake: bool) -> Callable[[Peer], None]:
    """Sends a line that never ends (64 KiB chunks, no "\\n"), up to 64 MiB
    or until the client closes."""

    def script(peer: Peer) -> None:
        if after_handshake:
            if not peer.handshake():
                return
            peer.read_request()
        else:
            peer.read_line()
        chunk = b"x" * 65536
        for _ in range(1024):
            if not peer.send(chunk):
                return

    return script


def test_an_endless_line_at_hello_is_a_protocol_error(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    fails_within(endless(after_handshake=False), value, errors.ProtocolError, local_dir)


def test_an_endless_line_in_the_session_ends_it(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    fails_within(endless(after_handshake=True), value, errors.Unavailable, local_dir)


def huge_line(after_handshake: bool) -> Callable[[Peer], None]:
    """One 1 MiB line, ended: an answer's tag, then megabytes of text."""

    def script(peer: Peer) -> None:
        if after_handshake and not peer.handshake():
            return
        line = peer.read_request() if after_handshake else peer.read_line()
        tag = (line or "t").split(" ", 1)[0]
        peer.send(f"{tag} OK ".encode() + b"9" * (1 << 20) + b"\n")
        silent(peer)

    return script


def test_a_huge_hello_answer_is_a_protocol_error(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    fails_within(huge_line(after_handshake=False), value, errors.ProtocolError, local_dir)


def test_a_huge_answer_in_the_session_ends_it(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    fails_within(huge_line(after_handshake=True), acquire, errors.Unavailable, local_dir)


# --- answers that stop or make no sense -------------------------------------


def close_mid_line(peer: Peer) -> None:
    if not peer.handshake():
        return
    line = peer.read_request()
    if line is not None:
        peer.send(line.split(" ", 1)[0].encode() + b" OK 4")  # a grant, cut before its "\n"


def test_a_close_in_mid_answer_is_no_grant(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    # The session ended while the ACQUIRE waited: sent again on each new
    # session (rule 9), cut again each time, until its timeout.
    fails_within(close_mid_line, lambda client: client.acquire("db", timeout=2), errors.Timeout, local_dir)


def answers(reply: str, then_honest: bool = False) -> Callable[[Peer], None]:
    """Answers the first request after the handshake with ``<tag> <reply>``,
    then is silent (or, with ``then_honest``, serves as a server does)."""

    def script(peer: Peer) -> None:
        if not peer.handshake():
            return
        line = peer.read_request()
        if line is not None:
            peer.send(f"{line.split(' ', 1)[0]} {reply}\n".encode())
        if then_honest:
            peer.serve_honestly()
        else:
            silent(peer)

    return script


@pytest.mark.parametrize(
    "reply",
    [
        "MAYBE 1",  # an answer kind that does not exist
        "ERR",  # ERR without a code
        "OK \x00\x01\x02",
        "",
    ],
)
def test_an_answer_that_is_not_one_is_an_error_never_a_permit(
    reply: str, local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    error = fails_within(answers(reply), acquire, errors.NetsemError, local_dir)
    assert isinstance(error, (errors.ProtocolError, errors.Unavailable)), repr(error)


@pytest.mark.parametrize("reply", ["OK not-a-fence", "OK -5", "OK 99999999999999999999999999999999"])
def test_a_grant_with_an_unreadable_fence_is_still_a_grant_and_is_given_back(
    reply: str, local_dir: Path, threads_before: set[threading.Thread], caplog: pytest.LogCaptureFixture
) -> None:
    # As libnetsem: the server holds the permit for this session whatever
    # its fence says, so the client keeps it (and says so) rather than leak it.
    with FakeServer(answers(reply, then_honest=True)) as server:
        with Client(options=options_for(server, local_dir)) as client:
            started = time.monotonic()
            permit = client.acquire("db", timeout=5)
            assert time.monotonic() - started < BOUND
            assert not permit.is_local and not permit.lost
            assert "carries no fence" in caplog.text
            permit.release()
            assert any(line.split(" ", 1)[1].startswith("RELEASE db") for line in server.lines if " " in line)


def test_an_unknown_error_code_is_a_protocol_error(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    error = fails_within(answers("ERR NEW_CODE something new"), acquire, errors.ProtocolError, local_dir)
    assert "NEW_CODE" in str(error)


def test_an_err_answer_is_the_error_of_its_code(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    fails_within(answers("ERR TOO_MANY 4 asked, max 3"), acquire, errors.TooMany, local_dir)


def slow_grant(peer: Peer) -> None:
    """A healthy server with a long queue: answers PINGs at once, grants the
    ACQUIRE only after four request timeouts, says nothing before (as with
    `OPTION queued off`). Its session timeout (15 s) makes the usual pings
    rarer than the request timeout."""
    if not peer.handshake(session_timeout_ms=15000):
        return
    granted_at = None
    waiting_tag = ""
    while not peer.server.closing.is_set():
        line = peer.read_line(timeout=0.05)
        if line is not None:
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ", 1)[0]
            if verb == "ACQUIRE":
                waiting_tag, granted_at = tag, time.monotonic() + 4 * REQUEST_TIMEOUT
            elif not peer.send(f"{tag} {'PONG' if verb == 'PING' else 'OK'}\n".encode()):
                return
        if granted_at is not None and time.monotonic() >= granted_at:
            granted_at = None
            if not peer.send(f"{waiting_tag} OK 11\n".encode()):
                return


def test_a_long_queue_wait_is_not_silence(local_dir: Path, threads_before: set[threading.Thread]) -> None:
    with FakeServer(slow_grant) as server:
        with Client(options=options_for(server, local_dir)) as client:
            started = time.monotonic()
            with client.acquire("db", timeout=30) as permit:
                assert permit.fence == 11 and not permit.is_local
            assert time.monotonic() - started >= 4 * REQUEST_TIMEOUT
            assert server.connections() == 1
            assert any(" PING" in line for line in server.lines)


# --- a permit held when the server turns hostile -----------------------------


def grant_then(line: bytes) -> Callable[[Peer], None]:
    """Grants the first ACQUIRE, answers PINGs, then sends ``line`` once the
    test has the permit (the first PING or RELEASE after the grant, or 0.3 s)."""

    def script(peer: Peer) -> None:
        if not peer.handshake(session_timeout_ms=600):
            return
        first = peer.read_request()
        if first is None:
            return
        peer.send(first.split(" ", 1)[0].encode() + b" OK 3\n")
        peer.read_request(timeout=0.3)
        peer.send(line)
        silent(peer)

    return script


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"* ERR KICKED kicked by session 4 (127.0.0.1:1)\n", errors.Unavailable),
        (b"* ERR SHUTDOWN the server is shutting down\n", errors.Shutdown),
        (b"\xff\xfe not an answer\n", errors.Unavailable),
        (b"x" * 70000, errors.Unavailable),
    ],
    ids=["kicked", "shutdown", "garbage", "endless"],
)
def test_a_held_permit_is_lost_when_the_server_ends_the_session(
    line: bytes, reason: type[errors.NetsemError], local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    with FakeServer(grant_then(line)) as server:
        with Client(options=options_for(server, local_dir)) as client:
            lost = threading.Event()
            reasons: list[errors.NetsemError] = []
            permit = client.acquire("db", timeout=5)
            assert permit.fence == 3
            permit.on_lost(lambda why: (reasons.append(why), lost.set()))
            assert lost.wait(BOUND), "the permit was not declared lost"
            assert permit.lost and isinstance(permit.loss_reason, reason)
            assert len(reasons) == 1 and reasons[0] is permit.loss_reason
            # Giving it up says it was lost, as libnetsem's release() does.
            with pytest.raises(errors.Unavailable, match="was lost"):
                permit.release()


def test_a_client_keeps_reconnecting_to_a_hostile_server_without_piling_up_threads(
    local_dir: Path, threads_before: set[threading.Thread]
) -> None:
    with FakeServer(garbage_answer) as server:
        with Client(options=options_for(server, local_dir)) as client:
            deadline = time.monotonic() + BOUND
            while server.connections() < 4 and time.monotonic() < deadline:
                with pytest.raises(errors.ProtocolError):
                    client.value("db")
                time.sleep(0.05)
            assert server.connections() >= 4
            assert len(threading.enumerate()) - len(threads_before) < 6
