"""The station's events (docs/protocol.md §5), recorded one way wherever they come from.

Why this module exists: the service records events from several places — its start, the
sensors' faults and the rules' alarms, the broadcast queue's faults, the village microphone —
and each one is committed to the outbox, logged with where it went, and echoed to whoever
watches the station's records (the demo's screen, a benchmark). The store wakes the uplink
after each commit, so a recorded event goes to the centre at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.store.outbox import Store
from gateway.store.records import Stored

log = logging.getLogger(__name__)

#: Told of each record as it is made: (kind, fields), the kind an event type or "reading"/"receipt".
OnRecord = Callable[[str, dict[str, Any]], None]


class Events:
    """Records events in the store, logs them and echoes them to `on_record`."""

    def __init__(self, store: Store, on_record: OnRecord | None = None) -> None:
        self._store = store
        self._on_record = on_record

    def record(self, type_: str, fields: dict[str, Any], ts: int | None = None) -> Stored:
        """Commit one event now (held in memory while the disk is full); its seq if it has one."""
        stored = self._store.add_event(type_, fields, ts)
        where = "held in memory: the disk is full" if stored.held else f"seq {stored.seq}"
        log.info("event %s %s (%s)", type_, fields, where)
        if self._on_record is not None:
            self._on_record(type_, {"seq": stored.seq, **fields})
        return stored
