"""Tests of netsem._options: the same files and environment read the same way
as libnetsem reads them.

The cases are libnetsem's (tests/client/client_options_test.cc). Where the
C++ ``netsem`` CLI can show what it read, it is the oracle: for every bad
file its error message must be exactly ours, and for files naming loopback
servers the servers it tries (``netsem status`` with nothing listening says
"no server reachable (<server>: Connection refused; ...)") must be ours.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import NETSEM_CLI

from netsem._options import ClientOptions, FallbackPolicy, client_options
from netsem.errors import Denied, InvalidArgument, IoError


@pytest.mark.parametrize(
    ("text", "mode", "share"),
    [("local", "local", 1), ("fail", "fail", 1), ("share:1", "share", 1), ("share:3", "share", 3),
     ("share:2147483647", "share", 2147483647)],
)
def test_fallback_policy_parses_and_prints_each_form(text: str, mode: str, share: int) -> None:
    policy = FallbackPolicy.parse(text)
    assert (policy.mode, policy.share, str(policy)) == (mode, share, text)


@pytest.mark.parametrize(
    "text",
    ["", "Local", "FAIL", "local ", " fail", "share", "share:", "share:0", "share:-1", "share:+2", "share:x",
     "share:3 ", "share: 3", "shared:2", "share:2147483648", "share:99999999999999999999"],
)
def test_fallback_policy_rejects_anything_else(text: str) -> None:
    with pytest.raises(InvalidArgument, match="fallback policy"):
        FallbackPolicy.parse(text)


@pytest.mark.parametrize(
    ("policy", "limit", "local"),
    [("local", 10, 10), ("fail", 10, 10), ("share:1", 7, 7), ("share:2", 10, 5), ("share:3", 10, 4),
     ("share:3", 9, 3), ("share:10", 10, 1), ("share:4", 1, 1), ("share:1000", 3, 1),
     ("share:2", 2**63 - 1, (2**63 - 1) // 2 + 1)],
)
def test_local_limit_divides_rounding_up(policy: str, limit: int, local: int) -> None:
    assert FallbackPolicy.parse(policy).local_limit(limit) == local


def test_defaults_are_libnetsems() -> None:
    options = ClientOptions()
    assert options.servers == [] and options.label == "" and not options.queue_positions
    assert (options.connect_timeout, options.reconnect_min, options.reconnect_max, options.request_timeout) == (
        1.0, 0.1, 5.0, 10.0)
    assert options.fallback_policy("anything") == FallbackPolicy("local")
    assert options.limit("anything") == 1 and options.limit("$anything") == 1
    assert options.local_dir is None
    assert ClientOptions.DEFAULT_SERVER == "127.0.0.1:53559"


def write(tmp_path: Path, text: str, name: str = "c.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_every_client_key_and_the_limits(tmp_path: Path) -> None:
    options = ClientOptions.from_file(write(tmp_path, (
        "[client]\n"
        "servers = 10.0.0.5:53559, sem.example.com:1, [::1]:53559\n"
        "fallback = share:4\n"
        "fallback.licences = fail\n"
        "fallback.$build = local\n"
        "fallback.a%3Db%20c = share:2\n"
        "connect_timeout_ms = 250\n"
        "reconnect_min_ms = 20\n"
        "reconnect_max_ms = 800\n"
        "request_timeout_ms = 3000\n"
        "label = batch/7\n"
        "local_dir = /run/user/1000/sems\n"
        "\n"
        "[semaphores]\n"
        "search = 10\n"
        "$build = 3\n"
        "host%3A10.0.0.1%20web = 2\n"
        "big = 2147483647\n")))
    assert options.servers == ["10.0.0.5:53559", "sem.example.com:1", "[::1]:53559"]
    assert str(options.fallback) == "share:4"
    assert str(options.fallback_policy("licences")) == "fail"
    assert str(options.fallback_policy("$build")) == "local"
    assert str(options.fallback_policy("a=b c")) == "share:2"
    assert str(options.fallback_policy("search")) == "share:4"
    assert (options.connect_timeout, options.reconnect_min, options.reconnect_max, options.request_timeout) == (
        0.25, 0.02, 0.8, 3.0)
    assert options.label == "batch/7"
    assert options.local_dir == Path("/run/user/1000/sems")
    assert [options.limit(n) for n in ("search", "$build", "host:10.0.0.1 web", "big", "unlisted")] == [
        10, 3, 2, 2147483647, 1]


@pytest.mark.parametrize(
    ("value", "servers"),
    [
        ("127.0.0.1:53559", ["127.0.0.1:53559"]),
        ("a:1,b:65535", ["a:1", "b:65535"]),
        ("localhost:80 ,  [fe80::1]:9", ["localhost:80", "[fe80::1]:9"]),
        ("a:1,\n  b:2", ["a:1", "b:2"]),
        ("a:1\n  b:2", ["a:1", "b:2"]),
        ("my_host-1.lan:7", ["my_host-1.lan:7"]),
        ("a", ["a:53559"]),
        ("[::1]", ["[::1]:53559"]),
        ("a, [::1]:2,b", ["a:53559", "[::1]:2", "b:53559"]),
        *((bad, None) for bad in ["a:0", "a:65536", "a:", "[::1", "::1", ":53559", "a:1,", "a:1,,b:2",
                                  "::1:53559", "[::1]53559", "[::1:53559", "[nothost]:1", "a b:1", "a:1x", "a:+1"]),
    ],
)
def test_server_list_forms(tmp_path: Path, value: str, servers: list[str] | None) -> None:
    path = write(tmp_path, f"[client]\nservers = {value}\n")
    if servers is None:
        with pytest.raises(InvalidArgument, match=re.escape(f"{path}:2: servers:")):
            ClientOptions.from_file(path)
    else:
        assert ClientOptions.from_file(path).servers == servers


def test_the_servers_file_works_as_is(tmp_path: Path) -> None:
    options = ClientOptions.from_file(write(tmp_path, (
        "[server]\nbind_port = 53559\nno_such_server_option = 1\n"
        "[service_network_semaphore]\nbare_key_without_value\n"
        "[semaphores]\npcap = 1\n"
        "[client]\nservers = 10.1.1.1:53559\n")))
    assert options.servers == ["10.1.1.1:53559"]
    assert options.limit("pcap") == 1


@pytest.mark.parametrize(
    ("text", "servers"),
    [
        ("[server]\nbind_address = 0.0.0.0\nbind_port = 47311\n", ["127.0.0.1:47311"]),
        ("[server]\nbind_address = ::\nbind_port = 47311\n", ["[::1]:47311"]),
        ("[server]\nbind_address = 10.2.3.4\n", ["10.2.3.4:53559"]),
        ("[server]\nbind_address = fd00::5\nbind_port = 7\n", ["[fd00::5]:7"]),
        ("[server]\nbind_port = 6000\n", ["127.0.0.1:6000"]),
        ("[server]\nstats_dir = /tmp\n", ["127.0.0.1:53559"]),
        ("[server]\nbind_port = 0\n", []),
        ("[semaphores]\npcap = 2\n", []),
        ("[service_network_semaphore]\nbind_address = 0.0.0.0\nbind_port = 53559\n"
         "remote_address = ace-sem.example\nremote_port = 53560\n", ["ace-sem.example:53560"]),
        ("[service_network_semaphore]\nremote_address = ace-sem.example\n", []),
        ("[server]\nbind_port = 6000\n[client]\nservers = 10.1.1.1:1\n", ["10.1.1.1:1"]),
    ],
)
def test_without_client_servers_the_file_names_its_own_server(
    tmp_path: Path, text: str, servers: list[str]
) -> None:
    assert ClientOptions.from_file(write(tmp_path, text)).servers == servers


# Bad files: each one's message must be the C++ reader's, word for word.
BAD_FILES = [
    ("[client]\nserver = a:1\n", 2, "unknown option `server` in [client]"),
    ("[client]\nServers = a:1\n", 2, "case-sensitive"),
    ("[client]\n\nfallback = maybe\n", 3, "`maybe` is not a fallback policy"),
    ("[client]\nfallback.x = share:0\n", 2, "share:K"),
    ("[client]\nfallback. = fail\n", 2, "not a valid semaphore name"),
    ("[client]\nfallback.$ = fail\n", 2, "not a valid semaphore name"),
    ("[client]\nfallback.a%zz = fail\n", 2, "not a valid semaphore name"),
    ("[client]\nfallback.x = fail\nfallback.%78 = local\n", 3, "set twice (first at line 2)"),
    ("[client]\nconnect_timeout_ms = 0\n", 2, "out of range 1..3600000"),
    ("[client]\nconnect_timeout_ms = 1s\n", 2, "not a whole number"),
    ("[client]\nrequest_timeout_ms = -5\n", 2, "out of range"),
    ("[client]\nreconnect_min_ms = 900\nreconnect_max_ms = 800\n", 3, "above reconnect_max_ms"),
    ("[client]\nlabel = two words\n", 2, "not a label"),
    ("[client]\nfallback\n", 2, "has no value"),
    ("[semaphores]\nsearch = 0\n", 2, "out of range 1..2147483647"),
    ("[semaphores]\nsearch = 2147483648\n", 2, "out of range"),
    ("[semaphores]\nsearch = ten\n", 2, "not a whole number"),
    ("[semaphores]\n$ = 2\n", 2, "not a valid semaphore name"),
    ("[semaphores]\n$$x = 2\n", 2, "not a valid semaphore name"),
    ("[semaphores]\nbad%2 = 2\n", 2, "not a valid semaphore name"),
    ("[semaphores]\n" + "n" * 256 + " = 2\n", 2, "not a valid semaphore name"),
    ("[semaphores]\n$" + "n" * 255 + " = 2\n", 2, "not a valid semaphore name"),
    ("[semaphores]\na = 1\n%61 = 2\n", 3, "defined twice (first at line 2 as `a`)"),
    ("[semaphores]\nsolo\n", 2, "has no limit"),
    ("[Client]\nservers = a:1\n", 1, "case-sensitive: [client]?"),
    ("[client]\nservers = a:1\n[client]\n", 3, "duplicate section"),
    ("[server]\nbind_port = 70000\n", 2, "out of range"),
    ("[server]\nbind_address = bad host\n", 2, "not a host name or address"),
    ("[service_network_semaphore]\nremote_address = x\nremote_port = http\n", 3, "not a whole number"),
    ("key = 1\n", 1, "comes before any [section]"),
    ("[client]\n= 1\n", 2, "expected `key = value` or `[section]`"),
    ("[client] junk\n", 1, "expected `key = value` or `[section]`"),
    ("[]\n", 1, "expected `key = value` or `[section]`"),
    ("[client]\nlabel = a\nlabel = b\n", 3, "duplicate key `label` in [client] (first at line 2)"),
    ("[semaphores]\nsolo\n  more\n", 3, "indented line continues `solo`, which has no value"),
    ("[client]\nservers = 127.0.0.1\n  bad host:1\n", 2, "is not a host name or address"),
    ("[client]\ntoken = two words\n", 2, "the token is not 1 to 256 visible ASCII characters"),
]


def cli_config_error(path: Path) -> str:
    """What the C++ CLI says reading ``path`` (its error, without the prefix)."""
    result = subprocess.run([str(NETSEM_CLI), "-c", str(path), "status"], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "NETSEM_CONFIG": "", "NETSEM_SERVER": ""})
    assert result.returncode == 2, result.stderr
    prefix = "netsem: --config: "
    assert result.stderr.startswith(prefix), result.stderr
    return result.stderr[len(prefix):].rstrip("\n")


@pytest.mark.parametrize(("text", "line", "what"), BAD_FILES)
def test_errors_name_file_and_line_in_libnetsems_words(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidArgument) as raised:
        ClientOptions.from_file(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}:") and what in message, message
    if NETSEM_CLI.exists():
        assert message == cli_config_error(path)


def test_ini_dialect_as_configparser(tmp_path: Path) -> None:
    options = ClientOptions.from_file(write(tmp_path, (
        "\ufeff# a comment\n"
        "; another\n"
        "[client]\n"
        "servers: a:1,\n"
        "    # a comment inside a continued value\n"
        "\n"
        "    b:2\n"
        "local_dir = /x;y # not a comment\n"
        "[other]\n"
        "anything goes = here\n"
        "bare\n"
        "[semaphores]\r\n"
        "  indented = 4\r\n")))
    assert options.servers == ["a:1", "b:2"]
    assert options.local_dir == Path("/x;y # not a comment")  # no inline comments
    assert options.limit("indented") == 4


def test_longest_local_name_is_accepted(tmp_path: Path) -> None:
    name = "$" + "n" * 254
    assert ClientOptions.from_file(write(tmp_path, f"[semaphores]\n{name} = 4\n")).limit(name) == 4


def test_unreadable_file_is_an_io_error(tmp_path: Path) -> None:
    with pytest.raises(IoError, match="missing.ini: cannot read: No such file or directory"):
        ClientOptions.from_file(tmp_path / "missing.ini")
    with pytest.raises(IoError, match="cannot read: is a directory"):
        ClientOptions.from_file(tmp_path)
    if NETSEM_CLI.exists():
        with pytest.raises(IoError) as raised:
            ClientOptions.from_file(tmp_path / "missing.ini")
        assert str(raised.value) == cli_config_error(tmp_path / "missing.ini")


def cli_servers(config: Path | None, **env: str) -> list[str]:
    """The servers the C++ CLI tries, read from what it says when none answers."""
    environment = {**os.environ, "NETSEM_CONFIG": "", "NETSEM_SERVER": "", "NETSEM_FALLBACK": "fail", **env}
    args = [str(NETSEM_CLI), *(["-c", str(config)] if config else []), "status"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=environment)
    match = re.search(r"no server reachable \((.*)\)", result.stderr)
    assert match, result.stderr
    return [part.split(": ")[0] for part in match.group(1).split("; ")]


@pytest.mark.parametrize(
    "text",
    [
        "[client]\nservers = 127.0.0.1:1, 127.0.0.2:2\n",
        "[client]\nservers = 127.0.0.1:1\n  127.0.0.3:3\n",
        "[server]\nbind_address = 0.0.0.0\nbind_port = 1\n",
        "[server]\nbind_address = 127.0.0.4\nbind_port = 1\n[semaphores]\nx = 3\n",
        "[service_network_semaphore]\nremote_address = 127.0.0.2\nremote_port = 1\nsemaphore_x = 3\nenabled\n",
    ],
)
def test_servers_are_those_the_cli_tries(tmp_path: Path, text: str) -> None:
    if not NETSEM_CLI.exists():
        pytest.skip("no netsem CLI")
    path = write(tmp_path, text)
    assert ClientOptions.from_file(path).servers == cli_servers(path)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("NETSEM_CONFIG", "NETSEM_SERVER", "NETSEM_FALLBACK", "NETSEM_LABEL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_environment_overrides_the_file(tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    assert ClientOptions.from_environment() == ClientOptions()
    path = write(tmp_path, "[client]\nservers = 127.0.0.1:1\nfallback = fail\nlabel = file\n[semaphores]\nx = 3\n")
    clean_environment.setenv("NETSEM_CONFIG", str(path))
    options = ClientOptions.from_environment()
    assert (options.servers, str(options.fallback), options.label, options.limit("x")) == (
        ["127.0.0.1:1"], "fail", "file", 3)
    clean_environment.setenv("NETSEM_SERVER", "127.0.0.2:2,127.0.0.3")
    clean_environment.setenv("NETSEM_FALLBACK", "share:2")
    clean_environment.setenv("NETSEM_LABEL", "env/1")
    options = ClientOptions.from_environment()
    assert (options.servers, str(options.fallback), options.label, options.limit("x")) == (
        ["127.0.0.2:2", "127.0.0.3:53559"], "share:2", "env/1", 3)
    if NETSEM_CLI.exists():
        assert cli_servers(None, NETSEM_CONFIG=str(path), NETSEM_SERVER="127.0.0.2:2,127.0.0.3:4") == [
            "127.0.0.2:2", "127.0.0.3:4"]
    clean_environment.setenv("NETSEM_SERVER", "")  # empty counts as unset
    assert ClientOptions.from_environment().servers == ["127.0.0.1:1"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("NETSEM_SERVER", "a:1,,b:2", "NETSEM_SERVER: `a:1,,b:2` has an empty server address"),
        ("NETSEM_FALLBACK", "sometimes", "NETSEM_FALLBACK: `sometimes` is not a fallback policy"),
        ("NETSEM_LABEL", "two words", "NETSEM_LABEL: `two words` is not a label"),
    ],
)
def test_environment_errors_name_the_variable(
    clean_environment: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    clean_environment.setenv(variable, value)
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        ClientOptions.from_environment()


def test_environment_config_errors_name_the_variable(tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[client]\nfallback = bogus\n")
    clean_environment.setenv("NETSEM_CONFIG", str(path))
    with pytest.raises(InvalidArgument) as raised:
        ClientOptions.from_environment()
    assert str(raised.value) == f"NETSEM_CONFIG: {path}:2: fallback: `bogus` is not a fallback policy " \
        "(local, fail or share:K with K >= 1)"
    if NETSEM_CLI.exists():
        result = subprocess.run([str(NETSEM_CLI), "status"], capture_output=True, text=True, timeout=30,
                                env={**os.environ, "NETSEM_CONFIG": str(path)})
        assert result.stderr.rstrip("\n") == f"netsem: {raised.value}"
    clean_environment.setenv("NETSEM_CONFIG", str(tmp_path / "none.ini"))
    with pytest.raises(IoError, match="^NETSEM_CONFIG: .*none.ini: cannot read"):
        ClientOptions.from_environment()


def test_options_set_in_code_are_checked() -> None:
    ClientOptions(servers=["127.0.0.1"]).check()
    for bad in (ClientOptions(servers=["a:0"]), ClientOptions(connect_timeout=0),
                ClientOptions(reconnect_min=2, reconnect_max=1), ClientOptions(limits={"x": 0})):
        with pytest.raises(InvalidArgument):
            bad.check()
    with pytest.raises(InvalidArgument):
        FallbackPolicy("sometimes")
    with pytest.raises(InvalidArgument):
        FallbackPolicy("share", 0)


def private(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_tls_and_token_keys_are_read_as_libnetsem_reads_them(tmp_path: Path) -> None:
    """[client] is shared with libnetsem: tls = on means TLS here too, and the
    token (or the first line of token_file, blanks dropped) is the one sent."""
    token_file = private(tmp_path, "worker.token", "  s3cret-from-file \nsecond line\n")
    options = ClientOptions.from_file(write(tmp_path, (
        "[client]\ntls = on\ntls_ca = /etc/netsem/ca.pem\ntls_cert = c.pem\ntls_key = c.key\n"
        f"tls_server_name = netsem.example\ntoken_file = {token_file}\n")))
    assert (options.tls, options.tls_ca, options.tls_cert, options.tls_key, options.tls_server_name) == (
        True, Path("/etc/netsem/ca.pem"), Path("c.pem"), Path("c.key"), "netsem.example")
    assert options.token == "s3cret-from-file"
    assert "s3cret" not in repr(options)
    options = ClientOptions.from_file(write(tmp_path, "[client]\ntls = off\ntoken = abc!def\n"))
    assert (options.tls, options.tls_ca, options.token) == (False, None, "abc!def")
    defaults = ClientOptions()
    assert (defaults.tls, defaults.tls_ca, defaults.tls_cert, defaults.tls_key, defaults.tls_server_name,
            defaults.token) == (False, None, None, None, "", "")


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("token_file = {loose}\n", "holds secrets but is readable or writable by group or others (mode 644; "
         "chmod 600 it)"),
        ("token_file = {group}\n", "(mode 620; chmod 600 it)"),
        ("token_file = {empty}\n", "the token is not 1 to 256 visible ASCII characters"),
        ("token_file = {missing}\n", "cannot read: No such file or directory"),
        ("token_file = {dir}\n", "cannot read: not a regular file"),
        ("tls = yes\n", "`yes` is not on or off"),
        ("tls_cert = c.pem\n", "[client]: tls_cert is set without tls_key (a client certificate needs both)"),
        ("tls_key = c.key\n", "[client]: tls_key is set without tls_cert (a client certificate needs both)"),
        ("tls_server_name = two words\n", "`two words` is not a host name or address"),
    ],
)
def test_tls_and_token_errors_are_libnetsems(tmp_path: Path, body: str, what: str) -> None:
    """Compared with the CLI's words: a token file anyone else may read or
    write is refused, as ssh refuses such a key."""
    files = {
        "loose": private(tmp_path, "loose.token", "t\n", 0o644),
        "group": private(tmp_path, "group.token", "t\n", 0o620),
        "empty": private(tmp_path, "empty.token", "\n"),
        "missing": tmp_path / "missing.token",
        "dir": tmp_path,
    }
    path = write(tmp_path, "[client]\n" + body.format(**files))
    with pytest.raises(InvalidArgument) as raised:
        ClientOptions.from_file(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:") and what in message, message
    if NETSEM_CLI.exists():
        assert message == cli_config_error(path)


@pytest.fixture
def clean_tls_environment(clean_environment: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("NETSEM_TOKEN", "NETSEM_TOKEN_FILE", "NETSEM_TLS", "NETSEM_TLS_CA", "NETSEM_TLS_CERT",
                 "NETSEM_TLS_KEY", "NETSEM_TLS_SERVER_NAME"):
        clean_environment.delenv(name, raising=False)
    return clean_environment


def test_the_environment_overrides_tls_and_token_as_libnetsems(
    tmp_path: Path, clean_tls_environment: pytest.MonkeyPatch
) -> None:
    env = clean_tls_environment
    path = write(tmp_path, "[client]\ntls = off\ntls_ca = file-ca.pem\ntoken = from-file\n")
    env.setenv("NETSEM_CONFIG", str(path))
    options = ClientOptions.from_environment()
    assert (options.tls, options.tls_ca, options.token) == (False, Path("file-ca.pem"), "from-file")
    env.setenv("NETSEM_TOKEN_FILE", str(private(tmp_path, "env.token", "from-env-file\n")))
    assert ClientOptions.from_environment().token == "from-env-file"
    env.setenv("NETSEM_TOKEN", "from-env")  # NETSEM_TOKEN after NETSEM_TOKEN_FILE, as libnetsem
    env.setenv("NETSEM_TLS", "on")
    env.setenv("NETSEM_TLS_CA", "env-ca.pem")
    env.setenv("NETSEM_TLS_CERT", "c.pem")
    env.setenv("NETSEM_TLS_KEY", "c.key")
    env.setenv("NETSEM_TLS_SERVER_NAME", "netsem.example")
    options = ClientOptions.from_environment()
    assert (options.token, options.tls, options.tls_ca, options.tls_cert, options.tls_key,
            options.tls_server_name) == ("from-env", True, Path("env-ca.pem"), Path("c.pem"), Path("c.key"),
                                         "netsem.example")


@pytest.mark.parametrize(
    ("variables", "error", "message"),
    [
        ({"NETSEM_TOKEN_FILE": "{loose}"}, Denied,
         "NETSEM_TOKEN_FILE: {loose}: holds secrets but is readable or writable by group or others (mode 644; "
         "chmod 600 it)"),
        ({"NETSEM_TOKEN": "two words"}, InvalidArgument,
         "NETSEM_TOKEN: the token is not 1 to 256 visible ASCII characters (no space)"),
        ({"NETSEM_TLS": "yes"}, InvalidArgument, "NETSEM_TLS: `yes` is not on or off"),
        ({"NETSEM_TLS_KEY": "k.pem"}, InvalidArgument,
         "tls_key is set without tls_cert (a client certificate needs both)"),
    ],
)
def test_tls_and_token_variable_errors_are_libnetsems(
    tmp_path: Path, clean_tls_environment: pytest.MonkeyPatch, variables: dict[str, str], error: type, message: str
) -> None:
    loose = str(private(tmp_path, "loose.token", "t\n", 0o644))
    for name, value in variables.items():
        clean_tls_environment.setenv(name, value.format(loose=loose))
    with pytest.raises(error) as raised:
        ClientOptions.from_environment()
    assert str(raised.value) == message.format(loose=loose)
    if NETSEM_CLI.exists():
        result = subprocess.run([str(NETSEM_CLI), "status"], capture_output=True, text=True, timeout=30,
                                env={**os.environ, "NETSEM_SERVER": "127.0.0.1:1"})
        assert result.stderr.rstrip("\n") == f"netsem: {raised.value}"


def test_client_keywords_override_tls_and_token(tmp_path: Path, clean_tls_environment: pytest.MonkeyPatch) -> None:
    base = ClientOptions(token="from-options")
    token_file = private(tmp_path, "kw.token", "from-keyword-file\n")
    options = client_options(None, None, None, base, tls=True, tls_ca=str(tmp_path / "ca.pem"),
                             tls_server_name="netsem.example", token_file=token_file)
    assert (options.tls, options.tls_ca, options.tls_server_name, options.token) == (
        True, tmp_path / "ca.pem", "netsem.example", "from-keyword-file")
    assert base.token == "from-options" and not base.tls  # copied
    assert client_options(None, None, None, base, token="kw", token_file=token_file).token == "kw"
    with pytest.raises(Denied):
        client_options(None, None, None, base, token_file=private(tmp_path, "loose.token", "t\n", 0o604))
    for bad in ({"tls_cert": "c.pem"}, {"tls_key": "c.key"}, {"token": "two words"}, {"tls": "on"},
                {"tls_server_name": "a b"}, {"tls_ca": ""}):
        with pytest.raises(InvalidArgument):
            client_options(None, None, None, base, **bad)
    with pytest.raises(TypeError):
        client_options(None, None, None, base, tls_password="x")


ACE_LIMITS = (
    "[DEFAULT]\nsemaphore_inherited = 4\nsemaphore_pool = 9\n"
    "[service_network_semaphore]\nremote_address = 127.0.0.1\nremote_port = 53559\n"
    "Semaphore_Pool = 3\nsemaphore_zero = 0\nsemaphore_search = 5\nsemaphore_\nenabled\n"
    "[semaphores]\nsearch = 2\n"
)


def test_an_ace_files_semaphore_limits_are_fallback_limits(tmp_path: Path) -> None:
    """As libnetsem reads them (ConfigFiles.AnAceFilesSemaphoreLimitsAreFallbackLimits)
    and netsemd defines them: folded to lower case, [DEFAULT] overridden by the
    section, below 1 is 1; [semaphores] of the same file wins."""
    options = ClientOptions.from_file(write(tmp_path, ACE_LIMITS))
    assert options.limits == {"pool": 3, "inherited": 4, "zero": 1, "search": 2}
    assert ClientOptions.from_file(write(tmp_path, "[other]\nsemaphore_pool = 3\n", "o.ini")).limits == {}
    path = write(tmp_path, "[service_network_semaphore]\nsemaphore_pool = many\n", "bad.ini")
    with pytest.raises(InvalidArgument) as raised:
        ClientOptions.from_file(path)
    assert str(raised.value) == f"{path}:2: semaphore_pool: `many` is not a whole number"
    if NETSEM_CLI.exists():
        assert str(raised.value) == cli_config_error(path)
