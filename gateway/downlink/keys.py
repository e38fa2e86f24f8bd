"""Ed25519 keys of issuing authorities: making them, loading them, reading them from config.

The centre signs with a private key kept in a PEM PKCS#8 file (mode 0600);
stations trust the raw 32-byte public key, written in base64 in their
`security.trusted_keys` (docs/config.md).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the station only decodes public keys: no cryptography at start (-1 MB RSS)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PUBLIC_KEY_BYTES = 32
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PRIVATE_KEY_MODE = 0o600


def _check_name(name: str) -> None:
    if not KEY_NAME.fullmatch(name):
        raise ValueError(
            f"key name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    """The raw public key of `private_key`, base64, as stations configure it."""
    from cryptography.hazmat.primitives import serialization

    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode("ascii")


def _write_private(path: Path, private_key: Ed25519PrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, PRIVATE_KEY_MODE)


def generate_keypair(name: str, out_dir: Path) -> tuple[Path, Path, str]:
    """Make DIR/NAME.key (PEM PKCS#8, 0600) and DIR/NAME.pub (raw, base64).

    Returns both paths and the `trusted_keys` line `"NAME" = "BASE64"`.
    Refuses to overwrite an existing key (FileExistsError).
    """
    _check_name(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (key_path, pub_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; not overwriting a key")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_key = Ed25519PrivateKey.generate()
    public_b64 = public_key_b64(private_key)
    _write_private(key_path, private_key)
    pub_path.write_text(public_b64 + "\n", encoding="ascii")
    return key_path, pub_path, f'"{name}" = "{public_b64}"'


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a PEM PKCS#8 Ed25519 private key; ValueError if it is anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def decode_public_key(b64: str) -> bytes:
    """The raw 32-byte Ed25519 public key in `b64`, or ValueError saying what is wrong."""
    text = b64.strip()
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError(
            "public key is not base64 (expected the 44-character contents of a NAME.pub "
            "file made by `cunxiang keygen`)"
        ) from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(
            f"public key is {len(raw)} bytes, an Ed25519 public key is {PUBLIC_KEY_BYTES} "
            "(expected the contents of a NAME.pub file made by `cunxiang keygen`)"
        )
    return raw
