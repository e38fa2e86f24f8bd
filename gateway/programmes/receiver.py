"""What a verified `programme` envelope becomes: a schedule in force, a receipt, or nothing.

Intake hands every envelope that came on a programme topic here once its signature has
been checked (docs/protocol.md §6). A schedule for another village on an area topic is
normal traffic and ignored; one addressed to this station alone but not for its area is
`rejected` (`not_for_this_area`). A key whose scope does not include `programme` (or the
schedule's areas) gets `not_authorised`. A schedule whose payload is wrong gets
`rejected` on `prog:<id>` with the reason, and the version in force stays. An accepted
one is answered `received` with its version; an equal or older version (the retained
copy every reconnect brings) gets no answer at all.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audio.clips import BadAudio, UnknownClip, load_clip
from gateway.downlink.alert_model import ALL_AREAS, PayloadError, area_path
from gateway.downlink.envelope import Envelope
from gateway.programmes.book import ProgrammeBook
from gateway.programmes.model import Schedule, parse_schedule

log = logging.getLogger(__name__)

#: (key, payload SHA-256) of rejected schedules remembered, so a retained bad copy is
#: answered once per run, not at every reconnect.
MAX_REMEMBERED = 1000

Receipt = Callable[[str, str, dict[str, Any]], None]
RejectDownlink = Callable[[str, str, str | None, bytes, str], None]
#: (key name, envelope type, areas) -> may this key send that there? (gateway/downlink/scope.py)
Scope = Callable[[str, str, list[str]], bool]


class ScheduleReceiver:
    """Checks a verified schedule and keeps it in the book (see the module docstring)."""

    def __init__(
        self,
        book: ProgrammeBook,
        *,
        station_area: str,
        station_topic: str,
        clips_dir: Path,
        rate: int,
        receipt: Receipt,
        reject_downlink: RejectDownlink,
        on_change: Callable[[], None],
        may: Scope,
    ) -> None:
        self.book = book
        self._path = set(area_path(station_area))
        self._station_topic = station_topic
        self._clips_dir = clips_dir
        self._rate = rate
        self._receipt = receipt
        self._reject_downlink = reject_downlink
        self._on_change = on_change
        self._may = may
        self._answered: dict[tuple[str, str], None] = {}

    def handle(self, envelope: Envelope, topic: str, raw: bytes) -> None:
        answered = (envelope.key, hashlib.sha256(envelope.payload).hexdigest())
        if answered in self._answered:
            return
        reason, schedule_id = self._check(envelope, topic, raw)
        if reason is None or schedule_id is None:
            return
        log.warning("schedule %s (key %s) rejected: %s", schedule_id, envelope.key, reason)
        self._receipt(f"prog:{schedule_id}", "rejected", {"reason": reason})
        self._answered[answered] = None
        while len(self._answered) > MAX_REMEMBERED:
            del self._answered[next(iter(self._answered))]

    def _check(self, envelope: Envelope, topic: str, raw: bytes) -> tuple[str | None, str | None]:
        """(reason, schedule id) of a rejection, or (None, None) when handled otherwise."""
        try:
            schedule = parse_schedule(envelope.payload)
        except PayloadError as exc:
            if exc.alert_id is None:
                self._reject_downlink(exc.reason, topic, envelope.key, raw, str(exc))
                return None, None
            log.warning("schedule %s: %s", exc.alert_id, exc.detail)
            return exc.reason, exc.alert_id
        if not any(code == ALL_AREAS or code in self._path for code in schedule.areas):
            if topic == self._station_topic:
                return "not_for_this_area", schedule.id
            log.debug("schedule %s is for %s, not this station", schedule.id, schedule.areas)
            return None, None
        if not self._may(envelope.key, "programme", schedule.areas):
            return "not_authorised", schedule.id
        problem = self._clip_problem(schedule)
        if problem is not None:
            return problem, schedule.id
        self._keep(envelope.key, schedule, envelope.payload)
        return None, None

    def _clip_problem(self, schedule: Schedule) -> str | None:
        """Every clip named must be on this station (and decode), before anything is kept."""
        for item in schedule.items:
            if item.clip is None:
                continue
            try:
                load_clip(self._clips_dir, item.clip, self._rate)
            except UnknownClip as exc:
                log.warning("schedule %s item %s: %s", schedule.id, item.name, exc)
                return "unknown_clip"
            except BadAudio as exc:
                log.warning("schedule %s item %s: %s", schedule.id, item.name, exc)
                return "bad_audio"
        return None

    def _keep(self, key: str, schedule: Schedule, payload: bytes) -> None:
        outcome = self.book.offer(key, schedule, payload)
        if outcome == "ignored":
            log.debug(
                "schedule %s v%d (key %s): not newer; ignored", schedule.id, schedule.version, key
            )
            return
        log.info(
            "schedule %s v%d (key %s) %s: %d item(s)",
            schedule.id,
            schedule.version,
            key,
            outcome,
            len(schedule.items),
        )
        fields = {"version": schedule.version, "items": len(schedule.items)}
        self._receipt(f"prog:{schedule.id}", "received", fields)
        self._on_change()
