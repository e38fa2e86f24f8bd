"""The schedules in force: per (signing key, schedule id) the highest version, kept on disk.

Schedules come on retained topics, so the broker hands a station the copy it holds at
every connect, and a stale copy may still sit on one of the several topics a station
listens to. A schedule is therefore replaced only by a strictly higher `version`; an
equal or lower one is ignored without a word. Withdrawn schedules (no items) are kept
too, with their version, so an older retained copy cannot bring one back, even after a
restart. The store's database holds them (table `programmes`).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Literal, Protocol

from gateway.downlink.alert_model import PayloadError
from gateway.programmes.model import Schedule, parse_schedule
from gateway.programmes.timetable import Slot, slots_of

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "withdrawn", "ignored"]


class ScheduleStore(Protocol):
    """What the book needs of the station database."""

    def save_programme(self, key: str, schedule_id: str, version: int, payload: str) -> None: ...

    def programmes(self) -> list[tuple[str, str, int, str]]: ...


class ProgrammeBook:
    """Schedules in force, loaded from the database at start and saved on every change."""

    def __init__(self, store: ScheduleStore) -> None:
        self._store = store
        self._schedules: dict[tuple[str, str], Schedule] = {}
        for key, schedule_id, version, payload in store.programmes():
            try:
                schedule = parse_schedule(payload.encode("utf-8"))
            except PayloadError as exc:  # valid when kept; a time zone may have gone since
                log.error(
                    "kept schedule %s v%d (key %s) no longer parses: %s",
                    schedule_id,
                    version,
                    key,
                    exc,
                )
                continue
            self._schedules[(key, schedule_id)] = schedule

    def version(self, key: str, schedule_id: str) -> int | None:
        """The version kept for (key, id), withdrawn or not; None if none was ever accepted."""
        schedule = self._schedules.get((key, schedule_id))
        return None if schedule is None else schedule.version

    def offer(self, key: str, schedule: Schedule, payload: bytes) -> Outcome:
        """Keep `schedule` if it is newer than the one kept for (key, id)."""
        kept = self.version(key, schedule.id)
        if kept is not None and schedule.version <= kept:
            return "ignored"
        self._schedules[(key, schedule.id)] = schedule
        try:
            self._store.save_programme(key, schedule.id, schedule.version, payload.decode("utf-8"))
        except sqlite3.Error as exc:  # in force until the restart, as a full disk allows
            log.error("schedule %s v%d could not be saved: %s", schedule.id, schedule.version, exc)
        return "withdrawn" if schedule.withdrawn else "accepted"

    def in_force(self) -> list[tuple[str, Schedule]]:
        """(key, schedule) of every schedule with items, in the order they were kept."""
        return [(key, s) for (key, _), s in self._schedules.items() if not s.withdrawn]

    def slots(self) -> list[Slot]:
        return [slot for key, schedule in self.in_force() for slot in slots_of(key, schedule)]
