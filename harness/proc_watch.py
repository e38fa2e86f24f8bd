"""Resident memory and open file descriptors of a running process, sampled over time.

Why this module exists: a station runs for months: memory or descriptors that grow with every
broker restart, every garbage byte or every forged message end in an OOM kill or EMFILE at the
worst moment. The fault suite watches the service from outside, the way an operator would with
`ps`: `ProcWatch` samples VmRSS and the number of open descriptors (harness/procstat.py) every
`interval` seconds in a thread, and summarises them as first / last / max.

Growth is judged on the samples taken after a warm-up (imports, caches, the SQLite page cache
and paho's buffers fill during the first seconds): `growth_kib()` compares the highest value of
the last third of the samples with the highest value of the first third after warm-up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from harness.procstat import open_fds, rss_kib


@dataclass
class Series:
    """Samples of one quantity: (seconds since the watch started, value)."""

    name: str
    unit: str
    samples: list[tuple[float, int]] = field(default_factory=list)

    def values(self, after_s: float = 0.0) -> list[int]:
        return [v for t, v in self.samples if t >= after_s]

    def summary(self, after_s: float = 0.0) -> dict[str, int | None]:
        values = self.values(after_s)
        if not values:
            return {"first": None, "last": None, "max": None, "growth": None}
        return {
            "first": values[0],
            "last": values[-1],
            "max": max(values),
            "growth": self.growth(after_s),
        }

    def growth(self, after_s: float = 0.0) -> int | None:
        """Highest value of the last third minus highest value of the first third (after warm-up)."""
        values = self.values(after_s)
        if len(values) < 3:
            return None
        third = len(values) // 3
        return max(values[-third:]) - max(values[:third])


class ProcWatch:
    """Samples RSS (KiB) and open fds of `pid` every `interval` s until `stop()`."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.rss = Series("rss", "KiB")
        self.fds = Series("fds", "")
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Take one sample now (also called by the thread)."""
        now = time.monotonic() - self._start
        rss, fds = rss_kib(self.pid), open_fds(self.pid)
        if rss is not None:
            self.rss.samples.append((now, rss))
        if fds is not None:
            self.fds.samples.append((now, fds))

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(5)

    def summary(self, after_s: float = 0.0) -> dict[str, dict[str, int | None]]:
        return {"rss_kib": self.rss.summary(after_s), "fds": self.fds.summary(after_s)}
