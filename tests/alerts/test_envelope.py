"""Signed envelopes (docs/protocol.md §6): what verifies, and the reason for everything that does not."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.downlink.envelope import Envelope, EnvelopeError, max_raw_size, open_envelope, seal
from tests.alerts.samples import KEY_NAME, alert_json

MAX = 4 * 1024 * 1024


def fields_of(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(raw)
    return obj


def raw_of(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode("utf-8")


def reason(raw: bytes, trusted: dict[str, bytes], max_payload: int = MAX) -> str:
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(raw, trusted, max_payload)
    return caught.value.reason


def test_valid_envelope_opens_to_the_exact_payload(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    payload = alert_json()
    envelope = open_envelope(seal(payload, "alert", KEY_NAME, private_key), trusted, MAX)
    assert envelope == Envelope(key=KEY_NAME, type="alert", payload=payload)


@pytest.mark.parametrize("type_", ["alert", "cap", "command"])
def test_every_envelope_type_opens(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes], type_: str
) -> None:
    assert open_envelope(seal(b"x", type_, KEY_NAME, private_key), trusted, MAX).type == type_


def test_explicit_ed25519_alg_is_accepted(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    fields = fields_of(seal(b"payload", "alert", KEY_NAME, private_key))
    fields["alg"] = "ed25519"
    assert open_envelope(raw_of(fields), trusted, MAX).payload == b"payload"


def test_forged_signature_from_another_key_with_the_trusted_name(
    trusted: dict[str, bytes],
) -> None:
    forger = Ed25519PrivateKey.generate()
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(seal(alert_json(), "alert", KEY_NAME, forger), trusted, MAX)
    assert (caught.value.reason, caught.value.key) == ("bad_signature", KEY_NAME)


def test_payload_changed_after_signing_fails(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    fields = fields_of(seal(alert_json(), "alert", KEY_NAME, private_key))
    fields["payload"] = base64.b64encode(alert_json(level="blue")).decode()
    assert reason(raw_of(fields), trusted) == "bad_signature"


def test_signature_of_wrong_length_is_bad_signature(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    fields = fields_of(seal(b"p", "alert", KEY_NAME, private_key))
    fields["sig"] = base64.b64encode(b"\0" * 63).decode()
    assert reason(raw_of(fields), trusted) == "bad_signature"


def test_signature_swapped_between_payloads_fails(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    """The signature covers the payload, so a payload signed as one thing stays that thing."""
    signed = fields_of(seal(b"cmd", "command", KEY_NAME, private_key))
    other = fields_of(seal(b"alert", "alert", KEY_NAME, private_key))
    other["sig"] = signed["sig"]
    assert reason(raw_of(other), trusted) == "bad_signature"


@pytest.mark.parametrize(
    ("signed_as", "relabelled"),
    [("command", "alert"), ("alert", "cap"), ("alert", "command"), ("programme", "alert")],
)
def test_a_payload_relabelled_as_another_type_fails(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes], signed_as: str, relabelled: str
) -> None:
    """Revision 2 (§6): the type is signed too; the same bytes under another type do not verify."""
    fields = fields_of(seal(b'{"id": "x"}', signed_as, KEY_NAME, private_key))
    assert open_envelope(raw_of(fields), trusted, 100).type == signed_as
    fields["type"] = relabelled
    assert reason(raw_of(fields), trusted) == "bad_signature"


def test_the_signed_bytes_are_cx1_type_payload(private_key: Ed25519PrivateKey) -> None:
    fields = fields_of(seal(b"PAYLOAD", "alert", KEY_NAME, private_key))
    private_key.public_key().verify(base64.b64decode(fields["sig"]), b"cx1:alert:PAYLOAD")


def test_unknown_key(private_key: Ed25519PrivateKey, trusted: dict[str, bytes]) -> None:
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(seal(b"p", "alert", "someone-else", private_key), trusted, MAX)
    assert (caught.value.reason, caught.value.key) == ("unknown_key", "someone-else")


@pytest.mark.parametrize("alg", ["sm2-sm3", "ED25519", "rsa-sha256", ""])
def test_unsupported_alg_is_bad_envelope(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes], alg: str
) -> None:
    fields = fields_of(seal(b"p", "alert", KEY_NAME, private_key))
    fields["alg"] = alg
    assert reason(raw_of(fields), trusted) == "bad_envelope"


@pytest.mark.parametrize("field", ["payload", "sig"])
@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s[:-3],  # truncated
        lambda s: s.rstrip("="),  # padding dropped
        lambda s: s[:4] + "!" + s[5:],  # not a base64 character
        lambda s: s[:4] + "\n" + s[4:],  # line break inside
        lambda s: s.replace("+", "-").replace("/", "_") + "-_",  # URL-safe alphabet
    ],
    ids=["truncated", "unpadded", "bad-char", "newline", "urlsafe"],
)
def test_bad_base64_is_bad_envelope(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes], field: str, damage: Any
) -> None:
    fields = fields_of(seal(b"a payload of some length!", "alert", KEY_NAME, private_key))
    fields[field] = damage(fields[field])
    assert reason(raw_of(fields), trusted) == "bad_envelope"


def test_non_canonical_base64_is_bad_envelope(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    fields = fields_of(seal(b"ab", "alert", KEY_NAME, private_key))
    assert fields["payload"] == "YWI="
    fields["payload"] = "YWJ="  # same bytes once decoded, other unused bits
    assert reason(raw_of(fields), trusted) == "bad_envelope"


@pytest.mark.parametrize("missing", ["key", "type", "payload", "sig"])
def test_missing_field(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes], missing: str
) -> None:
    fields = fields_of(seal(b"p", "alert", KEY_NAME, private_key))
    del fields[missing]
    assert reason(raw_of(fields), trusted) == "bad_envelope"


@pytest.mark.parametrize(
    "junk",
    [
        lambda raw: raw + b"garbage",
        lambda raw: raw + b"{}",
        lambda raw: raw[:-1] + b', "extra": "x"}',
        lambda raw: raw[:-1] + b', "key": "again"}',
        lambda raw: b"\xef\xbb\xbf" + raw,
        lambda raw: raw.replace(b'"alert"', b'"\\u0000alert"'),
    ],
    ids=["trailing-text", "second-object", "extra-field", "duplicate-field", "bom", "nul-type"],
)
def test_extra_junk_is_bad_envelope(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes], junk: Any
) -> None:
    assert reason(junk(seal(b"p", "alert", KEY_NAME, private_key)), trusted) == "bad_envelope"


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b"null", b'"a string"', b"\xff\xfe{}", b"{" * 100_000],
    ids=["empty", "text", "array", "null", "string", "not-utf8", "deep"],
)
def test_not_an_envelope(trusted: dict[str, bytes], raw: bytes) -> None:
    assert reason(raw, trusted) == "bad_envelope"


@pytest.mark.parametrize("field", ["key", "type", "payload", "sig"])
def test_non_string_field_is_bad_envelope(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes], field: str
) -> None:
    fields = fields_of(seal(b"p", "alert", KEY_NAME, private_key))
    fields[field] = 7
    assert reason(raw_of(fields), trusted) == "bad_envelope"


@pytest.mark.parametrize("type_", ["Alert", "xml", "", "commands"])
def test_unknown_type_is_bad_envelope(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes], type_: str
) -> None:
    fields = fields_of(seal(b"p", "alert", KEY_NAME, private_key))
    fields["type"] = type_
    assert reason(raw_of(fields), trusted) == "bad_envelope"


def test_oversize_raw_message_is_too_large_without_being_decoded(
    trusted: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not even valid JSON: the size check comes first, and json is never called."""
    max_payload = 1000

    def no_decoding(*_: Any, **__: Any) -> None:
        raise AssertionError("an oversize message was decoded")

    monkeypatch.setattr("gateway.downlink.envelope.json.loads", no_decoding)
    raw = b"x" * (max_raw_size(max_payload) + 1)
    assert reason(raw, trusted, max_payload) == "too_large"


def test_raw_limit_fits_a_maximal_signed_payload(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    max_payload = 3000
    raw = seal(b"p" * max_payload, "alert", KEY_NAME, private_key)
    assert len(raw) <= max_raw_size(max_payload)
    assert open_envelope(raw, trusted, max_payload).payload == b"p" * max_payload


def test_decoded_payload_over_the_limit_is_too_large(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    raw = seal(b"p" * 1001, "alert", KEY_NAME, private_key)
    assert len(raw) < max_raw_size(1000)
    assert reason(raw, trusted, 1000) == "too_large"


def test_seal_refuses_unknown_types(private_key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="envelope type"):
        seal(b"p", "xml", KEY_NAME, private_key)


def test_bad_envelope_names_the_key_when_it_could_be_read(
    private_key: Ed25519PrivateKey, trusted: dict[str, bytes]
) -> None:
    fields = fields_of(seal(b"p", "alert", KEY_NAME, private_key))
    fields["sig"] = "***"
    fields["extra"] = "x"
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(raw_of(fields), trusted, MAX)
    assert (caught.value.reason, caught.value.key) == ("bad_envelope", KEY_NAME)
    del fields["extra"]
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(raw_of(fields), trusted, MAX)
    assert (caught.value.reason, caught.value.key) == ("bad_envelope", KEY_NAME)
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(b"[]", trusted, MAX)
    assert caught.value.key is None
