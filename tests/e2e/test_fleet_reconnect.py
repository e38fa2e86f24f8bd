"""Twenty stations and one broker restart: the reconnects are spread, and all come back soon.

A regression guard for issue 17's reconnect spread (the 100-station figure is the fleet
benchmark's): with the defaults (`reconnect_min_s` 1, `reconnect_max_s` 60) the first attempts
after a lost connection are spread over 2 s, so on average a 100 ms window sees a twentieth
of a fleet. Before, every station retried between 1 and 1.5 s (and a test fleet with 0.2 s
between 0.2 and 0.3 s): most of a fleet hit the broker in the same instant. The margins here
are generous — on a loaded 2-core machine start-up and scheduling blur the times — but a
return to lock-step (all 20 within 100 ms) or a station left behind fails.
"""

from __future__ import annotations

from pathlib import Path

from harness.fleet import Fleet, busiest_window
from harness.mosquitto import Mosquitto

STATIONS = 20


def test_busiest_window_counts_a_sliding_100_ms() -> None:
    assert busiest_window([0, 50, 99, 100, 150, 400]) == 3
    assert busiest_window([0, 100, 200]) == 1
    assert busiest_window([]) == 0


def test_a_fleet_comes_back_spread_out_after_a_broker_restart(tmp_path: Path) -> None:
    with Mosquitto(stamp_log=True) as broker, Fleet(tmp_path, broker, STATIONS) as fleet:
        fleet.start(timeout=120)
        spread = fleet.reconnect_after_restart(timeout=30)
        print(f"fleet of {STATIONS}: {spread.as_dict()}")
        assert spread.back == STATIONS, spread
        # A quarter of the fleet is the target; half is the margin for a loaded machine.
        assert spread.busiest_window <= STATIONS // 2, spread
        assert spread.median_s <= 3.0, spread  # ~reconnect_min_s (1 s) on an idle machine
        assert spread.last_s <= 10.0, spread
