"""The real CAP vectors (tests/data/cap), localised so that a test station plays them.

Why this module exists: the USGS, NWS and Environment Canada messages are years old and name no
Chinese area. As tests/data/cap/README.md says, a test that wants a station to play one adds a
GB/T 2260 geocode for the station's area to every `<area>`, moves `sent` to now and `expires`
into the future, and gives it a fresh identifier (a station never plays an id twice). The bytes
are edited in place, so the declared encoding, the comments and everything else the parser meets
stay as published.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from harness.station import ROOT

CAP_DIR = ROOT / "tests" / "data" / "cap"
#: The real messages (the hostile and synthetic ones are left out).
REAL_VECTORS = ("earthquake.cap", "earthquake-iso8859-1.cap", "weather.cap", "canada.cap")


def localised(name: str, area: str, *, lifetime_s: float = 3600) -> bytes:
    """Vector ``name`` for a station in ``area``: sent now, unexpired, with a fresh id."""
    raw = (CAP_DIR / name).read_bytes()
    now = datetime.now(UTC).replace(microsecond=0)
    sent = now.isoformat().encode()
    expires = (now + timedelta(seconds=lifetime_s)).isoformat().encode()
    suffix = f"-{time.monotonic_ns()}".encode()
    raw = re.sub(rb"(<identifier>)([^<]*)(</identifier>)", rb"\g<1>\g<2>" + suffix + rb"\3", raw)
    raw = re.sub(rb"<sent>[^<]*</sent>", b"<sent>" + sent + b"</sent>", raw)
    raw = re.sub(rb"<expires>[^<]*</expires>", b"<expires>" + expires + b"</expires>", raw)
    geocode = b"<geocode><valueName>GB/T 2260</valueName><value>" + area.encode()
    return raw.replace(b"</area>", geocode + b"</value></geocode></area>")


def identifier(raw: bytes) -> str:
    """The `<identifier>` of a CAP message."""
    found = re.search(rb"<identifier>([^<]*)</identifier>", raw)
    assert found is not None
    return found.group(1).decode()
