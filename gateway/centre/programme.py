"""The centre's side of programme schedules (docs/protocol.md §10): build, sign, publish retained.

`cunxiang programme send` reads a schedule from a JSON file, fills what the operator may
leave out (`sent`: now; `version`: the current Unix time in seconds, so that sending an
edited file again always replaces the copy in force; `areas`: the `--area` given), checks
it with the station's own parser, signs it as a `programme` envelope and publishes it
**retained** at QoS 1, so a station that boots later still gets it. `--withdraw ID`
publishes a newer version with no items. Receipts on `prog:<id>` are collected for a while.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.centre.alerts import (
    CentreError,
    StationReceipts,
    _CentreClient,
    parse_broker,
    receipts_by_station,
)
from gateway.downlink.alert_model import PayloadError, normalize_area
from gateway.downlink.envelope import seal
from gateway.programmes.model import parse_schedule


def programme_topic(prefix: str, area: str, station: str | None = None) -> str:
    """Where a schedule for `area` (or for one station) is published."""
    if station:
        return f"{prefix}/station/{station}/programme"
    return f"{prefix}/programme/{normalize_area(area)}"


def build_schedule(fields: dict[str, Any], area: str, now: datetime) -> bytes:
    """The schedule payload: `fields` with defaults filled in, checked; ValueError if invalid."""
    body = dict(fields)
    body.setdefault("sent", now.isoformat(timespec="seconds"))
    body.setdefault("version", int(now.timestamp()))
    body.setdefault("areas", [normalize_area(area)])
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    try:
        parse_schedule(payload)
    except PayloadError as exc:
        raise ValueError(f"invalid schedule ({exc.reason}): {exc.detail}") from None
    return payload


def read_schedule_file(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; ValueError naming the file if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or "id" not in data:
        raise ValueError(f"{path}: a schedule is a JSON object with at least an id and items")
    return data


def withdrawal(schedule_id: str) -> dict[str, Any]:
    """The fields of a schedule that withdraws `schedule_id` (no items)."""
    return {"id": schedule_id, "items": []}


def seal_schedule(payload: bytes, key_name: str, private_key: Ed25519PrivateKey) -> bytes:
    return seal(payload, "programme", key_name, private_key)


def publish_retained(
    broker: str, topic: str, envelope: bytes, prefix: str, schedule_id: str, wait_s: float
) -> dict[str, StationReceipts]:
    """Publish `envelope` retained at QoS 1; gather `prog:<id>` receipts for `wait_s` seconds."""
    host, port = parse_broker(broker)
    client = _CentreClient(host, port)
    client.connect(f"{prefix}/station/+/receipt")
    try:
        client.publish(topic, envelope, retain=True)
        time.sleep(max(wait_s, 0.0))
    finally:
        client.close()
    return receipts_by_station(client.collected(), prefix, f"prog:{schedule_id}")


def render_receipts(stations: dict[str, StationReceipts]) -> str:
    """One line per station: what it answered (received vN, or rejected with the reason)."""
    if not stations:
        return "no receipts yet (stations that are offline get the retained schedule on connect)"
    lines = []
    for name in sorted(stations):
        parts = []
        for receipt in stations[name].receipts:
            status = str(receipt.get("status"))
            if receipt.get("reason"):
                status += f" ({receipt['reason']})"
            elif receipt.get("version") is not None:
                status += f" v{receipt['version']}, {receipt.get('items')} item(s)"
            parts.append(status)
        lines.append(f"{name}: {', '.join(parts)}")
    return "\n".join(lines)


__all__ = [
    "CentreError",
    "build_schedule",
    "programme_topic",
    "publish_retained",
    "read_schedule_file",
    "render_receipts",
    "seal_schedule",
    "withdrawal",
]
