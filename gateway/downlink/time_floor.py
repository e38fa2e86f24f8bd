"""The station's time floor: a lower bound on "now" that survives reboots (docs/protocol.md §6.1).

A Pi has no real-time clock, and NTP is unauthenticated and often blocked on
village links, so an unsynced clock may say 1970 or last month. Skipping time
checks then would let any message signed long ago play or run again. Instead
the station keeps a floor in its database (a row of the `state` table):

- while the clock is synced, the floor is the clock (saved at least every
  10 minutes and at a clean stop): a synced clock is the authority, even over a
  floor that a wrong `sent` pushed ahead;
- while the clock is unsynced, the floor never goes down, and it rises to the
  `sent` of every verified message the station accepts;
- a new database starts it at the release date of the installed version.

Time checks then use `now_ms()`: the clock while synced, else the later of the
clock and the floor.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Protocol

from gateway import __release_date__
from gateway.clock import StationClock

log = logging.getLogger(__name__)

#: The `state` row that holds the floor, epoch ms as decimal text.
STATE_KEY = "time_floor"
#: While the clock is synced the saved floor lags it by at most this much.
SAVE_INTERVAL_S = 600.0


def release_ms(release_date: str = __release_date__) -> int:
    """Midnight UTC of the release date, epoch ms."""
    day = datetime.fromisoformat(release_date).replace(tzinfo=UTC)
    return int(day.timestamp() * 1000)


class FloorStore(Protocol):
    """Where the floor is kept (gateway/store/outbox.py `Store`)."""

    def state_value(self, key: str) -> str | None: ...

    def save_state_value(self, key: str, value: str) -> None: ...


class TimeFloor:
    """The persisted time floor and the "now" every time check uses."""

    def __init__(self, store: FloorStore, clock: StationClock, start_ms: int | None = None) -> None:
        self.store = store
        self.clock = clock
        saved = store.state_value(STATE_KEY)
        floor = release_ms() if start_ms is None else start_ms
        if saved is not None:
            try:
                floor = max(floor, int(saved))
            except ValueError:
                log.error("time floor %r in the database is not a number; starting over", saved)
        self._floor = floor
        self._saved = saved
        self._saved_at = 0.0
        self.tick(force=True)

    @property
    def floor_ms(self) -> int:
        return self._floor

    def synced(self) -> bool:
        return self.clock.synced()

    def now_ms(self) -> int:
        """The time checks' now: the clock while synced, else max(clock, floor)."""
        now = self.clock.now_ms()
        return now if self.clock.synced() else max(now, self._floor)

    def accepted(self, sent_ms: int) -> None:
        """A verified message sent at `sent_ms` was accepted: while unsynced, raise the floor."""
        if self.clock.synced() or sent_ms <= self._floor:
            return
        self._floor = sent_ms
        self._save()

    def tick(self, *, force: bool = False) -> None:
        """While synced, follow the clock; save at least every SAVE_INTERVAL_S (or now if forced)."""
        if not self.clock.synced():
            if force and self._saved != str(self._floor):
                self._save()
            return
        self._floor = self.clock.now_ms()
        if force or time.monotonic() - self._saved_at >= SAVE_INTERVAL_S:
            self._save()

    def _save(self) -> None:
        value = str(self._floor)
        try:
            self.store.save_state_value(STATE_KEY, value)
        except Exception as exc:  # a full disk must not stop alerts; the floor stays in memory
            log.error("cannot save the time floor: %s", exc)
            return
        self._saved = value
        self._saved_at = time.monotonic()
