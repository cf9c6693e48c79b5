"""Protocol v1 (and its 1.1 additions) without I/O: the Python twin of src/protocol.

Nothing here opens a socket, starts a thread or reads a clock: the blocking
client (client.py) and the asyncio client (aio.py) share it, and its tests
feed it bytes and times.

API: a client frames the bytes it reads with a ``LineBuffer``, splits each
line with ``parse_line`` into a ``Reply``, routes it by ``Reply.tag`` (``"*"``
for a line the server sent on its own) and reads the final answer with the
parser of its request (``parse_fence``, ``parse_get``, ``parse_holder_item``
...). Requests are built by the ``*_request`` functions (or ``request`` for a
verb with no helper), with names percent-encoded by ``encode_name``, numbers
in decimal, and optional trailing fields left out at their defaults, exactly
as libnetsem's encoders write them (src/protocol/requests.cc). ``Tags`` hands
out the tags. ``Lease`` is the session's timing arithmetic (pings at a sixth
of the session timeout, the lease that lapses at half of it, the stop-by time
of lost permits), fed with ``time.monotonic()`` readings by its caller.

The public info dataclasses (SemaphoreInfo, HolderInfo, WaiterInfo,
SessionInfo) live here because both clients return them; ``netsem`` exports
them.

Every function is pure; ``Tags`` is the only object with state, and it is
thread-safe.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from netsem.errors import Cancelled, Denied, InvalidArgument, LimitReached, NetsemError, ProtocolError, Timeout, from_server

MAX_NAME = 255  # bytes of UTF-8
MAX_LINE = 4096  # bytes, without the line end
MAX_TAG = 32
MAX_COUNT = 2**31 - 1
MAX_PING_PAYLOAD = 4000  # bytes
MAX_FENCE_RAISE = 2**53  # CLUSTER FENCES <n>: n is 1..2^53 (libnetsem's protocol::kMaxFenceRaise)
# A timeout longer than this (about 100 years, libnetsem's kForeverAfter)
# waits for ever.
FOREVER_AFTER = 100 * 365 * 24 * 3600.0
DEFAULT_PORT = 53559
PROTOCOL_VERSION = 1

_TAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")
_ANSWER_KINDS = frozenset(("OK", "QUEUED", "TIMEOUT", "CANCELLED", "ERR", "ITEM", "END", "PONG"))
_MAX_INT64 = 2**63 - 1
_MAX_UINT64 = 2**64 - 1


# --- Names ------------------------------------------------------------------


def is_local_name(name: str) -> bool:
    """True for a ``$`` name: host-local, never sent to a server."""
    return name.startswith("$")


def _name_error(name: str) -> InvalidArgument:
    return InvalidArgument(f'bad semaphore name "{name}": 1-255 bytes of UTF-8 without control characters')


def is_valid_server_name(name: str) -> bool:
    """The contract's rule for a name a server takes: 1-255 bytes of UTF-8,
    no control character (C0, DEL, or C1 U+0080..U+009F), no leading ``$``."""
    if not isinstance(name, str) or not name or name[0] == "$":
        return False
    try:
        size = len(name.encode("utf-8"))  # refuses lone surrogates
    except UnicodeEncodeError:
        return False
    if size > MAX_NAME:
        return False
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)


def check_name(name: str) -> None:
    """Raises InvalidArgument unless ``name`` is a name the API takes.

    A ``$`` name (host-local, served by the local semaphores) follows the
    rules of the rest of it; any other name the server's rules. Whether a
    valid name goes to the server is the caller's choice (is_local_name):
    ``$`` names are never sent.
    """
    if not isinstance(name, str):
        raise InvalidArgument(f"a semaphore name is a str, not {type(name).__name__}")
    if not is_valid_server_name(name[1:] if is_local_name(name) else name):
        raise _name_error(name)


def check_server_name(name: str) -> None:
    """check_name, and InvalidArgument for a ``$`` name too (a call that only a
    server answers: get, list, holders, create ...)."""
    check_name(name)
    if is_local_name(name):
        raise InvalidArgument(f'"{name}" is host-local: it has no server state')


def encode_name(name: str) -> str:
    """A name (or label, or LIST prefix) as a request field.

    Every byte a field must not carry raw (space, ``%``, control bytes) is
    written ``%XX``, as libnetsem's append_request_name does; UTF-8 beyond
    ASCII goes raw. The server decodes before it checks, so any name arrives
    intact and is then judged by the contract's rules.
    """
    if all(c != "%" and 0x20 < ord(c) != 0x7F for c in name):
        return name
    return "".join(f"%{ord(c):02X}" if c == "%" or ord(c) <= 0x20 or ord(c) == 0x7F else c for c in name)


def decode_name(field: str) -> str:
    """A percent-encoded name field (as the server writes names in answers)
    decoded and checked by the server's rules; InvalidArgument otherwise."""
    raw = field.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        j = raw.find(b"%", i)
        if j < 0:
            out += raw[i:]
            break
        out += raw[i:j]
        digits = raw[j + 1 : j + 3]
        if len(digits) != 2 or not all(chr(d) in "0123456789abcdefABCDEF" for d in digits):
            raise _name_error(field)
        out.append(int(digits, 16))
        i = j + 3
    try:
        name = out.decode("utf-8")
    except UnicodeDecodeError:
        raise _name_error(field) from None
    if not is_valid_server_name(name):
        raise _name_error(field)
    return name


def sanitize_label(label: str) -> str:
    """A HELLO label as libnetsem sends it: at most 200 bytes, spaces and
    control bytes as ``_``, no leading ``$``; if still not a valid name
    (broken UTF-8 at the cut), non-ASCII as ``_`` too."""
    data = label.encode("utf-8", "surrogateescape")[:200]
    data = bytes(ord("_") if b <= 0x20 or b == 0x7F else b for b in data)
    if data.startswith(b"$"):
        data = b"_" + data[1:]
    text = data.decode("utf-8", "surrogateescape")
    if data and not is_valid_server_name(text):
        text = bytes(ord("_") if b >= 0x80 else b for b in data).decode("ascii")
    return text


def default_label() -> str:
    """``<host>/<pid>/<program>``, libnetsem's default HELLO label."""
    try:
        host = socket.gethostname() or "unknown-host"
    except OSError:
        host = "unknown-host"
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"{host}/{os.getpid()}/{program}"


# --- Numbers ----------------------------------------------------------------


def check_count(count: int) -> None:
    """InvalidArgument unless ``count`` is an int in 1..2^31-1."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidArgument(f"count {count!r} is not in 1..{MAX_COUNT}")


def timeout_ms(timeout: float | None) -> int:
    """A timeout in seconds as ACQUIRE/WAIT's ``timeout_ms``.

    None (and anything over FOREVER_AFTER) waits for ever: -1. Zero or
    negative only tries: 0. A positive timeout is rounded up to whole
    milliseconds, so that a tiny one still waits rather than only tries.
    """
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout):
        raise InvalidArgument(f"a timeout is seconds as a number or None, not {timeout!r}")
    if timeout <= 0:
        return 0
    if timeout > FOREVER_AFTER:
        return -1
    return max(1, math.ceil(timeout * 1000))


def _uint(text: str) -> int | None:
    """Digits only, at most 2^64 - 1 (libnetsem's parse_uint)."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX_UINT64 else None


def _int(text: str, low: int, high: int) -> int | None:
    """A decimal in [low, high] (libnetsem's parse_int: no '+', no "-0")."""
    body = text[1:] if text.startswith("-") else text
    if not body or not body.isascii() or not body.isdigit():
        return None
    if text.startswith("-") and (low >= 0 or int(body) == 0):
        return None
    value = int(text)
    return value if low <= value <= high else None


def is_valid_tag(tag: str) -> bool:
    """1-32 characters of ``[A-Za-z0-9_.:-]``."""
    return 0 < len(tag) <= MAX_TAG and all(c in _TAG_CHARS for c in tag)


# --- Requests ---------------------------------------------------------------


class Tags:
    """Unique request tags for one connection: "1", "2", ... (never one that
    starts with ``acquire:``, which would make the server speak ACE).
    Thread-safe."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            return str(next(self._counter))


def request(tag: str, verb: str, *args: str | int) -> bytes:
    """One request line, ``"<tag> <VERB> <args...>\\n"``, as bytes.

    Fields are written as given (ints in decimal): a name must have gone
    through encode_name. InvalidArgument for a bad tag, an empty field or one
    holding a space or line end, or a line over MAX_LINE bytes.
    """
    if not is_valid_tag(tag):
        raise InvalidArgument(f"bad request tag {tag!r}")
    fields = [tag, verb]
    for arg in args:
        text = str(arg) if isinstance(arg, int) and not isinstance(arg, bool) else arg
        if not isinstance(text, str) or not text or any(c in text for c in " \r\n\0"):
            raise InvalidArgument(f"bad request field {arg!r}")
        fields.append(text)
    line = " ".join(fields).encode("utf-8", "surrogateescape")
    if len(line) > MAX_LINE:
        raise InvalidArgument(f"request line of {len(line)} bytes is over the {MAX_LINE} bytes a line may have")
    return line + b"\n"


def hello_request(tag: str, label: str = "") -> bytes:
    """``HELLO 1 [label]``; the label is encoded like a name, left out when empty."""
    return request(tag, "HELLO", PROTOCOL_VERSION, *([encode_name(label)] if label else []))


def auth_request(tag: str, token: str) -> bytes:
    """``AUTH <token>`` (protocol 1.1); the token is checked by ClientOptions."""
    return request(tag, "AUTH", token)


def _take(tag: str, verb: str, name: str, count: int, timeout: int) -> bytes:
    args: list[str | int] = [encode_name(name)]
    if count != 1 or timeout != -1:
        args.append(count)
    if timeout != -1:
        args.append(timeout)
    return request(tag, verb, *args)


def acquire_request(tag: str, name: str, count: int = 1, timeout: int = -1) -> bytes:
    """``ACQUIRE <name> [count] [timeout_ms]`` (``timeout`` in ms, as timeout_ms gives it)."""
    return _take(tag, "ACQUIRE", name, count, timeout)


def wait_request(tag: str, name: str, count: int = 1, timeout: int = -1) -> bytes:
    """``WAIT <name> [count] [timeout_ms]``."""
    return _take(tag, "WAIT", name, count, timeout)


def release_request(tag: str, name: str, count: int = 1) -> bytes:
    """``RELEASE <name> [count]``."""
    return request(tag, "RELEASE", encode_name(name), *([count] if count != 1 else []))


def post_request(tag: str, name: str, count: int = 1) -> bytes:
    """``POST <name> [count]``."""
    return request(tag, "POST", encode_name(name), *([count] if count != 1 else []))


def cancel_request(tag: str, pending_tag: str) -> bytes:
    """``CANCEL <pending-tag>``."""
    return request(tag, "CANCEL", pending_tag)


def create_request(tag: str, name: str, value: int, max: int, exclusive: bool = False) -> bytes:
    """``CREATE <name> <value> [max] [EXCL]``; max left out when it equals value."""
    args: list[str | int] = [encode_name(name), value]
    if max != value:
        args.append(max)
    if exclusive:
        args.append("EXCL")
    return request(tag, "CREATE", *args)


def name_request(tag: str, verb: str, name: str) -> bytes:
    """A verb whose one field is a name: DELETE, GET, HOLDERS, WAITERS."""
    return request(tag, verb, encode_name(name))


def list_request(tag: str, prefix: str = "") -> bytes:
    """``LIST [prefix]``."""
    return request(tag, "LIST", *([encode_name(prefix)] if prefix else []))


def ping_request(tag: str, payload: str = "") -> bytes:
    """``PING [payload]``; InvalidArgument for a payload over 4000 bytes or
    with a space or line end (it travels raw in one field)."""
    check_ping_payload(payload)
    return request(tag, "PING", *([payload] if payload else []))


def check_ping_payload(payload: str) -> None:
    """InvalidArgument unless ``payload`` fits PING's one raw field."""
    if (
        not isinstance(payload, str)
        or len(payload.encode("utf-8", "surrogateescape")) > MAX_PING_PAYLOAD
        or any(c in payload for c in " \r\n\0")
    ):
        raise InvalidArgument("a ping payload is at most 4000 bytes without spaces or line ends")


def option_queued_request(tag: str, on: bool) -> bytes:
    """``OPTION queued <on|off>`` (1.1)."""
    return request(tag, "OPTION", "queued", "on" if on else "off")


def kick_request(tag: str, session_id: int) -> bytes:
    """``KICK <session-id>`` (1.1)."""
    return request(tag, "KICK", session_id)


def check_fence_raise(by: int) -> None:
    """InvalidArgument unless ``by`` is what CLUSTER FENCES takes: a whole
    number of 1 to 2^53 (libnetsem's cluster_raise_fences, the same words)."""
    if isinstance(by, bool) or not isinstance(by, int) or not 1 <= by <= MAX_FENCE_RAISE:
        raise InvalidArgument(f"CLUSTER FENCES: the fences rise by 1..{MAX_FENCE_RAISE} (2^53)")


def cluster_fences_request(tag: str, by: int) -> bytes:
    """``CLUSTER FENCES <by>`` (proposed 1.2, admin; on a cluster's leader)."""
    return request(tag, "CLUSTER", "FENCES", by)


def holds_the_line(line: bytes) -> bool:
    """Whether the server reads nothing more of the session before it answers
    request ``line`` (docs/protocol.md, CLUSTER: "the session's later
    requests wait for it"): CLUSTER ADD and REMOVE, which wait for a change
    of the cluster's configuration, and CLUSTER FENCES, which waits for its
    entry to commit. As libnetsem's holds_the_line."""
    _, space, rest = line.partition(b" ")
    return bool(space) and rest.startswith((b"CLUSTER ADD ", b"CLUSTER REMOVE ", b"CLUSTER FENCES "))


# --- Answers ----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One answer line split into its parts.

    ``tag`` is ``"*"`` for a line the server sent on its own; ``kind`` one of
    OK QUEUED TIMEOUT CANCELLED ERR ITEM END PONG; ``text`` everything after
    the answer word (may be empty) and ``fields`` the same split on spaces.
    For ERR, ``code`` and ``message`` are its parts.
    """

    tag: str
    kind: str
    fields: list[str]
    text: str

    @property
    def code(self) -> str:
        """ERR: the error code (``"NOT_HELD"``); empty otherwise."""
        return self.fields[0] if self.kind == "ERR" else ""

    @property
    def message(self) -> str:
        """ERR: the human-readable part; empty otherwise."""
        if self.kind != "ERR":
            return ""
        _, _, message = self.text.partition(" ")
        return message

    def error(self, what: str = "") -> NetsemError:
        """An ERR answer as its exception (errors.from_server), its message
        prefixed with ``what`` (the request, as ``ACQUIRE "x"``) when given."""
        error = from_server(self.code, self.message)
        if what:
            error = type(error)(f"{what}: {self.text}")
        return error


def parse_line(line: bytes) -> Reply:
    """Splits an answer line (without its line end); ProtocolError when it
    does not have the shape of an answer (the caller ends the connection).

    The shape is libnetsem's parse_answer: a valid tag or ``*``, one space,
    a known answer word, and for each word the rest it must have (QUEUED and
    END a number, TIMEOUT and CANCELLED nothing, ITEM something, ERR a code);
    no trailing space. Bytes that are not UTF-8 survive (surrogateescape):
    a PING payload is echoed byte for byte, and a name they are in fails to
    decode.
    """
    text = line.decode("utf-8", "surrogateescape")
    tag, space, after = text.partition(" ")
    if not space or (tag != "*" and not is_valid_tag(tag)):
        raise ProtocolError(f"not a netsem answer: {printable(text)!r}")
    word, space, rest = after.partition(" ")
    if space and not rest:
        raise ProtocolError(f"not a netsem answer (a trailing space): {printable(text)!r}")
    ok = word in _ANSWER_KINDS
    if word in ("QUEUED", "END"):
        ok = _uint(rest) is not None
    elif word in ("TIMEOUT", "CANCELLED"):
        ok = not rest
    elif word in ("ITEM", "ERR"):
        ok = bool(rest) and not rest.startswith(" ")
    if not ok:
        raise ProtocolError(f"not a netsem answer: {printable(text)!r}")
    return Reply(tag, word, rest.split(" ") if rest else [], rest)


class LineBuffer:
    """Frames a byte stream into answer lines ended by ``\\n`` (a ``\\r``
    before it dropped). ProtocolError for a line longer than MAX_LINE bytes
    (told as soon as the buffered bytes show it) or holding a NUL byte.
    One per connection; not thread-safe."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes at the start of _buffer known to hold no "\n"

    def feed(self, data: bytes) -> list[bytes]:
        """Appends ``data``; returns the complete lines it finished, in order."""
        self._buffer += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", max(start, self._scanned))
            if end < 0:
                break
            line = bytes(self._buffer[start:end])
            if line.endswith(b"\r"):
                line = line[:-1]
            self._check(line, complete=True)
            lines.append(line)
            start = end + 1
            self._scanned = start
        del self._buffer[:start]
        self._scanned = len(self._buffer)
        # A partial line may still end in "\r\n": MAX_LINE + 1 bytes can be a
        # whole line and its "\r".
        if len(self._buffer) > MAX_LINE + 1 or (
            len(self._buffer) == MAX_LINE + 1 and self._buffer[MAX_LINE] != ord("\r")
        ):
            raise ProtocolError(f"the server sent a line over {MAX_LINE} bytes")
        self._check(self._buffer, complete=False)
        return lines

    @property
    def pending(self) -> int:
        """Bytes buffered that do not end a line yet."""
        return len(self._buffer)

    @staticmethod
    def _check(line: bytes | bytearray, complete: bool) -> None:
        if complete and len(line) > MAX_LINE:
            raise ProtocolError(f"the server sent a line over {MAX_LINE} bytes")
        if b"\0" in line:
            raise ProtocolError("the server sent a NUL byte")


def printable(text: str, limit: int = 100) -> str:
    """At most ``limit`` characters of a peer's line, control characters as
    ``?``, for messages and logs."""
    out = "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text[:limit])
    return out + "..." if len(text) > limit else out


class Hello(NamedTuple):
    """HELLO's answer: the protocol version the server speaks ("1.0" or "1.1")
    and this session's id."""

    version: str
    session_id: int

    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])


def parse_hello(reply: Reply) -> Hello:
    """``OK netsem <version> <session-id>``; ProtocolError for any other answer,
    a version that is not 1.x (this client speaks protocol v1 only), or a bad
    session id."""
    fields = reply.fields
    if reply.kind == "OK" and len(fields) == 3 and fields[0] == "netsem":
        major, dot, minor = fields[1].partition(".")
        major_value = _int(major, 0, 1000)
        minor_value = _int(minor, 0, 1000) if dot else 0
        session_id = _uint(fields[2])
        if major_value == 1 and minor_value is not None and session_id:
            return Hello(f"1.{minor_value}", session_id)
    raise ProtocolError(f"does not speak netsem protocol v1: it answered HELLO with {printable(reply.text)!r}")


def parse_fence(reply: Reply) -> int:
    """ACQUIRE/WAIT's ``OK <fence>``."""
    return _number(reply, _uint(reply.text) if reply.kind == "OK" else None, "a fence")


def parse_value(reply: Reply) -> int:
    """RELEASE/POST's ``OK <value>``."""
    return _number(reply, _int(reply.text, 0, _MAX_INT64) if reply.kind == "OK" else None, "a value")


def parse_end(reply: Reply) -> int:
    """A listing's ``END <count>``."""
    return _number(reply, _uint(reply.text) if reply.kind == "END" else None, "END <count>")


def _number(reply: Reply, value: int | None, what: str) -> int:
    if value is None:
        raise ProtocolError(f"the server answered {reply.kind} {printable(reply.text)!r} where {what} was due")
    return value


def _bad(what: str, text: str) -> ProtocolError:
    return ProtocolError(f"bad {what} from the server: {printable(text)!r}")


@dataclass(frozen=True)
class SemaphoreInfo:
    """One semaphore as get() and list() show it.

    ``kind`` is "defined", "created", "undefined", "absent", or "local" (a
    ``$`` name, or one read while in fallback); for "local" ``holders`` and
    ``waiters`` are the kernel's counts (permits held on this host, processes
    waiting).
    """

    name: str
    value: int
    max: int
    holders: int  # sessions holding permits
    waiters: int  # queued requests
    kind: str


@dataclass(frozen=True)
class HolderInfo:
    """One session holding permits of a name (HOLDERS, protocol 1.1)."""

    session_id: int  # as sessions() and kick() know it
    count: int  # permits of the name it holds now
    fence: int  # of its latest grant of the name
    held: float  # seconds since the grant that made it a holder
    label: str  # its HELLO label; "" for none, "ace" for an ACE client


@dataclass(frozen=True)
class WaiterInfo:
    """One queued request of a name (WAITERS, protocol 1.1), in grant order."""

    session_id: int
    count: int  # permits it asks for
    waited: float  # seconds since it queued
    timeout_left: float | None  # seconds left of its timeout; None: waits for ever
    label: str


@dataclass(frozen=True)
class SessionInfo:
    """One live session of the server (SESSIONS, protocol 1.1)."""

    session_id: int
    peer: str  # "10.0.0.7:40112", "[fd00::7]:40112"
    dialect: str  # "v1", "v1+tls" or "ace"
    permits_held: int  # through acquire, all names together
    pending: int  # queued requests
    age: float  # seconds since it connected
    idle: float  # seconds since its last request
    label: str


def _split(text: str, n: int, what: str) -> list[str]:
    fields = text.split(" ")
    if len(fields) != n or not all(fields):
        raise _bad(what, text)
    return fields


def _counts(fields: list[str], text: str, what: str) -> tuple[int, int, int, int, str]:
    value = _int(fields[0], 0, _MAX_INT64)
    maximum = _int(fields[1], 0, _MAX_INT64)
    holders = _uint(fields[2])
    waiters = _uint(fields[3])
    if value is None or maximum is None or holders is None or waiters is None:
        raise _bad(what, text)
    return value, maximum, holders, waiters, fields[4]


def parse_get(reply: Reply, name: str) -> SemaphoreInfo:
    """GET's ``OK <value> <max> <holders> <waiters> <kind>`` for ``name``."""
    if reply.kind != "OK":
        raise _bad("GET answer", reply.text)
    return SemaphoreInfo(name, *_counts(_split(reply.text, 5, "GET answer"), reply.text, "GET answer"))


def parse_list_item(text: str) -> SemaphoreInfo:
    """LIST's ``ITEM <name> <value> <max> <holders> <waiters> <kind>`` (the
    text after ITEM). A name that does not decode (one an older server stored
    before a rule tightened) is kept as sent, so that it hides no other."""
    fields = _split(text, 6, "LIST item")
    try:
        name = decode_name(fields[0])
    except InvalidArgument:
        name = fields[0]
    return SemaphoreInfo(name, *_counts(fields[1:], text, "LIST item"))


def _label(field: str, text: str, what: str) -> str:
    if field == "-":
        return ""
    try:
        return decode_name(field)
    except InvalidArgument:
        raise _bad(what, text) from None


def parse_holder_item(text: str) -> HolderInfo:
    """HOLDERS' ``ITEM <session-id> <count> <fence> <held_ms> <label>``."""
    what = "HOLDERS item"
    f = _split(text, 5, what)
    session_id, count, fence, held = _uint(f[0]), _int(f[1], 1, MAX_COUNT), _uint(f[2]), _int(f[3], 0, _MAX_INT64)
    if not session_id or count is None or fence is None or held is None:
        raise _bad(what, text)
    return HolderInfo(session_id, count, fence, held / 1000, _label(f[4], text, what))


def parse_waiter_item(text: str) -> WaiterInfo:
    """WAITERS' ``ITEM <session-id> <count> <waited_ms> <timeout_ms_left> <label>``."""
    what = "WAITERS item"
    f = _split(text, 5, what)
    session_id, count = _uint(f[0]), _int(f[1], 1, MAX_COUNT)
    waited, left = _int(f[2], 0, _MAX_INT64), _int(f[3], -1, _MAX_INT64)
    if not session_id or count is None or waited is None or left is None:
        raise _bad(what, text)
    return WaiterInfo(session_id, count, waited / 1000, None if left < 0 else left / 1000, _label(f[4], text, what))


def parse_session_item(text: str) -> SessionInfo:
    """SESSIONS' ``ITEM <session-id> <peer> <dialect> <permits_held> <pending>
    <age_ms> <idle_ms> <label>``."""
    what = "SESSIONS item"
    f = _split(text, 8, what)
    session_id = _uint(f[0])
    numbers = [_int(x, 0, _MAX_INT64) for x in f[3:7]]
    if not session_id or any(n is None for n in numbers):
        raise _bad(what, text)
    held, pending, age, idle = (n or 0 for n in numbers)
    return SessionInfo(
        session_id, _label(f[1], text, what), f[2], held, pending, age / 1000, idle / 1000, _label(f[7], text, what)
    )


def parse_stats(reply: Reply) -> dict[str, object]:
    """STATS' ``OK <one-line JSON>`` as a dict."""
    try:
        stats = json.loads(reply.text) if reply.kind == "OK" else None
    except ValueError:
        stats = None
    if not isinstance(stats, dict):
        raise _bad("STATS answer", reply.text)
    return stats


def lease_timeout(reply: Reply) -> float | None:
    """The session timeout in seconds from the answer to LEASE (proposed
    protocol 1.2: ``OK <session_timeout_ms>``, 0 for none, asked by any
    session whatever its rights); None when the server does not tell it that
    way (a 1.0 or 1.1 server's UNKNOWN_VERB), and STATS is to be read."""
    if reply.kind != "OK":
        return None
    value = _uint(reply.text)
    return None if value is None or value > 2**63 - 1 else value / 1000


def session_timeout(reply: Reply) -> float:
    """The server's session timeout in seconds from its STATS answer; 0 when
    it has none (or the answer does not say, as from a 1.0 server that answers
    STATS with something else)."""
    try:
        value = parse_stats(reply).get("session_timeout_ms")
    except ProtocolError:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return 0.0
    return value / 1000


def auth_accepted(reply: Reply) -> bool:
    """The answer to the handshake's AUTH lets the session go on: OK (the
    token's rights), or a 1.0 server's UNKNOWN_VERB (it has no AUTH and
    requires none)."""
    return reply.kind == "OK" or (reply.kind == "ERR" and reply.code == "UNKNOWN_VERB")


def auth_refusal(server: str, reply: Reply) -> NetsemError | None:
    """What an answer to AUTH other than auth_accepted's means (libnetsem's
    words): ERR AUTH or DENIED refuse the token (Denied, never fallback);
    ERR LIMIT says the server has too many token checks waiting, which is no
    verdict on the token (LimitReached: the client tries again, and never
    falls back); None for anything else, which refusal() words."""
    if reply.kind == "ERR" and reply.code in ("AUTH", "DENIED"):
        return Denied(f"server {server} refused this client's token: {printable(reply.message)}")
    if reply.kind == "ERR" and reply.code == "LIMIT":
        return LimitReached(f"server {server}: too many token checks waiting at the server; try again later")
    return None


def refusal(server: str, reply: Reply, line: str) -> NetsemError | None:
    """What a handshake answer other than OK means: a refusal (Denied,
    LimitReached, ProtocolError: a server that answered no, which is not an
    outage and never leads to fallback), or None for ``* ERR SHUTDOWN``, an
    outage like a closed port (the server is going away). libnetsem's words."""
    said = printable(reply.message)
    if reply.kind == "ERR":
        if reply.code == "SHUTDOWN":
            return None
        if reply.code == "DENIED":
            return Denied(
                f"server {server} refused this host: {said} (this host's address is not in its allowed_networks)"
            )
        if reply.code == "AUTH":
            return Denied(
                f"server {server} refused the session: it requires authentication, which this client cannot give "
                f"({said})"
            )
        if reply.code == "LIMIT":
            return LimitReached(
                f"server {server} is full: it has reached its max_connections and refused this session ({said}); "
                "try again later"
            )
    return ProtocolError(
        f'server {server} does not accept this client\'s netsem protocol v1: it answered "{printable(line)}"'
    )


# --- Server addresses -------------------------------------------------------


def with_default_port(address: str) -> str:
    """``address`` with ``:53559`` added when it names no port ("host", "[v6]")."""
    bracketed = address.startswith("[") and address.endswith("]")
    bare = bool(address) and not address.startswith("[") and ":" not in address
    return f"{address}:{DEFAULT_PORT}" if bracketed or bare else address


def parse_endpoint(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, or either without the port (53559), as
    (host, port); InvalidArgument otherwise."""
    text = with_default_port(address.strip())
    if text.startswith("["):
        close = text.find("]:")
        if close < 0:
            raise InvalidArgument(f"bad server address: {text}")
        host, port = text[1:close], text[close + 2 :]
    else:
        host, colon, port = text.rpartition(":")
        if not colon or ":" in host:
            raise InvalidArgument(f"bad server address (host:port): {text}")
    number = _int(port, 1, 65535)
    if not host or number is None:
        raise InvalidArgument(f"bad server address (host:port): {text}")
    return host, number


def endpoint_text(host: str, port: int) -> str:
    """The address as messages show it: ``host:port`` or ``[v6]:port``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_shortage(error: OSError, call: str) -> str | None:
    """What a failed socket call says this process (or host) lacks, as in
    libnetsem: "this process is out of file descriptors (socket: Too many open
    files)"; None when the error says something of the server instead. Such an
    attempt is no outage: no fallback, the client only tries again.
    EADDRNOTAVAIL from connect() is this host's too: no local port left (the
    ephemeral range used up, as by many connections in TIME_WAIT), or the
    source address is gone."""
    what = {
        errno.EMFILE: "this process is out of file descriptors",
        errno.ENFILE: "this host is out of file descriptors",
        errno.ENOBUFS: "this host is out of memory for sockets",
        errno.ENOMEM: "this host is out of memory for sockets",
        errno.EADDRNOTAVAIL: "this host has no local address or port left to connect from",
    }.get(error.errno or 0)
    if what is None:
        return None
    return f"{what} ({call}: {os.strerror(error.errno or 0)})"


# --- The lease --------------------------------------------------------------


class Lease:
    """The session's timing, without a clock: the caller passes
    ``time.monotonic()`` readings.

    With a session timeout T the server cannot end the session before T after
    it read the last request, so not before T after the client sent the last
    request that was answered (``lease_from``). The client pings when it has
    sent nothing for ``ping_interval`` (T/6, so that a lapsing lease leaves
    about T/3 for a failover, where a PONG waits for the cluster's log;
    without T, half the request timeout, so that a dead server is still told
    from an idle one). When
    nothing sent since ``lease_from`` has been answered by T/2 after it
    (``lapse_at``), the session is given up and its permits are lost with
    ``stop_by()`` = lease_from + 0.9 T - margin (a twentieth of T, at most
    0.25 s): the work under them must have stopped by then, before the server
    can grant them again even if its clock runs 10 % slower than ours.
    Independently, a request unanswered for ``request_timeout`` means the
    connection is broken (``expiry_at``).

    A resumed session's lease (``resumed``) counts from when RESUME was first
    sent, though the server touched the session later, when it read it: a
    RESUME answered late in the lease would leave the session lapsed, or
    lapsing before a ping could renew it, while the server has just resumed
    it. So the RESUME counts as the last ping: the client's last-sent time
    starts at its send (``lease_from``; libnetsem does the same), so the next
    ping goes T/6 after it, at once when that has passed; and while
    nothing sent since is answered the lease does not lapse before
    ``renew_until``, half way from the resume to ``stop_by()``: half of what
    is left of the lease for the renewal's answer, the other half for the
    work to stop if none comes. A RESUME answered after ``stop_by()`` gives a
    lease already lapsed: the permits cannot be counted on any more.
    """

    def __init__(self, session_timeout: float, request_timeout: float, start: float) -> None:
        """``start``: when HELLO was sent (the server read it after that)."""
        self.session_timeout = max(0.0, session_timeout)
        self.request_timeout = request_timeout
        self.lease_from = start
        if self.session_timeout > 0:
            self.ping_interval = max(0.001, math.floor(self.session_timeout * 1000 / 6) / 1000)
        else:
            self.ping_interval = request_timeout / 2
        self.renew_until: float | None = None  # a resumed session's lapse, at the earliest
        self.resumed_after = 0.0  # seconds from RESUME's send to the resume (resumed), for check's text

    @classmethod
    def resumed(cls, session_timeout: float, request_timeout: float, sent: float, now: float) -> Lease:
        """The lease of a session resumed at ``now`` by a RESUME first sent at
        ``sent`` (the class's text: counted from ``sent``, renewed at once
        when late)."""
        lease = cls(session_timeout, request_timeout, sent)
        stop_by = lease.stop_by()
        if stop_by is not None:
            lease.renew_until = now + (stop_by - now) / 2
            lease.resumed_after = now - sent
        return lease

    def answered(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` was answered (QUEUED counts): the
        server read it, so it cannot end the session before T after it."""
        if sent_at > self.lease_from:
            self.lease_from = sent_at

    def ping_at(self, last_sent: float, oldest_unanswered_sent: float | None = None) -> float:
        """When to ping, given when the last request was sent. While a request
        the server has not been seen to read is unanswered, at least every
        half request_timeout: a queued ACQUIRE or WAIT may wait for ever, and
        only the answer to a request sent after it shows that the server read
        it, before request_timeout takes the wait for silence."""
        interval = self.ping_interval
        if oldest_unanswered_sent is not None:
            interval = max(0.001, min(interval, self.request_timeout / 2))
        return last_sent + interval

    def half_at(self) -> float | None:
        """T/2 after ``lease_from``, None without T: the deadline of a resume
        or move (libnetsem's too), whatever ``renew_until`` allows the lease."""
        if self.session_timeout <= 0:
            return None
        return self.lease_from + self.session_timeout / 2

    def stall_at(self, oldest_unanswered_sent: float) -> float:
        """When the oldest unanswered request has been unanswered for T/6: a
        stall, which makes the session move (rule 5)."""
        return oldest_unanswered_sent + self.session_timeout / 6

    def stalled(self, oldest_unanswered_sent: float | None, now: float) -> bool:
        """Whether the session is stalled at ``now`` (``stall_at``)."""
        return oldest_unanswered_sent is not None and now >= self.stall_at(oldest_unanswered_sent)

    def lapse_at(self) -> float | None:
        """When the lease lapses if nothing more is answered; None without T."""
        half = self.half_at()
        if half is None or self.renew_until is None:
            return half
        return max(half, self.renew_until)

    def expiry_at(self, oldest_unanswered_sent: float | None) -> float | None:
        """When the oldest unanswered request means the connection is broken."""
        return None if oldest_unanswered_sent is None else oldest_unanswered_sent + self.request_timeout

    def stop_by(self) -> float | None:
        """When work under permits lost with a lapsed lease must have stopped;
        None without T (then nothing bounds it: the permits may be granted
        again at once)."""
        if self.session_timeout <= 0:
            return None
        margin = min(self.session_timeout / 20, 0.25)
        return self.lease_from + self.session_timeout * 0.9 - margin

    def check(self, now: float, oldest_unanswered_sent: float | None) -> str | None:
        """Why the session must end now (the server fell silent), or None."""
        expiry = self.expiry_at(oldest_unanswered_sent)
        if expiry is not None and now >= expiry:
            return f"no answer from the server within {round(self.request_timeout * 1000)} ms"
        lapse = self.lapse_at()
        if lapse is not None and now >= lapse:
            silent, timeout = int((now - self.lease_from) * 1000), round(self.session_timeout * 1000)
            if self.renew_until is not None and lapse == self.renew_until:
                return (
                    f"no answer from the server for {silent} ms since the session's RESUME was sent (it was "
                    f"resumed {round(self.resumed_after * 1000)} ms after, of a session timeout of {timeout} ms, "
                    "and nothing sent since was answered): the lease on the session's permits ran out"
                )
            return (
                f"no answer from the server for {silent} ms, half its session "
                f"timeout of {timeout} ms: the lease on the session's permits ran out"
            )
        return None

    def wake_at(self, last_sent: float, oldest_unanswered_sent: float | None) -> float:
        """The next time check() or a ping may be due."""
        times = [self.ping_at(last_sent, oldest_unanswered_sent)]
        expiry = self.expiry_at(oldest_unanswered_sent)
        if expiry is not None:
            times.append(expiry)
        lapse = self.lapse_at()
        if lapse is not None:
            times.append(lapse)
        return min(times)


class Ended(Protocol):
    """How a request ended, as both clients record it: a failure of the
    connection, or the final answer."""

    failure: NetsemError | None
    reply: Reply | None


def cluster_error(ended: Ended, what: str) -> NetsemError | None:
    """final_error of a CLUSTER request, with libnetsem's words for a server
    that does not know CLUSTER (UNKNOWN_VERB: a ProtocolError)."""
    reply = ended.reply
    if ended.failure is None and reply is not None and reply.kind == "ERR" and reply.code == "UNKNOWN_VERB":
        return ProtocolError(f"{what}: the server does not know CLUSTER (protocol 1.2)")
    return final_error(ended, what)


def parse_last_fence(reply: Reply, what: str) -> int:
    """CLUSTER FENCES' ``OK <last fence>``; ProtocolError otherwise."""
    value = _uint(reply.text) if reply.kind == "OK" else None
    if value is None:
        raise ProtocolError(f"{what}: unexpected answer {reply.kind} {printable(reply.text)}".rstrip())
    return value


def final_error(ended: Ended, what: str) -> NetsemError | None:
    """The error a request ended with: the connection's failure when it had
    one, else the one its final answer says (TIMEOUT, CANCELLED, ERR); None
    for OK, PONG and END. Both clients (client.py, aio.py) use it."""
    if ended.failure is not None:
        return ended.failure
    reply = ended.reply
    assert reply is not None
    if reply.kind == "TIMEOUT":
        return Timeout(f"{what}: timed out")
    if reply.kind == "CANCELLED":
        return Cancelled(f"{what}: cancelled")
    if reply.kind == "ERR":
        return reply.error(what)
    return None
