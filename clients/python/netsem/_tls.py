"""TLS for both clients (libnetsem's src/client/tls_client.cc, in Python's ssl).

API: ``make_context(options)`` builds, once per Client, the ssl.SSLContext its
connections use (None without ``tls``): TLS 1.2 at least, OpenSSL's default
ciphers (as libnetsem, not Python's own list), no renegotiation, the
server's certificate always verified, against ``tls_ca`` or the system's trust
store, and a client certificate when one is configured. ``server_name(options,
host)`` is the name the server's certificate must carry: ``tls_server_name``,
else the host part of the address; ssl checks an IP address against the
certificate's IP addresses and sends no SNI for it, a name against its DNS
names (no partial wildcards) with SNI, as libnetsem does.

``is_refusal(error)`` tells an ssl error that is the peer's "no" (a certificate
that does not verify, an alert, a server that does not speak TLS there) from
a connection that broke; ``refusal(server, error)`` words it as libnetsem does.
A refusal is Denied: never an outage, never fallback. ``socket_errno(error)``
is the socket's own error behind a failure, which alone says whether the
server's host replied (rule 8): an ssl.SSLError's errno is OpenSSL's error
kind, not the socket's; ``broken(error)`` words a failure that is no refusal.

Thread safety: a context is read-only once made, and shared by the sessions.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

from netsem.errors import Denied, InvalidArgument

if TYPE_CHECKING:
    from netsem._options import ClientOptions


def make_context(options: ClientOptions) -> ssl.SSLContext | None:
    """The context for ``options`` (None when tls is off); InvalidArgument
    naming the option and the file when one cannot be used."""
    if not options.tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname on
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.set_ciphers("DEFAULT")  # the system's, as libnetsem's SSL_CTX_new leaves them
    except ssl.SSLError:
        pass  # Python's own list stays
    if options.tls_ca is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        try:
            context.load_verify_locations(cafile=os.fspath(options.tls_ca))
        except (OSError, ValueError) as error:
            raise InvalidArgument(f"tls_ca {os.fspath(options.tls_ca)}: {_reason(error)}") from None
    if options.tls_cert is not None and options.tls_key is not None:
        cert, key = os.fspath(options.tls_cert), os.fspath(options.tls_key)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as error:
            if "KEY_VALUES_MISMATCH" in str(error) or "key values mismatch" in str(error):
                raise InvalidArgument(f"tls_key {key} is not the key of tls_cert {cert}") from None
            raise InvalidArgument(f"tls_cert {cert} or tls_key {key}: {_reason(error)}") from None
        except OSError as error:
            raise InvalidArgument(f"tls_cert {cert} or tls_key {key}: {_reason(error)}") from None
    return context


def server_name(options: ClientOptions, host: str) -> str:
    """The name the server at ``host`` must prove (and the SNI, unless an address)."""
    return options.tls_server_name or host


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason.lower().replace("_", " ") if error.reason else (error.strerror or str(error))
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    return str(error) or type(error).__name__


def is_refusal(error: BaseException) -> bool:
    """True when ``error`` is the TLS peer's answer no (a certificate refused
    either way, an alert, not TLS there); False for a connection that ended
    or broke (EOF in the middle, a reset), which is as a closed port."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return True
    if isinstance(
        error, (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
    ):
        return False
    return isinstance(error, ssl.SSLError)


def socket_errno(error: BaseException) -> int:
    """The socket's errno behind ``error``, 0 when it has none. Python's ssl
    raises the socket's failure (SSL_ERROR_SYSCALL with a failed recv or
    send) as a plain OSError, with the errno read right after the call;
    every ssl.SSLError's errno is instead OpenSSL's error kind (1 SSL, 5
    SYSCALL, 6 ZERO_RETURN, 8 EOF, ...), which os.strerror would misname
    ("Exec format error" for 8) and rule 8 must not read. asyncio's own
    TimeoutError (a wait's bound) has none either, while a socket's
    ETIMEDOUT (keepalive or TCP_USER_TIMEOUT ran out) is a TimeoutError too,
    with its errno."""
    if isinstance(error, ssl.SSLError) or not isinstance(error, OSError):
        return 0
    return error.errno or 0


def broken(error: BaseException) -> str:
    """A failure that is no refusal, in libnetsem's words: the socket's error
    ("Connection reset by peer"), else "the server closed the connection"
    (a TLS end of stream, or asyncio's EOF during the handshake)."""
    code = socket_errno(error)
    return os.strerror(code) if code else "the server closed the connection"


def refusal(server: str, error: BaseException) -> Denied:
    """libnetsem's words for a failed handshake (Connection::tls_refusal)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        why = f"the server's certificate: {error.verify_message}"
    else:
        why = _reason(error)
    not_tls = any(text in why for text in ("wrong version number", "packet length too long", "record layer failure"))
    hint = " (the server does not speak TLS there: is that its tls_port?)" if not_tls else ""
    return Denied(f"TLS handshake with server {server} failed: {why}{hint}")
