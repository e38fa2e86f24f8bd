"""The county centre of a fleet run: signs and publishes alerts, notes what came back and when.

Why this module exists: the fleet figures are taken at the centre, as a county would see them —
when each station's receipts arrived — together with how much CPU each station had used by
then, read from /proc at that moment (``utime + stime`` of /proc/<pid>/stat, all threads, and
the nanoseconds of /proc/<pid>/task/*/schedstat). harness/fleet.py runs the stations.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from gateway.downlink.alert_model import Alert, alert_to_json
from gateway.downlink.envelope import seal
from gateway.downlink.keys import public_key_b64

AREA = "371581001201"
PREFIX = "cx/v1"
KEY_NAME = "fleet-centre"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU time of `pid`, all its threads (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_ns(pid: int) -> int:
    """Nanoseconds on a CPU of `pid`'s live threads (/proc/<pid>/task/*/schedstat)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


@dataclass
class Arrival:
    """A receipt at the centre: when it came and the station's CPU time then."""

    at: float
    cpu_s: float
    run_ns: int


@dataclass
class Tracked:
    """An alert the centre published: when, and the CPU of every station just before."""

    id: str
    published_at: float
    cpu_before: dict[str, float] = field(default_factory=dict)
    ns_before: dict[str, int] = field(default_factory=dict)
    receipts: dict[tuple[str, str], Arrival] = field(default_factory=dict)  # (station, status)


class FleetCentre:
    """The county centre: signs and publishes alerts, collects receipts and station states."""

    def __init__(self, port: int, pids: dict[str, int] | None = None) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.pids = pids if pids is not None else {}
        self._cond = threading.Condition()
        self.alerts: dict[str, Tracked] = {}
        self.online: dict[str, bool] = {}
        self.online_at: dict[str, float] = {}
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"centre-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(min_delay=0.01, max_delay=0.05)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError(f"the centre could not subscribe on port {port}")

    @property
    def public_b64(self) -> str:
        return public_key_b64(self.key)

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(f"{PREFIX}/station/+/receipt", 1), (f"{PREFIX}/station/+/state", 1)])

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        station = msg.topic.split("/")[-2]
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        with self._cond:
            if msg.topic.endswith("/state"):
                online = bool(doc.get("online"))
                if online and not self.online.get(station):
                    self.online_at[station] = now
                self.online[station] = online
            else:
                tracked = self.alerts.get(str(doc.get("alert")))
                key = (station, str(doc.get("status")))
                if tracked is not None and key not in tracked.receipts:
                    pid = self.pids.get(station)
                    cpu, ns = (cpu_s(pid), run_ns(pid)) if pid else (0.0, 0)
                    tracked.receipts[key] = Arrival(now, cpu, ns)
            self._cond.notify_all()

    def alert(self, *, level: str = "red", tone: str = "siren", **fields: Any) -> bytes:
        """A sealed town-wide alert, sent now, expiring in an hour; its id is in `last_id`."""
        now = datetime.now(UTC)
        base: dict[str, Any] = {
            "id": f"fleet-{uuid.uuid4().hex[:12]}",
            "sender": "临清市应急管理局",
            "sent": now,
            "expires": now + timedelta(hours=1),
            "msg_type": "alert",
            "status": "actual",
            "references": [],
            "level": level,
            "event": "flood",
            "areas": [AREA[:9]],
            "text": "",
            "tone": tone,
            "repeat": 1,
        }
        base.update(fields)
        alert = Alert.model_validate(base, strict=False)
        self.last_id = alert.id
        return seal(alert_to_json(alert), "alert", KEY_NAME, self.key)

    def publish(self, raw: bytes, alert_id: str) -> Tracked:
        """Publish a sealed alert to the town's topic; CPU of every station read just before."""
        tracked = Tracked(alert_id, 0.0)
        for station, pid in self.pids.items():
            tracked.cpu_before[station] = cpu_s(pid)
            tracked.ns_before[station] = run_ns(pid)
        with self._cond:
            self.alerts[alert_id] = tracked
        tracked.published_at = time.monotonic()
        self.client.publish(f"{PREFIX}/alert/{AREA[:9]}", raw, qos=1)
        return tracked

    def wait(self, check: Any, timeout: float) -> bool:
        """Until `check()` (called under the lock) is true or `timeout` s passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def count(self, tracked: Tracked, status: str) -> int:
        return sum(1 for _, s in tracked.receipts if s == status)

    def all_online(self, stations: list[str]) -> bool:
        return all(self.online.get(s) for s in stations)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
