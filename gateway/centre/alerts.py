"""The county centre's side of docs/protocol.md: build, sign and publish an alert, collect receipts.

This is what `cunxiang alert send` runs, and how tests and docs drive a
station. It has its own small paho client (the station's sync module is a
different, long-lived thing): connect, subscribe to every station's receipts,
publish the sealed alert at QoS 1, listen for a while, disconnect.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from gateway.downlink.alert_model import (
    ALL_AREAS,
    Alert,
    alert_from_fields,
    alert_to_json,
    normalize_area,
)
from gateway.downlink.cap import build_cap
from gateway.downlink.envelope import seal

DEFAULT_PREFIX = "cx/v1"
CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0
DEFAULT_EXPIRES_IN_S = 3600
PROGRESS_STATUSES = ("queued", "playing")


class CentreError(Exception):
    """Something the centre tool could not do (bad broker, no connection …)."""


@dataclass(frozen=True)
class AlertSpec:
    """What the operator asked for on the command line."""

    area: str
    level: str
    event: str
    text: str
    sender: str
    repeat: int | None = None
    tone: str | None = None
    clip: str | None = None
    status: str = "actual"
    msg_type: str = "alert"
    references: tuple[str, ...] = ()
    alert_id: str | None = None
    expires_in_s: int = DEFAULT_EXPIRES_IN_S
    station: str | None = None


def parse_broker(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `HOST`, port 1883) → (host, port); CentreError if malformed."""
    host, _, port_text = value.rpartition(":") if ":" in value else (value, ":", "1883")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CentreError(f"broker {value!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port_text)


def new_alert_id(area: str, now: datetime) -> str:
    """A fresh id in the GB/T 35965.1 shape `<area6><org3><unit3><ext2>_<YYYYMMDDhhmmss>_<n>`."""
    area6 = (area if area != ALL_AREAS else "").ljust(6, "0")[:6]
    return f"{area6}00000000_{now.strftime('%Y%m%d%H%M%S')}_{secrets.randbelow(9999) + 1}"


def build_alert(spec: AlertSpec, now: datetime) -> Alert:
    """The Alert for `spec`, sent `now` (an aware datetime); PayloadError if invalid."""
    area = normalize_area(spec.area)
    fields: dict[str, Any] = {
        "id": spec.alert_id or new_alert_id(area, now),
        "sender": spec.sender,
        "sent": now.replace(microsecond=0),
        "expires": now.replace(microsecond=0) + timedelta(seconds=spec.expires_in_s),
        "msg_type": spec.msg_type,
        "status": spec.status,
        "references": list(spec.references),
        "level": spec.level,
        "event": spec.event,
        "areas": [area],
        "stations": None if spec.station is None else [spec.station],
        "text": spec.text,
        "clip": spec.clip,
        "tone": spec.tone,
        "repeat": spec.repeat,
    }
    return alert_from_fields(fields)


def alert_topic(prefix: str, area: str, station: str | None = None) -> str:
    """`P/station/<id>/alert` for one station, else `P/alert/<code>` (or `P/alert/all`)."""
    if station is not None:
        return f"{prefix}/station/{station}/alert"
    return f"{prefix}/alert/{normalize_area(area)}"


def seal_alert(alert: Alert, cap: bool, key_name: str, private_key: Ed25519PrivateKey) -> bytes:
    """The signed envelope carrying `alert` as JSON (type `alert`) or CAP (type `cap`)."""
    if cap:
        return seal(build_cap(alert), "cap", key_name, private_key)
    return seal(alert_to_json(alert), "alert", key_name, private_key)


@dataclass
class StationReceipts:
    """The receipts one station sent for one alert, in arrival order."""

    station: str
    receipts: list[dict[str, Any]] = field(default_factory=list)

    def statuses(self) -> list[str]:
        return [str(r.get("status")) for r in self.receipts]

    def played(self) -> str:
        for receipt in self.receipts:
            if receipt.get("status") == "played":
                if receipt.get("silent"):
                    return "yes (silent)"
                duration = receipt.get("duration_s")
                return f"yes ({duration} s)" if duration is not None else "yes"
        progress = [s for s in self.statuses() if s in PROGRESS_STATUSES]
        return progress[-1] if progress else "no"

    def other(self) -> str:
        notes = []
        for receipt in self.receipts:
            status = receipt.get("status")
            if status in ("received", "played", *PROGRESS_STATUSES):
                continue
            reason = receipt.get("reason")
            notes.append(f"{status} ({reason})" if reason else str(status))
        if any(r.get("clock_unsynced") for r in self.receipts):
            notes.append("clock_unsynced")
        return ", ".join(dict.fromkeys(notes)) or "-"


def receipts_by_station(
    messages: Iterable[tuple[str, bytes]], prefix: str, alert_id: str
) -> dict[str, StationReceipts]:
    """Group receipt messages `(topic, payload)` about `alert_id` by station.

    Duplicates (same station and `seq`, a QoS 1 redelivery) count once;
    payloads that are not receipts are skipped.
    """
    head, tail = f"{prefix}/station/", "/receipt"
    stations: dict[str, StationReceipts] = {}
    seen: set[tuple[str, object]] = set()
    for topic, payload in messages:
        if not (topic.startswith(head) and topic.endswith(tail)):
            continue
        station = topic[len(head) : -len(tail)]
        try:
            receipt = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(receipt, dict) or receipt.get("alert") != alert_id:
            continue
        if (station, receipt.get("seq")) in seen and receipt.get("seq") is not None:
            continue
        seen.add((station, receipt.get("seq")))
        stations.setdefault(station, StationReceipts(station)).receipts.append(receipt)
    return stations


def _row(cells: tuple[str, str, str, str], widths: list[int]) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells[:3], widths, strict=True)]
    return "  ".join([*padded, cells[3]])


def render_table(stations: dict[str, StationReceipts]) -> str:
    """A plain-text table: station, received, played, other statuses with reasons."""
    if not stations:
        return "no receipts"
    rows = [("station", "received", "played", "other")]
    for name in sorted(stations):
        entry = stations[name]
        received = "yes" if "received" in entry.statuses() else "no"
        rows.append((name, received, entry.played(), entry.other()))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [_row(row, widths) for row in rows]
    played = sum(1 for e in stations.values() if e.played().startswith("yes"))
    lines.append(f"{len(stations)} station(s) answered, {played} played")
    return "\n".join(line.rstrip() for line in lines)


class _CentreClient:
    """A short-lived paho client: connect, subscribe, publish, collect."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"cx-centre-{uuid.uuid4().hex[:12]}"
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        self._connected.set()

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def connect(self, receipt_topic: str) -> None:
        try:
            self.client.connect(self.host, self.port)
        except OSError as exc:
            raise CentreError(f"cannot connect to broker {self.host}:{self.port}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refused:
            self.close()
            why = self._refused or f"no answer within {CONNECT_TIMEOUT_S:g} s"
            raise CentreError(f"broker {self.host}:{self.port} refused the connection: {why}")
        self.client.subscribe(receipt_topic, qos=1)
        if not self._subscribed.wait(CONNECT_TIMEOUT_S):
            self.close()
            raise CentreError(f"broker {self.host}:{self.port} did not confirm the subscription")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise CentreError(f"broker {self.host}:{self.port} did not acknowledge the message")

    def collected(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_and_collect(
    broker: str, topic: str, envelope: bytes, prefix: str, alert_id: str, wait_s: float
) -> dict[str, StationReceipts]:
    """Publish `envelope` on `topic` at QoS 1 and gather receipts for `wait_s` seconds."""
    host, port = parse_broker(broker)
    client = _CentreClient(host, port)
    client.connect(f"{prefix}/station/+/receipt")
    try:
        client.publish(topic, envelope)
        time.sleep(max(wait_s, 0.0))
    finally:
        client.close()
    return receipts_by_station(client.collected(), prefix, alert_id)
