"""Local alarms: a rule's alarm sounds its broadcast, network or not (docs/protocol.md §9).

Why this module exists: a rule (gateway/rules.py) that trips with a `broadcast` must be heard
even when the link to the centre is down, and the centre must learn of it like of any alert.
So a local alarm is one more entry of the alert log, ``local:<rule>:<n>``: the same receipts,
the same queue (below a central alert of the same level), resumed by the same restart
(gateway/downlink/resume.py), stopped by the centre's `cancel_all`. That shared log and its
receipts live in gateway/downlink/, so local alarms do too; the rule engine knows nothing
of broadcasting, and the service hands its alarms over.
"""

from __future__ import annotations

from audio.broadcast_queue import BroadcastQueue
from audio.clips import BadAudio, UnknownClip
from gateway.downlink.broadcasts import Broadcasts
from gateway.downlink.receipts import Receipts
from gateway.downlink.time_floor import TimeFloor
from gateway.rules import RuleEvent
from gateway.store import alert_log
from gateway.store.alert_records import AlertRecord
from gateway.store.outbox import Store

#: How long a local alarm broadcast stays worth playing after a restart.
LOCAL_BROADCAST_TTL_MS = 30 * 60 * 1000


class LocalAlarms:
    """Numbers, logs and queues the broadcasts of rule alarms."""

    def __init__(
        self,
        store: Store,
        queue: BroadcastQueue,
        *,
        floor: TimeFloor,
        receipts: Receipts,
        broadcasts: Broadcasts,
    ) -> None:
        self.store = store
        self.queue = queue
        self.floor = floor
        self.receipts = receipts
        self.broadcasts = broadcasts
        # Read once at start, while the file is surely readable; counted in memory after.
        self._n = store.run_write(alert_log.highest_local_number)

    def next_id(self, rule: str) -> str:
        """A new ``local:<rule>:<n>`` id: n counts up from the highest the log holds.

        Never from the alarm event's seq: on a full disk the event has none yet.
        """
        self._n += 1
        return f"local:{rule}:{self._n}"

    def sound(self, event: RuleEvent, broadcast_id: str) -> None:
        """Log the alarm's broadcast under `broadcast_id`, answer `received`, and queue it."""
        spec = event.broadcast
        if spec is None:
            return
        record = AlertRecord(
            kind="local",
            level=spec.level or event.level,
            rule=event.rule,
            text=spec.text,
            clip=spec.clip,
            repeat=spec.repeat,
            expires_ms=self.floor.now_ms() + LOCAL_BROADCAST_TTL_MS,
        )
        if not self.store.alerts.remember(broadcast_id, record):
            return
        self.receipts.receipt(broadcast_id, "received", {})
        self.submit(broadcast_id, record)

    def submit(self, broadcast_id: str, record: AlertRecord) -> None:
        """Queue a logged local alarm (sounded now, or resumed); `failed` if its clip is bad."""
        try:
            broadcast = self.broadcasts.local(broadcast_id, record)
        except (UnknownClip, BadAudio) as exc:
            reason = "unknown_clip" if isinstance(exc, UnknownClip) else "bad_audio"
            self.store.alerts.set_state(broadcast_id, "failed")
            self.receipts.receipt(broadcast_id, "failed", {"reason": reason})
            return
        self.queue.submit(broadcast)
