"""Local alarm rules (docs/protocol.md §9): readings in, ``alarm`` / ``alarm_cleared`` events out.

The engine is fed every `Reading` and `Health` as it arrives and answers at once with the events
it causes, so a smoke contact closing becomes an alarm without any polling delay. `tick(now_ms)`
(or a timer set for `next_deadline_ms()`) completes rules with ``for_s`` when no new reading comes.

Semantics, per rule:

- trip when the value is strictly above ``above``, strictly below ``below``, or equal to
  ``active`` (booleans); the condition must hold ``for_s`` seconds, measured with reading
  timestamps (and the `tick` time), before the ``alarm``;
- clear (``alarm_cleared``) when the value is strictly below ``clear_below`` (default:
  ``above``), strictly above ``clear_above`` (default: ``below``), or no longer ``active``;
- a rule with ``quantity`` looks only at readings of that quantity; without it, threshold rules
  look only at numeric readings and ``active`` rules only at booleans;
- a sensor in fault (its last `Health` was not ok) and a reading flagged ``out_of_range`` can
  neither trip nor clear a rule and reset a ``for_s`` wait: an alarm raised on good data stays
  up until good data clears it.

The engine is not thread-safe; the service feeds it from its event loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from audio.levels import WARNING_LEVELS, WarningLevel
from drivers.base import FLAG_OUT_OF_RANGE, Health, Reading


class BroadcastSpec(Protocol):
    """What `gateway.config.rules.RuleBroadcast` provides."""

    @property
    def text(self) -> str | None: ...
    @property
    def clip(self) -> str | None: ...
    @property
    def repeat(self) -> int | None: ...
    @property
    def level(self) -> str | None: ...


class RuleSpec(Protocol):
    """What `gateway.config.rules.RuleConfig` provides (``quantity`` is read when present)."""

    @property
    def name(self) -> str: ...
    @property
    def sensor(self) -> str: ...
    @property
    def above(self) -> float | None: ...
    @property
    def below(self) -> float | None: ...
    @property
    def active(self) -> bool | None: ...
    @property
    def clear_below(self) -> float | None: ...
    @property
    def clear_above(self) -> float | None: ...
    @property
    def for_s(self) -> float: ...
    @property
    def level(self) -> str: ...
    @property
    def broadcast(self) -> BroadcastSpec | None: ...


class RuleError(ValueError):
    """A rule that cannot be evaluated; the message names the rule."""


@dataclass(frozen=True, slots=True)
class LocalBroadcast:
    """A rule's request to speak on the loudspeakers; `level` defaults to the rule's."""

    text: str | None
    clip: str | None
    repeat: int | None
    level: WarningLevel


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """An ``alarm`` (with the rule's broadcast, if any) or an ``alarm_cleared``."""

    kind: Literal["alarm", "alarm_cleared"]
    sensor: str
    rule: str
    level: WarningLevel
    value: float | bool
    ts: int
    broadcast: LocalBroadcast | None = None


@dataclass(frozen=True, slots=True)
class _Condition:
    """A rule's trip and clear tests, validated."""

    kind: Literal["above", "below", "active"]
    trip_at: float | bool
    clear_at: float | bool

    def accepts(self, value: float | bool) -> bool:
        return isinstance(value, bool) == (self.kind == "active")

    def trips(self, value: float | bool) -> bool:
        if self.kind == "active":
            return value is self.trip_at
        if self.kind == "above":
            return value > self.trip_at
        return value < self.trip_at

    def clears(self, value: float | bool) -> bool:
        if self.kind == "active":
            return value is not self.trip_at
        if self.kind == "above":
            return value < self.clear_at
        return value > self.clear_at


class _RuleState:
    """One rule and where it stands."""

    def __init__(self, spec: RuleSpec) -> None:
        self.name = spec.name
        self.sensor = spec.sensor
        self.quantity: str | None = getattr(spec, "quantity", None)
        self.condition = _condition(spec)
        self.for_ms = _for_ms(spec)
        self.level = _level(spec.name, "level", spec.level)
        self.broadcast = _broadcast(spec, self.level)
        self.active = False
        self.pending_since: int | None = None
        self.last_value: float | bool | None = None

    def applies_to(self, reading: Reading) -> bool:
        if self.quantity is not None and reading.quantity != self.quantity:
            return False
        return self.condition.accepts(reading.value)

    def alarm(self, value: float | bool, ts: int) -> RuleEvent:
        self.active, self.pending_since = True, None
        return RuleEvent("alarm", self.sensor, self.name, self.level, value, ts, self.broadcast)

    def cleared(self, value: float | bool, ts: int) -> RuleEvent:
        self.active, self.pending_since = False, None
        return RuleEvent("alarm_cleared", self.sensor, self.name, self.level, value, ts)

    def due(self, now_ms: int) -> bool:
        return self.pending_since is not None and now_ms - self.pending_since >= self.for_ms


class RuleEngine:
    """Evaluates local rules as readings arrive (see the module docstring)."""

    def __init__(self, rules: Iterable[RuleSpec]) -> None:
        self._rules: list[_RuleState] = []
        self._by_sensor: dict[str, list[_RuleState]] = {}
        self._faulty: set[str] = set()
        for spec in rules:
            if any(r.name == spec.name for r in self._rules):
                raise RuleError(f'rules ("{spec.name}"): the name is used twice')
            state = _RuleState(spec)
            self._rules.append(state)
            self._by_sensor.setdefault(state.sensor, []).append(state)

    @property
    def rules(self) -> Sequence[str]:
        """Rule names, in config order."""
        return [r.name for r in self._rules]

    def active_alarms(self) -> list[str]:
        """Names of the rules whose alarm is up."""
        return [r.name for r in self._rules if r.active]

    def feed(self, item: Reading | Health) -> list[RuleEvent]:
        """The events caused by one reading or health change, in rule order."""
        if isinstance(item, Health):
            self._health(item)
            return []
        rules = self._by_sensor.get(item.sensor, ())
        if item.sensor in self._faulty or FLAG_OUT_OF_RANGE in item.flags:
            for rule in rules:
                rule.pending_since = None
            return []
        events: list[RuleEvent] = []
        for rule in rules:
            if rule.applies_to(item):
                event = self._evaluate(rule, item.value, item.ts)
                if event is not None:
                    events.append(event)
        return events

    def tick(self, now_ms: int) -> list[RuleEvent]:
        """Alarms whose ``for_s`` has run out with no new reading to show it."""
        events: list[RuleEvent] = []
        for rule in self._rules:
            if not rule.active and rule.due(now_ms) and rule.last_value is not None:
                events.append(rule.alarm(rule.last_value, now_ms))
        return events

    def next_deadline_ms(self) -> int | None:
        """When `tick` next has something to do (epoch ms), or None."""
        due = [
            r.pending_since + r.for_ms
            for r in self._rules
            if r.pending_since is not None and not r.active
        ]
        return min(due, default=None)

    def _health(self, health: Health) -> None:
        if health.ok:
            self._faulty.discard(health.sensor)
            return
        self._faulty.add(health.sensor)
        for rule in self._by_sensor.get(health.sensor, ()):
            rule.pending_since = None

    def _evaluate(self, rule: _RuleState, value: float | bool, ts: int) -> RuleEvent | None:
        rule.last_value = value
        if rule.active:
            return rule.cleared(value, ts) if rule.condition.clears(value) else None
        if not rule.condition.trips(value):
            rule.pending_since = None
            return None
        if rule.pending_since is None:
            rule.pending_since = ts
        return rule.alarm(value, ts) if rule.due(ts) else None


# -- validation ------------------------------------------------------------------------------


def _condition(spec: RuleSpec) -> _Condition:
    given = [k for k in ("above", "below", "active") if getattr(spec, k) is not None]
    if len(given) != 1:
        raise RuleError(f'rules ("{spec.name}"): needs exactly one of above, below or active')
    if spec.active is not None:
        _no_clear(spec, "clear_below", "clear_above")
        return _Condition("active", spec.active, spec.active)
    if spec.above is not None:
        _no_clear(spec, "clear_above")
        trip = _number(spec.name, "above", spec.above)
        clear = (
            trip
            if spec.clear_below is None
            else _number(spec.name, "clear_below", spec.clear_below)
        )
        if clear > trip:
            raise RuleError(f'rules ("{spec.name}"): clear_below ({clear}) is above above ({trip})')
        return _Condition("above", trip, clear)
    assert spec.below is not None
    _no_clear(spec, "clear_below")
    trip = _number(spec.name, "below", spec.below)
    clear = (
        trip if spec.clear_above is None else _number(spec.name, "clear_above", spec.clear_above)
    )
    if clear < trip:
        raise RuleError(f'rules ("{spec.name}"): clear_above ({clear}) is below below ({trip})')
    return _Condition("below", trip, clear)


def _no_clear(spec: RuleSpec, *keys: str) -> None:
    for key in keys:
        if getattr(spec, key) is not None:
            raise RuleError(f'rules ("{spec.name}"): {key} does not go with this kind of rule')


def _number(rule: str, key: str, value: float) -> float:
    if isinstance(value, bool) or not math.isfinite(value):
        raise RuleError(f'rules ("{rule}").{key}: needs a finite number, not {value!r}')
    return float(value)


def _for_ms(spec: RuleSpec) -> int:
    if not math.isfinite(spec.for_s) or spec.for_s < 0:
        raise RuleError(f'rules ("{spec.name}").for_s: needs 0 or more seconds, not {spec.for_s}')
    return round(spec.for_s * 1000)


def _level(rule: str, key: str, level: str) -> WarningLevel:
    for known in WARNING_LEVELS:
        if level == known:
            return known
    raise RuleError(
        f'rules ("{rule}").{key}: must be one of {", ".join(WARNING_LEVELS)}, not {level!r}'
    )


def _broadcast(spec: RuleSpec, rule_level: WarningLevel) -> LocalBroadcast | None:
    b = spec.broadcast
    if b is None:
        return None
    if b.text is None and b.clip is None:
        raise RuleError(f'rules ("{spec.name}").broadcast: needs text or clip')
    if b.repeat is not None and not 1 <= b.repeat <= 10:
        raise RuleError(f'rules ("{spec.name}").broadcast.repeat: must be 1..10, not {b.repeat}')
    level = rule_level if b.level is None else _level(spec.name, "broadcast.level", b.level)
    return LocalBroadcast(b.text, b.clip, b.repeat, level)
