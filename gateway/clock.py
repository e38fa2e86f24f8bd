"""Whether the station's clock can be trusted.

A Pi has no real-time clock: after a power cut it boots at whatever time the
last shutdown saved until NTP fixes it over a link that may not be up yet.
While the clock is unsynced, readings are flagged and time checks use the
later of the clock and the persisted time floor (docs/protocol.md §6.1,
gateway/downlink/time_floor.py). `auto` asks the kernel, as `timedatectl` does (adjtimex: the clock
is synchronised unless the kernel reports TIME_ERROR / STA_UNSYNC).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from typing import Literal

from drivers.base import now_ms

TIME_ERROR = 5
STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: mode, then ten longs and a timeval,
    # then more fields we do not read; padded generously.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


def kernel_clock_synced() -> bool:
    """The kernel's NTP-synchronised flag; False when it cannot be read."""
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    try:
        libc = ctypes.CDLL(path, use_errno=True)
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return False
    return bool(state not in (-1, TIME_ERROR) and not (timex.status & STA_UNSYNC))


class StationClock:
    """Wall-clock time in epoch ms, and whether it is synced (config `station.clock`)."""

    def __init__(self, mode: Literal["auto", "synced", "unsynced"]) -> None:
        self.mode = mode
        self._cached: tuple[float, bool] | None = None

    def now_ms(self) -> int:
        return now_ms()

    def synced(self) -> bool:
        """Checked at most every 10 s in `auto` mode (adjtimex is cheap, but not free)."""
        if self.mode != "auto":
            return self.mode == "synced"
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > 10:
            self._cached = (now, kernel_clock_synced())
        return self._cached[1]
