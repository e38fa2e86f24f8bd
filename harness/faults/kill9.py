"""Scenario 1: SIGKILL of the service at random moments during ingest, drain and broadcast.

Why this module exists: one scenario, one module, called small by tests/faults/ and at full
size by benchmarks/chaos.py. See harness/faults/__init__.py for what the scenarios count and
docs/faults.md for what they found.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from harness import station_db
from harness.faults.common import TOWN_TOPIC, ScenarioResult, inline_alert, simulated_sensors
from harness.faults.station import FaultStation
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.sounds import RATE, contains
from harness.station import Centre, write_config

#: What a SIGKILLed life's capture may lack at its end: ALSA's file plugin writes a period at a
#: time, so the last one (about 40 ms here) is lost with the process. 100 ms of 16-bit mono.
KILL_TAIL_BYTES = 2 * RATE // 10


@dataclass
class _Kill9Run:
    """One life of the service in the kill -9 scenario."""

    number: int
    alive_s: float
    alert: str | None
    hit_playing: bool
    died_by_itself: int | None


def kill9(
    folder: Path,
    *,
    kills: int,
    seed: int,
    seed_per_run: int = 5000,
    sensors: int = 3,
    sensor_interval_s: float = 0.002,
    alive_s: tuple[float, float] = (0.3, 2.5),
    clip_s: float = 1.0,
    tune: dict[str, object] | None = None,
) -> ScenarioResult:
    """SIGKILL the service `kills` times at random moments during ingest, drain and broadcast.

    Before each start a batch of readings is committed straight into the database (a backlog
    to drain); simulated sensors ingest all the time; most lives get a signed alert with its
    own audio, and every third life is killed while that alert is playing. After each kill the
    database must pass `PRAGMA integrity_check`. A last life drains everything and plays what
    is left; then every seq ever committed must be at the centre and every alert heard in full
    (one that finished just before a kill may lack, in that life's capture, the last ALSA
    period the killed process never wrote: `KILL_TAIL_BYTES`). Duplicates are counted per
    committed record: acknowledgements a kill took with it make the next life send again
    (`tune` sets module constants, e.g. ``gateway.store.state_rows.ACK_SAVE_RECORDS``, to compare).
    """
    rng = random.Random(seed)
    result = ScenarioResult("1 kill -9 of the service")
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        centre = Centre()
        config = write_config(
            folder, broker.port, centre, body=simulated_sensors(sensors, sensor_interval_s)
        )
        db = folder / "station.db"
        ledger = Ledger(port=broker.port)
        station = FaultStation(config, tune=tune)
        alerts: dict[str, bytes] = {}
        runs: list[_Kill9Run] = []
        integrity: list[str] = []
        committed = 0
        seeded = 0
        try:
            for number in range(kills):
                station_db.seed_backlog(config, seed_per_run, start=seeded)
                seeded += seed_per_run
                runs.append(
                    _kill9_life(number, station, ledger, centre, rng, alerts, alive_s, clip_s)
                )
                check = station_db.integrity(db)
                integrity.append(check)
                committed = max(committed, station_db.committed_seq(db))
            committed = max(committed, station_db.committed_seq(db))
            final_exit = _kill9_final(station, ledger, db, alerts)
        finally:
            station.close()
            ledger.close()
        lost = ledger.missing(committed)
        result.lost = len(lost)
        result.duplicates = ledger.duplicates()
        result.crashes = sum(r.died_by_itself is not None for r in runs) + (final_exit != 0)
        seed_values = {int(r["v"]) for r in ledger.readings_of("seed")}
        raws = [c.raw() for c in station.captures]
        in_full = {a for a, pcm in alerts.items() if any(contains(raw, pcm) for raw in raws)}
        # A life ended by SIGKILL leaves the last ALSA period (tens of ms) of its capture
        # unwritten: an alert that finished just before the kill lacks its tail in the file.
        tail_cut = {
            a
            for a, pcm in alerts.items()
            if a not in in_full
            and "played" in ledger.statuses(a)
            and max(_longest_prefix(raw, pcm) for raw in raws) >= len(pcm) - KILL_TAIL_BYTES
        }
        unheard = [a for a in alerts if a not in in_full | tail_cut]
        replayed = [a for a in alerts if ledger.statuses(a).count("playing") > 1]
        played_twice = [a for a in alerts if ledger.statuses(a).count("played") > 1]
        result.details = {
            "seed": seed,
            "kills": kills,
            "committed_seqs": committed,
            "duplicates_per_committed_record": round(result.duplicates / max(1, committed), 4),
            "seq_contiguous_at_centre": not ledger.missing(ledger.max_seq()),
            "seq_conflicts": len(ledger.conflicts),
            "integrity_checks_failed": sum(check != "ok" for check in integrity),
            "seeded_values_missing": seeded - len(seed_values & set(range(seeded))),
            "alerts_sent": len(alerts),
            "kills_during_playback": sum(r.hit_playing for r in runs),
            "broadcasts_replayed_after_kill": len(replayed),
            "alerts_heard_in_full": len(in_full),
            "alerts_played_before_a_kill_cut_the_capture_tail": len(tail_cut),
            "alerts_never_heard_in_full": len(unheard),
            "alerts_played_receipt_twice": len(played_twice),
            "final_exit_code": final_exit,
            "mean_life_s": round(sum(r.alive_s for r in runs) / max(1, len(runs)), 2),
        }
        if lost:
            result.notes.append(f"missing seqs (first 20): {lost[:20]}")
        if ledger.conflicts:
            result.notes.append(f"seq conflicts (first 3): {ledger.conflicts[:3]}")
        bad = [check for check in integrity if check != "ok"]
        if bad:
            result.notes.append(f"integrity_check: {bad[:3]}")
    return result


def _kill9_life(
    number: int,
    station: FaultStation,
    ledger: Ledger,
    centre: Centre,
    rng: random.Random,
    alerts: dict[str, bytes],
    alive_s: tuple[float, float],
    clip_s: float,
) -> _Kill9Run:
    """Start, maybe send an alert, SIGKILL at a random moment (or while the alert plays)."""
    started = time.monotonic()
    station.start()
    alert_id = None
    aim_at_playback = number % 3 == 1
    if number % 3 != 2:
        freq = 300 + 20 * len(alerts)
        alert_id, pcm, raw = inline_alert(centre, freq, clip_s, level="orange")
        alerts[alert_id] = pcm
        time.sleep(rng.uniform(0.0, alive_s[1] / 2))
        if number == 0:  # the broker keeps downlink only for a session that has subscribed once
            ledger.wait(lambda: ledger.states, 20, "the station's first state")
        ledger.publish(TOWN_TOPIC, raw)
    hit_playing = False
    if aim_at_playback and alert_id is not None:
        try:
            ledger.wait(lambda: "playing" in ledger.statuses(alert_id), 15, f"{alert_id} playing")
            time.sleep(rng.uniform(0.05, clip_s * 0.6))
            hit_playing = "played" not in ledger.statuses(alert_id)
        except AssertionError:
            pass
    else:
        remaining = rng.uniform(*alive_s) - (time.monotonic() - started)
        time.sleep(max(0.0, remaining))
        if alert_id is not None:
            statuses = ledger.statuses(alert_id)
            hit_playing = "playing" in statuses and "played" not in statuses
    died = station.exited_by_itself()
    if died is None:
        station.kill()
    return _Kill9Run(number, time.monotonic() - started, alert_id, hit_playing, died)


def _longest_prefix(haystack: bytes, pcm: bytes) -> int:
    """Bytes of the longest sample-aligned prefix of `pcm` that occurs in `haystack`."""
    low, high = 0, len(pcm) // 2
    while low < high:
        middle = (low + high + 1) // 2
        if contains(haystack, pcm[: 2 * middle]):
            low = middle
        else:
            high = middle - 1
    return 2 * low


def _kill9_final(station: FaultStation, ledger: Ledger, db: Path, alerts: dict[str, bytes]) -> int:
    """The last life: drain everything committed, play what is left, stop with SIGTERM."""
    station.start()
    station.wait_ready()
    deadline = time.monotonic() + 120
    while True:
        upto = station_db.committed_seq(db)
        if not ledger.missing(upto):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for alert_id in alerts:

        def finished(a: str = alert_id) -> bool:
            return bool(set(ledger.statuses(a)) & {"played", "expired", "failed"})

        try:
            ledger.wait(finished, 60, f"{alert_id} finished")
        except AssertionError:
            break
    time.sleep(0.5)
    try:
        return station.terminate(timeout=10)
    except Exception:
        station.kill()
        return -9
