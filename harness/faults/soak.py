"""Scenario 7: the soak — sensors at 1 Hz for an hour, the broker away every 5 minutes.

Why this module exists: one scenario, one module, called small by tests/faults/ and at full
size by benchmarks/chaos.py. See harness/faults/__init__.py for what the scenarios count and
docs/faults.md for what they found.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from harness import station_db
from harness.faults.common import ScenarioResult, simulated_sensors
from harness.faults.station import FaultStation
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.proc_watch import ProcWatch
from harness.station import Centre, write_config


def soak(
    folder: Path,
    *,
    minutes: float,
    sensors: int = 10,
    outage_every_s: float = 300.0,
    outage_s: float = 30.0,
    sample_s: float = 10.0,
    progress: Callable[[str], None] | None = None,
) -> ScenarioResult:
    """`sensors` sensors at 1 Hz for `minutes`, the broker stopped for `outage_s` every `outage_every_s`.

    RSS and open descriptors of the service are sampled every `sample_s`; what matters is that
    they stay flat across outages (first / last / max, and the growth from the first third of
    the run to the last). Every committed record must reach the centre in the end.
    """
    result = ScenarioResult(
        f"7 soak {minutes:g} min, {sensors} sensors × 1 Hz, broker away every {outage_every_s:g} s"
    )
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        centre = Centre()
        config = write_config(folder, broker.port, centre, body=simulated_sensors(sensors, 1.0))
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        outages = 0
        try:
            station.start()
            station.wait_ready()
            watch = ProcWatch(station.pid, interval=sample_s)
            started = time.monotonic()
            end = started + minutes * 60
            next_outage = started + outage_every_s
            while time.monotonic() < end and station.running():
                if time.monotonic() >= next_outage:
                    broker.stop()
                    outages += 1
                    if progress:
                        progress(f"soak: outage {outages} at {time.monotonic() - started:.0f} s")
                    time.sleep(min(outage_s, max(0.0, end - time.monotonic())))
                    broker.start()
                    next_outage += outage_every_s
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            watch.stop()
            crashed = station.exited_by_itself() is not None
            committed = station_db.settled_committed_seq(folder / "station.db", quiet_s=0.5)
            with contextlib.suppress(AssertionError):
                ledger.wait_complete(committed, 60)
            exit_code = station.terminate(timeout=10) if not crashed else -1
        finally:
            station.close()
            ledger.close()
        result.lost = len(ledger.missing(committed))
        result.duplicates = ledger.duplicates()
        result.crashes = int(crashed) + (exit_code != 0)
        result.details = {
            "minutes": minutes,
            "sensors": sensors,
            "outages": outages,
            "outage_s": outage_s,
            "committed_seqs": committed,
            "readings_at_centre": len(ledger.readings),
            "rss_kib": watch.rss.summary(),
            "open_fds": watch.fds.summary(),
            "samples": len(watch.rss.samples),
            "station_exit_code": exit_code,
        }
    return result
