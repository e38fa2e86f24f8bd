"""Signed downlink envelopes (docs/protocol.md §6): the only door a downlink message has.

A downlink MQTT payload is a small JSON object carrying a base64 payload and an
Ed25519 signature over ``b"cx1:" + type + b":" + payload`` (revision 2: the
type is signed too, so a payload signed as a command never verifies as an
alert). `open_envelope` checks, in this order, and stops at the first failure:

1. the raw size, before any decoding: a message larger than a maximal payload
   could ever be once base64-encoded and wrapped is ``too_large`` unread;
2. strict UTF-8 JSON, an object with exactly ``key``, ``type``, ``payload``,
   ``sig`` and optionally ``alg`` (no duplicates, no extra fields), strings all,
   canonical base64 (``bad_envelope``);
3. the decoded payload size (``too_large``);
4. the key name is in the trust list (``unknown_key``);
5. the signature verifies over the type and the payload bytes (``bad_signature``).

Nothing looks at the payload before step 5 has passed. `seal` is the centre's
side of the same format, used by the centre tool and by the tests.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

EnvelopeType = Literal["alert", "cap", "command", "programme"]
ENVELOPE_TYPES: frozenset[str] = frozenset({"alert", "cap", "command", "programme"})
#: The signed message starts with this, then the type, then ":" (docs/protocol.md §6).
SIGNATURE_CONTEXT = b"cx1:"
SUPPORTED_ALGS: frozenset[str] = frozenset({"ed25519"})
REQUIRED_FIELDS: frozenset[str] = frozenset({"key", "type", "payload", "sig"})
OPTIONAL_FIELDS: frozenset[str] = frozenset({"alg"})

# Room for everything in an envelope besides the base64 payload: the field
# names, the key name, the type, the 88-character signature and some
# whitespace. A key name longer than this would not fit either.
ENVELOPE_OVERHEAD_BYTES = 4096

EnvelopeReason = Literal["bad_envelope", "too_large", "unknown_key", "bad_signature"]


class EnvelopeError(Exception):
    """A downlink message failed as an envelope; it must not be parsed further."""

    def __init__(self, reason: EnvelopeReason, detail: str, key: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: EnvelopeReason = reason
        self.detail = detail
        self.key = key


@dataclass(frozen=True)
class Envelope:
    """A verified envelope: `payload` is signed by the trusted key `key`."""

    key: str
    type: EnvelopeType
    payload: bytes


def max_raw_size(max_payload_bytes: int) -> int:
    """The largest raw message that could carry a payload of `max_payload_bytes`."""
    return 4 * math.ceil(max_payload_bytes / 3) + ENVELOPE_OVERHEAD_BYTES


class DuplicateKey(ValueError):
    """A JSON object names a key twice: which value counts would be the parser's guess."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A `json.loads` object_pairs_hook: the object, or DuplicateKey (envelopes and payloads)."""
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise DuplicateKey(f"duplicate key {name!r}")
        obj[name] = value
    return obj


def _decode_json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EnvelopeError("bad_envelope", f"not a UTF-8 JSON object ({exc})") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("bad_envelope", "not a JSON object")
    return cast(dict[str, Any], obj)


def _check_fields(obj: dict[str, Any], key_name: str | None) -> dict[str, str]:
    names = set(obj)
    missing = REQUIRED_FIELDS - names
    if missing:
        raise EnvelopeError("bad_envelope", f"missing field(s) {sorted(missing)}", key_name)
    extra = names - REQUIRED_FIELDS - OPTIONAL_FIELDS
    if extra:
        raise EnvelopeError("bad_envelope", f"unexpected field(s) {sorted(extra)}", key_name)
    for name, value in obj.items():
        if not isinstance(value, str):
            raise EnvelopeError("bad_envelope", f"field {name!r} is not a string", key_name)
    return cast(dict[str, str], obj)


def strict_b64decode(text: str) -> bytes:
    """Decode canonical, padded standard base64; anything else raises ValueError."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError(f"bad base64 ({exc})") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return data


def _b64_field(fields: dict[str, str], name: str) -> bytes:
    try:
        return strict_b64decode(fields[name])
    except ValueError as exc:
        raise EnvelopeError("bad_envelope", f"field {name!r}: {exc}", fields["key"]) from None


def signed_bytes(type_: str, payload: bytes) -> bytes:
    """What the signature covers: ``b"cx1:" + type + b":" + payload`` (docs/protocol.md §6)."""
    return SIGNATURE_CONTEXT + type_.encode("ascii") + b":" + payload


def _verify(key_name: str, public_key: bytes, message: bytes, sig: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, message)
    except (InvalidSignature, ValueError):
        raise EnvelopeError("bad_signature", "signature does not verify", key_name) from None


def open_envelope(raw: bytes, trusted: Mapping[str, bytes], max_payload_bytes: int) -> Envelope:
    """Verify a raw downlink message; return its payload or raise EnvelopeError.

    `trusted` maps key names to raw 32-byte Ed25519 public keys.
    """
    if len(raw) > max_raw_size(max_payload_bytes):
        raise EnvelopeError("too_large", f"{len(raw)} bytes, not decoded")
    obj = _decode_json_object(raw)
    readable_key = obj.get("key") if isinstance(obj.get("key"), str) else None
    fields = _check_fields(obj, readable_key)
    key_name = fields["key"]
    type_ = fields["type"]
    if type_ not in ENVELOPE_TYPES:
        raise EnvelopeError("bad_envelope", f"unknown type {type_!r}", key_name)
    alg = fields.get("alg", "ed25519")
    if alg not in SUPPORTED_ALGS:
        raise EnvelopeError("bad_envelope", f"unsupported alg {alg!r}", key_name)
    payload = _b64_field(fields, "payload")
    sig = _b64_field(fields, "sig")
    if len(payload) > max_payload_bytes:
        raise EnvelopeError("too_large", f"payload of {len(payload)} bytes", key_name)
    public_key = trusted.get(key_name)
    if public_key is None:
        raise EnvelopeError("unknown_key", f"key {key_name!r} is not trusted", key_name)
    _verify(key_name, public_key, signed_bytes(type_, payload), sig)
    return Envelope(key=key_name, type=cast(EnvelopeType, type_), payload=payload)


def seal(payload: bytes, type_: str, key_name: str, private_key: Ed25519PrivateKey) -> bytes:
    """Sign `type_` and `payload` and wrap them in an envelope (the centre's side)."""
    if type_ not in ENVELOPE_TYPES:
        raise ValueError(f"envelope type must be one of {sorted(ENVELOPE_TYPES)}, not {type_!r}")
    envelope = {
        "key": key_name,
        "type": type_,
        "payload": base64.b64encode(payload).decode("ascii"),
        "sig": base64.b64encode(private_key.sign(signed_bytes(type_, payload))).decode("ascii"),
    }
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")
