"""Certificates for TLS tests, made with the openssl command line (docs/testing.md recipe).

Why this module exists: a station talks to the centre's broker over TLS with a client
certificate, so tests need a CA, a broker certificate that names ``localhost`` and
``127.0.0.1``, and client certificates — one the broker trusts and one it must refuse.
Everything is made fresh in a temp folder (about 0.1 s per certificate with EC keys).

    pki = make_pki(tmp_path)                      # CA, broker and one client certificate
    rogue = make_pki(tmp_path / "rogue").client   # signed by a CA the broker does not trust
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "30"
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """A CA with one broker and one client certificate signed by it."""

    ca: KeyPair
    server: KeyPair
    client: KeyPair


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, name: str = "test-ca") -> KeyPair:
    """A self-signed CA certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    _openssl(
        "req", "-x509", *_KEY, "-keyout", str(pair.key), "-out", str(pair.cert),
        "-days", DAYS, "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def make_cert(folder: Path, name: str, ca: KeyPair, *, server: bool) -> KeyPair:
    """A certificate signed by `ca`: a broker's (naming localhost and 127.0.0.1) or a client's."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    csr = folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    lines = ["basicConstraints=CA:FALSE", f"extendedKeyUsage={usage}"]
    if server:
        lines.append("subjectAltName=DNS:localhost,IP:127.0.0.1")
    extensions.write_text("\n".join(lines) + "\n")
    subject = "/CN=localhost" if server else f"/CN={name}"
    _openssl("req", *_KEY, "-keyout", str(pair.key), "-out", str(csr), "-subj", subject)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-out", str(pair.cert), "-days", DAYS, "-extfile", str(extensions),
    )  # fmt: skip
    return pair


def make_pki(folder: Path, client_name: str = "cx-station") -> Pki:
    """A CA, a broker certificate and a client certificate, all in `folder`."""
    ca = make_ca(folder)
    return Pki(
        ca=ca,
        server=make_cert(folder, "broker", ca, server=True),
        client=make_cert(folder, client_name, ca, server=False),
    )
