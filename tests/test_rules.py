"""Local alarm rules (docs/protocol.md §9): thresholds, hysteresis, for_s, faults, broadcasts."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import Health, Reading
from gateway.config.rules import RuleConfig
from gateway.rules import LocalBroadcast, RuleEngine, RuleError, RuleEvent

T0 = 1_767_225_600_000


@dataclass(frozen=True)
class Say:
    text: str | None = None
    clip: str | None = None
    repeat: int | None = None
    level: str | None = None


@dataclass(frozen=True)
class Rule:
    name: str = "r"
    sensor: str = "co-1"
    above: float | None = None
    below: float | None = None
    active: bool | None = None
    clear_below: float | None = None
    clear_above: float | None = None
    for_s: float = 0.0
    level: str = "orange"
    broadcast: Say | None = None
    quantity: str | None = None


def reading(value, ts=T0, sensor="co-1", quantity="co_ppm", flags=()) -> Reading:
    return Reading(sensor, quantity, value, ts, flags)


def kinds(events: list[RuleEvent]) -> list[tuple[str, float | bool]]:
    return [(e.kind, e.value) for e in events]


def run(engine: RuleEngine, values, step_ms: int = 1000, **kw) -> list[tuple[str, float | bool]]:
    out = []
    for i, v in enumerate(values):
        out += kinds(engine.feed(reading(v, T0 + i * step_ms, **kw)))
    return out


def test_above_trips_strictly_above_and_clears_with_hysteresis() -> None:
    engine = RuleEngine([Rule(above=50, clear_below=35)])
    assert run(engine, [10, 50, 51, 60, 40, 35, 34.9, 50, 50.1]) == [
        ("alarm", 51),
        ("alarm_cleared", 34.9),
        ("alarm", 50.1),
    ]


def test_clear_threshold_defaults_to_the_trip_threshold() -> None:
    engine = RuleEngine([Rule(above=50)])
    assert run(engine, [51, 50, 49.9]) == [("alarm", 51), ("alarm_cleared", 49.9)]


def test_below_with_clear_above() -> None:
    engine = RuleEngine([Rule(sensor="bat", below=11.5, clear_above=12.0)])
    assert run(engine, [12.5, 11.4, 11.8, 12.0, 12.1], sensor="bat", quantity="battery_v") == [
        ("alarm", 11.4),
        ("alarm_cleared", 12.1),
    ]


def test_active_rule_on_a_boolean_sensor() -> None:
    engine = RuleEngine([Rule(sensor="smoke-1", active=True, level="red")])
    got = run(engine, [False, True, True, False], sensor="smoke-1", quantity="smoke")
    assert got == [("alarm", True), ("alarm_cleared", False)]


def test_active_false_rule_for_mains_failure() -> None:
    engine = RuleEngine([Rule(sensor="mains", active=False)])
    got = run(engine, [True, False, True], sensor="mains", quantity="mains_ok")
    assert got == [("alarm", False), ("alarm_cleared", True)]


def test_alarm_event_carries_rule_level_and_broadcast() -> None:
    say = Say(text="一氧化碳浓度超标，请立即开窗通风并撤离。", repeat=2)
    engine = RuleEngine([Rule(name="co-danger", above=50, level="orange", broadcast=say)])
    [alarm] = engine.feed(reading(80.0, T0 + 5))
    assert alarm == RuleEvent(
        "alarm",
        "co-1",
        "co-danger",
        "orange",
        80.0,
        T0 + 5,
        LocalBroadcast(say.text, None, 2, "orange"),
    )
    [cleared] = engine.feed(reading(10.0, T0 + 9))
    assert cleared == RuleEvent("alarm_cleared", "co-1", "co-danger", "orange", 10.0, T0 + 9, None)
    assert engine.active_alarms() == []


def test_broadcast_level_may_differ_from_the_rule_level() -> None:
    engine = RuleEngine(
        [Rule(above=1, level="yellow", broadcast=Say(clip="co_alarm", level="red"))]
    )
    [alarm] = engine.feed(reading(2.0))
    assert alarm.broadcast == LocalBroadcast(None, "co_alarm", None, "red")


def test_for_s_needs_the_condition_to_hold_by_reading_time() -> None:
    engine = RuleEngine([Rule(above=50, for_s=10)])
    # above at t=0..9 s, dips at 10 s, above again from 11 s: trips at 21 s
    values = [60] * 10 + [40] + [60] * 12
    events = []
    for i, v in enumerate(values):
        events += [(e.kind, e.ts - T0) for e in engine.feed(reading(v, T0 + i * 1000))]
    assert events == [("alarm", 21_000)]


def test_for_s_completes_on_tick_without_new_readings() -> None:
    engine = RuleEngine([Rule(sensor="smoke-1", active=True, for_s=5)])
    assert engine.feed(reading(True, T0, sensor="smoke-1", quantity="smoke")) == []
    assert engine.next_deadline_ms() == T0 + 5000
    assert engine.tick(T0 + 4999) == []
    [alarm] = engine.tick(T0 + 5000)
    assert (alarm.kind, alarm.value, alarm.ts) == ("alarm", True, T0 + 5000)
    assert engine.next_deadline_ms() is None
    assert engine.tick(T0 + 9000) == []  # once


def test_faulty_sensor_never_trips_and_resets_the_wait() -> None:
    engine = RuleEngine([Rule(above=50, for_s=2)])
    engine.feed(reading(60, T0))
    engine.feed(Health("co-1", False, "bad_frames", T0 + 500))
    assert engine.feed(reading(60, T0 + 1000)) == []
    assert engine.tick(T0 + 10_000) == []
    engine.feed(Health("co-1", True, "", T0 + 11_000))
    assert engine.feed(reading(60, T0 + 11_000)) == []  # the wait starts again
    assert kinds(engine.feed(reading(61, T0 + 13_000))) == [("alarm", 61)]


def test_out_of_range_readings_neither_trip_nor_clear() -> None:
    engine = RuleEngine([Rule(above=50)])
    assert engine.feed(reading(5000.0, flags=("out_of_range",))) == []
    assert kinds(engine.feed(reading(60.0))) == [("alarm", 60.0)]
    assert engine.feed(reading(-1.0, flags=("out_of_range",))) == []
    assert engine.active_alarms() == ["r"]
    assert kinds(engine.feed(reading(10.0))) == [("alarm_cleared", 10.0)]


def test_an_alarm_stays_up_while_its_sensor_is_in_fault() -> None:
    engine = RuleEngine([Rule(above=50)])
    engine.feed(reading(60.0))
    engine.feed(Health("co-1", False, "no_data", T0 + 1))
    assert engine.feed(reading(1.0, T0 + 2)) == []
    assert engine.active_alarms() == ["r"]


def test_rules_match_only_their_sensor_quantity_and_value_type() -> None:
    engine = RuleEngine(
        [
            Rule(name="hot", sensor="node-3", quantity="temperature_c", above=40),
            Rule(name="wet", sensor="node-3", active=True),
            Rule(name="other", sensor="co-2", above=0),
        ]
    )
    assert engine.feed(reading(90.0, sensor="node-3", quantity="humidity_pct")) == []
    assert [
        e.rule for e in engine.feed(reading(41.0, sensor="node-3", quantity="temperature_c"))
    ] == ["hot"]
    assert [
        e.rule for e in engine.feed(reading(True, sensor="node-3", quantity="water_present"))
    ] == ["wet"]
    assert engine.feed(reading(True, sensor="unknown", quantity="smoke")) == []


def test_several_rules_on_one_sensor_in_config_order() -> None:
    engine = RuleEngine(
        [Rule(name="warn", above=30, level="yellow"), Rule(name="danger", above=50, level="red")]
    )
    assert [(e.rule, e.level) for e in engine.feed(reading(55.0))] == [
        ("warn", "yellow"),
        ("danger", "red"),
    ]
    assert engine.rules == ["warn", "danger"]


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        (Rule(), "exactly one of above, below or active"),
        (Rule(above=1, below=0), "exactly one"),
        (Rule(above=50, clear_below=60), "clear_below"),
        (Rule(below=5, clear_above=4), "clear_above"),
        (Rule(above=5, clear_above=6), "clear_above does not go"),
        (Rule(active=True, clear_below=1), "clear_below does not go"),
        (Rule(above=float("nan")), "finite"),
        (Rule(above=1, for_s=-1), "for_s"),
        (Rule(above=1, level="purple"), "level"),
        (Rule(above=1, broadcast=Say()), "text or clip"),
        (Rule(above=1, broadcast=Say(text="x", repeat=0)), "repeat"),
        (Rule(above=1, broadcast=Say(text="x", level="pink")), "broadcast.level"),
    ],
)
def test_bad_rules_are_refused_with_the_rule_named(rule: Rule, match: str) -> None:
    with pytest.raises(RuleError, match=match) as info:
        RuleEngine([rule])
    assert '("r")' in str(info.value)


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(RuleError, match="twice"):
        RuleEngine([Rule(above=1), Rule(above=2)])


def test_the_config_model_is_accepted_as_is() -> None:
    cfg = RuleConfig.model_validate(
        {
            "name": "co-danger",
            "sensor": "co-1",
            "above": 50,
            "clear_below": 35,
            "for_s": 10,
            "level": "orange",
            "broadcast": {"text": "一氧化碳浓度超标", "repeat": 2},
        }
    )
    engine = RuleEngine([cfg])
    assert engine.feed(reading(60.0, T0)) == []
    [alarm] = engine.feed(reading(60.0, T0 + 10_000))
    assert alarm.broadcast == LocalBroadcast("一氧化碳浓度超标", None, 2, "orange")


@given(
    st.lists(st.floats(0, 100, allow_nan=False), max_size=60),
    st.floats(10, 90),
    st.floats(0, 20),
)
def test_alarms_and_clears_alternate_and_match_the_thresholds(values, trip, gap) -> None:
    engine = RuleEngine([replace(Rule(), above=trip, clear_below=trip - gap)])
    events = [e for i, v in enumerate(values) for e in engine.feed(reading(v, T0 + i))]
    assert [e.kind for e in events] == ["alarm", "alarm_cleared"] * (len(events) // 2) + (
        ["alarm"] if len(events) % 2 else []
    )
    assert all(e.value > trip for e in events if e.kind == "alarm")
    assert all(e.value < trip - gap for e in events if e.kind == "alarm_cleared")
