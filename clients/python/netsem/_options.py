"""ClientOptions and FallbackPolicy: where a Client finds its servers, what a
name does while none can be reached, and the limits its local semaphores use.

The Python twin of libnetsem's client_options.h / client_options.cc, with
the same fields, defaults, file rules and error messages (times in seconds
as floats instead of milliseconds). Read from the ``[client]`` and
``[semaphores]`` sections of a netsem configuration file (the server's file
works as is, and so does an ACE file), from the environment, or set in code::

    [client]
    servers = 10.0.0.5:53559, 10.0.0.6:53559   ; tried in order
    fallback = local                           ; local | fail | share:K
    fallback.licences = fail                   ; per-name override
    connect_timeout_ms = 1000
    tls = on                                   ; TLS (docs/python.md, "TLS and tokens")
    tls_ca = /etc/netsem/ca.pem
    token_file = /etc/netsem/worker.token      ; AUTH after HELLO; mode 600

    [semaphores]
    search = 10                                ; the limit fallback uses for `search`

The INI dialect is netsem's (src/common/ini.h): Python's configparser with
its defaults, ``allow_no_value`` (ACE files have bare keys), no inline
comments, continuation lines, and duplicate sections or keys refused. It is
read by hand here rather than by configparser so that every error names the
same ``file:line`` with the same words as libnetsem's.

Plain values; safe to share between threads once built.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from netsem._protocol import DEFAULT_PORT, decode_name, with_default_port
from netsem.errors import Denied, InvalidArgument, IoError, NetsemError

_MAX_LIMIT = 2**31 - 1
_ACE_SECTION = "service_network_semaphore"
_ACE_DEFAULT_SECTION = "DEFAULT"  # configparser's, case-sensitive
_ACE_SEMAPHORE_PREFIX = "semaphore_"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # C's tolower, as netsemd folds
_HOUR_MS = 3_600_000
_WHITESPACE = " \t\n\v\f\r"  # the C locale's isspace, as src/common/text.h trims
_POLICY_FORMS = "local, fail or share:K with K >= 1"
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-._")


def _trim(text: str) -> str:
    return text.strip(_WHITESPACE)


def _ini_integer(text: str, low: int, high: int) -> int:
    """A whole decimal number in [low, high], as src/common/ini.cc's parse_ini_integer."""
    body = text[1:] if text.startswith("-") else text
    if not body or not body.isascii() or not body.isdigit():
        raise InvalidArgument(f"`{text}` is not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise InvalidArgument(f"{text} is out of range {low}..{high}")
    return value


@dataclass(frozen=True)
class FallbackPolicy:
    """What a name does while no server can be reached.

    ``mode`` is "local" (a host-wide local semaphore with the name's limit),
    "fail" (calls raise Unavailable) or "share" (a local semaphore with the
    limit divided by ``share``, the number of hosts sharing it, rounded up).
    """

    mode: str = "local"
    share: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("local", "fail", "share"):
            raise InvalidArgument(f"`{self.mode}` is not a fallback policy ({_POLICY_FORMS})")
        if isinstance(self.share, bool) or not isinstance(self.share, int) or not 1 <= self.share <= _MAX_LIMIT:
            raise InvalidArgument(f"the K of share:K must be 1..{_MAX_LIMIT}")

    @classmethod
    def parse(cls, text: str) -> FallbackPolicy:
        """``local``, ``fail`` or ``share:K`` (K >= 1); InvalidArgument otherwise."""
        if text in ("local", "fail"):
            return cls(text)
        if text.startswith("share:"):
            try:
                return cls("share", _ini_integer(text[6:], 1, _MAX_LIMIT))
            except InvalidArgument:
                raise InvalidArgument(
                    f"`{text}` is not a fallback policy: the K of share:K must be 1..{_MAX_LIMIT}"
                ) from None
        raise InvalidArgument(f"`{text}` is not a fallback policy ({_POLICY_FORMS})")

    def __str__(self) -> str:
        return f"share:{self.share}" if self.mode == "share" else self.mode

    def local_limit(self, limit: int) -> int:
        """The local limit for a semaphore whose server limit is ``limit``
        (rounded up, so that K hosts together never get less than it; at least 1)."""
        if self.mode != "share" or self.share <= 1:
            return max(limit, 1)
        return max(-(-limit // self.share), 1)


@dataclass
class ClientOptions:
    """Everything a Client is configured with; the defaults are libnetsem's."""

    DEFAULT_PORT = DEFAULT_PORT
    DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"

    # "host:port" (IPv6 as "[addr]:port"; without ":port", 53559), tried in
    # order. Empty means DEFAULT_SERVER.
    servers: list[str] = field(default_factory=list)
    # HELLO label: how this client shows in the server's logs and in the 1.1
    # listings; at most 255 bytes, no spaces or control characters. Empty
    # means "<host>/<pid>/<program>".
    label: str = ""
    # Whether the server tells queue positions (QUEUED lines). Off: the client
    # asks a 1.1 server for `OPTION queued off`, saving a line per contended
    # request.
    queue_positions: bool = False
    # Seconds. A connect attempt to one server gives up after connect_timeout;
    # reconnects back off from reconnect_min, doubling, to reconnect_max; a
    # request unanswered for request_timeout means the connection is broken.
    connect_timeout: float = 1.0
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    request_timeout: float = 10.0
    fallback: FallbackPolicy = field(default_factory=FallbackPolicy)  # names without an override
    fallback_for: dict[str, FallbackPolicy] = field(default_factory=dict)  # per-name overrides
    limits: dict[str, int] = field(default_factory=dict)  # [semaphores]: local limits; unknown names 1
    # Where host-wide local semaphores keep their registry; None means
    # "$XDG_RUNTIME_DIR/netsem", else "/tmp/netsem-<uid>".
    local_dir: Path | None = None
    # TLS (docs/python.md, "TLS and tokens"): the session to each server runs
    # inside TLS, whose server certificate must verify against ``tls_ca`` and
    # name the server. A failed handshake (a certificate that does not verify,
    # a wrong name, a server that wants a client certificate we lack or does
    # not take ours) is a refusal, Denied: never an outage, never fallback.
    # The servers' addresses then name their TLS port (tls_port, 53561 by
    # default): an address without a port still means 53559.
    tls: bool = False
    # CA certificates (PEM) the server's certificate must verify against;
    # None means the system's trust store.
    tls_ca: Path | None = None
    # A client certificate chain and its key (PEM), for a server with
    # tls_client_ca; both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The name the server's certificate must carry; empty means the host part
    # of each server address (an IP address is checked against the
    # certificate's IP addresses, and no SNI is sent for it).
    tls_server_name: str = ""
    # The token sent with AUTH after HELLO on every (re)connect, for a server
    # that requires authentication; empty: none. ERR AUTH (or DENIED) to it
    # refuses the client (Denied, never fallback). Set from [client] token or
    # token_file, NETSEM_TOKEN or NETSEM_TOKEN_FILE, load_token_file(), or
    # the Client's ``token`` keyword; kept out of repr().
    token: str = field(default="", repr=False)

    def fallback_policy(self, name: str) -> FallbackPolicy:
        """The policy for ``name``."""
        return self.fallback_for.get(name, self.fallback)

    def limit(self, name: str) -> int:
        """The limit for ``name`` from ``limits``, 1 when not listed."""
        return self.limits.get(name, 1)

    def copy(self) -> ClientOptions:
        """A copy whose server list and tables are its own."""
        return replace(
            self, servers=list(self.servers), fallback_for=dict(self.fallback_for), limits=dict(self.limits)
        )

    def check(self) -> None:
        """InvalidArgument for options set in code that cannot work (servers
        that do not parse, timeouts that are not positive, reconnect_min above
        reconnect_max, limits out of 1..2^31-1), as libnetsem's Client::create
        checks them. A label is not refused: the client sends it with spaces
        and control characters as ``_``, as libnetsem does."""
        self.servers = parse_servers(",".join(self.servers)) if self.servers else []
        for attribute in ("connect_timeout", "reconnect_min", "reconnect_max", "request_timeout"):
            value = getattr(self, attribute)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgument(f"{attribute} must be a positive number of seconds, not {value!r}")
        if self.reconnect_min > self.reconnect_max:
            raise InvalidArgument(
                f"reconnect_min ({self.reconnect_min}) is above reconnect_max ({self.reconnect_max})"
            )
        for name, limit in self.limits.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
                raise InvalidArgument(f"the limit of `{name}` must be 1..{_MAX_LIMIT}, not {limit!r}")
        if not isinstance(self.tls, bool):
            raise InvalidArgument(f"tls must be True or False, not {self.tls!r}")
        for attribute in ("tls_ca", "tls_cert", "tls_key"):
            value = getattr(self, attribute)
            if value is not None:
                try:
                    setattr(self, attribute, Path(_check_file_name(os.fspath(value))))
                except (InvalidArgument, TypeError) as error:
                    raise InvalidArgument(f"{attribute}: {error}") from None
        if self.tls_server_name:
            _check_server_name(self.tls_server_name)
        if self.token:
            _check_token(self.token)
        _check_tls_pair(self)

    def load_token_file(self, path: str | os.PathLike[str]) -> None:
        """Sets ``token`` from the first line of the file (its line end and
        surrounding blanks dropped), as libnetsem's load_token_file. Denied
        when the file is readable or writable by group or others (chmod 600
        it, as ssh asks of keys); IoError when it cannot be read;
        InvalidArgument when the token is not 1..256 visible ASCII characters."""
        file_name = os.fspath(path)
        text = _read_private_file(file_name)
        first = _trim(text.split("\n", 1)[0])
        try:
            self.token = _check_token(first)
        except InvalidArgument as error:
            raise InvalidArgument(f"{file_name}: {error}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ClientOptions:
        """Reads ``[client]`` and ``[semaphores]`` of an INI file.

        Without ``servers`` in ``[client]``, the server is the one the file
        configures: ``[server]``'s bind_address:bind_port (127.0.0.1 for
        0.0.0.0, ::1 for ::; defaults 127.0.0.1 and 53559), or in an ACE file
        ``[service_network_semaphore]``'s remote_address:remote_port. An ACE
        file's ``semaphore_<name> = N`` lines are the fallback limits of the
        names ``[semaphores]`` does not list, as libnetsem reads them. Other
        sections are ignored. InvalidArgument naming file:line, IoError when
        the file cannot be read.
        """
        ini = _Ini.read(os.fspath(path))
        options = cls()
        for section in ini.sections:
            if section.name == "client":
                _parse_client_section(ini, section, options)
            elif section.name == "semaphores":
                _parse_semaphores_section(ini, section, options)
            elif section.name.lower() in ("client", "semaphores"):
                # Silently ignoring [Client] would leave the user wondering why nothing applies.
                raise InvalidArgument(
                    f"{ini.location(section.line)}: section names are case-sensitive: [{section.name.lower()}]?"
                )
        ace = ini.find(_ACE_SECTION)
        if ace is not None:
            _add_ace_limits(ini, ace, options)
        if not options.servers:
            server = _server_named_by_file(ini)
            if server:
                options.servers.append(server)
        return options

    @classmethod
    def from_environment(cls) -> ClientOptions:
        """from_file($NETSEM_CONFIG) when set (else defaults), then
        NETSEM_SERVER ("host:port[,host:port...]"), NETSEM_FALLBACK and
        NETSEM_LABEL override; NETSEM_TOKEN_FILE, then NETSEM_TOKEN, override
        the file's token; NETSEM_TLS (on or off), NETSEM_TLS_CA,
        NETSEM_TLS_CERT, NETSEM_TLS_KEY and NETSEM_TLS_SERVER_NAME override
        the tls options. An empty variable counts as unset. Errors name the
        variable; a token file others may read is Denied, as in libnetsem."""
        options = cls()
        config = os.environ.get("NETSEM_CONFIG")
        if config:
            try:
                options = cls.from_file(config)
            except (InvalidArgument, IoError) as error:
                raise type(error)(f"NETSEM_CONFIG: {error}") from None
        for variable, apply in (
            ("NETSEM_SERVER", lambda v: setattr(options, "servers", parse_servers(v))),
            ("NETSEM_FALLBACK", lambda v: setattr(options, "fallback", FallbackPolicy.parse(v))),
            ("NETSEM_LABEL", lambda v: setattr(options, "label", _check_label(v))),
        ):
            value = os.environ.get(variable)
            if value:
                try:
                    apply(value)
                except InvalidArgument as error:
                    raise InvalidArgument(f"{variable}: {error}") from None
        token_file = os.environ.get("NETSEM_TOKEN_FILE")
        if token_file:
            try:
                options.load_token_file(token_file)
            except NetsemError as error:
                raise type(error)(f"NETSEM_TOKEN_FILE: {error}") from None
        for variable, apply_key in (
            ("NETSEM_TOKEN", _apply_token),
            ("NETSEM_TLS", _apply_tls),
            ("NETSEM_TLS_CA", _apply_tls_file("tls_ca")),
            ("NETSEM_TLS_CERT", _apply_tls_file("tls_cert")),
            ("NETSEM_TLS_KEY", _apply_tls_file("tls_key")),
            ("NETSEM_TLS_SERVER_NAME", _apply_tls_server_name),
        ):
            value = os.environ.get(variable)
            if value:
                try:
                    apply_key(value, options)
                except InvalidArgument as error:
                    raise InvalidArgument(f"{variable}: {error}") from None
        _check_tls_pair(options)
        return options


# --- values -------------------------------------------------------------------


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _check_label(value: str) -> str:
    # The label is one field of HELLO: a space would split it.
    if len(value.encode("utf-8", "surrogateescape")) > 255 or _has_control(value) or " " in value:
        raise InvalidArgument(f"`{value}` is not a label (at most 255 bytes, no spaces or control characters)")
    return value


def _check_token(value: str) -> str:
    # A token is one field of AUTH: 1..256 visible ASCII characters (the
    # server's auth::check_token), libnetsem's words.
    if not 1 <= len(value) <= 256 or not all(" " < c < "\x7f" for c in value):
        raise InvalidArgument("the token is not 1 to 256 visible ASCII characters (no space)")
    return value


def _check_file_name(value: str) -> str:
    if not value or _has_control(value):
        raise InvalidArgument(f"`{value}` is not a file name")
    return value


def _check_server_name(value: str) -> str:
    if not value or len(value) > 253 or _has_control(value) or " " in value:
        raise InvalidArgument(f"`{value}` is not a host name or address")
    return value


def _check_tls_pair(options: ClientOptions, where: str = "") -> None:
    """A client certificate needs its key, and a key its certificate."""
    if (options.tls_cert is None) != (options.tls_key is None):
        which = (
            "tls_key is set without tls_cert" if options.tls_cert is None else "tls_cert is set without tls_key"
        )
        raise InvalidArgument(f"{where}{which} (a client certificate needs both)")


def _read_private_file(path: str) -> str:
    """The content of a file that holds secrets (at most 16 MiB), refused when
    anyone but its owner may read or write it, as ssh does with private keys
    (src/common/private_file.cc: the mode is checked on the open descriptor,
    so the file checked is the file read; the same words)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise IoError(f"{path}: cannot read: {os.strerror(error.errno or 0)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IoError(f"{path}: cannot read: not a regular file")
        if info.st_mode & (stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH):
            raise Denied(
                f"{path}: holds secrets but is readable or writable by group or others "
                f"(mode {info.st_mode & 0o777:03o}; chmod 600 it)"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as error:
                raise IoError(f"{path}: cannot read: {os.strerror(error.errno or 0)}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > 16 << 20:
                raise IoError(f"{path}: cannot read: larger than 16 MiB")
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def _is_ipv6(text: str) -> bool:
    if "%" in text:  # inet_pton takes no scope id
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _check_server_address(address: str) -> None:
    """``host:port`` or ``[ipv6]:port``; the host a name or an address
    (resolved only when connecting), the port 1..65535."""
    if address.startswith("["):
        close = address.find("]")
        if close < 0 or close + 1 >= len(address) or address[close + 1] != ":":
            raise InvalidArgument(f"`{address}` is not [address]:port")
        host, port = address[1:close], address[close + 2 :]
        if not _is_ipv6(host):
            raise InvalidArgument(f"`{host}` in `{address}` is not an IPv6 address")
    else:
        colon = address.rfind(":")
        if colon < 0:
            raise InvalidArgument(f"`{address}` has no port (write host:port)")
        host, port = address[:colon], address[colon + 1 :]
        if ":" in host:
            raise InvalidArgument(f"`{address}`: write an IPv6 address in brackets, as [{host}]:{port}")
        if not host or len(host) > 253 or not all(c in _HOST_CHARS for c in host):
            raise InvalidArgument(f"`{host}` in `{address}` is not a host name or address")
    if not port or not all(c in string.digits for c in port):
        raise InvalidArgument(f"the port of `{address}` is not a number")
    try:
        _ini_integer(port, 1, 65535)
    except InvalidArgument as error:
        raise InvalidArgument(f"the port of `{address}`: {error}") from None


def client_options(
    servers: str | Sequence[str] | None,
    label: str | None,
    config: str | os.PathLike[str] | None,
    options: ClientOptions | None,
    **security: object,
) -> ClientOptions:
    """The options a Client (blocking or asyncio) runs with: ``options``
    (copied: check() normalizes it), else the file ``config``, else the
    environment; then ``servers`` ("host:port", a comma-separated list, or a
    sequence of them), ``label`` and the ``security`` keywords not None
    (tls, tls_ca, tls_cert, tls_key, tls_server_name, token, token_file: a
    token_file is read here, and a token given too wins) override; checked,
    and without servers DEFAULT_SERVER. InvalidArgument for bad options,
    IoError for an unreadable file, Denied for a token file others may read."""
    if options is not None:
        options = options.copy()
    elif config is not None:
        options = ClientOptions.from_file(config)
    else:
        options = ClientOptions.from_environment()
    if servers is not None:
        options.servers = parse_servers(servers if isinstance(servers, str) else ",".join(servers))
    if label is not None:
        options.label = label
    unknown = set(security) - set(SECURITY_KEYWORDS)
    if unknown:
        raise TypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}")
    token_file = security.get("token_file")
    if token_file is not None:
        options.load_token_file(token_file)  # type: ignore[arg-type]
    for keyword in SECURITY_KEYWORDS[:-1]:
        value = security.get(keyword)
        if value is not None:
            setattr(options, keyword, value)
    options.check()
    if not options.servers:
        options.servers = [ClientOptions.DEFAULT_SERVER]
    return options


# The Client keywords that override the TLS and token options (token_file last).
SECURITY_KEYWORDS = ("tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "token", "token_file")


def parse_servers(text: str) -> list[str]:
    """Addresses separated by commas or line breaks (a continued INI value),
    each with the default port added when it names none; an empty item
    between two commas is an error."""
    servers: list[str] = []
    for part in text.split(","):
        empty = True
        for item in part.split("\n"):
            item = _trim(item)
            if not item:
                continue
            address = with_default_port(item)
            _check_server_address(address)
            servers.append(address)
            empty = False
        if empty:
            raise InvalidArgument(f"`{_trim(text)}` has an empty server address")
    return servers


def _decode_config_name(key: str) -> str:
    """A semaphore name as written in the file: percent-decoded and checked by
    the protocol's rules, except that a leading ``$`` (a local name) is allowed."""
    local = key.startswith("$")
    try:
        name = decode_name(key[1:] if local else key)
        if local:
            name = "$" + name
            if len(name.encode("utf-8")) > 255:
                raise InvalidArgument(name)
    except InvalidArgument:
        raise InvalidArgument(
            f"`{key}` is not a valid semaphore name (1-255 bytes of UTF-8, no control characters, "
            "`$` only as the first byte of a local name; `%` must start a %XX escape)"
        ) from None
    return name


# --- the INI reader (src/common/ini.cc, which follows configparser) -----------


@dataclass
class _Entry:
    key: str
    value: str
    has_value: bool
    line: int


@dataclass
class _Section:
    name: str
    line: int
    entries: list[_Entry] = field(default_factory=list)

    def find(self, key: str) -> _Entry | None:
        return next((entry for entry in self.entries if entry.key == key), None)


class _Ini:
    """One INI file read as netsem reads it, with allow_no_value."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.sections: list[_Section] = []

    def location(self, line: int) -> str:
        return f"{self.file_name}:{line}"

    def find(self, name: str) -> _Section | None:
        return next((section for section in self.sections if section.name == name), None)

    @classmethod
    def read(cls, path: str) -> _Ini:
        if os.path.isdir(path):
            raise IoError(f"{path}: cannot read: is a directory")
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as error:
            raise IoError(f"{path}: cannot read: {os.strerror(error.errno or 0)}") from None
        return cls.parse(data.decode("utf-8", "surrogateescape"), path)

    @classmethod
    def parse(cls, text: str, file_name: str) -> _Ini:
        ini = cls(file_name)
        if text.startswith("\ufeff"):
            text = text[1:]
        expected = "expected `key = value` or `[section]`"

        def fail(line: int, what: str) -> InvalidArgument:
            return InvalidArgument(f"{file_name}:{line}: {what}")

        section: _Section | None = None
        entry: _Entry | None = None  # the entry a deeper-indented line would continue
        entry_indent = -1
        blank_lines = 0
        section_lines: dict[str, int] = {}
        key_lines: dict[tuple[int, str], int] = {}
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for number, raw in enumerate(lines, start=1):
            line = _trim(raw)
            # Comments neither end nor extend a value; blank lines are kept
            # inside a value if a continuation line follows them.
            if line.startswith(("#", ";")):
                continue
            if not line:
                if entry is not None and entry.has_value:
                    blank_lines += 1
                continue
            indent = len(raw) - len(raw.lstrip(_WHITESPACE))
            if entry is not None and entry_indent >= 0 and indent > entry_indent:
                if not entry.has_value:
                    raise fail(number, f"indented line continues `{entry.key}`, which has no value")
                entry.value += "\n" * (blank_lines + 1) + line
                blank_lines = 0
                continue
            entry_indent = indent
            blank_lines = 0
            entry = None
            if line.startswith("["):
                close = line.find("]")
                rest = _trim(line[close + 1 :]) if close >= 0 else ""
                if close < 0 or close == 1 or (rest and not rest.startswith(("#", ";"))):
                    raise fail(number, expected)
                name = line[1:close]
                if name in section_lines:
                    raise fail(number, f"duplicate section [{name}] (first at line {section_lines[name]})")
                section_lines[name] = number
                section = _Section(name, number)
                ini.sections.append(section)
                continue
            delimiter = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
            if delimiter < 0:
                key, value, has_value = line, "", False
            else:
                key, value, has_value = _trim(line[:delimiter]), _trim(line[delimiter + 1 :]), True
                if not key:
                    raise fail(number, expected)
            if section is None:
                raise fail(number, f"`{key}` comes before any [section]")
            first = key_lines.setdefault((len(ini.sections), key), number)
            if first != number:
                raise fail(number, f"duplicate key `{key}` in [{section.name}] (first at line {first})")
            entry = _Entry(key, value, has_value, number)
            section.entries.append(entry)
        return ini


# --- the sections ---------------------------------------------------------------


def _add_ace_limits(ini: _Ini, ace: _Section, options: ClientOptions) -> None:
    """An ACE file's ``semaphore_<name> = N`` lines, as fallback limits where
    [semaphores] names none (libnetsem's add_ace_limits): one file gives one
    limit per name whichever client reads it, so that they keep one host-wide
    semaphore per name at one limit. Keys fold to lower case as ACE's
    configparser and netsemd fold them, [DEFAULT]'s come first and the
    section's own override them, and a limit below 1 is 1, as in ACE's own
    fallback."""
    found: dict[str, int] = {}
    for section in (ini.find(_ACE_DEFAULT_SECTION), ace):
        if section is None:
            continue
        for entry in section.entries:
            key = entry.key.translate(_ASCII_LOWER)
            if not key.startswith(_ACE_SEMAPHORE_PREFIX) or key == _ACE_SEMAPHORE_PREFIX or not entry.has_value:
                continue
            try:
                limit = _ini_integer(entry.value, -(2**63), _MAX_LIMIT)
            except InvalidArgument as error:
                raise _entry_error(ini, entry, error) from None
            found[key[len(_ACE_SEMAPHORE_PREFIX) :]] = max(limit, 1)
    for name, limit in found.items():
        options.limits.setdefault(name, limit)


def _entry_error(ini: _Ini, entry: _Entry, error: Exception) -> InvalidArgument:
    return InvalidArgument(f"{ini.location(entry.line)}: {entry.key}: {error}")


def _apply_ms(attribute: str, high: int) -> Callable[[str, ClientOptions], None]:
    def apply(value: str, options: ClientOptions) -> None:
        setattr(options, attribute, _ini_integer(value, 1, high) / 1000)

    return apply


def _apply_servers(value: str, options: ClientOptions) -> None:
    options.servers = parse_servers(value)


def _apply_fallback(value: str, options: ClientOptions) -> None:
    options.fallback = FallbackPolicy.parse(value)


def _apply_label(value: str, options: ClientOptions) -> None:
    options.label = _check_label(value)


def _apply_local_dir(value: str, options: ClientOptions) -> None:
    if _has_control(value):
        raise InvalidArgument(f"`{value}` contains a control character")
    # Empty is the default directory, as in libnetsem (an empty path there);
    # Path("") would be the current directory, another registry.
    options.local_dir = Path(value) if value else None


def _apply_token(value: str, options: ClientOptions) -> None:
    options.token = _check_token(value)


def _apply_token_file(value: str, options: ClientOptions) -> None:
    options.load_token_file(value)


def _apply_tls(value: str, options: ClientOptions) -> None:
    if value not in ("on", "off"):
        raise InvalidArgument(f"`{value}` is not on or off")
    options.tls = value == "on"


def _apply_tls_file(attribute: str) -> Callable[[str, ClientOptions], None]:
    def apply(value: str, options: ClientOptions) -> None:
        setattr(options, attribute, Path(_check_file_name(value)))

    return apply


def _apply_tls_server_name(value: str, options: ClientOptions) -> None:
    options.tls_server_name = _check_server_name(value)


# One row per [client] key (libnetsem's, in its order); `fallback.<name>` is handled apart.
_CLIENT_OPTIONS: dict[str, Callable[[str, ClientOptions], None]] = {
    "servers": _apply_servers,
    "fallback": _apply_fallback,
    "connect_timeout_ms": _apply_ms("connect_timeout", _HOUR_MS),
    "reconnect_min_ms": _apply_ms("reconnect_min", _HOUR_MS),
    "reconnect_max_ms": _apply_ms("reconnect_max", _HOUR_MS),
    "request_timeout_ms": _apply_ms("request_timeout", 24 * _HOUR_MS),
    "label": _apply_label,
    "local_dir": _apply_local_dir,
    "token": _apply_token,
    "token_file": _apply_token_file,
    "tls": _apply_tls,
    "tls_ca": _apply_tls_file("tls_ca"),
    "tls_cert": _apply_tls_file("tls_cert"),
    "tls_key": _apply_tls_file("tls_key"),
    "tls_server_name": _apply_tls_server_name,
}


def _parse_client_section(ini: _Ini, section: _Section, options: ClientOptions) -> None:
    overrides: dict[str, _Entry] = {}  # decoded name -> its line, to catch two spellings
    reconnect_line: _Entry | None = None
    for entry in section.entries:
        if not entry.has_value:
            raise InvalidArgument(
                f"{ini.location(entry.line)}: `{entry.key}` has no value (expected `key = value`)"
            )
        if entry.key.startswith("fallback."):
            try:
                name = _decode_config_name(entry.key[len("fallback.") :])
                policy = FallbackPolicy.parse(entry.value)
            except InvalidArgument as error:
                raise _entry_error(ini, entry, error) from None
            if name in overrides:
                raise InvalidArgument(
                    f"{ini.location(entry.line)}: the fallback of `{name}` is set twice "
                    f"(first at line {overrides[name].line})"
                )
            overrides[name] = entry
            options.fallback_for[name] = policy
            continue
        apply = _CLIENT_OPTIONS.get(entry.key)
        if apply is None:
            known = ", ".join(_CLIENT_OPTIONS) + ", fallback.<name>"
            raise InvalidArgument(
                f"{ini.location(entry.line)}: unknown option `{entry.key}` in [client] (known: {known}; "
                "names are case-sensitive)"
            )
        try:
            apply(entry.value, options)
        except NetsemError as error:  # a token file's Denied or IoError too, as libnetsem's entry_error
            raise _entry_error(ini, entry, error) from None
        if entry.key.startswith("reconnect_"):
            reconnect_line = entry
    if reconnect_line is not None and options.reconnect_min > options.reconnect_max:
        raise InvalidArgument(
            f"{ini.location(reconnect_line.line)}: reconnect_min_ms ({round(options.reconnect_min * 1000)}) is "
            f"above reconnect_max_ms ({round(options.reconnect_max * 1000)})"
        )
    _check_tls_pair(options, f"{ini.location(section.line)}: [client]: ")


def _parse_semaphores_section(ini: _Ini, section: _Section, options: ClientOptions) -> None:
    seen: dict[str, _Entry] = {}
    for entry in section.entries:
        if not entry.has_value:
            raise InvalidArgument(
                f"{ini.location(entry.line)}: `{entry.key}` has no limit (expected `name = limit`)"
            )
        try:
            name = _decode_config_name(entry.key)
        except InvalidArgument as error:
            raise InvalidArgument(f"{ini.location(entry.line)}: {error}") from None
        try:
            limit = _ini_integer(entry.value, 1, _MAX_LIMIT)
        except InvalidArgument as error:
            raise _entry_error(ini, entry, error) from None
        if name in seen:
            first = seen[name]
            raise InvalidArgument(
                f"{ini.location(entry.line)}: semaphore `{name}` is defined twice "
                f"(first at line {first.line} as `{first.key}`)"
            )
        seen[name] = entry
        options.limits[name] = limit


def _server_named_by_file(ini: _Ini) -> str:
    """The server a file names without [client] servers: netsemd's own
    listening address from [server] (its loopback when it listens on every
    interface), else the remote_address and remote_port ACE's clients read.
    Empty when the file names none, or when its port is 0."""

    def value(section: _Section, key: str) -> _Entry | None:
        entry = section.find(key)
        return entry if entry is not None and entry.has_value else None

    host = "127.0.0.1"
    server_section = ini.find("server")
    ace = ini.find(_ACE_SECTION)
    if server_section is not None:
        address_entry = value(server_section, "bind_address")
        port_entry = value(server_section, "bind_port")
        if address_entry is not None:
            address = _trim(address_entry.value)
            host = "127.0.0.1" if address == "0.0.0.0" else "::1" if address == "::" else address
    elif ace is not None:
        address_entry = value(ace, "remote_address")
        port_entry = value(ace, "remote_port")
        if address_entry is None or port_entry is None:
            return ""
        host = _trim(address_entry.value)
    else:
        return ""
    port = DEFAULT_PORT
    if port_entry is not None:
        try:
            port = _ini_integer(port_entry.value, 0, 65535)
        except InvalidArgument as error:
            raise _entry_error(ini, port_entry, error) from None
    if port == 0:
        return ""
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        _check_server_address(server)
    except InvalidArgument as error:
        if address_entry is not None:
            raise _entry_error(ini, address_entry, error) from None
        raise
    return server

