"""Twenty villages under one alert: every station plays it, and soon (a regression guard).

The fleet figures (docs/performance.md) run 100 `cunxiang run` processes in the benchmark;
this runs 20 (harness/fleet.py) on one private Mosquitto, publishes one town-wide red alert
with a siren, and asserts what the centre sees: a `playing` receipt from every station, with
p99 from publish well inside a generous bound. A station that spends tens of milliseconds of
CPU per alert again (fsyncs on the way to the sound, parsing twice) makes 20 of them queue
for the two cores and the p99 grow; the bound is loose enough for a machine shared with
other test runs and tight enough to see that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.fleet import Fleet
from harness.mosquitto import Mosquitto
from harness.stats import percentile

STATIONS = 20
#: The benchmark's target is 1 s p99 for 100 stations; 20 on a loaded 2-core machine get 3 s.
P99_BOUND_S = 3.0


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_twenty_stations_all_play_a_town_wide_alert_quickly(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        fleet = Fleet(tmp_path, broker, STATIONS)
        try:
            fleet.start(timeout=180)
            fleet.settle(3.0)
            result = fleet.town_alert(timeout=60)
        finally:
            fleet.close()
    assert not result.missing, f"no `playing` from {result.missing}"
    seconds = sorted(ms / 1000 for ms in result.playing_ms)
    p99 = percentile(seconds, 99)
    assert p99 <= P99_BOUND_S, f"publish → playing p99 {p99:.2f} s over {STATIONS}: {seconds}"
