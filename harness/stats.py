"""Medians, spreads and percentiles, the way every figure of the suite is summarised.

Why this module exists: docs/performance.md asks for the median of several runs with its spread,
and the latency figures are percentiles of many samples within a run; one definition of each
keeps the table consistent.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0–100) by the nearest-rank method: a value that was measured."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Spread:
    """The median of several runs, the smallest and largest, and every run."""

    median: float
    low: float
    high: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, runs: Sequence[float]) -> Spread:
        """Summarise the per-run values of one figure."""
        if not runs:
            raise ValueError("no runs")
        return cls(statistics.median(runs), min(runs), max(runs), tuple(runs))
