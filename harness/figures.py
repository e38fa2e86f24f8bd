"""The targets table of docs/performance.md § Targets, as data: each figure, its target, the rival.

Why this module exists: the suite (benchmarks/suite.py) prints and writes every figure against
its target and beside the ThingsBoard IoT Gateway 3.8.5 column of the design (measured on the
same machine by the design's authors; this suite does not run ThingsBoard). Keeping the table
in one place keeps the printed table, the JSON and docs/performance.md saying the same thing,
and lets tests/test_benchmarks_quick.py check that a smoke run reports every figure without
importing the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.stats import Spread


@dataclass(frozen=True)
class Figure:
    """One row of the targets table."""

    key: str
    label: str  # may name {readings}, {outage_s}, {window_s}, {fleet}, {kills}
    target: str
    unit: str
    thingsboard: str
    passes: Callable[[Spread], bool | None]
    digits: int = 1  # decimals shown
    note: str = ""  # printed under the table

    def render(self, value: float) -> str:
        """A value of this figure as printed (thousands separated)."""
        return f"{value:,.{self.digits}f}"


def at_most(limit: float) -> Callable[[Spread], bool]:
    """Passes when the median is at most `limit`."""
    return lambda s: s.median <= limit


def at_least(limit: float) -> Callable[[Spread], bool]:
    """Passes when the median is at least `limit`."""
    return lambda s: s.median >= limit


def no_target() -> Callable[[Spread], bool | None]:
    """A figure shown for reading the others (a p50 beside its p99): no pass or fail."""
    return lambda s: None


def never() -> Callable[[Spread], bool]:
    """Passes when no run counted any (lost or duplicated readings)."""
    return lambda s: s.high == 0


FIGURES: tuple[Figure, ...] = (
    Figure(
        "alert_p50_ms",
        "alert publish → first sound chunk to stream.write(), p50",
        "≤ 2 ms",
        "ms",
        "(no broadcast)",
        at_most(2),
        2,
    ),
    Figure(
        "alert_p99_ms",
        "alert publish → first sound chunk to stream.write(), p99",
        "≤ 5 ms",
        "ms",
        "(no broadcast)",
        at_most(5),
        2,
    ),
    Figure(
        "text_p50_ms",
        "text alert (new text, no tone) publish → first sound chunk to stream.write(), p50",
        "≤ 60 ms",
        "ms",
        "(no broadcast)",
        at_most(60),
        1,
    ),
    Figure(
        "text_p99_ms",
        "text alert (new text, no tone) publish → first sound chunk to stream.write(), p99",
        "≤ 150 ms",
        "ms",
        "(no broadcast)",
        at_most(150),
        1,
    ),
    Figure(
        "cap_earthquake_s",
        "whole broadcast, USGS earthquake.cap (English, blue: chime, 1 play)",
        "≤ 45 s",
        "s",
        "—",
        at_most(45),
        1,
        "spelled letter by letter before issue 13: 42.9 s",
    ),
    Figure(
        "cap_earthquake_iso_s",
        "whole broadcast, USGS earthquake-iso8859-1.cap (English, blue: chime, 1 play)",
        "≤ 45 s",
        "s",
        "—",
        at_most(45),
        1,
        "spelled letter by letter before issue 13: 50.9 s",
    ),
    Figure(
        "cap_weather_s",
        "whole broadcast, NWS weather.cap flash flood watch (English, orange: siren, 3 plays)",
        "≤ 150 s",
        "s",
        "—",
        at_most(150),
        1,
        "spelled letter by letter before issue 13: 620.7 s; repeats say headline + instruction",
    ),
    Figure(
        "cap_canada_s",
        "whole broadcast, Environment Canada canada.cap (French, orange: siren, 3 plays)",
        "≤ 75 s",
        "s",
        "—",
        at_most(75),
        1,
        "spelled letter by letter before issue 13: 119.2 s",
    ),
    Figure(
        "gpio_alarm_p99_ms",
        "smoke GPIO edge → alarm event committed, p99",
        "≤ 10 ms",
        "ms",
        "—",
        at_most(10),
        2,
        "pin.drive_low() to Station.on_record('alarm'), called after Store.add_event's COMMIT",
    ),
    Figure(
        "ingest_per_s",
        "ingest, durable readings/s",
        "≥ 300,000",
        "readings/s",
        "≈ 2,800",
        at_least(300_000),
        0,
    ),
    Figure(
        "drain_per_s",
        "drain of {readings:,} readings, QoS 1, readings/s at the centre",
        "≥ 600,000",
        "readings/s",
        "≈ 33,000 (100,000 records)",
        at_least(600_000),
        0,
    ),
    Figure("drain_lost", "drain: readings lost", "0", "readings", "0", never(), 0),
    Figure(
        "drain_duplicates",
        "drain: readings duplicated",
        "0",
        "readings",
        "0.9 %",
        never(),
        0,
    ),
    Figure(
        "outage_recovery_s",
        "broker back after a {outage_s:g} s outage → telemetry flowing, median",
        "≤ 10 s",
        "s",
        "37 s",
        at_most(10),
        2,
    ),
    Figure(
        "bytes_per_reading_bulk",
        "bytes written per reading, ingest + drain of {readings:,}",
        "≤ 120",
        "B",
        "≈ 820",
        at_most(120),
        1,
    ),
    Figure(
        "bytes_per_reading_service",
        "bytes written per reading, service, 10 sensors at 1 Hz",
        "≤ 120",
        "B",
        "—",
        at_most(120),
        0,
        "one fsync'd commit a second of ~10 readings; a commit dirties at least one 4 KiB "
        "page, so 410 B is the floor at commit_interval_s = 1 (docs/performance.md)",
    ),
    Figure(
        "rss_idle_mb",
        "peak RSS of cunxiang run, idle (10 sensors at 1 Hz)",
        "≤ 45 MB",
        "MB",
        "—",
        at_most(45),
        1,
        "VmHWM of the real service (bytecode compiled, as installed) after start-up and the "
        "load window",
    ),
    Figure(
        "rss_drain_mb",
        "peak RSS of cunxiang run while draining {readings:,}",
        "≤ 70 MB",
        "MB",
        "135 MB peak (100,000 records)",
        at_most(70),
        1,
    ),
    Figure(
        "cpu_us_per_reading",
        "CPU per reading, ingest + drain",
        "≤ 5 µs",
        "µs",
        "≈ 400 µs",
        at_most(5),
        2,
    ),
    Figure(
        "cpu_share_pct",
        "CPU, 10 sensors at 1 Hz, idle otherwise ({window_s:g} s)",
        "≤ 1 % of one core",
        "%",
        "—",
        at_most(1.0),
        2,
        "the service's CPU time (all threads) over the window, broker connected",
    ),
    Figure(
        "status_answer_p99_ms",
        "status request, time in the service, p99 of 200 ({readings:,} backlog)",
        "≤ 5 ms",
        "ms",
        "—",
        at_most(5.0),
        2,
        "measured inside the service (StatusServer), 10 sensors at 1 Hz writing meanwhile",
    ),
    Figure(
        "export_s",
        "cunxiang export of {readings:,} readings (jsonl) while the service writes",
        "≤ 30 s",
        "s",
        "—",
        at_most(30.0),
        1,
        "wall time of the command, start-up included",
    ),
    Figure(
        "export_rss_growth_mb",
        "export memory growth: peak RSS of all {readings:,} minus of the first tenth",
        "≤ 5 MB (flat)",
        "MB",
        "—",
        at_most(5.0),
        1,
        "wait4 ru_maxrss of both export processes",
    ),
    Figure(
        "alert_cpu_ms",
        "station CPU time per alert (red, siren), publish → first sound",
        "≤ 5 ms",
        "ms",
        "—",
        at_most(5),
        2,
        "utime + stime of /proc/<pid>/stat, all threads (benchmarks/fleet.py)",
    ),
    Figure(
        "fleet_playing_p50_s",
        "{fleet} stations, one red alert (siren) → `playing` at the centre, p50",
        "—",
        "s",
        "—",
        no_target(),
        2,
    ),
    Figure(
        "fleet_playing_p99_s",
        "{fleet} stations, one red alert (siren) → `playing` at the centre, p99",
        "≤ 1 s",
        "s",
        "—",
        at_most(1.0),
        2,
    ),
    Figure(
        "fleet_playing_max_s",
        "{fleet} stations, one red alert (siren) → `playing` at the centre, max",
        "—",
        "s",
        "—",
        no_target(),
        2,
    ),
    Figure(
        "fleet_all_back_s",
        "{fleet} stations, broker restarted → all connected again",
        "≤ 10 s",
        "s",
        "—",
        at_most(10.0),
        2,
        "from the broker answering on its port to the last station's CONNECT accepted",
    ),
    Figure(
        "fleet_busiest_window_pct",
        "{fleet} stations, broker restarted → CONNECTs in the busiest 100 ms, % of the fleet",
        "≤ 25 %",
        "%",
        "—",
        at_most(25.0),
        0,
    ),
    Figure(
        "crashloop_dup_per_record",
        "duplicates at the centre per committed record, {kills} SIGKILLs during a drain",
        "≤ 0.05",
        "per record",
        "—",
        at_most(0.05),
        3,
    ),
)
