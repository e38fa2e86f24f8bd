"""A station in a crash loop: SIGKILLed again and again while it drains, and what the centre got.

Why this module exists: a station that crashes over and over (bad power, a watchdog fighting a
fault) resends whatever it had sent but not yet saved as acknowledged. What that costs the
centre is "duplicates per committed record": every seq received more than once, counted at a
subscriber (harness/ledger.py), over the highest seq the station ever committed. This is the
fleet benchmark's crash-loop figure (docs/performance.md); the fault suite's kill -9 scenario
asserts on the same ratio with its own, smaller run.

Each life: a batch of readings is committed straight into the database (a backlog to drain), the
station starts with simulated sensors ingesting fast, and is SIGKILLed a random 0.1–1.5 s after
the centre got its first message of this life (so every kill falls during a drain). A last life
drains everything and stops cleanly; then every committed seq must be at the centre.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from harness import station_db
from harness.fleet import fleet_station, station_config, station_id
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto

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
#: No alerts in this run; any well-formed key will do.
NO_KEY = ("none", "A" * 43 + "=")


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
    with Mosquitto(stamp_log=True) as broker:
        ledger = Ledger(port=broker.port, station_id=station_id(0), keep_readings=False)
        config = station_config(folder, broker.port, 0, NO_KEY, SENSORS)
        station = fleet_station(config)
        db = folder / "station.db"
        try:
            for life in range(kills):
                station_db.seed_backlog(config, per_life, start=life * per_life)
                before = ledger.messages
                station.start()
                deadline = time.monotonic() + 60
                while ledger.messages == before and time.monotonic() < deadline:
                    time.sleep(0.01)  # until this life is draining
                time.sleep(rng.uniform(*alive_s))
                station.signal(signal.SIGKILL)
                station.wait(10)
            station.start()
            committed = station_db.committed_seq(db)
            deadline = time.monotonic() + drain_timeout_s
            while ledger.missing(committed) and time.monotonic() < deadline:
                time.sleep(0.2)
                committed = station_db.committed_seq(db)
            station.signal(signal.SIGTERM)
            station.wait(30)
            time.sleep(0.5)  # late duplicates still count
            return CrashLoopResult(
                kills,
                committed,
                ledger.duplicates(),
                len(ledger.missing(committed)),
                time.monotonic() - began,
            )
        finally:
            station.signal(signal.SIGKILL)
            station.wait(10)
            ledger.close()
