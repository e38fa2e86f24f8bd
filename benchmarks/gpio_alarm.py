"""Smoke detector edge → local alarm event durable: the latency of the station's own alarm path.

Why this module exists: docs/performance.md § Targets allows 50 ms (p99) from the smoke detector's relay
closing to the alarm event being committed. This runs a whole `Station` in-process (the same
object `cunxiang run` builds) with ten simulated sensors at 1 Hz, a smoke detector on a
``gpio_contact`` pin (gpiozero MockFactory) and an ``active = true`` rule, connected to a
private Mosquitto, and closes the contact again and again.

What is timed, exactly: from just before ``pin.drive_low()`` — called in a thread of its own,
standing in for the thread in which gpiozero's lgpio factory delivers edges — to the moment
the station calls ``Station.on_record("alarm", …)``, which it does in the event loop right after
``Store.add_event`` has returned, i.e. after the event's COMMIT (WAL, synchronous=FULL: fsync'd).
In between: the driver's debouncer (first edge reported at once), the hand-over to the event
loop, the rule engine, and the commit. Between alarms the contact opens again (the rule
clears) and the next edge waits a random 60–120 ms, so edges fall at every phase of the
store's 1 s commit of readings.

    python -m benchmarks.gpio_alarm --config FILE --alarms N    (prints the latencies as JSON)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.rig import simulated_sensors, smoke_alarm, write_config
from harness.station import ROOT, service_env

PIN = 17
SENSOR = "smoke-1"


def _drive(pin: Any, marks: queue.SimpleQueue[tuple[str, float]], alarms: int) -> list[float]:
    """Close and open the contact `alarms` times; ms from each closing to its alarm commit."""
    latencies = []
    rng = random.Random(8)
    for _ in range(alarms):
        time.sleep(rng.uniform(0.06, 0.12))
        start = time.perf_counter()
        pin.drive_low()
        kind, at = marks.get(timeout=10)
        if kind != "alarm":
            raise RuntimeError(f"expected an alarm event, got {kind}")
        latencies.append((at - start) * 1000)
        time.sleep(rng.uniform(0.06, 0.12))
        pin.drive_high()
        kind, _ = marks.get(timeout=10)
        if kind != "alarm_cleared":
            raise RuntimeError(f"expected the alarm to clear, got {kind}")
    return latencies


async def _station(config_path: Path, alarms: int) -> list[float]:
    from gpiozero.pins.mock import MockFactory

    from gateway.config.loader import load_config
    from gateway.service import Station

    factory = MockFactory()
    marks: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
    ready = threading.Event()

    def on_record(kind: str, record: dict[str, Any]) -> None:
        if kind in ("alarm", "alarm_cleared"):
            marks.put((kind, time.perf_counter()))
        elif kind == "reading" and record.get("sensor") == SENSOR:
            ready.set()

    station = Station(load_config(config_path), pin_factory=factory)
    station.on_record = on_record
    task = asyncio.create_task(station.run())
    try:
        if not await asyncio.to_thread(ready.wait, 30):
            raise TimeoutError("the smoke sensor never reported")
        await asyncio.sleep(1.0)  # start-up settles; the first readings are committed
        return await asyncio.to_thread(_drive, factory.pin(PIN), marks, alarms)
    finally:
        station.stop()
        await task
        factory.reset()


def measure_once(folder: Path, port: int, alarms: int) -> list[float]:
    """One station process measuring `alarms` alarms; the latencies in ms."""
    folder.mkdir(parents=True)
    config = write_config(folder, port, body=simulated_sensors(10) + smoke_alarm(PIN))
    command = [sys.executable, "-m", "benchmarks.gpio_alarm", "--config", str(config)]
    out = subprocess.run(
        [*command, "--alarms", str(alarms)],
        cwd=ROOT,
        env=service_env(folder),
        capture_output=True,
        text=True,
        timeout=120 + alarms,
    )
    if out.returncode != 0:
        raise RuntimeError(f"gpio_alarm failed:\n{out.stderr[-4000:]}")
    latencies: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--alarms", type=int, default=200)
    args = parser.parse_args()
    latencies = asyncio.run(_station(args.config, args.alarms))
    print(json.dumps(latencies), flush=True)


if __name__ == "__main__":
    main()
