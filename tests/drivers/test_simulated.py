"""The simulated sensor: each pattern's values, booleans, out-of-range faults, timing."""

from __future__ import annotations

import itertools
import math
import time

import pytest

from drivers.simulated import Pattern


def _values(pattern: str, n: int, step: float, **kw) -> list[float]:
    params = {"period_s": 60.0, "low": 0.5, "high": 3.5, "values": None, "seed": None} | kw
    p = Pattern(pattern, **params)
    return [p.next(i * step) for i in range(n)]


def test_sine_starts_low_and_peaks_half_a_period_later() -> None:
    values = _values("sine", 61, 1.0)
    assert values[0] == 0.5
    assert values[30] == pytest.approx(3.5)
    assert values[60] == pytest.approx(0.5)
    assert all(0.5 <= v <= 3.5 for v in values)


def test_steps_alternate_every_half_period() -> None:
    assert _values("steps", 4, 15.0) == [0.5, 0.5, 3.5, 3.5]


def test_random_walk_is_bounded_and_repeatable_with_a_seed() -> None:
    a = _values("random_walk", 500, 1.0, seed=7)
    assert a == _values("random_walk", 500, 1.0, seed=7)
    assert a != _values("random_walk", 500, 1.0, seed=8)
    assert a[0] == 2.0
    assert all(0.5 <= v <= 3.5 for v in a)
    assert len(set(a)) > 100


def test_script_plays_in_order_then_holds_the_last() -> None:
    assert _values("script", 5, 1.0, values=[0.5, 0.6, 3.9]) == [0.5, 0.6, 3.9, 3.9, 3.9]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"pattern": "zigzag"}, "pattern"),
        ({"pattern": "script"}, "values"),
        ({"low": 2.0, "high": 1.0}, "high"),
        ({"period_s": 0}, "period_s"),
    ],
)
def test_bad_patterns_are_refused(kw: dict, match: str) -> None:
    params = {"pattern": "sine", "period_s": 60.0, "low": 0.0, "high": 1.0} | kw
    with pytest.raises(ValueError, match=match):
        Pattern(params.pop("pattern"), values=None, seed=None, **params)


def test_driver_reports_script_values_with_faults(make_driver, collector, fake_clock):
    make_driver(
        "simulated",
        "sim-co",
        quantity="co_ppm",
        pattern="script",
        values=[5, 40, 5000, 12],
        interval_s=1,
        clock=fake_clock,
    )
    collector.wait_readings(1)
    for n in range(2, 5):
        fake_clock.advance(1)
        collector.wait_readings(n, timeout=2)
    readings = collector.readings()
    assert [(r.value, r.flags) for r in readings] == [
        (5.0, ()),
        (40.0, ()),
        (5000.0, ("out_of_range",)),
        (12.0, ()),
    ]
    assert [r.ts - readings[0].ts for r in readings] == [0, 1000, 2000, 3000]
    assert [h.reason for h in collector.health()] == ["out_of_range", ""]


def test_boolean_quantity_from_a_script(make_driver, collector):
    make_driver(
        "simulated", quantity="smoke", pattern="script", values=[False, True, 0], interval_s=0.02
    )
    values = [r.value for r in collector.wait_readings(4)]
    assert values[:4] == [False, True, False, False]


def test_real_time_interval(make_driver, collector):
    make_driver("simulated", quantity="water_level_m", pattern="sine", interval_s=0.05)
    readings = collector.wait_readings(5)
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(readings)][:4]
    assert all(30 <= g <= 150 for g in gaps), gaps
    assert all(math.isfinite(r.value) for r in readings)


def test_a_failing_consumer_does_not_stop_the_driver(make_driver):
    calls = []

    def emit(item):
        calls.append(item)
        raise RuntimeError("store is full")

    from drivers.registry import create

    driver = create("simulated", "sim", emit, quantity="co_ppm", interval_s=0.01)
    driver.start()
    try:
        deadline = time.monotonic() + 3
        while len(calls) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        driver.stop()
    assert len(calls) >= 5
    assert driver.stats["emit_errors"] >= 5
