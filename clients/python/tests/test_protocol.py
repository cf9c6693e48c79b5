"""Tests of netsem._protocol: protocol v1 without I/O.

The expected request lines are libnetsem's (tests/protocol/requests_test.cc,
EncodeRequest.WritesTheShortestLine), the answer shapes its parse_answer's;
the last test sends the encoded names to a real netsemd and reads them back.
"""

from __future__ import annotations

import errno
import os
import socket

import pytest

from netsem import _protocol as p
from netsem.errors import Denied, InvalidArgument, LimitReached, NotHeld, ProtocolError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (p.hello_request("h"), b"h HELLO 1\n"),
        (p.hello_request("h", "my job"), b"h HELLO 1 my%20job\n"),
        (p.hello_request("h", "cron job 100%"), b"h HELLO 1 cron%20job%20100%25\n"),
        (p.acquire_request("a", "db"), b"a ACQUIRE db\n"),
        (p.acquire_request("a", "db", 2), b"a ACQUIRE db 2\n"),
        (p.acquire_request("a", "db", 1, 0), b"a ACQUIRE db 1 0\n"),
        (p.acquire_request("a", "db", 3, 5000), b"a ACQUIRE db 3 5000\n"),
        (p.acquire_request("a", "host:10.0.0.1 web%"), b"a ACQUIRE host:10.0.0.1%20web%25\n"),
        (p.wait_request("w", "q", 1, -1), b"w WAIT q\n"),
        (p.wait_request("w", "q", 2147483647, 9223372036854775807), b"w WAIT q 2147483647 9223372036854775807\n"),
        (p.release_request("r", "db"), b"r RELEASE db\n"),
        (p.release_request("r", "db", 4), b"r RELEASE db 4\n"),
        (p.post_request("p", "q", 1), b"p POST q\n"),
        (p.post_request("p", "q", 2), b"p POST q 2\n"),
        (p.cancel_request("c", "a1"), b"c CANCEL a1\n"),
        (p.create_request("c", "x", 5, 5), b"c CREATE x 5\n"),
        (p.create_request("c", "x", 0, 7), b"c CREATE x 0 7\n"),
        (p.create_request("c", "x", 5, 5, True), b"c CREATE x 5 EXCL\n"),
        (p.create_request("c", "x", 1, 2, True), b"c CREATE x 1 2 EXCL\n"),
        (p.name_request("d", "DELETE", "x y"), b"d DELETE x%20y\n"),
        (p.name_request("g", "GET", "x"), b"g GET x\n"),
        (p.list_request("l"), b"l LIST\n"),
        (p.list_request("l", "host:"), b"l LIST host:\n"),
        (p.request("s", "STATS"), b"s STATS\n"),
        (p.ping_request("p"), b"p PING\n"),
        (p.ping_request("p", "%41\udcff"), b"p PING %41\xff\n"),
        (p.request("q", "QUIT"), b"q QUIT\n"),
        (p.option_queued_request("o", False), b"o OPTION queued off\n"),
        (p.option_queued_request("o", True), b"o OPTION queued on\n"),
        (p.name_request("h", "HOLDERS", "db"), b"h HOLDERS db\n"),
        (p.name_request("w", "WAITERS", "d b"), b"w WAITERS d%20b\n"),
        (p.request("s", "SESSIONS"), b"s SESSIONS\n"),
        (p.kick_request("k", 18446744073709551615), b"k KICK 18446744073709551615\n"),
    ],
)
def test_requests_are_libnetsems_shortest_lines(line: bytes, expected: bytes) -> None:
    assert line == expected


def test_request_refuses_what_would_break_the_line() -> None:
    for bad in ("", "a b", "a\n", "a\r", "a\0"):
        with pytest.raises(InvalidArgument):
            p.request("t", "GET", bad)
    for tag in ("", "a b", "x" * 33, "é"):
        with pytest.raises(InvalidArgument):
            p.request(tag, "PING")
    with pytest.raises(InvalidArgument):
        p.request("t", "GET", "x" * 4096)
    assert len(p.request("t", "GET", "x" * (4096 - 6))) == 4097  # exactly 4096 bytes and "\n"
    for payload in ("a b", "x" * 4001, "a\n"):
        with pytest.raises(InvalidArgument):
            p.ping_request("t", payload)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("db", "db"),
        ("host:10.0.0.1 web", "host:10.0.0.1%20web"),
        ("100%", "100%25"),
        ("tab\tin", "tab%09in"),  # encodes, though the server refuses it (BAD_NAME)
        ("del\x7f", "del%7F"),
        ("héllo wörld", "héllo%20wörld"),  # UTF-8 beyond ASCII goes raw
        ("%41", "%2541"),
    ],
)
def test_encode_name_escapes_what_a_field_cannot_carry(name: str, field: str) -> None:
    assert p.encode_name(name) == field


def test_decode_name_reads_every_escape_and_checks_the_name() -> None:
    assert p.decode_name("host%3A10.0.0.1%20web") == "host:10.0.0.1 web"
    assert p.decode_name("100%25") == "100%"
    assert p.decode_name("%C3%A9t%c3%a9") == "été"
    assert p.decode_name("plain") == "plain"
    for name in ["x", "a b%", "é" * 127, "名前", "."]:
        assert p.decode_name(p.encode_name(name)) == name
    for bad in ["", "%", "%4", "%G1", "a%2", "%24x", "%00", "%09", "%FF", "%C2%80", "x" * 256, "%ED%A0%80"]:
        with pytest.raises(InvalidArgument):
            p.decode_name(bad)


def test_check_name_is_the_servers_rule_with_dollar_names_for_the_host() -> None:
    for good in ["a", "x" * 255, "é" * 127, "host:10.0.0.1 web", "$local", "$" + "x" * 255, "a\u00a0b"]:
        p.check_name(good)
    for bad in ["", "$", "x" * 256, "é" * 128, "a\nb", "a\x00", "\x7f", "a\x85b", "\udcff", "$a\tb"]:
        with pytest.raises(InvalidArgument, match="bad semaphore name"):
            p.check_name(bad)
    with pytest.raises(InvalidArgument):
        p.check_name(b"bytes")  # type: ignore[arg-type]
    p.check_server_name("x")
    with pytest.raises(InvalidArgument, match="host-local"):
        p.check_server_name("$x")
    assert p.is_local_name("$x") and not p.is_local_name("x$")


def test_sanitize_label_as_libnetsem() -> None:
    assert p.sanitize_label("host/12/prog") == "host/12/prog"
    assert p.sanitize_label("a b\tc") == "a_b_c"
    assert p.sanitize_label("$x") == "_x"
    assert len(p.sanitize_label("x" * 300)) == 200
    assert p.sanitize_label("x" * 199 + "é") == "x" * 199 + "_"  # the cut broke the UTF-8
    label = p.default_label()
    assert label.count("/") >= 2 and p.is_valid_server_name(p.sanitize_label(label))


def test_count_and_timeout() -> None:
    p.check_count(1)
    p.check_count(2**31 - 1)
    for bad in (0, -1, 2**31, 1.0, True, "1"):
        with pytest.raises(InvalidArgument):
            p.check_count(bad)  # type: ignore[arg-type]
    assert p.timeout_ms(None) == -1
    assert p.timeout_ms(0) == 0
    assert p.timeout_ms(-3.5) == 0
    assert p.timeout_ms(0.0001) == 1  # a tiny timeout still waits
    assert p.timeout_ms(1.5) == 1500
    assert p.timeout_ms(0.0015) == 2  # rounded up
    assert p.timeout_ms(5) == 5000
    assert p.timeout_ms(1e30) == -1  # longer than a century: for ever
    assert p.timeout_ms(float("inf")) == -1
    for bad in (float("nan"), "1", True):
        with pytest.raises(InvalidArgument):
            p.timeout_ms(bad)  # type: ignore[arg-type]


def test_tags_are_unique_and_valid() -> None:
    tags = p.Tags()
    seen = {tags.next() for _ in range(1000)}
    assert len(seen) == 1000
    assert all(p.is_valid_tag(t) and not t.startswith("acquire:") for t in seen)


def test_parse_line_splits_every_answer() -> None:
    r = p.parse_line(b"a1 OK 17")
    assert (r.tag, r.kind, r.fields, r.text) == ("a1", "OK", ["17"], "17")
    assert p.parse_fence(r) == 17
    assert p.parse_line(b"b QUEUED 3").kind == "QUEUED"
    assert p.parse_line(b"c TIMEOUT").kind == "TIMEOUT"
    assert p.parse_line(b"c CANCELLED").kind == "CANCELLED"
    assert p.parse_line(b"x OK").fields == []
    assert p.parse_line(b"l END 2").kind == "END" and p.parse_end(p.parse_line(b"l END 2")) == 2
    assert p.parse_line(b"p PONG").text == ""
    pong = p.parse_line(b"p PONG %41\xff")
    assert pong.text.encode("utf-8", "surrogateescape") == b"%41\xff"  # byte for byte
    err = p.parse_line(b"r ERR NOT_HELD session holds 0 of \"x\"")
    assert (err.code, err.message) == ("NOT_HELD", 'session holds 0 of "x"')
    assert isinstance(err.error(), NotHeld)
    assert str(err.error('RELEASE "x"')) == 'RELEASE "x": NOT_HELD session holds 0 of "x"'
    star = p.parse_line(b"* ERR SHUTDOWN the server is shutting down")
    assert (star.tag, star.code) == ("*", "SHUTDOWN")
    assert p.parse_line(b"* ERR KICKED").message == ""
    newer = p.parse_line(b"t ERR SOMETHING_NEW later")
    assert isinstance(newer.error(), ProtocolError)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"a1",
        b"a1 ",
        b"a1 OK ",
        b"a1 NOPE",
        b"a1 ok 1",
        b"bad tag OK",
        b"a%1 OK",
        b"x" * 33 + b" OK",
        b"a QUEUED",
        b"a QUEUED x",
        b"a TIMEOUT 1",
        b"a CANCELLED now",
        b"a ITEM",
        b"a END",
        b"a END -1",
        b"a ERR",
        b"a ERR  X",
        b"\xff OK",
    ],
)
def test_parse_line_refuses_what_is_no_answer(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        p.parse_line(line)


def test_line_buffer_frames_lines_across_reads() -> None:
    buffer = p.LineBuffer()
    assert buffer.feed(b"a OK 1\nb O") == [b"a OK 1"]
    assert buffer.pending == 3
    assert buffer.feed(b"K 2\r") == []
    assert buffer.feed(b"\nc OK\n\nd") == [b"b OK 2", b"c OK", b""]
    assert buffer.feed(b"") == []
    assert buffer.feed(b" PONG\n") == [b"d PONG"]
    assert buffer.pending == 0


def test_line_buffer_refuses_over_long_lines_and_nul_on_sight() -> None:
    exact = p.LineBuffer()
    assert exact.feed(b"x" * 4096 + b"\r") == []  # may still be a whole line of 4096 and its "\r\n"
    assert exact.feed(b"\n") == [b"x" * 4096]
    with pytest.raises(ProtocolError, match="over 4096"):
        p.LineBuffer().feed(b"x" * 4097)  # no "\n" needed to know
    with pytest.raises(ProtocolError, match="over 4096"):
        p.LineBuffer().feed(b"x" * 4097 + b"\n")
    endless = p.LineBuffer()
    for _ in range(4):
        endless.feed(b"y" * 1000)
    with pytest.raises(ProtocolError):
        endless.feed(b"y" * 1000)
    with pytest.raises(ProtocolError, match="NUL"):
        p.LineBuffer().feed(b"a OK\0")
    with pytest.raises(ProtocolError, match="NUL"):
        p.LineBuffer().feed(b"a O\0K\n")


def test_hello() -> None:
    assert p.parse_hello(p.parse_line(b"h OK netsem 1.1 42")) == ("1.1", 42)
    assert p.parse_hello(p.parse_line(b"h OK netsem 1 7")).minor == 0
    assert p.parse_hello(p.parse_line(b"h OK netsem 1 7")).version == "1.0"
    for bad in [b"h OK netsem 2.0 1", b"h OK redis 1.1 1", b"h OK netsem 1.1", b"h OK netsem 1.1 0", b"h ERR BAD_ARG v"]:
        with pytest.raises(ProtocolError):
            p.parse_hello(p.parse_line(bad))


def test_typed_answers() -> None:
    info = p.parse_get(p.parse_line(b"g OK 2 3 1 0 defined"), "pool")
    assert info == p.SemaphoreInfo("pool", 2, 3, 1, 0, "defined")
    assert p.parse_get(p.parse_line(b"g OK 1 1 0 0 absent"), "x").kind == "absent"
    item = p.parse_list_item("host%3A1%20web 1 1 0 0 created")
    assert item.name == "host:1 web" and item.kind == "created"
    assert p.parse_list_item("bad%ZZ 1 1 0 0 created").name == "bad%ZZ"  # kept as sent
    holder = p.parse_holder_item("7 2 19 1500 host%2F1/prog")
    assert holder == p.HolderInfo(7, 2, 19, 1.5, "host/1/prog")
    assert p.parse_holder_item("7 2 19 0 -").label == ""
    assert p.parse_holder_item("7 2 19 0 %2D").label == "-"
    waiter = p.parse_waiter_item("8 1 250 -1 w")
    assert waiter == p.WaiterInfo(8, 1, 0.25, None, "w")
    assert p.parse_waiter_item("8 1 0 1200 w").timeout_left == 1.2
    session = p.parse_session_item("3 127.0.0.1:4000 v1 2 1 10000 5 job%201")
    assert session == p.SessionInfo(3, "127.0.0.1:4000", "v1", 2, 1, 10.0, 0.005, "job 1")
    assert p.parse_value(p.parse_line(b"r OK 0")) == 0
    for bad_text, parse in [
        ("1 2 3", p.parse_list_item),
        ("x 1 1 0 0", p.parse_list_item),
        ("x -1 1 0 0 created", p.parse_list_item),
        ("0 2 19 1500 l", p.parse_holder_item),
        ("7 0 19 1500 l", p.parse_holder_item),
        ("7 2 19 1500 l extra", p.parse_holder_item),
        ("8 1 250 -2 w", p.parse_waiter_item),
        ("3 p v1 2 1 -1 5 l", p.parse_session_item),
        ("3 p v1 2 1 10 5 bad%", p.parse_session_item),
    ]:
        with pytest.raises(ProtocolError):
            parse(bad_text)
    for bad_line in [b"r OK -1", b"r OK x", b"r TIMEOUT", b"r OK"]:
        with pytest.raises(ProtocolError):
            p.parse_value(p.parse_line(bad_line))
    with pytest.raises(ProtocolError):
        p.parse_fence(p.parse_line(b"a OK 18446744073709551616"))


def test_stats_and_session_timeout() -> None:
    reply = p.parse_line(b's OK {"sessions":1,"session_timeout_ms":3000,"held":0}')
    assert p.parse_stats(reply)["sessions"] == 1
    assert p.session_timeout(reply) == 3.0
    assert p.session_timeout(p.parse_line(b's OK {"sessions":1}')) == 0
    assert p.session_timeout(p.parse_line(b"s ERR UNKNOWN_VERB STATS")) == 0
    assert p.session_timeout(p.parse_line(b"s OK not json")) == 0
    with pytest.raises(ProtocolError):
        p.parse_stats(p.parse_line(b"s OK [1]"))


def test_lease_timeout() -> None:
    """LEASE (proposed 1.2): ``OK <session_timeout_ms>``; anything else (a
    1.0/1.1 server's UNKNOWN_VERB, a malformed answer) means STATS tells it."""
    assert p.lease_timeout(p.parse_line(b"l OK 4500")) == 4.5
    assert p.lease_timeout(p.parse_line(b"l OK 0")) == 0
    for line in (b"l ERR UNKNOWN_VERB LEASE", b"l OK", b"l OK -5", b"l OK 1.5", b"l OK 99999999999999999999"):
        assert p.lease_timeout(p.parse_line(line)) is None, line


def test_refusals_are_told_apart_from_outages() -> None:
    server = "10.0.0.5:53559"

    def refusal(line: bytes) -> object:
        return p.refusal(server, p.parse_line(line), line.decode())

    assert isinstance(refusal(b"* ERR DENIED not allowed"), Denied)
    assert "allowed_networks" in str(refusal(b"* ERR DENIED not allowed"))
    assert isinstance(refusal(b"1 ERR AUTH authenticate first"), Denied)
    assert isinstance(refusal(b"* ERR LIMIT max_connections"), LimitReached)
    assert isinstance(refusal(b"1 ERR BAD_ARG version"), ProtocolError)
    assert refusal(b"* ERR SHUTDOWN going away") is None


def test_a_local_shortage_is_this_hosts_not_the_servers() -> None:
    """Errors of a socket call that say this process or host lacks something
    (no outage: no fallback) against those that say something of the server.
    EADDRNOTAVAIL (no local port left) cannot be made on loopback without
    root (the ephemeral range is host-wide), so it is checked here."""
    shortage = p.local_shortage(OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "connect")
    assert shortage == ("this host has no local address or port left to connect from (connect: "
                        f"{os.strerror(errno.EADDRNOTAVAIL)})")
    assert p.local_shortage(OSError(errno.EMFILE, ""), "socket") == (
        f"this process is out of file descriptors (socket: {os.strerror(errno.EMFILE)})")
    for outage in (errno.ECONNREFUSED, errno.ETIMEDOUT, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNRESET):
        assert p.local_shortage(OSError(outage, ""), "connect") is None


def test_endpoints() -> None:
    assert p.parse_endpoint("10.0.0.5:7000") == ("10.0.0.5", 7000)
    assert p.parse_endpoint("db.example") == ("db.example", 53559)
    assert p.parse_endpoint("[::1]:9") == ("::1", 9)
    assert p.parse_endpoint("[::1]") == ("::1", 53559)
    assert p.endpoint_text("::1", 9) == "[::1]:9"
    for bad in ["", ":1", "h:0", "h:65536", "h:x", "::1", "[::1", "h:-1"]:
        with pytest.raises(InvalidArgument):
            p.parse_endpoint(bad)


def test_lease_arithmetic() -> None:
    lease = p.Lease(session_timeout=3.0, request_timeout=10.0, start=100.0)
    # Pings at T/6: a lapsing lease (T/2) leaves about T/3 for a failover.
    assert lease.ping_interval == 0.5
    assert lease.ping_at(100.0) == 100.5
    assert lease.lapse_at() == 101.5
    # 0.9 T - min(T/20, 0.25) after the lease's start
    assert lease.stop_by() == pytest.approx(100.0 + 2.7 - 0.15)
    assert lease.check(101.4, None) is None
    assert "lease" in (lease.check(101.5, None) or "")
    lease.answered(101.0)  # a request sent at 101.0 was answered
    assert lease.lapse_at() == 102.5
    lease.answered(100.5)  # an older one answered later moves nothing back
    assert lease.lapse_at() == 102.5
    assert lease.stop_by() == pytest.approx(101.0 + 2.7 - 0.15)
    assert lease.wake_at(last_sent=101.2, oldest_unanswered_sent=None) == pytest.approx(101.7)
    long_lease = p.Lease(session_timeout=60.0, request_timeout=10.0, start=0.0)
    assert long_lease.stop_by() == pytest.approx(54.0 - 0.25)  # the margin is at most 250 ms
    assert long_lease.ping_interval == 10.0
    assert "within 10000 ms" in (long_lease.check(15.0, oldest_unanswered_sent=5.0) or "")
    assert long_lease.check(14.9, oldest_unanswered_sent=5.0) is None
    none = p.Lease(session_timeout=0, request_timeout=10.0, start=0.0)
    assert none.ping_interval == 5.0 and none.lapse_at() is None and none.stop_by() is None
    assert none.check(1e9, None) is None


def test_a_resumed_lease_is_renewed_at_once_when_late() -> None:
    """Lease.resumed (pyJ24's finding): counted from RESUME's send, pinged T/6
    after it (at once when later: _serve starts its last-sent time there), not
    lapsing before half way from the resume to stop_by while the renewal is
    unanswered, and a resume or move still giving up T/2 after the send."""
    # Answered 1.4 s after RESUME was sent (T = 3 s: past T/6 and T/3).
    late = p.Lease.resumed(3.0, 10.0, sent=100.0, now=101.4)
    assert late.stop_by() == pytest.approx(100.0 + 2.7 - 0.15)  # still from the RESUME's send
    assert late.ping_at(late.lease_from) == 100.5  # _serve's last-sent time is the send: due at once
    late.answered(99.0)  # an answer to a request of the old connection renews nothing
    assert late.lease_from == 100.0
    assert late.lapse_at() == pytest.approx(101.4 + (102.55 - 101.4) / 2)  # not 101.5, T/2 after the send
    assert late.check(101.9, oldest_unanswered_sent=101.4) is None
    why = late.check(101.98, oldest_unanswered_sent=101.4) or ""
    assert "resumed 1400 ms after" in why and "lease" in why, why
    assert late.half_at() == 101.5  # a resume or move gives up T/2 after the send, as libnetsem
    late.answered(101.4)  # renewed
    assert late.lapse_at() == 102.9 and late.stop_by() == pytest.approx(101.4 + 2.55)
    # Answered early: the first ping T/6 after RESUME was sent, the lapse T/2 after it.
    early = p.Lease.resumed(3.0, 10.0, sent=100.0, now=100.1)
    assert early.ping_at(early.lease_from) == 100.5 and early.lapse_at() == 101.5
    early.answered(100.2)
    assert early.ping_at(100.2) == 100.7  # renewed by another answer: no ping due for it
    # Answered after stop_by: lapsed at once.
    gone = p.Lease.resumed(3.0, 10.0, sent=100.0, now=102.6)
    assert "lease" in (gone.check(102.6, None) or "")
    assert p.Lease.resumed(0.0, 10.0, sent=100.0, now=200.0).lapse_at() is None


def test_names_round_trip_through_a_real_server(netsemd: object) -> None:
    """What encode_name writes, the server takes as the same name, and what it
    writes back decode_name reads as that name."""
    names = ["host:10.0.0.1 web", "100% sure", "été", "a%41", "名前 x"]
    with socket.create_connection(("127.0.0.1", netsemd.port), timeout=10) as s:  # type: ignore[attr-defined]
        tags = p.Tags()
        out = b"".join(p.create_request(tags.next(), n, 1, 1) for n in names)
        s.sendall(out + p.list_request("l") + p.name_request("bad", "GET", "tab\there"))
        buffer = p.LineBuffer()
        replies: list[p.Reply] = []
        while not any(r.tag == "bad" for r in replies):
            data = s.recv(65536)
            assert data
            replies.extend(p.parse_line(line) for line in buffer.feed(data))
    assert [r.kind for r in replies[: len(names)]] == ["OK"] * len(names)
    listed = {p.parse_list_item(r.text).name for r in replies if r.kind == "ITEM"}
    assert set(names) <= listed
    assert replies[-1].code == "BAD_NAME"
