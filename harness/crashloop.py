"""A station in a crash loop: SIGKILLed again and again while it drains, and what the centre got.

Why this module exists: a station that crashes over and over (bad power, a watchdog fighting a
fault) resends whatever it had sent but not yet saved as acknowledged. What that costs the
centre is "duplicates per committed record": every seq received more than once, counted at a
subscriber, over the highest seq the station ever committed. This is the fleet benchmark's
crash-loop figure (docs/performance.md); the fault suite's kill -9 scenario asserts on the same
ratio with its own, smaller run.

Each life: a batch of readings is committed straight into the database (a backlog to drain),
the station starts with simulated sensors ingesting fast, and is SIGKILLed a random 0.1–1.5 s
after the centre got its first message of this life (so every kill falls during a drain). A last life drains everything and stops cleanly; then every committed seq must be
at the centre.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import load_config
from gateway.store.outbox import Store
from harness.broker import Broker
from harness.fleet import PREFIX, FleetStation, station_config, station_id

SENSORS = "".join(
    f"""
[[sensors]]
name = "fast-{n}"
type = "simulated"
quantity = "water_level_m"
interval_s = 0.002
"""
    for n in range(3)
)


class SeqCounter:
    """The centre's side: every seq the station published, and how often (persistent session)."""

    def __init__(self, port: int, station: str) -> None:
        self.seen = bytearray(1024)
        self.distinct = 0
        self.duplicates = 0
        self.messages = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        base = f"{PREFIX}/station/{station}"
        self._topics = [(f"{base}/telemetry", 1), (f"{base}/event", 1), (f"{base}/receipt", 1)]
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"crashloop-centre-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(self._topics)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError("the centre could not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        seqs = [int(r["seq"]) for r in doc["readings"]] if "readings" in doc else [int(doc["seq"])]
        with self._lock:
            self.messages += 1
            for seq in seqs:
                if seq >= len(self.seen):
                    self.seen.extend(bytes(seq - len(self.seen) + 65536))
                if self.seen[seq]:
                    self.duplicates += 1
                else:
                    self.seen[seq] = 1
                    self.distinct += 1

    def missing(self, upto: int) -> int:
        with self._lock:
            return upto - sum(self.seen[1 : upto + 1])

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def committed_seqs(db: Path) -> int:
    """The highest seq the station ever committed (sqlite_sequence survives deletions)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def seed_backlog(config_path: Path, count: int, start: int) -> None:
    """Commit `count` readings straight into the station's database (no station running)."""
    config = load_config(config_path)
    storage = config.storage
    store = Store(
        storage.path,
        station_id=config.station.id,
        max_mb=storage.max_mb,
        max_age_days=storage.max_age_days,
        commit_interval_s=storage.commit_interval_s,
    )
    try:
        ts = int(time.time() * 1000)
        for i in range(count):
            store.add_reading("seed", "water_level_m", float(start + i), ts)
        store.flush()
    finally:
        store.close()


@dataclass
class CrashLoopResult:
    kills: int
    committed: int  # highest seq committed
    duplicates: int  # seqs received more than once, counted each extra time
    missing: int  # committed seqs never received (must be 0)
    seconds: float

    @property
    def duplicates_per_record(self) -> float:
        return self.duplicates / self.committed if self.committed else 0.0


def crash_loop(
    folder: Path,
    kills: int,
    *,
    seed: int = 17,
    per_life: int = 5000,
    alive_s: tuple[float, float] = (0.1, 1.5),
    drain_timeout_s: float = 300.0,
) -> CrashLoopResult:
    """`kills` SIGKILLs of one station during a drain; duplicates at the centre per record."""
    rng = random.Random(seed)
    began = time.monotonic()
    with Broker() as broker:
        counter = SeqCounter(broker.port, station_id(0))
        public = "A" * 43 + "="  # no alerts in this run; any well-formed key will do
        config = station_config(folder, broker.port, 0, public, SENSORS)
        station = FleetStation(0, config)
        db = folder / "station.db"
        try:
            for life in range(kills):
                seed_backlog(config, per_life, life * per_life)
                before = counter.messages
                station.start()
                deadline = time.monotonic() + 60
                while counter.messages == before and time.monotonic() < deadline:
                    time.sleep(0.01)  # until this life is draining
                time.sleep(rng.uniform(*alive_s))
                station.signal(signal.SIGKILL)
                station.wait(10)
            station.start()
            committed = committed_seqs(db)
            deadline = time.monotonic() + drain_timeout_s
            while counter.missing(committed) and time.monotonic() < deadline:
                time.sleep(0.2)
                committed = committed_seqs(db)
            station.signal(signal.SIGTERM)
            station.wait(30)
            time.sleep(0.5)  # late duplicates still count
            return CrashLoopResult(
                kills,
                committed,
                counter.duplicates,
                counter.missing(committed),
                time.monotonic() - began,
            )
        finally:
            station.signal(signal.SIGKILL)
            station.wait(10)
            counter.close()
