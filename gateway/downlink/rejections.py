"""`downlink_rejected` events (docs/protocol.md §5): logged, rate limited, stored.

Forged or broken downlink can arrive as fast as a broker delivers it. The
first rejection of a reason is reported at once and opens a one-minute
window; further rejections of that reason within the window are folded into
one event published when the window ends, with `count` (how many messages it
stands for) and the `topic`, `key` and `payload_sha256` of the last one.

Memory is bounded whatever arrives: state is kept per reason code, and the
reason codes are the fixed vocabulary of docs/protocol.md §7. `Rejections` is what
every downlink handler calls when a message fails as an envelope (or as a payload
whose id cannot be read): a folded log line, a folded event, nothing else.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from gateway.clock import StationClock
from gateway.log_folding import LogFolder
from gateway.store.outbox import Store
from gateway.untrusted import untrusted_text

log = logging.getLogger(__name__)

WINDOW_MS = 60_000
REASONS: frozenset[str] = frozenset(
    {
        "bad_envelope",
        "unknown_key",
        "bad_signature",
        "too_large",
        "bad_payload",
        "unsupported_status",
        "not_for_this_area",
        "not_for_this_station",
        "not_authorised",
        "from_future",
        "unknown_clip",
        "bad_audio",
        "audio_device",
        "tts_unavailable",
        "poison",
        "queue_full",
    }
)


@dataclass
class _Window:
    """One reason's open minute and what has been folded into it so far."""

    start_ms: int
    count: int = 0
    topic: str = ""
    key: str | None = None
    payload_sha256: str = ""

    def ended(self, now_ms: int) -> bool:
        return now_ms >= self.start_ms + WINDOW_MS


def _event(reason: str, topic: str, key: str | None, sha256: str, count: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "downlink_rejected",
        "reason": reason,
        "topic": topic,
        "payload_sha256": sha256,
        "count": count,
    }
    if key is not None:
        event["key"] = key
    return event


class RejectionFolder:
    """Decides which `downlink_rejected` events to publish, and when.

    `record` and `due` return event fields (`type` and the §5 extra fields);
    the caller adds `seq` and `ts` when it stores them.
    """

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._ready: dict[str, dict[str, Any]] = {}

    def record(
        self, reason: str, topic: str, key: str | None, payload_sha256: str, now_ms: int
    ) -> dict[str, Any] | None:
        """Note one rejected message; return an event to publish now, or None if folded."""
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        window = self._windows.get(reason)
        if window is not None and window.ended(now_ms):
            self._close(reason, window)
            window = None
        if window is None:
            self._windows[reason] = _Window(start_ms=now_ms)
            return _event(reason, topic, key, payload_sha256, 1)
        window.count += 1
        window.topic, window.key, window.payload_sha256 = topic, key, payload_sha256
        return None

    def due(self, now_ms: int) -> list[dict[str, Any]]:
        """Folded events whose minute has ended, oldest window first."""
        for reason, window in list(self._windows.items()):
            if window.ended(now_ms):
                self._close(reason, window)
        ready = list(self._ready.values())
        self._ready.clear()
        return ready

    def next_due_ms(self) -> int | None:
        """When `due` will next have something to return (for the caller's timer)."""
        if self._ready:
            return 0
        pending = [w.start_ms + WINDOW_MS for w in self._windows.values() if w.count]
        return min(pending, default=None)

    def _close(self, reason: str, window: _Window) -> None:
        del self._windows[reason]
        if not window.count:
            return
        earlier = self._ready.get(reason)
        count = window.count + (earlier["count"] if earlier else 0)
        self._ready[reason] = _event(reason, window.topic, window.key, window.payload_sha256, count)


class Rejections:
    """Reports downlink messages rejected unanswered: a log line and a folded event each."""

    def __init__(self, store: Store, clock: StationClock) -> None:
        self.store = store
        self.clock = clock
        self.folder = RejectionFolder()
        self.log_folder = LogFolder(log)

    def reject(self, reason: str, topic: str, key: str | None, payload: bytes, detail: str) -> None:
        """A message that failed as an envelope, or a payload without a readable id."""
        digest = hashlib.sha256(payload).hexdigest()
        key = None if key is None else untrusted_text(key)
        detail = untrusted_text(detail, 500)
        self.log_folder.log(
            f"downlink rejected ({reason})",
            self.clock.now_ms(),
            logging.WARNING,
            "downlink rejected (%s) on %s, key %s, sha256 %s: %s",
            reason,
            topic,
            key,
            digest,
            detail,
        )
        self._store(self.folder.record(reason, topic, key, digest, self.clock.now_ms()))

    def reject_unread(self, reason: str, topic: str, sha256: str, detail: str) -> None:
        """A downlink message the link dropped before intake saw it (`too_large`, `poison`).

        Reported like any envelope failure: a log line and a folded `downlink_rejected` event.
        """
        log.warning("downlink rejected (%s) on %s, sha256 %s: %s", reason, topic, sha256, detail)
        self._store(self.folder.record(reason, topic, None, sha256, self.clock.now_ms()))

    def tick(self, now_ms: int) -> None:
        """Store the folded events, and write the folded log lines, whose minute has ended."""
        for event in self.folder.due(now_ms):
            self._store(event)
        self.log_folder.tick(now_ms)

    def _store(self, event: dict[str, Any] | None) -> None:
        if event is None:
            return
        fields = dict(event)
        type_ = str(fields.pop("type", "downlink_rejected"))
        self.store.add_event(type_, fields)
