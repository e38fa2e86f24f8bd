"""Plays each routine item at its time, under every alert (docs/protocol.md §9, §10).

Each due occurrence becomes a broadcast of level `routine` with the id
`prog:<schedule>:<item>:<YYYY-MM-DD>`, logged in the alert log first, so it plays once
even across a restart. The broadcast queue asks the item's gate before every start:
an item that can no longer start within `max_late_s` of its time is `skipped`
(`preempted` if an alert interrupted it, else `expired`), nothing routine starts in
quiet hours (`quiet_hours`), and nothing routine plays while the clock is unsynced
(`clock_unsynced`): a time of day means nothing on a clock that may say 1970.

The scheduler wakes exactly when the next item is due (a loop timer), and the
service's one-second tick calls `tick()` as well, so a clock step or a new schedule
is noticed within a second.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from audio.broadcast import Broadcast
from audio.broadcast import Speech as BroadcastSpeech
from audio.clips import BadAudio, UnknownClip
from audio.levels import Level
from gateway.clock import StationClock
from gateway.programmes.book import ProgrammeBook
from gateway.programmes.model import ItemBase
from gateway.programmes.timetable import DAY_MS, Occurrence, Slot, between, upcoming
from gateway.store.alert_records import AlertRecord, LogEntry

log = logging.getLogger(__name__)

#: Timers fire a little late; an item due exactly at its deadline still starts.
GRACE_MS = 1000
#: States of a programme in the alert log that mean "not finished".
UNFINISHED = ("received", "queued", "playing", "interrupted")

Speech = Callable[[ItemBase], BroadcastSpeech | None]
Receipt = Callable[[str, str, dict[str, Any]], None]


class AlertLog(Protocol):
    """What the scheduler needs of the store's alert log (gateway/store/alert_log.py)."""

    def remember(self, alert_id: str, record: AlertRecord) -> bool: ...

    def set_state(self, alert_id: str, state: str) -> None: ...

    def unfinished(self) -> list[LogEntry]: ...


class ProgrammeScheduler:
    """Turns the slots in force into routine broadcasts at their times."""

    def __init__(
        self,
        book: ProgrammeBook,
        local: list[Slot],
        *,
        log_: AlertLog,
        submit: Callable[[Broadcast], None],
        clock: StationClock,
        speech: Speech,
        receipt: Receipt,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
    ) -> None:
        self.book = book
        self.local = local
        self._log = log_
        self._submit = submit
        self._clock = clock
        self._speech = speech
        self._receipt = receipt
        self._call_later = call_later
        self._timer: Any = None
        self._handled: set[str] = set()
        self._started_ms = clock.now_ms()
        self._known_since: dict[tuple[str, str], int] = {}

    def slots(self) -> list[Slot]:
        return self.book.slots() + self.local

    # -- what is due -------------------------------------------------------------------------

    def schedules_changed(self) -> None:
        """A schedule was accepted or withdrawn: its items count from now, and re-arm."""
        now = self._clock.now_ms()
        for key, schedule in self.book.in_force():
            self._known_since.setdefault((key, f"{schedule.id}:{schedule.version}"), now)
        self.tick()

    def _known_from(self, slot: Slot) -> int:
        version = next(
            (
                s.version
                for k, s in self.book.in_force()
                if (k, s.id) == (slot.key, slot.schedule_id)
            ),
            None,
        )
        since = self._known_since.get((slot.key, f"{slot.schedule_id}:{version}"))
        return self._started_ms if since is None else since

    def tick(self) -> None:
        """Start every occurrence that is due and not handled yet; arm the timer for the next."""
        now = self._clock.now_ms()
        for occ in between(self.slots(), now - DAY_MS, now + 1):
            if occ.id in self._handled:
                continue
            if occ.at_ms < self._known_from(occ.slot) and now > occ.deadline_ms + GRACE_MS:
                self._handled.add(occ.id)  # passed before this station knew it: no receipt
                continue
            self._handled.add(occ.id)
            self._fire(occ, now)
        self._arm(now)

    def _arm(self, now: int) -> None:
        if self._call_later is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = [o for o in between(self.slots(), now + 1, now + DAY_MS) if o.id not in self._handled]
        if due:
            self._timer = self._call_later((due[0].at_ms - now) / 1000, self.tick)

    # -- one occurrence ----------------------------------------------------------------------

    def _fire(self, occ: Occurrence, now: int) -> None:
        record = AlertRecord(
            kind="programme",
            key=occ.slot.key,
            schedule=occ.slot.schedule_id,
            item=occ.slot.item.name,
            day=occ.day.isoformat(),
            at_ms=occ.at_ms,
            level=Level.ROUTINE,
            expires_ms=occ.deadline_ms,
        )
        if not self._log.remember(occ.id, record):
            return  # played (or skipped) before a restart
        log.info("programme item %s is due", occ.id)
        self._start(occ, now)

    def _start(self, occ: Occurrence, now: int) -> None:
        reason = self.skip_reason(occ, preempted=False, now=now)
        if reason is not None:
            self._skip(occ.id, reason)
            return
        item = occ.slot.item
        try:
            speech = self._speech(item)
        except (UnknownClip, BadAudio) as exc:
            reason = "unknown_clip" if isinstance(exc, UnknownClip) else "bad_audio"
            log.error("programme item %s cannot play: %s", occ.id, exc)
            self._log.set_state(occ.id, "failed")
            self._receipt(occ.id, "failed", {"reason": reason})
            return
        self._submit(
            Broadcast(
                id=occ.id,
                level=Level.ROUTINE,
                central=False,  # one routine item never preempts another
                tone=item.tone,
                speech=speech,
                repeat=item.repeat,
                volume=item.volume,
                gate=functools.partial(self._gate, occ),
            )
        )

    def _skip(self, broadcast_id: str, reason: str) -> None:
        log.info("programme item %s skipped: %s", broadcast_id, reason)
        self._log.set_state(broadcast_id, "skipped")
        self._receipt(broadcast_id, "skipped", {"reason": reason})

    def _gate(self, occ: Occurrence, preempted: bool) -> str | None:
        return self.skip_reason(occ, preempted=preempted, now=self._clock.now_ms())

    def skip_reason(self, occ: Occurrence, *, preempted: bool, now: int) -> str | None:
        """Why `occ` may not start now, or None (docs/protocol.md §10)."""
        if not self._clock.synced():
            return "clock_unsynced"
        if occ.slot.in_quiet_hours(now):
            return "quiet_hours"
        if now > occ.deadline_ms + GRACE_MS:
            return "preempted" if preempted else "expired"
        return None

    # -- restart and status ------------------------------------------------------------------

    def resume(self) -> None:
        """After a restart: an unfinished item plays again if it still may, else is skipped."""
        slots = {(s.key, s.schedule_id, s.item.name): s for s in self.slots()}
        now = self._clock.now_ms()
        for entry in self._log.unfinished():
            record = entry.record
            if record.kind != "programme":
                continue
            broadcast_id = entry.id
            self._handled.add(broadcast_id)
            slot = slots.get((str(record.key), str(record.schedule), str(record.item)))
            if slot is None:
                self._skip(broadcast_id, "expired")
                continue
            day = dt.date.fromisoformat(str(record.day))
            occ = Occurrence(slot, day, int(record.at_ms or 0))
            log.info("resuming programme item %s after a restart", broadcast_id)
            self._start(occ, now)

    def upcoming(self, count: int = 5) -> list[dict[str, Any]]:
        """The next items, soonest first: schedule id, item name, epoch ms, local time."""
        now = self._clock.now_ms()
        return [
            {
                "id": occ.slot.schedule_id,
                "item": occ.slot.item.name,
                "at": occ.at_ms,
                "local": _local_iso(occ),
            }
            for occ in upcoming(self.slots(), now, count)
        ]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _local_iso(occ: Occurrence) -> str:
    return dt.datetime.fromtimestamp(occ.at_ms / 1000, occ.slot.zone).isoformat()
