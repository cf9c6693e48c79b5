"""What the TLS and token tests share (test_tls_auth.py, test_aio_tls_auth.py),
as the C++ tests/tls/tls_support.h and tests/auth do it: ``Pki`` makes, at
test time with the ``openssl`` command, a CA, another CA, a server
certificate for localhost and 127.0.0.1, a client certificate, expired ones,
and a stranger's; ``hash_token`` asks ``netsemd --hash-token`` for the hash
to put in a tokens file; ``tls_port`` reads the TLS port netsemd chose from
its log line ``TLS on 127.0.0.1:PORT``; ``secure_server`` starts the real
netsemd with TLS (client certificates required) and a tokens file.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import NETSEMD

_TLS_LINE = re.compile(r"TLS on 127\.0\.0\.[0-9]+:(\d+)")

# The tokens of secure_server's tokens file: (token, rights and prefixes).
TOKENS = {
    "worker": ("work-token", "acquire jobs/"),
    "reader": ("read-token", "acquire,read"),
    "boss": ("admin-token", "admin"),
}


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


class Pki:
    """EC P-256 keys and certificates in ``directory`` (fast to make)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = self._make_ca("ca", "/CN=netsem test CA")
        self.other_ca = self._make_ca("other-ca", "/CN=someone else's CA")
        self.server_cert, self.server_key = self.issue("server", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", 2)
        self.expired_server_cert, self.expired_server_key = self.issue(
            "server-expired", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", -1)
        self.client_cert, self.client_key = self.issue("client", "/O=Acme/CN=worker-1", "", 2)
        self.expired_client_cert, self.expired_client_key = self.issue("client-expired", "/CN=worker-2", "", -1)
        self.stranger_cert, self.stranger_key = self.issue("stranger", "/CN=stranger", "", 2, "other-ca")

    def issue(self, name: str, subject: str, san: str, days: int, signer: str = "ca") -> tuple[Path, Path]:
        """A new key and certificate for ``subject``, valid ``days`` (negative:
        expired that many days ago), signed by ``signer``; (cert, key)."""
        base = self.dir / name
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{base}.key",
                 "-out", f"{base}.csr", "-subj", subject)
        args = ["x509", "-req", "-in", f"{base}.csr", "-CA", str(self.dir / f"{signer}.pem"), "-CAkey",
                str(self.dir / f"{signer}.key"), "-CAcreateserial", "-out", f"{base}.pem", "-days", str(days)]
        if san:
            (self.dir / f"{name}.ext").write_text(f"subjectAltName={san}\n")
            args += ["-extfile", str(self.dir / f"{name}.ext")]
        _openssl(*args)
        return Path(f"{base}.pem"), Path(f"{base}.key")

    def _make_ca(self, name: str, subject: str) -> Path:
        base = self.dir / name
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                 f"{base}.key", "-out", f"{base}.pem", "-days", "3", "-subj", subject)
        return Path(f"{base}.pem")

    def server_options(self, expired: bool = False, client_ca: bool = True) -> str:
        """The [server] lines of a TLS server with this Pki's server certificate."""
        cert, key = (self.expired_server_cert, self.expired_server_key) if expired else (
            self.server_cert, self.server_key)
        text = f"tls_port = 0\ntls_cert = {cert}\ntls_key = {key}\n"
        return text + (f"tls_client_ca = {self.ca}\n" if client_ca else "")

    def client_options(self) -> dict[str, Any]:
        """The Client keywords of a client with this Pki's CA and client certificate."""
        return {"tls": True, "tls_ca": self.ca, "tls_cert": self.client_cert, "tls_key": self.client_key}


def hash_token(token: str) -> str:
    result = subprocess.run([str(NETSEMD), "--hash-token"], input=token + "\n", capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def write_tokens_file(directory: Path) -> Path:
    """A tokens file (mode 600) with TOKENS."""
    path = directory / "tokens.ini"
    lines = [f"{name} = {hash_token(token)} {rights}" for name, (token, rights) in TOKENS.items()]
    path.write_text("[tokens]\n" + "\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def tls_port(server: Any, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _TLS_LINE.search(server.log())
        if match:
            return int(match.group(1))
        time.sleep(0.01)
    raise AssertionError(f"netsemd logged no TLS port: {server.log()}")


REFUSALS: dict[str, tuple[dict[str, Any], bool, str]] = {
    # case: (client keywords over pki.client_options(), expired server certificate, words of the refusal)
    "wrong CA": ({"tls_ca": "other_ca"}, False, "the server's certificate: "),
    "expired server certificate": ({}, True, "certificate has expired"),
    "wrong server name": ({"tls_server_name": "elsewhere.example"}, False, "Hostname mismatch"),
    "missing client certificate": ({"tls_cert": None, "tls_key": None}, False, "certificate"),
    "a stranger's client certificate": ({"tls_cert": "stranger_cert", "tls_key": "stranger_key"}, False, "alert"),
    "expired client certificate": ({"tls_cert": "expired_client_cert", "tls_key": "expired_client_key"}, False,
                                   "alert"),
}


def security_for(pki: Pki, overrides: dict[str, Any]) -> dict[str, Any]:
    security = pki.client_options()
    for key, value in overrides.items():
        security[key] = getattr(pki, value) if key != "tls_server_name" and isinstance(value, str) else value
    return {key: value for key, value in security.items() if value is not None}
