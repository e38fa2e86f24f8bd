"""Scenario 2: the broker stopped (SIGTERM) or killed (SIGKILL) and restarted during a drain.

Why this module exists: one scenario, one module, called small by tests/faults/ and at full
size by benchmarks/chaos.py. See harness/faults/__init__.py for what the scenarios count and
docs/faults.md for what they found.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

from harness import station_db
from harness.faults.common import ScenarioResult
from harness.faults.station import FaultStation
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.station import Centre, write_config


def broker_restarts(
    folder: Path,
    *,
    records: int,
    restarts: int,
    seed: int,
    hard: bool,
    batch_max: int = 20,
    inflight_max: int = 2,
) -> ScenarioResult:
    """Stop the broker `restarts` times while the station drains a backlog of `records`.

    ``hard=False``: SIGTERM, Mosquitto saves its state; nothing may be lost, no repair allowed.
    ``hard=True``: SIGKILL; the broker forgets messages it had acknowledged but not saved, so
    the centre sees gaps. It repairs them with `resend`; nothing may be missing afterwards.

    With the defaults (500 readings a batch, 20 in flight) a loopback drain of 200,000 takes
    about a second; a small window (`batch_max`, `inflight_max`, as on a slow link) stretches
    it so that the restarts land inside it. Restarts are spread over the drain by the highest
    seq the centre has seen (the station publishes in seq order; a count would stall on the
    very losses a SIGKILL causes).
    """
    rng = random.Random(seed)
    kind = "SIGKILL" if hard else "SIGTERM"
    result = ScenarioResult(f"2{'b' if hard else 'a'} broker {kind}-restarted during a drain")
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        centre = Centre()
        window = f"\n[sync]\nbatch_max = {batch_max}\ninflight_max = {inflight_max}\n"
        config = write_config(folder, broker.port, centre, body=window)
        db = folder / "station.db"
        station_db.seed_backlog(config, records)
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        crashes = 0
        downtimes: list[float] = []
        progress: list[int] = []
        try:
            time.sleep(1.2)  # Mosquitto autosaves every second: the centre's session is on disk
            started = time.monotonic()
            station.start()
            for k in range(1, restarts + 1):
                threshold = records * k // (restarts + 1)

                def reached(t: int = threshold) -> bool:
                    return ledger.max_reading_seq() >= t

                with contextlib.suppress(AssertionError):  # a stalled drain gets restarts too
                    ledger.wait(reached, 20, f"seq {threshold}")
                progress.append(ledger.max_reading_seq())
                (broker.kill if hard else broker.stop)()
                down = rng.uniform(0.0, 0.5)
                downtimes.append(down)
                time.sleep(down)
                broker.start()
            backlog_empty = _wait_backlog_empty(ledger, centre, 120)
            drain_s = time.monotonic() - started
            committed = station_db.committed_seq(db)
            time.sleep(0.3)
            lost_before = len(ledger.missing(committed))
            repaired = 0
            if hard and lost_before:
                repaired = ledger.repair(centre, committed, timeout=60)
            crashes += station.exited_by_itself() is not None
            exit_code = station.terminate(timeout=10) if station.running() else -1
            crashes += exit_code != 0
        finally:
            station.close()
            ledger.close()
        result.lost = len(ledger.missing(committed))
        result.duplicates = ledger.duplicates()
        result.crashes = crashes
        result.details = {
            "seed": seed,
            "records": records,
            "restarts": restarts,
            "signal": kind,
            "committed_seqs": committed,
            "backlog_reported_empty": backlog_empty,
            "lost_before_resend": lost_before,
            "repaired_by_resend": repaired,
            "seq_conflicts": len(ledger.conflicts),
            "drain_s": round(drain_s, 2),
            "mean_downtime_s": round(sum(downtimes) / max(1, len(downtimes)), 2),
            "centre_max_seq_at_each_restart": progress,
        }
    return result


def _wait_backlog_empty(ledger: Ledger, centre: Centre, timeout: float) -> bool:
    """Ask the station (`status` command) until it reports an empty backlog."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = ledger.command(centre, "status", timeout=5)
        except AssertionError:
            continue
        if response.get("ok") and response["result"].get("backlog") == 0:
            return True
        time.sleep(0.3)
    return False
