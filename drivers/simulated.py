"""A simulated sensor for demos and tests (config type ``simulated``): no hardware at all.

It reports ``quantity`` every ``interval_s`` seconds, the first reading at once, following one
of four patterns between ``low`` and ``high``:

- ``sine``: a smooth wave of period ``period_s`` starting at ``low`` and peaking at ``high``
  half a period later;
- ``steps``: ``low`` for the first half of every period, ``high`` for the second;
- ``random_walk``: starts half-way and moves by a random step (σ = 5 % of the span) each
  reading, kept inside [low, high]; ``seed`` makes it repeatable;
- ``script``: the ``values`` in order, one per reading, then the last one held.

For a boolean quantity (``smoke``, ``water_present`` …) a script value is taken as true or false,
and the other patterns are true when above the middle of [low, high]. Script values outside the
quantity's physical range are reported flagged ``out_of_range`` with a sensor fault, like a real
sensor's, which is how the demo shows faults.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from drivers.base import BOOLEAN_QUANTITIES, QUANTITY_PATTERN, Clock, Driver, Emit

PATTERNS = ("sine", "steps", "random_walk", "script")
#: Longest single wait of the worker, so an injected clock that jumps is noticed promptly.
MAX_WAIT_S = 0.25


class Pattern:
    """The values of one simulated sensor, one `next()` per reading."""

    def __init__(
        self,
        pattern: str,
        *,
        period_s: float,
        low: float,
        high: float,
        values: Sequence[float | bool] | None,
        seed: int | None,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, not {pattern!r}")
        if period_s <= 0:
            raise ValueError(f"period_s must be above 0, not {period_s}")
        if high < low:
            raise ValueError(f"high ({high}) must not be below low ({low})")
        if pattern == "script" and not values:
            raise ValueError('pattern = "script" needs a non-empty list of values')
        self.pattern = pattern
        self.period_s = float(period_s)
        self.low = float(low)
        self.high = float(high)
        self.values = list(values or ())
        self._rng = random.Random(seed)
        self._walk = (self.low + self.high) / 2
        self._index = 0

    def next(self, elapsed_s: float) -> float:
        """The value of the next reading, taken `elapsed_s` after the sensor started."""
        index, self._index = self._index, self._index + 1
        if self.pattern == "script":
            return float(self.values[min(index, len(self.values) - 1)])
        if self.pattern == "steps":
            phase = math.fmod(elapsed_s, self.period_s)
            return self.high if phase >= self.period_s / 2 else self.low
        if self.pattern == "random_walk":
            return self._step(first=index == 0)
        wave = (1 - math.cos(2 * math.pi * elapsed_s / self.period_s)) / 2
        return round(self.low + (self.high - self.low) * wave, 6)

    def _step(self, *, first: bool) -> float:
        if not first:
            span = self.high - self.low
            moved = self._walk + self._rng.gauss(0.0, span * 0.05)
            self._walk = min(self.high, max(self.low, moved))
        return round(self._walk, 6)

    def as_bool(self, value: float) -> bool:
        """A value of a boolean quantity."""
        if self.pattern == "script":
            return bool(value)
        return value > (self.low + self.high) / 2


class SimulatedDriver(Driver):
    """Reports a pattern of values on a timer (see the module docstring)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        quantity: str,
        pattern: str = "sine",
        period_s: float = 60,
        low: float = 0.0,
        high: float = 1.0,
        interval_s: float = 1.0,
        values: Sequence[float | bool] | None = None,
        seed: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, emit, clock=clock)
        if not QUANTITY_PATTERN.fullmatch(quantity or ""):
            raise ValueError(f"quantity must look like co_ppm or smoke, not {quantity!r}")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be above 0, not {interval_s}")
        self.quantity = quantity
        self.interval_s = float(interval_s)
        self.pattern = Pattern(
            pattern, period_s=period_s, low=low, high=high, values=values, seed=seed
        )

    def _run(self) -> None:
        started = self._clock.monotonic()
        next_at = started
        while not self.stopping:
            now = self._clock.monotonic()
            if now >= next_at:
                self._emit_next(now - started)
                next_at += self.interval_s
                if next_at <= now:  # the clock jumped: carry on from now, no burst
                    next_at = now + self.interval_s
            self._wait(min(next_at - now, MAX_WAIT_S))

    def _emit_next(self, elapsed_s: float) -> None:
        value = self.pattern.next(elapsed_s)
        self._count("frames_ok")
        if self.quantity in BOOLEAN_QUANTITIES:
            self._report(self.quantity, self.pattern.as_bool(value))
        else:
            self._report(self.quantity, value)
