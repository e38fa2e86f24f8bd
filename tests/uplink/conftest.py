"""Fixtures for the uplink tests: a private broker, the centre's subscriber and a station.

Everything here talks to real parts: a private Mosquitto per test (harness/mosquitto.py),
a real SQLite file, the real Store and Uplink. `Centre` is what the county centre would run: a
persistent-session subscriber to everything the station publishes, that counts every seq it
receives so tests can assert "nothing lost, nothing doubled" the way the centre would see it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config.model import Config
from gateway.store.outbox import Store, open_store
from gateway.uplink.supervisor import Uplink
from harness.mosquitto import Mosquitto
from harness.tls import KeyPair

STATION_ID = "lq-371581001201-01"
AREA = "371581001201"
PREFIX = "cx/v1"
STATION_TOPIC = f"{PREFIX}/station/{STATION_ID}"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A private Mosquitto on a free port, removed after the test."""
    with Mosquitto() as mosquitto:
        yield mosquitto


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_data(folder: Path, port: int, **sections: dict[str, Any]) -> dict[str, Any]:
    """A station config for tests (fast reconnects, short commit interval), as a dict."""
    base: dict[str, Any] = {
        "station": {"id": STATION_ID, "area": AREA, "clock": "synced"},
        "mqtt": {
            "port": port,
            "allow_plaintext": True,
            "keepalive_s": 5,
            "heartbeat_s": 60,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.3,
        },
        "storage": {"path": str(folder / "gateway.db"), "commit_interval_s": 0.1},
    }
    return _merge(base, sections)


def make_config(folder: Path, port: int, **sections: dict[str, Any]) -> Config:
    """The same, as the validated Config the service would get."""
    return Config.model_validate(config_data(folder, port, **sections))


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a config dict as TOML (only tables of scalars, which is all the tests need)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Centre:
    """The county centre: a persistent-session subscriber to all of one station's topics."""

    def __init__(
        self,
        port: int,
        *,
        ca: Path | None = None,
        cert: KeyPair | None = None,
        topic: str = f"{STATION_TOPIC}/#",
    ) -> None:
        self.reading_counts: Counter[int] = Counter()
        self.record_counts: Counter[int] = Counter()
        self.readings: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.receipts: list[dict[str, Any]] = []
        self.states: list[tuple[dict[str, Any], bool]] = []
        self.order: list[str] = []  # "state", "telemetry", "event", "receipt" in arrival order
        self.batch_sizes: list[tuple[int, int]] = []  # (readings, payload bytes) per telemetry
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._topic = topic
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"centre-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(1, 1)
        if ca is not None:
            self.client.tls_set(
                ca_certs=str(ca),
                certfile=str(cert.cert) if cert else None,
                keyfile=str(cert.key) if cert else None,
            )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("localhost" if ca else "127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError("the centre could not subscribe")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        body = json.loads(msg.payload)
        with self._cond:
            self.order.append(kind)
            if kind == "telemetry":
                self.batch_sizes.append((len(body["readings"]), len(msg.payload)))
                for reading in body["readings"]:
                    self.reading_counts[reading["seq"]] += 1
                    self.readings.append(reading)
            elif kind in ("event", "receipt"):
                self.record_counts[body["seq"]] += 1
                (self.events if kind == "event" else self.receipts).append(body)
            elif kind == "state":
                self.states.append((body, msg.retain))
            self._cond.notify_all()

    def wait(self, predicate: Callable[[Centre], bool], timeout: float, what: str = "") -> None:
        """Wait until `predicate(self)` holds; AssertionError with `what` after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"the centre did not see {what or 'it'} in {timeout} s")
                self._cond.wait(min(remaining, 0.1))

    async def until(
        self, predicate: Callable[[Centre], bool], timeout: float, what: str = ""
    ) -> None:
        """`wait` for use inside the station's event loop (which must keep running)."""
        await asyncio.to_thread(self.wait, predicate, timeout, what)

    def seqs(self) -> set[int]:
        """Every seq the centre has received (readings, events, receipts)."""
        with self._cond:
            return set(self.reading_counts) | set(self.record_counts)

    def duplicates(self) -> int:
        """Deliveries beyond the first of each seq."""
        with self._cond:
            counts = list(self.reading_counts.values()) + list(self.record_counts.values())
        return sum(count - 1 for count in counts)

    def events_of(self, type_: str) -> list[dict[str, Any]]:
        """Events of one type, in arrival order."""
        with self._cond:
            return [event for event in self.events if event["type"] == type_]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish as the centre would (e.g. a downlink message)."""
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def retained_state(port: int, timeout: float = 5.0, **tls: Any) -> dict[str, Any]:
    """What a subscriber arriving now gets as the retained state of the station."""
    got: list[dict[str, Any]] = []
    event = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"late-{uuid.uuid4().hex[:8]}")

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(json.loads(msg.payload))
            event.set()

    client.on_connect = lambda c, *_: c.subscribe(f"{STATION_TOPIC}/state", qos=1)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not event.wait(timeout):
            raise AssertionError("no retained state")
        return got[0]
    finally:
        client.disconnect()
        client.loop_stop()


def contiguous(seqs: set[int]) -> bool:
    """True if `seqs` is exactly 1..max(seqs)."""
    return not seqs or seqs == set(range(1, max(seqs) + 1))


def service_state() -> dict[str, object]:
    """The fields the service adds to the §3 state."""
    return {
        "version": "0.1.0",
        "boot": "b00t",
        "area": AREA,
        "clock_synced": True,
        "audio": "idle",
        "sensors": {"river": "ok"},
    }


class Station:
    """A Store and an Uplink, as the service wires them, in the test's event loop."""

    def __init__(self, config: Config, **uplink_options: Any) -> None:
        self.config = config
        self.store = open_store(config)
        self.downlinks: list[tuple[str, bytes]] = []
        self.fields = service_state()
        uplink_options.setdefault("connack_timeout_s", 3.0)
        self.uplink = Uplink(
            config,
            self.store,
            on_downlink=lambda topic, payload: self.downlinks.append((topic, payload)),
            state=lambda: dict(self.fields),
            **uplink_options,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.uplink.run())

    async def stop(self) -> None:
        await self.uplink.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)
        self.store.close()

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str = "") -> None:
        """Wait in the event loop until `predicate()` holds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or 'it'}")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running(config: Config, **uplink_options: Any) -> AsyncIterator[Station]:
    """A started Station, stopped cleanly at the end."""
    station = Station(config, **uplink_options)
    station.start()
    try:
        yield station
    finally:
        await station.stop()


def add_readings(store: Store, count: int, sensor: str = "river", start_value: float = 0.0) -> None:
    """`count` water-level readings, one millisecond apart."""
    ts = int(time.time() * 1000)
    for i in range(count):
        store.add_reading(sensor, "water_level_m", start_value + i / 1000, ts + i)
