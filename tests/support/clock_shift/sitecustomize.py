"""Test support: a station process whose wall clock is wrong, as a Pi without a real-time clock boots.

Put this folder first on PYTHONPATH and set CX_TEST_CLOCK_OFFSET_S: Python's
`time.time` and `time.time_ns` (what the station reads the clock with) are
shifted by that many seconds; monotonic time is left alone. Used by the trust
tests to show that the station's time floor, not its clock, keeps old messages
old (docs/protocol.md §6.1).
"""

from __future__ import annotations

import os
import time

_OFFSET = os.environ.get("CX_TEST_CLOCK_OFFSET_S")

if _OFFSET:
    _shift_ns = int(float(_OFFSET) * 1_000_000_000)
    _real_time, _real_time_ns = time.time, time.time_ns

    def _time() -> float:
        return _real_time() + _shift_ns / 1_000_000_000

    def _time_ns() -> int:
        return _real_time_ns() + _shift_ns

    time.time = _time
    time.time_ns = _time_ns
