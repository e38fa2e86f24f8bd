"""The county centre of a fleet run: publishes signed alerts, notes what came back and when.

Why this module exists: the fleet figures are taken at the centre, as a county would see them —
when each station's receipts arrived — together with how much CPU each station had used by
then, read from /proc at that moment (harness/procstat.py). harness/fleet.py runs the stations.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from harness.mosquitto import HOST
from harness.procstat import cpu_s, run_ns
from harness.station import AREA, Centre, topic


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
        self.signer = Centre()
        self.pids = pids if pids is not None else {}
        self._cond = threading.Condition()
        self.alerts: dict[str, Tracked] = {}
        self.online: dict[str, bool] = {}
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
        self.client.connect(HOST, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError(f"the centre could not subscribe on port {port}")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(
            [(topic("station", "+", "receipt"), 1), (topic("station", "+", "state"), 1)]
        )

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        station = msg.topic.split("/")[-2]
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        with self._cond:
            if msg.topic.endswith("/state"):
                self.online[station] = bool(doc.get("online"))
            else:
                tracked = self.alerts.get(str(doc.get("alert")))
                key = (station, str(doc.get("status")))
                if tracked is not None and key not in tracked.receipts:
                    pid = self.pids.get(station)
                    cpu, ns = (cpu_s(pid), run_ns(pid)) if pid else (0.0, 0)
                    tracked.receipts[key] = Arrival(now, cpu, ns)
            self._cond.notify_all()

    def town_alert(self) -> tuple[str, bytes]:
        """A sealed red siren alert for the whole town, sent now, expiring in an hour: (id, raw)."""
        alert = self.signer.alert(id=f"fleet-{uuid.uuid4().hex[:12]}", level="red", tone="siren")
        return alert.id, self.signer.seal_alert(alert)

    def publish(self, raw: bytes, alert_id: str) -> Tracked:
        """Publish a sealed alert to the town's topic; CPU of every station read just before."""
        tracked = Tracked(alert_id, 0.0)
        for station, pid in self.pids.items():
            tracked.cpu_before[station] = cpu_s(pid)
            tracked.ns_before[station] = run_ns(pid)
        with self._cond:
            self.alerts[alert_id] = tracked
        tracked.published_at = time.monotonic()
        self.client.publish(topic("alert", AREA[:9]), raw, qos=1)
        return tracked

    def wait(self, check: Callable[[], bool], timeout: float) -> bool:
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

    def arrivals(self, tracked: Tracked, status: str) -> dict[str, Arrival]:
        """Each station's receipt of `status` for the alert so far."""
        with self._cond:
            return {s: a for (s, got), a in tracked.receipts.items() if got == status}

    def all_online(self, stations: list[str]) -> bool:
        return all(self.online.get(s) for s in stations)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
