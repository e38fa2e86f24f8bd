"""Fixtures for the alert tests: keys, WAV bytes, CAP vectors, a private broker."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.mosquitto import Mosquitto
from tests.alerts.samples import CAP_DIR, KEY_NAME, make_wav, raw_public


@pytest.fixture(scope="session")
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def trusted(private_key: Ed25519PrivateKey) -> dict[str, bytes]:
    return {KEY_NAME: raw_public(private_key)}


@pytest.fixture
def wav_b64() -> str:
    return base64.b64encode(make_wav()).decode("ascii")


@pytest.fixture
def cap_vector() -> Callable[[str], bytes]:
    return lambda name: (CAP_DIR / name).read_bytes()


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as mosquitto:
        yield mosquitto
