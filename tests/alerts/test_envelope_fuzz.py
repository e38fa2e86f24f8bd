"""Random and mutated envelopes (hypothesis): never anything but EnvelopeError, never a forgery."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.downlink.envelope import EnvelopeError, open_envelope, seal
from tests.alerts.samples import KEY_NAME, alert_json, raw_public

MAX = 64 * 1024
SIGNER = Ed25519PrivateKey.generate()
TRUSTED = {KEY_NAME: raw_public(SIGNER), "other": raw_public(Ed25519PrivateKey.generate())}
VALID_PAYLOAD = alert_json()
VALID = seal(VALID_PAYLOAD, "alert", KEY_NAME, SIGNER)
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

b64_text = st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())
field_value = st.one_of(
    b64_text,
    st.text(max_size=50),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
)
envelope_dicts = st.fixed_dictionaries(
    {},
    optional={
        "key": st.one_of(st.sampled_from([KEY_NAME, "other"]), field_value),
        "type": st.one_of(st.sampled_from(["alert", "cap", "command"]), field_value),
        "payload": field_value,
        "sig": field_value,
        "alg": st.one_of(st.just("ed25519"), field_value),
        "extra": field_value,
    },
)


def must_reject(raw: bytes) -> None:
    try:
        opened = open_envelope(raw, TRUSTED, MAX)
    except EnvelopeError as exc:
        assert exc.reason in {"bad_envelope", "too_large", "unknown_key", "bad_signature"}
        return
    raise AssertionError(f"random envelope verified: {opened!r}")


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_never_verify(raw: bytes) -> None:
    must_reject(raw)


@FUZZ
@given(envelope_dicts)
def test_random_envelope_objects_never_verify(fields: dict[str, Any]) -> None:
    must_reject(json.dumps(fields).encode())


@FUZZ
@given(
    position=st.integers(min_value=0, max_value=len(VALID) - 1),
    operation=st.sampled_from(["flip", "delete", "insert", "replace"]),
    length=st.integers(min_value=1, max_value=8),
    data=st.binary(min_size=1, max_size=8),
)
def test_mutations_of_a_valid_envelope_never_forge(
    position: int, operation: str, length: int, data: bytes
) -> None:
    """A mutation either fails as an envelope or leaves the signed content untouched.

    (Changing only insignificant JSON whitespace keeps the same signed payload;
    anything that reaches the payload must fail.)
    """
    raw = bytearray(VALID)
    if operation == "flip":
        raw[position] ^= 1 << (length % 8)
    elif operation == "delete":
        del raw[position : position + length]
    elif operation == "insert":
        raw[position:position] = data
    else:
        raw[position : position + len(data)] = data
    try:
        opened = open_envelope(bytes(raw), TRUSTED, MAX)
    except EnvelopeError:
        return
    assert (opened.key, opened.type, opened.payload) == (KEY_NAME, "alert", VALID_PAYLOAD)
