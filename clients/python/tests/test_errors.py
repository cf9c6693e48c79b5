"""The exceptions: each server ERR code becomes the exception of libnetsem's
status of the same meaning, catchable as the matching builtin too."""

from __future__ import annotations

import pytest

import netsem
from netsem import errors


@pytest.mark.parametrize(
    ("code", "kind", "builtin"),
    [
        ("NOT_FOUND", netsem.NotFound, LookupError),
        ("BAD_NAME", netsem.InvalidArgument, ValueError),
        ("BAD_ARG", netsem.InvalidArgument, ValueError),
        ("DENIED", netsem.Denied, PermissionError),
        ("AUTH", netsem.Denied, PermissionError),
        ("SHUTDOWN", netsem.Shutdown, ConnectionError),
        ("EXISTS", netsem.AlreadyExists, netsem.NetsemError),
        ("LIMIT", netsem.LimitReached, netsem.NetsemError),
        ("UNKNOWN_VERB", netsem.ProtocolError, netsem.NetsemError),
    ],
)
def test_server_codes_map_to_their_exception(code: str, kind: type, builtin: type) -> None:
    error = errors.from_server(code, "why it failed")
    assert type(error) is kind
    assert isinstance(error, builtin)
    assert str(error) == f"{code}: why it failed"


def test_an_unknown_server_code_is_a_protocol_error() -> None:
    error = errors.from_server("NEW_CODE", "")
    assert isinstance(error, netsem.ProtocolError)
    assert str(error) == "NEW_CODE"


def test_timeout_is_a_builtin_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        raise netsem.Timeout("0 of 3 free")


def test_cancel_token_calls_back_once_and_refuses_late_callbacks() -> None:
    token = netsem.CancelToken()
    calls: list[str] = []
    first = token.add_callback(lambda: calls.append("first"))
    removed = token.add_callback(lambda: calls.append("removed"))
    token.remove_callback(removed)
    token.cancel()
    token.cancel()
    assert calls == ["first"]
    assert token.cancelled
    assert first is not None
    assert token.add_callback(lambda: calls.append("late")) is None
    assert calls == ["first"]


def test_the_fixture_starts_a_real_server_that_answers(netsemd) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.create_connection(("127.0.0.1", netsemd.port), timeout=5) as connection:
        connection.sendall(b"g1 GET pool\n")
        assert connection.makefile("rb").readline() == b"g1 OK 3 3 0 0 defined\n"
