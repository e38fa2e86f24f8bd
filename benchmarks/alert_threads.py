"""Where a station's CPU goes on one alert, thread by thread: to the first sound, to `playing`.

Why this module exists: the per-alert CPU figure (benchmarks/fleet.py) is one number for the
whole process; cutting it needs to know which thread spends it. This runs one `cunxiang run`
(harness/fleet.py) and, for each of `--alerts` red siren alerts, reads every thread's
nanoseconds on a CPU (/proc/<pid>/task/<tid>/schedstat) just before the publish, at the first
sound (the first bytes in its ALSA file capture), when the `playing` receipt reaches the
centre (all threads) and when the `played` one does. Thread names come from ``py-spy dump`` when py-spy is installed.

    python -m benchmarks.alert_threads [--alerts 20]
    python -m benchmarks.alert_threads --steps     # the intake's steps in-process, CPU each
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.fleet import Fleet
from harness.mosquitto import Mosquitto
from harness.station import Centre


def thread_ns(pid: int) -> dict[str, int]:
    """Nanoseconds on a CPU per live thread of `pid`."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[tid] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return out


def thread_names(pid: int) -> dict[str, str]:
    """Native thread id -> Python thread name, from py-spy (empty without it)."""
    if shutil.which("py-spy") is None:
        return {}
    dump = subprocess.run(
        ["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
    ).stdout
    names = {}
    for line in dump.splitlines():
        tid, name = re.search(r"Thread (\d+)", line), re.search(r'"([^"]+)"', line)
        if line.startswith("Thread ") and tid and name:
            names[tid.group(1)] = name.group(1)
    return names


def measure(alerts: int) -> str:
    folder = Path(tempfile.mkdtemp(prefix="alert-threads-"))
    try:
        with Mosquitto(stamp_log=True) as broker:
            fleet = Fleet(folder, broker, 1, capture=True)
            try:
                fleet.start()
                fleet.settle(2.0)
                station = next(iter(fleet.stations.values()))
                names = thread_names(station.pid)
                sound = station.config.parent / "sound.raw"
                to_sound: collections.Counter[str] = collections.Counter()
                to_playing: collections.Counter[str] = collections.Counter()
                to_played: collections.Counter[str] = collections.Counter()
                for _ in range(alerts):
                    size = sound.stat().st_size if sound.exists() else 0
                    before = thread_ns(station.pid)
                    at_sound: dict[str, int] = {}

                    def watch(size: int = size, at_sound: dict[str, int] = at_sound) -> None:
                        deadline = time.monotonic() + 10
                        while time.monotonic() < deadline:
                            if sound.exists() and sound.stat().st_size > size:
                                at_sound.update(thread_ns(station.pid))
                                return
                            time.sleep(0.0005)

                    watcher = threading.Thread(target=watch, daemon=True)
                    watcher.start()
                    result = fleet.town_alert()
                    watcher.join(10)
                    at_played = thread_ns(station.pid)  # town_alert waits for `played`
                    for tid, ns in at_played.items():
                        to_played[names.get(tid, tid)] += ns - at_sound.get(tid, ns)
                    for tid, ns in at_sound.items():
                        to_sound[names.get(tid, tid)] += ns - before.get(tid, 0)
                    to_playing["(all threads, schedstat)"] += int(result.run_ms[0] * 1e6)
                    time.sleep(0.5)
            finally:
                fleet.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [f"station CPU per alert, ms (mean of {alerts} red siren alerts)", "to first sound:"]
    for name, ns in to_sound.most_common():
        lines.append(f"  {name:28} {ns / alerts / 1e6:7.3f}")
    lines.append(f"  {'total':28} {sum(to_sound.values()) / alerts / 1e6:7.3f}")
    total = to_playing["(all threads, schedstat)"]
    lines.append(f"to the `playing` receipt at the centre: {total / alerts / 1e6:7.3f}")
    lines.append("from the first sound to the `played` receipt (the siren playing):")
    for name, ns in to_played.most_common():
        lines.append(f"  {name:28} {ns / alerts / 1e6:7.3f}")
    return "\n".join(lines)


def steps(repeat: int = 200) -> str:
    """CPU (this thread) of each step the event loop takes for an alert, with the real objects."""
    from gateway.downlink.alert_model import parse_alert_json
    from gateway.downlink.envelope import open_envelope
    from gateway.store.alert_records import AlertRecord
    from gateway.store.outbox import Store

    centre = Centre()
    trusted = {centre.name: centre.key.public_key().public_bytes_raw()}
    raws = [centre.seal_alert(centre.alert(level="red", tone="siren")) for _ in range(repeat)]
    folder = Path(tempfile.mkdtemp(prefix="alert-steps-"))
    rows: list[tuple[str, float]] = []

    def timed(name: str, work: Sequence[Any], step: Callable[[Any], Any]) -> list[Any]:
        start = time.thread_time_ns()
        out = [step(item) for item in work]
        rows.append((name, (time.thread_time_ns() - start) / len(work) / 1e6))
        return out

    try:
        store = Store(
            folder / "s.db", station_id="s", max_mb=64, max_age_days=30, commit_interval_s=1
        )
        envelopes = timed(
            "open_envelope (JSON, base64, Ed25519)",
            raws,
            lambda r: open_envelope(r, trusted, 1 << 22),
        )
        alerts = timed(
            "parse_alert_json (pydantic)", envelopes, lambda e: parse_alert_json(e.payload)
        )
        records = timed(
            "the log record (model_dump)",
            alerts,
            lambda a: AlertRecord(kind="central", alert=a.model_dump(mode="json")),
        )
        pairs = list(zip(alerts, records, strict=True))
        timed("alerts.entry (the replay check)", alerts, lambda a: store.alerts.entry(a.id))
        timed(
            "alerts.remember + `received`, one commit",
            pairs,
            lambda p: store.alerts.remember(p[0].id, p[1], received={}),
        )
        timed(
            "alerts.set_state(queued), rides along",
            alerts,
            lambda a: store.alerts.set_state(a.id, "queued"),
        )
        timed(
            "`queued` receipt, deferred",
            alerts,
            lambda a: store.add_receipt(a.id, "queued", {}, defer=True),
        )
        timed(
            "`playing` receipt, committed", alerts, lambda a: store.add_receipt(a.id, "playing", {})
        )
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [f"intake steps, CPU of the calling thread, ms per alert ({repeat} alerts)"]
    lines += [f"  {name:44} {ms:7.3f}" for name, ms in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--steps", action="store_true", help="time the intake's steps instead")
    args = parser.parse_args()
    print(steps() if args.steps else measure(args.alerts))


if __name__ == "__main__":
    main()
