"""The bench: a private broker, the centre as a subscriber, and the real `cunxiang run` process.

Why this module exists: the figures that concern the running service (drain, broker outage,
CPU share, idle memory, flash bytes at 10 readings/s) are taken from outside, as the centre
and the operating system see the station: a private Mosquitto on loopback
(tests/support/mosquitto.py), a paho subscriber standing in for the county centre that counts
every seq it receives, and ``python -m gateway run`` (the code of the ``cunxiang`` console
script) started from the working tree, its figures read from /proc (benchmarks/procstat.py).

The service gets a null ALSA device (no sound card here; nothing is written to a file), mock GPIO
pins, and its log on a pipe, as under systemd, so its own ``write_bytes`` are its database only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import procstat

ROOT = Path(__file__).resolve().parents[1]
STATION_ID = "bench-371581001201-01"
AREA = "371581001201"
PREFIX = "cx/v1"
TELEMETRY = f"{PREFIX}/station/{STATION_ID}/telemetry"
EVENTS = f"{PREFIX}/station/{STATION_ID}/event"
NULL_ALSA = "pcm.!default { type null }\n"


def null_alsa(folder: Path) -> Path:
    """An ALSA config whose default device discards sound (PortAudio opens it like a card)."""
    path = folder / "asound.conf"
    path.write_text(NULL_ALSA)
    return path


def simulated_sensors(count: int, interval_s: float = 1.0) -> str:
    """TOML for `count` simulated water-level sensors, one reading every `interval_s` each."""
    return "".join(
        f"""
[[sensors]]
name = "sim-{n}"
type = "simulated"
quantity = "water_level_m"
pattern = "sine"
period_s = {60 + n}
low = 0.5
high = 3.5
interval_s = {interval_s}
"""
        for n in range(count)
    )


def smoke_alarm(pin: int) -> str:
    """TOML for a smoke detector's dry contact on `pin` and its `active = true` alarm rule."""
    return f"""
[[sensors]]
name = "smoke-1"
type = "gpio_contact"
pin = {pin}
quantity = "smoke"

[[rules]]
name = "smoke-alarm"
sensor = "smoke-1"
active = true
level = "red"
"""


def write_config(
    folder: Path,
    port: int,
    *,
    body: str = "",
    mqtt_extra: str = "",
    storage_extra: str = "",
    db_name: str = "station.db",
) -> Path:
    """A station config in `folder` (database `db_name` beside it); `body` adds sensors/rules."""
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    text = f"""
[station]
id = "{STATION_ID}"
area = "{AREA}"
clock = "synced"

[mqtt]
host = "127.0.0.1"
port = {port}
allow_plaintext = true
{mqtt_extra}

[storage]
path = "{db_name}"
{storage_extra}

[audio]
clips_dir = "clips"
tts = "none"
amp_warmup_s = 0
{body}
"""
    path = folder / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def service_env(folder: Path) -> dict[str, str]:
    """The environment of a benchmarked service: null sound, mock pins, no systemd socket."""
    env = dict(os.environ)
    env.update(
        ALSA_CONFIG_PATH=str(null_alsa(folder)),
        GPIOZERO_PIN_FACTORY="mock",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(name, None)
    return env


class Service:
    """``python -m gateway run -c CONFIG`` (what `cunxiang run` runs), its log on a pipe."""

    def __init__(self, config: Path, log_level: str = "info") -> None:
        self.config = config
        self.log_path = config.parent / "service.log"
        self._ready = threading.Event()
        self._lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-level", log_level],
            cwd=ROOT,
            env=service_env(config.parent),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        with self.log_path.open("ab") as out:
            for raw in self.proc.stderr:
                out.write(raw)
                line = raw.decode(errors="replace")
                self._lines.append(line)
                if " running: " in line:
                    self._ready.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """What the service has logged so far."""
        return "".join(self._lines)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the service logs that it runs (store open, drivers started, uplink started)."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service did not start within {timeout} s:\n{self.log()}")

    def sample(self) -> procstat.Sample:
        """CPU, write_bytes and memory of the service now."""
        return procstat.sample(self.pid)

    def stop(self, timeout: float = 20.0) -> procstat.Exit:
        """SIGTERM, as systemd stops it; its totals after a clean shutdown."""
        self.proc.send_signal(signal.SIGTERM)
        result = procstat.wait_exit(self.proc, timeout)
        self._reader.join(5)
        if result.returncode != 0:
            raise RuntimeError(f"the service exited with {result.returncode}:\n{self.log()}")
        return result

    def kill(self) -> None:
        """End it at once (after a failure elsewhere)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Centre:
    """The county centre: a paho subscriber (persistent session) that counts every seq it gets.

    It reconnects within tens of milliseconds when the broker comes back, and its session keeps
    what the broker received for it meanwhile, so it misses nothing the station published.
    """

    def __init__(self, port: int, expected: int = 0) -> None:
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.expected = expected  # seqs 1..expected are the backlog being drained
        self.seen = bytearray(expected + 1)
        self.got_expected = 0  # distinct seqs of 1..expected received
        self.completed_at: float | None = None  # when the last of them arrived
        self.readings = 0  # telemetry readings received, duplicates included
        self.distinct = 0  # distinct seqs received (readings and events)
        self.duplicates = 0
        self.messages = 0
        self.arrivals: list[tuple[float, int]] = []  # (time.monotonic(), first seq) per message
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-centre-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(min_delay=0.01, max_delay=0.02)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError(f"the centre could not subscribe on port {port}")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(TELEMETRY, 1), (EVENTS, 1)])

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        doc = json.loads(msg.payload)
        with self._cond:
            self.messages += 1
            if msg.topic == EVENTS:
                self.events.append((now, doc))
                self._count(int(doc["seq"]))
            else:
                readings = doc["readings"]
                self.arrivals.append((now, int(readings[0]["seq"])))
                for reading in readings:
                    self._count(int(reading["seq"]))
                self.readings += len(readings)
            if self.completed_at is None and self.expected and self.got_expected >= self.expected:
                self.completed_at = now
            self._cond.notify_all()

    def _count(self, seq: int) -> None:
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(seq - len(seen) + 1024))
        if seen[seq]:
            self.duplicates += 1
        else:
            seen[seq] = 1
            self.distinct += 1
            if seq <= self.expected:
                self.got_expected += 1

    def missing(self, first: int, last: int) -> int:
        """How many seqs in first..last never arrived."""
        with self._cond:
            window = self.seen[first : last + 1]
            return (last - first + 1) - sum(window)

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

    def first_telemetry_after(self, t: float, timeout: float) -> float | None:
        """The arrival time of the first telemetry message received after monotonic time `t`."""

        def found() -> bool:
            return bool(self.arrivals) and self.arrivals[-1][0] > t

        if not self.wait(found, timeout):
            return None
        with self._cond:
            return next(at for at, _ in self.arrivals if at > t)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


def max_seq(db: Path) -> int:
    """The highest seq stored in a station database (read-only; the service may be running)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT max(seq) FROM outbox").fetchone()
        return int(row[0] or 0)
    finally:
        conn.close()


def count_readings(db: Path, after: int, upto: int) -> int:
    """Readings stored with after < seq <= upto."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE seq > ? AND seq <= ? AND kind = 0", (after, upto)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()
