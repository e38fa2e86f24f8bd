"""The fleet figures: per-alert CPU, N stations under one alert, a broker restart, a crash loop.

Why this module exists: docs/performance.md § Targets measures what every village speaking at once costs
(issue 17). The stations are real `cunxiang run` processes (harness/fleet.py) on one private
Mosquitto whose log is stamped as it is written (harness/mosquitto.py):

* ``alertcpu`` — a few stations take red siren alerts one at a time; per alert, each station's
  CPU time (``utime + stime`` of /proc/<pid>/stat, all threads) from just before the publish
  to the first sound — the moment the first bytes land in its ALSA file capture, watched from
  outside — less what the station spends idle over the same time. Ticks are 10 ms, so the
  figure is the mean over every station and alert; the same from
  /proc/<pid>/task/*/schedstat (nanoseconds, live threads), and both to the ``playing``
  receipt at the centre (which also pays for committing and publishing that receipt), are
  details.
* ``fleet`` (``--fleet N``) — N stations in one town: one town-wide red siren alert, publish →
  ``playing`` at the centre per station (p50/p99/max); the broker SIGTERMed and started again
  at once: from its port answering to the last station's CONNECT accepted, and the most station
  CONNECTs in any 100 ms window; then the crash loop of harness/crashloop.py (one station,
  SIGKILLed again and again during a drain): duplicates at the centre per committed record.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.crashloop import crash_loop
from harness.fleet import Fleet
from harness.mosquitto import Mosquitto
from harness.stats import percentile


@dataclass(frozen=True)
class FleetSizes:
    """How much the alertcpu and fleet sections do, per mode of the suite."""

    fleet: int  # stations in the fleet section (0: the section is off)
    fleet_alerts: int  # town-wide alerts
    restarts: int  # broker restarts
    kills: int  # SIGKILLs of the crash loop
    cpu_stations: int
    cpu_alerts: int  # alerts per station per run
    cpu_runs: int


FLEET_MODES = {
    "full": FleetSizes(100, 3, 2, 100, 4, 10, 3),
    "quick": FleetSizes(0, 1, 1, 20, 4, 8, 1),
    "smoke": FleetSizes(3, 1, 1, 2, 1, 2, 1),
}


def _start(folder: Path, broker: Mosquitto, count: int, capture: bool = False) -> Fleet:
    fleet = Fleet(folder, broker, count, capture=capture)
    try:
        fleet.start(timeout=120 + 3 * count)
        fleet.settle(5.0 if count > 20 else 2.0)
    except BaseException:
        fleet.close()
        raise
    return fleet


def _less_idle(cpu: list[float], wall_ms: list[float], idle_ms_per_s: float) -> list[float]:
    return [c - idle_ms_per_s * ms / 1000 for c, ms in zip(cpu, wall_ms, strict=True)]


def alert_cpu(workdir: Path, sizes: FleetSizes) -> dict[str, Any]:
    """CPU per alert to the first sound, `cpu_runs` runs (each a fresh fleet)."""
    keys = ("sound", "sound_schedstat", "playing", "playing_schedstat", "sound_ms", "idle")
    out: dict[str, list[float]] = {key: [] for key in keys}
    for run in range(sizes.cpu_runs):
        with Mosquitto(stamp_log=True) as broker:
            fleet = _start(workdir / f"alertcpu-{run}", broker, sizes.cpu_stations, capture=True)
            try:
                idle = fleet.idle_cpu_ms_per_s(3.0)
                got: dict[str, list[float]] = {key: [] for key in keys}
                for number in range(sizes.cpu_alerts):
                    if number:
                        time.sleep(0.5)
                    r = fleet.town_alert()
                    if r.missing or len(r.sound_ms) < r.stations:
                        raise RuntimeError(f"not every station played: {r.missing}")
                    got["sound"] += _less_idle(r.sound_cpu_ms, r.sound_ms, idle)
                    got["sound_schedstat"] += _less_idle(r.sound_run_ms, r.sound_ms, idle)
                    got["playing"] += _less_idle(r.cpu_ms, r.playing_ms, idle)
                    got["playing_schedstat"] += _less_idle(r.run_ms, r.playing_ms, idle)
                    got["sound_ms"] += r.sound_ms
            finally:
                fleet.close()
        for key in keys[:-1]:
            out[key].append(statistics.fmean(got[key]))
        out["idle"].append(idle)
    note = (
        f"{sizes.cpu_stations} stations × {sizes.cpu_alerts} alerts per run, the mean (ticks "
        "are 10 ms); to the first bytes in the station's ALSA file capture, less idle CPU"
    )
    return {
        "alert_cpu_ms": out["sound"],
        "alert_cpu_schedstat_ms": out["sound_schedstat"],
        "alert_cpu_to_playing_receipt_ms": out["playing"],
        "alert_cpu_to_playing_receipt_schedstat_ms": out["playing_schedstat"],
        "alert_first_sound_ms": out["sound_ms"],
        "alert_cpu_idle_ms_per_s": out["idle"],
        "notes": {"alert_cpu_ms": [note]},
    }


def fleet_figures(workdir: Path, sizes: FleetSizes) -> dict[str, Any]:
    """N stations: one alert (or a few), broker restarts, then the crash loop."""
    n = sizes.fleet
    section: dict[str, Any] = {"label_args": {"fleet": n, "kills": sizes.kills}}
    p50: list[float] = []
    p99: list[float] = []
    high: list[float] = []
    cpu: list[float] = []
    missing: list[int] = []
    back: list[float] = []
    median_back: list[float] = []
    window: list[float] = []
    window_count: list[int] = []
    with Mosquitto(stamp_log=True) as broker:
        fleet = _start(workdir / "fleet", broker, n)
        try:
            section["fleet_start_s"] = [fleet.start_s]
            for number in range(sizes.fleet_alerts):
                if number:
                    time.sleep(2.0)
                result = fleet.town_alert(timeout=120)
                seconds = [ms / 1000 for ms in result.playing_ms]
                missing.append(len(result.missing))
                if seconds:
                    p50.append(percentile(seconds, 50))
                    p99.append(percentile(seconds, 99))
                    high.append(max(seconds))
                    cpu.append(statistics.fmean(result.cpu_ms))
            for number in range(sizes.restarts):
                if number:
                    time.sleep(5.0)
                spread = fleet.reconnect_after_restart(timeout=120)
                if spread.last_s is not None:
                    back.append(spread.last_s)
                if spread.median_s is not None:
                    median_back.append(spread.median_s)
                window.append(100 * spread.busiest_window / n)
                window_count.append(spread.busiest_window)
        finally:
            fleet.close()
    loop = crash_loop(workdir / "crashloop", sizes.kills)
    section.update(
        fleet_playing_p50_s=p50,
        fleet_playing_p99_s=p99,
        fleet_playing_max_s=high,
        fleet_alert_cpu_ms=cpu,
        fleet_no_playing=missing,
        fleet_all_back_s=back,
        fleet_median_back_s=median_back,
        fleet_busiest_window_pct=window,
        fleet_busiest_window_count=window_count,
        crashloop_dup_per_record=[loop.duplicates_per_record],
        crashloop_committed=[loop.committed],
        crashloop_duplicates=[loop.duplicates],
        crashloop_missing=[loop.missing],
    )
    section["notes"] = {
        "fleet_playing_p99_s": [
            f"{n} `cunxiang run` on one Mosquitto, {sizes.fleet_alerts} alert(s); "
            f"stations with no `playing` in 120 s: {max(missing, default=0)}"
        ],
        "fleet_busiest_window_pct": [
            f"station CONNECTs in the busiest 100 ms (log lines stamped on arrival): "
            f"{', '.join(map(str, window_count))} of {n}"
        ],
        "crashloop_dup_per_record": [
            f"{loop.duplicates:,} duplicates over {loop.committed:,} committed seqs, "
            f"{loop.missing} missing"
        ],
    }
    return section
