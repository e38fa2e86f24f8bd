"""Key files made by `cunxiang keygen` and the loaders the service and centre use."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.cli.centre import keygen
from gateway.downlink.envelope import open_envelope, seal
from gateway.downlink.keys import decode_public_key, generate_keypair, load_private_key


def test_generate_keypair_files_modes_and_line(tmp_path: Path) -> None:
    key_path, pub_path, line = generate_keypair("linqing-ema-2026", tmp_path / "keys")
    assert key_path == tmp_path / "keys" / "linqing-ema-2026.key"
    assert pub_path == tmp_path / "keys" / "linqing-ema-2026.pub"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    public_b64 = pub_path.read_text().strip()
    assert len(base64.b64decode(public_b64)) == 32
    assert line == f'"linqing-ema-2026" = "{public_b64}"'


def test_generated_keys_sign_and_verify(tmp_path: Path) -> None:
    key_path, pub_path, _ = generate_keypair("centre", tmp_path)
    private_key = load_private_key(key_path)
    trusted = {"centre": decode_public_key(pub_path.read_text())}
    assert open_envelope(seal(b"hi", "alert", "centre", private_key), trusted, 100).payload == b"hi"


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    generate_keypair("centre", tmp_path)
    before = (tmp_path / "centre.key").read_bytes()
    with pytest.raises(FileExistsError):
        generate_keypair("centre", tmp_path)
    assert (tmp_path / "centre.key").read_bytes() == before


@pytest.mark.parametrize("name", ["../escape", "", "a/b", "-dash", "名字", "x" * 129])
def test_key_names_are_checked(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        generate_keypair(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_keygen_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(keygen, ["--name", "county", "--out", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    public_b64 = (tmp_path / "k" / "county.pub").read_text().strip()
    assert f'"county" = "{public_b64}"' in result.output.splitlines()
    assert stat.S_IMODE((tmp_path / "k" / "county.key").stat().st_mode) == 0o600


def test_keygen_command_reports_a_clash(tmp_path: Path) -> None:
    CliRunner().invoke(keygen, ["--name", "county", "--out", str(tmp_path)])
    result = CliRunner().invoke(keygen, ["--name", "county", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "not overwriting" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"x" * 31).decode(), "31 bytes"),
        (base64.b64encode(b"x" * 33).decode(), "33 bytes"),
        ("", "0 bytes"),
    ],
)
def test_decode_public_key_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_public_key(text)


def test_decode_public_key_accepts_surrounding_whitespace() -> None:
    raw = bytes(range(32))
    assert decode_public_key(" " + base64.b64encode(raw).decode() + "\n") == raw


def test_load_private_key_rejects_other_keys(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "ec.key").write_bytes(other)
    (tmp_path / "junk.key").write_text("hello")
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        load_private_key(tmp_path / "ec.key")
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        load_private_key(tmp_path / "junk.key")
