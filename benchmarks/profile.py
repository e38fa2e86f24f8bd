"""Where the time goes: py-spy profiles of the three busy paths the figures come from.

Why this module exists: a target that is missed (or only just met) needs the profile that shows
why, and the profile must come from the same workload as the figure. This samples the real
processes with py-spy (``pip install py-spy``; it reads another process's stacks, so the
profiled code runs unmodified) and prints the functions that took the samples:

    python -m benchmarks.profile ingest [--readings 1000000]   # benchmarks/ingest.py
    python -m benchmarks.profile drain [--readings 1000000]    # cunxiang run draining a backlog
    python -m benchmarks.profile idle [--seconds 60]           # cunxiang run, 10 sensors at 1 Hz
    python -m benchmarks.profile alert [--alerts 40]           # cunxiang run, red siren alerts

Only samples where a thread was running are counted (py-spy leaves idle threads out), so the
percentages are shares of the CPU time the process used, by thread, by function (self time)
and by function with what it calls (inclusive).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import drain
from benchmarks.rig import STATION_ID, Service, simulated_sensors, write_config
from harness.fleet import Fleet
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.station import ROOT

_LOCATION = re.compile(r" \((.*):\d+\)$")


def _spy(target: list[str], out: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    command = ["py-spy", "record", "--format", "raw", "--threads", "--nonblocking"]
    return subprocess.Popen(
        [*command, "--rate", str(rate), "--output", str(out), *target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    spy.wait(30)


def summarise(raw: Path, top: int = 15) -> str:
    """Self and inclusive shares by function, and shares by thread, from py-spy's raw output."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        samples = int(count)
        total += samples
        parts = stack.split(";")
        thread = parts[0].split("): ", 1)[-1] if parts[0].startswith("thread (") else "?"
        threads[re.sub(r"\d+", "N", thread)] += samples
        frames = [f for f in parts if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        names = [_LOCATION.sub(lambda m: f" ({m.group(1)})", f) for f in frames]
        self_time[names[-1]] += samples
        for name in set(names):
            inclusive[name] += samples
    lines = [f"{total} samples while a thread ran"]
    for title, counter in (("by thread", threads), ("self", self_time), ("inclusive", inclusive)):
        lines.append(f"-- {title}")
        lines += [f"{n / total * 100:6.1f} %  {name}" for name, n in counter.most_common(top)]
    return "\n".join(lines)


def profile_ingest(folder: Path, readings: int, out: Path) -> None:
    """Ingest `readings` into a new store under py-spy."""
    command = [sys.executable, "-m", "benchmarks.ingest", "--db", str(folder / "station.db")]
    spy = _spy(["--", *command, "--readings", str(readings)], out)
    spy.wait(600)


def profile_drain(folder: Path, readings: int, out: Path) -> None:
    """The service drains `readings` readings to a private broker under py-spy."""
    with Mosquitto() as broker:
        ledger = Ledger(
            port=broker.port, station_id=STATION_ID, keep_readings=False, expected=readings
        )
        broker.stop()
        drain.run_ingest(folder / "station.db", readings)
        service = Service(write_config(folder, broker.port, mqtt_extra=drain.FAST_RECONNECT))
        try:
            service.wait_ready()
            time.sleep(1.0)
            spy = _spy(["--pid", str(service.pid)], out)
            time.sleep(1.0)
            broker.start()
            with contextlib.suppress(AssertionError):
                ledger.wait(lambda: ledger.completed_at is not None, 60 + readings / 20_000, "")
            _stop(spy)
            service.stop()
        finally:
            service.kill()
            ledger.close()


def profile_idle(folder: Path, seconds: float, out: Path) -> None:
    """The service with ten sensors at 1 Hz, broker connected, under py-spy."""
    with Mosquitto() as broker:
        ledger = Ledger(port=broker.port, station_id=STATION_ID, keep_readings=False)
        service = Service(write_config(folder, broker.port, body=simulated_sensors(10)))
        try:
            service.wait_ready()
            time.sleep(3.0)
            spy = _spy(["--pid", str(service.pid), "--duration", str(int(seconds))], out)
            spy.wait(seconds + 30)
            service.stop()
        finally:
            service.kill()
            ledger.close()


def profile_alert(folder: Path, alerts: int, out: Path) -> None:
    """One station (harness/fleet.py) takes `alerts` red siren alerts, one at a time, under py-spy.

    Sampled at 1000 Hz, and only the thread holding the GIL (``--gil``: a thread waiting in
    a pacing sleep or an fsync is not spending the station's CPU on Python): an alert costs
    milliseconds, so the profile is the sum over many.
    """
    with Mosquitto(stamp_log=True) as broker:
        fleet = Fleet(folder, broker, 1)
        try:
            fleet.start()
            fleet.settle(2.0)
            pid = next(iter(fleet.stations.values())).pid
            spy = _spy(["--gil", "--pid", str(pid)], out, rate=1000)
            time.sleep(1.0)
            for _ in range(alerts):
                fleet.town_alert()
            _stop(spy)
        finally:
            fleet.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", choices=("ingest", "drain", "idle", "alert"))
    parser.add_argument("--alerts", type=int, default=40)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw stacks here")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled bytecode
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(ROOT / "benchmarks" / "results" / "pycache"))
    folder = Path(tempfile.mkdtemp(prefix="profile-", dir=ROOT / "benchmarks" / "results"))
    out = args.raw or folder / "stacks.txt"
    try:
        if args.path == "ingest":
            profile_ingest(folder, args.readings, out)
        elif args.path == "drain":
            profile_drain(folder, args.readings, out)
        elif args.path == "alert":
            profile_alert(folder, args.alerts, out)
        else:
            profile_idle(folder, args.seconds, out)
        print(summarise(out))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
