"""From schedules to dated occurrences: when each routine item plays, in its own time zone.

A schedule says "07:30 on mon and thu, Asia/Shanghai, between 1 July and 30 September";
the scheduler needs "epoch millisecond 1782862200000, broadcast id
prog:371581-routine:morning-notice:2026-07-02". This module does that arithmetic and
nothing else, so it can be checked on its own. A local time that a daylight-saving change
skips plays at the same wall-clock reading after the change (zoneinfo's `fold` rules).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.programmes.model import ItemBase, LocalProgramme, QuietHours, Schedule

DAY_MS = 86_400_000
#: Key and schedule id of the config file's own items.
LOCAL_KEY = "local"
#: How far ahead `upcoming` looks for the next items.
LOOKAHEAD_DAYS = 31


@dataclass(frozen=True)
class Slot:
    """One item of one schedule in force, with what it needs from its schedule."""

    key: str  # the signing key, or "local" for the config file's items
    schedule_id: str
    item: ItemBase
    zone: ZoneInfo
    quiet: QuietHours | None = None
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None

    def plays_on(self, day: dt.date) -> bool:
        if self.valid_from is not None and day < self.valid_from:
            return False
        if self.valid_until is not None and day > self.valid_until:
            return False
        return self.item.on_day(day)

    def in_quiet_hours(self, moment_ms: int) -> bool:
        if self.quiet is None:
            return False
        local = dt.datetime.fromtimestamp(moment_ms / 1000, self.zone)
        return self.quiet.contains(local.time())


@dataclass(frozen=True)
class Occurrence:
    """An item on one local date: its broadcast id and when it is due."""

    slot: Slot
    day: dt.date
    at_ms: int

    @property
    def id(self) -> str:
        return f"prog:{self.slot.schedule_id}:{self.slot.item.name}:{self.day.isoformat()}"

    @property
    def deadline_ms(self) -> int:
        """The latest moment it may still start."""
        return self.at_ms + self.slot.item.max_late_s * 1000


def slots_of(key: str, schedule: Schedule) -> list[Slot]:
    """The slots of a schedule in force (none for a withdrawn one)."""
    zone = schedule.zone()
    return [
        Slot(
            key,
            schedule.id,
            item,
            zone,
            schedule.quiet_hours,
            schedule.valid_from,
            schedule.valid_until,
        )
        for item in schedule.items
    ]


def local_slots(items: Iterable[LocalProgramme]) -> list[Slot]:
    """The config file's items, as the slots of schedule `local` (no quiet hours of their own)."""
    return [Slot(LOCAL_KEY, LOCAL_KEY, item, ZoneInfo(item.timezone)) for item in items]


def _at_ms(slot: Slot, day: dt.date) -> int:
    local = dt.datetime.combine(day, slot.item.at, tzinfo=slot.zone)
    return int(local.timestamp() * 1000)


def _days_around(zone: ZoneInfo, start_ms: int, end_ms: int) -> Iterable[dt.date]:
    first = dt.datetime.fromtimestamp(start_ms / 1000, zone).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(end_ms / 1000, zone).date() + dt.timedelta(days=1)
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def between(slots: Iterable[Slot], start_ms: int, end_ms: int) -> list[Occurrence]:
    """Occurrences due in [start_ms, end_ms), in time order."""
    found = []
    for slot in slots:
        for day in _days_around(slot.zone, start_ms, end_ms):
            if not slot.plays_on(day):
                continue
            at = _at_ms(slot, day)
            if start_ms <= at < end_ms:
                found.append(Occurrence(slot, day, at))
    return sorted(found, key=lambda o: (o.at_ms, o.id))


def upcoming(slots: Iterable[Slot], now_ms: int, count: int) -> list[Occurrence]:
    """The next `count` occurrences due at or after now (within LOOKAHEAD_DAYS)."""
    slots = list(slots)
    found: list[Occurrence] = []
    start = now_ms
    for _ in range(LOOKAHEAD_DAYS):
        found += between(slots, start, start + DAY_MS)
        if len(found) >= count:
            break
        start += DAY_MS
    return found[:count]
