"""A station process for fault tests: `cunxiang run` that can be killed, starved, cut off and restarted.

Builds on tests/support/station.py (`StationProcess`, `write_config`, the centre's `Centre`
key) and adds what the fault scenarios need around it:

* `FaultStation` starts the real `python -m gateway run` optionally inside a network namespace
  (``ip netns exec NS …``), optionally with module constants changed first
  (tests/support/tuned_gateway.py), and with a fresh ALSA capture per start, so the samples of
  each life of the process can be told apart (`captures`).
* `edit_config` changes a written config in place (another broker address, another
  storage path); `seed_backlog` commits readings with counting values straight into the
  station's database, as if the station had been offline, so a drain is in progress when a
  fault strikes and every value can be checked at the centre.
* `db_max_seq`, `db_integrity` and `db_backlog` look into the database while no service
  runs (after a SIGKILL), read-only.
"""

from __future__ import annotations

import array
import math
import sqlite3
import subprocess
import sys
import time
import wave
from pathlib import Path

from gateway.config import load_config
from gateway.store.outbox import Store
from tests.support.alsa_capture import AlsaCapture, write_alsa_config
from tests.support.station import ROOT, StationProcess

RATE = 22050
"""The service's player rate: clips and inline audio at this rate reach the capture unchanged."""


class FaultStation(StationProcess):
    """`cunxiang run` with a namespace prefix, tuned constants and one ALSA capture per start."""

    def __init__(
        self,
        config: Path,
        *,
        netns: str | None = None,
        tune: dict[str, object] | None = None,
    ) -> None:
        super().__init__(config)
        self.netns = netns
        self.tune = dict(tune or {})
        self.captures: list[AlsaCapture] = []

    def command_line(self) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        args = ["run", "-c", str(self.config), "--log-level", "debug"]
        if self.tune:
            settings = [f"{name}={value!r}" for name, value in self.tune.items()]
            return [
                *prefix,
                sys.executable,
                "-m",
                "tests.support.tuned_gateway",
                *settings,
                "--",
                *args,
            ]
        return [*prefix, sys.executable, "-m", "gateway", *args]

    def start(self) -> FaultStation:
        self.starts += 1
        capture = write_alsa_config(self.config.parent / f"alsa-{self.starts}")
        self.captures.append(capture)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command_line(),
                cwd=ROOT,
                env=capture.env(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def capture(self) -> AlsaCapture:
        """The capture of the current (latest) start."""
        return self.captures[-1]

    def exited_by_itself(self) -> int | None:
        """The exit code if the process ended without being asked to, else None."""
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for the log line the service writes once everything is wired."""
        marker = f"--- start {self.starts} ---"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if "running:" in log[log.rfind(marker) :]:
                return
            if not self.running():
                raise AssertionError(f"the station exited at start:\n{log[-3000:]}")
            time.sleep(0.02)
        raise AssertionError(f"the station was not running within {timeout} s")


def edit_config(path: Path, replacements: dict[str, str]) -> None:
    """Replace exact lines' text in a written config; KeyError if one is not there."""
    text = path.read_text(encoding="utf-8")
    for old, new in replacements.items():
        if old not in text:
            raise KeyError(f"{old!r} is not in {path}")
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def open_store(config_path: Path) -> Store:
    """The station's store exactly as the service opens it (no service may be running)."""
    config = load_config(config_path)
    storage = config.storage
    return Store(
        storage.path,
        station_id=config.station.id,
        max_mb=storage.max_mb,
        max_age_days=storage.max_age_days,
        commit_interval_s=storage.commit_interval_s,
    )


def seed_backlog(config_path: Path, count: int, sensor: str = "seed", start: int = 0) -> int:
    """Commit `count` readings of `sensor` with values start, start+1, …; the last seq."""
    store = open_store(config_path)
    try:
        ts = int(time.time() * 1000)
        for i in range(count):
            store.add_reading(sensor, "water_level_m", float(start + i), ts)
        store.flush()
        return store.last_seq
    finally:
        store.close()


def _connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def db_max_seq(db: Path) -> int:
    """The highest seq ever committed (sqlite_sequence survives deletions)."""
    conn = _connect_ro(db)
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def db_integrity(db: Path) -> str:
    """`PRAGMA integrity_check` of the database: "ok" or what is broken."""
    conn = _connect_ro(db)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)
    finally:
        conn.close()


def sine_pcm(freq: float, seconds: float, amplitude: float = 0.3) -> bytes:
    """16-bit mono PCM at RATE with no zero sample (so it shows as one sound run)."""
    peak = amplitude * 32767
    samples = array.array("h")
    for i in range(round(seconds * RATE)):
        samples.append(round(peak * math.sin(2 * math.pi * freq * i / RATE + 0.5)) or 1)
    return samples.tobytes()


def wav_bytes(pcm: bytes) -> bytes:
    """A WAV file (16-bit mono, RATE) holding `pcm`, in memory."""
    import io

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm)
    return buffer.getvalue()


def write_clip(clips_dir: Path, name: str, pcm: bytes) -> None:
    """`clips_dir/name.wav` holding `pcm`."""
    clips_dir.mkdir(parents=True, exist_ok=True)
    (clips_dir / f"{name}.wav").write_bytes(wav_bytes(pcm))


def contains(haystack: bytes, needle: bytes) -> bool:
    """True when `needle` occurs sample-aligned in `haystack`."""
    start = 0
    while (index := haystack.find(needle, start)) != -1:
        if index % 2 == 0:
            return True
        start = index + 1
    return False
