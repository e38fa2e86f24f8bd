"""The broadcasts waiting and the one playing: priority order, preemption, the bound, cancel.

Why this module exists: this is the one place that decides which broadcast the loudspeakers
say next (docs/protocol.md §9). Everything in it runs under one lock, taken by the gateway's
threads (``submit``, ``cancel``) and by the worker that plays (audio/broadcast_worker.py), and
nothing in it waits for sound: what a lock holder does here takes microseconds.

- The order is `audio.broadcast.priority` (level, then central over local), then first come,
  first served.
- A broadcast of strictly higher priority stops the one playing (its ``abort``); the worker
  hands the stopped one back (`after_abort`), which puts it in the queue again, to play from
  the start later.
- Expiry and a broadcast's ``gate`` are checked when it is about to start or restart (`take`).
- At most ``max_queue`` wait; past that the lowest-priority one is refused (`make room`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from audio.broadcast import Broadcast, check, priority
from audio.broadcast_reports import Reports
from audio.broadcast_speech import EntrySpeech, RenderedSpeech, speech_of
from audio.speech import SpeechStream

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """A broadcast in the queue, with what the worker needs to stop and restart it."""

    b: Broadcast
    order: int
    speech: EntrySpeech | None
    state: str = "queued"  # "queued" | "playing"
    stop: str | None = None  # why the worker should stop: "preempted" | "cancelled" | "closed"
    announced: bool = False  # "playing" was reported for the current run
    preempted: bool = False  # it was stopped by a higher priority at least once
    abort: threading.Event = field(default_factory=threading.Event)

    def key(self) -> tuple[int, int, int]:
        level, central = priority(self.b)
        return (-level, -central, self.order)


class Lineup:
    """The waiting broadcasts and the playing one, under one lock (see the module docstring)."""

    def __init__(self, reports: Reports, *, max_queue: int, time_ms: Callable[[], int]) -> None:
        self.reports = reports
        self._max_queue = max(1, max_queue)
        self._time_ms = time_ms
        self._cond = threading.Condition()
        self._pending: list[Entry] = []
        self._current: Entry | None = None
        self._order = 0
        self._closed = False
        self._fault = False
        self._last_state = "idle"

    # -- the gateway's side ----------------------------------------------

    def submit(self, b: Broadcast) -> None:
        """Queue ``b`` (reported ``queued``); preempts a lower-priority broadcast playing."""
        check(b)
        with self._cond:
            if self._closed:
                log.warning("broadcast %s submitted after close; ignored", b.id)
                return
            if self._find(b.id) is not None:
                log.warning("broadcast %s is already queued or playing; ignored", b.id)
                return
            self._order += 1
            abort = threading.Event()
            entry = Entry(b, self._order, speech_of(b, abort), abort=abort)
            if not self._make_room(entry):
                return
            self.reports.status(b.id, "queued", {})
            self._pending.append(entry)
            current = self._current
            if current is not None and current.stop is None and priority(b) > priority(current.b):
                self._stop(current, "preempted")
            self._cond.notify_all()

    def cancel(self, broadcast_id: str) -> bool:
        """Drop a queued broadcast or stop the playing one; False if there is no such id."""
        with self._cond:
            return self._cancel_locked(broadcast_id)

    def cancel_all(self) -> list[str]:
        """Cancel everything queued and playing; returns the ids cancelled."""
        with self._cond:
            ids = [e.b.id for e in self._entries()]
            for broadcast_id in ids:
                self._cancel_locked(broadcast_id)
            return ids

    def snapshot(self) -> list[dict[str, object]]:
        """The playing broadcast (if any) and the queue in play order, for status reports."""
        with self._cond:
            return [
                {
                    "id": e.b.id,
                    "state": e.state,
                    "level": e.b.level,
                    "central": e.b.central,
                    "tone": e.b.tone,
                    "repeat": e.b.repeat,
                    "expires_ms": e.b.expires_ms,
                    "silent": e.b.silent,
                }
                for e in self._entries()
            ]

    @property
    def state(self) -> str:
        """``"fault"`` after a device failure until something plays, else playing/idle."""
        with self._cond:
            return self._state_locked()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> bool:
        """Refuse what comes next and stop the playing one; False if it was closed already."""
        with self._cond:
            if self._closed:
                return False
            self._closed = True
            if self._current is not None:
                self._stop(self._current, "closed")
            self._cond.notify_all()
            return True

    # -- the worker's side ------------------------------------------------

    def take(self, timeout: float | None) -> Entry | None:
        """The next broadcast to play, now playing; None once closed or after `timeout` s.

        Expired broadcasts and those their gate skips are reported and dropped on the way.
        """
        with self._cond:
            if self._closed:
                return None
            entry = self._pop_unexpired()
            if entry is not None or (timeout is not None and timeout <= 0):
                return entry
            self._cond.wait(timeout)
            return None if self._closed else self._pop_unexpired()

    def finished(self, entry: Entry) -> bool:
        """The worker is done with `entry`; False if it went back in the queue."""
        with self._cond:
            self._current = None
            self._state_changed()
            return entry not in self._pending

    def after_abort(self, entry: Entry) -> None:
        """Report a stopped broadcast; a preempted one goes back in the queue."""
        with self._cond:
            why = entry.stop
            if why == "preempted":
                entry.state = "queued"
                entry.preempted = True
                # Waiting again: it waits as its source, not as decoded audio (§9).
                if isinstance(entry.speech, SpeechStream):
                    entry.speech.stop()  # rendered again (from the cache) when it replays
                    entry.speech = entry.speech.fresh()
                    entry.speech.attach_abort(entry.abort)
                elif entry.speech is not None and callable(entry.b.speech):
                    entry.speech = RenderedSpeech(entry.b.speech, entry.abort)
                self._pending.append(entry)
        if why == "preempted" and entry.announced:
            self.reports.status(entry.b.id, "interrupted", {})
        elif why == "cancelled":
            self.reports.status(entry.b.id, "cancelled", {})

    def set_fault(self, fault: bool) -> None:
        """The device failed (state ``fault``), or something played again."""
        with self._cond:
            self._fault = fault
            self._state_changed()

    # -- under the lock ---------------------------------------------------

    def _entries(self) -> list[Entry]:
        running = [self._current] if self._current is not None else []
        return running + sorted(self._pending, key=Entry.key)

    def _find(self, broadcast_id: str) -> Entry | None:
        return next((e for e in self._entries() if e.b.id == broadcast_id), None)

    def _make_room(self, entry: Entry) -> bool:
        """At most ``max_queue`` wait (docs/protocol.md §9): past that the lowest-priority one of
        them and `entry` is refused, ``rejected`` with ``queue_full``. False if it is `entry`."""
        if len(self._pending) < self._max_queue:
            return True
        lowest = max([*self._pending, entry], key=Entry.key)
        log.warning("broadcast queue full (%d waiting): %s refused", self._max_queue, lowest.b.id)
        self.reports.status(lowest.b.id, "rejected", {"reason": "queue_full"})
        if lowest is entry:
            return False
        self._pending.remove(lowest)
        return True

    def _cancel_locked(self, broadcast_id: str) -> bool:
        entry = self._find(broadcast_id)
        if entry is None:
            return False
        if entry is self._current:
            self._stop(entry, "cancelled")
        else:
            self._pending.remove(entry)
            self.reports.status(broadcast_id, "cancelled", {})
        return True

    def _stop(self, entry: Entry, why: str) -> None:
        if entry.stop != "cancelled":
            entry.stop = why
        entry.abort.set()

    def _pop_unexpired(self) -> Entry | None:
        while self._pending:
            entry = min(self._pending, key=Entry.key)
            self._pending.remove(entry)
            expires = entry.b.expires_ms
            if expires is not None and self._time_ms() >= expires:
                self.reports.status(entry.b.id, "expired", {})
                continue
            skip = self._gate(entry)
            if skip is not None:
                self.reports.status(entry.b.id, "skipped", {"reason": skip})
                continue
            entry.state, entry.stop, entry.announced = "playing", None, False
            entry.abort.clear()
            self._current = entry
            self._state_changed()
            return entry
        return None

    def _gate(self, entry: Entry) -> str | None:
        gate = entry.b.gate
        if gate is None:
            return None
        try:
            return gate(entry.preempted)
        except Exception:
            log.exception("the start check of broadcast %s failed; it plays", entry.b.id)
            return None

    def _state_locked(self) -> str:
        if self._fault:
            return "fault"
        return "playing" if self._current is not None else "idle"

    def _state_changed(self) -> None:
        """Report a change of ``state`` (the caller holds the lock)."""
        state = self._state_locked()
        if state != self._last_state:
            self._last_state = state
            self.reports.state(state)
