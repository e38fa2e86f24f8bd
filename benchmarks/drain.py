"""Ingest and drain: N readings into the store, then the real service sends them to the centre.

Why this module exists: five figures of docs/performance.md § Targets come from one bulk run —

* ingest, durable readings/s (benchmarks/ingest.py, a process of its own);
* drain, readings/s at QoS 1 to a loopback Mosquitto, counted by the centre's subscriber
  (first to last telemetry message), with lost and duplicated seqs;
* bytes written per reading over ingest + drain (write_bytes of both processes);
* CPU per reading over ingest + drain (CPU time of both processes);
* peak RSS of the `cunxiang run` process while it drains the backlog (VmHWM).

How a run goes: the broker starts, the centre subscribes with a persistent session, the broker
stops. The ingest process fills a new database with N readings. ``cunxiang run`` starts on that
database with no sensors, cannot reach the broker, and idles; its CPU and write_bytes are
sampled; the broker starts again on the same port, the service connects and drains. Its drain
cost is everything from that sample to its exit after SIGTERM (the final flush and checkpoint
included); its start-up is not a cost of the readings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.rig import STATION_ID, Service, write_config
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.station import ROOT

#: The service reconnects quickly here: the drain rate, not the back-off, is measured.
FAST_RECONNECT = "reconnect_min_s = 0.1\nreconnect_max_s = 0.2"


def run_ingest(db: Path, readings: int) -> dict[str, float]:
    """benchmarks/ingest.py in its own process."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--db", str(db), "--readings", str(readings)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60 + readings / 20_000,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def one_run(folder: Path, readings: int, settle_s: float = 1.0) -> dict[str, float]:
    """One ingest + drain of `readings` readings; the run's figures."""
    folder.mkdir(parents=True)
    with Mosquitto() as broker:
        ledger = Ledger(
            port=broker.port, station_id=STATION_ID, keep_readings=False, expected=readings
        )
        try:
            broker.stop()
            ingest = run_ingest(folder / "station.db", readings)
            service = Service(write_config(folder, broker.port, mqtt_extra=FAST_RECONNECT))
            try:
                return _drain(broker, ledger, service, ingest, readings, settle_s)
            finally:
                service.kill()
        finally:
            ledger.close()
            shutil.rmtree(folder, ignore_errors=True)


def _drain(
    broker: Mosquitto,
    ledger: Ledger,
    service: Service,
    ingest: dict[str, float],
    readings: int,
    settle_s: float,
) -> dict[str, float]:
    service.wait_ready()
    time.sleep(settle_s)  # let start-up settle: its cost is not the readings'
    before = service.sample()
    broker.start()
    broker_up = time.monotonic()
    timeout = 60 + readings / 20_000
    try:
        ledger.wait(lambda: ledger.completed_at is not None, timeout, f"{readings} readings")
    except AssertionError:
        raise TimeoutError(
            f"the centre got {ledger.got_expected} of {readings} readings in {timeout:.0f} s"
        ) from None
    during = service.sample()
    end = service.stop()
    time.sleep(0.3)  # late duplicates would be redeliveries; give them a moment
    assert ledger.completed_at is not None
    first = ledger.telemetry_at[0][0]
    drain_cpu = end.cpu_s - before.cpu_s
    drain_bytes = end.write_bytes - before.write_bytes
    return {
        "ingest_per_s": readings / ingest["seconds"],
        "drain_per_s": readings / max(ledger.completed_at - first, 1e-9),
        "drain_per_s_from_broker_up": readings / (ledger.completed_at - broker_up),
        "drain_lost": float(len(ledger.missing(readings))),
        "drain_duplicates": float(ledger.duplicates()),
        "bytes_per_reading_bulk": (ingest["write_bytes"] + drain_bytes) / readings,
        "ingest_bytes_per_reading": ingest["write_bytes"] / readings,
        "drain_bytes_per_reading": drain_bytes / readings,
        "cpu_us_per_reading": (ingest["cpu_s"] + drain_cpu) / readings * 1e6,
        "ingest_cpu_us_per_reading": ingest["cpu_s"] / readings * 1e6,
        "drain_cpu_us_per_reading": drain_cpu / readings * 1e6,
        "rss_drain_mb": max(during.hwm_kb, end.maxrss_kb) / 1024,
        "rss_before_drain_mb": before.rss_kb / 1024,
    }
