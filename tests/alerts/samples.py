"""Sample alerts, keys and audio for the alert tests (docs/protocol.md §6.1 example)."""

from __future__ import annotations

import io
import json
import math
import struct
import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = Path(__file__).resolve().parents[2]
CAP_DIR = REPO / "tests" / "data" / "cap"
SHARED_CAP_DIR = REPO / ".." / "shared" / "testdata" / "cap"
KEY_NAME = "linqing-ema-2026"
STATION_AREA = "371581001201"
CST = timezone(timedelta(hours=8))


def raw_public(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key, as stations hold it."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def make_wav(frames: int = 800, rate: int = 16_000, channels: int = 1) -> bytes:
    """A short 440 Hz tone as a 16-bit PCM WAV file."""
    samples = b"".join(
        struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / rate))) * channels
        for i in range(frames)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples)
    return buffer.getvalue()


def alert_fields(**changes: Any) -> dict[str, Any]:
    """The docs/protocol.md §6.1 example alert, valid now, with `changes` applied."""
    now = datetime.now(CST).replace(microsecond=0)
    fields: dict[str, Any] = {
        "id": "371581-20260701-0007",
        "sender": "临清市应急管理局",
        "sent": now.isoformat(),
        "expires": (now + timedelta(hours=12)).isoformat(),
        "msg_type": "alert",
        "status": "actual",
        "references": [],
        "level": "red",
        "event": "flood",
        "areas": ["371581001"],
        "text": "紧急通知：卫运河水位超过警戒线，请沿河群众立即向高处转移。",
        "clip": None,
        "audio": None,
        "tone": "siren",
        "repeat": 3,
    }
    fields.update(changes)
    return fields


def alert_json(**changes: Any) -> bytes:
    return json.dumps(alert_fields(**changes), ensure_ascii=False).encode("utf-8")
