"""The exceptions of the netsem client, one per way a call can fail.

They mirror libnetsem's status codes (include/netsem/status.h) one to one, so
that the C++ and the Python client report the same failure the same way.
Each derives from NetsemError, which carries ``code`` (the status name, e.g.
``"TIMEOUT"``) and, where the builtin one fits, from the matching builtin
exception too: ``except TimeoutError`` catches a netsem Timeout, ``except
ConnectionError`` an Unavailable, ``except PermissionError`` a Denied.

``from_server(code, message)`` turns a server's ``ERR <CODE> <message>`` into
the exception of that code (protocol-v1.md, "Requests and responses").
"""

from __future__ import annotations


class NetsemError(Exception):
    """Base of every error of the netsem client. ``code`` names the status."""

    code = "ERROR"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(NetsemError, ValueError):
    """The caller passed something malformed or out of range (a bad name, a count < 1)."""

    code = "INVALID_ARGUMENT"


class NotFound(NetsemError, LookupError):
    """The named thing does not exist (WAIT/POST of an unknown name, DELETE, CANCEL, KICK)."""

    code = "NOT_FOUND"


class AlreadyExists(NetsemError):
    """CREATE with exclusive=True of a name that exists."""

    code = "ALREADY_EXISTS"


class Timeout(NetsemError, TimeoutError):
    """The timeout ran out before the permits were free."""

    code = "TIMEOUT"


class Cancelled(NetsemError):
    """The call was cancelled (a CancelToken, or an asyncio task's cancellation)."""

    code = "CANCELLED"


class NotHeld(NetsemError):
    """Releasing permits this session (or process) does not hold."""

    code = "NOT_HELD"


class Overflow(NetsemError):
    """POST would raise a semaphore's value above its max."""

    code = "OVERFLOW"


class TooMany(NetsemError):
    """More permits asked than the semaphore's max."""

    code = "TOO_MANY"


class Busy(NetsemError):
    """The semaphore is in use and cannot be changed now (DELETE while held or waited on)."""

    code = "BUSY"


class LimitReached(NetsemError):
    """A configured limit of the server was reached (max_connections, max_pending_per_session, max_semaphores)."""

    code = "LIMIT"


class Denied(NetsemError, PermissionError):
    """The server refused this host or session (allow-list, admin right, authentication).

    A refusal is not an outage: it never leads to fallback.
    """

    code = "DENIED"


class Unavailable(NetsemError, ConnectionError):
    """No server could be reached, or the connection was lost."""

    code = "UNAVAILABLE"


class Shutdown(Unavailable):
    """The server is shutting down (``* ERR SHUTDOWN``)."""

    code = "SHUTDOWN"


class ProtocolError(NetsemError):
    """The peer answered, but not in a protocol (version) this client speaks."""

    code = "PROTOCOL"


class IoError(NetsemError, OSError):
    """A file or system call failed (the local semaphores' registry, the kernel)."""

    code = "IO_ERROR"


# The server's ERR codes (protocol-v1.md) and the exception each becomes.
# BAD_REQUEST, UNKNOWN_VERB and LINE_TOO_LONG mean this client sent something
# the server does not take: a protocol error, not the caller's.
_SERVER_CODES: dict[str, type[NetsemError]] = {
    "BAD_REQUEST": ProtocolError,
    "UNKNOWN_VERB": ProtocolError,
    "LINE_TOO_LONG": ProtocolError,
    "BAD_NAME": InvalidArgument,
    "BAD_ARG": InvalidArgument,
    "NOT_FOUND": NotFound,
    "NOT_HELD": NotHeld,
    "OVERFLOW": Overflow,
    "TOO_MANY": TooMany,
    "EXISTS": AlreadyExists,
    "BUSY": Busy,
    "DUPLICATE_TAG": ProtocolError,
    "LIMIT": LimitReached,
    "DENIED": Denied,
    "AUTH": Denied,
    "SHUTDOWN": Shutdown,
    "KICKED": Unavailable,
}


def from_server(code: str, message: str) -> NetsemError:
    """The exception for a server's ``ERR <code> <message>``; an unknown code is a ProtocolError."""
    kind = _SERVER_CODES.get(code, ProtocolError)
    text = f"{code}: {message}" if message else code
    return kind(text)
